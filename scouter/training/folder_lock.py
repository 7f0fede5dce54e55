"""One training run per checkpoint folder: a lock file naming the process that holds it.

``train.py fit`` takes ``<checkpoint folder>/train.lock`` before anything is saved there (under
DDP only global rank 0 does) and removes it when the run ends, however it ends short of being
killed. The file is JSON ``{"pid", "host", "user", "started", "token"}``, created complete with
one ``os.link`` (never seen half-written). A second run into the same folder is refused while the
holder lives; a lock whose PID no longer exists on this host (a run killed with SIGKILL, a node
crash) is stale and taken over with a message, so ``--ckpt_path last`` resumes after a kill.
A lock from another host cannot be checked and is never taken over.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import getpass
import json
import os
import secrets
import socket
from pathlib import Path
from typing import Any

from pytorch_lightning.utilities.rank_zero import rank_zero_warn

LOCK_NAME = "train.lock"

# lock path -> (token, number of holders in this process). Several checkpoint callbacks of one
# run may share a folder; they share its lock.
_HELD: dict[str, list[Any]] = {}


class CheckpointFolderLockedError(RuntimeError):
    """Another live run writes into the same checkpoint folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _read(path: Path) -> dict[str, Any] | None:
    """The lock's record; ``None`` when it vanished; ``{}`` when it is not a lock we wrote."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return {}
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else {}


def _create(path: Path, record: dict[str, Any]) -> bool:
    """Create ``path`` holding ``record`` atomically; ``False`` when it already exists."""
    tmp = path.with_name(f".{path.name}.{record['token']}.tmp")
    tmp.write_text(json.dumps(record) + "\n")
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale(path: Path, seen: dict[str, Any]) -> None:
    """Remove the lock only if it still holds the stale record ``seen`` (not a fresh one)."""
    moved = path.with_name(f".{path.name}.{secrets.token_hex(4)}.stale")
    try:
        os.rename(path, moved)
    except FileNotFoundError:
        return
    if _read(moved) != seen:  # another run took it over first: give its lock back
        with contextlib.suppress(FileExistsError):
            os.link(moved, path)
    moved.unlink(missing_ok=True)


def acquire(folder: str | os.PathLike) -> str:
    """Take the lock of checkpoint folder ``folder`` (created if missing) for this process.

    Returns:
        The lock file's path (pass it to :func:`release`).

    Raises:
        CheckpointFolderLockedError: naming the holder's PID and host, when another live run (or
            one on another host) holds the folder, or the lock file is not readable as one.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    key = str(path)
    if key in _HELD and (_read(path) or {}).get("token") == _HELD[key][0]:
        _HELD[key][1] += 1
        return key
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "user": _user(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "token": secrets.token_hex(8),
    }
    for _ in range(10):
        if _create(path, record):
            _HELD[key] = [record["token"], 1]
            return key
        holder = _read(path)
        if holder is None:  # released meanwhile
            continue
        if not holder:
            raise CheckpointFolderLockedError(
                f"checkpoint folder '{folder}' has a lock file '{path}' that is not a train.py "
                "lock: if no other run writes there, delete it and start again"
            )
        pid, host = holder["pid"], holder.get("host", "?")
        if host == record["host"] and not _pid_alive(pid):
            rank_zero_warn(
                f"taking over the stale lock '{path}' of process {pid} on {host} (started "
                f"{holder.get('started', '?')}), which no longer runs"
            )
            _remove_stale(path, holder)
            continue
        where = "on this host" if host == record["host"] else f"on host {host!r}"
        raise CheckpointFolderLockedError(
            f"checkpoint folder '{folder}' is in use by another training run: process {pid} "
            f"{where} (user {holder.get('user', '?')}, started {holder.get('started', '?')}) holds "
            f"'{path}'. Two runs into one folder would overwrite each other's checkpoints: give "
            "this run another folder (ScouterCheckpoint dirpath, e.g. one containing {run}), wait "
            "for that run to end, or, if that process is not a train.py run of this folder (a "
            "dead run's PID reused, a crashed host), delete the lock file"
        )
    raise CheckpointFolderLockedError(
        f"could not take the lock '{path}': other runs keep taking it; start one run per folder"
    )


def release(path: str | None) -> None:
    """Drop this process' hold on the lock ``path``; the file goes with the last holder."""
    if path is None or path not in _HELD:
        return
    held = _HELD[path]
    held[1] -= 1
    if held[1] > 0:
        return
    del _HELD[path]
    if (_read(Path(path)) or {}).get("token") == held[0]:  # never remove another run's lock
        Path(path).unlink(missing_ok=True)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in a container without passwd entry
        return str(os.getuid()) if hasattr(os, "getuid") else "?"


@atexit.register
def _release_all() -> None:
    for path in list(_HELD):
        _HELD[path][1] = 1
        release(path)
