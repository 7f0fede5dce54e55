"""``train.py`` with hostile or mistaken input, run as a user runs it (a subprocess).

Each case fails before any work with one line naming the problem and the fix (no usage dump, no
traceback), and nothing runs code from a checkpoint: issue 29 items 3, 8, 9, 10, 14, 15 and
issue 30 item 2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training.conftest import REPO, tiny_config, write_config

RUN = "scouter_pos-lam1-s1"


def _train_py(*args: str, cwd: Path | None = None, prefix: tuple[str, ...] = ()):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [*prefix, sys.executable, str(REPO / "train.py"), *args],
        env=env,
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _config(tiny_folder: Path, tmp_path: Path, **sections) -> Path:
    sections.setdefault("trainer", {"max_steps": 1, "limit_val_batches": 0})
    return write_config(tmp_path / "c.yaml", tiny_config(tiny_folder, tmp_path, **sections))


def _one_clean_error(result: subprocess.CompletedProcess) -> str:
    """The run failed with a short message of its own (no traceback, no 60-line usage)."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "usage:" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def _nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "runs").exists()


# --- 29.3: no code execution through --ckpt_path ------------------------------------------------


class _MakesFolder:
    """Unpickling this runs ``os.mkdir(marker)``: the stand-in for an attacker's payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _plant_last_ckpt(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "code-ran"
    last = tmp_path / "ckpt" / RUN / "last.ckpt"
    last.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "global_step": 5, "payload": _MakesFolder(marker)}, last)
    return last, marker


@pytest.mark.parametrize("weights_only", [[], ["--weights_only", "false"]], ids=["plain", "flag"])
def test_a_planted_last_ckpt_runs_no_code(tiny_folder, tmp_path, weights_only):
    last, marker = _plant_last_ckpt(tmp_path)
    config = _config(tiny_folder, tmp_path)
    result = _train_py("fit", "--config", str(config), "--ckpt_path", "last", *weights_only)
    error = _one_clean_error(result)
    assert not marker.exists()
    output = result.stdout + result.stderr
    assert "weights_only` set to `False`" not in output and "will likely succeed" not in output
    if weights_only:
        assert "does not take weights_only" in error and "weights_only=True" in error
    else:
        assert f"refusing to load {str(last)!r}" in error and "mkdir" in error


def test_the_python_api_refuses_weights_only_false_too(tiny_folder, tmp_path):
    from scouter.training import main
    from scouter.training.safe_checkpoint_io import SafeCheckpointIO, UnsafeLoadRefusedError

    trainer = {"limit_train_batches": 2, "limit_val_batches": 0}
    config = str(_config(tiny_folder, tmp_path, trainer=trainer))
    cli = main(["fit", "--config", config])
    assert isinstance(cli.trainer.strategy.checkpoint_io, SafeCheckpointIO)
    # scouter's own checkpoints (random states, loader position) read back under weights_only
    resumed = main(["fit", "--config", config, "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    assert resumed.trainer.global_step == 4
    last, marker = tmp_path / "ckpt" / RUN / "last.ckpt", tmp_path / "code-ran"
    torch.save({"state_dict": {}, "payload": _MakesFolder(marker)}, last)
    with pytest.raises(UnsafeLoadRefusedError, match="weights_only=False"):
        resumed.trainer.fit(resumed.model, resumed.datamodule, ckpt_path=last, weights_only=False)
    assert not marker.exists()


# --- 29.8: a misspelled key --------------------------------------------------------------------


def test_a_misspelled_option_on_the_command_line_suggests_the_key(tiny_folder, tmp_path):
    config = _config(tiny_folder, tmp_path)
    result = _train_py("fit", "--config", str(config), "--model.lamda_area", "3")
    error = _one_clean_error(result)
    assert result.returncode == 2
    assert "'--model.lamda_area' (did you mean '--model.lambda_area'?)" in error
    assert len(result.stderr.splitlines()) <= 3
    _nothing_written(tmp_path)


def test_a_misspelled_key_in_the_yaml_suggests_the_key(tiny_folder, tmp_path):
    config = _config(tiny_folder, tmp_path, model={"lamda_area": 3})
    error = _one_clean_error(_train_py("fit", "--config", str(config)))
    assert "'model.lamda_area' (did you mean 'model.lambda_area'?) in the config" in error
    _nothing_written(tmp_path)


# --- 29.9: --ckpt_path that is not a checkpoint -------------------------------------------------


def test_random_bytes_as_ckpt_path_name_the_file(tiny_folder, tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(os.urandom(4096))
    config = _config(tiny_folder, tmp_path)
    result = _train_py("validate", "--config", str(config), "--ckpt_path", str(junk))
    error = _one_clean_error(result)
    assert f"{str(junk)!r} is not a readable checkpoint" in error
    assert "weights_only" not in result.stderr


def test_a_folder_as_ckpt_path_lists_the_checkpoints_inside(tiny_folder, tmp_path):
    folder = tmp_path / "old_run"
    folder.mkdir()
    shutil.copy(REPO / "train.py", folder / "notes.txt")
    (folder / "last.ckpt").write_bytes(b"")
    config = _config(tiny_folder, tmp_path)
    error = _one_clean_error(_train_py("fit", "--config", str(config), "--ckpt_path", str(folder)))
    assert f"--ckpt_path: checkpoint {str(folder)!r} is a directory" in error
    assert f"checkpoint files inside: {folder / 'last.ckpt'}" in error
    _nothing_written(tmp_path)


# --- 29.10: folders the run cannot write -------------------------------------------------------


def test_a_read_only_working_folder_names_the_settings_before_work(tiny_folder, tmp_path):
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:  # root writes anywhere: drop the capability that lets it
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop CAP_DAC_OVERRIDE")
        prefix = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")
    work = tmp_path / "work"
    work.mkdir()
    config = tiny_config(tiny_folder, tmp_path, trainer={"max_steps": 1})
    config["trainer"]["logger"][0]["init_args"]["save_dir"] = "runs"
    config["trainer"]["callbacks"][0]["init_args"]["dirpath"] = "checkpoints/{run}"
    path = write_config(tmp_path / "c.yaml", config)
    work.chmod(0o555)
    try:
        result = _train_py("fit", "--config", str(path), cwd=work, prefix=prefix)
    finally:
        work.chmod(0o755)
    error = _one_clean_error(result)
    assert f"CSVLogger save_dir) {str(work / 'runs')!r}: {work} is not writable" in error
    assert f"ScouterCheckpoint dirpath) {str(work / 'checkpoints' / RUN)!r}" in error
    assert list(work.iterdir()) == []


# --- 29.14: model.num_classes ------------------------------------------------------------------


def test_model_num_classes_on_the_command_line_says_it_comes_from_the_data(tiny_folder, tmp_path):
    config = _config(tiny_folder, tmp_path)
    result = _train_py("fit", "--config", str(config), "--model.num_classes", "0")
    error = _one_clean_error(result)
    assert "model.num_classes is not a setting of train.py" in error
    assert "data.num_classes" in error and "data.dataset_options.num_classes" in error
    assert "not callable" not in result.stderr


# --- 29.15: 1 is a batch, 1.0 is all of them ---------------------------------------------------


def test_limit_val_batches_1_is_one_batch_and_the_run_says_so(tiny_folder, tmp_path):
    config = _config(tiny_folder, tmp_path, trainer={"max_steps": 1})
    result = _train_py("validate", "--config", str(config), "--trainer.limit_val_batches", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "trainer.limit_val_batches: 1 means 1 val batch (an integer counts batches, a float is a "
        "fraction); write 1.0 for all val batches (100 %)"
    ) in result.stdout + result.stderr


@pytest.mark.parametrize(("given", "parsed"), [("1", 1), ("1.0", 1.0), ("2", 2), ("0.5", 0.5)])
def test_batch_limits_keep_the_type_written(tiny_folder, tmp_path, given, parsed):
    from scouter.data import ScouterDataModule
    from scouter.training import ScouterCLI, ScouterModule

    args = ["--config", str(_config(tiny_folder, tmp_path)), "--trainer.limit_val_batches", given]
    cli = ScouterCLI(ScouterModule, ScouterDataModule, args=args, run=False)
    assert cli.trainer.limit_val_batches == parsed
    assert type(cli.trainer.limit_val_batches) is type(parsed)


# --- 30.2: a training set smaller than one batch ------------------------------------------------


def test_fewer_images_than_one_batch_fails_before_work(tiny_folder, tmp_path):
    config = _config(tiny_folder, tmp_path, data={"batch_size": 64})
    error = _one_clean_error(_train_py("fit", "--config", str(config)))
    assert "no training batch: 48 training images with data.batch_size 64" in error
    assert "data.drop_last true" in error and "--data.drop_last false" in error
    _nothing_written(tmp_path)
