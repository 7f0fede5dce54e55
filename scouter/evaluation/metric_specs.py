"""Every metric ``evaluate.py`` computes, as one table: :data:`METRIC_SPECS`.

A :class:`MetricSpec` says, for one metric name, how the metric is built (a class of
:mod:`scouter.metrics` and its keyword arguments from the :class:`BuildContext`), what each
update takes (:func:`uses`: names of :class:`BatchInputs` fields, which also decide what the
evaluation loop prepares, e.g. every class's maps or the images' regions), and what settings its
results record. The evaluation loops run over the specs; no other module dispatches on a
metric's name. Adding a metric is one :class:`torchmetrics.Metric` in ``scouter/metrics/`` and
one entry here (docs/metrics.md#adding-a-metric).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

Scope = Literal["classifier", "image", "grid"]
"""``"classifier"``: scored from the logits, once per run; ``"image"``: per explainer, on each
image; ``"grid"``: per explainer, on grids of images after the image loop
(:mod:`scouter.evaluation.gridpg`)."""


@dataclass(frozen=True)
class BuildContext:
    """What a metric may be built from (one per run, or per explainer for ``"image"`` metrics).

    Attributes:
        num_classes: ``K``.
        batch_size: perturbed images per forward pass inside a metric (``--metric-batch-size``).
        seed: seed of the perturbations (``--seed``).
        device: where the metrics and their generators live.
        forward_fn: ``images (N, C, H, W) -> logits (N, K)`` without gradients.
        input_size: ``(H, W)`` of the model input (``None`` for ``"classifier"`` metrics).
        explain_fn: ``images (N, C, H, W), classes (N,) -> maps (N, 1, h, w)`` of the explainer
            (``None`` for ``"classifier"`` metrics).
    """

    num_classes: int
    batch_size: int
    seed: int
    device: torch.device
    forward_fn: Callable[[Tensor], Tensor]
    input_size: tuple[int, int] | None = None
    explain_fn: Callable[[Tensor, Tensor], Tensor] | None = None

    def generator(self, offset: int) -> torch.Generator:
        """A generator seeded ``seed + offset`` (each perturbation metric its own offset)."""
        return torch.Generator(device=self.device).manual_seed(self.seed + offset)


@dataclass(frozen=True)
class BatchInputs:
    """What an update may take from one batch; fields nobody needs stay ``None``.

    Attributes:
        images: ``(B, C, H, W)`` model inputs.
        classes: ``(B,)`` explained classes.
        labels: ``(B,)`` ground-truth classes.
        logits: ``(B, K)``.
        maps: ``(B, 1, h, w)`` the explainer's map of each explained class.
        all_class_maps: ``(B, K, h, w)`` the explainer's maps of every class.
        regions: ``(B, H, W)`` masks when the dataset has them, else a length-``B`` list of
            ``(N_i, 4)`` xyxy boxes.
        image_size: ``(H, W)`` of ``images``.
    """

    images: Tensor | None = None
    classes: Tensor | None = None
    labels: Tensor | None = None
    logits: Tensor | None = None
    maps: Tensor | None = None
    all_class_maps: Tensor | None = None
    regions: Tensor | Sequence[Tensor] | None = None
    image_size: tuple[int, int] | None = None


INPUTS = tuple(BatchInputs.__dataclass_fields__)


@dataclass(frozen=True)
class Update:
    """The arguments of a metric's ``update``: positional, then keyword, by input name."""

    args: tuple[str, ...] = ()
    kwargs: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        unknown = [name for name in self.needs if name not in INPUTS]
        if unknown:
            raise ValueError(f"unknown batch input(s) {unknown}; valid: {', '.join(INPUTS)}")

    @property
    def needs(self) -> frozenset[str]:
        """The :class:`BatchInputs` fields this update reads."""
        return frozenset(self.args) | frozenset(name for _, name in self.kwargs)

    def __call__(self, metric: Any, inputs: BatchInputs) -> None:
        metric.update(
            *(getattr(inputs, name) for name in self.args),
            **{key: getattr(inputs, name) for key, name in self.kwargs},
        )


def uses(*args: str, **kwargs: str) -> Update:
    """``uses("maps", "regions", size="image_size")`` calls
    ``metric.update(maps, regions, size=image_size)`` with the batch's inputs."""
    return Update(args, tuple(kwargs.items()))


Settings = Callable[[Any, BuildContext], dict[str, Any]]


def fixed(settings: dict[str, Any]) -> Settings:
    """Settings recorded as given."""
    return lambda metric, context: dict(settings)


def own_settings(metric: Any, context: BuildContext) -> dict[str, Any]:
    """Settings the metric reports itself (its ``settings`` property)."""
    return dict(metric.settings)


def _always(context: BuildContext) -> bool:
    return True


def _no_arguments(context: BuildContext) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class MetricSpec:
    """One metric of ``evaluate.py``: how it is built, what it is fed, what it records.

    Attributes:
        name: the name in ``--metrics``, ``results.json`` and ``per_image.csv``.
        metric: the class in :mod:`scouter.metrics` (imported when the metric is built).
        update: :func:`uses` — the :class:`BatchInputs` passed to ``metric.update``.
        settings: the settings recorded beside its value (:func:`fixed`, :func:`own_settings`
            or a function of the built metric and the context).
        arguments: the class's keyword arguments, from the :class:`BuildContext`.
        scope: ``"classifier"``, ``"image"`` or ``"grid"`` (see :data:`Scope`).
        default: computed when ``--metrics`` is not given.
        part_of: computed whenever that metric is (not a name of its own in ``--metrics``).
        applies: whether it is computed for this run (e.g. only for two classes).
        summary: ``"classifier"`` metrics: the value fields of the record from the metric.
        higher_is_better: ``None``: the metric class's own attribute.
        mean_curve: record the mean curve (insertion / deletion).
    """

    name: str
    metric: str
    update: Update = field(default_factory=Update)
    settings: Settings = fixed({})
    arguments: Callable[[BuildContext], dict[str, Any]] = _no_arguments
    scope: Scope = "image"
    default: bool = False
    part_of: str | None = None
    applies: Callable[[BuildContext], bool] = _always
    summary: Callable[[Any], dict[str, Any]] | None = None
    higher_is_better: bool | None = None
    mean_curve: bool = False

    @property
    def needs(self) -> frozenset[str]:
        """The :class:`BatchInputs` fields an update of this metric reads."""
        return self.update.needs

    def build(self, context: BuildContext) -> Any:
        """The metric object, on ``context.device``."""
        cls = getattr(importlib.import_module("scouter.metrics"), self.metric)
        return cls(**self.arguments(context)).to(context.device)


def _curve_settings(blur: bool) -> Settings:
    def settings(metric: Any, context: BuildContext) -> dict[str, Any]:
        from scouter.metrics import default_step

        return {
            "step": default_step(*context.input_size),
            "score": "softmax probability of the explained class",
            **({"blur": "rise_kernel_11_sigma_5"} if blur else {}),
        }

    return settings


def _accuracy_summary(metric: Any) -> dict[str, Any]:
    values = {k: float(v) for k, v in metric.compute().items()}
    return {"value": values["top1"], "macro": values["macro"]}


def _binary_summary(metric: Any) -> dict[str, Any]:
    return {"value": {k: float(v) for k, v in metric.compute().items()}}


def _forward(context: BuildContext) -> dict[str, Any]:
    return {"forward_fn": context.forward_fn, "batch_size": context.batch_size}


METRIC_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "accuracy", "ClassificationAccuracy", scope="classifier", default=True,
        arguments=lambda c: {"num_classes": c.num_classes},
        update=uses("logits", "labels"),
        summary=_accuracy_summary, higher_is_better=True,
        settings=fixed({"top1": "over all images", "macro": "mean of per-class accuracies"}),
    ),
    MetricSpec(
        "binary", "BinaryClassificationReport", scope="classifier", part_of="accuracy",
        applies=lambda c: c.num_classes == 2,
        update=uses("logits", "labels"),
        summary=_binary_summary, higher_is_better=True,
        settings=fixed({"positive_class": 1, "threshold": 0.5}),
    ),
    MetricSpec(
        "area", "AreaSize", default=True,
        arguments=lambda c: {"input_size": c.input_size},
        update=uses("maps"),
        settings=fixed({"preparation": "relu_bilinear_minmax_per_map"}),
    ),
    MetricSpec(
        "area_reference", "AreaSize",
        arguments=lambda c: {"mode": "reference_uint8"},
        update=uses("all_class_maps", "classes"),
        settings=fixed({"preparation": "reference_joint_minmax_uint8"}),
    ),
    MetricSpec(
        "precision", "ExplanationPrecision", default=True,
        update=uses("maps", "regions", size="image_size"),
        settings=fixed({"region": "mask if present, else union of boxes"}),
    ),
    MetricSpec(
        "insertion", "InsertionAUC", default=True, arguments=_forward,
        update=uses("images", "maps", "classes"),
        settings=_curve_settings(blur=True), mean_curve=True,
    ),
    MetricSpec(
        "deletion", "DeletionAUC", default=True, arguments=_forward,
        update=uses("images", "maps", "classes"),
        settings=_curve_settings(blur=False), mean_curve=True,
    ),
    MetricSpec(
        "infidelity", "Infidelity",
        arguments=lambda c: {**_forward(c), "generator": c.generator(1)},
        update=uses("images", "maps", "classes"),
        settings=own_settings,
    ),
    MetricSpec(
        "sensitivity", "MaxSensitivity",
        arguments=lambda c: {
            "explain_fn": c.explain_fn, "batch_size": c.batch_size, "generator": c.generator(2),
        },
        update=uses("images", "classes"),
        settings=own_settings,
    ),
    # Scored on grids after the image loop, with its own settings (scouter.evaluation.gridpg).
    MetricSpec("gridpg", "GridPointingGame", scope="grid"),
)  # fmt: skip

SPECS_BY_NAME = {spec.name: spec for spec in METRIC_SPECS}

#: Names accepted by ``--metrics``, in table order.
METRICS = tuple(spec.name for spec in METRIC_SPECS if spec.part_of is None)
#: What ``--metrics`` defaults to.
DEFAULT_METRICS = tuple(spec.name for spec in METRIC_SPECS if spec.default)
#: Metrics scored on grids of images, not on each image (no value in an image's row).
GRID_METRICS = tuple(spec.name for spec in METRIC_SPECS if spec.scope == "grid")


def specs_of(names: Sequence[str], scope: Scope) -> list[MetricSpec]:
    """The specs of ``names`` (in their order) of one scope, each followed by its parts."""
    chosen = []
    for name in names:
        spec = SPECS_BY_NAME[name]
        if spec.scope == scope:
            chosen.append(spec)
            chosen += [s for s in METRIC_SPECS if s.part_of == name]
    return chosen


def needs_of(names: Sequence[str]) -> frozenset[str]:
    """Every :class:`BatchInputs` field the metrics ``names`` (and their parts) read."""
    specs = [SPECS_BY_NAME[n] for n in names]
    specs += [s for s in METRIC_SPECS if s.part_of in names]
    return frozenset().union(*(spec.needs for spec in specs))


def build_metrics(specs: Sequence[MetricSpec], context: BuildContext) -> dict[str, Any]:
    """Name → built metric, for the specs that apply to this run."""
    return {spec.name: spec.build(context) for spec in specs if spec.applies(context)}


def update_metrics(metrics: dict[str, Any], inputs: BatchInputs) -> None:
    """Feed one batch to every metric, each the inputs its spec names."""
    for name, metric in metrics.items():
        SPECS_BY_NAME[name].update(metric, inputs)


def higher_is_better(name: str, metric: Any) -> bool:
    """The spec's direction, else the metric class's."""
    spec = SPECS_BY_NAME[name]
    return bool(metric.higher_is_better if spec.higher_is_better is None else spec.higher_is_better)


def classifier_record(name: str, metric: Any, context: BuildContext) -> dict[str, Any]:
    """The ``results.json`` record of a ``"classifier"`` metric (no per-image values, no NaN)."""
    spec = SPECS_BY_NAME[name]
    return {
        **spec.summary(metric),
        "higher_is_better": higher_is_better(name, metric),
        "nan_count": 0,
        "settings": spec.settings(metric, context),
    }
