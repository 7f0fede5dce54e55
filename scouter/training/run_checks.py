"""Checks run before any work: the training module's settings, model vs data, model vs a
checkpoint it restores or starts its backbone from, a training set that gives batches, folders the
run can write.

Each failure names both values and the fix (a :class:`TrainingInputError`, which ``train.py``
prints without a traceback), before a batch is loaded or a weight is overwritten.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

from scouter.models.classifier import Classifier
from scouter.models.inputs import (
    channel_mismatch,
    config_channels,
    model_channels,
    size_mismatch,
    state_channels,
)

# Fields that must agree between a checkpoint and the module restoring it.
SHAPE_FIELDS = ("backbone", "num_classes", "head", "slots_per_class", "hidden_dim", "to_k_layers")


class TrainingInputError(ValueError):
    """A setting, file or folder given to training cannot work; the message says the fix."""


def check_module_settings(
    num_classes: int | None,
    scheduler: str,
    warmup_steps: int,
    init_backbone_from: str | None,
    fc_warmup_epochs: int,
    fc_aux_weight: float,
) -> None:
    """``ScouterModule``'s settings that can be refused before anything is built.

    Raises:
        ValueError: a missing ``num_classes``, an unknown ``scheduler``, a warm-up with the step
            schedule, a negative ``fc_warmup_epochs`` or ``fc_aux_weight``.
        FileNotFoundError: ``init_backbone_from`` does not exist.
    """
    if num_classes is None:
        raise ValueError(
            "ScouterModule needs num_classes (train.py links it from data.num_classes; "
            "in Python pass ScouterModule(num_classes=datamodule.num_classes, ...))"
        )
    if scheduler not in ("step", "cosine", "none"):
        raise ValueError(f"scheduler must be 'step', 'cosine' or 'none', got {scheduler!r}")
    if warmup_steps and scheduler == "step":
        raise ValueError(
            "warmup_steps works with scheduler 'cosine' or 'none'; the reference's step "
            "schedule has no warm-up — set scheduler: cosine or warmup_steps: 0"
        )
    if init_backbone_from is not None and not Path(init_backbone_from).is_file():
        raise FileNotFoundError(
            f"init_backbone_from {init_backbone_from!r} does not exist — train the FC stage "
            "first (e.g. python train.py fit --config configs/<dataset>/fc.yaml) or point it "
            "at its checkpoint (last.ckpt in its checkpoint folder)"
        )
    if int(fc_warmup_epochs) < 0:
        raise ValueError(f"fc_warmup_epochs must be >= 0, got {fc_warmup_epochs}")
    if not float(fc_aux_weight) >= 0:
        raise ValueError(f"fc_aux_weight must be >= 0, got {fc_aux_weight}")


def check_fc_head_settings(model: Classifier, fc_warmup_epochs: int, fc_aux_weight: float) -> None:
    """An FC warm-up or auxiliary FC head needs an xSlot model beside it (``ValueError``)."""
    if int(fc_warmup_epochs) and not model.is_scouter:
        raise ValueError(
            f"fc_warmup_epochs={fc_warmup_epochs} trains an FC head before the xSlot "
            "head, but this model's head is already FC: set fc_warmup_epochs: 0 (or "
            "head: xslot)"
        )
    if float(fc_aux_weight) and not model.is_scouter:
        raise ValueError(
            f"fc_aux_weight={fc_aux_weight} adds an auxiliary FC head beside the xSlot head, "
            "but this model's head is already FC: set fc_aux_weight: 0 (or head: xslot)"
        )


def check_backbone_state_fits(model: Classifier, state: dict[str, Any], source: str) -> None:
    """Backbone weights ``state`` (from ``init_backbone_from`` ``source``) must take the model's
    image channels (``ValueError`` naming both and the fix)."""
    channels = state_channels(model.backbone.model.state_dict(), state)
    if channels is not None:
        expected = model_channels(model)
        raise ValueError(
            f"init_backbone_from {source!r} was trained on {channels}-channel "
            f"images but this model takes {expected} (model.in_chans, linked from "
            f"data.in_chans): set data.in_chans: {channels} (images are converted) or "
            f"start from a checkpoint trained on {expected}-channel images"
        )


def check_model_fits_data(model: Classifier, datamodule: Any) -> None:
    """Classes, channels and (for fixed-size ViTs) the input size of ``datamodule`` vs ``model``."""
    data_classes = getattr(datamodule, "num_classes", None)
    if data_classes is not None and int(data_classes) != model.num_classes:
        raise TrainingInputError(
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
        raise TrainingInputError(problem)


def check_fc_warmup_fits(fc_warmup_epochs: int, max_epochs: int | None) -> None:
    """Two-stage training must leave at least one epoch for the xSlot head."""
    if fc_warmup_epochs and max_epochs not in (None, -1) and fc_warmup_epochs >= max_epochs:
        raise TrainingInputError(
            f"fc_warmup_epochs={fc_warmup_epochs} leaves no epoch for the xSlot head "
            f"(trainer.max_epochs={max_epochs}): raise max_epochs above "
            "fc_warmup_epochs or lower fc_warmup_epochs"
        )


def check_checkpoint_matches(stored: dict[str, Any], model: Classifier) -> None:
    """A checkpoint's stored model config must describe ``model`` (channels, then shapes)."""
    stored_chans, expected = config_channels(stored), model_channels(model)
    if expected is not None and stored_chans != expected:
        raise TrainingInputError(
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
        raise TrainingInputError(
            "the checkpoint was trained with another architecture (" + "; ".join(diff) + ") — "
            "use the config it was trained with, or scouter.load_model(ckpt) to rebuild it"
        )


def check_training_batches(datamodule: Any, processes: int = 1) -> None:
    """Refuse a training split that gives no batch (it would "train" nothing and exit 0).

    ``datamodule`` is set up (``train_set``, ``batch_size``, ``drop_last``); ``processes`` is the
    trainer's world size (each process gets its share of the images).
    """
    train_set = getattr(datamodule, "train_set", None)
    if train_set is None:
        return
    images, batch_size = len(train_set), int(datamodule.batch_size)
    drop_last = bool(getattr(datamodule, "drop_last", False))
    share = math.ceil(images / max(processes, 1))
    batches = share // batch_size if drop_last else math.ceil(share / batch_size)
    if batches > 0:
        return
    if images == 0:
        raise TrainingInputError(
            "the training split has no images: check data.root and data.dataset (and "
            "data.val_fraction, which takes its share of the training images)"
        )
    shared = f" shared by {processes} processes ({share} each)" if processes > 1 else ""
    raise TrainingInputError(
        f"no training batch: {images} training images{shared} with data.batch_size {batch_size} "
        "and data.drop_last true (the incomplete last batch is dropped) give 0 batches per "
        f"epoch: set data.batch_size to at most {share} (e.g. --data.batch_size {share}) or "
        "--data.drop_last false"
    )


def unwritable_reason(folder: str | os.PathLike) -> str | None:
    """Why files cannot be created in ``folder`` (or the folders to create above it), else None.

    Tried by creating and removing a file in the nearest existing folder, so permissions, a
    read-only file system and a file in the way are all seen as the run would see them.
    """
    path = Path(folder).absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".scouter-write-check-")
    except OSError as error:
        return f"{existing} is not writable ({error.strerror or error})"
    os.close(handle)
    os.unlink(probe)
    return None


def check_writable(folders: list[tuple[str, str]]) -> None:
    """Every ``(folder, setting)`` must be writable; one error lists each that is not.

    ``setting`` names where the folder is chosen, e.g. ``trainer.logger (CSVLogger)
    init_args.save_dir``.
    """
    problems = []
    for folder, setting in folders:
        reason = unwritable_reason(folder)
        if reason is not None:
            problems.append(f"{setting} {os.path.abspath(folder)!r}: {reason}")
    if problems:
        raise TrainingInputError(
            "the run cannot write where it is told to — "
            + "; ".join(problems)
            + ". Set those to a writable folder (or run from one: relative paths start in the "
            "working folder)"
        )
