"""Training engine, optimizer/schedule factories, LR finder, experiment cache and train CLI (CPU)."""
from __future__ import annotations

import copy
import json
import shutil
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fer_utils.models.autoencoder import conv_autoencoder, encoder_state
from fer_utils.models.checkpoints import load_model, save_checkpoint
from fer_utils.cli import main
from fer_utils.data import FaceData, random_subset, to_model_input
from fer_utils.evaluate import classification_metrics, predict_proba
from fer_utils.experiments import cached_lr_find
from fer_utils.experiments.cache import config_hash
from fer_utils.experiments.runs import DataSpec, Splits, experiment_config, load_splits, run_experiment
from fer_utils.experiments.study import results_table
from fer_utils.models import count_parameters
from fer_utils.models.pretrained import file_digest
from fer_utils.train import TrainConfig, create_optimizer, create_scheduler, fit, lr_find
from fer_utils.train import run_folder
from fer_utils.train.config import CPU_AMP_KEY
from fer_utils.train.autoencoder import PRETRAIN_CONFIG, pretrain_autoencoder
from fer_utils.train.engine import TrainStep, class_weights
from fer_utils.train.lr_finder import suggest_lr

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def squares(n: int, size: int = 24, seed: int = 0) -> FaceData:
    """Noise with a bright 5x5 square whose position (3x3 grid) encodes the class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    images = rng.integers(0, 90, (n, size, size)).astype(np.uint8)
    step = (size - 4) // 3
    for i, c in enumerate(labels):
        r, col = divmod(int(c), 3)
        images[i, 2 + r * step:7 + r * step, 2 + col * step:7 + col * step] = 230
    meta = pd.DataFrame({"split": "", "subject": "", "sequence": np.arange(n).astype(str), "frame": 0,
                         "source": "synthetic"})
    return FaceData(images, labels, CLASSES, meta, name="squares")


def tiny_cnn(num_classes: int = 7, width: int = 8) -> nn.Module:
    """A small CNN with batch norm and dropout (so resume must restore running stats and RNG)."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
        nn.Dropout(0.2), nn.Linear(18 * width, num_classes),
    )


def test_fit_learns_synthetic_squares():
    train, val = squares(400, size=20), squares(200, size=20, seed=1)
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=4, batch_size=32, lr=0.05, augment="none", scheduler="onecycle")
    result = fit(tiny_cnn(), train, val, cfg, progress=False)
    assert result.best_val_acc > 0.95
    assert list(result.history.columns) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
    probs = predict_proba(result.model, val)
    assert classification_metrics(val.labels, probs, CLASSES)["accuracy"] == pytest.approx(result.best_val_acc)


def _weights_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("optimizer,scheduler,extra", [
    ("sgd", "onecycle", {}), ("adamw", "plateau", {}),
    ("sgd", "cosine", dict(ema_decay=0.9, mixup_alpha=0.4, cutmix_alpha=1.0, augment="crop", sam_rho=0.05)),
])
def test_resume_equals_uninterrupted(tmp_path, optimizer, scheduler, extra):
    train, val = squares(160, size=16), squares(64, size=16, seed=1)
    cfg = TrainConfig(**{**dict(epochs=4, batch_size=32, lr=0.01, optimizer=optimizer, scheduler=scheduler,
                                augment="standard", label_smoothing=0.1, class_weighting=True, grad_clip=1.0,
                                plateau_patience=0), **extra})
    torch.manual_seed(1)
    full = fit(tiny_cnn(), train, val, cfg, run_dir=tmp_path / "full", progress=False)

    def interrupt(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    torch.manual_seed(1)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_cnn(), train, val, cfg, run_dir=tmp_path / "cut", progress=False, on_epoch_end=interrupt)
    torch.manual_seed(99)  # a differently initialised model: everything must come from last.pt
    resumed = fit(tiny_cnn(), train, val, cfg, run_dir=tmp_path / "cut", progress=False, resume=True)

    assert _weights_equal(full.model, resumed.model)
    assert resumed.best_epoch == full.best_epoch
    cols = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]
    pd.testing.assert_frame_equal(full.history[cols], resumed.history[cols])
    last_full = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    last_cut = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert all(torch.equal(last_full["model_state"][k], last_cut["model_state"][k]) for k in last_full["model_state"])
    if cfg.ema_decay is not None:
        assert all(torch.equal(last_full["ema_state"][k], last_cut["ema_state"][k]) for k in last_full["ema_state"])


def test_ctrl_c_during_a_checkpoint_write_keeps_the_old_file_and_reads_as_a_stop(tmp_path, monkeypatch):
    """Ctrl-C inside ``torch.save`` comes out as a ``RuntimeError`` from its zip writer ("unexpected pos").
    The write is atomic, so the previous ``last.pt`` stays whole and no temporary file is left, and the
    CLI finds the interrupt behind the error (a stop, exit 130, not a failure). Python's own Ctrl-C
    handler is set for the test: a suite started with SIGINT ignored (``nohup``) has none."""
    from fer_utils.cli import interrupt_behind

    save_checkpoint(tmp_path / "last.pt", {"w": torch.ones(100_000)}, model_name="tiny", classes=["a"])
    real_save = torch.save
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    class Interrupting:
        """A file that receives SIGINT on its third write, in the middle of the weights."""

        def __init__(self, handle):
            self.handle, self.writes = handle, 0

        def write(self, data):
            self.writes += 1
            if self.writes == 3:
                signal.raise_signal(signal.SIGINT)
            return self.handle.write(data)

        def flush(self):
            self.handle.flush()

    monkeypatch.setattr(torch, "save", lambda obj, handle: real_save(obj, Interrupting(handle)))
    try:
        with pytest.raises(BaseException) as stopped:
            save_checkpoint(tmp_path / "last.pt", {"w": torch.zeros(100_000)}, model_name="tiny", classes=["a"])
    finally:
        signal.signal(signal.SIGINT, previous)
    monkeypatch.undo()
    assert isinstance(interrupt_behind(stopped.value), KeyboardInterrupt)
    assert interrupt_behind(RuntimeError("a plain failure")) is None
    assert torch.equal(torch.load(tmp_path / "last.pt", weights_only=True)["model_state"]["w"], torch.ones(100_000))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_ema_is_what_is_validated_kept_and_returned(tmp_path):
    train, val = squares(160, size=16), squares(64, size=16, seed=1)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, augment="none", ema_decay=0.8)
    torch.manual_seed(1)
    result = fit(tiny_cnn(), train, val, cfg, run_dir=tmp_path, progress=False)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert int(last["ema_state"]["n_averaged"]) == 3 * (160 // 32)  # one update per step
    # validation scored the average: the returned (best) weights reproduce the best validation accuracy
    acc = classification_metrics(val.labels, predict_proba(result.model, val), CLASSES)["accuracy"]
    assert acc == pytest.approx(result.best_val_acc)
    assert all(torch.equal(v, result.model.state_dict()[k]) for k, v in best["model_state"].items())
    assert result.best_epoch == 3  # best.pt: the last epoch's average, batch-norm statistics included
    averaged = {k.removeprefix("module."): v for k, v in last["ema_state"].items() if k != "n_averaged"}
    assert all(torch.equal(averaged[k], v) for k, v in best["model_state"].items())
    trained = last["model_state"]
    assert not torch.equal(trained["1.running_mean"], best["model_state"]["1.running_mean"])


def test_ema_warmup_follows_the_weights_early_then_settles_at_its_decay():
    """Update t mixes in 1 - min(decay, (1 + t) / (10 + t)) of the weights: 9/11 at t = 1, 1 - decay late;
    without the warm-up, 1 - decay from the start."""
    from fer_utils.train.engine import create_ema

    model = nn.Linear(1, 1, bias=False)
    warmed, plain = (create_ema(model, TrainConfig(ema_decay=0.99, ema_warmup=w)) for w in (True, False))
    expected = {warmed: 0.0, plain: 0.0}
    for t in range(400):
        with torch.no_grad():
            model.weight.fill_(float(t))
        for ema in (warmed, plain):
            ema.update_parameters(model)  # t = 0: a copy
            decay = 0.0 if t == 0 else min(0.99, (1 + t) / (10 + t)) if ema is warmed else 0.99
            expected[ema] = decay * expected[ema] + (1 - decay) * t
            assert ema.module.weight.item() == pytest.approx(expected[ema], rel=1e-5)
        if t == 1:
            assert warmed.module.weight.item() == pytest.approx(9 / 11)
    # on a ramp a plain EMA trails by decay / (1 - decay) = 99 steps; the warmed one, still at 400/409, by far less
    assert 399 - plain.module.weight.item() == pytest.approx(99, abs=2)
    assert 399 - warmed.module.weight.item() < 50


def test_later_fields_leave_older_config_identities_alone():
    """Configs without EMA / mixup / SAM hash (and resume) as before these fields existed."""
    later = ("ema_decay", "mixup_alpha", "cutmix_alpha", "sam_rho", "ema_warmup")
    older = {k: v for k, v in TrainConfig(amp=False).to_dict().items() if k not in later}
    assert TrainConfig.from_dict(older).identity() == {k: v for k, v in older.items() if k != "checkpoint_every"}
    # amp autocasts on CPU now: an amp run's identity is not the one stored when amp meant fp32 on CPU
    with_amp = {**older, "amp": True}
    assert TrainConfig.from_dict(with_amp).identity() == {**{k: v for k, v in with_amp.items()
                                                             if k != "checkpoint_every"}, CPU_AMP_KEY: True}
    assert TrainConfig(ema_decay=0.999, cutmix_alpha=1.0).identity()["ema_decay"] == 0.999
    assert TrainConfig(sam_rho=0.05).identity()["sam_rho"] == 0.05
    assert TrainConfig(ema_decay=0.999, ema_warmup=True).identity()["ema_warmup"] is True
    for bad in (dict(ema_decay=1.0), dict(mixup_alpha=-1.0), dict(sam_rho=-0.1), dict(sam_rho=float("nan")),
                dict(ema_warmup=True)):
        with pytest.raises(ValueError, match="ema_decay|mixup_alpha|sam_rho"):
            TrainConfig(**bad)


def test_sam_steps_with_the_gradient_at_the_sharpest_nearby_weights():
    """One SAM step, by hand: g at w, w' = w + rho g/|g|, w - lr * grad(w'); batch-norm statistics are
    updated once, by the pass at w (the pass at w' leaves them alone)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    before = copy.deepcopy(model)
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                     TrainConfig(sam_rho=0.05, amp=False), torch.device("cpu"))  # fp32, as the hand computation
    step(x, y)

    probe, stats = copy.deepcopy(before), copy.deepcopy(before)
    grads = torch.autograd.grad(nn.functional.cross_entropy(probe(x), y), list(probe.parameters()))
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    with torch.no_grad():
        for p, g in zip(probe.parameters(), grads):
            p.add_(0.05 * g / norm)
    sharp = torch.autograd.grad(nn.functional.cross_entropy(probe(x), y), list(probe.parameters()))
    expected = [p.detach() - 0.1 * g for p, g in zip(before.parameters(), sharp)]
    assert all(torch.allclose(p, e, atol=1e-6) for p, e in zip(model.parameters(), expected))
    plain = [p.detach() - 0.1 * g for p, g in zip(before.parameters(), grads)]  # what SGD alone would do
    assert not all(torch.allclose(p, e, atol=1e-6) for p, e in zip(model.parameters(), plain))
    stats(x)
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), stats.buffers()))



def test_checkpoint_every_writes_last_pt_every_n_epochs_and_resumes_exactly(tmp_path):
    train, val = squares(160, size=16), squares(64, size=16, seed=1)
    cfg = TrainConfig(epochs=5, batch_size=32, lr=0.01, augment="standard", checkpoint_every=2)
    written = []

    def watch(row):
        last = tmp_path / "full" / "last.pt"
        written.append(torch.load(last, weights_only=True)["epoch"] if last.is_file() else None)
        if row["epoch"] == 3:  # what a kill during epoch 4 leaves behind
            shutil.copytree(tmp_path / "full", tmp_path / "killed", ignore=shutil.ignore_patterns(".lock*"))

    def interrupt(row):
        if row["epoch"] == 3:
            raise KeyboardInterrupt

    torch.manual_seed(1)
    full = fit(tiny_cnn(), train, val, cfg, run_dir=tmp_path / "full", progress=False, on_epoch_end=watch)
    assert written == [None, 2, 2, 4, 5]
    torch.manual_seed(1)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_cnn(), train, val, cfg, run_dir=tmp_path / "cut", progress=False, on_epoch_end=interrupt)
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["epoch"] == 3  # written on the way out
    cols = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]
    for folder, every in (("killed", 2), ("cut", None)):  # checkpoint_every may change on resume
        torch.manual_seed(99)
        resumed = fit(tiny_cnn(), train, val, replace(cfg, checkpoint_every=every), run_dir=tmp_path / folder,
                      progress=False, resume=True)
        assert _weights_equal(full.model, resumed.model) and resumed.best_epoch == full.best_epoch
        pd.testing.assert_frame_equal(full.history[cols], resumed.history[cols])
    splits = Splits(train, val)
    assert config_hash(experiment_config("m", None, splits, cfg)) == config_hash(
        experiment_config("m", None, splits, replace(cfg, checkpoint_every=None)))

def test_a_long_epoch_writes_last_pt_whatever_the_interval(tmp_path, monkeypatch):
    """A large model checkpoints every 5 epochs, but an epoch ending 10 minutes after the last write
    writes ``last.pt`` too: a run killed without warning loses at most about that much work."""
    clock = [0.0]
    monkeypatch.setattr(run_folder.time, "monotonic", lambda: clock[0])
    model = tiny_cnn()
    writer = run_folder.CheckpointWriter(tmp_path, dict(model_name="tiny", classes=list(CLASSES)), every=5)
    history, saved = [], []
    for epoch, seconds in enumerate((60, 60, 500, 60, 700, 60), start=1):  # minutes 1, 2, 10.3, 11.3, 23, 24
        clock[0] += seconds
        history.append(dict(epoch=epoch, val_acc=0.5))
        writer.epoch_done(history, 1, False, model, model, lambda: dict(epoch=epoch))
        saved.append(torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] if (tmp_path / "last.pt").is_file()
                     else None)
    # epoch 3 ends 620 s after the start, epoch 5 is the 5th, epoch 6 comes 60 s after that write
    assert saved == [None, None, 3, 3, 5, 5]


def test_run_dir_contents_and_weights_only_checkpoints(tmp_path):
    train, val = squares(96, size=16), squares(32, size=16, seed=1)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.01, scheduler="cosine", augment="light", channels_last=True)
    result = fit(tiny_cnn(), train, val, cfg, run_dir=tmp_path, progress=False,
                 model_name="tiny", model_kwargs={"width": 8})
    for name in ("config.json", "history.csv", "history.json", "best.pt", "last.pt"):
        assert (tmp_path / name).is_file(), name
    for name in ("best.pt", "last.pt"):
        ckpt = torch.load(tmp_path / name, map_location="cpu", weights_only=True)
        assert ckpt["model_name"] == "tiny" and ckpt["model_kwargs"] == {"width": 8}
        assert ckpt["classes"] == list(CLASSES) and ckpt["config"] == cfg.to_dict()
        assert ckpt["preprocessing"]["size"] == 16
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert {"optimizer_state", "scheduler_state", "scaler_state", "rng_state", "history", "epoch"} <= set(last)
    assert isinstance(last["rng_state"]["torch"], torch.Tensor)
    assert json.loads((tmp_path / "config.json").read_text())["train"] == cfg.to_dict()
    history = json.loads((tmp_path / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2] == result.history["epoch"].tolist()
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert all(torch.equal(v, result.model.state_dict()[k]) for k, v in best["model_state"].items())


def test_early_stopping_keeps_best(tmp_path):
    train, val = squares(64, size=16), squares(32, size=16, seed=1)
    cfg = TrainConfig(epochs=6, batch_size=32, lr=1e-9, scheduler="none", augment="none",
                      early_stopping_patience=2)
    result = fit(tiny_cnn(), train, val, cfg, run_dir=tmp_path, progress=False)
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1
    resumed = fit(tiny_cnn(), train, val, cfg, run_dir=tmp_path, progress=False, resume=True)
    assert len(resumed.history) == 3  # a finished run stays finished


def test_resume_with_changed_config_is_refused(tmp_path):
    train = squares(64, size=16)
    cfg = TrainConfig(epochs=1, batch_size=32, augment="none")
    fit(tiny_cnn(), train, None, cfg, run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="lr"):
        fit(tiny_cnn(), train, None, replace(cfg, lr=0.5), run_dir=tmp_path, progress=False, resume=True)


def test_train_config_validation():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig.from_dict({"epochs": 3, "learning_rate": 0.1})
    assert TrainConfig.from_dict(TrainConfig(lr=0.3).to_dict()) == TrainConfig(lr=0.3)


def test_class_weights_inverse_frequency():
    w = class_weights(np.array([0, 0, 0, 1, 2, 2]), 4)  # "balanced" over the 3 classes present, 0 for class 3
    assert torch.allclose(w, torch.tensor([6 / 9, 6 / 3, 6 / 6, 0.0]))


def _lrs(name: str, epochs: int = 4, steps: int = 5, **kw) -> list[float]:
    opt = create_optimizer(nn.Linear(2, 2), "sgd", lr=0.1, weight_decay=1e-4)
    sched = create_scheduler(opt, name, epochs=epochs, steps_per_epoch=steps, **kw)
    out = []
    for _ in range(epochs):
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step_batch()
        sched.step_epoch(0.5)  # constant monitored value: plateau reduces
    return out


def test_schedulers_shapes():
    onecycle = _lrs("onecycle")
    assert max(onecycle) == pytest.approx(0.1) and onecycle[0] < 0.01 and onecycle[-1] < 1e-3
    cosine = _lrs("cosine", warmup_epochs=1, min_lr=0.001)
    assert cosine[4] == pytest.approx(0.1) and cosine[0] == pytest.approx(0.02) and cosine[-1] < 0.01
    step = _lrs("step", step_size=2, gamma=0.5)
    assert step[0] == step[9] == 0.1 and step[10] == pytest.approx(0.05)
    plateau = _lrs("plateau", plateau_patience=1, gamma=0.1)
    assert plateau[0] == 0.1 and plateau[-1] < 0.1
    assert set(_lrs("none")) == {0.1}
    with pytest.raises(KeyError, match="known"):
        _lrs("warm_restarts")


def test_optimizer_groups_and_nesterov():
    model = tiny_cnn()
    sgd = create_optimizer(model, "sgd", lr=0.1, weight_decay=5e-4)
    assert sgd.param_groups[0]["nesterov"] and [g["weight_decay"] for g in sgd.param_groups] == [5e-4, 0.0]
    assert isinstance(create_optimizer(model, "adamw", lr=1e-3), torch.optim.AdamW)


def test_suggest_lr_on_a_known_curve():
    lrs = np.geomspace(1e-6, 1, 61)  # 10 points per decade
    losses = 2 - np.tanh(np.log10(lrs) + 3) + np.where(lrs > 0.1, 20 * (lrs - 0.1), 0)
    assert suggest_lr(lrs, losses) == pytest.approx(1e-3)  # steepest fall: the tanh's centre
    assert suggest_lr(lrs, losses, "min_div10") == pytest.approx(1e-2)  # minimum at 0.1
    early_min = np.r_[1.0, 0.5, np.linspace(0.6, 3, 59)]
    assert suggest_lr(lrs, early_min) == pytest.approx(lrs[1] / 10)  # no slope before the minimum to use
    with pytest.raises(KeyError, match="known"):
        suggest_lr(lrs, losses, "valley")
    settling = losses + np.where(np.arange(61) < 3, 0.5 * (3 - np.arange(61)), 0)  # a moving average's start
    assert suggest_lr(lrs, settling) == pytest.approx(1e-3)  # its steep first points are not the suggestion


def test_lr_find_suggests_a_working_lr_stops_on_divergence_and_restores_the_model():
    torch.manual_seed(0)
    model = tiny_cnn().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(batch_size=32, augment="none", amp=False)  # SGD: squares learn at lr 0.05 (test_fit_learns...)
    result = lr_find(model, squares(128, size=16), cfg, start_lr=1e-5, end_lr=1e3, num_iter=60)
    assert 0.01 <= result.suggested_lr <= 0.5
    assert result.suggested_lr == suggest_lr(np.array(result.lrs), np.array(result.losses))
    assert result.min_loss_lr == result.lrs[int(np.argmin(result.losses))]
    assert len(result.lrs) < 60 and result.lrs[-1] < 10  # SGD diverges far below end_lr: the sweep stops there
    assert result.losses[-1] > 4 * min(result.losses) >= max(result.losses[:-1])  # the first point past 4 x min
    assert result.lrs == pytest.approx(1e-5 * (1e8 ** (1 / 59)) ** np.arange(len(result.lrs)))
    assert len(result.raw_losses) == len(result.losses)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and not model.training


def test_pretrain_autoencoder_reconstructs_with_the_engine():
    faces = squares(64)
    cfg = replace(PRETRAIN_CONFIG, epochs=4, batch_size=16, lr=3e-3)
    torch.manual_seed(0)
    ae = conv_autoencoder(img_size=24)
    losses = pretrain_autoencoder(ae, faces, cfg)
    assert len(losses) == 4 and losses[-1] < 0.5 * losses[0] and not ae.training
    x = to_model_input(faces.images[:8])
    with torch.no_grad():
        assert nn.functional.mse_loss(ae(x), x).item() < losses[0]
    torch.manual_seed(0)
    assert pretrain_autoencoder(conv_autoencoder(img_size=24), faces, cfg) == losses  # seeded batches



def test_lr_find_is_cached_by_config(tmp_path, monkeypatch):
    data, cfg = squares(128, size=24), TrainConfig(batch_size=32, augment="standard")
    kwargs = dict(model_kwargs={"img_size": 24}, start_lr=1e-5, num_iter=20, device="cpu")
    first = cached_lr_find("find", "simple_cnn", data, cfg, tmp_path, **kwargs)
    [stored] = tmp_path.glob("find-*.json")
    monkeypatch.setattr("fer_utils.experiments.lr_search.lr_find", lambda *a, **k: pytest.fail("not cached"))
    assert cached_lr_find("find", "simple_cnn", data, cfg, tmp_path, **kwargs) == first
    assert json.loads(stored.read_text())["result"]["suggested_lr"] == first.suggested_lr
    monkeypatch.undo()
    other = cached_lr_find("find", "simple_cnn", data, replace(cfg, seed=1), tmp_path, **kwargs)
    assert len(list(tmp_path.glob("find-*.json"))) == 2 and other.raw_losses != first.raw_losses
    stored.write_text(stored.read_text()[:100])  # a truncated result: named once and computed again
    with pytest.warns(UserWarning, match=f"{stored.name}: the stored result cannot be read"):
        again = cached_lr_find("find", "simple_cnn", data, cfg, tmp_path, **kwargs)
    assert again == first and json.loads(stored.read_text())["result"]["suggested_lr"] == first.suggested_lr

def test_experiment_cache(tmp_path):
    splits = Splits(squares(96), squares(32, seed=1), squares(48, seed=2), test_split="synthetic")
    cfg = TrainConfig(epochs=1, batch_size=32, augment="none")
    kwargs = {"img_size": 24}
    first = run_experiment("cnn", "simple_cnn", kwargs, splits, cfg, results_root=tmp_path, progress=False)
    assert not first["cached"] and first["complete"] and first["test"]["n"] == 48
    run_dir = tmp_path / f"cnn-{first['hash'][:8]}"
    assert first["paths"]["run_dir"] == str(run_dir) and first["paths"]["checkpoint"] is None
    assert not (run_dir / "last.pt").exists() and (run_dir / "predictions.npz").is_file()
    assert first["hash"] == config_hash(json.loads((run_dir / "config.json").read_text())["config"])
    stamp = (run_dir / "history.csv").stat().st_mtime_ns

    again = run_experiment("cnn", "simple_cnn", kwargs, splits, cfg, results_root=tmp_path, progress=False)
    assert again["cached"] and again["test"] == first["test"]
    assert (run_dir / "history.csv").stat().st_mtime_ns == stamp

    changed = run_experiment("cnn", "simple_cnn", kwargs, splits, cfg, results_root=tmp_path, seed=1,
                             progress=False, keep_checkpoint=True)
    assert not changed["cached"] and changed["hash"] != first["hash"]
    assert changed["paths"]["checkpoint"] is not None

    metrics = run_dir / "metrics.json"
    metrics.write_text(metrics.read_text()[:200])  # a truncated result: named in one line, trained again
    with pytest.warns(UserWarning, match=f"{run_dir.name}: the stored result cannot be read"):
        redone = run_experiment("cnn", "simple_cnn", kwargs, splits, cfg, results_root=tmp_path, progress=False)
    assert not redone["cached"] and json.loads(metrics.read_text())["complete"] is True


def test_encoder_weights_are_identified_by_content_and_not_needed_to_load(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "encoder.pt"
    torch.save(encoder_state(conv_autoencoder(img_size=24)), weights)
    moved = tmp_path / "elsewhere" / "same_encoder.pt"
    moved.parent.mkdir()
    moved.write_bytes(weights.read_bytes())
    splits = Splits(squares(64), squares(32, seed=1), None, test_split=None)
    cfg = TrainConfig(epochs=1, batch_size=32, augment="none")
    configs = [experiment_config("cae_classifier", {"img_size": 24, "encoder_weights": str(p)}, splits, cfg)
               for p in (weights, moved)]
    assert config_hash(configs[0]) == config_hash(configs[1])
    assert configs[0]["model"]["kwargs"]["encoder_weights"] == f"sha256:{file_digest(weights)}"

    result = run_experiment("cae", "cae_classifier", {"img_size": 24, "encoder_weights": str(weights)}, splits, cfg,
                            results_root=tmp_path, progress=False, keep_checkpoint=True)
    weights.unlink()
    moved.unlink()
    model, ckpt = load_model(result["paths"]["checkpoint"])
    assert ckpt["model_kwargs"] == {"img_size": 24}
    assert all(torch.equal(v, ckpt["model_state"][k]) for k, v in model.state_dict().items())
    assert results_table(tmp_path)["params"].tolist() == [count_parameters(model)]


def test_load_splits_holdout_and_subset():
    data = squares(200)
    data.meta["split"] = np.where(np.arange(200) < 150, "Training", "PublicTest")
    splits = load_splits(DataSpec(val="holdout", test="PublicTest"), data=data)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (135, 15, 50)
    small = load_splits(DataSpec(val="PublicTest", test=None, subset=20), data=data)
    assert (len(small.train), len(small.val), small.test) == (20, 20, None)


def test_train_subset_is_stratified_and_leaves_validation_and_test_whole():
    data = squares(200)
    data.meta["split"] = np.where(np.arange(200) < 150, "Training", "PublicTest")
    whole = load_splits(DataSpec(val="holdout", test="PublicTest"), data=data)
    cpu = load_splits(DataSpec(val="holdout", test="PublicTest", train_subset=45), data=data)
    assert (len(cpu.train), len(cpu.val), len(cpu.test)) == (45, 15, 50)
    assert np.array_equal(cpu.val.images, whole.val.images) and np.array_equal(cpu.test.images, whole.test.images)
    assert set(cpu.train.meta.index) <= set(whole.train.meta.index)
    share = np.bincount(cpu.train.labels, minlength=7) / 45
    assert np.abs(share - np.bincount(whole.train.labels, minlength=7) / 135).max() < 0.05
    assert "train_subset" not in DataSpec().to_dict()  # unset: experiment hashes of older results still match


def _small_real_cnn() -> nn.Module:
    """About 1.6 M multiply-adds per 48x48 face: cheap enough for a few CPU epochs."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, stride=2, padding=2), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 7),
    )


@pytest.mark.realdata
def test_learns_real_fer2013_subset(fer2013):
    rng = np.random.default_rng(0)
    train, test = fer2013.split("Training"), fer2013.split("PublicTest")
    train = train.subset(rng.choice(len(train), 3000, replace=False))
    test = test.subset(rng.choice(len(test), 1000, replace=False))  # the file is sorted by class
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=4, batch_size=32, lr=0.05, weight_decay=1e-4, augment="none")
    result = fit(_small_real_cnn(), train, None, cfg, progress=False)
    acc = classification_metrics(test.labels, predict_proba(result.model, test), test.classes)["accuracy"]
    majority = np.bincount(test.labels).max() / len(test)  # always "happy": about 0.26
    assert acc > 0.30 > majority  # about 0.38 with this seed


@pytest.mark.realdata
def test_init_from_fine_tunes_the_shipped_model_and_refuses_another_architecture_in_one_line(tmp_path, data_dir,
                                                                                             capsys):
    shipped = Path(__file__).resolve().parents[1] / "results" / "best_model.pt"
    width32 = ["--model", "vgg_gap", "--model-kwargs", '{"width": 32}']
    common = ["--data-dir", str(data_dir), "--subset", "128", "--batch-size", "64", "--epochs", "1",
              "--device", "cpu", "--no-progress", "--init-from", str(shipped)]
    # a learning rate of 1e-9: the run keeps the shipped weights, so it scores as the shipped model does
    still = ["--lr", "1e-9", "--momentum", "0", "--weight-decay", "0", "--augment", "none"]
    assert main(["train", *width32, *common, *still, "--out", str(tmp_path / "tuned")]) == 0
    source = torch.load(shipped, weights_only=True)["model_state"]
    tuned = torch.load(tmp_path / "tuned" / "best.pt", weights_only=True)["model_state"]
    convs = [k for k, v in source.items() if v.ndim == 4]
    assert convs and all(torch.allclose(tuned[k], source[k].float(), atol=1e-6) for k in convs)
    info = json.loads((tmp_path / "tuned" / "config.json").read_text())["init_from"]
    assert info == {"file": "best_model.pt", "sha256": file_digest(shipped, "sha256"), "kept_initialisation": []}
    assert json.loads((tmp_path / "tuned" / "metrics.json").read_text())["test"]["accuracy"] > 0.5  # scratch: ~0.25
    assert results_table(tmp_path).set_index("name").loc["tuned", "init_from"] == "best_model.pt"  # report tables

    capsys.readouterr()
    assert main(["train", "--model", "vgg_gap", *common, "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "do not fit" in err and "'width': 32" in err and "--model-kwargs" in err
    assert not (tmp_path / "refused" / "config.json").exists()


@pytest.mark.realdata
def test_train_and_evaluate_cli(tmp_path, data_dir, fer2013):
    out = tmp_path / "run"
    code = main(["train", "--model", "simple_cnn", "--data", "fer2013", "--data-dir", str(data_dir),
                 "--epochs", "1", "--batch-size", "32", "--subset", "128", "--lr", "0.01",
                 "--augment", "light", "--sam-rho", "0.05", "--out", str(out), "--device", "cpu", "--no-progress"])
    assert code == 0
    for name in ("config.json", "history.csv", "history.json", "best.pt", "last.pt", "metrics.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["train"]["sam_rho"] == 0.05
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_split"] == "PublicTest" and metrics["test"]["n"] == 128  # no PrivateTest here
    model, ckpt = load_model(out / "best.pt", expected_classes=CLASSES)
    assert ckpt["model_name"] == "simple_cnn"

    report = tmp_path / "eval.json"
    code = main(["evaluate", "--checkpoint", str(out / "best.pt"), "--data", "fer2013", "--data-dir", str(data_dir),
                 "--split", "PublicTest", "--subset", "200", "--tta", "flip", "--out", str(report)])
    assert code == 0
    result = json.loads(report.read_text())
    assert result["split"] == "PublicTest" and result["n"] == 200 and result["tta"] == "flip"
    faces = random_subset(fer2013.split("PublicTest"), 200)  # the items the command drew
    probs = predict_proba(model, faces, tta="flip")
    hits = int((probs.argmax(1) == faces.labels).sum())  # counted by hand, not by classification_metrics
    assert result["accuracy"] == pytest.approx(hits / 200)
    assert np.trace(result["confusion"]["counts"]) == hits and np.sum(result["confusion"]["counts"]) == 200
