"""The HTML report's grid pointing game section (docs/metrics.md#html-report): the run's grid
settings, a table of each explainer's mean, median and quartiles, a box plot per explainer and
a few grids with every explainer's map of every cell's class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scouter.export.report_parts import data_uri, escape, figure, key_value_table, number

__all__ = ["gridpg_section"]

_COLUMNS = (
    ("value", "mean"),
    ("median", "median"),
    ("q1", "Q1"),
    ("q3", "Q3"),
    ("count", "cells"),
    ("zero_count", "all-zero maps"),
    ("nan_count", "NaN"),
    ("chance", "chance"),
)


def _summary_table(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{escape(label)}</th>" for _, label in _COLUMNS)
    out = [f"<div class='scroll'><table class='gridpg'><tr><th>explainer</th>{head}</tr>"]
    for name, summary in summaries.items():
        cells = "".join(f"<td class='num'>{number(summary.get(key))}</td>" for key, _ in _COLUMNS)
        evidence = (summary.get("settings") or {}).get("evidence", "for")
        note = " <span class='sub'>evidence against (share outside the cell)</span>"
        out.append(
            f"<tr><th>{escape(name)}{note if evidence == 'against' else ''}</th>{cells}</tr>"
        )
    out.append("</table></div>")
    return "".join(out)


def _grid_cards(grids: list[Mapping[str, Any]]) -> str:
    out = []
    for grid in grids:
        classes = grid.get("classes", [])
        caption = f"grid {grid.get('grid', '')}"
        rows = [f"<div class='maps'>{figure(grid['image'], caption)}</div>"]
        for name, overlays in (grid.get("overlays") or {}).items():
            scores = (grid.get("scores") or {}).get(name, [])
            figures = []
            for k, overlay in enumerate(overlays):
                score = number(scores[k]) if k < len(scores) else ""
                label = classes[k] if k < len(classes) else str(k)
                figures.append(figure(overlay, f"{name}: {label} (cell {k}) · {score}"))
            rows.append(f"<div class='strip'>{''.join(figures)}</div>")
        out.append(f"<section class='image-card gridpg-grid'>{''.join(rows)}</section>")
    return "".join(out)


def gridpg_section(gridpg: Mapping[str, Any]) -> str:
    """The section's HTML.

    Args:
        gridpg: ``{"settings": results.json's "gridpg" record, "summaries": explainer → metric
            summary, "values": explainer → per-cell scores, "grids": [{"grid", "image",
            "classes": n² names, "overlays": explainer → n² overlays, "scores": explainer →
            n² scores}]}``.
    """
    from scouter.export.report_plots import boxplot_png

    settings = gridpg.get("settings") or {}
    summaries = gridpg.get("summaries") or {}
    size = settings.get("size", "n")
    parts = [
        f"<h2>Grid pointing game ({escape(size)}×{escape(size)}, {escape(settings.get('geometry', ''))})</h2>",
        "<p class='note'>Each grid tiles images of distinct classes that the model(s) classified "
        "correctly with a probability at or above the threshold. For each cell's class the "
        "explanation of the whole grid is computed; the score is the share of its positive mass "
        "inside that class's cell (chance: one over the number of cells). An all-zero map "
        "scores 0 and is counted (docs/metrics.md#grid-pointing-game).</p>",
        key_value_table(settings, "small"),
        _summary_table(summaries),
    ]
    chance = {n: s.get("chance") for n, s in summaries.items()}
    png = boxplot_png(gridpg.get("values") or {}, chance, title="GridPG per cell",
                      ylabel="share of positive mass in the cell")  # fmt: skip
    if png is not None:
        parts.append(
            "<p class='note'>Boxes: quartiles and median; whiskers: 1.5 × IQR; diamond: mean; "
            "dashed: chance.</p>"
            f"<img class='plot gridpg-box' alt='GridPG box plot' src='{data_uri(png)}'>"
        )
    if gridpg.get("grids"):
        parts.append(
            "<h3>Grids and each explainer's maps</h3><p class='note'>Each map is the explanation "
            "of the named cell's class over the whole grid, prepared as the overlays above; the "
            "number is its GridPG score.</p>"
        )
        parts.append(_grid_cards(list(gridpg["grids"])))
    return "".join(parts)
