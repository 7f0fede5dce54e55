"""Map preparation shared by every explanation metric (docs/metrics.md#map-preparation).

Two variants exist:

* :func:`prepare_maps` — the library's definition: ReLU, bilinear upsampling to the input's
  ``H×W``, then min–max normalisation **per image and class** to ``[0, 1]``.
* :func:`reference_uint8_maps` / :func:`reference_area` — the reference implementation's
  visualisation and area (docs/metrics.md#reference-area): at feature resolution, min–max
  normalised **jointly over all classes of an image**, optionally truncated to ``uint8`` as the
  original code did.

Non-finite input is never turned into a value: a map holding NaN or ±inf prepares to an all-NaN
map, and its reference area is NaN, so every metric computed from it is NaN (excluded from the
mean and counted in ``nan_count``) instead of a perfect score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "minmax_normalise",
    "prepare_maps",
    "reference_area",
    "reference_uint8_maps",
    "select_class_maps",
]


def minmax_normalise(maps: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Min–max normalise ``maps`` to ``[0, 1]`` over ``dims``; constant slices become zeros.

    Args:
        maps: any floating tensor.
        dims: the dimensions reduced together (one min and one max per remaining index).

    Returns:
        Tensor of the same shape and dtype, values in ``[0, 1]``; a slice holding NaN or ±inf is
        all NaN (not zeros: a NaN map is undefined, not empty).
    """
    low = maps.amin(dim=dims, keepdim=True)
    high = maps.amax(dim=dims, keepdim=True)
    span = high - low  # NaN or inf when the slice holds a NaN or an inf
    defined = torch.isfinite(span)
    # docs/metrics.md#map-preparation: a constant map -> all zeros (instead of 0/0 = NaN).
    positive = defined & (span > 0)
    safe_span = torch.where(positive, span, torch.ones_like(span))
    normalised = torch.where(positive, (maps - low) / safe_span, torch.zeros_like(maps))
    return torch.where(defined, normalised, torch.full_like(maps, float("nan")))


def prepare_maps(maps: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """Prepare explanation maps for the metrics: ReLU, bilinear upsampling, per-map min–max.

    Args:
        maps: ``(B, K, h, w)`` (or ``(B, 1, h, w)``) explanation maps, any sign.
        size: ``(H, W)`` of the model input; ``None`` keeps ``(h, w)``.

    Returns:
        ``(B, K, H, W)`` maps of the input's dtype, each ``(b, k)`` map min–max normalised to
        ``[0, 1]`` (a constant map gives zeros; a map holding NaN or ±inf gives all NaN — the
        ReLU would otherwise turn −inf into a valid 0).

    Example:
        >>> prepare_maps(torch.rand(2, 10, 9, 9), size=(260, 260)).shape
        torch.Size([2, 10, 260, 260])
    """
    if maps.ndim != 4:
        raise ValueError(f"maps must be (B, K, h, w), got shape {tuple(maps.shape)}")
    if not maps.is_floating_point():
        maps = maps.float()
    undefined = ~torch.isfinite(maps).flatten(2).all(dim=2)  # (B, K)
    maps = maps.clamp_min(0)  # ReLU: signed post-hoc maps keep only positive evidence
    if size is not None and tuple(size) != tuple(maps.shape[-2:]):
        maps = F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)
        # Bilinear interpolation of non-negative values stays non-negative up to rounding.
        maps = maps.clamp_min(0)
    maps = minmax_normalise(maps, dims=(-2, -1))
    return maps.masked_fill(undefined[:, :, None, None], float("nan"))


def select_class_maps(maps: Tensor, classes: Tensor | None) -> Tensor:
    """Pick each image's explained class from per-class maps.

    Args:
        maps: ``(B, K, h, w)`` maps, or ``(B, 1, h, w)`` already for one class.
        classes: ``(B,)`` class indices; may be ``None`` when ``K == 1``.

    Returns:
        ``(B, 1, h, w)`` maps.
    """
    if maps.shape[1] == 1:
        return maps
    if classes is None:
        raise ValueError(
            f"maps have {maps.shape[1]} classes; pass `classes` (B,) to choose the explained one"
        )
    index = classes.to(device=maps.device, dtype=torch.long).view(-1, 1, 1, 1)
    return maps.gather(1, index.expand(-1, 1, *maps.shape[-2:]))


def reference_uint8_maps(maps: Tensor) -> Tensor:
    """The reference visualisation: joint min–max over all classes of an image, truncated to uint8.

    docs/metrics.md#reference-area: ``(a − min) / (max − min) · 255`` per image over all classes,
    then a truncating cast to ``uint8``.

    Args:
        maps: ``(B, K, h, w)`` attention maps (each class summed over its slots).

    Returns:
        ``(B, K, h, w)`` ``torch.uint8``.

    Raises:
        ValueError: when a map holds NaN or ±inf (``uint8`` has no value for them).
    """
    if maps.is_floating_point() and not bool(torch.isfinite(maps).all()):
        raise ValueError("maps hold NaN or inf values, which have no uint8 visualisation")
    low = maps.amin(dim=(1, 2, 3), keepdim=True)
    high = maps.amax(dim=(1, 2, 3), keepdim=True)
    span = high - low
    safe_span = torch.where(span > 0, span, torch.ones_like(span))
    scaled = torch.where(span > 0, (maps - low) / safe_span * 255, torch.zeros_like(maps))
    # Truncation (not rounding), as the reference's cast to uint8.
    return scaled.floor().clamp(0, 255).to(torch.uint8)


def reference_area(maps: Tensor, classes: Tensor | None = None, *, uint8: bool = True) -> Tensor:
    """Area ratio as the reference computes it (docs/metrics.md#reference-area).

    At feature resolution, maps are min–max normalised jointly over all classes of the image; with
    ``uint8=True`` they are truncated to ``0..255`` first and the area is ``Σ / (h·w·255)``.

    Args:
        maps: ``(B, K, h, w)`` attention maps.
        classes: optional ``(B,)`` explained classes.
        uint8: reproduce the reference's truncation to ``uint8``.

    Returns:
        ``(B, K)`` areas, or ``(B,)`` for the given ``classes``; floating dtype of ``maps``
        (``float32`` when ``maps`` is not floating). NaN for every class of an image whose maps
        hold NaN or ±inf (the joint normalisation is undefined).
    """
    dtype = maps.dtype if maps.is_floating_point() else torch.float32
    h, w = maps.shape[-2:]
    maps = maps.to(dtype)
    undefined = ~torch.isfinite(maps).flatten(1).all(dim=1)  # (B,)
    if uint8:
        finite = maps.masked_fill(undefined[:, None, None, None], 0)
        areas = reference_uint8_maps(finite).to(dtype).sum(dim=(-2, -1)) / (h * w * 255)
        areas = areas.masked_fill(undefined[:, None], float("nan"))
    else:
        areas = minmax_normalise(maps, dims=(1, 2, 3)).mean(dim=(-2, -1))
    if classes is None:
        return areas
    return areas.gather(1, classes.to(device=areas.device, dtype=torch.long).view(-1, 1))[:, 0]
