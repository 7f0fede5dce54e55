"""The HTML report: content, escaping, and what headless Chromium draws (colour bar, curves, no
page wider than the window)."""

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from io import BytesIO

import numpy as np
import pytest
import torch
from PIL import Image

from scouter.export import overlay_map, write_html_report
from scouter.export.report_plots import colour_bar, curves_png

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LONG_ID = "img_" + "x" * 300  # no break opportunity: must wrap, not widen the page
NUM_CLASSES = 12


def _summary(value, std, count, nan_count, higher, curve=None, **settings):
    summary = {
        "value": value,
        "std": std,
        "count": count,
        "nan_count": nan_count,
        "higher_is_better": higher,
        "settings": settings or {"preparation": "relu_bilinear_minmax_per_map"},
    }
    if curve is not None:
        summary["mean_curve"] = curve
    return summary


def explainer_docs(n_explainers=3):
    x = np.linspace(0, 1, 17)
    docs = {}
    for e in range(n_explainers):
        name = ["slot", "gradcam", "ig<&>"][e]
        docs[name] = {
            "settings": {"batch_size": 64, "layer": None} if e == 1 else {},
            "metrics": {
                "area": _summary(0.1 * (e + 1), 0.01, 4, 0, False),
                "precision": _summary(0.9 - 0.1 * e, 0.05, 3, 1, True, region="mask <or> boxes"),
                "insertion": _summary(
                    0.6 - 0.1 * e, 0.02, 4, 0, True, (x ** (1 + e)).tolist(), step=19, blur="rise"
                ),
                "deletion": _summary(
                    0.2 + 0.1 * e, 0.02, 4, 0, False, (1 - x ** (1 / (1 + e))).tolist(), step=19
                ),
            },
        }
    return docs


def class_map_entries(image, sign_label="SCOUTER+"):
    ramp = torch.linspace(0, 1, 32).expand(32, 32)
    return [
        {
            "id": "img<0>",
            "true": "class<1>",
            "predicted": "class<2>",
            "image": image,
            "classes": [
                {
                    "name": f"class<{k}>",
                    "score": 0.5 * k,
                    "probability": 1 / NUM_CLASSES,
                    "overlay": overlay_map(image, ramp * k / (NUM_CLASSES - 1), alpha=0.9),
                    "true": k == 1,
                    "predicted": k == 2,
                    "explained": k == 1,
                }
                for k in range(NUM_CLASSES)
            ],
        }
    ]


def make_report(path, *, n_explainers=3, sign=1, class_maps=True):
    gradient = torch.linspace(0, 1, 32).expand(32, 32)
    image = np.full((32, 32, 3), 255, dtype=np.uint8)
    docs = explainer_docs(n_explainers)
    names = list(docs)
    rows = [
        {
            "id": "img<0>",
            "true": "cat",
            "predicted": "dog<s>",
            "probability": 0.87,
            "explained": "cat",
            "image": image,
            "overlays": {
                name: overlay_map(image, gradient if i % 2 == 0 else gradient.T, alpha=0.9)
                for i, name in enumerate(names)
            },
            "metrics": {
                name: {"area": 0.31 + i, "precision": float("nan")} for i, name in enumerate(names)
            },  # fmt: skip
        },
        {
            "id": LONG_ID,
            "true": "dog<s>",
            "predicted": "dog<s>",
            "explained": "dog<s>",
            "metrics": {name: {"area": None} for name in names},
        },
    ]
    metrics = {
        "accuracy": {"value": 0.5, "macro": 0.5, "nan_count": 0, "settings": {"top1": "all"}},
    }
    return write_html_report(
        path,
        title="Run <test>",
        metrics=metrics,
        rows=rows,
        explainers=docs,
        settings={"checkpoint": "/very/" + "long" * 60 + "/path.ckpt", "sha256": "ab" * 32},
        class_maps=class_map_entries(image) if class_maps else None,
        sign=sign,
    )


class Tables(HTMLParser):
    """Every ``<table>`` as a list of rows of cell texts, keyed by its class attribute."""

    def __init__(self):
        super().__init__()
        self.tables, self._stack, self._cell = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._stack.append((dict(attrs).get("class", ""), []))
        elif tag == "tr" and self._stack:
            self._stack[-1][1].append([])
        elif tag in ("td", "th") and self._stack:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._stack[-1][1][-1].append(" ".join(" ".join(self._cell).split()))
            self._cell = None
        elif tag == "table" and self._stack:
            self.tables.append(self._stack.pop())

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables(text, css_class):
    parser = Tables()
    parser.feed(text)
    return [rows for cls, rows in parser.tables if css_class in cls.split()]


def data_uris(text, css_class):
    return re.findall(rf"<img class='{css_class}'[^>]*src='data:image/png;base64,([^']+)'", text)


def decode(uri):
    return np.asarray(Image.open(BytesIO(base64.b64decode(uri))).convert("RGB")).astype(int)


def test_report_is_self_contained_and_escaped(tmp_path):
    path = make_report(tmp_path / "report.html")
    text = path.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert "Run &lt;test&gt;" in text and "img&lt;0&gt;" in text and "dog&lt;s&gt;" in text
    assert "ig&lt;&amp;&gt;" in text and "class&lt;3&gt;" in text and "mask &lt;or&gt;" in text
    assert "<s>" not in text and "ig<&>" not in text
    assert "class='wrong'" in text  # predicted differs from true in the first row
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # one file, written atomically


def test_explainers_compared_in_one_table_with_mean_std_count_and_best(tmp_path):
    text = make_report(tmp_path / "report.html").read_text()
    [table] = tables(text, "explainer-metrics")
    assert table[0] == ["explainer", "area ↓", "precision ↑", "insertion ↑", "deletion ↓"]
    assert [row[0] for row in table[1:]] == ["slot", "gradcam", "ig<&>"]
    assert table[1][1] == "0.1000 ± 0.0100 N=4, NaN 0"
    assert table[2][2] == "0.8000 ± 0.0500 N=3, NaN 1"
    # the best of each column is marked: lowest area / deletion, highest precision / insertion
    best = re.findall(r"<td class='num best'>([^<]+)<", text)
    assert best == ["0.1000 ± 0.0100", "0.9000 ± 0.0500", "0.6000 ± 0.0200", "0.2000 ± 0.0200"]


def test_settings_are_a_list_per_explainer_not_one_line(tmp_path):
    text = make_report(tmp_path / "report.html").read_text()
    cards = re.findall(r"<div class='card settings'><h3>(.*?)</h3>(.*?)</div>", text)
    assert [name for name, _ in cards] == ["slot", "gradcam", "ig&lt;&amp;&gt;"]
    gradcam = cards[1][1]
    for item in ("batch_size: 64", "layer: None", "step: 19", "blur: rise"):
        assert f"<li>{item}</li>" in gradcam
    assert "<dt>insertion</dt>" in gradcam and "settings=" not in text


def test_insertion_and_deletion_curves_are_plotted_one_line_per_explainer(tmp_path):
    text = make_report(tmp_path / "report.html").read_text()
    [uri] = data_uris(text, "plot curves")
    plot = decode(uri)
    assert plot.shape[1] == 900  # two panels, 9 inches at 100 dpi
    # matplotlib's first three line colours (C0 blue, C1 orange, C2 green): one per explainer
    for colour in ((31, 119, 180), (255, 127, 14), (44, 160, 44)):
        assert (np.abs(plot - colour).max(-1) < 30).sum() > 100, colour
    # no curves, no plot
    docs = explainer_docs(1)
    for summary in docs["slot"]["metrics"].values():
        summary.pop("mean_curve", None)
    assert curves_png({"slot": {}}) is None
    bare = write_html_report(tmp_path / "bare.html", title="t", explainers=docs).read_text()
    assert "plot curves" not in bare and "explainer-metrics" in bare


def test_image_cards_show_classes_probability_overlays_and_their_metrics(tmp_path):
    text = make_report(tmp_path / "report.html").read_text()
    cards = text.split("<section class='image-card'>")[1:]
    assert len(cards) == 2
    first = cards[0]
    assert "true: <b>cat</b>" in first and "predicted: <b class='wrong'>dog&lt;s&gt;</b>" in first
    assert "(p = 0.870)" in first and "explained: <b>cat</b>" in first
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", first)
    assert captions == ["input", "slot", "gradcam", "ig&lt;&amp;&gt;"]
    [per_image] = tables(first, "small")
    assert per_image == [
        ["explainer", "area", "precision"],
        ["slot", "0.3100", "NaN"],
        ["gradcam", "1.3100", "NaN"],
        ["ig<&>", "2.3100", "NaN"],
    ]
    assert "NaN" in tables(cards[1], "small")[0][1]  # a null value (JSON) shows as NaN


def test_colour_bar_is_the_overlays_jet_scale_and_the_normalisation_is_stated(tmp_path):
    text = make_report(tmp_path / "report.html").read_text()
    bars = data_uris(text, "colour-bar")
    assert len(bars) == 2  # images and every-class maps
    bar = decode(bars[0])
    np.testing.assert_array_equal(bar, colour_bar("jet"))
    assert tuple(bar[0, 0]) == (0, 0, 128) and tuple(bar[0, -1]) == (128, 0, 0)  # jet's ends
    assert "min–max normalised per map" in text and "normalised jointly" in text


@pytest.mark.parametrize("sign", [1, -1])
def test_scouter_every_class_maps_are_labelled_per_class(tmp_path, sign):
    text = make_report(tmp_path / "report.html", sign=sign).read_text()
    [strip] = text.split("<section class='image-card class-maps'>")[1:]
    figures = re.findall(r"<figure class='([^']*)'><img alt='([^']*)'", strip)
    assert [alt for _, alt in figures] == [f"class&lt;{k}&gt;" for k in range(NUM_CLASSES)]
    assert figures[1][0] == "true explained" and figures[2][0] == "predicted"
    assert "score 1.000 · p 0.083" in strip
    intro = "evidence that the image is <b>not</b> that class" if sign < 0 else "<b>for</b> that"
    assert intro in text
    assert "class-maps" not in make_report(tmp_path / "fc.html", class_maps=False).read_text()


def chromium(url, tmp_path, *flags):
    return subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", *flags, url,
        ],
        check=True, capture_output=True, timeout=90, text=True,
    )  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    path = make_report(tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    chromium(path.resolve().as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=800,4000")
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    # the jet overlays: saturated blue (low end) and red (high end) regions must be on screen
    assert ((b > 150) & (r < 80) & (g < 80)).sum() > 200
    assert ((r > 150) & (b < 80) & (g < 80)).sum() > 200
    # the colour bar is drawn pixel for pixel (256 CSS px wide at scale 1), twice
    bar = colour_bar("jet")[0].astype(int)  # (256, 3)
    found = 0
    for y in range(pixels.shape[0]):
        starts = np.flatnonzero(np.abs(pixels[y, : -bar.shape[0]] - bar[0]).max(-1) <= 2)
        if any(np.abs(pixels[y, x : x + 256] - bar).max() <= 2 for x in starts):
            found += 1
    assert found >= 2 * 14 - 2  # two bars of 14 rows
    # the curves plot: matplotlib's C0/C1/C2 line colours
    for colour in ((31, 119, 180), (255, 127, 14), (44, 160, 44)):
        assert (np.abs(pixels - colour).max(-1) < 30).sum() > 100, colour

    # Layout, in a copy with a probe script (the report itself has none): the explainer table is
    # in the DOM and nothing makes the page wider than a narrow window.
    probe = tmp_path / "probe.html"
    script = (
        "<script>window.addEventListener('load', () => document.body.setAttribute('data-probe', "
        "[document.documentElement.scrollWidth, window.innerWidth, "
        "document.querySelectorAll('table.explainer-metrics tr').length, "
        "document.querySelectorAll('.class-maps figure').length].join(',')));</script></body>"
    )
    probe.write_text(path.read_text().replace("</body>", script))
    for width in (600, 1000):
        dom = chromium(
            probe.resolve().as_uri(), tmp_path, "--dump-dom", "--virtual-time-budget=5000",
            f"--window-size={width},900",
        ).stdout  # fmt: skip
        found = re.search(r'data-probe="(\d+),(\d+),(\d+),(\d+)"', dom)
        assert found, dom[:500]
        scroll_width, inner_width, table_rows, class_figures = map(int, found.groups())
        assert inner_width == width and scroll_width <= inner_width
        assert table_rows == 4 and class_figures == 1 + NUM_CLASSES
