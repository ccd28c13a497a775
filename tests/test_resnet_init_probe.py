"""``scripts/resnet_init_probe.py``: both ResNet starts trained a few steps on real faces, scored on the hold-out."""
from __future__ import annotations

import json
import math

import pytest
from conftest import load_script

from fer_utils.errors import UsageError


@pytest.fixture(scope="module")
def init_probe():
    return load_script("resnet_init_probe")


def test_bad_arguments_are_one_line_and_exit_2(init_probe, capsys):
    assert init_probe.main(["--steps", "0"]) == 2
    assert capsys.readouterr().out.strip() == \
        "resnet_init_probe: --steps, --batch-size, --holdout-faces and --lr must be positive"
    assert init_probe.main(["--lr", "0.01", "-1"]) == 2  # every rate is checked, not only the first


@pytest.mark.realdata
def test_each_start_trains_and_is_scored_on_a_mixed_hold_out_sample(init_probe, fer2013):
    fit, holdout = init_probe.split_faces(fer2013, holdout_faces=64)
    assert len(set(holdout.labels)) > 1  # a random sample, not the class-sorted hold-out's first faces
    zero = init_probe.probe(fit, holdout, "resnet18", True, steps=3, batch_size=16, every=2)
    plain = init_probe.probe(fit, holdout, "resnet18", False, steps=3, batch_size=16, every=2)
    for result in (zero, plain):
        assert list(result["train_loss"]) == [1, 2, 3] and all(math.isfinite(v) for v in result["train_loss"].values())
        assert result["holdout_faces"] == 64 and math.isfinite(result["holdout_loss"])
    assert zero["train_loss"][1] != plain["train_loss"][1]  # the two starts differ from the first step
    with pytest.raises(UsageError, match="zero_init_last"):
        init_probe.probe(fit, holdout, "vgg_small", True, steps=1)  # only ResNets have the option


@pytest.mark.realdata
def test_one_start_at_several_rates_is_one_probe_per_rate(init_probe, fer2013, tmp_path, capsys):
    out = tmp_path / "probe.json"
    assert init_probe.main(["--model", "resnet18", "--steps", "1", "--batch-size", "8", "--holdout-faces", "16",
                            "--start", "zero", "--lr", "0.01", "0.05", "--json", str(out)]) == 0
    probes = json.loads(out.read_text())["probes"]
    assert [(p["zero_init_last"], p["lr"]) for p in probes] == [(True, 0.01), (True, 0.05)]
    assert probes[0]["train_loss"] == probes[1]["train_loss"]  # the first step's loss comes before any update
    assert capsys.readouterr().out.count("zero_init_last=True lr ") == 2
