"""Post-hoc pixel-attribution baselines for any classifier (FC or SCOUTER): captum wrappers.

``saliency``, ``guided_backprop``, ``smoothgrad``, ``ig`` and ``occlusion`` attribute to input
pixels ``(B, C, H, W)`` and reduce the channels to ``(B, 1, H, W)`` (``reduce`` setting; default
``"sum_abs"``, the usual grayscale visualisation of gradients and the magnitude captum's saliency
uses; ``occlusion`` defaults to ``"mean"`` because its window spans all channels, so every
channel holds the same signed score drop). All are captum's implementations. The CAM family
(Grad-CAM, Grad-CAM++, Score-CAM, CAM) is in :mod:`scouter.explain.cam`.

What is explained is the model's raw class score (logit) of the target class, sign included; for
SCOUTER− (``sign = −1``, scores ``≤ 0``) a class's logit grows when its attention shrinks, so these
maps show evidence *for* the class in the model's own (negative) sense.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from scouter.explain.base import (
    Explainer,
    LogitModule,
    integer_setting,
    logits_function,
    register_explainer,
)

__all__ = [
    "GuidedBackpropExplainer",
    "IntegratedGradientsExplainer",
    "OcclusionExplainer",
    "PixelExplainer",
    "SaliencyExplainer",
    "SmoothGradExplainer",
    "reduce_channels",
]

ChannelReduction = Literal["sum_abs", "sum", "max_abs", "mean"]
_REDUCTIONS = ("sum_abs", "sum", "max_abs", "mean")


def reduce_channels(attributions: Tensor, reduce: ChannelReduction) -> Tensor:
    """Reduce per-channel pixel attributions ``(B, C, H, W)`` to ``(B, 1, H, W)``.

    Args:
        attributions: ``(B, C, H, W)``.
        reduce: ``"sum_abs"`` (``Σ_c |a_c|``), ``"sum"`` (``Σ_c a_c``, keeps IG's completeness),
            ``"max_abs"`` (``max_c |a_c|``, Simonyan et al.'s saliency) or ``"mean"``.

    Returns:
        ``(B, 1, H, W)``.
    """
    if reduce == "sum_abs":
        return attributions.abs().sum(dim=1, keepdim=True)
    if reduce == "sum":
        return attributions.sum(dim=1, keepdim=True)
    if reduce == "max_abs":
        return attributions.abs().amax(dim=1, keepdim=True)
    if reduce == "mean":
        return attributions.mean(dim=1, keepdim=True)
    raise ValueError(f"reduce must be one of {_REDUCTIONS}, got {reduce!r}")


# --------------------------------------------------------------------------------- pixel methods


class PixelExplainer(Explainer):
    """Base of pixel-attribution methods: ``attributions (N, C, H, W)`` → ``(N, 1, H, W)``.

    Args:
        reduce: channel reduction, see :func:`reduce_channels`.
        batch_size: see :class:`~scouter.explain.base.Explainer`.
        **settings: recorded with the explanation.
    """

    kind = "pixel"
    default_reduce: ChannelReduction = "sum_abs"

    def __init__(
        self, reduce: ChannelReduction | None = None, batch_size: int = 64, **settings: Any
    ) -> None:
        reduce = reduce or self.default_reduce
        if reduce not in _REDUCTIONS:
            raise ValueError(f"reduce must be one of {_REDUCTIONS}, got {reduce!r}")
        self.reduce = reduce
        super().__init__(batch_size=batch_size, reduce=reduce, **settings)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        """Per-channel attributions ``(N, C, H, W)`` of ``targets (N,)``."""
        raise NotImplementedError

    def explain(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        return reduce_channels(self.attribute(model, images, targets), self.reduce)


@register_explainer
class SaliencyExplainer(PixelExplainer):
    """Vanilla gradients ``|∂ logit_c / ∂x|`` (Simonyan et al. 2014) via ``captum.attr.Saliency``.

    Args:
        reduce: channel reduction (default ``"sum_abs"``).
        batch_size: (image, class) pairs per pass for ``target="all"``.
    """

    name = "saliency"

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        from captum.attr import Saliency

        return Saliency(logits_function(model)).attribute(images, target=targets, abs=True)


@register_explainer
class GuidedBackpropExplainer(PixelExplainer):
    """Guided backpropagation (Springenberg et al. 2015) via ``captum.attr.GuidedBackprop``.

    captum overrides the backward pass of every ``nn.ReLU`` module; functional ReLUs (such as the
    xSlot head's) keep their ordinary gradient.

    Args:
        reduce: channel reduction (default ``"sum_abs"``).
        batch_size: (image, class) pairs per pass for ``target="all"``.
    """

    name = "guided_backprop"

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        from captum.attr import GuidedBackprop

        return GuidedBackprop(LogitModule(model)).attribute(images, target=targets)


@register_explainer
class SmoothGradExplainer(PixelExplainer):
    """SmoothGrad (Smilkov et al. 2017): saliency averaged over noisy copies of the input.

    ``captum.attr.NoiseTunnel(Saliency)`` with ``nt_type="smoothgrad"``: the mean of
    ``|∂ logit_c / ∂x|`` at ``x + N(0, stdev²)``.

    Args:
        samples: noisy copies per image (the paper uses 50).
        stdev: noise standard deviation in normalised input space; the default 0.6 is about 15 %
            of the value range of ImageNet-normalised images (≈ [−2.1, 2.6]), the paper's setting.
        reduce: channel reduction (default ``"sum_abs"``).
        batch_size: noisy copies per forward pass, and (image, class) pairs for ``"all"``.
        seed: seed of the noise, drawn anew for each call (the same batch gives the same map; the
            global RNG is untouched).
    """

    name = "smoothgrad"

    def __init__(
        self,
        samples: int = 25,
        stdev: float = 0.6,
        reduce: ChannelReduction | None = None,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        self.samples = integer_setting(self.name, "samples", samples, 1, "noisy copies per image")
        if not float(stdev) >= 0:
            raise ValueError(f"explainer 'smoothgrad': stdev must be >= 0, got {stdev!r}")
        self.stdev = float(stdev)
        self.seed = integer_setting(self.name, "seed", seed, None)
        super().__init__(reduce, batch_size, samples=self.samples, stdev=self.stdev,
                         seed=self.seed)  # fmt: skip

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        from captum.attr import NoiseTunnel, Saliency

        tunnel = NoiseTunnel(Saliency(logits_function(model)))
        # captum draws the noise from the global generator of the images' device: seed a forked
        # one, so a map does not depend on what ran before it in the process.
        devices = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            return tunnel.attribute(
                images,
                nt_type="smoothgrad",
                nt_samples=self.samples,
                nt_samples_batch_size=max(1, self.batch_size // max(1, len(images))),
                stdevs=self.stdev,
                target=targets,
                abs=True,
            )


@register_explainer
class IntegratedGradientsExplainer(PixelExplainer):
    """Integrated Gradients (Sundararajan et al. 2017) via ``captum.attr.IntegratedGradients``.

    ``(x − x') · ∫₀¹ ∂ logit_c(x' + α(x − x')) / ∂x dα`` with a constant baseline ``x'``.

    Args:
        steps: integration points (captum ``n_steps``).
        baseline: baseline value in normalised input space (0 = the dataset's mean colour).
        method: captum's quadrature (``"gausslegendre"``, ``"riemann_trapezoid"``, …).
        reduce: channel reduction (default ``"sum_abs"``; ``"sum"`` keeps completeness:
            ``Σ attributions = logit_c(x) − logit_c(x')``).
        batch_size: path points per forward pass (captum ``internal_batch_size``), and
            (image, class) pairs for ``"all"``.
    """

    name = "ig"

    def __init__(
        self,
        steps: int = 50,
        baseline: float = 0.0,
        method: str = "gausslegendre",
        reduce: ChannelReduction | None = None,
        batch_size: int = 64,
    ) -> None:
        self.steps = integer_setting(self.name, "steps", steps, 1, "integration points")
        try:
            from captum.attr._utils.approximation_methods import SUPPORTED_METHODS as methods
        except ImportError:  # a private captum module: skip the early check if it moves
            methods = [method]
        if method not in methods:
            raise ValueError(
                f"explainer 'ig': method must be one of {', '.join(methods)}, got {method!r}"
            )
        self.baseline = float(baseline)
        self.method = method
        super().__init__(
            reduce, batch_size, steps=self.steps, baseline=self.baseline, method=method
        )

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        from captum.attr import IntegratedGradients

        return IntegratedGradients(logits_function(model)).attribute(
            images,
            baselines=self.baseline,
            target=targets,
            n_steps=self.steps,
            method=self.method,
            internal_batch_size=max(self.batch_size, len(images)),
        )


@register_explainer
class OcclusionExplainer(PixelExplainer):
    """Occlusion (Zeiler & Fergus 2014), leave-one-out over patches, via ``captum.attr.Occlusion``.

    Each ``window×window`` patch (all channels) is replaced by ``baseline`` and the drop of the
    target logit is attributed to the patch's pixels (averaged where windows overlap).

    Args:
        window: patch side in pixels.
        stride: step between patches; default ``window`` (non-overlapping patches).
        baseline: replacement value in normalised input space (0 = the mean colour).
        reduce: channel reduction (default ``"mean"``: the signed logit drop).
        batch_size: occluded images per forward pass (captum ``perturbations_per_eval``, per
            image), and (image, class) pairs for ``"all"``.
    """

    name = "occlusion"
    needs_gradients = False
    default_reduce = "mean"

    def __init__(
        self,
        window: int = 16,
        stride: int | None = None,
        baseline: float = 0.0,
        reduce: ChannelReduction | None = None,
        batch_size: int = 64,
    ) -> None:
        self.window = integer_setting(self.name, "window", window, 1, "patch side in pixels")
        self.stride = (
            integer_setting(self.name, "stride", stride, 1, "pixels between patches")
            if stride is not None
            else self.window
        )
        self.baseline = float(baseline)
        super().__init__(
            reduce, batch_size, window=self.window, stride=self.stride, baseline=self.baseline
        )

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        from captum.attr import Occlusion

        channels, height, width = images.shape[1:]
        if self.window > min(height, width):
            raise ValueError(
                f"occlusion window {self.window} exceeds the {height}x{width} input; pass a "
                "smaller window"
            )
        return Occlusion(logits_function(model)).attribute(
            images,
            sliding_window_shapes=(channels, self.window, self.window),
            strides=(channels, self.stride, self.stride),
            baselines=self.baseline,
            target=targets,
            perturbations_per_eval=max(1, self.batch_size // max(1, len(images))),
        )
