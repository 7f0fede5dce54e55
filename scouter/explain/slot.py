"""SCOUTER's own explanation: the xSlot attention of each class.

See docs/method.md#explanation-maps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scouter.explain.base import Explainer, register_explainer
from scouter.models.xslot import XSlotHead

__all__ = ["SlotContributionExplainer", "SlotExplainer"]


@register_explainer
class SlotExplainer(Explainer):
    """The attention maps of a SCOUTER model: all classes come from the single forward pass.

    The map of class ``c`` is its slots' last-iteration attention summed over the ``s`` slots,
    ``M_c = Σ_r A_{c·s+r}`` with values in ``(0, s)`` at the feature grid ``h×w``.

    For SCOUTER− (``sign = −1``) the predicted class is the one with the *least* attention, so the
    map of the predicted class is usually nearly empty; the reference explains the least similar
    class to the ground truth instead (docs/metrics.md#explained-class), which the caller
    passes as ``target``.

    Example:
        >>> maps = SlotExplainer()(model, images, target="all").maps  # (B, K, h, w)
    """

    name = "slot"
    kind = "attention"
    needs_gradients = False
    requires = "xslot_head"

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


@register_explainer
class SlotContributionExplainer(SlotExplainer):
    """Each position's share of SCOUTER's class score, from the same single forward pass.

    SCOUTER's score splits exactly over positions: ``logit_c = e · Σ_n M_c(n) · v(n)``, with
    ``M_c`` the class's attention (the ``slot`` explainer's map) and ``v(n) ≥ 0`` the position's
    value (:meth:`~scouter.models.xslot.XSlotHead.position_values`). The map is ``M_c · v``: where
    the slot looks *and* how much what it sees there counts, so ``Σ_n map = |logit_c|``. It is to
    SCOUTER's attention what CAM is to an FC model's features: no gradients, no extra forward.
    Unsigned for both signs: for SCOUTER− it is the evidence *against* the class.

    Example:
        >>> maps = SlotContributionExplainer()(model, images, target=labels).maps  # (B, 1, h, w)
    """

    name = "slot_contribution"

    def _attention(self, model: nn.Module, images: Tensor) -> Tensor:
        head: XSlotHead = model.head  # `requires` was checked before any work
        captured: list[Tensor] = []
        handle = head.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
        try:
            attention = super()._attention(model, images)  # (B, K, h, w)
        finally:
            handle.remove()
        return attention * head.position_values(captured[-1])[:, None]
