"""Reloading a trained StylEx (generator, encoder, discriminator and its classifier) safely.

The ``.ckpt`` written during ``stylex.py fit`` holds the classifier's weights, its model config,
its preprocessing and its class names (when it has them), so AttFind needs only this one file; it is read with
``torch.load(weights_only=True)`` (:func:`scouter.checkpoints.safe_torch_load`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from scouter.stylex.errors import StylexInputError
from scouter.stylex.module import (
    CLASS_NAMES_KEY,
    CLASSIFIER_CONFIG_KEY,
    PREPROCESSING_KEY,
    StylexModule,
)


def load_stylex(path: str | Path) -> StylexModule:
    """The :class:`StylexModule` saved at ``path`` (a ``stylex.py fit`` checkpoint), in eval mode."""
    from scouter.checkpoints import require_checkpoint_file, safe_torch_load
    from scouter.models.classifier import build_classifier

    try:
        require_checkpoint_file(path)
    except OSError as error:
        raise StylexInputError(
            f"StylEx {error}: pass the .ckpt written by `stylex.py fit` (checkpoints/stylex/...)"
        ) from None
    obj = safe_torch_load(path)
    if not isinstance(obj, Mapping) or CLASSIFIER_CONFIG_KEY not in obj:
        raise StylexInputError(
            f"{str(path)!r} is not a StylEx checkpoint (no {CLASSIFIER_CONFIG_KEY!r}): pass the "
            ".ckpt written by `stylex.py fit`, not the classifier's own checkpoint"
        )
    settings = dict(obj.get("hyper_parameters", {}))
    recorded_path = settings.pop("classifier", None)
    settings.pop("_instantiator", None)
    settings["classifier_preprocessing"] = obj[PREPROCESSING_KEY]
    config = dict(obj[CLASSIFIER_CONFIG_KEY])
    config.update(pretrained=False, pretrained_file=None)  # the weights come from this file
    classifier = build_classifier(config)
    classifier.class_names = obj.get(CLASS_NAMES_KEY)  # None when the classifier had none
    module = StylexModule(classifier=classifier, **settings)
    module.load_state_dict(obj["state_dict"])
    module.hparams["classifier"] = recorded_path
    return module.eval()
