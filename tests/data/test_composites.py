"""The composites benchmark: determinism, exact masks, tight boxes, object sources."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from scouter.data import boxes_to_mask, create_dataset, mask_to_box
from scouter.data.idx import FASHION_MNIST_ROOT, read_idx

HAS_ANIMALS = importlib.util.find_spec("animal_mnist") is not None


def test_same_seed_same_samples_in_any_order(fashion_root):
    a = create_dataset("composites", fashion_root, "train", num_samples=20, seed=3, clutter=2)
    b = create_dataset("composites", fashion_root, "train", num_samples=20, seed=3, clutter=2)
    first_b = {i: b[i] for i in (19, 7, 0)}  # b read in another order than a
    for i in (0, 7, 19):
        sa = a[i]
        np.testing.assert_array_equal(sa.image, first_b[i].image)
        np.testing.assert_array_equal(sa.mask, first_b[i].mask)
        np.testing.assert_array_equal(sa.boxes, first_b[i].boxes)
    assert all(np.array_equal(a[i].image, b[i].image) for i in range(20))
    c = create_dataset("composites", fashion_root, "train", num_samples=20, seed=4, clutter=2)
    assert sum(np.array_equal(a[i].image, c[i].image) for i in range(20)) == 0


def test_mask_is_exactly_the_pasted_pixels(fashion_root):
    ds = create_dataset("composites", fashion_root, "train", num_samples=30, clutter=3)
    for i in range(30):
        layers = ds.render(i)
        image, mask = layers["image"], layers["mask"].astype(bool)
        np.testing.assert_array_equal(image[~mask], layers["background"][~mask])
        np.testing.assert_array_equal(image[mask], layers["object"][mask])
        assert not layers["object"][~mask].any()
        assert mask.sum() > 0


def test_on_black_with_gray_objects_the_visible_pixels_are_the_mask(fashion_root):
    ds = create_dataset(
        "composites", fashion_root, "test", num_samples=25, backgrounds=["black"], saturation=0.0
    )
    items = read_idx(fashion_root / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(fashion_root / "t10k-labels-idx1-ubyte.gz")
    for i in range(25):
        sample, layers = ds[i], ds.render(i)
        np.testing.assert_array_equal(sample.image.any(axis=2), sample.mask.astype(bool))
        # the fixture's items are solid rectangles, so the mask is exactly its tight box
        np.testing.assert_array_equal(sample.mask, boxes_to_mask(sample.boxes, 64, 64))
        assert sample.label == labels[layers["item"]] == ds.targets[i]
        assert items[layers["item"]].max() > 0


def test_boxes_are_where_the_object_was_placed_and_inside_the_image(fashion_root):
    ds = create_dataset(
        "composites",
        fashion_root,
        "train",
        num_samples=40,
        image_size=(48, 80),
        scale=(0.5, 1.0),
        cache=False,
    )
    placed = []  # every _place call: (height, width, top, left); the object is placed last
    place = ds._place

    def recording_place(item, rng, shrink=1.0):
        rgb, mask, (top, left) = place(item, rng, shrink)
        placed.append((*mask.shape, top, left))
        return rgb, mask, (top, left)

    ds._place = recording_place
    for i in range(40):
        placed.clear()
        s = ds[i]
        assert s.image.shape == (48, 80, 3) and s.mask.shape == (48, 80)
        # The fixture's items are solid rectangles: the box is the placed rectangle itself,
        # computed from the placement, not from the mask.
        height, width, top, left = placed[-1]
        np.testing.assert_array_equal(s.boxes, [[left, top, left + width, top + height]])
        np.testing.assert_array_equal(s.boxes, mask_to_box(s.mask))
        x1, y1, x2, y2 = s.boxes[0]
        assert 0 <= x1 < x2 <= 80 and 0 <= y1 < y2 <= 48
        # longer side of the object (here a solid rectangle) is within scale × min(H, W) (+1 for rounding)
        assert max(x2 - x1, y2 - y1) <= 1.0 * 48 + 1


def test_first_items_are_not_repeated_and_labels_follow_items(fashion_root):
    ds = create_dataset("composites", fashion_root, "train")
    assert len(ds) == 60 and ds.num_classes == 10
    assert sorted(ds.render(i)["item"] for i in range(60)) == list(range(60))
    assert np.bincount(ds.targets).tolist() == [6] * 10


def test_num_classes_subset_and_too_many(fashion_root):
    ds = create_dataset("composites", fashion_root, "train", num_classes=3, num_samples=12)
    assert ds.class_names == ["T-shirt/top", "Trouser", "Pullover"]
    assert set(ds.targets.tolist()) <= {0, 1, 2} and all(ds[i].label < 3 for i in range(12))
    with pytest.raises(ValueError, match="has 10 classes available"):
        create_dataset("composites", fashion_root, "train", num_classes=11)


def test_missing_fashion_root_names_package_and_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist.*root="):
        create_dataset("composites", tmp_path / "nothing", "train")


@pytest.mark.skipif(not HAS_ANIMALS, reason="pip install --no-deps animal-mnist==0.4")
def test_animal_and_both_object_sources(fashion_root):
    animals = create_dataset("composites", None, "test", objects="animal_mnist", num_samples=50)
    assert animals.class_names[0] == "bear" and animals.num_classes == 10
    assert len(animals._items) == 10 * 166  # items k % 6 == 5 of each class of 1000
    both = create_dataset("composites", fashion_root, "train", objects="both", num_samples=200)
    assert both.num_classes == 20 and both.class_names[10] == "bear"
    assert (both.targets >= 10).any() and (both.targets < 10).any()
    s = both[int(np.flatnonzero(both.targets >= 10)[0])]
    assert s.mask.sum() > 0 and s.label >= 10


@pytest.mark.skipif(
    not Path(FASHION_MNIST_ROOT).is_dir(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_default_root_generates_a_thousand_samples_of_every_class():
    # How fast is measured in bench/composites_cache.py, not here.
    ds = create_dataset("composites", split="train", num_samples=1000, clutter=2, cache=False)
    samples = [ds[i] for i in range(1000)]
    assert len({s.label for s in samples}) == 10
    assert all(s.mask.sum() > 0 and s.image.shape == (64, 64, 3) for s in samples)
