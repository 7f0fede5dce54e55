"""Albumentations pipelines that move boxes and masks with the image, and normalisation.

Eval (reference; docs/method.md#preprocessing-and-augmentation): resize to ``(H, W)`` without
keeping the aspect ratio and without a crop. The reference resized PIL images bilinearly with
antialiasing; here downscaling uses ``INTER_AREA`` (OpenCV's antialiased choice) and upscaling
bilinear. ``eval_resize="resize_crop"`` instead resizes the shorter side to ``size / crop_pct``
and centre-crops (timm-style).

Train: the same resize, then with ``augment=True`` the reference's ``--aug``: horizontal flip,
vertical flip, affine (scale U(0.8, 1.0) per axis, translate x U(0, 0.1), y U(−0.1, 0.1) of the
size, rotation U(−10, 9)°) and Gaussian blur σ ~ U(0, 3), each with probability ½, **in a random
order** (imgaug's ``random_order=True``; albumentations' ``SomeOf`` keeps a fixed order, so one of
the 24 orders is drawn uniformly).

Geometry: boxes are ``pascal_voc`` (xyxy pixels), clipped to the output and dropped when nothing
is left; masks use centre-aligned nearest interpolation (``INTER_NEAREST_EXACT``), so a resized
box-shaped mask equals :func:`~scouter.data.sample.boxes_to_mask` of the resized box.
"""

from __future__ import annotations

import itertools
import numbers
import random
from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from scouter.data.sample import Sample, clip_boxes
from scouter.data.sampling import SeededIndex
from scouter.data_config import IMAGENET_MEAN, IMAGENET_STD, fit_channels

# PCG64 state for a per-sample seed (SampleTransform.reseed): an odd 128-bit multiplier and a
# fixed odd stream increment.
_STATE_MULTIPLIER = 0x9E3779B97F4A7C15F39CC0605CEDC835
_PCG_INCREMENT = 0xDA3E39CB94B95BDB


def check_image_size(image_size: Any, name: str = "image_size") -> tuple[int, int]:
    """``(H, W)`` from ``S`` or ``(H, W)``; anything but integers >= 1 fails naming ``name``."""

    def positive(value: Any) -> bool:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1

    if positive(image_size):
        return int(image_size), int(image_size)
    if (
        isinstance(image_size, Sequence)
        and not isinstance(image_size, str)
        and len(image_size) == 2
        and all(positive(v) for v in image_size)
    ):
        return int(image_size[0]), int(image_size[1])
    raise ValueError(
        f"{name} must be an integer >= 1 (a square S×S input) or a pair [H, W] of integers >= 1, "
        f"got {image_size!r}; e.g. {name}: 224 or {name}: [224, 320]"
    )


def _fit_channels(values: Sequence[float], in_chans: int) -> tuple[float, ...]:
    return fit_channels(values, in_chans)


def resolve_normalization(
    timm_model: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    in_chans: int = 3,
    default: tuple[Sequence[float], Sequence[float]] | None = None,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std for the model input, one value per channel.

    Priority: explicit ``mean``/``std``, then the pretrained config of ``timm_model`` (read from
    timm's registry with ``timm.data.resolve_data_config``, nothing is downloaded or built), then
    ``default`` (a dataset's own statistics, e.g. MNIST's 0.1307/0.3081), then ImageNet's. Three
    values become their average for ``in_chans=1``; one value is repeated for three channels.
    """
    if timm_model is not None and (mean is None or std is None):
        import timm
        from timm.models import get_pretrained_cfg

        if not timm.is_model(timm_model) and get_pretrained_cfg(timm_model) is None:
            raise ValueError(f"unknown timm model {timm_model!r} — see timm.list_models()")
        cfg = get_pretrained_cfg(timm_model)
        data_cfg = timm.data.resolve_data_config(
            pretrained_cfg=cfg.to_dict() if cfg is not None else {}
        )
        mean = mean if mean is not None else data_cfg["mean"]
        std = std if std is not None else data_cfg["std"]
    if mean is None or std is None:
        base_mean, base_std = default if default is not None else (IMAGENET_MEAN, IMAGENET_STD)
        mean = mean if mean is not None else base_mean
        std = std if std is not None else base_std
    return _fit_channels(mean, in_chans), _fit_channels(std, in_chans)


def _resize_ops(
    height: int, width: int, eval_resize: str, crop_pct: float
) -> list[A.BasicTransform]:
    if eval_resize == "resize":
        return [
            A.Resize(
                height,
                width,
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST_EXACT,
                area_for_downscale="image",
            )
        ]
    if eval_resize == "resize_crop":
        shorter = int(round(min(height, width) / crop_pct))
        return [
            A.SmallestMaxSize(
                max_size=shorter,
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST_EXACT,
                area_for_downscale="image",
            ),
            A.CenterCrop(height, width),
        ]
    raise ValueError(
        f"eval_resize must be 'resize' (reference) or 'resize_crop', got {eval_resize!r}"
    )


def _reference_augment(blur: bool) -> A.BaseCompose:
    parts = [
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.Affine(
            scale={"x": (0.8, 1.0), "y": (0.8, 1.0)},
            translate_percent={"x": (0.0, 0.1), "y": (-0.1, 0.1)},
            rotate=(-10, 9),
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
            p=0.5,
        ),
    ]
    if blur:
        parts.append(A.GaussianBlur(blur_limit=0, sigma_limit=(0.0, 3.0), p=0.5))
    return A.OneOf(
        [A.Sequential(list(order), p=1.0) for order in itertools.permutations(parts)], p=1.0
    )


class SampleTransform:
    """Turn a raw :class:`Sample` into the model-input dict.

    Returns (from ``__call__``):
        ``image (C, H, W)`` float32 normalised, ``label`` int, ``boxes (N, 4)`` float32 xyxy in
        model-input pixels, ``mask (H, W)`` uint8 or None, ``id`` str.
    """

    def __init__(
        self,
        pipeline: A.Compose,
        mean: Sequence[float],
        std: Sequence[float],
        in_chans: int,
        identity_size: tuple[int, int] | None = None,
    ) -> None:
        self.pipeline = pipeline
        # For a resize-only pipeline, an image already at (H, W) is left as is without running
        # albumentations (its per-call overhead dominates for 64x64 composites on CPU).
        self.identity_size = identity_size
        self.in_chans = in_chans
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self._streams: tuple[np.random.Generator, random.Random] | None = None

    def set_seed(self, seed: int) -> None:
        """Reseed the augmentation (DataLoader workers call this so they do not all draw alike)."""
        self.pipeline.set_random_seed(seed)
        self._streams = None

    def reseed(self, seed: int) -> None:
        """Make the next call's augmentation a function of ``seed`` alone (cheap, per sample).

        albumentations' ``set_random_seed`` builds a generator per transform (about 2 ms for the
        reference augmentation); here one NumPy and one Python generator are shared by the whole
        pipeline once, and only their states are reset per sample (about 5 µs).
        """
        if self._streams is None:
            self._streams = (np.random.Generator(np.random.PCG64(0)), random.Random(0))
            self.pipeline.set_random_state(*self._streams)
        numpy_stream, python_stream = self._streams
        numpy_stream.bit_generator.state = {
            "bit_generator": "PCG64",
            # an odd multiplier spreads consecutive seeds over the 128-bit state
            "state": {"state": (seed * _STATE_MULTIPLIER) % 2**128, "inc": _PCG_INCREMENT},
            "has_uint32": 0,
            "uinteger": 0,
        }
        python_stream.seed(seed)

    def __call__(self, sample: Sample) -> dict[str, Any]:
        image = sample.image if sample.image.ndim == 3 else sample.image[..., None]
        if image.shape[2] == 1 and self.in_chans == 3:
            image = np.repeat(image, 3, axis=2)
        elif image.shape[2] == 3 and self.in_chans == 1:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]
        boxes = np.asarray(sample.boxes, np.float32).reshape(-1, 4)
        if self.identity_size is not None and image.shape[:2] == self.identity_size:
            out = {
                "image": image,
                "bboxes": clip_boxes(boxes, image.shape[1], image.shape[0])[0],
                "mask": sample.mask,
            }
        else:
            data = {"image": image, "bboxes": boxes, "box_index": np.arange(len(boxes))}
            if sample.mask is not None:
                data["mask"] = sample.mask
            out = self.pipeline(**data)
        image = out["image"] if out["image"].ndim == 3 else out["image"][..., None]
        tensor = (
            torch.from_numpy(np.require(image, requirements=["C", "W"]))
            .permute(2, 0, 1)
            .float()
            .div_(255.0)
        )
        tensor = (tensor - self.mean) / self.std
        mask = out.get("mask") if sample.mask is not None else None
        return {
            "image": tensor,
            "label": int(sample.label),
            "boxes": torch.as_tensor(np.asarray(out["bboxes"], np.float32).reshape(-1, 4)),
            "mask": torch.from_numpy(np.require(mask, np.uint8, ["C", "W"]))
            if mask is not None
            else None,
            "id": sample.id,
        }


def build_transforms(
    image_size: int | Sequence[int] = 260,
    *,
    train: bool = False,
    augment: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    timm_model: str | None = None,
    in_chans: int = 3,
    eval_resize: str = "resize",
    crop_pct: float = 0.875,
    blur: bool = True,
    default_normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    seed: int | None = None,
) -> SampleTransform:
    """Build the train or eval transform (see module docstring).

    Args:
        image_size: model input size S or ``(H, W)``.
        train: training pipeline (augmentation only when ``augment`` is also true).
        augment: the reference ``--aug`` augmentation, box- and mask-aware.
        mean: per-channel mean override (0–1 scale).
        std: per-channel std override.
        timm_model: take mean/std from this timm model's pretrained config.
        in_chans: 1 or 3; images are converted (gray replicated, RGB to luminance).
        eval_resize: ``resize`` (reference) or ``resize_crop``.
        crop_pct: for ``resize_crop``: shorter side resized to ``S / crop_pct``.
        blur: include the Gaussian blur of the reference augmentation.
        default_normalization: a dataset's own ``(mean, std)`` used when nothing else is given.
        seed: seed of the augmentation's random generator.

    Returns:
        A :class:`SampleTransform`: ``Sample`` → dict with ``image (C, H, W)`` normalised float,
        ``label``, ``boxes (N, 4)`` in model-input pixels, ``mask (H, W)`` or None, ``id``.

    Example:
        >>> tf = build_transforms(64, timm_model="resnet18")  # doctest: +SKIP
        >>> tf(sample)["image"].shape  # doctest: +SKIP
        torch.Size([3, 64, 64])
    """
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
    height, width = check_image_size(image_size)
    ops: list[Any] = _resize_ops(height, width, eval_resize, crop_pct)
    if train and augment:
        ops.append(_reference_augment(blur))
    pipeline = A.Compose(
        ops,
        bbox_params=A.BboxParams(
            format="pascal_voc", label_fields=["box_index"], clip=True, filter_invalid_bboxes=True
        ),
        seed=seed,
    )
    mean, std = resolve_normalization(timm_model, mean, std, in_chans, default_normalization)
    resize_only = eval_resize == "resize" and not (train and augment)
    return SampleTransform(pipeline, mean, std, in_chans, (height, width) if resize_only else None)


class TransformedDataset(Dataset):
    """A reader's dataset seen through a transform: items are dicts (see :class:`SampleTransform`).

    Attributes ``class_names``, ``num_classes`` and ``targets`` are forwarded from the wrapped set
    (``targets`` is restricted to ``indices`` when given).
    """

    def __init__(
        self, dataset: Dataset, transform: SampleTransform, indices: Sequence[int] | None = None
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, np.int64)
        self.class_names = dataset.class_names
        self.num_classes = dataset.num_classes
        self.targets = np.asarray(dataset.targets)[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int | SeededIndex) -> dict[str, Any]:
        # A training sampler's SeededIndex carries the sample's augmentation seed for this epoch
        # (scouter.data.sampling): the same augmentation whichever worker loads it, and on resume.
        if isinstance(index, SeededIndex):
            self.transform.reseed(index.seed)
            index = index.index
        return self.transform(self.dataset[int(self.indices[index])])
