"""Transforms carry boxes and masks with the image; normalisation; channel conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scouter.data import (
    Sample,
    boxes_to_mask,
    build_transforms,
    create_dataset,
    mask_to_box,
    resolve_normalization,
)
from scouter.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def _rect_sample(height=80, width=100, box=(10, 20, 40, 60)) -> Sample:
    rng = np.random.default_rng(0)
    mask = boxes_to_mask(np.array([box], np.float32), height, width)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Sample(image, 3, np.array([box], np.float32), mask, "rect")


def test_eval_resize_scales_boxes_by_hand_computed_factors():
    out = build_transforms((50, 50))(_rect_sample())
    # x * 50/100, y * 50/80
    torch.testing.assert_close(out["boxes"], torch.tensor([[5.0, 12.5, 20.0, 37.5]]))
    assert out["image"].shape == (3, 50, 50) and out["image"].dtype == torch.float32
    assert out["label"] == 3 and out["id"] == "rect"


def test_resized_mask_equals_rasterised_resized_box():
    for size, box in (
        ((50, 50), (10, 20, 40, 60)),
        ((37, 61), (3, 7, 91, 33)),
        ((260, 260), (0, 0, 100, 80)),
    ):
        out = build_transforms(size)(_rect_sample(box=box))
        np.testing.assert_array_equal(out["mask"].numpy(), boxes_to_mask(out["boxes"], *size))


def test_cub_sample_before_and_after_eval_transform(cub_root):
    sample = create_dataset("cub200", cub_root, "train")[0]  # 40x30 image, box (10, 5, 30, 20)
    np.testing.assert_array_equal(sample.boxes, [[10, 5, 30, 20]])
    out = build_transforms(20)(sample)
    torch.testing.assert_close(out["boxes"], torch.tensor([[5.0, 10 / 3, 15.0, 40 / 3]]))
    np.testing.assert_array_equal(out["mask"].numpy(), boxes_to_mask(out["boxes"], 20, 20))


def test_imagenet_sample_before_and_after_eval_transform(imagenet_root):
    ds = create_dataset("imagenet", imagenet_root, "val")
    sample = ds[0]  # ILSVRC2012_val_00000001: 50x40, box (5, 4, 25, 20)
    out = build_transforms(20)(sample)
    torch.testing.assert_close(out["boxes"], torch.tensor([[2.0, 2.0, 10.0, 10.0]]))


def test_resize_crop_option_shifts_and_clips_boxes():
    sample = _rect_sample(height=80, width=120, box=(40, 20, 72, 60))
    out = build_transforms(40, eval_resize="resize_crop", crop_pct=0.8)(sample)
    # shorter side 80 -> 50 (x0.625): 75x50, centre crop 40x40 at x0 = 17, y0 = 5
    torch.testing.assert_close(out["boxes"], torch.tensor([[8.0, 7.5, 28.0, 32.5]]))
    np.testing.assert_array_equal(out["mask"].numpy(), boxes_to_mask(out["boxes"], 40, 40))
    outside = build_transforms(40, eval_resize="resize_crop", crop_pct=0.8)(
        _rect_sample(80, 120, (0, 0, 20, 80))
    )
    assert outside["boxes"].shape == (0, 4)  # left of the crop: dropped


def test_train_augmentation_moves_boxes_and_masks_together():
    tf = build_transforms(64, train=True, augment=True, blur=True, seed=1)
    sample = _rect_sample()
    changed = 0
    for _ in range(40):
        out = tf(sample)
        mask = out["mask"].numpy()
        if out["boxes"].shape[0] == 0:
            assert mask.sum() == 0
            continue
        tight = mask_to_box(mask)[0]
        # rotation makes the box the enclosing box of the rotated corners: allow 1.5 px
        np.testing.assert_allclose(out["boxes"][0].numpy(), tight, atol=1.5)
        changed += not np.allclose(out["boxes"][0].numpy(), [6.4, 16.0, 25.6, 48.0])
    assert changed > 10  # augmentation actually happened


def test_normalisation_sources_and_values():
    assert resolve_normalization() == (IMAGENET_MEAN, IMAGENET_STD)
    assert resolve_normalization("vit_small_patch16_224") == ((0.5,) * 3, (0.5,) * 3)
    mean, std = resolve_normalization("resnet18", in_chans=1)
    assert mean == pytest.approx((np.mean(IMAGENET_MEAN),)) and std == pytest.approx(
        (np.mean(IMAGENET_STD),)
    )
    assert resolve_normalization("resnet18", mean=[0.1, 0.2, 0.3]) == (
        (0.1, 0.2, 0.3),
        IMAGENET_STD,
    )
    assert resolve_normalization(default=((0.1307,), (0.3081,)), in_chans=3) == (
        (0.1307,) * 3,
        (0.3081,) * 3,
    )
    with pytest.raises(ValueError, match="unknown timm model"):
        resolve_normalization("not_a_model_xyz")
    white = Sample(np.full((8, 8, 3), 255, np.uint8), 0, id="w")
    image = build_transforms(8, mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 1.0])(white)["image"]
    torch.testing.assert_close(image[:, 0, 0], torch.tensor([1.0, 3.0, 1.0]))


def test_channel_conversion_gray_to_rgb_and_back():
    gray = Sample(np.full((6, 6, 1), 51, np.uint8), 0, id="g")
    rgb = build_transforms(6, mean=[0, 0, 0], std=[1, 1, 1])(gray)["image"]
    assert rgb.shape == (3, 6, 6) and torch.allclose(rgb, torch.full_like(rgb, 0.2))
    colour = Sample(np.dstack([np.full((6, 6), v, np.uint8) for v in (255, 0, 0)]), 0, id="r")
    one = build_transforms(6, in_chans=1, mean=[0], std=[1])(colour)["image"]
    assert one.shape == (1, 6, 6)
    assert one[0, 0, 0].item() == pytest.approx(76 / 255, abs=1 / 255)  # luminance 0.299 * 255
    assert build_transforms(6)(gray)["mask"] is None


def test_identity_size_shortcut_equals_the_albumentations_path():
    sample = _rect_sample(height=40, width=40, box=(-5, 3, 20, 50))
    fast = build_transforms(40)(sample)
    slow_tf = build_transforms(40)
    slow_tf.identity_size = None
    slow = slow_tf(sample)
    torch.testing.assert_close(fast["image"], slow["image"])
    torch.testing.assert_close(fast["boxes"], slow["boxes"])
    torch.testing.assert_close(fast["boxes"], torch.tensor([[0.0, 3.0, 20.0, 40.0]]))
    assert torch.equal(fast["mask"], slow["mask"])


@pytest.mark.parametrize("size", [0, -5, (32, 0), [-1, 32], (32,), (32, 32, 3), 32.5, True, "64"])
def test_invalid_image_size_is_rejected_naming_the_setting(size):
    with pytest.raises(ValueError, match=r"image_size must be an integer >= 1 .* pair \[H, W\]"):
        build_transforms(size)


@pytest.mark.parametrize(
    "size, expected", [(24, (24, 24)), ((24, 40), (24, 40)), ([8, 16], (8, 16))]
)
def test_valid_image_sizes_set_the_output_size(size, expected):
    transform = build_transforms(size, mean=[0.5] * 3, std=[0.5] * 3)
    assert tuple(transform(_rect_sample())["image"].shape[-2:]) == expected
