"""The paper's Table 1/3 pattern on data that exists offline: accuracy and explanation metrics vs λ.

Trains FC, SCOUTER+ and SCOUTER− (λ ∈ {1, 3, 10}) on Fashion-MNIST and on the composites
localisation benchmark through the real command lines (``train.py fit``, ``evaluate.py``), then
reports accuracy (whole test set), area size, precision, insertion and deletion AUC (first
``--limit`` test images) and plots area vs λ. Not part of CI: about an hour on 2 CPU cores.

    python bench/reproduce.py                       # both datasets, λ = 1, 3, 10
    python bench/reproduce.py --datasets fashion_mnist --lambdas 1,10 --out bench/reproduce

Configs are the Fashion-MNIST demo configs (``configs/fashion_mnist/*.yaml``, timm ``test_resnet``
with output stride 8, one epoch from scratch); for composites the same model and schedule read
64-px RGB composites with exact object masks (6 000 per split, 2 clutter patches, 3 epochs). Fashion-MNIST precision uses the object masks
(pixels above a threshold). FC models are explained with Grad-CAM, SCOUTER with its own maps;
SCOUTER− explains the least-similar class (docs/metrics.md#explained-class).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.runs import REPO, Run, spread  # noqa: E402


def dataset_config(base: dict, dataset: str, device: str = "cpu") -> dict:
    """A training config for ``dataset`` derived from the Fashion-MNIST demo config."""
    config = copy.deepcopy(base)
    config["trainer"]["accelerator"] = "gpu" if device.startswith("cuda") else "cpu"
    if dataset == "fashion_mnist":
        config["data"]["dataset_options"] = {"object_masks": True}
    else:
        config["data"].update(
            dataset="composites",
            image_size=64,
            in_chans=3,
            dataset_options={"num_samples": 6000, "image_size": 64, "clutter": 2},
        )
        # 5 400 training composites, three passes.
        config["trainer"]["max_epochs"] = 3
    return config


def train_and_evaluate(dataset: str, variant: str, lam: float | None, args) -> dict:
    base = yaml.safe_load((REPO / "configs" / "fashion_mnist" / f"{variant}.yaml").read_text())
    name = variant if lam is None else f"{variant}-lam{lam:g}"
    config = dataset_config(base, dataset, args.device)
    if lam is not None:
        config["model"]["lambda_area"] = lam
    run = Run(**spread(args.out, f"{dataset}/{name}"), device=args.device)
    run.fit(config)
    accuracy = run.evaluate("accuracy", "accuracy")
    explained = run.evaluate("explanations", "area,precision,insertion,deletion", args.limit)
    ((explainer, doc),) = explained["explanations"].items()
    row = {
        "dataset": dataset,
        "variant": variant,
        "lambda": lam,
        "train_seconds": round(run.seconds, 1),
        "accuracy": accuracy["metrics"]["accuracy"]["value"],
        "explainer": explainer,
        "explained_class": explained["explained_class"],
    }
    for metric in ("area", "precision", "insertion", "deletion"):
        row[metric] = doc["metrics"][metric]["value"]
    print(json.dumps(row), flush=True)
    return row


def plot_area(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for variant, marker in (("scouter_pos", "o-"), ("scouter_neg", "s--")):
            points = sorted(
                (r["lambda"], r["area"])
                for r in rows
                if r["dataset"] == dataset and r["variant"] == variant
            )
            if points:
                ax.plot(
                    *zip(*points, strict=True),
                    marker,
                    label=variant.replace("scouter_", "SCOUTER")
                    .replace("pos", "+")
                    .replace("neg", "−"),
                )
        fc = [r["area"] for r in rows if r["dataset"] == dataset and r["variant"] == "fc"]
        if fc:
            ax.axhline(fc[0], color="grey", linestyle=":", label="FC + Grad-CAM")
        ax.set_xscale("log")
        ax.set_xlabel("λ (area loss weight)")
        ax.set_ylabel("area size (lower = smaller explanation)")
        ax.set_title(dataset)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(rows: list[dict]) -> str:
    lines = [
        "| dataset | model | λ | accuracy | area ↓ | precision ↑ | IAUC ↑ | DAUC ↓ | train time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        model = {"fc": "FC (Grad-CAM)", "scouter_pos": "SCOUTER+", "scouter_neg": "SCOUTER−"}[
            r["variant"]
        ]
        lam = "–" if r["lambda"] is None else f"{r['lambda']:g}"
        lines.append(
            f"| {r['dataset']} | {model} | {lam} | {r['accuracy']:.4f} | {r['area']:.4f} | "
            f"{r['precision']:.4f} | {r['insertion']:.4f} | {r['deletion']:.4f} | {r['train_seconds']:.0f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="fashion_mnist,composites")
    parser.add_argument("--lambdas", default="1,3,10")
    parser.add_argument(
        "--limit", type=int, default=300, help="test images for explanation metrics"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "reproduce")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (training and evaluation)")
    args = parser.parse_args()
    args.out = args.out.resolve()
    lambdas = [float(x) for x in args.lambdas.split(",")]
    rows = []
    for dataset in args.datasets.split(","):
        rows.append(train_and_evaluate(dataset, "fc", None, args))
        for variant in ("scouter_pos", "scouter_neg"):
            for lam in lambdas:
                rows.append(train_and_evaluate(dataset, variant, lam, args))
                write_outputs(rows, args.out)
        write_outputs(rows, args.out)
    print(markdown(rows))


def write_outputs(rows: list[dict], out: Path) -> None:
    """Rewrite each dataset's table and plot after every run, so an interrupted sweep keeps its rows."""
    for dataset in sorted({r["dataset"] for r in rows}):
        subset = [r for r in rows if r["dataset"] == dataset]
        (out / f"results_{dataset}.json").write_text(json.dumps(subset, indent=2))
        (out / f"results_{dataset}.md").write_text(markdown(subset) + "\n")
        plot_area(subset, out / f"area_vs_lambda_{dataset}.png")


if __name__ == "__main__":
    main()
