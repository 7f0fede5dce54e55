"""Freezing the first backbone stages without ever freezing a fresh layer.

See docs/method.md#freezing-stages.
"""

from __future__ import annotations

from collections.abc import Collection

from torch import nn


def backbone_stages(model: nn.Module) -> list[str]:
    """Module names of the stages of a timm model, in forward order.

    A stage is a ``feature_info`` module that owns parameters (``layer1`` … ``layer4`` for
    ResNets, ``blocks.i`` for EfficientNets and ViTs); parameter-free entries such as ResNet's
    ``act1`` are skipped. Parameters before the first stage are the stem.
    """
    names = [info["module"] for info in getattr(model, "feature_info", [])]
    modules = dict(model.named_modules())
    return [
        name
        for name in names
        if name in modules and any(True for _ in modules[name].parameters(recurse=True))
    ]


def stage_of_parameters(model: nn.Module) -> dict[str, int]:
    """Stage index of every parameter of a timm model: ``0`` stem, ``1..S`` stages.

    Parameters between two listed stages (EfficientNet merges some blocks into one feature level)
    belong to the preceding stage; those after the last stage (e.g. ``conv_head``) to the last.
    """
    stages = backbone_stages(model)
    if not stages:
        raise ValueError(
            f"{type(model).__name__} has no feature_info stages, so freeze_stages cannot be applied"
        )
    index: dict[str, int] = {}
    current = 0
    for name, _ in model.named_parameters():
        for i, stage in enumerate(stages, start=1):
            if name.startswith(stage + "."):
                current = i
                break
        index[name] = current
    return index


def freeze_backbone_stages(
    model: nn.Module, num_stages: int, fresh: Collection[str] = ()
) -> tuple[list[str], list[str]]:
    """Freeze the stem and the first ``num_stages`` stages of a timm model (reference semantics).

    ``num_stages`` follows the reference's ``--freeze_layers f``: ``f = 0`` nothing; ``f ≥ 1`` the
    stem and stages ``1..f`` (for a ResNet ``f = 2`` is stem, layer1, layer2; ``f = 4`` the whole
    backbone). Unlike the reference, parameters named in ``fresh`` (freshly initialised, e.g. the
    MNIST stem) stay trainable, and no head is ever touched.

    Args:
        model: the timm model (``Classifier.backbone.model``).
        num_stages: ``f``, between 0 and the number of stages.
        fresh: parameter names (timm keys) that were not loaded from pretrained weights.

    Returns:
        ``(frozen, kept_fresh)``: names of frozen parameters, and of fresh ones left trainable.
    """
    stages = stage_of_parameters(model)
    count = max(stages.values())
    if not 0 <= num_stages <= count:
        raise ValueError(f"freeze_stages must be between 0 and {count} for this backbone")
    frozen, kept = [], []
    if num_stages == 0:
        return frozen, kept
    for name, param in model.named_parameters():
        if stages[name] <= num_stages:
            if name in fresh:
                kept.append(name)
                continue
            param.requires_grad_(False)
            frozen.append(name)
    return frozen, kept
