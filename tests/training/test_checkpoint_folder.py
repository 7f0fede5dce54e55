"""What a run leaves in its checkpoint folder: always its own last.ckpt, no unfinished files.

A second fit into a folder replaces ``last.ckpt`` (the earlier run's files are kept aside), a
periodic ``last.ckpt`` does not wait for the first validation, and a full disk while saving leaves
no partial file behind and is reported as what it is.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from scouter.checkpoints import safe_torch_load
from scouter.training import CheckpointFolderLockedError, folder_lock, main
from scouter.training.checkpoint_folder import EARLIER_RUNS
from tests.training.conftest import tiny_config, write_config

RUN = "scouter_pos-lam1-s1"


def _fit(config: dict, path: Path, *extra: str):
    return main(["fit", "--config", str(write_config(path, config)), *extra])


def _ckpt_files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.ckpt"))}


def test_a_second_fit_into_the_folder_owns_last_ckpt_and_sets_the_first_aside(
    tiny_folder, tmp_path, caplog, capfd
):
    folder = Path(os.path.realpath(tmp_path / "ckpt" / RUN))
    config = tiny_config(tiny_folder, tmp_path, trainer={"limit_train_batches": 2})
    _fit(config, tmp_path / "first.yaml")
    first = _ckpt_files(folder)
    assert sorted(first) == ["last.ckpt", f"{RUN}-epoch000-step000002.ckpt"]

    config["seed_everything"] = 1  # another run: other initial weights
    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="pytorch_lightning"):
        cli = _fit(config, tmp_path / "second.yaml")
    printed = caplog.text + "".join(capfd.readouterr())

    # last.ckpt is the second run's model (no last-v1.ckpt beside a stale last.ckpt) ...
    assert sorted(_ckpt_files(folder)) == sorted(first)
    second = safe_torch_load(folder / "last.ckpt")["state_dict"]
    for key, value in cli.model.state_dict().items():
        torch.testing.assert_close(second[key], value, rtol=0, atol=0, msg=key)
    # ... the first run's files are kept, unchanged, and the run says where
    (aside,) = (folder / EARLIER_RUNS).iterdir()
    assert _ckpt_files(aside) == first
    earlier = safe_torch_load(aside / "last.ckpt")["state_dict"]
    assert any(not torch.equal(earlier[key], second[key]) for key in second)
    assert f"moved them to '{aside}'" in printed
    # fit ends with the exact paths it wrote
    assert f"last: {folder / 'last.ckpt'}" in printed
    assert f"best (val/acc {cli.trainer.checkpoint_callback.best_model_score:.4g}): " in printed
    assert str(folder / f"{RUN}-epoch000-step000002.ckpt") in printed

    # resuming the folder's own run moves nothing
    _fit(config, tmp_path / "second.yaml", "--trainer.max_epochs", "2", "--ckpt_path", "last")
    assert [aside] == list((folder / EARLIER_RUNS).iterdir())
    assert safe_torch_load(folder / "last.ckpt")["global_step"] == 4


def test_periodic_last_ckpt_does_not_wait_for_the_first_validation(tiny_folder, tmp_path):
    # monitor val/acc (the shipped default), a save every 2 steps, the first validation after
    # step 5: Lightning wrote nothing at steps 2 and 4, so a run stopped at step 3 had nothing
    # to resume from.
    config = tiny_config(tiny_folder, tmp_path, trainer={"val_check_interval": 5})
    config["trainer"]["callbacks"][0]["init_args"]["every_n_train_steps"] = 2
    config["trainer"]["callbacks"].append(
        {"class_path": "tests.training.test_exact_resume._Crash", "init_args": {"at": 3}}
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(config, tmp_path / "c.yaml")
    folder = tmp_path / "ckpt" / RUN
    assert sorted(_ckpt_files(folder)) == ["last.ckpt"]
    assert safe_torch_load(folder / "last.ckpt")["global_step"] == 2

    config["trainer"]["callbacks"].pop()
    _fit(config, tmp_path / "c.yaml", "--ckpt_path", "last")
    # the best-model checkpoint still waits for the validation, and has its score
    best = folder / f"{RUN}-epoch000-step000005.ckpt"
    assert sorted(_ckpt_files(folder)) == ["last.ckpt", best.name]
    callbacks = safe_torch_load(best)["callbacks"]
    (state,) = [value for key, value in callbacks.items() if key.startswith("ScouterCheckpoint")]
    assert state["best_model_path"] == str(best) and state["best_model_score"] is not None
    assert safe_torch_load(folder / "last.ckpt")["global_step"] == 6


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_saving_leaves_no_partial_file_and_says_so(
    tiny_folder, tmp_path, monkeypatch
):
    folder = tmp_path / "ckpt" / RUN
    config = tiny_config(tiny_folder, tmp_path, trainer={"limit_train_batches": 2})
    _fit(config, tmp_path / "c.yaml")
    before = _ckpt_files(folder)

    def save_until_full(trainer, filepath, weights_only=False, storage_options=None):
        Path(filepath).write_bytes(b"\0" * 4096)  # part of the checkpoint, then the disk is full
        _disk_full()

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", save_until_full)
    with pytest.raises(OSError) as raised:
        _fit(config, tmp_path / "c.yaml", "--trainer.max_epochs", "2", "--ckpt_path", "last")
    assert raised.value.errno == errno.ENOSPC
    message = str(raised.value)
    assert f"could not save checkpoint '{folder / 'last.ckpt'}'" in message
    assert "No space left on device" in message and "Free space" in message
    assert "--ckpt_path last" in message
    assert not list(folder.glob(".*.partial")) and not (folder / "train.lock").exists()
    assert _ckpt_files(folder) == before  # the earlier checkpoints are intact


def test_a_full_disk_when_a_run_starts_is_reported_as_such_and_leftovers_are_named(
    tiny_folder, tmp_path, monkeypatch
):
    folder = tmp_path / "ckpt" / RUN
    config = tiny_config(tiny_folder, tmp_path, trainer={"limit_train_batches": 2})
    _fit(config, tmp_path / "c.yaml")
    leftover = folder / ".last.ckpt.0123abcd.partial"  # what a save killed with SIGKILL leaves
    leftover.write_bytes(b"\0" * 2_000_000)

    monkeypatch.setattr(folder_lock, "_create", _disk_full)
    with pytest.raises(OSError) as raised:
        _fit(config, tmp_path / "c.yaml", "--trainer.max_epochs", "2", "--ckpt_path", "last")
    assert not isinstance(raised.value, CheckpointFolderLockedError)
    assert raised.value.errno == errno.ENOSPC
    message = str(raised.value)
    assert f"cannot write in checkpoint folder '{folder}'" in message
    assert "No space left on device" in message and "Free space" in message
    assert f"2.0 MB: {leftover}" in message and "delete them" in message

    monkeypatch.undo()  # space freed: the next run takes the folder and removes the leftover
    _fit(config, tmp_path / "c.yaml", "--trainer.max_epochs", "2", "--ckpt_path", "last")
    assert not leftover.exists()
    assert safe_torch_load(folder / "last.ckpt")["global_step"] == 4


@pytest.mark.parametrize(
    "path",
    ["checkpoints/run", "/abs/last.ckpt", "file:///tmp/x.ckpt", "s3://bucket/x.ckpt",
     "memory://x", "simplecache::s3://b/x", "C:\\runs\\x.ckpt", "gs://b", Path("rel/x.ckpt")],
)  # fmt: skip
def test_is_local_path_agrees_with_fsspec_protocols(path):
    import fsspec.utils

    from scouter.training.checkpoint_folder import is_local_path

    assert is_local_path(path) == (fsspec.utils.get_protocol(str(path)) == "file")
