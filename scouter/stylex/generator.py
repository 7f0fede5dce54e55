"""A small StyleGAN2-style generator whose styles are conditioned on a classifier's output.

Constant 4×4 input; per resolution one (4×4) or two (above) modulated 3×3 convolutions
(modulate, demodulate), per-pixel noise, and a toRGB skip per resolution whose outputs are
upsampled and summed. The style of conv layer ``l`` is ``s_l = A_l([w ; c])``: an affine map of
the latent ``w`` concatenated with the classifier's probabilities ``c``. **StyleSpace** is the
concatenation of the conv layers' ``s_l`` (toRGB styles excluded): one coordinate = one (layer,
input channel). Weights use the equalised learning rate of StyleGAN (stored ``N(0, 1)``, scaled
by ``1/sqrt(fan_in)`` in the forward pass) so one Adam learning rate suits every layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class EqualLinear(nn.Module):
    """Linear layer with the equalised learning rate; ``bias_init`` 1 for style affines."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class MappingNetwork(nn.Module):
    """The noise branch's MLP ``z (B, w_dim) → w (B, w_dim)`` (pixel-normalised input)."""

    def __init__(self, w_dim: int, layers: int = 4, lr_mul: float = 0.01) -> None:
        super().__init__()
        # lr_mul: StyleGAN's slower mapping network, so w drifts slowly compared to the convs.
        self.layers = nn.ModuleList(EqualLinear(w_dim, w_dim, lr_mul=lr_mul) for _ in range(layers))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2) * math.sqrt(2)
        return x


class ModulatedConv(nn.Module):
    """3×3 (or 1×1) convolution whose input channels are scaled by a per-sample style.

    ``forward(x (B, C_in, H, W), style (B, C_in)) → (B, C_out, H, W)``; with ``demodulate`` each
    output channel's effective weights are rescaled to unit norm (StyleGAN2's replacement for
    AdaIN, which removes the droplet artefacts).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, demodulate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.demodulate, self.padding = demodulate, kernel // 2

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        weight = self.scale * self.weight
        # Scaling the input by the style and the output by the demodulation factor equals
        # convolving with per-sample modulated weights, with one shared convolution for the batch
        # (much faster than a grouped convolution for AttFind's batches of edits).
        out = F.conv2d(x * style[:, :, None, None], weight, padding=self.padding)
        if self.demodulate:
            squared = weight.pow(2).sum((2, 3))  # (C_out, C_in)
            out = out * torch.rsqrt(style.pow(2) @ squared.t() + 1e-8)[:, :, None, None]
        return out


class StyledConv(nn.Module):
    """Modulated 3×3 conv + noise + bias + leaky ReLU; ``upsample`` doubles the input first."""

    def __init__(self, in_ch: int, out_ch: int, upsample: bool) -> None:
        super().__init__()
        self.conv = ModulatedConv(in_ch, out_ch, 3)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.upsample, self.in_ch, self.out_ch = upsample, in_ch, out_ch

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.conv(x, style) + self.noise_strength * noise
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2)


class StyleGenerator(nn.Module):
    """Generator ``(styles, noise) → images (B, out_channels, size, size)`` in about ``[-1, 1]``.

    Args:
        size: output resolution, a power of two ≥ 8.
        out_channels: image channels (1 for Fashion-MNIST).
        w_dim: latent size (the encoder's and the mapping network's output).
        c_dim: condition size (the classifier's class count); 0 for the unconditioned baseline.
        channels: feature channels at 4×4; halved at each doubling above 8×8, at least ``min_channels``.
        mapping_layers: depth of the mapping MLP.
    """

    def __init__(
        self,
        size: int = 32,
        out_channels: int = 1,
        w_dim: int = 64,
        c_dim: int = 10,
        channels: int = 64,
        min_channels: int = 16,
        mapping_layers: int = 4,
    ) -> None:
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"generator size must be a power of two >= 8, got {size}")
        self.size, self.w_dim, self.c_dim, self.out_channels = size, w_dim, c_dim, out_channels
        self.mapping = MappingNetwork(w_dim, mapping_layers)
        self.const = nn.Parameter(torch.randn(1, channels, 4, 4))
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        self.conv_affines, self.rgb_affines = nn.ModuleList(), nn.ModuleList()
        in_ch, res = channels, 4
        while res <= size:
            out_ch = channels if res <= 8 else max(min_channels, channels * 8 // res)
            for upsample in [False] if res == 4 else [True, False]:
                self.convs.append(StyledConv(in_ch, out_ch, upsample))
                self.conv_affines.append(EqualLinear(w_dim + c_dim, in_ch, bias_init=1.0))
                in_ch = out_ch
            self.to_rgbs.append(ModulatedConv(out_ch, out_channels, 1, demodulate=False))
            self.rgb_affines.append(EqualLinear(w_dim + c_dim, out_ch, bias_init=1.0))
            res *= 2
        self.rgb_bias = nn.Parameter(torch.zeros(out_channels))
        self.style_dims = [conv.in_ch for conv in self.convs]

    @property
    def style_space_size(self) -> int:
        """``|S|``: the number of StyleSpace coordinates (conv layers' input channels)."""
        return sum(self.style_dims)

    def _latent(self, w: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        if self.c_dim == 0:
            return w
        if c is None or c.shape[-1] != self.c_dim:
            got = None if c is None else tuple(c.shape)
            raise ValueError(f"this generator is conditioned on c (B, {self.c_dim}), got {got}")
        return torch.cat([w, c], dim=1)

    def styles(self, w: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """StyleSpace vector ``(B, |S|)`` of latents ``w (B, w_dim)`` and conditions ``c (B, K)``."""
        latent = self._latent(w, c)
        return torch.cat([affine(latent) for affine in self.conv_affines], dim=1)

    def rgb_styles(self, w: torch.Tensor, c: torch.Tensor | None) -> list[torch.Tensor]:
        """The toRGB styles (outside StyleSpace: AttFind never edits them)."""
        latent = self._latent(w, c)
        return [affine(latent) for affine in self.rgb_affines]

    def coordinate(self, index: int) -> tuple[int, int]:
        """StyleSpace coordinate ``index`` as ``(conv layer, channel)``."""
        for layer, dim in enumerate(self.style_dims):
            if index < dim:
                return layer, index
            index -= dim
        raise IndexError(f"StyleSpace has {self.style_space_size} coordinates")

    def make_noise(
        self, batch: int, generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        """Per-layer noise maps ``(B, 1, r, r)``; pass the same list to re-synthesise an image."""
        device = self.const.device
        sizes = [4] + [r for r in (2**k for k in range(3, self.size.bit_length())) for _ in (0, 1)]
        return [
            torch.randn(batch, 1, r, r, generator=generator, device="cpu").to(device) for r in sizes
        ]

    def synthesize(
        self, styles: torch.Tensor, rgb_styles: list[torch.Tensor], noise: list[torch.Tensor]
    ) -> torch.Tensor:
        """Images ``(B, out_channels, size, size)`` from StyleSpace ``(B, |S|)`` and the rest."""
        parts = torch.split(styles, self.style_dims, dim=1)
        x = self.const.expand(styles.shape[0], -1, -1, -1)
        rgb, layer = None, 0
        for block, to_rgb in enumerate(self.to_rgbs):
            for _ in range(1 if block == 0 else 2):
                x = self.convs[layer](x, parts[layer], noise[layer])
                layer += 1
            skip = to_rgb(x, rgb_styles[block]) + self.rgb_bias.view(1, -1, 1, 1)
            if rgb is not None:
                rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
            rgb = skip if rgb is None else rgb + skip
        return rgb

    def forward(
        self, w: torch.Tensor, c: torch.Tensor | None, noise: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Images ``(B, C, size, size)`` from ``w (B, w_dim)`` and ``c (B, K)`` (random noise)."""
        noise = noise if noise is not None else self.make_noise(w.shape[0])
        return self.synthesize(self.styles(w, c), self.rgb_styles(w, c), noise)
