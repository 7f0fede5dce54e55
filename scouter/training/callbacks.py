"""Only what Lightning lacks: checkpoint names that carry the run, written atomically."""

from __future__ import annotations

import os
import uuid
from typing import Any
from weakref import proxy

import pytorch_lightning as pl
from lightning_fabric.utilities.cloud_io import _is_local_file_protocol
from pytorch_lightning.callbacks import ModelCheckpoint

from scouter.training import folder_lock

RUN_TAGS = ("{run}", "{variant}", "{lambda}", "{slots}")


def format_number(value: float) -> str:
    """``1.0 -> "1"``, ``0.2 -> "0.2"``, ``1e-05 -> "1e-05"``: short and stable in file names."""
    return f"{float(value):g}"


def run_tags(module: pl.LightningModule) -> dict[str, str]:
    """The placeholders a :class:`ScouterCheckpoint` fills from the module being trained.

    Returns:
        ``{run}``: ``fc`` or ``scouter_pos-lam1-s1``; ``{variant}``: ``fc`` / ``scouter_pos`` /
        ``scouter_neg``; ``{lambda}``: λ of the area loss; ``{slots}``: slots per class.
    """
    config = module.model.config
    lam = format_number(module.loss.lambda_area)
    slots = str(config.slots_per_class)
    run = config.variant if config.head == "fc" else f"{config.variant}-lam{lam}-s{slots}"
    return {"{run}": run, "{variant}": config.variant, "{lambda}": lam, "{slots}": slots}


def fill_run_tags(text: str | None, tags: dict[str, str]) -> str | None:
    """Replace the :data:`RUN_TAGS` in ``text`` (other ``{...}`` fields are Lightning's)."""
    if text is None:
        return None
    for key, value in tags.items():
        text = text.replace(key, value)
    return text


class ScouterCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``dirpath`` and ``filename`` may name the run, saving atomically.

    The reference wrote one file per dataset and variant, so a λ or slot sweep overwrote itself
    (docs/method.md#known-reference-bugs, item 10). Here ``dirpath`` and ``filename`` may contain
    ``{run}``, ``{variant}``, ``{lambda}`` and ``{slots}``, filled from the module before training
    (by :class:`~scouter.training.cli.ScouterCLI` before ``ckpt_path="last"`` is looked up, else in
    :meth:`setup`); ``{epoch}``, ``{step}`` and metric fields stay Lightning's.

    During the FC stage of two-stage training (``fc_warmup_epochs``) only ``last.ckpt`` is
    written, so the monitored best checkpoint is always a trained SCOUTER model.

    Every file is written to a hidden temporary file in the same folder and renamed over the target
    (``os.replace``), so a process killed while saving never leaves a truncated ``last.ckpt``
    (Lightning's own save goes through a temporary file in the system temp folder and falls back
    to a non-atomic copy when that is another file system).

    ``fit`` takes the folder's lock file (:mod:`scouter.training.folder_lock`; global rank 0 only)
    before anything is saved and removes it when the run ends: a second run into the same folder
    fails naming the process that holds it instead of overwriting its checkpoints; a lock left by
    a killed run is taken over, so ``--ckpt_path last`` resumes.

    Args:
        dirpath: folder of the checkpoints, e.g. ``checkpoints/fashion_mnist/{run}``.
        filename: e.g. ``{run}-epoch{epoch:03d}-step{step:06d}`` (the default).
        monitor / mode / save_last / save_top_k / every_n_train_steps / …: as ``ModelCheckpoint``.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str | None = "{run}-epoch{epoch:03d}-step{step:06d}",
        monitor: str | None = "val/acc",
        mode: str = "max",
        save_last: bool | None = True,
        save_top_k: int = 1,
        auto_insert_metric_name: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=monitor,
            mode=mode,
            save_last=save_last,
            save_top_k=save_top_k,
            auto_insert_metric_name=auto_insert_metric_name,
            **kwargs,
        )
        self._tags_filled = False
        self._lock: str | None = None

    def fill_tags(self, module: pl.LightningModule) -> None:
        """Resolve the run placeholders of ``dirpath`` and ``filename`` from ``module``."""
        if self._tags_filled or not hasattr(module, "model"):
            return
        tags = run_tags(module)
        if self.dirpath is not None:
            self.dirpath = os.path.realpath(fill_run_tags(str(self.dirpath), tags))
        self.filename = fill_run_tags(self.filename, tags)
        self._tags_filled = True

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.fill_tags(pl_module)
        super().setup(trainer, pl_module, stage)
        if stage == "fit" and self.dirpath is not None and _is_local_file_protocol(self.dirpath):
            self._take_lock(trainer)

    def _take_lock(self, trainer: pl.Trainer) -> None:
        """Rank 0 locks the folder; every rank raises its refusal (none waits in a collective)."""
        refusal = None
        if trainer.is_global_zero and self._lock is None:
            try:
                self._lock = folder_lock.acquire(self.dirpath)
            except (folder_lock.CheckpointFolderLockedError, OSError) as error:
                refusal = str(error)  # e.g. a folder that cannot be created: every rank stops
        refusal = trainer.strategy.broadcast(refusal)
        if refusal is not None:
            raise folder_lock.CheckpointFolderLockedError(refusal)

    def _drop_lock(self) -> None:
        folder_lock.release(self._lock)
        self._lock = None

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        self._drop_lock()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        super().on_exception(trainer, pl_module, exception)
        self._drop_lock()

    # Lightning >= 2.5 refreshes last.ckpt only when a top-k file was written at the same step, so
    # an epoch whose val/acc did not improve left last.ckpt behind and `--ckpt_path last` resumed
    # from an older epoch. last.ckpt is what resuming needs: refresh it after every epoch.
    def _refresh_last(self, trainer: pl.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    # Two-stage training (ScouterModule.fc_warmup_epochs): the FC stage logs no val/acc, and a
    # "best" checkpoint from it would hold an untrained xSlot head. Keep only last.ckpt then.
    def _save_topk_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict) -> None:
        if getattr(trainer.lightning_module, "in_fc_warmup", False):
            return
        super()._save_topk_checkpoint(trainer, monitor_candidates)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if not _is_local_file_protocol(filepath):
            super()._save_checkpoint(trainer, filepath)
            return
        folder, name = os.path.split(filepath)
        # Same folder => same file system => os.replace is atomic. The random suffix keeps
        # concurrent runs apart; a leftover from a killed save never matches "*.ckpt".
        token = trainer.strategy.broadcast(uuid.uuid4().hex[:8])
        partial = os.path.join(folder, f".{name}.{token}.partial")
        trainer.save_checkpoint(partial, self.save_weights_only)
        if trainer.is_global_zero:
            os.replace(partial, filepath)
        trainer.strategy.barrier("ScouterCheckpoint._save_checkpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))
