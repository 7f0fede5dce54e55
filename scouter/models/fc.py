"""FCHead: global average pooling + linear layer, the SCOUTER paper's FC baseline."""

from __future__ import annotations

import torch
from torch import nn

from scouter.models.output import ClassifierOutput


class FCHead(nn.Module):
    """The black-box baseline head (docs/method.md#fc-baseline) and the pre-training stage's head.

    Args:
        in_channels: backbone channels ``C``.
        num_classes: ``K``.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, features: torch.Tensor) -> ClassifierOutput:
        """Map features ``(B, C, h, w)`` to logits ``(B, K)`` (no explanation maps)."""
        return ClassifierOutput(self.logits(features))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` of features ``(B, C, h, w)``."""
        if features.ndim != 4 or features.shape[1] != self.in_channels:
            raise ValueError(
                f"FCHead expects features (B, {self.in_channels}, h, w), "
                f"got {tuple(features.shape)}"
            )
        return self.fc(features.mean(dim=(2, 3)))
