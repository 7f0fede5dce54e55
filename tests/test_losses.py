"""ScouterLoss: cross-entropy + λ·area, mean (code) and sum (paper) variants."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scouter.losses import ScouterLoss
from scouter.models.classifier import ClassifierOutput


def output(batch=2, classes=3, slots=2, grid=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    slot_attention = torch.rand(batch, classes * slots, grid, grid, generator=g)
    attention = slot_attention.view(batch, classes, slots, grid, grid).sum(2)
    return ClassifierOutput(torch.randn(batch, classes, generator=g), attention, slot_attention)


def test_mean_area_matches_the_reference_formula():
    out = output()
    target = torch.tensor([0, 2])
    parts = ScouterLoss(lambda_area=1.5, power=2)(out, target)
    area = out.slot_attention.sum() / out.slot_attention.numel()
    assert parts.area.item() == pytest.approx(area.item() ** 2)
    assert parts.ce.item() == pytest.approx(F.nll_loss(F.log_softmax(out.logits, 1), target).item())
    assert parts.total.item() == pytest.approx(parts.ce.item() + 1.5 * area.item() ** 2)


def test_sum_area_is_the_per_image_sum():
    out = output()
    parts = ScouterLoss(lambda_area=0.01, power=1, area="sum")(out, torch.tensor([1, 1]))
    per_image = out.slot_attention.flatten(1).sum(1)
    assert parts.area.item() == pytest.approx(per_image.mean().item())


def test_fc_output_has_zero_area():
    out = ClassifierOutput(torch.randn(4, 3))
    parts = ScouterLoss(lambda_area=10)(out, torch.tensor([0, 1, 2, 0]))
    assert parts.area.item() == 0 and parts.total.item() == parts.ce.item()


def test_area_gradient_pushes_attention_down():
    out = output()
    attention = out.slot_attention.clone().requires_grad_(True)
    parts = ScouterLoss(lambda_area=1.0)(
        ClassifierOutput(out.logits, None, attention), torch.tensor([0, 1])
    )
    parts.total.backward()
    assert (attention.grad > 0).all()


@pytest.mark.parametrize(
    "kwargs, message", [({"area": "max"}, "area"), ({"lambda_area": -1}, "lambda")]
)
def test_bad_options_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ScouterLoss(**kwargs)
