"""train.py end to end: fit → checkpoint → load_model, resume, DDP, NaN guard.

Exact resume (epoch end, mid-epoch, SIGKILL) with augmentation: test_exact_resume.py.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import scouter
from scouter.checkpoints import safe_torch_load
from scouter.training import NonFiniteLossError, main
from tests.training.conftest import REPO, tiny_config, write_config


def _plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


def test_fit_writes_named_checkpoints_that_load_model_rebuilds(tiny_folder, tmp_path):
    config = write_config(
        tmp_path / "c.yaml", tiny_config(tiny_folder, tmp_path, trainer={"limit_train_batches": 3})
    )
    cli = main(["fit", "--config", str(config)])
    folder = tmp_path / "ckpt" / "scouter_pos-lam1-s1"
    names = sorted(p.name for p in folder.glob("*.ckpt"))
    assert names == ["last.ckpt", "scouter_pos-lam1-s1-epoch000-step000003.ckpt"]

    model = scouter.load_model(folder / "last.ckpt")  # weights_only=True inside
    # The folder dataset's class names (its sub-folder names) travel with the model.
    assert (
        model.class_names
        == cli.datamodule.class_names
        == sorted(p.name for p in (tiny_folder / "train").iterdir())
    )
    trained = cli.model.model.eval()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected, got = trained(images), model(images)
    torch.testing.assert_close(got.logits, expected.logits, rtol=0, atol=0)
    torch.testing.assert_close(got.attention, expected.attention, rtol=0, atol=0)
    checkpoint = safe_torch_load(folder / "last.ckpt")
    assert checkpoint["global_step"] == 3
    assert _plain(checkpoint["hyper_parameters"])
    assert _plain(checkpoint["scouter_model_config"])


def _state(path: Path) -> dict[str, torch.Tensor]:
    return safe_torch_load(path)["state_dict"]


def test_resume_from_last_matches_an_uninterrupted_run(tiny_folder, tmp_path):
    # ScouterDataModule's training order depends on (seed, epoch) only, so resuming is exact.
    whole = tiny_config(tiny_folder, tmp_path / "whole", trainer={"max_epochs": 2})
    main(["fit", "--config", str(write_config(tmp_path / "whole.yaml", whole))])

    split = tiny_config(tiny_folder, tmp_path / "split", trainer={"max_epochs": 1})
    split_config = str(write_config(tmp_path / "split.yaml", split))
    main(["fit", "--config", split_config])
    main(["fit", "--config", split_config, "--trainer.max_epochs", "2", "--ckpt_path", "last"])

    run = "scouter_pos-lam1-s1"
    resumed = safe_torch_load(tmp_path / "split" / "ckpt" / run / "last.ckpt")
    reference = safe_torch_load(tmp_path / "whole" / "ckpt" / run / "last.ckpt")
    assert resumed["global_step"] == reference["global_step"] == 12
    assert resumed["epoch"] == reference["epoch"]
    for key, value in reference["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, rtol=0, atol=0, msg=key)
    torch.testing.assert_close(
        resumed["optimizer_states"][0]["state"], reference["optimizer_states"][0]["state"]
    )


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_trains_and_its_checkpoint_loads(tiny_folder, tmp_path):
    path = write_config(
        tmp_path / "c.yaml", tiny_config(tiny_folder, tmp_path, trainer={"max_steps": 2})
    )
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "fit",
            "--config",
            str(path),
            "--trainer.strategy",
            "ddp",
            "--trainer.devices",
            "2",
            "--trainer.accelerator",
            "cpu",
        ],
        env=_subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = tmp_path / "ckpt" / "scouter_pos-lam1-s1" / "last.ckpt"
    assert safe_torch_load(last)["global_step"] == 2
    assert scouter.load_model(last).num_classes == 3


class _PoisonWeights(pl.Callback):
    """Sets one weight to NaN before the batch of global step ``at`` (what a blow-up does)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at:
            with torch.no_grad():
                pl_module.model.head.conv1x1.weight[0, 0] = float("nan")


def test_nan_loss_raises_naming_the_step_and_keeps_the_last_checkpoint(tiny_folder, tmp_path):
    config = tiny_config(tiny_folder, tmp_path, trainer={"max_steps": 10})
    config["trainer"]["callbacks"][0]["init_args"].update(
        monitor=None, save_top_k=0, every_n_train_steps=1
    )
    config["trainer"]["callbacks"].append(
        {"class_path": f"{__name__}._PoisonWeights", "init_args": {"at": 3}}
    )
    path = write_config(tmp_path / "c.yaml", config)
    with pytest.raises(NonFiniteLossError, match="global step 3"):
        main(["fit", "--config", str(path)])
    last = tmp_path / "ckpt" / "scouter_pos-lam1-s1" / "last.ckpt"
    checkpoint = safe_torch_load(last)
    assert checkpoint["global_step"] == 3
    assert all(
        torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point()
    )
    assert not list(last.parent.glob(".*partial"))


class _PoisonGradients(pl.Callback):
    """After the backward of global step ``at`` (on process ``rank`` only), sets one gradient to
    inf: a finite loss whose gradients blew up. Keeps the module to inspect after the error."""

    module = None  # the last module seen (the CLI builds the callback from the config)

    def __init__(self, at: int, rank: int | None = None) -> None:
        self.at, self.rank = at, rank

    def on_after_backward(self, trainer, pl_module) -> None:
        type(self).module = pl_module
        if trainer.global_step == self.at and self.rank in (None, trainer.global_rank):
            pl_module.model.head.conv1x1.weight.grad[0, 0] = float("inf")


class _PoisonLossOnRank(pl.Callback):
    """Sets a weight to NaN before step ``at`` on process ``rank`` only."""

    def __init__(self, at: int, rank: int) -> None:
        self.at, self.rank = at, rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at and trainer.global_rank == self.rank:
            with torch.no_grad():
                pl_module.model.head.conv1x1.weight[0, 0] = float("nan")


def _every_step_config(tiny_folder, tmp_path, callback: dict) -> dict:
    config = tiny_config(tiny_folder, tmp_path, trainer={"max_steps": 10})
    config["trainer"]["callbacks"][0]["init_args"].update(
        monitor=None, save_top_k=0, every_n_train_steps=1
    )
    config["trainer"]["callbacks"].append(callback)
    return config


def test_non_finite_gradients_raise_naming_the_step_and_skip_the_optimizer_step(
    tiny_folder, tmp_path
):
    config = _every_step_config(
        tiny_folder,
        tmp_path,
        {"class_path": f"{__name__}._PoisonGradients", "init_args": {"at": 3}},
    )
    path = write_config(tmp_path / "c.yaml", config)
    with pytest.raises(
        NonFiniteLossError, match="the gradients became non-finite at global step 3"
    ):
        main(["fit", "--config", str(path)])
    last = tmp_path / "ckpt" / "scouter_pos-lam1-s1" / "last.ckpt"
    saved = safe_torch_load(last)
    assert saved["global_step"] == 3
    # The step was skipped: the weights in memory are still those of the step-3 checkpoint (the
    # failed step's forward moved BatchNorm's running statistics, which are buffers, not weights).
    weights = dict(_PoisonGradients.module.named_parameters())
    assert len(weights) > 10
    for key, value in weights.items():
        assert torch.equal(value.detach(), saved["state_dict"][key]), key
        assert torch.isfinite(value).all(), key


def test_under_ddp_one_process_non_finite_loss_stops_both(tiny_folder, tmp_path):
    config = _every_step_config(
        tiny_folder,
        tmp_path,
        {"class_path": f"{__name__}._PoisonLossOnRank", "init_args": {"at": 2, "rank": 1}},
    )
    path = write_config(tmp_path / "c.yaml", config)
    command = [
        sys.executable, str(REPO / "train.py"), "fit", "--config", str(path),
        "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
    ]  # fmt: skip
    # Started from the tests package so that the callback class is importable in both processes.
    result = subprocess.run(
        command, env=_subprocess_env(), capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode != 0  # and it returned: no process was left waiting in all-reduce
    assert "the loss became non-finite at global step 2" in result.stderr
    assert "(on some process)" in result.stderr
    last = tmp_path / "ckpt" / "scouter_pos-lam1-s1" / "last.ckpt"
    assert safe_torch_load(last)["global_step"] == 2


@pytest.mark.parametrize("size", ["0", "-5", "[32, 0]"])
def test_invalid_image_size_on_the_command_line_names_the_setting(tiny_folder, tmp_path, size):
    config = write_config(tmp_path / "c.yaml", tiny_config(tiny_folder, tmp_path))
    with pytest.raises(ValueError, match=r"data\.image_size must be an integer >= 1.*\[H, W\]"):
        main(["fit", "--config", str(config), "--data.image_size", size])
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "runs").exists()


def test_fit_from_last_without_a_checkpoint_starts_a_new_run_and_says_so(
    tiny_folder, tmp_path, caplog, capfd
):
    trainer = {"limit_train_batches": 2, "limit_val_batches": 1}
    path = write_config(tmp_path / "c.yaml", tiny_config(tiny_folder, tmp_path, trainer=trainer))
    folder = os.path.realpath(tmp_path / "ckpt" / "scouter_pos-lam1-s1")
    # Lightning's own logger prints the line (another test may have raised its level).
    with (
        warnings.catch_warnings(record=True) as caught,
        caplog.at_level(logging.INFO, logger="pytorch_lightning"),
    ):
        warnings.simplefilter("always")
        main(["fit", "--config", str(path), "--ckpt_path", "last"])
    output = capfd.readouterr()
    shown = caplog.text + output.out + output.err + "\n".join(str(w.message) for w in caught)
    assert f"no last.ckpt in {folder}: starting a new run" in shown
    assert "save_last" not in shown and "no last checkpoint available" not in shown
    assert safe_torch_load(Path(folder) / "last.ckpt")["global_step"] == 2  # trained from scratch


def test_validate_from_last_without_a_checkpoint_fails_naming_the_folder(tiny_folder, tmp_path):
    path = write_config(tmp_path / "c.yaml", tiny_config(tiny_folder, tmp_path))
    folder = os.path.realpath(tmp_path / "ckpt" / "scouter_pos-lam1-s1")
    with pytest.raises(ValueError, match=rf"no last.ckpt in {re.escape(folder)}: train first"):
        main(["validate", "--config", str(path), "--ckpt_path", "last"])


def test_lightning_advertisements_and_its_internal_deprecation_are_silenced_only():
    import logging
    import warnings

    from pytorch_lightning.utilities.rank_zero import rank_zero_info

    from scouter.training.cli import silence_lightning_noise

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            silence_lightning_noise()
            silence_lightning_noise()  # idempotent
            rank_zero_info("💡 Tip: For seamless cloud logging, try installing [litlogger](...)")
            rank_zero_info("explanation maps: 8×8 cells at 64 px input")
            warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", stacklevel=1)
            warnings.warn("something a user must see", stacklevel=1)
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["explanation maps: 8×8 cells at 64 px input"]
    assert [str(w.message) for w in caught] == ["something a user must see"]
