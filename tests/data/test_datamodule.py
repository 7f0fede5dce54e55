"""ScouterDataModule: splits, collated batches, normalisation, workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scouter.data import ScouterDataModule, collate_samples


def test_mnist_splits_and_batches(mnist_root):
    dm = ScouterDataModule(
        "mnist",
        str(mnist_root),
        image_size=32,
        batch_size=4,
        num_workers=0,
        in_chans=1,
        val_fraction=0.25,
    )
    assert dm.num_classes == 10 and dm.class_names[3] == "3"  # cheap peek before setup
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (30, 10, 20)
    assert np.bincount(dm.val_set.targets).tolist() == [1] * 10  # stratified
    assert not set(dm.train_set.indices) & set(dm.val_set.indices)
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (4, 1, 32, 32) and batch["image"].dtype == torch.float32
    assert (
        batch["label"].dtype == torch.long
        and batch["label"].tolist() == dm.val_set.targets[:4].tolist()
    )
    assert [b.shape for b in batch["boxes"]] == [(0, 4)] * 4 and "mask" not in batch
    # MNIST reference normalisation, applied to the raw pixels
    raw = dm._read("train")[int(dm.val_set.indices[0])].image[0, 0, 0] / 255.0
    assert batch["image"][0, 0, 0, 0].item() == pytest.approx((raw - 0.1307) / 0.3081, abs=1e-5)
    assert len(list(dm.train_dataloader())) == 7  # 30 // 4 with drop_last


def test_same_seed_same_split_other_seed_other_split(mnist_root):
    a = ScouterDataModule("mnist", str(mnist_root), image_size=28, num_workers=0, seed=1)
    b = ScouterDataModule("mnist", str(mnist_root), image_size=28, num_workers=0, seed=1)
    c = ScouterDataModule("mnist", str(mnist_root), image_size=28, num_workers=0, seed=2)
    for dm in (a, b, c):
        dm.setup()
    assert a.val_set.indices.tolist() == b.val_set.indices.tolist() != c.val_set.indices.tolist()


def test_cub_batches_have_masks_and_boxes_in_model_geometry(cub_root):
    dm = ScouterDataModule(
        "cub200", str(cub_root), image_size=20, batch_size=3, num_workers=0, val_fraction=0.0
    )
    dm.setup()
    batch = next(iter(dm.test_dataloader()))  # official test images, in file order
    assert batch["id"][0].endswith("Black_Footed_Albatross_0009_34.jpg")
    assert batch["mask"].shape == (3, 20, 20) and batch["mask"].dtype == torch.uint8
    torch.testing.assert_close(
        batch["boxes"][0], torch.tensor([[0.0, 0.0, 8.0, 8.0]])
    )  # 20x20 image: unchanged
    for mask, boxes in zip(batch["mask"], batch["boxes"], strict=True):
        box_mask = torch.zeros_like(mask)
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[0].tolist())
        box_mask[y1:y2, x1:x2] = 1
        assert (mask != box_mask).sum() <= 2 * (
            mask.shape[0]
        )  # same region up to one-pixel rounding


def test_imagenet_test_is_official_val_and_box_counts_vary(imagenet_root):
    dm = ScouterDataModule(
        "imagenet",
        str(imagenet_root),
        image_size=20,
        batch_size=4,
        num_workers=0,
        timm_model="resnet18",
    )
    dm.setup()
    batch = next(iter(dm.test_dataloader()))
    assert [len(b) for b in batch["boxes"]] == [1, 2, 1, 1]
    torch.testing.assert_close(batch["boxes"][0], torch.tensor([[2.0, 2.0, 10.0, 10.0]]))
    assert batch["id"][1] == "val/ILSVRC2012_val_00000002.JPEG"


def test_acrima_uses_its_own_validation_split(acrima_root):
    dm = ScouterDataModule("acrima", str(acrima_root), image_size=16, batch_size=2, num_workers=0)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (14, 2, 4)
    assert dm.class_names == ["normal", "glaucoma"]


def test_folder_without_split_folders_carves_val_and_tests_on_it(folder_root):
    dm = ScouterDataModule(
        "folder", str(folder_root), image_size=8, batch_size=2, num_workers=0, val_fraction=0.5
    )
    dm.setup()
    assert len(dm.val_set) == 3 and dm.test_set is dm.val_set  # round(3 * .5) + round(2 * .5)


def test_collate_keeps_mask_only_when_all_have_one():
    items = [
        {
            "image": torch.zeros(3, 4, 4),
            "label": 1,
            "boxes": torch.zeros(0, 4),
            "mask": torch.ones(4, 4, dtype=torch.uint8),
            "id": "a",
        },
        {
            "image": torch.ones(3, 4, 4),
            "label": 2,
            "boxes": torch.tensor([[0.0, 0, 2, 2], [1, 1, 3, 3]]),
            "mask": None,
            "id": "b",
        },
    ]
    batch = collate_samples(items)
    assert (
        "mask" not in batch
        and batch["label"].tolist() == [1, 2]
        and [len(b) for b in batch["boxes"]] == [0, 2]
    )
    items[1]["mask"] = torch.zeros(4, 4, dtype=torch.uint8)
    assert collate_samples(items)["mask"].sum().item() == 16


def test_unknown_dataset_and_bad_options_fail_early(tmp_path):
    with pytest.raises(KeyError, match="known datasets"):
        ScouterDataModule("imagenett")
    with pytest.raises(ValueError, match="val_fraction"):
        ScouterDataModule("mnist", val_fraction=1.0)


def test_workers_give_deterministic_augmented_batches(fashion_root):
    def first_batch():
        dm = ScouterDataModule(
            "composites",
            str(fashion_root),
            image_size=32,
            batch_size=8,
            num_workers=2,
            seed=5,
            train_augment=True,
            dataset_options={"num_samples": 32},
        )
        loader = dm.train_dataloader()
        batches = list(loader)
        return batches

    a, b = first_batch(), first_batch()
    assert len(a) == 3  # 32 - 10 % val = 29 -> 3 full batches
    for x, y in zip(a, b, strict=True):
        assert x["id"] == y["id"]
        torch.testing.assert_close(x["image"], y["image"])
        assert x["mask"].shape == (8, 32, 32)
    ids = [i for batch in a for i in batch["id"]]
    assert len(set(ids)) == len(ids)


def test_stratified_split_partitions_with_class_proportions():
    from scouter.data import stratified_split

    labels = np.repeat(np.arange(3), [50, 30, 20])
    parts = stratified_split(labels, {"train": 0, "val": 0.1, "test": 0.2}, seed=7)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(100))
    assert np.bincount(labels[parts["val"]]).tolist() == [5, 3, 2]
    assert np.bincount(labels[parts["test"]]).tolist() == [10, 6, 4]
    assert (
        stratified_split(labels, {"train": 0, "val": 0.1}, seed=7)["val"].tolist()
        != stratified_split(labels, {"train": 0, "val": 0.1}, seed=8)["val"].tolist()
    )


@pytest.mark.parametrize("size", [0, -5, (32, 0), [0, -5], (32, 32, 32)])
def test_invalid_image_size_fails_at_construction_naming_data_image_size(size, tmp_path):
    # Before any file is read: the folder does not even exist.
    with pytest.raises(ValueError, match=r"data\.image_size must be an integer >= 1 .*\[H, W\]"):
        ScouterDataModule("folder", str(tmp_path / "absent"), image_size=size)


def test_invalid_composites_image_size_names_the_dataset_option():
    from scouter.data import create_dataset

    with pytest.raises(ValueError, match=r"dataset_options\.image_size must be an integer >= 1"):
        create_dataset("composites", None, "train", image_size=0, num_samples=2)
