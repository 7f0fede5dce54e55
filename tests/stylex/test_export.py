"""Attribute pictures: pairs with p(class) under each image, the flicker GIF, the HTML report."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from scouter.stylex import attfind as af
from scouter.stylex import export
from scouter.stylex.export import export_attributes
from scouter.stylex.run_attfind import AttFindOptions, StyleSpaceSearch
from tests.stylex.conftest import tiny_stylex


def test_pair_sheet_and_flicker_gif_show_both_images():
    originals, edited = -torch.ones(3, 1, 8, 8), torch.ones(3, 1, 8, 8)
    sheet = export.pair_sheet(originals, edited, [0.1, 0.2, 0.3], [0.9, 0.8, 0.7], "Shirt", scale=3)
    assert sheet.width == 2 * 24 + 6
    assert sheet.getpixel((5, 14 + 5)) == (0, 0, 0)  # first row, reconstruction: black
    assert sheet.getpixel((24 + 6 + 5, 14 + 5)) == (255, 255, 255)  # edited: white
    gif = Image.open(io.BytesIO(export.gif_bytes(export.flicker_frames(originals, edited))))
    assert gif.n_frames == 2


def test_export_writes_every_attribute_a_top_figure_of_the_first_four_and_all_together(tmp_path):
    module = tiny_stylex().eval()
    images = torch.rand(4, 1, 16, 16) * 2 - 1
    run = StyleSpaceSearch(module, images, AttFindOptions("unused", str(tmp_path), chunk=64))
    picks = [af.Attribute(c, c % 2, 0.5, 4, 0) for c in range(6)]  # more than the figure shows
    options = AttFindOptions("unused", str(tmp_path), show_images=2)
    recon = module.generator.synthesize(run.styles, run.extras, run.noise)
    target = (int(module.classifier(recon).argmax(1)[0]) + 1) % 3  # image 0 is not the target
    rows, files = export_attributes(run, tmp_path, "T-shirt/top", target, picks, options)
    assert len(rows) == len(files) == 7  # six attributes, then all six together
    assert rows[1]["towards"] == "max" and rows[1]["layer"] == 0 and rows[1]["channel"] == 1
    assert rows[6]["name"] == "T_shirt_top_together" and rows[6]["coordinate"] == "all 6 together"
    assert rows[6]["images"] == 2
    shown = (module.classifier(recon).argmax(1) != target).nonzero().flatten()[:2]
    styles = af.apply_attributes(run.styles[shown], picks, run.ranges, run.shift)
    together = module.generator.synthesize(
        styles, af.take(run.extras, shown), af.take(run.noise, shown)
    )
    p_change = module.classifier(together).softmax(1) - module.classifier(recon[shown]).softmax(1)
    assert rows[6]["mean_p_change"] == pytest.approx(float(p_change[:, target].mean()), abs=1e-5)
    for j in range(1, 7):
        assert (tmp_path / f"T_shirt_top_attr{j}.png").is_file()
    top = Image.open(tmp_path / "T_shirt_top_top.png")
    single = Image.open(tmp_path / "T_shirt_top_attr1.png")
    assert top.width == 4 * single.width + 3 * 10
    section = export.attribute_section("class", rows, files)
    page = export.write_report(tmp_path / "r.html", "t", {"agreement": 0.5}, [section])
    text = page.read_text()
    assert text.count("data:image/gif;base64,") == 7 and "agreement" in text
