"""Does a model take the data's images? Channel and size checks run before any work, with the fix.

The data module converts every image to ``data.in_chans`` channels (1 or 3: grayscale is
repeated, RGB becomes luminance) and resizes it to ``data.image_size``, so comparing those two
settings with the model is enough — no image has to be read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

DATA_CHANNELS = (1, 3)  # what data.in_chans can convert images to (scouter.data.transforms)


def model_channels(model: nn.Module) -> int | None:
    """The channel count the model's backbone takes (``stem: mnist`` means 1), or ``None``."""
    backbone = getattr(model, "backbone", model)
    channels = getattr(backbone, "in_chans", None)
    return int(channels) if channels is not None else None


def config_channels(config: Mapping[str, Any]) -> int:
    """The channel count a stored model config takes (``stem: mnist`` forces 1)."""
    if config.get("stem") == "mnist":
        return 1
    return int(config.get("in_chans", 3) or 3)


def _channel_fix(expected: int, given: int, other: str) -> str:
    if expected in DATA_CHANNELS:
        converted = "grayscale is repeated" if expected == 3 else "RGB becomes luminance"
        return (
            f"set data.in_chans: {expected} (images are converted: {converted}) or use {other} "
            f"{given}-channel images"
        )
    return (
        f"data.in_chans can only be 1 or 3, so use {other} 1- or 3-channel images (this one "
        f"takes {expected})"
    )


def channel_mismatch(model: nn.Module, data_in_chans: int) -> str | None:
    """Why the model cannot take ``data_in_chans``-channel images, with the fix; else ``None``."""
    expected = model_channels(model)
    if expected is None or int(data_in_chans) == expected:
        return None
    stem = getattr(getattr(model, "backbone", None), "stem", None)
    why = " (its stem: mnist takes 1-channel images)" if stem == "mnist" else ""
    return (
        f"the model expects {expected}-channel images{why} but data.in_chans is "
        f"{data_in_chans}: " + _channel_fix(expected, int(data_in_chans), "a model trained on")
    )


def fixed_input_size(model: nn.Module) -> tuple[int, int] | None:
    """The only ``(H, W)`` the backbone takes, or ``None`` when it takes other sizes.

    Token models whose patch embedding is strict (ViT/DeiT/Swin built without
    ``dynamic_img_size``) fail on any other size; CNNs take any size.
    """
    backbone = getattr(model, "backbone", model)
    timm_model = getattr(backbone, "model", backbone)
    patch_embed = getattr(timm_model, "patch_embed", None)
    if patch_embed is None or not getattr(patch_embed, "strict_img_size", False):
        return None
    size = getattr(patch_embed, "img_size", None)
    if size is None:
        return None
    return (int(size[0]), int(size[1]))


def size_mismatch(model: nn.Module, image_size: int | tuple[int, int] | list[int]) -> str | None:
    """Why the model cannot take ``image_size`` inputs, with the fix; else ``None``."""
    fixed = fixed_input_size(model)
    if fixed is None or image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if tuple(int(s) for s in size) == fixed:
        return None
    name = getattr(getattr(model, "backbone", model), "name", "the backbone")
    shown = fixed[0] if fixed[0] == fixed[1] else list(fixed)
    asked = size[0] if size[0] == size[1] else list(size)
    return (
        f"{name} takes only {fixed[0]}x{fixed[1]} images (its patch embedding has a fixed size) "
        f"but data.image_size is {asked}: set data.image_size: {shown}, or build the model for "
        f"that size (model backbone_kwargs: {{img_size: {asked}}} or {{dynamic_img_size: true}})"
    )


def state_channels(expected: Mapping[str, Any], state: Mapping[str, Any]) -> int | None:
    """The input channels of a backbone state whose stem conv differs from ``expected`` only there.

    Looks at the first 4-D weight (the stem convolution) of ``expected``; ``None`` when it agrees
    or differs in more than its input channels.
    """
    for key, tensor in expected.items():
        if getattr(tensor, "ndim", 0) != 4:
            continue
        other = state.get(key)
        if other is None or getattr(other, "ndim", 0) != 4:
            return None
        same_rest = other.shape[0] == tensor.shape[0] and other.shape[2:] == tensor.shape[2:]
        if same_rest and other.shape[1] != tensor.shape[1]:
            return int(other.shape[1])
        return None
    return None
