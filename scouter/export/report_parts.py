"""The parts every HTML report here is built from (the evaluation report, its grid pointing game
section, StylEx's attribute report): one style sheet, the page around it, data URIs, escaped
text, numbers, key / value tables and figures. One file, no server, no JavaScript."""

from __future__ import annotations

import base64
import html
import io
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from scouter.export.overlay import to_uint8_image

__all__ = [
    "STYLE",
    "data_uri",
    "escape",
    "figure",
    "figure_html",
    "key_value_table",
    "number",
    "page",
    "png_data_uri",
    "scalar",
    "value_html",
]

STYLE = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 16px; color: #222; max-width: 100%;
       line-height: 1.35; }
h1 { font-size: 22px; overflow-wrap: anywhere; } h2 { font-size: 18px; margin-top: 28px; }
h3 { font-size: 15px; margin: 4px 0 6px; overflow-wrap: anywhere; }
p.note { font-size: 13px; color: #444; max-width: 70em; }
.scroll { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.best { font-weight: 700; background: #eef7ee; }
.sub { display: block; font-size: 11px; color: #666; font-weight: 400; }
.wrong { color: #b00020; font-weight: 600; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; max-width: 100%; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 10px; max-width: 100%;
        min-width: 0; }
.card dl { margin: 0; display: grid; grid-template-columns: max-content minmax(0, 1fr);
           gap: 2px 12px; font-size: 13px; }
.card dt { font-weight: 600; } .card dd { margin: 0; overflow-wrap: anywhere; }
.card ul { margin: 0; padding-left: 16px; }
.image-card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 10px; margin: 10px 0;
              max-width: 100%; }
.image-head { font-size: 14px; margin-bottom: 6px; overflow-wrap: anywhere; }
.image-head .id { font-family: monospace; font-weight: 600; margin-right: 12px; }
.maps { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; max-width: 100%; }
.strip { display: flex; flex-wrap: nowrap; gap: 6px; overflow-x: auto; max-width: 100%;
         padding-bottom: 4px; }
figure { margin: 0; flex: 0 0 auto; width: 132px; text-align: center; }
figure img { width: 128px; height: 128px; display: block; margin: 0 auto; }
figcaption { font-size: 11px; overflow-wrap: anywhere; }
figure.true img { outline: 3px solid #1b7f3b; outline-offset: -3px; }
figure.predicted figcaption .name { font-weight: 700; }
table.small { font-size: 12px; }
.legend { display: flex; align-items: center; gap: 8px; font-size: 12px; margin: 6px 0;
          flex-wrap: wrap; }
.legend img { width: 256px; height: 14px; display: block; }
.legend .ticks { display: flex; justify-content: space-between; width: 256px; }
img.plot { max-width: 100%; height: auto; display: block; }
"""


def png_data_uri(image: Any) -> str:
    """``data:image/png;base64,...`` of an image (see :func:`~scouter.export.to_uint8_image`)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(to_uint8_image(image)).save(buffer, format="PNG")
    return data_uri(buffer.getvalue())


def data_uri(data: bytes, kind: str = "png") -> str:
    """``data:image/<kind>;base64,...`` of encoded image bytes (PNG, GIF …)."""
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


def escape(value: Any) -> str:
    """``str(value)`` safe as HTML text and attribute value."""
    return html.escape(str(value), quote=True)


def scalar(value: Any) -> Any:
    """One-element tensors and numpy scalars as Python numbers; anything else unchanged."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    return value


def number(value: Any, digits: int = 4) -> str:
    """A number as HTML text: floats with ``digits`` decimals, None and NaN as ``NaN``."""
    value = scalar(value)
    if value is None:
        return "NaN"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return "NaN" if math.isnan(value) else f"{value:.{digits}f}"
    return escape(value)


def value_html(value: Any) -> str:
    """A value as HTML: numbers formatted, mappings as a nested list (never one long line)."""
    value = scalar(value)
    if isinstance(value, Mapping):
        if not value:
            return "<span class='sub'>none</span>"
        items = "".join(f"<li>{escape(k)}: {value_html(v)}</li>" for k, v in value.items())
        return f"<ul>{items}</ul>"
    if isinstance(value, (list, tuple)):
        return ", ".join(value_html(v) for v in value)
    if value is None:
        return "None"
    return number(value)


def key_value_table(entries: Mapping[str, Any], css_class: str = "") -> str:
    """A two-column table, one row per entry; a ``{"value": v, ...}`` entry shows ``v`` with
    its other keys in small print under it."""
    rows = []
    for name, value in entries.items():
        value = scalar(value)
        if isinstance(value, Mapping) and "value" in value:  # {"value": ..., "settings": ...}
            main = value["value"]
            details = {k: v for k, v in value.items() if k != "value"}
            cell = f"{value_html(main)}<span class='sub'>{value_html(details)}</span>"
        else:
            cell = value_html(value)
        rows.append(f"<tr><th>{escape(name)}</th><td>{cell}</td></tr>")
    cls = f" class='{css_class}'" if css_class else ""
    return f"<div class='scroll'><table{cls}>" + "".join(rows) + "</table></div>"


def figure(image: Any, caption: str, css_class: str = "") -> str:
    """A ``<figure>`` of an image (:func:`png_data_uri`) captioned with plain text."""
    return figure_html(png_data_uri(image), caption, escape(caption), css_class)


def figure_html(src: str, alt: str, caption_html: str = "", css_class: str = "") -> str:
    """A ``<figure>`` of an image source (a data URI), its caption already HTML."""
    cls = f" class='{css_class}'" if css_class else ""
    caption = f"<figcaption>{caption_html}</figcaption>" if caption_html else ""
    return f"<figure{cls}><img alt='{escape(alt)}' src='{src}'>{caption}</figure>"


def page(title: str, parts: Sequence[str], style: str = "") -> str:
    """A whole self-contained page: the house style (plus ``style``), ``title`` as its heading,
    then ``parts`` (HTML) in order."""
    return "".join(
        [
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
            "<meta name='viewport' content='width=device-width, initial-scale=1'>",
            f"<title>{escape(title)}</title><style>{STYLE}{style}</style></head><body>",
            f"<h1>{escape(title)}</h1>",
            *parts,
            "</body></html>\n",
        ]
    )
