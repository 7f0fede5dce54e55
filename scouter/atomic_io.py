"""Atomic file writes: a temporary file in the destination folder, fsync, then ``os.replace``.

An interrupted or failing write never leaves a truncated file, and an existing file stays as it
was. Used for checkpoints exports and every results file. Permissions are those a plain ``open``
gives: ``0o666`` minus the umask for a new file, the old file's mode when one is replaced.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Create ``path`` atomically with ``write(temporary_path)``.

    Args:
        path: destination; its folder is created if needed.
        write: writes the whole content to the temporary file name it is given (which lies in the
            same folder, hence on the same file system, so the final rename is atomic).

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, mode = _create_temporary(path)
    try:
        write(tmp)
        # Some writers (safetensors) replace the file with a 0600 one of their own.
        if stat.S_IMODE(os.stat(tmp).st_mode) != mode:
            os.chmod(tmp, mode)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _create_temporary(path: Path) -> tuple[str, int]:
    """An empty hidden file beside ``path``, and the mode ``open(path, "w")`` would leave.

    That mode is ``0o666`` minus the umask for a new file (the kernel applies the umask to
    ``os.open(..., 0o666)``), and the old file's mode when ``path`` exists.
    ``tempfile.mkstemp`` would create 0600 whatever the umask, and the rename keeps it.
    """
    try:
        existing = path.stat().st_mode & 0o777
    except OSError:
        existing = None
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            mode = stat.S_IMODE(os.fstat(fd).st_mode) if existing is None else existing
        finally:
            os.close(fd)
        return tmp, mode
    raise FileExistsError(f"could not create a temporary file beside {str(path)!r}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file (a checkpoint, a weights file), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
