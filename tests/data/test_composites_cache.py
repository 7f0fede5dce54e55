"""The composites cache: equal to fresh rendering, keyed by what shapes a sample, safe to share."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from scouter.data import create_dataset
from scouter.data.composites import CompositesDataset

cache_key = CompositesDataset.cache_key

OPTIONS = dict(num_samples=24, image_size=48, clutter=2, seed=3)


def _make(fashion_root: Path, cache_dir: Path | None, **options):
    merged = {**OPTIONS, **options}
    if cache_dir is None:
        return create_dataset("composites", fashion_root, "train", cache=False, **merged)
    return create_dataset("composites", fashion_root, "train", cache_dir=str(cache_dir), **merged)


def _folders(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.iterdir() if p.is_dir())


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"  # beside, not around, the fashion_root fixture's files


def test_cached_samples_equal_freshly_rendered_ones(fashion_root, cache):
    cached = _make(fashion_root, cache)
    fresh = _make(fashion_root, None)
    assert cached.cache_folder is not None and fresh.cache_folder is None
    for index in range(len(fresh)):
        a, b = cached[index], fresh[index]
        assert np.array_equal(a.image, b.image) and a.image.dtype == b.image.dtype
        assert np.array_equal(a.mask, b.mask) and a.mask.dtype == b.mask.dtype
        assert np.array_equal(a.boxes, b.boxes) and a.label == b.label and a.id == b.id
        assert a.image.flags.writeable  # transforms may write into it; the map stays intact
    assert np.array_equal(cached.targets, fresh.targets)
    with pytest.raises(IndexError):
        cached[len(cached)]


def test_an_option_that_changes_samples_rebuilds_and_one_that_does_not_reuses(fashion_root, cache):
    first = _make(fashion_root, cache)
    again = _make(fashion_root, cache, animal_root="/unused/for/fashion_mnist")
    assert again.cache_folder == first.cache_folder and len(_folders(cache)) == 1
    for change in ({"clutter": 1}, {"seed": 4}, {"image_size": 40}, {"num_samples": 20}):
        other = _make(fashion_root, cache, **change)
        assert other.cache_folder != first.cache_folder, change
        fresh = _make(fashion_root, None, **change)
        assert np.array_equal(other[5].image, fresh[5].image), change
    assert len(_folders(cache)) == 5


def test_a_changed_source_file_changes_the_key(fashion_root, cache):
    dataset = _make(fashion_root, cache)
    key = cache_key(dataset)
    dataset._items = dataset._items.copy()
    dataset._items[0, 10, 10] ^= 1  # one pixel of one object
    assert cache_key(dataset) != key


def test_a_half_built_cache_is_never_used(fashion_root, cache):
    built = _make(fashion_root, cache).cache_folder
    key = built.name
    # A build killed before its rename leaves a temporary folder; a truncated copy lacks meta.json.
    (cache / f".{key}.deadbeef.tmp").mkdir()
    (built / "meta.json").unlink()
    np.save(built / "images.npy", np.zeros((1, 1, 1, 3), np.uint8))
    rebuilt = _make(fashion_root, cache)
    assert rebuilt.cache_folder == built and (built / "meta.json").is_file()
    assert np.array_equal(rebuilt[3].image, _make(fashion_root, None)[3].image)
    assert [p.name for p in cache.iterdir() if p.name.endswith(".tmp")] == []


def _build(args: tuple[str, str]) -> tuple[str, bytes]:
    root, cache_dir = args
    dataset = _make(Path(root), Path(cache_dir), num_samples=64)
    return str(dataset.cache_folder), dataset[63].image.tobytes()


def test_two_processes_building_at_once_share_one_complete_cache(fashion_root, cache):
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        results = pool.map(_build, [(str(fashion_root), str(cache))] * 2)
    assert results[0] == results[1]
    assert len(_folders(cache)) == 1
    assert [p for p in cache.iterdir() if p.name.endswith(".tmp")] == []
    fresh = _make(fashion_root, None, num_samples=64)
    assert results[0][1] == fresh[63].image.tobytes()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_cache_dir_names_the_folder_and_the_ways_out(fashion_root, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(
        PermissionError, match=r"locked.*cache_dir.*SCOUTER_CACHE_DIR.*cache: false"
    ):
        _make(fashion_root, locked / "cache")


def test_cache_dir_that_is_a_file_names_the_folder_and_the_ways_out(fashion_root, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match=r"not_a_folder.*cache_dir.*SCOUTER_CACHE_DIR"):
        _make(fashion_root, blocker)


# --- integrity (issue 29, item 5) ----------------------------------------------------------------


def _sample_offset(path: Path, index: int) -> int:
    """Byte offset of sample ``index`` in a ``.npy`` file of (N, ...) uint8 samples."""
    with path.open("rb") as handle:
        np.lib.format.read_magic(handle)
        shape, _, _ = np.lib.format.read_array_header_1_0(handle)
        return handle.tell() + index * int(np.prod(shape[1:]))


def test_bytes_corrupted_at_the_same_size_are_never_served(
    fashion_root, cache, monkeypatch, caplog
):
    from scouter.data import composites_cache

    monkeypatch.setattr(composites_cache, "_CHUNK_BYTES", 48 * 48 * 4 * 4)  # 4 samples a chunk
    built = _make(fashion_root, cache).cache_folder
    images = built / "images.npy"
    size = images.stat().st_size
    with images.open("r+b") as handle:  # 1 001 pixels of sample 9, in place
        handle.seek(_sample_offset(images, 9) + 100)
        handle.write(bytes(1001))
    assert images.stat().st_size == size
    fresh = _make(fashion_root, None)
    served = _make(fashion_root, cache)  # the size check passes: the checksum must catch it
    assert served.cache_folder == built
    with caplog.at_level("WARNING", logger="scouter.data.composites_cache"):
        for index in range(len(fresh)):
            assert np.array_equal(served[index].image, fresh[index].image), index
    warnings = [r.getMessage() for r in caplog.records if "checksum" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once per chunk and process
    assert f"samples 8-11 of {images} fail their checksums" in warnings[0]
    assert "delete the folder" in warnings[0] and "cache: false" in warnings[0]
    # The next run rebuilds the folder, and serves it again from the cache.
    caplog.clear()
    with caplog.at_level("WARNING", logger="scouter.data.composites_cache"):
        rebuilt = _make(fashion_root, cache)
    assert any("rebuilding" in r.getMessage() for r in caplog.records)
    assert not (built / "CORRUPT").exists()
    assert np.array_equal(rebuilt[9].image, fresh[9].image)
    assert rebuilt._cached.read(9) is not None  # served from the rebuilt cache, not re-rendered


def test_a_truncated_cache_file_is_rebuilt_or_named_not_an_mmap_crash(fashion_root, cache, caplog):
    from scouter.data.composites_cache import CorruptCacheError, open_cache

    built = _make(fashion_root, cache).cache_folder
    masks = built / "masks.npy"
    with masks.open("r+b") as handle:
        handle.truncate(masks.stat().st_size - 1000)
    # A reader opening it (a worker of a run that built it earlier) names the file and the fix.
    with pytest.raises(CorruptCacheError, match=rf"{masks}.*truncated.*delete the folder"):
        open_cache(built)
    # A new run rebuilds it, saying why.
    with caplog.at_level("WARNING", logger="scouter.data.composites_cache"):
        rebuilt = _make(fashion_root, cache)
    assert any(
        "rebuilding" in r.getMessage() and "truncated" in r.getMessage() for r in caplog.records
    )
    assert np.array_equal(rebuilt[5].mask, _make(fashion_root, None)[5].mask)
    # An unreadable meta.json is rebuilt too.
    (built / "meta.json").write_text("{not json")
    assert np.array_equal(_make(fashion_root, cache)[5].image, _make(fashion_root, None)[5].image)


def test_a_format_1_cache_gets_a_new_key_and_stays_readable_by_its_old_readers(
    fashion_root, cache, monkeypatch
):
    from scouter.data import composites_cache

    dataset = _make(fashion_root, cache)
    key = cache_key(dataset)
    monkeypatch.setattr(composites_cache, "FORMAT_VERSION", 1)
    assert cache_key(dataset) != key  # an old cache is never reinterpreted, only rebuilt beside
    monkeypatch.undo()
    # A format-1 folder (no version, no checksums) that a running process already uses.
    folder = dataset.cache_folder
    meta = {"key": folder.name, "num_samples": len(dataset), "split": "train"}
    (folder / "meta.json").write_text(__import__("json").dumps(meta))
    reader = composites_cache.open_cache(folder)
    assert np.array_equal(reader.read(4)[0], _make(fashion_root, None)[4].image)


# --- the key is stable (issue 28, item 4): existing cache folders must still be found ------------


def test_the_key_of_a_fixed_composites_config_is_the_one_existing_caches_are_named_by(
    fashion_root,
):
    # Literal computed with the code before the cache and the dataset were decoupled.
    dataset = create_dataset(
        "composites", fashion_root, "test", cache=False, backgrounds=("black",), **OPTIONS
    )
    assert dataset.cache_key() == "cfb23950a4192aae9ff15daac6f1f3c7"


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="needs Fashion-MNIST"
)
def test_the_composites_recipe_keys_are_unchanged():
    # The keys of the composites recipe's train/test caches (configs/composites/*.yaml).
    keys = {
        split: create_dataset(
            "composites", None, split, cache=False, num_samples=20000, image_size=128, clutter=2
        ).cache_key()
        for split in ("train", "test")
    }
    assert keys == {
        "train": "3b089bf0023c2da724a204bf2d9c260c",
        "test": "83e0f43c47d21522d5db60fa708b78ff",
    }
