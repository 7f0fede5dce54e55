"""Insertion and deletion AUC, the RISE protocol (Petsiuk et al., 2018).

Definition: docs/metrics.md#insertion-and-deletion.

Pixels are ranked by the explanation (descending, stable sort); ``step`` pixels change per step,
all channels together. Deletion replaces them by 0 (normalised space) starting from the image;
insertion copies them from the image into a blurred copy. The score of a step is the softmax
probability of the explained class, and ``AUC = (Σ s_i − (s_0 + s_N)/2) / N``.

No library provides this protocol on tensors with batching across steps (captum has none; Quantus
is NumPy and per-step), so the engine is written here: every perturbed image of every
``(image, step)`` pair is built by one ``torch.where`` on a rank mask and evaluated in chunks of
``batch_size`` — never one forward per step per image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from scouter.metrics.maps import prepare_maps, select_class_maps

__all__ = [
    "DeletionAUC",
    "InsertionAUC",
    "curve_auc",
    "default_step",
    "rise_blur",
    "rise_blur_kernel",
    "rise_curves",
]

ForwardFn = Callable[[Tensor], Tensor]
Mode = Literal["insertion", "deletion"]


def default_step(height: int, width: int) -> int:
    """Pixels per step, ``ceil(H·W / 224)`` (RISE's 224 steps for any input size)."""
    return math.ceil(height * width / 224)


def rise_blur_kernel(size: int = 11, sigma: float = 5.0) -> Tensor:
    """The RISE blur kernel: a centred delta Gaussian-filtered in ``reflect`` mode.

    Filtering a delta with reflection at the borders folds the Gaussian's tails back into the
    window, so the kernel is flatter than a truncated Gaussian (it matters for the numbers,
    docs/metrics.md#insertion-and-deletion). Computed with :func:`scipy.ndimage.gaussian_filter`
    (its default ``reflect`` mode).

    Returns:
        ``(size, size)`` float64 kernel.
    """
    delta = np.zeros((size, size))
    delta[size // 2, size // 2] = 1.0
    return torch.from_numpy(gaussian_filter(delta, sigma))


def rise_blur(images: Tensor, size: int = 11, sigma: float = 5.0) -> Tensor:
    """Blur each channel with :func:`rise_blur_kernel`, zero padding ``size // 2``.

    Args:
        images: ``(N, C, H, W)`` floating images.

    Returns:
        ``(N, C, H, W)`` blurred images, same dtype and device.
    """
    channels = images.shape[1]
    kernel = rise_blur_kernel(size, sigma).to(device=images.device, dtype=images.dtype)
    weight = kernel.expand(channels, 1, size, size)
    return F.conv2d(images, weight, padding=size // 2, groups=channels)


def curve_auc(curves: Tensor) -> Tensor:
    """Trapezoid AUC over ``[0, 1]`` of ``(B, N+1)`` curves: ``(Σ s_i − (s_0 + s_N)/2) / N``."""
    n = curves.shape[-1] - 1
    return (curves.sum(-1) - (curves[..., 0] + curves[..., -1]) / 2) / n


def _pixel_ranks(saliency: Tensor) -> Tensor:
    """Rank of each pixel in the stable descending order of ``saliency`` ``(B, P)``."""
    order = torch.sort(saliency, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return ranks.scatter_(1, order, positions)


@torch.no_grad()
def rise_curves(
    forward_fn: ForwardFn,
    images: Tensor,
    maps: Tensor,
    classes: Tensor,
    mode: Mode,
    *,
    step: int | None = None,
    batch_size: int = 256,
) -> Tensor:
    """Insertion or deletion curves of a batch of images (docs/metrics.md#insertion-and-deletion).

    Args:
        forward_fn: ``(N, C, H, W) -> (N, K)`` logits; probabilities are its softmax.
        images: ``(B, C, H, W)`` model inputs (normalised space).
        maps: ``(B, 1, H, W)`` saliency at input resolution (higher = more important). Only the
            order matters; ties keep pixel (row-major) order.
        classes: ``(B,)`` explained classes.
        mode: ``"insertion"`` (blurred image → image) or ``"deletion"`` (image → zeros).
        step: pixels changed per step; default :func:`default_step`.
        batch_size: images per forward call; all ``B·(N+1)`` perturbed images are evaluated in
            chunks of this size, ordered image-major. Larger is better on a GPU; on a CPU a
            moderate size (~64) keeps activations in cache.

    Returns:
        ``(B, N+1)`` probabilities of the explained class, ``N = ceil(H·W / step)``; column ``i``
        has the ``min(i·step, H·W)`` top-ranked pixels changed.
    """
    if mode not in ("insertion", "deletion"):
        raise ValueError(f"mode must be 'insertion' or 'deletion', got {mode!r}")
    b, c, h, w = images.shape
    if maps.shape != (b, 1, h, w):
        raise ValueError(f"maps must be (B, 1, H, W) = {(b, 1, h, w)}, got {tuple(maps.shape)}")
    n_pixels = h * w
    step = default_step(h, w) if step is None else int(step)
    if step < 1 or batch_size < 1:
        raise ValueError(f"step and batch_size must be >= 1, got {step} and {batch_size}")
    n_steps = math.ceil(n_pixels / step)

    if mode == "deletion":
        start, finish = images, torch.zeros_like(images)
    else:
        start, finish = rise_blur(images), images
    ranks = _pixel_ranks(maps.reshape(b, n_pixels))  # (B, P)
    classes = classes.to(device=images.device, dtype=torch.long)

    # Every (image, step) pair, image-major; pair j shows image j // (N+1) after j % (N+1) steps.
    pair_image = torch.arange(b, device=images.device).repeat_interleave(n_steps + 1)
    pair_count = (torch.arange(n_steps + 1, device=images.device) * step).clamp(max=n_pixels)
    pair_count = pair_count.repeat(b)
    scores = []
    for lo in range(0, pair_image.numel(), batch_size):
        idx = pair_image[lo : lo + batch_size]
        changed = ranks[idx] < pair_count[lo : lo + batch_size, None]  # (n, P)
        changed = changed.view(-1, 1, h, w)
        perturbed = torch.where(changed, finish[idx], start[idx])
        probs = forward_fn(perturbed).softmax(dim=-1)
        scores.append(probs.gather(1, classes[idx, None])[:, 0])
    return torch.cat(scores).view(b, n_steps + 1)


class _RiseAUC(Metric):
    """Shared engine of :class:`InsertionAUC` and :class:`DeletionAUC`."""

    is_differentiable = False
    full_state_update = False
    mode: Mode

    def __init__(
        self,
        forward_fn: ForwardFn,
        *,
        step: int | None = None,
        batch_size: int = 256,
        prepare: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        # Stored outside nn.Module's registry: a model passed here must not become a submodule of
        # the metric (its weights would land in the metric's state_dict and follow .to()).
        object.__setattr__(self, "forward_fn", forward_fn)
        self.step = step
        self.batch_size = batch_size
        self.prepare = prepare
        self.add_state("aucs", default=[], dist_reduce_fx="cat")
        self.add_state("curve_list", default=[], dist_reduce_fx="cat")

    def update(self, images: Tensor, maps: Tensor, classes: Tensor) -> None:
        """Add a batch.

        Args:
            images: ``(B, C, H, W)`` model inputs.
            maps: ``(B, K, h, w)`` or ``(B, 1, h, w)`` explanation maps; prepared (ReLU, bilinear
                to ``H×W``, min–max) unless ``prepare=False`` (then they must be ``(B, 1, H, W)``).
            classes: ``(B,)`` explained classes.
        """
        maps = select_class_maps(maps, classes)
        if self.prepare:
            maps = prepare_maps(maps, tuple(images.shape[-2:]))
        curves = rise_curves(
            self.forward_fn,
            images,
            maps,
            classes,
            self.mode,
            step=self.step,
            batch_size=self.batch_size,
        )
        # A map with NaN has no pixel order: its curve is undefined, not a score.
        undefined = ~torch.isfinite(maps).flatten(1).all(dim=1)
        curves = curves.masked_fill(undefined[:, None], float("nan"))
        self.curve_list.append(curves)
        self.aucs.append(curve_auc(curves))

    def per_image(self) -> Tensor:
        """Per-image AUCs ``(N,)`` in update order."""
        return dim_zero_cat(self.aucs) if self.aucs else torch.empty(0, device=self.device)

    def curves(self) -> Tensor:
        """All curves ``(N, steps+1)`` in update order (needs equal input sizes)."""
        return dim_zero_cat(self.curve_list)

    def compute(self) -> Tensor:
        """Dataset mean AUC (scalar; NaN before any update)."""
        values = self.per_image()
        return values.mean() if values.numel() else torch.tensor(float("nan"), device=self.device)


class InsertionAUC(_RiseAUC):
    """Insertion AUC (higher = better): blurred image, most salient pixels inserted first.

    Args:
        forward_fn: ``(N, C, H, W) -> (N, K)`` logits.
        step: pixels per step (default ``ceil(H·W / 224)``).
        batch_size: perturbed images per forward call.
        prepare: apply :func:`~scouter.metrics.maps.prepare_maps` to the maps.

    Example:
        >>> metric = InsertionAUC(model, batch_size=512)
        >>> metric.update(images, maps, classes)
        >>> metric.compute(), metric.curves()
    """

    higher_is_better = True
    mode = "insertion"


class DeletionAUC(_RiseAUC):
    """Deletion AUC (lower = better): most salient pixels set to 0 first.

    Args:
        forward_fn: ``(N, C, H, W) -> (N, K)`` logits.
        step: pixels per step (default ``ceil(H·W / 224)``).
        batch_size: perturbed images per forward call.
        prepare: apply :func:`~scouter.metrics.maps.prepare_maps` to the maps.
    """

    higher_is_better = False
    mode = "deletion"
