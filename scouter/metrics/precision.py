"""Explanation precision: share of the map's mass inside the ground-truth region.

docs/metrics.md#precision: ``precision = Σ M·G / Σ M`` with ``G`` the union of the image's
boxes or a segmentation mask, in the geometry of the model input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from scouter.metrics.maps import prepare_maps, select_class_maps
from scouter.metrics.per_image import PerImageMetric

__all__ = ["ExplanationPrecision"]


def _box_union_mask(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Rasterise xyxy pixel boxes into the union mask of one image, on the boxes' device.

    The rule of :func:`scouter.data.boxes_to_mask` (the public, NumPy one), on tensors.

    Convention (exact, documented because box → pixel is otherwise ambiguous): pixel ``(x, y)``
    covers ``[x, x+1) × [y, y+1)`` and belongs to a box iff its centre lies in the half-open box,
    ``x1 <= x + 0.5 < x2`` and ``y1 <= y + 0.5 < y2``. A box ``(0, 0, W, H)`` therefore covers the
    whole image, a box with integer corners covers exactly ``(x2−x1)·(y2−y1)`` pixels, and two
    boxes sharing an edge never overlap.

    Args:
        boxes: ``(N, 4)`` boxes ``(x1, y1, x2, y2)`` in input pixels; ``N`` may be 0.
        size: ``(H, W)`` of the model input.

    Returns:
        ``(H, W)`` bool mask.
    """
    height, width = size
    boxes = torch.as_tensor(boxes)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (N, 4) xyxy, got shape {tuple(boxes.shape)}")
    dtype = boxes.dtype if boxes.is_floating_point() else torch.float64
    boxes = boxes.to(dtype)
    xs = torch.arange(width, device=boxes.device, dtype=dtype) + 0.5
    ys = torch.arange(height, device=boxes.device, dtype=dtype) + 0.5
    inside_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])  # (N, W)
    inside_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])  # (N, H)
    return (inside_y[:, :, None] & inside_x[:, None, :]).any(dim=0)


class ExplanationPrecision(PerImageMetric):
    """``Σ M·G / Σ M`` per image, averaged over the images where it is defined.

    Undefined (NaN) when ``G`` is empty or ``Σ M = 0``: such images are excluded from the mean and
    counted in :attr:`nan_count` (docs/metrics.md#precision). Maps are prepared with
    :func:`~scouter.metrics.maps.prepare_maps` at the region's size unless ``prepare=False``.

    Args:
        prepare: apply ReLU / bilinear upsampling / per-map min–max first.

    Example:
        >>> metric = ExplanationPrecision()
        >>> maps = torch.rand(2, 1, 9, 9)
        >>> boxes = [torch.tensor([[10.0, 20.0, 100.0, 120.0]]), torch.zeros(0, 4)]
        >>> metric.update(maps, boxes, size=(224, 224))
        >>> metric.compute(), metric.nan_count  # second image has no box -> NaN, counted
    """

    higher_is_better = True

    def __init__(self, prepare: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.prepare = prepare

    def update(
        self,
        maps: Tensor,
        regions: Tensor | Sequence[Tensor],
        classes: Tensor | None = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        """Add a batch.

        Args:
            maps: ``(B, K, h, w)`` or ``(B, 1, h, w)`` explanation maps.
            regions: ``(B, H, W)`` ground-truth masks (bool or {0, 1}), or a length-``B`` list of
                ``(N_i, 4)`` xyxy boxes in input pixels (see :func:`_box_union_mask`).
            classes: ``(B,)`` explained classes; required when ``K > 1``.
            size: ``(H, W)`` of the model input; needed for boxes unless the maps already have it.
        """
        maps = select_class_maps(maps, classes)
        if isinstance(regions, Tensor):
            if regions.ndim != 3 or regions.shape[0] != maps.shape[0]:
                raise ValueError(
                    f"masks must be (B, H, W) with B={maps.shape[0]}, got {tuple(regions.shape)}"
                )
            masks = regions.to(device=maps.device).bool()
        else:
            if len(regions) != maps.shape[0]:
                raise ValueError(f"got {len(regions)} box tensors for {maps.shape[0]} maps")
            box_size = tuple(size) if size is not None else tuple(maps.shape[-2:])
            masks = torch.stack(
                [_box_union_mask(torch.as_tensor(b).to(maps.device), box_size) for b in regions]
            )
        region_size = tuple(masks.shape[-2:])
        if self.prepare:
            maps = prepare_maps(maps, region_size)
        elif tuple(maps.shape[-2:]) != region_size:
            raise ValueError(
                f"maps {tuple(maps.shape[-2:])} and regions {region_size} differ; use prepare=True"
            )
        maps = maps[:, 0]
        mass = maps.sum(dim=(-2, -1))
        inside = (maps * masks.to(maps.dtype)).sum(dim=(-2, -1))
        defined = (mass > 0) & masks.flatten(1).any(dim=1)
        value = torch.where(defined, inside / torch.where(defined, mass, 1), float("nan"))
        self.values.append(value.detach())

    @property
    def nan_count(self) -> int:
        """Number of images where precision is undefined (empty region or zero map)."""
        return int(self.per_image().isnan().sum())

    def compute(self) -> Tensor:
        """Mean over images with a defined precision (scalar; NaN if there are none)."""
        return self.per_image().nanmean()
