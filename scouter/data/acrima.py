"""ACRIMA glaucoma fundus images: a folder of files, the label in the file name.

Layout: ``root`` holds the images directly, or the release's ``Database/Images/`` (searched
recursively otherwise). A file is glaucomatous iff its name contains ``_g_``
(``Im001_g_ACRIMA.jpg``); normal otherwise (``Im001_ACRIMA.jpg``). The SCOUTER reference has no
ACRIMA loader, and ACRIMA has no official split: this reader makes a **seeded, stratified**
train/val/test split with :func:`~scouter.data.splits.stratified_split` on the sorted file list
(defaults: 70 % / 10 % / 20 %, seed 0; the ReScience reproduction used an unstratified 80/20
split with seed 29). There are no boxes or masks.
"""

from __future__ import annotations

from pathlib import Path

from scouter.data.base import (
    IMAGE_EXTENSIONS,
    DatasetLayoutError,
    ImageFileDataset,
    Record,
    require_root,
)
from scouter.data.registry import register_dataset
from scouter.data.splits import stratified_split

LAYOUT = "a folder of ACRIMA fundus images named like Im001_g_ACRIMA.jpg (glaucoma) / Im001_ACRIMA.jpg (normal)"


@register_dataset("acrima")
class AcrimaDataset(ImageFileDataset):
    """ACRIMA (see module docstring); ``class_names = ["normal", "glaucoma"]``.

    Args:
        root: folder with the images (or the release folder containing ``Database/Images``).
        split: ``train``, ``val``, ``test`` or ``all``.
        seed: split seed.
        val_fraction: share of each class in ``val``.
        test_fraction: share of each class in ``test``.
        skip_corrupt: decode every image once and drop (and count) unreadable ones (before
            splitting, so the split of the remaining files does not depend on the option).
        limit: keep at most this many images of the split, balanced over classes.
    """

    def __init__(
        self,
        root: str | Path | None,
        split: str = "train",
        seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        skip_corrupt: bool = False,
        limit: int | None = None,
    ) -> None:
        root = require_root(root, "acrima", "ACRIMA root", LAYOUT)
        if split not in ("train", "val", "test", "all"):
            raise ValueError(f"ACRIMA split must be train, val, test or all, got {split!r}")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DatasetLayoutError(f"ACRIMA root '{root}' contains no images — expected {LAYOUT}")
        records = [Record(p, int("_g_" in p.name), id=str(p.relative_to(root))) for p in files]
        full = ImageFileDataset(
            records,
            ["normal", "glaucoma"],
            root=root,
            skip_corrupt=skip_corrupt,
            check_exists=False,
        )
        if split != "all":
            parts = stratified_split(
                full.targets, {"train": 0, "val": val_fraction, "test": test_fraction}, seed
            )
            records = [full.records[i] for i in parts[split]]
        else:
            records = full.records
        super().__init__(
            records,
            full.class_names,
            root=root,
            limit=limit,
            check_exists=False,
            layout_hint=LAYOUT,
        )
        self.stats["corrupt"] = full.stats["corrupt"]
