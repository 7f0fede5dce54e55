"""Showing found attributes: image pairs with p(class) written on them, flicker GIFs, HTML.

Every file is written atomically (:mod:`scouter.atomic_io`); the HTML report is one
self-contained file built from the evaluation report's parts (:mod:`scouter.export.report_parts`),
laid out as the paper's figures.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scouter.atomic_io import atomic_write_bytes, atomic_write_text
from scouter.export.report_parts import (
    data_uri,
    escape,
    figure_html,
    key_value_table,
    number,
    page,
)
from scouter.stylex import attfind as af
from scouter.stylex import metrics as sm


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


# The StylEx parts of the report; everything else is the house style (scouter.export.report_parts).
_STYLE = """
.attribute-row { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: flex-start; }
.pairs { display: flex; flex-wrap: wrap; gap: 8px; flex: 0 1 auto; min-width: 0; }
.pair { display: flex; gap: 2px; border: 1px solid #ddd; border-radius: 4px; padding: 3px;
        flex: 0 0 auto; }
.pair figure, figure.flicker { width: auto; }
.pair figure img { width: 64px; height: 64px; image-rendering: pixelated; }
figure.flicker { max-width: 100%; }
figure.flicker img { width: auto; height: auto; max-width: 100%; max-height: 64px;
                     image-rendering: pixelated; }
.pair figure.edited figcaption { font-weight: 700; }
.attribute.together { background: #f7f7fb; }
details > summary { cursor: pointer; font-size: 15px; font-weight: 600; margin: 20px 0 6px; }
"""
# results entries shown in their own tables, not among the settings.
_RECONSTRUCTION = {
    "reconstruction_l1": "reconstruction L1 ([-1, 1] scale)",
    "agreement": "classifier agreement on reconstructions",
    "kl": "mean KL(C(x) ‖ C(x′))",
}
_CURVE_LABELS = {
    "sufficiency": "StylEx",
    "random": "random coordinates",
    "baseline": "unconditioned StyleSpace baseline",
}


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def curve_table(curves: Mapping[str, Sequence[float | None]], css_class: str = "") -> str:
    """Sufficiency@k curves as a table: one row per label, one column per k (1, 2, …)."""
    curves = {label: values for label, values in curves.items() if values}
    if not curves:
        return ""
    k = max(len(values) for values in curves.values())
    head = "".join(f"<th>k={i}</th>" for i in range(1, k + 1))
    body = "".join(
        f"<tr><th>{escape(label)}</th>"
        + "".join(f"<td class='num'>{number(v, 2)}</td>" for v in values)
        + "</tr>"
        for label, values in curves.items()
    )
    cls = f" class='{css_class}'" if css_class else ""
    return f"<div class='scroll'><table{cls}><tr><th></th>{head}</tr>{body}</table></div>"


def _curve_label(key: str) -> str:
    """``sufficiency`` → ``StylEx``, ``held_out_random`` → ``random coordinates, held-out``."""
    held_out = key.startswith("held_out_")
    label = _CURVE_LABELS.get(key.removeprefix("held_out_"), key)
    return f"{label}, held-out images" if held_out else label


def _pair(pair: Mapping[str, Any]) -> str:
    """One (reconstruction, edited) pair with the class probability under each."""
    return (
        "<div class='pair'>"
        + figure_html(
            data_uri(pair["reconstruction"]),
            "reconstruction",
            f"p {pair['p_reconstruction']:.2f}",
            "reconstruction",
        )
        + figure_html(data_uri(pair["edited"]), "edited", f"→ p {pair['p_edited']:.2f}", "edited")
        + "</div>"
    )


def _caption(row: Mapping[str, Any], class_name: str) -> str:
    """What one attribute is: its coordinate, direction and effect, and what it did here."""
    change = f"mean change of p({escape(class_name)}) on the images shown: "
    change += f"<b>{_signed(row['mean_p_change'])}</b>"
    if row.get("layer") == "":  # all attributes applied together
        return f"<b>{escape(row['coordinate'])}</b> (what sufficiency@k measures) · {change}"
    number_ = str(row["name"]).rsplit("_attr", 1)[-1]
    return (
        f"<b>Attribute {escape(number_)}</b>: StyleSpace coordinate <b>{escape(row['coordinate'])}"
        f"</b> (layer {escape(row['layer'])}, channel {escape(row['channel'])}) moved towards its "
        f"<b>{escape(row['towards'])}</b> · effect {_signed(float(row['mean_effect']))} "
        f"{escape(row['effect_unit'])} (mean over the {escape(row['images'])} images it was "
        f"chosen on) · {change}"
    )


def attribute_section(
    title: str,
    rows: Sequence[Mapping[str, Any]],
    files: Sequence[Mapping[str, Any]],
    curves: Mapping[str, Sequence[float | None]] | None = None,
) -> str:
    """One class's section, laid out as the paper's figures: per attribute one row of
    (reconstruction, edited) pairs side by side, captioned with its coordinate, direction and
    effect, its flicker GIF beside it; then all attributes together; then the class's
    sufficiency@k curves (label → values, optional)."""
    class_name = title.split(": ", 1)[-1]
    cards = []
    for row, file in zip(rows, files, strict=True):
        together = " together" if row.get("layer") == "" else ""
        pairs = "".join(_pair(pair) for pair in file.get("pairs", ()))
        gif = figure_html(
            data_uri(file["gif"], "gif"), f"{row['name']} flicker", "flicker", "flicker"
        )
        cards.append(
            f"<section class='image-card attribute{together}'>"
            f"<div class='image-head'>{_caption(row, class_name)}</div>"
            f"<div class='attribute-row'><div class='pairs'>{pairs}</div>{gif}</div></section>"
        )
    table = curve_table({_curve_label(k): v for k, v in (curves or {}).items()}, "sufficiency")
    if table:
        table = f"<h3>Sufficiency@k, {escape(class_name)}</h3>{table}"
    return (
        f"<h2>{escape(title)}</h2>{''.join(cards) if cards else '<p>(no image to show)</p>'}{table}"
    )


def write_report(
    path: Path, title: str, metrics: Mapping[str, Any], sections: Sequence[str], notes: str = ""
) -> Path:
    """The self-contained HTML report (the evaluation report's style): the reconstructions'
    quality, the sufficiency@k curves averaged over classes, the class sections, then every
    other scalar of ``metrics`` under "Settings"."""
    parts = [f"<p class='note'>{escape(notes)}</p>"] if notes else []
    quality = {label: metrics[k] for k, label in _RECONSTRUCTION.items() if k in metrics}
    baseline = metrics.get("baseline_reconstruction")
    if isinstance(baseline, Mapping):
        quality.update(
            {
                f"baseline: {label}": baseline[k]
                for k, label in _RECONSTRUCTION.items()
                if k in baseline
            }
        )
    if quality:
        parts.append("<h2>Reconstructions</h2>" + key_value_table(quality, "reconstruction"))
    means = {
        _curve_label(key.removeprefix("mean_")): value
        for key, value in metrics.items()
        if key.startswith("mean_") and isinstance(value, list)
    }
    if means:
        parts.append(
            "<h2>Sufficiency@k, mean over classes</h2><p class='note'>Among the images whose "
            "reconstruction is not classified as the class, the share that is after its top-k "
            "attributes are applied together (docs/stylex.md).</p>"
            + curve_table(means, "sufficiency mean")
        )
    parts.extend(sections)
    settings = {
        k: v
        for k, v in metrics.items()
        if k not in _RECONSTRUCTION
        and not k.startswith("mean_")
        and not isinstance(v, Mapping)
        and not (isinstance(v, list) and any(isinstance(x, (Mapping, list)) for x in v))
    }
    if settings:
        parts.append(
            "<details><summary>Settings</summary>"
            + key_value_table(settings, "settings")
            + "</details>"
        )
    return atomic_write_text(path, page(title, parts, _STYLE))


def export_attributes(
    run: Any,
    images_out: Path,
    class_name: str,
    target: int,
    picks: list[Any],
    options: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each attribute's pairs (reconstruction | edited) and flicker GIF, the class's top-4
    figure and its attributes applied together, for the first ``options.show_images`` of
    ``run``'s images (a :class:`~scouter.stylex.run_attfind.StyleSpaceSearch`) not classified as ``target``; returns the report rows and, per row, its
    files' bytes (``png``, ``gif``) and its ``pairs`` (reconstruction and edited PNG bytes with
    their p(class)) for :func:`attribute_section`."""
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
    recon_png = [png_bytes(to_pil(image)) for image in recon]

    def pairs(edited: torch.Tensor, p_edit: list[float]) -> list[dict[str, Any]]:
        """The report's (reconstruction, edited) pairs, each image with p(class)."""
        return [
            {
                "reconstruction": r,
                "edited": png_bytes(to_pil(e)),
                "p_reconstruction": pr,
                "p_edited": pe,
            }
            for r, e, pr, pe in zip(recon_png, edited, p_recon, p_edit, strict=True)
        ]

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
        written = write_attribute_files(images_out, name, sheet, flicker_frames(recon, edited))
        files.append({**written, "pairs": pairs(edited, p_edit)})
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
        written = write_attribute_files(images_out, name, sheet, flicker_frames(recon, together))
        files.append({**written, "pairs": pairs(together, p_together)})
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
