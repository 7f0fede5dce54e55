"""Post-hoc baselines for any classifier (FC or SCOUTER), mostly thin wrappers around captum.

Two families:

* **CAM methods** (``gradcam``, ``gradcam++``, ``scorecam``, ``cam``) weight the channels of a
  feature map — by default the backbone's output ``(B, C, h, w)``, the same grid as SCOUTER's
  attention — and return ``(B, 1, h, w)`` maps at feature resolution, signed and unnormalised
  (metrics apply ReLU, upsampling and min–max, docs/metrics.md#map-preparation).
* **Pixel methods** (``saliency``, ``guided_backprop``, ``smoothgrad``, ``ig``, ``occlusion``)
  attribute to input pixels ``(B, C, H, W)`` and reduce the channels to ``(B, 1, H, W)``
  (``reduce`` setting; default ``"sum_abs"``, the usual grayscale visualisation of gradients
  and the magnitude captum's saliency uses; ``occlusion`` defaults to ``"mean"`` because its
  window spans all channels, so every channel holds the same signed score drop).

Grad-CAM, saliency, guided backprop, SmoothGrad, IG and occlusion are captum's implementations.
Grad-CAM++ and Score-CAM are not in captum; pytorch-grad-cam has them but round-trips every map
through NumPy on the CPU, min–max normalises and resizes with OpenCV inside the method, and
scores Score-CAM masks one ``.item()`` at a time. They are therefore written here as one hook each
(:meth:`FeatureCAM.cam_weights`, the pytorch-grad-cam base-class idea) on torch tensors, batched
and device-agnostic, and tested against pytorch-grad-cam's output.

What is explained is the model's raw class score (logit) of the target class, sign included; for
SCOUTER− (``sign = −1``, scores ``≤ 0``) a class's logit grows when its attention shrinks, so these
maps show evidence *for* the class in the model's own (negative) sense. Score-CAM scores masked
inputs by class probability, as its paper's code does.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scouter.explain.base import (
    Explainer,
    LogitModule,
    integer_setting,
    model_logits,
    register_explainer,
)

__all__ = [
    "CAMExplainer",
    "FeatureCAM",
    "GradCAMExplainer",
    "GradCAMPlusPlusExplainer",
    "GuidedBackpropExplainer",
    "IntegratedGradientsExplainer",
    "OcclusionExplainer",
    "PixelExplainer",
    "SaliencyExplainer",
    "ScoreCAMExplainer",
    "SmoothGradExplainer",
    "reduce_channels",
    "resolve_layer",
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


def resolve_layer(model: nn.Module, layer: str | None) -> nn.Module:
    """The module whose output CAM methods weight.

    Args:
        model: the classifier.
        layer: ``None`` for ``model.backbone`` (the feature map SCOUTER attends over), or a
            dotted submodule name such as ``"backbone.model.layer3"``.

    Returns:
        The module.
    """
    if layer is None:
        if not hasattr(model, "backbone"):
            raise ValueError(
                "the model has no `backbone`; pass layer='<dotted module name>' to choose the "
                "feature layer"
            )
        return model.backbone
    try:
        return model.get_submodule(layer)
    except AttributeError as error:
        raise ValueError(f"the model has no submodule {layer!r}: {error}") from None


def _logits_function(model: nn.Module):
    return lambda images: model_logits(model, images)


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

        return Saliency(_logits_function(model)).attribute(images, target=targets, abs=True)


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
    """

    name = "smoothgrad"

    def __init__(
        self,
        samples: int = 25,
        stdev: float = 0.6,
        reduce: ChannelReduction | None = None,
        batch_size: int = 64,
    ) -> None:
        self.samples = integer_setting(self.name, "samples", samples, 1, "noisy copies per image")
        if not float(stdev) >= 0:
            raise ValueError(f"explainer 'smoothgrad': stdev must be >= 0, got {stdev!r}")
        self.stdev = float(stdev)
        super().__init__(reduce, batch_size, samples=self.samples, stdev=self.stdev)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        from captum.attr import NoiseTunnel, Saliency

        tunnel = NoiseTunnel(Saliency(_logits_function(model)))
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

        return IntegratedGradients(_logits_function(model)).attribute(
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
        return Occlusion(_logits_function(model)).attribute(
            images,
            sliding_window_shapes=(channels, self.window, self.window),
            strides=(channels, self.stride, self.stride),
            baselines=self.baseline,
            target=targets,
            perturbations_per_eval=max(1, self.batch_size // max(1, len(images))),
        )


# ----------------------------------------------------------------------------------- CAM methods


@register_explainer
class GradCAMExplainer(Explainer):
    """Grad-CAM (Selvaraju et al. 2017) via ``captum.attr.LayerGradCam``.

    ``Σ_k (mean_ij ∂ logit_c / ∂A_kij) · A_k`` on the feature map ``A (B, C, h, w)``, signed
    (captum's ``relu_attributions=False``; metrics apply the ReLU).

    Args:
        layer: feature layer, default the backbone (see :func:`resolve_layer`).
        batch_size: (image, class) pairs per pass for ``target="all"``.
    """

    name = "gradcam"
    kind = "cam"

    def __init__(self, layer: str | None = None, batch_size: int = 64) -> None:
        self.layer = layer
        super().__init__(batch_size=batch_size, layer=layer)

    def explain(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        from captum.attr import LayerGradCam

        gradcam = LayerGradCam(_logits_function(model), resolve_layer(model, self.layer))
        return gradcam.attribute(images, target=targets, relu_attributions=False)


class FeatureCAM(Explainer):
    """Base of CAM methods written here: ``Σ_k w_k(c) · A_k`` with one hook, :meth:`cam_weights`.

    Args:
        layer: feature layer, default the backbone (see :func:`resolve_layer`).
        batch_size: see :class:`~scouter.explain.base.Explainer`.
        **settings: recorded with the explanation.
    """

    kind = "cam"
    #: Whether :meth:`cam_weights` receives ``∂ Σ_n logit_{n, c_n} / ∂A``.
    uses_gradients: bool = True

    def __init__(self, layer: str | None = None, batch_size: int = 64, **settings: Any) -> None:
        self.layer = layer
        super().__init__(batch_size=batch_size, layer=layer, **settings)

    def features_and_gradients(
        self, model: nn.Module, images: Tensor, targets: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """Run the model, keeping the layer's output ``A (N, C, h, w)`` and optionally its gradient.

        Returns:
            ``(A, ∂ Σ_n logit_{n, targets_n} / ∂A)``; the gradient is ``None`` without
            :attr:`uses_gradients`. Images are independent, so the summed score gives every image
            its own gradient.
        """
        captured: list[Tensor] = []
        handle = resolve_layer(model, self.layer).register_forward_hook(
            lambda _module, _inputs, output: captured.append(output)
        )
        try:
            with torch.set_grad_enabled(self.uses_gradients):
                logits = model_logits(model, images)
        finally:
            handle.remove()
        if len(captured) != 1 or not isinstance(captured[0], Tensor) or captured[0].ndim != 4:
            raise ValueError("the CAM layer must run once per forward and output (N, C, h, w)")
        features = captured[0]
        if not self.uses_gradients:
            return features, None
        score = logits.gather(1, targets[:, None]).sum()
        (gradients,) = torch.autograd.grad(score, features)
        return features.detach(), gradients

    def cam_weights(
        self,
        model: nn.Module,
        images: Tensor,
        targets: Tensor,
        features: Tensor,
        gradients: Tensor | None,
    ) -> Tensor:
        """Channel weights of each image's target class (the hook subclasses implement).

        Args:
            model: the classifier.
            images: ``(N, C_in, H, W)``.
            targets: ``(N,)``.
            features: ``(N, C, h, w)`` the layer's output.
            gradients: ``(N, C, h, w)`` or ``None``.

        Returns:
            ``(N, C)`` weights.
        """
        raise NotImplementedError

    def explain(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        features, gradients = self.features_and_gradients(model, images, targets)
        weights = self.cam_weights(model, images, targets, features, gradients)
        return torch.einsum("nc,nchw->nhw", weights.to(features.dtype), features)[:, None]


@register_explainer
class GradCAMPlusPlusExplainer(FeatureCAM):
    """Grad-CAM++ (Chattopadhay et al. 2018), weights from their Eq. 19.

    With ``g = ∂ logit_c / ∂A`` (the exponential-score closed form, so only powers of ``g``
    appear): ``α_kij = g² / (2g² + Σ_ab A_kab · g³)`` (0 where ``g = 0``) and
    ``w_k = Σ_ij α_kij · ReLU(g_kij)`` — the same formula as pytorch-grad-cam's
    ``GradCAMPlusPlus`` (including its ``eps = 1e-6``).

    Args:
        layer: feature layer, default the backbone.
        batch_size: (image, class) pairs per pass for ``target="all"``.
    """

    name = "gradcam++"
    eps = 1e-6

    def __init__(self, layer: str | None = None, batch_size: int = 64) -> None:
        super().__init__(layer, batch_size)

    def cam_weights(self, model, images, targets, features, gradients) -> Tensor:
        grads_2 = gradients.pow(2)
        grads_3 = grads_2 * gradients
        feature_sums = features.sum(dim=(2, 3), keepdim=True)
        alpha = grads_2 / (2 * grads_2 + feature_sums * grads_3 + self.eps)
        alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
        return (alpha * gradients.clamp_min(0)).sum(dim=(2, 3))


@register_explainer
class ScoreCAMExplainer(FeatureCAM):
    """Score-CAM (Wang et al. 2020): channels weighted by the score of the input masked by them.

    Each channel ``A_k`` is upsampled bilinearly to the input size and min–max normalised to a
    mask ``H_k ∈ [0, 1]``; the masked input ``x ⊙ H_k`` is scored. All classes share the same
    ``C`` masked forwards, so ``target="all"`` costs no more than one class.

    Args:
        score: ``"probability"``: ``w_k = softmax(f(x ⊙ H_k))_c`` (the paper's released code);
            ``"softmax_logit"``: ``w = softmax_k(f_c(x ⊙ H_k))`` over channels (pytorch-grad-cam).
        align_corners: bilinear upsampling convention of the masks (pytorch-grad-cam uses
            ``True``; the paper's code ``False``).
        layer: feature layer, default the backbone.
        batch_size: masked images per forward pass.
    """

    name = "scorecam"
    uses_gradients = False
    needs_gradients = False

    def __init__(
        self,
        score: Literal["probability", "softmax_logit"] = "probability",
        align_corners: bool = False,
        layer: str | None = None,
        batch_size: int = 64,
    ) -> None:
        if score not in ("probability", "softmax_logit"):
            raise ValueError(f"score must be 'probability' or 'softmax_logit', got {score!r}")
        self.score = score
        self.align_corners = bool(align_corners)
        super().__init__(layer, batch_size, score=score, align_corners=self.align_corners)

    def masked_scores(self, model: nn.Module, images: Tensor, features: Tensor) -> Tensor:
        """Logits of every channel-masked input.

        Args:
            model: the classifier.
            images: ``(N, C_in, H, W)``.
            features: ``(N, C, h, w)``.

        Returns:
            ``(N, C, K)`` logits of ``x_n ⊙ H_{n,k}``.
        """
        masks = F.interpolate(
            features, size=images.shape[-2:], mode="bilinear", align_corners=self.align_corners
        )
        low = masks.amin(dim=(2, 3), keepdim=True)
        high = masks.amax(dim=(2, 3), keepdim=True)
        masks = (masks - low) / (high - low + 1e-8)  # (N, C, H, W)
        count, channels = masks.shape[:2]
        scores = []
        flat = masks.flatten(0, 1)  # (N·C, H, W)
        for start in range(0, count * channels, self.batch_size):
            rows = torch.arange(start, min(start + self.batch_size, count * channels))
            image_rows = (rows // channels).to(images.device)
            scores.append(model_logits(model, images[image_rows] * flat[rows, None]))
        return torch.cat(scores).view(count, channels, -1)

    def _weights_from_scores(self, scores: Tensor) -> Tensor:
        """``(N, C, T)`` masked scores of the explained classes → ``(N, C, T)`` weights."""
        if self.score == "softmax_logit":
            return scores.softmax(dim=1)
        return scores

    def cam_weights(self, model, images, targets, features, gradients) -> Tensor:
        return self._class_weights(model, images, features, targets[:, None])[:, :, 0]

    def _class_weights(self, model, images, features, targets: Tensor) -> Tensor:
        scores = self.masked_scores(model, images, features)  # (N, C, K)
        if self.score == "probability":
            scores = scores.softmax(dim=2)
        index = targets[:, None, :].expand(-1, scores.shape[1], -1)
        return self._weights_from_scores(scores.gather(2, index))  # (N, C, T)

    def explain_classes(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        features, _ = self.features_and_gradients(model, images, targets[:, 0])
        weights = self._class_weights(model, images, features, targets)  # (B, C, T)
        return torch.einsum("bct,bchw->bthw", weights.to(features.dtype), features)


@register_explainer
class CAMExplainer(FeatureCAM):
    """Class Activation Mapping (Zhou et al. 2016): ``Σ_k W_{c,k} A_k`` for an FC head.

    Only defined for a head that global-average-pools the feature map into one linear layer
    (our ``FCHead``, the paper's FC baseline); the bias is left out, as in the paper. For such a
    head Grad-CAM equals CAM divided by ``h·w``.

    Args:
        batch_size: (image, class) pairs per pass for ``target="all"``.
    """

    name = "cam"
    uses_gradients = False
    needs_gradients = False

    def __init__(self, batch_size: int = 64) -> None:
        super().__init__(None, batch_size)

    def cam_weights(self, model, images, targets, features, gradients) -> Tensor:
        head = getattr(model, "head", None)
        linear = getattr(head, "fc", None)
        if not isinstance(linear, nn.Linear) or linear.in_features != features.shape[1]:
            raise ValueError(
                "'cam' needs an FC head (global average pool + linear `head.fc`); for SCOUTER "
                "or other heads use 'gradcam', which reduces to CAM on an FC head"
            )
        return linear.weight[targets.to(linear.weight.device)].to(features.device)
