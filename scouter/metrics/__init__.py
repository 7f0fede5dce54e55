"""Explanation and classification metrics (docs/metrics.md), as torchmetrics on tensors only.

Models enter only through callables: ``forward_fn(images (N, C, H, W)) -> logits (N, K)`` and
``explain_fn(images (N, C, H, W), classes (N,)) -> maps (N, 1, h, w)``.
"""

from scouter.metrics.area import AreaSize
from scouter.metrics.classification import BinaryClassificationReport, ClassificationAccuracy
from scouter.metrics.explained_class import (
    cosine_similarity_matrix,
    least_similar_classes,
    select_explained_class,
    wordnet_similarity_matrix,
)
from scouter.metrics.gridpg import (
    GEOMETRIES,
    GridPointingGame,
    cell_edges,
    cell_masks,
    compose_grid,
    grid_image_size,
    gridpg_scores,
)
from scouter.metrics.infidelity import Infidelity, infidelity_scores
from scouter.metrics.insertion_deletion import (
    DeletionAUC,
    InsertionAUC,
    curve_auc,
    default_step,
    rise_blur,
    rise_blur_kernel,
    rise_curves,
)
from scouter.metrics.maps import (
    minmax_normalise,
    prepare_maps,
    reference_area,
    reference_uint8_maps,
    select_class_maps,
)
from scouter.metrics.precision import ExplanationPrecision
from scouter.metrics.sensitivity import MaxSensitivity, max_sensitivity_scores

__all__ = [
    "GEOMETRIES",
    "GridPointingGame",
    "AreaSize",
    "BinaryClassificationReport",
    "ClassificationAccuracy",
    "DeletionAUC",
    "ExplanationPrecision",
    "Infidelity",
    "InsertionAUC",
    "MaxSensitivity",
    "cell_edges",
    "cell_masks",
    "compose_grid",
    "cosine_similarity_matrix",
    "curve_auc",
    "default_step",
    "grid_image_size",
    "gridpg_scores",
    "infidelity_scores",
    "least_similar_classes",
    "max_sensitivity_scores",
    "minmax_normalise",
    "prepare_maps",
    "reference_area",
    "reference_uint8_maps",
    "rise_blur",
    "rise_blur_kernel",
    "rise_curves",
    "select_class_maps",
    "select_explained_class",
    "wordnet_similarity_matrix",
]
