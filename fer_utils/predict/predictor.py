"""Emotions of the faces in one RGB image: detector + aligned crops + classifier from a checkpoint."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_utils.data.images import to_grey
from fer_utils.data.preprocessing import Preprocessing
from fer_utils.devices import resolve_device, resolve_precision, uses_channels_last
from fer_utils.evaluate.resolution import ResolutionBias
from fer_utils.faces.align import align_face, face_transform
from fer_utils.faces.detection import Detection, FaceDetector
from fer_utils.faces.detectors import PREDICT_DETECTOR, create_detector
from fer_utils.errors import CheckpointError, UsageError
from fer_utils.evaluate.tta import TTA_MODES, model_views
from fer_utils.models.checkpoints import checkpoint_preprocessing, load_model
from fer_utils.models.quantization import int8_available, int8_model


#: The shipped model, looked up in the working directory, then next to the package.
DEFAULT_CHECKPOINT = Path("results") / "best_model.pt"


def default_checkpoint() -> Path:
    """``results/best_model.pt`` (working directory first, then the repository of the package)."""
    candidates = [Path.cwd() / DEFAULT_CHECKPOINT, Path(__file__).resolve().parents[2] / DEFAULT_CHECKPOINT]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"no trained model: {DEFAULT_CHECKPOINT} does not exist; train one "
        f"(python -m fer_utils train ...) and copy its best checkpoint there, or pass --checkpoint PATH"
    )


@dataclass
class FaceResult:
    """One face: detection (box clipped to the image), shown probabilities (smoothed in videos), label
    and its probability."""

    detection: Detection
    probabilities: np.ndarray
    label: str
    probability: float
    raw_probabilities: np.ndarray | None = None  # videos: this frame's own probabilities
    track: int | None = None
    detected: bool = True  # videos: False when the box was carried over from an earlier frame

    def to_dict(self, classes: Sequence[str]) -> dict[str, Any]:
        """JSON-ready record."""
        out: dict[str, Any] = {}
        if self.track is not None:
            out.update(track=self.track, detected=self.detected)
        out.update(self.detection.to_dict())
        out.update(label=self.label, probability=round(self.probability, 4),
                   probabilities={c: round(float(p), 4) for c, p in zip(classes, self.probabilities)})
        if self.raw_probabilities is not None:
            raw = self.raw_probabilities
            out.update(raw_label=classes[int(raw.argmax())],
                       raw_probabilities={c: round(float(p), 4) for c, p in zip(classes, raw)})
        return out


class FacePredictor:
    """Detector + aligned crops + classifier, preprocessing faces as the checkpoint says.

    With a ``resolution_bias`` (stored in the checkpoint by ``scripts/fit_resolution_bias.py``), the
    class scores of a face whose crop is smaller than the model's input are corrected by its size
    (:class:`~fer_utils.evaluate.resolution.ResolutionBias`): distant faces are not read as "sad".
    With an ``int8_calibration`` (stored in the checkpoint by ``scripts/calibrate_int8.py``), a CPU
    classifier runs in int8 (:mod:`~fer_utils.models.quantization`; README: Speed). ``tta`` ``"flip"`` or
    ``"tencrop"`` averages each face's probabilities over 2 or 10 views, as ``evaluate --tta`` does (the size
    correction added to each view's scores), at 2 or 10 times the classifier's cost.
    """

    def __init__(
        self,
        model: nn.Module,
        classes: Sequence[str],
        preprocessing: Preprocessing | dict[str, Any],
        detector: FaceDetector,
        device: str | torch.device = "cpu",
        margin: float | None = None,
        resolution_bias: ResolutionBias | None = None,
        int8_calibration: dict[str, torch.Tensor] | None = None,
        tta: str = "none",
    ) -> None:
        if tta not in TTA_MODES:
            raise UsageError(f"tta {tta!r}: expected one of {', '.join(TTA_MODES)}")
        self.tta = tta
        self.resolution_bias = resolution_bias
        self.classes = tuple(classes)
        if not isinstance(preprocessing, Preprocessing):
            preprocessing = Preprocessing.from_dict(preprocessing)
        self.preprocessing = preprocessing if margin is None else replace(preprocessing, margin=margin)
        self.detector = detector
        self.device = torch.device(device)
        self.int8 = int8_calibration is not None and self.device.type == "cpu" and int8_available()
        if self.int8:
            example = torch.zeros(1, self.channels, self.size, self.size)
            model = int8_model(model, int8_calibration, example)
        # otherwise the fast path, as evaluate's (README: Training on a CPU)
        self.precision = resolve_precision(self.device, amp=not self.int8)
        self.layout = torch.channels_last if self.int8 or uses_channels_last(model) else torch.contiguous_format
        self.model = model.eval().to(memory_format=self.layout)

    @property
    def precision_label(self) -> str:
        """The classifier's arithmetic: ``"cpu int8"``, ``"cpu bf16"``, ``"cpu fp32"``, ``"cuda bf16"``..."""
        return "cpu int8" if self.int8 else self.precision.label

    @property
    def size(self) -> int:
        return self.preprocessing.size

    @property
    def channels(self) -> int:
        return self.preprocessing.channels

    @property
    def margin(self) -> float:
        return self.preprocessing.margin

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | os.PathLike | None = None,
        *,
        detector: str | FaceDetector = PREDICT_DETECTOR,
        device: str | torch.device | None = None,
        margin: float | None = None,
        detector_kw: dict[str, Any] | None = None,
        size_correction: bool = True,
        int8: bool = True,
        tta: str = "none",
    ) -> "FacePredictor":
        """Load ``checkpoint`` (default :func:`default_checkpoint`) and build the detector; with
        ``size_correction``, the checkpoint's ``resolution_bias`` (when it has one) corrects small faces;
        with ``int8``, its ``int8`` calibration (when it has one) makes a CPU classifier int8; ``tta``: the
        views averaged per face."""
        from fer_utils.models import model_entry

        device = resolve_device(device)
        path = Path(checkpoint) if checkpoint else default_checkpoint()
        model, ckpt = load_model(path, device)
        if model_entry(ckpt["model_name"]).input_kind != "image":
            raise CheckpointError(
                f"{path}: model {ckpt['model_name']!r} takes clips; predict needs an image model"
            )
        if not isinstance(detector, FaceDetector):
            detector = create_detector(detector, device=device, **(detector_kw or {}))
        bias = ckpt.get("resolution_bias") if size_correction else None
        calibration = ckpt.get("int8", {}).get("observers") if int8 else None
        return cls(model, ckpt["classes"], checkpoint_preprocessing(ckpt), detector, device, margin,
                   ResolutionBias.from_dict(bias) if bias else None, calibration, tta)

    def crops(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        """Aligned uint8 crops ``(N, S, S)`` (or ``(N, S, S, 3)`` for RGB models)."""
        shape = (0, self.size, self.size) + ((3,) if self.channels == 3 else ())
        if not detections:
            return np.zeros(shape, np.uint8)
        grey = self.channels == 1
        source = to_grey(image) if grey else image  # once per image, not once per face
        return np.stack([align_face(source, d, size=self.size, margin=self.margin, grey=grey) for d in detections])

    def classify(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        """Class probabilities ``(N, C)`` of the faces ``detections`` in ``image``."""
        return self.classify_many([image], [detections])[0]

    def classify_many(
        self, images: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]],
    ) -> list[np.ndarray]:
        """:meth:`classify` of several images in one forward pass (video frames): one ``(N_i, C)`` per image."""
        crops = np.concatenate([self.crops(image, dets) for image, dets in zip(images, detections)])
        views = self.view_logits(crops)
        if self.resolution_bias is not None and len(crops):
            sides = [face_transform(d, self.margin, rotate=False)[1] for dets in detections for d in dets]
            views = views + self.resolution_bias.for_sides(sides)
        probs = torch.softmax(torch.from_numpy(views), dim=-1).mean(0).numpy().astype(np.float32)
        return np.split(probs, np.cumsum([len(d) for d in detections])[:-1])

    def logits(self, crops: np.ndarray) -> np.ndarray:
        """The model's raw class scores ``(N, C)`` of uint8 crops at its input size, single view (no size
        correction, no TTA)."""
        return self.view_logits(crops, "none")[0]

    def view_logits(self, crops: np.ndarray, tta: str | None = None) -> np.ndarray:
        """Raw class scores ``(V, N, C)`` of uint8 crops, one row per view of ``tta`` (default :attr:`tta`;
        no size correction)."""
        if not len(crops):
            return np.zeros((1, 0, len(self.classes)), np.float64)
        return self._scores(model_views(self._float_crops(crops), self.preprocessing, tta or self.tta))

    def model_inputs(self, crops: np.ndarray) -> torch.Tensor:
        """The classifier's input batch of uint8 crops: scaled, normalised and laid out as the checkpoint says."""
        return self.preprocessing.model_input(self._float_crops(crops)).contiguous(memory_format=self.layout)

    def _float_crops(self, crops: np.ndarray) -> torch.Tensor:
        """uint8 crops ``(N, S, S[, 3])`` -> float ``(N, C, S, S)`` in [0, 1] on the classifier's device."""
        x = torch.from_numpy(crops).to(self.device).float().div_(255.0)
        return x.unsqueeze(1) if self.channels == 1 else x.permute(0, 3, 1, 2)

    @torch.inference_mode()
    def _scores(self, views: Sequence[torch.Tensor]) -> np.ndarray:
        """Class scores ``(V, N, C)`` of ``V`` input batches of ``N`` faces, in one forward pass."""
        n = len(views[0])
        with self.precision.autocast():
            logits = self.model(torch.cat(list(views)).contiguous(memory_format=self.layout))
        return logits.double().cpu().numpy().reshape(len(views), n, -1)

    def predict_image(self, image: np.ndarray) -> list[FaceResult]:
        """All faces of an RGB image, most confident detection first."""
        detections = self.detector.detect(image)
        height, width = image.shape[:2]
        return [
            FaceResult(d.clipped(width, height), p, self.classes[int(p.argmax())], float(p.max()))
            for d, p in zip(detections, self.classify(image, detections))
        ]
