"""Training order and augmentation as functions of (seed, epoch, position); mid-epoch resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scouter.data.sample import Sample, collate_samples
from scouter.data.sampling import (
    EpochSeededSampler,
    ResumableBatchSampler,
    ResumableDataLoader,
    SeededIndex,
)
from scouter.data.transforms import TransformedDataset, build_transforms


class _Squares(torch.utils.data.Dataset):
    """24 gray 32×32 images, each with one box, so augmentation visibly moves pixels and boxes."""

    class_names = ("a", "b")
    num_classes = 2

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 255, (24, 32, 32, 3), dtype=np.uint8)
        self.targets = np.arange(24) % 2

    def __len__(self) -> int:
        return 24

    def __getitem__(self, index: int) -> Sample:
        return Sample(
            image=self.images[index],
            label=int(self.targets[index]),
            boxes=np.array([[4, 6, 20, 28]], np.float32),
            id=str(index),
        )


def _loader(num_workers: int, seed: int = 3) -> ResumableDataLoader:
    dataset = TransformedDataset(
        _Squares(), build_transforms(32, train=True, augment=True, mean=[0.5] * 3, std=[0.5] * 3)
    )
    sampler = EpochSeededSampler(len(dataset), seed)
    return ResumableDataLoader(
        dataset,
        batch_sampler=ResumableBatchSampler(sampler, 4, drop_last=True),
        num_workers=num_workers,
        collate_fn=collate_samples,
    )


def _epoch(loader: ResumableDataLoader, epoch: int) -> list[dict]:
    loader.batch_sampler.sampler.set_epoch(epoch)
    return list(loader)


def _assert_same_batches(got: list[dict], expected: list[dict]) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a["id"] == b["id"]
        torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
        for box_a, box_b in zip(a["boxes"], b["boxes"], strict=True):
            torch.testing.assert_close(box_a, box_b, rtol=0, atol=0)


def test_order_and_seeds_depend_only_on_seed_and_epoch():
    sampler = EpochSeededSampler(50, seed=7)
    first = list(sampler)
    assert all(isinstance(item, SeededIndex) for item in first)
    assert sorted(item.index for item in first) == list(range(50))
    assert len({item.seed for item in first}) == 50
    assert EpochSeededSampler(50, seed=7).epoch_items(0) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert EpochSeededSampler(50, seed=8).epoch_items(0) != first


def test_augmented_batches_are_the_same_with_any_number_of_workers():
    reference = _epoch(_loader(0), epoch=2)
    # augmentation really happens: the images differ from their unaugmented versions
    plain = TransformedDataset(_Squares(), build_transforms(32, mean=[0.5] * 3, std=[0.5] * 3))
    ids = [int(i) for i in reference[0]["id"]]
    unaugmented = torch.stack([plain[i]["image"] for i in ids])
    assert not torch.equal(reference[0]["image"], unaugmented)
    _assert_same_batches(_epoch(_loader(2), epoch=2), reference)


def test_state_dict_mid_epoch_resumes_at_the_next_batch():
    loader = _loader(0)
    uninterrupted = _epoch(loader, epoch=1)
    assert len(uninterrupted) == 6

    interrupted = _loader(0)
    interrupted.batch_sampler.sampler.set_epoch(1)
    iterator = iter(interrupted)
    for _ in range(4):
        next(iterator)
    state = interrupted.state_dict()
    assert state == {"epoch": 1, "batches": 4}

    resumed = _loader(2)  # a fresh process: new loader, new workers, sampler at epoch 0
    resumed.load_state_dict(state)
    _assert_same_batches(list(resumed), uninterrupted[4:])
    # the skip applies to that iteration only: the next epoch is whole
    _assert_same_batches(_epoch(resumed, epoch=2), _epoch(_loader(0), epoch=2))


def test_an_exhausted_epoch_is_saved_as_the_start_of_the_next():
    loader = _loader(0)
    _epoch(loader, epoch=0)
    assert loader.state_dict() == {"epoch": 1, "batches": 0}
    resumed = _loader(0)
    resumed.load_state_dict(loader.state_dict())
    _assert_same_batches(list(resumed), _epoch(_loader(0), epoch=1))


def test_a_loader_that_cannot_skip_refuses_a_mid_epoch_state():
    dataset = TransformedDataset(_Squares(), build_transforms(32, mean=[0.5] * 3, std=[0.5] * 3))
    loader = ResumableDataLoader(dataset, batch_size=4, collate_fn=collate_samples)
    loader.load_state_dict({"epoch": 3, "batches": 0})  # an epoch start is fine
    with pytest.raises(ValueError, match="middle of an epoch.*end-of-epoch checkpoint"):
        loader.load_state_dict({"epoch": 3, "batches": 2})


def test_reseed_makes_the_augmentation_a_function_of_the_seed():
    transform = build_transforms(32, train=True, augment=True, mean=[0.5] * 3, std=[0.5] * 3)
    sample = _Squares()[0]
    outputs = {}
    for seed in (11, 12, 11):
        transform.reseed(seed)
        outputs.setdefault(seed, []).append(transform(sample)["image"])
    torch.testing.assert_close(outputs[11][0], outputs[11][1], rtol=0, atol=0)
    assert not torch.equal(outputs[11][0], outputs[12][0])
