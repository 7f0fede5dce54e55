"""Fixtures writing tiny datasets in their exact official on-disk formats into ``tmp_path``."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

WNIDS = ["n01440764", "n01443537", "n01484850"]  # the first three ImageNet-1k wnids, sorted
SYNSETS = {
    "n01440764": "tench, Tinca tinca",
    "n01443537": "goldfish, Carassius auratus",
    "n01484850": "great white shark, white shark, man-eater, man-eating shark, Carcharodon carcharias",
}


def write_image(path: Path, height: int, width: int, value: int = 128, mode: str = "RGB") -> None:
    """A JPEG/PNG with a deterministic gradient (so it is not trivially constant)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = (
        np.arange(height, dtype=np.int32)[:, None] * 3 + np.arange(width, dtype=np.int32)[None, :]
    )
    gray = ((rows + value) % 256).astype(np.uint8)
    array = gray if mode == "L" else np.stack([gray, 255 - gray, np.full_like(gray, value)], axis=2)
    Image.fromarray(array, mode).save(path, quality=95)


def voc_xml(
    filename: str,
    width: int,
    height: int,
    objects: list[tuple[str, tuple[int, int, int, int]]],
    folder: str,
) -> str:
    """An ILSVRC CLS-LOC annotation file (PASCAL-VOC-like), as distributed."""
    parts = [
        "<annotation>",
        f"\t<folder>{folder}</folder>",
        f"\t<filename>{filename}</filename>",
        "\t<source>",
        "\t\t<database>ILSVRC_2012</database>",
        "\t</source>",
        "\t<size>",
        f"\t\t<width>{width}</width>",
        f"\t\t<height>{height}</height>",
        "\t\t<depth>3</depth>",
        "\t</size>",
        "\t<segmented>0</segmented>",
    ]
    for name, (x1, y1, x2, y2) in objects:
        parts += [
            "\t<object>",
            f"\t\t<name>{name}</name>",
            "\t\t<pose>Unspecified</pose>",
            "\t\t<truncated>0</truncated>",
            "\t\t<difficult>0</difficult>",
            "\t\t<bndbox>",
            f"\t\t\t<xmin>{x1}</xmin>",
            f"\t\t\t<ymin>{y1}</ymin>",
            f"\t\t\t<xmax>{x2}</xmax>",
            f"\t\t\t<ymax>{y2}</ymax>",
            "\t\t</bndbox>",
            "\t</object>",
        ]
    return "\n".join(parts + ["</annotation>", ""])


# val images: id -> (wnid, width, height, boxes)
IMAGENET_VAL = {
    "ILSVRC2012_val_00000001": ("n01443537", 50, 40, [(5, 4, 25, 20)]),
    "ILSVRC2012_val_00000002": ("n01440764", 40, 40, [(0, 0, 20, 10), (10, 10, 40, 40)]),
    "ILSVRC2012_val_00000003": ("n01484850", 30, 20, [(2, 2, 28, 18)]),
    "ILSVRC2012_val_00000004": (
        "n01440764",
        32,
        24,
        [(4, 4, 60, 20)],
    ),  # box beyond the image: clipped
}


@pytest.fixture
def imagenet_root(tmp_path: Path) -> Path:
    """Kaggle ILSVRC layout: LOC_*.csv and LOC_synset_mapping.txt at the root, ILSVRC/Data, ILSVRC/Annotations."""
    root = tmp_path / "imagenet-object-localization-challenge"
    data = root / "ILSVRC" / "Data" / "CLS-LOC"
    ann = root / "ILSVRC" / "Annotations" / "CLS-LOC"
    for k, wnid in enumerate(WNIDS):
        for n in range(2):
            write_image(
                data / "train" / wnid / f"{wnid}_{100 + n}.JPEG", 24 + 4 * k, 32, value=40 * k + n
            )
    (ann / "train" / WNIDS[0]).mkdir(parents=True)
    (ann / "train" / WNIDS[0] / f"{WNIDS[0]}_100.xml").write_text(
        voc_xml(f"{WNIDS[0]}_100", 32, 24, [(WNIDS[0], (3, 4, 20, 22))], WNIDS[0])
    )
    (ann / "val").mkdir(parents=True)
    rows = ["ImageId,PredictionString"]
    for image_id, (wnid, w, h, boxes) in IMAGENET_VAL.items():
        write_image(data / "val" / f"{image_id}.JPEG", h, w)
        rows.append(
            f"{image_id},"
            + " ".join(f"{wnid} {x1} {y1} {x2} {y2}" for x1, y1, x2, y2 in boxes)
            + " "
        )
        (ann / "val" / f"{image_id}.xml").write_text(
            voc_xml(image_id, w, h, [(wnid, b) for b in boxes], "val")
        )
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {SYNSETS[w]}\n" for w in WNIDS))
    return root


# CUB: (class_id, folder) ; images: id -> (rel path, class, is_train, (x, y, w, h), (H, W), mode)
CUB_CLASSES = [
    (1, "001.Black_footed_Albatross"),
    (2, "002.Laysan_Albatross"),
    (3, "003.Sooty_Albatross"),
]
CUB_IMAGES = {
    1: (
        "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg",
        1,
        1,
        (10.0, 5.0, 20.0, 15.0),
        (30, 40),
        "RGB",
    ),
    2: (
        "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg",
        1,
        0,
        (0.0, 0.0, 8.0, 8.0),
        (20, 20),
        "RGB",
    ),
    3: (
        "002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg",
        2,
        1,
        (4.0, 4.0, 12.0, 10.0),
        (24, 32),
        "L",
    ),
    4: (
        "002.Laysan_Albatross/Laysan_Albatross_0003_1033.jpg",
        2,
        0,
        (2.0, 3.0, 10.0, 10.0),
        (20, 24),
        "RGB",
    ),
    5: (
        "003.Sooty_Albatross/Sooty_Albatross_0001_1071.jpg",
        3,
        1,
        (30.0, 10.0, 20.0, 10.0),
        (24, 40),
        "RGB",
    ),  # x+w = 50 > 40
    6: (
        "003.Sooty_Albatross/Sooty_Albatross_0002_796395.jpg",
        3,
        0,
        (1.0, 1.0, 5.0, 5.0),
        (16, 16),
        "RGB",
    ),
}


@pytest.fixture
def cub_root(tmp_path: Path) -> Path:
    """CUB_200_2011 with its five text files, images/ and segmentations/ (grey-level PNGs)."""
    root = tmp_path / "CUB_200_2011"
    root.mkdir()
    (root / "classes.txt").write_text("".join(f"{c} {name}\n" for c, name in CUB_CLASSES))
    (root / "images.txt").write_text("".join(f"{i} {v[0]}\n" for i, v in CUB_IMAGES.items()))
    (root / "image_class_labels.txt").write_text(
        "".join(f"{i} {v[1]}\n" for i, v in CUB_IMAGES.items())
    )
    (root / "train_test_split.txt").write_text(
        "".join(f"{i} {v[2]}\n" for i, v in CUB_IMAGES.items())
    )
    (root / "bounding_boxes.txt").write_text(
        "".join(f"{i} {' '.join(f'{c:.1f}' for c in v[3])}\n" for i, v in CUB_IMAGES.items())
    )
    for rel, _, _, (x, y, w, h), (height, width), mode in CUB_IMAGES.values():
        write_image(root / "images" / rel, height, width, mode=mode)
        seg = np.zeros((height, width), np.uint8)
        seg[int(y) : int(y + h), int(x) : int(x + w)] = 255  # all annotators agree inside the box
        seg[0, 0] = 102  # 2 of 5 annotators: below the 128 threshold
        (root / "segmentations" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(seg, "L").save((root / "segmentations" / rel).with_suffix(".png"))
    return root


ACRIMA_FILES = [f"Im{n:03d}_g_ACRIMA.jpg" for n in range(1, 11)] + [
    f"Im{n:03d}_ACRIMA.jpg" for n in range(11, 21)
]


@pytest.fixture
def acrima_root(tmp_path: Path) -> Path:
    """The ACRIMA release folder ``Database/Images`` with 10 glaucoma and 10 normal images."""
    folder = tmp_path / "ACRIMA" / "Database" / "Images"
    for n, name in enumerate(ACRIMA_FILES):
        write_image(folder / name, 16, 16, value=n)
    return tmp_path / "ACRIMA"


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    """Write an IDX file of unsigned bytes: 0, 0, 0x08, ndim, big-endian uint32 dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def idx_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` 28×28 images, each a bright rectangle at a known place, labels cycling 0..9."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, 28, 28), np.uint8)
    for i in range(count):
        y, x = rng.integers(0, 14, size=2)
        images[i, y : y + 10, x : x + 8] = 200 + i % 50
    return images, (np.arange(count) % 10).astype(np.uint8)


def write_idx_dataset(
    root: Path, counts: dict[str, int], seed_offset: int = 1, images=idx_images
) -> Path:
    """An IDX dataset in ``root`` under the official (Fashion-)MNIST file names: for each prefix
    (``train``, ``t10k``) ``images(count, seed=count + seed_offset)`` gzipped; ``root``."""
    for prefix, count in counts.items():
        images_array, labels = images(count, seed=count + seed_offset)
        write_idx(root / f"{prefix}-images-idx3-ubyte", images_array)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    """Official MNIST file names: train gzipped, t10k uncompressed (both are accepted)."""
    root = tmp_path / "mnist"
    for prefix, count, compress in (("train", 40, True), ("t10k", 20, False)):
        images, labels = idx_images(count, seed=count)
        write_idx(root / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels, compress)
    return root


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    """A class-per-subfolder tree: cat/ (3 images) and dog/ (2 images)."""
    root = tmp_path / "pets"
    for name, count in (("cat", 3), ("dog", 2)):
        for n in range(count):
            write_image(root / name / f"{name}{n}.png", 12, 10, value=n)
    return root


@pytest.fixture
def fashion_root(tmp_path: Path) -> Path:
    """A tiny Fashion-MNIST copy (same IDX names as the official release) for composites."""
    return write_idx_dataset(tmp_path / "fashion", {"train": 60, "t10k": 30})
