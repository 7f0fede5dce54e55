"""StylEx's report.html: the evaluation report's parts, laid out as the paper's figures (per
attribute one row of pairs with its caption and GIF beside it), and what headless Chromium draws."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from scouter.export.report_parts import STYLE
from scouter.stylex import export
from tests.export.test_export_report import CHROMIUM, chromium

SHOWN = 4  # images per attribute
BLUE, RED = (0, 0, 255), (255, 0, 0)


def _solid(colour: tuple[int, int, int], count: int = SHOWN) -> torch.Tensor:
    """``count`` images of one colour, ``(N, 3, 32, 32)`` in ``[-1, 1]``."""
    value = torch.tensor(colour, dtype=torch.float32) / 127.5 - 1
    return value.view(1, 3, 1, 1).expand(count, 3, 32, 32).clone()


def _attribute(j: int, *, together: bool = False) -> tuple[dict, dict]:
    """A report row and its files as ``export_attributes`` returns them: reconstructions blue,
    edited images red."""
    recon, edited = _solid(BLUE), _solid(RED)
    p_recon, p_edit = [0.1] * SHOWN, [0.1 + 0.2 * j] * SHOWN
    name = "Shirt_together" if together else f"Shirt_attr{j}"
    row = {
        "name": name,
        "coordinate": "all 3 together" if together else 100 + j,
        "layer": "" if together else 2,
        "channel": "" if together else 10 + j,
        "towards": "" if together else ("max" if j % 2 else "min"),
        "mean_effect": "" if together else 0.25 * j,
        "effect_unit": "" if together else "logit",
        "images": 37 if not together else SHOWN,
        "mean_p_change": 0.2 * j,
    }
    sheet = export.pair_sheet(recon, edited, p_recon, p_edit, "Shirt")
    files = {
        "png": export.png_bytes(sheet),
        "gif": export.gif_bytes(export.flicker_frames(recon, edited)),
        "pairs": [
            {
                "reconstruction": export.png_bytes(export.to_pil(r)),
                "edited": export.png_bytes(export.to_pil(e)),
                "p_reconstruction": pr,
                "p_edited": pe,
            }
            for r, e, pr, pe in zip(recon, edited, p_recon, p_edit, strict=True)
        ],
    }
    return row, files


def make_report(path):
    made = [_attribute(1), _attribute(2), _attribute(3), _attribute(3, together=True)]
    rows, files = [m[0] for m in made], [m[1] for m in made]
    curves = {"sufficiency": [0.5, 0.7, 0.9], "random": [0.1, 0.15, 0.2]}
    section = export.attribute_section("class 6: Shirt", rows, files, curves)
    metrics = {
        "images": 200,
        "style_space_size": 336,
        "reconstruction_l1": 0.1,
        "agreement": 0.97,
        "kl": 0.01,
        "effect": "logit",
        "classes": ["T-shirt/top", "Shirt"],
        "mean_sufficiency": [0.5, 0.7, 0.9],
        "mean_random": [0.1, 0.15, 0.2],
        "mean_held_out_sufficiency": [0.4, 0.6, 0.8],
        "targets": {"Shirt": {"attributes": []}},
    }
    return export.write_report(path, "StylEx <attributes>", metrics, [section], "notes & more")


def test_report_uses_the_house_style_and_captions_each_attribute(tmp_path):
    text = make_report(tmp_path / "report.html").read_text()
    assert STYLE in text and "<h1>StylEx &lt;attributes&gt;</h1>" in text
    assert "notes &amp; more" in text and "<script" not in text
    # Each attribute captioned with its coordinate, direction and effect; its GIF once.
    assert (
        "<b>Attribute 1</b>: StyleSpace coordinate <b>101</b> (layer 2, channel 11) moved "
        "towards its <b>max</b> · effect +0.250 logit (mean over the 37 images" in text
    )
    assert "towards its <b>min</b> · effect +0.500 logit" in text
    assert "<b>all 3 together</b> (what sufficiency@k measures)" in text
    assert "mean change of p(Shirt) on the images shown: <b>+0.600</b>" in text
    assert text.count("data:image/gif;base64,") == 4
    assert text.count("<div class='pair'>") == 4 * SHOWN
    # The mean curves and the class's own, one column per k; settings kept, nested ones left out.
    assert "<th>StylEx, held-out images</th>" in text and "<th>k=3</th>" in text
    assert "<td class='num'>0.90</td>" in text and "random coordinates" in text
    assert "<summary>Settings</summary>" in text and "style_space_size" in text
    assert "T-shirt/top, Shirt" in text and "targets" not in text


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_as_the_papers_figures_in_headless_chromium(tmp_path):
    path = make_report(tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    chromium(path.resolve().as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1280,1400")
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    blue = (pixels[..., 2] > 200) & (pixels[..., 0] < 60) & (pixels[..., 1] < 60)
    red = (pixels[..., 0] > 200) & (pixels[..., 2] < 60) & (pixels[..., 1] < 60)
    # One screen row through the first attribute's pairs crosses every pair side by side:
    # SHOWN reconstructions (blue) and SHOWN edited images (red), plus the GIF's first frame.
    row = int(np.flatnonzero(blue.any(1))[0]) + 10
    runs = np.flatnonzero(np.diff(np.r_[0, blue[row].astype(int), 0]) == 1)
    assert len(runs) >= SHOWN + 1, len(runs)  # the pairs, then the GIF beside them (blue frame)
    red_runs = np.flatnonzero(np.diff(np.r_[0, red[row].astype(int), 0]) == 1)
    assert len(red_runs) == SHOWN
    # The four rows of pairs (three attributes and all together) all on the first screen.
    rows_with_pairs = np.flatnonzero(np.diff(np.r_[0, blue.any(1).astype(int), 0]) == 1)
    assert len(rows_with_pairs) == 4

    probe = tmp_path / "probe.html"
    script = (
        "<script>window.addEventListener('load', () => {"
        "const tops = [...document.querySelectorAll('section.attribute')].map(s => new Set("
        "[...s.querySelectorAll('.pair, figure.flicker')].map(e => e.offsetTop)).size);"
        "document.body.setAttribute('data-probe', [document.documentElement.scrollWidth, "
        "window.innerWidth, Math.max(...tops), tops.length].join(','));});</script></body>"
    )
    probe.write_text(path.read_text().replace("</body>", script))
    for width, lines in ((1280, 1), (500, None)):
        dom = chromium(
            probe.resolve().as_uri(), tmp_path, "--dump-dom", "--virtual-time-budget=5000",
            f"--window-size={width},900",
        ).stdout  # fmt: skip
        found = re.search(r'data-probe="(\d+),(\d+),(\d+),(\d+)"', dom)
        assert found, dom[:500]
        scroll_width, inner_width, most_lines, attributes = map(int, found.groups())
        assert attributes == 4 and scroll_width <= inner_width == width
        if lines is not None:  # wide enough: each attribute's pairs and GIF on one line
            assert most_lines == lines
