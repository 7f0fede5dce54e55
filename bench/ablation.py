"""Why SCOUTER+ lags FC: one lever at a time, on the same composites data and CPU budget.

Each variant is the shipped ``configs/composites/<model>.yaml`` plus the CPU protocol below plus
the variant's own changes; it is trained with ``train.py fit`` and evaluated with ``evaluate.py``
(accuracy on the first ``--acc-limit`` test images, area and precision of the model's own maps —
Grad-CAM for FC — on the first ``--map-limit``). Finished runs are reused, so an interrupted sweep
resumes. Results go to ``<out>/ablation.json`` and ``<out>/ablation.md``.

CPU protocol (2 cores): 128-px composites with 2 clutter patches, ``num_samples`` training
composites per epoch (``--samples``, default 3 000), ``--epochs`` epochs (default 3), 16 validation
batches, the backbone's stem and first 3 stages frozen (2.2× faster steps at output stride 16,
measured), seed 0.

    python bench/ablation.py                          # every variant
    python bench/ablation.py --only fc_os16,pos_os16  # some of them
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.runs import REPO, Run, merge, spread  # noqa: E402

OS16 = {"model": {"backbone_kwargs": {"output_stride": 16}}}
WARM = {"model": {"fc_warmup_epochs": 1}}
HEAD_LR = {"model": {"lr": 1e-3, "backbone_lr": 1e-4}}


# name -> (base config, changes, what the row tests). Order = the order of the table.
VARIANTS: dict[str, tuple[str, dict, str]] = {
    "fc_os32": ("fc", {}, "FC, shipped grid (Grad-CAM 4×4)"),
    "fc_os16": ("fc", OS16, "FC, output stride 16 (Grad-CAM 8×8)"),
    "fc_os16_headlr": ("fc", merge(OS16, HEAD_LR), "FC, OS16, head lr 1e-3"),
    "pos_shipped": ("scouter_pos", {}, "SCOUTER+ shipped (4×4, reference norm)"),
    "pos_os16": ("scouter_pos", OS16, "+ grid 8×8 (output stride 16)"),
    "pos_os16_abs": (
        "scouter_pos",
        merge(OS16, {"model": {"attention_norm": "abs"}}),
        "+ grid 8×8, abs norm",
    ),
    "pos_os16_none": (
        "scouter_pos",
        merge(OS16, {"model": {"attention_norm": "none"}}),
        "+ grid 8×8, no norm",
    ),
    "pos_warm_ref": (
        "scouter_pos",
        merge(OS16, WARM),
        "+ grid 8×8, FC warm-up 1 epoch, reference norm",
    ),
    "pos_warm_abs": (
        "scouter_pos",
        merge(OS16, WARM, {"model": {"attention_norm": "abs"}}),
        "+ grid 8×8, FC warm-up 1 epoch, abs norm",
    ),
    "pos_warm_none": (
        "scouter_pos",
        merge(OS16, WARM, {"model": {"attention_norm": "none"}}),
        "+ grid 8×8, FC warm-up 1 epoch, no norm",
    ),
}
WARM_NONE = merge(OS16, WARM, {"model": {"attention_norm": "none"}})
VARIANTS.update(
    {
        "pos_warm_none_headlr": (
            "scouter_pos",
            merge(WARM_NONE, HEAD_LR),
            "+ grid 8×8, FC warm-up, no norm, head lr 1e-3",
        ),
        "pos_recipe_lam3": (
            "scouter_pos",
            merge(WARM_NONE, HEAD_LR, {"model": {"lambda_area": 3.0}}),
            "+ grid 8×8, FC warm-up, no norm, head lr 1e-3, λ 3",
        ),
        "pos_recipe_lam10": (
            "scouter_pos",
            merge(WARM_NONE, HEAD_LR, {"model": {"lambda_area": 10.0}}),
            "+ grid 8×8, FC warm-up, no norm, head lr 1e-3, λ 10",
        ),
        "pos_recipe_headlr3": (
            "scouter_pos",
            merge(WARM_NONE, {"model": {"lr": 3e-4, "backbone_lr": 1e-4}}),
            "+ grid 8×8, FC warm-up, no norm, head lr 3e-4",
        ),
        "pos_recipe_4ep": (
            "scouter_pos",
            merge(WARM_NONE, HEAD_LR, {"trainer": {"max_epochs": 4}}),
            "+ grid 8×8, FC warm-up, no norm, head lr 1e-3, 4 epochs (1 FC + 3 xSlot)",
        ),
        "pos_recipe_power1": (
            "scouter_pos",
            merge(WARM_NONE, HEAD_LR, {"model": {"lambda_area": 3.0, "power": 1}}),
            "+ grid 8×8, FC warm-up, no norm, head lr 1e-3, λ 3, power 1",
        ),
        "pos_recipe_s2": (
            "scouter_pos",
            merge(WARM_NONE, HEAD_LR, {"model": {"lambda_area": 3.0, "slots_per_class": 2}}),
            "+ grid 8×8, FC warm-up, no norm, head lr 1e-3, λ 3, 2 slots per class",
        ),
        "pos_recipe_hd256": (
            "scouter_pos",
            merge(WARM_NONE, HEAD_LR, {"model": {"lambda_area": 3.0, "hidden_dim": 256}}),
            "+ grid 8×8, FC warm-up, no norm, head lr 1e-3, λ 3, hidden dim 256 (not 64)",
        ),
        "pos_recipe_hd128": (
            "scouter_pos",
            merge(WARM_NONE, HEAD_LR, {"model": {"lambda_area": 3.0, "hidden_dim": 128}}),
            "+ grid 8×8, FC warm-up, no norm, head lr 1e-3, λ 3, hidden dim 128 (not 64)",
        ),
        "pos_recipe_hd512": (
            "scouter_pos",
            merge(WARM_NONE, HEAD_LR, {"model": {"lambda_area": 3.0, "hidden_dim": 512}}),
            "+ grid 8×8, FC warm-up, no norm, head lr 1e-3, λ 3, hidden dim 512 (not 64)",
        ),
        "pos_recipe_hd256_lr2e3": (
            "scouter_pos",
            merge(
                WARM_NONE, HEAD_LR, {"model": {"lambda_area": 3.0, "hidden_dim": 256, "lr": 2e-3}}
            ),
            "+ grid 8×8, FC warm-up, no norm, head lr 2e-3, λ 3, hidden dim 256",
        ),
        "pos_recipe_hd256_lr5e4": (
            "scouter_pos",
            merge(
                WARM_NONE, HEAD_LR, {"model": {"lambda_area": 3.0, "hidden_dim": 256, "lr": 5e-4}}
            ),
            "+ grid 8×8, FC warm-up, no norm, head lr 5e-4, λ 3, hidden dim 256",
        ),
        "pos_recipe_headlr3e3": (
            "scouter_pos",
            merge(WARM_NONE, HEAD_LR, {"model": {"lambda_area": 3.0, "lr": 3e-3}}),
            "+ grid 8×8, FC warm-up, no norm, head lr 3e-3, λ 3",
        ),
        # Budget: one more epoch for both (FC 4 epochs; SCOUTER 1 FC + 3 xSlot epochs).
        "fc_os16_headlr_4ep": (
            "fc",
            merge(OS16, HEAD_LR, {"trainer": {"max_epochs": 4}}),
            "FC, OS16, head lr 1e-3, 4 epochs",
        ),
        "pos_recipe_hd256_lr5e4_4ep": (
            "scouter_pos",
            merge(
                WARM_NONE,
                HEAD_LR,
                {
                    "model": {"lambda_area": 3.0, "hidden_dim": 256, "lr": 5e-4},
                    "trainer": {"max_epochs": 4},
                },
            ),
            "+ grid 8×8, FC warm-up, no norm, head lr 5e-4, λ 3, hidden dim 256, 4 epochs "
            "(1 FC + 3 xSlot)",
        ),
        "pos_recipe_os32": (
            "scouter_pos",
            merge(WARM, HEAD_LR, {"model": {"attention_norm": "none"}}),
            "FC warm-up, no norm, head lr 1e-3, but grid 4×4 (output stride 32)",
        ),
    }
)

# The recipe the ablation arrived at (the shipped composites configs): the levers below start here.
RECIPE = merge(WARM_NONE, HEAD_LR, {"model": {"lambda_area": 3.0, "hidden_dim": 256, "lr": 5e-4}})
COSINE = {"model": {"scheduler": "cosine"}}
VARIANTS.update(
    {
        "fc_os16_headlr_cos": (
            "fc",
            merge(OS16, HEAD_LR, COSINE),
            "FC, OS16, head lr 1e-3, cosine schedule",
        ),
        "pos_recipe_aux": (
            "scouter_pos",
            merge(RECIPE, {"model": {"fc_aux_weight": 1.0}}),
            "the recipe, its FC head kept training beside the xSlot head (fc_aux_weight 1)",
        ),
        "pos_recipe_joint": (
            "scouter_pos",
            merge(RECIPE, {"model": {"fc_warmup_epochs": 0, "fc_aux_weight": 1.0}}),
            "the recipe without the warm-up epoch: xSlot and an FC head trained together "
            "from the start (fc_aux_weight 1)",
        ),
        "pos_recipe_aux2": (
            "scouter_pos",
            merge(RECIPE, {"model": {"fc_aux_weight": 2.0}}),
            "the recipe, its FC head kept training beside the xSlot head (fc_aux_weight 2)",
        ),
        "pos_recipe_aux_4ep": (
            "scouter_pos",
            merge(RECIPE, {"model": {"fc_aux_weight": 1.0}, "trainer": {"max_epochs": 4}}),
            "the recipe with fc_aux_weight 1, 4 epochs (1 FC + 3 xSlot)",
        ),
        "neg_recipe": ("scouter_neg", RECIPE, "SCOUTER−, the recipe"),
        "neg_recipe_aux": (
            "scouter_neg",
            merge(RECIPE, {"model": {"fc_aux_weight": 1.0}}),
            "SCOUTER−, the recipe, its FC head kept training beside the xSlot head "
            "(fc_aux_weight 1)",
        ),
        "pos_recipe_cos": (
            "scouter_pos",
            merge(RECIPE, COSINE),
            "the recipe (8×8, FC warm-up, no norm, head lr 5e-4, λ 3, D 256), cosine schedule",
        ),
    }
)

# The shipped recipe since the FC-aux ablation (fc_aux_weight 2): the attention-map levers start here.
AUX2 = merge(RECIPE, {"model": {"fc_aux_weight": 2.0}})
VARIANTS.update(
    {
        "pos_aux2_lr1e3": (
            "scouter_pos",
            merge(AUX2, {"model": {"lr": 1e-3}}),
            "the recipe with fc_aux_weight 2, head lr 1e-3 (not 5e-4)",
        ),
        "pos_aux2_lr1e3_lam10": (
            "scouter_pos",
            merge(AUX2, {"model": {"lr": 1e-3, "lambda_area": 10.0}}),
            "the recipe with fc_aux_weight 2, head lr 1e-3, λ 10",
        ),
        "pos_aux2_lr1e3_joint": (
            "scouter_pos",
            merge(AUX2, {"model": {"lr": 1e-3, "fc_warmup_epochs": 0}}),
            "the recipe with fc_aux_weight 2, head lr 1e-3, no warm-up epoch",
        ),
        "pos_aux2_lr1e3_clip": (
            "scouter_pos",
            merge(AUX2, {"model": {"lr": 1e-3}, "trainer": {"gradient_clip_val": 1.0}}),
            "the recipe with fc_aux_weight 2, head lr 1e-3, gradients clipped to norm 1",
        ),
        "pos_aux2_lam5": (
            "scouter_pos",
            merge(AUX2, {"model": {"lambda_area": 5.0}}),
            "the recipe with fc_aux_weight 2, λ 5 (not 3)",
        ),
        "pos_aux2_hd512": (
            "scouter_pos",
            merge(AUX2, {"model": {"hidden_dim": 512}}),
            "the recipe with fc_aux_weight 2, hidden dim 512 (not 256)",
        ),
        "neg_recipe_aux2": (
            "scouter_neg",
            AUX2,
            "SCOUTER−, the shipped recipe (fc_aux_weight 2)",
        ),
        "pos_aux2_joint": (
            "scouter_pos",
            merge(AUX2, {"model": {"fc_warmup_epochs": 0}}),
            "the recipe with fc_aux_weight 2, no warm-up epoch (both heads from the start)",
        ),
        "pos_aux2_lam1": (
            "scouter_pos",
            merge(AUX2, {"model": {"lambda_area": 1.0}}),
            "the recipe with fc_aux_weight 2, λ 1 (not 3)",
        ),
        "pos_aux2_lam10": (
            "scouter_pos",
            merge(AUX2, {"model": {"lambda_area": 10.0}}),
            "the recipe with fc_aux_weight 2, λ 10 (not 3)",
        ),
        "pos_aux2_it1": (
            "scouter_pos",
            merge(AUX2, {"model": {"iterations": 1}}),
            "the recipe with fc_aux_weight 2, 1 slot iteration (not 3)",
        ),
    }
)

# Every lever's starting value, the shipped recipe before this ablation (configs/composites as of
# the first release): a variant changes only what it names, whatever the configs say today.
BASELINE = {
    "model": {
        "lr": 1e-4,
        "backbone_lr": None,
        "attention_norm": "reference",
        "fc_warmup_epochs": 0,
        "lambda_area": 1.0,
        "power": 2,
        "slots_per_class": 1,
        "fc_aux_weight": 0.0,
    }
}


def protocol(samples: int, epochs: int) -> dict:
    return {
        "trainer": {
            "max_epochs": epochs,
            "limit_val_batches": 16,
            "enable_progress_bar": False,
            "accelerator": "cpu",
            "devices": 1,
        },
        "model": {"freeze_stages": 3},
        "data": {
            "num_workers": 1,
            "dataset_options": {"num_samples": samples, "image_size": 128, "clutter": 2},
        },
    }


def variant_config(name: str, args: argparse.Namespace, extra: dict | None = None) -> dict:
    base_name, changes, _ = VARIANTS[name]
    base = yaml.safe_load((REPO / "configs" / "composites" / f"{base_name}.yaml").read_text())
    config = merge(base, BASELINE, protocol(args.samples, args.epochs), changes, extra or {})
    # Replaced, not merged: a variant without output_stride means the backbone's default (32).
    config["model"]["backbone_kwargs"] = dict(changes.get("model", {}).get("backbone_kwargs", {}))
    if base_name == "fc":
        config["model"].pop("fc_warmup_epochs", None)
    return config


def run_name(variant: str, seed: int) -> str:
    """Seed 0 keeps the variant's name (the one-seed table); other seeds add ``-seed<N>``."""
    return variant if seed == 0 else f"{variant}-seed{seed}"


def train_and_evaluate(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    name = run_name(variant, args.seed)
    config = variant_config(variant, args)
    config["seed_everything"] = args.seed
    run = Run(**spread(args.out, name))
    run.fit(config)
    scouter = VARIANTS[variant][0] != "fc"
    # SCOUTER: its attention and the attention's split of the score (both one forward pass).
    explainers = ["slot", "slot_contribution"] if scouter else ["gradcam"]
    accuracy = run.evaluate("accuracy", "accuracy", args.acc_limit)
    maps = run.evaluate("maps", "area,precision", args.map_limit, ",".join(explainers))
    maps = maps["explanations"]
    row = {
        "variant": name,
        "what": VARIANTS[variant][2],
        "seed": args.seed,
        "accuracy": accuracy["metrics"]["accuracy"]["value"],
        "explainer": explainers[0],
        "area": maps[explainers[0]]["metrics"]["area"]["value"],
        "precision": maps[explainers[0]]["metrics"]["precision"]["value"],
        "train_seconds": run.seconds,
        "val_acc": val_curve(run.runs),
    }
    if scouter:
        row["contribution_area"] = maps["slot_contribution"]["metrics"]["area"]["value"]
        row["contribution_precision"] = maps["slot_contribution"]["metrics"]["precision"]["value"]
    return row


def val_curve(runs: Path) -> list[float]:
    """Validation accuracy per epoch from the run's CSV log (the newest version)."""
    import csv

    files = sorted((runs / "csv").glob("version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not files:
        return []
    with files[-1].open() as handle:
        return [round(float(r["val/acc"]), 4) for r in csv.DictReader(handle) if r.get("val/acc")]


def markdown(rows: list[dict]) -> str:
    lines = [
        "| variant | change | val acc per epoch | test acc | explainer | area ↓ | precision ↑ "
        "| `slot_contribution` area ↓ / precision ↑ | fit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        curve = ", ".join(f"{v:.3f}" for v in r["val_acc"])
        contribution = (
            f"{r['contribution_area']:.3f} / {r['contribution_precision']:.3f}"
            if r.get("contribution_precision") is not None
            else "–"
        )
        lines.append(
            f"| `{r['variant']}` | {r['what']} | {curve} | {r['accuracy']:.3f} | {r['explainer']} "
            f"| {r['area']:.3f} | {r['precision']:.3f} | {contribution} "
            f"| {r['train_seconds']:.0f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated variant names (default: all)")
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--acc-limit", type=int, default=1000)
    parser.add_argument("--map-limit", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0, help="seed_everything of the runs")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "ablation")
    args = parser.parse_args()
    args.out = args.out.resolve()
    names = args.only.split(",") if args.only else list(VARIANTS)
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    # One row file per variant, so that two sweeps can run side by side (one thread each).
    row_dir = args.out / "rows"
    row_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        row = train_and_evaluate(name, args)
        (row_dir / f"{run_name(name, args.seed)}.json").write_text(json.dumps(row, indent=2))
        write_tables(args.out)
        print(json.dumps(row), flush=True)


def write_tables(out: Path) -> None:
    """``ablation.json`` / ``ablation.md`` from every finished variant's row file."""
    rows = {p.stem: json.loads(p.read_text()) for p in (out / "rows").glob("*.json")}
    # Labels from VARIANTS: they say what ran (the baseline above), whatever a row file says.
    ordered = [
        {**rows[key], "what": VARIANTS[n][2]}
        for n in VARIANTS
        for key in sorted(k for k in rows if k == n or k.startswith(f"{n}-seed"))
    ]
    (out / "ablation.json").write_text(json.dumps(ordered, indent=2))
    (out / "ablation.md").write_text(markdown(ordered) + "\n")


if __name__ == "__main__":
    main()
