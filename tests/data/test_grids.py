"""The grids of the grid pointing game: distinct classes, confident images only, deterministic,
one file reused across models, and clear errors for files that cannot be used."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from scouter.data.grids import (
    GridError,
    build_grids,
    check_identity,
    confident_correct,
    dataset_identity,
    load_grids,
    sample_grids,
    save_grids,
)


def test_confident_correct_needs_right_class_and_threshold():
    logits = torch.log(
        torch.tensor([[0.995, 0.005, 0.0], [0.6, 0.4, 0.0], [0.005, 0.995, 0.0], [0.3, 0.3, 0.4]])
        + 1e-12
    )
    labels = torch.tensor([0, 0, 0, 2])
    assert confident_correct(logits, labels, 0.99).tolist() == [True, False, False, False]
    assert confident_correct(logits, labels, 0.5).tolist() == [True, True, False, False]
    # below 0.5 the arg-max must still be the true class (image 3: p = 0.4 and correct)
    assert confident_correct(logits, labels, 0.35).tolist() == [True, True, False, True]
    nan = torch.full((1, 3), float("nan"))
    assert confident_correct(nan, torch.tensor([0]), 0.0).tolist() == [False]


def _labels(per_class=5, classes=6):
    return np.repeat(np.arange(classes), per_class)


def test_grids_hold_distinct_classes_and_only_eligible_images():
    labels = _labels()
    rng = np.random.default_rng(3)
    eligible = rng.random(labels.size) < 0.6
    eligible[labels == 5] = False  # class 5 has no eligible image: never in a grid
    grids = sample_grids(labels, eligible, size=2, count=50, seed=0)
    assert grids.shape == (50, 4)
    assert eligible[grids].all()
    for row in grids:
        assert len(set(labels[row].tolist())) == 4
    assert 5 not in set(labels[grids].ravel().tolist())
    # an image is reused only once its class's eligible images are all used
    counts = np.bincount(grids.ravel(), minlength=labels.size)
    for c in range(5):
        pool = counts[eligible & (labels == c)]
        assert pool.max() - pool.min() <= 1


def test_grids_are_deterministic_and_seeded():
    labels = _labels(classes=10)
    eligible = np.ones(labels.size, bool)
    a = sample_grids(labels, eligible, 3, 20, seed=7)
    assert np.array_equal(a, sample_grids(labels, eligible, 3, 20, seed=7))
    assert not np.array_equal(a, sample_grids(labels, eligible, 3, 20, seed=8))


def test_every_selecting_model_must_be_confident():
    labels = _labels()
    a, b = np.ones(30, bool), np.ones(30, bool)
    a[::2] = False
    b[1::3] = False
    identity = dataset_identity("toy", None, {}, "test", labels)
    grids = build_grids(labels, [a, b], size=2, count=30, seed=0, threshold=0.9,
                        identity=identity, selected_by=["a", "b"])  # fmt: skip
    assert (a & b)[grids.indices].all()
    assert grids.eligible_images == int((a & b).sum())
    assert np.array_equal(grids.labels, labels[grids.indices])


def test_too_few_confident_classes_is_a_clear_error():
    labels = _labels()
    eligible = np.isin(labels, [0, 1, 2])
    with pytest.raises(GridError, match=r"needs 4 classes.*only 3 class.*lower the confidence"):
        sample_grids(labels, eligible, 2, 5, 0)
    with pytest.raises(GridError, match="at least 2"):
        build_grids(labels, [eligible], size=1, count=5, seed=0, threshold=0.9, identity={})


def test_file_round_trip_and_identity_check(tmp_path):
    labels = _labels()
    identity = dataset_identity("toy", "/data", {"k": 1}, "test", labels)
    ids = [f"img{i}" for i in range(labels.size)]
    grids = build_grids(labels, [np.ones(30, bool)], size=2, count=8, seed=1, threshold=0.99,
                        identity=identity, ids=ids, selected_by=["m"])  # fmt: skip
    path = save_grids(tmp_path / "grids.json", grids)
    loaded = load_grids(path)
    assert np.array_equal(loaded.indices, grids.indices)
    assert np.array_equal(loaded.labels, grids.labels)
    assert loaded.ids == [[f"img{i}" for i in row] for row in grids.indices]
    assert (loaded.size, loaded.threshold, loaded.seed, loaded.selected_by) == (2, 0.99, 1, ["m"])
    check_identity(loaded, identity)  # same split: accepted
    other = dataset_identity("toy", "/data", {"k": 1}, "test", labels[::-1])
    with pytest.raises(GridError, match=r"another dataset split \(labels_sha256"):
        check_identity(loaded, other)
    with pytest.raises(GridError, match="split: file 'test', now 'val'"):
        check_identity(loaded, dataset_identity("toy", "/data", {"k": 1}, "val", labels))


def test_unusable_grid_files_are_named(tmp_path):
    with pytest.raises(GridError, match="does not exist"):
        load_grids(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GridError, match="not valid JSON"):
        load_grids(bad)
    bad.write_text(json.dumps({"results": 1}))
    with pytest.raises(GridError, match="is not a grids file"):
        load_grids(bad)
    labels = _labels()
    identity = dataset_identity("toy", None, {}, "test", labels)
    grids = build_grids(labels, [np.ones(30, bool)], size=2, count=2, seed=0, threshold=0.5,
                        identity=identity)  # fmt: skip
    doc = grids.to_dict()
    doc["grids"][0]["labels"][1] = doc["grids"][0]["labels"][0]
    bad.write_text(json.dumps(doc))
    with pytest.raises(GridError, match="repeats a class"):
        load_grids(bad)
