"""`make report`: refuses clearly without data; README results block refresh."""
from fer_utils import report


def test_report_refuses_without_datasets(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FER_DATA_DIR", str(tmp_path))
    assert report.main(["--smoke", "1"]) == 2
    err = capsys.readouterr().err
    assert "make report needs the datasets" in err and "FER2013" in err and "CK+48" in err


def test_update_readme_replaces_only_the_results_block(tmp_path):
    readme, table = tmp_path / "README.md", tmp_path / "comparison.md"
    readme.write_text(f"intro\n{report.README_START}\nold\n{report.README_END}\nrest\n")
    assert not report.update_readme(readme, table)  # no table yet
    table.write_text("| model | accuracy |\n|---|---|\n| vgg | 72.9 |\n")
    assert report.update_readme(readme, table)
    text = readme.read_text()
    assert "old" not in text and "| vgg | 72.9 |" in text and text.startswith("intro") and text.endswith("rest\n")
