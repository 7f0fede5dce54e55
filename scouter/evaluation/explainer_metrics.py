"""The explanation metrics of one explainer during :func:`~scouter.evaluation.run`: built from the
metric names, updated batch by batch, summarised per metric and per image."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from scouter.evaluation.checks import check_finite_outputs
from scouter.evaluation.options import EvaluationOptions


class _ExplainerMetrics:
    """The explanation metrics of one explainer (torchmetrics objects + their settings)."""

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
        from scouter import metrics as M

        self.explainer = explainer
        self.model = model
        self.checkpoint = options.checkpoint
        self.metrics: dict[str, Any] = {}
        self.settings: dict[str, dict[str, Any]] = {}
        batch = options.metric_batch_size

        def generator(offset: int) -> torch.Generator:
            return torch.Generator(device=device).manual_seed(options.seed + offset)

        def explain_fn(images: Tensor, classes: Tensor) -> Tensor:
            return explainer(model, images, target=classes).maps

        for name in names:
            if name == "area":
                self.metrics[name] = M.AreaSize(input_size=input_size)
                self.settings[name] = {"preparation": "relu_bilinear_minmax_per_map"}
            elif name == "area_reference":
                self.metrics[name] = M.AreaSize(mode="reference_uint8")
                self.settings[name] = {"preparation": "reference_joint_minmax_uint8"}
            elif name == "precision":
                self.metrics[name] = M.ExplanationPrecision()
                self.settings[name] = {"region": "mask if present, else union of boxes"}
            elif name in ("insertion", "deletion"):
                cls = M.InsertionAUC if name == "insertion" else M.DeletionAUC
                self.metrics[name] = cls(forward_fn, batch_size=batch)
                self.settings[name] = {
                    "step": M.default_step(*input_size),
                    "score": "softmax probability of the explained class",
                    **({"blur": "rise_kernel_11_sigma_5"} if name == "insertion" else {}),
                }
            elif name == "infidelity":
                metric = M.Infidelity(forward_fn, batch_size=batch, generator=generator(1))
                self.metrics[name] = metric
                self.settings[name] = dict(metric.settings)
            elif name == "sensitivity":
                metric = M.MaxSensitivity(explain_fn, batch_size=batch, generator=generator(2))
                self.metrics[name] = metric
                self.settings[name] = dict(metric.settings)
        for metric in self.metrics.values():
            metric.to(device)

    def update(
        self, batch: dict[str, Any], images: Tensor, classes: Tensor, batch_index: int = 0
    ) -> Tensor:
        """Explain the batch and update every metric; returns the ``(B, 1, h, w)`` maps.

        Raises:
            EvaluationError: naming the batch and images, when a map holds NaN or ±inf.
        """
        what = f"{self.explainer.name!r} explanation maps"
        if "area_reference" in self.metrics:
            every = self.explainer(self.model, images, target="all")
            check_finite_outputs(what, every.maps, batch_index, batch["id"], self.checkpoint)
            maps = every.class_maps(classes)
            self.metrics["area_reference"].update(every.maps, classes)
        else:
            maps = self.explainer(self.model, images, target=classes).maps
            check_finite_outputs(what, maps, batch_index, batch["id"], self.checkpoint)
        for name, metric in self.metrics.items():
            if name == "area":
                metric.update(maps)
            elif name == "precision":
                regions = batch.get("mask")
                if regions is None:
                    regions = list(batch["boxes"])
                metric.update(maps, regions, size=tuple(images.shape[-2:]))
            elif name in ("insertion", "deletion", "infidelity"):
                metric.update(images, maps, classes)
            elif name == "sensitivity":
                metric.update(images, classes)
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
                "higher_is_better": bool(metric.higher_is_better),
                "nan_count": nan_count,
                "settings": self.settings[name],
            }
            if name in ("insertion", "deletion"):
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
