"""Spatio-temporal models on clips ``(B, T, C, H, W)`` and the 2D frame CNN they share.

Every family is built from the same VGG-ish trunk (``features``: four blocks of two 3x3
conv-BN-ReLU layers and a 2x2 max-pool, ``width``/2w/4w/8w channels, sized for 48x48), so a
``frame_cnn`` trained on FER2013 with the normal engine can initialise any of them through
:func:`init_frame_cnn_from_checkpoint`:

- ``single_frame``: the frame CNN on every frame; clip logits = mean of frame log-probabilities,
  :meth:`SingleFrame.frame_logits` gives the per-frame logits for voting.
- ``early_fusion``: the T frames stacked as channels of the first conv.
- ``late_fusion``: two weight-sharing towers on the first and last frame, concatenated before
  the first fully connected layer (Karpathy et al. 2014).
- ``slow_fusion``: valid temporal convolutions in the first blocks merge sub-windows
  progressively until one remains (10 frames: windows of 4 stride 2, then 2 stride 2, then 2).
- ``c3d``: 3x3x3 convolutions and 3D pooling in the first two blocks (C3D: the first pool is
  spatial only), then temporal averaging, 2D blocks and global pooling.
- ``cnn_gru`` / ``cnn_lstm``: frame features fed to a recurrent layer (last state or mean).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from fer_utils.errors import CheckpointError
from fer_utils.models.checkpoints import load_checkpoint
from fer_utils.models.registry import register_model

#: Channel multipliers of the four trunk blocks (width, 2w, 4w, 8w).
STAGE_MULTIPLIERS: tuple[int, ...] = (1, 2, 4, 8)
#: Smallest side the four 2x pools can take.
MIN_IMG_SIZE = 2 ** len(STAGE_MULTIPLIERS)
#: State-dict prefix of the shared trunk in every model of this module.
TRUNK_PREFIX = "features."


class ConvBlock(nn.Module):
    """Two 3x3 conv-BN-ReLU layers and a 2x2 max-pool, in 2D or (with temporal kernels) 3D.

    In 3D, the first conv has temporal kernel/stride/padding ``t_kernel[0]``/``t_stride``/
    ``t_pad[0]``, the second ``t_kernel[1]``/1/``t_pad[1]``; the pool has temporal size and
    stride ``t_pool`` (ceil mode, so an odd extent keeps its last frame).
    """

    def __init__(
        self, c_in: int, c_out: int, *, conv3d: bool = False, t_kernel: tuple[int, int] = (1, 1),
        t_stride: int = 1, t_pad: tuple[int, int] = (0, 0), t_pool: int = 1,
    ):
        super().__init__()
        if conv3d:
            self.conv1 = nn.Conv3d(c_in, c_out, (t_kernel[0], 3, 3), (t_stride, 1, 1), (t_pad[0], 1, 1), bias=False)
            self.conv2 = nn.Conv3d(c_out, c_out, (t_kernel[1], 3, 3), 1, (t_pad[1], 1, 1), bias=False)
            self.bn1, self.bn2 = nn.BatchNorm3d(c_out), nn.BatchNorm3d(c_out)
            self.pool: nn.Module = nn.MaxPool3d((t_pool, 2, 2), ceil_mode=t_pool > 1)
        else:
            self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
            self.bn1, self.bn2 = nn.BatchNorm2d(c_out), nn.BatchNorm2d(c_out)
            self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = F.relu(self.bn2(self.conv2(x)), inplace=True)
        return self.pool(x)


def _channels(in_chans: int, width: int) -> list[tuple[int, int]]:
    """``(c_in, c_out)`` of each trunk block."""
    outs = [width * m for m in STAGE_MULTIPLIERS]
    return list(zip([in_chans] + outs[:-1], outs))


def frame_features(in_chans: int, width: int) -> nn.ModuleList:
    """The 2D trunk: four :class:`ConvBlock` (no classifier)."""
    return nn.ModuleList(ConvBlock(c_in, c_out) for c_in, c_out in _channels(in_chans, width))


def _run(blocks: nn.ModuleList | list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for block in blocks:
        x = block(x)
    return x


def _check_size(img_size: int, width: int) -> None:
    if img_size < MIN_IMG_SIZE:
        raise ValueError(f"img_size must be >= {MIN_IMG_SIZE} (four 2x pools), got {img_size}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")


class FrameCNN(nn.Module):
    """The 2D frame model: trunk, global average pooling, dropout, linear classifier."""

    def __init__(self, num_classes: int = 7, in_chans: int = 1, img_size: int = 48, width: int = 32,
                 dropout: float = 0.3):
        super().__init__()
        _check_size(img_size, width)
        self.in_chans, self.img_size = in_chans, img_size
        self.features = frame_features(in_chans, width)
        self.num_features = width * STAGE_MULTIPLIERS[-1]
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> pooled features ``(B, num_features)``."""
        return _run(self.features, x).mean(dim=(-2, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.forward_features(x)))


class ClipModel(nn.Module):
    """Base of the clip families: remembers the expected clip shape and checks the input."""

    #: Families whose layers are built for exactly ``num_frames`` frames.
    fixed_frames = False

    def __init__(self, num_frames: int, in_chans: int, img_size: int, width: int):
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        _check_size(img_size, width)
        self.num_frames, self.in_chans, self.img_size = num_frames, in_chans, img_size

    def _check(self, x: torch.Tensor) -> None:
        t = self.num_frames if self.fixed_frames else x.shape[1] if x.dim() == 5 else "T"
        expected = (t, self.in_chans, self.img_size, self.img_size)
        if x.dim() != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"{type(self).__name__} expects clips (B, {', '.join(map(str, expected))}), "
                f"got {tuple(x.shape)}"
            )


class SingleFrame(ClipModel):
    """The frame CNN on every frame; clip logits = mean of the frames' log-probabilities.

    Its layers are named as in :class:`FrameCNN`, so a ``frame_cnn`` state dict fits it as is.
    """

    def __init__(self, num_classes: int, in_chans: int, num_frames: int, img_size: int, width: int,
                 dropout: float):
        super().__init__(num_frames, in_chans, img_size, width)
        self.features = frame_features(in_chans, width)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width * STAGE_MULTIPLIERS[-1], num_classes)

    def frame_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Clips ``(B, T, C, H, W)`` -> per-frame logits ``(B, T, classes)``."""
        self._check(x)
        b, t = x.shape[:2]
        feats = _run(self.features, x.flatten(0, 1)).mean(dim=(-2, -1))
        return self.fc(self.dropout(feats)).unflatten(0, (b, t))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.frame_logits(x), dim=-1).mean(dim=1)


class EarlyFusion(ClipModel):
    """The frames stacked as input channels of the first convolution."""

    fixed_frames = True

    def __init__(self, num_classes: int, in_chans: int, num_frames: int, img_size: int, width: int,
                 dropout: float):
        super().__init__(num_frames, in_chans, img_size, width)
        self.features = frame_features(in_chans * num_frames, width)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width * STAGE_MULTIPLIERS[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        x = _run(self.features, x.flatten(1, 2)).mean(dim=(-2, -1))
        return self.fc(self.dropout(x))


class LateFusion(ClipModel):
    """Weight-sharing towers on the first and last frame, merged at the first FC layer."""

    def __init__(self, num_classes: int, in_chans: int, num_frames: int, img_size: int, width: int,
                 dropout: float, hidden: int = 256):
        super().__init__(num_frames, in_chans, img_size, width)
        self.features = frame_features(in_chans, width)
        dim = width * STAGE_MULTIPLIERS[-1]
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(2 * dim, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        b = x.shape[0]
        ends = x[:, [0, -1]].flatten(0, 1)  # (2B, C, H, W): first and last frame of each clip
        feats = _run(self.features, ends).mean(dim=(-2, -1))
        return self.classifier(feats.unflatten(0, (b, 2)).flatten(1))


def slow_fusion_schedule(num_frames: int, stages: int = 3) -> list[tuple[int, int]]:
    """Temporal ``(kernel, stride)`` of each fusing stage; the extent reaches 1 at the last.

    Windows of 4 (stride 2) while 8+ frames remain, of 2 (stride 2) from 4, overlapping
    windows of 2 (stride 1) below, and the last stage merges whatever is left: 10 frames ->
    4 -> 2 -> 1 as in Karpathy et al. 2014; 3 frames -> 2 -> 1.
    """
    t, schedule = num_frames, []
    for stage in range(stages):
        if t == 1:
            kernel, stride = 1, 1
        elif stage == stages - 1:
            kernel, stride = t, 1
        elif t >= 4:
            kernel, stride = (4 if t >= 8 else 2), 2
        else:
            kernel, stride = 2, 1
        schedule.append((kernel, stride))
        t = (t - kernel) // stride + 1
    return schedule


class SlowFusion(ClipModel):
    """Valid temporal convolutions merge sub-windows block by block (Karpathy et al. 2014)."""

    fixed_frames = True

    def __init__(self, num_classes: int, in_chans: int, num_frames: int, img_size: int, width: int,
                 dropout: float):
        super().__init__(num_frames, in_chans, img_size, width)
        schedule = slow_fusion_schedule(num_frames)
        blocks, t = [], num_frames
        for i, (c_in, c_out) in enumerate(_channels(in_chans, width)):
            if t > 1:  # still fusing: a 3D block whose first conv spans a temporal window
                kernel, stride = schedule[i]
                blocks.append(ConvBlock(c_in, c_out, conv3d=True, t_kernel=(kernel, 1), t_stride=stride))
                t = (t - kernel) // stride + 1
            else:
                blocks.append(ConvBlock(c_in, c_out))
        self.n3d = sum(isinstance(b.conv1, nn.Conv3d) for b in blocks)
        self.features = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width * STAGE_MULTIPLIERS[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        x = _run(self.features[:self.n3d], x.transpose(1, 2))  # (B, C, T, H, W)
        x = _run(self.features[self.n3d:], x.squeeze(2))  # temporal extent is 1 now
        return self.fc(self.dropout(x.mean(dim=(-2, -1))))


class C3D(ClipModel):
    """3x3x3 convs and 3D pooling in the first ``n3d`` blocks, then 2D blocks and global pooling.

    As in C3D, the first pool is spatial only; later 3D pools halve time while it is > 1.
    """

    def __init__(self, num_classes: int, in_chans: int, num_frames: int, img_size: int, width: int,
                 dropout: float, n3d: int = 2):
        super().__init__(num_frames, in_chans, img_size, width)
        if not 0 < n3d <= len(STAGE_MULTIPLIERS):
            raise ValueError(f"n3d must be in 1..{len(STAGE_MULTIPLIERS)}, got {n3d}")
        blocks, t = [], num_frames
        for i, (c_in, c_out) in enumerate(_channels(in_chans, width)):
            if i < n3d:
                t_pool = 2 if i > 0 and t > 1 else 1
                blocks.append(ConvBlock(c_in, c_out, conv3d=True, t_kernel=(3, 3), t_pad=(1, 1), t_pool=t_pool))
                t = -(-t // t_pool)
            else:
                blocks.append(ConvBlock(c_in, c_out))
        self.n3d = n3d
        self.features = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width * STAGE_MULTIPLIERS[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        x = _run(self.features[:self.n3d], x.transpose(1, 2)).mean(dim=2)  # average what time is left
        x = _run(self.features[self.n3d:], x)
        return self.fc(self.dropout(x.mean(dim=(-2, -1))))


class CnnRnn(ClipModel):
    """Frame CNN features -> GRU/LSTM -> last hidden state (or mean over time) -> classifier."""

    def __init__(self, num_classes: int, in_chans: int, num_frames: int, img_size: int, width: int,
                 dropout: float, cell: str = "gru", hidden: int = 128, pooling: str = "last"):
        super().__init__(num_frames, in_chans, img_size, width)
        if cell not in ("gru", "lstm") or pooling not in ("last", "mean"):
            raise ValueError(f"cell must be gru/lstm and pooling last/mean, got {cell!r}, {pooling!r}")
        self.pooling = pooling
        self.features = frame_features(in_chans, width)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(width * STAGE_MULTIPLIERS[-1], hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        b, t = x.shape[:2]
        feats = _run(self.features, x.flatten(0, 1)).mean(dim=(-2, -1)).unflatten(0, (b, t))
        out, _ = self.rnn(self.dropout(feats))
        out = out[:, -1] if self.pooling == "last" else out.mean(dim=1)
        return self.fc(self.dropout(out))


def _adapt(name: str, src: torch.Tensor, shape: torch.Size, path: str | os.PathLike) -> torch.Tensor:
    """``src`` reshaped for a target of ``shape``: as is, inflated over time, or spread over T inputs."""
    if src.shape == shape:
        return src
    if src.dim() == 4 and len(shape) == 5 and src.shape[:2] == shape[:2] and src.shape[2:] == shape[3:]:
        kt = shape[2]  # 2D kernel -> 3D: the same kernel at every time step, scaled to keep the response
        return src.unsqueeze(2).expand(shape) / kt
    if (src.dim() == 4 and len(shape) == 4 and shape[0] == src.shape[0] and shape[2:] == src.shape[2:]
            and shape[1] % src.shape[1] == 0):
        k = shape[1] // src.shape[1]  # early fusion: the kernel replicated over T stacked frames, averaged
        return src.repeat(1, k, 1, 1) / k
    raise CheckpointError(
        f"{path}: trunk weight {name} has shape {tuple(src.shape)}, the model needs {tuple(shape)} "
        f"(same width and in_chans as the frame_cnn?)"
    )


def init_frame_cnn_from_checkpoint(model: nn.Module, checkpoint_path: str | os.PathLike) -> list[str]:
    """Copy the trunk (``features.*``) of a ``frame_cnn`` checkpoint into ``model``'s trunk.

    Works for ``frame_cnn`` itself and every clip family here: 2D kernels are inflated over
    time for 3D convs (divided by the temporal size) and replicated/averaged over the T
    stacked inputs of early fusion. Classifier weights are not copied (class sets differ).
    Returns the names of the copied tensors; ``CheckpointError`` if the trunks differ.
    """
    ckpt = load_checkpoint(checkpoint_path)
    source = {k: v for k, v in ckpt["model_state"].items() if k.startswith(TRUNK_PREFIX)}
    target = {k: v for k, v in model.state_dict().items() if k.startswith(TRUNK_PREFIX)}
    if not source:
        raise CheckpointError(
            f"{checkpoint_path}: no trunk weights ({TRUNK_PREFIX}*) in this {ckpt['model_name']!r} checkpoint; "
            "train a 'frame_cnn' first"
        )
    if not target:
        raise CheckpointError(f"{type(model).__name__} has no {TRUNK_PREFIX}* trunk to initialise")
    if source.keys() != target.keys():
        differ = sorted(source.keys() ^ target.keys())
        raise CheckpointError(
            f"{checkpoint_path}: the trunk of this {ckpt['model_name']!r} checkpoint differs from "
            f"{type(model).__name__}'s (use a 'frame_cnn' of the same width), e.g. {differ[:3]}"
        )
    with torch.no_grad():
        for name, dst in target.items():
            dst.copy_(_adapt(name, source[name], dst.shape, checkpoint_path))
    return sorted(target)


@register_model("frame_cnn")
def frame_cnn(num_classes: int = 7, in_chans: int = 1, img_size: int = 48, width: int = 32,
              dropout: float = 0.3) -> nn.Module:
    """2D frame CNN (4 blocks of 2 conv-BN-ReLU + pool, width..8*width, GAP, FC): trunk of the clip models."""
    return FrameCNN(num_classes, in_chans, img_size, width, dropout)


@register_model("single_frame", input_kind="clip")
def single_frame(num_classes: int = 7, in_chans: int = 1, num_frames: int = 3, img_size: int = 48,
                 width: int = 32, dropout: float = 0.3) -> nn.Module:
    """Frame CNN on every frame, mean log-probability; frame_logits() for voting."""
    return SingleFrame(num_classes, in_chans, num_frames, img_size, width, dropout)


@register_model("early_fusion", input_kind="clip")
def early_fusion(num_classes: int = 7, in_chans: int = 1, num_frames: int = 3, img_size: int = 48,
                 width: int = 32, dropout: float = 0.3) -> nn.Module:
    """Early fusion: the T frames as channels of the first conv."""
    return EarlyFusion(num_classes, in_chans, num_frames, img_size, width, dropout)


@register_model("late_fusion", input_kind="clip")
def late_fusion(num_classes: int = 7, in_chans: int = 1, num_frames: int = 3, img_size: int = 48,
                width: int = 32, dropout: float = 0.3, hidden: int = 256) -> nn.Module:
    """Late fusion: shared towers on the first and last frame, merged at the first FC."""
    return LateFusion(num_classes, in_chans, num_frames, img_size, width, dropout, hidden)


@register_model("slow_fusion", input_kind="clip")
def slow_fusion(num_classes: int = 7, in_chans: int = 1, num_frames: int = 3, img_size: int = 48,
                width: int = 32, dropout: float = 0.3) -> nn.Module:
    """Slow fusion: temporal windows merged progressively through the first blocks."""
    return SlowFusion(num_classes, in_chans, num_frames, img_size, width, dropout)


@register_model("c3d", input_kind="clip")
def c3d(num_classes: int = 7, in_chans: int = 1, num_frames: int = 3, img_size: int = 48,
        width: int = 32, dropout: float = 0.3, n3d: int = 2) -> nn.Module:
    """C3D-style: 3x3x3 convs and 3D pools in the first blocks, then 2D blocks, global pooling."""
    return C3D(num_classes, in_chans, num_frames, img_size, width, dropout, n3d)


@register_model("cnn_gru", input_kind="clip")
def cnn_gru(num_classes: int = 7, in_chans: int = 1, num_frames: int = 3, img_size: int = 48,
            width: int = 32, dropout: float = 0.3, hidden: int = 128, pooling: str = "last") -> nn.Module:
    """Frame CNN features -> GRU -> classifier."""
    return CnnRnn(num_classes, in_chans, num_frames, img_size, width, dropout, "gru", hidden, pooling)


@register_model("cnn_lstm", input_kind="clip")
def cnn_lstm(num_classes: int = 7, in_chans: int = 1, num_frames: int = 3, img_size: int = 48,
             width: int = 32, dropout: float = 0.3, hidden: int = 128, pooling: str = "last") -> nn.Module:
    """Frame CNN features -> LSTM -> classifier."""
    return CnnRnn(num_classes, in_chans, num_frames, img_size, width, dropout, "lstm", hidden, pooling)
