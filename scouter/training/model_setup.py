"""What ``ScouterModule`` builds before training: the classifier, its loss, the backbone's start
(a checkpoint's weights, frozen stages) and the auxiliary FC head of two-stage training."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import torch
from pytorch_lightning.utilities import rank_zero_warn

from scouter.checkpoints import backbone_state_from_checkpoint, load_state_dict_checked
from scouter.losses import ScouterLoss
from scouter.models.classifier import Classifier, ModelConfig, build_classifier
from scouter.models.fc import FCHead
from scouter.models.zoo import create_model, get_model_entry
from scouter.training.freezing import freeze_backbone_stages
from scouter.training.run_checks import check_backbone_state_fits

# ScouterModule's arguments that are ModelConfig fields (num_classes aside), in its order.
ARCH_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig) if f.name != "num_classes")


class AuxiliaryFCHead(FCHead):
    """The FC warm-up / auxiliary head: an :class:`FCHead` that returns only logits ``(B, K)``.

    It only ever feeds a cross-entropy and never leaves the training checkpoint, so it skips
    the heads' :class:`ClassifierOutput` contract; its parameters are named as an FCHead's.
    """

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` of features ``(B, C, h, w)``."""
        return self.logits(features)


def build_model(zoo: str | None, num_classes: int, arch: dict[str, Any]) -> Classifier:
    """The classifier of zoo entry ``zoo`` with ``arch`` overrides, or of ``arch`` alone.

    Raises:
        ValueError: neither ``zoo`` nor ``arch["backbone"]`` is given.
    """
    if zoo is not None:
        overrides = dict(arch)
        pretrained = bool(overrides.pop("pretrained", False))
        return create_model(zoo, pretrained=pretrained, num_classes=num_classes, **overrides)
    if "backbone" not in arch:
        raise ValueError("give either zoo=<scouter.list_models() name> or backbone=<timm name>")
    return build_classifier(ModelConfig(num_classes=num_classes, **arch))


def recipe_loss(
    zoo: str | None, lambda_area: float | None, power: float | None, area: str
) -> ScouterLoss:
    """The loss: explicit ``lambda_area`` / ``power``, else the zoo entry's recipe, else 1 and 2."""
    recipe = get_model_entry(zoo) if zoo is not None else None
    return ScouterLoss(
        lambda_area=lambda_area
        if lambda_area is not None
        else (recipe.lambda_area if recipe else 1.0),
        power=power if power is not None else (recipe.power if recipe else 2),
        area=area,
    )


def init_backbone(model: Classifier, checkpoint: str) -> None:
    """Start ``model``'s backbone from ``checkpoint``'s (the reference's ``use_pre`` stages)."""
    state = backbone_state_from_checkpoint(checkpoint)
    check_backbone_state_fits(model, state, checkpoint)
    load_state_dict_checked(model.backbone.model, state, f"backbone of {checkpoint!r}")


def backbone_pretrained(model: Classifier, zoo: str | None, pretrained: bool | None) -> bool:
    """Whether ``model``'s backbone starts from trained weights (timm's, a file, the zoo's)."""
    config = model.config
    offline = zoo is not None and get_model_entry(zoo).weights is not None
    return bool(config.pretrained or config.pretrained_file or (offline and pretrained))


def freeze_pretrained_stages(
    model: Classifier, num_stages: int, from_checkpoint: bool, pretrained: bool
) -> None:
    """Freeze the backbone's stem and first ``num_stages`` stages, never a fresh layer.

    Raises:
        ValueError: the backbone starts from random weights (no ``pretrained`` weights and no
            checkpoint), naming the settings that fix it.
    """
    config = model.config
    if not (from_checkpoint or pretrained):
        raise ValueError(
            f"freeze_stages={num_stages} would freeze randomly initialised backbone layers "
            f"({config.backbone} has pretrained=False and no init_backbone_from): set "
            "pretrained: true, pretrained_file or init_backbone_from, or freeze_stages: 0"
        )
    # The reference froze its freshly created MNIST conv1 at random init
    # (docs/method.md#freezing-stages).
    fresh = {"conv1.weight"} if config.stem == "mnist" and not from_checkpoint else set()
    _, kept = freeze_backbone_stages(model.backbone.model, num_stages, fresh)
    if kept:
        rank_zero_warn(
            f"freeze_stages={num_stages}: keeping freshly initialised {', '.join(kept)} "
            "trainable (frozen at random init it would never learn)"
        )


def model_config_docs() -> str:
    """ModelConfig's ``Attributes:`` entries (but ``num_classes``), as a class's ``Args:`` entries
    (one source for the architecture fields' docs, shown by LightningCLI's ``--help``)."""
    doc = inspect.cleandoc(ModelConfig.__doc__ or "")
    entries, keep = [], False
    for line in doc.split("Attributes:\n", 1)[-1].splitlines():
        if not line.startswith("    "):
            break  # the end of the section
        if not line.startswith("        "):  # an entry's first line (continuations are deeper)
            keep = not line.lstrip().startswith("num_classes:")
        if keep:
            entries.append("    " + line)  # as indented in a class's (raw) docstring
    return "\n".join(entries) + "\n"
