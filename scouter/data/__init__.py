"""Datasets in their official layouts, box- and mask-aware transforms, and the DataModule.

Public API:
    create_dataset(name, root=None, split="train", **options) -> Dataset of Sample
    list_datasets() -> list[str]
    Sample                      raw item: image (H, W, C) uint8, label, boxes (N, 4) xyxy, mask, id
    build_transforms(image_size, train=..., augment=..., timm_model=..., ...) -> Sample -> dict
    collate_samples(items) -> batch dict (image, label, boxes list, id list, mask if all have one)
    ScouterDataModule(dataset, root, image_size, batch_size, ...)   LightningDataModule
    transform_for(model) -> Sample -> dict    the eval transform of the model's stored DataConfig
    preprocess(model, images) -> (B, C, H, W) PIL images / uint8 arrays as the model's input
    DataConfig                  resolved preprocessing (size, channels, mean, std, eval resize)

The transforms (albumentations) and the DataModule (Lightning) are imported on first use, so
reading a dataset does not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Importing the readers registers them.
from scouter.data import acrima, composites, context, cub, folder, idx, imagenet  # noqa: F401
from scouter.data.base import CorruptImageError, DatasetLayoutError, ImageTooLargeError
from scouter.data.composites import CompositesDataset
from scouter.data.cub import CubDataset
from scouter.data.imagenet import ImageNetDataset
from scouter.data.pixels import ImageValueError
from scouter.data.registry import create_dataset, list_datasets, register_dataset
from scouter.data.sample import Sample, boxes_to_mask, clip_boxes, collate_samples, mask_to_box
from scouter.data.splits import stratified_split
from scouter.data_config import DataConfig, MissingDataConfigError

_LAZY = {
    "ScouterDataModule": "scouter.data.datamodule",
    "SampleTransform": "scouter.data.transforms",
    "TransformedDataset": "scouter.data.transforms",
    "build_transforms": "scouter.data.transforms",
    "resolve_normalization": "scouter.data.transforms",
    "data_config_of": "scouter.data.preprocessing",
    "preprocess": "scouter.data.preprocessing",
    "transform_for": "scouter.data.preprocessing",
}

if TYPE_CHECKING:
    from scouter.data.datamodule import ScouterDataModule
    from scouter.data.preprocessing import data_config_of, preprocess, transform_for
    from scouter.data.transforms import (
        SampleTransform,
        TransformedDataset,
        build_transforms,
        resolve_normalization,
    )

__all__ = [
    "CompositesDataset",
    "CorruptImageError",
    "ImageTooLargeError",
    "ImageValueError",
    "CubDataset",
    "DataConfig",
    "DatasetLayoutError",
    "ImageNetDataset",
    "MissingDataConfigError",
    "Sample",
    "SampleTransform",
    "ScouterDataModule",
    "TransformedDataset",
    "boxes_to_mask",
    "build_transforms",
    "clip_boxes",
    "collate_samples",
    "create_dataset",
    "data_config_of",
    "list_datasets",
    "mask_to_box",
    "preprocess",
    "register_dataset",
    "resolve_normalization",
    "stratified_split",
    "transform_for",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scouter.data' has no attribute {name!r}")
