"""``stylex.py``: ``fit`` (LightningCLI, like ``train.py``) and ``attfind`` (find and export).

Examples:
    python stylex.py fit --config configs/stylex/fashion_mnist.yaml --model.classifier fc32.ckpt
    python stylex.py attfind --checkpoint checkpoints/stylex/fashion_mnist/last.ckpt --out out/
"""

from __future__ import annotations

from typing import Any

from pytorch_lightning.cli import LightningCLI

from scouter.stylex.data import StylexDataModule
from scouter.stylex.module import StylexModule
from scouter.training.cli import ScouterCLI


class StylexCLI(LightningCLI):
    """``LightningCLI(StylexModule, StylexDataModule)``; the generator's size and the explained
    classes come from ``data`` (one source of truth each).

    Checkpoints are read as ``train.py`` reads them: ``--ckpt_path`` with scouter's safe loader
    (``weights_only=True``; :meth:`ScouterCLI._parse_ckpt_path`, and the module's
    :class:`~scouter.training.safe_checkpoint_io.SafeCheckpointIO`), and ``weights_only`` is not
    an option (its parser explains why when it is given).
    """

    subcommands = staticmethod(ScouterCLI.subcommands)
    _parse_ckpt_path = ScouterCLI._parse_ckpt_path

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("data.image_size", "model.image_size", apply_on="parse")
        parser.link_arguments("data.classes", "model.classes", apply_on="parse")


def main(args: list[str] | None = None) -> Any:
    """Run ``stylex.py`` (``args`` instead of ``sys.argv[1:]`` for tests)."""
    import sys

    from scouter.training.cli import silence_lightning_noise

    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] == "attfind":
        from scouter.stylex.run_attfind import main as attfind_main

        return attfind_main(argv[1:])
    silence_lightning_noise()
    import warnings

    from scouter.training.cli_errors import ScouterArgumentParser

    # The explained classifier is frozen in eval mode on purpose (ExplainedClassifier).
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    return StylexCLI(
        StylexModule,
        StylexDataModule,
        args=argv if args is not None else None,  # from sys.argv: Lightning reads it itself
        parser_class=ScouterArgumentParser,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"default_env": False},
    )
