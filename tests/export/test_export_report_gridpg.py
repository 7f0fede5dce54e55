"""The report's GridPG section and box plot."""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image

from scouter.export.report_gridpg import gridpg_section
from scouter.export.report_plots import boxplot_png


def test_boxplot_is_a_png_and_none_without_finite_values():
    png = boxplot_png({"slot": [0.2, 0.9, 1.0, None], "gradcam": [math.nan, 0.1]}, {"slot": 0.25})
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size[0] > 100
    assert boxplot_png({"slot": [math.nan, None]}) is None


def test_section_shows_settings_table_plot_and_grids_escaped():
    overlay = np.zeros((8, 8, 3), np.uint8)
    html = gridpg_section(
        {
            "settings": {"size": 2, "geometry": "tile", "threshold": 0.99},
            "summaries": {
                "<slot>": {
                    "value": 0.75,
                    "median": 0.8,
                    "q1": 0.5,
                    "q3": 1.0,
                    "count": 8,
                    "zero_count": 1,
                    "nan_count": 0,
                    "chance": 0.75,
                    "settings": {"evidence": "against"},
                },
            },  # fmt: skip
            "values": {"<slot>": [0.5, 1.0, 0.75]},
            "grids": [
                {
                    "grid": 0,
                    "image": torch.zeros(3, 8, 8),
                    "classes": ["a&b", "c", "d", "e"],
                    "overlays": {"<slot>": [overlay] * 4},
                    "scores": {"<slot>": [1.0, 0, 0, 0]},
                }
            ],
        }  # fmt: skip
    )
    assert "Grid pointing game (2×2, tile)" in html
    assert "&lt;slot&gt;" in html and "<slot>" not in html and "a&amp;b" in html
    assert "evidence against" in html and "0.7500" in html
    assert "alt='GridPG box plot'" in html and html.count("<figure") == 5
