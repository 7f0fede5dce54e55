"""Blur Integrated Gradients (Xu, Venugopalan, Sundararajan, Sundararajan & Liu, CVPR 2020).

Not in captum or pytorch-grad-cam, so it is written here from the paper's definition (Eq. 4–5):
the path runs through increasingly sharp Gaussian blurs ``L(x, σ)`` of the image, from
``σ = σ_max`` down to ``σ = 0`` (the image itself), and the attribution of pixel ``i`` is

    φ_i = ∫_{σ_max}^{0} ∂F(L(x, σ)) / ∂L_i · ∂L_i(x, σ) / ∂σ dσ,

so that ``Σ_i φ_i = F(x) − F(L(x, σ_max))`` (completeness). The integral is a midpoint Riemann sum
over ``steps`` intervals.

The blur is written as two matrix products, ``L = G_σ X G_σᵀ`` per channel, with ``G_σ`` the 1-D
Gaussian (truncated at 4σ, SciPy's ``gaussian_filter`` default) folded at the borders in SciPy's
``reflect`` mode: this works for kernels wider than the image (σ_max = 50 on 32-pixel tests) and
gives ``∂L/∂σ`` in closed form (no finite differences).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scouter.explain.base import integer_setting, model_logits, register_explainer
from scouter.explain.posthoc import ChannelReduction, PixelExplainer

__all__ = ["BlurIGExplainer", "gaussian_blur", "gaussian_blur_matrices"]


def _reflect(index: Tensor, size: int) -> Tensor:
    """SciPy ``reflect`` (half-sample symmetric) border: ``d c b a | a b c d | d c b a``."""
    index = index.remainder(2 * size)
    return torch.where(index >= size, 2 * size - 1 - index, index)


def gaussian_blur_matrices(
    size: int, sigma: float, truncate: float = 4.0, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor]:
    """The 1-D Gaussian blur along an axis of length ``size`` as a matrix, and its σ-derivative.

    Args:
        size: ``n``, the length of the axis.
        sigma: standard deviation in pixels; ``0`` gives the identity.
        truncate: kernel radius in standard deviations (SciPy's default 4).
        dtype: dtype of the matrices.

    Returns:
        ``(G, dG/dσ)``, both ``(n, n)``: ``(G v)_i = Σ_j w_j v_{reflect(i + j)}`` with
        ``w_j ∝ exp(−j²/2σ²)`` normalised to sum 1.
    """
    if sigma <= 0:
        return torch.eye(size, dtype=dtype), torch.zeros(size, size, dtype=dtype)
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=dtype)
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    # d w_j / dσ for the normalised kernel: w_j (j² − Σ_k w_k k²) / σ³.
    second_moment = (weights * offsets**2).sum()
    d_weights = weights * (offsets**2 - second_moment) / sigma**3
    rows = torch.arange(size)[:, None].expand(-1, 2 * radius + 1)
    cols = _reflect(rows + torch.arange(-radius, radius + 1), size)
    blur = torch.zeros(size, size, dtype=dtype)
    d_blur = torch.zeros(size, size, dtype=dtype)
    blur.index_put_((rows, cols), weights.expand(size, -1), accumulate=True)
    d_blur.index_put_((rows, cols), d_weights.expand(size, -1), accumulate=True)
    return blur, d_blur


def gaussian_blur(images: Tensor, sigma: float, truncate: float = 4.0) -> Tensor:
    """Blur ``(B, C, H, W)`` images spatially with a Gaussian of ``sigma`` pixels (SciPy-equal).

    Equals ``scipy.ndimage.gaussian_filter(x, sigma=(0, 0, σ, σ), mode="reflect")``.
    """
    g_h, _ = gaussian_blur_matrices(images.shape[-2], sigma, truncate, images.dtype)
    g_w, _ = gaussian_blur_matrices(images.shape[-1], sigma, truncate, images.dtype)
    g_h, g_w = g_h.to(images.device), g_w.to(images.device)
    return torch.einsum("hi,bcij,wj->bchw", g_h, images, g_w)


@register_explainer
class BlurIGExplainer(PixelExplainer):
    """Blur IG: integrated gradients along a path of decreasing Gaussian blur.

    Args:
        max_sigma: σ of the most blurred image, in pixels (the paper's released code uses 50).
        steps: Riemann intervals of ``[0, σ_max]`` (midpoints).
        truncate: Gaussian kernel radius in standard deviations.
        reduce: channel reduction (default ``"sum_abs"``; ``"sum"`` keeps completeness).
        batch_size: path points per forward pass, and (image, class) pairs for ``"all"``.
    """

    name = "blur_ig"

    def __init__(
        self,
        max_sigma: float = 50.0,
        steps: int = 100,
        truncate: float = 4.0,
        reduce: ChannelReduction | None = None,
        batch_size: int = 64,
    ) -> None:
        if not float(max_sigma) > 0:
            raise ValueError(
                f"explainer 'blur_ig': max_sigma must be > 0 (σ of the most blurred image, in "
                f"pixels), got {max_sigma!r}"
            )
        self.max_sigma = float(max_sigma)
        self.steps = integer_setting(self.name, "steps", steps, 1, "Riemann intervals")
        self.truncate = float(truncate)
        super().__init__(
            reduce,
            batch_size,
            max_sigma=self.max_sigma,
            steps=self.steps,
            truncate=self.truncate,
        )

    def _path(self, images: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
        """``L(x, σ)`` and ``∂L/∂σ``, each ``(N, C, H, W)``."""
        dtype = images.dtype
        g_h, dg_h = (
            m.to(images.device)
            for m in gaussian_blur_matrices(images.shape[-2], sigma, self.truncate, dtype)
        )
        g_w, dg_w = (
            m.to(images.device)
            for m in gaussian_blur_matrices(images.shape[-1], sigma, self.truncate, dtype)
        )
        blurred = torch.einsum("hi,bcij,wj->bchw", g_h, images, g_w)
        d_blurred = torch.einsum("hi,bcij,wj->bchw", dg_h, images, g_w) + torch.einsum(
            "hi,bcij,wj->bchw", g_h, images, dg_w
        )
        return blurred, d_blurred

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        images = images.detach()  # gradients are taken at the path points, not through the blur
        delta = self.max_sigma / self.steps
        sigmas = [(i + 0.5) * delta for i in range(self.steps)]
        per_pass = max(1, self.batch_size // len(images))
        total = torch.zeros_like(images)
        for start in range(0, self.steps, per_pass):
            chunk = sigmas[start : start + per_pass]
            paths = [self._path(images, sigma) for sigma in chunk]
            points = torch.cat([p for p, _ in paths]).requires_grad_(True)
            logits = model_logits(model, points)
            score = logits.gather(1, targets.repeat(len(chunk))[:, None]).sum()
            (grads,) = torch.autograd.grad(score, points)
            slopes = torch.cat([d for _, d in paths])
            total += (grads * slopes).view(len(chunk), *images.shape).sum(dim=0)
        # The path runs from σ_max down to 0: dσ is negative.
        return -delta * total
