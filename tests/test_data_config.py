"""A model carries its preprocessing (DataConfig): stored by a real ``train.py fit``, kept by
``save_model`` / ``load_model``, rebuilt by ``transform_for`` exactly as training's eval
transform, checked by ``evaluate.py``; files without one still load and say so when asked."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import scouter
from scouter.checkpoints import CheckpointConfigError, safe_torch_load
from scouter.data import (
    DataConfig,
    MissingDataConfigError,
    ScouterDataModule,
    build_transforms,
    preprocess,
    transform_for,
)
from scouter.data_config import DATA_CONFIG_KEY
from scouter.evaluation import (
    DataConfigMismatchWarning,
    EvaluationOptions,
    prepare,
)
from scouter.evaluation import (
    main as evaluate_main,
)
from scouter.models.classifier import ModelConfig, build_classifier, pretrained_data_config
from scouter.training import main
from tests.training.conftest import _write_split, tiny_config, write_config

# Non-square, with timm's resnet18 normalisation named by the config: the checkpoint must store
# the numbers it resolves to, not the name.
DATA = {"image_size": [24, 32], "timm_model": "resnet18", "mean": None, "std": None}
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """One real ``train.py fit`` (3 steps) on tests/training's tiny folder set (3 classes, 32 px
    RGB); its config and checkpoint."""
    tmp = tmp_path_factory.mktemp("data_config_fit")
    rng = np.random.default_rng(0)
    for split, count in (("train", 16), ("val", 4), ("test", 4)):
        _write_split(tmp / "data", split, count, rng)
    config = tiny_config(tmp / "data", tmp, trainer={"limit_train_batches": 3}, data=DATA)
    path = write_config(tmp / "config.yaml", config)
    main(["fit", "--config", str(path)])
    (ckpt,) = (tmp / "ckpt").rglob("last.ckpt")
    return {"config": config, "config_path": path, "ckpt": ckpt, "tmp": tmp}


def _datamodule(config: dict, **changes) -> ScouterDataModule:
    data = ScouterDataModule(**{**config["data"], **changes})
    data.setup()
    return data


# --- the type --------------------------------------------------------------------------------


def test_data_config_round_trips_and_names_bad_fields():
    config = DataConfig(input_size=(24, 32), in_chans=1, mean=[0.5], std=(0.25,))
    assert config.mean == (0.5,) and config.input_size == (24, 32)
    assert DataConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert DataConfig(input_size=28, in_chans=1, mean=(0.5,), std=(0.5,)).input_size == (28, 28)
    with pytest.raises(ValueError, match=r"unknown data config keys \['size'\]"):
        DataConfig.from_dict({**config.to_dict(), "size": 3})
    with pytest.raises(ValueError, match="one value per channel"):
        DataConfig(input_size=(24, 32), in_chans=3, mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match="eval_resize must be"):
        DataConfig(input_size=(24, 32), in_chans=1, mean=(0.5,), std=(0.5,), eval_resize="crop")
    other = DataConfig(input_size=(28, 28), in_chans=1, mean=(0.5,), std=(0.3,))
    assert config.differences(other) == [
        ("input_size", (24, 32), (28, 28)),
        ("std", (0.25,), (0.3,)),
    ]


# --- stored by training, restored by load_model ---------------------------------------------------


def test_fit_stores_the_resolved_data_config_in_the_checkpoint(run):
    stored = safe_torch_load(run["ckpt"])["ScouterDataModule"][DATA_CONFIG_KEY]
    assert stored == {
        "input_size": [24, 32], "in_chans": 3, "mean": list(IMAGENET[0]),
        "std": list(IMAGENET[1]), "eval_resize": "resize", "crop_pct": 0.875,
    }  # fmt: skip
    model = scouter.load_model(run["ckpt"])
    assert model.data_config == _datamodule(run["config"]).data_config
    assert model.data_config == DataConfig((24, 32), 3, IMAGENET[0], IMAGENET[1])


def test_save_model_writes_it_to_model_json_and_load_model_restores_it(run, tmp_path):
    model = scouter.load_model(run["ckpt"])
    path = scouter.save_model(model, tmp_path / "export" / "model")
    document = json.loads(path.with_suffix(".json").read_text())
    assert document["data_config"] == model.data_config.to_dict()
    assert scouter.load_model(path).data_config == model.data_config
    path.with_suffix(".json").unlink()  # the safetensors metadata alone carries it too
    assert scouter.load_model(path).data_config == model.data_config


def test_transform_for_reproduces_the_training_eval_transform_exactly(run):
    data = _datamodule(run["config"])
    model = scouter.load_model(run["ckpt"])
    transform = transform_for(model)
    for index in range(3):
        sample = data.test_set.dataset[index]
        sample.boxes = np.array([[3.0, 5.0, 20.0, 27.0]], np.float32)
        ours, training = transform(sample), data.test_set.transform(sample)
        assert ours["image"].shape == (3, 24, 32)
        assert torch.equal(ours["image"], training["image"])
        assert torch.equal(ours["boxes"], training["boxes"])
    # The same images as files, through preprocess: PIL, numpy, a batch of both.
    sample = data.test_set.dataset[0]
    expected = data.test_set.transform(sample)["image"]
    batch = preprocess(model, [Image.fromarray(sample.image), sample.image])
    assert batch.shape == (2, 3, 24, 32)
    assert torch.equal(batch[0], expected) and torch.equal(batch[1], expected)
    # The "obvious" transform is not the model's: another size and normalisation.
    obvious = build_transforms(28, in_chans=3)(sample)["image"]
    assert obvious.shape != expected.shape


def test_a_resumed_or_tested_run_with_other_preprocessing_warns(run):
    args = ["test", "--config", str(run["config_path"]), "--ckpt_path", str(run["ckpt"])]
    expected = r"input_size: checkpoint \(24, 32\), data settings \(32, 32\)"
    with pytest.warns(UserWarning, match=expected):
        main([*args, "--data.image_size", "32"])


# --- zoo and pretrained models ------------------------------------------------------------------


def test_zoo_models_carry_their_recipe_and_pretrained_backbones_timms_config():
    model = scouter.create_model("scouter_pos_resnet18_mnist", num_classes=10)
    assert model.data_config == DataConfig((260, 260), 1, (0.1307,), (0.3081,))
    lite = scouter.create_model("fc_efficientnet_lite0_imagenet")
    assert lite.data_config == DataConfig((224, 224), 3, (0.5,) * 3, (0.5,) * 3)
    timm_config = pretrained_data_config(
        ModelConfig(backbone="resnet18", num_classes=3, pretrained=True, in_chans=1)
    )
    assert timm_config.in_chans == 1 and timm_config.eval_resize == "resize_crop"
    assert timm_config.mean == pytest.approx((sum(IMAGENET[0]) / 3,))
    assert build_classifier(ModelConfig(backbone="test_resnet", num_classes=3)).data_config is None


# --- files without one --------------------------------------------------------------------------


def test_old_checkpoints_without_a_data_config_load_and_say_so(run, tmp_path):
    checkpoint = safe_torch_load(run["ckpt"])
    del checkpoint["ScouterDataModule"]  # as written before the data config was stored
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    model = scouter.load_model(old)
    assert model.data_config is None
    reference = scouter.load_model(run["ckpt"])
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), reference.state_dict().values(), strict=True)
    )
    with pytest.raises(MissingDataConfigError, match="carries no data config.*build_transforms"):
        transform_for(model)
    # An export without it (written before), and a bare state_dict given one explicitly.
    export = scouter.save_model(model, tmp_path / "old_export")
    assert "data_config" not in json.loads(export.with_suffix(".json").read_text())
    assert scouter.load_model(export).data_config is None
    bare = tmp_path / "bare.pth"
    torch.save(model.state_dict(), bare)
    given = DataConfig((24, 32), 3, IMAGENET[0], IMAGENET[1])
    loaded = scouter.load_model(bare, **{**model.config.to_dict(), "data_config": given.to_dict()})
    assert loaded.data_config == given


def test_an_invalid_stored_data_config_is_named(run, tmp_path):
    path = scouter.save_model(scouter.load_model(run["ckpt"]), tmp_path / "model")
    document = json.loads(path.with_suffix(".json").read_text())
    document["data_config"]["in_chans"] = 2
    path.with_suffix(".json").write_text(json.dumps(document))
    with pytest.raises(
        CheckpointConfigError,
        match=r"data config in .*model.json. is not valid: .*in_chans must be 1 or 3",
    ):
        scouter.load_model(path)


# --- evaluate.py --------------------------------------------------------------------------------


def _evaluation(run: dict, tmp_path: Path, checkpoint=None, **data) -> EvaluationOptions:
    config = yaml.safe_load(run["config_path"].read_text())
    config["data"].update(data)
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(config))
    return EvaluationOptions(
        checkpoint=checkpoint or run["ckpt"],
        config=tmp_path / "eval.yaml",
        out=tmp_path / "out",
        metrics="accuracy",
        progress=False,
        device="cpu",
    )


def test_evaluate_is_silent_when_the_config_matches(run, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataConfigMismatchWarning)
        prepared = prepare(_evaluation(run, tmp_path))
    assert prepared.warnings == []


def test_evaluate_warns_naming_each_field_and_uses_the_checkpoints(run, tmp_path):
    # The "obvious" settings: 28 px, ImageNet's statistics by default.
    options = _evaluation(run, tmp_path, image_size=28, timm_model=None, mean=[0.5] * 3)
    with pytest.warns(DataConfigMismatchWarning) as caught:
        prepared = prepare(options)
    message = str(caught[0].message)
    assert "input_size: checkpoint (24, 32), config (28, 28)" in message
    assert "mean: checkpoint (0.485, 0.456, 0.406), config (0.5, 0.5, 0.5)" in message
    assert "std" not in message  # ImageNet's std either way
    assert "the checkpoint's values are used" in message
    assert prepared.warnings == [message]
    assert prepared.dataset[0]["image"].shape == (3, 24, 32)
    sample = prepared.dataset.dataset[int(prepared.dataset.indices[0])]
    expected = transform_for(prepared.model)(sample)["image"]
    assert torch.equal(prepared.dataset[0]["image"], expected)

    options.preprocessing = "config"
    with pytest.warns(DataConfigMismatchWarning, match="the config's values are used"):
        prepared = prepare(options)
    assert prepared.dataset[0]["image"].shape == (3, 28, 28)


def test_evaluate_py_prints_the_warning_once_and_records_it(run, tmp_path, capsys):
    _evaluation(run, tmp_path, image_size=28)
    code = evaluate_main(
        ["--checkpoint", str(run["ckpt"]), "--config", str(tmp_path / "eval.yaml"),
         "--out", str(tmp_path / "out"), "--metrics", "accuracy", "--no-progress",
         "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert err.count("evaluate.py: warning: ") == 1 and "config (28, 28)" in err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["dataset"]["preprocessing"]["input_size"] == [24, 32]
    assert results["checkpoint"]["data_config"]["input_size"] == [24, 32]
    assert len(results["warnings"]) == 1


def test_evaluate_uses_the_config_for_checkpoints_without_a_data_config(run, tmp_path):
    checkpoint = safe_torch_load(run["ckpt"])
    del checkpoint["ScouterDataModule"]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    options = _evaluation(run, tmp_path, checkpoint=tmp_path / "old.ckpt", image_size=28)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataConfigMismatchWarning)
        prepared = prepare(options)
    assert prepared.warnings == [] and prepared.dataset[0]["image"].shape == (3, 28, 28)
