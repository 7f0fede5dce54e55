"""The reference-recipe configs state the same model as their zoo entries (issue 28, item 3).

``configs/{cub200,imagenet100,mnist}/*.yaml`` spell the reference recipes out field by field (so
a reader sees the whole recipe and old checkpoints resume unchanged), and ``scouter/models/zoo.py``
registers the same recipes; this test keeps the two from drifting apart.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from scouter.models.classifier import ModelConfig
from scouter.models.zoo import get_model_entry
from scouter.training import main

REPO = Path(__file__).resolve().parents[1]
# dataset folder → the zoo's backbone/dataset suffix
RECIPES = {
    "cub200": "resnest50d_cub200",
    "imagenet100": "resnest26d_imagenet100",
    "mnist": "resnet18_mnist",
}
CONFIGS = sorted(p for name in RECIPES for p in (REPO / "configs" / name).glob("*.yaml"))
DATASET_CLASSES = {"mnist": 10}  # datasets whose configs do not name num_classes
# What only an xSlot head uses: an FC recipe leaves these at their defaults.
XSLOT_ONLY = {
    "slots_per_class",
    "sign",
    "hidden_dim",
    "to_k_layers",
    "iterations",
    "attention_norm",
}
# How the weights are obtained, not which model: the configs and the entries may differ here.
NOT_ARCHITECTURE = {"pretrained", "pretrained_file", "backbone_kwargs"}


def _printed(config: Path, tmp_path, monkeypatch, capsys) -> dict:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config), "--print_config"])
    return yaml.safe_load(capsys.readouterr().out)


def test_every_reference_recipe_has_its_three_configs():
    assert len(CONFIGS) == 9


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_recipe_config_agrees_with_its_zoo_entry_field_by_field(
    config, tmp_path, monkeypatch, capsys
):
    entry = get_model_entry(f"{config.stem}_{RECIPES[config.parent.name]}")
    printed = _printed(config, tmp_path, monkeypatch, capsys)
    model, data = printed["model"], printed["data"]
    defaults = ModelConfig(backbone="unused", num_classes=1)
    effective = {
        field.name: model[field.name]
        if model.get(field.name) is not None
        else getattr(defaults, field.name)
        for field in dataclasses.fields(ModelConfig)
        if field.name in model
    }
    effective["in_chans"] = data["in_chans"]  # train.py links model.in_chans to it
    options = data.get("dataset_options") or {}
    effective["num_classes"] = options.get("num_classes", DATASET_CLASSES.get(data["dataset"]))
    skipped = NOT_ARCHITECTURE | (XSLOT_ONLY if entry.config.head == "fc" else set())
    for field in dataclasses.fields(ModelConfig):
        if field.name in skipped:
            continue
        assert effective[field.name] == getattr(entry.config, field.name), field.name
    assert data["image_size"] == entry.input_size[1] == entry.input_size[2]
    assert data["in_chans"] == entry.input_size[0]
    if entry.config.head == "xslot":  # the FC recipes have no area loss
        assert (model["lambda_area"], model["power"]) == (entry.lambda_area, entry.power)
