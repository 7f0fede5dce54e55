import pytest
import torch
import torch.nn.functional as F

from scouter.metrics import prepare_maps, reference_area, reference_uint8_maps, select_class_maps


def test_prepare_applies_relu_and_per_map_minmax():
    maps = torch.tensor([[[[-2.0, 0.0], [1.0, 3.0]], [[5.0, 5.0], [6.0, 7.0]]]])  # (1, 2, 2, 2)
    out = prepare_maps(maps)
    expected = torch.tensor([[[[0.0, 0.0], [1 / 3, 1.0]], [[0.0, 0.0], [0.5, 1.0]]]])
    torch.testing.assert_close(out, expected)


def test_constant_map_becomes_zeros():
    maps = torch.full((2, 3, 4, 4), 0.7)
    maps[1, 2] = -1.0  # all negative -> all zero after ReLU -> constant
    assert torch.equal(prepare_maps(maps), torch.zeros_like(maps))


def test_prepare_upsamples_bilinearly_without_corner_alignment():
    maps = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    out = prepare_maps(maps, size=(20, 17))
    up = F.interpolate(maps, size=(20, 17), mode="bilinear", align_corners=False)
    low, high = up.amin(dim=(2, 3), keepdim=True), up.amax(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(out, (up - low) / (high - low))
    assert out.dtype == torch.float64 and out.shape == (2, 3, 20, 17)


def test_select_class_maps_picks_each_images_class():
    maps = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    out = select_class_maps(maps, torch.tensor([2, 0]))
    assert torch.equal(out[0, 0], maps[0, 2]) and torch.equal(out[1, 0], maps[1, 0])
    with pytest.raises(ValueError, match="classes"):
        select_class_maps(maps, None)


def test_reference_uint8_truncates_joint_minmax():
    # image-wide min 0, max 2: values 0.5 -> 63.75 -> 63 (truncation, not rounding)
    maps = torch.tensor([[[[0.0, 0.5]], [[1.0, 2.0]]]])  # (1, 2, 1, 2)
    assert reference_uint8_maps(maps).tolist() == [[[[0, 63]], [[127, 255]]]]
    areas = reference_area(maps)
    torch.testing.assert_close(areas, torch.tensor([[63 / 510, (127 + 255) / 510]]))
    torch.testing.assert_close(reference_area(maps, uint8=False), torch.tensor([[0.125, 0.75]]))
    torch.testing.assert_close(reference_area(maps, torch.tensor([1])), torch.tensor([382 / 510]))


def test_reference_uint8_reproduces_original_visualisation(oracle_dir):
    data = torch.load(oracle_dir / "r18_s1_pos_p1_k1.pt", weights_only=True)
    assert torch.equal(reference_uint8_maps(data["attn_maps"]), data["vis_uint8"])
    expected = data["vis_uint8"].double().sum(dim=(2, 3)) / (9 * 9 * 255)
    torch.testing.assert_close(reference_area(data["attn_maps"].double()), expected)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_maps_prepare_to_nan_never_to_a_valid_map(bad):
    maps = torch.rand(2, 3, 4, 4)
    maps[1, 2, 0, 0] = bad  # -inf would become a valid 0 through the ReLU
    out = prepare_maps(maps, size=(8, 8))
    assert out[1, 2].isnan().all()
    mask = torch.ones(2, 3, dtype=torch.bool)
    mask[1, 2] = False
    assert torch.isfinite(out[mask]).all()
    torch.testing.assert_close(out[0], prepare_maps(maps[:1], size=(8, 8))[0])


@pytest.mark.parametrize("uint8", [True, False])
def test_reference_area_of_a_non_finite_image_is_nan(uint8):
    maps = torch.rand(2, 3, 4, 4)
    maps[0, 1, 2, 2] = float("nan")
    areas = reference_area(maps, uint8=uint8)
    assert areas[0].isnan().all() and torch.isfinite(areas[1]).all()
    with pytest.raises(ValueError, match="NaN or inf"):
        reference_uint8_maps(maps)
