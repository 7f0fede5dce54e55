"""A tiny trained-looking model and its published folder, shared by the zoo tests."""

from __future__ import annotations

import pytest
import torch

import scouter
from scouter import DataConfig
from scouter.model_folder import save_pretrained

CLASS_NAMES = ["circle", "square", "cross"]


def tiny_model(head: str = "xslot", seed: int = 0) -> scouter.Classifier:
    """A one-channel ``test_resnet`` classifier of three named classes, 32 px, in eval mode."""
    torch.manual_seed(seed)
    model = scouter.build_classifier(
        dict(
            backbone="test_resnet",
            num_classes=3,
            in_chans=1,
            head=head,
            hidden_dim=16,
            backbone_kwargs={"output_stride": 8},  # a 4x4 map grid at 32 px
        )
    )
    model.data_config = DataConfig(input_size=(32, 32), in_chans=1, mean=(0.5,), std=(0.25,))
    model.class_names = list(CLASS_NAMES)
    return model.eval()


@pytest.fixture
def model() -> scouter.Classifier:
    return tiny_model()


@pytest.fixture
def folder(model, tmp_path):
    return save_pretrained(model, tmp_path / "tiny", card="# tiny\n")
