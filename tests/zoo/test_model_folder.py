"""Model folders: written atomically, read back exactly, every broken folder named with its fix."""

from __future__ import annotations

import json

import pytest
import torch

import scouter
from scouter.checkpoints import CheckpointMismatchError
from scouter.model_folder import ModelFolderError, save_pretrained
from tests.zoo.conftest import CLASS_NAMES, tiny_model


def _images(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 1, 32, 32, generator=torch.Generator().manual_seed(1))


def test_a_folder_holds_the_hub_layout_and_loads_back_exactly(model, folder):
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((folder / "config.json").read_text())
    assert config["library_name"] == "scouter" and config["label_names"] == CLASS_NAMES
    assert config["model_config"]["backbone"] == "test_resnet" and config["num_classes"] == 3
    loaded = scouter.load_model(folder)
    assert loaded.class_names == CLASS_NAMES and loaded.data_config == model.data_config
    assert not loaded.training
    x = _images()
    assert torch.equal(loaded(x).logits, model(x).logits)
    assert torch.equal(loaded(x).attention, model(x).attention)


def test_float16_weights_halve_the_file_and_load_as_float32(model, tmp_path):
    full = save_pretrained(model, tmp_path / "f32")
    half = save_pretrained(model, tmp_path / "f16", dtype="float16")
    size = lambda f: (f / "model.safetensors").stat().st_size  # noqa: E731
    assert size(half) < 0.6 * size(full)
    loaded = scouter.load_model(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = _images()
    # float16 rounding only: relative error of the weights ~ 1e-3
    assert torch.allclose(loaded(x).logits, model(x).logits, atol=2e-2, rtol=1e-2)
    assert json.loads((half / "config.json").read_text())["weights"]["dtype"] == "float16"


def test_a_folder_without_config_json_is_named_with_the_fix(tmp_path):
    (tmp_path / "weights").mkdir()
    with pytest.raises(IsADirectoryError, match="directory"):
        scouter.load_model(tmp_path / "weights")
    from scouter.model_folder import read_folder_config

    with pytest.raises(ModelFolderError, match=r"no config\.json.*scouter\.publish"):
        read_folder_config(tmp_path / "weights")


def test_weights_that_do_not_fit_the_architecture_name_the_keys(folder):
    config = json.loads((folder / "config.json").read_text())
    config["model_config"]["num_classes"] = config["num_classes"] = 5
    config["label_names"] = None
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatches: .*head"):
        scouter.load_model(folder)


def test_a_tampered_weights_file_is_refused_by_its_hash(folder):
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # same size, one byte changed inside a tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFolderError, match=r"does not match the SHA-256.*download or copy"):
        scouter.load_model(folder)


def test_a_missing_weights_file_or_bad_config_is_named(folder):
    (folder / "config.json").write_text(
        '{"model_config": {"backbone": "test_resnet", "num_classes": "x"}}'
    )
    with pytest.raises(ModelFolderError, match=r"config\.json.*not valid"):
        scouter.load_model(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelFolderError, match="not valid JSON"):
        scouter.load_model(folder)


def test_class_names_that_do_not_match_the_classes_are_refused(folder):
    config = json.loads((folder / "config.json").read_text())
    config["label_names"] = ["a", "b"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match="2 class names for a model of 3 classes"):
        scouter.load_model(folder)


def test_an_existing_folder_is_kept_unless_overwrite(model, folder):
    before = (folder / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        save_pretrained(tiny_model(seed=1), folder)
    assert (folder / "model.safetensors").read_bytes() == before
    save_pretrained(tiny_model(seed=1), folder, overwrite=True)
    assert (folder / "model.safetensors").read_bytes() != before
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []


def test_an_interrupted_publish_leaves_nothing_half_written(model, folder, monkeypatch):
    import scouter.model_folder as model_folder

    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def fail(*args, **kwargs):
        raise KeyboardInterrupt  # killed in the middle of writing the weights

    monkeypatch.setattr(model_folder, "save_file", fail)
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(tiny_model(seed=1), folder, overwrite=True)
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(model, folder.parent / "new")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["tiny"]  # no partial folders


def test_save_model_and_ckpt_keep_class_names(model, tmp_path):
    path = scouter.save_model(model, tmp_path / "export")
    assert json.loads(path.with_suffix(".json").read_text())["class_names"] == CLASS_NAMES
    assert scouter.load_model(path).class_names == CLASS_NAMES
    path.with_suffix(".json").unlink()  # the metadata copy alone
    assert scouter.load_model(path).class_names == CLASS_NAMES
