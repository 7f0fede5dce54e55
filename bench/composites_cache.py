"""Epoch time of the composites training data, rendered on the fly vs served from the cache.

Iterates one epoch of the real training DataLoader (``ScouterDataModule``: albumentations
transforms, collation) of the composites recipe's data, once rendering every sample and once from
the memory-mapped cache (``dataset_options.cache``), in one run on one machine; the cache's one-off
build is timed separately. No model runs: this is the data side of an epoch. The cache's
integrity checks are timed too: the size and shape checks of one open, and the CRC-32 of every
chunk, which each reading process pays once (on the first read from each chunk).

    python bench/composites_cache.py
    python bench/composites_cache.py --samples 20000 --workers 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.common import machine_description  # noqa: E402
from scouter.data import ScouterDataModule  # noqa: E402


def epoch_seconds(
    args: argparse.Namespace, cache: bool, cache_dir: str
) -> tuple[float, float, int]:
    """``(setup seconds, one epoch's seconds, images)`` of the training DataLoader."""
    options = {"num_samples": args.samples, "image_size": args.size, "clutter": 2}
    options.update(cache=cache, cache_dir=cache_dir)
    data = ScouterDataModule(
        dataset="composites",
        image_size=args.size,
        batch_size=32,
        num_workers=args.workers,
        mean=[0.5] * 3,
        std=[0.5] * 3,
        dataset_options=options,
    )
    start = time.perf_counter()
    data.setup("fit")
    setup = time.perf_counter() - start
    start = time.perf_counter()
    count = sum(batch["image"].shape[0] for batch in data.train_dataloader())
    return setup, (time.perf_counter() - start), count


def integrity_seconds(cache_dir: str) -> tuple[float, float]:
    """``(one open's checks, CRC of every chunk)`` of the largest cache in ``cache_dir``."""
    from scouter.data.composites_cache import open_cache

    folders = [p for p in Path(cache_dir).iterdir() if (p / "images.npy").is_file()]
    folder = max(folders, key=lambda p: (p / "images.npy").stat().st_size)
    start = time.perf_counter()
    for _ in range(10):
        open_cache(folder)
    opened = (time.perf_counter() - start) / 10
    reader = open_cache(folder)
    chunks = -(-len(reader.arrays["labels"]) // reader._rows)
    start = time.perf_counter()
    assert all(reader._verify(chunk) for chunk in range(chunks))
    return opened, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache_dir:
        _, rendered, count = epoch_seconds(args, False, cache_dir)
        build, _, _ = epoch_seconds(args, True, cache_dir)  # first use: builds the cache
        _, cached, _ = epoch_seconds(args, True, cache_dir)
        opened, crc = integrity_seconds(cache_dir)
    print(machine_description(torch.device("cpu")))
    print(
        f"{count} training composites ({args.size} px, clutter 2, batch 32, "
        f"{args.workers} workers): rendered {rendered:.1f} s/epoch, cached {cached:.1f} s/epoch "
        f"({rendered / cached:.1f}x faster); one-off cache build {build:.1f} s"
    )
    print(
        f"integrity checks: {opened * 1e3:.1f} ms per open (sizes, shapes), {crc:.2f} s of "
        "CRC-32 per reading process and epoch (all chunks, verified lazily)"
    )


if __name__ == "__main__":
    main()
