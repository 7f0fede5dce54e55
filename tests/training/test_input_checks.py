"""train.py refuses data the model cannot take (channels, fixed ViT size) before any batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from scouter.checkpoints import save_model
from scouter.data import ScouterDataModule
from scouter.models.classifier import ModelConfig, build_classifier
from scouter.training import ScouterModule, main
from tests.training.conftest import tiny_config, write_config

TINY = dict(
    backbone="test_resnet",
    hidden_dim=16,
    attention_norm="abs",
    backbone_kwargs={"output_stride": 8},
)


def _datamodule(root: Path, **kw) -> ScouterDataModule:
    args = dict(dataset="folder", root=str(root), image_size=32, batch_size=8, num_workers=0)
    args.update(kw)
    return ScouterDataModule(mean=[0.2] * 3, std=[0.3] * 3, **args)


def _trainer(tmp_path: Path) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )


@pytest.mark.parametrize(("model_chans", "data_chans"), [(1, 3), (3, 1)])
def test_channel_mismatch_fails_before_the_first_batch(
    tiny_folder, tmp_path, monkeypatch, model_chans, data_chans
):
    module = ScouterModule(num_classes=3, in_chans=model_chans, **TINY)
    monkeypatch.setattr(module, "training_step", lambda *a: pytest.fail("a batch was run"))
    message = (
        rf"model expects {model_chans}-channel images but data.in_chans is {data_chans}: "
        rf"set data.in_chans: {model_chans} .*or use a model trained on {data_chans}-channel"
    )
    with pytest.raises(ValueError, match=message):
        _trainer(tmp_path).fit(module, datamodule=_datamodule(tiny_folder, in_chans=data_chans))


def test_validate_and_test_check_the_channels_too(tiny_folder, tmp_path):
    module = ScouterModule(num_classes=3, in_chans=1, **TINY)
    for run in (_trainer(tmp_path).validate, _trainer(tmp_path).test):
        with pytest.raises(ValueError, match="expects 1-channel images but data.in_chans is 3"):
            run(module, datamodule=_datamodule(tiny_folder))


def test_fixed_size_vit_with_another_image_size_fails_before_work(tiny_folder, tmp_path):
    # test_vit3's patch embedding is strict (160x160 only); the data is 32x32.
    module = ScouterModule(num_classes=3, backbone="test_vit3", hidden_dim=16)
    with pytest.raises(ValueError, match=r"test_vit3 takes only 160x160 images.*image_size is 32"):
        _trainer(tmp_path).fit(module, datamodule=_datamodule(tiny_folder))


def test_cnn_takes_any_image_size(tiny_folder, tmp_path):
    module = ScouterModule(num_classes=3, **TINY)
    _trainer(tmp_path).fit(module, datamodule=_datamodule(tiny_folder, image_size=24))
    assert module.global_step == 1


def test_init_backbone_from_a_three_channel_checkpoint_names_the_fix(tmp_path):
    torch.manual_seed(0)
    path = save_model(
        build_classifier(ModelConfig(backbone="test_resnet", num_classes=3, head="fc")),
        tmp_path / "fc.safetensors",
    )
    with pytest.raises(ValueError, match=r"trained on 3-channel images but this model takes 1"):
        ScouterModule(num_classes=3, in_chans=1, init_backbone_from=str(path), **TINY)


def test_train_py_test_with_a_checkpoint_of_other_channels_names_the_fix(tiny_folder, tmp_path):
    config = tiny_config(tiny_folder, tmp_path, trainer={"max_steps": 1, "limit_val_batches": 0})
    path = write_config(tmp_path / "c.yaml", config)
    main(["fit", "--config", str(path)])
    checkpoint = tmp_path / "ckpt" / "scouter_pos-lam1-s1" / "last.ckpt"
    assert checkpoint.is_file()
    message = (
        r"checkpoint was trained on 3-channel images but this model takes 1.*"
        r"set data.in_chans: 3"
    )
    with pytest.raises(ValueError, match=message):
        main(
            ["test", "--config", str(path), "--data.in_chans", "1", "--ckpt_path", str(checkpoint)]
        )
