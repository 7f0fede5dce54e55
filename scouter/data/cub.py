"""CUB-200-2011 in its official layout, with bounding boxes and optional segmentations.

Layout (``root`` = the ``CUB_200_2011`` folder, or its parent)::

    images.txt              <image_id> <class_folder>/<file>.jpg
    image_class_labels.txt  <image_id> <class_id 1..200>
    train_test_split.txt    <image_id> <1 = train | 0 = test>
    classes.txt             <class_id> <NNN.Name_of_bird>
    bounding_boxes.txt      <image_id> <x> <y> <width> <height>   (pixels, floats)
    images/<class_folder>/<file>.jpg
    segmentations/<class_folder>/<file>.png   optional, separate download; inside the
                                              CUB_200_2011 folder or next to it

Follows the reference: official train/test split, the first ``num_classes`` class ids kept,
label = class id − 1, grayscale images converted to RGB. Boxes ``(x, y, w, h)`` become
``(x, y, x + w, y + h)``. The segmentation PNGs average several annotators (grey levels); the mask
is ``value >= mask_threshold`` (default 128: at least half of the annotators).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scouter.data.base import (
    DatasetLayoutError,
    ImageFileDataset,
    Record,
    require_file,
    require_root,
    select_classes,
)
from scouter.data.registry import register_dataset

LAYOUT = (
    "the CUB_200_2011 folder with images.txt, image_class_labels.txt, train_test_split.txt, "
    "classes.txt, bounding_boxes.txt and images/<NNN.Class>/*.jpg"
)


def read_id_table(path: Path, columns: int) -> dict[int, list[str]]:
    """Read a CUB ``<id> <value> ...`` text file into ``id -> [values]``.

    Args:
        path: the file.
        columns: number of values after the id (the last one keeps embedded spaces).
    """
    require_file(path, "CUB annotation file", LAYOUT)
    table = {}
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.strip().split(maxsplit=columns)
            if len(parts) != columns + 1 or not parts[0].isdigit():
                raise DatasetLayoutError(
                    f"'{path}' line {number}: expected '<id>' followed by {columns} value(s), got {line.strip()!r}"
                )
            table[int(parts[0])] = parts[1:]
    return table


@register_dataset("cub200", "cub")
class CubDataset(ImageFileDataset):
    """CUB-200-2011 birds (see module docstring).

    Args:
        root: the ``CUB_200_2011`` folder (or the folder containing it).
        split: ``train`` or ``test`` (official ``train_test_split.txt``).
        num_classes: keep class ids ``1..num_classes`` (reference behaviour); all 200 by default.
        segmentations: read ``segmentations/`` masks; None = when the folder exists.
        mask_threshold: grey level from which a segmentation pixel counts as bird.
        skip_missing: drop (and count) entries whose image/mask file is missing.
        skip_corrupt: decode every image once and drop (and count) unreadable ones.
        limit: keep at most this many images, balanced over classes.
    """

    def __init__(
        self,
        root: str | Path | None,
        split: str = "train",
        num_classes: int | None = None,
        segmentations: bool | None = None,
        mask_threshold: int = 128,
        skip_missing: bool = False,
        skip_corrupt: bool = False,
        limit: int | None = None,
    ) -> None:
        root = require_root(root, "cub200", "CUB root", LAYOUT, "dataset folder")
        if not (root / "images.txt").is_file() and (root / "CUB_200_2011" / "images.txt").is_file():
            root = root / "CUB_200_2011"
        if not (root / "images.txt").is_file():
            raise DatasetLayoutError(f"CUB root '{root}' has no images.txt — expected {LAYOUT}")
        if split not in ("train", "test"):
            raise ValueError(
                f"CUB split must be 'train' or 'test' (no official val split), got {split!r}"
            )

        classes = read_id_table(root / "classes.txt", 1)
        images = read_id_table(root / "images.txt", 1)
        class_of = read_id_table(root / "image_class_labels.txt", 1)
        is_train = read_id_table(root / "train_test_split.txt", 1)
        boxes = read_id_table(root / "bounding_boxes.txt", 4)
        kept_ids = select_classes(sorted(classes), num_classes, f"CUB at '{root}'")
        class_names = [classes[c][0].split(".", 1)[-1].replace("_", " ") for c in kept_ids]

        seg_dir = next(
            (d / "segmentations" for d in (root, root.parent) if (d / "segmentations").is_dir()),
            None,
        )
        if segmentations and seg_dir is None:
            raise DatasetLayoutError(
                f"segmentations=True but neither '{root / 'segmentations'}' nor "
                f"'{root.parent / 'segmentations'}' exists — extract segmentations.tgz there"
            )
        use_masks = seg_dir is not None if segmentations is None else segmentations

        wanted = 1 if split == "train" else 0
        records = []
        for image_id, (rel,) in sorted(images.items()):
            for table, name in (
                (class_of, "image_class_labels.txt"),
                (is_train, "train_test_split.txt"),
            ):
                if image_id not in table:
                    raise DatasetLayoutError(
                        f"image id {image_id} of images.txt is missing from '{root / name}'"
                    )
            class_id = int(class_of[image_id][0])
            if int(is_train[image_id][0]) != wanted or class_id > len(kept_ids):
                continue
            box = np.zeros((0, 4), np.float32)
            if image_id in boxes:
                x, y, w, h = (float(v) for v in boxes[image_id])
                box = np.array([[x, y, x + w, y + h]], np.float32)
            mask_path = seg_dir / Path(rel).with_suffix(".png") if use_masks else None
            records.append(Record(root / "images" / rel, class_id - 1, box, mask_path, rel))
        super().__init__(
            records,
            class_names,
            root=root,
            skip_missing=skip_missing,
            skip_corrupt=skip_corrupt,
            limit=limit,
            layout_hint=LAYOUT,
            mask_threshold=mask_threshold,
        )
