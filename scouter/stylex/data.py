"""StylEx's images: an IDX set (Fashion-MNIST, MNIST) as ``[-1, 1]`` tensors at a power-of-two size.

The whole split is small (60 000 × 32 × 32 floats ≈ 250 MB for all classes, less for a class
pair), so it is resized once into memory and batches are slices: no worker processes, no
per-image transform on a 2-core machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from scouter.stylex.errors import StylexInputError

_IDX_SETS = {"fashion_mnist": ("FashionMNIST", 10), "mnist": ("MNIST", 10)}


def _idx_set(dataset: str) -> tuple[str, int]:
    """``(torchvision name, number of classes)`` of an IDX set StylEx reads."""
    if dataset not in _IDX_SETS:
        raise StylexInputError(
            f"StylEx data.dataset must be one of {sorted(_IDX_SETS)}, got {dataset!r}"
        )
    return _IDX_SETS[dataset]


def dataset_class_names(dataset: str) -> list[str]:
    """The class names of an IDX set StylEx reads, index = label (as its dataset reader names
    them: Fashion-MNIST's garments, MNIST's digits)."""
    from scouter.data.idx import FASHION_MNIST_CLASSES

    _, num_classes = _idx_set(dataset)
    if dataset == "fashion_mnist":
        return list(FASHION_MNIST_CLASSES)
    return [str(label) for label in range(num_classes)]


def load_idx_images(
    dataset: str,
    root: str | None,
    split: str,
    image_size: int,
    classes: Sequence[int] | None = None,
    limit: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 1, S, S)`` in ``[-1, 1]`` and labels ``(N,)`` of one IDX split.

    ``classes`` keeps only those labels (in file order); ``limit`` the first ``limit`` of them.
    """
    from scouter.data.idx import FASHION_MNIST_ROOT, find_idx_pair, read_idx

    torchvision_name, num_classes = _idx_set(dataset)
    if root is None:
        if dataset != "fashion_mnist":
            raise StylexInputError(f"data.root is required for {dataset!r} (a folder of IDX files)")
        root = FASHION_MNIST_ROOT
    if not Path(root).is_dir():
        raise StylexInputError(
            f"data.root {root!r} is not a folder: point it at the official IDX files "
            "({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz])"
        )
    image_path, label_path = find_idx_pair(Path(root), split, torchvision_name)
    images, labels = read_idx(image_path), read_idx(label_path).astype(np.int64)
    keep = np.arange(len(labels))
    if classes is not None:
        bad = [c for c in classes if not 0 <= int(c) < num_classes]
        if bad:
            raise StylexInputError(
                f"data.classes {list(classes)} has {bad} outside 0..{num_classes - 1} for {dataset}"
            )
        keep = keep[np.isin(labels, np.asarray(classes, dtype=np.int64))]
    if limit is not None:
        keep = keep[: int(limit)]
    pixels = torch.from_numpy(np.array(images[keep], dtype=np.float32) / 255.0)[:, None]
    if pixels.shape[-1] != image_size:
        pixels = F.interpolate(
            pixels,
            size=(image_size, image_size),
            mode="bilinear",
            align_corners=False,
            antialias=image_size < pixels.shape[-1],
        )
    return pixels.clamp(0, 1) * 2 - 1, torch.from_numpy(labels[keep])


class TensorImages(Dataset):
    """``{"image": (C, S, S), "label": ()}`` items of in-memory tensors."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "label": self.labels[index]}


class StylexDataModule(pl.LightningDataModule):
    """Training images for StylEx (train split) and images to explain (test split).

    Args:
        dataset: ``fashion_mnist`` or ``mnist`` (IDX files).
        root: the IDX folder (Fashion-MNIST defaults to ``/usr/share/datasets/fashion-mnist``).
        image_size: generator resolution, a power of two ≥ 8 (28 px images are resized).
        classes: keep only these labels (e.g. ``[0, 6]`` for T-shirt/top vs shirt); all if None.
        batch_size: images per step.
        limit: at most this many training images (quick runs and tests).
        seed: the training shuffle.
    """

    def __init__(
        self,
        dataset: str = "fashion_mnist",
        root: str | None = None,
        image_size: int = 32,
        classes: list[int] | None = None,
        batch_size: int = 32,
        limit: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if image_size < 8 or image_size & (image_size - 1):
            raise StylexInputError(
                f"data.image_size must be a power of two >= 8 (the generator doubles from 4x4), "
                f"got {image_size}: use e.g. 32"
            )
        if int(batch_size) < 2:
            raise StylexInputError(f"data.batch_size must be >= 2, got {batch_size}")
        self.save_hyperparameters()
        self.dataset, self.root, self.image_size = dataset, root, int(image_size)
        self.classes = [int(c) for c in classes] if classes is not None else None
        self.batch_size, self.limit, self.seed = int(batch_size), limit, seed
        self.in_chans = 1
        self.train_set: TensorImages | None = None

    def setup(self, stage: str | None = None) -> None:
        """Read and resize the training split once (idempotent)."""
        if self.train_set is None:
            images, labels = load_idx_images(
                self.dataset, self.root, "train", self.image_size, self.classes, self.limit
            )
            if len(images) < self.batch_size:
                raise StylexInputError(
                    f"only {len(images)} training images for data.batch_size {self.batch_size}: "
                    "lower the batch size or raise data.limit"
                )
            self.train_set = TensorImages(images, labels)

    def test_images(self, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Test-split images ``(N, 1, S, S)`` and labels: what AttFind explains."""
        return load_idx_images(
            self.dataset, self.root, "test", self.image_size, self.classes, limit
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            generator=generator,
        )
