"""Render a composites split once into memory-mapped arrays, keyed by everything that shapes it.

Rendering a 128-px composite costs about 2 ms of CPU per sample, every epoch, in every worker. The
cache renders a split once into ``<cache_dir>/<key>/{images,masks,labels}.npy`` and serves samples
from memory-mapped views, so an epoch costs what the model costs.

* **Key**: a SHA-256 over a format version, every option that changes a sample (split, seed,
  sample count, size, clutter, scale, threshold, saturation, class selection) and the *content*
  the rendering reads — the object items and their labels, the seeded item order and the
  background photographs. A changed option or a changed source file gives another key, so a stale
  cache is never served; options that do not change samples are not in the key.
* **Atomic and concurrent-safe**: a build holds an exclusive ``fcntl`` lock on
  ``<key>.lock``, renders into a private temporary folder, writes ``meta.json`` last and renames
  the folder into place. A second process (another run, a DDP rank) waits on the lock and then
  reuses the finished folder. A folder without ``meta.json`` (a build killed before its rename
  cannot leave one, but a hand-made or truncated copy can) is removed and rebuilt; temporary
  folders of killed builds are removed by the next build of that key.
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
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scouter.data.composites import CompositesDataset

FORMAT_VERSION = 1
CACHE_ENV = "SCOUTER_CACHE_DIR"
_ARRAYS = ("images", "masks", "labels")
log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$SCOUTER_CACHE_DIR/composites`` if set, else ``~/.cache/scouter/composites``."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "scouter") / "composites"


def cache_key(dataset: CompositesDataset) -> str:
    """Hex digest identifying the samples ``dataset`` renders (see the module docstring)."""
    digest = hashlib.sha256()
    options = {
        "version": FORMAT_VERSION,
        "split": dataset.split,
        "seed": dataset.seed,
        "num_samples": dataset.num_samples,
        "size": [dataset.height, dataset.width],
        "clutter": dataset.clutter,
        "scale": list(dataset.scale),
        "threshold": dataset.threshold,
        "saturation": dataset.saturation,
        "num_classes": dataset.num_classes,
    }
    digest.update(json.dumps(options, sort_keys=True).encode())
    for array in (dataset._items, dataset._item_labels, dataset._order, *dataset.backgrounds):
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()[:32]


def _complete(folder: Path) -> bool:
    return (folder / "meta.json").is_file() and all(
        (folder / f"{name}.npy").is_file() for name in _ARRAYS
    )


def _render_into(dataset: CompositesDataset, folder: Path) -> None:
    n, h, w = dataset.num_samples, dataset.height, dataset.width
    images = np.lib.format.open_memmap(folder / "images.npy", "w+", np.uint8, (n, h, w, 3))
    masks = np.lib.format.open_memmap(folder / "masks.npy", "w+", np.uint8, (n, h, w))
    labels = np.lib.format.open_memmap(folder / "labels.npy", "w+", np.int64, (n,))
    for index in range(n):
        layers = dataset.render(index)
        images[index], masks[index], labels[index] = (
            layers["image"],
            layers["mask"],
            layers["label"],
        )
    for array in (images, masks, labels):
        array.flush()
    del images, masks, labels


def ensure_cache(dataset: CompositesDataset, cache_dir: str | Path | None = None) -> Path:
    """The folder of ``dataset``'s cached samples, built (once, under a lock) if missing.

    Raises:
        PermissionError: ``cache_dir`` cannot be created or written, with the ways out.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock_path = root / f"{cache_key(dataset)}.lock"
        lock = lock_path.open("a")
    except OSError as err:
        raise PermissionError(
            f"cannot write the composites cache in '{root}' ({err.strerror}): set "
            f"dataset_options.cache_dir (or the {CACHE_ENV} environment variable) to a writable "
            "folder, or cache: false to render every sample on the fly"
        ) from err
    key = lock_path.stem
    final = root / key
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if we crash
        if _complete(final):
            return final
        for leftover in [*root.glob(f".{key}.*.tmp"), *([final] if final.exists() else [])]:
            shutil.rmtree(leftover, ignore_errors=True)  # killed builds; we hold the lock
        partial = root / f".{key}.{uuid.uuid4().hex[:8]}.tmp"
        partial.mkdir()
        start = time.perf_counter()
        try:
            _render_into(dataset, partial)
            meta = {"key": key, "num_samples": dataset.num_samples, "split": dataset.split}
            (partial / "meta.json").write_text(json.dumps(meta))
            os.replace(partial, final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        log.warning(
            "composites cache: rendered %d %s samples into %s in %.1f s",
            dataset.num_samples,
            dataset.split,
            final,
            time.perf_counter() - start,
        )
    return final


def open_cache(folder: Path) -> dict[str, np.ndarray]:
    """Read-only memory-mapped ``images (N, H, W, 3)``, ``masks (N, H, W)``, ``labels (N,)``."""
    return {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
