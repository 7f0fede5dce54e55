"""What :func:`~scouter.evaluation.run` writes besides the results files: the package versions
recorded in ``results.json`` and the ``--export`` folder (overlays, ``grid.png``,
``report.html``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

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

    report_rows = []
    for i, row in enumerate(rows[:count]):
        entry = {
            "id": row["id"],
            "true": class_names[row["label"]],
            "predicted": class_names[row["prediction"]],
            "explained": class_names[row["explained_class"]],
            "image": images[i],
            "overlays": {name: overlay_map(images[i], m[i, 0]) for name, m in maps.items()},
        }
        # One compact cell (rendered "name=value, …") keeps the overlays on screen however
        # many explainers × metrics there are.
        values = {k: round(v, 4) for k, v in row.items() if "/" in k and isinstance(v, float)}
        if values:
            entry["per-image metrics"] = values
        report_rows.append(entry)
    flat_metrics: dict[str, Any] = dict(results["metrics"])
    for name, doc in results["explanations"].items():
        for metric, summary in doc["metrics"].items():
            flat_metrics[f"{name} / {metric}"] = summary
    model_config = results["checkpoint"]["model_config"]
    write_html_report(
        export / "report.html",
        title=f"SCOUTER evaluation: {model_config['backbone']} {prepared.model.config.variant} on "
        f"{results['dataset']['name']} ({results['dataset']['split']})",
        metrics=flat_metrics,
        rows=report_rows,
        settings={
            "checkpoint": results["checkpoint"]["path"],
            "sha256": results["checkpoint"]["sha256"],
            "config": results["config_path"] or "(in memory)",
            "images evaluated": results["num_images"],
            "explained class": results["explained_class"],
            "explainers": ", ".join(results["explanations"]),
        },
    )
