"""Reading image files of any common format, depth and orientation into uint8 arrays."""
from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np

from fer_utils.data.skips import SkipLog
from fer_utils.errors import ImageReadError

#: Photo file extensions read by :func:`read_image` (lower case, with the dot).
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm",
)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a photo as uint8 RGB ``(H, W, 3)``, whatever its depth and channels.

    Greyscale, RGBA (alpha dropped), 16-bit (scaled to 8-bit) and float images are
    normalised; EXIF orientation is applied. Raises ``FileNotFoundError`` or
    :class:`ImageReadError` naming ``path`` (also for images over Pillow's decompression-bomb
    pixel limit and float images with NaN/inf pixels).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode also handles non-ASCII paths
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if data.size == 0:
        raise ImageReadError(f"{path}: empty file, expected an image")
    orientation = _exif_orientation(path, data)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(
            f"{path}: not a readable image (not an image file, unsupported format or truncated)"
        )
    if _is_truncated_jpeg(data):
        raise ImageReadError(f"{path}: truncated JPEG file (image data ends early)")
    image = _apply_orientation(image, orientation)
    try:
        return to_rgb8(image)
    except ValueError as err:
        raise ImageReadError(f"{path}: {err}") from None


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Convert an OpenCV-decoded array (BGR/BGRA/grey, 8/16-bit or float) to uint8 RGB."""
    if image.dtype == np.uint16:
        image = cv2.convertScaleAbs(image, alpha=255.0 / 65535.0)
    elif image.dtype in (np.float32, np.float64):
        if not np.isfinite(image).all():
            raise ValueError(f"{int((~np.isfinite(image)).sum())} NaN/inf pixel value(s); expected finite numbers")
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


def _exif_orientation(path: Path, data: np.ndarray) -> int:
    """The EXIF orientation tag (1 if none); ``ImageReadError`` for a decompression bomb."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data.tobytes())) as img:
            return int(img.getexif().get(0x0112, 1))
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path}: not read: {exc}") from None  # Pillow names the size and its limit
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, TypeError):
        return 1


def _apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    # IMREAD_UNCHANGED ignores EXIF orientation; apply it as Pillow's exif_transpose would.
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


def is_image_file(path: Path) -> bool:
    """True when the suffix is a supported image extension."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def list_files(folder: Path, log: SkipLog) -> list[Path]:
    """The regular files in ``folder``, sorted by name. Anything else (a sub-folder, a broken or
    looping symlink, a FIFO, socket or device) and a file whose name repeats another's up to
    letter case (``x.PNG`` beside ``x.png``) is reported to ``log`` (raised, or skipped and counted)."""
    files: list[Path] = []
    seen: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            log.bad("nested_folder", f"{entry}: a folder inside {folder}; expected image files only")
        elif not entry.exists():
            log.bad("broken_link", f"{entry}: broken or looping symbolic link; expected an image file")
        elif not entry.is_file():
            log.bad("special_file", f"{entry}: not a regular file (FIFO, socket or device); expected an image file")
        elif entry.name.lower() in seen:
            log.bad("duplicate_file", f"{entry}: same name as {seen[entry.name.lower()].name} up to letter case; "
                                      "expected one file per image")
        else:
            seen[entry.name.lower()] = entry
            files.append(entry)
    return files


def read_grey(path: str | os.PathLike, size: int | None = 48) -> np.ndarray:
    """Read an image as uint8 greyscale, resized to ``size x size`` (area interpolation) if given."""
    grey = to_grey(read_image(path))
    if size is not None and grey.shape != (size, size):
        grey = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
    return grey
