"""Shared by the benchmarks that drive ``train.py`` / ``evaluate.py`` as subprocesses (ablation,
recipes, reproduce): config merging and a logged, checked subprocess call. No torch import, so
the drivers stay light."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


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


def run_logged(cmd: list[str], log: Path, cwd: Path = REPO) -> None:
    """Run ``cmd`` in ``cwd`` with its output in ``log``; raise naming the log if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        result = subprocess.run(cmd, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed; see {log}")
