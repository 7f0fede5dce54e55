"""Training order and augmentation randomness that depend only on ``(seed, epoch, position)``.

Resuming a run must reproduce the uninterrupted one. Three things make that hold here:

* :class:`EpochSeededSampler` draws each epoch's order *and* one augmentation seed per position
  from a generator seeded with ``(seed, epoch)`` and yields :class:`SeededIndex` items, so a
  sample's augmentation no longer depends on which worker loads it or on how many samples that
  worker drew before (DataLoader workers are re-created on resume);
* :class:`ResumableBatchSampler` can skip the batches of an epoch that were already trained on;
* :class:`ResumableDataLoader` implements Lightning's ``state_dict`` / ``load_state_dict``
  dataloader protocol with the epoch and the number of batches consumed, so a checkpoint written
  in the middle of an epoch resumes at the next batch (Lightning stores the state in the fit
  loop's checkpoint entry and restores it before creating the iterator).

The global random states (torch, NumPy, Python, CUDA) are restored by
:class:`scouter.training.resume.RandomStateResume`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from torch.utils.data import BatchSampler, DataLoader, Sampler

# Seeds drawn per position are 62-bit: non-negative for every consumer (NumPy, random).
_SEED_BOUND = 2**62


class SeededIndex(NamedTuple):
    """A dataset index with the seed of its augmentation for this epoch and position."""

    index: int
    seed: int


class EpochSeededSampler(Sampler[SeededIndex]):
    """Random order of ``size`` indices, each with an augmentation seed, from ``(seed, epoch)``.

    Args:
        size: number of items.
        seed: base seed.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def epoch_items(self, epoch: int) -> list[SeededIndex]:
        """The items of ``epoch`` in order (a pure function of ``seed`` and ``epoch``)."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        seeds = torch.randint(0, _SEED_BOUND, (self.size,), generator=generator).tolist()
        return [SeededIndex(i, s) for i, s in zip(order, seeds, strict=True)]

    def __iter__(self) -> Iterator[SeededIndex]:
        return iter(self.epoch_items(self.epoch))

    def __len__(self) -> int:
        return self.size


class ResumableBatchSampler(BatchSampler):
    """:class:`~torch.utils.data.BatchSampler` that can skip the first batches of one iteration.

    ``skip`` applies to the next iteration only (the rest of an interrupted epoch); the indices of
    skipped batches are drawn from the sampler but never loaded.
    """

    def __init__(self, sampler: Sampler, batch_size: int, drop_last: bool) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.skip = 0

    def __iter__(self) -> Iterator[list[Any]]:
        skip, self.skip = self.skip, 0
        for number, batch in enumerate(super().__iter__()):
            if number >= skip:
                yield batch


def _epoch_sampler(loader: DataLoader) -> EpochSeededSampler | None:
    """The :class:`EpochSeededSampler` under ``loader`` (also under Lightning's DDP wrapper)."""
    sampler = getattr(loader.batch_sampler, "sampler", None)
    for _ in range(3):
        if isinstance(sampler, EpochSeededSampler):
            return sampler
        # lightning's DistributedSamplerWrapper keeps the wrapped sampler in ``dataset._sampler``
        sampler = getattr(getattr(sampler, "dataset", None), "_sampler", None)
    return None


class ResumableDataLoader(DataLoader):
    """A DataLoader over a :class:`ResumableBatchSampler` that can resume mid-epoch.

    ``state_dict()`` holds the epoch and the number of batches handed out so far in the current
    iteration (Lightning does not prefetch from sized loaders, so handed out = trained on; an
    exhausted epoch is saved as "the next epoch, from its start"). ``load_state_dict`` makes the
    next iteration skip those batches.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._consumed = 0
        self._epoch = 0

    def _current_epoch(self) -> int:
        sampler = _epoch_sampler(self)
        return sampler.epoch if sampler is not None else self._epoch

    def __iter__(self) -> Iterator[Any]:
        batch_sampler = self.batch_sampler
        start = batch_sampler.skip if isinstance(batch_sampler, ResumableBatchSampler) else 0
        self._epoch, self._consumed = self._current_epoch(), start
        for batch in super().__iter__():
            self._consumed += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "batches"}``: where the next batch of this loader comes from."""
        if self._consumed >= len(self):
            return {"epoch": self._epoch + 1, "batches": 0}
        return {"epoch": self._epoch, "batches": self._consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue at batch ``state["batches"]`` of epoch ``state["epoch"]``."""
        epoch, batches = int(state["epoch"]), int(state["batches"])
        sampler = _epoch_sampler(self)
        if sampler is not None:
            sampler.set_epoch(epoch)
        self._epoch = epoch
        if isinstance(self.batch_sampler, ResumableBatchSampler):
            self.batch_sampler.skip = batches
        elif batches:
            raise ValueError(
                "this checkpoint was written in the middle of an epoch but the training loader "
                "cannot skip batches; resume from an end-of-epoch checkpoint"
            )
