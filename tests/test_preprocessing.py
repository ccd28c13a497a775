"""The preprocessing record end to end: prepare-faces -> train -> predict cut faces the same way."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

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
    assert record.differences(Preprocessing(size=64, channels=3, margin=0.1)) == []  # normalisation: the model's
    assert record.differences(Preprocessing(size=48, channels=3, margin=0.1)) == ["size: 64 != 48"]


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


def test_crop_pct_view_is_recorded_and_predict_equals_evaluate_on_the_same_faces(tmp_path):
    """One record, two paths: evaluate's inference and predict's classifier cut, enlarge and normalise
    the same faces the same way (non-trivial mean/std and a 0.85 centre view)."""
    from fer_utils.devices import resolve_precision
    from fer_utils.evaluate.inference import predict_proba
    from fer_utils.faces import Detection, create_detector
    from fer_utils.models import create_model

    record = Preprocessing(mean=(0.45,), std=(0.22,), crop_pct=0.85)
    assert Preprocessing.from_dict(record.to_dict()) == record and Preprocessing.from_dict({}).crop_pct == 1.0
    x = torch.rand(2, 1, 48, 48)
    assert record.centre_view(x).shape == x.shape and torch.equal(Preprocessing().centre_view(x), x)
    assert not torch.allclose(record.centre_view(x), x)
    with pytest.raises(ValueError, match="crop_pct"):
        Preprocessing(crop_pct=1.2)
    assert record.differences(Preprocessing(mean=(0.45,), std=(0.22,))) == []  # a view, not how faces are made

    torch.manual_seed(0)
    model = create_model("simple_cnn", num_classes=7).eval()
    faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    evaluated = predict_proba(model, faces, amp=False, preprocessing=record)
    predictor = FacePredictor(model, [str(c) for c in range(7)], record, create_detector("haar"), "cpu")
    predictor.precision = resolve_precision(torch.device("cpu"), False)  # fp32 on both paths
    whole = [Detection((0.0, 0.0, 48.0, 48.0), 1.0)]
    predicted = np.concatenate(predictor.classify_many([cv2.cvtColor(f, cv2.COLOR_GRAY2RGB) for f in faces],
                                                       [whole] * len(faces)))
    np.testing.assert_allclose(predicted, evaluated, atol=1e-5)
    assert not np.allclose(evaluated, predict_proba(model, faces, amp=False), atol=1e-3)  # the record matters


def test_ship_records_the_crop_pct_chosen_on_validation(tmp_path, capsys):
    from fer_utils.models import create_model
    from fer_utils.models.checkpoints import save_checkpoint

    (tmp_path / "run").mkdir()
    save_checkpoint(tmp_path / "run" / "best.pt", create_model("simple_cnn", num_classes=7), model_name="simple_cnn",
                    classes=[str(c) for c in range(7)], preprocessing=Preprocessing().to_dict(), val_acc=0.5)
    assert main(["ship", str(tmp_path / "run"), "--dest", str(tmp_path / "shipped.pt"), "--crop-pct", "0.85"]) == 0
    assert checkpoint_preprocessing(load_checkpoint(tmp_path / "shipped.pt")).crop_pct == 0.85
    assert checkpoint_preprocessing(load_checkpoint(tmp_path / "run" / "best.pt")).crop_pct == 1.0


def test_a_model_trained_with_mean_std_is_normalised_alike_by_training_evaluate_and_predict(tmp_path):
    """The record travels: fit normalises each batch with the data's mean/std and writes the record into
    best.pt; evaluate and predict read it back and give the same probabilities for the same faces."""
    from dataclasses import replace

    from fer_utils.evaluate import ensemble_proba
    from fer_utils.evaluate.command import evaluate_checkpoint
    from fer_utils.faces import Detection, create_detector
    from fer_utils.devices import resolve_precision
    from fer_utils.models import create_model
    from fer_utils.train import TrainConfig, fit
    from test_train import squares

    record = Preprocessing(mean=(0.3,), std=(0.2,))
    train = replace(squares(96, size=48), preprocessing=record)
    test = replace(squares(12, size=48, seed=3), preprocessing=Preprocessing())  # cut the same way, no record
    cfg = TrainConfig(epochs=2, batch_size=32, augment="none", amp=False, channels_last=False)
    torch.manual_seed(0)
    fit(create_model("simple_cnn", num_classes=7), train, None, cfg, run_dir=tmp_path / "run", progress=False,
        model_name="simple_cnn")
    stored = checkpoint_preprocessing(load_checkpoint(tmp_path / "run" / "best.pt"))
    assert (stored.mean, stored.std) == ((0.3,), (0.2,))

    evaluated = evaluate_checkpoint(tmp_path / "run" / "best.pt", test, amp=False,
                                    save_probs=tmp_path / "probs.npz")
    probs = np.load(tmp_path / "probs.npz")["probs"]
    assert evaluated["n"] == 12
    np.testing.assert_allclose(ensemble_proba([tmp_path / "run" / "best.pt"], test, amp=False), probs, atol=1e-5)
    predictor = FacePredictor.from_checkpoint(tmp_path / "run" / "best.pt", detector=create_detector("haar"),
                                              device="cpu")
    predictor.precision = resolve_precision(torch.device("cpu"), False)
    whole = [Detection((0.0, 0.0, 48.0, 48.0), 1.0)]
    faces = [cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) for image in test.images]
    np.testing.assert_allclose(np.concatenate(predictor.classify_many(faces, [whole] * 12)), probs, atol=1e-5)


def test_the_training_step_normalises_with_the_data_record():
    from torch import nn

    from fer_utils.train import TrainConfig
    from fer_utils.train.engine import TrainStep

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                     TrainConfig(amp=False), torch.device("cpu"), preprocessing=Preprocessing(mean=(0.3,), std=(0.2,)))
    x = torch.rand(3, 1, 2, 2)
    assert torch.allclose(step.prepare(x), (x - 0.3) / 0.2)
    plain = TrainStep(model, step.optimizer, step.criterion, TrainConfig(amp=False), torch.device("cpu"))
    assert torch.equal(plain.prepare(x), x)


def test_a_registered_normalisation_reaches_the_checkpoint_and_the_run_tests_with_it(tmp_path):
    """EfficientNet-Lite0's registry entry carries its weights' mean/std: a run trains with them, writes them
    into best.pt, and its own test predictions equal what evaluate gives from that checkpoint."""
    from fer_utils.evaluate.command import evaluate_checkpoint
    from fer_utils.experiments.runs import Splits, train_and_evaluate
    from fer_utils.train import TrainConfig
    from test_train import squares

    cfg = TrainConfig(epochs=1, batch_size=32, augment="none", amp=False, channels_last=False)
    test = squares(12, size=48, seed=3)
    train_and_evaluate("efficientnet_lite0", {"input_size": 32}, Splits(squares(64, size=48), None, test, "test"),
                       cfg, tmp_path / "run", progress=False)
    stored = checkpoint_preprocessing(load_checkpoint(tmp_path / "run" / "best.pt"))
    assert (stored.mean, stored.std) == ((0.5,), (0.5,))
    evaluate_checkpoint(tmp_path / "run" / "best.pt", test, amp=False, save_probs=tmp_path / "probs.npz")
    np.testing.assert_allclose(np.load(tmp_path / "run" / "predictions.npz")["probs"],
                               np.load(tmp_path / "probs.npz")["probs"], atol=1e-5)


def test_a_fixed_size_model_is_built_for_the_faces_side_and_loads_back(tmp_path):
    """vgg_small's classifier depends on the face side: trained on 40 px faces it is built for 40 px, and the
    checkpoint rebuilds it from the stored record (no img_size in its kwargs)."""
    from fer_utils.experiments.runs import Splits, train_and_evaluate
    from fer_utils.models.checkpoints import load_model
    from fer_utils.train import TrainConfig
    from test_train import squares

    cfg = TrainConfig(epochs=1, batch_size=32, augment="none", amp=False, channels_last=False)
    summary = train_and_evaluate("vgg_small", {}, Splits(squares(64, size=40), None, squares(8, size=40), "test"),
                                 cfg, tmp_path / "run", progress=False)
    assert summary["test"] is not None
    model, ckpt = load_model(tmp_path / "run" / "best.pt")
    assert ckpt["model_kwargs"] == {} and checkpoint_preprocessing(ckpt).size == 40
    assert model(torch.rand(2, 1, 40, 40)).shape == (2, 7)
