import base64
import re
import shutil
import subprocess
from io import BytesIO

import numpy as np
import pytest
import torch
from PIL import Image

from scouter.export import overlay_map, write_html_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def make_report(path):
    gradient = torch.linspace(0, 1, 32).expand(32, 32)
    image = np.full((32, 32, 3), 255, dtype=np.uint8)
    rows = [
        {
            "id": "img<0>",
            "true": "cat",
            "predicted": "dog",
            "explained": "cat",
            "area": 0.31,
            "image": image,
            "overlays": {
                "SCOUTER+": overlay_map(image, gradient, alpha=0.9),
                "Grad-CAM": overlay_map(image, gradient.T, alpha=0.9),
            },
        },
        {"id": "img1", "true": "dog", "predicted": "dog", "explained": "dog", "area": float("nan")},
    ]
    metrics = {
        "top1": 0.5,
        "precision": {"value": 0.75, "nan_count": 1},
        "infidelity": {"value": 0.01, "settings": {"sigma": 0.2}},
    }
    return write_html_report(path, title="Run <test>", metrics=metrics, rows=rows)


def test_report_is_self_contained_and_escaped(tmp_path):
    path = make_report(tmp_path / "report.html")
    text = path.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert "Run &lt;test&gt;" in text and "img&lt;0&gt;" in text
    uris = re.findall(r"src='data:image/png;base64,([^']+)'", text)
    assert len(uris) == 3  # input + two overlays of the first row
    decoded = Image.open(BytesIO(base64.b64decode(uris[1])))
    assert decoded.size == (32, 32)
    assert (
        "nan_count=1" in text
        and "settings=sigma=0.2000" in text
        and "NaN" in text
        and "class='wrong'" in text
    )
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    path = make_report(tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,900",
            path.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=90,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    # the jet overlays: saturated blue (low end) and red (high end) regions must be on screen
    assert ((b > 150) & (r < 80) & (g < 80)).sum() > 200
    assert ((r > 150) & (b < 80) & (g < 80)).sum() > 200
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
