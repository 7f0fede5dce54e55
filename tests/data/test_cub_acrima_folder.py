"""CUB-200-2011, ACRIMA, folder and Con-Text layouts read back."""

from __future__ import annotations

import numpy as np
import pytest

from scouter.data import DatasetLayoutError, create_dataset
from tests.data.conftest import ACRIMA_FILES, write_image


def test_cub_official_split_labels_names_and_boxes(cub_root):
    train = create_dataset("cub200", cub_root, "train")
    test = create_dataset("cub", cub_root.parent, "test")  # parent folder is accepted too
    assert train.class_names == ["Black footed Albatross", "Laysan Albatross", "Sooty Albatross"]
    assert train.targets.tolist() == [0, 1, 2] and test.targets.tolist() == [0, 1, 2]
    first = train[0]
    assert first.id == "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg"
    np.testing.assert_array_equal(first.boxes, [[10, 5, 30, 20]])  # x, y, x + w, y + h


def test_cub_grayscale_image_becomes_rgb(cub_root):
    sample = create_dataset("cub200", cub_root, "train")[1]
    assert sample.image.shape == (24, 32, 3)
    np.testing.assert_array_equal(sample.image[..., 0], sample.image[..., 2])


def test_cub_segmentation_mask_is_thresholded_at_half_the_annotators(cub_root):
    sample = create_dataset("cub200", cub_root, "train")[0]
    expected = np.zeros((30, 40), np.uint8)
    expected[5:20, 10:30] = 1  # the 102 grey level at (0, 0) is below 128
    np.testing.assert_array_equal(sample.mask, expected)
    assert create_dataset("cub200", cub_root, "train", segmentations=False)[0].mask is None


def test_cub_box_outside_image_is_clipped_and_counted(cub_root):
    ds = create_dataset("cub200", cub_root, "train", segmentations=False)
    np.testing.assert_array_equal(ds[2].boxes, [[30, 10, 40, 20]])  # x2 = 50 clipped to width 40
    assert ds.stats["boxes_clipped"] == 1


def test_cub_num_classes_subset_and_too_many(cub_root):
    ds = create_dataset("cub200", cub_root, "test", num_classes=2)
    assert ds.num_classes == 2 and ds.targets.tolist() == [0, 1]
    with pytest.raises(ValueError, match="has 3 classes available"):
        create_dataset("cub200", cub_root, "train", num_classes=200)


def test_cub_missing_required_file_names_file_and_layout(cub_root):
    (cub_root / "train_test_split.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="train_test_split.txt.*CUB_200_2011 folder"):
        create_dataset("cub200", cub_root, "train")


def test_cub_missing_root_and_missing_image(cub_root, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="has no images.txt.*CUB_200_2011 folder"):
        create_dataset("cub200", tmp_path / "empty", "train")
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        create_dataset("cub200", tmp_path / "absent", "train")
    (cub_root / "images" / "002.Laysan_Albatross" / "Laysan_Albatross_0002_1027.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match="Laysan_Albatross_0002_1027.jpg"):
        create_dataset("cub200", cub_root, "train")
    ds = create_dataset("cub200", cub_root, "train", skip_missing=True)
    assert ds.targets.tolist() == [0, 2] and ds.stats["missing"] == 1


def test_acrima_labels_from_file_name_and_stratified_seeded_split(acrima_root):
    parts = {s: create_dataset("acrima", acrima_root, s) for s in ("train", "val", "test")}
    assert parts["train"].class_names == ["normal", "glaucoma"]
    ids = {s: sorted(r.id.split("/")[-1] for r in ds.records) for s, ds in parts.items()}
    assert sorted(sum(ids.values(), [])) == sorted(ACRIMA_FILES)  # a partition
    for split, count in (("train", 7), ("val", 1), ("test", 2)):  # 70/10/20 % of each class of 10
        labels = parts[split].targets
        assert (labels == 1).sum() == count and (labels == 0).sum() == count
    for ds in parts.values():
        for record in ds.records:
            assert record.label == int("_g_" in record.path.name)
    again = create_dataset("acrima", acrima_root, "test")
    assert [r.id for r in again.records] == [r.id for r in parts["test"].records]
    other = create_dataset("acrima", acrima_root, "test", seed=1)
    assert [r.id for r in other.records] != [r.id for r in parts["test"].records]


def test_acrima_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DatasetLayoutError, match="contains no images.*_g_"):
        create_dataset("acrima", tmp_path, "train")


def test_folder_classes_sorted_and_labels(folder_root):
    ds = create_dataset("folder", folder_root, "train")
    assert ds.class_names == ["cat", "dog"]
    assert [(s.id, s.label) for s in ds] == [
        ("cat/cat0.png", 0),
        ("cat/cat1.png", 0),
        ("cat/cat2.png", 0),
        ("dog/dog0.png", 1),
        ("dog/dog1.png", 1),
    ]
    assert ds[0].image.shape == (12, 10, 3) and ds[0].boxes.shape == (0, 4)


def test_folder_broken_link_is_missing_image(folder_root):
    (folder_root / "dog" / "dog2.png").symlink_to(folder_root / "dog" / "gone.png")
    with pytest.raises(DatasetLayoutError, match="dog2.png"):
        create_dataset("folder", folder_root, "train")
    assert create_dataset("folder", folder_root, "train", skip_missing=True).stats["missing"] == 1


def test_folder_corrupt_image_skipped_and_counted(folder_root):
    (folder_root / "cat" / "cat9.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    ds = create_dataset("folder", folder_root, "train", skip_corrupt=True)
    assert len(ds) == 5 and ds.stats["corrupt"] == 1


def test_folder_limit_is_balanced_over_classes(folder_root):
    ds = create_dataset("folder", folder_root, "train", limit=2)
    assert ds.targets.tolist() == [0, 1]


def test_context_split_equals_sklearn_train_test_split(tmp_path):
    sklearn = pytest.importorskip("sklearn.model_selection")
    names = [f"{c}_{n}.jpg" for c in ("Bakery", "Cafe", "Bar") for n in range(7)]
    for name in names:
        write_image(tmp_path / "JPEGImages" / name, 8, 8)
    train = create_dataset("context", tmp_path, "train")
    expected_train, expected_test = sklearn.train_test_split(
        sorted(names), train_size=0.8, random_state=1
    )
    assert [r.id for r in train.records] == expected_train
    assert [r.id for r in create_dataset("context", tmp_path, "test").records] == expected_test
    assert train.class_names == ["Bakery", "Bar", "Cafe"]
    assert all(train.class_names[r.label] == r.id.split("_")[0] for r in train.records)


@pytest.mark.parametrize("split", ["train", "test"])
def test_folder_empty_class_folder_is_an_error_naming_it(folder_root, tmp_path, split):
    root = folder_root
    if split == "test":  # root/{train,test}/<class>: the test split has no image of one class
        root = tmp_path / "split"
        for name in ("cat", "dog"):
            write_image(root / "train" / name / "a.png", 12, 10)
        write_image(root / "test" / "cat" / "a.png", 12, 10)
        empty = root / "test" / "dog"
        empty.mkdir()
    else:
        empty = root / "bird"
        empty.mkdir()
        (empty / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetLayoutError, match=rf"class folder '{empty}' has no images"):
        create_dataset("folder", root, split)
