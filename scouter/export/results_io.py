"""Atomic writers for the results files of an evaluation run (docs/metrics.md#results-files).

Every file is written to a temporary file in the destination folder and moved into place with
``os.replace`` (atomic on POSIX and Windows), so an interrupted or failing write never leaves a
truncated file and never damages an existing one.

The pair ``results.json`` + ``per_image.csv`` of one run (:func:`write_results`) is replaced as a
unit, with a commit record (a one-file journal) in the same folder:

1. both new files are written completely to hidden temporary files beside their targets and
   fsynced; ``results.json`` records the SHA-256 of its ``per_image.csv`` (``files``);
2. the commit record ``.results-commit.json``, naming the two ``temporary → final`` renames, is
   written atomically: this is the commit point;
3. the two renames are done, then the record is removed.

A failure or kill before step 2 leaves the old pair untouched (the temporary files are removed at
once, or by the next start); after step 2 the new pair is decided, and a kill between the two
renames is rolled forward by :func:`recover_results_folder`, which every :func:`write_results`,
:func:`read_results` and ``evaluate.py --out`` run does first. :func:`read_results` also checks
the recorded SHA-256, so a pair mixed by hand (or by another tool) is reported, never read as one
run's.
"""

from __future__ import annotations

import contextlib
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

from scouter.atomic_io import atomic_write_bytes, atomic_write_text, stage_file

__all__ = [
    "RESULTS_FILES",
    "ResultsMismatchError",
    "atomic_write_bytes",
    "atomic_write_text",
    "file_sha256",
    "read_results",
    "recover_results_folder",
    "write_per_image_csv",
    "write_results",
    "write_results_json",
]

#: The files of one evaluation run in its ``--out`` folder.
RESULTS_FILES = ("results.json", "per_image.csv")
COMMIT_RECORD = ".results-commit.json"


class ResultsMismatchError(ValueError):
    """``results.json`` and ``per_image.csv`` of a folder do not come from the same run."""


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
    return atomic_write_text(path, _results_text(results))


def _results_text(results: Mapping[str, Any]) -> str:
    return json.dumps(_plain(results), indent=2, sort_keys=False, allow_nan=False) + "\n"


def json_safe(value: Any) -> Any:
    """A JSON-safe copy of ``value`` (the results files' rule, for other JSON files too):
    tensors and NumPy values as Python numbers / lists, NaN and ±inf as ``None``."""
    return _plain(value)


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
    return atomic_write_text(path, _csv_text(rows, fieldnames))


def _csv_text(rows: Iterable[Mapping[str, Any]], fieldnames: Sequence[str] | None) -> str:
    rows = [{k: _plain(v) for k, v in row.items()} for row in rows]
    if fieldnames is None:
        fieldnames = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _fsync_folder(folder: Path) -> None:
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open folders; its renames are durable enough
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def recover_results_folder(folder: str | os.PathLike) -> None:
    """Finish or discard an interrupted :func:`write_results` in ``folder`` (module docstring).

    A commit record is rolled forward (its pair was complete on disk before it was written) and
    removed; temporary files of the results files are removed. Nothing happens in a clean folder.
    """
    folder = Path(folder)
    record = folder / COMMIT_RECORD
    if record.is_file():
        try:
            renames = json.loads(record.read_text())["renames"]
        except (ValueError, KeyError, TypeError):
            renames = []  # cannot be: the record is written atomically; treat as uncommitted
        for tmp, final in renames:
            if (folder / tmp).is_file():
                os.replace(folder / tmp, folder / final)
        _fsync_folder(folder)
        record.unlink()
    for name in (*RESULTS_FILES, COMMIT_RECORD):
        for leftover in folder.glob(f".{name}.*.tmp"):
            leftover.unlink(missing_ok=True)


def write_results(
    folder: str | os.PathLike,
    results: Mapping[str, Any],
    rows: Iterable[Mapping[str, Any]],
    fieldnames: Sequence[str] | None = None,
) -> Path:
    """Replace ``folder``'s ``results.json`` and ``per_image.csv`` together, all or nothing.

    See the module docstring for the protocol. ``results.json`` gets ``files: {"per_image.csv":
    <SHA-256>}``; both documents are serialised before anything is written.

    Returns:
        The folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    recover_results_folder(folder)
    table = _csv_text(rows, fieldnames).encode("utf-8")
    document = dict(results)
    document["files"] = {"per_image.csv": hashlib.sha256(table).hexdigest()}
    contents = {"results.json": _results_text(document).encode("utf-8"), "per_image.csv": table}
    staged: list[Path] = []
    try:
        for name in RESULTS_FILES:
            staged.append(stage_file(folder / name, contents[name]))
        _fsync_folder(folder)
        renames = [[tmp.name, name] for tmp, name in zip(staged, RESULTS_FILES, strict=True)]
        atomic_write_text(folder / COMMIT_RECORD, json.dumps({"renames": renames}) + "\n")
    except BaseException:
        for tmp in staged:
            tmp.unlink(missing_ok=True)
        raise
    try:
        recover_results_folder(folder)  # the renames; a kill here is finished by the next start
    except BaseException:
        with contextlib.suppress(Exception):
            recover_results_folder(folder)  # e.g. Ctrl-C between the renames: finish them now
        raise
    return folder


def read_results(folder: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """``results.json`` (parsed) and ``per_image.csv`` (rows of strings) of one run in ``folder``.

    Raises:
        ResultsMismatchError: when the CSV is not the one the JSON records (naming both files).
    """
    folder = Path(folder)
    recover_results_folder(folder)
    results = json.loads((folder / "results.json").read_text())
    table = (folder / "per_image.csv").read_bytes()
    expected = (results.get("files") or {}).get("per_image.csv")
    if expected is not None and hashlib.sha256(table).hexdigest() != expected:
        raise ResultsMismatchError(
            f"'{folder / 'per_image.csv'}' is not the per-image table of "
            f"'{folder / 'results.json'}' (its SHA-256 differs from the one recorded there): the "
            "two come from different runs; evaluate again into this folder to rewrite both"
        )
    return results, list(csv.DictReader(io.StringIO(table.decode("utf-8"))))
