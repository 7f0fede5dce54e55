"""The localisation leaderboard: every registered explainer on the given checkpoints, GridPG 2×2
and 3×3 on shared grids, precision where the dataset has masks, area, insertion / deletion and
each method's cost.

Run (the lead's zoo models; any number of ``--model LABEL=CHECKPOINT,CONFIG``)::

    python bench/localisation.py --out bench/localisation \\
        --model fc=runs/composites/fc/best.ckpt,configs/composites/fc.yaml \\
        --model scouter_pos=runs/composites/pos/best.ckpt,configs/composites/scouter_pos.yaml \\
        --model scouter_neg=runs/composites/neg/best.ckpt,configs/composites/scouter_neg.yaml

or on the zoo's shipped models by name (each brings its ``recipe.yaml``)::

    python bench/localisation.py --out bench/localisation \\
        --model fc=fc_test_resnet_fashion_mnist \\
        --model scouter_pos=scouter_pos_test_resnet_fashion_mnist

Steps. Models are grouped by the split they are evaluated on (dataset, root, options, split and
its labels). For each group and grid size one grids file is built from the images **every** model
of the group classifies correctly with ``p ≥ --threshold`` (``grids/<dataset>_<n>x<n>.json``) and
the first ``--costly-grids`` of them form the costly methods' subset (``…_subset.json``). Each
(model, explainer) is then evaluated by ``evaluate()`` — GridPG on the grids (``--geometry``), and
on the first ``--image-limit`` test images insertion, deletion, area and, where the dataset has
boxes or masks, precision. Methods in ``--costly`` use the subset (stated in the table). Cost: the seconds
of the GridPG run (on the shared grids file no pass over the split is needed: the grids' forward
passes and maps only) divided by its cells. A run whose results.json exists is reused (an interrupted leaderboard
resumes; delete `--out` to start over; a grids file made by the same models with the same settings
is reused too). ``--select-limit N`` draws the grids' images from the first N test images only (a
large split need not be forwarded whole); ``--jobs 2`` scores two (model, explainer) pairs side by
side, one thread each. Outputs in ``--out``: one ``evaluate`` folder per run, ``leaderboard.json``,
``leaderboard.md`` (the table) and ``gridpg_<n>x<n>.png`` (a box per model/explainer). With
``--geometry tile`` the GridPG runs, table and plots take a ``_tile`` suffix, so both geometries
live in one ``--out`` and share its image-metric runs.

Seeds: a label given several times (``--model fc=<seed 0> --model fc=<seed 1> …``) is several
trained instances of one model. All of them select the grids (every instance must classify a grid
image confidently), each is scored on its own, and the table shows one row per (model, explainer):
the mean over seeds ± their standard deviation, the median of the pooled cells
(``bench/localisation_table.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


#: Methods costing many forward (or forward-backward) passes per map — integration steps, noise
#: samples, masks, windows, channels or optimisation steps — run on the grid subset by default.
#: The others take one pass per map (SCOUTER's own maps one per grid): the cheap leaderboard.
COSTLY = ("ig", "smoothgrad", "occlusion", "lime", "rise", "scorecam", "meaningful_perturbation",
          "extremal_perturbation", "blur_ig")  # fmt: skip


def parse_model(text: str) -> tuple[str, Path, Path]:
    """``LABEL=CHECKPOINT,CONFIG``, ``LABEL=MODEL_FOLDER`` or ``LABEL=ZOO_NAME`` → its three parts.

    A model folder (or a shipped zoo entry's name) brings its own training config, ``recipe.yaml``.
    """
    from scouter.hub import shipped_folder
    from scouter.model_folder import RECIPE_FILE

    label, sep, paths = text.partition("=")
    checkpoint, comma, config = paths.partition(",")
    if not comma and checkpoint:
        folder = Path(checkpoint) if Path(checkpoint).is_dir() else shipped_folder(checkpoint)
        if folder is not None and (folder / RECIPE_FILE).is_file():
            checkpoint, config = str(folder), str(folder / RECIPE_FILE)
    if not sep or not label or not checkpoint or not config:
        raise SystemExit(
            f"--model expects LABEL=CHECKPOINT,CONFIG (e.g. fc=runs/fc/best.ckpt,"
            f"configs/composites/fc.yaml), LABEL=MODEL_FOLDER or LABEL=ZOO_NAME (a folder or "
            f"shipped model with a {RECIPE_FILE}), got {text!r}"
        )
    for path, what in ((Path(checkpoint), "checkpoint"), (Path(config), "config")):
        if not (path.is_file() or (what == "checkpoint" and path.is_dir())):
            raise SystemExit(f"--model {label}: {what} {str(path)!r} does not exist")
    return label, Path(checkpoint), Path(config)


def explainers_for(model: Any, wanted: list[str] | None) -> list[str]:
    """Every registered explainer whose declared requirement the model meets (``slot*`` need a
    SCOUTER head, ``cam`` an FC head)."""
    from scouter.explain import get_explainer, list_explainers

    names = wanted or list_explainers()
    return [name for name in names if get_explainer(name).model_problem(model) is None]


def _eligibility(prepared: Any, threshold: float, limit: int | None = None) -> np.ndarray:
    """Per test image: does the model classify it correctly with ``p ≥ threshold``? Only the first
    ``limit`` images are forwarded (the rest are not eligible): a large split need not be
    forwarded whole to fill a hundred grids."""
    from torch.utils.data import DataLoader, Subset

    from scouter.data.grids import confident_correct
    from scouter.data.sample import collate_samples

    dataset = prepared.dataset
    total = len(dataset)
    if limit is not None and limit < total:
        dataset = Subset(dataset, range(limit))
    loader = DataLoader(dataset, batch_size=prepared.datamodule.batch_size,
                        collate_fn=collate_samples)  # fmt: skip
    flags = []
    with torch.no_grad():
        for batch in loader:
            logits = prepared.model(batch["image"].to(prepared.device)).logits
            flags.append(confident_correct(logits, batch["label"], threshold))
    eligible = np.zeros(total, dtype=bool)
    forwarded = torch.cat(flags).numpy()
    eligible[: len(forwarded)] = forwarded
    return eligible


def _reusable(path: Path, expected: dict[str, Any]) -> bool:
    """Does ``path`` hold grids made with exactly these settings (an earlier, interrupted
    leaderboard's)? Then they are reused and no model forwards the split again."""
    from scouter.data.grids import GridError, load_grids

    if not path.is_file():
        return False
    try:
        grids = load_grids(path)
    except GridError:
        return False
    found = {"identity": grids.identity, **_selection(grids)}
    return {**found, "selected_by": _weights(found["selected_by"])} == {
        **expected,
        "selected_by": _weights(expected["selected_by"]),
    }


def _weights(selected_by: list[str]) -> list[str]:
    """The models that selected grids, as their weights' SHA-256 in sorted order: the models'
    order, or where the checkout lies (the paths), does not change which images all of them
    classify confidently."""
    import re

    return sorted((m.group(1) if (m := re.search(r"sha256 ([0-9a-f]+)", s)) else s)
                  for s in selected_by)  # fmt: skip


def _selection(grids: Any) -> dict[str, Any]:
    """How a grids file's images were chosen, as its results.json records it."""
    return {"count": grids.count, "threshold": grids.threshold, "seed": grids.seed,
            "selected_by": grids.selected_by, "selected_from": grids.selected_from}  # fmt: skip


def build_shared_grids(models: list[dict[str, Any]], args: argparse.Namespace, folder: Path):
    """One grids file per (split, size) from the models' joint confident images, and its subset.

    A grids file an earlier run wrote with the same models (weights' SHA-256), split, threshold,
    seed, count and ``--select-limit`` is reused as it is.

    Returns:
        ``{run: {size: (grids file, subset file)}}`` (``run``: see ``instances()``).
    """
    import tempfile

    from scouter.data.grids import build_grids, dataset_identity, load_grids, save_grids
    from scouter.evaluation import EvaluationOptions, prepare
    from scouter.evaluation.preparation import _section
    from scouter.export import file_sha256
    from scouter.model_folder import weights_file

    groups: dict[str, dict[str, Any]] = {}
    probe = Path(tempfile.mkdtemp(prefix="localisation-probe-"))  # prepare() needs an --out
    for entry in models:
        prepared = prepare(
            EvaluationOptions(checkpoint=entry["checkpoint"], config=entry["config"],
                              out=probe, metrics=["accuracy"], device=args.device,
                              progress=False)
        )  # fmt: skip
        entry["model"] = prepared.model
        data = _section(prepared.config, "data")
        labels = [int(t) for t in prepared.dataset.targets]
        identity = dataset_identity(data.get("dataset"), data.get("root"),
                                    data.get("dataset_options") or {}, "test", labels)  # fmt: skip
        entry["has_regions"] = bool(getattr(getattr(prepared.dataset, "dataset", None),
                                            "has_regions", True))  # fmt: skip
        key = json.dumps(identity, sort_keys=True)
        group = groups.setdefault(key, {"identity": identity, "labels": labels, "members": []})
        group["ids"] = [str(prepared.dataset[i]["id"]) for i in range(len(labels))]
        group["members"].append((entry, prepared))
    files: dict[str, dict[int, tuple[Path, Path]]] = {}
    for group in groups.values():
        name = group["identity"]["name"]
        members = group["members"]
        flags: list[np.ndarray] = []  # forwarded once, only when a grids file must be built
        selected_by = [f"{e['checkpoint']} (sha256 {file_sha256(weights_file(e['checkpoint']))})"
                       for e, _ in members]  # fmt: skip
        limit = args.select_limit
        selected_from = limit if limit is not None and limit < len(group["labels"]) else None
        for size in args.sizes:
            path = folder / "grids" / f"{name}_{size}x{size}.json"
            expected = {"identity": group["identity"], "selected_by": selected_by,
                        "threshold": float(args.threshold), "seed": args.seed,
                        "count": args.count, "selected_from": selected_from}  # fmt: skip
            if _reusable(path, expected):
                grids = load_grids(path)
                print(f"reusing {path} (same models, split and settings)", flush=True)
            else:
                if not flags:
                    flags = [_eligibility(p, args.threshold, limit) for _, p in members]
                grids = build_grids(
                    group["labels"], flags, size=size, count=args.count, seed=args.seed,
                    threshold=args.threshold, identity=group["identity"], ids=group["ids"],
                    selected_by=selected_by, selected_from=selected_from,
                )  # fmt: skip
                save_grids(path, grids)
            keep = min(args.costly_grids, grids.count)
            subset = replace(grids, indices=grids.indices[:keep], labels=grids.labels[:keep],
                             ids=grids.ids[:keep])  # fmt: skip
            subset_path = save_grids(folder / "grids" / f"{name}_{size}x{size}_subset.json", subset)
            for entry, _ in members:
                files.setdefault(entry["run"], {})[size] = (path, subset_path)
    return files


def _cells(folder: Path, explainer: str) -> list[float]:
    import csv

    with open(folder / "per_image.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("grid")]
    return [float(r[f"{explainer}/gridpg"]) for r in rows if r[f"{explainer}/gridpg"] != ""]


def evaluate_once(options: Any, expected: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``evaluate(options)``, or the results.json an earlier (interrupted) leaderboard left in
    ``options.out`` for the same explainer and settings: a long leaderboard resumes where it
    stopped.

    Args:
        expected: ``{section: {key: value}}`` the reused results.json must hold (missing keys
            read as ``None``), e.g. the grids' selection or the image limit.
    """
    from scouter.evaluation import evaluate

    done = Path(options.out) / "results.json"
    if done.is_file():
        results = json.loads(done.read_text())
        same = all((results.get(section) or {}).get(key) == value
                   for section, wanted in expected.items() for key, value in wanted.items())  # fmt: skip
        if same and set(options.explainers) <= set(results.get("explanations", {})):
            return results
    return evaluate(options)


def _grids_record(path: Path, geometry: str) -> dict[str, Any]:
    """What a results.json's ``gridpg`` section says of the grids it was scored on."""
    from scouter.data.grids import load_grids

    grids = load_grids(path)
    return {"geometry": geometry, "eligible_images": grids.eligible_images, **_selection(grids)}


def score(
    entry: dict[str, Any],
    explainer: str,
    args: argparse.Namespace,
    files: dict[int, tuple[Path, Path]],
) -> tuple[dict[str, Any], dict[int, Any]]:
    """One (model, explainer): GridPG per size on the shared grids (the subset if costly), then
    the image metrics. Runs in a worker process under ``--jobs``.

    Returns:
        The leaderboard row and ``{size: (per-cell scores, chance)}``.
    """
    from scouter.evaluation import EvaluationOptions

    out, run = Path(args.out), entry["run"]
    costly = explainer in args.costly
    row: dict[str, Any] = {"model": entry["label"], "run": run, "explainer": explainer,
                           "checkpoint": str(entry["checkpoint"]),
                           "grids": "subset" if costly else "all"}  # fmt: skip
    base = dict(checkpoint=entry["checkpoint"], config=entry["config"], explainers=[explainer],
                device=args.device, progress=False, seed=args.seed)  # fmt: skip
    cells: dict[int, Any] = {}
    for size in args.sizes:
        grids_file = files[size][1 if costly else 0]
        folder = out / "runs" / run / explainer / f"gridpg_{size}x{size}{_suffix(args)}"
        results = evaluate_once(EvaluationOptions(
            **base, out=folder, metrics=["gridpg"], gridpg_grids=grids_file,
            gridpg_geometry=args.geometry,
        ), {"gridpg": _grids_record(grids_file, args.geometry)})  # fmt: skip
        summary = results["explanations"][explainer]["metrics"]["gridpg"]
        row[f"gridpg_{size}"] = summary
        row[f"seconds_per_cell_{size}"] = (
            results["evaluation"]["seconds"] / results["gridpg"]["cells"]
        )
        cells[size] = (_cells(folder, explainer), summary.get("chance"))
    image_metrics = ["insertion", "deletion"] + (["precision"] if entry["has_regions"] else [])
    folder = out / "runs" / run / explainer / "images"
    limit = args.costly_images if costly else args.image_limit
    results = evaluate_once(EvaluationOptions(**base, out=folder, metrics=image_metrics,
                                              limit=limit),
                            {"evaluation": {"limit": limit}})  # fmt: skip
    for metric, summary in results["explanations"][explainer]["metrics"].items():
        row[metric] = summary["value"]
    row["images"] = results["num_images"]
    # Area needs the maps only (no perturbation passes): its own run on the same images, so image
    # runs made without it are reused and the column costs one map per image.
    results = evaluate_once(EvaluationOptions(**base, out=out / "runs" / run / explainer / "area",
                                              metrics=["area"], limit=limit),
                            {"evaluation": {"limit": limit}})  # fmt: skip
    row["area"] = results["explanations"][explainer]["metrics"]["area"]["value"]
    return row, cells


def _suffix(args: argparse.Namespace) -> str:
    """File-name suffix of a geometry's GridPG outputs (none for the default, ``rescale``)."""
    return "" if args.geometry == "rescale" else f"_{args.geometry}"


def instances(specs: list[str]) -> list[dict[str, Any]]:
    """The ``--model`` arguments as models to score. A label given several times is several
    trained instances (seeds) of one model, pooled into one row per explainer: each instance's
    runs go to ``runs/<label>/<i>/`` (``i``: its position among them), a label given once keeps
    ``runs/<label>/``."""
    parsed = [parse_model(spec) for spec in specs]
    labels = [label for label, _, _ in parsed]
    models = []
    for label, checkpoint, config in parsed:
        index = sum(1 for m in models if m["label"] == label)
        run = label if labels.count(label) == 1 else f"{label}/{index}"
        models.append({"label": label, "run": run, "checkpoint": checkpoint, "config": config})
    seen: dict[Path, str] = {}
    for model in models:
        other = seen.setdefault(Path(model["checkpoint"]).resolve(), model["run"])
        if other != model["run"]:
            raise SystemExit(
                f"--model {model['label']}: checkpoint {str(model['checkpoint'])!r} is given twice "
                f"(also as {other}); each --model must be another trained model (a repeated label "
                f"is another seed of that model)"
            )
    return models


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the grids, evaluate every (model instance, explainer), write the table and figures."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from bench.localisation_table import write_outputs

    out = Path(args.out)
    models = instances(args.model)
    files = build_shared_grids(models, args, out)
    tasks = [({k: v for k, v in entry.items() if k != "model"}, explainer)
             for entry in models for explainer in explainers_for(entry["model"], args.explainers)]  # fmt: skip
    if args.jobs > 1:
        # Worker processes, one thread each: main() set OMP/MKL_NUM_THREADS=1 (bench/runs.py
        # one_thread_per_process), which the spawned workers' torch reads; spawned, so no forked
        # torch state.
        with ProcessPoolExecutor(max_workers=args.jobs,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:  # fmt: skip
            futures = [pool.submit(score, entry, explainer, args, files[entry["run"]])
                       for entry, explainer in tasks]  # fmt: skip
            results = [future.result() for future in futures]
    else:
        results = [score(entry, explainer, args, files[entry["run"]])
                   for entry, explainer in tasks]  # fmt: skip
    settings = {k: v for k, v in vars(args).items() if k != "func"}
    grids = {m: {s: [str(p) for p in f] for s, f in v.items()} for m, v in files.items()}
    return write_outputs(out, _suffix(args), settings, grids, [row for row, _ in results],
                         [cells for _, cells in results], args.sizes, args.geometry)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True,
                        metavar="LABEL=CHECKPOINT,CONFIG",
                        help="a model to compare (repeat; a repeated LABEL is another seed of that "
                             "model, pooled into one row)")  # fmt: skip
    parser.add_argument("--out", default="bench/localisation")
    parser.add_argument("--explainers", type=lambda s: s.split(","), default=None,
                        help="comma-separated (default: every registered one the model can use)")  # fmt: skip
    parser.add_argument("--costly", type=lambda s: s.split(","), default=list(COSTLY),
                        help="methods scored on the grid subset only")  # fmt: skip
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[2, 3])
    parser.add_argument("--geometry", default="rescale", choices=("rescale", "tile"))
    parser.add_argument("--threshold", type=float, default=0.99)
    parser.add_argument("--count", type=int, default=100, help="grids per size")
    parser.add_argument("--costly-grids", type=int, default=20, help="the costly subset's grids")
    parser.add_argument("--image-limit", type=int, default=200,
                        help="test images for insertion / deletion / precision")  # fmt: skip
    parser.add_argument("--costly-images", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--select-limit", type=int, default=None,
                        help="draw the grids' images from the first N test images only (default: "
                             "all); every model forwards only these to decide which it classifies "
                             "confidently")  # fmt: skip
    parser.add_argument("--device", default="auto")
    parser.add_argument("--jobs", type=int, default=1,
                        help="(model, explainer) runs side by side, one thread each")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from bench.runs import one_thread_per_process

    args = build_parser().parse_args(argv)
    one_thread_per_process(args.jobs)
    return run(args)


if __name__ == "__main__":
    main()
