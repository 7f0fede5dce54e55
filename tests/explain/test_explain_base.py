"""The explainer interface: registry, target handling, Explanation, batching invariances."""

from __future__ import annotations

import pytest
import torch

from scouter.explain import Explanation, get_explainer, list_explainers, resolve_targets

ALL_NAMES = [
    "blur_ig", "cam", "extremal_perturbation", "gradcam", "gradcam++", "guided_backprop",
    "guided_gradcam", "ig", "lime", "meaningful_perturbation", "occlusion", "rise", "saliency",
    "scorecam", "slot", "slot_contribution", "smoothgrad",
]  # fmt: skip

# Cheap settings so every method runs in well under a second on the tiny models.
FAST = {
    "blur_ig": {"steps": 4, "max_sigma": 8.0},
    "extremal_perturbation": {"steps": 5},
    # Free deletion (maps not all 0) on a 14×14 grid: each cell gets a clear gradient, so Adam
    # does not amplify float noise of near-zero gradients between batch sizes.
    "meaningful_perturbation": {"steps": 5, "l1_coeff": 0.0, "mask_size": 14},
    "ig": {"steps": 8},
    "lime": {"samples": 16, "segments": 8},
    "occlusion": {"window": 32},
    "rise": {"masks": 32, "batch_size": 16},
    "smoothgrad": {"samples": 3},
    "scorecam": {"batch_size": 48},
}
DETERMINISTIC = [n for n in ALL_NAMES if n != "smoothgrad"]
PIXEL = {"blur_ig", "guided_backprop", "ig", "occlusion", "rise", "saliency", "smoothgrad"}
PIXEL |= {"extremal_perturbation", "guided_gradcam", "lime", "meaningful_perturbation"}


def model_for(name, fc_model, scouter_model):
    return scouter_model if name.startswith("slot") else fc_model


def test_registry_lists_every_method():
    assert list_explainers() == ALL_NAMES


def test_unknown_explainer_error_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown explainer 'gradkam'.*gradcam\+\+.*rise"):
        get_explainer("gradkam")


def test_aliases_resolve_to_canonical_names():
    assert get_explainer("Grad-CAM").name == "gradcam"
    assert get_explainer("integrated_gradients").name == "ig"
    assert get_explainer("gradcampp").name == "gradcam++"


def test_unknown_setting_names_the_valid_ones():
    with pytest.raises(TypeError, match="valid settings.*steps"):
        get_explainer("ig", n_steps=4)


def test_settings_are_recorded_in_the_explanation(fc_model, images):
    explanation = get_explainer("ig", steps=8)(fc_model, images, target=1)
    assert explanation.method == "ig"
    assert explanation.settings["steps"] == 8
    assert explanation.settings["reduce"] == "sum_abs"
    assert explanation.targets.tolist() == [1, 1]


def test_none_target_explains_the_predicted_class(fc_model, images):
    predicted = fc_model(images).logits.argmax(1)
    assert torch.equal(resolve_targets(fc_model, images, None), predicted)
    explanation = get_explainer("gradcam")(fc_model, images)
    assert torch.equal(explanation.targets, predicted)


@pytest.mark.parametrize(
    "target, message",
    [(3, r"\[0, 3\)"), (torch.tensor([0, 1, 2]), r"\(B,\) or \(B, T\)"), ("every", "'all'")],
)
def test_bad_targets_are_rejected(fc_model, images, target, message):
    with pytest.raises(ValueError, match=message):
        get_explainer("saliency")(fc_model, images, target=target)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_batched_equals_one_image_at_a_time(name, fc_model, scouter_model, images):
    model = model_for(name, fc_model, scouter_model)
    explainer = get_explainer(name, **FAST.get(name, {}))
    targets = torch.tensor([2, 0])
    batched = explainer(model, images, target=targets)
    single = explainer(model, images[1:], target=targets[1:]).maps
    torch.testing.assert_close(batched.maps[1:], single, rtol=1e-4, atol=1e-5)
    # The map's resolution follows the method's kind.
    expected = (2, 1, 64, 64) if name in PIXEL else (2, 1, 2, 2)
    assert tuple(batched.maps.shape) == expected
    kind = "pixel" if name in PIXEL else "attention" if name.startswith("slot") else "cam"
    assert batched.kind == kind
    assert torch.isfinite(batched.maps).all() and batched.maps.abs().sum() > 0


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_all_classes_equal_one_class_at_a_time(name, fc_model, scouter_model, images):
    model = model_for(name, fc_model, scouter_model)
    explainer = get_explainer(name, **FAST.get(name, {}))
    every = explainer(model, images, target="all")
    assert every.targets.tolist() == [[0, 1, 2], [0, 1, 2]]
    targets = torch.tensor([1, 2])
    one = explainer(model, images, target=targets).maps
    torch.testing.assert_close(every.maps[[0, 1], [1, 2]][:, None], one, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(every.class_maps(targets), one, rtol=1e-4, atol=1e-5)


def test_gradient_methods_work_under_inference_mode(fc_model, images):
    with torch.inference_mode():
        frozen = images.clone()
        explanation = get_explainer("gradcam")(fc_model, frozen, target=0)
    torch.testing.assert_close(explanation.maps, get_explainer("gradcam")(fc_model, images, 0).maps)


def test_explainers_leave_the_model_mode_and_gradients_alone(fc_model, images):
    get_explainer("saliency")(fc_model, images, target=0)
    assert not fc_model.training
    assert all(p.grad is None for p in fc_model.parameters())


def test_explanation_rejects_mismatched_targets():
    with pytest.raises(ValueError, match="do not match"):
        Explanation(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long), "x")


def test_class_maps_of_a_single_class_explanation_checks_the_class():
    explanation = Explanation(torch.rand(2, 1, 4, 4), torch.tensor([1, 0]), "x")
    assert explanation.class_maps(torch.tensor([1, 0])) is explanation.maps
    with pytest.raises(ValueError, match="target='all'"):
        explanation.class_maps(torch.tensor([0, 0]))


@pytest.mark.parametrize(
    "name, settings, message",
    [
        ("ig", {"steps": 0}, r"'ig': steps must be an integer >= 1 \(integration points\), got 0"),
        ("ig", {"steps": 2.5}, r"'ig': steps must be an integer >= 1.*got 2.5"),
        ("ig", {"method": "simpson"}, r"'ig': method must be one of .*gausslegendre"),
        ("smoothgrad", {"samples": 0}, r"'smoothgrad': samples must be an integer >= 1"),
        ("smoothgrad", {"stdev": -0.1}, r"'smoothgrad': stdev must be >= 0"),
        ("occlusion", {"window": 0}, r"'occlusion': window must be an integer >= 1"),
        ("occlusion", {"stride": -2}, r"'occlusion': stride must be an integer >= 1"),
        ("rise", {"masks": 0}, r"'rise': masks must be an integer >= 1"),
        ("rise", {"cells": -1}, r"'rise': cells must be an integer >= 1"),
        ("rise", {"seed": "abc"}, r"'rise': seed must be an integer, got 'abc'"),
        ("rise", {"probability": 0.0}, r"'rise': probability must lie in \(0, 1\]"),
        ("blur_ig", {"steps": 0}, r"'blur_ig': steps must be an integer >= 1"),
        ("blur_ig", {"max_sigma": 0}, r"'blur_ig': max_sigma must be > 0"),
        ("gradcam", {"batch_size": 0}, r"'gradcam': batch_size must be an integer >= 1"),
        ("saliency", {"batch_size": True}, r"'saliency': batch_size must be an integer >= 1"),
    ],
)
def test_bad_integer_settings_fail_at_construction_naming_the_setting(name, settings, message):
    with pytest.raises(ValueError, match=message):
        get_explainer(name, **settings)


def test_integral_settings_are_accepted_as_ints():
    explainer = get_explainer("ig", steps=16.0, batch_size=8)
    assert explainer.steps == 16 and isinstance(explainer.settings["steps"], int)


def test_each_pass_of_several_classes_lets_its_graph_go_before_the_next(images):
    """A pass whose map is still joined to its graph (Guided Grad-CAM's is) must not keep that
    graph's activations alive while later passes run: they add up to gigabytes on large
    images."""
    import gc
    import weakref

    from scouter.explain.base import Explainer

    alive: list[bool] = []
    previous: list[weakref.ref] = []

    class Joined(Explainer):
        name = "joined"

        def explain(self, model, images, targets):
            gc.collect()
            alive.extend(ref() is not None for ref in previous)
            activation = images * 2.0  # saved by the product below: alive while the graph is
            previous.append(weakref.ref(activation))
            return (activation * activation).mean(1, keepdim=True)

    model = torch.nn.Linear(1, 3)
    explanation = Joined(batch_size=2)(model, images, target=torch.zeros(len(images), 3).long())
    assert explanation.maps.shape == (len(images), 3, *images.shape[-2:])
    assert len(previous) == (len(images) * 3 + 1) // 2 and alive and not any(alive)
