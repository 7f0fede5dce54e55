"""Heatmap overlays: bilinear resize, matplotlib colormap, alpha composite.

The reference's overlay is described in docs/method.md#visualisation. matplotlib is imported lazily
(docs/architecture.md#rules-of-the-house: heavy optional parts stay out of the core import).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from scouter.export.results_io import atomic_write_bytes

__all__ = ["explanation_grid", "overlay_map", "save_overlays", "to_uint8_image"]


def to_uint8_image(image: Tensor | np.ndarray) -> np.ndarray:
    """Convert an image to ``uint8`` ``(H, W, 3)``.

    Args:
        image: ``uint8`` ``(H, W, 3)`` (array or tensor), or a floating ``(3, H, W)`` /
            ``(H, W, 3)`` tensor or array with values in ``[0, 1]`` (un-normalise model inputs
            first). Grayscale ``(H, W)`` / ``(1, H, W)`` is repeated to three channels.

    Returns:
        ``(H, W, 3)`` ``uint8`` array.
    """
    array = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(f"image must be (H, W, 3) or (3, H, W), got shape {array.shape}")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    return np.round(np.clip(array.astype(np.float64), 0.0, 1.0) * 255).astype(np.uint8)


def overlay_map(
    image: Tensor | np.ndarray,
    saliency: Tensor | np.ndarray,
    cmap: str = "jet",
    alpha: float = 0.4,
) -> np.ndarray:
    """Colour a map and alpha-composite it over the image.

    The map is resized bilinearly (``align_corners=False``) to the image size, mapped through the
    matplotlib colormap and composited as ``alpha·colour + (1 − alpha)·image`` — the reference's
    jet / 0.4 overlay (docs/method.md#visualisation).

    Args:
        image: see :func:`to_uint8_image`.
        saliency: ``(h, w)`` map with values in ``[0, 1]`` (e.g. from
            :func:`~scouter.metrics.prepare_maps`); values outside are clipped.
        cmap: matplotlib colormap name.
        alpha: opacity of the coloured map.

    Returns:
        ``(H, W, 3)`` ``uint8`` overlay.
    """
    from matplotlib import colormaps

    rgb = to_uint8_image(image)
    heat = torch.as_tensor(np.asarray(saliency)) if not isinstance(saliency, Tensor) else saliency
    heat = heat.detach().to("cpu", torch.float64)
    if heat.ndim != 2:
        raise ValueError(f"saliency must be (h, w), got shape {tuple(heat.shape)}")
    if tuple(heat.shape) != rgb.shape[:2]:
        heat = F.interpolate(
            heat[None, None], size=rgb.shape[:2], mode="bilinear", align_corners=False
        )[0, 0]
    colours = colormaps[cmap](heat.clamp(0, 1).numpy())[..., :3]  # (H, W, 3) in [0, 1]
    blended = alpha * colours * 255 + (1 - alpha) * rgb.astype(np.float64)
    return np.round(blended).clip(0, 255).astype(np.uint8)


def _png_bytes(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def save_overlays(
    out_dir: str | os.PathLike,
    images: Tensor | Sequence,
    maps: Tensor,
    ids: Sequence[str],
    *,
    classes: Tensor | None = None,
    class_names: Sequence[str] | None = None,
    cmap: str = "jet",
    alpha: float = 0.4,
) -> list[Path]:
    """Write one overlay PNG per image and class: ``<id>_<class>.png``.

    Args:
        out_dir: output folder (created).
        images: ``(B, 3, H, W)`` floats in ``[0, 1]`` or a sequence of images (see
            :func:`to_uint8_image`).
        maps: ``(B, K, h, w)`` maps in ``[0, 1]``.
        ids: ``B`` image ids used in file names.
        classes: optional ``(B,)``: write only each image's explained class.
        class_names: ``K`` names used in file names instead of indices.
        cmap, alpha: see :func:`overlay_map`.

    Returns:
        The written paths.
    """
    out_dir = Path(out_dir)
    paths = []
    for b, image_id in enumerate(ids):
        wanted = range(maps.shape[1]) if classes is None else [int(classes[b])]
        for k in wanted:
            name = class_names[k] if class_names is not None else str(k)
            safe = "".join(
                ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{image_id}_{name}"
            )
            path = out_dir / f"{safe}.png"
            atomic_write_bytes(path, _png_bytes(overlay_map(images[b], maps[b, k], cmap, alpha)))
            paths.append(path)
    return paths


_SCOUTER_PLUS = {"scouter+", "scouter_pos"}
_SCOUTER_MINUS = {"scouter−", "scouter-", "scouter_neg"}


def _column_order(names: Sequence[str]) -> list[str]:
    """SCOUTER+ and SCOUTER− side by side (first), then the other methods in given order."""
    key = {n: n.replace(" ", "").lower() for n in names}
    plus = [n for n in names if key[n] in _SCOUTER_PLUS]
    minus = [n for n in names if key[n] in _SCOUTER_MINUS]
    if plus and minus:
        return plus + minus + [n for n in names if n not in plus and n not in minus]
    return list(names)


def explanation_grid(
    path: str | os.PathLike,
    images: Tensor | Sequence,
    maps: Mapping[str, Tensor],
    *,
    row_labels: Sequence[str] | None = None,
    cmap: str = "jet",
    alpha: float = 0.4,
    cell_inches: float = 2.0,
) -> Path:
    """Save a grid figure: one row per image, columns = input then each method's overlay.

    Args:
        path: destination PNG.
        images: ``B`` images (see :func:`to_uint8_image`).
        maps: method name → ``(B, h, w)`` (or ``(B, 1, h, w)``) maps in ``[0, 1]``. When both
            ``"SCOUTER+"`` and ``"SCOUTER−"`` (or ``"SCOUTER-"``) are given they are placed side by
            side right after the input.
        row_labels: optional ``B`` labels (e.g. ``"true: cat / pred: dog"``).
        cmap, alpha: see :func:`overlay_map`.
        cell_inches: size of one cell.

    Returns:
        The destination path.
    """
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    names = _column_order(list(maps))
    n_rows, n_cols = len(images), 1 + len(names)
    figure = Figure(figsize=(cell_inches * n_cols, cell_inches * n_rows))
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    for r in range(n_rows):
        axes[r, 0].imshow(to_uint8_image(images[r]))
        if r == 0:
            axes[r, 0].set_title("input")
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=8)
        for c, name in enumerate(names, start=1):
            saliency = maps[name][r]
            saliency = saliency[0] if saliency.ndim == 3 else saliency
            axes[r, c].imshow(overlay_map(images[r], saliency, cmap, alpha))
            if r == 0:
                axes[r, c].set_title(name)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return atomic_write_bytes(path, buffer.getvalue())
