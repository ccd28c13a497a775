"""Reading photos of any common kind, and aligning detected faces into square crops.

:func:`align_face` is the one preprocessing step shared by dataset preparation and
prediction, so a model sees faces cut the same way in both.
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path

import cv2
import numpy as np

from fer_utils.faces.detectors import Detection

#: Photo file extensions read by :func:`read_image` (lower case, with the dot).
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm",
)

_BORDERS = {"edge": cv2.BORDER_REPLICATE, "zeros": cv2.BORDER_CONSTANT}


class ImageReadError(ValueError):
    """A file that is not a readable image (truncated, wrong format, empty...)."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a photo as uint8 RGB ``(H, W, 3)``, whatever its depth and channels.

    Greyscale, RGBA (alpha dropped), 16-bit (scaled to 8-bit) and float images are
    normalised; EXIF orientation is applied. Raises ``FileNotFoundError`` or
    :class:`ImageReadError` naming ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode also handles non-ASCII paths
    if data.size == 0:
        raise ImageReadError(f"{path}: empty file, expected an image")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(
            f"{path}: not a readable image (not an image file, unsupported format or truncated)"
        )
    if _is_truncated_jpeg(data):
        raise ImageReadError(f"{path}: truncated JPEG file (image data ends early)")
    image = _apply_exif_orientation(image, data)
    try:
        return to_rgb8(image)
    except ValueError as err:
        raise ImageReadError(f"{path}: {err}") from None


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Convert an OpenCV-decoded array (BGR/BGRA/grey, 8/16-bit or float) to uint8 RGB."""
    if image.dtype == np.uint16:
        image = cv2.convertScaleAbs(image, alpha=255.0 / 65535.0)
    elif image.dtype in (np.float32, np.float64):
        scale = 255.0 if float(np.nanmax(image)) <= 1.0 else 1.0
        image = np.clip(np.nan_to_num(image) * scale, 0, 255).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported pixel type {image.dtype} (expected 8/16-bit or float)")
    if image.ndim == 3 and image.shape[2] in (1, 2):  # grey, or grey + alpha
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ValueError(f"unsupported image shape {image.shape}")


def _is_truncated_jpeg(data: np.ndarray) -> bool:
    # libjpeg fills a truncated JPEG with grey and only warns; confirm with Pillow, which
    # refuses truncated data (and accepts files with trailing bytes after the end marker).
    raw = data.tobytes()
    if not raw.startswith(b"\xff\xd8") or raw.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return False
    from PIL import Image

    try:
        with Image.open(io.BytesIO(raw)) as img:
            img.load()
    except OSError:
        return True
    return False


def _apply_exif_orientation(image: np.ndarray, data: np.ndarray) -> np.ndarray:
    # IMREAD_UNCHANGED ignores EXIF orientation; apply it as Pillow's exif_transpose would.
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data.tobytes())) as img:
            orientation = img.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return image
    transforms = {
        2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1], 8: lambda a: np.rot90(a, 1),
    }
    if orientation not in transforms:
        return image
    return np.ascontiguousarray(transforms[orientation](image))


def to_grey(image: np.ndarray) -> np.ndarray:
    """uint8 greyscale ``(H, W)`` from uint8 RGB ``(H, W, 3)`` or greyscale."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected RGB (H, W, 3) or greyscale (H, W), got shape {image.shape}")


def face_transform(detection: Detection, margin: float = 0.2, rotate: bool = True) -> tuple[np.ndarray, int]:
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
    margin: float = 0.2,
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
    if side != size:
        interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        crop = cv2.resize(crop, (size, size), interpolation=interp)
    return crop
