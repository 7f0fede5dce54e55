"""ScouterModule: user errors, freezing, use_pre, optimiser, and what training measurably does."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import timm
import torch

from scouter.checkpoints import safe_torch_load
from scouter.data import ScouterDataModule
from scouter.training import ScouterModule, freeze_backbone_stages, main
from tests.training.conftest import tiny_config, write_config

TINY = dict(
    backbone="test_resnet",
    hidden_dim=16,
    attention_norm="abs",
    backbone_kwargs={"output_stride": 8},
)


def _datamodule(root: Path, **kw) -> ScouterDataModule:
    return ScouterDataModule(
        dataset="folder",
        root=str(root),
        image_size=32,
        batch_size=8,
        num_workers=0,
        mean=[0.2] * 3,
        std=[0.3] * 3,
        **kw,
    )


def _trainer(tmp_path: Path, steps: int) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )


# --- errors a user can cause ------------------------------------------------------------------


def test_class_count_mismatch_is_a_clear_error_before_training(tiny_folder, tmp_path):
    module = ScouterModule(num_classes=5, **TINY)
    with pytest.raises(ValueError, match="model has 5 classes but the data has 3"):
        _trainer(tmp_path, 1).fit(module, datamodule=_datamodule(tiny_folder))


def test_missing_init_backbone_from_file_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="train the FC stage first"):
        ScouterModule(num_classes=3, init_backbone_from=str(tmp_path / "nope.ckpt"), **TINY)


def test_freezing_a_random_backbone_is_refused(tmp_path):
    with pytest.raises(ValueError, match="randomly initialised"):
        ScouterModule(num_classes=3, freeze_stages=2, **TINY)


def test_unknown_zoo_name_lists_known_names():
    with pytest.raises(KeyError, match="no model named 'scouter_pos_nope'.*known"):
        ScouterModule(num_classes=3, zoo="scouter_pos_nope")


def test_warmup_with_step_schedule_is_refused():
    with pytest.raises(ValueError, match="warmup_steps"):
        ScouterModule(num_classes=3, scheduler="step", warmup_steps=10, **TINY)


# --- freezing and use_pre -----------------------------------------------------------------------


def test_freeze_stages_follows_the_reference_stage_order():
    model = timm.create_model("resnet18", num_classes=0)
    frozen, kept = freeze_backbone_stages(model, 2)
    assert not kept
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"layer3", "layer4"}
    assert {n.split(".")[0] for n in frozen} == {"conv1", "bn1", "layer1", "layer2"}


def test_freezing_never_freezes_the_fresh_mnist_stem_or_the_head(tmp_path):
    weights = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), weights)
    with pytest.warns(UserWarning, match="conv1.weight trainable"):
        module = ScouterModule(
            num_classes=3,
            backbone="resnet18",
            in_chans=1,
            stem="mnist",
            pretrained_file=str(weights),
            freeze_stages=3,
            hidden_dim=16,
        )
    backbone = module.model.backbone.model
    assert backbone.conv1.weight.requires_grad  # fresh: the reference froze it at random init
    assert (
        not backbone.bn1.weight.requires_grad and not backbone.layer3[0].conv1.weight.requires_grad
    )
    assert all(p.requires_grad for p in backbone.layer4.parameters())
    assert all(p.requires_grad for p in module.model.head.parameters())


def test_init_backbone_from_an_fc_checkpoint_copies_its_backbone(tiny_folder, tmp_path):
    config = tiny_config(
        tiny_folder, tmp_path, trainer={"max_steps": 2}, model={**TINY, "head": "fc"}
    )
    main(["fit", "--config", str(write_config(tmp_path / "fc.yaml", config))])
    fc = tmp_path / "ckpt" / "fc" / "last.ckpt"
    module = ScouterModule(num_classes=3, init_backbone_from=str(fc), freeze_stages=1, **TINY)
    stored = safe_torch_load(fc)["state_dict"]
    for key, value in module.model.backbone.state_dict().items():
        torch.testing.assert_close(value, stored[f"model.backbone.{key}"], rtol=0, atol=0)
    assert not module.model.backbone.model.conv1[0].weight.requires_grad  # loaded, so frozen


# --- optimiser ----------------------------------------------------------------------------------


def test_adamw_applies_weight_decay_and_the_backbone_lr():
    module = ScouterModule(num_classes=3, lr=1e-3, backbone_lr=1e-4, weight_decay=0.05, **TINY)
    config = module.configure_optimizers()
    optimizer = config["optimizer"]
    assert isinstance(optimizer, torch.optim.AdamW)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["head"]["lr"] == 1e-3 and groups["backbone"]["lr"] == 1e-4
    assert all(g["weight_decay"] == 0.05 for g in optimizer.param_groups)
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert config["lr_scheduler"]["interval"] == "epoch"


# --- measured effects of training ---------------------------------------------------------------


def _train(root: Path, tmp_path: Path, steps: int, **model_args) -> ScouterModule:
    pl.seed_everything(0, workers=True)
    module = ScouterModule(num_classes=3, lr=3e-3, scheduler="none", **{**TINY, **model_args})
    _trainer(tmp_path, steps).fit(module, datamodule=_datamodule(root))
    return module.eval()


def _batch(root: Path) -> dict:
    datamodule = _datamodule(root)
    datamodule.setup()
    return next(iter(datamodule.val_dataloader()))


def test_scouter_neg_predicts_the_class_with_the_least_attention(tiny_folder, tmp_path):
    module = _train(tiny_folder, tmp_path, 40, sign=-1)
    batch = _batch(tiny_folder)
    reduced = {}
    hook = module.model.head.conv1x1.register_forward_hook(
        lambda m, i, o: reduced.__setitem__("v", torch.relu(o))
    )
    with torch.no_grad():
        out = module(batch["image"])
    hook.remove()
    # o_c = -(1/D) Σ_j A_cj ‖V_j‖₁ (docs/method.md#class-scores): the prediction is the least
    # attended class.
    weight = reduced["v"].sum(dim=1)  # (B, h, w) per-position L1 norm of the values
    attended = (out.attention * weight[:, None]).flatten(2).sum(-1) / module.model.head.hidden_dim
    torch.testing.assert_close(out.logits, -attended, rtol=1e-4, atol=1e-6)
    assert torch.equal(out.logits.argmax(1), attended.argmin(1))
    assert (out.logits.argmax(1) == batch["label"]).float().mean() > 0.5  # it learned


def test_area_loss_lowers_the_mean_attention(tiny_folder, tmp_path):
    batch = _batch(tiny_folder)
    means = {}
    for lam in (0.0, 10.0):
        module = _train(tiny_folder, tmp_path, 12, lambda_area=lam, power=1)
        with torch.no_grad():
            means[lam] = module(batch["image"]).slot_attention.mean().item()
    assert means[10.0] < means[0.0] - 0.05, means
