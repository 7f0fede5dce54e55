"""The localisation leaderboard's outputs: per-run rows pooled over a model's seeds, the Markdown
table, the box plots and ``leaderboard.json`` (``bench/localisation.py`` computes the runs).

A model given several times (``--model fc=<seed 0> --model fc=<seed 1> …``) is one row per
explainer: each figure is the **mean over its trained instances** (seeds) of that instance's
figure, GridPG with the sample standard deviation over seeds beside it; the median and the box
plot pool every instance's cells.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import markdown_table

#: The image metrics a row carries (averaged over seeds where present).
IMAGE_METRICS = ("precision", "area", "insertion", "deletion")


def aggregate(
    runs: list[dict[str, Any]], cells: list[dict[int, Any]], sizes: list[int]
) -> tuple[list[dict[str, Any]], dict[int, dict[str, list[float]]], dict[int, dict[str, float]]]:
    """One row per (model, explainer), in first-seen order, from the runs of its instances.

    Args:
        runs: per-instance rows of ``score()`` (``model`` is the label shared by its seeds).
        cells: per run, ``{size: (per-cell scores, chance)}``.
        sizes: the grid sizes.

    Returns:
        The rows; per size ``{"model/explainer": pooled cell scores}`` and their chance levels.
    """
    groups: dict[tuple[str, str], list[int]] = {}
    for index, run in enumerate(runs):
        groups.setdefault((run["model"], run["explainer"]), []).append(index)
    rows = []
    values: dict[int, dict[str, list[float]]] = {size: {} for size in sizes}
    chance: dict[int, dict[str, float]] = {size: {} for size in sizes}
    for (model, explainer), members in groups.items():
        first = runs[members[0]]
        row: dict[str, Any] = {"model": model, "explainer": explainer, "grids": first["grids"],
                               "seeds": len(members), "images": first.get("images"),
                               "runs": [runs[i].get("run", model) for i in members]}  # fmt: skip
        for size in sizes:
            means = [runs[i][f"gridpg_{size}"]["value"] for i in members]
            pooled = [v for i in members for v in cells[i][size][0]]
            finite = [m for m in means if m is not None and m == m]
            row[f"gridpg_{size}"] = {
                "value": statistics.fmean(finite) if finite else None,
                "std": statistics.stdev(finite) if len(finite) > 1 else None,
                "seed_values": means,
                "median": float(np.median(pooled)) if pooled else None,
                "count": sum(runs[i][f"gridpg_{size}"].get("count", 0) for i in members),
                "chance": first[f"gridpg_{size}"].get("chance"),
            }
            row[f"seconds_per_cell_{size}"] = statistics.fmean(
                runs[i][f"seconds_per_cell_{size}"] for i in members
            )
            key = f"{model}/{explainer}"
            values[size][key] = pooled
            chance[size][key] = cells[members[0]][size][1]
        for metric in IMAGE_METRICS:
            present = [runs[i][metric] for i in members if runs[i].get(metric) is not None]
            if present:
                row[metric] = statistics.fmean(present)
        rows.append(row)
    return rows, values, chance


def _fmt(value: Any) -> str:
    return "" if value is None or value != value else f"{value:.3f}"


def _gridpg_cell(summary: dict[str, Any]) -> str:
    spread = f" ± {_fmt(summary['std'])}" if summary.get("std") is not None else ""
    return f"{_fmt(summary['value'])}{spread} ({_fmt(summary['median'])})"


def table(entries: list[dict[str, Any]], sizes: list[int]) -> str:
    """The leaderboard as Markdown: GridPG mean (median) per size with its chance level (SCOUTER−'s
    "why not" maps are scored outside the cell, so their chance is ``1 − 1/n²``), image metrics
    and cost. With several seeds of a model: a ``seeds`` column, and GridPG as the mean over seeds
    ± their standard deviation (the median of all seeds' cells)."""
    seeded = any(e.get("seeds", 1) > 1 for e in entries)
    header = ["model", "explainer", "grids"] + (["seeds"] if seeded else [])
    header += [f"GridPG {s}×{s} mean{' ± sd over seeds' if seeded else ''} (median)" for s in sizes]
    header += ["chance " + " / ".join(f"{s}×{s}" for s in sizes)]
    header += ["precision", "area ↓", "insertion ↑", "deletion ↓", "ms / cell"]
    rows = []
    for e in entries:
        cells = [e["model"], e["explainer"], e["grids"]]
        cells += [str(e.get("seeds", 1))] if seeded else []
        cells += [_gridpg_cell(e[f"gridpg_{s}"]) for s in sizes]
        cells.append(" / ".join(_fmt(e[f"gridpg_{s}"].get("chance")) for s in sizes))
        cells += [_fmt(e.get(metric)) for metric in IMAGE_METRICS]
        cells.append(f"{1000 * e[f'seconds_per_cell_{sizes[0]}']:.1f}")
        rows.append(cells)
    return markdown_table(header, rows)


def write_outputs(
    out: Path,
    suffix: str,
    settings: dict[str, Any],
    grids: dict[str, Any],
    runs: list[dict[str, Any]],
    cells: list[dict[int, Any]],
    sizes: list[int],
    geometry: str,
) -> dict[str, Any]:
    """``leaderboard<suffix>.json`` / ``.md`` and ``gridpg_<n>x<n><suffix>.png`` in ``out``.

    Returns:
        The JSON document: settings, grids files, ``entries`` (the rows, pooled over seeds) and
        ``runs`` (one row per trained instance).
    """
    from scouter.export.report_plots import boxplot_png

    entries, values, chance = aggregate(runs, cells, sizes)
    for size in sizes:
        png = boxplot_png(values[size], chance[size],
                          title=f"GridPG {size}×{size} ({geometry}; dashed: chance)",
                          ylabel="share of positive mass in the cell")  # fmt: skip
        if png is not None:
            (out / f"gridpg_{size}x{size}{suffix}.png").write_bytes(png)
    document = {"settings": settings, "grids": grids, "entries": entries, "runs": runs}
    (out / f"leaderboard{suffix}.json").write_text(
        json.dumps(document, indent=1, default=str) + "\n"
    )
    (out / f"leaderboard{suffix}.md").write_text(table(entries, sizes) + "\n")
    print(table(entries, sizes))
    return document
