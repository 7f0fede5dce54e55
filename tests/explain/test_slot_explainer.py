"""SCOUTER's own maps: the model's attention, every class from one forward pass."""

from __future__ import annotations

import pytest
import torch

from scouter.explain import get_explainer
from scouter.models.classifier import ModelConfig, build_classifier


def test_slot_maps_are_the_models_attention(scouter_model, images):
    attention = scouter_model(images).attention
    every = get_explainer("slot")(scouter_model, images, target="all")
    torch.testing.assert_close(every.maps, attention)
    picked = get_explainer("slot")(scouter_model, images, target=torch.tensor([2, 1])).maps
    torch.testing.assert_close(picked[:, 0], attention[[0, 1], [2, 1]])


def test_slot_maps_sum_the_slots_of_a_class(scouter_model, images):
    out = scouter_model(images)
    maps = get_explainer("slot")(scouter_model, images, target="all").maps
    per_slot = out.slot_attention.view(2, 3, 2, *out.slot_attention.shape[-2:])
    torch.testing.assert_close(maps, per_slot.sum(2))
    assert float(maps.max()) < 2  # values in (0, s) with s = 2


def test_slot_explainer_needs_a_scouter_model(fc_model, images):
    with pytest.raises(ValueError, match="needs a SCOUTER model"):
        get_explainer("slot")(fc_model, images)


def test_slot_explainer_runs_without_gradients(scouter_model, images):
    explanation = get_explainer("slot")(scouter_model, images, target=0)
    assert not explanation.maps.requires_grad


@pytest.mark.parametrize("sign", [1, -1])
def test_slot_contribution_splits_the_class_score_over_positions(images, sign):
    torch.manual_seed(0)
    config = ModelConfig(backbone="test_resnet", num_classes=3, slots_per_class=2, sign=sign)
    model = build_classifier(config).eval()
    with torch.no_grad():
        out = model(images)
    maps = get_explainer("slot_contribution")(model, images, target="all").maps
    assert maps.shape == out.attention.shape
    # Σ_n M_c(n)·v(n) is the class score, up to the sign e: the split is exact.
    torch.testing.assert_close(sign * maps.sum(dim=(2, 3)), out.logits)
    assert float(maps.min()) >= 0
    values = model.head.position_values(model.backbone(images))
    torch.testing.assert_close(maps, out.attention * values[:, None])
    picked = get_explainer("slot_contribution")(model, images, target=torch.tensor([2, 1])).maps
    torch.testing.assert_close(picked[:, 0], maps[[0, 1], [2, 1]])


def test_slot_contribution_leaves_no_hook_behind(scouter_model, fc_model, images):
    get_explainer("slot_contribution")(scouter_model, images, target=0)
    assert not scouter_model.head._forward_hooks
    with pytest.raises(ValueError, match="needs a SCOUTER model.*'cam'"):
        get_explainer("slot_contribution")(fc_model, images)


class _CountingModel(torch.nn.Module):
    """Counts the forward passes of the model it wraps (and exposes its head)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.head, self.num_classes, self.calls = model, model.head, 3, 0

    def forward(self, images):
        self.calls += 1
        return self.model(images)


@pytest.mark.parametrize("name", ["slot", "slot_contribution"])
def test_slot_explainers_on_an_fc_model_fail_before_any_work(fc_model, images, name):
    model = _CountingModel(fc_model)
    explainer = get_explainer(name)
    assert explainer.requires == "xslot_head"
    message = (
        f"explainer '{name}' needs a SCOUTER model (xslot head), but this is an FC model: "
        "for FC models use a post-hoc explainer such as 'gradcam' or 'cam'"
    )
    assert explainer.model_problem(model) == message
    for target in (None, 0, "all"):  # None would otherwise predict first
        with pytest.raises(ValueError) as error:
            explainer(model, images, target=target)
        assert str(error.value) == message
    assert model.calls == 0
    with pytest.raises(ValueError, match="needs a SCOUTER model"):  # Classifier.explain too
        fc_model.explain(images, method=name)


def test_cam_on_a_scouter_model_fails_before_any_work(scouter_model, images):
    model = _CountingModel(scouter_model)
    with pytest.raises(ValueError, match="'cam' needs an FC head.* use 'gradcam'"):
        get_explainer("cam")(model, images)
    assert model.calls == 0


def test_explainers_without_a_head_requirement_accept_both_heads(fc_model, scouter_model):
    explainer = get_explainer("gradcam")
    assert explainer.requires == "any"
    assert explainer.model_problem(fc_model) is None
    assert explainer.model_problem(scouter_model) is None
