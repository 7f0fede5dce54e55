"""The encoder ``E(x) → w``: a discriminator-like convolution stack ending in a latent vector."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ConvStack(nn.Module):
    """``(B, C, size, size) → (B, features)``: stride-2 3×3 convs down to 4×4, then a linear.

    Shared by the encoder and the discriminator (StylEx's encoder is a discriminator whose last
    layer outputs ``w``). Channels start at ``min_channels`` at full size and double at each
    halving, up to ``channels``.
    """

    def __init__(
        self, size: int, in_channels: int, features: int, channels: int = 64, min_channels: int = 16
    ) -> None:
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"image size must be a power of two >= 8, got {size}")
        layers: list[nn.Module] = []
        ch = max(min_channels, channels * 8 // size) if size > 8 else channels
        layers += [nn.Conv2d(in_channels, ch, 1), nn.LeakyReLU(0.2)]
        res = size
        while res > 4:
            out = channels if res <= 16 else max(min_channels, channels * 16 // res)
            layers += [nn.Conv2d(ch, out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            ch, res = out, res // 2
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(ch * 16, channels)
        self.out = nn.Linear(channels, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x).flatten(1)
        return self.out(F.leaky_relu(self.fc(h), 0.2) * math.sqrt(2))


class Encoder(nn.Module):
    """``E``: images ``(B, C, size, size)`` in ``[-1, 1]`` → latents ``w (B, w_dim)``."""

    def __init__(
        self, size: int, in_channels: int, w_dim: int, channels: int = 64, min_channels: int = 16
    ) -> None:
        super().__init__()
        self.stack = ConvStack(size, in_channels, w_dim, channels, min_channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.stack(images)
