"""Checks ScouterModule runs before any work: model vs data, model vs a checkpoint it restores.

Each failure names both values and the fix, before a batch is loaded or a weight is overwritten.
"""

from __future__ import annotations

from typing import Any

from scouter.models.classifier import Classifier
from scouter.models.inputs import channel_mismatch, config_channels, model_channels, size_mismatch

# Fields that must agree between a checkpoint and the module restoring it.
SHAPE_FIELDS = ("backbone", "num_classes", "head", "slots_per_class", "hidden_dim", "to_k_layers")


def check_model_fits_data(model: Classifier, datamodule: Any) -> None:
    """Classes, channels and (for fixed-size ViTs) the input size of ``datamodule`` vs ``model``."""
    data_classes = getattr(datamodule, "num_classes", None)
    if data_classes is not None and int(data_classes) != model.num_classes:
        raise ValueError(
            f"the model has {model.num_classes} classes but the data has {data_classes}: "
            "set model num_classes to the data's (train.py links them), or select the classes "
            "with data.dataset_options.num_classes"
        )
    # Before any batch: a mismatch would otherwise surface as a tensor-shape error deep
    # inside the forward pass (or fit's attention-grid probe).
    data_chans = getattr(datamodule, "in_chans", None)
    problem = channel_mismatch(model, data_chans) if data_chans is not None else None
    if problem is None:
        problem = size_mismatch(model, getattr(datamodule, "image_size", None))
    if problem is not None:
        raise ValueError(problem)


def check_fc_warmup_fits(fc_warmup_epochs: int, max_epochs: int | None) -> None:
    """Two-stage training must leave at least one epoch for the xSlot head."""
    if fc_warmup_epochs and max_epochs not in (None, -1) and fc_warmup_epochs >= max_epochs:
        raise ValueError(
            f"fc_warmup_epochs={fc_warmup_epochs} leaves no epoch for the xSlot head "
            f"(trainer.max_epochs={max_epochs}): raise max_epochs above "
            "fc_warmup_epochs or lower fc_warmup_epochs"
        )


def check_checkpoint_matches(stored: dict[str, Any], model: Classifier) -> None:
    """A checkpoint's stored model config must describe ``model`` (channels, then shapes)."""
    stored_chans, expected = config_channels(stored), model_channels(model)
    if expected is not None and stored_chans != expected:
        raise ValueError(
            f"the checkpoint was trained on {stored_chans}-channel images but this model "
            f"takes {expected} (model.in_chans, linked from data.in_chans): set "
            f"data.in_chans: {stored_chans} (images are converted) to use this checkpoint, "
            f"or a checkpoint trained on {expected}-channel images"
        )
    current = model.config.to_dict()
    diff = [
        f"{key}: checkpoint {stored.get(key)!r} vs model {current[key]!r}"
        for key in SHAPE_FIELDS
        if stored.get(key) != current[key]
    ]
    if diff:
        raise ValueError(
            "the checkpoint was trained with another architecture (" + "; ".join(diff) + ") — "
            "use the config it was trained with, or scouter.load_model(ckpt) to rebuild it"
        )
