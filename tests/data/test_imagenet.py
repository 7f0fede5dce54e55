"""ImageNet CLS-LOC layouts read back: classes, labels, boxes, missing/corrupt files."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from scouter.data import CorruptImageError, DatasetLayoutError, create_dataset
from tests.data.conftest import IMAGENET_VAL, WNIDS, write_image


def test_classes_are_sorted_train_wnids_with_mapping_names(imagenet_root):
    ds = create_dataset("imagenet", imagenet_root, "train")
    assert ds.wnids == WNIDS
    assert ds.class_names == ["tench", "goldfish", "great white shark"]
    assert ds.full_class_names[0] == "tench, Tinca tinca"
    assert ds.targets.tolist() == [0, 0, 1, 1, 2, 2]
    sample = ds[2]
    assert sample.id == "train/n01443537/n01443537_100.JPEG"
    assert sample.image.shape == (28, 32, 3) and sample.image.dtype == np.uint8


def test_train_boxes_come_from_train_xml_where_present(imagenet_root):
    ds = create_dataset("imagenet", imagenet_root, "train")
    np.testing.assert_array_equal(ds[0].boxes, [[3, 4, 20, 22]])
    assert ds[1].boxes.shape == (0, 4)


def test_num_classes_keeps_first_sorted_wnids(imagenet_root):
    ds = create_dataset("imagenet", imagenet_root, "val", num_classes=2)
    assert ds.wnids == WNIDS[:2]
    # val images of n01484850 are excluded; ids sorted
    assert [s.id for s in ds] == [
        "val/ILSVRC2012_val_00000001.JPEG",
        "val/ILSVRC2012_val_00000002.JPEG",
        "val/ILSVRC2012_val_00000004.JPEG",
    ]
    assert ds.targets.tolist() == [1, 0, 0]


def test_explicit_wnids_define_label_order(imagenet_root):
    ds = create_dataset("imagenet", imagenet_root, "val", wnids=["n01484850", "n01440764"])
    assert ds.class_names == ["great white shark", "tench"]
    labels = {s.id: s.label for s in ds}
    assert labels == {
        "val/ILSVRC2012_val_00000002.JPEG": 1,
        "val/ILSVRC2012_val_00000003.JPEG": 0,
        "val/ILSVRC2012_val_00000004.JPEG": 1,
    }


def test_val_boxes_from_csv_are_exact_and_out_of_image_box_is_clipped_and_counted(imagenet_root):
    ds = create_dataset("imagenet", imagenet_root, "val")
    by_id = {s.id: s for s in ds}
    np.testing.assert_array_equal(by_id["val/ILSVRC2012_val_00000001.JPEG"].boxes, [[5, 4, 25, 20]])
    np.testing.assert_array_equal(
        by_id["val/ILSVRC2012_val_00000002.JPEG"].boxes, [[0, 0, 20, 10], [10, 10, 40, 40]]
    )
    # (4, 4, 60, 20) on a 32x24 image -> x2 clipped to 32
    np.testing.assert_array_equal(by_id["val/ILSVRC2012_val_00000004.JPEG"].boxes, [[4, 4, 32, 20]])
    assert ds.stats["boxes_clipped"] == 1


def test_val_from_xml_equals_val_from_csv(imagenet_root):
    from_csv = create_dataset("imagenet", imagenet_root, "val")
    (imagenet_root / "LOC_val_solution.csv").unlink()
    from_xml = create_dataset("imagenet", imagenet_root, "test")  # alias of val
    assert [s.id for s in from_xml] == [s.id for s in from_csv]
    for a, b in zip(from_xml, from_csv, strict=True):
        assert a.label == b.label
        np.testing.assert_array_equal(a.boxes, b.boxes)


def test_regrouped_reference_layout_without_annotations(tmp_path):
    root = tmp_path / "imagenet"
    for k, wnid in enumerate(WNIDS):
        write_image(root / "train" / wnid / "a.JPEG", 8, 8)
        write_image(root / "val" / wnid / f"v{k}.JPEG", 8, 8)
    ds = create_dataset("imagenet", root, "val", num_classes=3)
    assert ds.class_names == WNIDS  # no mapping file: names are the wnids
    assert [(s.id, s.label) for s in ds] == [(f"val/{w}/v{k}.JPEG", k) for k, w in enumerate(WNIDS)]


def test_flat_val_without_labels_names_the_expected_files(imagenet_root):
    (imagenet_root / "LOC_val_solution.csv").unlink()
    shutil.rmtree(imagenet_root / "ILSVRC" / "Annotations" / "CLS-LOC" / "val")
    with pytest.raises(DatasetLayoutError, match="LOC_val_solution.csv.*Annotations/CLS-LOC/val"):
        create_dataset("imagenet", imagenet_root, "val")


def test_missing_root_and_wrong_layout(tmp_path):
    with pytest.raises(DatasetLayoutError, match="does not exist.*CLS-LOC"):
        create_dataset("imagenet", tmp_path / "nope", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="neither Data/CLS-LOC"):
        create_dataset("imagenet", tmp_path / "empty", "train")


def test_csv_with_wrong_header_is_rejected(imagenet_root):
    (imagenet_root / "LOC_val_solution.csv").write_text(
        "id,label\nILSVRC2012_val_00000001,n01443537\n"
    )
    with pytest.raises(DatasetLayoutError, match="ImageId,PredictionString"):
        create_dataset("imagenet", imagenet_root, "val")


def test_annotation_of_missing_image_errors_or_is_skipped_and_counted(imagenet_root):
    (
        imagenet_root / "ILSVRC" / "Data" / "CLS-LOC" / "val" / "ILSVRC2012_val_00000003.JPEG"
    ).unlink()
    with pytest.raises(DatasetLayoutError, match="ILSVRC2012_val_00000003.JPEG.*skip_missing"):
        create_dataset("imagenet", imagenet_root, "val")
    ds = create_dataset("imagenet", imagenet_root, "val", skip_missing=True)
    assert len(ds) == len(IMAGENET_VAL) - 1 and ds.stats["missing"] == 1


def test_truncated_image_error_names_the_file_or_is_skipped(imagenet_root):
    path = (
        imagenet_root / "ILSVRC" / "Data" / "CLS-LOC" / "train" / WNIDS[1] / f"{WNIDS[1]}_101.JPEG"
    )
    path.write_bytes(path.read_bytes()[:200])
    ds = create_dataset("imagenet", imagenet_root, "train")
    with pytest.raises(CorruptImageError, match=f"{WNIDS[1]}_101.JPEG"):
        ds[3]
    ds = create_dataset("imagenet", imagenet_root, "train", skip_corrupt=True)
    assert len(ds) == 5 and ds.stats["corrupt"] == 1
    assert all(s.image.shape[2] == 3 for s in ds)  # a whole pass never crashes


def test_too_many_classes_reports_available_count(imagenet_root):
    with pytest.raises(ValueError, match="num_classes=5 but .* has 3 classes available"):
        create_dataset("imagenet", imagenet_root, "train", num_classes=5)


def test_unknown_option_lists_valid_ones(imagenet_root):
    with pytest.raises(TypeError, match="num_clases.*valid options"):
        create_dataset("imagenet", imagenet_root, "train", num_clases=2)
