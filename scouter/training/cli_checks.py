"""What ``train.py`` checks and says before any work, from its parsed settings.

* :func:`check_ckpt_path`: ``--ckpt_path`` must be a checkpoint file (a folder lists the
  checkpoint files inside, :mod:`scouter.safe_loading`);
* :func:`logger_folders`: where the loggers write, with the setting that chooses it (checked
  writable with :func:`scouter.training.run_checks.check_writable`);
* :func:`read_batch_limits_as_written` and :func:`announce_batch_limits`: ``limit_*_batches``
  take ``1`` as one batch and ``1.0`` as all of them, as Lightning documents, and each run says
  which it got.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from scouter.safe_loading import require_checkpoint_file
from scouter.training.checkpoint_folder import is_local_path
from scouter.training.run_checks import TrainingInputError

# Trainer settings where an integer counts batches and a float is a fraction (1 vs 1.0).
BATCH_LIMITS = (
    "limit_train_batches",
    "limit_val_batches",
    "limit_test_batches",
    "limit_predict_batches",
    "overfit_batches",
    "val_check_interval",
)

# Lightning's own ckpt_path words, resolved by it to a file.
_CKPT_PATH_WORDS = ("last", "best", "hpc")


def check_ckpt_path(ckpt_path: Any) -> None:
    """``--ckpt_path`` names a local checkpoint file (or one of Lightning's words: last, best…)."""
    if ckpt_path is None:
        return
    text = str(ckpt_path)
    if text in _CKPT_PATH_WORDS or text.startswith("registry") or not is_local_path(text):
        return
    try:
        require_checkpoint_file(text)
    except FileNotFoundError as error:
        raise TrainingInputError(
            f"--ckpt_path: {error}: give a .ckpt file, or --ckpt_path last to resume the run's "
            "last.ckpt"
        ) from None
    except OSError as error:  # a folder: the message lists the checkpoint files inside
        raise TrainingInputError(f"--ckpt_path: {error}") from None


def logger_folders(trainer: pl.Trainer) -> list[tuple[str, str]]:
    """``(folder, setting)`` for each local folder the trainer's loggers write to."""
    folders = []
    for logger in trainer.loggers:
        save_dir = getattr(logger, "save_dir", None)
        if save_dir and is_local_path(str(save_dir)):
            setting = f"the logger's folder (trainer.logger: {type(logger).__name__} save_dir)"
            folders.append((str(save_dir), setting))
    if not trainer.loggers:  # the saved config.yaml goes there
        folders.append((str(trainer.default_root_dir), "trainer.default_root_dir"))
    return folders


def read_batch_limits_as_written(parser: Any) -> None:
    """Parse ``limit_*_batches: 1`` as the integer 1 (one batch), ``1.0`` as a float (all).

    Lightning types them ``float | int``, which its CLI tries in that order: ``1`` became ``1.0``
    and ran every batch, the opposite of the documented "int = number of batches". Trying ``int``
    first keeps each value as written.
    """
    for name in BATCH_LIMITS[:4]:
        for action in getattr(parser, "_actions", []):
            if getattr(action, "dest", None) == f"trainer.{name}" and hasattr(action, "_typehint"):
                action._typehint = int | float | None


def _meaning(name: str, value: int | float) -> str:
    if name == "val_check_interval":
        if isinstance(value, int):
            return "validation after every training batch"
        return "validation at the end of each training epoch"
    what = "training" if name == "overfit_batches" else name.split("_")[1]
    return f"1 {what} batch" if isinstance(value, int) else f"all {what} batches (100 %)"


def announce_batch_limits(trainer_config: Any) -> None:
    """Say what a ``1`` or ``1.0`` given to a :data:`BATCH_LIMITS` setting means for this run.

    ``trainer_config`` is the parsed ``trainer`` section (unset settings are None).
    """
    for name in BATCH_LIMITS:
        value = trainer_config.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value != 1:
            continue
        other = 1.0 if isinstance(value, int) else 1
        rank_zero_info(
            f"trainer.{name}: {value!r} means {_meaning(name, value)} (an integer counts batches, "
            f"a float is a fraction); write {other!r} for {_meaning(name, other)}"
        )
