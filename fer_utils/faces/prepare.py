"""Detect, align and crop the faces of a folder tree of photos into one ``.npz`` array file.

The output holds ``images`` uint8 ``(N, size, size)``, ``paths`` (relative, POSIX),
``boxes`` ``(N, 4)``, ``scores`` and ``n_faces`` per image, ``preprocessing`` (the JSON record of
size and margin, see :mod:`fer_utils.data.preprocessing`) and ``detector``, plus
``labels`` / ``classes`` when every image lies under an emotion-named folder. Work is saved in chunks to a work
folder, so an interrupted run resumes where it stopped. A JSON report next to the output
lists every unreadable image, image without a face and image with several faces.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fer_utils.data.images import IMAGE_EXTENSIONS, read_image
from fer_utils.data.preprocessing import DEFAULT_MARGIN, Preprocessing
from fer_utils.faces.align import align_face
from fer_utils.files import atomic_write, write_json
from fer_utils.faces.detection import Detection, FaceDetector
from fer_utils.faces.detectors import create_detector
from fer_utils.labels import canonical_name, ordered_classes

KEEP_CHOICES = ("largest", "confident")
NO_FACE_CHOICES = ("skip", "whole")


def find_images(root: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Relative POSIX paths under ``root``, sorted: (image files, other files)."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    images, others = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        (images if path.suffix.lower() in IMAGE_EXTENSIONS else others).append(rel)
    return images, others


def folder_labels(paths: Sequence[str]) -> list[str] | None:
    """Canonical label of each path from its nearest emotion-named folder; ``None`` if no
    path has one. ``ValueError`` when only some paths have one."""
    labels = []
    for rel in paths:
        label = None
        for part in reversed(Path(rel).parts[:-1]):
            try:
                label = canonical_name(part)
                break
            except KeyError:
                continue
        labels.append(label)
    missing = [p for p, lab in zip(paths, labels) if lab is None]
    if len(missing) == len(paths):
        return None
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(paths)} images are not under an emotion-named class folder "
            f"(e.g. {missing[:5]}); put every image under a class folder or none"
        )
    return labels  # type: ignore[return-value]


def report_path(out: str | os.PathLike) -> Path:
    """Where :func:`prepare_faces` writes its JSON report: ``OUT.report.json``."""
    return Path(out).with_suffix(".report.json")


def _pick(detections: list[Detection], keep: str) -> Detection:
    key = (lambda d: d.area) if keep == "largest" else (lambda d: d.score)
    return max(detections, key=key)


def _whole_image(image: np.ndarray) -> Detection:
    return Detection((0, 0, image.shape[1], image.shape[0]), 0.0)


def _process_chunk(
    src: Path, paths: list[str], detector: FaceDetector, *, size: int, margin: float,
    keep: str, no_face: str, batch_size: int, bar: tqdm,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Faces of ``paths``: arrays for those kept and the chunk's report entries."""
    images, kept_paths, boxes, scores, counts = [], [], [], [], []
    events: dict[str, Any] = {"done": list(paths), "no_face": [], "multiple_faces": [], "unreadable": []}
    for start in range(0, len(paths), batch_size):
        batch_paths, pictures = [], []
        for rel in paths[start:start + batch_size]:
            try:
                pictures.append(read_image(src / rel))
                batch_paths.append(rel)
            except (OSError, ValueError) as err:
                events["unreadable"].append({"path": rel, "error": str(err)})
                bar.update(1)
        for rel, picture, found in zip(batch_paths, pictures, detector.detect_batch(pictures)):
            bar.update(1)
            if not found:
                events["no_face"].append(rel)
                if no_face == "skip":
                    continue
                chosen = _whole_image(picture)
            else:
                chosen = _pick(found, keep)
            if len(found) > 1:
                events["multiple_faces"].append({
                    "path": rel, "faces": len(found), "kept_box": [round(v, 1) for v in chosen.box],
                    "scores": [round(d.score, 4) for d in found],
                })
            images.append(align_face(picture, chosen, size=size, margin=margin))
            kept_paths.append(rel)
            boxes.append(chosen.box)
            scores.append(chosen.score)
            counts.append(len(found))
    return _arrays(images, kept_paths, boxes, scores, counts, size), events


def _arrays(images: list, paths: list, boxes: list, scores: list, counts: list, size: int) -> dict[str, np.ndarray]:
    return {
        "images": np.asarray(images, dtype=np.uint8).reshape(-1, size, size),
        "paths": np.asarray(paths, dtype=str),
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        "scores": np.asarray(scores, dtype=np.float32),
        "n_faces": np.asarray(counts, dtype=np.int64),
    }


def _entry_path(entry: str | dict) -> str:
    return entry if isinstance(entry, str) else entry["path"]


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_write(path) as handle:
        np.savez_compressed(handle, **arrays)


def _load_work(work: Path, settings: dict[str, Any]) -> tuple[list[dict[str, np.ndarray]], list[dict], int]:
    """Chunks already finished in ``work`` (checking they were made with ``settings``)."""
    settings_file = work / "settings.json"
    if settings_file.is_file():
        previous = json.loads(settings_file.read_text())
        if previous != settings:
            raise ValueError(
                f"work folder {work} was started with different settings {previous}; "
                f"delete it (or pass another work folder) to start again with {settings}"
            )
    work.mkdir(parents=True, exist_ok=True)
    write_json(settings_file, settings)
    arrays, events, next_index = [], [], 0
    for meta in sorted(work.glob("chunk_*.json")):
        npz = meta.with_suffix(".npz")
        if not npz.is_file():
            continue
        with np.load(npz) as data:
            arrays.append({k: data[k] for k in data.files})
        events.append(json.loads(meta.read_text()))
        next_index = max(next_index, int(meta.stem.split("_")[1]) + 1)
    return arrays, events, next_index


def prepare_faces(
    src: str | os.PathLike,
    out: str | os.PathLike,
    detector: str | FaceDetector = "mtcnn",
    *,
    size: int = 48,
    margin: float = DEFAULT_MARGIN,
    keep: str = "largest",
    no_face: str = "skip",
    device: str | None = None,
    detector_kw: dict[str, Any] | None = None,
    work_dir: str | os.PathLike | None = None,
    chunk_size: int = 256,
    batch_size: int = 16,
    progress: bool = True,
    keep_work: bool = False,
) -> dict[str, Any]:
    """Preprocess every photo under ``src`` into ``out`` (.npz); returns the report dict.

    ``keep``: with several faces, keep the ``"largest"`` or most ``"confident"``.
    ``no_face``: ``"skip"`` the image, or keep the ``"whole"`` image as the face.
    Both cases are always listed in the report (``OUT.report.json``). Finished chunks of
    ``chunk_size`` images are saved to ``work_dir`` (default ``OUT.work/``) and skipped
    when the same command runs again; the work folder is removed at the end unless
    ``keep_work``.
    """
    src, out = Path(src), Path(out)
    _check_options(out, keep, no_face)
    files, others = find_images(src)
    labels = folder_labels(files)
    det = detector if isinstance(detector, FaceDetector) else create_detector(
        detector, device=device, **(detector_kw or {}))
    settings = {"src": str(src.resolve()), "detector": det.name, "size": size, "margin": margin,
                "keep": keep, "no_face": no_face}
    work = Path(work_dir) if work_dir else out.with_suffix(".work")
    chunks, events, index = _load_work(work, settings)
    done = {p for e in events for p in e["done"]}
    todo = [p for p in files if p not in done]
    with tqdm(total=len(files), initial=len(files) - len(todo), desc="prepare-faces",
              unit="img", disable=not progress) as bar:
        for start in range(0, len(todo), chunk_size):
            arrays, chunk_events = _process_chunk(
                src, todo[start:start + chunk_size], det, size=size, margin=margin,
                keep=keep, no_face=no_face, batch_size=batch_size, bar=bar,
            )
            _save_npz(work / f"chunk_{index:05d}.npz", arrays)
            write_json(work / f"chunk_{index:05d}.json", chunk_events)
            chunks.append(arrays)
            events.append(chunk_events)
            index += 1
    result, label_counts = _merge_chunks(chunks, files, labels, size)
    # The record training copies into checkpoints, so predict cuts new faces the same way.
    result["preprocessing"] = np.asarray(json.dumps(Preprocessing(size=size, margin=margin).to_dict()))
    result["detector"] = np.asarray(det.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    _save_npz(out, result)
    report = _report(src, out, settings, files, others, events, int(len(result["paths"])), label_counts)
    write_json(report_path(out), report)
    if not keep_work:
        _remove_work(work)
    return report


def _check_options(out: Path, keep: str, no_face: str) -> None:
    if keep not in KEEP_CHOICES:
        raise ValueError(f"keep must be one of {KEEP_CHOICES}, got {keep!r}")
    if no_face not in NO_FACE_CHOICES:
        raise ValueError(f"no_face must be one of {NO_FACE_CHOICES}, got {no_face!r}")
    if out.suffix != ".npz":
        raise ValueError(f"output must be a .npz file, got {out}")


def _merge_chunks(chunks: list[dict[str, np.ndarray]], files: list[str], labels: list[str] | None,
                  size: int) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The chunks' faces in path order (files deleted since an interrupted run left out), with the
    class-folder labels and their counts when the folders name classes."""
    current = set(files)
    chunks = [*chunks, _arrays([], [], [], [], [], size)]
    merged = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[-1]}
    order = [i for i in np.argsort(merged["paths"], kind="stable") if merged["paths"][i] in current]
    result = {k: v[order] for k, v in merged.items()}
    if labels is None:
        return result, {}
    by_path = dict(zip(files, labels))
    names = [by_path[p] for p in result["paths"]]
    classes = ordered_classes(labels)
    result["labels"] = np.asarray([classes.index(n) for n in names], dtype=np.int64)
    result["classes"] = np.asarray(classes, dtype=str)
    return result, {c: names.count(c) for c in classes}


def _report(src: Path, out: Path, settings: dict[str, Any], files: list[str], others: list[str],
            events: list[dict[str, Any]], faces_saved: int, label_counts: dict[str, int]) -> dict[str, Any]:
    """``OUT.report.json``: what was found, saved, skipped (no face, unreadable, not an image) and chosen."""
    current = set(files)
    no_face_files, multi, unreadable = (
        sorted((x for e in events for x in e[key] if _entry_path(x) in current), key=_entry_path)
        for key in ("no_face", "multiple_faces", "unreadable")
    )
    return {
        "src": str(src), "out": str(out), **{k: settings[k] for k in ("detector", "size", "margin", "keep", "no_face")},
        "images_found": len(files),
        "faces_saved": faces_saved,
        "labels": label_counts or None,
        "no_face": {"count": len(no_face_files), "files": no_face_files,
                    "action": "skipped" if settings["no_face"] == "skip" else "whole image kept"},
        "multiple_faces": {"count": len(multi), "files": multi, "action": f"kept the {settings['keep']} face"},
        "unreadable": {"count": len(unreadable), "files": unreadable},
        "not_images": {"count": len(others), "files": others},
    }


def _remove_work(work: Path) -> None:
    for path in work.glob("chunk_*"):
        path.unlink()
    (work / "settings.json").unlink(missing_ok=True)
    if not any(work.iterdir()):
        work.rmdir()
