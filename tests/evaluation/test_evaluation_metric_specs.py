"""The metric table of evaluate.py: every entry builds, is fed only what it declares, and records
the settings results.json has always had."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import scouter.metrics as M
from scouter.evaluation import DEFAULT_METRICS, METRICS
from scouter.evaluation.metric_specs import (
    INPUTS,
    METRIC_SPECS,
    SPECS_BY_NAME,
    BatchInputs,
    BuildContext,
    build_metrics,
    classifier_record,
    needs_of,
    specs_of,
    uses,
)

WEIGHTS = torch.randn(3, 3, generator=torch.Generator().manual_seed(0))


def _forward(images: torch.Tensor) -> torch.Tensor:
    return images.mean(dim=(2, 3)) @ WEIGHTS  # (N, K=3)


def _explain(images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    return images[:, :1, ::4, ::4].abs() + classes[:, None, None, None]  # (N, 1, 4, 4)


def _context(num_classes: int = 3) -> BuildContext:
    return BuildContext(
        num_classes=num_classes, batch_size=64, seed=0, device=torch.device("cpu"),
        forward_fn=_forward, input_size=(16, 16), explain_fn=_explain,
    )  # fmt: skip


def _inputs() -> dict[str, object]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 16, 16, generator=generator)
    classes = torch.tensor([0, 2])
    every = torch.rand(2, 3, 4, 4, generator=generator)
    mask = torch.zeros(2, 16, 16, dtype=torch.bool)
    mask[:, :8, :8] = True
    return {
        "images": images,
        "classes": classes,
        "labels": torch.tensor([0, 1]),
        "logits": _forward(images),
        "maps": every[torch.arange(2), classes][:, None],
        "all_class_maps": every,
        "regions": mask,
        "image_size": (16, 16),
    }


def test_the_accepted_and_default_names_are_unchanged():
    assert METRICS == (
        "accuracy", "area", "area_reference", "precision", "insertion", "deletion",
        "infidelity", "sensitivity", "gridpg",
    )  # fmt: skip
    assert DEFAULT_METRICS == ("accuracy", "area", "precision", "insertion", "deletion")


def test_every_entry_names_a_metric_class_and_known_inputs():
    assert len(SPECS_BY_NAME) == len(METRIC_SPECS)
    for spec in METRIC_SPECS:
        assert hasattr(M, spec.metric), spec.name
        assert spec.needs <= set(INPUTS)
    with pytest.raises(ValueError, match="unknown batch input"):
        uses("maps", "mask")


@pytest.mark.parametrize("name", [s.name for s in METRIC_SPECS if s.scope != "grid"])
def test_each_metric_is_fed_only_the_inputs_it_declares(name):
    """An update given only its spec's ``needs`` (the rest None) works: the declaration is true."""
    spec = SPECS_BY_NAME[name]
    context = _context(num_classes=2 if name == "binary" else 3)
    metric = spec.build(context)
    given = {key: value for key, value in _inputs().items() if key in spec.needs}
    if name == "binary":
        given["logits"] = given["logits"][:, :2]
    spec.update(metric, BatchInputs(**given))
    assert metric.compute() is not None


def test_recorded_settings_are_those_results_json_always_had():
    context = _context()
    metrics = build_metrics(specs_of(list(METRICS), "image"), context)
    settings = {name: SPECS_BY_NAME[name].settings(m, context) for name, m in metrics.items()}
    curve = {"step": M.default_step(16, 16), "score": "softmax probability of the explained class"}
    assert settings == {
        "area": {"preparation": "relu_bilinear_minmax_per_map"},
        "area_reference": {"preparation": "reference_joint_minmax_uint8"},
        "precision": {"region": "mask if present, else union of boxes"},
        "insertion": {**curve, "blur": "rise_kernel_11_sigma_5"},
        "deletion": curve,
        "infidelity": dict(metrics["infidelity"].settings),
        "sensitivity": dict(metrics["sensitivity"].settings),
    }


def test_scopes_split_the_names_and_parts_follow_their_metric():
    names = ["gridpg", "sensitivity", "accuracy", "area"]
    assert [s.name for s in specs_of(names, "image")] == ["sensitivity", "area"]
    assert [s.name for s in specs_of(names, "classifier")] == ["accuracy", "binary"]
    assert [s.name for s in specs_of(names, "grid")] == ["gridpg"]
    assert "regions" in needs_of(["precision"]) and "regions" not in needs_of(["area"])
    assert "all_class_maps" in needs_of(["area_reference"])


@pytest.mark.parametrize("num_classes, records", [(3, ["accuracy"]), (2, ["accuracy", "binary"])])
def test_accuracy_records_binary_only_for_two_classes(num_classes, records):
    context = _context(num_classes)
    metrics = build_metrics(specs_of(["accuracy"], "classifier"), context)
    assert list(metrics) == records
    logits, labels = torch.eye(num_classes)[[0, 1, 1]] * 5, torch.tensor([0, 1, 0])
    for metric in metrics.values():
        metric.update(logits, labels)
    record = classifier_record("accuracy", metrics["accuracy"], context)
    assert record["value"] == pytest.approx(2 / 3)
    assert record["macro"] == pytest.approx(float(metrics["accuracy"].compute()["macro"]))
    assert (record["higher_is_better"], record["nan_count"]) == (True, 0)
    assert record["settings"] == {
        "top1": "over all images",
        "macro": "mean of per-class accuracies",
    }


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SPECS_BY_NAME["area"].default = False  # type: ignore[misc]
