"""The conditional discriminator: one output per class, dotted with the classifier's probabilities.

``D(x, c) = Σ_k D_k(x) · c_k`` with ``c = softmax(C(x))`` of the explained classifier
(projection conditioning): real images are judged as images *of the classes the classifier
sees in them*. With ``num_classes=0`` (the unconditioned StyleSpace baseline) it has one output.
"""

from __future__ import annotations

import torch
from torch import nn

from scouter.stylex.encoder import ConvStack


class ProjectionDiscriminator(nn.Module):
    """``(images (B, C, size, size), c (B, K) or None) → realness scores (B,)``."""

    def __init__(
        self,
        size: int,
        in_channels: int,
        num_classes: int,
        channels: int = 64,
        min_channels: int = 16,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stack = ConvStack(size, in_channels, max(1, num_classes), channels, min_channels)

    def forward(self, images: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        scores = self.stack(images)
        if self.num_classes == 0:
            return scores[:, 0]
        if c is None or c.shape != scores.shape:
            got = None if c is None else tuple(c.shape)
            raise ValueError(f"the discriminator needs c of shape {tuple(scores.shape)}, got {got}")
        return (scores * c).sum(1)
