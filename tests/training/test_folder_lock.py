"""One fit per checkpoint folder: a live run's lock refuses a second; a dead run's is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings

import pytest

from scouter.training import CheckpointFolderLockedError, main
from scouter.training.folder_lock import LOCK_NAME, acquire, release
from tests.training.conftest import tiny_config, write_config

RUN = "scouter_pos-lam1-s1"


def _lock(folder, pid: int, host: str | None = None) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"pid": pid, "host": host or socket.gethostname(), "token": "other"})
    (folder / LOCK_NAME).write_text(text)
    return text


def _config(tiny_folder, tmp_path):
    trainer = {"limit_train_batches": 2, "limit_val_batches": 1}
    return write_config(tmp_path / "c.yaml", tiny_config(tiny_folder, tmp_path, trainer=trainer))


@pytest.fixture
def sleeper():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process.pid
    process.kill()
    process.wait()


@pytest.mark.parametrize("holder", ["this test", "another process"])
def test_fit_into_a_folder_held_by_a_live_run_fails_naming_its_pid(
    tiny_folder, tmp_path, sleeper, holder
):
    folder = tmp_path / "ckpt" / RUN
    pid = os.getpid() if holder == "this test" else sleeper
    text = _lock(folder, pid)
    with pytest.raises(
        CheckpointFolderLockedError, match=rf"in use by another training run: process {pid} on"
    ):
        main(["fit", "--config", str(_config(tiny_folder, tmp_path))])
    assert os.listdir(folder) == [LOCK_NAME]  # nothing written, nothing overwritten
    assert (folder / LOCK_NAME).read_text() == text  # the holder's lock is left alone


def test_a_lock_from_another_host_is_never_taken_over(tiny_folder, tmp_path):
    _lock(tmp_path / "ckpt" / RUN, 1, host="some-other-node")
    with pytest.raises(CheckpointFolderLockedError, match="process 1 on host 'some-other-node'"):
        main(["fit", "--config", str(_config(tiny_folder, tmp_path))])


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_removed_at_exit(tiny_folder, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its PID no longer exists
    folder = tmp_path / "ckpt" / RUN
    _lock(folder, dead.pid)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["fit", "--config", str(_config(tiny_folder, tmp_path))])
    assert any(f"stale lock '{folder / LOCK_NAME}' of process {dead.pid}" in str(w.message)
               for w in caught)  # fmt: skip
    assert (folder / "last.ckpt").is_file()
    assert not (folder / LOCK_NAME).exists()
    assert not [p for p in os.listdir(folder) if p.startswith(".")]


def test_checkpoint_callbacks_of_one_process_share_the_lock_the_last_removes_it(tmp_path):
    path = acquire(tmp_path)
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert acquire(tmp_path) == path  # a second checkpoint callback of the same run
    release(path)
    assert (tmp_path / LOCK_NAME).exists()
    release(path)
    assert not (tmp_path / LOCK_NAME).exists()
