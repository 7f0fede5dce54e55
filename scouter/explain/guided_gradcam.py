"""Guided Grad-CAM (Selvaraju et al. 2017): Grad-CAM upsampled, times guided backpropagation.

The class-discriminative but coarse Grad-CAM map is upsampled to the input size and multiplied
point-wise with the fine but class-agnostic guided-backpropagation gradients, giving a
high-resolution, class-specific pixel map. This is ``captum.attr.GuidedGradCam``; the only
additions are our signature (layer defaults to the backbone, the feature map SCOUTER attends
over), the paper's bilinear upsampling as the default (captum defaults to nearest) and an error
where captum would silently return an empty tensor.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from scouter.explain.base import LogitModule, register_explainer
from scouter.explain.cam import resolve_layer
from scouter.explain.posthoc import ChannelReduction, PixelExplainer

__all__ = ["GuidedGradCAMExplainer"]

_MODES = ("bilinear", "nearest", "bicubic", "area")


@register_explainer
class GuidedGradCAMExplainer(PixelExplainer):
    """Guided Grad-CAM: ``guided_backprop(x) ⊙ upsample(ReLU(Grad-CAM))`` per input channel.

    As in the paper and captum, the Grad-CAM factor is ReLU'd (only evidence *for* the class
    survives) before the product; the product's channels are then reduced to one map.

    Args:
        layer: Grad-CAM's feature layer, default the backbone (see
            :func:`~scouter.explain.cam.resolve_layer`).
        interpolate_mode: how the Grad-CAM map is upsampled to the input size: ``"bilinear"``
            (the paper) or ``"nearest"`` (captum's default), ``"bicubic"``, ``"area"``.
        reduce: channel reduction (default ``"sum_abs"``, as for guided backprop).
        batch_size: (image, class) pairs per pass for ``target="all"``.
    """

    name = "guided_gradcam"

    def __init__(
        self,
        layer: str | None = None,
        interpolate_mode: Literal["bilinear", "nearest", "bicubic", "area"] = "bilinear",
        reduce: ChannelReduction | None = None,
        batch_size: int = 64,
    ) -> None:
        if interpolate_mode not in _MODES:
            raise ValueError(f"interpolate_mode must be one of {_MODES}, got {interpolate_mode!r}")
        self.layer = layer
        self.interpolate_mode = interpolate_mode
        super().__init__(reduce, batch_size, layer=layer, interpolate_mode=interpolate_mode)

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        from captum.attr import GuidedGradCam

        wrapped = LogitModule(model)
        explainer = GuidedGradCam(wrapped, resolve_layer(model, self.layer))
        attributions = explainer.attribute(
            images, target=targets, interpolate_mode=self.interpolate_mode
        )
        if attributions.shape != images.shape:
            # captum warns and returns an empty tensor when the Grad-CAM map cannot be upsampled.
            raise ValueError(
                f"guided_gradcam could not upsample the Grad-CAM map of layer "
                f"{self.layer or 'backbone'!r} to the {tuple(images.shape[2:])} input; choose a "
                "layer whose output is (N, C, h, w)"
            )
        return attributions
