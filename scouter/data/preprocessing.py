"""A model's own input pipeline: :func:`transform_for` and :func:`preprocess`.

timm's convention (``resolve_data_config`` + ``create_transform``) in one call: the transform is
built from the :class:`~scouter.data_config.DataConfig` stored with the model, so images are
resized, converted and normalised exactly as during training's evaluation.

Example:
    >>> model = scouter.load_model("checkpoints/.../last.ckpt")  # doctest: +SKIP
    >>> transform = transform_for(model)  # Sample -> dict(image (C, H, W), label, boxes, ...)
    >>> images = preprocess(model, [Image.open("a.png"), Image.open("b.png")])  # (2, C, H, W)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from scouter.data.pixels import SIXTEEN_BIT_MODES, array_to_uint8, pil_to_uint8
from scouter.data.sample import Sample
from scouter.data.transforms import SampleTransform, build_transforms
from scouter.data_config import DataConfig, MissingDataConfigError, no_data_config_message


def data_config_of(model: Any) -> DataConfig:
    """The :class:`DataConfig` of a model (its ``data_config``), a DataConfig, or its dict form.

    Raises:
        MissingDataConfigError: the model carries none (the message says how to give one).
    """
    if isinstance(model, DataConfig):
        return model
    if isinstance(model, Mapping):
        return DataConfig.from_dict(model)
    config = getattr(model, "data_config", None)
    if config is None:
        what = f"this {type(model).__name__}" if hasattr(model, "forward") else repr(model)
        raise MissingDataConfigError(no_data_config_message(what))
    if isinstance(config, Mapping):
        return DataConfig.from_dict(config)
    return config


def transform_for(
    model: Any, *, train: bool = False, augment: bool = False, seed: int | None = None
) -> SampleTransform:
    """The transform matching ``model``'s stored data config (timm's ``create_transform``).

    Args:
        model: a :class:`~scouter.models.classifier.Classifier` (uses ``model.data_config``), a
            :class:`DataConfig` or its dict form.
        train: the training pipeline (with ``augment``: the reference's augmentation).
        augment: see :func:`~scouter.data.build_transforms`.
        seed: seed of the augmentation.

    Returns:
        A :class:`~scouter.data.SampleTransform`: :class:`~scouter.data.Sample` → dict with
        ``image (C, H, W)`` normalised float, ``label``, ``boxes (N, 4)``, ``mask``, ``id``; with
        ``train=False`` equal, value for value, to the eval transform the model was trained with.

    Raises:
        MissingDataConfigError: the model carries no data config.
    """
    config = data_config_of(model)
    return build_transforms(train=train, augment=augment, seed=seed, **config.transform_kwargs())


# PIL modes of one channel: read as grey, whatever their depth.
_GREY_MODES = ("1", "L", "LA", "La", "I", "F", *SIXTEEN_BIT_MODES)


def _as_arrays(images: Any) -> list[np.ndarray]:
    from PIL import Image

    if isinstance(images, (Image.Image, Sample)):
        images = [images]
    elif isinstance(images, np.ndarray):
        if images.ndim == 4:  # (B, H, W, C)
            images = list(images)
        elif images.ndim in (2, 3):
            images = [images]
        else:
            raise ValueError(
                f"images must be (H, W), (H, W, C) or (B, H, W, C) arrays, got shape {images.shape}"
            )
    elif isinstance(images, torch.Tensor):
        raise TypeError(
            "preprocess takes raw images (PIL images or (H, W[, C]) numpy arrays), not "
            "tensors: a tensor is usually preprocessed already"
        )
    if not isinstance(images, Sequence) or not images:
        raise ValueError("images must be a PIL image, a numpy array or a non-empty list of them")
    arrays = []
    for index, item in enumerate(images):
        what = "the image" if len(images) == 1 else f"image {index}"
        if isinstance(item, Sample):
            item = item.image
        if isinstance(item, Image.Image):
            grey = item.mode in _GREY_MODES
            item = pil_to_uint8(item, "L" if grey else "RGB", what=what)
        item = np.asarray(item)
        if item.ndim == 3 and item.shape[2] not in (1, 3):
            raise ValueError(f"an image must have 1 or 3 channels last, got shape {item.shape}")
        if item.ndim not in (2, 3):
            raise ValueError(f"an image must be (H, W) or (H, W, C), got shape {item.shape}")
        if item.shape[0] == 0 or item.shape[1] == 0:
            raise ValueError(
                f"{what} is empty ({item.shape[1]}x{item.shape[0]} pixels): pass an image of at "
                "least 1x1 pixels (an empty crop or a failed read gives this)"
            )
        arrays.append(array_to_uint8(item, what=what))
    return arrays


def preprocess(model: Any, images: Any) -> torch.Tensor:
    """Raw images → the model's input batch ``(B, C, H, W)``, through :func:`transform_for`.

    Args:
        model: a classifier with a data config, a :class:`DataConfig` or its dict form.
        images: a PIL image, a numpy array ``(H, W)``, ``(H, W, C)`` or ``(B, H, W, C)``, a
            :class:`~scouter.data.Sample`, or a list of them (sizes may differ). Pixels are read
            by their type's range (:mod:`scouter.data.pixels`): 8-bit as they are, 16-bit
            (``I;16``, uint16) as 0–65535, float (``F``, float arrays) as 0.0–1.0.

    Returns:
        ``(B, C, H, W)`` float32, resized, converted to the model's channels and normalised.

    Raises:
        ImageValueError: pixel values with no clear 0–255 reading (a float image outside 0–1,
            32-bit integers outside 0–255), naming the image and the fix.
        ValueError: an empty (0-pixel) image, or an array of no image shape.
    """
    transform = transform_for(model)
    arrays = _as_arrays(images)
    return torch.stack([transform(Sample(image=a, label=0))["image"] for a in arrays])
