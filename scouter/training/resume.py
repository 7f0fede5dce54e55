"""What a resumed run needs beyond Lightning's checkpoint to continue exactly.

Lightning restores weights, optimizer, scheduler and loop counters. Two things it misses:

* **the position in the training data** (:class:`TrainLoaderResume`): Lightning hands the saved
  state of a resumable loader (:class:`scouter.data.sampling.ResumableDataLoader`) back only if
  the training loader is first built after the checkpoint was read. ``configure_optimizers``
  asking for ``trainer.estimated_stepping_batches`` (the cosine and warm-up schedules need the
  run's length) builds it before, and the saved position was then silently dropped: a run
  resumed mid-epoch started the epoch over (Lightning issue #20550);
* **the random streams** that stochastic layers (dropout, drop-path) and user code draw from
  (:class:`RandomStateResume`). It stores torch's (CPU and every initialised CUDA device), NumPy's and Python's global states
with every checkpoint and puts them back **right before training continues** — at the start of the
next training epoch, or of the next training batch when the checkpoint was written mid-epoch — not
when the checkpoint is read: between reading and continuing, Lightning builds validation loaders
and may run sanity-check batches, which draw from the global torch stream in a resumed run but not
at that point of an uninterrupted one.

Everything is stored as tensors and plain Python values so checkpoints stay loadable with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import CombinedLoader


def collect_random_states() -> dict[str, Any]:
    """The global random states: ``torch``, ``cuda`` (list, empty without CUDA), ``numpy``, ``python``."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }


def restore_random_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`collect_random_states` (CUDA states only where CUDA is in use)."""
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    state = states["numpy"]
    np.random.set_state(
        (
            state["kind"],
            state["keys"].numpy().astype(np.uint32),
            state["position"],
            state["has_gauss"],
            state["cached_gaussian"],
        )
    )
    state = states["python"]
    random.setstate((state["version"], tuple(state["internal"]), state["gauss_next"]))


class RandomStateResume(Callback):
    """Save the global random states with each checkpoint; restore them when training continues.

    Added by :class:`~scouter.training.ScouterModule` itself (``configure_callbacks``), so every
    ``train.py fit`` run has it without a config entry.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        # called while the checkpoint is written: the states at that point of training
        return collect_random_states()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def _restore_pending(self) -> None:
        if self._pending is not None:
            restore_random_states(self._pending)
            self._pending = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_pending()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._restore_pending()


def _saved_loader_states(checkpoint: dict[str, Any]) -> list[dict[str, Any]]:
    """The training loaders' saved states (Lightning's ``fit_loop`` checkpoint entry)."""
    fit_loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}
    return list((fit_loop.get("state_dict") or {}).get("combined_loader") or [])


class TrainLoaderResume(Callback):
    """Give the training loaders their saved position before the first batch is drawn.

    Lightning loads the position only when it builds the training loader after reading the
    checkpoint; when something needed the loader earlier (``trainer.estimated_stepping_batches``
    in ``configure_optimizers``), it skips it. Loading it again at ``on_train_start`` is harmless
    when Lightning did (a :class:`~scouter.data.sampling.ResumableDataLoader` only records where
    its next iteration starts, and nothing has been drawn yet) and fixes the run when it did not.

    Added by :class:`~scouter.training.ScouterModule` itself (``configure_callbacks``).
    """

    def __init__(self) -> None:
        self._pending: list[dict[str, Any]] = []

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._pending = _saved_loader_states(checkpoint)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        states, self._pending = self._pending, []
        if not states or trainer.train_dataloader is None:
            return
        loaders = CombinedLoader(trainer.train_dataloader).flattened
        stateful = [
            loader
            for loader in loaders
            if callable(getattr(loader, "state_dict", None))
            and callable(getattr(loader, "load_state_dict", None))
        ]
        if len(stateful) != len(states):
            raise RuntimeError(
                f"the checkpoint holds the position of {len(states)} training loader(s) but this "
                f"run has {len(stateful)} resumable one(s): resume with the same data settings"
            )
        for loader, state in zip(stateful, states, strict=True):
            loader.load_state_dict(state)
