"""Weights from local files only: where a timm model's ImageNet file is, and backbones of
earlier fer_utils checkpoints (e.g. FER2013 -> CK+ fine-tuning).

Nothing is ever downloaded. The ImageNet file itself is loaded by timm
(``pretrained_cfg_overlay=dict(file=...)``, see :mod:`fer_utils.models.timm_models`);
:func:`load_backbone_weights` returns a :class:`LoadReport` naming the keys that were
skipped, and logs it.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

#: Environment variable naming a folder of ``<timm_name>.pth`` / ``.safetensors`` files.
PRETRAINED_DIR_ENV = "FER_PRETRAINED_DIR"
#: Factory kwargs that only choose initial weights; drop them from checkpoint ``model_kwargs``
#: so a checkpoint rebuilds without needing those files.
INIT_ONLY_KWARGS = ("pretrained", "pretrained_file", "encoder_weights")
#: Init-only kwargs naming a weights file: a config identifies that file by content, not path.
WEIGHT_FILE_KWARGS = ("pretrained_file", "encoder_weights")


def architecture_kwargs(model_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``model_kwargs`` without :data:`INIT_ONLY_KWARGS`: what rebuilds the model before its state dict loads."""
    return {k: v for k, v in model_kwargs.items() if k not in INIT_ONLY_KWARGS}


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (SHA-256 unless ``algorithm`` names another ``hashlib`` one)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def identify_weight_file(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """``<algorithm>:<digest>`` of a weights file, the same wherever it lies; ``missing:<file name>`` for a
    file not made yet (a plan's stand-in), which no stored result matches: training would need it."""
    return f"{algorithm}:{file_digest(path, algorithm)}" if Path(path).is_file() else f"missing:{Path(path).name}"


def identify_weight_files(model_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``model_kwargs`` with each :data:`WEIGHT_FILE_KWARGS` path replaced by :func:`identify_weight_file`,
    so that a config hashes the same wherever the weights file lies."""
    return {k: identify_weight_file(v) if k in WEIGHT_FILE_KWARGS and v is not None else v
            for k, v in model_kwargs.items()}


@dataclass
class LoadReport:
    """What a partial load did: keys loaded, skipped (left as initialised) and adapted."""

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.source}: loaded {len(self.loaded)} tensors"
        if self.adapted:
            text += f"; adapted {self.adapted}"
        if self.skipped:
            text += f"; skipped (kept initialisation) {self.skipped}"
        return text


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], list[str] | None]:
    """Tensors and class names (if recorded) of a ``.safetensors`` file, a plain state dict, or
    a checkpoint wrapping one under ``model_state`` / ``state_dict`` / ``model``.
    ``.pth``/``.pt`` files are read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path)), None
    obj = torch.load(path, map_location="cpu", weights_only=True)
    classes = obj.get("classes") if isinstance(obj, dict) else None
    for key in ("model_state", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} holds no state dict (a dict of tensor name -> tensor)")
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in obj.items()}
    return state, list(classes) if isinstance(classes, (list, tuple)) else None


def head_prefix(model: nn.Module) -> str:
    """State-dict prefix of the classification head: ``get_classifier()`` (timm) or the
    ``classifier`` / ``head`` / ``fc`` attribute."""
    candidates = [model.get_classifier()] if hasattr(model, "get_classifier") else []
    candidates += [getattr(model, a, None) for a in ("classifier", "head", "fc")]
    for head in candidates:
        if isinstance(head, nn.Module):
            name = next((n for n, m in model.named_modules() if m is head and n), None)
            if name:
                return name + "."
    raise ValueError(f"{type(model).__name__} has no classifier head (get_classifier(), .classifier, .head or .fc)")


def load_matching(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    source: str,
    skippable: Iterable[str] = (),
) -> LoadReport:
    """Load ``state`` into ``model``. Keys under a ``skippable`` prefix (and BatchNorm
    ``num_batches_tracked`` counters) may be absent or of another shape: they keep their
    initialisation. Any other difference is an error listing the keys."""
    skippable = tuple(skippable)
    own = model.state_dict()
    report = LoadReport(source)
    problems = []
    for key, target in own.items():
        value = state.get(key)
        if value is not None and value.shape == target.shape:
            report.loaded.append(key)
        elif key.startswith(skippable) or key.endswith("num_batches_tracked"):
            report.skipped.append(key)
        else:
            found = "missing" if value is None else f"shape {tuple(value.shape)}"
            problems.append(f"{key}: model {tuple(target.shape)}, file {found}")
    unexpected = sorted(k for k in state if k not in own and not k.startswith(skippable))
    problems += [f"{k}: in file, not in model" for k in unexpected]
    if problems:
        raise ValueError(f"{source} does not fit {type(model).__name__}:\n  " + "\n  ".join(problems[:20])
                         + (f"\n  ... {len(problems) - 20} more" if len(problems) > 20 else ""))
    model.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    log.info("%s", report)
    return report


def load_backbone_weights(
    model: nn.Module,
    checkpoint_path: str | os.PathLike,
    strict_head: bool = False,
    classes: Sequence[str] | None = None,
) -> LoadReport:
    """Load a trained checkpoint (or state-dict file) into ``model`` except, where it does
    not fit, the classification head, e.g. a FER2013 model into a CK+ model.

    The head keeps its fresh initialisation when its shapes differ (another class count)
    or when ``classes`` is given and differs from the checkpoint's ``classes`` (same count,
    other meaning). ``strict_head=True`` makes either case an error instead.
    """
    path = Path(checkpoint_path)
    state, ckpt_classes = read_weights(path)
    head = head_prefix(model)
    other_classes = classes is not None and ckpt_classes is not None and list(classes) != list(ckpt_classes)
    head_fits = all(
        k in state and state[k].shape == v.shape for k, v in model.state_dict().items() if k.startswith(head)
    )
    if strict_head and (other_classes or not head_fits):
        why = (f"checkpoint classes {ckpt_classes} != {list(classes)}" if other_classes
               else "its shapes differ (another number of classes)")
        raise ValueError(f"{path}: classifier head '{head[:-1]}' does not fit: {why}")
    if other_classes:
        state = {k: v for k, v in state.items() if not k.startswith(head)}
    return load_matching(model, state, source=str(path), skippable=(head,))


def find_pretrained_file(timm_name: str, pretrained_file: str | os.PathLike | None = None) -> Path:
    """The local ImageNet weights of ``timm_name``: ``pretrained_file`` if given, else
    ``$FER_PRETRAINED_DIR/<timm_name>.pth`` or ``.safetensors``. Never downloads."""
    if pretrained_file is not None:
        candidates = [Path(pretrained_file)]
    elif os.environ.get(PRETRAINED_DIR_ENV):
        root = Path(os.environ[PRETRAINED_DIR_ENV])
        candidates = [root / f"{timm_name}{ext}" for ext in (".pth", ".safetensors")]
    else:
        raise FileNotFoundError(
            f"pretrained weights for {timm_name!r} requested but neither pretrained_file= nor "
            f"${PRETRAINED_DIR_ENV} is set; nothing is downloaded: save the timm state dict as "
            f"<dir>/{timm_name}.pth or .safetensors and set {PRETRAINED_DIR_ENV}=<dir>"
        )
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"pretrained weights for {timm_name!r} not found; searched {[str(p) for p in candidates]}; "
        "nothing is downloaded"
    )
