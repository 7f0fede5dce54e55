"""Atomic writers for the results files of an evaluation run (docs/metrics.md#results-files).

Every file is written to a temporary file in the destination folder and moved into place with
``os.replace`` (atomic on POSIX and Windows), so an interrupted or failing write never leaves a
truncated file and never damages an existing one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from scouter.atomic_io import atomic_write_bytes, atomic_write_text

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "file_sha256",
    "write_per_image_csv",
    "write_results_json",
]


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file (e.g. the evaluated checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """JSON-safe copy: tensors and NumPy values to Python numbers/lists, NaN/inf to ``None``."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist()
    elif hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # NumPy
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # JSON has no NaN; null = undefined
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    raise TypeError(f"cannot write {type(value).__name__} to the results JSON: {value!r}")


def write_results_json(path: str | os.PathLike, results: Mapping[str, Any]) -> Path:
    """Write one evaluation run's results JSON atomically.

    Expected content (docs/metrics.md#results-files): the full config, the checkpoint's SHA-256,
    dataset and split, number of images, each metric's value with its settings, NaN counts.
    Tensors and NumPy values are converted; NaN and ±inf become ``null``. The whole document is
    serialised before the file is touched, so an unserialisable value raises without writing
    anything.

    Args:
        path: destination ``.json``.
        results: the nested results mapping.

    Returns:
        The destination path.
    """
    text = json.dumps(_plain(results), indent=2, sort_keys=False, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def write_per_image_csv(
    path: str | os.PathLike,
    rows: Iterable[Mapping[str, Any]],
    fieldnames: Sequence[str] | None = None,
) -> Path:
    """Write the per-image CSV (id, label, explained class, prediction, metric values) atomically.

    Args:
        path: destination ``.csv``.
        rows: one mapping per image; tensors / NumPy scalars are converted, NaN is written empty.
        fieldnames: column order; default the keys of the first row, then new keys in order seen.

    Returns:
        The destination path.
    """
    rows = [{k: _plain(v) for k, v in row.items()} for row in rows]
    if fieldnames is None:
        fieldnames = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())
