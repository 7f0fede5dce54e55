"""ScouterLoss: cross-entropy plus λ times the area of the explanations.

See docs/method.md#area-loss.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from scouter.models.classifier import ClassifierOutput


class LossParts(NamedTuple):
    """Total loss and its parts, for logging.

    Attributes:
        total: ``ce + λ · area`` (scalar).
        ce: cross-entropy (scalar).
        area: the area term before ``λ`` (scalar; 0 for models without attention).
    """

    total: torch.Tensor
    ce: torch.Tensor
    area: torch.Tensor


class ScouterLoss(nn.Module):
    """Cross-entropy + ``λ · area``.

    ``area = mean(A)^power`` over every batch item, slot (of all classes, not just the target)
    and position, as in the reference code (``area="mean"``); ``area="sum"`` is the paper's wording,
    the per-image sum of all slot attention ``1ᵀA1`` averaged over the batch, then raised to
    ``power``. λ values do not transfer between the two.

    Args:
        lambda_area: ``λ`` (reference default 1.0).
        power: exponent of the area term (reference default 2).
        area: ``"mean"`` (code) or ``"sum"`` (paper).
    """

    def __init__(
        self, lambda_area: float = 1.0, power: float = 2, area: Literal["mean", "sum"] = "mean"
    ) -> None:
        super().__init__()
        if area not in ("mean", "sum"):
            raise ValueError(f"area must be 'mean' or 'sum', got {area!r}")
        if lambda_area < 0:
            raise ValueError(f"lambda_area must be >= 0, got {lambda_area}")
        self.lambda_area = float(lambda_area)
        self.power = power
        self.area = area

    def area_term(self, slot_attention: torch.Tensor) -> torch.Tensor:
        """Area of per-slot attention ``(B, S, h, w)`` (or ``(B, S, n)``), raised to ``power``."""
        if self.area == "mean":
            value = slot_attention.mean()
        else:
            value = slot_attention.flatten(1).sum(dim=1).mean()
        return value**self.power

    def forward(self, output: ClassifierOutput, target: torch.Tensor) -> LossParts:
        """Compute the loss.

        Args:
            output: the classifier's output (logits ``(B, K)``, slot_attention or ``None``).
            target: ``(B,)`` class indices.

        Returns:
            :class:`LossParts`.
        """
        ce = F.cross_entropy(output.logits, target)
        if output.slot_attention is None:
            area = ce.new_zeros(())
            return LossParts(ce, ce, area)
        area = self.area_term(output.slot_attention)
        return LossParts(ce + self.lambda_area * area, ce, area)
