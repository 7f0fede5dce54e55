"""SCOUTER's own explanation: the xSlot attention of each class (SPEC Part B §1.6)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scouter.explain.base import Explainer, register_explainer

__all__ = ["SlotExplainer"]


@register_explainer
class SlotExplainer(Explainer):
    """The attention maps of a SCOUTER model: all classes come from the single forward pass.

    The map of class ``c`` is its slots' last-iteration attention summed over the ``s`` slots,
    ``M_c = Σ_r A_{c·s+r}`` with values in ``(0, s)`` at the feature grid ``h×w``.

    For SCOUTER− (``sign = −1``) the predicted class is the one with the *least* attention, so the
    map of the predicted class is usually nearly empty; the reference explains the least similar
    class to the ground truth instead (METRICS.md "Which class is explained"), which the caller
    passes as ``target``.

    Example:
        >>> maps = SlotExplainer()(model, images, target="all").maps  # (B, K, h, w)
    """

    name = "slot"
    kind = "attention"
    needs_gradients = False

    def __init__(self) -> None:
        super().__init__()
        self.settings = {}

    def _attention(self, model: nn.Module, images: Tensor) -> Tensor:
        attention = getattr(model(images), "attention", None)
        if attention is None:
            raise ValueError(
                "the 'slot' explainer needs a SCOUTER model (xslot head) that returns attention "
                "maps; for an FC model use a post-hoc method such as 'gradcam' or 'cam'"
            )
        return attention  # (B, K, h, w)

    def explain(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        return self.explain_classes(model, images, targets[:, None])

    def explain_classes(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        attention = self._attention(model, images)
        index = targets.to(attention.device)[:, :, None, None]
        return torch.gather(attention, 1, index.expand(-1, -1, *attention.shape[-2:]))
