"""The model zoo's trained models: published from benchmark runs, and every card checked.

    python bench/zoo.py                      # re-measure every shipped model's card accuracy
    python bench/zoo.py --all-numbers        # ... and every explanation number of the cards
    python bench/zoo.py --only NAME[,NAME]   # some of them
    python bench/zoo.py publish --runs DIR --only NAME   # publish models from bench/recipes.py runs

**check** (the default) re-runs, for every model folder shipped in ``scouter/pretrained``, the
evaluations its card's accuracies come from (with ``--all-numbers`` every evaluation its numbers
come from, ``results/*.json``: the same metrics, explainers and number of images, ``evaluate.py``
on the shipped float16 weights; ``--jobs`` models at once), compares every number with the card,
and writes ``bench/zoo/results.md`` / ``results.json``: checking a row of the README's zoo
table takes minutes, not a retraining. Exit status 1 when a number is off by more than the card's
tolerance.

**publish** turns the best checkpoint of a ``bench/recipes.py`` run
(``<runs>/<dataset>/<model>/seed<N>``) into ``scouter/pretrained/<name>``: float16 weights, the
shipped training config as ``recipe.yaml``, the benchmark's evaluations of the published weights
(accuracy, maps, curves: the profile's limits; the reproducibility check on the first
``CHECK_IMAGES`` test images) and the card generated from them. The float32 checkpoint's accuracy
(the benchmark's own evaluation) is stated beside the float16 one.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.recipes import PROFILES, run_config  # noqa: E402
from bench.runs import (  # noqa: E402
    REPO,
    best_checkpoint,
    evaluate_command,
    one_thread_per_process,
    run_logged,
)
from scouter.model_card import zoo_table  # noqa: E402

SHIPPED_ROOT = REPO / "scouter" / "pretrained"
#: The reproducibility check's subset (first test images), small enough for CI on 2 cores.
CHECK_IMAGES = 256
#: Accuracy tolerance of that check: float16 weights evaluated on another CPU or library version
#: may flip an image whose two best logits are within rounding (2 images of 256 ≈ 0.008).
CHECK_TOLERANCE = 0.01
#: Explanation metrics are compared with a tolerance of their own (sums of many float ops).
METRIC_TOLERANCE = 0.005


@dataclass(frozen=True)
class ZooModel:
    """One trained model of the zoo and the benchmark run it comes from."""

    dataset: str
    model: str
    profile: str
    explainers: tuple[str, ...]
    description: str
    seed: int = 0

    def command(self) -> str:
        extra = " --fc-explainers " + ",".join(self.explainers) if self.model == "fc" else ""
        return (
            f"python bench/recipes.py --profile {self.profile} --datasets {self.dataset} "
            f"--models {self.model} --seeds {self.seed}{extra}"
        )


_FASHION = "Fashion-MNIST (10 classes), one-channel 64 px, timm `test_resnet` from scratch at output stride 8 (8×8 maps): the README's CPU demo recipe, one epoch."
_COMPOSITES = "The composites localisation benchmark (Fashion-MNIST / Animal-MNIST objects pasted on photographs, exact object masks; 128 px), EfficientNet-Lite0 from offline ImageNet weights at output stride 16 (8×8 maps), 20 000 composites × 4 epochs: the shipped recipe."
ZOO: dict[str, ZooModel] = {
    "fc_test_resnet_fashion_mnist": ZooModel(
        "fashion_mnist", "fc", "cpu", ("gradcam", "gradcam++", "ig"), f"FC baseline. {_FASHION}"
    ),
    "scouter_pos_test_resnet_fashion_mnist": ZooModel(
        "fashion_mnist",
        "scouter_pos",
        "cpu",
        ("slot", "slot_contribution"),
        f"SCOUTER+. {_FASHION}",
    ),
    "scouter_neg_test_resnet_fashion_mnist": ZooModel(
        "fashion_mnist",
        "scouter_neg",
        "cpu",
        ("slot", "slot_contribution"),
        f"SCOUTER−. {_FASHION}",
    ),
    "fc_efficientnet_lite0_composites": ZooModel(
        "composites", "fc", "cpu-shipped", ("gradcam", "gradcam++"), f"FC baseline. {_COMPOSITES}"
    ),
    "scouter_pos_efficientnet_lite0_composites": ZooModel(
        "composites",
        "scouter_pos",
        "cpu-shipped",
        ("slot", "slot_contribution"),
        f"SCOUTER+. {_COMPOSITES}",
    ),
    "scouter_neg_efficientnet_lite0_composites": ZooModel(
        "composites",
        "scouter_neg",
        "cpu-shipped",
        ("slot", "slot_contribution"),
        f"SCOUTER−. {_COMPOSITES}",
    ),
}

#: Seeds 1 and 2 of the Fashion-MNIST models: the localisation leaderboard's mean over seeds
#: (bench/RESULTS.md) is measured on them, so they ship with it (``<name>_seed<N>``).
for _name, _spec in list(ZOO.items()):
    if _spec.dataset == "fashion_mnist":
        for _seed in (1, 2):
            ZOO[f"{_name}_seed{_seed}"] = replace(
                _spec, seed=_seed, description=f"Seed {_seed} of `{_name}`. {_spec.description}"
            )


def evaluate(
    checkpoint: Path,
    config: Path,
    out: Path,
    metrics: str,
    limit: int | None,
    explainers: str | None,
    log: Path,
) -> dict:
    """``evaluate.py`` on ``checkpoint`` (a model folder or a .ckpt) on CPU; its results.json."""
    run_logged(evaluate_command(checkpoint, config, out, metrics, limit, explainers), log)
    return json.loads((out / "results.json").read_text())


# --- publish ------------------------------------------------------------------------------------


def publish_one(name: str, runs: Path) -> Path:
    """Publish ``name`` from its run folder, evaluate the published weights, write the card."""
    from scouter.publish import publish

    spec = ZOO[name]
    seed = spec.seed
    run = runs / spec.dataset / spec.model / f"seed{seed}"
    best = best_checkpoint(run / "checkpoints", run / "fit.log")
    limits = PROFILES[spec.profile]["eval"]
    folder = SHIPPED_ROOT / name
    names = ",".join(spec.explainers)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # The config that trained it, as bench/recipes.py wrote it (profile changes and the
        # dataset's evaluation options included), with output folders of its own.
        shipped = yaml.safe_load(
            (REPO / "configs" / spec.dataset / f"{spec.model}.yaml").read_text()
        )
        recipe = tmp / "recipe.yaml"
        config = run_config(
            shipped, spec.dataset, seed, spec.profile, Path("runs/zoo") / name, "cpu"
        )
        recipe.write_text(yaml.safe_dump(config, sort_keys=False))
        args = dict(
            recipe=recipe,
            command=spec.command(),
            name=name,
            description=spec.description,
            dtype="float16",
            overwrite=True,
        )
        publish(best, folder, **args)
        shutil.copytree(folder, tmp / name)  # evaluated as published, from an unchanging copy
        evaluated = tmp / name
        docs = {
            "accuracy": ("accuracy", limits["acc_limit"], None),
            "maps": ("area,precision", limits["map_limit"], names),
            "curves": ("insertion,deletion", limits["curve_limit"], names),
            "check": ("accuracy", CHECK_IMAGES, None),
        }
        paths = {}
        for key, (metrics, limit, explainers) in docs.items():
            evaluate(
                evaluated,
                evaluated / "recipe.yaml",
                tmp / key,
                metrics,
                limit,
                explainers,
                tmp / f"{key}.log",
            )
            paths[key] = tmp / key / "results.json"
        # The float32 checkpoint on the same images: what rounding to float16 changed.
        float32 = evaluate(
            best,
            evaluated / "recipe.yaml",
            tmp / "float32",
            "accuracy",
            limits["acc_limit"],
            None,
            tmp / "float32.log",
        )
        float16 = json.loads(paths["accuracy"].read_text())
        notes = [
            f"Protocol: `bench/recipes.py --profile {spec.profile}` — training as the recipe, "
            f"{_profile_note(spec)}; accuracy on the first {limits['acc_limit']} test images, area "
            f"and precision on the first {limits['map_limit']}, insertion and deletion on the "
            f"first {limits['curve_limit']}. The float32 checkpoint measured "
            f"{float32['metrics']['accuracy']['value']:.4f} accuracy on the same "
            f"{float32['num_images']} images; these float16 weights "
            f"{float16['metrics']['accuracy']['value']:.4f}.",
        ]
        return publish(
            best,
            folder,
            results=paths,
            check="check",
            tolerance=CHECK_TOLERANCE,
            notes=notes,
            **args,
        )


def _profile_note(spec: ZooModel) -> str:
    changes = PROFILES[spec.profile]["train"].get(spec.dataset, {})
    trainer = changes.get("trainer", {})
    parts = [f"{k} {v}" for k, v in trainer.items() if k != "accelerator"]
    data = changes.get("data", {})
    parts += [f"data.{k} {v}" for k, v in data.items()]
    return "on CPU" + (" with " + ", ".join(parts) if parts else "")


# --- check --------------------------------------------------------------------------------------


def _numbers(doc: dict) -> dict[str, float]:
    """Every number of a results.json the card uses: ``accuracy`` and ``<explainer>/<metric>``."""
    found = {}
    if "accuracy" in doc.get("metrics", {}):
        found["accuracy"] = doc["metrics"]["accuracy"]["value"]
    for explainer, entry in doc.get("explanations", {}).items():
        for metric, value in entry.get("metrics", {}).items():
            if isinstance(value.get("value"), (int, float)):
                found[f"{explainer}/{metric}"] = value["value"]
    return found


def check_one(folder: Path, out: Path, all_numbers: bool = False) -> list[dict]:
    """Re-run the stored accuracy evaluations of ``folder`` (with ``all_numbers``, every stored
    evaluation: explanation metrics too); one row per number."""
    from scouter.model_card import card_summary

    tolerance = (
        card_summary((folder / "README.md").read_text())
        .get("check", {})
        .get("tolerance", CHECK_TOLERANCE)
    )
    rows = []
    for stored_path in sorted((folder / "results").glob("*.json")):
        stored = json.loads(stored_path.read_text())
        numbers = _numbers(stored)
        if not all_numbers and set(numbers) != {"accuracy"}:
            continue
        metrics = sorted({key.split("/")[-1] for key in numbers})
        explainers = ",".join(stored.get("explanations", {})) or None
        start = time.perf_counter()
        again = evaluate(
            folder,
            folder / "recipe.yaml",
            out / stored_path.stem,
            ",".join(metrics),
            stored["evaluation"]["limit"],
            explainers,
            out / f"{stored_path.stem}.log",
        )
        seconds = time.perf_counter() - start
        measured = _numbers(again)
        for key, value in numbers.items():
            allowed = tolerance if key == "accuracy" else METRIC_TOLERANCE
            got = measured.get(key, math.nan)
            rows.append(
                {
                    "model": folder.name,
                    "results": stored_path.stem,
                    "number": key,
                    "images": stored["num_images"],
                    "card": value,
                    "measured": got,
                    "ok": abs(got - value) <= allowed,
                    "tolerance": allowed,
                    "seconds": seconds,
                }
            )
    return rows


def write_report(
    rows: list[dict], out: Path, seconds: float, all_numbers: bool = False, jobs: int = 1
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    what = "every number" if all_numbers else "the accuracy"
    command = "python bench/zoo.py" + (" --all-numbers" if all_numbers else "")
    lines = [
        f"`{command}` (--jobs {jobs}): {what} of every shipped model's card re-measured from its "
        f"weights ({seconds / 60:.1f} min in all).",
        "",
        "| model | evaluation | images | number | card | measured | within tolerance |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['results']} | {r['images']} | {r['number']} | {r['card']:.4f} | "
            f"{r['measured']:.4f} | {'yes' if r['ok'] else 'NO'} (±{r['tolerance']}) |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")


TABLE_START, TABLE_END = "<!-- zoo-table -->", "<!-- /zoo-table -->"


def replace_zoo_table(readme: str, table: str) -> str:
    """``readme`` with the text between the zoo-table markers replaced by ``table``."""
    start, end = readme.index(TABLE_START) + len(TABLE_START), readme.index(TABLE_END)
    return readme[:start] + "\n" + table + "\n" + readme[end:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", nargs="?", default="check", choices=("check", "publish", "table"))
    parser.add_argument("--only", help="comma-separated model names (default: all)")
    parser.add_argument("--runs", type=Path, help="publish: the bench/recipes.py output folder")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "zoo")
    parser.add_argument(
        "--all-numbers",
        action="store_true",
        help="check: re-measure the explanation metrics too, not only accuracy",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="check: models evaluated at once (one CPU thread each when > 1)",
    )
    args = parser.parse_args()
    if args.action == "publish":
        if args.runs is None or not args.only:
            parser.error("publish needs --runs and --only")
        for name in args.only.split(","):
            if name not in ZOO:
                parser.error(f"unknown zoo model {name!r}; known: {', '.join(ZOO)}")
            print(f"published {publish_one(name, args.runs)}", flush=True)
        return 0
    folders = sorted(p.parent for p in SHIPPED_ROOT.glob("*/config.json"))
    if args.action == "table":  # the README's zoo table, regenerated from the cards
        readme = REPO / "README.md"
        readme.write_text(replace_zoo_table(readme.read_text(), zoo_table(folders)))
        print(zoo_table(folders))
        return 0
    if args.only:
        folders = [f for f in folders if f.name in args.only.split(",")]
    one_thread_per_process(args.jobs)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        done = pool.map(lambda f: check_one(f, args.out / f.name, args.all_numbers), folders)
        rows = [row for model_rows in done for row in model_rows]
    write_report(rows, args.out, time.perf_counter() - start, args.all_numbers, args.jobs)
    print((args.out / "results.md").read_text())
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
