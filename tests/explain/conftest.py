"""Tiny deterministic classifiers for the explainer tests (random weights, eval mode)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scouter.models.classifier import Classifier, ModelConfig, build_classifier


def tiny_classifier(head: str, seed: int = 0, **config) -> Classifier:
    """``test_resnet`` backbone (96 channels, stride 32) with an FC or xSlot head, eval mode."""
    torch.manual_seed(seed)
    model = build_classifier(
        ModelConfig(backbone="test_resnet", num_classes=3, head=head, **config)
    )
    return model.eval()


@pytest.fixture(scope="module")
def fc_model() -> Classifier:
    return tiny_classifier("fc")


@pytest.fixture(scope="module")
def scouter_model() -> Classifier:
    return tiny_classifier("xslot", slots_per_class=2)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Two 64×64 images → a 2×2 feature grid."""
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


class QuadrantModel(nn.Module):
    """Two classes: ``logit_0 = scale · mean of the top-left quadrant``, ``logit_1 = scale / 2``.

    The answer is known: only the top-left quadrant matters, and only for class 0.
    """

    num_classes = 2

    def __init__(self, scale: float = 8.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2] // 2, images.shape[-1] // 2
        score = self.scale * images[:, :, :h, :w].mean(dim=(1, 2, 3))
        return torch.stack([score, torch.full_like(score, self.scale / 2)], dim=1)


class QuadrantDetailModel(nn.Module):
    """``logit_0`` = energy of horizontal differences inside the top-left quadrant, ``logit_1 = 0``.

    Blurring removes the detail, so a blur path attributes only to top-left pixels.
    """

    num_classes = 2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2] // 2, images.shape[-1] // 2
        quadrant = images[:, :, :h, :w]
        score = (quadrant[..., 1:] - quadrant[..., :-1]).pow(2).mean(dim=(1, 2, 3))
        return torch.stack([score, torch.zeros_like(score)], dim=1)
