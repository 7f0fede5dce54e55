"""Base classes of the metrics that keep one value per image and report the dataset mean.

:class:`PerImageMetric` holds the ``values`` state (concatenated across processes), the
per-image view and the mean; :class:`PerturbationMetric` adds what infidelity and
max-sensitivity share: a function of the model evaluated on ``n_perturbations`` seeded
perturbations of each image, in chunks of ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = ["PerImageMetric", "PerturbationMetric"]


class PerImageMetric(Metric):
    """One value per image in update order (:meth:`per_image`); :meth:`compute` is their mean."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def per_image(self) -> Tensor:
        """Per-image values ``(N,)`` in update order."""
        return dim_zero_cat(self.values) if self.values else torch.empty(0, device=self.device)

    def compute(self) -> Tensor:
        """Dataset mean (scalar; NaN before any update)."""
        values = self.per_image()
        return values.mean() if values.numel() else torch.tensor(float("nan"), device=self.device)


class PerturbationMetric(PerImageMetric):
    """A per-image estimate over ``n_perturbations`` random perturbations of each image.

    A subclass names its model function (:attr:`fn_name`, kept as that attribute) and adds the
    scale of its perturbations; the other settings are these, shared.

    Args:
        fn: the model function the estimate evaluates.
        n_perturbations: perturbations per image.
        batch_size: perturbed inputs per call of ``fn``.
        prepare: apply :func:`~scouter.metrics.maps.prepare_maps` (ReLU, bilinear to ``H×W``,
            min–max) to the maps.
        generator: random generator for the perturbations (reproducible runs); ``None`` uses the
            global RNG. Perturbations are drawn on the generator's device and then moved.
        **kwargs: ``torchmetrics.Metric`` options.
    """

    #: ``"forward_fn"`` or ``"explain_fn"``: the attribute holding ``fn``.
    fn_name: ClassVar[str]

    def __init__(
        self,
        fn: Callable[..., Tensor],
        *,
        n_perturbations: int = 10,
        batch_size: int = 256,
        prepare: bool = True,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Not registered as submodules: a model inside fn is not the metric's state.
        object.__setattr__(self, self.fn_name, fn)
        object.__setattr__(self, "generator", generator)
        self.n_perturbations = n_perturbations
        self.batch_size = batch_size
        self.prepare = prepare

    def _draw(self, images: Tensor, sample: Callable[..., Tensor]) -> Tensor:
        """``sample(shape, generator=, device=, dtype=)`` of shape ``(B, n, C, H, W)``, on the
        generator's device, moved to the images' device."""
        shape = (images.shape[0], self.n_perturbations, *images.shape[1:])
        device = self.generator.device if self.generator is not None else images.device
        draw = sample(shape, generator=self.generator, device=device, dtype=images.dtype)
        return draw.to(images.device)
