"""The per-batch loop: :func:`run` (forward, explain, metrics, the results document and its files)
and :func:`evaluate` (:func:`~scouter.evaluation.prepare`, then :func:`run`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from scouter.evaluation.checks import check_finite_outputs
from scouter.evaluation.explainer_metrics import _ExplainerMetrics
from scouter.evaluation.metric_specs import (
    BatchInputs,
    BuildContext,
    build_metrics,
    classifier_record,
    specs_of,
    update_metrics,
)
from scouter.evaluation.options import EvaluationError, EvaluationOptions, PreparedEvaluation
from scouter.evaluation.outputs import _export, _versions
from scouter.evaluation.preparation import _section, prepare


def _explained_classes(prepared: PreparedEvaluation, labels: Tensor, logits: Tensor) -> Tensor:
    from scouter.metrics import select_explained_class

    mode = prepared.explained_class
    if mode in ("least_similar", "wordnet"):
        return select_explained_class(labels, "least_similar", least_similar=prepared.least_similar)
    if mode in ("target", "predicted"):
        return select_explained_class(labels, mode, logits=logits)
    return select_explained_class(labels, "explicit", explicit=int(mode))


def _unnormalise(images: Tensor, dataset: Any) -> Tensor:
    transform = getattr(dataset, "transform", None)
    mean = getattr(transform, "mean", None)
    std = getattr(transform, "std", None)
    if mean is None or std is None:
        return images.clamp(0, 1)
    return (images * std.to(images) + mean.to(images)).clamp(0, 1)


CLASS_MAP_IMAGES = 4
"""How many of the exported images get SCOUTER's every-class maps in the report."""


def _every_class_maps(model: Any, images: Tensor) -> Tensor:
    """SCOUTER's maps of every class, ``(b, K, h, w)`` on the CPU: the ``slot`` explainer with
    ``target="all"`` (one forward pass)."""
    from scouter.explain import get_explainer

    with torch.no_grad():
        return get_explainer("slot")(model, images, target="all").maps.detach().float().cpu()


def run(prepared: PreparedEvaluation) -> dict[str, Any]:
    """Evaluate a prepared run and write its files.

    Returns:
        The results document (also written to ``out/results.json``).

    Raises:
        EvaluationError: at the first batch whose logits or explanation maps hold NaN or ±inf
            (naming the batch, its images and the checkpoint); nothing is written then.
    """
    from torch.utils.data import DataLoader, Subset
    from tqdm.auto import tqdm

    from scouter.data.sample import collate_samples
    from scouter.export import file_sha256, write_results
    from scouter.metrics import prepare_maps
    from scouter.model_folder import weights_file

    options, model, device = prepared.options, prepared.model, prepared.device
    dataset = prepared.dataset
    limit = options.limit
    if limit is None and options.out is None:
        limit = options.num_images  # export only: the shown images are the evaluated ones
    if limit is not None:
        dataset_view = Subset(dataset, range(min(int(limit), len(dataset))))
    else:
        dataset_view = dataset
    plan = prepared.gridpg
    # GridPG alone on grids read from a file needs no pass over the split: the grids name their
    # images, and the pass would only record confidence for building grids (a leaderboard scores
    # many explainers on one grids file; the pass over 10 000 images cost more than the grids).
    grids_only = (
        plan is not None
        and plan.grids is not None
        and options.export is None
        and not specs_of(prepared.metrics, "classifier")
        and not specs_of(prepared.metrics, "image")
    )
    if grids_only:
        dataset_view = Subset(dataset, [])
    datamodule = prepared.datamodule
    loader = DataLoader(
        dataset_view,
        batch_size=datamodule.batch_size,
        shuffle=False,
        collate_fn=collate_samples,
        **datamodule.loader_settings("cpu" if device.type == "cpu" else "gpu"),
    )
    num_classes = model.num_classes

    def forward_fn(images: Tensor) -> Tensor:
        with torch.no_grad():
            return model(images).logits

    # Classifier metrics are scored from the logits; image metrics per explainer on each image;
    # grid metrics (GridPG) on grids after the image loop (scouter.evaluation.gridpg).
    context = BuildContext(
        num_classes=num_classes,
        batch_size=options.metric_batch_size,
        seed=options.seed,
        device=device,
        forward_fn=forward_fn,
    )
    classifier_metrics = build_metrics(specs_of(prepared.metrics, "classifier"), context)
    explanation_metrics = [s.name for s in specs_of(prepared.metrics, "image")]
    eligible: list[Tensor] = []  # GridPG: the images this model classifies confidently
    per_explainer: dict[str, _ExplainerMetrics] = {}
    rows: list[dict[str, Any]] = []
    shown: dict[str, Any] = {
        "images": [],
        "maps": {n: [] for n in prepared.explainers},
        "logits": [],  # (b, K) chunks of the shown images: the report's predicted probability
        "class_maps": [],  # SCOUTER: (b, K, h, w) chunks, every class's map (report strips)
    }
    scouter_head = bool(getattr(model, "is_scouter", False))
    class_names = list(getattr(dataset, "class_names", [])) or [str(k) for k in range(num_classes)]

    started = time.perf_counter()
    progress = tqdm(
        total=len(dataset_view), desc="evaluate", unit="img", disable=not options.progress
    )
    for batch_index, batch in enumerate(loader):
        images = batch["image"].to(device)
        labels = batch["label"].to(device)
        if "mask" in batch:
            batch["mask"] = batch["mask"].to(device)
        logits = forward_fn(images)
        check_finite_outputs("logits", logits, batch_index, batch["id"], options.checkpoint)
        predictions = logits.argmax(dim=1)
        update_metrics(classifier_metrics, BatchInputs(logits=logits, labels=labels))
        if plan is not None and plan.grids is None:
            from scouter.data.grids import confident_correct

            eligible.append(confident_correct(logits, labels, plan.threshold))
        classes = _explained_classes(prepared, labels, logits)
        for name, explainer in prepared.explainers.items():
            want_shown = options.export is not None and len(shown["images"]) < options.num_images
            take = options.num_images - len(shown["images"])
            if explanation_metrics:
                if name not in per_explainer:
                    per_explainer[name] = _ExplainerMetrics(
                        explanation_metrics, explainer, model, forward_fn,
                        tuple(images.shape[-2:]), options, device,
                    )  # fmt: skip
                maps = per_explainer[name].update(batch, images, classes, batch_index)
            elif want_shown:  # GridPG only: explain just the shown images
                maps = explainer(model, images[:take], target=classes[:take]).maps
            else:
                continue
            if want_shown:
                shown["maps"][name].append(prepare_maps(maps[:take], tuple(images.shape[-2:])))
        if options.export is not None and len(shown["images"]) < options.num_images:
            take = options.num_images - len(shown["images"])
            shown["images"].extend(_unnormalise(images[:take], dataset).cpu())
            shown["logits"].append(logits[:take].detach().float().cpu())
            strips = sum(len(chunk) for chunk in shown["class_maps"])
            if scouter_head and strips < CLASS_MAP_IMAGES:
                wanted = min(take, CLASS_MAP_IMAGES - strips)
                shown["class_maps"].append(_every_class_maps(model, images[:wanted]))
        for i, image_id in enumerate(batch["id"]):
            rows.append(
                {
                    "id": image_id,
                    "label": int(labels[i]),
                    "explained_class": int(classes[i]),
                    "prediction": int(predictions[i]),
                }
            )
        progress.update(len(images))
    progress.close()
    elapsed = time.perf_counter() - started
    if not rows and not grids_only:
        raise EvaluationError(f"the {options.split!r} split has no images")

    metrics_doc = {
        name: classifier_record(name, metric, context)
        for name, metric in classifier_metrics.items()
    }
    explanations_doc: dict[str, Any] = {}
    for name, tracker in per_explainer.items():
        summary, per_image = tracker.results()
        explanations_doc[name] = {"settings": tracker.explainer.settings, "metrics": summary}
        for metric, values in per_image.items():
            for row, value in zip(rows, values.tolist(), strict=True):
                row[f"{name}/{metric}"] = value
    gridpg_doc = None
    if plan is not None:
        from scouter.evaluation.gridpg import run_gridpg

        gridpg_doc, summaries, grid_rows, shown["grids"] = run_gridpg(
            plan, model=model, dataset=dataset, explainers=prepared.explainers,
            forward_fn=forward_fn,
            eligible=torch.cat(eligible) if eligible else torch.zeros(0, dtype=torch.bool),
            ids=[row["id"] for row in rows], device=device, checkpoint=options.checkpoint,
            batch_size=datamodule.batch_size,
            unnormalise=lambda grid: _unnormalise(grid, dataset),
            want_shown=options.export is not None,
        )  # fmt: skip
        for name, summary in summaries.items():
            doc = explanations_doc.setdefault(
                name, {"settings": prepared.explainers[name].settings, "metrics": {}}
            )
            doc["metrics"]["gridpg"] = summary
        rows_out = rows + grid_rows  # one row per grid cell after the images' rows
    else:
        rows_out = rows
    elapsed = time.perf_counter() - started

    checkpoint = Path(options.checkpoint)
    data_section = _section(prepared.config, "data")
    results = {
        "config": prepared.config,
        "config_path": prepared.config_path,
        "checkpoint": {
            "path": str(checkpoint),
            "sha256": file_sha256(weights_file(checkpoint)),
            "model_config": model.config.to_dict(),
            "data_config": model.data_config.to_dict()
            if getattr(model, "data_config", None) is not None
            else None,
        },
        "dataset": {
            "name": data_section.get("dataset"),
            "root": data_section.get("root"),
            "options": data_section.get("dataset_options") or {},
            # The split whose images were evaluated; where it is not the one asked for, both.
            "split": prepared.datamodule.split_used(options.split),
            **(
                {"split_requested": options.split, "split_note": note}
                if (note := prepared.datamodule.split_notes.get(options.split))
                else {}
            ),
            "class_names": class_names,
            "preprocessing": prepared.datamodule.data_config.to_dict(),
        },
        "num_images": len(rows),
        "explained_class": prepared.explained_class,
        "warnings": list(prepared.warnings),
        "metrics": metrics_doc,
        "explanations": explanations_doc,
        **({"gridpg": gridpg_doc} if gridpg_doc is not None else {}),
        "evaluation": {
            "limit": options.limit,
            "seed": options.seed,
            "device": str(device),
            "seconds": round(elapsed, 3),
            "versions": _versions(),
        },
    }
    if options.out is not None:
        write_results(options.out, results, rows_out)  # both files or neither (results_io)
    if options.export is not None:
        _export(prepared, results, rows_out, shown, class_names)
    return results


def evaluate(options: EvaluationOptions) -> dict[str, Any]:
    """Validate (:func:`prepare`), then evaluate and write the files (:func:`run`)."""
    return run(prepare(options))
