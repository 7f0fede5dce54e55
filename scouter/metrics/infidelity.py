"""Infidelity (Yeh et al., NeurIPS 2019) as ``captum.metrics.infidelity`` estimates it.

docs/metrics.md#infidelity: ``E_I[(Iᵀ M − (p_c(x) − p_c(x − I)))²]`` with the optimal
rescaling β of ``M`` (captum ``normalize=True``), ``M`` broadcast over channels,
``I ~ N(0, σ²)`` per element.

The estimate is written here on tensors rather than by calling captum so that the perturbations can
be drawn from a seeded generator (captum's perturbation function has no generator), stored,
and evaluated for many images in one batched forward. The tests check it equals captum's
``infidelity(..., normalize=True)`` on the same perturbations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from scouter.metrics.maps import prepare_maps, select_class_maps
from scouter.metrics.per_image import PerturbationMetric

__all__ = ["Infidelity", "infidelity_scores"]

ForwardFn = Callable[[Tensor], Tensor]


def _class_probs(forward_fn: ForwardFn, images: Tensor, classes: Tensor, batch_size: int) -> Tensor:
    out = []
    for lo in range(0, images.shape[0], batch_size):
        probs = forward_fn(images[lo : lo + batch_size]).softmax(dim=-1)
        out.append(probs.gather(1, classes[lo : lo + batch_size, None])[:, 0])
    return torch.cat(out)


@torch.no_grad()
def infidelity_scores(
    forward_fn: ForwardFn,
    images: Tensor,
    maps: Tensor,
    classes: Tensor,
    perturbations: Tensor,
    *,
    batch_size: int = 256,
) -> Tensor:
    """Per-image infidelity with captum's optimal rescaling (``normalize=True``).

    With ``a_j = Σ I_j ⊙ M`` and ``b_j = p_c(x) − p_c(x − I_j)`` over ``n`` perturbations,
    ``β = Σ a b / Σ a²`` (β = Σ a b when Σ a² = 0, as captum's ``safe_div``) and the result is
    ``(β² Σ a² − 2β Σ a b + Σ b²) / n``.

    Args:
        forward_fn: ``(N, C, H, W) -> (N, K)`` logits.
        images: ``(B, C, H, W)``.
        maps: ``(B, 1, H, W)`` explanation of class ``classes``, broadcast over channels.
        classes: ``(B,)``.
        perturbations: ``(B, n, C, H, W)`` the ``I`` of each image.
        batch_size: perturbed images per forward call.

    Returns:
        ``(B,)`` infidelity.
    """
    b, n = perturbations.shape[:2]
    classes = classes.to(device=images.device, dtype=torch.long)
    perturbed = (images[:, None] - perturbations).flatten(0, 1)
    p_clean = _class_probs(forward_fn, images, classes, batch_size)
    p_pert = _class_probs(forward_fn, perturbed, classes.repeat_interleave(n), batch_size)
    diffs = p_clean[:, None] - p_pert.view(b, n)  # (B, n)
    dots = (perturbations * maps[:, None]).flatten(2).sum(-1)  # (B, n)
    sum_aa = dots.pow(2).sum(-1)
    sum_ab = (dots * diffs).sum(-1)
    sum_bb = diffs.pow(2).sum(-1)
    beta = sum_ab / torch.where(sum_aa != 0, sum_aa, torch.ones_like(sum_aa))
    return (beta * beta * sum_aa - 2 * beta * sum_ab + sum_bb) / n


class Infidelity(PerturbationMetric):
    """Infidelity of explanations (lower = more faithful), dataset mean of per-image values.

    Args:
        forward_fn: ``(N, C, H, W) -> (N, K)`` logits.
        sigma: standard deviation of the Gaussian perturbations ``I`` (normalised input space).
        **settings: ``n_perturbations`` (10), ``batch_size`` (256, perturbed images per forward
            call), ``prepare`` (True), ``generator`` (None) and Metric options, as
            :class:`~scouter.metrics.per_image.PerturbationMetric`.

    Example:
        >>> metric = Infidelity(model, generator=torch.Generator().manual_seed(0))
        >>> metric.update(images, maps, classes)
        >>> metric.compute(), metric.settings
    """

    higher_is_better = False
    fn_name = "forward_fn"

    def __init__(self, forward_fn: ForwardFn, *, sigma: float = 0.2, **settings: Any) -> None:
        super().__init__(forward_fn, **settings)
        self.sigma = sigma

    @property
    def settings(self) -> dict:
        """The estimator's settings, for the results file."""
        return {
            "noise": "gaussian",
            "sigma": self.sigma,
            "n_perturbations": self.n_perturbations,
            "normalize": True,
        }

    def sample_perturbations(self, images: Tensor) -> Tensor:
        """Draw ``I ~ N(0, σ²)``: ``(B, n, C, H, W)`` for ``images`` ``(B, C, H, W)``."""
        return self._draw(images, torch.randn) * self.sigma

    def update(
        self,
        images: Tensor,
        maps: Tensor,
        classes: Tensor,
        perturbations: Tensor | None = None,
    ) -> None:
        """Add a batch.

        Args:
            images: ``(B, C, H, W)``.
            maps: ``(B, K, h, w)`` or ``(B, 1, h, w)`` explanation maps.
            classes: ``(B,)`` explained classes.
            perturbations: optional stored ``(B, n, C, H, W)`` perturbations ``I``; drawn with
                :meth:`sample_perturbations` when omitted.
        """
        maps = select_class_maps(maps, classes)
        if self.prepare:
            maps = prepare_maps(maps, tuple(images.shape[-2:]))
        if perturbations is None:
            perturbations = self.sample_perturbations(images)
        values = infidelity_scores(
            self.forward_fn,
            images,
            maps.to(images.dtype),
            classes,
            perturbations,
            batch_size=self.batch_size,
        )
        self.values.append(values)
