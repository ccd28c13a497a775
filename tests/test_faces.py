"""Face detection, alignment, image reading and batch preparation (CPU, small images)."""
from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import pytest

from fer_utils.cli import main
from fer_utils.data import DEFAULT_MARGIN, Preprocessing, load_dataset
from fer_utils.errors import DatasetError
from fer_utils.faces import (
    Detection, FaceDetector, ImageReadError, align_face, create_detector, face_transform, folder_labels,
    list_detectors, paste_faces, prepare_faces, read_image,
)
from fer_utils.faces.command import add_detector_arguments, detector_options
from fer_utils.faces.blazeface import face_frame
from fer_utils.faces.detection import iou, shrink

#: FER2013 rows (frontal happy, neutral, neutral) that MTCNN and Haar find once upscaled.
FACE_ROWS = (8548, 23746, 23775)
#: Where a face is pasted in a 480x640 scene.
BOX = (240, 160, 400, 320)
#: Three faces side by side in one 480x640 scene.
ROW_BOXES = ((30, 160, 190, 320), (240, 160, 400, 320), (450, 160, 610, 320))


@pytest.fixture(scope="module")
def faces(fer2013):
    """The three test faces, uint8 (48, 48)."""
    assert [fer2013.classes[fer2013.labels[i]] for i in FACE_ROWS] == ["happy", "neutral", "neutral"]
    return [fer2013.images[i] for i in FACE_ROWS]


@pytest.fixture(scope="module")
def mtcnn():
    return create_detector("mtcnn", device="cpu", min_face_size=60)


@pytest.fixture(scope="module")
def haar():
    return create_detector("haar")


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


# ----------------------------------------------------------------------------- detectors


def test_detector_factory_and_errors(tmp_path):
    assert list_detectors() == ["blazeface", "blazeface-onet", "haar", "lbp", "mtcnn", "yunet"]
    with pytest.raises(KeyError, match="known detectors"):
        create_detector("dlib")
    with pytest.raises(ValueError, match="cascade"):
        create_detector("lbp")
    with pytest.raises(FileNotFoundError, match="missing.xml"):
        create_detector("lbp", cascade=tmp_path / "missing.xml")
    (tmp_path / "bad.xml").write_text("<opencv_storage></opencv_storage>")
    with pytest.raises(ValueError, match="bad.xml"):
        create_detector("lbp", cascade=tmp_path / "bad.xml")
    with pytest.raises(ValueError, match="uint8"):
        create_detector("haar").detect(np.zeros((10, 10), np.float32))


def test_detection_record():
    det = Detection((10, 20, 50, 80), 0.9, np.arange(10).reshape(5, 2))
    assert (det.width, det.height, det.area) == (40, 60, 2400)
    half = det.scaled(0.5)
    assert half.box == (5, 10, 25, 40) and half.landmarks[4].tolist() == [4, 4.5]
    assert det.to_dict()["landmarks"][1] == [2.0, 3.0]
    float32 = Detection((0, 0, 9, 9), 0.5, np.full((5, 2), 221.7, np.float32)).to_dict()
    assert json.dumps(float32["landmarks"][0]) == "[221.7, 221.7]"  # not 221.6999969482422
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        Detection((0, 0, 1, 1), 1.0, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="x2 >= x1"):
        Detection((5, 0, 1, 1), 1.0)


@pytest.mark.realdata
def test_mtcnn_finds_pasted_faces_and_crops_round_trip(faces, mtcnn):
    scenes = [paste_faces([f], [BOX], seed=i) for i, f in enumerate(faces)]
    results = mtcnn.detect_batch(scenes)  # one batch of three same-size images
    for face, scene, found in zip(faces, scenes, results):
        assert len(found) == 1
        det = found[0]
        assert iou(det.box, BOX) > 0.5 and det.score > 0.9
        x1, y1, x2, y2 = det.box
        assert det.landmarks.shape == (5, 2)
        assert np.all((det.landmarks >= (x1, y1)) & (det.landmarks <= (x2, y2)))
        # The known box round-trips to the original face...
        assert correlation(align_face(scene, Detection(BOX, 1.0), margin=0), face) > 0.97
        # ...and the detected box cuts the same region the original face has there.
        scale = 48 / (BOX[2] - BOX[0])
        in_face = Detection(((x1 - BOX[0]) * scale, (y1 - BOX[1]) * scale,
                             (x2 - BOX[0]) * scale, (y2 - BOX[1]) * scale), 1.0)
        crop = align_face(scene, det, margin=0, rotate=False)
        assert crop.shape == (48, 48) and crop.dtype == np.uint8
        assert correlation(crop, align_face(face, in_face, margin=0, rotate=False)) > 0.9
        assert correlation(crop, face) > 0.6


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["mtcnn", "haar"])
def test_detectors_find_faces_side_by_side(faces, name, request):
    detector = request.getfixturevalue(name)
    found = detector.detect(cv2.cvtColor(paste_faces(faces, ROW_BOXES), cv2.COLOR_GRAY2RGB))
    assert len(found) == 3 if name == "mtcnn" else len(found) >= 3  # Haar may add a false positive
    for box in ROW_BOXES:
        assert max(iou(d.box, box) for d in found) > 0.5
    assert found == sorted(found, key=lambda d: -d.score)


def test_detector_flags_map_to_detector_options():
    parser = argparse.ArgumentParser()
    add_detector_arguments(parser)
    assert detector_options(parser.parse_args([])) == {"max_side": 1280}
    assert parser.parse_args([]).detector == "yunet"  # predict's and bench predict's default
    offline = argparse.ArgumentParser()
    add_detector_arguments(offline, default="mtcnn")  # prepare-faces: the most faces, whatever the time
    assert offline.parse_args([]).detector == "mtcnn"
    args = parser.parse_args(["--detector", "haar", "--min-face-size", "40", "--detect-side", "640"])
    assert detector_options(args) == {"max_side": 640, "min_size": 40}
    assert detector_options(parser.parse_args(["--min-face-size", "40"]))["min_face_size"] == 40
    blazeface = parser.parse_args(["--detector", "blazeface", "--min-face-size", "40"])
    assert detector_options(blazeface)["min_face_size"] == 40
    with pytest.raises(ValueError, match="--cascade"):
        detector_options(parser.parse_args(["--detector", "blazeface", "--cascade", "x.xml"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--detect-side", "0"])


def test_shrink_is_close_to_area_resizing():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8), (0, 0), 2)
    for width, height in ((1280, 720), (960, 540), (640, 360), (1920, 1080)):
        out = shrink(image, width, height)
        assert out.shape == (height, width, 3)
        assert np.abs(out.astype(int) - cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)).mean() < 2


@pytest.mark.realdata
def test_blazeface_decoding_matches_mediapipe(faces):
    """On a 128x128 image (the model's input, no resizing on either side) the boxes (in the face frame)
    and scores are MediaPipe's own; several images in one batch give what each gives alone."""
    solutions = pytest.importorskip("mediapipe.python.solutions.face_detection")
    reference = solutions.FaceDetection(model_selection=0, min_detection_confidence=0.5)
    ours = create_detector("blazeface", min_face_size=None, max_side=None)
    scenes = [cv2.cvtColor(paste_faces([face], [box], (128, 128)), cv2.COLOR_GRAY2RGB)
              for face in faces for box in ((30, 20, 100, 90), (10, 40, 74, 104))]
    batched = ours.detect_batch(scenes)
    for scene, together in zip(scenes, batched):
        expected = [(face_frame(np.array([r.xmin, r.ymin, r.xmin + r.width, r.ymin + r.height]) * 128), d.score[0])
                    for d in reference.process(scene).detections for r in [d.location_data.relative_bounding_box]]
        alone = ours.detect(scene)
        assert len(alone) == len(expected) == 1
        np.testing.assert_allclose(alone[0].box, np.clip(expected[0][0], 0, 128), atol=0.05)
        assert alone[0].score == pytest.approx(expected[0][1], abs=1e-4)
        assert [(d.box, d.score) for d in together] == [(d.box, d.score) for d in alone]


@pytest.mark.realdata
def test_blazeface_finds_small_faces_on_its_finer_scale(faces):
    boxes = [(100, 100, 260, 260), (900, 500, 1060, 660), (1600, 850, 1760, 1010)]
    scene = cv2.cvtColor(paste_faces(faces, boxes, (1080, 1920)), cv2.COLOR_GRAY2RGB)
    detector = create_detector("blazeface")
    scales = detector.scales(1280, 720)  # the 1080p scene shrunk to max_side
    assert scales[0] == 128 / 1280 and scales[-1] == pytest.approx(19 / 64, rel=0.01)
    assert all(1 < b / a <= 3 for a, b in zip(scales, scales[1:]))
    assert len(create_detector("blazeface", min_face_size=20).scales(1280, 720)) == 4  # 3x apart at most
    found = detector.detect(scene)
    assert len(found) == 3 and found == sorted(found, key=lambda d: -d.score)
    for box in boxes:
        assert max(iou(d.box, box) for d in found) > 0.5
    assert create_detector("blazeface", min_face_size=None).detect(scene) == []  # whole image in 128 px: too small
    assert all(d.score >= 0.9 for d in create_detector("blazeface", min_score=0.9).detect(scene))
    row = detector.detect(cv2.cvtColor(paste_faces(faces, ROW_BOXES), cv2.COLOR_GRAY2RGB))
    assert len(row) == 3 and all(max(iou(d.box, box) for d in row) > 0.5 for box in ROW_BOXES)
    with pytest.raises(ValueError, match="min_face_size"):
        create_detector("blazeface", min_face_size=4)


@pytest.mark.realdata
def test_haar_crop_matches_the_face(faces, haar):
    scene = paste_faces(faces[:1], [BOX])
    det = haar.detect(scene)[0]  # the most confident; the background may add weak false positives
    assert det.landmarks is None and iou(det.box, BOX) > 0.8
    assert correlation(align_face(scene, det, margin=0), faces[0]) > 0.8


@pytest.mark.realdata
def test_detectors_on_empty_tiny_and_large_images(mtcnn, haar, faces):
    for detector in (mtcnn, haar, create_detector("blazeface"), create_detector("blazeface-onet")):
        assert detector.detect(np.zeros((8, 8, 3), np.uint8)) == []
        assert detector.detect(np.zeros((1, 1), np.uint8)) == []
        assert detector.detect_batch([]) == []
        with pytest.raises(ValueError, match=r"image 0: expected an image with pixels, got shape \(0, 0, 3\)"):
            detector.detect(np.zeros((0, 0, 3), np.uint8))
    # Images larger than max_side are shrunk for detection; boxes come back in full size.
    big = cv2.resize(paste_faces(faces[:1], [BOX]), (1280, 960))
    det = create_detector("haar", max_side=640).detect(big)[0]
    assert iou(det.box, [2 * v for v in BOX]) > 0.8


# ----------------------------------------------------------------------------- alignment


def _eye_centres(crop: np.ndarray) -> list[tuple[float, float]]:
    n, _, _, centres = cv2.connectedComponentsWithStats((crop > 128).astype(np.uint8))
    return sorted(map(tuple, centres[1:n]))


def test_alignment_levels_tilted_eyes():
    image = np.zeros((200, 200), np.uint8)
    eyes = [(70, 90), (130, 112)]  # right eye lower: about 20 degrees of tilt
    for x, y in eyes:
        cv2.circle(image, (x, y), 5, 255, -1)
    points = np.array([*eyes, (100, 125), (80, 145), (120, 150)], np.float32)
    det = Detection((50, 50, 150, 150), 1.0, points)
    level = _eye_centres(align_face(image, det, size=100, margin=0))
    tilted = _eye_centres(align_face(image, det, size=100, margin=0, rotate=False))
    assert len(level) == 2 and abs(level[0][1] - level[1][1]) < 1.0
    assert abs(tilted[0][1] - tilted[1][1]) > 15
    matrix, side = face_transform(det, margin=0)
    mapped = cv2.transform(points[None, :2], matrix)[0]
    assert side == 100 and abs(mapped[0, 1] - mapped[1, 1]) < 1e-3


def test_alignment_pads_boxes_leaving_the_image():
    image = np.full((100, 100, 3), 200, np.uint8)
    det = Detection((-30, -20, 50, 60), 1.0)  # 80x80 box, top-left corner outside
    zeros = align_face(image, det, size=64, margin=0, border="zeros")
    assert zeros.shape == (64, 64) and zeros.dtype == np.uint8
    assert zeros[:10, :10].max() == 0 and zeros[-10:, -10:].min() == 200
    assert align_face(image, det, size=64, margin=0).min() == 200  # "edge" repeats the border
    assert align_face(image, det, size=32, margin=0.5, grey=False).shape == (32, 32, 3)
    with pytest.raises(ValueError, match="border"):
        align_face(image, det, border="mirror")


# ----------------------------------------------------------------------------- reading


def test_read_image_normalises_depth_and_channels(tmp_path):
    bgr = np.zeros((6, 8, 3), np.uint8)
    bgr[..., 2] = 250  # red in OpenCV's BGR order
    grey16 = np.full((6, 8), 257 * 100, np.uint16)
    bgra16 = np.dstack([bgr.astype(np.uint16) * 257, np.full((6, 8), 65535, np.uint16)])
    cases = {
        "rgb.png": (bgr, (250, 0, 0)), "rgb.bmp": (bgr, (250, 0, 0)),
        "rgba.png": (np.dstack([bgr, np.full((6, 8), 9, np.uint8)]), (250, 0, 0)),
        "grey.png": (np.full((6, 8), 77, np.uint8), (77, 77, 77)),
        "grey16.png": (grey16, (100, 100, 100)), "rgba16.png": (bgra16, (250, 0, 0)),
        "grey16.tif": (grey16, (100, 100, 100)),
    }
    for name, (array, rgb) in cases.items():
        assert cv2.imwrite(str(tmp_path / name), array)
        image = read_image(tmp_path / name)
        assert image.dtype == np.uint8 and image.shape == (6, 8, 3), name
        assert tuple(image[3, 4]) == rgb, name
    assert cv2.imwrite(str(tmp_path / "lossy.webp"), bgr)
    assert abs(int(read_image(tmp_path / "lossy.webp")[3, 4, 0]) - 250) < 12


def test_read_image_applies_exif_orientation(tmp_path):
    from PIL import Image, ImageOps

    pixels = np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3) * 5
    for orientation in range(1, 9):
        img = Image.fromarray(pixels)
        exif = img.getexif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.png"
        img.save(path, exif=exif)
        expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        np.testing.assert_array_equal(read_image(path), expected, err_msg=f"orientation {orientation}")


def test_read_image_rejects_bad_files(tmp_path):
    ok = tmp_path / "ok.png"
    cv2.imwrite(str(ok), np.full((40, 40), 128, np.uint8))
    data = ok.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("this is not a picture")
    (tmp_path / "empty.png").write_bytes(b"")
    jpg = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))[1].tobytes()
    (tmp_path / "cut.jpg").write_bytes(jpg[: len(jpg) * 3 // 4])
    for name in ("cut.png", "text.jpg", "empty.png", "cut.jpg"):
        with pytest.raises(ImageReadError, match=name):
            read_image(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="absent.png"):
        read_image(tmp_path / "absent.png")


# ----------------------------------------------------------------------------- preparation


class _Recording(FaceDetector):
    """Wraps a detector; counts images seen and can fail on a given call (an interruption)."""

    def __init__(self, inner: FaceDetector, fail_on_call: int | None = None) -> None:
        super().__init__(max_side=None)
        self.inner, self.fail_on_call, self.calls, self.seen = inner, fail_on_call, 0, 0
        self.name = inner.name

    def _detect(self, images):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt
        self.seen += len(images)
        return self.inner.detect_batch(images)


def _photo_tree(root, faces):
    small = (240, 320)
    (root / "happy").mkdir(parents=True)
    (root / "Neutral").mkdir()
    cv2.imwrite(str(root / "happy/a.png"), paste_faces(faces[:1], [(100, 60, 220, 180)], small))
    # Two faces: the larger (right) one is kept.
    cv2.imwrite(str(root / "happy/b.jpg"),
                paste_faces(faces[1:], [(10, 70, 110, 170), (150, 40, 310, 200)], small, seed=1))
    rgba = cv2.cvtColor(paste_faces(faces[2:], [(90, 50, 230, 190)], small, seed=2), cv2.COLOR_GRAY2BGRA)
    cv2.imwrite(str(root / "Neutral/c.png"), rgba.astype(np.uint16) * 257)  # 16-bit RGBA
    cv2.imwrite(str(root / "Neutral/d.png"), np.random.default_rng(3).integers(0, 255, small, dtype=np.uint8))
    (root / "Neutral/e.jpg").write_text("not an image")
    (root / "Neutral/notes.txt").write_text("labels by folder")


@pytest.mark.realdata
def test_prepare_faces_report_and_resume(tmp_path, faces, mtcnn):
    src, out = tmp_path / "photos", tmp_path / "faces.npz"
    _photo_tree(src, faces)
    interrupted = _Recording(mtcnn, fail_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        prepare_faces(src, out, interrupted, chunk_size=2, progress=False)
    assert sorted(p.name for p in (tmp_path / "faces.work").iterdir()) == [
        "chunk_00000.json", "chunk_00000.npz", "settings.json"]
    with pytest.raises(ValueError, match="different settings"):
        prepare_faces(src, out, mtcnn, size=32, chunk_size=2, progress=False)

    resumed = _Recording(mtcnn)
    report = prepare_faces(src, out, resumed, chunk_size=2, progress=False)
    assert resumed.seen == 2  # only Neutral/c.png and Neutral/d.png: the first chunk was kept
    assert not (tmp_path / "faces.work").exists()
    with np.load(out) as data:
        assert data["images"].shape == (3, 48, 48) and data["images"].dtype == np.uint8
        assert data["paths"].tolist() == ["Neutral/c.png", "happy/a.png", "happy/b.jpg"]
        assert data["classes"].tolist() == ["happy", "neutral"]
        assert data["labels"].tolist() == [1, 0, 0]
        assert data["n_faces"].tolist() == [1, 1, 2]
        assert iou(data["boxes"][2], (150, 40, 310, 200)) > 0.5
        images = data["images"]
    prepared = load_dataset(str(out))
    assert prepared.preprocessing == Preprocessing(size=48, channels=1, margin=DEFAULT_MARGIN)
    assert np.array_equal(prepared.images, images) and prepared.classes == ("happy", "neutral")
    assert prepared.labels.tolist() == [1, 0, 0] and set(prepared.meta["split"]) == {"Training"}
    assert json.loads(out.with_suffix(".report.json").read_text()) == report
    assert report["faces_saved"] == 3 and report["labels"] == {"happy": 2, "neutral": 1}
    assert report["no_face"]["files"] == ["Neutral/d.png"]
    assert [m["path"] for m in report["multiple_faces"]["files"]] == ["happy/b.jpg"]
    assert report["multiple_faces"]["files"][0]["faces"] == 2
    assert [u["path"] for u in report["unreadable"]["files"]] == ["Neutral/e.jpg"]
    assert "e.jpg" in report["unreadable"]["files"][0]["error"]
    assert report["not_images"]["files"] == ["Neutral/notes.txt"]


@pytest.mark.realdata
def test_prepare_faces_cli_and_labels(tmp_path, faces, capsys):
    src = tmp_path / "photos"
    _photo_tree(src, faces)
    out = tmp_path / "out" / "faces.npz"
    rc = main(["prepare-faces", str(src), str(out), "--detector", "haar", "--no-face", "whole",
               "--size", "32", "--margin", "0.1", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "no face: 1 (whole image kept)" in printed and "unreadable: 1" in printed
    with np.load(out) as data:
        assert data["images"].shape[1:] == (32, 32)
        assert "Neutral/d.png" in data["paths"].tolist()  # kept as a whole image, and reported
    assert load_dataset("prepared", out).preprocessing == Preprocessing(size=32, margin=0.1)
    before = out.read_bytes()
    assert main(["prepare-faces", str(src), str(out), "--detector", "haar", "--no-progress"]) == 2  # never replaced unasked
    assert "exists; pass --overwrite" in capsys.readouterr().out and out.read_bytes() == before
    assert main(["prepare-faces", str(tmp_path / "nowhere"), str(out), "--no-progress", "--overwrite"]) == 2
    assert folder_labels(["x/happy/1.png", "sadness/s1/2.png"]) == ["happy", "sad"]
    assert folder_labels(["S010/001.png"]) is None
    with pytest.raises(ValueError, match="class folder"):
        folder_labels(["happy/1.png", "other/2.png"])


def test_real_labelled_frames_are_read_exactly_and_scored(tmp_path):
    """The hand-labelled real media: every labelled frame is read (videos in order), and Haar, scored on
    the four frames of the indoor group video, finds faces and puts no more boxes than it finds plus few false."""
    from pathlib import Path

    from fer_utils.faces.evaluation import labelled_frames, real_detection_benchmark

    labels = Path(__file__).parent / "media" / "real" / "faces.json"
    frames = labelled_frames(labels)
    assert [(name, index) for name, index, _, _ in frames][:5] == [
        ("event_video_01.mp4", 0), ("event_video_01.mp4", 30), ("event_video_01.mp4", 60), ("event_video_01.mp4", 89),
        ("hikers_video_02.mp4", 0)]
    assert len(frames) == 11 and sum(len(f[3].faces) for f in frames) == 37
    assert all(f[2].shape[:2] in ((480, 640), (428, 640)) for f in frames)
    table = real_detection_benchmark({"haar": create_detector("haar")}, frames[:4])
    row = table.iloc[0]
    assert row["true faces"] == 16 and 8 <= row["found"] <= 16 and row["false boxes"] <= 8 and row["ms per frame"] > 0
    (tmp_path / "faces.json").write_text('{"media": {"event_video_01.mp4": {"999": {"faces": [[1, 1, 9, 9]]}}}}')
    (tmp_path / "event_video_01.mp4").write_bytes((labels.parent / "event_video_01.mp4").read_bytes())
    with pytest.raises(DatasetError, match="frame 90 is unreadable"):
        labelled_frames(tmp_path / "faces.json")


# ----------------------------------------------------------------------------- O-Net verification


def test_onet_matches_facenet_pytorch_and_loads_without_it():
    """Our O-Net gives facenet-pytorch's outputs from the same weights file, and building the
    verified detector imports neither facenet-pytorch nor torchvision (a cold start's 3.7 s)."""
    import subprocess
    import sys

    import torch
    from facenet_pytorch.models.mtcnn import ONet as FacenetONet

    from fer_utils.faces.onet import normalise_crops, onet

    crops = normalise_crops(torch.randint(0, 256, (4, 3, 48, 48)))
    theirs, ours = FacenetONet(pretrained=True).eval()(crops), onet()(crops)
    torch.testing.assert_close(ours[0], theirs[0])  # box offsets
    torch.testing.assert_close(ours[1], theirs[1])  # landmarks
    torch.testing.assert_close(ours[2], theirs[2][:, 1])  # face probability
    code = ("import sys; from fer_utils.faces import create_detector; create_detector('blazeface-onet'); "
            "print(sorted(m for m in ('facenet_pytorch', 'torchvision') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_square_crop_pads_outside_the_image_and_suppression_keeps_the_best():
    from fer_utils.faces.verified import square_crop, suppress_nested

    image = np.full((100, 200, 3), 200, np.uint8)
    crop, square = square_crop(image, (-20, 40, 20, 60))  # 40 x 20 box half outside on the left
    assert square == (-20, 30, 20, 70) and crop.shape == (48, 48, 3)
    assert crop[:, :20].max() == 0 and crop[:, 28:].min() == 200
    big, small, apart = Detection((0, 0, 50, 50), 0.95), Detection((10, 10, 40, 40), 0.99), Detection((60, 0, 90, 30), 0.91)
    assert suppress_nested([big, small, apart]) == [small, apart]  # the nested box inside the smaller one goes


def test_verified_detector_on_the_real_labelled_frames():
    """BlazeFace's boxes checked by O-Net on the 37 hand-labelled real faces: nearly MTCNN's recall (34) with no
    false box, where BlazeFace alone at the same 20-pixel smallest face puts dozens of false boxes."""
    from pathlib import Path

    from fer_utils.faces.evaluation import labelled_frames, real_detection_benchmark

    frames = labelled_frames(Path(__file__).parent / "media" / "real" / "faces.json")
    detectors = {"verified": create_detector("blazeface-onet"), "alone": create_detector("blazeface", min_face_size=20)}
    table = real_detection_benchmark(detectors, frames).set_index("detector")
    assert table.loc["verified", "found"] >= 26 and table.loc["verified", "false boxes"] == 0
    assert table.loc["alone", "false boxes"] >= 20
    found = detectors["verified"].detect(frames[0][2])
    for d in found:
        x1, y1, x2, y2 = d.box
        assert d.score >= 0.9 and d.landmarks.shape == (5, 2)
        assert np.all((d.landmarks >= (x1, y1)) & (d.landmarks <= (x2, y2)))
