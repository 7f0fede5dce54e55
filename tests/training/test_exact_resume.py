"""Resume reproduces an uninterrupted run exactly: at an epoch end and mid-epoch (in-process).

After a SIGKILL, through ``train.py`` subprocesses, for each schedule: test_resume_cli.py.

The runs augment their training images, load them with 2 worker processes (re-created on resume)
and use drop-path in the backbone, so the data order, each sample's augmentation and the global
random streams all have to be restored for the weights to match bit for bit.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from scouter.checkpoints import safe_torch_load
from scouter.training import main
from tests.training.conftest import tiny_config, write_config

RUN = "scouter_pos-lam1-s1"
STEPS_PER_EPOCH = 6  # 48 training images, batch 8


def _config(root: Path, run_dir: Path, **trainer) -> dict:
    config = tiny_config(
        root,
        run_dir,
        trainer={"max_epochs": 3, **trainer},
        data={"train_augment": True, "num_workers": 2},
    )
    config["model"]["backbone_kwargs"] = {"output_stride": 8, "drop_path_rate": 0.3}
    return config


def _fit(config: dict, path: Path, *extra: str) -> None:
    main(["fit", "--config", str(write_config(path, config)), *extra])


def _assert_same_training_state(got: Path, expected: Path) -> None:
    resumed, reference = safe_torch_load(got), safe_torch_load(expected)
    assert resumed["global_step"] == reference["global_step"]
    assert resumed["epoch"] == reference["epoch"]
    for key, value in reference["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, rtol=0, atol=0, msg=key)
    torch.testing.assert_close(
        resumed["optimizer_states"][0]["state"],
        reference["optimizer_states"][0]["state"],
        rtol=0,
        atol=0,
    )


@pytest.fixture(scope="module")
def uninterrupted(tiny_folder, tmp_path_factory) -> Path:
    """Two epochs (12 steps) without interruption; ``last.ckpt`` of the run."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    _fit(_config(tiny_folder, run_dir, max_epochs=2), run_dir / "c.yaml")
    return run_dir / "ckpt" / RUN / "last.ckpt"


def test_augmentation_and_drop_path_make_runs_of_other_seeds_differ(tiny_folder, tmp_path):
    # The comparison below is not vacuous: a run with another seed ends elsewhere.
    config = _config(tiny_folder, tmp_path, max_epochs=1)
    config["data"]["seed"] = 1
    _fit(config, tmp_path / "c.yaml")
    other = safe_torch_load(tmp_path / "ckpt" / RUN / "last.ckpt")["state_dict"]
    config = _config(tiny_folder, tmp_path / "same", max_epochs=1)
    _fit(config, tmp_path / "same.yaml")
    same = safe_torch_load(tmp_path / "same" / "ckpt" / RUN / "last.ckpt")["state_dict"]
    assert any(not torch.equal(other[key], same[key]) for key in same)


def test_resume_at_an_epoch_end_equals_the_uninterrupted_run(tiny_folder, tmp_path, uninterrupted):
    config = _config(tiny_folder, tmp_path, max_epochs=1)
    _fit(config, tmp_path / "c.yaml")
    _fit(config, tmp_path / "c.yaml", "--trainer.max_epochs", "2", "--ckpt_path", "last")
    _assert_same_training_state(tmp_path / "ckpt" / RUN / "last.ckpt", uninterrupted)


class _Crash(pl.Callback):
    """Fails the run right after the batch of global step ``at`` (before checkpoint callbacks run)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("simulated crash")


def test_resume_mid_epoch_equals_the_uninterrupted_run(tiny_folder, tmp_path, uninterrupted):
    config = _config(tiny_folder, tmp_path, max_epochs=2)
    config["trainer"]["callbacks"][0]["init_args"].update(
        monitor=None, save_top_k=0, every_n_train_steps=2
    )
    config["trainer"]["callbacks"].append(
        {"class_path": f"{__name__}._Crash", "init_args": {"at": 5}}
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(config, tmp_path / "c.yaml")
    last = tmp_path / "ckpt" / RUN / "last.ckpt"
    checkpoint = safe_torch_load(last)
    assert checkpoint["global_step"] == 4  # written at step 4 of 6 in the first epoch
    assert checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 0, "batches": 4}
    ]

    config["trainer"]["callbacks"].pop()
    with warnings.catch_warnings(record=True) as record:  # Lightning may warn or not
        warnings.simplefilter("always")
        _fit(config, tmp_path / "c.yaml", "--ckpt_path", "last")
    assert not [w for w in record if "not resumable" in str(w.message)]
    _assert_same_training_state(last, uninterrupted)
