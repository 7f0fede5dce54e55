"""The `Sample` type every reader returns, box geometry, and the batch collate function.

Coordinates: boxes are ``xyxy`` in pixels of the image they belong to, in *continuous* image
coordinates where pixel ``(row i, column j)`` covers ``[j, j + 1) × [i, i + 1)``. A box
``(x1, y1, x2, y2)`` therefore covers the pixels whose centres ``(j + .5, i + .5)`` fall inside it;
:func:`boxes_to_mask` rasterises with exactly that rule, which is also the rule that nearest
(centre-aligned) mask resizing follows, so a resized box and a resized box-shaped mask agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class Sample:
    """One raw, untransformed dataset item.

    Attributes:
        image: ``(H, W, C)`` uint8, C = 3 (RGB) or 1 (grayscale sets such as MNIST).
        label: class index in ``[0, num_classes)``.
        boxes: ``(N, 4)`` float32 ``xyxy`` pixel boxes inside the image, ``N`` may be 0.
        mask: ``(H, W)`` uint8 in {0, 1} (object segmentation) or None when the set has none.
        id: a stable identifier (file path relative to the dataset root, or a generated name).
    """

    image: np.ndarray
    label: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    mask: np.ndarray | None = None
    id: str = ""


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, int, int]:
    """Clip boxes to the image and drop those left without area.

    Args:
        boxes: ``(N, 4)`` xyxy pixels.
        width: image width W.
        height: image height H.

    Returns:
        ``(boxes (M, 4) float32, number clipped, number dropped)``; a box is *clipped* when any
        coordinate moved and *dropped* when nothing of it lies inside the image (or it is
        degenerate, ``x2 <= x1`` or ``y2 <= y1``).
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    limits = np.array([width, height, width, height], np.float32)
    clipped = np.clip(boxes, 0.0, limits)
    moved = np.any(clipped != boxes, axis=1)
    valid = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped[valid], int(np.sum(moved & valid)), int(np.sum(~valid))


def boxes_to_mask(boxes: np.ndarray | torch.Tensor, height: int, width: int) -> np.ndarray:
    """Rasterise the union of boxes: a pixel is inside when its centre is.

    Args:
        boxes: ``(N, 4)`` xyxy pixels.
        height: H of the mask.
        width: W of the mask.

    Returns:
        ``(H, W)`` uint8 in {0, 1}.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    mask = np.zeros((height, width), np.uint8)
    for x1, y1, x2, y2 in boxes:
        # centre j + .5 in [x1, x2)  <=>  j in [ceil(x1 - .5), ceil(x2 - .5))
        c1, c2 = max(int(np.ceil(x1 - 0.5)), 0), min(int(np.ceil(x2 - 0.5)), width)
        r1, r2 = max(int(np.ceil(y1 - 0.5)), 0), min(int(np.ceil(y2 - 0.5)), height)
        if c2 > c1 and r2 > r1:
            mask[r1:r2, c1:c2] = 1
    return mask


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """Tight box of a binary mask.

    Args:
        mask: ``(H, W)`` values in {0, 1}.

    Returns:
        ``(1, 4)`` float32 xyxy covering exactly the mask's pixels, or ``(0, 4)`` when empty.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return np.zeros((0, 4), np.float32)
    return np.array([[cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]], np.float32)


def collate_samples(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate transformed items (see :class:`scouter.data.transforms.SampleTransform`).

    Args:
        items: B dicts with ``image (C, H, W)`` float, ``label`` int, ``boxes (N_i, 4)``,
            ``mask (H, W)`` uint8 or None, ``id`` str.

    Returns:
        A dict with ``image (B, C, H, W)`` float, ``label (B,)`` long, ``boxes`` a list of B float
        tensors ``(N_i, 4)`` xyxy in model-input pixels, ``id`` a list of B str, and
        ``mask (B, H, W)`` uint8 **only when every item has a mask** — otherwise the key is
        absent (use ``batch.get("mask")``).
    """
    if not items:
        raise ValueError("collate_samples got an empty list of items")
    batch: dict[str, Any] = {
        "image": torch.stack([torch.as_tensor(item["image"]) for item in items]),
        "label": torch.as_tensor([int(item["label"]) for item in items], dtype=torch.long),
        "boxes": [
            torch.as_tensor(item["boxes"], dtype=torch.float32).reshape(-1, 4) for item in items
        ],
        "id": [str(item["id"]) for item in items],
    }
    masks = [item.get("mask") for item in items]
    if all(m is not None for m in masks):
        batch["mask"] = torch.stack([torch.as_tensor(m, dtype=torch.uint8) for m in masks])
    return batch
