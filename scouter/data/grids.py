"""The grids of the grid pointing game (docs/metrics.md#grid-pointing-game): which test images
are tiled together, chosen once and written to a file so every model and explainer is scored on
the same grids.

A grid is ``n × n`` dataset indices (row-major cells), each cell an image of a different class,
every image classified correctly with a softmax probability of its class at or above a threshold
by **every** model that took part in the selection. The file stores indices into the evaluated
split, the images' ids and labels and the split's identity (dataset name, root, options, split,
size and a SHA-256 of its labels): lean, readable JSON that any later run checks before use.
Composing the grid images from the indices is :func:`scouter.metrics.compose_grid`'s job.

Example:
    >>> eligible = [confident_correct(logits, labels, 0.99) for logits in (logits_a, logits_b)]
    >>> identity = dataset_identity("composites", root, {}, "test", labels)
    >>> grids = build_grids(labels, eligible, size=2, count=100, seed=0, threshold=0.99,
    ...                     identity=identity)
    >>> save_grids("grids.json", grids)
    >>> load_grids("grids.json").indices.shape  # doctest: +SKIP
    (100, 4)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from scouter.atomic_io import atomic_write_text

__all__ = [
    "DEFAULT_THRESHOLD",
    "GRID_FORMAT",
    "GridError",
    "Grids",
    "build_grids",
    "check_identity",
    "confident_correct",
    "dataset_identity",
    "load_grids",
    "sample_grids",
    "save_grids",
]

GRID_FORMAT = "scouter.gridpg.grids"
GRID_VERSION = 1
#: Softmax probability of the true class an image needs (with a correct arg-max) to enter a grid.
DEFAULT_THRESHOLD = 0.99


class GridError(ValueError):
    """Grids cannot be built or a grids file cannot be used; the message says why and the fix."""


@dataclass
class Grids:
    """The grids of one split, as written to and read from a grids file.

    Attributes:
        size: ``n`` (cells per side).
        indices: ``(G, n²)`` int64 indices into the split, row-major cells.
        labels: ``(G, n²)`` int64 class of each cell (distinct within a grid).
        ids: ``G`` lists of ``n²`` image ids (checked against the dataset when images are read).
        threshold: the confidence threshold of the selection.
        seed: the sampling seed.
        identity: the split's identity (:func:`dataset_identity`).
        selected_by: names of the models whose confident, correct images were eligible.
        eligible_images: how many images every selecting model classified confidently.
        selected_from: the selection forwarded only the split's first ``selected_from`` images
            (``None``: all of them).
    """

    size: int
    indices: np.ndarray
    labels: np.ndarray
    ids: list[list[str]]
    threshold: float
    seed: int
    identity: dict[str, Any]
    selected_by: list[str] = field(default_factory=list)
    eligible_images: int = 0
    selected_from: int | None = None

    @property
    def count(self) -> int:
        """``G``, the number of grids."""
        return int(self.indices.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of a grids file."""
        return {
            "format": GRID_FORMAT,
            "version": GRID_VERSION,
            "size": self.size,
            "count": self.count,
            "threshold": self.threshold,
            "seed": self.seed,
            "selected_by": list(self.selected_by),
            "eligible_images": self.eligible_images,
            "selected_from": self.selected_from,
            "dataset": self.identity,
            "grids": [
                {"indices": [int(i) for i in idx], "labels": [int(c) for c in lab], "ids": ids}
                for idx, lab, ids in zip(self.indices, self.labels, self.ids, strict=True)
            ],
        }


def confident_correct(logits: Tensor, labels: Tensor, threshold: float) -> Tensor:
    """Images a model classifies correctly with ``p_label ≥ threshold``.

    Args:
        logits: ``(N, K)`` class scores.
        labels: ``(N,)`` true classes.
        threshold: minimum softmax probability of the true class, in ``[0, 1]``.

    Returns:
        ``(N,)`` bool (on the CPU); non-finite logits are never eligible.
    """
    logits = logits.detach().float().cpu()
    labels = labels.detach().long().cpu()
    probabilities = logits.softmax(dim=1)
    p_true = probabilities.gather(1, labels[:, None])[:, 0]
    finite = torch.isfinite(logits).all(dim=1)
    return finite & (logits.argmax(dim=1) == labels) & (p_true >= float(threshold))


def dataset_identity(
    name: str, root: Any, options: Mapping[str, Any] | None, split: str, labels: Sequence[int]
) -> dict[str, Any]:
    """What makes indices into a split mean the same images: name, root, options, split, its
    size and the SHA-256 of its labels in order."""
    labels = np.asarray(labels, dtype=np.int64)
    return {
        "name": str(name),
        "root": None if root is None else os.fspath(root),
        "options": dict(options or {}),
        "split": str(split),
        "num_images": int(labels.size),
        "labels_sha256": hashlib.sha256(labels.astype("<i8").tobytes()).hexdigest(),
    }


def sample_grids(
    labels: Sequence[int], eligible: Sequence[bool], size: int, count: int, seed: int
) -> np.ndarray:
    """Draw ``count`` grids of ``size²`` eligible images of distinct classes, deterministically.

    Each grid draws ``size²`` distinct classes uniformly from the classes with an eligible image,
    then the next image of each class from that class's shuffled queue of eligible images (an
    image is reused only after every eligible image of its class has been used).

    Returns:
        ``(count, size²)`` int64 indices, row-major cells.

    Raises:
        GridError: when fewer than ``size²`` classes have an eligible image.
    """
    labels = np.asarray(labels, dtype=np.int64)
    eligible = np.asarray(eligible, dtype=bool)
    if labels.shape != eligible.shape:
        raise GridError(f"{labels.size} labels but {eligible.size} eligibility flags")
    cells = size * size
    classes = np.unique(labels[eligible])
    if classes.size < cells:
        raise GridError(
            f"a {size}×{size} grid needs {cells} classes with a confidently classified image, but "
            f"only {classes.size} class(es) have one ({int(eligible.sum())} eligible images): lower "
            "the confidence threshold, evaluate more images (no --limit) or use a smaller grid"
        )
    rng = np.random.default_rng(seed)
    pools = {int(c): rng.permutation(np.flatnonzero(eligible & (labels == c))) for c in classes}
    used = dict.fromkeys(pools, 0)
    grids = np.empty((count, cells), dtype=np.int64)
    for g in range(count):
        for k, c in enumerate(rng.choice(classes, size=cells, replace=False)):
            c = int(c)
            if used[c] == pools[c].size:  # every image of the class used: a new round
                pools[c], used[c] = rng.permutation(pools[c]), 0
            grids[g, k] = pools[c][used[c]]
            used[c] += 1
    return grids


def build_grids(
    labels: Sequence[int],
    eligible: Sequence[Sequence[bool]],
    *,
    size: int,
    count: int,
    seed: int,
    threshold: float,
    identity: dict[str, Any],
    ids: Sequence[str] | None = None,
    selected_by: Sequence[str] = (),
    selected_from: int | None = None,
) -> Grids:
    """Grids of images that **every** model classifies confidently (:func:`confident_correct`).

    Args:
        labels: ``(N,)`` true classes of the split.
        eligible: one ``(N,)`` bool per selecting model; an image is eligible when all are true.
        size: ``n`` (at least 2).
        count: number of grids ``G`` (at least 1).
        seed: sampling seed.
        threshold: the threshold the eligibility used (recorded).
        identity: :func:`dataset_identity` of the split.
        ids: the images' ids (default: their indices as text).
        selected_by: names of the selecting models (recorded).
        selected_from: when only the split's first images were forwarded, how many (recorded;
            the flags of the others must be false).
    """
    if int(size) < 2:
        raise GridError(f"grid size must be at least 2 (a 1×1 grid scores 1 always), got {size}")
    if int(count) < 1:
        raise GridError(f"the number of grids must be at least 1, got {count}")
    labels = np.asarray(labels, dtype=np.int64)
    flags = [np.asarray(e, dtype=bool) for e in eligible]
    if not flags:
        raise GridError("grids need the eligibility of at least one model")
    both = np.logical_and.reduce(flags) if len(flags) > 1 else flags[0]
    indices = sample_grids(labels, both, int(size), int(count), int(seed))
    names = [str(i) for i in range(labels.size)] if ids is None else [str(i) for i in ids]
    return Grids(
        size=int(size),
        indices=indices,
        labels=labels[indices],
        ids=[[names[i] for i in row] for row in indices],
        threshold=float(threshold),
        seed=int(seed),
        identity=dict(identity),
        selected_by=[str(s) for s in selected_by],
        eligible_images=int(both.sum()),
        selected_from=None if selected_from is None else int(selected_from),
    )


def save_grids(path: str | os.PathLike, grids: Grids) -> Path:
    """Write a grids file atomically (JSON)."""
    return atomic_write_text(path, json.dumps(grids.to_dict(), indent=1) + "\n")


def load_grids(path: str | os.PathLike) -> Grids:
    """Read and validate a grids file written by :func:`save_grids`.

    Raises:
        GridError: naming the file, when it is missing, not JSON, not a grids file, or
            inconsistent (cells per grid, repeated classes in a grid).
    """
    path = Path(path)
    if not path.is_file():
        raise GridError(f"grids file {str(path)!r} does not exist")
    try:
        doc = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise GridError(f"grids file {str(path)!r} is not valid JSON ({error})") from None
    if not isinstance(doc, dict) or doc.get("format") != GRID_FORMAT:
        raise GridError(
            f"{str(path)!r} is not a grids file (no 'format': {GRID_FORMAT!r}); give a file "
            "evaluate.py --metrics gridpg or bench/localisation.py wrote, or a new path to create"
        )
    if doc.get("version") != GRID_VERSION:
        raise GridError(f"grids file {str(path)!r} has version {doc.get('version')!r}, "
                        f"this library reads version {GRID_VERSION}")  # fmt: skip
    try:
        size = int(doc["size"])
        rows = doc["grids"]
        indices = np.array([r["indices"] for r in rows], dtype=np.int64).reshape(-1, size * size)
        labels = np.array([r["labels"] for r in rows], dtype=np.int64).reshape(-1, size * size)
        ids = [[str(i) for i in r["ids"]] for r in rows]
        grids = Grids(
            size=size,
            indices=indices,
            labels=labels,
            ids=ids,
            threshold=float(doc["threshold"]),
            seed=int(doc["seed"]),
            identity=dict(doc["dataset"]),
            selected_by=[str(s) for s in doc.get("selected_by", [])],
            eligible_images=int(doc.get("eligible_images", 0)),
            selected_from=(None if doc.get("selected_from") is None
                           else int(doc["selected_from"])),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as error:
        raise GridError(f"grids file {str(path)!r} is damaged ({error!r})") from None
    if not rows or any(len(i) != size * size for i in ids):
        raise GridError(f"grids file {str(path)!r} is damaged (cells per grid differ from n²)")
    if any(len(set(row)) != size * size for row in labels.tolist()):
        raise GridError(f"grids file {str(path)!r} is damaged (a grid repeats a class)")
    return grids


def check_identity(grids: Grids, identity: Mapping[str, Any], path: Any = "the grids") -> None:
    """Refuse grids made on another split (or another version of it), naming what differs."""
    keys = ("name", "root", "options", "split", "num_images", "labels_sha256")
    differing = [k for k in keys if grids.identity.get(k) != identity.get(k)]
    if differing:
        details = "; ".join(
            f"{k}: file {grids.identity.get(k)!r}, now {identity.get(k)!r}" for k in differing
        )
        raise GridError(
            f"{path} were made on another dataset split ({details}): pass a new grids path to "
            "build grids for this one, or evaluate the split the grids were made on"
        )
    top = int(grids.indices.max()) if grids.indices.size else -1
    if top >= int(identity.get("num_images", 0)):
        raise GridError(f"{path} index image {top}, beyond the split's {identity['num_images']}")
