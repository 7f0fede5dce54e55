"""Tiny real-format data and configs for the training tests (fast on 2 CPU cores)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("left", "middle", "right")
IMAGE_SIZE = 32


def _write_split(root: Path, split: str, per_class: int, rng: np.random.Generator) -> None:
    """Class = where a bright square sits (left / middle / right third) on dim noise."""
    for label, name in enumerate(CLASSES):
        folder = root / split / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 60, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
            x = label * 10 + int(rng.integers(0, 3))
            y = int(rng.integers(4, 20))
            image[y : y + 9, x : x + 9] = 230
            Image.fromarray(image).save(folder / f"{split}_{i:03d}.png")


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``folder`` dataset: 3 classes, 16/4/4 images per class in train/val/test, 32x32 PNG."""
    root = tmp_path_factory.mktemp("tiny_folder")
    rng = np.random.default_rng(0)
    for split, count in (("train", 16), ("val", 4), ("test", 4)):
        _write_split(root, split, count, rng)
    return root


def tiny_config(root: Path, run_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A LightningCLI config for ``train.py`` on :func:`tiny_folder`; ``sections`` update it."""
    config: dict[str, Any] = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": 1,
            "deterministic": True,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
            "num_sanity_val_steps": 0,
            "logger": [
                {
                    "class_path": "pytorch_lightning.loggers.CSVLogger",
                    "init_args": {"save_dir": str(run_dir / "runs"), "name": "csv"},
                }
            ],
            "callbacks": [
                {
                    "class_path": "scouter.training.ScouterCheckpoint",
                    "init_args": {"dirpath": str(run_dir / "ckpt" / "{run}")},
                }
            ],
        },
        "model": {
            "backbone": "test_resnet",
            "head": "xslot",
            "sign": 1,
            "slots_per_class": 1,
            "hidden_dim": 16,
            "attention_norm": "abs",
            "backbone_kwargs": {"output_stride": 8},
            "lr": 0.003,
            "scheduler": "none",
        },
        "data": {
            "dataset": "folder",
            "root": str(root),
            "image_size": IMAGE_SIZE,
            "batch_size": 8,
            "num_workers": 0,
            "seed": 0,
            "mean": [0.2, 0.2, 0.2],
            "std": [0.3, 0.3, 0.3],
        },
    }
    for section, values in sections.items():
        if isinstance(config.get(section), dict):
            config[section].update(values)
        else:
            config[section] = values
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
