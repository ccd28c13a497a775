"""Choosing the compute device and its precision, and seeding every random number generator."""
from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from fer_utils.errors import UnsupportedPrecisionError


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else CPU; anything else as given."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


#: CPU flags that mean bf16 arithmetic in hardware (AVX-512 BF16, AMX); without one, CPU autocast to
#: bf16 emulates it and runs slower than fp32 (pytorch issue 183815), so a run falls back to fp32.
NATIVE_BF16_FLAGS: tuple[str, ...] = ("avx512_bf16", "amx_bf16")


#: Short names of the autocast dtypes, as the results tables print them.
DTYPE_LABELS: dict[str, str] = {"bfloat16": "bf16", "float16": "fp16"}


def machine_share(device: str | torch.device) -> dict[str, int]:
    """The CPU threads a run trains with and the cores the machine has (what share of it the run used; the
    cost table counts machine time with it). Empty on a GPU, which a run holds whole."""
    if torch.device(device).type != "cpu":
        return {}
    return {"cpu_threads": torch.get_num_threads(), "cpu_cores": os.cpu_count() or 1}


def machine_seconds(record: dict, unrecorded_share: float = 1.0) -> float | None:
    """Seconds of the whole machine a run took: its ``train_seconds`` times the share of the machine it
    trained on (:func:`machine_share`'s record, else ``unrecorded_share``); None without a recorded time.
    Two one-thread runs side by side on 2 cores each cost half their wall time."""
    seconds, threads, cores = (record.get(k) for k in ("train_seconds", "cpu_threads", "cpu_cores"))
    if not (isinstance(seconds, (int, float)) and seconds > 0):
        return None
    recorded = isinstance(threads, int) and isinstance(cores, int) and cores > 0
    return float(seconds) * (min(threads / cores, 1.0) if recorded else unrecorded_share)


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively: one of :data:`NATIVE_BF16_FLAGS` in ``/proc/cpuinfo``
    (where that file is missing, as on macOS, False: runs stay fp32)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


@dataclass(frozen=True)
class Precision:
    """Where and in which dtype a model computes: ``dtype`` None is plain fp32."""

    device_type: str
    dtype: torch.dtype | None = None

    @property
    def label(self) -> str:
        """``"cpu bf16"``, ``"cuda fp16"``, ``"cpu fp32"``: the device column of the results tables."""
        return f"{self.device_type} {DTYPE_LABELS[str(self.dtype).removeprefix('torch.')] if self.dtype else 'fp32'}"

    def autocast(self) -> torch.autocast:
        """The autocast context of this precision (a no-op for fp32)."""
        return torch.autocast(self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)


_ANNOUNCED: set[str] = set()


def _say_once(message: str) -> None:
    if message not in _ANNOUNCED:
        _ANNOUNCED.add(message)
        print(message, file=sys.stderr)


def resolve_precision(device: str | torch.device, amp: bool = True, amp_dtype: str = "bfloat16") -> Precision:
    """The precision of ``amp`` in ``amp_dtype`` on ``device``: autocast on CUDA as asked; on CPU,
    bf16 where the CPU has it natively (:func:`cpu_has_native_bf16`), else fp32, said once on stderr.
    ``float16`` on CPU raises :class:`UnsupportedPrecisionError` (CPUs have no fp16 arithmetic)."""
    device = torch.device(device)
    dtype = getattr(torch, amp_dtype, None)
    if dtype not in (torch.bfloat16, torch.float16):
        raise UnsupportedPrecisionError(f"--amp-dtype {amp_dtype!r}: expected bfloat16 or float16")
    if not amp:
        return Precision(device.type)
    if device.type == "cuda":
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise UnsupportedPrecisionError(f"--amp-dtype bfloat16: {torch.cuda.get_device_name(device)} has no "
                                            "bf16; use --amp-dtype float16 or --no-amp")
        return Precision("cuda", dtype)
    if device.type != "cpu":
        _say_once(f"precision: autocast is not used on {device.type}; running in fp32")
        return Precision(device.type)
    if dtype == torch.float16:
        raise UnsupportedPrecisionError("--amp-dtype float16 cannot run on the CPU (no fp16 arithmetic); use "
                                        "--amp-dtype bfloat16 or --no-amp")
    if not cpu_has_native_bf16():
        _say_once(f"precision: this CPU has no native bf16 ({'/'.join(NATIVE_BF16_FLAGS)} absent), where bf16 "
                  "runs slower than fp32; running in fp32")
        return Precision("cpu")
    return Precision("cpu", torch.bfloat16)


def uses_channels_last(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a 2-D convolutional model (every weight of rank <= 4, some of rank 4),
    whose convolutions run faster in the channels-last layout."""
    ranks = {p.dim() for p in model.parameters()}
    return 4 in ranks and max(ranks) == 4
