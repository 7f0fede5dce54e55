"""The command line of ``evaluate.py``: :func:`build_parser` and :func:`main`."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import yaml

from scouter.evaluation.options import (
    DEFAULT_METRICS,
    EXPLAINED_CLASS_MODES,
    METRICS,
    PREPROCESSING_SOURCES,
    SPLITS,
    DataConfigMismatchWarning,
    EvaluationError,
    EvaluationOptions,
)
from scouter.evaluation.preparation import prepare
from scouter.evaluation.running import run


def _parse_setting(text: str) -> tuple[str, str, Any]:
    """``"ig.steps=16"`` → ``("ig", "steps", 16)`` (values parsed as YAML scalars)."""
    key, sep, value = text.partition("=")
    name, dot, setting = key.strip().rpartition(".")
    if not sep or not dot or not name or not setting:
        raise EvaluationError(
            f"--explainer-setting expects EXPLAINER.SETTING=VALUE (e.g. ig.steps=16), got {text!r}"
        )
    return name, setting, yaml.safe_load(value)


def _parse_data_overrides(parser: Any, extra: Sequence[str]) -> dict[str, Any]:
    """``["--data.root", "x", "--data.seed=1"]`` → ``{"root": "x", "seed": 1}``; anything else
    is refused as argparse refuses unknown arguments."""
    overrides: dict[str, Any] = {}
    extra = list(extra)
    while extra:
        item = extra.pop(0)
        key, sep, value = item.partition("=")
        if not key.startswith("--data.") or len(key) == len("--data."):
            parser.error(f"unrecognized arguments: {item}")
        if not sep:
            if not extra or extra[0].startswith("--"):
                parser.error(f"{key} expects a value, e.g. {key} VALUE")
            value = extra.pop(0)
        overrides[key[len("--data.") :]] = yaml.safe_load(value)
    return overrides


def build_parser():
    """The ``evaluate.py`` argument parser."""
    import argparse

    from scouter.explain import list_explainers

    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        epilog="--data.KEY VALUE (or --data.KEY=VALUE): replace a setting of the config's data: "
        "section, as train.py's --data.* (values read as YAML), e.g. --data.root mydata "
        "--data.dataset folder --data.dataset_options.num_classes 3 (repeatable)",
        description="Evaluate a checkpoint (ours or an original SCOUTER one) on a dataset split: "
        "accuracy and explanation metrics (docs/metrics.md) to results.json + per_image.csv, and "
        "optionally overlays, a grid and a self-contained HTML report.",
    )
    parser.add_argument(
        "--checkpoint", required=True, help="checkpoint file (.ckpt, .safetensors, .pth)"
    )
    parser.add_argument(
        "--config",
        required=True,
        help="training YAML whose data: section builds the dataset: the config the run was "
        "trained with, best the config.yaml train.py saved beside its logs "
        "(runs/<...>/csv/version_N/config.yaml)",
    )
    parser.add_argument(
        "--explainers",
        help=f"comma-separated ({', '.join(list_explainers())}); "
        "default: slot for SCOUTER, gradcam for FC",
    )
    parser.add_argument(
        "--explainer-setting",
        action="append",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="an explainer setting, e.g. ig.steps=16 (repeatable)",
    )
    parser.add_argument(
        "--metrics",
        help=f"comma-separated ({', '.join(METRICS)}); default: {','.join(DEFAULT_METRICS)}",
    )
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--limit", type=int, help="evaluate only the first N images")
    parser.add_argument(
        "--explained-class",
        default="auto",
        help=f"{' | '.join(EXPLAINED_CLASS_MODES)} | a class index "
        "(docs/metrics.md#explained-class)",
    )
    parser.add_argument("--out", help="folder for results.json and per_image.csv")
    parser.add_argument("--export", help="folder for overlays, grid.png and report.html")
    parser.add_argument("--num-images", type=int, default=8, help="images in the export")
    parser.add_argument("--batch-size", type=int, help="override data.batch_size")
    parser.add_argument("--num-workers", type=int, help="override data.num_workers")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="seed of metric perturbations")
    parser.add_argument(
        "--metric-batch-size", type=int, default=256, help="perturbed images per forward pass"
    )
    parser.add_argument(
        "--preprocessing",
        default="checkpoint",
        choices=PREPROCESSING_SOURCES,
        help="input size, channels, mean, std: from the data config stored with the checkpoint "
        "(default, where it has one) or from the config's data section; a disagreement is "
        "warned about either way",
    )
    grid = parser.add_argument_group("grid pointing game (--metrics gridpg)")
    grid.add_argument("--gridpg-size", type=int, help="cells per side (default 2, or the file's)")
    grid.add_argument(
        "--gridpg-geometry", default="rescale", choices=("rescale", "tile"),
        help="rescale: grid at the input size (cells shrunk); tile: grid at n× the input size",
    )  # fmt: skip
    grid.add_argument(
        "--gridpg-threshold", type=float,
        help="softmax probability of the true class an image needs (default 0.99, or the file's)",
    )  # fmt: skip
    grid.add_argument("--gridpg-count", type=int, help="number of grids (default 100)")
    grid.add_argument(
        "--gridpg-grids",
        help="grids file: reused if it exists, else built and written (default "
        "<out>/gridpg_grids.json)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry of ``evaluate.py``; returns the exit code (2 on a user error)."""
    import sys

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    data_overrides = _parse_data_overrides(parser, extra)
    try:
        settings: dict[str, dict[str, Any]] = {}
        for text in args.explainer_setting:
            name, key, value = _parse_setting(text)
            settings.setdefault(name, {})[key] = value
        explained: str | int = args.explained_class
        if isinstance(explained, str) and explained.lstrip("-").isdigit():
            explained = int(explained)
        options = EvaluationOptions(
            checkpoint=args.checkpoint,
            config=args.config,
            data_overrides=data_overrides,
            explainers=args.explainers,
            explainer_settings=settings,
            metrics=args.metrics,
            split=args.split,
            limit=args.limit,
            explained_class=explained,
            out=args.out,
            export=args.export,
            num_images=args.num_images,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            device=args.device,
            seed=args.seed,
            metric_batch_size=args.metric_batch_size,
            progress=not args.no_progress,
            preprocessing=args.preprocessing,
            gridpg_size=args.gridpg_size,
            gridpg_geometry=args.gridpg_geometry,
            gridpg_threshold=args.gridpg_threshold,
            gridpg_count=args.gridpg_count,
            gridpg_grids=args.gridpg_grids,
        )
        with warnings.catch_warnings():  # printed below, once, in evaluate.py's own words
            warnings.simplefilter("ignore", DataConfigMismatchWarning)
            warnings.filterwarnings("ignore", message=".*so the test split is the validation")
            prepared = prepare(options)
        for warning in prepared.warnings:
            print(f"evaluate.py: warning: {warning}", file=sys.stderr)
        for note in prepared.notes:
            print(f"evaluate.py: note: {note}", file=sys.stderr)
        results = run(prepared)
    except EvaluationError as error:
        print(f"evaluate.py: error: {error}", file=sys.stderr)
        return 2
    summary = {"split": results["dataset"]["split"], "images": results["num_images"]}
    if "accuracy" in results["metrics"]:
        summary["accuracy"] = round(results["metrics"]["accuracy"]["value"], 4)
    for name, doc in results["explanations"].items():
        for metric, value in doc["metrics"].items():
            summary[f"{name}/{metric}"] = round(value["value"], 4)
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    for folder, files in ((args.out, "results.json, per_image.csv"), (args.export, "report.html")):
        if folder:
            print(f"wrote {files} to {folder}")
    return 0
