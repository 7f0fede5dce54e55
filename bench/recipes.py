"""The benchmark that proves the shipped recipes: FC vs SCOUTER+ vs SCOUTER−, over seeds, measured.

For every dataset, model (``fc``, ``scouter_pos``, ``scouter_neg``) and seed, the shipped
``configs/<dataset>/<model>.yaml`` is trained with ``python train.py fit`` and its best checkpoint
evaluated with ``python evaluate.py``: accuracy on the test split, and area, precision, insertion
and deletion of the explanations. SCOUTER models are explained by their own maps (``slot``); FC
models post hoc by Grad-CAM **and** the two other post-hoc explainers with the best precision on
the first seed's FC model (every post-hoc explainer of the registry is tried; one that fails or
runs past ``--select-timeout`` is skipped with its reason). The choice is saved in
``<out>/<dataset>/fc_explainer_selection.json`` and reused for all seeds.

Only ``seed_everything`` changes between seeds (weight initialisation, dropout); ``data.seed``
stays as shipped, so every seed sees the same images, split, order and augmentation.

    python bench/recipes.py --profile cpu                     # both datasets, 3 seeds, 2 CPU cores
    python bench/recipes.py --profile shipped --device cuda   # the configs as shipped, on a GPU
    python bench/recipes.py --profile smoke --datasets fashion_mnist --seeds 0 \\
        --fc-explainers gradcam --out /tmp/recipes-smoke     # the plumbing, in minutes
    python bench/recipes.py --models fc --fc-explainers gradcam,ig,saliency

Profiles (``PROFILES``; ``MEASUREMENT`` is added in every profile):

* ``shipped``: the configs unchanged (what the GPU run measures).
* ``cpu``: what 2 CPU cores afford. Composites: 3 000 composites per split (instead of 20 000) at
  128 px with 2 clutter patches, 3 epochs, 16 validation batches, 1 data worker; SCOUTER models
  train the FC head for 1 epoch first (``model.fc_warmup_epochs: 1``), then the xSlot head for 2.
  Fashion-MNIST: the shipped demo configs (one epoch of ``test_resnet``).
* ``smoke``: 64 composites / 2 Fashion-MNIST batches, 1 epoch (2 for the composites SCOUTER models,
  one FC warm-up epoch then one xSlot epoch), 2 validation batches; 32 test images for accuracy and
  8 for the maps.

Outputs, rewritten after every run so an interrupted sweep keeps its rows:

* ``<out>/results.json``: rows ``{dataset, model, explainer, seed, accuracy, area, precision,
  insertion, deletion, train_seconds}`` (FC: one row per explainer, the same accuracy);
* ``<out>/results.md``: the protocol, and per dataset mean ± std over seeds, the targets with
  PASS/FAIL and the FC-explainer selection;
* ``<out>/precision_vs_accuracy.png``.

Per run ``<dataset>/<model>-seed<N>``: ``<out>/configs/`` (the derived YAML), ``checkpoints/``,
``runs/`` (CSV/TensorBoard logs), ``logs/`` (process logs, training time), ``results/``
(``evaluate.py`` outputs). Resume: a training is finished when its training-time file, a best
checkpoint and an identical derived config exist; an evaluation when its ``results.json`` exists
(folders name their image limits). Anything else is redone from a clean folder, so rerunning the
same command after an interruption, a failure or a config change does only what is missing.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("composites", "fashion_mnist")
MODELS = ("fc", "scouter_pos", "scouter_neg")
EXPLANATION_METRICS = ("area", "precision", "insertion", "deletion")
METRICS = ("accuracy", *EXPLANATION_METRICS)
MODEL_NAMES = {"fc": "FC", "scouter_pos": "SCOUTER+", "scouter_neg": "SCOUTER−"}
ACCURACY_MARGIN = 0.02

# --- the protocol: every change to the shipped configs, in one place ------------------------------

# Needed to measure at all, in every profile: Fashion-MNIST has no object masks of its own, so
# precision uses the item's pixels above a threshold (as bench/reproduce.py does).
MEASUREMENT: dict[str, dict[str, Any]] = {
    "fashion_mnist": {"data": {"dataset_options": {"object_masks": True}}},
}

# profile -> dataset -> {"all": changes for every model, "scouter": extra changes for SCOUTER±}.
# FC models never get "scouter" changes (fc_warmup_epochs means nothing for an FC head).
PROFILES: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "shipped": {},
    "cpu": {
        "composites": {
            "all": {
                "trainer": {"max_epochs": 3, "limit_val_batches": 16},
                "data": {
                    "num_workers": 1,
                    "dataset_options": {"num_samples": 3000, "image_size": 128, "clutter": 2},
                },
            },
            "scouter": {"model": {"fc_warmup_epochs": 1}},
        },
        "fashion_mnist": {"all": {}},
    },
    "smoke": {
        "composites": {
            "all": {
                "trainer": {"max_epochs": 1, "limit_val_batches": 2},
                "data": {
                    "num_workers": 0,
                    "dataset_options": {"num_samples": 64, "image_size": 128, "clutter": 2},
                },
            },
            # One FC warm-up epoch, then one xSlot epoch: the two-stage path is exercised too.
            "scouter": {"trainer": {"max_epochs": 2}, "model": {"fc_warmup_epochs": 1}},
        },
        "fashion_mnist": {
            "all": {"trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 2}}
        },
    },
}

# Evaluation budget per profile; each value is the default of the CLI option of the same name.
EVAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "shipped": {"acc_limit": None, "map_limit": 500, "select_limit": 100, "select_timeout": 3600},
    "cpu": {"acc_limit": None, "map_limit": 500, "select_limit": 100, "select_timeout": 600},
    "smoke": {"acc_limit": 32, "map_limit": 8, "select_limit": 8, "select_timeout": 120},
}


# --- pure functions --------------------------------------------------------------------------------


def merge(*parts: dict) -> dict:
    """Deep-merge nested dicts into a new dict, later parts winning (inputs are not modified)."""
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def profile_changes(profile: str, dataset: str, model: str) -> dict:
    """The changes ``profile`` makes to ``configs/<dataset>/<model>.yaml`` (measurement included)."""
    entry = PROFILES[profile].get(dataset, {})
    parts = [MEASUREMENT.get(dataset, {}), entry.get("all", {})]
    if model != "fc":
        parts.append(entry.get("scouter", {}))
    return merge(*parts)


@dataclass(frozen=True)
class RunPaths:
    """Where one (dataset, model, seed) keeps its files under ``out``."""

    out: Path
    dataset: str
    model: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.model}-seed{self.seed}"

    @property
    def config(self) -> Path:
        return self.out / "configs" / self.dataset / f"{self.name}.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints" / self.dataset / self.name

    @property
    def runs(self) -> Path:
        return self.out / "runs" / self.dataset / self.name

    @property
    def logs(self) -> Path:
        return self.out / "logs" / self.dataset

    @property
    def timing(self) -> Path:
        return self.logs / f"{self.name}.train_seconds"

    @property
    def results(self) -> Path:
        return self.out / "results" / self.dataset / self.name


def derive_config(
    base: dict, dataset: str, model: str, seed: int, profile: str, paths: RunPaths, device: str
) -> dict:
    """The config of one run: shipped ``base`` + profile, its seed, device and own folders."""
    config = merge(base, profile_changes(profile, dataset, model))
    config["seed_everything"] = seed
    trainer = config["trainer"]
    trainer["enable_progress_bar"] = False
    trainer["accelerator"] = "gpu" if device.startswith("cuda") else "cpu"
    trainer["devices"] = 1
    for logger in trainer.get("logger") or []:
        logger.setdefault("init_args", {})["save_dir"] = str(paths.runs)
    for callback in trainer.get("callbacks") or []:
        if callback["class_path"].endswith("Checkpoint"):
            callback.setdefault("init_args", {})["dirpath"] = str(paths.checkpoints)
    return config


def best_checkpoint(folder: Path) -> Path | None:
    """The best checkpoint in ``folder``: a ``*.ckpt`` other than ``last.ckpt`` (newest if several)."""
    found = [p for p in folder.glob("*.ckpt") if p.name != "last.ckpt"] if folder.is_dir() else []
    return max(found, key=lambda p: (p.stat().st_mtime, p.name)) if found else None


def is_trained(paths: RunPaths, config: dict) -> bool:
    """Whether ``paths`` holds a finished training of exactly ``config``.

    The training-time file is written only after ``train.py`` exits cleanly, so a run killed
    mid-way has none; a changed profile or shipped config shows as a different stored config.
    """
    if not paths.timing.is_file() or best_checkpoint(paths.checkpoints) is None:
        return False
    if not paths.config.is_file():
        return False
    return yaml.safe_load(paths.config.read_text()) == config


def _value(doc: dict, metric: str) -> float | None:
    value = doc.get("metrics", {}).get(metric, {}).get("value")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None  # NaN (e.g. no masks) is "not measured" in the rows
    return float(value)


def make_row(
    dataset: str,
    model: str,
    seed: int,
    explainer: str,
    accuracy: dict,
    explained: dict,
    train_seconds: float,
) -> dict:
    """One results.json row from ``evaluate.py``'s accuracy and explanation documents."""
    row: dict[str, Any] = {"dataset": dataset, "model": model, "explainer": explainer, "seed": seed}
    row["accuracy"] = _value(accuracy, "accuracy")
    docs = explained["explanations"]
    # evaluate.py keys by the canonical name; an alias given on the command line (grad_cam) differs.
    doc = docs[explainer] if explainer in docs else next(iter(docs.values()))
    for metric in EXPLANATION_METRICS:
        row[metric] = _value(doc, metric)
    row["train_seconds"] = round(train_seconds, 1)
    return row


def sort_rows(rows: list[dict]) -> list[dict]:
    """Rows in table order: dataset, model (FC, SCOUTER+, SCOUTER−), explainer, seed."""
    order = {m: i for i, m in enumerate(MODELS)}
    return sorted(
        rows,
        key=lambda r: (
            r["dataset"],
            order.get(r["model"], 9),
            r["explainer"] != "gradcam",
            r["explainer"],
            r["seed"],
        ),
    )


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1); NaN where undefined (no values / one value)."""
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and sample std over seeds of every metric per (dataset, model, explainer).

    Missing values (None/NaN) are left out of their metric only. Returns summaries in table
    order, each ``{dataset, model, explainer, n, <metric>: (mean, std), train_seconds: ...}``.
    """
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in sort_rows(rows):
        groups.setdefault((row["dataset"], row["model"], row["explainer"]), []).append(row)
    summaries = []
    for (dataset, model, explainer), members in groups.items():
        summary: dict[str, Any] = {"dataset": dataset, "model": model, "explainer": explainer}
        summary["n"] = len({m["seed"] for m in members})
        for metric in (*METRICS, "train_seconds"):
            values = [m.get(metric) for m in members]
            summary[metric] = mean_std(
                [float(v) for v in values if v is not None and not math.isnan(v)]
            )
        summaries.append(summary)
    return summaries


def targets(summaries: list[dict], dataset: str) -> list[tuple[str, str, str]]:
    """The recipe targets on ``dataset``: ``(target, measured, "PASS" | "FAIL" | "n/a")``.

    Compared on the means over seeds: SCOUTER± accuracy ≥ FC accuracy − 0.02, and SCOUTER+'s own
    maps more precise than Grad-CAM on FC with a smaller area. ``n/a``: a side was not measured.
    """
    by = {(s["model"], s["explainer"]): s for s in summaries if s["dataset"] == dataset}
    fc_any = next((s for s in summaries if s["dataset"] == dataset and s["model"] == "fc"), None)
    fc_gradcam = by.get(("fc", "gradcam"))
    pos, neg = by.get(("scouter_pos", "slot")), by.get(("scouter_neg", "slot"))

    def measured(*values: float) -> bool:
        return all(not math.isnan(v) for v in values)

    checks = []
    for name, scouter in (("SCOUTER+", pos), ("SCOUTER−", neg)):
        what = f"{name} accuracy ≥ FC accuracy − {ACCURACY_MARGIN:g}"
        if scouter is None or fc_any is None:
            checks.append((what, "not measured", "n/a"))
            continue
        a, b = scouter["accuracy"][0], fc_any["accuracy"][0]
        if not measured(a, b):
            checks.append((what, "not measured", "n/a"))
            continue
        ok = a >= b - ACCURACY_MARGIN - 1e-12  # float noise must not fail an exact tie
        checks.append((what, f"{a:.3f} vs {b:.3f} − {ACCURACY_MARGIN:g}", "PASS" if ok else "FAIL"))
    what = "SCOUTER+ precision > Grad-CAM precision on FC, with a smaller area"
    if pos is None or fc_gradcam is None:
        checks.append((what, "not measured", "n/a"))
    else:
        p, q = pos["precision"][0], fc_gradcam["precision"][0]
        s, t = pos["area"][0], fc_gradcam["area"][0]
        if not measured(p, q, s, t):
            checks.append((what, "not measured", "n/a"))
        else:
            text = f"precision {p:.3f} vs {q:.3f}, area {s:.3f} vs {t:.3f}"
            checks.append((what, text, "PASS" if p > q and s < t else "FAIL"))
    return checks


def select_explainers(precisions: dict[str, float | None], count: int = 2) -> list[str]:
    """The ``count`` explainers other than Grad-CAM with the highest precision.

    Unmeasured (None/NaN) precisions are not candidates; ties go to the name first in sort order.
    """
    ranked = sorted(
        (
            (-value, name)
            for name, value in precisions.items()
            if name != "gradcam" and value is not None and not math.isnan(value)
        ),
    )
    return [name for _, name in ranked[:count]]


def _cell(pair: tuple[float, float], digits: int = 3) -> str:
    mean, std = pair
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(
    rows: list[dict],
    protocol: list[str],
    selections: dict[str, dict] | None = None,
    skipped: list[dict] | None = None,
) -> str:
    """results.md: the protocol, then per dataset the summary table, targets and FC selection."""
    summaries = aggregate(rows)
    lines = ["# Recipes benchmark (bench/recipes.py)", "", *protocol, ""]
    datasets = sorted({s["dataset"] for s in summaries} | set(selections or {}))
    for dataset in datasets:
        lines += [
            f"## {dataset}",
            "",
            "| model | explainer | n seeds | accuracy | area ↓ | precision ↑ | insertion ↑ "
            "| deletion ↓ | train time |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for s in (s for s in summaries if s["dataset"] == dataset):
            cells = [_cell(s[m]) for m in METRICS]
            seconds = s["train_seconds"]
            train = "–" if math.isnan(seconds[0]) else _cell(seconds, 0) + " s"
            lines.append(
                f"| {MODEL_NAMES.get(s['model'], s['model'])} | {s['explainer']} | {s['n']} | "
                + " | ".join(cells)
                + f" | {train} |"
            )
        lines += ["", "Targets (means over seeds):", "", "| target | measured | |", "|---|---|---|"]
        lines += [f"| {w} | {m} | {r} |" for w, m, r in targets(summaries, dataset)]
        selection = (selections or {}).get(dataset)
        if selection:
            lines += ["", _selection_text(selection)]
        lines.append("")
    if skipped:
        lines += ["## Skipped", ""]
        lines += [f"- {s['what']}: {s['reason']}" for s in skipped]
        lines.append("")
    return "\n".join(lines)


def _selection_text(selection: dict) -> str:
    measured = ", ".join(
        f"{name} {value:.3f}" if value is not None else f"{name} –"
        for name, value in sorted(
            selection["precision"].items(),
            key=lambda kv: -kv[1] if kv[1] is not None else math.inf,
        )
    )
    text = (
        f"FC explainers: Grad-CAM + {', '.join(selection['chosen']) or 'none'}, chosen by "
        f"precision on seed {selection['seed']}'s FC model ({selection['images']} test images): "
        f"{measured}."
    )
    if selection.get("skipped"):
        text += " Skipped: " + "; ".join(f"{k} ({v})" for k, v in selection["skipped"].items())
        text += "."
    return text


def describe_run(config: dict) -> str:
    """One line of a derived config's budget: epochs, warm-up, data and batch limits."""
    trainer, data, model = config["trainer"], config.get("data", {}), config.get("model", {})
    epochs = trainer.get("max_epochs")
    parts = [f"{epochs} epoch{'' if epochs == 1 else 's'}"]
    if model.get("fc_warmup_epochs"):
        parts.append(f"the first {model['fc_warmup_epochs']} with an FC head (fc_warmup_epochs)")
    for key in ("limit_train_batches", "limit_val_batches"):
        if key in trainer:
            parts.append(f"{key} {trainer[key]}")
    parts.append(f"batch {data.get('batch_size')}, {data.get('image_size')} px")
    if data.get("dataset_options"):
        parts.append(f"dataset_options {json.dumps(data['dataset_options'])}")
    return ", ".join(parts)


# --- subprocess plumbing ---------------------------------------------------------------------------


def call(cmd: list[str], log: Path, timeout: float | None = None) -> str | None:
    """Run ``cmd`` from the repository root, output to ``log``; None on success, else why not."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        handle.write(" ".join(cmd) + "\n\n")
        handle.flush()
        # Own process group: a timeout ends the command and its data-loader workers together.
        process = subprocess.Popen(
            cmd, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return f"timed out after {timeout:.0f} s (see {log})"
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)  # Ctrl-C: leave no training behind
            process.wait()
            raise
    if code:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
        last = next((line for line in reversed(lines) if line), "")
        return f"exit {code}: {last[:200]} (see {log})"
    return None


class Sweep:
    """Trains and evaluates the runs of one invocation, reusing whatever is already finished."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: list[dict] = []
        self.skipped: list[dict] = []
        self.selections: dict[str, dict] = {}
        self._selected: dict[str, dict | None] = {}
        self._locks: dict[Any, threading.Lock] = {}
        self._guard = threading.Lock()
        self.protocol = protocol_lines(args)

    def lock(self, key: Any) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def skip(self, what: str, reason: str) -> None:
        print(f"skipped {what}: {reason}", flush=True)
        with self._guard:
            self.skipped.append({"what": what, "reason": reason})

    # -- training ----------------------------------------------------------------------------------

    def config(self, paths: RunPaths) -> dict:
        base = yaml.safe_load(
            (REPO / "configs" / paths.dataset / f"{paths.model}.yaml").read_text()
        )
        return derive_config(
            base, paths.dataset, paths.model, paths.seed, self.args.profile, paths, self.args.device
        )

    def train(self, paths: RunPaths) -> Path | None:
        """The best checkpoint of ``paths``, training it first unless finished; None on failure."""
        with self.lock(("train", paths)):
            config = self.config(paths)
            if not is_trained(paths, config):
                # Whatever is there belongs to an unfinished or different run: start clean.
                for stale in (paths.checkpoints, paths.runs, paths.results):
                    shutil.rmtree(stale, ignore_errors=True)
                paths.timing.unlink(missing_ok=True)
                paths.config.parent.mkdir(parents=True, exist_ok=True)
                paths.config.write_text(yaml.safe_dump(config, sort_keys=False))
                print(f"training {paths.dataset}/{paths.name}", flush=True)
                start = time.perf_counter()
                cmd = [sys.executable, "train.py", "fit", "--config", str(paths.config)]
                failure = call(cmd, paths.logs / f"{paths.name}-fit.log")
                if failure is None and best_checkpoint(paths.checkpoints) is None:
                    failure = f"no best checkpoint in {paths.checkpoints}"
                if failure:
                    self.skip(f"training {paths.dataset}/{paths.name}", failure)
                    return None
                paths.timing.write_text(f"{time.perf_counter() - start:.1f}\n")
            return best_checkpoint(paths.checkpoints)

    # -- evaluation --------------------------------------------------------------------------------

    def evaluate(
        self,
        paths: RunPaths,
        checkpoint: Path,
        name: str,
        options: list[str],
        timeout: float | None = None,
    ) -> tuple[dict | None, str | None]:
        """``evaluate.py`` into ``results/<name>`` unless its results.json exists: (doc, failure)."""
        out = paths.results / name
        if not (out / "results.json").is_file():
            shutil.rmtree(out, ignore_errors=True)  # a half-written folder of a killed evaluation
            cmd = [sys.executable, "evaluate.py", "--checkpoint", str(checkpoint)]
            cmd += ["--config", str(paths.config), "--no-progress", "--device", self.args.device]
            cmd += [*options, "--out", str(out)]
            failure = call(cmd, paths.logs / f"{paths.name}-{name}.log", timeout)
            if failure:
                return None, failure
        return json.loads((out / "results.json").read_text()), None

    def fc_explainers(self, dataset: str) -> list[str]:
        """Grad-CAM + the selected (or given) explainers for the FC models of ``dataset``."""
        if self.args.fc_explainers != "auto":
            return self.args.fc_explainers.split(",")
        with self.lock(("select", dataset)):
            if dataset not in self._selected:  # once per invocation, also when it failed
                self._selected[dataset] = self.select(dataset)
            selection = self._selected[dataset]
        if selection is None:
            return ["gradcam"]
        return ["gradcam", *selection["chosen"]]

    def select(self, dataset: str) -> dict | None:
        """Precision of every post-hoc explainer on the first seed's FC model; the two best."""
        seed = self.args.seeds[0]
        paths = RunPaths(self.args.out, dataset, "fc", seed)
        checkpoint = self.train(paths)
        if checkpoint is None:
            return None
        file = self.args.out / dataset / "fc_explainer_selection.json"
        # Path and modification time: a retrained run may write a checkpoint of the same name.
        relative = f"{os.path.relpath(checkpoint, self.args.out)}@{checkpoint.stat().st_mtime_ns}"
        limit = self.args.select_limit
        if file.is_file():
            saved = json.loads(file.read_text())
            same = (saved.get("checkpoint"), saved.get("images"), saved.get("timeout_seconds"))
            if same == (relative, limit, self.args.select_timeout):
                self.selections[dataset] = saved
                return saved
        precisions: dict[str, float | None] = {}
        skipped: dict[str, str] = {}
        for name in posthoc_explainers():
            print(f"selection {dataset}: {name}", flush=True)
            doc, failure = self.evaluate(
                paths,
                checkpoint,
                f"select-{_safe(name)}-n{limit}",
                ["--explainers", name, "--metrics", "precision", "--limit", str(limit)],
                timeout=self.args.select_timeout,
            )
            if failure:
                skipped[name] = failure
                continue
            precisions[name] = _value(doc["explanations"][name], "precision")
            if precisions[name] is None:
                skipped[name] = "precision not measured (NaN)"
        selection = {
            "dataset": dataset,
            "seed": seed,
            "checkpoint": relative,
            "images": limit,
            "timeout_seconds": self.args.select_timeout,
            "precision": precisions,
            "skipped": skipped,
            "chosen": select_explainers(precisions),
        }
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(selection, indent=2) + "\n")
        self.selections[dataset] = selection
        return selection

    def run(self, paths: RunPaths) -> list[dict]:
        """Train (or reuse) one run and evaluate it; its rows (none if it failed)."""
        checkpoint = self.train(paths)
        if checkpoint is None:
            return []
        args = self.args
        acc_name = f"accuracy-n{args.acc_limit}" if args.acc_limit else "accuracy-all"
        acc_options = ["--metrics", "accuracy"]
        acc_options += ["--limit", str(args.acc_limit)] if args.acc_limit else []
        accuracy, failure = self.evaluate(paths, checkpoint, acc_name, acc_options)
        if failure:
            self.skip(f"accuracy of {paths.dataset}/{paths.name}", failure)
            return []
        explainers = self.fc_explainers(paths.dataset) if paths.model == "fc" else ["slot"]
        train_seconds = float(paths.timing.read_text())
        rows = []
        for explainer in explainers:
            doc, failure = self.evaluate(
                paths,
                checkpoint,
                f"explain-{_safe(explainer)}-n{args.map_limit}",
                ["--explainers", explainer, "--metrics", ",".join(EXPLANATION_METRICS)]
                + ["--limit", str(args.map_limit)],
            )
            if failure:
                self.skip(f"{explainer} on {paths.dataset}/{paths.name}", failure)
                continue
            row = make_row(
                paths.dataset, paths.model, paths.seed, explainer, accuracy, doc, train_seconds
            )
            print(json.dumps(row), flush=True)
            rows.append(row)
        return rows

    def write(self) -> None:
        """Rewrite results.json, results.md and the plot from the rows so far."""
        out = self.args.out
        out.mkdir(parents=True, exist_ok=True)
        rows = sort_rows(self.rows)
        (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
        text = markdown(rows, self.protocol, self.selections, self.skipped)
        (out / "results.md").write_text(text)
        if rows:
            plot(rows, out / "precision_vs_accuracy.png")


def _safe(name: str) -> str:
    """An explainer name as a folder name (``gradcam++`` → ``gradcampp``)."""
    return name.replace("+", "p")


def posthoc_explainers() -> list[str]:
    """Every registered explainer except SCOUTER's own maps (kind ``attention``)."""
    from scouter.explain import get_explainer, list_explainers

    names = []
    for name in list_explainers():
        try:
            kind = type(get_explainer(name)).kind
        except Exception:  # noqa: BLE001 - an explainer that cannot be built is tried (and skipped) later
            kind = "attention" if name == "slot" else "pixel"
        if kind != "attention":
            names.append(name)
    return names


def machine() -> str:
    """The hardware the numbers were measured on."""
    text = f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPU cores"
    try:
        import torch

        text += f", torch {torch.__version__}"
        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
    except Exception:  # noqa: BLE001 - only for the description
        pass
    return text


def protocol_lines(args: argparse.Namespace) -> list[str]:
    """The protocol paragraph of results.md: command, profile, budget per run, limits, machine."""
    command = (
        f"python bench/recipes.py --profile {args.profile} --datasets {','.join(args.datasets)} "
        f"--models {','.join(args.models)} --seeds {','.join(map(str, args.seeds))} "
        f"--device {args.device} --fc-explainers {args.fc_explainers}"
    )
    lines = [
        f"Command: `{command}`.",
        "",
        f"- Profile `{args.profile}` (`PROFILES` in bench/recipes.py); seeds {args.seeds} "
        "(`seed_everything`; the data's own seed is fixed, so every seed sees the same data).",
    ]
    for dataset in args.datasets:
        for model in args.models:
            paths = RunPaths(args.out, dataset, model, 0)
            base = yaml.safe_load((REPO / "configs" / dataset / f"{model}.yaml").read_text())
            config = derive_config(base, dataset, model, 0, args.profile, paths, args.device)
            lines.append(f"- {dataset} / {model}: {describe_run(config)}.")
    accuracy = (
        f"the first {args.acc_limit} test images" if args.acc_limit else "the whole test split"
    )
    lines += [
        f"- Accuracy on {accuracy}; "
        f"area, precision, insertion and deletion on the first {args.map_limit} test images. "
        "SCOUTER models: their own maps (SCOUTER− explains its least-similar class); FC: Grad-CAM "
        + (
            f"and the two best other post-hoc explainers by precision ({args.select_limit} images)."
            if args.fc_explainers == "auto"
            else f"and the given list ({args.fc_explainers})."
        ),
        f"- Device `{args.device}`; machine: {machine()}.",
    ]
    return lines


def plot(rows: list[dict], path: Path) -> None:
    """Precision vs accuracy per dataset: mean ± std over seeds per model/explainer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = aggregate(rows)
    datasets = sorted({s["dataset"] for s in summaries})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.2), squeeze=False)
    markers = {"fc": "s", "scouter_pos": "o", "scouter_neg": "v"}
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for s in (s for s in summaries if s["dataset"] == dataset):
            (x, dx), (y, dy) = s["accuracy"], s["precision"]
            if math.isnan(x) or math.isnan(y):
                continue
            ax.errorbar(
                x,
                y,
                xerr=0.0 if math.isnan(dx) else dx,
                yerr=0.0 if math.isnan(dy) else dy,
                marker=markers.get(s["model"], "x"),
                linestyle="none",
                capsize=3,
                label=f"{MODEL_NAMES.get(s['model'], s['model'])} · {s['explainer']} (n={s['n']})",
            )
        ax.set_xlabel("test accuracy")
        ax.set_ylabel("precision (explanation mass inside the object) ↑")
        ax.set_title(f"{dataset}: mean ± std over seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The CLI; evaluation limits left unset take the profile's defaults (``EVAL_DEFAULTS``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seed_everything values")
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "recipes")
    parser.add_argument(
        "--fc-explainers",
        default="auto",
        help="auto (Grad-CAM + the two best by precision) or a comma-separated list",
    )
    parser.add_argument(
        "--acc-limit",
        type=int,
        help="test images for accuracy (default: the whole split; smoke: 32)",
    )
    parser.add_argument(
        "--map-limit",
        type=int,
        help="test images for area, precision, insertion, deletion (default 500; smoke: 8)",
    )
    parser.add_argument(
        "--select-limit",
        type=int,
        help="test images for the FC-explainer selection (default 100; smoke: 8)",
    )
    parser.add_argument(
        "--select-timeout",
        type=float,
        help="seconds one explainer may take in the selection (default: cpu 600, shipped 3600, smoke 120)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (one thread each)")
    args = parser.parse_args(argv)
    for key, value in EVAL_DEFAULTS[args.profile].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.out = args.out.resolve()
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.models = [m for m in args.models.split(",") if m]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    for dataset in args.datasets:
        for model in args.models:
            if not (REPO / "configs" / dataset / f"{model}.yaml").is_file():
                parser.error(f"no shipped config configs/{dataset}/{model}.yaml")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the sweep; exit code 1 if anything was skipped."""
    args = parse_args(argv)
    if args.jobs > 1:
        os.environ["OMP_NUM_THREADS"] = "1"  # inherited by train/evaluate: no oversubscription
    sweep = Sweep(args)
    # Seed-major, so the first complete seed lands in the table before the next one starts.
    runs = [
        RunPaths(args.out, dataset, model, seed)
        for seed in args.seeds
        for dataset in args.datasets
        for model in args.models
    ]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(sweep.run, paths): paths for paths in runs}
        for future in as_completed(futures):
            try:
                sweep.rows += future.result()
            except Exception as err:  # noqa: BLE001 - one broken run must not end the sweep
                paths = futures[future]
                sweep.skip(f"{paths.dataset}/{paths.name}", f"{type(err).__name__}: {err}")
            sweep.write()
    sweep.write()
    print((args.out / "results.md").read_text())
    return 1 if sweep.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
