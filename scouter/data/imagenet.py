"""ImageNet (ILSVRC CLS-LOC) in its official layouts, with localisation boxes.

Accepted layouts under ``root`` (searched in this order):

1. the Kaggle / ILSVRC release: ``[ILSVRC/]Data/CLS-LOC/{train,val}`` with
   ``train/<wnid>/<wnid>_<n>.JPEG`` and a **flat** ``val/ILSVRC2012_val_<8 digits>.JPEG``;
   val labels and boxes from ``LOC_val_solution.csv`` (header ``ImageId,PredictionString``, each
   prediction ``wnid x1 y1 x2 y2`` repeated) or from ``[ILSVRC/]Annotations/CLS-LOC/val/*.xml``
   (PASCAL-VOC-style files); train boxes, where present, from
   ``Annotations/CLS-LOC/train/<wnid>/*.xml`` or ``LOC_train_solution.csv``;
2. the reference's regrouped layout: ``root/{train,val}/<wnid>/*`` (boxes still read from the
   annotation files above when they exist).

``LOC_synset_mapping.txt`` (``n01440764 tench, Tinca tinca`` per line), looked up next to the data,
gives class names. Classes follow the reference: the sorted ``train/<wnid>`` folder names (or the
mapping file's order, the same sorted order, when there is no ``train/``), the first ``num_classes``
kept, label = position; or an explicit ``wnids`` list whose order defines the labels.
Boxes are the annotation's pixel values unchanged (``xmin ymin xmax ymax``).
"""

from __future__ import annotations

import csv
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from scouter.data.base import (
    IMAGE_EXTENSIONS,
    DatasetLayoutError,
    ImageFileDataset,
    Record,
    require_dir,
    require_root,
    select_classes,
)
from scouter.data.registry import register_dataset

LAYOUT = (
    "the ILSVRC CLS-LOC layout: <root>/[ILSVRC/]Data/CLS-LOC/train/<wnid>/*.JPEG and "
    "Data/CLS-LOC/val/*.JPEG with LOC_val_solution.csv or Annotations/CLS-LOC/val/*.xml, "
    "or the regrouped <root>/{train,val}/<wnid>/*.JPEG"
)
_BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")


def _subdirs(path: Path) -> list[str]:
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries if e.is_dir())


def _images_in(path: Path) -> list[str]:
    with os.scandir(path) as entries:
        return sorted(
            e.name for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)
        )


def parse_voc_xml(path: Path) -> tuple[list[str], np.ndarray]:
    """Read an ILSVRC (PASCAL-VOC-style) annotation file.

    Returns:
        ``(object names, boxes (N, 4) float32 xyxy)`` in file order.
    """
    try:
        tree = ET.parse(path)
    except ET.ParseError as err:
        raise DatasetLayoutError(f"annotation '{path}' is not valid XML ({err})") from err
    names, boxes = [], []
    for obj in tree.getroot().iter("object"):
        box = obj.find("bndbox")
        name = obj.findtext("name")
        if box is None or name is None:
            raise DatasetLayoutError(
                f"annotation '{path}' has an <object> without <name> or <bndbox>"
            )
        try:
            boxes.append([float(box.findtext(tag)) for tag in _BOX_TAGS])
        except (TypeError, ValueError) as err:
            raise DatasetLayoutError(
                f"annotation '{path}': <bndbox> needs numeric {'/'.join(_BOX_TAGS)}"
            ) from err
        names.append(name.strip())
    return names, np.array(boxes, np.float32).reshape(-1, 4)


def parse_loc_solution(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """Read ``LOC_{train,val}_solution.csv``.

    Returns:
        ``ImageId -> (wnid of the first box, boxes (N, 4) xyxy)``.
    """
    table: dict[str, tuple[str, np.ndarray]] = {}
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != ["ImageId", "PredictionString"]:
            raise DatasetLayoutError(
                f"'{path}' starts with {header} — expected the header 'ImageId,PredictionString'"
            )
        for line, row in enumerate(reader, start=2):
            tokens = row[1].split() if len(row) == 2 else []
            if not tokens or len(tokens) % 5:
                raise DatasetLayoutError(
                    f"'{path}' line {line}: expected 'ImageId,wnid x1 y1 x2 y2 [wnid x1 y1 x2 y2 ...]', got {row}"
                )
            groups = [tokens[i : i + 5] for i in range(0, len(tokens), 5)]
            try:
                boxes = np.array([[float(v) for v in g[1:]] for g in groups], np.float32)
            except ValueError as err:
                raise DatasetLayoutError(
                    f"'{path}' line {line}: non-numeric box in {row[1]!r}"
                ) from err
            table[row[0]] = (groups[0][0], boxes)
    return table


def read_synset_mapping(path: Path) -> dict[str, str]:
    """``LOC_synset_mapping.txt`` → ``wnid -> 'tench, Tinca tinca'`` (file order kept)."""
    mapping = {}
    with open(path) as handle:
        for line in handle:
            if line.strip():
                wnid, _, names = line.strip().partition(" ")
                mapping[wnid] = names.strip() or wnid
    return mapping


@register_dataset("imagenet")
class ImageNetDataset(ImageFileDataset):
    """ILSVRC CLS-LOC classification images with localisation boxes (see module docstring).

    Args:
        root: the dataset root (Kaggle folder, ``ILSVRC`` folder or a folder with ``train/ val/``).
        split: ``train`` or ``val`` (``test`` is accepted as an alias of ``val``: the labelled
            ImageNet test set is the official validation set).
        num_classes: keep the first K wnids in sorted order (the reference; K=100 in the paper).
        wnids: an explicit class list instead (label = position in it).
        skip_missing: drop (and count) annotations whose image is missing instead of failing.
        skip_corrupt: decode every image once and drop (and count) unreadable ones.
        limit: keep at most this many images, balanced over classes.

    Attributes:
        wnids: the selected WordNet ids, index = label.
        class_names: first name of each synset (``tench``), or the wnid without a mapping file.
        full_class_names: the mapping file's full names (``tench, Tinca tinca``).
    """

    def __init__(
        self,
        root: str | Path | None,
        split: str = "train",
        num_classes: int | None = None,
        wnids: Sequence[str] | None = None,
        skip_missing: bool = False,
        skip_corrupt: bool = False,
        limit: int | None = None,
    ) -> None:
        root = require_root(root, "imagenet", "ImageNet root", LAYOUT, "dataset folder")
        split = {"test": "val"}.get(split, split)
        if split not in ("train", "val"):
            raise ValueError(
                f"ImageNet split must be 'train' or 'val' (alias 'test'), got {split!r}"
            )
        data_dir, ann_dir = self._locate(root)
        search = list(
            dict.fromkeys([root, data_dir.parent.parent, data_dir.parent.parent.parent, data_dir])
        )
        mapping_file = next(
            (
                d / "LOC_synset_mapping.txt"
                for d in search
                if (d / "LOC_synset_mapping.txt").is_file()
            ),
            None,
        )
        mapping = read_synset_mapping(mapping_file) if mapping_file else {}

        if (data_dir / "train").is_dir():
            universe = _subdirs(data_dir / "train")
        elif mapping:
            universe = list(mapping)
        elif (data_dir / "val").is_dir():
            universe = _subdirs(data_dir / "val")
        else:
            universe = []
        if not universe:
            raise DatasetLayoutError(
                f"ImageNet root '{root}' has no class folders and no LOC_synset_mapping.txt — expected {LAYOUT}"
            )
        if wnids is not None:
            unknown = [w for w in wnids if w not in set(universe)]
            if unknown:
                raise ValueError(
                    f"wnids {unknown[:5]} are not among the {len(universe)} classes found under '{data_dir}'"
                )
            self.wnids = list(wnids)
        else:
            self.wnids = select_classes(universe, num_classes, f"ImageNet at '{data_dir}'")
        labels = {w: i for i, w in enumerate(self.wnids)}

        split_dir = require_dir(data_dir / split, f"ImageNet {split} folder", LAYOUT)
        solution = next(
            (
                d / f"LOC_{split}_solution.csv"
                for d in search
                if (d / f"LOC_{split}_solution.csv").is_file()
            ),
            None,
        )
        table = parse_loc_solution(solution) if solution else {}
        ann_split = ann_dir / split if ann_dir is not None else None

        records: list[Record] = []
        if _subdirs(split_dir):  # class-per-folder (official train, regrouped val)
            for wnid in self.wnids:
                folder = split_dir / wnid
                if not folder.is_dir():
                    raise DatasetLayoutError(
                        f"class folder '{folder}' is missing — expected {LAYOUT}"
                    )
                xml_dir = ann_split / wnid if ann_split is not None else None
                for name in _images_in(folder):
                    stem = Path(name).stem
                    boxes = self._boxes(
                        stem, table, xml_dir / f"{stem}.xml" if xml_dir is not None else None
                    )
                    records.append(
                        Record(folder / name, labels[wnid], boxes, None, f"{split}/{wnid}/{name}")
                    )
        elif table:  # flat val labelled by LOC_val_solution.csv
            for image_id in sorted(table):
                wnid, boxes = table[image_id]
                if wnid in labels:
                    path = split_dir / f"{image_id}.JPEG"
                    records.append(Record(path, labels[wnid], boxes, None, f"{split}/{path.name}"))
        elif ann_split is not None and ann_split.is_dir():  # flat val labelled by per-image XML
            for xml_name in sorted(n for n in os.listdir(ann_split) if n.endswith(".xml")):
                names, boxes = parse_voc_xml(ann_split / xml_name)
                if names and names[0] in labels:
                    path = split_dir / f"{xml_name[:-4]}.JPEG"
                    keep = np.array([n == names[0] for n in names], bool)
                    records.append(
                        Record(path, labels[names[0]], boxes[keep], None, f"{split}/{path.name}")
                    )
        else:
            raise DatasetLayoutError(
                f"ImageNet {split} folder '{split_dir}' is flat but no labels were found: neither "
                f"LOC_{split}_solution.csv (looked in {', '.join(str(d) for d in search)}) nor "
                f"Annotations/CLS-LOC/{split}/*.xml exists — add one of them, or regroup the images "
                f"into {split}/<wnid>/ folders"
            )
        self.full_class_names = [mapping.get(w, w) for w in self.wnids]
        super().__init__(
            records,
            [n.split(",")[0].strip() for n in self.full_class_names],
            root=root,
            skip_missing=skip_missing,
            skip_corrupt=skip_corrupt,
            limit=limit,
            check_exists=not _subdirs(split_dir),
            layout_hint=LAYOUT,
        )

    @staticmethod
    def _locate(root: Path) -> tuple[Path, Path | None]:
        for base in (root / "ILSVRC", root):
            data = base / "Data" / "CLS-LOC"
            if data.is_dir():
                ann = base / "Annotations" / "CLS-LOC"
                return data, ann if ann.is_dir() else None
        if (root / "train").is_dir() or (root / "val").is_dir():
            ann = root / "Annotations" / "CLS-LOC"
            return root, ann if ann.is_dir() else None
        raise DatasetLayoutError(
            f"ImageNet root '{root}' has neither Data/CLS-LOC/ nor train/ or val/ — expected {LAYOUT}"
        )

    @staticmethod
    def _boxes(
        stem: str, table: dict[str, tuple[str, np.ndarray]], xml_path: Path | None
    ) -> np.ndarray:
        if xml_path is not None and xml_path.is_file():
            return parse_voc_xml(xml_path)[1]
        if stem in table:
            return table[stem][1]
        return np.zeros((0, 4), np.float32)
