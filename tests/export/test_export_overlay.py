import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image

from scouter.export import explanation_grid, overlay_map, save_overlays, to_uint8_image


def test_overlay_is_alpha_blend_of_jet_colour_and_image():
    image = np.full((4, 6, 3), 100, dtype=np.uint8)
    out = overlay_map(image, torch.ones(2, 3))  # jet(1.0) = (0.5, 0, 0)
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [round(0.4 * 127.5 + 60), 60, 60]


def test_overlay_matches_reference_pil_pipeline_within_rounding():
    # docs/method.md#visualisation: uint8 map -> jet LUT -> alpha 0.4 -> PIL alpha_composite
    # over the RGBA image.
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    levels = rng.integers(0, 256, (8, 8))
    lut = (colormaps["jet"](np.arange(256))[:, :3] * 255).round().astype(np.uint8)
    rgba = np.concatenate([lut[levels], np.full((8, 8, 1), int(0.4 * 255), np.uint8)], -1)
    reference = Image.alpha_composite(
        Image.fromarray(image).convert("RGBA"), Image.fromarray(rgba, "RGBA")
    )
    ours = overlay_map(image, torch.from_numpy(levels / 255.0))
    diff = np.abs(ours.astype(int) - np.asarray(reference)[..., :3].astype(int))
    assert diff.max() <= 2


def test_overlay_upsamples_map_bilinearly_to_image_size():
    image = torch.zeros(3, 4, 4)  # float (3, H, W) in [0, 1]
    saliency = torch.tensor([[0.0, 1.0]]).expand(2, 2)
    out = overlay_map(image, saliency, alpha=1.0)
    # bilinear 2->4 columns (align_corners=False): 0, 0.25, 0.75, 1
    expected = colormaps["jet"](np.array([0.0, 0.25, 0.75, 1.0]))[:, :3] * 255
    np.testing.assert_array_equal(out[0], np.round(expected).astype(np.uint8))


def test_to_uint8_image_accepts_float_chw_and_gray():
    assert to_uint8_image(torch.ones(3, 2, 5)).shape == (2, 5, 3)
    assert to_uint8_image(np.zeros((2, 5))).shape == (2, 5, 3)
    with pytest.raises(ValueError, match="image must be"):
        to_uint8_image(np.zeros((2, 5, 4)))


def test_save_overlays_writes_one_png_per_image_and_class(tmp_path):
    images = torch.rand(2, 3, 8, 8)
    maps = torch.rand(2, 3, 4, 4)
    paths = save_overlays(tmp_path, images, maps, ["img/0", "img1"], class_names=["a", "b", "c"])
    assert [p.name for p in paths] == [f"img_0_{c}.png" for c in "abc"] + [
        f"img1_{c}.png" for c in "abc"
    ]
    expected = overlay_map(images[1], maps[1, 2])
    np.testing.assert_array_equal(np.asarray(Image.open(paths[-1])), expected)
    only = save_overlays(tmp_path / "sel", images, maps, ["x", "y"], classes=torch.tensor([2, 0]))
    assert [p.name for p in only] == ["x_2.png", "y_0.png"]


def test_explanation_grid_puts_scouter_plus_and_minus_side_by_side(tmp_path):
    images = torch.rand(2, 3, 16, 16)
    maps = {
        "Grad-CAM": torch.rand(2, 4, 4),
        "SCOUTER−": torch.rand(2, 1, 4, 4),
        "IG": torch.rand(2, 4, 4),
        "SCOUTER+": torch.rand(2, 4, 4),
    }
    from scouter.export.overlay import _column_order

    assert _column_order(list(maps)) == ["SCOUTER+", "SCOUTER−", "Grad-CAM", "IG"]
    path = explanation_grid(tmp_path / "grid.png", images, maps, row_labels=["a", "b"])
    grid = Image.open(path)
    assert grid.size == (5 * 200, 2 * 200)
    assert len(np.unique(np.asarray(grid.convert("RGB")).reshape(-1, 3), axis=0)) > 100
