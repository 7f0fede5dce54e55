"""Classification metrics (docs/metrics.md#classification), all from torchmetrics.

Accuracy is accumulated over the whole set (correct / total), never averaged per batch — the
reference's validation accuracy was a mean of per-batch accuracies
(docs/method.md#known-reference-bugs, item 11).
"""

from __future__ import annotations

from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryCohenKappa,
    BinaryF1Score,
    BinaryPrecision,
    BinaryRecall,
    MulticlassAccuracy,
)

__all__ = ["BinaryClassificationReport", "ClassificationAccuracy"]


class ClassificationAccuracy(MetricCollection):
    """Top-1 accuracy over the set (``"top1"``) and macro (class-balanced) accuracy (``"macro"``).

    Args:
        num_classes: ``K``.

    Example:
        >>> metric = ClassificationAccuracy(num_classes=10)
        >>> metric.update(logits, target)  # logits (B, K), target (B,)
        >>> metric.compute()  # {"top1": ..., "macro": ...}
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__(
            {
                "top1": MulticlassAccuracy(num_classes=num_classes, average="micro"),
                "macro": MulticlassAccuracy(num_classes=num_classes, average="macro"),
            }
        )


class BinaryClassificationReport(MetricCollection):
    """ROC-AUC, accuracy, precision, recall, F1 and Cohen's κ of a two-class task (e.g. ACRIMA).

    ``update(scores, target)`` takes either ``(B, 2)`` logits (softmax, class 1 = positive) or
    ``(B,)`` positive-class probabilities; thresholded at ``threshold`` for all but ROC-AUC.

    Args:
        threshold: probability above which a sample is predicted positive.

    Example:
        >>> report = BinaryClassificationReport()
        >>> report.update(logits, target)  # logits (B, 2), target (B,) in {0, 1}
        >>> report.compute()  # {"roc_auc", "accuracy", "precision", "recall", "f1", "cohen_kappa"}
    """

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__(
            {
                "roc_auc": BinaryAUROC(),
                "accuracy": BinaryAccuracy(threshold=threshold),
                "precision": BinaryPrecision(threshold=threshold),
                "recall": BinaryRecall(threshold=threshold),
                "f1": BinaryF1Score(threshold=threshold),
                "cohen_kappa": BinaryCohenKappa(threshold=threshold),
            },
            compute_groups=False,
        )

    @staticmethod
    def _positive_probability(scores: Tensor) -> Tensor:
        if scores.ndim == 2:
            if scores.shape[1] != 2:
                raise ValueError(f"binary logits must be (B, 2), got {tuple(scores.shape)}")
            return scores.softmax(dim=-1)[:, 1]
        if scores.min() < 0 or scores.max() > 1:
            raise ValueError("(B,) scores must be probabilities in [0, 1]; pass (B, 2) logits")
        return scores

    def update(self, scores: Tensor, target: Tensor) -> None:  # type: ignore[override]
        """Add a batch: ``scores`` ``(B, 2)`` logits or ``(B,)`` probabilities, ``target`` ``(B,)``."""
        super().update(self._positive_probability(scores), target)

    def forward(self, scores: Tensor, target: Tensor):  # type: ignore[override]
        """Update and return the batch's values."""
        return super().forward(self._positive_probability(scores), target)
