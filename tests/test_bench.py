"""The benchmark functions return sane numbers (speed itself is measured by the CLI, not here)."""
import json

import numpy as np
import pytest

from fer_utils.bench import benchmark_iterator, benchmark_training, store_training_rate
from fer_utils.cli import main

IMAGES = np.random.default_rng(0).integers(0, 256, (600, 48, 48), dtype=np.uint8)


def test_benchmark_iterator_counts_images():
    result = benchmark_iterator(IMAGES, "cpu", batch_size=128, epochs=1)
    assert result["images"] == 600 and result["images_per_s"] > 0


def test_benchmark_training_compares_pipeline_with_premade():
    result = benchmark_training(IMAGES, "simple_cnn", "cpu", batch_size=32, steps=2)
    assert result["pipeline_images_per_s"] > 0 and result["premade_images_per_s"] > 0
    # The ratio is of the unrounded rates; the reported rates are rounded to 0.1 images/s, which moves their
    # ratio by up to 0.05 / rate each (a few hundredths on a loaded machine, where the rates are small).
    ratio = result["pipeline_images_per_s"] / result["premade_images_per_s"]
    slack = 0.0005 + 0.05 * ratio * (1 / result["pipeline_images_per_s"] + 1 / result["premade_images_per_s"])
    assert result["pipeline_over_premade"] == pytest.approx(ratio, abs=slack)


def test_training_rates_are_stored_per_model_and_precision_where_the_plan_reads_them(tmp_path, monkeypatch):
    from fer_utils.report.plan import bench_file, bench_rates

    monkeypatch.chdir(tmp_path)
    for model, rate in (("vgg_fer", 9000.0), ("simple_cnn", 50000.0), ("vgg_fer", 10000.0)):
        store_training_rate({"device": "cuda:0", "precision": "cuda bf16", "model": model, "pipeline_images_per_s": rate})
    store_training_rate({"device": "cpu", "precision": "cpu fp32", "model": "vgg_fer", "pipeline_images_per_s": 80.0})
    assert bench_rates(tmp_path / bench_file("cuda bf16")) == {"vgg_fer": 10000.0, "simple_cnn": 50000.0}
    # A CPU without native bf16 keeps its own rates: they never replace those of one with it.
    store_training_rate({"device": "cpu", "precision": "cpu bf16", "model": "vgg_fer", "pipeline_images_per_s": 500.0})
    assert bench_rates(tmp_path / bench_file("cpu fp32")) == {"vgg_fer": 80.0}
    assert bench_rates(tmp_path / bench_file("cpu bf16")) == {"vgg_fer": 500.0}


def test_cli_lists_commands_and_rejects_unknown(capsys):
    assert main([]) == 0
    assert "predict" in capsys.readouterr().out
    assert main(["no-such-command"]) == 2


def test_concurrent_training_reports_the_aggregate_of_processes_started_together(monkeypatch):
    from fer_utils.bench import benchmark_concurrent_training

    monkeypatch.delenv("FER_DATA_DIR", raising=False)  # the processes train on random faces
    result = benchmark_concurrent_training("simple_cnn", "cpu", processes=2, batch_size=16, steps=2)
    assert result["processes"] == 2 and len(result["per_process_pipeline_images_per_s"]) == 2
    assert result["pipeline_images_per_s"] == min(result["per_process_pipeline_images_per_s"])
    assert result["aggregate_pipeline_images_per_s"] == pytest.approx(2 * result["pipeline_images_per_s"], abs=0.1)
    assert result["epoch_seconds_at_pipeline_rate"] == pytest.approx(28709 / result["pipeline_images_per_s"], rel=1e-3)


def test_bench_train_runs_several_models_and_rejects_an_unknown_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FER_DATA_DIR", raising=False)
    args = ["bench", "train", "--device", "cpu", "--batch-size", "16", "--steps", "1", "--json", "out.json"]
    assert main([*args, "--model", "simple_cnn", "vgg_small", "--augment", "crop", "--channels-last"]) == 0
    results = json.loads((tmp_path / "out.json").read_text())
    assert [r["model"] for r in results] == ["simple_cnn", "vgg_small"]
    assert all(r["augment"] == "crop" and r["channels_last"] for r in results)
    assert main([*args, "--model", "simple_cnn", "vgg_small"]) == 2  # out.json exists: never replaced unasked
    assert "out.json: exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--model", "simple_cnn", "no_such_net", "--processes", "2"]) == 2
    assert "unknown model 'no_such_net'" in capsys.readouterr().err


def test_bench_train_precisions_prints_the_four_columns(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FER_DATA_DIR", raising=False)
    assert main(["bench", "train", "--device", "cpu", "--batch-size", "16", "--steps", "1", "--precisions",
                 "--model", "simple_cnn", "--json", "out.json"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| simple_cnn |")]
    assert len(table) == 1 and len(table[0].split("|")) == 7 and "fp32 + channels_last" in out
    results = json.loads((tmp_path / "out.json").read_text())
    assert [(r["precision"].endswith("fp32"), r["channels_last"]) for r in results][:2] == [(True, False), (True, True)]
