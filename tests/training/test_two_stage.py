"""Two-stage training in one ``fit`` (``fc_warmup_epochs``): FC head first, then the xSlot head."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import scouter
from scouter.checkpoints import safe_torch_load
from scouter.training import ScouterModule, main
from tests.training.conftest import REPO, tiny_config, write_config

RUN = "scouter_pos-lam1-s1"
STEPS_PER_EPOCH = 6  # 48 training images of tiny_folder, batch 8


def _two_stage(root: Path, run_dir: Path, **trainer) -> dict:
    config = tiny_config(root, run_dir, trainer={"max_epochs": 3, **trainer})
    config["model"]["fc_warmup_epochs"] = 1
    return config


def _logged(run_dir: Path) -> list[dict[str, str]]:
    (metrics,) = (run_dir / "runs" / "csv").glob("version_*/metrics.csv")
    with metrics.open() as handle:
        return list(csv.DictReader(handle))


def _head(state: dict, prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def test_one_fit_trains_fc_then_xslot_and_keeps_only_scouter_best(tiny_folder, tmp_path):
    config = _two_stage(tiny_folder, tmp_path)
    cli = main(["fit", "--config", str(write_config(tmp_path / "c.yaml", config))])
    module = cli.model

    rows = _logged(tmp_path)
    warm_epochs = {int(r["epoch"]) for r in rows if r.get("fc_warmup/val/acc")}
    scouter_epochs = {int(r["epoch"]) for r in rows if r.get("val/acc")}
    assert warm_epochs == {0}
    assert scouter_epochs == {1, 2}
    # The FC stage learns: its training loss falls below chance level (ln 3 = 1.10).
    warm_losses = [
        float(r["fc_warmup/train/loss_step"]) for r in rows if r.get("fc_warmup/train/loss_step")
    ]
    assert len(warm_losses) == STEPS_PER_EPOCH
    assert min(warm_losses) < 1.0

    folder = tmp_path / "ckpt" / RUN
    best = [p for p in folder.glob("*.ckpt") if p.name != "last.ckpt"]
    assert len(best) == 1 and "epoch000" not in best[0].name  # never an FC-stage checkpoint
    checkpoint = safe_torch_load(best[0])
    assert checkpoint["scouter_training_stage"] == {"xslot_stage_started": True}
    assert _head(checkpoint["state_dict"], "fc_warmup_head.")  # resumable: the FC head is kept

    # What users load is the SCOUTER model alone, equal to the trained one.
    model = scouter.load_model(folder / "last.ckpt")
    assert model.is_scouter and not hasattr(model, "fc_warmup_head")
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(images).logits, module.model.eval()(images).logits)
    assert module.attention_grid == (4, 4)


def test_fc_stage_moves_the_backbone_and_leaves_the_xslot_head_untouched(tiny_folder, tmp_path):
    pl.seed_everything(0)  # as the CLI does before building the model
    initial = ScouterModule(num_classes=3, **tiny_config(tiny_folder, tmp_path)["model"])
    config = _two_stage(tiny_folder, tmp_path, max_steps=STEPS_PER_EPOCH)
    main(["fit", "--config", str(write_config(tmp_path / "c.yaml", config))])
    state = safe_torch_load(tmp_path / "ckpt" / RUN / "last.ckpt")
    assert state["global_step"] == STEPS_PER_EPOCH
    assert state["scouter_training_stage"] == {"xslot_stage_started": False}
    after = state["state_dict"]
    before = {k: v for k, v in initial.state_dict().items()}
    # Same seed_everything(0) => the same initial weights as this freshly built module.
    for key, value in _head(before, "model.head.").items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=0, msg=key)
    moved = [
        k
        for k, v in _head(before, "model.backbone.").items()
        if v.is_floating_point() and not torch.equal(after[k], v)
    ]
    assert moved, "the FC stage did not train the backbone"
    optimizer_state = state["optimizer_states"][0]["state"]
    head_ids = set(range(len(list(initial.model.head.parameters()))))
    assert not head_ids & set(optimizer_state), "Adam state exists for the idle xSlot head"


def test_resume_across_the_stage_boundary_matches_an_uninterrupted_run(tiny_folder, tmp_path):
    whole = _two_stage(tiny_folder, tmp_path / "whole")
    main(["fit", "--config", str(write_config(tmp_path / "whole.yaml", whole))])

    split = _two_stage(tiny_folder, tmp_path / "split", max_steps=STEPS_PER_EPOCH)
    split_config = str(write_config(tmp_path / "split.yaml", split))
    main(["fit", "--config", split_config])  # stops at the end of the FC stage
    main(["fit", "--config", split_config, "--trainer.max_steps", "-1", "--ckpt_path", "last"])

    resumed = safe_torch_load(tmp_path / "split" / "ckpt" / RUN / "last.ckpt")
    reference = safe_torch_load(tmp_path / "whole" / "ckpt" / RUN / "last.ckpt")
    assert resumed["global_step"] == reference["global_step"] == 3 * STEPS_PER_EPOCH
    for key, value in reference["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, rtol=0, atol=0, msg=key)


def test_fc_warmup_needs_an_xslot_model_and_an_epoch_left(tiny_folder, tmp_path):
    with pytest.raises(ValueError, match="head is already FC: set fc_warmup_epochs: 0"):
        ScouterModule(num_classes=3, backbone="test_resnet", head="fc", fc_warmup_epochs=1)
    with pytest.raises(ValueError, match="fc_warmup_epochs must be >= 0"):
        ScouterModule(num_classes=3, backbone="test_resnet", fc_warmup_epochs=-1)
    config = _two_stage(tiny_folder, tmp_path, max_epochs=1)
    path = write_config(tmp_path / "c.yaml", config)
    with pytest.raises(ValueError, match=r"fc_warmup_epochs=1 leaves no epoch.*max_epochs=1"):
        main(["fit", "--config", str(path)])
    assert not list((tmp_path / "ckpt").rglob("*.ckpt"))  # nothing written


@pytest.mark.slow
def test_two_stage_under_ddp_crosses_the_boundary(tiny_folder, tmp_path):
    config = _two_stage(tiny_folder, tmp_path, max_epochs=2)
    config["trainer"].update(strategy="ddp", devices=2, deterministic=False)
    path = write_config(tmp_path / "c.yaml", config)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "fit", "--config", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = safe_torch_load(tmp_path / "ckpt" / RUN / "last.ckpt")
    assert last["epoch"] == 1 and last["scouter_training_stage"]["xslot_stage_started"]
    assert scouter.load_model(tmp_path / "ckpt" / RUN / "last.ckpt").is_scouter


def test_fc_aux_head_keeps_training_beside_the_xslot_head(tiny_folder, tmp_path):
    config = _two_stage(tiny_folder, tmp_path, max_epochs=2)
    config["model"]["fc_aux_weight"] = 0.5
    path = str(write_config(tmp_path / "c.yaml", config))
    main(["fit", "--config", path, "--trainer.max_steps", str(STEPS_PER_EPOCH)])
    boundary = safe_torch_load(tmp_path / "ckpt" / RUN / "last.ckpt")["state_dict"]
    main(["fit", "--config", path, "--ckpt_path", "last"])
    end = safe_torch_load(tmp_path / "ckpt" / RUN / "last.ckpt")["state_dict"]
    # Without fc_aux_weight the FC head is idle after the warm-up; with it, it keeps learning.
    for key, value in _head(boundary, "fc_warmup_head.").items():
        assert not torch.equal(end[key], value), f"{key} did not train in the xSlot stage"
    (metrics,) = (tmp_path / "runs" / "csv").glob("version_1/metrics.csv")  # the resumed fit
    with metrics.open() as handle:
        rows = list(csv.DictReader(handle))
    aux = [float(r["train/fc_aux_ce_step"]) for r in rows if r.get("train/fc_aux_ce_step")]
    assert len(aux) == STEPS_PER_EPOCH  # logged in the xSlot stage only
    assert all(torch.isfinite(torch.tensor(aux)))
    model = scouter.load_model(tmp_path / "ckpt" / RUN / "last.ckpt")
    assert model.is_scouter and not hasattr(model, "fc_warmup_head")


def test_fc_aux_weight_adds_its_cross_entropy_to_the_training_loss(tiny_folder, tmp_path):
    pl.seed_everything(0)
    module = ScouterModule(
        num_classes=3, **{**tiny_config(tiny_folder, tmp_path)["model"], "fc_aux_weight": 0.5}
    )
    module.log = lambda *args, **kwargs: None  # no trainer: only the returned loss matters
    batch = {"image": torch.randn(4, 3, 32, 32), "label": torch.tensor([0, 1, 2, 0])}
    total = module.training_step(batch, 0)
    features = module.model.backbone(batch["image"])
    output = module.model(batch["image"])
    expected = module.loss(output, batch["label"]).total + 0.5 * torch.nn.functional.cross_entropy(
        module.fc_warmup_head(features), batch["label"]
    )
    torch.testing.assert_close(total, expected)


def test_fc_aux_weight_needs_an_xslot_model_and_a_non_negative_weight():
    with pytest.raises(ValueError, match="head is already FC: set fc_aux_weight: 0"):
        ScouterModule(num_classes=3, backbone="test_resnet", head="fc", fc_aux_weight=1.0)
    with pytest.raises(ValueError, match="fc_aux_weight must be >= 0"):
        ScouterModule(num_classes=3, backbone="test_resnet", fc_aux_weight=-1.0)
