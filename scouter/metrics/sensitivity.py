"""Max-sensitivity (Yeh et al., NeurIPS 2019) as ``captum.metrics.sensitivity_max`` estimates it.

docs/metrics.md#sensitivity: ``max_δ ‖M(x+δ) − M(x)‖_F / ‖M(x)‖_F`` with
``δ ~ U(−r, r)`` per element and the explanation recomputed for each perturbed input.

captum ≥ 0.7 already divides by ``‖M(x)‖`` (``norm_ord="fro"``, a zero norm replaced by 1), so the
two agree exactly when captum's ``explanation_func`` returns the same (prepared) maps and its
``perturb_func`` adds the same stored ``δ`` — see ``tests/metrics/test_metric_sensitivity.py``.
Written here rather than calling captum so that the ``δ`` come from a seeded generator and all
``B·n`` perturbed inputs go through ``explain_fn`` in chunks of ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from scouter.metrics.maps import prepare_maps
from scouter.metrics.per_image import PerturbationMetric

__all__ = ["MaxSensitivity", "max_sensitivity_scores"]

ExplainFn = Callable[[Tensor, Tensor], Tensor]


def _explain_prepared(
    explain_fn: ExplainFn, images: Tensor, classes: Tensor, prepare: bool, batch_size: int
) -> Tensor:
    out = []
    for lo in range(0, images.shape[0], batch_size):
        maps = explain_fn(images[lo : lo + batch_size], classes[lo : lo + batch_size]).detach()
        if prepare:
            maps = prepare_maps(maps, tuple(images.shape[-2:]))
        out.append(maps)
    return torch.cat(out)


def max_sensitivity_scores(
    explain_fn: ExplainFn,
    images: Tensor,
    classes: Tensor,
    perturbations: Tensor,
    *,
    prepare: bool = True,
    batch_size: int = 256,
) -> Tensor:
    """Per-image max-sensitivity over the given perturbations.

    Args:
        explain_fn: ``(images (N, C, H, W), classes (N,)) -> maps (N, 1, h, w)``, the explanation
            of the given class; called on the clean images and on all perturbed images.
        images: ``(B, C, H, W)``.
        classes: ``(B,)`` explained classes.
        perturbations: ``(B, n, C, H, W)`` the ``δ`` of each image (inputs are ``x + δ``).
        prepare: apply :func:`~scouter.metrics.maps.prepare_maps` to every explanation.
        batch_size: inputs per ``explain_fn`` call.

    Returns:
        ``(B,)`` ``max_δ ‖M(x+δ) − M(x)‖_F / ‖M(x)‖_F`` (a zero ``‖M(x)‖`` counts as 1, as captum).
    """
    b, n = perturbations.shape[:2]
    classes = classes.to(device=images.device, dtype=torch.long)
    clean = _explain_prepared(explain_fn, images, classes, prepare, batch_size).flatten(1)
    perturbed_inputs = (images[:, None] + perturbations).flatten(0, 1)
    noisy = _explain_prepared(
        explain_fn, perturbed_inputs, classes.repeat_interleave(n), prepare, batch_size
    )
    noisy = noisy.view(b, n, -1)
    clean_norm = torch.linalg.vector_norm(clean, dim=-1)
    clean_norm = torch.where(clean_norm == 0, torch.ones_like(clean_norm), clean_norm)
    change = torch.linalg.vector_norm(noisy - clean[:, None], dim=-1)  # (B, n)
    return (change / clean_norm[:, None]).amax(dim=1)


class MaxSensitivity(PerturbationMetric):
    """Max-sensitivity of explanations (lower = more stable), dataset mean of per-image values.

    Args:
        explain_fn: ``(images (N, C, H, W), classes (N,)) -> maps (N, 1, h, w)``; for SCOUTER one
            forward pass returning the class's attention map.
        radius: ``r`` of the uniform perturbation ``δ ~ U(−r, r)`` (normalised input space).
        **settings: ``n_perturbations`` (10), ``batch_size`` (256, inputs per ``explain_fn``
            call), ``prepare`` (True, for each explanation), ``generator`` (None) and Metric
            options, as :class:`~scouter.metrics.per_image.PerturbationMetric`.

    Example:
        >>> metric = MaxSensitivity(lambda x, c: model(x).attention.gather(...))
        >>> metric.update(images, classes)
        >>> metric.compute()
    """

    higher_is_better = False
    fn_name = "explain_fn"

    def __init__(self, explain_fn: ExplainFn, *, radius: float = 0.2, **settings: Any) -> None:
        super().__init__(explain_fn, **settings)
        self.radius = radius

    @property
    def settings(self) -> dict:
        """The estimator's settings, for the results file."""
        return {
            "noise": "uniform",
            "radius": self.radius,
            "n_perturbations": self.n_perturbations,
            "norm": "fro",
            "normalised_by_explanation_norm": True,
        }

    def sample_perturbations(self, images: Tensor) -> Tensor:
        """Draw ``δ ~ U(−r, r)``: ``(B, n, C, H, W)`` for ``images`` ``(B, C, H, W)``."""
        return (self._draw(images, torch.rand) * 2 - 1) * self.radius

    def update(self, images: Tensor, classes: Tensor, perturbations: Tensor | None = None) -> None:
        """Add a batch.

        Args:
            images: ``(B, C, H, W)``.
            classes: ``(B,)`` explained classes.
            perturbations: optional stored ``(B, n, C, H, W)`` ``δ``; drawn when omitted.
        """
        if perturbations is None:
            perturbations = self.sample_perturbations(images)
        values = max_sensitivity_scores(
            self.explain_fn,
            images,
            classes,
            perturbations,
            prepare=self.prepare,
            batch_size=self.batch_size,
        )
        self.values.append(values.detach())
