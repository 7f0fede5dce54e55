"""python -m scouter.publish: a checkpoint becomes a model folder whose card holds its results."""

from __future__ import annotations

import json

import pytest

import scouter
from scouter.model_card import card_summary, read_front_matter
from scouter.publish import PublishError, main, publish


def _results(path, images, accuracy=None, explainers=None):
    doc = {
        "dataset": {"name": "shapes", "split": "test"},
        "num_images": images,
        "metrics": {} if accuracy is None else {"accuracy": {"value": accuracy}},
        "explanations": {
            name: {"metrics": {m: {"value": v} for m, v in values.items()}}
            for name, values in (explainers or {}).items()
        },
    }
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def evaluations(tmp_path):
    return {
        "accuracy": _results(tmp_path / "acc.json", 1000, accuracy=0.8125),
        "maps": _results(
            tmp_path / "maps.json", 500, explainers={"slot": {"area": 0.17, "precision": 0.62}}
        ),
        "curves": _results(
            tmp_path / "curves.json", 16, explainers={"slot": {"insertion": 0.77, "deletion": 0.22}}
        ),
        "check": _results(tmp_path / "check.json", 64, accuracy=0.796875),
    }


def test_publish_writes_a_card_generated_from_the_results(folder, evaluations, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model:\n  backbone: test_resnet\n")
    out = publish(
        folder,
        tmp_path / "zoo" / "tiny_shapes",
        results=evaluations,
        recipe=recipe,
        command="python train.py fit --config recipe.yaml",
        dtype="float16",
        check="check",
        tolerance=0.02,
        description="A tiny model.",
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "config.json", "model.safetensors", "recipe.yaml", "results",
    ]  # fmt: skip
    card = (out / "README.md").read_text()
    meta = read_front_matter(card)
    assert meta["library_name"] == "scouter" and meta["license"] == "mit"
    assert meta["datasets"] == ["shapes"] and "explainability" in meta["tags"]
    summary = card_summary(card)
    assert summary["accuracy"] == {"value": 0.8125, "images": 1000, "source": "accuracy"}
    assert summary["explanation"]["precision"]["value"] == 0.62
    assert summary["check"] == {
        "results": "check",
        "images": 64,
        "accuracy": 0.796875,
        "tolerance": 0.02,
    }
    assert summary["grid"] == [4, 4] and summary["variant"] == "scouter_pos"
    assert summary["size_mb"] == round((out / "model.safetensors").stat().st_size / 1e6, 2)
    assert "| slot | 0.170 (500) | 0.620 (500) | 0.770 (16) | 0.220 (16) |" in card
    assert (
        "python train.py fit --config recipe.yaml" in card
        and "@inproceedings{li2021scouter" in card
    )
    for name, path in evaluations.items():  # every number of the card is a file of the folder
        assert json.loads((out / "results" / f"{name}.json").read_text()) == json.loads(
            path.read_text()
        )
    assert scouter.load_model(out).class_names == ["circle", "square", "cross"]


def test_the_command_line_publishes_and_reports_bad_inputs(folder, evaluations, tmp_path, capsys):
    out = tmp_path / "published"
    assert (
        main([str(folder), "--out", str(out), "--results", f"accuracy={evaluations['accuracy']}"])
        == 0
    )
    assert scouter.load_model(out).num_classes == 3
    assert main([str(folder), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main([str(folder), "--out", str(tmp_path / "x"), "--results", "acc=nowhere.json"]) == 2
    assert "nowhere.json" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main([str(folder), "--out", str(tmp_path / "x"), "--results", "nowhere.json"]) == 2
    assert "NAME=PATH" in capsys.readouterr().err
    not_results = tmp_path / "other.json"
    not_results.write_text("[1, 2]")
    assert main([str(folder), "--out", str(tmp_path / "x"), "--results", f"a={not_results}"]) == 2
    assert "not an evaluate.py results.json" in capsys.readouterr().err
    assert main([str(folder), "--out", str(tmp_path / "x"), "--check", "a"]) == 2
    assert "--check 'a' names no --results entry" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "x")]) == 2
    assert "missing.ckpt" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_class_names_must_fit_the_model(folder, tmp_path):
    with pytest.raises(PublishError, match="2 class names for a model of 3 classes"):
        publish(folder, tmp_path / "x", class_names=["a", "b"])
