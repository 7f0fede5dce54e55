"""Shared machinery of the file-based readers: records, checks, decoding, error types.

Every file-based reader (ImageNet, CUB, ACRIMA, folder, Con-Text) turns its on-disk layout into a
list of :class:`Record` s and hands them to :class:`ImageFileDataset`, which owns the behaviour the
readers share: missing and corrupt files (error naming the file, or skipped and counted), box
clipping (counted), a class-balanced ``limit`` and decoding into a :class:`Sample`.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from scouter.data.pixels import ImageValueError, pil_to_uint8
from scouter.data.sample import Sample, clip_boxes

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


class DatasetLayoutError(FileNotFoundError):
    """A dataset root, a required file or a referenced image is missing or laid out wrongly."""


class CorruptImageError(OSError):
    """An image file exists but cannot be decoded (corrupt or truncated)."""


class ImageTooLargeError(CorruptImageError):
    """An image over Pillow's decompression-bomb limit (a CorruptImageError for old handlers)."""


#: Environment variable that sets Pillow's decompression-bomb limit (see :func:`apply_pixel_limit`).
PIXEL_LIMIT_VARIABLE = "SCOUTER_MAX_IMAGE_PIXELS"


@dataclass(frozen=True)
class Record:
    """Where one sample lives on disk and what is known about it before decoding.

    Attributes:
        path: image file.
        label: class index.
        boxes: ``(N, 4)`` float32 xyxy pixels as annotated (clipped when read).
        mask_path: segmentation PNG, or None.
        id: stable identifier (path relative to the root).
    """

    path: Path
    label: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    mask_path: Path | None = None
    id: str = ""


def require_root(
    root: str | Path | None, dataset: str, what: str, layout: str, given: str = "folder"
) -> Path:
    """A reader's ``root`` as a Path, once it is given and is a folder.

    Args:
        root: the ``root`` argument of the reader.
        dataset: the reader's registered name, for ``"<dataset> needs root=<given>"``.
        what: the folder's name in the message, e.g. ``"CUB root"``.
        layout: the expected layout, ending each message.
        given: what ``root`` should be, in words.

    Raises:
        DatasetLayoutError: ``root`` is None, or not an existing folder.
    """
    if root is None:
        raise DatasetLayoutError(f"{dataset} needs root=<{given}> — expected {layout}")
    return require_dir(Path(root), what, layout)


def require_dir(path: Path, what: str, expected: str) -> Path:
    """Return ``path`` if it is a directory, else raise a :class:`DatasetLayoutError`."""
    if not path.is_dir():
        raise DatasetLayoutError(
            f"{what} '{path}' does not exist or is not a folder — expected {expected}"
        )
    return path


def require_file(path: Path, what: str, expected: str) -> Path:
    """Return ``path`` if it is a file, else raise a :class:`DatasetLayoutError`."""
    if not path.is_file():
        raise DatasetLayoutError(f"{what}: '{path}' is missing — expected {expected}")
    return path


def select_classes(available: Sequence[str], num_classes: int | None, what: str) -> list[str]:
    """First ``num_classes`` of ``available`` (all when None); error naming the available count."""
    if num_classes is None:
        return list(available)
    if num_classes < 1 or num_classes > len(available):
        raise ValueError(
            f"num_classes={num_classes} but {what} has {len(available)} classes available "
            f"— use 1 <= num_classes <= {len(available)}"
        )
    return list(available[:num_classes])


def balanced_limit(labels: Sequence[int], limit: int | None) -> np.ndarray:
    """Indices of at most ``limit`` items, taken round-robin over classes, in original order.

    Deterministic: the first item of every class, then the second of every class, and so on, so a
    small ``limit`` still covers all classes (useful for smoke runs and tests).
    """
    labels = np.asarray(labels)
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    if limit < 1:
        raise ValueError(f"limit must be a positive number of samples, got {limit}")
    rank = np.zeros(len(labels), np.int64)
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        rank[where] = np.arange(where.size)
    order = np.lexsort((labels, rank))[:limit]
    return np.sort(order)


def apply_pixel_limit() -> None:
    """Set Pillow's decompression-bomb limit from ``SCOUTER_MAX_IMAGE_PIXELS``, where it is set.

    ``none`` (or ``0``) lifts the limit; a number of pixels sets it. Unset: Pillow's own limit
    (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 million pixels) stays as it is.
    """
    value = os.environ.get(PIXEL_LIMIT_VARIABLE, "").strip().lower()
    if not value:
        return
    if value in ("none", "0"):
        Image.MAX_IMAGE_PIXELS = None
        return
    try:
        Image.MAX_IMAGE_PIXELS = int(value)
    except ValueError:
        raise ValueError(
            f"{PIXEL_LIMIT_VARIABLE}={value!r} is not a number of pixels: set it to an integer "
            "(e.g. 500000000) or 'none' to lift the limit"
        ) from None


def too_large_message(path: Path, err: Exception) -> str:
    """What a decompression-bomb refusal means, and the two ways to allow the image."""
    return (
        f"image '{path}' was not decoded: it has more pixels than Pillow's decompression-bomb "
        f"limit allows ({err}). The file is not corrupt, only large — if you trust it, allow it "
        f"with the environment variable {PIXEL_LIMIT_VARIABLE}=none (or a larger number of "
        "pixels), or from Python PIL.Image.MAX_IMAGE_PIXELS = None, before reading; or downscale "
        "the file"
    )


def decode_image(path: Path, mode: str = "RGB") -> np.ndarray:
    """Decode an image file to ``(H, W, C)`` uint8 (C = 3 for ``RGB``, 1 for ``L``).

    16-bit and float images are scaled by their range (:mod:`scouter.data.pixels`), not clipped.

    Raises:
        CorruptImageError: naming the file when it cannot be decoded.
        ImageTooLargeError: naming the file and how to allow it, when it is over Pillow's
            decompression-bomb limit.
    """
    apply_pixel_limit()
    try:
        with Image.open(path) as img:
            array = pil_to_uint8(img, mode, what=f"image '{path}'")
    except FileNotFoundError as err:
        raise DatasetLayoutError(
            f"image '{path}' disappeared after the dataset was indexed"
        ) from err
    except Image.DecompressionBombError as err:
        raise ImageTooLargeError(too_large_message(path, err)) from err
    except ImageValueError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise CorruptImageError(
            f"cannot decode image '{path}' ({err}) — the file is corrupt or truncated; "
            "re-extract it, or pass skip_corrupt=True to drop unreadable images "
            "(they are counted in dataset.stats['corrupt'])"
        ) from err
    return array[..., None] if array.ndim == 2 else array


def _decodable(path: Path) -> bool:
    apply_pixel_limit()
    try:
        with Image.open(path) as img:
            img.load()
        return True
    except Image.DecompressionBombError as err:
        log.warning("skipping %s", too_large_message(path, err))
        return False
    except (OSError, SyntaxError, ValueError):
        return False


class ImageFileDataset(Dataset):
    """A map-style dataset of image files with labels, boxes and optional masks.

    Items are raw :class:`Sample` s (RGB ``(H, W, 3)`` uint8; boxes clipped to the image).

    Attributes:
        class_names: one name per class, index = label.
        num_classes: ``len(class_names)``.
        targets: ``(len,)`` int64 labels, readable without decoding images.
        records: the indexed :class:`Record` s.
        has_regions: whether any item has a box or a mask (what the precision metric needs).
        regions_option: the reader option that adds boxes or masks, where one exists.
        stats: counts of ``missing`` / ``corrupt`` files skipped at indexing and of
            ``boxes_clipped`` / ``boxes_dropped`` (counted as items are read, per process: reads
            in DataLoader worker processes are not added to the main process' counts).
    """

    def __init__(
        self,
        records: Sequence[Record],
        class_names: Sequence[str],
        *,
        root: Path,
        skip_missing: bool = False,
        skip_corrupt: bool = False,
        limit: int | None = None,
        check_exists: bool = True,
        layout_hint: str = "",
        mask_threshold: int = 128,
    ) -> None:
        self.root = Path(root)
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.mask_threshold = mask_threshold
        self.stats = {"missing": 0, "corrupt": 0, "boxes_clipped": 0, "boxes_dropped": 0}
        records = list(records)
        if check_exists:
            records = self._drop_missing(records, skip_missing, layout_hint)
        if skip_corrupt:
            with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 1)) as pool:
                ok = list(pool.map(_decodable, [r.path for r in records]))
            for record, good in zip(records, ok, strict=True):
                if not good:
                    log.warning("skipping unreadable image %s", record.path)
            self.stats["corrupt"] = ok.count(False)
            records = [r for r, good in zip(records, ok, strict=True) if good]
        keep = balanced_limit([r.label for r in records], limit)
        self.records = [records[i] for i in keep]
        if not self.records:
            raise DatasetLayoutError(
                f"no images found under '{self.root}'{layout_hint and ' — expected ' + layout_hint}"
            )
        self.targets = np.array([r.label for r in self.records], np.int64)

    def _drop_missing(self, records: list[Record], skip: bool, layout_hint: str) -> list[Record]:
        kept = []
        for record in records:
            missing = [
                p for p in (record.path, record.mask_path) if p is not None and not p.is_file()
            ]
            if not missing:
                kept.append(record)
            elif skip:
                self.stats["missing"] += 1
                log.warning("skipping %s: missing %s", record.id, missing[0])
            else:
                hint = f" (layout: {layout_hint})" if layout_hint else ""
                raise DatasetLayoutError(
                    f"'{missing[0]}' is listed in the dataset annotations but does not exist{hint} "
                    "— restore the file, or pass skip_missing=True to drop such entries "
                    "(they are counted in dataset.stats['missing'])"
                )
        return kept

    regions_option: str | None = None

    @functools.cached_property
    def has_regions(self) -> bool:
        return any(r.boxes.size or r.mask_path is not None for r in self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        image = decode_image(record.path)
        height, width = image.shape[:2]
        boxes, clipped, dropped = clip_boxes(record.boxes, width, height)
        if clipped or dropped:
            self.stats["boxes_clipped"] += clipped
            self.stats["boxes_dropped"] += dropped
            log.debug("%s: %d box(es) clipped, %d dropped", record.id, clipped, dropped)
        mask = None
        if record.mask_path is not None:
            mask = (decode_image(record.mask_path, "L")[..., 0] >= self.mask_threshold).astype(
                np.uint8
            )
            if mask.shape != (height, width):
                raise DatasetLayoutError(
                    f"mask '{record.mask_path}' is {mask.shape[1]}x{mask.shape[0]} but its image "
                    f"'{record.path}' is {width}x{height} — masks must match their image"
                )
        return Sample(image=image, label=record.label, boxes=boxes, mask=mask, id=record.id)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root='{self.root}', len={len(self)}, num_classes={self.num_classes})"
