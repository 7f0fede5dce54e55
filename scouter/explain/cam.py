"""CAM baselines for any classifier (FC or SCOUTER): Grad-CAM, Grad-CAM++, Score-CAM, CAM.

They weight the channels of a feature map — by default the backbone's output ``(B, C, h, w)``,
the same grid as SCOUTER's attention — and return ``(B, 1, h, w)`` maps at feature resolution,
signed and unnormalised (metrics apply ReLU, upsampling and min–max,
docs/metrics.md#map-preparation).

Grad-CAM is captum's. Grad-CAM++ and Score-CAM are not in captum; pytorch-grad-cam has them but
round-trips every map through NumPy on the CPU, min–max normalises and resizes with OpenCV inside
the method, and scores Score-CAM masks one ``.item()`` at a time. They are therefore written here
as one hook each (:meth:`FeatureCAM.cam_weights`, the pytorch-grad-cam base-class idea) on torch
tensors, batched and device-agnostic, and tested against pytorch-grad-cam's output.

What is explained is the model's raw class score (logit) of the target class, sign included (see
:mod:`scouter.explain.posthoc`); Score-CAM scores masked inputs by class probability, as its
paper's code does.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scouter.explain.base import Explainer, logits_function, model_logits, register_explainer

__all__ = [
    "CAMExplainer",
    "FeatureCAM",
    "GradCAMExplainer",
    "GradCAMPlusPlusExplainer",
    "ScoreCAMExplainer",
    "resolve_layer",
]


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

        gradcam = LayerGradCam(logits_function(model), resolve_layer(model, self.layer))
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
    requires = "fc_head"

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
