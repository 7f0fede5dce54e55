"""The one run driver of the benchmarks that drive ``train.py`` / ``evaluate.py`` as subprocesses
(ablation, recipes, reproduce, stylex): config merging, a logged and timed subprocess call, and
:class:`Run`, one training run's folders, timed fit done once, best checkpoint and cached
evaluations. Each benchmark is then its variant table and its report. No torch import, so the
drivers stay light."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


class RunFailed(RuntimeError):
    """A driven command exited non-zero; the message names the command, its exit code and log."""

    def __init__(self, cmd: list[str], returncode: int, log: Path) -> None:
        super().__init__(f"{' '.join(map(str, cmd))} failed (exit {returncode}); see {log}")
        self.returncode, self.log = returncode, log


def merge(*parts: dict) -> dict:
    """Deep-merge nested dicts, later parts winning."""
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def run_logged(cmd: list[str], log: Path, cwd: Path = REPO) -> float:
    """Run ``cmd`` in ``cwd`` with its output in ``log``; the seconds it took.

    Raises:
        RunFailed: it exited non-zero (the message names the log).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    # This checkout's package, whatever the cwd and whichever copy is installed.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    start = time.perf_counter()
    with log.open("w") as handle:
        result = subprocess.run(cmd, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if result.returncode:
        raise RunFailed(cmd, result.returncode, log)
    return time.perf_counter() - start


def run_side_by_side(commands: dict[str, tuple[list[str], Path]]) -> dict[str, float]:
    """Run the ``name → (command, log)`` commands at once, one process each; seconds each took
    (wall clock, sharing the machine). Every command finishes before a failure is raised."""
    if not commands:
        return {}
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        futures = {name: pool.submit(run_logged, cmd, log) for name, (cmd, log) in commands.items()}
    return {name: future.result() for name, future in futures.items()}


def one_thread_per_process(jobs: int) -> None:
    """With ``jobs`` > 1 processes side by side, give each (the train.py / evaluate.py processes
    inherit this environment) one thread: with more, each small op waits for a thread the
    scheduler has set aside and they stall each other (bench/RESULTS.md "Test suite threads")."""
    if jobs > 1:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = "1"


def best_checkpoint(checkpoints: Path, fit_log: Path) -> Path:
    """The best checkpoint in ``checkpoints`` (``last.ckpt`` left out; the newest epoch's if
    several: the monitored checkpoints are named by epoch and step)."""
    found = sorted(p for p in checkpoints.glob("*.ckpt") if p.name != "last.ckpt")
    if not found:
        raise RuntimeError(f"{checkpoints} has no best checkpoint; see {fit_log}")
    return found[-1]


def evaluate_command(
    checkpoint: Path,
    config: Path,
    out: Path,
    metrics: str,
    limit: int | None = None,
    explainers: str | None = None,
    device: str = "cpu",
) -> list[str]:
    """The ``evaluate.py`` command of a benchmark: ``checkpoint`` (a .ckpt or a model folder)
    with ``config``, ``--metrics`` into ``out``, on the first ``limit`` images."""
    cmd = [sys.executable, "evaluate.py", "--checkpoint", str(checkpoint)]
    cmd += ["--config", str(config), "--no-progress", "--device", device]
    cmd += ["--metrics", metrics, "--out", str(out)]
    cmd += [] if limit is None else ["--limit", str(limit)]
    cmd += [] if not explainers else ["--explainers", explainers]
    return cmd


def point_folders(config: dict, runs: Path, checkpoints: Path) -> dict:
    """Point a ``train.py`` config's loggers at ``runs`` and its checkpoints at ``checkpoints``
    (no progress bar: the output goes to a log); ``config`` is changed and returned."""
    trainer = config["trainer"]
    trainer["enable_progress_bar"] = False
    for logger in trainer.get("logger", []):
        logger["init_args"]["save_dir"] = str(runs)
    for callback in trainer.get("callbacks", []):
        if callback["class_path"].endswith("ScouterCheckpoint"):
            callback["init_args"]["dirpath"] = str(checkpoints)
    return config


def in_folder(folder: Path) -> dict[str, Any]:
    """The one-folder layout of a :class:`Run` (recipes): ``folder/{config.yaml, fit.seconds,
    fit.log, evaluate-<name>.log, checkpoints/, runs/, results/<name>/}``."""
    return {
        "config": folder / "config.yaml",
        "checkpoints": folder / "checkpoints",
        "runs": folder / "runs",
        "results": folder / "results",
        "log": lambda tag: folder / (f"{tag}.log" if tag == "fit" else f"evaluate-{tag}.log"),
        "timing": folder / "fit.seconds",
    }


def spread(out: Path, name: str) -> dict[str, Any]:
    """The spread layout of a :class:`Run` (ablation, reproduce): each kind of file in its own
    folder, ``out/configs/<name>.yaml``, ``out/{checkpoints,runs,results}/<name>/``,
    ``out/logs/<name>-{fit.seconds, fit.log, <evaluation>.log}`` (``name`` may hold a ``/``)."""
    return {
        "config": out / "configs" / f"{name}.yaml",
        "checkpoints": out / "checkpoints" / name,
        "runs": out / "runs" / name,
        "results": out / "results" / name,
        "log": lambda tag: out / "logs" / f"{name}-{tag}.log",
        "timing": out / "logs" / f"{name}-fit.seconds",
    }


class Run:
    """One ``train.py`` run of a benchmark: its folders, a timed fit done once, its best checkpoint
    and ``evaluate.py`` results, each computed once and reused by a rerun.

    Its paths come from a layout, :func:`in_folder` or :func:`spread` (those of the runs already
    in bench/): ``Run(**spread(out, name), device="cuda")``.

    Args:
        config: where the run's config is written.
        checkpoints / runs: its checkpoint and logger folders.
        results: the folder of its evaluations, one subfolder per evaluation name.
        log: a log's path from its tag (``fit``, or an evaluation's name).
        timing: the file holding the fit's seconds; it exists once the fit finished.
        device: ``evaluate.py --device``.
    """

    def __init__(
        self,
        *,
        config: Path,
        checkpoints: Path,
        runs: Path,
        results: Path,
        log: Callable[[str], Path],
        timing: Path,
        device: str = "cpu",
    ) -> None:
        self.config, self.checkpoints, self.runs, self.results = config, checkpoints, runs, results
        self.log, self.timing, self.device = log, timing, device

    def fit(self, config: dict) -> None:
        """Train ``config`` (pointed at this run's folders) with ``train.py fit``, unless a
        finished fit of the same config is here. A fit killed mid-way, or one whose config has
        changed since, starts again cleanly: its checkpoints, logs and evaluations are removed."""
        text = yaml.safe_dump(
            point_folders(copy.deepcopy(config), self.runs, self.checkpoints), sort_keys=False
        )
        if self.timing.is_file():
            if self.config.is_file() and self.config.read_text() == text:
                return
            print(f"{self.config}: config changed, training again", flush=True)
            self.timing.unlink()
        for stale in (self.checkpoints, self.runs, self.results):
            shutil.rmtree(stale, ignore_errors=True)
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(text)
        cmd = [sys.executable, "train.py", "fit", "--config", str(self.config)]
        seconds = run_logged(cmd, self.log("fit"))
        self.timing.parent.mkdir(parents=True, exist_ok=True)
        self.timing.write_text(f"{seconds:.1f}\n")

    @property
    def seconds(self) -> float:
        """The finished fit's seconds."""
        return float(self.timing.read_text())

    def best(self) -> Path:
        """The best checkpoint (``last.ckpt`` left out; the newest epoch's if several)."""
        return best_checkpoint(self.checkpoints, self.log("fit"))

    def evaluate(
        self,
        name: str,
        metrics: str,
        limit: int | None = None,
        explainers: str | None = None,
    ) -> dict:
        """``evaluate.py --metrics <metrics>`` of the best checkpoint into ``results/<name>``;
        its results.json, reused when it exists and holds every explainer asked for."""
        out = self.results / name
        result = out / "results.json"
        done = json.loads(result.read_text()) if result.is_file() else None
        wanted = set(explainers.split(",")) if explainers else set()
        if done is None or not wanted <= set(done.get("explanations", {})):
            cmd = evaluate_command(
                self.best(), self.config, out, metrics, limit, explainers, self.device
            )
            run_logged(cmd, self.log(name))
            done = json.loads(result.read_text())
        return done
