"""Training throughput: the real ``fit`` loop against the same step on batches already in memory.

For a recipe (a ``train.py`` YAML config), two runs of the same Lightning ``fit`` loop, same model,
same optimizer, same device, side by side (alternating, ``--rounds`` times each):

* **real**: ``trainer.fit(model, datamodule)`` — the recipe's data pipeline (reading, rendering
  composites, per-sample transforms, collation, workers, host-to-device copies) feeds the steps;
* **ceiling**: ``trainer.fit(model, batches)`` on ``--distinct`` batches taken from that pipeline
  beforehand and already on the device, repeated — the step alone, data loading free.

Both count images per second from the start of batch ``--warmup`` to the end of the last batch;
the ratio real / ceiling says how busy the data pipeline keeps the device (1.0 = not at all the
bottleneck). Validation is off and, for two-stage recipes, the xSlot stage is measured
(``model.fc_warmup_epochs 0``).

Examples:
    python bench/train_throughput.py --config configs/fashion_mnist/scouter_pos.yaml
    python bench/train_throughput.py --config configs/composites/scouter_pos.yaml --steps 40
    python bench/train_throughput.py --config configs/composites/fc.yaml --device cuda \\
        --set data.num_workers=8 --set trainer.precision=bf16-mixed
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.apply_func import move_data_to_device

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine_description  # noqa: E402
from scouter.data import ScouterDataModule  # noqa: E402
from scouter.training.cli import ScouterCLI, silence_lightning_noise  # noqa: E402
from scouter.training.module import ScouterModule  # noqa: E402


class _Clock(pl.Callback):
    """Seconds from the start of batch ``warmup`` to the end of the last batch, and images seen."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end: float | None = None
        self.images = 0

    def _sync(self, pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self._sync(pl_module)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx >= self.warmup:
            self.images += int(batch["image"].shape[0])
        self._sync(pl_module)
        self.end = time.perf_counter()

    def images_per_second(self) -> float:
        if self.start is None or self.end is None or self.images == 0:
            raise RuntimeError("no timed batch: raise --steps above --warmup")
        return self.images / (self.end - self.start)


class _Replay:
    """The given batches in order, as one loader (a plain list would be read as many loaders)."""

    def __init__(self, batches: list[dict[str, Any]]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def _overrides(settings: list[str]) -> list[str]:
    args = []
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep:
            raise SystemExit(f"--set {setting!r}: expected key=value, e.g. data.num_workers=4")
        args += [f"--{key}", value]
    return args


def build(config: str, device: str, steps: int, settings: list[str]) -> ScouterCLI:
    """The recipe's model, data module and a bare trainer for ``steps`` training batches."""
    args = [
        "--config", config,
        "--model.fc_warmup_epochs", "0",
        "--trainer.accelerator", device,
        "--trainer.devices", "1",
        "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", str(steps),
        "--trainer.limit_val_batches", "0",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.logger", "false",
        "--trainer.callbacks", "null",
        "--trainer.enable_checkpointing", "false",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        *_overrides(settings),
    ]  # fmt: skip
    silence_lightning_noise()
    return ScouterCLI(
        ScouterModule,
        ScouterDataModule,
        args=args,
        run=False,
        save_config_callback=None,
        parser_kwargs={"default_env": False},
        auto_configure_optimizers=False,
    )


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Alternate real and ceiling runs; medians of images/s and their ratio."""
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    speeds: dict[str, list[float]] = {"real": [], "ceiling": []}
    batch_size = None
    for _ in range(args.rounds):
        for kind in ("real", "ceiling"):
            pl.seed_everything(0, verbose=False)
            cli = build(args.config, args.device, args.steps, args.set)
            clock = _Clock(args.warmup)
            cli.trainer.callbacks.append(clock)
            datamodule = cli.datamodule
            if kind == "real":
                cli.trainer.fit(cli.model, datamodule=datamodule)
            else:
                datamodule.setup("fit")
                loader = datamodule.train_dataloader()
                distinct = [
                    move_data_to_device(b, device) for b in itertools.islice(loader, args.distinct)
                ]
                del loader
                batches = [distinct[i % len(distinct)] for i in range(args.steps)]
                cli.trainer.fit(cli.model, train_dataloaders=_Replay(batches))
            batch_size = datamodule.batch_size
            speeds[kind].append(clock.images_per_second())
    real, ceiling = statistics.median(speeds["real"]), statistics.median(speeds["ceiling"])
    return {
        "config": args.config,
        "settings": args.set,
        "device": args.device,
        "machine": machine_description(device),
        "batch_size": batch_size,
        "timed_batches": args.steps - args.warmup,
        "rounds": args.rounds,
        "real_images_per_s": real,
        "ceiling_images_per_s": ceiling,
        "ratio": real / ceiling,
        "all_real": speeds["real"],
        "all_ceiling": speeds["ceiling"],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="a train.py YAML config (a recipe)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--steps", type=int, default=30, help="training batches per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed first batches per run")
    parser.add_argument("--distinct", type=int, default=4, help="distinct in-memory batches")
    parser.add_argument("--rounds", type=int, default=2, help="real/ceiling pairs")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a train.py override, e.g. data.num_workers=4 or trainer.precision=bf16-mixed",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if args.steps <= args.warmup:
        parser.error("--steps must be larger than --warmup")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    result = measure(args)
    print(
        f"{result['config']} {' '.join(result['settings'])} on {result['device']} "
        f"(batch {result['batch_size']}, {result['timed_batches']} timed batches, median of "
        f"{result['rounds']}): real fit loop {result['real_images_per_s']:.1f} images/s, "
        f"ceiling {result['ceiling_images_per_s']:.1f} images/s, ratio {result['ratio']:.2f}"
    )
    print(result["machine"])
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
