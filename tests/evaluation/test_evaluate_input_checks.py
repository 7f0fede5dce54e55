"""evaluate.py refuses data the checkpoint cannot take (channels, fixed ViT size) before work."""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from scouter.checkpoints import save_model
from scouter.evaluation import EvaluationError, EvaluationOptions, prepare
from scouter.models.classifier import ModelConfig, build_classifier


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A ``folder`` dataset (3 classes, 2 RGB 32x32 images per class per split) and checkpoints."""
    root = tmp_path_factory.mktemp("input_checks")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("a", "b", "c"):
            folder = root / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(2):
                image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(image).save(folder / f"{i}.png")
    for name, kwargs in (
        ("rgb", {}),
        ("gray", {"in_chans": 1}),
        ("vit", {"backbone": "test_vit3", "hidden_dim": 16}),  # strict 160x160 patch embedding
    ):
        torch.manual_seed(0)
        config = ModelConfig(**{"backbone": "test_resnet", "num_classes": 3, **kwargs})
        save_model(build_classifier(config), root / f"{name}.safetensors")
    return root


def _options(root: Path, tmp_path: Path, checkpoint: str, **data) -> EvaluationOptions:
    section = {"dataset": "folder", "root": str(root / "data"), "image_size": 32}
    section.update(batch_size=2, num_workers=0, **data)
    config = {"model": {"backbone": "test_resnet"}, "data": section}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return EvaluationOptions(
        checkpoint=root / f"{checkpoint}.safetensors",
        config=tmp_path / "config.yaml",
        out=tmp_path / "out",
        progress=False,
    )


@pytest.mark.parametrize(
    ("checkpoint", "data_chans", "model_chans"), [("gray", 3, 1), ("rgb", 1, 3)]
)
def test_channel_mismatch_is_reported_before_any_work(
    root, tmp_path, checkpoint, data_chans, model_chans
):
    message = (
        rf"model expects {model_chans}-channel images but data.in_chans is {data_chans}: "
        rf"set data.in_chans: {model_chans} .*trained on {data_chans}-channel images"
    )
    with pytest.raises(EvaluationError, match=message):
        prepare(_options(root, tmp_path, checkpoint, in_chans=data_chans))
    assert not (tmp_path / "out").exists()


def test_matching_channels_pass(root, tmp_path):
    prepared = prepare(_options(root, tmp_path, "gray", in_chans=1))
    assert prepared.model.backbone.in_chans == 1


def test_fixed_size_vit_at_another_image_size_is_reported_before_any_work(root, tmp_path):
    with pytest.raises(EvaluationError, match=r"takes only 160x160 images.*image_size is 32"):
        prepare(_options(root, tmp_path, "vit"))
    assert not (tmp_path / "out").exists()


def test_bare_state_dict_takes_its_channels_from_the_data(root, tmp_path):
    # train.py links model.in_chans from data.in_chans; a bare state_dict is rebuilt alike.
    state = build_classifier(ModelConfig("test_resnet", 3, in_chans=1)).state_dict()
    torch.save(state, root / "bare.pt")
    options = _options(root, tmp_path, "gray", in_chans=1)
    options.checkpoint = root / "bare.pt"
    assert prepare(options).model.backbone.in_chans == 1


def test_a_tree_without_test_says_its_validation_images_were_evaluated(root, tmp_path):
    """Issue 30, item 3: results.json, the report and the command's output name the split used."""
    options = _options(root, tmp_path, "rgb", in_chans=3)
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [
            sys.executable,
            str(repo / "evaluate.py"),
            "--checkpoint",
            str(options.checkpoint),
            "--config",
            str(options.config),
            "--out",
            str(tmp_path / "out"),
            "--export",
            str(tmp_path / "report"),
            "--metrics",
            "accuracy",
            "--num-images",
            "2",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=repo,
    )
    assert done.returncode == 0, done.stderr
    note = "does not exist, so the test split is the validation images (its val/ folder)"
    assert f"evaluate.py: note: '{root / 'data' / 'test'}' {note}" in done.stderr
    assert done.stderr.count(note) == 1  # the note, not also the data module's warning
    assert done.stdout.startswith("split=val images=6 ")
    dataset = json.loads((tmp_path / "out" / "results.json").read_text())["dataset"]
    assert (dataset["split"], dataset["split_requested"]) == ("val", "test")
    assert note in dataset["split_note"]
    report = (tmp_path / "report" / "report.html").read_text()
    assert "on folder (val, as test)</" in report and "(test)" not in report
    assert html.escape(note, quote=True) in report


def test_the_validation_split_or_a_tree_with_test_evaluate_what_they_say(root, tmp_path):
    options = _options(root, tmp_path, "rgb")
    options.split = "val"
    prepared = prepare(options)
    assert prepared.datamodule.split_used("val") == "val"
    assert not [n for n in prepared.notes if "split" in n]
    copy = tmp_path / "copy"
    shutil.copytree(root / "data", copy / "data")
    shutil.copytree(root / "data" / "val", copy / "data" / "test")
    shutil.copy(root / "rgb.safetensors", copy / "rgb.safetensors")
    prepared = prepare(_options(copy, tmp_path, "rgb"))
    assert prepared.datamodule.split_used("test") == "test"
    assert not [n for n in prepared.notes if "split" in n]


def _evaluate(*args: str) -> subprocess.CompletedProcess:
    repo = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, str(repo / "evaluate.py"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=repo,
    )


def test_data_overrides_replace_the_configs_data_settings_as_train_py_does(root, tmp_path):
    """Issue 30, item 6: ``--data.*`` as train.py, e.g. another root and a nested option."""
    options = _options(root, tmp_path, "rgb", in_chans=3)
    config = yaml.safe_load(options.config.read_text())
    config["data"].update(root=str(tmp_path / "absent"), dataset="mnist", image_size=64)
    options.config.write_text(yaml.safe_dump(config))
    done = _evaluate(
        "--checkpoint", str(options.checkpoint), "--config", str(options.config),
        "--data.root", str(root / "data"), "--data.dataset=folder", "--data.image_size", "32",
        "--split", "val", "--metrics", "accuracy", "--out", str(tmp_path / "out"),
        "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("split=val images=6 ")
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["num_images"] == 6
    # Dotted keys reach nested settings; the config's own section is not changed.
    from scouter.evaluation.preparation import apply_data_overrides

    section = {"dataset": "composites", "dataset_options": {"num_classes": 10, "seed": 1}}
    merged = apply_data_overrides(section, {"dataset_options.num_classes": 3, "root": "x"})
    assert merged == {
        "dataset": "composites", "root": "x", "dataset_options": {"num_classes": 3, "seed": 1}
    }  # fmt: skip
    assert section["dataset_options"]["num_classes"] == 10


def test_bad_data_overrides_exit_2_naming_the_argument(root, tmp_path):
    options = _options(root, tmp_path, "rgb")
    common = ["--checkpoint", str(options.checkpoint), "--config", str(options.config)]
    common += ["--out", str(tmp_path / "out")]
    done = _evaluate(*common, "--data.root")
    assert done.returncode == 2 and "--data.root expects a value" in done.stderr
    done = _evaluate(*common, "--datum.root", "x")
    assert done.returncode == 2 and "unrecognized arguments: --datum.root" in done.stderr
    done = _evaluate(*common, "--data.image_size.height", "3")
    assert done.returncode == 2
    assert "data.image_size is 32 in the config, not a mapping" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_class_count_mismatch_points_at_the_runs_saved_config(root, tmp_path):
    options = _options(root, tmp_path, "rgb")
    for split in ("train", "val"):  # a two-class tree: another run's data
        for name in ("a", "b"):
            shutil.copytree(root / "data" / split / name, tmp_path / "two" / split / name)
    done = _evaluate(
        "--checkpoint", str(options.checkpoint), "--config", str(options.config),
        "--data.root", str(tmp_path / "two"), "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    message = " ".join(done.stderr.split())
    assert "the checkpoint predicts 3 classes but dataset 'folder'" in message
    assert f"(config '{options.config}', --data.* overrides) has 2" in message
    assert "--config runs/<...>/csv/version_0/config.yaml" in message
    assert "--data.* overrides of the training command's" in message
