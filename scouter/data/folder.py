"""Generic class-per-subfolder trees (``root/<class>/*.jpg``), optionally split into folders.

Layouts: ``root/<split>/<class>/*`` when ``root/<split>`` exists, otherwise ``root/<class>/*`` is the
whole ``train`` split (the DataModule carves validation from it). Classes are the sorted folder
names of ``root/train`` (or of the split folder / root), so labels agree across splits.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from scouter.data.base import (
    IMAGE_EXTENSIONS,
    DatasetLayoutError,
    ImageFileDataset,
    Record,
    require_root,
    select_classes,
)
from scouter.data.registry import register_dataset

LAYOUT = "<root>/<class>/*.jpg or <root>/{train,val,test}/<class>/*.jpg"


def _class_dirs(path: Path) -> list[str]:
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


@register_dataset("folder")
class FolderDataset(ImageFileDataset):
    """Images sorted into one folder per class (see module docstring).

    A class folder without images is an error (it would be a class the model never sees).

    Args:
        root: the tree's root.
        split: ``train``/``val``/``test``: the folder ``root/<split>`` when it exists; ``train``
            falls back to ``root`` itself.
        classes: explicit class folder names (label = position) instead of all sorted folders.
        num_classes: keep the first K sorted class folders.
        skip_missing: drop (and count) files that are listed but unreadable as files (broken links).
        skip_corrupt: decode every image once and drop (and count) unreadable ones.
        limit: keep at most this many images, balanced over classes.
    """

    def __init__(
        self,
        root: str | Path | None,
        split: str = "train",
        classes: Sequence[str] | None = None,
        num_classes: int | None = None,
        skip_missing: bool = False,
        skip_corrupt: bool = False,
        limit: int | None = None,
    ) -> None:
        root = require_root(root, "folder", "folder dataset root", LAYOUT)
        split_dir = root / split
        if not split_dir.is_dir():
            if split != "train":
                raise DatasetLayoutError(
                    f"'{split_dir}' does not exist — expected {LAYOUT}; without split folders use "
                    "split='train' and let ScouterDataModule carve validation from it"
                )
            split_dir = root
        reference = root / "train" if (root / "train").is_dir() else split_dir
        available = _class_dirs(reference)
        if not available:
            raise DatasetLayoutError(f"'{reference}' has no class folders — expected {LAYOUT}")
        if classes is not None:
            unknown = [c for c in classes if c not in available]
            if unknown:
                raise ValueError(
                    f"classes {unknown} not found in '{reference}' (available: {available[:20]})"
                )
            names = list(classes)
        else:
            names = select_classes(available, num_classes, f"'{reference}'")
        records = []
        for label, name in enumerate(names):
            folder = split_dir / name
            if not folder.is_dir():
                raise DatasetLayoutError(
                    f"class folder '{folder}' is missing (classes come from '{reference}')"
                )
            with os.scandir(folder) as entries:
                files = sorted(e.name for e in entries if e.name.lower().endswith(IMAGE_EXTENSIONS))
            if not files:
                raise DatasetLayoutError(
                    f"class folder '{folder}' has no images ({', '.join(IMAGE_EXTENSIONS)}): a "
                    f"class without images cannot be learnt or evaluated — add its images, remove "
                    f"the folder, or list the other classes in classes=[...] (data.dataset_options.classes)"
                )
            records += [Record(folder / f, label, id=f"{name}/{f}") for f in files]
        super().__init__(
            records,
            names,
            root=root,
            skip_missing=skip_missing,
            skip_corrupt=skip_corrupt,
            limit=limit,
            layout_hint=LAYOUT,
        )
