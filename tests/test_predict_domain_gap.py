"""``scripts/predict_domain_gap.py``: the shipped model on detector crops against FER2013's own, and on CK+48."""
from __future__ import annotations

import json

import pytest
from conftest import load_script


@pytest.fixture(scope="module")
def domain_gap():
    return load_script("predict_domain_gap")


def test_bad_arguments_are_one_line_and_exit_2(domain_gap, capsys):
    assert domain_gap.main(["--margins", "0,2"]) == 2
    assert capsys.readouterr().out.strip() == "predict_domain_gap: --margins must lie in [0, 1] and --faces be positive"


@pytest.mark.realdata
def test_detector_crops_are_scored_against_stored_crops(domain_gap, fer2013, tmp_path, capsys):
    pytest.importorskip("ai_edge_litert")
    out = tmp_path / "gap.json"
    assert domain_gap.main(["--faces", "60", "--margins", "0,0.2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    fer = result["fer2013"]
    assert fer["stored_crops"]["faces"] == 60 and 0.5 < fer["found_share"] <= 1
    found = fer["stored_crops_of_found"]["faces"]
    assert found == round(60 * fer["found_share"])
    for key in ("stored_crops_of_found", "detected_margin_0", "detected_margin_0.2"):
        entry = fer[key]
        assert entry["faces"] == found and 1 / 7 < entry["accuracy"] <= 1  # far above chance, same faces
        assert sum(entry["predicted_share"].values()) == pytest.approx(1, abs=1e-3)
        assert entry["true_share"] == fer["stored_crops_of_found"]["true_share"]
    assert fer["detected_margin_0"] != fer["detected_margin_0.2"]  # the margin changes the crops
    ck = result["ckplus48"]
    assert ck["left_out"] == ["contempt"] and ck["frames"] < 981 and ck["accuracy"] > 1 / 6
    assert "CK+48 zero-shot" in capsys.readouterr().out
