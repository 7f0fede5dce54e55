"""LIME on superpixels (Ribeiro et al., KDD 2016), the image setting of the paper and its code.

Each image is cut into SLIC superpixels (scikit-image); random subsets of them are switched off
(replaced by ``baseline``), the model scores every perturbed image, and a weighted ridge regression
of the target logit on the on/off vector gives one coefficient per superpixel — the map paints
every pixel with its superpixel's coefficient. The sampling and the regression are
``captum.attr.Lime``; the superpixels come from ``skimage.segmentation.slic``. Set here to match
the reference ``lime`` package's image explainer: samples drawn uniformly on/off, sample weights
``sqrt(exp(−d² / w²))`` with ``d`` the cosine distance between the on/off vector and the all-on one and
``w = 0.25``, ``Ridge(alpha=1)`` (captum's defaults differ: a kernel on the input pixels and
Lasso).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import torch
from torch import Tensor, nn

from scouter.explain.base import integer_setting, model_logits, register_explainer
from scouter.explain.posthoc import ChannelReduction, PixelExplainer

__all__ = ["LimeExplainer", "grid_segments", "slic_segments"]


def slic_segments(image: Tensor, segments: int, compactness: float) -> Tensor:
    """SLIC superpixels of one image.

    Args:
        image: ``(C, H, W)`` model input (any normalisation: it is min–max scaled to [0, 1]
            first, which is all SLIC needs).
        segments: the approximate number of superpixels (``n_segments``).
        compactness: SLIC's colour vs space trade-off (higher: squarer superpixels).

    Returns:
        ``(H, W)`` ``long`` labels ``0 .. S−1`` on ``image.device``.
    """
    from skimage.segmentation import slic

    pixels = image.detach().float().cpu()
    pixels = (pixels - pixels.min()) / (pixels.max() - pixels.min()).clamp_min(1e-12)
    array = pixels.permute(1, 2, 0).numpy()
    channel_axis = -1
    if array.shape[-1] == 1:
        array, channel_axis = array[..., 0], None
    labels = slic(
        array, n_segments=segments, compactness=compactness, start_label=0,
        channel_axis=channel_axis,
    )  # fmt: skip
    # Relabel densely: SLIC may skip labels, and every label is one regression feature.
    _, dense = torch.unique(torch.from_numpy(labels).long(), return_inverse=True)
    return dense.to(image.device)


def grid_segments(height: int, width: int, segments: int, device: torch.device | str) -> Tensor:
    """Square cells covering an ``height×width`` image, about ``segments`` of them.

    Returns:
        ``(H, W)`` ``long`` labels ``0 .. S−1``, row-major cells of side
        ``ceil(sqrt(H·W / segments))``.
    """
    side = max(1, math.ceil(math.sqrt(height * width / segments)))
    rows = torch.arange(height, device=device) // side
    cols = torch.arange(width, device=device) // side
    return rows[:, None] * (-(-width // side)) + cols[None, :]


def _lime_kernel(width: float):
    """The reference ``lime`` image kernel on the on/off vector ``z`` (all-on is the original)."""

    def similarity(_original: Tensor, _perturbed: Tensor, interpretable: Tensor, **_: Any):
        on = interpretable.float()
        cosine = on.sum() / (on.norm() * on.numel() ** 0.5).clamp_min(1e-12)
        distance = 1.0 - cosine
        return torch.exp(-(distance**2) / width**2).sqrt()  # the package's kernel, sqrt included

    return similarity


@register_explainer
class LimeExplainer(PixelExplainer):
    """LIME with SLIC superpixels as the interpretable features.

    Args:
        samples: perturbed images per explained image (the ``lime`` package's default is 1 000).
        segments: approximate number of superpixels per image.
        segmentation: ``"slic"`` (SLIC superpixels; an image SLIC cannot split — noise, a flat
            image — falls back to the grid, with a warning) or ``"grid"`` (square cells).
        compactness: SLIC compactness.
        baseline: value of switched-off pixels, in normalised input space (0 = the mean colour).
        kernel_width: width ``w`` of the sample-weight kernel.
        alpha: ridge regularisation.
        seed: seed of the on/off sampling (results are reproducible; the global RNG is untouched).
        reduce: channel reduction (default ``"mean"``: every channel of a pixel holds its
            superpixel's signed coefficient).
        batch_size: perturbed images per forward pass.
    """

    name = "lime"
    needs_gradients = False
    default_reduce = "mean"

    def __init__(
        self,
        samples: int = 500,
        segments: int = 50,
        segmentation: Literal["slic", "grid"] = "slic",
        compactness: float = 10.0,
        baseline: float = 0.0,
        kernel_width: float = 0.25,
        alpha: float = 1.0,
        seed: int = 0,
        reduce: ChannelReduction | None = None,
        batch_size: int = 64,
    ) -> None:
        self.samples = integer_setting(self.name, "samples", samples, 2, "perturbed images")
        self.segments = integer_setting(self.name, "segments", segments, 2, "superpixels")
        self.seed = integer_setting(self.name, "seed", seed, None)
        for label, value in (("kernel_width", kernel_width), ("compactness", compactness)):
            if not float(value) > 0:
                raise ValueError(f"{label} must be > 0, got {value!r}")
        if segmentation not in ("slic", "grid"):
            raise ValueError(f"segmentation must be 'slic' or 'grid', got {segmentation!r}")
        if float(alpha) < 0:
            raise ValueError(f"alpha (ridge regularisation) must be >= 0, got {alpha!r}")
        self.segmentation = segmentation
        self.compactness, self.baseline = float(compactness), float(baseline)
        self.kernel_width, self.alpha = float(kernel_width), float(alpha)
        super().__init__(
            reduce, batch_size, samples=self.samples, segments=self.segments,
            segmentation=segmentation, compactness=self.compactness, baseline=self.baseline,
            kernel_width=self.kernel_width, alpha=self.alpha, seed=self.seed,
        )  # fmt: skip

    def superpixels(self, image: Tensor) -> tuple[Tensor, bool]:
        """``(H, W)`` labels of one ``(C, H, W)`` image's interpretable features.

        Returns:
            The labels, and whether SLIC found a single superpixel so that square cells were
            used instead.
        """
        height, width = image.shape[-2:]
        if self.segmentation == "slic":
            labels = slic_segments(image, self.segments, self.compactness)
            if int(labels.max()) >= 1:
                return labels, False
            return grid_segments(height, width, self.segments, image.device), True
        return grid_segments(height, width, self.segments, image.device), False

    def attribute(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        from captum._utils.models.linear_model import SkLearnRidge
        from captum.attr import Lime

        lime = Lime(
            lambda x: model_logits(model, x),
            interpretable_model=SkLearnRidge(alpha=self.alpha),
            similarity_func=_lime_kernel(self.kernel_width),
        )
        maps = []
        # One image at a time: each gets its own superpixels and regression (captum would loop
        # the same way, with a warning).
        fallbacks = 0
        for image, target in zip(images, targets, strict=True):
            segments, fell_back = self.superpixels(image)
            fallbacks += fell_back
            mask = segments.expand(image.shape[0], -1, -1)[None]  # (1, C, H, W), all channels
            # captum samples on/off vectors from the global CPU generator: seed a forked one.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                maps.append(
                    lime.attribute(
                        image[None],
                        target=int(target),
                        baselines=self.baseline,
                        feature_mask=mask,
                        n_samples=self.samples,
                        perturbations_per_eval=self.batch_size,
                    )  # fmt: skip
                )
        if fallbacks:
            # One warning per call, not per image: noise-like inputs would repeat it endlessly.
            warnings.warn(
                f"SLIC found a single superpixel in {fallbacks} of {len(images)} images; LIME "
                "used square cells for them (as segmentation='grid')",
                stacklevel=4,
            )
        return torch.cat(maps)
