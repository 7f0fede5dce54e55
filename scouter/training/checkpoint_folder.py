"""The files of a run's checkpoint folder: unfinished saves, and the checkpoints of an earlier run.

Only the run holding the folder's lock (:mod:`scouter.training.folder_lock`) calls these, so no
live run's files are touched.

* A checkpoint is first written to a hidden ``.<name>.<token>.partial`` file and renamed over its
  target when complete (:class:`~scouter.training.callbacks.ScouterCheckpoint`). A failed save
  removes its own partial file; one killed while saving cannot, and its leftover (as large as a
  checkpoint) is removed by the next run that takes the folder.
* A new run (not resumed from this folder) would otherwise find the earlier run's ``last.ckpt``
  and best checkpoints beside its own, and Lightning would name its own ``last-v1.ckpt``: every
  command reading ``<folder>/last.ckpt`` would silently get the earlier model. The earlier run's
  ``*.ckpt`` files are moved, unchanged, to ``<folder>/earlier_runs/<time of its last save>/``.
"""

from __future__ import annotations

import datetime
import os
import re
from pathlib import Path

EARLIER_RUNS = "earlier_runs"


def is_local_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` is on the local file system: no fsspec protocol (``s3://``,
    ``memory::``) or ``file://``. The rule of ``fsspec.utils.get_protocol``, which Lightning
    uses to choose a file system."""
    parts = re.split(r"(::|://)", os.fspath(path), maxsplit=1)
    return len(parts) == 1 or parts[0] == "file"


def partial_path(folder: str | os.PathLike, name: str, token: str) -> str:
    """The hidden file a checkpoint ``name`` is written to before it is renamed into place."""
    return os.path.join(folder, f".{name}.{token}.partial")


def leftover_partials(folder: str | os.PathLike) -> list[Path]:
    """Unfinished checkpoint files in ``folder`` (never matched by ``*.ckpt``)."""
    return sorted(path for path in Path(folder).glob(".*.partial") if path.is_file())


def describe_partials(paths: list[Path]) -> str:
    """``"2 unfinished checkpoint files (12.3 MB: a, b)"`` for messages; ``""`` when none."""
    if not paths:
        return ""
    size = 0
    for path in paths:
        try:
            size += path.stat().st_size
        except OSError:
            pass
    names = ", ".join(str(path) for path in paths)
    return f"{len(paths)} unfinished checkpoint file(s) ({size / 1e6:.1f} MB: {names})"


def remove_leftover_partials(folder: str | os.PathLike) -> list[Path]:
    """Delete the unfinished checkpoint files of earlier, dead runs; returns what was removed."""
    removed = []
    for path in leftover_partials(folder):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def set_aside_earlier_run(folder: str | os.PathLike) -> Path | None:
    """Move the ``*.ckpt`` files of ``folder`` to ``folder/earlier_runs/<time>/``.

    ``<time>`` is the local time of the earlier run's last save (``last.ckpt``'s, else the newest
    file's modification time), ``-1``, ``-2`` … appended when taken. ``last.ckpt`` goes first, so
    an interruption never leaves it behind with the rest moved.

    Returns:
        The new folder, or ``None`` when ``folder`` held no checkpoint.
    """
    folder = Path(folder)
    files = [path for path in folder.glob("*.ckpt") if path.is_file()]
    if not files:
        return None
    files.sort(key=lambda path: (path.name != "last.ckpt", path.name))
    newest = max(path.stat().st_mtime for path in files)
    when = files[0].stat().st_mtime if files[0].name == "last.ckpt" else newest
    stamp = datetime.datetime.fromtimestamp(when).strftime("%Y-%m-%d_%H-%M-%S")
    target = folder / EARLIER_RUNS / stamp
    number = 0
    while True:
        try:
            target.mkdir(parents=True)
            break
        except FileExistsError:
            number += 1
            target = folder / EARLIER_RUNS / f"{stamp}-{number}"
    for path in files:
        os.replace(path, target / path.name)
    return target
