"""The LightningCLI behind ``train.py``: ``fit`` / ``validate`` / ``test`` / ``predict``."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from scouter.data import ScouterDataModule
from scouter.safe_loading import CheckpointError, safe_torch_load
from scouter.training.callbacks import ScouterCheckpoint
from scouter.training.cli_checks import (
    announce_batch_limits,
    check_ckpt_path,
    logger_folders,
    read_batch_limits_as_written,
)
from scouter.training.cli_errors import ScouterArgumentParser
from scouter.training.folder_lock import CheckpointFolderLockedError
from scouter.training.module import ScouterModule
from scouter.training.run_checks import TrainingInputError, check_training_batches, check_writable


class ScouterCLI(LightningCLI):
    """``LightningCLI(ScouterModule, ScouterDataModule)`` with scouter's links.

    * ``model.num_classes`` is taken from ``data.num_classes`` and ``model.in_chans`` from
      ``data.in_chans`` (one source of truth each);
    * :class:`ScouterCheckpoint` placeholders (``{run}`` …) are filled before the subcommand
      runs, so ``--ckpt_path last`` finds the run's own ``last.ckpt``;
    * ``fit --ckpt_path last`` without a ``last.ckpt`` yet (a preempted job resubmitted before its
      first checkpoint, or the first submission of a resumable job) starts a new run and says so;
      ``validate`` / ``test`` / ``predict --ckpt_path last`` without one fail naming the folder;
    * checkpoints are only read with the safe loader (``--ckpt_path`` here, and the module's
      :class:`~scouter.training.safe_checkpoint_io.SafeCheckpointIO`); ``weights_only`` is not an
      option;
    * before any work: ``--ckpt_path`` is a file, the loggers' and checkpoint folders are
      writable, the training split gives at least one batch; parse errors are one line naming
      the key (:mod:`scouter.training.cli_errors`); ``limit_*_batches`` keep the type written
      (:mod:`scouter.training.cli_checks`).
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # Trainer.fit/validate/test/predict's weights_only=False would unpickle arbitrary objects
        # from --ckpt_path: not offered (ScouterArgumentParser explains why when it is given).
        return {
            name: skipped | {"weights_only"} for name, skipped in LightningCLI.subcommands().items()
        }

    def _parse_ckpt_path(self) -> None:
        """Lightning's hook (>= 2.5) that lets a checkpoint's model hyper-parameters update the
        config, here reading the file with the safe loader after checking it is a file.

        Lightning's own version calls ``torch.load`` directly: a folder, random bytes or a refused
        pickle gave torch's traceback (and its advice to set ``weights_only=False``).
        """
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        ckpt_path = self.config[subcommand].get("ckpt_path")
        check_ckpt_path(ckpt_path)
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        hparams = dict(safe_torch_load(ckpt_path).get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_chans", "model.in_chans", apply_on="parse")
        read_batch_limits_as_written(parser)

    def _fill_checkpoint_tags(self) -> None:
        for callback in self.trainer.callbacks:
            if isinstance(callback, ScouterCheckpoint):
                callback.fill_tags(self.model)

    def _check_before_work(self, subcommand: str) -> None:
        """Fill the run tags, then refuse what would fail later (each names its setting)."""
        self._fill_checkpoint_tags()
        folders = logger_folders(self.trainer)
        if subcommand == "fit":
            folders += [
                (folder, "the checkpoint folder (trainer.callbacks: ScouterCheckpoint dirpath)")
                for folder in self._last_checkpoint_folders()
            ]
        check_writable(folders)
        announce_batch_limits(self.config[subcommand]["trainer"])
        if subcommand == "fit" and self.datamodule is not None:
            self.datamodule.setup("fit")
            check_training_batches(self.datamodule, self.trainer.world_size)

    def before_fit(self) -> None:
        self._check_before_work("fit")

    def before_validate(self) -> None:
        self._check_before_work("validate")

    def before_test(self) -> None:
        self._check_before_work("test")

    def before_predict(self) -> None:
        self._check_before_work("predict")

    def _last_checkpoint_folders(self) -> list[str]:
        folders = []
        for callback in self.trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint):
                resolve = getattr(callback, "_ModelCheckpoint__resolve_ckpt_dir", None)
                folder = resolve(self.trainer) if resolve is not None else callback.dirpath
                folders.append(str(folder))
        return folders

    def _has_last_checkpoint(self) -> bool:
        """Whether Lightning's ``ckpt_path="last"`` lookup would find a file."""
        candidates = {
            cb.ckpt_path for cb in self.trainer.callbacks if isinstance(cb, OnExceptionCheckpoint)
        }
        for callback in self.trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint):
                candidates |= callback._find_last_checkpoints(self.trainer)
        return any(get_filesystem(path).exists(path) for path in candidates if path)

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        # Lightning answers a missing last checkpoint with a warning whose hint ("Set
        # save_last=True") misleads here: ScouterCheckpoint saves it by default.
        if kwargs.get("ckpt_path") == "last" and not self._has_last_checkpoint():
            folders = ", ".join(self._last_checkpoint_folders()) or "(no checkpoint callback)"
            if not any(getattr(cb, "save_last", False) for cb in self.trainer.checkpoint_callbacks):
                folders += " (and no checkpoint callback saves one: set save_last: true)"
            if subcommand != "fit":
                raise TrainingInputError(
                    f"--ckpt_path last: no last.ckpt in {folders}: train first (train.py fit "
                    "--config ...) or pass a checkpoint file, e.g. --ckpt_path path/to/run.ckpt"
                )
            rank_zero_info(f"--ckpt_path last: no last.ckpt in {folders}: starting a new run")
            kwargs["ckpt_path"] = None
        return kwargs


#: Errors ``train.py`` prints as one line (each names the problem and the fix), not a traceback.
USER_ERRORS = (TrainingInputError, CheckpointError, CheckpointFolderLockedError)


class _DropAdvertisements(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing ..." lines (product advertisements)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


_NOISE_FILTER = _DropAdvertisements()


def silence_lightning_noise() -> None:
    """Silence what every run printed and no user can act on (idempotent).

    Lightning's advertisements for its cloud services, and a deprecation warning raised inside
    Lightning's own code (``_pytree``: ``isinstance(treespec, LeafSpec)``) on recent torch.
    Every other message and warning stays.
    """
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _NOISE_FILTER not in logger.filters:
            logger.addFilter(_NOISE_FILTER)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def main(args: list[str] | None = None) -> ScouterCLI:
    """Run the command line (``args`` instead of ``sys.argv[1:]`` for tests)."""
    silence_lightning_noise()
    return ScouterCLI(
        ScouterModule,
        ScouterDataModule,
        args=args,
        parser_class=ScouterArgumentParser,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"default_env": False},
        auto_configure_optimizers=False,
    )
