"""The grid pointing game (GridPG, docs/metrics.md#grid-pointing-game): how much of a class's
explanation of an ``n × n`` grid of images falls inside the cell holding that class.

The grid geometry lives here too, so composing a grid image and scoring its maps share one
definition of the cells: along each axis of length ``L`` the cell edges are ``⌊k·L / n⌋``,
``k = 0..n`` (equal cells when ``n`` divides ``L``, otherwise cells differing by one pixel).

* ``geometry="tile"``: cells keep the input size, the grid image is ``n·H × n·W``;
* ``geometry="rescale"``: each image is resized (bilinear, antialiased) into its cell so the grid
  image has the input size ``H × W`` (as B-cos v2).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from scouter.metrics.per_image import PerImageMetric

__all__ = [
    "GEOMETRIES",
    "GridPointingGame",
    "cell_edges",
    "cell_masks",
    "compose_grid",
    "grid_image_size",
    "gridpg_scores",
]

GEOMETRIES = ("rescale", "tile")
EVIDENCE = ("for", "against")


def cell_edges(length: int, n: int) -> list[int]:
    """``n + 1`` cell edges ``⌊k·length / n⌋`` along one axis (first 0, last ``length``)."""
    if n < 1 or length < n:
        raise ValueError(f"cannot cut {length} pixels into {n} cells")
    return [k * length // n for k in range(n + 1)]


def cell_masks(size: tuple[int, int], n: int, device: Any = None) -> Tensor:
    """``(n², H, W)`` bool masks of the cells of an ``H × W`` grid image, row-major."""
    height, width = size
    rows, cols = cell_edges(height, n), cell_edges(width, n)
    masks = torch.zeros(n * n, height, width, dtype=torch.bool, device=device)
    for i in range(n):
        for j in range(n):
            masks[i * n + j, rows[i] : rows[i + 1], cols[j] : cols[j + 1]] = True
    return masks


def grid_image_size(input_size: tuple[int, int], n: int, geometry: str) -> tuple[int, int]:
    """``(H', W')`` of the grid image for model inputs of ``input_size``."""
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    height, width = input_size
    return (height * n, width * n) if geometry == "tile" else (height, width)


def compose_grid(cells: Tensor, n: int, geometry: str = "rescale") -> Tensor:
    """Tile ``n²`` images per grid into one image.

    Args:
        cells: ``(B, n², C, H, W)`` images (normalised model inputs), row-major cells.
        n: cells per side.
        geometry: ``"tile"`` (grid ``n·H × n·W``) or ``"rescale"`` (grid ``H × W``, each image
            resized into its cell with bilinear antialiased interpolation).

    Returns:
        ``(B, C, H', W')`` grid images.
    """
    if cells.ndim != 5 or cells.shape[1] != n * n:
        raise ValueError(f"cells must be (B, {n * n}, C, H, W), got {tuple(cells.shape)}")
    batch, _, channels, height, width = cells.shape
    out_h, out_w = grid_image_size((height, width), n, geometry)
    rows, cols = cell_edges(out_h, n), cell_edges(out_w, n)
    grid = cells.new_empty(batch, channels, out_h, out_w)
    for i in range(n):
        for j in range(n):
            image = cells[:, i * n + j]
            box = (rows[i + 1] - rows[i], cols[j + 1] - cols[j])
            if box != (height, width):
                image = F.interpolate(
                    image, size=box, mode="bilinear", align_corners=False, antialias=True
                )
            grid[:, :, rows[i] : rows[i + 1], cols[j] : cols[j + 1]] = image
    return grid


def gridpg_scores(
    maps: Tensor, size: tuple[int, int], n: int, evidence: str = "for"
) -> tuple[Tensor, Tensor]:
    """Each cell class's share of its map's positive mass inside (or outside) its cell.

    Args:
        maps: ``(B, n², h, w)``: map ``k`` of grid ``b`` explains the class of cell ``k``.
        size: ``(H', W')`` of the grid image; maps are brought to it (ReLU, bilinear, ReLU).
        n: cells per side.
        evidence: ``"for"`` (score = mass inside the cell / total) or ``"against"`` (SCOUTER−'s
            "why not" maps: mass outside the cell / total).

    Returns:
        ``(B, n²)`` scores — 0 for an all-zero map, NaN for a map holding NaN or ±inf — and
        ``(B, n²)`` bool flags of the all-zero maps.
    """
    if evidence not in EVIDENCE:
        raise ValueError(f"evidence must be one of {EVIDENCE}, got {evidence!r}")
    if maps.ndim != 4 or maps.shape[1] != n * n:
        raise ValueError(f"maps must be (B, {n * n}, h, w), got shape {tuple(maps.shape)}")
    if not maps.is_floating_point():
        maps = maps.float()
    undefined = ~torch.isfinite(maps).flatten(2).all(dim=2)
    maps = maps.nan_to_num(0.0, 0.0, 0.0).clamp_min(0)  # positive part
    if tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)
        maps = maps.clamp_min(0)  # bilinear weights are positive: only rounding can go below 0
    masks = cell_masks(tuple(size), n, device=maps.device).to(maps.dtype)  # (n², H', W')
    total = maps.sum(dim=(-2, -1))
    inside = (maps * masks[None]).sum(dim=(-2, -1))
    zero = (total <= 0) & ~undefined
    share = inside / torch.where(total > 0, total, torch.ones_like(total))
    share = share.clamp(0, 1)
    if evidence == "against":
        share = 1 - share
    score = torch.where(total > 0, share, torch.zeros_like(share))
    return score.masked_fill(undefined, float("nan")), zero


class GridPointingGame(PerImageMetric):
    """GridPG: one score per grid cell, averaged over cells (docs/metrics.md#grid-pointing-game).

    Args:
        n: cells per side of the grids.
        evidence: ``"for"`` (positive maps: higher share inside the cell is better) or
            ``"against"`` (SCOUTER−'s maps of evidence against a class: the share *outside* the
            cell is scored).

    Example:
        >>> metric = GridPointingGame(n=2)
        >>> maps = torch.zeros(1, 4, 8, 8)
        >>> maps[0, 0, :4, :4] = 1  # the map of cell 0's class lies in cell 0 only
        >>> metric.update(maps, size=(8, 8))
        >>> metric.per_image()[0]
        tensor(1.)
    """

    higher_is_better = True

    def __init__(self, n: int = 2, evidence: str = "for", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(n) < 2:
            raise ValueError(f"n must be at least 2, got {n}")
        if evidence not in EVIDENCE:
            raise ValueError(f"evidence must be one of {EVIDENCE}, got {evidence!r}")
        self.n = int(n)
        self.evidence = evidence
        self.add_state("zero_flags", default=[], dist_reduce_fx="cat")

    @property
    def chance(self) -> float:
        """The expected score of a uniform map on equal cells: ``1/n²`` (``1 − 1/n²`` against)."""
        inside = 1 / (self.n * self.n)
        return inside if self.evidence == "for" else 1 - inside

    def update(self, maps: Tensor, size: tuple[int, int] | None = None) -> None:
        """Add a batch of grids.

        Args:
            maps: ``(B, n², h, w)``, map ``k`` for the class of cell ``k`` (row-major).
            size: ``(H', W')`` of the grid images (default: the maps' own size).
        """
        size = tuple(maps.shape[-2:]) if size is None else tuple(size)
        scores, zero = gridpg_scores(maps, size, self.n, self.evidence)
        self.values.append(scores.flatten().detach())
        self.zero_flags.append(zero.flatten().detach())

    @property
    def zero_count(self) -> int:
        """Number of cells whose map was all zero (scored 0)."""
        if not self.zero_flags:
            return 0
        return int(torch.cat([f.flatten() for f in self.zero_flags]).sum())

    def compute(self) -> Tensor:
        """Mean over cells with a defined score (NaN maps excluded)."""
        return self.per_image().nanmean()

    def summary(self) -> dict[str, float | int]:
        """Mean, median, quartiles (linear interpolation), count, NaN and all-zero counts."""
        values = self.per_image().detach().double().cpu()
        finite = values[~values.isnan()]
        if finite.numel():
            levels = torch.tensor([0.25, 0.5, 0.75], dtype=finite.dtype)
            q1, median, q3 = torch.quantile(finite, levels).tolist()
            mean = float(finite.mean())
        else:
            q1 = median = q3 = mean = float("nan")
        return {
            "value": mean,
            "median": median,
            "q1": q1,
            "q3": q3,
            "count": int(finite.numel()),
            "nan_count": int(values.isnan().sum()),
            "zero_count": self.zero_count,
            "chance": self.chance,
        }
