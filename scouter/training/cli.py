"""The LightningCLI behind ``train.py``: ``fit`` / ``validate`` / ``test`` / ``predict``."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.cli import LightningCLI

from scouter.data import ScouterDataModule
from scouter.training.callbacks import ScouterCheckpoint
from scouter.training.module import ScouterModule


class ScouterCLI(LightningCLI):
    """``LightningCLI(ScouterModule, ScouterDataModule)`` with scouter's links.

    * ``model.num_classes`` is taken from ``data.num_classes`` and ``model.in_chans`` from
      ``data.in_chans`` (one source of truth each);
    * :class:`ScouterCheckpoint` placeholders (``{run}`` …) are filled before the subcommand
      runs, so ``--ckpt_path last`` finds the run's own ``last.ckpt``.
    """

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_chans", "model.in_chans", apply_on="parse")

    def _fill_checkpoint_tags(self) -> None:
        for callback in self.trainer.callbacks:
            if isinstance(callback, ScouterCheckpoint):
                callback.fill_tags(self.model)

    def before_fit(self) -> None:
        self._fill_checkpoint_tags()

    def before_validate(self) -> None:
        self._fill_checkpoint_tags()

    def before_test(self) -> None:
        self._fill_checkpoint_tags()

    def before_predict(self) -> None:
        self._fill_checkpoint_tags()


def main(args: list[str] | None = None) -> ScouterCLI:
    """Run the command line (``args`` instead of ``sys.argv[1:]`` for tests)."""
    return ScouterCLI(
        ScouterModule,
        ScouterDataModule,
        args=args,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"default_env": False},
        auto_configure_optimizers=False,
    )
