"""Several models of one architecture trained at once (the folds of a cross-validation).

:func:`fit_folds` trains model ``k`` on data ``k`` exactly as ``fit(model, data, None, cfg)``
would one after another (no validation, the last epoch kept), but every training step runs the
K models as one: their parameters and buffers are stacked (``torch.func.stack_module_state``)
and the step is ``vmap`` over ``functional_call``. Why vmap: every layer of the clip families
except GRU/LSTM has a batching rule (K convolutions become one grouped convolution), the models
stay ordinary modules, and each fold keeps ``fit``'s own pieces unchanged: its
:func:`~fer_utils.train.engine.training_batches` (data order, augmentation randomness), its
criterion (class weights), its optimizer and LR schedule (same factories) and its
:class:`~fer_utils.train.engine.TrainStep` update (clipping, gradient scaling).

- Each model's parameters, gradients and buffers are rebound as views of its slice of the
  stacked tensors: the per-fold optimizers update the stacked tensors in place, and the trained
  models need no copying back.
- Batch-norm running statistics are stacked buffers passed through ``functional_call``, so each
  fold's in-place update lands in its own slice.
- Dropout: ``fit`` seeds the global RNG with ``cfg.seed`` for every fold, so its n-th step draws
  the same mask in every fold; the batched step draws it once (``randomness="same"``).
- Folds of different sizes keep their own epoch boundaries: global step ``s`` is step ``s`` of
  every fold, counted across its epochs (so the dropout masks match ``fit``'s too). A fold with
  fewer steps in all finishes first and sits out the last steps: its loss is masked, its
  optimizer and schedule do not step and its batch-norm statistics are restored.

Results equal ``fit``'s up to rounding: the grouped kernels round differently, and where a
max-pool window holds equal values (flat image regions) the gradient may then go to another of
them, so per-fold trajectories drift apart slowly (per-epoch losses 1e-7 to 3e-3 apart after 3
epochs in the settings tried; the same predictions). The history's ``seconds`` are the batched
run's wall time split evenly over the folds.

Cost, measured on a shared 2-core CPU machine (one thread, same process, best of two; relative
only). Fold by fold vs batched, ``early_fusion``: width 4, 3 folds of 12 CK+48 subjects, 3 epochs,
batch 8: 3.0 s vs 0.74 s; width 8, 3 folds of 30 subjects, batch 32: 0.56 s vs 0.61 s; width 16,
5 folds of all 118 subjects, 2 epochs: 11.4 s vs 12.4 s. On a CPU the grouped convolutions do the
same arithmetic, so only overhead-bound (tiny) models gain. On a GPU these models are
launch-bound: counting the aten ops on non-scalar tensors (views left out, AdamW ``foreach`` as
on CUDA) per fold and step, ``early_fusion`` width 16 on 10 folds of CK+48 launches 184 fold by
fold and 130 batched: the forward, backward and loss (about 55 per fold) run once for all K folds,
while each fold still launches its augmentation (about 70: drawing and applying it) and its
optimizer update (about 17) and epoch-end checks. Applying the augmentation once to the K
folds' batches (random numbers still drawn per fold) would bring this to about 40 (4-5x).
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from fer_utils.data import FaceData
from fer_utils.devices import resolve_device, seed_everything
from fer_utils.train.config import TrainConfig
from fer_utils.errors import TrainingDivergedError
from fer_utils.train.engine import (
    FitResult, RunState, TrainStep, check_finite, create_optimization, make_criterion, training_batches,
)


def batch_refusal(models: Sequence[nn.Module], trains: Sequence[FaceData], cfg: TrainConfig) -> str | None:
    """Why these models cannot be trained together by :func:`fit_folds` (None: they can)."""
    if cfg.early_stopping_patience is not None:
        return "early stopping needs each fold's validation and best weights"
    if cfg.compile:
        return "compile acts on a single module, not on stacked parameters"
    if cfg.ema_decay is not None or cfg.mixup_alpha or cfg.cutmix_alpha or cfg.sam_rho:
        return "EMA, mixup/CutMix and SAM are steps of fit's TrainStep, not of the stacked step"
    if any(isinstance(m, nn.RNNBase) for model in models for m in model.modules()):
        return "torch.func.vmap has no batching rule for GRU/LSTM layers"
    if any(t.soft_labels is not None for t in trains):
        return "soft labels (distillation targets) are fit's, not the stacked step's"
    if any(len(t) <= cfg.batch_size for t in trains):
        return f"a fold has no more training samples than one batch ({cfg.batch_size}), so batch shapes differ"
    return None


def _bind_slices(model: nn.Module, tensors: dict[str, torch.Tensor], k: int, parameters: bool) -> None:
    """Make ``model``'s parameters (or buffers) views of slice ``k`` of the stacked ``tensors``."""
    for name, stacked in tensors.items():
        owner, _, leaf = name.rpartition(".")
        view = stacked.detach()[k]
        setattr(model.get_submodule(owner), leaf,
                nn.Parameter(view, requires_grad=stacked.requires_grad) if parameters else view)


def _stacked_buffers(modules: Sequence[nn.Module]) -> dict[str, torch.Tensor]:
    """The modules' buffers stacked by name (a criterion's class weights, if any)."""
    return {name: torch.stack([dict(m.named_buffers())[name] for m in modules])
            for name, _ in modules[0].named_buffers()}


class _Stack:
    """The K models as one: stacked parameters and buffers, and the vmapped forward and loss.

    Each model's parameters, gradients and buffers become views of its slice of the stacked ones.
    """

    def __init__(self, models: Sequence[nn.Module], criteria: Sequence[nn.Module]) -> None:
        template, criterion = copy.deepcopy(models[0]).to("meta"), criteria[0]
        self.params, self.buffers = stack_module_state(list(models))
        self.grads = []
        for stacked in self.params.values():
            if stacked.requires_grad:
                stacked.grad = torch.zeros_like(stacked)
                self.grads.append(stacked.grad)
        for k, model in enumerate(models):
            _bind_slices(model, self.params, k, parameters=True)
            _bind_slices(model, self.buffers, k, parameters=False)
            for name, p in model.named_parameters():
                if p.requires_grad:
                    p.grad = self.params[name].grad[k]
        self.criterion_buffers = _stacked_buffers(criteria)

        def forward(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(template, (p, b), (x,))

        def loss(w: dict[str, torch.Tensor], logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return functional_call(criterion, w, (logits, y))

        # randomness="same": one dropout mask for all K, as fit draws the same one in every fold
        self.forward, self.loss = vmap(forward, randomness="same"), vmap(loss)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, autocast: torch.autocast) -> tuple[torch.Tensor, torch.Tensor]:
        """Zeroed gradients, then ``(K,)`` losses and ``(K, B, C)`` logits of ``(K, B, ...)`` batches."""
        torch._foreach_zero_(self.grads)
        with autocast:
            logits = self.forward(self.params, self.buffers, x)
        return self.loss(self.criterion_buffers, logits.float(), y), logits

    def save_buffers(self, idle: torch.Tensor) -> list[torch.Tensor]:
        """Copies of the ``idle`` folds' buffers (batch-norm statistics)."""
        return [b[idle] for b in self.buffers.values()]

    def restore_buffers(self, idle: torch.Tensor, saved: list[torch.Tensor]) -> None:
        """Put back what :meth:`save_buffers` copied."""
        for b, old in zip(self.buffers.values(), saved):
            b[idle] = old


class _FoldRun:
    """One fold's own pieces of ``fit``: batches, :class:`TrainStep`, schedule and history.

    Global step ``s`` is the fold's step ``s`` counted across its epochs.
    """

    def __init__(self, index: int, model: nn.Module, train: FaceData, criterion: nn.Module, cfg: TrainConfig,
                 device: torch.device):
        self.index, self.cfg = index, cfg
        self.batches = training_batches(train, cfg, device)
        optimizer, self.schedule = create_optimization(model, cfg, len(self.batches))
        self.step = TrainStep(model, optimizer, criterion, cfg, device, preprocessing=train.preprocessing)
        self.total = cfg.epochs * len(self.batches)
        self.state = RunState()
        self.iterator: Iterator[tuple[torch.Tensor, torch.Tensor]] = iter(())
        self.lr = self.started = 0.0

    def starts_epoch(self, s: int) -> bool:
        return s < self.total and s % len(self.batches) == 0

    def ends_epoch(self, s: int) -> bool:
        return s < self.total and (s + 1) % len(self.batches) == 0

    def batch(self, s: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The batch of step ``s`` (a new epoch's order and augmentation when one starts), None once done."""
        if s >= self.total:
            return None
        if self.starts_epoch(s):
            self.batches.set_epoch(s // len(self.batches) + 1)
            self.iterator = iter(self.batches)
            self.lr, self.started = self.step.optimizer.param_groups[0]["lr"], time.perf_counter()
        return next(self.iterator)

    def end_epoch(self, s: int, loss_sum: float, correct: float, share: int) -> None:
        """``fit``'s end of an epoch without validation: divergence check, epoch-wise schedule, history
        row (``seconds``: the epoch's wall time over the ``share`` folds trained together)."""
        epoch, seen = s // len(self.batches) + 1, len(self.batches) * self.batches.batch_size
        train_loss = loss_sum / seen
        try:
            check_finite(self.step.model, epoch, train_loss, None, None)
        except TrainingDivergedError as error:
            raise TrainingDivergedError(f"fold {self.index}: {error}") from None
        self.schedule.step_epoch(-train_loss)
        self.state.record(dict(epoch=epoch, train_loss=train_loss, train_acc=correct / seen, val_loss=math.nan,
                               val_acc=math.nan, lr=self.lr, seconds=(time.perf_counter() - self.started) / share),
                          False, self.cfg)

    def result(self) -> FitResult:
        """What ``fit`` returns for this fold (no validation: the last epoch is the best)."""
        return self.state.result(self.step.model, self.cfg, has_val=False, run_dir=None)


def fit_folds(models: Sequence[nn.Module], trains: Sequence[FaceData], cfg: TrainConfig,
              device: str | torch.device | None = None) -> list[FitResult]:
    """Train ``models[k]`` on ``trains[k]`` for every ``k`` at once, as ``fit(models[k], trains[k], None, cfg)``.

    The models must share one architecture; :func:`batch_refusal` says which settings need
    ``fit`` instead. Returns one :class:`FitResult` per model, its model trained and in eval mode.
    """
    if not models or len(models) != len(trains):
        raise ValueError(f"fit_folds needs one training set per model, got {len(models)} models "
                         f"and {len(trains)} training sets")
    reason = batch_refusal(models, trains, cfg)
    if reason is not None:
        raise ValueError(f"these folds cannot be trained together: {reason}; train them one by one with fit")
    shapes = [{n: t.shape for n, t in m.state_dict().items()} for m in models]
    if any(s != shapes[0] for s in shapes):
        raise ValueError("fit_folds needs models of one architecture (same parameter names and shapes)")
    device = resolve_device(device)
    criteria = [make_criterion(cfg, train, device) for train in trains]
    stack = _Stack([model.to(device).train() for model in models], criteria)  # before the optimizers: views
    folds = [_FoldRun(k, *fold, cfg, device) for k, fold in enumerate(zip(models, trains, criteria))]
    loss_sum, correct = torch.zeros(len(folds), device=device), torch.zeros(len(folds), device=device)
    seed_everything(cfg.seed)  # as fit: the dropout masks are drawn from here on
    for s in range(max(f.total for f in folds)):
        starting = [f.index for f in folds if f.starts_epoch(s)]
        if starting:
            loss_sum[starting], correct[starting] = 0.0, 0.0
        pairs = [f.batch(s) for f in folds]
        live = next(p for p in pairs if p is not None)
        x = torch.stack([torch.zeros_like(live[0]) if p is None else f.step.preprocessing.normalise(p[0])
                         for f, p in zip(folds, pairs)])  # as fit's training step (the stacked forward skips it)
        y = torch.stack([torch.zeros_like(live[1]) if p is None else p[1] for p in pairs])
        idle = None if all(p is not None for p in pairs) else torch.tensor([p is None for p in pairs], device=device)
        saved = None if idle is None else stack.save_buffers(idle)
        losses, logits = stack(x, y, folds[0].step.autocast())
        scaled = torch.stack([f.step.scaler.scale(fold_loss) for f, fold_loss in zip(folds, losses)])
        (scaled if idle is None else scaled.masked_fill(idle, 0.0)).sum().backward()
        if saved is not None:  # a finished fold keeps its batch-norm statistics
            stack.restore_buffers(idle, saved)
        loss_sum += losses.detach() * y.shape[1]
        correct += (logits.detach().argmax(-1) == y).sum(-1)
        for f, pair in zip(folds, pairs):
            if pair is not None:
                f.step.update()
                f.schedule.step_batch()
            if f.ends_epoch(s):
                f.end_epoch(s, loss_sum[f.index].item(), correct[f.index].item(), len(folds))
    return [f.result() for f in folds]
