"""int8 inference on a CPU: post-training static quantization of a classifier (torch's FX graph mode,
``x86`` kernels: convolutions, batch norm folded in, ReLU and pooling in int8). The first convolution
and the last linear layer stay in floating point (:func:`float_ends`), the usual exception: a grey
face enters the network with one channel and the logits leave it with seven, so these two layers
carry little of the arithmetic and most of int8's error (README, Speed: "The int8 classifier").

The activation ranges are measured once on real faces (:func:`calibrate_int8`) and stored in the
checkpoint as the observers' state, plain float tensors; :func:`int8_model` rebuilds the int8 model
from them without data, so ``predict`` needs no dataset. Hand-written glue around torch's own
quantizer: its successor (torchao's PT2E flow) runs int8 fast only through ``torch.compile``.
"""
from __future__ import annotations

import copy
import itertools
import warnings
from collections.abc import Iterable

import torch
import torch.fx.config
from torch import nn

from fer_utils.errors import CheckpointError, first_line

ENGINE = "x86"
OBSERVER_KEY = "activation_post_process"


def int8_available() -> bool:
    """Whether this torch build has the x86 int8 kernels."""
    return ENGINE in torch.backends.quantized.supported_engines


def float_ends(model: nn.Module) -> list[str]:
    """Names of the modules kept in floating point: the first convolution and the last linear layer."""
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return convs[:1] + linears[-1:]


def _prepared(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A float copy of ``model`` in eval mode with observers after every op quantized (all but
    :func:`float_ends`)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    torch.backends.quantized.engine = ENGINE
    mapping = get_default_qconfig_mapping(ENGINE)
    for name in float_ends(model):
        mapping = mapping.set_module_name(name, None)
    # the tracer's per-node stack traces would import torch._dynamo (about 2.5 s of a cold start)
    emitting, torch.fx.config.do_not_emit_stack_traces = torch.fx.config.do_not_emit_stack_traces, True
    with warnings.catch_warnings():  # torch announces the move of this API to torchao on every call
        warnings.simplefilter("ignore")
        try:
            return prepare_fx(copy.deepcopy(model).float().eval(), mapping, (example,))
        except Exception as exc:  # FX tracing raises many types (TraceError, TypeError, NotImplementedError...)
            raise CheckpointError(f"{type(model).__name__} cannot be quantized to int8 "
                                  f"(FX tracing failed: {first_line(exc)}); run it in floating point") from exc
        finally:
            torch.fx.config.do_not_emit_stack_traces = emitting


@torch.no_grad()
def calibrate_int8(model: nn.Module, batches: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The observers' state after seeing ``batches`` (model inputs, preprocessed as in inference)."""
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        raise ValueError("calibrate_int8: no batches to measure the activation ranges on")
    prepared = _prepared(model, first[:1])
    for batch in itertools.chain([first], batches):  # streamed, not gathered first
        prepared(batch)
    return {k: v.clone() for k, v in prepared.state_dict().items() if OBSERVER_KEY in k}


def int8_model(model: nn.Module, calibration: dict[str, torch.Tensor], example: torch.Tensor) -> nn.Module:
    """The int8 version of ``model`` from the observers' state :func:`calibrate_int8` returned; ``example``:
    one model input. ``CheckpointError`` when the calibration does not fit the model's graph."""
    from torch.ao.quantization.quantize_fx import convert_fx

    prepared = _prepared(model, example)
    differing = sorted({k for k in prepared.state_dict() if OBSERVER_KEY in k} ^ set(calibration))
    if differing:
        raise CheckpointError(f"the int8 calibration does not fit {type(model).__name__}'s graph "
                              f"(differs at {differing[:2]}); calibrate again (scripts/calibrate_int8.py)")
    prepared.load_state_dict(calibration, strict=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_fx(prepared).eval()
