"""A self-contained HTML report of an evaluation run.

One file, no server, no JavaScript: inline CSS, images embedded as base64 PNG data URIs (the
parts every report here shares: :mod:`scouter.export.report_parts`). Written
atomically (temporary file + ``os.replace``, :mod:`scouter.atomic_io`) like every results file.

What it shows (docs/metrics.md#html-report):

* the classification metrics, then the explainers compared: one table (rows explainers, columns
  metrics, mean ± std with the number of images and NaNs), the mean insertion / deletion curves in
  one plot, and each explainer's settings as a readable list;
* one card per image: input, true / predicted class (with its probability) and explained class,
  every explainer's overlay side by side on one colour scale with its colour bar, and that image's
  metric values in a small table;
* with ``--metrics gridpg``: the grid pointing game's settings, table and box plot, and a few
  grids with every explainer's map of every cell's class;
* for SCOUTER models, every class's map for a few images (the paper's positive / negative
  explanation figure), labelled with the class name, score and probability.

Every row of cards wraps or scrolls inside its own box, so the page is never wider than the
window however many explainers or classes there are. All text is HTML-escaped.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scouter.export.report_parts import (
    data_uri,
    escape,
    figure,
    key_value_table,
    number,
    page,
    png_data_uri,
    scalar,
    value_html,
)
from scouter.export.results_io import atomic_write_text

__all__ = ["OVERLAY_NORMALISATION", "CLASS_MAP_NORMALISATION", "png_data_uri", "write_html_report"]

OVERLAY_NORMALISATION = (
    "each map prepared as the metrics prepare it (docs/metrics.md#map-preparation): ReLU, "
    "bilinear upsampling to the input size, min–max normalised per map to [0, 1] — 0 is the "
    "map's own minimum, 1 its own maximum — then coloured with jet and blended over the image "
    "with opacity 0.4"
)
CLASS_MAP_NORMALISATION = (
    "all classes of one image min–max normalised jointly to [0, 1] (ReLU, bilinear upsampling, "
    "one minimum and one maximum over the image's maps, as the reference's visualisation, "
    "docs/method.md#visualisation), so a class the model pays little attention to stays dark "
    "blue; jet, opacity 0.4"
)


def _legend(note: str, cmap: str) -> str:
    from scouter.export.report_plots import colour_bar

    return (
        "<div class='legend'>"
        f"<div><img class='colour-bar' alt='colour scale {escape(cmap)}: 0 (low) to 1 (high)' "
        f"src='{png_data_uri(colour_bar(cmap))}'>"
        "<div class='ticks'><span>0</span><span>0.25</span><span>0.5</span><span>0.75</span>"
        "<span>1</span></div></div>"
        f"<div>{escape(note)}</div></div>"
    )


def _metric_names(explainers: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(m for doc in explainers.values() for m in (doc.get("metrics") or {})))


def _explainer_table(explainers: Mapping[str, Mapping[str, Any]]) -> str:
    """Rows explainers, columns metrics: mean ± std, N images and NaN count; best in bold."""
    names = _metric_names(explainers)
    if not names:
        return ""
    best: dict[str, str] = {}
    for metric in names:
        scored = []
        for explainer, doc in explainers.items():
            summary = (doc.get("metrics") or {}).get(metric)
            value = scalar(summary.get("value")) if isinstance(summary, Mapping) else None
            if isinstance(value, numbers.Real) and math.isfinite(value):
                higher = bool(summary.get("higher_is_better", True))
                scored.append((value if higher else -value, explainer))
        scored.sort(reverse=True)
        if len(scored) > 1 and scored[0][0] > scored[1][0]:  # a tie has no best
            best[metric] = scored[0][1]
    head = "".join(f"<th>{escape(m)}{_direction(explainers, m)}</th>" for m in names)
    out = ["<div class='scroll'><table class='explainer-metrics'><tr><th>explainer</th>", head]
    out.append("</tr>")
    for explainer, doc in explainers.items():
        cells = [f"<th>{escape(explainer)}</th>"]
        for metric in names:
            summary = (doc.get("metrics") or {}).get(metric)
            if not isinstance(summary, Mapping):
                cells.append("<td></td>")
                continue
            text = number(summary.get("value"))
            std = scalar(summary.get("std"))
            if isinstance(std, numbers.Real) and math.isfinite(std):
                text += f" ± {std:.4f}"
            counts = []
            if summary.get("count") is not None:
                counts.append(f"N={int(summary['count'])}")
            if summary.get("nan_count") is not None:
                counts.append(f"NaN {int(summary['nan_count'])}")
            sub = f"<span class='sub'>{', '.join(counts)}</span>" if counts else ""
            cls = "num best" if best.get(metric) == explainer else "num"
            cells.append(f"<td class='{cls}'>{text}{sub}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table></div>")
    return "".join(out)


def _direction(explainers: Mapping[str, Mapping[str, Any]], metric: str) -> str:
    for doc in explainers.values():
        summary = (doc.get("metrics") or {}).get(metric)
        if isinstance(summary, Mapping) and "higher_is_better" in summary:
            return " ↑" if summary["higher_is_better"] else " ↓"
    return ""


def _explainer_settings(explainers: Mapping[str, Mapping[str, Any]]) -> str:
    """One card per explainer: its own settings, then each metric's settings, as lists."""
    cards = []
    for explainer, doc in explainers.items():
        entries = [f"<dt>explainer</dt><dd>{value_html(doc.get('settings') or {})}</dd>"]
        for metric, summary in (doc.get("metrics") or {}).items():
            if isinstance(summary, Mapping) and summary.get("settings"):
                entries.append(
                    f"<dt>{escape(metric)}</dt><dd>{value_html(summary['settings'])}</dd>"
                )
        cards.append(
            f"<div class='card settings'><h3>{escape(explainer)}</h3><dl>{''.join(entries)}</dl></div>"
        )
    return "<div class='cards'>" + "".join(cards) + "</div>"


def _curves(explainers: Mapping[str, Mapping[str, Any]]) -> str:
    from scouter.export.report_plots import curves_png

    curves: dict[str, dict[str, Any]] = {}
    aucs: dict[str, dict[str, Any]] = {}
    for explainer, doc in explainers.items():
        for mode in ("insertion", "deletion"):
            summary = (doc.get("metrics") or {}).get(mode)
            if isinstance(summary, Mapping) and summary.get("mean_curve") is not None:
                curves.setdefault(explainer, {})[mode] = summary["mean_curve"]
                aucs.setdefault(explainer, {})[mode] = scalar(summary.get("value"))
    png = curves_png(curves, aucs) if curves else None
    if png is None:
        return ""
    return (
        "<h3>Insertion and deletion curves</h3><p class='note'>Mean over the evaluated images "
        "(images whose curve is undefined left out) of the explained class's probability as the "
        "most salient pixels are inserted into a blurred copy or deleted "
        "(docs/metrics.md#insertion-and-deletion).</p>"
        f"<img class='plot curves' alt='insertion and deletion curves' src='{data_uri(png)}'>"
    )


_ROW_KEYS = {"id", "true", "predicted", "probability", "explained", "image", "overlays", "metrics"}


def _per_image_metrics(values: Mapping[str, Mapping[str, Any]]) -> str:
    """Rows explainers, columns metrics of one image."""
    names = list(dict.fromkeys(m for per in values.values() for m in per))
    if not names:
        return ""
    out = [
        "<div class='scroll'><table class='small'><tr><th>explainer</th>",
        "".join(f"<th>{escape(m)}</th>" for m in names),
        "</tr>",
    ]
    for explainer, per in values.items():
        cells = "".join(f"<td class='num'>{number(per.get(m, ''))}</td>" for m in names)
        out.append(f"<tr><th>{escape(explainer)}</th>{cells}</tr>")
    out.append("</table></div>")
    return "".join(out)


def _image_cards(rows: Sequence[Mapping[str, Any]]) -> str:
    out = []
    for row in rows:
        true, predicted = row.get("true", ""), row.get("predicted", "")
        wrong = " class='wrong'" if str(true) != str(predicted) else ""
        probability = scalar(row.get("probability"))
        p = f" (p = {probability:.3f})" if isinstance(probability, numbers.Real) else ""
        head = (
            f"<div class='image-head'><span class='id'>{escape(row.get('id', ''))}</span>"
            f"true: <b>{escape(true)}</b> · predicted: <b{wrong}>{escape(predicted)}</b>{p}"
            f" · explained: <b>{escape(row.get('explained', ''))}</b></div>"
        )
        figures = []
        if row.get("image") is not None:
            figures.append(figure(row["image"], "input"))
        for method, overlay in (row.get("overlays") or {}).items():
            figures.append(figure(overlay, str(method)))
        extra = {k: v for k, v in row.items() if k not in _ROW_KEYS}
        details = _per_image_metrics(row.get("metrics") or {})
        if extra:
            details += key_value_table(extra, "small")
        out.append(
            f"<section class='image-card'>{head}<div class='maps'>{''.join(figures)}</div>"
            f"{details}</section>"
        )
    return "".join(out)


def _class_map_cards(class_maps: Sequence[Mapping[str, Any]]) -> str:
    out = []
    for entry in class_maps:
        figures = []
        if entry.get("image") is not None:
            figures.append(figure(entry["image"], "input"))
        for cls in entry.get("classes", ()):
            flags = [f for f in ("true", "predicted", "explained") if cls.get(f)]
            score, probability = scalar(cls.get("score")), scalar(cls.get("probability"))
            lines = [f"<span class='name'>{escape(cls.get('name', ''))}</span>"]
            numbers_line = []
            if isinstance(score, numbers.Real):
                numbers_line.append(f"score {score:.3f}")
            if isinstance(probability, numbers.Real):
                numbers_line.append(f"p {probability:.3f}")
            if numbers_line:
                lines.append(escape(" · ".join(numbers_line)))
            if flags:
                lines.append(f"<i>{escape(', '.join(flags))}</i>")
            figures.append(
                f"<figure class='{' '.join(flags)}'><img alt='{escape(cls.get('name', ''))}' "
                f"src='{png_data_uri(cls['overlay'])}'><figcaption>{'<br>'.join(lines)}"
                "</figcaption></figure>"
            )
        note = f"<div class='sub'>{escape(entry['note'])}</div>" if entry.get("note") else ""
        true, predicted = entry.get("true", ""), entry.get("predicted", "")
        wrong = " class='wrong'" if str(true) != str(predicted) else ""
        out.append(
            f"<section class='image-card class-maps'><div class='image-head'>"
            f"<span class='id'>{escape(entry.get('id', ''))}</span>true: <b>{escape(true)}</b> · "
            f"predicted: <b{wrong}>{escape(predicted)}</b>{note}</div>"
            f"<div class='strip'>{''.join(figures)}</div></section>"
        )
    return "".join(out)


def _class_maps_intro(sign: int | None) -> str:
    if sign is not None and sign < 0:
        return (
            "SCOUTER− (negative explanation): each class's map shows where the model finds "
            "evidence that the image is <b>not</b> that class; the predicted class is the one "
            "with the least such evidence."
        )
    return (
        "SCOUTER+ (positive explanation): each class's map shows where the model finds evidence "
        "<b>for</b> that class; the predicted class is the one with the most."
    )


def write_html_report(
    path: str | os.PathLike,
    *,
    title: str,
    metrics: Mapping[str, Any] | None = None,
    rows: Sequence[Mapping[str, Any]] = (),
    settings: Mapping[str, Any] | None = None,
    explainers: Mapping[str, Mapping[str, Any]] | None = None,
    class_maps: Sequence[Mapping[str, Any]] | None = None,
    gridpg: Mapping[str, Any] | None = None,
    sign: int | None = None,
    cmap: str = "jet",
    overlay_normalisation: str = OVERLAY_NORMALISATION,
    class_map_normalisation: str = CLASS_MAP_NORMALISATION,
) -> Path:
    """Write a self-contained HTML report (docs/metrics.md#html-report).

    Args:
        path: destination ``.html``.
        title: page title and heading.
        metrics: model-level metrics (accuracy …): name → value, or → mapping with ``"value"``
            plus details such as ``"settings"`` and ``"nan_count"``.
        rows: one mapping per image with keys ``"id"``, ``"true"``, ``"predicted"``,
            ``"explained"`` (class names), optional ``"probability"`` (of the predicted class),
            ``"image"`` (``uint8`` ``(H, W, 3)`` or float ``(3, H, W)`` in ``[0, 1]``),
            ``"overlays"`` (explainer → ``uint8`` ``(H, W, 3)`` overlay from
            :func:`~scouter.export.overlay_map`), ``"metrics"`` (explainer → metric → value);
            further keys are shown as a small name / value table.
        settings: run settings (checkpoint, hash, config …) shown as a table.
        explainers: explainer → ``{"settings": {...}, "metrics": {metric: summary}}`` as in
            ``results.json``'s ``"explanations"``; a summary has ``"value"`` and optionally
            ``"std"``, ``"count"``, ``"nan_count"``, ``"higher_is_better"``, ``"settings"`` and
            (insertion / deletion) ``"mean_curve"``.
        class_maps: SCOUTER's every-class maps of a few images: mappings with ``"id"``,
            ``"true"``, ``"predicted"``, ``"image"``, optional ``"note"``, and ``"classes"``: a
            list of ``{"name", "score", "probability", "overlay", "true", "predicted",
            "explained"}`` (the last three booleans).
        gridpg: the grid pointing game section (settings, summaries, per-cell values, a few
            grids with overlays; :func:`~scouter.export.report_gridpg.gridpg_section`).
        sign: the SCOUTER model's sign (+1 / −1), which explains the every-class maps.
        cmap: the overlays' colour map (its colour bar is drawn).
        overlay_normalisation, class_map_normalisation: how the maps were brought to ``[0, 1]``,
            printed next to the colour bars.

    Returns:
        The destination path.
    """
    parts = []
    if settings:
        parts.append("<h2>Run</h2>" + key_value_table(settings, "run"))
    if metrics:
        parts.append("<h2>Classification</h2>" + key_value_table(metrics, "classification"))
    if explainers:
        parts.append("<h2>Explainers compared</h2>")
        parts.append(
            "<p class='note'>Mean ± standard deviation over the images with a defined value "
            "(N); NaN counts the images whose value is undefined (docs/metrics.md). ↑: higher "
            "is better, ↓: lower is better; the best explainer of each column is in bold.</p>"
        )
        parts.append(_explainer_table(explainers))
        parts.append(_curves(explainers))
        parts.append("<h3>Settings</h3>" + _explainer_settings(explainers))
    if gridpg:
        from scouter.export.report_gridpg import gridpg_section

        parts.append(gridpg_section(gridpg))
    if rows:
        parts.append(f"<h2>Images ({len(rows)})</h2>")
        parts.append(_legend("Overlays: " + overlay_normalisation + ".", cmap))
        parts.append(_image_cards(rows))
    if class_maps:
        count = f"{len(class_maps)} image{'s' if len(class_maps) != 1 else ''}"
        parts.append(f"<h2>Every class's map ({count})</h2>")
        parts.append(f"<p class='note'>{_class_maps_intro(sign)} Green frame: the true class.</p>")
        parts.append(_legend("Maps: " + class_map_normalisation + ".", cmap))
        parts.append(_class_map_cards(class_maps))
    return atomic_write_text(path, page(title, parts))
