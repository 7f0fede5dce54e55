"""What an explainer needs of the model (:data:`Requirement`, an explainer's ``requires``) and the
message when a model lacks it: :func:`requirement_problem`, checked before any work by every
explainer call and by ``evaluate.py``'s preparation."""

from __future__ import annotations

from typing import Any, Literal

from torch import nn

__all__ = ["Requirement", "requirement_problem"]

Requirement = Literal["xslot_head", "fc_head", "any"]
"""What an explainer needs of the model: a SCOUTER (xSlot) head, an FC head (global average
pool + linear ``head.fc``), or nothing beyond logits (``"any"``; whether it back-propagates is
:attr:`~scouter.explain.base.Explainer.needs_gradients`, which every classifier here allows)."""

_FIXES: dict[str, str] = {
    "xslot_head": "for FC models use a post-hoc explainer such as 'gradcam' or 'cam'",
    "fc_head": "for SCOUTER or other heads use 'gradcam', which reduces to CAM on an FC head",
}


def _has_xslot_head(model: Any) -> bool:
    from scouter.models.xslot import XSlotHead

    return isinstance(getattr(model, "head", None), XSlotHead)


def _has_fc_head(model: Any) -> bool:
    return isinstance(getattr(getattr(model, "head", None), "fc", None), nn.Linear)


def _head_description(model: Any) -> str:
    if _has_xslot_head(model):
        return "a SCOUTER model (xslot head)"
    if _has_fc_head(model):
        return "an FC model"
    head = getattr(model, "head", None)
    return (
        f"a model with a {type(head).__name__} head"
        if head is not None
        else "a model without a head"
    )


def requirement_problem(
    name: str, requires: Requirement, model: Any, noun: str = "model"
) -> str | None:
    """Why ``model`` cannot be explained by explainer ``name`` needing ``requires`` (with the
    fix), or ``None`` when it can. ``noun`` names the model in the message ("checkpoint")."""
    if requires == "xslot_head" and not _has_xslot_head(model):
        need = f"a SCOUTER {noun} (xslot head)"
    elif requires == "fc_head" and not _has_fc_head(model):
        need = "an FC head (global average pool + linear `head.fc`)"
    else:
        return None
    return (
        f"explainer {name!r} needs {need}, but this is {_head_description(model)}: "
        f"{_FIXES[requires]}"
    )
