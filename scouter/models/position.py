"""Fixed sine position encoding of the SCOUTER head (docs/method.md#position-encoding)."""

from __future__ import annotations

import math

import torch


def sine_position_encoding(
    height: int,
    width: int,
    channels: int,
    *,
    temperature: float = 10000.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """DETR-style normalised sine encoding, as used by the reference xSlot head.

    Row/column coordinates are 1-based cumulative positions normalised by the grid size and scaled
    to ``2π`` (``y_r = r / (H + 1e-6) · 2π``); channel ``k`` of each half uses the frequency
    ``τ_k = T^{2⌊k/2⌋/N}`` with ``sin`` for even and ``cos`` for odd ``k``. The first ``N =
    channels / 2`` channels encode the row, the last ``N`` the column.

    Args:
        height: grid height ``h``.
        width: grid width ``w``.
        channels: number of output channels ``D`` (must be even).
        temperature: frequency base ``T`` (reference: 10000).
        device: device of the result.
        dtype: dtype of the result. The encoding is computed in float64 and cast, so it is the same
            in every precision up to rounding.

    Returns:
        Tensor of shape ``(D, h, w)``.
    """
    if channels % 2:
        raise ValueError(f"position encoding needs an even channel count, got {channels}")
    half = channels // 2
    eps, scale = 1e-6, 2 * math.pi
    # Computed in float64 so float32/float16 results are correctly rounded versions of one value.
    rows = torch.arange(1, height + 1, device=device, dtype=torch.float64) / (height + eps) * scale
    cols = torch.arange(1, width + 1, device=device, dtype=torch.float64) / (width + eps) * scale
    k = torch.arange(half, device=device, dtype=torch.float64)
    freq = temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / half)
    even = (k % 2 == 0).view(-1, 1)

    def encode(coords: torch.Tensor) -> torch.Tensor:  # (L,) -> (half, L)
        phase = coords.view(1, -1) / freq.view(-1, 1)
        return torch.where(even, phase.sin(), phase.cos())

    pos_y = encode(rows).unsqueeze(2).expand(half, height, width)
    pos_x = encode(cols).unsqueeze(1).expand(half, height, width)
    return torch.cat([pos_y, pos_x], dim=0).to(dtype)
