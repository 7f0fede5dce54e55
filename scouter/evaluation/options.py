"""What an evaluation takes and what :func:`~scouter.evaluation.prepare` hands to
:func:`~scouter.evaluation.run`: the accepted names (metrics from
:mod:`~scouter.evaluation.metric_specs`, explained-class modes, splits),
:class:`EvaluationOptions`, :class:`PreparedEvaluation` and :class:`EvaluationError`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

# The metric names (METRICS, DEFAULT_METRICS) come from the metric table, one entry per metric.
from scouter.evaluation.metric_specs import DEFAULT_METRICS, METRICS  # noqa: F401

EXPLAINED_CLASS_MODES = ("auto", "target", "predicted", "least_similar", "wordnet")
SPLITS = ("train", "val", "test")


#: Where ``evaluate.py`` takes the preprocessing from (``--preprocessing``).
PREPROCESSING_SOURCES = ("checkpoint", "config")


class DataConfigMismatchWarning(UserWarning):
    """The config's ``data:`` section preprocesses differently from the checkpoint's data config."""


class EvaluationError(ValueError):
    """A user-caused problem (the message says how to fix it): found by :func:`prepare` before
    evaluation starts, or by :func:`run` when the model's outputs turn non-finite."""


@dataclass
class EvaluationOptions:
    """What to evaluate and where to write it.

    Attributes:
        checkpoint: any checkpoint :func:`scouter.load_model` reads (ours or an original SCOUTER
            one); bare state_dicts take their architecture from the config's ``model:`` section.
        config: a training YAML (``configs/<dataset>/<variant>.yaml``, or the ``config.yaml``
            train.py saved beside the run's logs, e.g. ``runs/<...>/csv/version_0/config.yaml``)
            or its parsed dict; its ``data:`` section (ScouterDataModule arguments) builds the
            dataset.
        data_overrides: ``data:`` settings that replace the config's, by dotted key (as
            train.py's ``--data.*``), e.g. ``{"root": "mydata", "dataset_options.num_classes": 3}``.
        explainers: explainer names (:func:`scouter.explain.list_explainers`); default
            ``["slot"]`` for SCOUTER models and ``["gradcam"]`` for FC models.
        explainer_settings: explainer name → settings, e.g. ``{"ig": {"steps": 16}}``.
        metrics: names from :data:`METRICS`; default :data:`DEFAULT_METRICS`.
        split: ``"test"`` (default), ``"val"`` or ``"train"`` (always with evaluation transforms).
        limit: evaluate only the first N images of the split.
        explained_class: ``"auto"`` (ground truth for SCOUTER+ and FC; for SCOUTER− the least
            similar class by the model's own class slots), ``"target"``, ``"predicted"``,
            ``"least_similar"`` (by the model's class slots / FC rows), ``"wordnet"`` (Wu–Palmer
            over the dataset's wnids, local WordNet) or a class index
            (docs/metrics.md#explained-class).
        out: folder for ``results.json`` and ``per_image.csv`` (created).
        export: folder for overlays, ``grid.png`` and ``report.html`` (created).
        num_images: images shown in the export.
        batch_size: override of ``data.batch_size``.
        num_workers: override of ``data.num_workers``.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:0"``, …
        seed: seed of the infidelity / sensitivity perturbations.
        metric_batch_size: perturbed images per forward pass inside the metrics.
        progress: show a progress bar.
        gridpg_size: cells per side of the GridPG grids (``None``: the grids file's, else 2).
        gridpg_geometry: ``"rescale"`` (grid at the input size, default) or ``"tile"`` (grid
            at ``n×`` the input size).
        gridpg_threshold: the softmax probability of the true class an image needs to enter a
            grid (``None``: the grids file's, else 0.99).
        gridpg_count: number of grids (``None``: the grids file's, else 100).
        gridpg_grids: the grids file: reused when it exists, else built and written there
            (default ``<out or export>/gridpg_grids.json``).
        preprocessing: where the input preprocessing (size, channels, mean, std, eval resize)
            comes from: ``"checkpoint"`` (default: the data config stored with the model, when it
            has one) or ``"config"`` (the YAML's ``data:`` section). Either way a disagreement
            between the two is warned about, naming each field.
    """

    checkpoint: str | Path
    config: str | Path | dict[str, Any]
    data_overrides: dict[str, Any] = field(default_factory=dict)
    explainers: Sequence[str] | None = None
    explainer_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: Sequence[str] | None = None
    split: str = "test"
    limit: int | None = None
    explained_class: str | int = "auto"
    out: str | Path | None = None
    export: str | Path | None = None
    num_images: int = 8
    batch_size: int | None = None
    num_workers: int | None = None
    device: str = "auto"
    seed: int = 0
    metric_batch_size: int = 256
    progress: bool = True
    preprocessing: str = "checkpoint"
    gridpg_size: int | None = None
    gridpg_geometry: str = "rescale"
    gridpg_threshold: float | None = None
    gridpg_count: int | None = None
    gridpg_grids: str | Path | None = None


@dataclass
class PreparedEvaluation:
    """Everything :func:`run` needs, validated by :func:`prepare`."""

    options: EvaluationOptions
    config: dict[str, Any]
    config_path: str | None
    model: nn.Module
    datamodule: Any
    dataset: Any
    explainers: dict[str, Any]
    metrics: list[str]
    device: torch.device
    explained_class: str | int
    least_similar: Tensor | None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    gridpg: Any = None  # scouter.evaluation.gridpg.GridPGPlan when "gridpg" is evaluated
