"""Issue 14: every bad input gives one clear line (file, line/frame, what was expected) and exit
status 2, or a counted skip; nothing is lost or silently replaced. Inputs are built in tmp folders."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fer_utils.errors import DatasetError, ImageReadError, CheckpointError
from fer_utils.models.checkpoints import load_checkpoint, save_checkpoint
from fer_utils.cli import main
from fer_utils.data import FER2013_CLASSES, load_dataset
from fer_utils.data.fer2013 import load_fer2013
from fer_utils.data.images import read_image
from fer_utils.models import create_model
from fer_utils.predict.outputs import RUN_SUMMARY

PIXELS = 48 * 48


def pixel_text(seed: int) -> str:
    return " ".join(map(str, np.random.default_rng(seed).integers(0, 256, PIXELS)))


def write_fer_csv(path, n_train: int = 40, n_val: int = 20, extra: tuple[str, ...] = ()) -> None:
    """A small FER2013 CSV (Training + PublicTest rows), plus ``extra`` raw lines at the end."""
    rows = ["emotion,pixels,Usage"]
    rows += [f"{i % 7},{pixel_text(i)},{'Training' if i < n_train else 'PublicTest'}" for i in range(n_train + n_val)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([*rows, *extra]) + "\n")


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """Exit status and stderr of ``python -m fer_utils ARGV`` (argparse errors included)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def fer_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_fer_csv(root / "fer2013" / "fer2013.csv")
    return root


def train_args(data_dir, out, *extra: str) -> list[str]:
    return ["train", "--model", "simple_cnn", "--data-dir", str(data_dir), "--epochs", "1", "--batch-size", "16",
            "--test-split", "none", "--device", "cpu", "--no-progress", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def trained(fer_dir, tmp_path_factory):
    """A finished one-epoch run folder (copy it before changing it)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(train_args(fer_dir, out)) == 0
    return out


# ---- loss: run folders, divergence, evaluate --out ----------------------------------------------------


def test_train_refuses_a_finished_run_folder_unless_overwrite(fer_dir, trained, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    before = (out / "history.csv").read_bytes(), (out / "best.pt").read_bytes()
    code, err = run_cli(capsys, *train_args(fer_dir, out))
    assert code == 2 and "run folder is not empty" in one_error_line(err) and "--overwrite" in err
    assert ((out / "history.csv").read_bytes(), (out / "best.pt").read_bytes()) == before
    code, _ = run_cli(capsys, *train_args(fer_dir, out, "--overwrite"))
    assert code == 0 and json.loads((out / "metrics.json").read_text())["complete"] is True


def test_lock_keeps_a_second_training_process_out(fer_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
         "print('held', flush=True); time.sleep(60)", str(out / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err = run_cli(capsys, *train_args(fer_dir, out))
        assert code == 2 and "another training process is writing this run folder" in one_error_line(err)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    finally:
        holder.kill()
        holder.wait()
    code, _ = run_cli(capsys, *train_args(fer_dir, out))  # the OS released the lock of the killed process
    assert code == 0 and (out / "metrics.json").is_file()


def test_two_trainings_into_one_folder_at_once(fer_dir, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-m", "fer_utils", *train_args(fer_dir, out)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = sorted((p.wait(timeout=120), p.stderr.read()) for p in procs)
    assert [code for code, _ in results] == [0, 2]  # one trains, the other is refused with one line
    assert "another training process" in results[1][1] or "run folder is not empty" in results[1][1]
    assert json.loads((out / "metrics.json").read_text())["complete"] is True


def test_non_finite_loss_stops_training_without_a_complete_result(fer_dir, tmp_path, capsys):
    code, err = run_cli(capsys, *train_args(fer_dir, tmp_path / "inf", "--lr", "inf"))
    assert code == 2 and "--lr: expected a finite number > 0, got 'inf'" in err
    code, err = run_cli(capsys, *train_args(fer_dir, tmp_path / "huge", "--lr", "1e30"))
    assert code == 2 and "training diverged in epoch 1" in one_error_line(err)
    assert not (tmp_path / "huge" / "metrics.json").exists()


def test_resume_with_other_data_is_refused(fer_dir, trained, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    code, err = run_cli(capsys, *train_args(fer_dir, out, "--resume", "--subset", "20"))
    assert code == 2 and "last.pt: cannot resume, the train data differ" in one_error_line(err)


def test_evaluate_checks_out_before_computing(fer_dir, trained, tmp_path, capsys, monkeypatch):
    import fer_utils.evaluate.command as command

    monkeypatch.setattr(command, "evaluate_checkpoint", lambda *a, **k: pytest.fail("computed before checking --out"))
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "metrics.json"
    code, err = run_cli(capsys, "evaluate", "--checkpoint", str(trained / "best.pt"), "--data-dir", str(fer_dir),
                        "--out", str(out))
    assert code == 2 and f"{out}: cannot write the output here" in one_error_line(err)


def test_evaluate_refuses_a_nan_checkpoint(fer_dir, tmp_path, capsys):
    model = create_model("simple_cnn")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    path = save_checkpoint(tmp_path / "nan.pt", model, model_name="simple_cnn", classes=FER2013_CLASSES)
    code, err = run_cli(capsys, "evaluate", "--checkpoint", str(path), "--data-dir", str(fer_dir))
    assert code == 2 and f"{path}: non-finite (NaN/inf) weights" in one_error_line(err)


@pytest.mark.parametrize("kind", ["truncated", "empty", "pickled"])
def test_unreadable_checkpoints_name_their_path(trained, tmp_path, kind):
    path = tmp_path / "bad.pt"
    good = (trained / "best.pt").read_bytes()
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        torch.save({"model_state": {}, "model_name": "x", "extra": argparse.Namespace(a=1)}, path)  # any object
    with pytest.raises(CheckpointError, match=f"{path}: not a readable fer_utils checkpoint") as info:
        load_checkpoint(path)
    assert "weights_only=False" not in str(info.value)


# ---- the CLI contract: one line, exit 2, --debug ----------------------------------------------------------


def test_data_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    write_fer_csv(tmp_path / "fer2013.csv", extra=("9," + pixel_text(0) + ",Training",))
    args = train_args(tmp_path, tmp_path / "run")
    code, err = run_cli(capsys, *args)
    assert code == 2 and "fer2013.csv, line 62: emotion '9' is not an integer 0-6" in one_error_line(err)
    code, err = run_cli(capsys, *args, "--overwrite", "--debug")
    assert code == 2 and "Traceback" in err


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "simple_cnn", "--out", "x", "--weight-decay", "-1"], "--weight-decay: expected a finite number >= 0"),
    (["train", "--model", "simple_cnn", "--out", "x", "--warmup-epochs", "-3"], "--warmup-epochs: expected a finite number >= 0"),
    (["bench", "data", "--batch-size", "0"], "--batch-size: expected an integer >= 1"),
    (["bench", "train", "--steps", "0"], "--steps: expected an integer >= 1"),
    (["predict", "x.jpg", "--detect-side", "0"], "--detect-side: expected an integer >= 1"),
    (["bench", "predict", "--size", "100x100"], "--size: expected WxH of at least 320x240"),
])
def test_out_of_range_arguments_exit_2(argv, message, capsys):
    code, err = run_cli(capsys, *argv)
    assert code == 2 and message in err


def test_unknown_model_kwargs_are_one_line(fer_dir, tmp_path, capsys):
    code, err = run_cli(capsys, *train_args(fer_dir, tmp_path / "run", "--model-kwargs", '{"bogus": 1}'))
    assert code == 2 and "model 'simple_cnn': bad model arguments {'bogus': 1}" in one_error_line(err)


def test_unknown_model_and_dataset_names_are_one_line(fer_dir, trained, tmp_path, capsys):
    code, err = run_cli(capsys, *train_args(fer_dir, tmp_path / "run", "--model", "bogus"))
    assert code == 2 and "unknown model 'bogus'; known models: [" in one_error_line(err)
    code, err = run_cli(capsys, "evaluate", "--checkpoint", str(trained / "best.pt"), "--data", "nodata")
    assert code == 2 and "unknown dataset 'nodata'; known: [" in one_error_line(err)


def test_evaluate_errors_skip_counts_bad_rows(trained, tmp_path, capsys):
    write_fer_csv(tmp_path / "fer2013.csv", extra=("3,1 2 3,PublicTest",))
    base = ["evaluate", "--checkpoint", str(trained / "best.pt"), "--data-dir", str(tmp_path), "--split", "PublicTest"]
    code, err = run_cli(capsys, *base)
    assert code == 2 and "line 62: expected 2304 pixel values, got 3" in one_error_line(err)
    with pytest.warns(UserWarning, match=r"skipped 1 bad item\(s\) \{'pixel_count': 1\}"):
        code, _ = run_cli(capsys, *base, "--errors", "skip")
    assert code == 0


# ---- FER2013 CSV, cache -----------------------------------------------------------------------------------


def test_header_only_and_empty_csv(tmp_path, capsys):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n")
    with pytest.raises(DatasetError, match=f"{path}: header only, no data rows"):
        load_fer2013(tmp_path)
    path.write_text("")
    with pytest.raises(DatasetError, match=f"{path}: empty file; expected a FER2013 CSV"):
        load_fer2013(tmp_path)


def test_blank_lines_keep_line_numbers(tmp_path):
    rows = ["emotion,pixels,Usage", f"0,{pixel_text(0)},Training", "", "", f"1,{pixel_text(1)},Training",
            f"2,{pixel_text(2)},Nowhere"]
    (tmp_path / "fer2013.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DatasetError, match=r"line 6: Usage 'Nowhere'"):
        load_fer2013(tmp_path)
    (tmp_path / "fer2013.csv").write_text("\n".join(rows[:-1]) + "\n")
    assert list(load_fer2013(tmp_path, cache=False).meta["source"]) == ["fer2013.csv:2", "fer2013.csv:5"]


def test_two_fer2013_files_are_refused(tmp_path):
    write_fer_csv(tmp_path / "fer2013" / "fer2013.csv", n_train=3, n_val=0)
    (tmp_path / "fer2013" / "fer2013.csv.gz").write_bytes(b"")
    with pytest.raises(DatasetError, match="several FER2013 files"):
        load_fer2013(tmp_path)


def test_cache_concurrent_first_loads(tmp_path):
    write_fer_csv(tmp_path / "fer2013.csv", n_train=30, n_val=0)
    with ThreadPoolExecutor(3) as pool:
        sizes = list(pool.map(lambda _: len(load_fer2013(tmp_path)), range(3)))
    assert sizes == [30, 30, 30]
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".npz"]  # no temp file left


def test_unwritable_cache_dir_means_no_cache_with_one_warning(tmp_path, monkeypatch):
    write_fer_csv(tmp_path / "fer2013.csv", n_train=5, n_val=0)
    (tmp_path / "not_a_dir").write_text("")
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "not_a_dir"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(load_fer2013(tmp_path)) == 5 and len(load_fer2013(tmp_path)) == 5
    assert len([w for w in caught if "loading without a cache" in str(w.message)]) == 1


def test_corrupt_cache_entry_is_rebuilt(tmp_path):
    write_fer_csv(tmp_path / "fer2013.csv", n_train=5, n_val=0)
    load_fer2013(tmp_path)
    (entry,) = (tmp_path / "cache").iterdir()
    entry.write_bytes(entry.read_bytes()[:100])
    with pytest.warns(UserWarning, match=f"{entry}: corrupt cache entry"):
        assert len(load_fer2013(tmp_path)) == 5
    assert len(load_fer2013(tmp_path)) == 5  # rebuilt: read back without a warning


# ---- folders, images, videos, labels ----------------------------------------------------------------------


def face_png(path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((48, 48), value, np.uint8))


@pytest.mark.parametrize("bad, reason", [("broken_link", "broken_link"), ("fifo", "special_file"),
                                         ("nested_folder", "nested_folder")])
def test_odd_entries_in_class_folders(tmp_path, bad, reason):
    face_png(tmp_path / "happy" / "a.png")
    target = tmp_path / "happy" / "b.png"
    if bad == "broken_link":
        target.symlink_to(tmp_path / "missing.png")
    elif bad == "fifo":
        os.mkfifo(target)
    else:
        face_png(target / "c.png")
    with pytest.raises(DatasetError, match=f"{target}: "):
        load_dataset("folders", tmp_path)
    with pytest.warns(UserWarning, match=f"skipped 1 bad item.*{reason}"):
        data = load_dataset("folders", tmp_path, errors="skip")
    assert len(data) == 1 and data.skipped == {reason: 1}


def test_case_duplicate_frame_in_ckplus48(tmp_path):
    for frame in (11, 12, 13):
        face_png(tmp_path / "happy" / f"S010_006_{frame:08d}.png")
    shutil.copy(tmp_path / "happy" / "S010_006_00000013.png", tmp_path / "happy" / "S010_006_00000013.PNG")
    with pytest.raises(DatasetError, match="S010_006_00000013.png: same name as S010_006_00000013.PNG"):
        load_dataset("ckplus48", tmp_path)
    with pytest.warns(UserWarning, match="duplicate_file"):
        assert len(load_dataset("ckplus48", tmp_path, errors="skip")) == 3


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_decompression_bomb_names_the_file_and_is_skippable(tmp_path):
    side = 13500  # 182 M pixels, above Pillow's limit; 1-bit rows of zeros compress to a few KB
    raw = zlib.compress(b"\x00" * ((side + 7) // 8 + 1) * side, 9)
    path = tmp_path / "happy" / "bomb.png"
    path.parent.mkdir()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + _png_chunk(b"IDAT", raw) + _png_chunk(b"IEND", b""))
    with pytest.raises(ImageReadError, match=f"{path}: .*exceeds limit"):
        read_image(path)
    face_png(tmp_path / "happy" / "ok.png")
    with pytest.warns(UserWarning, match="unreadable_image"):
        assert len(load_dataset("folders", tmp_path, errors="skip")) == 1


def test_all_nan_tiff_is_refused(tmp_path):
    path = tmp_path / "nan.tif"
    assert cv2.imwrite(str(path), np.full((8, 8), np.nan, np.float32))
    with pytest.raises(ImageReadError, match=f"{path}: 64 NaN/inf pixel value"):
        read_image(path)


@pytest.mark.parametrize("text", ["nan", "inf"])
def test_ckplus_non_finite_label(tmp_path, text):
    label = tmp_path / "Emotion" / "S001" / "001" / "S001_001_00000002_emotion.txt"
    label.parent.mkdir(parents=True)
    label.write_text(f"   {text}\n")
    face_png(tmp_path / "cohn-kanade-images" / "S001" / "001" / "S001_001_00000001.png")
    with pytest.raises(DatasetError, match=f"{label}: emotion code '{text}' is not an integer 1-7"):
        load_dataset("ckplus", tmp_path)


def test_predict_reports_a_truncated_video_and_a_symlink_loop(tmp_path, capsys):
    rng = np.random.default_rng(0)
    video = tmp_path / "in" / "clip.avi"
    video.parent.mkdir()
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(40):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    (tmp_path / "in" / "loop.jpg").symlink_to("loop.jpg")
    face_png(tmp_path / "in" / "photo.png")
    ckpt = save_checkpoint(tmp_path / "m.pt", create_model("simple_cnn"), model_name="simple_cnn",
                           classes=FER2013_CLASSES)
    out = tmp_path / "out"
    main(["predict", str(tmp_path / "in"), "--checkpoint", str(ckpt), "--detector", "haar", "--out", str(out),
          "--device", "cpu", "--no-progress"])
    results = {os.path.basename(r["path"]): r for r in json.loads((out / RUN_SUMMARY).read_text())["results"]}
    assert results["photo.png"]["status"] == "no_face"
    assert results["loop.jpg"]["status"] == "error" and "looping symbolic link" in results["loop.jpg"]["message"]
    assert results["clip.avi"]["status"] == "error"
    assert "truncated or damaged video: frame" in results["clip.avi"]["message"]
    assert "of the 40 in its header cannot be decoded" in results["clip.avi"]["message"]
    summary = json.loads((out / "clip_summary.json").read_text())
    assert summary["partial"] is True and summary["frames_in_header"] == 40 > summary["frames_decoded"] > 0


# ---- property-based: the FER2013 CSV parser -------------------------------------------------------------

BAD_ROWS = {  # kind of defect -> (row text for a seed, skip reason)
    "label": (lambda s: f"7,{pixel_text(s)},Training", "label"),
    "usage": (lambda s: f"1,{pixel_text(s)},Nowhere", "usage"),
    "pixel_count": (lambda s: f"2,{pixel_text(s)[:-4]},Training", "pixel_count"),
    "pixel_value": (lambda s: f"3,256 {pixel_text(s).split(' ', 1)[1]},PublicTest", "pixel_value"),
    "token": (lambda s: f"4,x {pixel_text(s).split(' ', 1)[1]},PublicTest", "pixel_value"),
}
ROW = st.one_of(
    st.tuples(st.just("good"), st.integers(0, 6), st.sampled_from(["Training", "PublicTest", "PrivateTest"])),
    st.tuples(st.sampled_from(sorted(BAD_ROWS)), st.just(0), st.just("")),
    st.tuples(st.just("blank"), st.just(0), st.just("")),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, min_size=1, max_size=8))
def test_csv_parser_property(tmp_path, rows):
    lines, good, bad = ["emotion,pixels,Usage"], [], {}
    for seed, (kind, label, usage) in enumerate(rows):
        if kind == "good":
            lines.append(f"{label},{pixel_text(seed)},{usage}")
            good.append((len(lines), label, usage, seed))
        elif kind == "blank":
            lines.append("")
        else:
            lines.append(BAD_ROWS[kind][0](seed))
            bad[len(lines)] = BAD_ROWS[kind][1]
    path = tmp_path / "fer2013.csv"
    path.write_text("\n".join(lines) + "\n")
    if bad:
        with pytest.raises(DatasetError, match=rf"{path}, line ({'|'.join(map(str, bad))}): "):
            load_fer2013(path, cache=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skip report
        if not good:
            with pytest.raises(DatasetError, match=f"{path}: (no valid rows|header only, no data rows)"):
                load_fer2013(path, errors="skip", cache=False)
            return
        data = load_fer2013(path, errors="skip", cache=False)
    assert list(data.meta["source"]) == [f"fer2013.csv:{n}" for n, *_ in good]
    assert data.labels.tolist() == [label for _, label, _, _ in good]
    assert list(data.meta["split"]) == [usage for *_, usage, _ in good]
    expected = np.stack([np.array(pixel_text(seed).split(), np.uint8).reshape(48, 48) for *_, seed in good])
    assert np.array_equal(data.images, expected)
    assert sum(data.skipped.values()) == len(bad)
    assert data.skipped == {r: list(bad.values()).count(r) for r in set(bad.values())}


# ---- issue 29: nothing destroyed, any file name, wrong results become errors ---------------------------------


def predictions_file(path, sources, labels, probs=None, classes=FER2013_CLASSES, items="x"):
    """A predictions .npz as evaluate --save-probs writes it (rows uniform unless ``probs``)."""
    probs = np.full((len(labels), len(classes)), 1 / len(classes)) if probs is None else probs
    np.savez_compressed(path, y_true=np.asarray(labels), probs=probs, classes=np.array(classes),
                        items=np.array(items), sources=np.array(sources))
    return str(path)


def test_evaluate_never_writes_over_its_inputs_nor_existing_files(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = (run / "best.pt").read_bytes()
    for flag in ("--out", "--save-probs"):
        for extra in ((), ("--overwrite",)):
            code, err = run_cli(capsys, "evaluate", "--checkpoint", str(run / "best.pt"), flag, str(run / "best.pt"),
                                *extra)
            assert code == 2 and "is one of this command's inputs" in one_error_line(err)
    assert (run / "best.pt").read_bytes() == before
    rng = np.random.default_rng(0)
    a = predictions_file(tmp_path / "a.npz", ["s0", "s1", "s2"], [0, 1, 2], rng.dirichlet(np.ones(7), 3))
    existing = tmp_path / "old.json"
    existing.write_text("keep me")
    code, err = run_cli(capsys, "evaluate", "--probs", a, "--out", str(existing))
    assert code == 2 and "exists; pass --overwrite" in one_error_line(err) and existing.read_text() == "keep me"
    code, err = run_cli(capsys, "evaluate", "--probs", a, "--out", str(tmp_path))
    assert code == 2 and "is a folder" in one_error_line(err)
    code, err = run_cli(capsys, "evaluate", "--probs", a, "--save-probs", a, "--overwrite")
    assert code == 2 and "inputs" in one_error_line(err)
    assert run_cli(capsys, "evaluate", "--probs", a, "--out", str(existing), "--overwrite")[0] == 0
    assert json.loads(existing.read_text())["n"] == 3


def test_ensemble_members_are_matched_by_source_and_disagreements_refused(tmp_path, capsys):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(7), 4)
    sources, labels = ["r0", "r1", "r2", "r3"], np.array([0, 3, 3, 6])
    a = predictions_file(tmp_path / "a.npz", sources, labels, probs, items="a")
    order = [2, 0, 3, 1]  # the same items in another order (another fingerprint): rows follow the sources
    b = predictions_file(tmp_path / "b.npz", [sources[i] for i in order], labels[order], probs[order][:, ::-1].copy(),
                         items="b")
    assert run_cli(capsys, "evaluate", "--probs", a, b, "--save-probs", str(tmp_path / "ens.npz"))[0] == 0
    with np.load(tmp_path / "ens.npz") as ens:
        assert np.allclose(ens["probs"], (probs + probs[:, ::-1]) / 2) and list(ens["sources"]) == sources
    cases = {
        "relabelled": (dict(sources=sources, labels=(labels + 1) % 7), "4 items have other labels"),
        "fewer": (dict(sources=sources[:3], labels=labels[:3]), "lacks 1 of the 4 items"),
        "more": (dict(sources=[*sources, "r4"], labels=[*labels, 0]), "holds 5 items"),
        "nan": (dict(sources=sources, labels=labels, probs=np.full((4, 7), np.nan)), "NaN, infinite or negative"),
        "negative": (dict(sources=sources, labels=labels, probs=np.eye(7)[labels] * 2 - 1 / 7), "negative"),
        "five": (dict(sources=sources, labels=labels, probs=np.full((4, 5), 0.2)), "expected (4, 7)"),
        "transposed": (dict(sources=sources, labels=labels, probs=np.full((7, 4), 0.25)), "expected (4, 7)"),
        "flat": (dict(sources=sources, labels=labels, probs=np.full(28, 1 / 7)), "expected (4, 7)"),
    }
    for name, (kwargs, message) in cases.items():
        bad = predictions_file(tmp_path / f"{name}.npz", **kwargs)
        code, err = run_cli(capsys, "evaluate", "--probs", a, bad)
        assert code == 2 and f"{bad}: " in err and message in one_error_line(err), (name, err)


def test_checkpoints_that_do_not_fit_are_one_line(fer_dir, trained, tmp_path, capsys):
    text = tmp_path / "notes.pt"
    text.write_text("these are my notes, not weights\n" * 20)
    ckpt = torch.load(trained / "best.pt", weights_only=True)
    other = tmp_path / "other.pt"
    torch.save({**ckpt, "model_name": "vgg_small"}, other)  # simple_cnn weights under another architecture
    kwargs = tmp_path / "kwargs.pt"
    torch.save({**ckpt, "model_kwargs": {"dropout": 0.1, "width": 3}}, kwargs)
    for path, message in ((text, "not a readable fer_utils checkpoint"), (other, "weights do not fit"),
                          (kwargs, "weights do not fit")):
        for command in (["evaluate", "--data-dir", str(fer_dir)], ["predict", str(tmp_path / "x.png"), "--detector",
                                                                    "haar", "--out", str(tmp_path / "p")]):
            code = main([*command, "--checkpoint", str(path)])
            shown = "".join(capsys.readouterr())
            assert code == 2 and message in shown and "Traceback" not in shown, (path, command, shown)


def test_train_refuses_model_kwargs_the_data_cannot_take_before_writing(fer_dir, tmp_path, capsys):
    for i, kwargs in enumerate(('{"img_size": 64}', '{"img_size": 7}')):
        out = tmp_path / f"run{i}"
        code, err = run_cli(capsys, *train_args(fer_dir, out, "--model-kwargs", kwargs))
        assert code == 2 and "cannot take" in one_error_line(err) and "(48, 48)" in err
        assert not out.exists() or not any(p.name != ".lock" for p in out.iterdir())
        assert run_cli(capsys, *train_args(fer_dir, out))[0] == 0  # no stray config.json demands --overwrite


def test_resume_with_other_settings_is_one_line(fer_dir, trained, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    code, err = run_cli(capsys, *[a if a != "1" else "2" for a in train_args(fer_dir, out, "--resume")])
    assert code == 2 and "cannot resume, the training config differs in ['epochs']" in one_error_line(err)


def test_ctrl_c_and_sigterm_say_how_to_resume(fer_dir, tmp_path, capsys, monkeypatch):
    import signal
    import fer_utils.experiments.train_command as command

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "run", interrupted)
    code, err = run_cli(capsys, *train_args(fer_dir, tmp_path / "run"))
    assert code == 130 and "interrupted (Ctrl-C)" in err and "--resume" in err and "Traceback" not in err
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        pytest.skip("this process handles SIGTERM itself; the CLI leaves such a handler alone")
    monkeypatch.setattr(command, "run", lambda args: signal.raise_signal(signal.SIGTERM))
    code, err = run_cli(capsys, *train_args(fer_dir, tmp_path / "run"))
    assert code == 143 and "terminated (SIGTERM)" in err and "--resume" in err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_read_only_output_folder_is_one_line(fer_dir, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    code, err = run_cli(capsys, *train_args(fer_dir, folder / "run"))
    assert code == 2 and "Permission denied" in one_error_line(err)


def test_a_lock_file_left_behind_does_not_block(fer_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("12345")  # an older version's pid lock, or a crashed run's file
    code, _ = run_cli(capsys, *train_args(fer_dir, out))
    assert code == 0 and (out / "metrics.json").is_file()


def test_report_refuses_unknown_notebooks_smoke_values_and_broken_notebooks(data_dir, tmp_path, monkeypatch, capsys):
    from fer_utils.report.runner import main as report

    monkeypatch.setenv("FER_DATA_DIR", str(data_dir))
    for argv, message in ((["--only", "99"], "no notebook numbered 99"), (["--smoke", "7"], "invalid choice: 7")):
        code, err = run_cli_function(report, capsys, argv)
        assert code == 2 and message in err
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "fer_utils").mkdir()
    (tmp_path / "notebooks" / "03_broken.ipynb").write_text('{"cells": [')
    monkeypatch.chdir(tmp_path)
    for argv in (["--plan"], ["--engine", "script"]):
        code, err = run_cli_function(report, capsys, argv)
        assert code == 2 and "03_broken.ipynb: not a Jupyter notebook" in err and "Traceback" not in err


def run_cli_function(function, capsys, argv) -> tuple[int, str]:
    try:
        code = function(list(argv))
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def test_loaders_and_evaluate_take_file_names_of_any_bytes(tmp_path, capsys):
    root = os.fsencode(tmp_path / "faces")
    for label in (b"happy", b"sad"):
        os.makedirs(os.path.join(root, label))
        for i in range(3):
            with open(os.path.join(root, label, b"face\xff%d.png" % i), "wb") as handle:
                handle.write(cv2.imencode(".png", np.full((48, 48), 40 * i, np.uint8))[1].tobytes())
    data = load_dataset("folders", os.fsdecode(root))
    assert len(data) == 6 and data.meta["source"].str.contains("face\udcff").all()
    checkpoint = save_checkpoint(tmp_path / "m.pt", create_model("simple_cnn", num_classes=len(data.classes)),
                                 model_name="simple_cnn", classes=data.classes)
    probs = tmp_path / "p.npz"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", "folders", "--data-dir", os.fsdecode(root),
                 "--split", "all", "--save-probs", str(probs), "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--probs", str(probs), str(probs)]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["n"] == 6
