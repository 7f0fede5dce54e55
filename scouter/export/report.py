"""A self-contained HTML report of an evaluation run.

One file, no server, no JavaScript: inline CSS, images embedded as base64 PNG data URIs. Written
atomically (temporary file + ``os.replace``) like every results file.
"""

from __future__ import annotations

import base64
import html
import io
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scouter.export.overlay import to_uint8_image
from scouter.export.results_io import atomic_write_text

__all__ = ["png_data_uri", "write_html_report"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.wrong { color: #b00020; font-weight: 600; }
figure { display: inline-block; margin: 0 6px 4px 0; text-align: center; }
figure img { width: 128px; height: 128px; image-rendering: auto; display: block; }
figcaption { font-size: 11px; }
td:last-child { white-space: nowrap; }
"""

_RESERVED = {"id", "true", "predicted", "explained", "image", "overlays"}


def png_data_uri(image: Any) -> str:
    """``data:image/png;base64,...`` of an image (see :func:`~scouter.export.to_uint8_image`)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(to_uint8_image(image)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _format(value: Any) -> str:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Mapping):  # nested settings: "k=v, k=v"
        return ", ".join(f"{html.escape(str(k))}={_format(v)}" for k, v in value.items())
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return "NaN" if math.isnan(value) else f"{value:.4f}"
    return html.escape(str(value))


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    rows = []
    for name, value in metrics.items():
        if isinstance(value, Mapping):  # {"value": ..., "settings": {...}, "nan_count": ...}
            main = value.get("value", "")
            extra = ", ".join(
                f"{html.escape(str(k))}={_format(v)}" for k, v in value.items() if k != "value"
            )
        else:
            main, extra = value, ""
        rows.append(
            f"<tr><th>{html.escape(str(name))}</th><td class='num'>{_format(main)}</td>"
            f"<td>{extra}</td></tr>"
        )
    return (
        "<table><tr><th>metric</th><th>value</th><th>details</th></tr>" + "".join(rows) + "</table>"
    )


def _image_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    extra_keys = list(dict.fromkeys(k for row in rows for k in row if k not in _RESERVED))
    head = ["id", "true", "predicted", "explained", *extra_keys, "input and explanations"]
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        true, pred = row.get("true", ""), row.get("predicted", "")
        wrong = " class='wrong'" if str(true) != str(pred) else ""
        cells = [
            f"<td>{_format(row.get('id', ''))}</td>",
            f"<td>{_format(true)}</td>",
            f"<td{wrong}>{_format(pred)}</td>",
            f"<td>{_format(row.get('explained', ''))}</td>",
        ]
        cells += [f"<td class='num'>{_format(row.get(k, ''))}</td>" for k in extra_keys]
        figures = []
        if row.get("image") is not None:
            figures.append(
                f"<figure><img alt='input' src='{png_data_uri(row['image'])}'>"
                "<figcaption>input</figcaption></figure>"
            )
        for method, overlay in (row.get("overlays") or {}).items():
            name = html.escape(str(method))
            figures.append(
                f"<figure><img alt='{name}' src='{png_data_uri(overlay)}'>"
                f"<figcaption>{name}</figcaption></figure>"
            )
        cells.append("<td>" + "".join(figures) + "</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def write_html_report(
    path: str | os.PathLike,
    *,
    title: str,
    metrics: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """Write a self-contained HTML report (metrics table + one row per image with overlays).

    Args:
        path: destination ``.html``.
        title: page title and heading.
        metrics: metric name → value, or → mapping with ``"value"`` plus details such as
            ``"settings"`` and ``"nan_count"``.
        rows: one mapping per image with keys ``"id"``, ``"true"``, ``"predicted"``,
            ``"explained"`` (class names or indices), optional ``"image"`` (``uint8`` ``(H, W, 3)``
            or float ``(3, H, W)`` in ``[0, 1]``), optional ``"overlays"`` (method name → ``uint8``
            ``(H, W, 3)`` overlay from :func:`~scouter.export.overlay_map`), and any further
            scalar keys (per-image metric values) shown as extra columns.
        settings: optional run settings (config, checkpoint hash, dataset) shown as a table.

    Returns:
        The destination path.
    """
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if settings:
        parts.append("<h2>Run</h2>" + _metrics_table(settings))
    parts.append("<h2>Metrics</h2>" + _metrics_table(metrics))
    parts.append(f"<h2>Images ({len(rows)})</h2>" + _image_rows(rows))
    parts.append("</body></html>\n")
    return atomic_write_text(path, "".join(parts))
