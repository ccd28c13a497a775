"""What input a registered model takes, in the spirit of timm's ``pretrained_cfg``: one place that joins a
model's registry entry (the normalisation its weights expect) with the data's preprocessing record (how the
faces were cut: side, channels, margin).

Training runs on the joined record and stores it in the checkpoint; ``evaluate`` and ``predict`` read it
back from there. So every consumer applies the same record, and a model is built for the faces it will see.
"""
from __future__ import annotations

from dataclasses import replace

from torch import nn

from fer_utils.data.dataset import FaceData
from fer_utils.data.preprocessing import Preprocessing
from fer_utils.models.registry import create_model, model_entry


def input_record(model_name: str, record: Preprocessing) -> Preprocessing:
    """``record`` with the model's registered mean/std where it has one (pretrained weights expect theirs),
    else ``record``'s own normalisation."""
    entry = model_entry(model_name)
    return record if entry.mean is None else replace(record, mean=entry.mean, std=entry.std)


def create_model_for(model_name: str, record: Preprocessing, num_classes: int, **kwargs) -> nn.Module:
    """Build ``model_name`` for faces cut as ``record`` says: its channels, and its side as ``img_size`` for
    models built for one size (unless ``kwargs`` name one)."""
    return create_model(model_name, num_classes=num_classes, in_chans=record.channels,
                        defaults={"img_size": record.size}, **kwargs)


def model_and_data(model_name: str, data: FaceData, **kwargs) -> tuple[nn.Module, FaceData]:
    """The model built for ``data`` and ``data`` carrying the record the model trains with."""
    model = create_model_for(model_name, data.preprocessing, len(data.classes), **kwargs)
    return model, replace(data, preprocessing=input_record(model_name, data.preprocessing))
