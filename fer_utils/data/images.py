"""Reading image files of any common format and depth into uint8 greyscale arrays."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fer_utils.data.errors import DatasetError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
)


def is_image_file(path: Path) -> bool:
    """True when the suffix is a supported image extension."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8: ``(H, W)`` grey or ``(H, W, 3)`` RGB.

    Handles greyscale, RGB, RGBA (alpha dropped) and 16-bit files. Raises ``DatasetError``
    naming the path when the file is missing, truncated or not an image.
    """
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read file ({exc})") from exc
    image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if image is None:
        raise DatasetError(f"{path}: not a readable image (empty, truncated or unsupported format)")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    elif image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def to_grey(image: np.ndarray) -> np.ndarray:
    """uint8 greyscale version of a grey or RGB image."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def read_grey(path: str | Path, size: int | None = 48) -> np.ndarray:
    """Read an image as uint8 greyscale, resized to ``size x size`` (area interpolation) if given."""
    grey = to_grey(read_image(path))
    if size is not None and grey.shape != (size, size):
        grey = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
    return grey
