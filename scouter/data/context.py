"""Con-Text (Karaoglu et al.) as the SCOUTER reference reads it.

Layout: all images directly in ``root`` (or ``root/JPEGImages``), class = file-name prefix before
the first ``_``; classes sorted as strings, label = position. Split as in the reference:
scikit-learn ``train_test_split(files, train_size=0.8, random_state=1)`` on the sorted file list,
reproduced here with NumPy (``RandomState(1).permutation``; the first ``n − ⌊0.8 n⌋`` permuted
indices are the test set, the next ``⌊0.8 n⌋`` the training set, in permuted order).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from scouter.data.base import (
    IMAGE_EXTENSIONS,
    DatasetLayoutError,
    ImageFileDataset,
    Record,
    require_root,
    select_classes,
)
from scouter.data.registry import register_dataset

LAYOUT = "a folder of Con-Text images named <class>_<n>.jpg (optionally inside JPEGImages/)"


def reference_split(
    count: int, train_size: float = 0.8, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` equal to sklearn's ``train_test_split(range(count), train_size, random_state=seed)``."""
    n_train = int(np.floor(train_size * count))
    permutation = np.random.RandomState(seed).permutation(count)
    n_test = count - n_train
    return permutation[n_test : n_test + n_train], permutation[:n_test]


@register_dataset("context")
class ConTextDataset(ImageFileDataset):
    """Con-Text fine-grained text-in-image classes (see module docstring).

    Args:
        root: the folder with the images.
        split: ``train`` or ``test``.
        num_classes: keep the first K classes (sorted names); files of other classes are dropped
            after the split, so the split equals the reference's.
        skip_corrupt: decode every image once and drop (and count) unreadable ones.
        limit: keep at most this many images, balanced over classes.
    """

    def __init__(
        self,
        root: str | Path | None,
        split: str = "train",
        num_classes: int | None = None,
        skip_corrupt: bool = False,
        limit: int | None = None,
    ) -> None:
        root = require_root(root, "context", "Con-Text root", LAYOUT)
        if (root / "JPEGImages").is_dir():
            root = root / "JPEGImages"
        if split not in ("train", "test"):
            raise ValueError(f"Con-Text split must be 'train' or 'test', got {split!r}")
        with os.scandir(root) as entries:
            files = sorted(e.name for e in entries if e.name.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise DatasetLayoutError(
                f"Con-Text root '{root}' contains no images — expected {LAYOUT}"
            )
        prefixes = [f.split("_", 1)[0] for f in files]
        names = select_classes(sorted(set(prefixes)), num_classes, f"Con-Text at '{root}'")
        labels = {n: i for i, n in enumerate(names)}
        train, test = reference_split(len(files))
        chosen = train if split == "train" else test
        records = [
            Record(root / files[i], labels[prefixes[i]], id=files[i])
            for i in chosen
            if prefixes[i] in labels
        ]
        super().__init__(
            records,
            names,
            root=root,
            skip_corrupt=skip_corrupt,
            limit=limit,
            check_exists=False,
            layout_hint=LAYOUT,
        )
