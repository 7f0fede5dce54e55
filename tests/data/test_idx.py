"""MNIST / Fashion-MNIST IDX files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scouter.data import DatasetLayoutError, create_dataset
from scouter.data.idx import FASHION_MNIST_ROOT, read_idx
from tests.data.conftest import idx_images, write_idx


def test_mnist_reads_gzipped_and_plain_idx(mnist_root):
    train = create_dataset("mnist", mnist_root, "train")
    test = create_dataset("mnist", mnist_root, "test")
    images, labels = idx_images(40, seed=40)
    assert len(train) == 40 and len(test) == 20
    assert train.class_names == [str(d) for d in range(10)]
    sample = train[7]
    assert sample.image.shape == (28, 28, 1) and sample.label == 7 and sample.id == "train/00007"
    np.testing.assert_array_equal(sample.image[..., 0], images[7])
    assert sample.boxes.shape == (0, 4) and sample.mask is None
    np.testing.assert_array_equal(train.targets, labels)


def test_mnist_object_masks_give_tight_boxes(mnist_root):
    sample = create_dataset("mnist", mnist_root, "train", object_masks=True)[3]
    ys, xs = np.nonzero(sample.image[..., 0])
    np.testing.assert_array_equal(sample.boxes, [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]])
    assert sample.mask.sum() == 80  # the 10x8 rectangle


def test_torchvision_raw_folder_is_found(tmp_path):
    images, labels = idx_images(10, seed=1)
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(tmp_path / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte", labels)
    assert len(create_dataset("mnist", tmp_path, "test")) == 10


def test_missing_idx_file_names_file_and_layout(mnist_root):
    (mnist_root / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(
        DatasetLayoutError, match="t10k-labels-idx1-ubyte.gz' is missing.*official IDX"
    ):
        create_dataset("mnist", mnist_root, "test")
    with pytest.raises(DatasetLayoutError, match="nothing is downloaded"):
        create_dataset("mnist", None, "train")


def test_truncated_idx_file_is_reported(mnist_root):
    path = mnist_root / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DatasetLayoutError, match="t10k-images-idx3-ubyte.*truncated"):
        create_dataset("mnist", mnist_root, "test")
    path.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 12)  # float IDX: not uint8
    with pytest.raises(DatasetLayoutError, match="not an IDX file of unsigned bytes"):
        read_idx(path)


def test_num_classes_and_limit(mnist_root):
    ds = create_dataset("mnist", mnist_root, "train", num_classes=3, limit=5)
    assert ds.targets.tolist() == [0, 1, 2, 0, 1]
    with pytest.raises(ValueError, match="has 10 classes available"):
        create_dataset("mnist", mnist_root, "train", num_classes=11)


@pytest.mark.skipif(
    not Path(FASHION_MNIST_ROOT).is_dir(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_fashion_mnist_default_root_is_the_debian_package():
    test = create_dataset("fashion_mnist", split="test")
    assert len(test) == 10_000 and test.class_names[9] == "Ankle boot"
    assert np.bincount(test.targets).tolist() == [1000] * 10


@pytest.mark.parametrize("dataset", ["mnist", "composites"])
def test_idx_label_out_of_range_is_an_error_naming_file_index_and_value(mnist_root, dataset):
    images, labels = idx_images(20, seed=20)
    labels[13] = 12  # Fashion-MNIST and MNIST have 10 classes
    write_idx(mnist_root / "t10k-labels-idx1-ubyte", labels, compress=False)
    with pytest.raises(
        DatasetLayoutError,
        match=r"t10k-labels-idx1-ubyte' has 1 label\(s\) outside 0..9, the first at index 13 "
        r"\(value 12\)",
    ):
        options = {"num_samples": 4, "cache": False} if dataset == "composites" else {}
        create_dataset(dataset, mnist_root, "test", **options)
