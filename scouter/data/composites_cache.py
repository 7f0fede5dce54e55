"""Render a split of generated samples once into memory-mapped arrays, keyed by what shapes it.

Rendering a 128-px composite (:mod:`scouter.data.composites`) costs about 2 ms of CPU per sample,
every epoch, in every worker. The cache renders a split once into
``<cache_dir>/<key>/{images,masks,labels}.npy`` and serves samples from memory-mapped views, so an
epoch costs what the model costs. It knows only samples of ``image (H, W, 3)`` uint8,
``mask (H, W)`` uint8 and an integer label, a key and a render function; the dataset says what
goes into its key (:func:`cache_key`).

* **Key**: a SHA-256 over the cache's format version, the options the dataset names (every
  option that changes a sample) and the arrays it names (the *content* the rendering reads). A
  changed option or a changed source file gives another key, so a stale cache is never served;
  options that do not change samples are not in the key.
* **Atomic and concurrent-safe**: a build holds an exclusive ``fcntl`` lock on
  ``<key>.lock``, renders into a private temporary folder, writes ``meta.json`` last and renames
  the folder into place. A second process (another run, a DDP rank) waits on the lock and then
  reuses the finished folder. Temporary folders of killed builds are removed by the next build of
  that key.
* **Integrity-checked** (format 2): ``meta.json`` records every array's shape and a CRC-32 per
  chunk of samples (about 8 MB each). Every open checks each file's size against its ``.npy``
  header and the recorded shape, so a truncated file is named instead of crashing in ``mmap``;
  each reading process verifies a chunk's checksums the first time it reads from it (lazily: a
  128-px cache of 2 000 samples costs about 0.1 s of CRC per process and epoch, measured in
  ``bench/RESULTS.md``). A chunk that fails is never served: its samples are rendered afresh, a
  warning names the file, and a ``CORRUPT`` marker makes the next run rebuild the folder. A
  folder that fails the build-time checks (no or unreadable ``meta.json``, a missing, truncated or
  reshaped file, the marker) is rebuilt, with a warning saying why.
* **Formats**: the format version is part of the key, so a cache of an older format is never
  reinterpreted: a new format builds its own folder beside it. Folders of format 1 (no checksums)
  stay readable by processes already using them (size checks only).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

FORMAT_VERSION = 2
CACHE_ENV = "SCOUTER_CACHE_DIR"
CORRUPT_MARKER = "CORRUPT"
_ARRAYS = ("images", "masks", "labels")
_CHUNK_BYTES = 8 << 20  # the unit of lazy verification: small enough to check on first touch
log = logging.getLogger(__name__)


class CorruptCacheError(RuntimeError):
    """A composites cache folder that cannot be read as written (the message names the file)."""


def _fix(folder: Path) -> str:
    return (
        f"delete the folder '{folder}' and run again to rebuild it, or set "
        "dataset_options.cache: false to render samples on the fly"
    )


def default_cache_dir() -> Path:
    """``$SCOUTER_CACHE_DIR/composites`` if set, else ``~/.cache/scouter/composites``."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "scouter") / "composites"


def cache_key(options: Mapping[str, object], arrays: Iterable[np.ndarray]) -> str:
    """Hex digest (32 characters) of the format version, ``options`` and ``arrays``.

    Args:
        options: JSON-serialisable values that change a sample (hashed as sorted-key JSON,
            together with ``"version"``, the format version).
        arrays: the content the rendering reads, each hashed with its shape and dtype.
    """
    if "version" in options:
        raise ValueError("cache key options must not name 'version' (the cache's own entry)")
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": FORMAT_VERSION, **options}, sort_keys=True).encode())
    for array in arrays:
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()[:32]


def _npy_layout(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, expected file size)`` from a ``.npy`` file's header."""
    with path.open("rb") as handle:
        major, _ = np.lib.format.read_magic(handle)
        read = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read(handle)
        offset = handle.tell()
    return shape, dtype, offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def _read_meta(folder: Path) -> dict:
    path = folder / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CorruptCacheError(f"composites cache '{folder}' has no meta.json") from None
    except (OSError, ValueError) as err:
        raise CorruptCacheError(f"composites cache file '{path}' is unreadable ({err})") from None
    if not isinstance(meta, dict):
        raise CorruptCacheError(f"composites cache file '{path}' is not a JSON object")
    return meta


def _check_files(folder: Path, meta: dict) -> dict[str, tuple[int, ...]]:
    """Each array file's shape, after checking its size (and, format 2, its recorded shape)."""
    shapes = {}
    for name in _ARRAYS:
        path = folder / f"{name}.npy"
        try:
            shape, _, expected = _npy_layout(path)
            actual = path.stat().st_size
        except FileNotFoundError:
            raise CorruptCacheError(f"composites cache file '{path}' is missing") from None
        except (OSError, ValueError) as err:
            raise CorruptCacheError(
                f"composites cache file '{path}' has an unreadable header ({err})"
            ) from None
        if actual != expected:
            raise CorruptCacheError(
                f"composites cache file '{path}' is {actual} bytes, but its header needs "
                f"{expected} (truncated or overwritten)"
            )
        recorded = meta.get("arrays", {}).get(name, {}).get("shape")
        if meta.get("version", 1) >= 2 and (recorded is None or tuple(recorded) != shape):
            raise CorruptCacheError(
                f"composites cache file '{path}' holds shape {shape}, but meta.json records "
                f"{recorded}"
            )
        shapes[name] = shape
    return shapes


def _problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be served (None: it can)."""
    if not folder.exists():
        return None
    if (folder / CORRUPT_MARKER).exists():
        note = (folder / CORRUPT_MARKER).read_text(errors="replace").strip()
        return f"a reader found corrupt data ({note})"
    try:
        meta = _read_meta(folder)
        if meta.get("version") != FORMAT_VERSION:
            return f"format {meta.get('version')} instead of {FORMAT_VERSION}"
        _check_files(folder, meta)
    except CorruptCacheError as err:
        return str(err)
    return None


def _chunk_rows(images_shape: tuple[int, ...]) -> int:
    per_sample = int(np.prod(images_shape[1:3], dtype=np.int64)) * 4  # RGB + mask bytes
    return max(1, _CHUNK_BYTES // max(1, per_sample))


def _chunk_checksums(arrays: dict[str, np.ndarray], chunk: int, rows: int) -> dict[str, int]:
    part = slice(chunk * rows, (chunk + 1) * rows)
    return {
        name: zlib.crc32(memoryview(np.ascontiguousarray(array[part])).cast("B"))
        for name, array in arrays.items()
    }


Render = Callable[[int], tuple[np.ndarray, np.ndarray, int]]


def _render_into(folder: Path, num_samples: int, size: tuple[int, int], render: Render) -> dict:
    n, (h, w) = num_samples, size
    images = np.lib.format.open_memmap(folder / "images.npy", "w+", np.uint8, (n, h, w, 3))
    masks = np.lib.format.open_memmap(folder / "masks.npy", "w+", np.uint8, (n, h, w))
    labels = np.lib.format.open_memmap(folder / "labels.npy", "w+", np.int64, (n,))
    for index in range(n):
        images[index], masks[index], labels[index] = render(index)
    arrays = {"images": images, "masks": masks, "labels": labels}
    for array in arrays.values():
        array.flush()
    rows = _chunk_rows(images.shape)
    chunks = [_chunk_checksums(arrays, c, rows) for c in range(-(-n // rows))]
    description = {
        name: {"shape": list(array.shape), "crc32": [c[name] for c in chunks]}
        for name, array in arrays.items()
    }
    del images, masks, labels, arrays
    return {"chunk_rows": rows, "arrays": description}


def ensure_cache(
    key: str,
    num_samples: int,
    size: tuple[int, int],
    render: Render,
    cache_dir: str | Path | None = None,
    split: str = "",
) -> Path:
    """The folder of the samples cached under ``key``, built (once, under a lock) if missing.

    A folder that fails the checks of the module docstring is rebuilt, with a warning saying why.

    Args:
        key: the samples' :func:`cache_key`; names the folder.
        num_samples: number of samples N.
        size: ``(H, W)`` of every image and mask.
        render: sample index → ``(image (H, W, 3) uint8, mask (H, W) uint8, label int)``.
        cache_dir: the cache's root (default :func:`default_cache_dir`).
        split: the split's name, recorded in ``meta.json`` and the build's log line.

    Raises:
        PermissionError: ``cache_dir`` cannot be created or written, with the ways out.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock_path = root / f"{key}.lock"
        lock = lock_path.open("a")
    except OSError as err:
        raise PermissionError(
            f"cannot write the composites cache in '{root}' ({err.strerror}): set "
            f"dataset_options.cache_dir (or the {CACHE_ENV} environment variable) to a writable "
            "folder, or cache: false to render every sample on the fly"
        ) from err
    final = root / key
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if we crash
        problem = _problem(final)
        if final.exists() and problem is None:
            return final
        if problem is not None:
            log.warning("composites cache: rebuilding %s: %s", final, problem)
        for leftover in [*root.glob(f".{key}.*.tmp"), *([final] if final.exists() else [])]:
            # Killed builds and a failed folder (we hold the lock; readers that still map its
            # files keep them until they close them).
            shutil.rmtree(leftover, ignore_errors=True)
        partial = root / f".{key}.{uuid.uuid4().hex[:8]}.tmp"
        partial.mkdir()
        start = time.perf_counter()
        try:
            layout = _render_into(partial, num_samples, size, render)
            meta = {
                "version": FORMAT_VERSION,
                "key": key,
                "num_samples": num_samples,
                "split": split,
                **layout,
            }
            (partial / "meta.json").write_text(json.dumps(meta))
            os.replace(partial, final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        log.warning(
            "composites cache: rendered %d %s samples into %s in %.1f s",
            num_samples,
            split,
            final,
            time.perf_counter() - start,
        )
    return final


class CacheReader:
    """Read-only memory-mapped ``images (N, H, W, 3)``, ``masks (N, H, W)``, ``labels (N,)``.

    Opening checks every file's size and shape; :meth:`read` verifies a chunk's checksums on its
    first use in this process (format 2) and returns None for a sample of a corrupt chunk.

    Raises:
        CorruptCacheError: (on opening) a missing, truncated or reshaped file, or no meta.json,
            naming the file and the fix.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        try:
            meta = _read_meta(self.folder)
            _check_files(self.folder, meta)
        except CorruptCacheError as err:
            raise CorruptCacheError(f"{err} — {_fix(self.folder)}") from None
        self.arrays = {
            name: np.load(self.folder / f"{name}.npy", mmap_mode="r") for name in _ARRAYS
        }
        self._rows = int(meta.get("chunk_rows", 0))
        self._checksums = {name: entry["crc32"] for name, entry in meta.get("arrays", {}).items()}
        self._verified: set[int] = set()
        self._corrupt: set[int] = set()

    def _verify(self, chunk: int) -> bool:
        if not self._rows or chunk in self._verified:  # format 1: no checksums to verify
            return True
        if chunk in self._corrupt:
            return False
        actual = _chunk_checksums(self.arrays, chunk, self._rows)
        bad = [name for name in _ARRAYS if actual[name] != self._checksums[name][chunk]]
        if not bad:
            self._verified.add(chunk)
            return True
        self._corrupt.add(chunk)
        first, last = chunk * self._rows, min((chunk + 1) * self._rows, len(self.arrays["labels"]))
        files = ", ".join(str(self.folder / f"{name}.npy") for name in bad)
        note = f"samples {first}-{last - 1} of {files} fail their checksums"
        log.warning(
            "composites cache: %s; rendering them afresh instead, and the next run rebuilds the "
            "folder (or %s)",
            note,
            _fix(self.folder),
        )
        try:
            (self.folder / CORRUPT_MARKER).write_text(note + "\n")
        except OSError:
            pass  # a read-only cache: the warning above still names the folder to delete
        return False

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, int] | None:
        """``(image, mask, label)`` copies of sample ``index``, None if its chunk is corrupt."""
        if not self._verify(index // self._rows if self._rows else 0):
            return None
        # Copies: transforms write into their inputs, the maps are read-only.
        return (
            np.array(self.arrays["images"][index]),
            np.array(self.arrays["masks"][index]),
            int(self.arrays["labels"][index]),
        )


def open_cache(folder: Path) -> CacheReader:
    """A :class:`CacheReader` of ``folder`` (its size and shape checks run here)."""
    return CacheReader(folder)
