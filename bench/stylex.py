"""StylEx on Fashion-MNIST at 32×32: training time, AttFind time, reconstruction, agreement, KL,
sufficiency@k of StylEx vs random StyleSpace coordinates vs the unconditioned StyleSpace baseline.

Every stage runs the shipped commands as subprocesses (so the numbers are those a user gets):

1. the classifier: ``train.py fit --config <classifier-config> --data.image_size 32
   --trainer.max_steps <clf-steps>`` (default config ``configs/fashion_mnist/fc.yaml``; skipped
   with ``--classifier``), and its test accuracy with ``evaluate.py --metrics accuracy``;
2. StylEx: ``stylex.py fit --config configs/stylex/<config>.yaml --trainer.max_steps <steps>``;
3. the baseline: the same with ``--model.conditional false --model.kl_weight 0``;
4. ``stylex.py attfind --num-images <n> --held-out-images <m> --baseline <baseline ckpt>``
   (``--effect`` / ``--shift`` / ``--no-discriminator-filter`` passed on when given; otherwise
   the command's defaults).

``--jobs 2`` trains StylEx and the baseline side by side (one process each; their times are
then wall clock under that sharing).

Writes ``bench/stylex/results.json`` and ``results.md`` (and copies the top attributes' pictures
there). Example (the run in bench/RESULTS.md):

    OMP_NUM_THREADS=1 python bench/stylex.py --steps 20000 --num-images 200 \
        --held-out-images 1000 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import machine_description  # noqa: E402
from bench.runs import RunFailed, run_logged, run_side_by_side  # noqa: E402
from scouter.stylex.attfind_options import EFFECTS  # noqa: E402


def fit_command(args: argparse.Namespace, work: Path, name: str, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "stylex.py",
        "fit",
        "--config",
        f"configs/stylex/{args.config}.yaml",
        "--model.classifier",
        str(args.classifier),
        "--trainer.max_steps",
        str(args.steps),
        "--seed_everything",
        str(args.seed),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.logger.init_args.save_dir",
        str(work / name / "runs"),
        "--trainer.callbacks.dirpath",
        str(work / name / "ckpt"),
        *extra,
    ]


def fit_side_by_side(commands: dict[str, list[str]], work: Path) -> dict[str, float]:
    """Run the fits at once, one process each, output in ``<work>/<name>.log``; seconds each took
    (wall clock, shared CPU)."""
    try:
        return run_side_by_side(
            {name: (cmd, work / f"{name}.log") for name, cmd in commands.items()}
        )
    except RunFailed as err:
        sys.exit(f"{err.log.stem} training failed (exit {err.returncode}); see {err.log}")


def stage(args: argparse.Namespace, name: str, run: Callable[[], float]) -> float:
    """Run one stage, or with ``--resume`` take its seconds from ``<work>/stages.json``."""
    record = args.work / "stages.json"
    done = json.loads(record.read_text()) if record.is_file() else {}
    if args.resume and name in done:
        return float(done[name])
    done[name] = run()
    record.write_text(json.dumps(done, indent=2))
    return done[name]


def table(results: dict) -> str:
    """The markdown of the results (also written to results.md)."""
    metrics = results["attfind"]
    shared = " (both at once, sharing the CPU)" if results.get("fits_side_by_side") else ""
    trained = f", `{results['classifier_config']}`" if results.get("classifier_config") else ""
    lines = [
        f"Machine: {results['machine']}. Command: `{results['command']}`.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| classifier training ({results['classifier_steps']} steps{trained}) | {results['classifier_seconds']:.0f} s |",
        *(
            [
                f"| explained classifier's test accuracy (all its classes, {results['classifier_test_images']} images) | {results['classifier_accuracy']:.3f} |"
            ]
            if "classifier_accuracy" in results
            else []
        ),
        f"| StylEx training ({results['steps']} optimiser steps = {results['steps'] // 2} batches){shared} | {results['stylex_seconds'] / 60:.1f} min |",
        f"| baseline training (same steps, unconditioned){shared} | {results['baseline_seconds'] / 60:.1f} min |",
        f"| AttFind effect table ({metrics['images']} images, 2·{metrics['style_space_size']} edits each) | {metrics['attfind_seconds'] / 60:.1f} min |",
        f"| whole `attfind` command (also baseline, metrics, export) | {results['attfind_command_seconds'] / 60:.1f} min |",
        f"| reconstruction L1 ([-1, 1] scale) | {metrics['reconstruction_l1']:.3f} |",
        f"| classifier agreement on reconstructions | {metrics['agreement']:.3f} |",
        f"| mean KL(C(x) ‖ C(x')) | {metrics['kl']:.3f} |",
        *baseline_reconstruction_rows(metrics),
    ]
    lines += [
        "",
        "| sufficiency@k (mean over classes) | "
        + " | ".join(f"k={k}" for k in range(1, 11))
        + " |",
        "|---|" + "---|" * 10,
    ]
    rows = [
        ("mean_sufficiency", "StylEx"),
        ("mean_random", "random coordinates"),
        ("mean_baseline", "unconditioned StyleSpace baseline"),
    ]
    if metrics.get("held_out_images"):
        rows += [
            (f"mean_held_out_{key}", f"{label}, {metrics['held_out_images']} held-out images")
            for key, label in (
                ("sufficiency", "StylEx"),
                ("random", "random coordinates"),
                ("baseline", "baseline"),
            )
        ]
    for key, label in rows:
        values = metrics.get(key) or []
        cells = " | ".join("n/a" if v is None else f"{v:.2f}" for v in values)
        lines.append(f"| {label} | {cells} |")
    lines += realism_rows(metrics)
    lines += [
        "",
        f"AttFind settings: effects in {metrics.get('effect', 'logit')} change "
        f"({'negative ones as 0' if metrics.get('clip_negative') else 'signed means'}), shift "
        f"{metrics.get('shift', 1.0):g}, thresholds {metrics.get('threshold')} (unstable) / "
        f"{metrics.get('explained_threshold')} (explained); stable images: StylEx "
        f"{metrics['stable_images']}, baseline {metrics.get('baseline_stable_images', 'n/a')}; "
        + (
            f"discriminator filter on (|ΔD| ≤ {metrics['discriminator_threshold']:g} on "
            f"{metrics['discriminator_images']} images per direction)."
            if metrics.get("discriminator_filter")
            else "discriminator filter off."
        ),
    ]
    return "\n".join(lines) + "\n"


def baseline_reconstruction_rows(metrics: dict) -> list[str]:
    """The unconditioned baseline's reconstruction figures (rows only where AttFind measured
    them): how much of the classifier's decisions it reproduces without being told them."""
    base = metrics.get("baseline_reconstruction")
    if not base:
        return []
    return [
        f"| baseline: reconstruction L1 / agreement / KL | {base['reconstruction_l1']:.3f} / "
        f"{base['agreement']:.3f} / {base['kl']:.3f} |"
    ]


def realism_rows(metrics: dict) -> list[str]:
    """How far each model's top-k attributes together move the searched images, mean over
    classes (rows only where the AttFind run measured it)."""
    targets = list(metrics.get("targets", {}).values())
    if not targets or "realism" not in targets[0]:
        return []

    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    def mean(key: str, field: str) -> str:
        values = [t[key][field] for t in targets if key in t and t[key][field] is not None]
        return number(sum(values) / len(values) if values else None)

    def refused(key: str) -> str:
        counts = [len(t[key].get("discriminator_rejected", [])) for t in targets if key in t]
        return str(sum(counts)) if counts else "n/a"

    return [
        "",
        "| top-k applied together (searched images) | StylEx | baseline |",
        "|---|---|---|",
        f"| mean pixel change |x_edit − x_recon| ([-1, 1] scale) | {mean('realism', 'pixel_l1')} | {mean('baseline_realism', 'pixel_l1')} |",
        f"| mean |ΔD| on the model's own discriminator | {mean('realism', 'discriminator_change')} | {mean('baseline_realism', 'discriminator_change')} |",
        f"| std of D over real images (the unit of |ΔD|) | {number(metrics.get('discriminator_scale'))} | {number(metrics.get('baseline_discriminator_scale'))} |",
        f"| coordinates refused by the discriminator filter (all classes) | {refused('realism')} | {refused('baseline_realism')} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="fashion_mnist_tshirt_shirt")
    parser.add_argument("--classifier", type=Path, help="skip training one; use this checkpoint")
    parser.add_argument("--classifier-steps", type=int, default=300)
    parser.add_argument(
        "--classifier-config",
        default="configs/fashion_mnist/fc.yaml",
        help="train.py config of the classifier trained when --classifier is not given "
        "(e.g. configs/fashion_mnist/scouter_pos.yaml); its data section also builds the test "
        "set the classifier's accuracy is measured on",
    )
    parser.add_argument(
        "--steps", type=int, default=6000, help="StylEx optimiser steps (2 per batch)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed_everything of both StylEx fits (the config's: 0)"
    )
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument(
        "--held-out-images", type=int, default=1000, help="sufficiency also on these (0: none)"
    )
    parser.add_argument("--effect", choices=EFFECTS, help="AttFind's unit")
    parser.add_argument("--shift", type=float, help="AttFind's edit size (1: to the extreme)")
    parser.add_argument(
        "--no-discriminator-filter",
        action="store_true",
        help="AttFind without the authors' discriminator filter",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, choices=(1, 2), help="2: train StylEx and baseline at once"
    )
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "bench_stylex")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "stylex")
    parser.add_argument(
        "--resume", action="store_true", help="skip the stages <work>/stages.json records as done"
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "command": "python bench/stylex.py " + " ".join(sys.argv[1:]),
        "steps": args.steps,
        "seed": args.seed,
        "config": args.config,
        "classifier_steps": args.classifier_steps,
        "classifier_config": args.classifier_config if args.classifier is None else None,
        "classifier_seconds": 0.0,
    }
    if args.classifier is None:
        folder = args.work / "classifier"  # train.py writes checkpoints/... below its cwd
        folder.mkdir(exist_ok=True)
        results["classifier_seconds"] = stage(
            args,
            "classifier",
            lambda: run_logged(
                [
                    sys.executable,
                    str(REPO / "train.py"),
                    "fit",
                    "--config",
                    str(REPO / args.classifier_config),
                    "--data.image_size",
                    "32",
                    "--trainer.max_steps",
                    str(args.classifier_steps),
                    "--trainer.enable_progress_bar",
                    "false",
                ],
                args.work / "classifier.log",
                cwd=folder,
            ),
        )
        args.classifier = next(folder.glob("checkpoints/**/last.ckpt"))
    results["classifier"] = str(args.classifier)
    # The explained classifier's test accuracy (all its classes), through evaluate.py.
    accuracy_out = args.work / "classifier_accuracy"
    run_logged(
        [
            sys.executable,
            "evaluate.py",
            "--checkpoint",
            str(args.classifier),
            "--config",
            str(REPO / args.classifier_config),
            "--metrics",
            "accuracy",
            "--out",
            str(accuracy_out),
            "--no-progress",
        ],
        args.work / "classifier_accuracy.log",
    )
    evaluated = json.loads((accuracy_out / "results.json").read_text())
    results["classifier_accuracy"] = evaluated["metrics"]["accuracy"]["value"]
    results["classifier_test_images"] = evaluated["num_images"]
    unconditioned = ["--model.conditional", "false", "--model.kl_weight", "0"]
    commands = {
        "stylex": fit_command(args, args.work, "stylex", []),
        "baseline": fit_command(args, args.work, "baseline", unconditioned),
    }
    record = args.work / "stages.json"
    done = json.loads(record.read_text()) if record.is_file() else {}
    todo = {n: c for n, c in commands.items() if not (args.resume and n in done)}
    if args.jobs > 1 and len(todo) > 1:
        done.update(fit_side_by_side(todo, args.work))
        record.write_text(json.dumps(done, indent=2))
    else:
        for name, command in todo.items():
            stage(
                args,
                name,
                lambda command=command, name=name: run_logged(command, args.work / f"{name}.log"),
            )
    done = json.loads(record.read_text())
    results["stylex_seconds"], results["baseline_seconds"] = done["stylex"], done["baseline"]
    results["fits_side_by_side"] = args.jobs > 1
    out = args.work / "attfind"
    results["attfind_command_seconds"] = run_logged(
        [
            sys.executable,
            "stylex.py",
            "attfind",
            "--checkpoint",
            str(args.work / "stylex/ckpt/last.ckpt"),
            "--baseline",
            str(args.work / "baseline/ckpt/last.ckpt"),
            "--out",
            str(out),
            "--num-images",
            str(args.num_images),
            "--held-out-images",
            str(args.held_out_images),
            *(["--effect", args.effect] if args.effect else []),
            *(["--shift", str(args.shift)] if args.shift is not None else []),
            *(["--no-discriminator-filter"] if args.no_discriminator_filter else []),
        ],
        args.work / "attfind.log",
    )
    import torch

    results["machine"] = machine_description(torch.device("cpu"))
    results["threads"] = os.environ.get("OMP_NUM_THREADS", "default")
    results["attfind"] = json.loads((out / "metrics.json").read_text())
    pictures = ("*_top.png", "*_attr1.gif", "*_together.png")
    for picture in sorted(p for pattern in pictures for p in out.glob(pattern)):
        shutil.copy(picture, args.results / picture.name)
    # Paths relative to the repository: the results file is committed.
    text = json.dumps(results, indent=2).replace(str(REPO) + os.sep, "")
    (args.results / "results.json").write_text(text)
    (args.results / "results.md").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    try:
        main()
    except RunFailed as err:  # the failing command and its log, without a traceback
        sys.exit(str(err))
