"""Does a ResNet at 48x48 start better with timm's zero-initialised last batch norm per block, or without it,
and at which rate?

A short probe on real FER2013 training faces, for each start of one network and each rate (same seed, same batches):
SGD at a constant rate with notebook 03's standard augmentation and label smoothing, the training loss
every few steps, then the loss and accuracy of a random sample of the Training hold-out in eval mode
(batch-norm running statistics), never a test split. Notebook 04's Method cites it:

    python scripts/resnet_init_probe.py --model resnet50 --steps 40   # diverges without the zero start
    python scripts/resnet_init_probe.py --model resnet18 --steps 200  # learns faster without it
    python scripts/resnet_init_probe.py --model resnet50 --steps 80 --start zero --lr 0.005 0.01 0.05  # its peak rate

Hand-written rather than a `train` run: it needs a constant rate, no schedule, no checkpoint and the
same batches for both starts, in minutes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fer_utils.data import FaceData, create_augment, load_dataset, random_subset, to_model_input, training_holdout
from fer_utils.errors import DatasetError, UsageError
from fer_utils.files import write_json
from fer_utils.models import create_model


#: --start -> the zero_init_last values probed
STARTS: dict[str, tuple[bool, ...]] = {"both": (True, False), "zero": (True,), "plain": (False,)}


def probe(fit: FaceData, holdout: FaceData, model_name: str, zero_init_last: bool, steps: int = 40, lr: float = 0.02,
          batch_size: int = 128, seed: int = 0, every: int = 10) -> dict[str, Any]:
    """Train ``model_name`` (pooled stem) from one start for ``steps`` SGD steps on ``fit``; return the training
    losses (step -> loss, every ``every`` steps and the first) and the eval-mode loss and accuracy on ``holdout``."""
    rng = np.random.default_rng(seed)  # the batches
    torch.manual_seed(seed)
    model = create_model(model_name, len(fit.classes), stem="pooled", zero_init_last=zero_init_last)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    augment = create_augment("standard")
    losses: dict[int, float] = {}
    for step in tqdm(range(1, steps + 1), desc=f"{model_name} zero_init_last={zero_init_last}", leave=False):
        idx = rng.choice(len(fit), batch_size, replace=False)
        x = augment(torch.as_tensor(fit.images[idx])).contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), torch.as_tensor(fit.labels[idx]), label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == 1 or step % every == 0 or step == steps:
            losses[step] = round(loss.item(), 4)
    model.eval()
    # Logits, not predict_proba's probabilities: a diverged start's loss (over 1,000) underflows in softmax.
    with torch.no_grad():
        x_val = to_model_input(holdout.images).contiguous(memory_format=torch.channels_last)
        logits = torch.cat([model(chunk) for chunk in x_val.split(256)])
    y_val = torch.as_tensor(holdout.labels)
    return {"zero_init_last": zero_init_last, "lr": lr, "train_loss": losses,
            "holdout_loss": round(F.cross_entropy(logits, y_val).item(), 4),
            "holdout_accuracy": round((logits.argmax(1) == y_val).float().mean().item(), 4),
            "holdout_faces": len(holdout)}


def split_faces(data: FaceData, holdout_faces: int, seed: int = 0) -> tuple[FaceData, FaceData]:
    """FER2013's Training faces minus the hold-out, and ``holdout_faces`` random faces of the hold-out (random:
    the hold-out is sorted by class)."""
    fit, held = training_holdout(data.split("Training"))
    return fit, random_subset(held, holdout_faces, seed + 1)


def main(argv: list[str] | None = None) -> int:
    """Probe the starts at each rate and print them; exit status 2 on bad input (missing data, bad numbers)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50", help="a timm ResNet of the registry (default resnet50)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, nargs="+", default=[0.02], help="constant SGD rates (momentum 0.9)")
    parser.add_argument("--start", choices=STARTS, default="both", help="zero: timm's zero_init_last; plain: without")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--holdout-faces", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write every probe's result here")
    args = parser.parse_args(argv)
    try:
        if min(args.steps, args.batch_size, args.holdout_faces) < 1 or not min(args.lr) > 0:
            raise ValueError("--steps, --batch-size, --holdout-faces and --lr must be positive")
        fit, holdout = split_faces(load_dataset("fer2013"), args.holdout_faces, args.seed)
        results = [probe(fit, holdout, args.model, zero, args.steps, lr, args.batch_size, args.seed)
                   for lr in args.lr for zero in STARTS[args.start]]
    except (OSError, ValueError, KeyError, DatasetError, UsageError) as err:  # UsageError: a model without the option
        print(f"resnet_init_probe: {err}")
        return 2
    for result in results:
        trace = ", ".join(f"{step}: {loss:.2f}" for step, loss in result["train_loss"].items())
        print(f"{args.model} zero_init_last={result['zero_init_last']} lr {result['lr']:g}: training loss by step "
              f"{trace}; hold-out ({result['holdout_faces']} faces, eval mode) loss {result['holdout_loss']:.3f}, "
              f"accuracy {result['holdout_accuracy']:.3f}")
    if args.json:
        write_json(args.json, {"model": args.model, "steps": args.steps, "batch_size": args.batch_size,
                               "seed": args.seed, "probes": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
