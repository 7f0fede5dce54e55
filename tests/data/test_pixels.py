"""Images of any bit depth read by their range (issue 29, items 4 and 13).

16-bit and float images used to go through PIL's ``convert``, which clips 16-bit values to 255
and reads floats as 0–255; a 0×0 image reached OpenCV's assertion; an image over Pillow's
decompression-bomb limit was called corrupt.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from scouter.data import ImageTooLargeError, ImageValueError, create_dataset, preprocess
from scouter.data.base import decode_image
from scouter.data_config import DataConfig

GREY = DataConfig((16, 16), 1, (0.5,), (0.25,))
RGB = DataConfig((16, 16), 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def _eight_bit(seed: int = 0, shape=(20, 24)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_a_16_bit_pil_image_is_read_as_0_to_65535():
    values = _eight_bit()
    sixteen = Image.fromarray(values.astype(np.uint16) * 257)  # k -> 257 k: the same image
    assert sixteen.mode == "I;16"
    expected = preprocess(GREY, Image.fromarray(values))
    ours = preprocess(GREY, sixteen)
    assert torch.equal(ours, expected)
    # Near-white before (clipped to 255: mean (1 - 0.5) / 0.25 = 2.0); now the image's own mean.
    assert abs(ours.mean().item() - expected.mean().item()) < 1e-6
    assert ours.mean().item() < 0.2
    # And as a 3-channel model's input, the grey image repeated.
    assert torch.equal(preprocess(RGB, sixteen), preprocess(RGB, Image.fromarray(values)))


def test_16_bit_values_round_to_the_nearest_8_bit_value():
    values = np.array([[0, 128, 129, 257, 65535, 32896]], np.uint16)
    from scouter.data.pixels import array_to_uint8

    assert array_to_uint8(values).tolist() == [[0, 0, 1, 1, 255, 128]]


def test_a_float_pil_image_is_read_as_0_to_1():
    values = _eight_bit(1)
    floats = Image.fromarray((values / 255.0).astype(np.float32))
    assert floats.mode == "F"
    expected = preprocess(GREY, Image.fromarray(values))
    assert torch.equal(preprocess(GREY, floats), expected)
    # numpy arrays follow the same rule: uint16 as 0-65535, float as 0-1.
    assert torch.equal(preprocess(GREY, values.astype(np.uint16) * 257), expected)
    assert torch.equal(preprocess(GREY, values / 255.0), expected)


def test_a_float_image_outside_0_to_1_is_refused_with_the_fix():
    floats = Image.fromarray(_eight_bit(2).astype(np.float32))  # 0-255 held as floats
    with pytest.raises(ImageValueError, match=r"PIL mode F.*0\.0–1\.0.*astype\(np\.uint8\)"):
        preprocess(GREY, floats)
    with pytest.raises(ImageValueError, match=r"image 1 .*NaN"):
        preprocess(GREY, [np.zeros((4, 4), np.float32), np.full((4, 4), np.nan, np.float32)])


def test_32_bit_integer_images_are_read_only_inside_0_to_255():
    values = _eight_bit(3)
    in_range = Image.fromarray(values.astype(np.int32))
    assert in_range.mode == "I"
    assert torch.equal(preprocess(GREY, in_range), preprocess(GREY, Image.fromarray(values)))
    wide = Image.fromarray(values.astype(np.int32) * 200)
    with pytest.raises(ImageValueError, match=r"no fixed range.*/ 257"):
        preprocess(GREY, wide)


def test_an_empty_image_is_refused_by_name_not_by_opencv():
    with pytest.raises(ValueError, match=r"the image is empty \(0x0 pixels\)"):
        preprocess(GREY, Image.new("L", (0, 0)))
    with pytest.raises(ValueError, match=r"image 1 is empty \(5x0 pixels\)"):
        preprocess(GREY, [np.zeros((4, 4), np.uint8), np.zeros((0, 5), np.uint8)])


def test_a_16_bit_png_in_a_dataset_is_scaled_not_clipped(tmp_path):
    values = _eight_bit(4)
    path = tmp_path / "deep.png"
    Image.fromarray(values.astype(np.uint16) * 257).save(path)
    assert Image.open(path).mode == "I;16"
    assert np.array_equal(decode_image(path, "L")[..., 0], values)
    assert np.array_equal(decode_image(path)[..., 1], values)


def _folder_with_one_large_image(root):
    for split in ("train", "val"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            Image.fromarray(_eight_bit(5, (40, 40))).save(root / split / name / "x.png")


def test_an_image_over_the_decompression_limit_says_so_and_how_to_allow_it(tmp_path, monkeypatch):
    _folder_with_one_large_image(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)  # 40x40 = 1600 > 2 x 400: refused
    monkeypatch.delenv("SCOUTER_MAX_IMAGE_PIXELS", raising=False)
    path = tmp_path / "train" / "a" / "x.png"
    with pytest.raises(ImageTooLargeError) as caught:
        decode_image(path)
    message = str(caught.value)
    assert str(path) in message and "not corrupt" in message
    assert "SCOUTER_MAX_IMAGE_PIXELS=none" in message and "MAX_IMAGE_PIXELS = None" in message
    assert "re-extract" not in message
    dataset = create_dataset("folder", tmp_path, split="train")
    with pytest.raises(ImageTooLargeError, match="decompression-bomb"):
        dataset[0]
    # The fix the message gives works.
    monkeypatch.setenv("SCOUTER_MAX_IMAGE_PIXELS", "none")
    assert dataset[0].image.shape == (40, 40, 3)
    monkeypatch.setenv("SCOUTER_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="not a number of pixels"):
        decode_image(path)
