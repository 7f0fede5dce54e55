"""bench/recipes.py: the arithmetic and decisions of the recipes benchmark, and a smoke run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench import recipes, runs
from scouter.data.idx import FASHION_MNIST_ROOT

REPO = Path(__file__).resolve().parents[2]


def _row(model: str, explainer: str, seed: int, **values: float) -> dict:
    row = {"dataset": "composites", "model": model, "explainer": explainer, "seed": seed}
    row.update({m: None for m in recipes.METRICS}, train_seconds=10.0)
    row.update(values)
    return row


def test_aggregate_is_the_mean_and_sample_std_over_seeds():
    rows = [
        _row("fc", "gradcam", 0, accuracy=0.70, precision=0.40),
        _row("fc", "gradcam", 1, accuracy=0.74, precision=0.44),
        _row("fc", "gradcam", 2, accuracy=0.72, precision=float("nan")),  # NaN is left out
    ]
    (summary,) = recipes.aggregate(rows)
    assert summary["n"] == 3
    mean, std = summary["accuracy"]
    assert mean == pytest.approx(0.72) and std == pytest.approx(0.02)  # sqrt(0.0008 / 2)
    mean, std = summary["precision"]
    assert mean == pytest.approx(0.42) and std == pytest.approx(math.sqrt(0.0008))


def test_targets_pass_and_fail_on_the_measured_means():
    rows = [
        _row("fc", "gradcam", 0, accuracy=0.80, precision=0.40, area=0.30),
        _row("scouter_pos", "slot", 0, accuracy=0.785, precision=0.45, area=0.25),
        _row("scouter_pos", "slot_contribution", 0, accuracy=0.785, precision=0.39, area=0.2),
        _row("scouter_neg", "slot", 0, accuracy=0.70, precision=0.20, area=0.20),
    ]
    checks = {
        what: passed for what, _, passed in recipes.targets(recipes.aggregate(rows), "composites")
    }
    assert checks == {
        "SCOUTER+ accuracy ≥ FC − 0.02": True,
        "SCOUTER+ precision (slot) > FC Grad-CAM's, with a smaller area": True,
        "SCOUTER+ precision (slot_contribution) > FC Grad-CAM's, with a smaller area": False,
        "SCOUTER− accuracy ≥ FC − 0.02": False,
    }
    rows[1]["area"] = 0.35  # more precise but larger: the target needs both
    checks = {
        what: passed for what, _, passed in recipes.targets(recipes.aggregate(rows), "composites")
    }
    assert not checks["SCOUTER+ precision (slot) > FC Grad-CAM's, with a smaller area"]


def test_the_two_best_other_explainers_are_chosen_by_precision():
    precisions = {
        "gradcam": 0.9,
        "ig": 0.33,
        "saliency": 0.28,
        "cam": float("nan"),
        "gradcam++": 0.30,
    }
    assert recipes.select_explainers(precisions) == ["ig", "gradcam++"]


def test_run_config_sets_seed_profile_and_own_folders(tmp_path):
    for model in recipes.MODELS:
        base = yaml.safe_load((REPO / "configs" / "composites" / f"{model}.yaml").read_text())
        config = recipes.run_config(base, "composites", 2, "cpu", tmp_path / model, "cpu")
        assert config["seed_everything"] == 2
        assert config["trainer"]["max_epochs"] == 3
        assert config["data"]["dataset_options"] == {
            "num_samples": 2000,
            "image_size": 128,
            "clutter": 2,
        }
        (callback,) = [c for c in config["trainer"]["callbacks"] if "Checkpoint" in c["class_path"]]
        assert callback["init_args"]["dirpath"] == str(tmp_path / model / "checkpoints")
        assert all(
            log["init_args"]["save_dir"] == str(tmp_path / model / "runs")
            for log in config["trainer"]["logger"]
        )
        # The recipe itself is the shipped one: only the budget changes.
        assert config["model"] == base["model"]
        assert ("fc_warmup_epochs" in config["model"]) == (model != "fc")
    fmnist = yaml.safe_load((REPO / "configs" / "fashion_mnist" / "fc.yaml").read_text())
    config = recipes.run_config(fmnist, "fashion_mnist", 0, "cpu", tmp_path, "cpu")
    assert config["data"]["dataset_options"]["object_masks"] is True


def test_cpu_shipped_profile_changes_only_what_a_cpu_needs(tmp_path):
    for model in recipes.MODELS:
        base = yaml.safe_load((REPO / "configs" / "composites" / f"{model}.yaml").read_text())
        config = recipes.run_config(base, "composites", 1, "cpu-shipped", tmp_path, "cpu")
        # The shipped data size, epochs and recipe...
        assert config["model"] == base["model"]
        assert config["data"]["dataset_options"] == base["data"]["dataset_options"]
        assert config["data"]["dataset_options"]["num_samples"] == 20000
        assert config["trainer"]["max_epochs"] == base["trainer"]["max_epochs"] == 4
        # ...validated on 16 batches by one loader worker, on the CPU.
        assert config["trainer"]["limit_val_batches"] == 16
        assert config["data"]["num_workers"] == 1
        assert config["trainer"]["accelerator"] == "cpu"
        # Nothing else differs from the `shipped` profile's run of the same seed and folder.
        shipped = recipes.run_config(base, "composites", 1, "shipped", tmp_path, "cpu")
        config["trainer"] = {k: v for k, v in config["trainer"].items() if k != "limit_val_batches"}
        for key in ("accelerator", "devices"):
            config["trainer"][key] = shipped["trainer"][key]
        config["data"]["num_workers"] = shipped["data"]["num_workers"]
        assert config == shipped


def test_each_profile_writes_to_its_own_folder():
    # A --profile shipped run in the cpu profile's folder would find its configs changed and
    # retrain over that profile's runs.
    assert recipes.default_out("cpu") == REPO / "bench" / "recipes"
    assert recipes.default_out("cpu-shipped") == REPO / "bench" / "recipes-cpu-shipped"
    outs = {recipes.default_out(profile) for profile in recipes.PROFILES}
    assert len(outs) == len(recipes.PROFILES)


def _finished_run(tmp_path, monkeypatch) -> tuple[recipes.Run, list]:
    """A run trained once (train.py replaced by a stub that records its calls)."""
    calls: list = []
    monkeypatch.setattr(runs, "run_logged", lambda cmd, log: calls.append(cmd) or 1.0)
    args = type("Args", (), {"out": tmp_path, "profile": "cpu", "device": "cpu"})()
    run = recipes.Run("composites", "fc", 0, args)
    run.train()
    assert len(calls) == 1 and run.timing.is_file()
    (run.dir / "results" / "maps").mkdir(parents=True)
    return run, calls


def test_a_finished_run_is_not_trained_again(tmp_path, monkeypatch):
    run, calls = _finished_run(tmp_path, monkeypatch)
    run.train()
    assert len(calls) == 1 and (run.dir / "results" / "maps").is_dir()


def test_a_run_whose_shipped_config_changed_is_trained_again(tmp_path, monkeypatch):
    run, calls = _finished_run(tmp_path, monkeypatch)
    config = yaml.safe_load(run.config.read_text())
    config["model"]["lr"] = 7.0  # what the run was trained with differs from the configs
    run.config.write_text(yaml.safe_dump(config, sort_keys=False))
    run.train()
    assert len(calls) == 2
    assert not (run.dir / "results").exists()  # its old evaluations are gone with it
    assert yaml.safe_load(run.config.read_text())["model"]["lr"] != 7.0


@pytest.mark.slow
@pytest.mark.skipif(
    not Path(FASHION_MNIST_ROOT).is_dir(),
    reason="Debian package dataset-fashion-mnist not installed (README install step)",
)
def test_smoke_profile_trains_evaluates_and_resumes(tmp_path):
    """The whole pipeline through train.py and evaluate.py, on a few Fashion-MNIST batches.

    FC and SCOUTER+ only: SCOUTER− runs the same code with another config, and each of its four
    processes (train, three evaluations) would add mostly start-up time to the suite."""
    out = tmp_path / "recipes"
    cmd = [
        sys.executable,
        str(REPO / "bench" / "recipes.py"),
        "--profile", "smoke", "--datasets", "fashion_mnist", "--seeds", "0",
        "--models", "fc,scouter_pos", "--fc-candidates", "cam,saliency,gradcam++", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, cwd=REPO, env=env, capture_output=True, timeout=1200)

    rows = json.loads((out / "results.json").read_text())
    pairs = sorted((r["model"], r["explainer"]) for r in rows)
    # Grad-CAM plus the two best candidates for FC; SCOUTER± by both of their own maps.
    fc_explainers = [e for m, e in pairs if m == "fc"]
    assert "gradcam" in fc_explainers and len(fc_explainers) == 3
    assert [p for p in pairs if p[0] != "fc"] == [
        (model, explainer) for model in ("scouter_pos",) for explainer in recipes.SCOUTER_EXPLAINERS
    ]
    assert recipes.SCOUTER_EXPLAINERS == ("slot", "slot_contribution")
    for row in rows:
        assert set(row) == {"dataset", "model", "explainer", "seed", *recipes.METRICS,
                            "train_seconds"}  # fmt: skip
        assert 0.0 <= row["accuracy"] <= 1.0 and row["train_seconds"] > 0
        assert 0.0 < row["area"] <= 1.0 and 0.0 <= row["precision"] <= 1.0
    table = (out / "results.md").read_text()
    assert "SCOUTER+ accuracy ≥ FC − 0.02" in table
    assert (out / "precision_vs_accuracy.png").stat().st_size > 0

    # Rerun: everything is reused, nothing retrained.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.ckpt")}
    subprocess.run(cmd, check=True, cwd=REPO, env=env, capture_output=True, timeout=600)
    assert stamps and {p: p.stat().st_mtime_ns for p in out.rglob("*.ckpt")} == stamps
    assert json.loads((out / "results.json").read_text()) == rows
