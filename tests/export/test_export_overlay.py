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


def test_explanation_grid_tiles_are_the_overlays(tmp_path, monkeypatch):
    """Every cell of grid.png shows exactly its image or overlay, in the documented order.

    The figure's axes boxes are read (in PNG pixels) when it is saved; each source pixel of a tile
    is then sampled at 0.3, 0.5 and 0.7 of its extent (the ~10x upscaled image is drawn
    nearest-neighbour, so each block is uniform; the margin of 3 PNG pixels absorbs matplotlib's
    pixel snapping) and compared with the array the cell must show: the input image in column 0,
    then SCOUTER+, SCOUTER−, the others.
    """
    from matplotlib.figure import Figure

    boxes: dict[tuple[int, int], tuple[float, float, float, float]] = {}
    original_savefig = Figure.savefig

    def recording_savefig(self, *args, **kwargs):
        result = original_savefig(self, *args, **kwargs)
        for ax in self.axes:  # positions after tight_layout and the aspect adjustment
            spec = ax.get_subplotspec()
            boxes[spec.rowspan.start, spec.colspan.start] = ax.get_window_extent().bounds
        return result

    monkeypatch.setattr(Figure, "savefig", recording_savefig)
    torch.manual_seed(0)
    height, width = 16, 12  # non-square on purpose: rows and columns cannot be swapped
    images = torch.rand(2, 3, height, width)
    maps = {
        "Grad-CAM": torch.rand(2, 4, 3),
        "SCOUTER−": torch.rand(2, 1, 4, 3),
        "SCOUTER+": torch.rand(2, 8, 6),
    }
    path = explanation_grid(tmp_path / "grid.png", images, maps)
    grid = np.asarray(Image.open(path).convert("RGB"))
    assert sorted(boxes) == [(r, c) for r in range(2) for c in range(4)]
    columns = ["SCOUTER+", "SCOUTER−", "Grad-CAM"]
    for (r, c), (x0, y0, box_w, box_h) in boxes.items():
        if c == 0:
            expected = to_uint8_image(images[r])
        else:
            saliency = maps[columns[c - 1]][r]
            expected = overlay_map(images[r], saliency.reshape(saliency.shape[-2:]))
        assert box_w / width == pytest.approx(box_h / height, rel=1e-3)  # aspect kept
        assert box_w / width > 5  # upscaled: each source pixel is a block of PNG pixels
        top = grid.shape[0] - (y0 + box_h)  # window extents count from the bottom
        for offset in (0.3, 0.5, 0.7):
            rows = np.floor(top + (np.arange(height) + offset) * box_h / height).astype(int)
            cols = np.floor(x0 + (np.arange(width) + offset) * box_w / width).astype(int)
            np.testing.assert_array_equal(
                grid[np.ix_(rows, cols)], expected, err_msg=f"cell ({r}, {c}), offset {offset}"
            )
