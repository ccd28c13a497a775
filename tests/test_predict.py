"""``predict`` on photos and videos, smoothing, tracking and the throughput benchmark (CPU)."""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fer_utils.models.checkpoints import save_checkpoint
from fer_utils.cli import main
from fer_utils.data import FER2013_CLASSES
from fer_utils.faces import Detection, draw_faces, moving_faces, paste_faces
from fer_utils.faces.detection import clip_box, iou
from fer_utils.faces.draw import place_labels
from fer_utils.models import create_model
from fer_utils.bench import benchmark_predict
from fer_utils.errors import DatasetError
from fer_utils.faces.evaluation import LabelledFaces, labels_for, load_face_labels, score_detections
from fer_utils.predict.outputs import CLEAR_EXPRESSION_CONFIDENCE, NO_CLEAR_EXPRESSION
from fer_utils.predict.predictor import FacePredictor
from fer_utils.predict.tracking import FaceTracker
from fer_utils.predict.video import TemporalSmoother, label_changes, prefetch, smooth_probabilities

#: FER2013 rows (frontal happy, neutral, neutral) that MTCNN and Haar find once upscaled.
FACE_ROWS = (8548, 23746, 23775)
#: Real CC BY 2.0 photos and videos with hand-labelled faces (NOTICE.md there).
REAL_MEDIA = Path(__file__).parent / "media" / "real"
SMALL = (240, 320)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained simple_cnn saved as a 7-class FER2013 checkpoint."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return save_checkpoint(path, create_model("simple_cnn", num_classes=7), model_name="simple_cnn",
                           classes=FER2013_CLASSES)


@pytest.fixture(scope="module")
def faces(fer2013):
    return [fer2013.images[i] for i in FACE_ROWS]


def _write_video(path, frames, fps=10.0):
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


# ----------------------------------------------------------------------------- smoothing, tracking


def test_smoothing_reduces_label_flips():
    rng = np.random.default_rng(0)
    truth = np.repeat([3, 6, 0], 60)
    probs = rng.dirichlet(np.ones(7), size=len(truth)) * 0.8
    probs[np.arange(len(truth)), truth] += 0.2  # the true class wins on average, not every frame
    raw = probs.argmax(1)
    assert label_changes(raw) > 100
    for method in ("ma", "vote"):
        smoothed, labels = smooth_probabilities(probs, method, window=9)
        assert smoothed.shape == probs.shape and np.allclose(smoothed.sum(1), 1)
        assert label_changes(labels) < label_changes(raw) / 4, method
        assert (labels == truth).mean() > (raw == truth).mean()
    _, none = smooth_probabilities(probs, "none")
    np.testing.assert_array_equal(none, raw)


def test_vote_smoother_and_validation():
    smoother = TemporalSmoother("vote", window=3)
    one_hot = np.eye(3)
    assert smoother.update(np.array([0.6, 0.4, 0]))[1] == 0
    assert smoother.update(one_hot[1])[1] == 1  # 1-1 tie: the higher mean probability wins
    assert smoother.update(one_hot[0])[1] == 0  # votes 0, 1, 0
    assert smoother.update(one_hot[1])[1] == 1  # votes 1, 0, 1
    with pytest.raises(ValueError, match="smoothing"):
        TemporalSmoother("median")
    with pytest.raises(ValueError, match="window"):
        TemporalSmoother("ma", 0)


def test_prefetch_keeps_order_stops_when_closed_and_passes_errors():
    threads = threading.active_count()
    assert list(prefetch(iter(range(50)), depth=4)) == list(range(50))
    closed = []

    def endless():
        try:
            yield from range(10**9)
        finally:
            closed.append(True)

    stream = prefetch(endless(), depth=2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    assert closed == [True] and threading.active_count() == threads

    def broken():
        yield 1
        raise OSError("frame 1 cannot be decoded")

    with pytest.raises(OSError, match="frame 1"):
        list(prefetch(broken()))
    assert threading.active_count() == threads


def test_tracker_keeps_ids_across_moves_and_drops_lost_tracks():
    image = np.zeros((60, 300, 3), np.uint8)
    tracker = FaceTracker(max_missing=1)
    a, b = Detection((0, 0, 50, 50), 1.0), Detection((200, 0, 250, 50), 1.0)
    assert [t for t, _ in tracker.update(image, [a, b], 0)] == [0, 1]
    moved = [Detection((205, 2, 255, 52), 1.0), Detection((5, 0, 55, 50), 1.0)]
    assert [t for t, _ in tracker.update(image, moved, 1)] == [1, 0]
    assert [t for t, _ in tracker.update(image, [moved[0]], 2)] == [1]  # track 0 missed once: kept
    assert tracker.active == {0, 1}
    tracker.update(image, [moved[0]], 3)  # missed twice: dropped
    assert tracker.active == {1}
    assert [t for t, _ in tracker.update(image, [Detection((5, 0, 55, 50), 1.0)], 4)] == [2]


def test_tracker_predicts_boxes_between_detections():
    image = np.zeros((120, 400, 3), np.uint8)
    tracker = FaceTracker()
    for frame in (0, 3, 6):  # 4 px per frame to the right
        tracked = tracker.update(image, [Detection((10 + 4 * frame, 20, 60 + 4 * frame, 70), 1.0, np.ones((5, 2)))],
                                 frame)
    ((tid, det),) = tracker.carry(tracked, 8)
    assert tid == 0 and det.box == pytest.approx((42, 20, 92, 70), abs=0.5)
    assert det.landmarks == pytest.approx(np.ones((5, 2)) + [8, 0], abs=0.5)  # moved with the box
    assert tracker.carry([(7, det)], 9) == [(7, det)]  # unknown track: kept as given


def _crossing_clip(faces, frames=30):
    """Two real faces crossing (the second passes in front); boxes per frame."""
    return list(moving_faces(faces[:2], [(10, 70), (230, 80)], [(230, 80), (10, 70)], frames, 80, SMALL))


@pytest.mark.realdata
def test_tracker_follows_two_crossing_faces_through_missed_detections(faces):
    rng = np.random.default_rng(0)
    tracker = FaceTracker()
    seen: list[set[int]] = [set(), set()]
    occluded = 0
    for t, (frame, boxes) in enumerate(_crossing_clip(faces)):
        visible = [0, 1]
        if iou(boxes[0], boxes[1]) > 0.2:  # the face behind is not found
            visible, occluded = [1], occluded + 1
        if t in (4, 5):  # missed detections
            visible = [v for v in visible if v != t - 4]
        dets = [Detection(np.add(boxes[v], rng.normal(0, 2, 4)).clip(0).tolist(), 1.0) for v in visible]
        for v, (tid, _) in zip(visible, tracker.update(cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB), dets, t)):
            seen[v].add(tid)
    assert occluded >= 3
    assert len(seen[0]) == len(seen[1]) == 1 and seen[0] != seen[1], seen


@pytest.mark.realdata
def test_predict_video_keeps_one_track_per_crossing_face(tmp_path, faces, checkpoint):
    clip = _crossing_clip(faces)
    video = _write_video(tmp_path / "cross.avi", [frame for frame, _ in clip])
    out = tmp_path / "pred"
    assert main(["predict", str(video), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu",
                 "--min-face-size", "40", "--no-progress"]) == 0
    result = json.loads((out / "cross_frames.json").read_text())
    owner: dict[int, set[int]] = {}  # track id -> faces (0 moves right, 1 left) whose box it had
    occluded = 0
    for record, (_, boxes) in zip(result["frames"], clip):
        occluded += len(record["faces"]) < 2
        if iou(*boxes) > 0:  # overlapping faces: which one a box belongs to is ambiguous
            continue
        for face in record["faces"]:
            nearest = int(np.argmin([abs(face["box"][0] - b[0]) + abs(face["box"][2] - b[2]) for b in boxes]))
            owner.setdefault(face["track"], set()).add(nearest)
    assert occluded >= 2  # detections really were missed while the faces overlapped
    assert sorted(owner) == [0, 1] and owner[0] != owner[1] and all(len(v) == 1 for v in owner.values()), owner
    summary = json.loads((out / "cross_summary.json").read_text())
    assert set(summary["tracks"]) == {"0", "1"}
    timeline = cv2.imread(str(out / "cross_timeline.png"))
    assert timeline is not None and timeline.shape[0] > 500  # one row per track


@pytest.mark.realdata
def test_predict_stream_handles_a_video_file_live(tmp_path, faces, checkpoint, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    video = _write_video(tmp_path / "live.avi", [frame for frame, _ in _crossing_clip(faces, frames=8)])
    out = tmp_path / "pred"
    args = ["--checkpoint", str(checkpoint), "--out", str(out), "--detector", "haar", "--no-progress"]
    assert main(["predict", "--stream", str(video), *args]) == 0
    result = json.loads((out / "live_frames.json").read_text())
    assert result["input"] == str(video) and [r["frame"] for r in result["frames"]] == list(range(8))
    assert {f["track"] for r in result["frames"] for f in r["faces"]} == {0, 1}
    capture = cv2.VideoCapture(str(out / "live_annotated.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    capture.release()
    assert (out / "live_summary.json").is_file() and (out / "live_timeline.png").is_file()
    assert main(["predict", str(video), "--stream", str(video), *args]) == 2
    assert "not both" in capsys.readouterr().out
    assert main(["predict", "--camera", "97", *args]) == 2  # the folder holds the stream's results
    assert "holds an earlier run's results" in capsys.readouterr().out
    assert main(["predict", "--camera", "97", *args, "--overwrite"]) == 1
    assert "97: cannot open as a camera" in capsys.readouterr().out


# ----------------------------------------------------------------------------- predictor


@pytest.mark.parametrize("channels,size", [(1, 48), (3, 40)])
def test_predictor_follows_checkpoint_preprocessing(tmp_path, channels, size):
    model = create_model("simple_cnn", num_classes=7, in_chans=channels, img_size=size)
    path = save_checkpoint(tmp_path / "m.pt", model, model_name="simple_cnn", classes=FER2013_CLASSES,
                           model_kwargs={"img_size": size},
                           preprocessing={"size": size, "channels": channels, "scale": "0-1", "margin": 0.1})
    predictor = FacePredictor.from_checkpoint(path, detector="haar", device="cpu")
    assert (predictor.size, predictor.channels, predictor.margin) == (size, channels, 0.1)
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    dets = [Detection((10, 10, 70, 80), 1.0), Detection((-20, 50, 60, 130), 1.0)]
    assert predictor.crops(image, dets).shape == (2, size, size) + ((3,) if channels == 3 else ())
    probs = predictor.classify(image, dets)
    assert probs.shape == (2, 7) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert predictor.classify(image, []).shape == (0, 7)
    batched = predictor.classify_many([image, image[::-1].copy(), image], [dets, [], dets[:1]])
    assert [p.shape for p in batched] == [(2, 7), (0, 7), (1, 7)]
    assert np.allclose(batched[0], probs, atol=1e-5) and np.allclose(batched[2], probs[:1], atol=1e-5)


@pytest.mark.realdata
def test_predict_tta_averages_the_views_evaluate_averages(tmp_path, fer2013):
    """The shipped model on 40 real PublicTest faces, each given to predict as a whole-image face: with
    tta flip / tencrop (fp32, no size correction, no int8) predict's probabilities are evaluate's."""
    from fer_utils.devices import resolve_precision
    from fer_utils.errors import UsageError
    from fer_utils.evaluate.command import evaluate_checkpoint

    shipped = Path(__file__).parents[1] / "results" / "best_model.pt"
    test = fer2013.split("PublicTest").subset(np.arange(40))
    whole = [Detection((0.0, 0.0, 48.0, 48.0), 1.0)]
    photos = [cv2.cvtColor(face, cv2.COLOR_GRAY2RGB) for face in test.images]
    probs = {}
    for tta in ("none", "flip", "tencrop"):
        predictor = FacePredictor.from_checkpoint(shipped, detector="haar", device="cpu", size_correction=False,
                                                  int8=False, tta=tta)
        predictor.precision = resolve_precision(torch.device("cpu"), False)
        probs[tta] = np.concatenate(predictor.classify_many(photos, [whole] * len(photos)))
        evaluate_checkpoint(shipped, test, tta=tta, amp=False, device="cpu", save_probs=tmp_path / f"{tta}.npz")
        np.testing.assert_allclose(probs[tta], np.load(tmp_path / f"{tta}.npz")["probs"], atol=1e-5)
    assert np.abs(probs["flip"] - probs["none"]).max() > 0.01 and np.abs(probs["tencrop"] - probs["flip"]).max() > 0.01
    with pytest.raises(UsageError, match="tta 'five'"):
        FacePredictor.from_checkpoint(shipped, detector="haar", device="cpu", tta="five")


@pytest.mark.realdata
def test_predict_cli_tta_on_a_real_photo_records_it(tmp_path):
    out = tmp_path / "out"
    assert main(["predict", str(REAL_MEDIA / "race.jpg"), "--tta", "flip", "--out", str(out)]) == 0
    run = json.loads((out / "predict_run.json").read_text())
    assert run["tta"] == "flip" and run["faces"] > 0


# ----------------------------------------------------------------------------- CLI


@pytest.mark.realdata
def test_predict_video_writes_frames_summary_and_timeline(tmp_path, faces, checkpoint):
    frames = [paste_faces([faces[0] if t < 6 else faces[2]], [(60 + 6 * t, 50, 180 + 6 * t, 170)], SMALL, seed=t)
              for t in range(12)]
    video = _write_video(tmp_path / "clip.avi", frames)
    out = tmp_path / "pred"
    rc = main(["predict", str(video), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu",
               "--min-face-size", "40", "--detect-every", "3", "--smooth", "vote", "--window", "3"])
    assert rc == 0
    result = json.loads((out / "clip_frames.json").read_text())
    assert len(result["frames"]) == 12 and result["classes"] == list(FER2013_CLASSES)
    assert result["box_format"].startswith("x1, y1, x2, y2: pixels")
    for record in result["frames"]:
        (face,) = record["faces"]
        assert face["detected"] == (record["frame"] % 3 == 0)
        assert face["track"] == 0 and face["label"] in FER2013_CLASSES
        assert sum(face["raw_probabilities"].values()) == pytest.approx(1, abs=1e-3)
    x1 = [record["faces"][0]["box"][0] for record in result["frames"]]
    assert abs(x1[9] - (60 + 6 * 9)) < 25  # boxes follow the moving face
    assert abs(x1[11] - x1[9] - 12) < 5  # and are predicted between detections (6 px per frame)
    summary = json.loads((out / "clip_summary.json").read_text())
    assert summary["frames"] == 12 and summary["frames_with_face"] == 12
    assert sum(summary["label_counts"].values()) == 12
    # the untrained model's smoothed top probability is about 1/7: no word is claimed for the video
    assert summary["mean_confidence"] < CLEAR_EXPRESSION_CONFIDENCE and summary["smoothing"]["method"] == "vote"
    assert summary["dominant_emotion"] == summary["tracks"]["0"]["dominant_emotion"] == NO_CLEAR_EXPRESSION
    assert summary["tracks"]["0"]["segments"][0]["start_frame"] == 0
    capture = cv2.VideoCapture(str(out / "clip_annotated.mp4"))
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    assert int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") in (b"avc1", b"h264", b"H264")
    assert summary["annotated_video_codec"] == "h264"
    capture.release()
    timeline = cv2.imread(str(out / "clip_timeline.png"))
    assert timeline is not None and timeline.shape[1] > 500


@pytest.mark.realdata
def test_predict_photos_with_bad_inputs(tmp_path, faces, checkpoint, capsys):
    src = tmp_path / "in"
    src.mkdir()
    scene = paste_faces(faces[:1], [(100, 60, 220, 180)], SMALL)
    cv2.imwrite(str(src / "rgb.jpg"), cv2.cvtColor(scene, cv2.COLOR_GRAY2BGR))
    cv2.imwrite(str(src / "rgba.png"), cv2.cvtColor(scene, cv2.COLOR_GRAY2BGRA))
    cv2.imwrite(str(src / "grey16.png"), paste_faces(faces[2:], [(90, 50, 230, 190)], SMALL).astype(np.uint16) * 257)
    cv2.imwrite(str(src / "blank.png"), np.full(SMALL, 128, np.uint8))
    data = (src / "rgba.png").read_bytes()
    (src / "cut.png").write_bytes(data[: len(data) // 3])
    (src / "words.jpg").write_text("not an image")
    cv2.VideoWriter(str(src / "empty.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, SMALL[::-1]).release()  # 0 frames
    (src / "notes.txt").write_text("x")
    inputs = [str(src / n) for n in ("rgb.jpg", "rgba.png", "grey16.png", "blank.png", "cut.png", "words.jpg",
                                     "empty.mp4", "notes.txt")]
    out = tmp_path / "pred"
    rc = main(["predict", *inputs, "--checkpoint", str(checkpoint), "--out", str(out), "--detector", "haar",
               "--format", "csv"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "blank.png: no face found" in printed
    assert "cut.png: not a readable image" in printed and "words.jpg: not a readable image" in printed
    assert "empty.mp4" in printed and "unsupported format .txt" in printed
    assert "8 input(s): 3 processed" in printed
    run = json.loads((out / "predict_run.json").read_text())
    assert "clipped to the image" in run["box_format"]
    assert [r["status"] for r in run["results"]] == ["ok"] * 3 + ["no_face"] + ["error"] * 4
    for stem, suffix in (("rgb", ".jpg"), ("rgba", ".png"), ("grey16", ".png")):
        annotated = cv2.imread(str(out / f"{stem}_annotated{suffix}"))
        assert annotated is not None and annotated.shape[:2] == SMALL
        table = (out / f"{stem}.csv").read_text().splitlines()
        assert table[0].startswith("input,face,x1,y1,x2,y2,score,label,probability,p_angry")
        assert len(table) >= 2
    assert cv2.imread(str(src / "rgb.jpg")) is not None  # inputs untouched


@pytest.mark.realdata
def test_predict_exit_status_and_refusals(tmp_path, faces, checkpoint, capsys, monkeypatch):
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    args = ["--checkpoint", str(checkpoint), "--detector", "haar"]
    assert main(["predict", str(bad), str(tmp_path / "absent.png"), "--out", str(tmp_path / "o"), *args]) == 1
    assert "0 processed" in capsys.readouterr().out

    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), paste_faces(faces[:1], [(100, 60, 220, 180)], SMALL))
    before = photo.read_bytes()
    assert main(["predict", str(photo), "--out", str(photo), *args]) == 2
    # An input named like an output in the same folder is never overwritten.
    clash = tmp_path / "face_annotated.png"
    clash.write_bytes(before)
    assert main(["predict", str(photo), str(clash), "--out", str(tmp_path), *args]) == 0
    assert "refusing to overwrite input" in capsys.readouterr().out
    assert photo.read_bytes() == before and clash.read_bytes() == before

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("fer_utils.predict.predictor.DEFAULT_CHECKPOINT", tmp_path / "results" / "best_model.pt")
    assert main(["predict", str(photo), "--detector", "haar"]) == 2
    message = capsys.readouterr().out
    assert "best_model.pt does not exist" in message and "--checkpoint" in message and "train" in message


@pytest.mark.realdata
def test_benchmark_predict_reports_frames_per_second(tmp_path, faces, checkpoint, data_dir):
    threads = torch.get_num_threads()
    every = benchmark_predict(frames=5, detect_every=1, device="cpu", detector="haar", checkpoint=checkpoint)
    assert every["threads"] == max(1, threads - cv2.getNumThreads())  # the cores Haar's OpenCV leaves
    assert torch.get_num_threads() == threads  # restored
    assert every["frames"] == 5 and every["fps"] > 0 and (every["width"], every["height"]) == (640, 480)
    assert every["frames_with_face"] == 5 and every["video"].startswith("synthetic")
    assert every["faces_detected"] >= 8 and every["tracks"] == 2  # two faces, apart in the first frames
    assert every["true_faces"] == 10 and 8 <= every["real_faces_found"] <= every["faces_detected"]
    video = _write_video(tmp_path / "v.avi", [paste_faces(faces[:1], [(100, 60, 220, 180)], SMALL)] * 6)
    sparse = benchmark_predict(video, frames=6, detect_every=3, device="cpu", detector="mtcnn",
                               checkpoint=checkpoint, detector_kw={"min_face_size": 40}, threads=1)
    assert sparse["threads"] == 1
    assert sparse["frames"] == 6 and sparse["detect_every"] == 3 and sparse["frames_with_face"] == 6
    assert sparse["faces_detected"] == 2 and sparse["tracks"] == 1  # detections on frames 0 and 3
    assert "true_faces" not in sparse  # a given video: its faces are not known


def test_score_detections_counts_each_true_face_once_and_leaves_ignored_regions_out():
    labels = [LabelledFaces(((0, 0, 100, 100), (200, 0, 300, 100)), ignore=((500, 0, 600, 100),)),
              LabelledFaces(((0, 0, 100, 100),))]
    found = [[(5, 5, 100, 100), (10, 0, 100, 90), (400, 0, 450, 50), (520, 20, 580, 80)],
             [(-60, -60, 160, 160), (0, 0, 20, 20)]]
    # frame 0: a hit, a second box on the same face (false), a box on nothing (false), one ignored; a miss.
    # frame 1: a loose box (2.2x the face, centre inside) finds it; a tiny box inside it (1/5) is false.
    assert score_detections(found, labels) == {"true_faces": 3, "found": 2, "false_boxes": 3}


def test_face_labels_load_and_a_broken_file_is_named(tmp_path):
    labels = load_face_labels(REAL_MEDIA / "faces.json")
    hikers = labels_for(labels, REAL_MEDIA / "hikers_video_02.mp4")
    assert sorted(hikers) == [0, 100, 200, 300, 400, 500] and len(hikers[400].faces) == 4
    assert labels_for(labels, "elsewhere/unknown.mp4") == {}
    (tmp_path / "bad.json").write_text('{"media": {"a.mp4": {"0": {"faces": [[10, 10, 5, 20]]}}}}')
    with pytest.raises(DatasetError, match=r"bad.json: .*\[10, 10, 5, 20\] is not \(x1, y1, x2, y2\)"):
        load_face_labels(tmp_path / "bad.json")


def test_benchmark_predict_times_an_untrained_model_when_nothing_is_shipped(monkeypatch):
    def nothing_shipped():
        raise FileNotFoundError("no trained model")

    monkeypatch.setattr("fer_utils.predict.predictor.default_checkpoint", nothing_shipped)
    result = benchmark_predict(frames=2, detect_every=1, device="cpu", detector="haar", model="simple_cnn")
    assert result["classifier"] == "simple_cnn (untrained)" and result["frames"] == 2
    with pytest.raises(FileNotFoundError):  # a checkpoint asked for by name is never replaced
        benchmark_predict(frames=2, device="cpu", detector="haar", checkpoint="missing.pt")


def test_bench_predict_scores_the_hand_labelled_faces_of_a_real_video(tmp_path, capsys):
    """A real CC BY video with hand labels: MTCNN finds the four faces of frames 0 and 30 (detection every 30th
    frame) and puts no box elsewhere; the phone-covered face is an ignore region either way."""
    args = ["bench", "predict", "--video", str(REAL_MEDIA / "event_video_01.mp4"), "--labels",
            str(REAL_MEDIA / "faces.json"), "--frames", "31", "--detect-every", "30", "--detector", "mtcnn",
            "--device", "cpu", "--threads", "1", "--json", str(tmp_path / "b.json")]
    assert main(args) == 0
    result = json.loads((tmp_path / "b.json").read_text())[0]
    assert (result["labelled_frames"], result["true_faces"]) == (2, 8)
    assert result["real_faces_found"] == 8 and result["false_boxes"] == 0
    assert "8 of its 8 true faces, 0 false boxes, on 2 labelled frames" in capsys.readouterr().out
    assert main([*args[:3], str(REAL_MEDIA / "NOTICE.md"), *args[4:-2]]) == 2  # no labelled frames of that file
    assert "no labelled frames" in capsys.readouterr().out


@pytest.mark.realdata
def test_bench_predict_on_a_given_video(tmp_path, faces, checkpoint, capsys):
    video = _write_video(tmp_path / "cross.avi", [frame for frame, _ in _crossing_clip(faces, frames=8)])
    args = ["bench", "predict", "--detector", "haar", "--device", "cpu", "--checkpoint", str(checkpoint)]
    assert main([*args, "--video", str(video), "--detect-side", "400", "--json", str(tmp_path / "b.json")]) == 0
    printed = capsys.readouterr().out
    assert "frames/s over 8 frames" in printed and "faces detected" in printed
    (result,) = json.loads((tmp_path / "b.json").read_text())
    assert result["video"] == str(video) and result["fps"] > 0 and result["faces_detected"] >= 8
    assert result["detect_side"] == 400 and result["tta"] == "none"
    assert main([*args, "--video", str(video), "--detect-side", "400", "--tta", "tencrop", "--json",
                 str(tmp_path / "t.json")]) == 0
    (tencrop,) = json.loads((tmp_path / "t.json").read_text())
    assert tencrop["tta"] == "tencrop" and tencrop["faces_detected"] == result["faces_detected"]
    capsys.readouterr()
    assert main([*args, "--video", str(tmp_path / "absent.mp4")]) == 2
    assert "absent.mp4: no such file" in capsys.readouterr().out
    assert main([*args, "--video", str(video), "--cascade", "x.xml", "--detector", "mtcnn"]) == 2
    assert "bench: --cascade only applies" in capsys.readouterr().out


# ----------------------------------------------------------------------------- annotations


def _disjoint(rects):
    return all(a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
               for i, a in enumerate(rects) for b in rects[i + 1:])


def test_labels_stay_inside_the_image_and_apart():
    width, height = 320, 240
    edges = [(-30, -20, 60, 70), (280, -5, 360, 90), (-10, 180, 70, 260), (260, 170, 330, 250), (0, 0, 320, 240)]
    for box in edges:
        (rect,) = place_labels([box], [(120, 20)], width, height)
        assert 0 <= rect[0] < rect[2] <= width and 0 <= rect[1] < rect[3] <= height, (box, rect)
    adjacent = [(100, 60, 160, 120), (162, 62, 222, 122), (130, 30, 190, 90)]
    rects = place_labels(adjacent, [(90, 18)] * 3, width, height)
    assert _disjoint(rects) and all(0 <= r[0] and r[2] <= width and 0 <= r[1] and r[3] <= height for r in rects)
    drawn = draw_faces(np.zeros((height, width, 3), np.uint8),
                       [(b, "happy", 0.9) for b in [*edges, *adjacent]], ids=list(range(8)))
    assert drawn.shape == (height, width, 3) and drawn.any()


def test_labels_stay_off_every_face_of_a_real_crowd():
    """race.jpg's seven labelled runners, five of them a pack of 12-17 px faces: no label covers any face
    (its own included) nor another label, at the size predict draws them on that photo."""
    image = cv2.imread(str(REAL_MEDIA / "race.jpg"))
    faces = list(labels_for(load_face_labels(REAL_MEDIA / "faces.json"), "race.jpg")[0].faces)
    rects = place_labels(faces, [(110, 22)] * len(faces), image.shape[1], image.shape[0])
    assert _disjoint(rects)
    boxes = [tuple(int(round(v)) for v in face) for face in faces]
    assert not [(r, b) for r in rects for b in boxes if r[0] < b[2] and b[0] < r[2] and r[1] < b[3] and b[1] < r[3]]


def test_boxes_are_clipped_to_the_image():
    assert clip_box((-12.5, -3, 50, 400), 320, 240) == (0.0, 0.0, 50.0, 240.0)
    det = Detection((-20, 10, 100, 260), 0.9, np.zeros((5, 2)))
    assert det.clipped(320, 240).box == (0.0, 10.0, 100.0, 240.0)
    assert det.clipped(320, 240).landmarks is not None


def test_demo_predicts_the_sample_photo_and_its_clip_with_the_shipped_model(tmp_path, capsys):
    """``make demo``: no dataset; matplotlib's photo (one face) and the zoom clip made from it."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    assert "annotated photo, video, timeline and results in" in capsys.readouterr().out
    photo = json.loads((out / "grace_hopper.json").read_text())
    assert len(photo["faces"]) == 1 and photo["faces"][0]["label"] in FER2013_CLASSES
    clip = cv2.VideoCapture(str(out / "inputs" / "grace_hopper_zoom.mp4"))
    assert int(clip.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    clip.release()
    summary = json.loads((out / "grace_hopper_zoom_summary.json").read_text())
    assert summary["frames"] == 30 and summary["frames_with_face"] == 30 and summary["annotated_video_codec"] == "h264"
    assert summary["dominant_emotion"] == "neutral" and summary["mean_confidence"] > CLEAR_EXPRESSION_CONFIDENCE
    assert (out / "grace_hopper_zoom_annotated.mp4").stat().st_size > 0
    assert main(["demo", "--out", str(out)]) == 0  # runs again over its own outputs


def test_annotated_video_is_h264_and_says_so_when_it_falls_back_to_mpeg4(tmp_path, monkeypatch):
    from fer_utils.predict.video import AnnotatedVideoWriter

    frames = [np.full((121, 161, 3), 40 * i, np.uint8) for i in range(5)]  # odd sides: padded to even for yuv420p
    for blocked, codec, fourccs in ((False, "h264", (b"avc1", b"h264", b"H264")), (True, "mpeg4", (b"mp4v", b"FMP4"))):
        if blocked:
            monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails: the OpenCV fallback
        writer = AnnotatedVideoWriter(tmp_path / f"{codec}.mp4", 10.0, 161, 121)
        for frame in frames:
            writer.write(frame)
        writer.release()
        capture = cv2.VideoCapture(str(tmp_path / f"{codec}.mp4"))
        assert writer.codec == codec and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
        assert int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") in fourccs
        assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (162, 122)
        capture.release()
    with pytest.raises(OSError, match="cannot create the output video"):
        AnnotatedVideoWriter(tmp_path / "missing" / "x.mp4", 10.0, 160, 120)


def test_a_score_that_is_no_probability_draws_no_bar():
    black = np.zeros((120, 160, 3), np.uint8)
    box = (20, 20, 100, 100)
    with_bar = draw_faces(black, [(box, "face", 1.0)])
    without = draw_faces(black, [(box, "face, 7 neighbours", None)])
    bar_rows = slice(90, 99)  # inside the box's bottom, where the probability bar sits
    assert with_bar[bar_rows, 30:90].any() and not without[bar_rows, 30:90].any()


def test_videos_leave_the_detectors_own_threads_their_cores_unless_told(monkeypatch):
    """torch gets all cores beside a torch detector (MTCNN), the rest beside one with its own runtime."""
    from fer_utils.faces.detectors import create_detector
    from fer_utils.predict.video import video_threads

    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    yunet, mtcnn = create_detector("yunet"), create_detector("mtcnn")
    assert (yunet.own_threads, mtcnn.own_threads) == (1, 0)
    assert video_threads() == 4 and video_threads(None, mtcnn) == 4 and video_threads(None, yunet) == 3
    assert video_threads(3, yunet) == 3  # told
    assert video_threads(None, create_detector("blazeface", threads=6)) == 1  # never below one
