"""Explanations as tensors: SCOUTER's own maps and post-hoc baselines behind one signature.

    from scouter.explain import get_explainer, list_explainers
    explanation = get_explainer("gradcam")(model, images, target=labels)  # Explanation
    explanation.maps  # (B, 1, h, w); target="all" gives (B, K, h, w)

Names: ``slot`` (SCOUTER's attention), ``slot_contribution`` (attention × position value, the
exact split of SCOUTER's score), ``gradcam``, ``gradcam++``, ``scorecam``, ``cam``,
``guided_gradcam``, ``lime`` (on SLIC superpixels), ``saliency``, ``guided_backprop``, ``smoothgrad``, ``ig``, ``blur_ig``, ``occlusion``, ``rise``,
``meaningful_perturbation`` and ``extremal_perturbation`` (optimised blur masks; ``steps`` Adam
iterations each). captum is imported only when a post-hoc method runs.
"""

from scouter.explain.base import (
    Explainer,
    Explanation,
    get_explainer,
    list_explainers,
    model_logits,
    register_explainer,
    resolve_targets,
)

__all__ = [
    "Explainer",
    "Explanation",
    "get_explainer",
    "list_explainers",
    "model_logits",
    "register_explainer",
    "resolve_targets",
]
