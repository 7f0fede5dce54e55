"""What :func:`~scouter.evaluation.run` writes besides the results files: the package versions
recorded in ``results.json`` and the ``--export`` folder (overlays, ``grid.png``,
``report.html``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from scouter.evaluation.metric_specs import GRID_METRICS
from scouter.evaluation.options import PreparedEvaluation


def _versions() -> dict[str, str]:
    import importlib.metadata as metadata

    versions = {}
    for package in ("scouter", "torch", "timm", "captum", "torchmetrics"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _split_shown(dataset: dict[str, Any]) -> str:
    """The evaluated split, and the one asked for where they differ: ``val, as test``."""
    requested = dataset.get("split_requested")
    return f"{dataset['split']}, as {requested}" if requested else dataset["split"]


def _export(
    prepared: PreparedEvaluation,
    results: dict[str, Any],
    rows: list[dict[str, Any]],
    shown: dict[str, Any],
    class_names: list[str],
) -> None:
    from scouter.export import explanation_grid, overlay_map, save_overlays, write_html_report

    export = Path(prepared.options.export)
    export.mkdir(parents=True, exist_ok=True)
    images = shown["images"]
    count = len(images)
    maps = {name: torch.cat(chunks)[:count].cpu() for name, chunks in shown["maps"].items()}
    # File names <id>_<explained class>_<method>.png (save_overlays' "<id>_<class>").
    ids = [f"{row['id']}_{class_names[row['explained_class']]}" for row in rows[:count]]
    for name, method_maps in maps.items():
        save_overlays(
            export / "overlays", torch.stack(images), method_maps, ids, class_names=[name]
        )
    labels = [f"{class_names[r['label']]} → {class_names[r['prediction']]}" for r in rows[:count]]
    explanation_grid(export / "grid.png", images, maps, row_labels=labels)

    logits = torch.cat(shown["logits"])[:count] if shown.get("logits") else None
    probabilities = logits.softmax(dim=1) if logits is not None else None
    report_rows = []
    for i, row in enumerate(rows[:count]):
        entry = {
            "id": row["id"],
            "true": class_names[row["label"]],
            "predicted": class_names[row["prediction"]],
            "explained": class_names[row["explained_class"]],
            "image": images[i],
            "overlays": {name: overlay_map(images[i], m[i, 0]) for name, m in maps.items()},
            "metrics": {
                name: {
                    metric: row.get(f"{name}/{metric}")
                    for metric in results["explanations"][name]["metrics"]
                    # Grid metrics are scored on grids, not on this image.
                    if metric not in GRID_METRICS
                }
                for name in results["explanations"]
            },
        }
        if probabilities is not None:
            entry["probability"] = float(probabilities[i, row["prediction"]])
        report_rows.append(entry)
    model_config = results["checkpoint"]["model_config"]
    write_html_report(
        export / "report.html",
        title=f"SCOUTER evaluation: {model_config['backbone']} {prepared.model.config.variant} on "
        f"{results['dataset']['name']} ({_split_shown(results['dataset'])})",
        metrics=results["metrics"],
        rows=report_rows,
        explainers=results["explanations"],
        class_maps=_class_map_entries(shown, rows, images, logits, class_names),
        gridpg=_gridpg_entry(results, rows, shown, class_names),
        sign=model_config.get("sign") if model_config.get("head") == "xslot" else None,
        settings={
            "checkpoint": results["checkpoint"]["path"],
            "sha256": results["checkpoint"]["sha256"],
            "config": results["config_path"] or "(in memory)",
            "model": f"{model_config['backbone']}, {prepared.model.config.variant}, "
            f"{len(class_names)} classes",
            "split": results["dataset"].get("split_note") or results["dataset"]["split"],
            "images evaluated": results["num_images"],
            "explained class": results["explained_class"],
            "explainers": ", ".join(results["explanations"]) or "(none)",
        },
    )


MAX_STRIP_CLASSES = 20
"""Above this many classes the every-class strip shows the highest-scoring ones (and the true and
explained class)."""


def _class_map_entries(
    shown: dict[str, Any],
    rows: list[dict[str, Any]],
    images: list[torch.Tensor],
    logits: torch.Tensor | None,
    class_names: list[str],
) -> list[dict[str, Any]]:
    """The report's every-class strips of a SCOUTER model (docs/metrics.md#html-report): each
    image's ``K`` maps normalised jointly (one min–max over all classes, as the reference's
    visualisation), one overlay per class, labelled with its score and probability."""
    import torch.nn.functional as F

    from scouter.export import overlay_map
    from scouter.metrics.maps import minmax_normalise

    if not shown.get("class_maps") or logits is None:
        return []
    every = torch.cat(shown["class_maps"])
    entries = []
    for i in range(min(len(every), len(images))):
        row, image = rows[i], images[i]
        maps = F.interpolate(
            every[i : i + 1].clamp_min(0), size=tuple(image.shape[-2:]), mode="bilinear",
            align_corners=False,
        )[0].clamp_min(0)  # fmt: skip
        maps = minmax_normalise(maps, dims=(0, 1, 2))  # (K, H, W), jointly over the classes
        scores, probabilities = logits[i], logits[i].softmax(dim=0)
        label, predicted, explained = row["label"], row["prediction"], row["explained_class"]
        num_classes = len(scores)
        shown_classes = list(range(num_classes))
        note = ""
        if num_classes > MAX_STRIP_CLASSES:
            must = list(dict.fromkeys([label, explained]))
            top = [int(k) for k in scores.argsort(descending=True) if int(k) not in must]
            shown_classes = sorted(must + top[: MAX_STRIP_CLASSES - len(must)])
            note = (
                f"{len(shown_classes)} of {num_classes} classes shown: the highest-scoring ones "
                "and the true and explained class"
            )
        entries.append(
            {
                "id": row["id"],
                "true": class_names[label],
                "predicted": class_names[predicted],
                "image": image,
                "note": note,
                "classes": [
                    {
                        "name": class_names[k],
                        "score": float(scores[k]),
                        "probability": float(probabilities[k]),
                        "overlay": overlay_map(image, maps[k]),
                        "true": k == label,
                        "predicted": k == predicted,
                        "explained": k == explained,
                    }
                    for k in shown_classes
                ],
            }
        )
    return entries


def _gridpg_entry(
    results: dict[str, Any],
    rows: list[dict[str, Any]],
    shown: dict[str, Any],
    class_names: list[str],
) -> dict[str, Any] | None:
    """The report's GridPG section: settings, summaries, per-cell scores and the shown grids."""
    from scouter.export import overlay_map

    if "gridpg" not in results:
        return None
    summaries = {
        name: doc["metrics"]["gridpg"]
        for name, doc in results["explanations"].items()
        if "gridpg" in doc.get("metrics", {})
    }
    cells = [row for row in rows if "grid" in row]
    grids = []
    for grid in shown.get("grids") or []:
        image = grid["image"]
        grids.append(
            {
                "grid": grid["grid"],
                "image": image,
                "classes": [class_names[c] for c in grid["labels"]],
                "overlays": {
                    name: [overlay_map(image, cell_map) for cell_map in maps]
                    for name, maps in grid["maps"].items()
                },
                "scores": grid.get("scores", {}),
            }
        )
    return {
        "settings": results["gridpg"],
        "summaries": summaries,
        "values": {name: [row.get(f"{name}/gridpg") for row in cells] for name in summaries},
        "grids": grids,
    }
