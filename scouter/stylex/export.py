"""Showing found attributes: image pairs with p(class) written on them, flicker GIFs, HTML.

Every file is written atomically (:mod:`scouter.atomic_io`); the HTML report is one
self-contained file in the style of ``evaluate.py``'s (inline CSS, images as data URIs).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scouter.atomic_io import atomic_write_bytes, atomic_write_text
from scouter.stylex import attfind as af
from scouter.stylex import metrics as sm

_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; } h3 { font-size: 15px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0 6px 4px 0; text-align: center; }
figcaption { font-size: 11px; }
"""


def to_pil(image: torch.Tensor, scale: int = 3) -> Any:
    """``(C, H, W)`` in ``[-1, 1]`` → an RGB PIL image enlarged ``scale`` times (nearest)."""
    from PIL import Image

    array = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte()
    array = array.permute(1, 2, 0).numpy()
    array = np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array
    pil = Image.fromarray(array, "RGB")
    return pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)


def pair_sheet(
    originals: torch.Tensor,
    edited: torch.Tensor,
    p_original: Sequence[float],
    p_edited: Sequence[float],
    class_name: str,
    scale: int = 3,
) -> Any:
    """One row per image: reconstruction | edited, each with ``p(class)`` written under it.

    ``originals``, ``edited``: ``(N, C, H, W)`` in ``[-1, 1]``; ``p_*``: ``N`` probabilities.
    """
    from PIL import Image, ImageDraw

    tiles = [(to_pil(o, scale), to_pil(e, scale)) for o, e in zip(originals, edited, strict=True)]
    width, height = tiles[0][0].size
    caption = 12
    sheet = Image.new("RGB", (2 * width + 6, len(tiles) * (height + caption + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, ((left, right), po, pe) in enumerate(zip(tiles, p_original, p_edited, strict=True)):
        top = row * (height + caption + 4)
        sheet.paste(left, (0, top))
        sheet.paste(right, (width + 6, top))
        draw.text((1, top + height), f"p={po:.2f}", fill="black")
        draw.text((width + 7, top + height), f"p={pe:.2f}", fill="black")
    label = Image.new("RGB", (sheet.width, 14), "white")
    ImageDraw.Draw(label).text((1, 1), f"p({class_name[:24]})", fill="black")
    full = Image.new("RGB", (sheet.width, sheet.height + 14), "white")
    full.paste(label, (0, 0))
    full.paste(sheet, (0, 14))
    return full


def side_by_side(sheets: Sequence[Any], titles: Sequence[str]) -> Any:
    """Attribute sheets as columns, each under its title (the "top attributes" figure)."""
    from PIL import Image, ImageDraw

    gap, header = 10, 14
    width = sum(sheet.width for sheet in sheets) + gap * (len(sheets) - 1)
    height = max(sheet.height for sheet in sheets) + header
    figure = Image.new("RGB", (width, height), "white")
    draw, left = ImageDraw.Draw(figure), 0
    for sheet, title in zip(sheets, titles, strict=True):
        draw.text((left + 1, 1), title[:32], fill="black")
        figure.paste(sheet, (left, header))
        left += sheet.width + gap
    return figure


def flicker_frames(originals: torch.Tensor, edited: torch.Tensor, scale: int = 3) -> list[Any]:
    """Two frames: the images side by side before and after the edit (a GIF alternates them)."""
    from PIL import Image

    frames = []
    for batch in (originals, edited):
        tiles = [to_pil(img, scale) for img in batch]
        strip = Image.new("RGB", (sum(t.width + 2 for t in tiles), tiles[0].height), "white")
        for i, tile in enumerate(tiles):
            strip.paste(tile, (i * (tile.width + 2), 0))
        frames.append(strip)
    return frames


def gif_bytes(frames: Sequence[Any], duration_ms: int = 600) -> bytes:
    buffer = io.BytesIO()
    frames[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=list(frames[1:]),
        duration=duration_ms,
        loop=0,
    )
    return buffer.getvalue()


def png_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_attribute_files(
    folder: Path, name: str, sheet: Any, frames: Sequence[Any]
) -> dict[str, bytes]:
    """``<name>.png`` (pairs) and ``<name>.gif`` (flicker) in ``folder``; returns their bytes."""
    files = {"png": png_bytes(sheet), "gif": gif_bytes(frames)}
    atomic_write_bytes(folder / f"{name}.png", files["png"])
    atomic_write_bytes(folder / f"{name}.gif", files["gif"])
    return files


def _uri(kind: str, data: bytes) -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def table_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """An HTML table of dict rows (columns: the first row's keys)."""
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(_cell(r.get(k)) for k in rows[0]) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def attribute_section(
    title: str, rows: Sequence[Mapping[str, Any]], files: Sequence[Mapping[str, bytes]]
) -> str:
    """One class's section: its attribute table and, per attribute, the pairs and the GIF."""
    figures = "".join(
        f'<figure><img src="{_uri("png", f["png"])}"><figcaption>{html.escape(str(r["name"]))}'
        f'</figcaption></figure><figure><img src="{_uri("gif", f["gif"])}"><figcaption>flicker'
        "</figcaption></figure><br>"
        for r, f in zip(rows, files, strict=True)
    )
    return f"<h2>{html.escape(title)}</h2>{table_html(rows)}{figures}"


def write_report(
    path: Path, title: str, metrics: Mapping[str, Any], sections: Sequence[str], notes: str = ""
) -> Path:
    """The self-contained HTML report: run metrics, notes, then the class sections."""
    flat = [
        {"metric": k, "value": v} for k, v in metrics.items() if not isinstance(v, (list, dict))
    ]
    curves = [
        {"metric": k, "value": ", ".join(f"{x:.2f}" for x in v)}
        for k, v in metrics.items()
        if isinstance(v, list) and all(isinstance(x, float) for x in v)
    ]
    body = (
        f"<h1>{html.escape(title)}</h1><p>{html.escape(notes)}</p>"
        f"{table_html(flat + curves)}{''.join(sections)}"
    )
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>"
    )
    return atomic_write_text(path, page)


def export_attributes(
    run: Any,
    images_out: Path,
    class_name: str,
    target: int,
    picks: list[Any],
    options: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, bytes]]]:
    """Each attribute's pairs (reconstruction | edited) and flicker GIF, the class's top-4
    figure and its attributes applied together, for the first ``options.show_images`` of
    ``run``'s images not classified as ``target``; returns the report rows and files."""
    eligible = run.eligible(target)
    rows_idx = eligible.nonzero().flatten()[: options.show_images]
    if len(rows_idx) == 0:
        return [], []
    styles, extras, noise = (
        run.styles[rows_idx],
        af.take(run.extras, rows_idx),
        af.take(run.noise, rows_idx),
    )
    recon = run.reconstructions[rows_idx]  # synthesised and classified already
    p_recon = run.base_logits[rows_idx].softmax(1)[:, target].tolist()
    rows, files, sheets = [], [], []
    safe = "".join(ch if ch.isalnum() else "_" for ch in class_name)
    for j, attribute in enumerate(picks):
        edited = sm.synthesize_all(
            run.model,
            af.apply_attributes(styles, [attribute], run.ranges, run.shift),
            extras,
            noise,
        )
        p_edit = sm.classify_all(run.model, edited).softmax(1)[:, target].tolist()
        layer, channel = run.module.generator.coordinate(attribute.coordinate)
        name = f"{safe}_attr{j + 1}"
        sheet = pair_sheet(recon, edited, p_recon, p_edit, class_name)
        files.append(write_attribute_files(images_out, name, sheet, flicker_frames(recon, edited)))
        sheets.append(sheet)
        rows.append(
            {
                "name": name,
                "coordinate": attribute.coordinate,
                "layer": layer,
                "channel": channel,
                "towards": attribute.towards,
                "mean_effect": attribute.mean_effect,
                "effect_unit": options.effect,
                "images": attribute.images,
                "mean_p_change": float(
                    sum(pe - po for po, pe in zip(p_recon, p_edit, strict=True)) / len(p_edit)
                ),
            }
        )
    if sheets:  # the top attributes side by side: one figure per class
        top = side_by_side(
            sheets[:4],
            [
                f"{r['name'].split('_attr')[-1]}: s{r['coordinate']} {r['towards']}"
                for r in rows[:4]
            ],
        )
        atomic_write_bytes(images_out / f"{safe}_top.png", png_bytes(top))
        # What sufficiency@k measures: all the class's attributes applied together.
        together = sm.synthesize_all(
            run.model, af.apply_attributes(styles, picks, run.ranges, run.shift), extras, noise
        )
        p_together = sm.classify_all(run.model, together).softmax(1)[:, target].tolist()
        name = f"{safe}_together"
        sheet = pair_sheet(recon, together, p_recon, p_together, class_name)
        files.append(
            write_attribute_files(images_out, name, sheet, flicker_frames(recon, together))
        )
        rows.append(
            {
                "name": name,
                "coordinate": f"all {len(picks)} together",
                "layer": "",
                "channel": "",
                "towards": "",
                "mean_effect": "",
                "effect_unit": "",
                "images": len(p_together),
                "mean_p_change": float(
                    sum(pe - po for po, pe in zip(p_recon, p_together, strict=True))
                    / len(p_together)
                ),
            }
        )
    return rows, files
