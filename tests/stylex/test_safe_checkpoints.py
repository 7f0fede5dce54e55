"""``stylex.py fit --ckpt_path`` reads checkpoints as ``train.py`` does: weights_only=True only,
so a planted checkpoint runs no code, and ``--weights_only`` is not offered (issue 30)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]


class _MakesFolder:
    """Unpickling this runs ``os.mkdir(marker)``: the stand-in for an attacker's payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("weights_only", [[], ["--weights_only", "false"]], ids=["plain", "flag"])
def test_a_planted_checkpoint_runs_no_code_through_stylex_fit(
    tmp_path, idx_root, classifier_ckpt, weights_only
):
    marker, planted = tmp_path / "code-ran", tmp_path / "planted.ckpt"
    torch.save({"state_dict": {}, "global_step": 5, "payload": _MakesFolder(marker)}, planted)
    config = {
        "trainer": {"accelerator": "cpu", "max_steps": 2, "logger": False},
        "model": {"w_dim": 16, "channels": 16, "min_channels": 8, "mapping_layers": 2},
        "data": {"root": str(idx_root), "image_size": 16, "classes": [0, 1], "batch_size": 8},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, str(REPO / "stylex.py"), "fit", "--config", "c.yaml",
         "--model.classifier", str(classifier_ckpt), "--ckpt_path", str(planted), *weights_only],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode != 0, done.stdout[-2000:]
    assert not marker.exists()
    output = done.stdout + done.stderr
    assert "weights_only` set to `False`" not in output and "will likely succeed" not in output
    if weights_only:
        assert "stylex.py does not take weights_only" in done.stderr
        assert "usage:" not in done.stderr
    else:
        assert f"stylex.py: error: refusing to load {str(planted)!r}" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
