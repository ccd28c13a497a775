"""``scripts/bench_vs_fer.py``: ours vs the ``fer`` package (a stand-in for fer here; the real one is optional)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from conftest import load_script

from fer_utils.faces import paste_faces


@pytest.fixture(scope="module")
def bench_vs_fer():
    return load_script("bench_vs_fer")


def test_bad_arguments_are_one_line_and_exit_2(bench_vs_fer, tmp_path, capsys):
    assert bench_vs_fer.main(["--video", str(tmp_path / "absent.mp4")]) == 2
    assert capsys.readouterr().out.strip() == f"bench_vs_fer: {tmp_path / 'absent.mp4'}: no such file"
    for flag in ("--runs", "--frames"):
        with pytest.raises(SystemExit) as stop:
            bench_vs_fer.parse_args([flag, "0"])
        assert stop.value.code == 2


def _stand_in_fer(folder: Path, result: dict) -> Path:
    """A "python" that answers the worker call with ``result`` as JSON, as fer's worker would."""
    fake = folder / "fer-python"
    fake.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = --json ] && out=$2; shift; done\n'
                    f"echo '{json.dumps(result)}' > \"$out\"\n")
    fake.chmod(0o755)
    return fake


@pytest.mark.realdata
def test_ratio_against_a_stand_in_fer(bench_vs_fer, fer2013, tmp_path, capsys):
    frame = cv2.cvtColor(paste_faces([fer2013.images[8548]], [(100, 60, 220, 180)], (240, 320)), cv2.COLOR_GRAY2BGR)
    video = tmp_path / "face.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for _ in range(4):
        writer.write(frame)
    writer.release()
    fake = _stand_in_fer(tmp_path, {"frames": 4, "seconds": 2.0, "faces_detected": 4})  # 1 face a frame
    out = tmp_path / "summary.json"
    args = ["--video", str(video), "--runs", "1", "--detector", "haar", "--fer-python", str(fake), "--json", str(out)]
    assert bench_vs_fer.main(args) == 0
    (summary,) = json.loads(out.read_text())
    fer = summary["fer"]
    assert (fer["fps"], fer["faces_per_frame"], fer["frames"]) == (2.0, 1.0, 4) and fer["process_s"] > 0
    assert summary["ours"]["frames"] == 4 and summary["ours"]["faces_per_frame"] == 1.0
    assert summary["fps_ratio"] == pytest.approx(summary["ours"]["fps"] / 2.0, abs=0.01)
    assert summary["faces_ratio"] == 1.0 and summary["fer_detector"] == "haar"
    assert "ours/fer = " in capsys.readouterr().out
    fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: fer' >&2\nexit 1\n")
    assert bench_vs_fer.main(args) == 1
    assert capsys.readouterr().out.strip().endswith("failed (1): ModuleNotFoundError: fer")


@pytest.mark.realdata
def test_made_videos_count_real_faces_on_both_sides(bench_vs_fer, data_dir, tmp_path, capsys):
    fake = _stand_in_fer(tmp_path, {"frames": 3, "seconds": 1.0, "faces_detected": 1,
                                    "boxes": [[[0, 0, 50, 50]], [], []]})  # one false detection
    out = tmp_path / "summary.json"
    args = ["--frames", "3", "--runs", "1", "--detector", "blazeface", "--fer-python", str(fake), "--json", str(out)]
    assert bench_vs_fer.main(args) == 0
    summaries = json.loads(out.read_text())
    assert [s["video"] for s in summaries] == ["1920x1080", "640x480"]
    for summary in summaries:
        assert summary["true_faces"] == 6 and summary["fer"]["real_faces_found"] == 0
        assert summary["ours"]["frames"] == 3 and summary["ours"]["real_faces_found"] >= 5
    assert capsys.readouterr().out.count("of 6 true faces") == 4


def test_stage_times_on_the_real_indoor_video(tmp_path, capsys):
    """``scripts/bench_predict_stages.py``: each stage's ms per frame, and the faces the default finds."""
    stages = load_script("bench_predict_stages")
    video = str(Path(__file__).parent / "media" / "real" / "event_video_01.mp4")
    assert stages.main(["--video", video, "--runs", "1", "--json", str(tmp_path / "s.json")]) == 0
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["frames"] == 90 and result["detector"] == "yunet"
    assert 4.5 < result["faces_per_frame"] < 5.5  # four people, and a fifth face now and then
    assert all(result[k] > 0 for k in ("decode_ms", "detect_ms", "classify_ms"))
    capsys.readouterr()
    assert stages.main(["--video", str(tmp_path / "absent.mp4")]) == 2
    assert capsys.readouterr().out.strip() == f"bench_predict_stages: {tmp_path / 'absent.mp4'}: no such file"
