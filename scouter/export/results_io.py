"""Atomic writers for the results files of an evaluation run (docs/metrics.md#results-files).

Every file is written to a temporary file in the destination folder and moved into place with
``os.replace`` (atomic on POSIX and Windows), so an interrupted or failing write never leaves a
truncated file and never damages an existing one.

The pair ``results.json`` + ``per_image.csv`` of one run (:func:`write_results`) is published as
a unit, by one rename, into this layout of the ``--out`` folder::

    latest -> .results/<run>          a symbolic link, replaced in one rename per run
    results.json -> latest/results.json     links through ``latest``, made once
    per_image.csv -> latest/per_image.csv
    .results/<run>/results.json       the pairs, each complete before it is published and never
    .results/<run>/per_image.csv      changed after; the current and the previous one are kept

1. both files are written completely into a private folder ``.results/.<run>.tmp`` and fsynced,
   which is renamed to ``.results/<run>``; ``results.json`` records the SHA-256 of its
   ``per_image.csv`` (``files``);
2. a new link to it replaces ``latest`` (``os.replace``): this is the commit point;
3. older pairs than the previous one are removed.

So the files on disk are one run's pair at every instant, and a kill or failure at any point
leaves the previous pair published and intact (leftovers are removed by the next write).
**Reading safely** while another run may commit into the folder: resolve ``latest`` once and read
both files from that folder, which no later commit changes (nor removes before a second one)::

    run = os.path.realpath("out/latest")
    results = json.load(open(os.path.join(run, "results.json")))
    table = pandas.read_csv(os.path.join(run, "per_image.csv"))

(or ``run=$(readlink -f out/latest)`` in a shell; :func:`read_results` does this and checks the
SHA-256). Opening ``out/results.json`` and then ``out/per_image.csv`` is right whenever no commit
falls between the two opens. Folders written by earlier versions (plain files and a commit record,
``.results-commit.json``) are read as before, and converted by their next write.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from scouter.atomic_io import atomic_write_bytes, atomic_write_text, file_sha256

__all__ = [
    "RESULTS_FILES",
    "ResultsFolderError",
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
#: The link to the folder holding the current pair (module docstring).
LATEST = "latest"
#: The folder of published pairs, one sub-folder per run.
SNAPSHOTS = ".results"
#: The commit record of the earlier, two-rename protocol (still rolled forward).
COMMIT_RECORD = ".results-commit.json"


class ResultsFolderError(OSError):
    """An ``--out`` folder whose ``latest`` entry is not the link the results files need."""


class ResultsMismatchError(ValueError):
    """``results.json`` and ``per_image.csv`` of a folder do not come from the same run."""


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


def _roll_forward_legacy_commit(folder: Path) -> None:
    """Finish a commit of the earlier protocol (both renames named in ``.results-commit.json``)."""
    record = folder / COMMIT_RECORD
    if not record.is_file():
        return
    try:
        renames = json.loads(record.read_text())["renames"]
    except (ValueError, KeyError, TypeError):
        renames = []  # cannot be: the record is written atomically; treat as uncommitted
    for tmp, final in renames:
        if (folder / tmp).is_file():
            os.replace(folder / tmp, folder / final)
    _fsync_folder(folder)
    record.unlink()


def _replace_with_link(path: Path, target: str) -> None:
    """Make ``path`` a symbolic link to ``target`` (relative) in one rename."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _link_results_files(folder: Path) -> None:
    """``results.json`` and ``per_image.csv`` as links through ``latest`` (once per folder)."""
    for name in RESULTS_FILES:
        path, target = folder / name, os.path.join(LATEST, name)
        if not (path.is_symlink() and os.readlink(path) == target):
            _replace_with_link(path, target)


def _current_run(folder: Path) -> Path | None:
    """The folder ``latest`` points at (None when there is no ``latest``)."""
    latest = folder / LATEST
    if not latest.is_symlink():
        if latest.exists():
            raise ResultsFolderError(
                f"'{latest}' is not the link the results files need (it is a "
                f"{'folder' if latest.is_dir() else 'file'}): move it away, or evaluate into "
                "another --out folder"
            )
        return None
    return latest.resolve()


def recover_results_folder(folder: str | os.PathLike) -> None:
    """Tidy ``folder`` before a write: finish or discard what an interrupted one left.

    An earlier-protocol commit record is rolled forward; the private folders and links of a write
    that never reached its commit point are removed; a commit whose ``results.json`` /
    ``per_image.csv`` links were not yet made gets them. Nothing happens in a clean folder.
    """
    folder = Path(folder)
    _roll_forward_legacy_commit(folder)
    for pattern in (
        *(f".{name}.*.tmp" for name in (*RESULTS_FILES, COMMIT_RECORD, LATEST)),
        f"{SNAPSHOTS}/.*.tmp",
    ):
        for leftover in folder.glob(pattern):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
    if _current_run(folder) is not None:
        _link_results_files(folder)


def _prune(folder: Path, keep: Path) -> None:
    """Remove published pairs other than ``keep`` and the newest one before it."""
    runs = sorted(
        (p for p in (folder / SNAPSHOTS).iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    older = [p for p in runs if p.name < keep.name]
    for run in older[:-1]:
        shutil.rmtree(run, ignore_errors=True)


def _write_private(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_results(
    folder: str | os.PathLike,
    results: Mapping[str, Any],
    rows: Iterable[Mapping[str, Any]],
    fieldnames: Sequence[str] | None = None,
) -> Path:
    """Publish ``folder``'s ``results.json`` and ``per_image.csv`` together, by one rename.

    See the module docstring for the layout, the protocol and how to read the pair safely.
    ``results.json`` gets ``files: {"per_image.csv": <SHA-256>}``; both documents are serialised
    before anything is written.

    Returns:
        The folder.

    Raises:
        ResultsFolderError: ``folder/latest`` exists and is no link (nothing is written).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    recover_results_folder(folder)
    table = _csv_text(rows, fieldnames).encode("utf-8")
    document = dict(results)
    document["files"] = {"per_image.csv": hashlib.sha256(table).hexdigest()}
    contents = {"results.json": _results_text(document).encode("utf-8"), "per_image.csv": table}
    # Names sort by time, so pruning keeps the newest; the random part keeps them unique.
    now = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 10**9))
    run = f"{stamp}.{now % 10**9:09d}-{secrets.token_hex(3)}"
    snapshots = folder / SNAPSHOTS
    snapshots.mkdir(exist_ok=True)
    private, published = snapshots / f".{run}.tmp", snapshots / run
    committed = False
    try:
        private.mkdir()
        for name in RESULTS_FILES:
            _write_private(private / name, contents[name])
        _fsync_folder(private)
        os.replace(private, published)
        _fsync_folder(snapshots)
        _replace_with_link(folder / LATEST, os.path.join(SNAPSHOTS, run))  # the commit point
        committed = True
        _fsync_folder(folder)
    except BaseException:
        if not committed:
            for path in (private, published):
                shutil.rmtree(path, ignore_errors=True)
        raise
    _link_results_files(folder)
    _prune(folder, published)
    return folder


def read_results(folder: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """``results.json`` (parsed) and ``per_image.csv`` (rows of strings) of one run in ``folder``.

    Reads both files from the folder ``latest`` points at, resolved once, so a run committing
    meanwhile cannot mix them; folders of the earlier layout are read from their plain files.

    Raises:
        ResultsMismatchError: when the CSV is not the one the JSON records (naming both files).
    """
    folder = Path(folder)
    run = _current_run(folder)
    if run is None:  # the earlier layout: plain files, perhaps a commit to finish
        _roll_forward_legacy_commit(folder)
        run = folder
    results = json.loads((run / "results.json").read_text())
    table = (run / "per_image.csv").read_bytes()
    expected = (results.get("files") or {}).get("per_image.csv")
    if expected is not None and hashlib.sha256(table).hexdigest() != expected:
        raise ResultsMismatchError(
            f"'{run / 'per_image.csv'}' is not the per-image table of "
            f"'{run / 'results.json'}' (its SHA-256 differs from the one recorded there): the "
            "two come from different runs; evaluate again into this folder to rewrite both"
        )
    return results, list(csv.DictReader(io.StringIO(table.decode("utf-8"))))
