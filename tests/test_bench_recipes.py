"""bench/recipes.py: config derivation, resume, aggregation, targets and selection (no training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from bench import recipes

REPO = Path(__file__).resolve().parents[1]


def shipped(dataset: str, model: str) -> dict:
    return yaml.safe_load((REPO / "configs" / dataset / f"{model}.yaml").read_text())


def derived(tmp_path: Path, dataset: str, model: str, seed: int = 1, profile: str = "cpu") -> dict:
    paths = recipes.RunPaths(tmp_path, dataset, model, seed)
    return recipes.derive_config(
        shipped(dataset, model), dataset, model, seed, profile, paths, "cpu"
    )


def row(model: str, explainer: str, seed: int, **values: float | None) -> dict:
    out = {"dataset": "composites", "model": model, "explainer": explainer, "seed": seed}
    out.update({m: None for m in recipes.METRICS}, train_seconds=10.0)
    out.update(values)
    return out


# --- config derivation ----------------------------------------------------------------------------


def test_merge_is_deep_and_leaves_its_inputs_alone():
    base = {"a": {"b": 1, "c": [{"d": 2}]}, "e": 3}
    merged = recipes.merge(base, {"a": {"b": 5}, "f": {"g": 6}})
    assert merged == {"a": {"b": 5, "c": [{"d": 2}]}, "e": 3, "f": {"g": 6}}
    merged["a"]["c"][0]["d"] = 99  # lists are copies too
    assert base == {"a": {"b": 1, "c": [{"d": 2}]}, "e": 3}


@pytest.mark.parametrize("model", recipes.MODELS)
def test_cpu_profile_on_composites(tmp_path, model):
    config = derived(tmp_path, "composites", model, seed=2)
    assert config["seed_everything"] == 2
    assert config["trainer"]["max_epochs"] == 3
    assert config["trainer"]["limit_val_batches"] == 16
    assert config["trainer"]["enable_progress_bar"] is False
    assert config["trainer"]["accelerator"] == "cpu"
    assert config["data"]["num_workers"] == 1
    assert config["data"]["dataset_options"] == {
        "num_samples": 3000,
        "image_size": 128,
        "clutter": 2,
    }
    # Only the budget changes: the model section is the shipped recipe (+ the warm-up for SCOUTER).
    expected = dict(shipped("composites", model)["model"])
    if model != "fc":
        expected["fc_warmup_epochs"] = 1
    assert config["model"] == expected


def test_fc_never_gets_the_warm_up(tmp_path):
    for profile in recipes.PROFILES:
        for dataset in recipes.DATASETS:
            assert "fc_warmup_epochs" not in recipes.profile_changes(profile, dataset, "fc")
            assert (
                "fc_warmup_epochs" not in derived(tmp_path, dataset, "fc", profile=profile)["model"]
            )
    assert recipes.profile_changes("cpu", "composites", "scouter_neg")["model"] == {
        "fc_warmup_epochs": 1
    }


def test_every_run_has_its_own_folders_and_the_data_seed_stays(tmp_path):
    seen = set()
    for model in recipes.MODELS:
        for seed in (0, 1, 2):
            config = derived(tmp_path, "fashion_mnist", model, seed=seed)
            paths = recipes.RunPaths(tmp_path, "fashion_mnist", model, seed)
            (checkpoint,) = [
                c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("Checkpoint")
            ]
            assert checkpoint["init_args"]["dirpath"] == str(paths.checkpoints)
            assert {lg["init_args"]["save_dir"] for lg in config["trainer"]["logger"]} == {
                str(paths.runs)
            }
            assert config["data"]["seed"] == shipped("fashion_mnist", model)["data"]["seed"]
            # Fashion-MNIST precision needs object masks, in every profile.
            assert config["data"]["dataset_options"] == {"object_masks": True}
            assert config["trainer"]["max_epochs"] == 1  # the shipped demo schedule
            seen.add(paths.checkpoints)
            seen.add(paths.runs)
    assert len(seen) == 2 * 3 * 3


def test_shipped_profile_changes_only_seed_device_and_folders(tmp_path):
    base = shipped("composites", "scouter_pos")
    config = derived(tmp_path, "composites", "scouter_pos", profile="shipped")
    assert config["model"] == base["model"] and config["data"] == base["data"]
    assert config["trainer"]["max_epochs"] == base["trainer"]["max_epochs"]
    paths = recipes.RunPaths(tmp_path, "composites", "scouter_pos", 0)
    cuda = recipes.derive_config(base, "composites", "scouter_pos", 0, "shipped", paths, "cuda")
    assert (cuda["trainer"]["accelerator"], cuda["trainer"]["devices"]) == ("gpu", 1)


# --- resume ---------------------------------------------------------------------------------------


class FakeArgs:
    profile, device, fc_explainers = "cpu", "cpu", "gradcam"
    datasets, models, seeds = ["composites"], ["fc"], [0]
    acc_limit, map_limit, select_limit, select_timeout = None, 500, 100, 600

    def __init__(self, out: Path) -> None:
        self.out = out


def fake_finished_training(sweep: recipes.Sweep, paths: recipes.RunPaths) -> Path:
    paths.config.parent.mkdir(parents=True)
    paths.config.write_text(yaml.safe_dump(sweep.config(paths), sort_keys=False))
    paths.checkpoints.mkdir(parents=True)
    (paths.checkpoints / "last.ckpt").write_text("")
    best = paths.checkpoints / "fc-epoch002-step000282.ckpt"
    best.write_text("")
    paths.logs.mkdir(parents=True)
    paths.timing.write_text("123.4\n")
    return best


def test_a_finished_run_is_reused_and_an_unfinished_one_is_not(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(recipes, "call", lambda cmd, log, timeout=None: calls.append(cmd))
    sweep = recipes.Sweep(FakeArgs(tmp_path))
    paths = recipes.RunPaths(tmp_path, "composites", "fc", 0)
    best = fake_finished_training(sweep, paths)
    assert recipes.is_trained(paths, sweep.config(paths))
    assert sweep.train(paths) == best
    assert calls == []  # not trained again

    # Killed mid-way (no training-time file): redone from a clean folder.
    paths.timing.unlink()
    assert sweep.train(paths) is None  # the fake train.py left no checkpoint
    assert calls and calls[0][1:3] == ["train.py", "fit"]
    assert not best.exists()


def test_a_changed_config_is_not_reused(tmp_path):
    sweep = recipes.Sweep(FakeArgs(tmp_path))
    paths = recipes.RunPaths(tmp_path, "composites", "fc", 0)
    fake_finished_training(sweep, paths)
    config = sweep.config(paths)
    config["trainer"]["max_epochs"] = 7
    assert not recipes.is_trained(paths, config)


def test_a_finished_evaluation_is_reused(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(recipes, "call", lambda cmd, log, timeout=None: calls.append(cmd))
    sweep = recipes.Sweep(FakeArgs(tmp_path))
    paths = recipes.RunPaths(tmp_path, "composites", "fc", 0)
    best = fake_finished_training(sweep, paths)
    accuracy = {"metrics": {"accuracy": {"value": 0.8}}}
    values = {"area": 0.3, "precision": 0.4, "insertion": 0.6, "deletion": float("nan")}
    explained = {
        "explanations": {"gradcam": {"metrics": {k: {"value": v} for k, v in values.items()}}}
    }
    for name, doc in (("accuracy-all", accuracy), ("explain-gradcam-n500", explained)):
        (paths.results / name).mkdir(parents=True)
        (paths.results / name / "results.json").write_text(json.dumps(doc))
    (found,) = sweep.run(paths)
    assert calls == []
    assert found == {
        "dataset": "composites",
        "model": "fc",
        "explainer": "gradcam",
        "seed": 0,
        "accuracy": 0.8,
        "area": 0.3,
        "precision": 0.4,
        "insertion": 0.6,
        "deletion": None,  # NaN in results.json: not measured
        "train_seconds": 123.4,
    }
    assert recipes.best_checkpoint(paths.checkpoints) == best


# --- aggregation, targets, selection --------------------------------------------------------------


def test_aggregate_is_the_mean_and_sample_std_over_seeds():
    rows = [
        row("fc", "gradcam", 0, accuracy=0.70, precision=0.40, area=0.5),
        row("fc", "gradcam", 1, accuracy=0.74, precision=0.44),
        row("fc", "gradcam", 2, accuracy=0.72, precision=float("nan")),  # left out of precision
        row("scouter_pos", "slot", 0, accuracy=0.60),
    ]
    fc, pos = recipes.aggregate(rows)
    assert (fc["model"], fc["n"], pos["n"]) == ("fc", 3, 1)
    mean, std = fc["accuracy"]
    # (0.70 + 0.74 + 0.72) / 3 = 0.72; ((-0.02)² + 0.02² + 0²) / 2 = 0.0004 → std 0.02
    assert mean == pytest.approx(0.72) and std == pytest.approx(0.02)
    mean, std = fc["precision"]
    assert mean == pytest.approx(0.42) and std == pytest.approx(math.sqrt(0.0008))
    assert fc["area"][0] == pytest.approx(0.5) and math.isnan(fc["area"][1])  # one value
    assert math.isnan(fc["insertion"][0])  # none measured
    assert fc["train_seconds"] == (pytest.approx(10.0), pytest.approx(0.0))


def test_targets_pass():
    rows = [
        row("fc", "gradcam", 0, accuracy=0.80, precision=0.40, area=0.30),
        row("fc", "ig", 0, accuracy=0.80, precision=0.70, area=0.10),  # not the reference
        row("scouter_pos", "slot", 0, accuracy=0.78, precision=0.45, area=0.25),
        row("scouter_neg", "slot", 0, accuracy=0.79, precision=0.10, area=0.90),
    ]
    checks = recipes.targets(recipes.aggregate(rows), "composites")
    assert [verdict for _, _, verdict in checks] == ["PASS", "PASS", "PASS"]


def test_targets_fail():
    rows = [row("fc", "gradcam", s, accuracy=0.80, precision=0.40, area=0.30) for s in (0, 1)] + [
        row("scouter_pos", "slot", 0, accuracy=0.77, precision=0.45, area=0.35),  # larger area
        row("scouter_pos", "slot", 1, accuracy=0.78, precision=0.45, area=0.35),
        row("scouter_neg", "slot", 0, accuracy=0.70),
    ]
    checks = recipes.targets(recipes.aggregate(rows), "composites")
    # SCOUTER+ mean accuracy 0.775 < 0.78; SCOUTER− 0.70; precision higher but area larger.
    assert [verdict for _, _, verdict in checks] == ["FAIL", "FAIL", "FAIL"]
    assert "0.775 vs 0.800" in checks[0][1]


def test_targets_not_measured():
    rows = [row("scouter_pos", "slot", 0, accuracy=0.8, precision=0.5, area=0.2)]
    checks = recipes.targets(recipes.aggregate(rows), "composites")
    assert [verdict for _, _, verdict in checks] == ["n/a", "n/a", "n/a"]


def test_the_two_best_other_explainers_are_chosen_by_precision():
    precisions = {
        "gradcam": 0.9,  # always shown anyway: never one of the two
        "ig": 0.33,
        "saliency": 0.28,
        "cam": float("nan"),  # not measured: never chosen
        "rise": None,  # failed
        "gradcam++": 0.30,
        "smoothgrad": 0.30,  # tie with gradcam++: the name first in order wins
    }
    assert recipes.select_explainers(precisions) == ["ig", "gradcam++"]
    assert recipes.select_explainers({"gradcam": 0.5, "ig": 0.1}) == ["ig"]


def test_markdown_has_the_table_targets_and_selection():
    rows = [
        row("fc", "gradcam", 0, accuracy=0.80, precision=0.40, area=0.30),
        row("fc", "gradcam", 1, accuracy=0.82, precision=0.42, area=0.32),
        row("scouter_pos", "slot", 0, accuracy=0.81, precision=0.50, area=0.20),
    ]
    selection = {
        "seed": 0,
        "images": 100,
        "precision": {"gradcam": 0.4, "ig": 0.35, "cam": 0.3},
        "skipped": {"rise": "timed out after 600 s"},
        "chosen": ["ig", "cam"],
    }
    text = recipes.markdown(
        rows,
        ["protocol line"],
        {"composites": selection},
        [{"what": "x", "reason": "y"}],
    )
    assert "protocol line" in text
    assert "| FC | gradcam | 2 | 0.810 ± 0.014 |" in text
    assert "| SCOUTER+ | slot | 1 | 0.810 |" in text
    assert text.count("PASS") == 2 and "n/a" in text  # SCOUTER− not measured
    assert "Grad-CAM + ig, cam" in text and "rise (timed out after 600 s)" in text
    assert "- x: y" in text


def test_outputs_are_written(tmp_path):
    sweep = recipes.Sweep(FakeArgs(tmp_path))
    sweep.rows = [
        row("fc", "gradcam", 0, accuracy=0.80, precision=0.40, area=0.30),
        row("scouter_pos", "slot", 0, accuracy=0.81, precision=0.50, area=0.20),
    ]
    sweep.write()
    assert json.loads((tmp_path / "results.json").read_text()) == recipes.sort_rows(sweep.rows)
    assert "## composites" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "precision_vs_accuracy.png").stat().st_size > 0


def test_the_selection_records_failures_and_is_reused(tmp_path, monkeypatch):
    args = FakeArgs(tmp_path)
    args.fc_explainers = "auto"
    sweep = recipes.Sweep(args)
    paths = recipes.RunPaths(tmp_path, "composites", "fc", 0)
    fake_finished_training(sweep, paths)
    precision = {"gradcam": 0.5, "ig": 0.2, "saliency": 0.3, "cam": 0.25, "rise": None}
    asked = []

    def evaluate(self, paths, checkpoint, name, options, timeout=None):
        explainer = options[options.index("--explainers") + 1]
        asked.append(explainer)
        if explainer == "rise":
            return None, "timed out after 600 s"
        doc = {"metrics": {"precision": {"value": precision[explainer]}}}
        return {"explanations": {explainer: doc}}, None

    monkeypatch.setattr(recipes, "posthoc_explainers", lambda: sorted(precision))
    monkeypatch.setattr(recipes.Sweep, "evaluate", evaluate)
    assert sweep.fc_explainers("composites") == ["gradcam", "saliency", "cam"]
    saved = json.loads((tmp_path / "composites" / "fc_explainer_selection.json").read_text())
    assert saved["chosen"] == ["saliency", "cam"]
    assert saved["skipped"] == {"rise": "timed out after 600 s"}
    assert saved["precision"]["gradcam"] == 0.5 and saved["images"] == 100
    assert sorted(asked) == sorted(precision)

    asked.clear()  # a new invocation reads the file instead of measuring again
    assert recipes.Sweep(args).fc_explainers("composites") == ["gradcam", "saliency", "cam"]
    assert asked == []
