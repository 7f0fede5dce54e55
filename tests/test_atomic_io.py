"""Atomic writes: files get the permissions a plain ``open`` would give them."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from scouter.atomic_io import atomic_write_bytes, atomic_write_text
from scouter.checkpoints import save_model
from scouter.export import explanation_grid, write_per_image_csv, write_results_json
from scouter.models.classifier import ModelConfig, build_classifier


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield lambda value: os.umask(value)
    os.umask(previous)


@pytest.mark.parametrize(
    "mask, expected",
    [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)],
    ids=["umask022", "umask077", "umask002"],
)
def test_new_files_honour_the_umask_like_open(tmp_path, umask, mask, expected):
    umask(mask)
    with open(tmp_path / "plain.txt", "w") as handle:
        handle.write("reference")
    assert _mode(tmp_path / "plain.txt") == expected
    written = [
        atomic_write_text(tmp_path / "a.txt", "text"),
        atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01"),
        write_results_json(tmp_path / "out" / "results.json", {"value": 1.0}),
        write_per_image_csv(tmp_path / "out" / "per_image.csv", [{"id": "a", "area": 0.5}]),
        explanation_grid(
            tmp_path / "out" / "grid.png", [torch.rand(3, 8, 8)], {"m": torch.rand(1, 1, 8, 8)}
        ),
    ]
    model = build_classifier(ModelConfig(backbone="test_resnet", num_classes=2, head="fc"))
    weights = save_model(model, tmp_path / "export" / "model")
    written += [weights, weights.with_suffix(".json")]
    for path in written:
        assert _mode(path) == expected, path
    assert not list(tmp_path.rglob("*.tmp"))


def test_replacing_a_file_keeps_its_permissions(tmp_path, umask):
    umask(0o022)
    path = atomic_write_text(tmp_path / "results.json", "{}")
    os.chmod(path, 0o640)
    atomic_write_text(path, '{"value": 1}')
    assert _mode(path) == 0o640 and path.read_text() == '{"value": 1}'
