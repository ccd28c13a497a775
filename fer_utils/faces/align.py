"""Aligning detected faces into square crops (image reading lives in :mod:`fer_utils.data.images`).

:func:`align_face` is the one preprocessing step shared by dataset preparation and
prediction, so a model sees faces cut the same way in both.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from fer_utils.data.images import to_grey
from fer_utils.data.preprocessing import DEFAULT_MARGIN
from fer_utils.faces.detection import Detection

_BORDERS = {"edge": cv2.BORDER_REPLICATE, "zeros": cv2.BORDER_CONSTANT}


def face_transform(detection: Detection, margin: float = DEFAULT_MARGIN, rotate: bool = True) -> tuple[np.ndarray, int]:
    """The 2x3 affine map from image pixels to a square crop, and the crop side in pixels.

    The crop is centred on the box, ``max(w, h) * (1 + 2 * margin)`` pixels wide, and
    rotated about the box centre so the eyes (landmarks 0 and 1) are level.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    x1, y1, x2, y2 = detection.box
    side = max(1, round(max(x2 - x1, y2 - y1) * (1 + 2 * margin)))
    cx, cy = (x1 + x2) / 2 - 0.5, (y1 + y2) / 2 - 0.5  # box centre in pixel-index coordinates
    angle = 0.0
    if rotate and detection.landmarks is not None:
        (lx, ly), (rx, ry) = detection.landmarks[0], detection.landmarks[1]
        angle = math.degrees(math.atan2(ry - ly, rx - lx))
    matrix = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    matrix[:, 2] += (side - 1) / 2 - np.array([cx, cy])
    return matrix, side


def align_face(
    image: np.ndarray,
    detection: Detection,
    size: int = 48,
    margin: float = DEFAULT_MARGIN,
    *,
    grey: bool = True,
    rotate: bool = True,
    border: str = "edge",
) -> np.ndarray:
    """Cut one face as a square uint8 crop: eyes levelled (when landmarks exist), ``margin``
    of the box size added on each side, padded where it leaves the image (``border``
    ``"edge"`` repeats edge pixels, ``"zeros"`` pads black), resized to ``size``.

    Returns ``(size, size)`` greyscale, or ``(size, size, 3)`` RGB with ``grey=False``.
    """
    if border not in _BORDERS:
        raise ValueError(f"border must be one of {sorted(_BORDERS)}, got {border!r}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if grey:
        source = to_grey(image)
    elif image.ndim == 2:
        source = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    else:
        source = image
    matrix, side = face_transform(detection, margin, rotate)
    crop = cv2.warpAffine(source, matrix, (side, side), flags=cv2.INTER_LINEAR,
                          borderMode=_BORDERS[border], borderValue=0)
    return resize_face(crop, size)


def resize_face(crop: np.ndarray, size: int) -> np.ndarray:
    """A square crop at ``size`` pixels: pixel-area averaging to shrink it, bicubic to enlarge it.

    Why bicubic: the shipped model reads faces cut from 24-32 px (the distant faces of real footage)
    and enlarged to 48 px as "sad" far more often than they are (FER2013 PublicTest faces shrunk to
    24 px and enlarged bilinearly: 37% called sad, 18% are); bicubic keeps more of the edges the model
    relies on (52.8% accuracy against 45.3% bilinear, 32.9% called sad; ``scripts/fit_resolution_bias.py``).
    """
    if crop.shape[0] == size:
        return crop
    interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)
