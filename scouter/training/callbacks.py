"""Only what Lightning lacks: checkpoint names that carry the run, written atomically."""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from typing import Any
from weakref import proxy

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.rank_zero import rank_zero_info

import scouter.training.folder_lock as folder_lock
from scouter.training.checkpoint_folder import (
    describe_partials,
    is_local_path,
    leftover_partials,
    partial_path,
    remove_leftover_partials,
    set_aside_earlier_run,
)

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

    A save that fails (a full disk) removes its temporary file and raises an ``OSError`` naming
    the checkpoint and the fix; the folder's earlier checkpoints stay as they were.

    ``fit`` takes the folder's lock file (:mod:`scouter.training.folder_lock`; global rank 0 only)
    before anything is saved and removes it when the run ends: a second run into the same folder
    fails naming the process that holds it instead of overwriting its checkpoints; a lock left by
    a killed run is taken over, so ``--ckpt_path last`` resumes. The run holding the lock removes
    the temporary files of saves that were killed, and, unless it resumes from this folder, moves
    an earlier run's checkpoints to ``earlier_runs/<time>/`` (:mod:`~.checkpoint_folder`): the
    folder's ``last.ckpt`` is always the latest run's. ``fit`` ends by printing the paths of the
    checkpoints it wrote.

    ``last.ckpt`` is refreshed at every ``every_n_train_steps`` step even while the monitored
    value does not exist yet (Lightning waits for the first validation), so a run killed before
    it still resumes from its last periodic step.

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
        self._resumed_here = False

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
        self._resumed_here = False
        if stage == "fit" and self._local_folder():
            self._take_lock(trainer)

    def _local_folder(self) -> bool:
        return self.dirpath is not None and is_local_path(self.dirpath)

    def _take_lock(self, trainer: pl.Trainer) -> None:
        """Rank 0 locks the folder; every rank raises its refusal (none waits in a collective)."""
        refusal = None
        if trainer.is_global_zero and self._lock is None:
            try:
                self._lock = folder_lock.acquire(self.dirpath)
            except folder_lock.CheckpointFolderLockedError as error:
                refusal = (None, str(error))
            except OSError as error:  # a full disk, a read-only folder: every rank stops
                refusal = (error.errno, self._unwritable_folder(error))
            else:
                leftovers = leftover_partials(self.dirpath)
                if leftovers:
                    text = describe_partials(leftovers)
                    remove_leftover_partials(self.dirpath)
                    rank_zero_info(f"removed {text}, left by a save that was interrupted")
        refusal = trainer.strategy.broadcast(refusal)
        if refusal is not None:
            code, message = refusal
            if code is None:
                raise folder_lock.CheckpointFolderLockedError(message)
            raise OSError(code, message)

    def _unwritable_folder(self, error: OSError) -> str:
        leftovers = describe_partials(leftover_partials(self.dirpath))
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = "free space on that file system"
            if leftovers:
                fix += f" (the folder holds {leftovers}: if no run writes there, delete them)"
        else:
            fix = "make it writable"
        return (
            f"cannot write in checkpoint folder '{self.dirpath}': {error.strerror or error} "
            f"({error.filename or self.dirpath}). {fix[0].upper()}{fix[1:]}, or give the run "
            "another folder (ScouterCheckpoint's dirpath in the config)"
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        # Lightning restores the run's best/last paths only when the folder is the same.
        self._resumed_here = state_dict.get("dirpath") == self.dirpath

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After the checkpoint (if any) was read, before anything is saved.
        if self._lock is None or self._resumed_here:
            return
        moved = set_aside_earlier_run(self.dirpath)
        if moved is not None:
            rank_zero_info(
                f"checkpoint folder '{self.dirpath}' held an earlier run's checkpoints: moved them "
                f"to '{moved}'; this run writes its own last.ckpt there. To continue that run "
                "instead, move them back and add --ckpt_path last"
            )

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report_files(trainer, "checkpoints of this run")

    def _report_files(self, trainer: pl.Trainer, title: str) -> None:
        if not trainer.is_global_zero:
            return
        lines = []
        if self.last_model_path and os.path.isfile(self.last_model_path):
            lines.append(f"  last: {self.last_model_path}")
        if self.best_model_path and os.path.isfile(self.best_model_path):
            score = self.best_model_score
            value = f" ({self.monitor} {float(score):.4g})" if score is not None else ""
            lines.append(f"  best{value}: {self.best_model_path}")
        others = sorted(
            path
            for path in self.best_k_models
            if path != self.best_model_path and os.path.isfile(path)
        )
        lines += [f"  also kept: {path}" for path in others]
        if lines:
            rank_zero_info(f"{title}:\n" + "\n".join(lines))

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
        if trainer.state.fn == "fit":
            self._report_files(trainer, "checkpoints written before the run stopped")

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

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        deferred, self._defer_save_until_validation = self._defer_save_until_validation, False
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        deferred_now = self._defer_save_until_validation
        self._defer_save_until_validation = deferred or deferred_now
        # Lightning defers a periodic save until the monitored value exists, i.e. writes nothing
        # before the first validation. last.ckpt needs no metric: write it now. The deferred
        # top-k save still happens at the end of the next validation (even at this step).
        if not (deferred_now and self.save_last) or self._should_skip_saving_checkpoint(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        if self.monitor not in candidates:
            saved = self._last_global_step_saved
            self._save_last_checkpoint(trainer, candidates)
            self._last_global_step_saved = saved

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # Also when saving is Lightning's job at validation end: an epoch (or a max_steps run)
        # can end without a validation, and Lightning then skipped a save it had deferred to one.
        self._refresh_last(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if not is_local_path(filepath):
            super()._save_checkpoint(trainer, filepath)
            return
        folder, name = os.path.split(filepath)
        # Same folder => same file system => os.replace is atomic. The random suffix keeps
        # concurrent runs apart; a leftover from a killed save never matches "*.ckpt".
        token = trainer.strategy.broadcast(uuid.uuid4().hex[:8])
        partial = partial_path(folder, name, token)
        try:
            trainer.save_checkpoint(partial, self.save_weights_only)
            if trainer.is_global_zero:
                os.replace(partial, filepath)
        except BaseException as error:
            if trainer.is_global_zero:
                with contextlib.suppress(OSError):
                    os.unlink(partial)  # a partial file of a checkpoint's size keeps a disk full
            if isinstance(error, OSError):
                raise OSError(error.errno, _save_failed(filepath, error)) from error
            raise
        trainer.strategy.barrier("ScouterCheckpoint._save_checkpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))


def _save_failed(filepath: str, error: OSError) -> str:
    """The message of a checkpoint that could not be written: what, why, what to do."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free space on that file system"
    else:
        fix = "check that the folder is writable"
    return (
        f"could not save checkpoint '{filepath}': {error.strerror or error}. Nothing was "
        f"replaced: the folder's earlier checkpoints are intact. {fix[0].upper()}{fix[1:]} or "
        "give the run another folder (ScouterCheckpoint's dirpath in the config), then continue "
        "with --ckpt_path last"
    )
