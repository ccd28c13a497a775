"""YuNet, predict's default detector: its packaged model, its decoding, and what it finds on real footage."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_utils.faces import create_detector
from fer_utils.faces.evaluation import labelled_frames, real_detection_benchmark
from fer_utils.faces.yunet import MODEL_PATH, MODEL_SHA256, STRIDES, YuNetDetector, decode

LABELS = Path(__file__).parent / "media" / "real" / "faces.json"


@pytest.fixture(scope="module")
def yunet() -> YuNetDetector:
    return create_detector("yunet")


@pytest.fixture(scope="module")
def real_frames():
    return labelled_frames(LABELS)


def test_the_packaged_model_is_the_recorded_file():
    assert hashlib.sha256(MODEL_PATH.read_bytes()).hexdigest() == MODEL_SHA256
    assert (MODEL_PATH.parent / "NOTICE.md").read_text().count(MODEL_SHA256) == 1


def test_decode_places_one_known_cell():
    """A 64x96 input with one live cell of the stride-8 map (row 2, column 3): its box, landmarks and score."""
    height, width = 64, 96
    outputs = {}
    for stride in STRIDES:
        cells = (height // stride) * (width // stride)
        outputs |= {f"cls_{stride}": np.zeros((cells, 1), np.float32), f"obj_{stride}": np.zeros((cells, 1), np.float32),
                    f"bbox_{stride}": np.zeros((cells, 4), np.float32), f"kps_{stride}": np.zeros((cells, 10), np.float32)}
    cell = 2 * (width // 8) + 3
    outputs["cls_8"][cell], outputs["obj_8"][cell] = 0.81, 1.5  # objectness is clipped to 1: score sqrt(0.81)
    outputs["bbox_8"][cell] = (0.5, 0.5, np.log(2), np.log(3))  # centre (28, 20), 16 x 24 px
    outputs["kps_8"][cell] = np.arange(10) / 10
    (found,) = decode(outputs, height, width, min_score=0.6, nms_iou=0.3)
    np.testing.assert_allclose(found.box, (20, 8, 36, 32), atol=1e-4)
    assert found.score == pytest.approx(0.9)
    np.testing.assert_allclose(found.landmarks, (np.arange(10).reshape(5, 2) / 10 + (3, 2)) * 8, atol=1e-4)
    assert decode(outputs, height, width, min_score=0.95, nms_iou=0.3) == []


def test_yunet_finds_every_labelled_real_face_without_false_boxes(yunet, real_frames):
    """All 37 hand-labelled faces (12-79 px, indoor group, hikers, road race) and no false box; BlazeFace checked
    by O-Net, the default before, finds 29 and MTCNN 34 (README, "On real footage")."""
    row = real_detection_benchmark({"yunet": yunet}, real_frames).iloc[0]
    assert (row["true faces"], row["found"], row["false boxes"]) == (37, 37, 0)
    found = yunet.detect(real_frames[0][2])
    for d in found:  # landmarks inside their box, the eye on the image left first
        x1, y1, x2, y2 = d.box
        assert 0.6 <= d.score <= 1 and np.all((d.landmarks >= (x1, y1)) & (d.landmarks <= (x2, y2)))
        assert d.landmarks[0, 0] < d.landmarks[1, 0] and d.landmarks[3, 0] < d.landmarks[4, 0]
    images = [frame for _, _, frame, _ in real_frames[:3]] + [real_frames[-1][2]]  # two sizes in one batch
    for alone, batched in zip((yunet.detect(image) for image in images), yunet.detect_batch(images)):
        np.testing.assert_allclose([d.box for d in alone], [d.box for d in batched], atol=1e-3)


def test_yunet_options_and_odd_inputs(yunet, real_frames, tmp_path):
    frame = real_frames[0][2]
    widths = sorted(d.width for d in yunet.detect(frame))
    larger = create_detector("yunet", min_face_size=widths[0] + 1).detect(frame)
    assert len(larger) == len(widths) - 1 and min(d.width for d in larger) > widths[0]
    assert yunet.detect(frame[..., 0]) != []  # greyscale frames are detected too
    for shape in [(1, 1, 3), (10, 10, 3), (31, 200, 3)]:  # smaller than the network's stride: padded, no error
        assert yunet.detect(np.zeros(shape, np.uint8)) == []
    with pytest.raises(ValueError, match="min_score"):
        YuNetDetector(min_score=1.5)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.onnx"):
        YuNetDetector(model=bad)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        YuNetDetector(model=tmp_path / "missing.onnx")


def test_yunet_loads_without_the_other_detectors_libraries():
    """Cold start: building predict's default detector imports neither MTCNN's, MediaPipe's nor LiteRT's code."""
    code = ("import sys; from fer_utils.faces import create_detector; create_detector('yunet'); "
            "print(sorted(m for m in ('facenet_pytorch', 'torchvision', 'mediapipe', 'ai_edge_litert') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
