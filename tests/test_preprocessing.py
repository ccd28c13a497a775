"""The preprocessing record end to end: prepare-faces -> train -> predict cut faces the same way."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from fer_utils.cli import main
from fer_utils.data import DEFAULT_MARGIN, Preprocessing, load_dataset
from fer_utils.faces import paste_faces
from fer_utils.models.checkpoints import checkpoint_preprocessing, load_checkpoint
from fer_utils.predict.predictor import FacePredictor

#: FER2013 rows (frontal happy, neutral, neutral) that Haar finds once upscaled.
FACE_ROWS = (8548, 23746, 23775)
#: Not the default, so the test fails if any step falls back to a default instead of the record.
MARGIN = 0.3


def test_record_round_trips_and_reads_older_checkpoints():
    record = Preprocessing(size=64, channels=3, margin=0.1, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    assert Preprocessing.from_dict(record.to_dict()) == record
    assert Preprocessing.from_dict({"size": 48, "channels": 1, "scale": "0-1"}) == Preprocessing(margin=DEFAULT_MARGIN)
    with pytest.raises(ValueError, match="channels"):
        Preprocessing(channels=2)
    assert record.differences(Preprocessing(size=64, channels=3, margin=0.1)) == [
        "mean: (0.5, 0.4, 0.3) != None", "std: (0.2, 0.2, 0.2) != None"]


def _photo(face: np.ndarray, box: tuple[int, int, int, int], seed: int) -> np.ndarray:
    return paste_faces([face], [box], (240, 320), seed=seed)


@pytest.mark.realdata
def test_prepare_train_predict_cut_the_same_face(tmp_path, fer2013):
    faces = [fer2013.images[i] for i in FACE_ROWS]
    for i, (label, face) in enumerate(zip(("happy", "neutral", "neutral"), faces)):
        (tmp_path / "photos" / label).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "photos" / label / f"{i}.png"), _photo(face, (90 + 10 * i, 50, 230 + 10 * i, 190), i))
    common = ["--detector", "haar", "--size", "48", "--margin", str(MARGIN), "--no-progress"]
    assert main(["prepare-faces", str(tmp_path / "photos"), str(tmp_path / "faces.npz"), *common]) == 0
    assert load_dataset(str(tmp_path / "faces.npz")).preprocessing == Preprocessing(size=48, margin=MARGIN)

    assert main(["train", "--model", "simple_cnn", "--data", str(tmp_path / "faces.npz"), "--val-split", "none",
                 "--test-split", "none", "--epochs", "1", "--batch-size", "2", "--out", str(tmp_path / "run"),
                 "--no-progress", "--device", "cpu"]) == 0
    checkpoint = tmp_path / "run" / "best.pt"
    assert checkpoint_preprocessing(load_checkpoint(checkpoint)) == Preprocessing(size=48, margin=MARGIN)

    # A new photo: the face prepare-faces cuts from it is the face predict classifies.
    new = _photo(faces[0], (60, 30, 220, 190), seed=7)
    (tmp_path / "new" / "happy").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "new" / "happy" / "x.png"), new)
    assert main(["prepare-faces", str(tmp_path / "new"), str(tmp_path / "new.npz"), *common]) == 0
    prepared = load_dataset(str(tmp_path / "new.npz")).images[0]

    predictor = FacePredictor.from_checkpoint(checkpoint, detector="haar", device="cpu")
    rgb = cv2.cvtColor(cv2.imread(str(tmp_path / "new" / "happy" / "x.png")), cv2.COLOR_BGR2RGB)
    largest = max(predictor.detector.detect(rgb), key=lambda d: d.area)
    assert np.array_equal(predictor.crops(rgb, [largest])[0], prepared)
    default = FacePredictor.from_checkpoint(checkpoint, detector="haar", device="cpu", margin=DEFAULT_MARGIN)
    assert not np.array_equal(default.crops(rgb, [largest])[0], prepared)  # the margin matters
    assert predictor.predict_image(rgb)[0].probabilities.shape == (2,)
