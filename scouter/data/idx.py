"""MNIST and Fashion-MNIST from their official IDX files (gzipped or not).

Files: ``{train,t10k}-images-idx3-ubyte`` and ``{train,t10k}-labels-idx1-ubyte``, each optionally
``.gz`` (the Kaggle spelling ``train-images.idx3-ubyte`` is accepted too), directly in ``root``,
in ``root/raw`` or in torchvision's ``root/{MNIST,FashionMNIST}/raw``. IDX format (big-endian):
two zero bytes, a type byte (``0x08`` = uint8), the number of dimensions, one uint32 per
dimension, then the data. Nothing is downloaded: Fashion-MNIST defaults to
``/usr/share/datasets/fashion-mnist`` (Debian/Ubuntu package ``dataset-fashion-mnist``); for MNIST
point ``root`` at the official files.
"""

from __future__ import annotations

import functools
import gzip
import struct
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from scouter.data.base import DatasetLayoutError, balanced_limit, require_dir, select_classes
from scouter.data.registry import register_dataset
from scouter.data.sample import Sample, mask_to_box

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) of unsigned bytes.

    Returns:
        The array with the file's dimensions, e.g. ``(N, 28, 28)`` uint8 images or ``(N,)`` labels.

    Raises:
        DatasetLayoutError: naming the file when the header is not IDX uint8 or the data is short.
    """
    return _read_idx_cached(str(path), Path(path).stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: str, _mtime: int) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as err:
        raise DatasetLayoutError(
            f"cannot read IDX file '{path}' ({err}) — re-extract the official file"
        ) from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetLayoutError(
            f"'{path}' is not an IDX file of unsigned bytes (magic {raw[:4].hex()}, expected 0000080N)"
        )
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(raw) != expected:
        raise DatasetLayoutError(
            f"IDX file '{path}' has {len(raw)} bytes but its header {dims} implies {expected} — the file is truncated or corrupt"
        )
    array = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)
    array.flags.writeable = False
    return array


def check_idx_labels(labels: np.ndarray, num_classes: int, path: str | Path) -> None:
    """Refuse labels outside ``0..num_classes-1`` (a damaged or foreign file), naming the first.

    Raises:
        DatasetLayoutError: naming the file, the first bad index and value, and the count.
    """
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        first = int(bad[0])
        raise DatasetLayoutError(
            f"IDX label file '{path}' has {bad.size} label(s) outside 0..{num_classes - 1}, the "
            f"first at index {first} (value {int(labels[first])}) — the file is damaged or not "
            f"from this dataset ({num_classes} classes); re-extract the official file"
        )


def find_idx_pair(root: Path, split: str, torchvision_name: str) -> tuple[Path, Path]:
    """Locate ``(images, labels)`` IDX files of a split (see module docstring for the places)."""
    prefix = _PREFIX[split]
    places = [root, root / "raw", root / torchvision_name / "raw"]
    found = []
    for kind, dims in (("images", 3), ("labels", 1)):
        names = [f"{prefix}-{kind}-idx{dims}-ubyte", f"{prefix}-{kind}.idx{dims}-ubyte"]
        candidates = [d / (n + gz) for d in places for n in names for gz in (".gz", "")]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            raise DatasetLayoutError(
                f"'{root / (names[0] + '.gz')}' is missing (also looked for {names[0]} without .gz, in raw/ "
                f"and {torchvision_name}/raw/) — expected the official IDX files "
                "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] in root"
            )
        found.append(hit)
    return found[0], found[1]


class IdxDataset(Dataset):
    """An MNIST-format set: 28×28 grayscale images with labels.

    Items are :class:`Sample` s with ``image (28, 28, 1)`` uint8; without ``object_masks`` they have
    no boxes and no mask. With ``object_masks=True`` the mask is ``image > mask_threshold`` and the
    box its tight box (the object on its black background), for localisation metrics.

    Attributes:
        class_names, num_classes, targets: as for every reader.
        images: ``(N, 28, 28)`` uint8 (read-only view of the file).
        normalization: ``(mean, std)`` of the reference for one channel.
        has_regions: ``object_masks`` (items have a mask and a box).
    """

    normalization: tuple[tuple[float, ...], tuple[float, ...]] = ((0.1307,), (0.3081,))
    #: The option that adds masks and boxes (``has_regions``), for the precision metric.
    regions_option = "object_masks: true"

    def __init__(
        self,
        root: Path,
        split: str,
        class_names: list[str],
        torchvision_name: str,
        num_classes: int | None = None,
        limit: int | None = None,
        object_masks: bool = False,
        mask_threshold: int = 0,
    ) -> None:
        if split not in _PREFIX:
            raise ValueError(
                f"{torchvision_name} split must be 'train' or 'test' (t10k), got {split!r}"
            )
        root = require_dir(root, f"{torchvision_name} root", "a folder with the official IDX files")
        image_path, label_path = find_idx_pair(root, split, torchvision_name)
        images, labels = read_idx(image_path), read_idx(label_path)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetLayoutError(
                f"'{image_path}' {images.shape} and '{label_path}' {labels.shape} do not match: expected (N, H, W) images and (N,) labels"
            )
        check_idx_labels(labels, len(class_names), label_path)
        if num_classes is not None:
            class_names = select_classes(
                class_names, num_classes, f"{torchvision_name} at '{root}'"
            )
        keep = np.flatnonzero(labels < len(class_names))
        keep = keep[balanced_limit(labels[keep], limit)]
        self.root, self.split = root, split
        self.class_names, self.num_classes = list(class_names), len(class_names)
        self.images, self.targets, self._index = images, labels[keep].astype(np.int64), keep
        self.object_masks, self.mask_threshold = object_masks, mask_threshold
        self.stats = {"missing": 0, "corrupt": 0, "boxes_clipped": 0, "boxes_dropped": 0}

    @property
    def has_regions(self) -> bool:
        return bool(self.object_masks)

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> Sample:
        source = int(self._index[index])
        image = np.array(self.images[source])[..., None]
        sample = Sample(
            image=image, label=int(self.targets[index]), id=f"{self.split}/{source:05d}"
        )
        if self.object_masks:
            sample.mask = (image[..., 0] > self.mask_threshold).astype(np.uint8)
            sample.boxes = mask_to_box(sample.mask)
        return sample


@register_dataset("mnist")
class MnistDataset(IdxDataset):
    """MNIST digits from the official IDX files; ``root`` is required (nothing is downloaded).

    Args:
        root: folder with ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.
        split: ``train`` (60 000) or ``test`` (t10k, 10 000).
        num_classes: keep digits ``0..K-1``.
        limit: keep at most this many images, balanced over classes.
        object_masks: add mask (``pixel > mask_threshold``) and its tight box.
        mask_threshold: see ``object_masks``.
    """

    def __init__(
        self,
        root: str | Path | None,
        split: str = "train",
        num_classes: int | None = None,
        limit: int | None = None,
        object_masks: bool = False,
        mask_threshold: int = 0,
    ) -> None:
        if root is None:
            raise DatasetLayoutError(
                "mnist needs root=<folder with the official IDX files "
                "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]> — nothing is downloaded"
            )
        super().__init__(
            Path(root),
            split,
            [str(d) for d in range(10)],
            "MNIST",
            num_classes,
            limit,
            object_masks,
            mask_threshold,
        )


@register_dataset("fashion_mnist", "fashion-mnist", "fashionmnist")
class FashionMnistDataset(IdxDataset):
    """Fashion-MNIST from the official IDX files (default root: Debian's ``dataset-fashion-mnist``).

    Args: as :class:`MnistDataset`; ``root`` defaults to ``/usr/share/datasets/fashion-mnist``.
    """

    normalization = ((0.2860,), (0.3530,))

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        num_classes: int | None = None,
        limit: int | None = None,
        object_masks: bool = False,
        mask_threshold: int = 0,
    ) -> None:
        if root is None and not Path(FASHION_MNIST_ROOT).is_dir():
            raise DatasetLayoutError(
                f"Fashion-MNIST default root '{FASHION_MNIST_ROOT}' does not exist — install the Debian/Ubuntu "
                "package dataset-fashion-mnist, or pass root=<folder with the official IDX files>"
            )
        root = Path(root) if root is not None else Path(FASHION_MNIST_ROOT)
        super().__init__(
            root,
            split,
            list(FASHION_MNIST_CLASSES),
            "FashionMNIST",
            num_classes,
            limit,
            object_masks,
            mask_threshold,
        )
