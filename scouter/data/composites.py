"""The offline localisation benchmark: real objects with exact masks pasted on real photographs.

Each sample is generated on demand from ``(seed, split, index)`` alone, so any item can be
rendered in any order, in any worker process, and is identical every time:

1. **background**: a random square crop (side between the output size and 4× it) of one of the
   photographs bundled with scikit-image (``grass``, ``gravel``, ``brick``, ``moon``, ``coffee``,
   ``rocket``, ``hubble_deep_field``, ``immunohistochemistry``), area-resized to the output size,
   randomly mirrored; grayscale photographs are replicated to RGB;
2. **clutter** (optional, ``clutter`` per image): object-textured distractors, each a random item
   whose 7×7-pixel blocks are shuffled (its texture without its shape), tinted and pasted first;
3. **the object**: a Fashion-MNIST item (and/or an Animal-MNIST silhouette), cropped to its pixels
   above ``threshold``, resized (bilinear, aspect kept) so its longer side is a random fraction
   ``scale`` of the output size, placed at a random position fully inside the image, tinted with a
   random light colour and **hard-pasted**: exactly the pixels of the resized item above
   ``threshold`` are written, and these pixels are the mask. The box is the mask's tight box.

Object sources: Fashion-MNIST from its IDX files (``root``, default
``/usr/share/datasets/fashion-mnist``): ``train``/``val`` draw items from its training file, ``test``
from ``t10k``. Animal-MNIST (PyPI ``animal-mnist==0.4``, installed with ``--no-deps``; 10 000
silhouettes, 10 classes, pickled NumPy arrays read with a restricted unpickler): no official split,
so item ``k`` of each class goes to ``test`` iff ``k % 6 == 5`` (1/6, the MNIST proportion).
With ``objects="both"`` labels 0–9 are Fashion-MNIST classes and 10–19 animals.
"""

from __future__ import annotations

import colorsys
import functools
import gzip
import importlib.util
import io
import pickle
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from scouter.data.base import DatasetLayoutError, select_classes
from scouter.data.composites_cache import CacheReader, cache_key, ensure_cache, open_cache
from scouter.data.idx import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ROOT,
    check_idx_labels,
    find_idx_pair,
    read_idx,
)
from scouter.data.registry import register_dataset
from scouter.data.sample import Sample, mask_to_box

ANIMAL_MNIST_CLASSES = [
    "bear",
    "bird",
    "cat",
    "cow",
    "dog",
    "elephant",
    "giraffe",
    "horse",
    "sheep",
    "zebra",
]
DEFAULT_BACKGROUNDS = (
    "grass",
    "gravel",
    "brick",
    "moon",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
)
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain NumPy arrays and refuses everything else (no arbitrary code on load)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to unpickle {module}.{name}: only NumPy arrays are expected"
            )
        return super().find_class(module, name)


def animal_mnist_dir() -> Path:
    """Folder holding Animal-MNIST's ``animal_{data,label}_version_3.gz`` inside the installed package."""
    spec = importlib.util.find_spec(
        "animal_mnist"
    )  # locate without importing (its __init__ may pull TensorFlow)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetLayoutError(
            "Animal-MNIST is not installed — run `pip install --no-deps animal-mnist==0.4` "
            "(or pass animal_root=<folder with animal_data_version_3.gz and animal_label_version_3.gz>)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "Animal_MNIST"


@functools.lru_cache(maxsize=2)
def load_animal_mnist(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """Animal-MNIST arrays: ``images (10000, 28, 28)`` uint8 and ``labels (10000,)`` int64."""
    arrays = []
    for name in ("animal_data_version_3.gz", "animal_label_version_3.gz"):
        path = Path(folder) / name
        if not path.is_file():
            raise DatasetLayoutError(
                f"Animal-MNIST file '{path}' is missing — reinstall with `pip install --no-deps animal-mnist==0.4`"
            )
        with gzip.open(path, "rb") as handle:
            arrays.append(np.asarray(_NumpyOnlyUnpickler(io.BytesIO(handle.read())).load()))
    images, labels = arrays
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DatasetLayoutError(
            f"Animal-MNIST in '{folder}' has shapes {images.shape}/{labels.shape}, expected (N, 28, 28)/(N,)"
        )
    return images.astype(np.uint8), labels.astype(np.int64)


@functools.lru_cache(maxsize=16)
def load_background(name: str) -> np.ndarray:
    """A scikit-image bundled photograph as ``(H, W, 3)`` uint8 (``black`` = a constant 256² image)."""
    if name == "black":
        return np.zeros((256, 256, 3), np.uint8)
    import skimage.data

    loader = getattr(skimage.data, name, None)
    if loader is None:
        raise ValueError(
            f"unknown background {name!r} — use names of skimage.data photographs such as {DEFAULT_BACKGROUNDS}"
        )
    try:
        image = np.asarray(loader())
    except (
        Exception
    ) as err:  # skimage raises ModuleNotFoundError/ValueError for images it would download
        raise ValueError(
            f"background {name!r} is not bundled with this scikit-image (it would need a download); use one of {DEFAULT_BACKGROUNDS}"
        ) from err
    if image.dtype != np.uint8:
        image = (
            (image > 0).astype(np.uint8) * 255 if image.dtype == bool else image.astype(np.uint8)
        )
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


@register_dataset("composites")
class CompositesDataset(Dataset):
    """Seeded composites of real objects on real backgrounds with exact masks (module docstring).

    Args:
        root: Fashion-MNIST IDX folder (default ``/usr/share/datasets/fashion-mnist``).
        split: ``train``, ``val`` or ``test`` (``test`` uses the t10k items; ``train`` and ``val``
            use the training items with different generation streams — ScouterDataModule carves
            its validation set from ``train`` instead, which never shares an item with training as
            long as ``num_samples`` ≤ the number of items).
        num_samples: number of composites; default: one per available item.
        image_size: output size S or ``(H, W)``; default 64.
        seed: generation seed; the same seed gives the same images, masks and boxes.
        objects: ``fashion_mnist``, ``animal_mnist`` or ``both``.
        clutter: number of distractors per image.
        backgrounds: names of scikit-image photographs (``black`` for a plain black canvas).
        scale: range of the object's longer side as a fraction of the image side.
        threshold: item grey level above which a pixel belongs to the object (and the mask).
        saturation: maximum colour saturation of the object tint (0 = gray objects).
        num_classes: keep only the first K classes.
        animal_root: folder with Animal-MNIST's two ``.gz`` files (default: the installed package).
        cache: render the split once into memory-mapped arrays and serve samples from them
            (:mod:`scouter.data.composites_cache`; identical samples, no per-epoch rendering).
        cache_dir: where the cache lives (default ``$SCOUTER_CACHE_DIR/composites``, else
            ``~/.cache/scouter/composites``).

    Attributes:
        class_names, num_classes, targets: as for every reader (targets without rendering).
        has_regions: always true (every item has its exact mask and box).
    """

    has_regions = True
    regions_option = None

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        num_samples: int | None = None,
        image_size: int | tuple[int, int] = 64,
        seed: int = 0,
        objects: str = "fashion_mnist",
        clutter: int = 0,
        backgrounds: Sequence[str] = DEFAULT_BACKGROUNDS,
        scale: tuple[float, float] = (0.4, 0.8),
        threshold: int = 16,
        saturation: float = 0.6,
        num_classes: int | None = None,
        animal_root: str | None = None,
        cache: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        if split not in _SPLIT_CODE:
            raise ValueError(f"composites split must be train, val or test, got {split!r}")
        if objects not in ("fashion_mnist", "animal_mnist", "both"):
            raise ValueError(
                f"objects must be 'fashion_mnist', 'animal_mnist' or 'both', got {objects!r}"
            )
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
        from scouter.data.transforms import check_image_size

        self.height, self.width = check_image_size(image_size, "dataset_options.image_size")
        self.split, self.seed, self.clutter = split, seed, clutter
        self.scale, self.threshold, self.saturation = tuple(scale), threshold, saturation
        self.backgrounds = [load_background(name) for name in backgrounds]
        if not self.backgrounds:
            raise ValueError("backgrounds must name at least one photograph")

        pools, names = [], []
        if objects in ("fashion_mnist", "both"):
            fashion_root = Path(root) if root is not None else Path(FASHION_MNIST_ROOT)
            if not fashion_root.is_dir():
                raise DatasetLayoutError(
                    f"Fashion-MNIST folder '{fashion_root}' does not exist — install the Debian/Ubuntu package "
                    "dataset-fashion-mnist or pass root=<folder with the official IDX files>"
                )
            image_file, label_file = find_idx_pair(
                fashion_root, "test" if split == "test" else "train", "FashionMNIST"
            )
            fashion_labels = read_idx(label_file)
            check_idx_labels(fashion_labels, len(FASHION_MNIST_CLASSES), label_file)
            pools.append((read_idx(image_file), fashion_labels.astype(np.int64)))
            names += FASHION_MNIST_CLASSES
        if objects in ("animal_mnist", "both"):
            images, labels = load_animal_mnist(str(animal_root or animal_mnist_dir()))
            rank = np.zeros(len(labels), np.int64)
            for c in np.unique(labels):
                rank[labels == c] = np.arange(np.sum(labels == c))
            chosen = (rank % 6 == 5) if split == "test" else (rank % 6 != 5)
            pools.append((images[chosen], labels[chosen] + len(names)))
            names += ANIMAL_MNIST_CLASSES
        self._items = np.concatenate([p[0] for p in pools])
        item_labels = np.concatenate([p[1] for p in pools])
        names = select_classes(names, num_classes, f"composites of {objects!r}")
        self.class_names, self.num_classes = list(names), len(names)
        # One fixed, seeded order over the items: composite i shows item order[i % n_items], so
        # the first n_items composites never repeat an item and class frequencies follow the source.
        usable = np.flatnonzero(item_labels < self.num_classes)
        self._order = usable[
            np.random.default_rng([seed, _SPLIT_CODE[split]]).permutation(usable.size)
        ]
        self._item_labels = item_labels
        self.num_samples = int(num_samples) if num_samples is not None else usable.size
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        self.targets = item_labels[self._order[np.arange(self.num_samples) % self._order.size]]
        self.stats = {"missing": 0, "corrupt": 0, "boxes_clipped": 0, "boxes_dropped": 0}
        self.cache_folder = self._ensure_cache(cache_dir) if cache else None
        self._cached: CacheReader | None = None

    def cache_key(self) -> str:
        """Key of this split's cached samples: every option that changes a sample and the content
        the rendering reads (items, their labels, the seeded order, the background photographs).
        """
        options = {
            "split": self.split,
            "seed": self.seed,
            "num_samples": self.num_samples,
            "size": [self.height, self.width],
            "clutter": self.clutter,
            "scale": list(self.scale),
            "threshold": self.threshold,
            "saturation": self.saturation,
            "num_classes": self.num_classes,
        }
        return cache_key(options, (self._items, self._item_labels, self._order, *self.backgrounds))

    def _ensure_cache(self, cache_dir: str | None) -> Path:
        size = (self.height, self.width)
        return ensure_cache(
            self.cache_key(), self.num_samples, size, self._sample_arrays, cache_dir, self.split
        )

    def _sample_arrays(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        """``(image (H, W, 3) uint8, mask (H, W) uint8, label)`` of composite ``index``."""
        layers = self.render(index)
        return layers["image"], layers["mask"], layers["label"]

    def __len__(self) -> int:
        return self.num_samples

    def __getstate__(self) -> dict:
        # Worker processes map the cache files themselves instead of receiving a pickled copy.
        return {**self.__dict__, "_cached": None}

    def __getitem__(self, index: int) -> Sample:
        if self.cache_folder is None:
            image, mask, label = self._sample_arrays(index)
        else:
            if not 0 <= index < self.num_samples:
                raise IndexError(f"composite index {index} out of range [0, {self.num_samples})")
            if self._cached is None:
                self._cached = open_cache(self.cache_folder)
            stored = self._cached.read(index)
            if stored is None:  # a chunk that failed its checksum (warned): render it afresh
                stored = self._sample_arrays(index)
            image, mask, label = stored
        return Sample(
            image=image,
            label=label,
            boxes=mask_to_box(mask),
            mask=mask,
            id=f"composite/{self.split}/{self.seed}/{index}",
        )

    def render(self, index: int) -> dict[str, np.ndarray | int]:
        """Render composite ``index`` and return its layers (for inspection and tests).

        Returns:
            ``image (H, W, 3)`` uint8, ``background (H, W, 3)`` uint8 (with clutter, before the
            object), ``object (H, W, 3)`` uint8 (the tinted object, zero elsewhere),
            ``mask (H, W)`` uint8 in {0, 1}, ``label`` int, ``item`` int (index in the item pool).
        """
        if not 0 <= index < self.num_samples:
            raise IndexError(f"composite index {index} out of range [0, {self.num_samples})")
        rng = np.random.default_rng([self.seed, _SPLIT_CODE[self.split], index])
        canvas = self._background(rng)
        for _ in range(self.clutter):
            patch = self._items[rng.integers(len(self._items))]
            blocks = (
                patch.reshape(4, 7, 4, 7)
                .transpose(0, 2, 1, 3)
                .reshape(16, 7, 7)[rng.permutation(16)]
            )
            scrambled = blocks.reshape(4, 4, 7, 7).transpose(0, 2, 1, 3).reshape(28, 28)
            rgb, mask, (y, x) = self._place(scrambled, rng, shrink=0.7)
            h, w = mask.shape
            region = canvas[y : y + h, x : x + w]
            region[mask] = rgb[mask]
        background = canvas.copy()
        item = int(self._order[index % self._order.size])
        rgb, mask, (y, x) = self._place(self._items[item], rng)
        h, w = mask.shape
        full_mask = np.zeros((self.height, self.width), np.uint8)
        full_mask[y : y + h, x : x + w] = mask
        obj = np.zeros_like(canvas)
        obj[y : y + h, x : x + w][mask] = rgb[mask]
        canvas[full_mask.astype(bool)] = obj[full_mask.astype(bool)]
        return {
            "image": canvas,
            "background": background,
            "object": obj,
            "mask": full_mask,
            "label": int(self._item_labels[item]),
            "item": item,
        }

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        photo = self.backgrounds[rng.integers(len(self.backgrounds))]
        ph, pw = photo.shape[:2]
        low = max(self.height, self.width)
        side = int(rng.integers(min(low, ph, pw), min(4 * low, ph, pw) + 1))
        top, left = int(rng.integers(ph - side + 1)), int(rng.integers(pw - side + 1))
        out = cv2.resize(
            photo[top : top + side, left : left + side],
            (self.width, self.height),
            interpolation=cv2.INTER_AREA,
        )
        # mirror after resizing: flipping the small output is cheaper than copying a flipped crop
        return np.ascontiguousarray(out[:, ::-1]) if rng.random() < 0.5 else out

    def _place(
        self, item: np.ndarray, rng: np.random.Generator, shrink: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """Resize and tint one 28×28 item; returns ``(rgb (h, w, 3), mask (h, w) bool, (top, left))``."""
        rows = np.flatnonzero((item > self.threshold).any(axis=1))
        cols = np.flatnonzero((item > self.threshold).any(axis=0))
        if rows.size:
            item = item[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        longest = rng.uniform(*self.scale) * shrink * min(self.height, self.width)
        factor = longest / max(item.shape)
        h = int(np.clip(round(item.shape[0] * factor), 1, self.height))
        w = int(np.clip(round(item.shape[1] * factor), 1, self.width))
        resized = cv2.resize(np.ascontiguousarray(item), (w, h), interpolation=cv2.INTER_LINEAR)
        mask = resized > self.threshold
        tint = np.array(
            colorsys.hsv_to_rgb(rng.random(), rng.uniform(0, self.saturation), 1.0), np.float32
        )
        rgb = (resized[..., None].astype(np.float32) * tint).round().astype(np.uint8)
        top, left = int(rng.integers(self.height - h + 1)), int(rng.integers(self.width - w + 1))
        return rgb, mask, (top, left)
