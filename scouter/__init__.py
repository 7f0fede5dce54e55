"""scouter: SCOUTER slot-attention classifiers that explain themselves.

Public API:
    create_model(name, **overrides)  -> Classifier     (a named zoo configuration)
    list_models(pattern="*")         -> list[str]
    load_model(path, **options)      -> Classifier     (our checkpoints or original SCOUTER ones)
    save_model(model, path)                            (safetensors + JSON config)
    DataConfig                                         a model's preprocessing (model.data_config);
                                                       scouter.data.transform_for(model) builds it
    get_explainer(name, **settings)  -> Explainer      (SCOUTER maps and post-hoc baselines)
    list_explainers()                -> list[str]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Names resolved on first use, so `import scouter.data` does not pay for the model stack.
_LAZY = {
    "Classifier": "scouter.models.classifier",
    "ClassifierOutput": "scouter.models.classifier",
    "ModelConfig": "scouter.models.classifier",
    "DataConfig": "scouter.data_config",
    "build_classifier": "scouter.models.classifier",
    "create_model": "scouter.models.zoo",
    "list_models": "scouter.models.zoo",
    "load_model": "scouter.checkpoints",
    "save_model": "scouter.checkpoints",
    "ScouterLoss": "scouter.losses",
    "get_explainer": "scouter.explain",
    "list_explainers": "scouter.explain",
}

__all__ = [
    "Classifier",
    "ClassifierOutput",
    "DataConfig",
    "ModelConfig",
    "ScouterLoss",
    "build_classifier",
    "create_model",
    "get_explainer",
    "list_explainers",
    "list_models",
    "load_model",
    "save_model",
]

if TYPE_CHECKING:
    from scouter.checkpoints import load_model, save_model
    from scouter.data_config import DataConfig
    from scouter.explain import get_explainer, list_explainers
    from scouter.losses import ScouterLoss
    from scouter.models.classifier import (
        Classifier,
        ClassifierOutput,
        ModelConfig,
        build_classifier,
    )
    from scouter.models.zoo import create_model, list_models


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scouter' has no attribute {name!r}")
