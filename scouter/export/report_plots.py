"""The pictures of the HTML report that are not overlays: the colour bar of the overlays' scale,
the insertion / deletion curves of every explainer and the GridPG box plot.

matplotlib is imported lazily (docs/architecture.md#rules-of-the-house); figures are drawn on an
Agg canvas through :class:`matplotlib.figure.Figure` (no pyplot, no global state).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["boxplot_png", "colour_bar", "curves_png"]


def colour_bar(cmap: str = "jet", width: int = 256, height: int = 14) -> np.ndarray:
    """A horizontal colour bar: column ``j`` is ``cmap(j / (width − 1))``, 0 on the left.

    It is the colour scale of :func:`~scouter.export.overlay_map` (before the alpha blend), so a
    reader can read a map value off an overlay.

    Returns:
        ``(height, width, 3)`` ``uint8`` array.
    """
    from matplotlib import colormaps

    colours = colormaps[cmap](np.linspace(0.0, 1.0, width))[:, :3]  # (width, 3)
    row = np.round(colours * 255).astype(np.uint8)
    return np.ascontiguousarray(np.broadcast_to(row, (height, width, 3)))


def _finite(values: Sequence[float] | None) -> np.ndarray | None:
    if values is None:
        return None
    array = np.asarray([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    return array if array.size >= 2 and np.isfinite(array).all() else None


def curves_png(
    curves: Mapping[str, Mapping[str, Sequence[float] | None]],
    aucs: Mapping[str, Mapping[str, float | None]] | None = None,
    *,
    dpi: int = 100,
) -> bytes | None:
    """Insertion and deletion curves side by side, one line per explainer.

    Point ``i`` of an ``N + 1``-point curve is drawn at ``x = i / N``, the abscissa the AUC's
    trapezoid rule uses (docs/metrics.md#insertion-and-deletion).

    Args:
        curves: explainer → ``{"insertion": mean curve, "deletion": mean curve}`` (either may
            be missing or ``None``; a curve with a NaN / ``None`` point is left out).
        aucs: optional explainer → ``{"insertion": AUC, "deletion": AUC}`` shown in the legend.
        dpi: resolution (the figure is 9 × 3.2 inches).

    Returns:
        PNG bytes, or ``None`` when no curve can be drawn.
    """
    modes = [
        mode
        for mode in ("insertion", "deletion")
        if any(_finite(c.get(mode)) is not None for c in curves.values())
    ]
    if not modes:
        return None
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.5 * len(modes), 3.2))
    axes = figure.subplots(1, len(modes), squeeze=False)[0]
    for ax, mode in zip(axes, modes, strict=True):
        for name, explainer_curves in curves.items():
            y = _finite(explainer_curves.get(mode))
            if y is None:
                continue
            label = str(name)
            auc = (aucs or {}).get(name, {}).get(mode)
            if auc is not None and math.isfinite(auc):
                label += f" (AUC {auc:.3f})"
            ax.plot(np.linspace(0.0, 1.0, y.size), y, label=label, linewidth=1.6)
        better = "higher" if mode == "insertion" else "lower"
        ax.set_title(f"{mode} ({better} AUC is better)", fontsize=10)
        ax.set_xlabel(f"fraction of pixels {'inserted' if mode == 'insertion' else 'deleted'}")
        ax.set_ylabel("mean probability of explained class")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def boxplot_png(
    values: Mapping[str, Sequence[float]],
    chance: Mapping[str, float] | None = None,
    *,
    title: str = "",
    ylabel: str = "score",
    dpi: int = 100,
) -> bytes | None:
    """One box per explainer (median, quartiles, whiskers at 1.5 IQR, outliers as dots, the mean
    as a white diamond), as the B-cos papers draw GridPG; a dashed line per chance level.

    Args:
        values: explainer → its per-item scores (NaN / ``None`` left out).
        chance: optional explainer → chance level, drawn as a dashed line across its box.
        title: the plot's title.
        ylabel: the y axis's label.

    Returns:
        PNG bytes, or ``None`` when no explainer has a finite value.
    """
    data = {}
    for name, scores in values.items():
        array = np.asarray([math.nan if v is None else float(v) for v in scores], np.float64)
        array = array[np.isfinite(array)]
        if array.size:
            data[str(name)] = array
    if not data:
        return None
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(3.5, 1.1 * len(data) + 1.5), 3.4))
    ax = figure.subplots()
    ax.boxplot(
        list(data.values()), showmeans=True, widths=0.6,
        meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black"},
        flierprops={"marker": ".", "markersize": 3, "alpha": 0.5},
    )  # fmt: skip
    ax.set_xticks(range(1, len(data) + 1), list(data), rotation=30, ha="right", fontsize=8)
    for position, name in enumerate(data, start=1):
        level = (chance or {}).get(name)
        if level is not None and math.isfinite(level):
            ax.hlines(level, position - 0.4, position + 0.4, colors="grey", linestyles="dashed")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
