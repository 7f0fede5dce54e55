"""Lightning reads ``--ckpt_path`` through scouter's safe loader, never with ``weights_only=False``.

``Trainer.fit/validate/test/predict(ckpt_path=...)`` read the file with the strategy's
``CheckpointIO``; Lightning's default passes the caller's ``weights_only`` to ``torch.load``, so
``weights_only=False`` unpickles whatever the file holds (a planted ``last.ckpt`` runs its code),
and a refused file shows torch's advice to do exactly that. :class:`SafeCheckpointIO` reads local
files with :func:`scouter.safe_loading.safe_torch_load` (``weights_only=True``, only
``argparse.Namespace`` allow-listed, refusals and unreadable files named with their fix) and
refuses ``weights_only=False``. Saving is Lightning's.

:class:`~scouter.training.ScouterModule` installs it in ``setup`` (:func:`use_safe_checkpoint_io`),
which Lightning runs before it reads the checkpoint, so the Python API is covered as ``train.py``.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.cloud_io import _load
from pytorch_lightning.plugins.io import TorchCheckpointIO

from scouter.safe_loading import SAFE_GLOBALS, CheckpointError, safe_torch_load
from scouter.training.checkpoint_folder import is_local_path


class UnsafeLoadRefusedError(CheckpointError):
    """``weights_only=False`` was asked for: refused, it would unpickle arbitrary objects."""


class SafeCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose loading is :func:`~scouter.safe_loading.safe_torch_load`.

    Tensors are read onto the CPU (Lightning moves every state to its device when restoring).
    """

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if weights_only is False:
            raise UnsafeLoadRefusedError(
                f"refusing to read {str(path)!r} with weights_only=False: that unpickles "
                "arbitrary objects, which can run code hidden in the file. scouter reads "
                "checkpoints with weights_only=True only; call without weights_only"
            )
        if is_local_path(path):
            return safe_torch_load(path)
        try:  # a remote file (fsspec URL): the same restriction, without torch's advice
            with torch.serialization.safe_globals(SAFE_GLOBALS):
                return _load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError:
            raise CheckpointError(
                f"refusing to load {str(path)!r}: it is not a checkpoint of tensors and plain "
                "containers (torch's weights-only reader refused it); unpickling it could run "
                "arbitrary code"
            ) from None


def use_safe_checkpoint_io(trainer: pl.Trainer) -> None:
    """Make ``trainer`` read checkpoints with :class:`SafeCheckpointIO` (idempotent).

    Replaces Lightning's default ``TorchCheckpointIO``; another checkpoint plugin given in
    ``trainer.plugins`` keeps saving its way but reads through the safe loader too.
    """
    strategy = trainer.strategy
    io = strategy.checkpoint_io
    if isinstance(io, SafeCheckpointIO) or getattr(io, "_scouter_safe_loading", False):
        return
    if type(io) is TorchCheckpointIO:
        strategy.checkpoint_io = SafeCheckpointIO()
        return
    # A plugin of the user's (async saving, another file system): its own reader could unpickle
    # anything, so this instance reads as SafeCheckpointIO does.
    io.load_checkpoint = SafeCheckpointIO().load_checkpoint
    io._scouter_safe_loading = True
