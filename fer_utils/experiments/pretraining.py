"""Autoencoder pre-training as a cached experiment: ``results/<name>-<hash8>.pt`` (the encoder's weights,
an ``encoder_weights`` model kwarg), ``.decoder.pt`` and ``.json`` (per-epoch reconstruction losses)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from fer_utils.data import FaceData
from fer_utils.devices import resolve_device, seed_everything
from fer_utils.experiments.cache import Planned, Work, cached
from fer_utils.experiments.runs import CACHE_VERSION
from fer_utils.files import write_json
from fer_utils.models.autoencoder import ConvAutoencoder, conv_autoencoder, encoder_state
from fer_utils.train import TrainConfig
from fer_utils.train.autoencoder import pretrain_autoencoder


@dataclass
class PretrainedEncoder:
    """The encoder weights file, the loss of each epoch, and the autoencoder (on the CPU, eval mode).

    The decoder is the trained one when its file is stored (else freshly initialised)."""

    encoder_path: Path
    losses: list[float]
    autoencoder: ConvAutoencoder


def cached_pretrain_encoder(
    name: str,
    faces: FaceData,
    cfg: TrainConfig,
    results_root: str | os.PathLike = "results",
    *,
    device: str | torch.device | None = None,
) -> PretrainedEncoder:
    """:func:`~fer_utils.train.autoencoder.pretrain_autoencoder` of a fresh ``conv_autoencoder`` (seeded
    by ``cfg.seed``) on ``faces``, or its stored result, named by the hash of the data's fingerprint
    and ``cfg`` (device excluded). A plan's stand-in names an encoder file not made yet, no losses."""
    config = {"version": CACHE_VERSION, "kind": "autoencoder", "data": faces.fingerprint(), "train": cfg.identity()}

    def load(path: Path, _digest: str) -> PretrainedEncoder | None:
        losses, decoder = path.with_suffix(".json"), path.with_suffix(".decoder.pt")
        if not (path.is_file() and losses.is_file()):
            return None
        ae = conv_autoencoder().eval()
        ae.encoder.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        if decoder.is_file():
            ae.decoder.load_state_dict(torch.load(decoder, map_location="cpu", weights_only=True))
        return PretrainedEncoder(path, json.loads(losses.read_text())["losses"], ae)

    def compute(path: Path, digest: str) -> PretrainedEncoder:
        seed_everything(cfg.seed)
        ae = conv_autoencoder()
        losses = pretrain_autoencoder(ae, faces, cfg, resolve_device(device))
        ae.cpu()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(encoder_state(ae), path)
        torch.save(ae.decoder.state_dict(), path.with_suffix(".decoder.pt"))
        write_json(path.with_suffix(".json"), {"name": name, "hash": digest, "config": config, "losses": losses})
        return PretrainedEncoder(path, losses, ae)

    def plan() -> Planned[PretrainedEncoder]:
        work = Work("pretrain", "conv_autoencoder", conv_autoencoder, faces.images.shape[1:], cfg.epochs, len(faces))
        return Planned(work, PretrainedEncoder(Path(results_root) / f"{name}-planned.pt", [], conv_autoencoder().eval()))

    return cached(results_root, name, config, load, compute, plan, suffix=".pt").value
