"""The explanation metrics of one explainer during :func:`~scouter.evaluation.run`: built from the
metric names (:mod:`scouter.evaluation.metric_specs`), updated batch by batch, summarised per
metric and per image."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from scouter.evaluation.checks import check_finite_outputs
from scouter.evaluation.metric_specs import (
    SPECS_BY_NAME,
    BatchInputs,
    BuildContext,
    build_metrics,
    higher_is_better,
    needs_of,
    specs_of,
    update_metrics,
)
from scouter.evaluation.options import EvaluationOptions


class _ExplainerMetrics:
    """The explanation metrics of one explainer (torchmetrics objects + their settings), built,
    fed and recorded as their :data:`~scouter.evaluation.metric_specs.METRIC_SPECS` entries say."""

    def __init__(
        self,
        names: Sequence[str],
        explainer: Any,
        model: nn.Module,
        forward_fn: Callable[[Tensor], Tensor],
        input_size: tuple[int, int],
        options: EvaluationOptions,
        device: torch.device,
    ) -> None:
        self.explainer = explainer
        self.model = model
        self.checkpoint = options.checkpoint

        def explain_fn(images: Tensor, classes: Tensor) -> Tensor:
            return explainer(model, images, target=classes).maps

        self.context = BuildContext(
            num_classes=int(model.num_classes),
            input_size=input_size,
            batch_size=options.metric_batch_size,
            seed=options.seed,
            device=device,
            forward_fn=forward_fn,
            explain_fn=explain_fn,
        )
        self.metrics: dict[str, Any] = build_metrics(specs_of(names, "image"), self.context)
        self.needs = needs_of(list(self.metrics))
        self.settings: dict[str, dict[str, Any]] = {
            name: SPECS_BY_NAME[name].settings(metric, self.context)
            for name, metric in self.metrics.items()
        }

    def update(
        self, batch: dict[str, Any], images: Tensor, classes: Tensor, batch_index: int = 0
    ) -> Tensor:
        """Explain the batch and update every metric; returns the ``(B, 1, h, w)`` maps.

        The explainer runs once: for every class when a metric needs ``all_class_maps``, else for
        the explained classes.

        Raises:
            EvaluationError: naming the batch and images, when a map holds NaN or ±inf.
        """
        what = f"{self.explainer.name!r} explanation maps"
        every = None
        if "all_class_maps" in self.needs:
            every = self.explainer(self.model, images, target="all")
            check_finite_outputs(what, every.maps, batch_index, batch["id"], self.checkpoint)
            maps = every.class_maps(classes)
        else:
            maps = self.explainer(self.model, images, target=classes).maps
            check_finite_outputs(what, maps, batch_index, batch["id"], self.checkpoint)
        inputs = BatchInputs(
            images=images,
            classes=classes,
            maps=maps,
            all_class_maps=None if every is None else every.maps,
            regions=batch_regions(batch) if "regions" in self.needs else None,
            image_size=tuple(images.shape[-2:]),
        )
        update_metrics(self.metrics, inputs)
        return maps

    def results(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        summary, per_image = {}, {}
        for name, metric in self.metrics.items():
            values = metric.per_image().detach().float().cpu()
            nan_count = int(values.isnan().sum())
            finite = values[~values.isnan()]
            summary[name] = {
                "value": float(finite.mean()) if finite.numel() else float("nan"),
                "std": float(finite.std(unbiased=False)) if finite.numel() else float("nan"),
                "count": int(finite.numel()),
                "higher_is_better": higher_is_better(name, metric),
                "nan_count": nan_count,
                "settings": self.settings[name],
            }
            if SPECS_BY_NAME[name].mean_curve:
                summary[name]["mean_curve"] = _mean_curve(metric)
            per_image[name] = values
        return summary, per_image


def _mean_curve(metric: Any) -> list[float] | None:
    """The mean ``(N+1,)`` insertion / deletion curve over the images whose curve is defined
    (docs/metrics.md#results-files); ``None`` when no image has one. Its trapezoid AUC equals the
    metric's mean AUC."""
    if not metric.curve_list:
        return None
    curves = metric.curves().detach().double().cpu()
    defined = torch.isfinite(curves).all(dim=1)
    if not bool(defined.any()):
        return None
    return [float(v) for v in curves[defined].mean(dim=0)]


def batch_regions(batch: dict[str, Any]) -> Tensor | list[Tensor]:
    """The batch's ground-truth regions: its ``(B, H, W)`` masks if it has them, else its boxes."""
    regions = batch.get("mask")
    return list(batch["boxes"]) if regions is None else regions
