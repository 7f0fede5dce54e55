"""Tiny StylEx pieces: a 16×16 generator, a test_resnet classifier, IDX files, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scouter.checkpoints import LIGHTNING_CONFIG_KEY, save_model
from scouter.models.classifier import build_classifier
from tests.data.conftest import write_idx_dataset

PREP = {"image_size": 16, "in_chans": 1, "mean": [0.5], "std": [0.5]}
TINY = {"image_size": 16, "w_dim": 16, "channels": 16, "min_channels": 8, "mapping_layers": 2}


def tiny_classifier(num_classes: int = 3, in_chans: int = 1, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_classifier(
        {"backbone": "test_resnet", "num_classes": num_classes, "head": "fc", "in_chans": in_chans}
    ).eval()


def tiny_stylex(classifier=None, **overrides):
    from scouter.stylex.module import StylexModule

    torch.manual_seed(0)
    settings = {**TINY, "classifier_preprocessing": PREP, **overrides}
    return StylexModule(classifier if classifier is not None else tiny_classifier(), **settings)


def write_classifier_ckpt(path: Path, model, data: dict) -> Path:
    """A checkpoint laid out as train.py writes it (model config, state_dict, data settings)."""
    torch.save(
        {
            LIGHTNING_CONFIG_KEY: model.config.to_dict(),
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "datamodule_hyper_parameters": data,
        },
        path,
    )
    return path


def blob_images(count: int, size: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bright rectangles whose height depends on the label (0, 1, 2 cycling): learnable shapes."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, size, size), np.uint8)
    labels = (np.arange(count) % 3).astype(np.uint8)
    for i in range(count):
        y, x = rng.integers(2, 8, size=2)
        images[i, y : y + 6 + 5 * labels[i], x : x + 10] = 220
    return images, labels


@pytest.fixture(scope="session")
def idx_root(tmp_path_factory) -> Path:
    """Tiny Fashion-MNIST-format IDX files (train 64, test 24 images, labels 0..2)."""
    root = tmp_path_factory.mktemp("stylex_idx")
    write_idx_dataset(root, {"train": 64, "t10k": 24}, seed_offset=0, images=blob_images)
    return root


@pytest.fixture(scope="session")
def classifier_ckpt(tmp_path_factory, idx_root) -> Path:
    """A 3-class, 1-channel, 16×16 classifier checkpoint in train.py's layout."""
    folder = tmp_path_factory.mktemp("stylex_clf")
    data = {
        "dataset": "fashion_mnist",
        "root": str(idx_root),
        "image_size": 16,
        "in_chans": 1,
        "mean": [0.5],
        "std": [0.5],
    }
    return write_classifier_ckpt(folder / "clf.ckpt", tiny_classifier(), data)


@pytest.fixture(scope="session")
def classifier_safetensors(tmp_path_factory) -> Path:
    return save_model(tiny_classifier(), tmp_path_factory.mktemp("stylex_st") / "clf.safetensors")
