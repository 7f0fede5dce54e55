"""The original SCOUTER checkpoints (``wbw520/scouter`` ``train.py``): their config and key layout.

An original checkpoint is ``{model, optimizer, lr_scheduler, epoch, args}`` with ``args`` an
``argparse.Namespace``. The conversion is described in docs/method.md#original-checkpoints:
backbone keys lose ``backbone.`` and go to timm, head keys go to :class:`XSlotHead`
(``slot.to_q`` is unused by the model and dropped), ``K``/``s``/``e`` come from ``args``.
:func:`scouter.checkpoints.load_model` calls these; they are public for converting by hand.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import torch

from scouter.models.classifier import ModelConfig
from scouter.safe_loading import CheckpointError, CheckpointMismatchError

__all__ = ["config_from_original_args", "convert_original_state_dict", "is_original_state_dict"]


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "y", "t")
    return bool(value)


def config_from_original_args(args: argparse.Namespace | Mapping[str, Any]) -> dict[str, Any]:
    """Model config fields from an original ``train.py`` ``args`` namespace.

    Missing fields take the reference ``train.py`` defaults (docs/method.md#original-checkpoints).

    Returns:
        A dict of :class:`ModelConfig` fields (``backbone``, ``num_classes``, ``head``, …).
    """
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    for required in ("model", "num_classes"):
        if required not in values:
            raise CheckpointError(f"original checkpoint args lack {required!r}")
    use_slot = _as_bool(values.get("use_slot", True))
    config: dict[str, Any] = {
        "backbone": str(values["model"]),
        "num_classes": int(values["num_classes"]),
        "head": "xslot" if use_slot else "fc",
    }
    if str(values.get("dataset", "")).upper() == "MNIST":
        config.update(in_chans=1, stem="mnist")
    if use_slot:
        config.update(
            slots_per_class=int(values.get("slots_per_class", 3)),
            sign=1 if int(values.get("loss_status", 1)) >= 0 else -1,
            hidden_dim=int(values.get("hidden_dim", 64)),
            to_k_layers=int(values.get("to_k_layer", 1)),
        )
    return config


def is_original_state_dict(state: Mapping[str, Any]) -> bool:
    """Whether keys follow the original layout (``backbone.<timm>``, ``conv1x1``, ``slot.*``)."""
    keys = list(state)
    if any(k.startswith("backbone.model.") or k.startswith("head.") for k in keys):
        return False
    return any(k.startswith(("backbone.", "slot.", "conv1x1.")) for k in keys)


def convert_original_state_dict(
    state: Mapping[str, torch.Tensor], config: ModelConfig
) -> dict[str, torch.Tensor]:
    """Rename an original SCOUTER state_dict to our :class:`Classifier` keys.

    The mapping is described in docs/method.md#original-checkpoints:

    ``backbone.X`` → ``backbone.model.X`` (``backbone.fc.*`` of FC models → ``head.fc.*``),
    ``conv1x1.*`` → ``head.conv1x1.*``, ``slot.initial_slots`` → ``head.initial_slots``,
    ``slot.to_k.*`` → ``head.to_k.*``, ``slot.gru.*_l0`` → ``head.gru.*`` (``nn.GRU`` and
    ``nn.GRUCell`` share the gate layout), ``slot.to_q.*`` dropped (never used by the model).
    Unknown keys are kept under their own name so the strict load reports them.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.startswith("slot.to_q."):
            continue
        if key.startswith("backbone.fc.") and config.head == "fc":
            new = "head.fc." + key.removeprefix("backbone.fc.")
        elif key.startswith("backbone."):
            new = "backbone.model." + key.removeprefix("backbone.")
        elif key.startswith("conv1x1."):
            new = "head." + key
        elif key.startswith("slot.gru."):
            new = "head.gru." + key.removeprefix("slot.gru.").removesuffix("_l0")
        elif key.startswith("slot."):
            new = "head." + key.removeprefix("slot.")
        else:
            new = key
        converted[new] = tensor
    if config.head == "xslot" and "head.initial_slots" in converted:
        total = converted["head.initial_slots"].shape[1]
        if total != config.num_classes * config.slots_per_class:
            raise CheckpointMismatchError(
                f"initial_slots holds {total} slots but num_classes={config.num_classes} × "
                f"slots_per_class={config.slots_per_class} = "
                f"{config.num_classes * config.slots_per_class}"
            )
    return converted
