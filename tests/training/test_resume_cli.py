"""The README's resume promise, the way a user runs it: ``train.py fit`` killed with SIGKILL, then
the same command with ``--ckpt_path last``, ends with the weights of a run never interrupted.

Every run is a ``train.py`` subprocess on tiny Fashion-MNIST IDX files (1 thread each). The run to
be killed SIGKILLs itself at the start of a chosen step (:class:`SigkillAt`, armed by an
environment variable only, so the three runs share one command line): a real kill, at a step the
test knows, after a periodic ``last.ckpt`` was written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl

from scouter.checkpoints import safe_torch_load
from tests.data.conftest import write_idx_dataset
from tests.training.conftest import REPO, write_config
from tests.training.test_cli import _subprocess_env
from tests.training.test_exact_resume import _assert_same_training_state

KILL_ENV = "SCOUTER_TEST_SIGKILL_AT_STEP"


class SigkillAt(pl.Callback):
    """SIGKILLs its own process when a batch starts after ``$SCOUTER_TEST_SIGKILL_AT_STEP`` steps."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if os.environ.get(KILL_ENV) == str(trainer.global_step):
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture(scope="module")
def fashion(tmp_path_factory) -> Path:
    """Fashion-MNIST's official IDX file names: 60 training images (54 train / 6 val), 10 test."""
    root = tmp_path_factory.mktemp("fashion")
    write_idx_dataset(root, {"train": 60, "t10k": 10})
    return root


def _config(root: Path, run_dir: Path, model: dict, trainer: dict, checkpoint: dict) -> dict:
    """A user's config: 6 training steps per epoch (54 images, batch 8, drop_last)."""
    return {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
            "logger": [
                {
                    "class_path": "pytorch_lightning.loggers.CSVLogger",
                    "init_args": {"save_dir": str(run_dir / "runs"), "name": "csv"},
                }
            ],
            "callbacks": [
                {
                    "class_path": "scouter.training.ScouterCheckpoint",
                    "init_args": {"dirpath": str(run_dir / "ckpt"), **checkpoint},
                },
                {"class_path": f"{__name__}.SigkillAt"},
            ],
            **trainer,
        },
        "model": {
            "backbone": "test_resnet",
            "head": "xslot",
            "sign": 1,
            "slots_per_class": 1,
            "hidden_dim": 16,
            "attention_norm": "none",
            "backbone_kwargs": {"output_stride": 8},
            "lr": 0.003,
            **model,
        },
        "data": {
            "dataset": "fashion_mnist",
            "root": str(root),
            "in_chans": 1,
            "image_size": 28,
            "batch_size": 8,
            "num_workers": 0,
            "seed": 0,
            "val_fraction": 0.1,
            "train_augment": True,
        },
    }


def _train(config: Path, log: Path, *extra: str, kill_at: int | None = None) -> subprocess.Popen:
    """``python train.py fit --config config *extra`` on one thread; its output goes to ``log``."""
    env = {**_subprocess_env(), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop(KILL_ENV, None)
    if kill_at is not None:
        env[KILL_ENV] = str(kill_at)
    command = [sys.executable, str(REPO / "train.py"), "fit", "--config", str(config), *extra]
    with log.open("w") as output:  # a file, not a pipe: a full pipe would stall the run
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    process.log = log
    return process


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    process.wait(timeout=600)
    return process.returncode, process.log.read_text(errors="replace")


def _kill_resume_compare(
    tmp_path: Path, config: dict[str, Any], kill_at: int, saved_at: int, final_step: int
) -> None:
    reference_dir, killed_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    paths = {}
    for run_dir in (reference_dir, killed_dir):
        path = write_config(tmp_path / f"{run_dir.name}.yaml", config)
        path.write_text(path.read_text().replace("RUN_DIR", str(run_dir)))
        paths[run_dir] = path
    # the two first runs side by side (2 cores), each on one thread
    reference = _train(paths[reference_dir], tmp_path / "uninterrupted.log")
    killed = _train(paths[killed_dir], tmp_path / "killed.log", kill_at=kill_at)
    code, stderr = _finish(killed)
    assert code == -signal.SIGKILL, stderr[-3000:]
    last = killed_dir / "ckpt" / "last.ckpt"
    assert safe_torch_load(last)["global_step"] == saved_at, "not killed where the test meant"
    assert not list((killed_dir / "ckpt").glob(".*.partial"))

    resumed = _train(paths[killed_dir], tmp_path / "resumed.log", "--ckpt_path", "last")
    code, stderr = _finish(reference)
    assert code == 0, stderr[-3000:]
    code, stderr = _finish(resumed)
    assert code == 0, stderr[-3000:]
    assert f"Restoring states from the checkpoint path at {last}" in stderr

    assert safe_torch_load(last)["global_step"] == final_step
    _assert_same_training_state(last, reference_dir / "ckpt" / "last.ckpt")
    expected = safe_torch_load(reference_dir / "ckpt" / "last.ckpt")["lr_schedulers"]
    assert safe_torch_load(last)["lr_schedulers"] == expected


def _dirs(config: dict) -> dict:
    """Point the config's folders at ``RUN_DIR`` (replaced per run)."""
    config["trainer"]["logger"][0]["init_args"]["save_dir"] = "RUN_DIR/runs"
    config["trainer"]["callbacks"][0]["init_args"]["dirpath"] = "RUN_DIR/ckpt"
    return config


@pytest.mark.slow
def test_sigkill_then_resume_is_exact_with_cosine_warmup_max_steps_and_validation(
    fashion, tmp_path
):
    # The setting, small: cosine with warm-up over max_steps (which needs the run's
    # length before the checkpoint is read), validation every 4 batches, the shipped
    # ScouterCheckpoint (monitor val/acc) saving every 3 steps. Killed after 10 steps, whose
    # last.ckpt was written at the end of the validation after step 10 (mid-epoch: batch 4 of 6
    # of the second epoch); the resumed run crosses an epoch end and another validation.
    config = _config(
        fashion,
        tmp_path,
        model={"scheduler": "cosine", "warmup_steps": 3},
        trainer={"max_epochs": 100, "max_steps": 16, "val_check_interval": 4},
        checkpoint={"every_n_train_steps": 3, "monitor": "val/acc"},
    )
    _kill_resume_compare(tmp_path, _dirs(config), kill_at=10, saved_at=10, final_step=16)


@pytest.mark.slow
def test_sigkill_then_resume_is_exact_with_the_step_schedule_max_epochs_and_no_validation(
    fashion, tmp_path
):
    # The reference's per-epoch StepLR (halving every epoch, so a missed or doubled step shows),
    # max_epochs, no validation, periodic checkpoints without a monitor. Killed after 10 steps,
    # whose last.ckpt is the periodic one of step 8 (batch 2 of 6 of the second epoch).
    config = _config(
        fashion,
        tmp_path,
        model={"scheduler": "step", "lr_step_size": 1, "lr_gamma": 0.5},
        trainer={"max_epochs": 3, "limit_val_batches": 0},
        checkpoint={"every_n_train_steps": 4, "monitor": None, "save_top_k": 0},
    )
    _kill_resume_compare(tmp_path, _dirs(config), kill_at=10, saved_at=8, final_step=18)
