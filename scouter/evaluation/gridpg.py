"""``evaluate.py --metrics gridpg``: the grid pointing game of every explainer on one model.

:func:`prepare_gridpg` checks the settings and an existing grids file before any work;
:func:`run_gridpg` builds the grids (when there is no file yet) from the images this model
classified confidently in the image loop and writes the file, then composes the grid images,
explains every cell's class for every explainer (``target`` = the ``(G, n²)`` cell classes, so
SCOUTER's ``slot`` explainer gets all of them from one forward pass) and scores them
(docs/metrics.md#grid-pointing-game).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from scouter.evaluation.checks import check_finite_outputs
from scouter.evaluation.options import EvaluationError, EvaluationOptions

GRIDS_FILE = "gridpg_grids.json"
"""The grids file's name in ``--out`` (or ``--export``) when ``--gridpg-grids`` is not given."""
DEFAULT_SIZE, DEFAULT_COUNT, DEFAULT_GEOMETRY = 2, 100, "rescale"
SHOWN_GRIDS = 3
"""Grids drawn in the report with every explainer's maps."""


@dataclass
class GridPGPlan:
    """The resolved GridPG settings of a run and its grids (``None``: built in :func:`run_gridpg`)."""

    size: int
    geometry: str
    threshold: float
    count: int
    seed: int
    path: Path
    identity: dict[str, Any]
    grids: Any = None
    built: bool = False
    notes: list[str] = field(default_factory=list)


def _resolve(explicit: Any, from_file: Any, default: Any, name: str, flag: str, path: Path) -> Any:
    if from_file is None:
        return default if explicit is None else explicit
    if explicit is not None and explicit != from_file:
        raise EvaluationError(
            f"{flag} {explicit!r} differs from the {name} of the grids in {str(path)!r} "
            f"({from_file!r}): leave {flag} out to reuse those grids, or pass a new "
            "--gridpg-grids path to build grids with this setting"
        )
    return from_file


def prepare_gridpg(
    options: EvaluationOptions,
    dataset: Any,
    data_section: dict[str, Any],
    model: nn.Module,
    num_classes: int,
    input_size: tuple[int, int],
) -> GridPGPlan:
    """Check the GridPG settings and any existing grids file, before any work.

    Raises:
        EvaluationError: a grid size below 2 or above what the classes allow, a geometry that is
            not ``rescale``/``tile``, a threshold outside ``[0, 1]``, a grid count below 1,
            ``tile`` for a model that takes one input size only, or a grids file that is not
            one, is damaged, or was made on another split or with other settings.
    """
    from scouter.data.grids import DEFAULT_THRESHOLD, GridError, dataset_identity, load_grids
    from scouter.metrics import GEOMETRIES
    from scouter.models.inputs import fixed_input_size

    folder = options.out if options.out is not None else options.export
    path = Path(options.gridpg_grids) if options.gridpg_grids else Path(folder) / GRIDS_FILE
    if path.exists() and not path.is_file():
        raise EvaluationError(f"--gridpg-grids {str(path)!r} is a folder: give a .json file path")
    identity = dataset_identity(
        data_section.get("dataset"),
        data_section.get("root"),
        data_section.get("dataset_options") or {},
        options.split,
        list(getattr(dataset, "targets", [])),
    )
    grids = None
    if path.is_file():
        from scouter.data.grids import check_identity

        try:
            grids = load_grids(path)
            check_identity(grids, identity, f"the grids in {str(path)!r}")
        except GridError as error:
            raise EvaluationError(str(error)) from None
    size = _resolve(options.gridpg_size, grids and grids.size, DEFAULT_SIZE, "size",
                    "--gridpg-size", path)  # fmt: skip
    threshold = _resolve(options.gridpg_threshold, grids and grids.threshold, DEFAULT_THRESHOLD,
                         "threshold", "--gridpg-threshold", path)  # fmt: skip
    count = _resolve(options.gridpg_count, grids and grids.count, DEFAULT_COUNT, "count",
                     "--gridpg-count", path)  # fmt: skip
    geometry = options.gridpg_geometry or DEFAULT_GEOMETRY
    if geometry not in GEOMETRIES:
        raise EvaluationError(f"--gridpg-geometry must be one of {GEOMETRIES}, got {geometry!r}")
    if int(size) < 2:
        raise EvaluationError(f"--gridpg-size must be at least 2 (an n×n grid), got {size}")
    if int(size) ** 2 > num_classes:
        raise EvaluationError(
            f"a {size}×{size} grid needs {int(size) ** 2} distinct classes but the dataset has "
            f"{num_classes}: use --gridpg-size {int(num_classes**0.5)} or a dataset with more "
            "classes"
        )
    if not 0.0 <= float(threshold) <= 1.0:
        raise EvaluationError(f"--gridpg-threshold must lie in [0, 1], got {threshold}")
    if int(count) < 1:
        raise EvaluationError(f"--gridpg-count must be at least 1, got {count}")
    if geometry == "tile" and fixed_input_size(model) is not None:
        raise EvaluationError(
            f"--gridpg-geometry tile feeds {size}× larger images, but this model takes only "
            f"{fixed_input_size(model)} inputs: use --gridpg-geometry rescale"
        )
    if min(input_size) < int(size):
        raise EvaluationError(f"the input size {input_size} is too small for {size}×{size} grids")
    return GridPGPlan(
        size=int(size), geometry=geometry, threshold=float(threshold), count=int(count),
        seed=int(options.seed), path=path, identity=identity, grids=grids,
    )  # fmt: skip


def _build(plan: GridPGPlan, labels: list[int], eligible: Tensor, ids: list[str], name: str):
    from scouter.data.grids import GridError, build_grids, save_grids

    full = torch.zeros(plan.identity["num_images"], dtype=torch.bool)
    full[: eligible.numel()] = eligible  # images past --limit were not evaluated: not eligible
    names = list(ids) + [str(i) for i in range(len(ids), full.numel())]
    try:
        grids = build_grids(
            labels, [full.numpy()], size=plan.size, count=plan.count,
            seed=plan.seed, threshold=plan.threshold, identity=plan.identity, ids=names,
            selected_by=[name],
            selected_from=eligible.numel() if eligible.numel() < full.numel() else None,
        )  # fmt: skip
    except GridError as error:
        raise EvaluationError(str(error)) from None
    save_grids(plan.path, grids)
    return grids


def _per_tile(explainer: Any, pixels: int) -> Any:
    """A copy of ``explainer`` whose passes take ``pixels`` times fewer items (at least one).

    A tile grid has n² times the input's pixels, so an unscaled pass of ``batch_size`` (image,
    class) pairs needs n² times the memory it needs at the input size: 10 GB (Saliency) to 18 GB
    (Guided Grad-CAM) for 3×3 tiles of the 128 px composites on CPU. Scaled, a pass holds the
    pixels it holds at the input size; the maps do not depend on it.
    """
    size = getattr(explainer, "batch_size", None)
    if not isinstance(size, int) or pixels == 1:
        return explainer
    scaled = copy.copy(explainer)
    scaled.batch_size = max(1, size // pixels)
    return scaled


def run_gridpg(
    plan: GridPGPlan,
    *,
    model: nn.Module,
    dataset: Any,
    explainers: dict[str, Any],
    forward_fn: Callable[[Tensor], Tensor],
    eligible: Tensor,
    ids: list[str],
    device: torch.device,
    checkpoint: Any,
    batch_size: int,
    unnormalise: Callable[[Tensor], Tensor],
    want_shown: bool,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Score every explainer on the grids.

    Args:
        eligible: ``(N,)`` bool, the images of the evaluated view this model classified
            correctly with ``p ≥ threshold`` (used when the grids are built here).
        ids: the evaluated view's image ids.
        batch_size: the data batch size; ``max(1, batch_size // n²)`` grids go through at once.

    Returns:
        The run's ``gridpg`` record for results.json, each explainer's metric summary, one row
        per grid cell for ``per_image.csv`` and (``want_shown``) a few grids for the report.
    """
    from scouter.metrics import GridPointingGame, compose_grid, prepare_maps

    if plan.grids is None:
        labels = [int(t) for t in dataset.targets]
        from scouter.export import file_sha256
        from scouter.model_folder import weights_file

        name = f"{checkpoint} (sha256 {file_sha256(weights_file(checkpoint))})"
        plan.grids = _build(plan, labels, eligible, ids, name)
        plan.built = True
    grids, n = plan.grids, plan.size
    if plan.geometry == "tile":
        explainers = {name: _per_tile(explainer, n * n) for name, explainer in explainers.items()}
    sign = getattr(getattr(model, "config", None), "sign", 1)
    metrics, settings = {}, {}
    for name, explainer in explainers.items():
        evidence = "against" if explainer.kind == "attention" and sign < 0 else "for"
        metrics[name] = GridPointingGame(n=n, evidence=evidence).to(device)
        settings[name] = {
            "size": n, "geometry": plan.geometry, "threshold": plan.threshold,
            "count": grids.count, "evidence": evidence, "chance": metrics[name].chance,
            "grids_file": str(plan.path),
            **({"batch_size": explainer.batch_size} if hasattr(explainer, "batch_size") else {}),
        }  # fmt: skip
    rows: list[dict[str, Any]] = []
    shown: list[dict[str, Any]] = []
    not_confident = 0
    step = max(1, batch_size // (n * n))
    for batch_index, start in enumerate(range(0, grids.count, step)):
        stop = min(start + step, grids.count)
        items = []
        for g in range(start, stop):
            for k, index in enumerate(grids.indices[g]):
                item = dataset[int(index)]
                if str(item["id"]) != grids.ids[g][k]:
                    raise EvaluationError(
                        f"grid {g} cell {k}: image {int(index)} of the split is {item['id']!r}, "
                        f"the grids file {str(plan.path)!r} says {grids.ids[g][k]!r}: the dataset "
                        "changed since the grids were made; pass a new --gridpg-grids path"
                    )
                items.append(torch.as_tensor(item["image"]))
        cells = torch.stack(items).to(device)  # (b·n², C, H, W)
        labels = torch.as_tensor(grids.labels[start:stop], device=device)  # (b, n²)
        cell_logits = forward_fn(cells)
        confident = _confident(cell_logits, labels.flatten(), plan.threshold)
        not_confident += int((~confident).sum())
        images = compose_grid(cells.view(stop - start, n * n, *cells.shape[1:]), n, plan.geometry)
        grid_ids = [f"grid{g}" for g in range(start, stop)]
        batch_maps = {}
        for name, explainer in explainers.items():
            maps = explainer(model, images, target=labels).maps
            check_finite_outputs(f"{name!r} GridPG maps", maps, batch_index, grid_ids, checkpoint)
            metrics[name].update(maps, size=tuple(images.shape[-2:]))
            batch_maps[name] = maps
        predictions = cell_logits.argmax(dim=1).tolist()
        for b, g in enumerate(range(start, stop)):
            for k in range(n * n):
                rows.append({
                    "id": f"grid{g}/cell{k}", "label": int(grids.labels[g][k]),
                    "explained_class": int(grids.labels[g][k]),
                    "prediction": predictions[b * n * n + k], "grid": g, "cell": k,
                    "image_id": grids.ids[g][k], "confident": bool(confident[b * n * n + k]),
                })  # fmt: skip
        if want_shown and len(shown) < SHOWN_GRIDS:
            for b in range(min(stop - start, SHOWN_GRIDS - len(shown))):
                size = tuple(images.shape[-2:])
                shown.append({
                    "grid": start + b, "image": unnormalise(images[b : b + 1])[0].cpu(),
                    "labels": [int(c) for c in grids.labels[start + b]],
                    "maps": {name: prepare_maps(m[b : b + 1].float(), size)[0].cpu()
                             for name, m in batch_maps.items()},
                })  # fmt: skip
    summaries = {}
    for name, metric in metrics.items():
        values = metric.per_image().detach().float().cpu().tolist()
        for row, value in zip(rows, values, strict=True):  # both in grid-major cell order
            row[f"{name}/gridpg"] = value
        summary = metric.summary()
        finite = torch.tensor([v for v in values if v == v], dtype=torch.float64)
        summary["std"] = float(finite.std(unbiased=False)) if finite.numel() else float("nan")
        summary["higher_is_better"] = True
        summary["settings"] = settings[name]
        summaries[name] = summary
        for entry in shown:
            start = entry["grid"] * n * n
            entry.setdefault("scores", {})[name] = values[start : start + n * n]
    record = {
        "size": n, "geometry": plan.geometry, "threshold": plan.threshold, "count": grids.count,
        "seed": grids.seed, "grids_file": str(plan.path), "built_here": plan.built,
        "selected_by": grids.selected_by, "eligible_images": grids.eligible_images,
        "selected_from": grids.selected_from, "cells": grids.count * n * n, "cells_not_confident": not_confident,
        "grid_image_size": list(images.shape[-2:]),
    }  # fmt: skip
    return record, summaries, rows, shown


def _confident(logits: Tensor, labels: Tensor, threshold: float) -> Tensor:
    from scouter.data.grids import confident_correct

    return confident_correct(logits, labels, threshold)
