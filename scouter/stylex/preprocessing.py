"""The explained classifier seen from the generator: its own preprocessing, then its logits.

The generator paints images in ``[-1, 1]`` with its own channel count and size; the classifier
was trained on images that the data module resized to ``data.image_size``, converted to
``data.in_chans`` channels and normalised with ``(x - mean) / std`` on the 0–1 scale. The mapping
between the two is built here, explicitly, from the classifier checkpoint's own data settings
(its stored data config, see ``scouter.data_config``) or from settings the user gives, and
every disagreement is refused before any training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scouter.data_config import DataConfig
from scouter.stylex.errors import StylexInputError  # also importable from here, its old home

#: The four settings that map generator images to the classifier's input (the short form of
#: ``model.classifier_preprocessing``); a data config's ``eval_resize`` / ``crop_pct`` say how a
#: larger photo is brought to ``input_size`` and do not apply to images painted at that size.
PREPROCESSING_FIELDS = ("input_size", "in_chans", "mean", "std")


def preprocessing_from_dict(data: Mapping[str, Any]) -> DataConfig:
    """``model.classifier_preprocessing`` as a :class:`~scouter.data_config.DataConfig`.

    Takes the short form ``{image_size, in_chans, mean, std}`` (one mean/std value is repeated
    per channel) or a data config's own dict (``DataConfig.to_dict()``, as stored with models).
    """
    try:
        if isinstance(data, Mapping) and "input_size" in data:
            return DataConfig.from_dict(data)
        known = {"image_size", "in_chans", "mean", "std"}
        unknown, missing = sorted(set(data) - known), sorted(known - set(data))
        if unknown or missing:
            raise ValueError(f"needs exactly {sorted(known)}; unknown {unknown}, missing {missing}")
        chans = int(data["in_chans"])
        mean, std = list(data["mean"]), list(data["std"])
        return DataConfig(
            input_size=data["image_size"],
            in_chans=chans,
            mean=mean * chans if len(mean) == 1 else mean,
            std=std * chans if len(std) == 1 else std,
        )
    except (ValueError, TypeError) as error:
        raise StylexInputError(f"model.classifier_preprocessing: {error}") from None


def preprocessing_to_dict(config: DataConfig) -> dict[str, Any]:
    """The short form of ``config`` that :func:`preprocessing_from_dict` reads back."""
    return {
        "image_size": list(config.input_size),
        "in_chans": config.in_chans,
        "mean": list(config.mean),
        "std": list(config.std),
    }


def preprocessing_differences(a: DataConfig, b: DataConfig) -> list[tuple[str, Any, Any]]:
    """``a.differences(b)`` over :data:`PREPROCESSING_FIELDS` only."""
    return [d for d in a.differences(b) if d[0] in PREPROCESSING_FIELDS]


def recorded_preprocessing(path: str | Path, model: nn.Module | None = None) -> DataConfig | None:
    """The preprocessing stored with the classifier, or ``None`` (bare files, older exports).

    The model's data config (``scouter.data_config``: a ``train.py`` ``.ckpt`` or a
    ``save_model`` export) first; for ``.ckpt`` files written before it was stored, the data
    module's settings Lightning recorded (``datamodule_hyper_parameters``).

    Args:
        path: the classifier's checkpoint.
        model: the classifier already loaded from ``path`` (not loaded again), if at hand.
    """
    from scouter.checkpoints import load_model, safe_torch_load

    path = Path(path)
    config = getattr(load_model(path) if model is None else model, "data_config", None)
    if config is not None:
        return config
    if path.suffix == ".safetensors":
        return None
    obj = safe_torch_load(path)
    data = obj.get("datamodule_hyper_parameters") if isinstance(obj, Mapping) else None
    if not isinstance(data, Mapping):
        return None
    from scouter.data import ScouterDataModule

    return ScouterDataModule.data_config_of_settings(data)


def to_classifier_input(images: torch.Tensor, prep: DataConfig) -> torch.Tensor:
    """Generator images ``(B, C_g, H_g, W_g)`` in ``[-1, 1]`` → classifier input ``(B, C, H, W)``.

    The order follows the data module: 0–1 scale, channel conversion (gray repeated; RGB to
    luminance with the ITU-R 601 weights, as albumentations' ``ToGray``), resize to the
    classifier's size (bilinear, antialiased when shrinking), then ``(x - mean) / std``.
    """
    x = (images + 1.0) / 2.0
    if x.shape[1] == 1 and prep.in_chans == 3:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] == 3 and prep.in_chans == 1:
        weights = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        x = (x * weights).sum(1, keepdim=True)
    if tuple(x.shape[-2:]) != prep.input_size:
        shrink = prep.input_size[0] < x.shape[-2] or prep.input_size[1] < x.shape[-1]
        x = F.interpolate(
            x, size=prep.input_size, mode="bilinear", align_corners=False, antialias=shrink
        )
    mean = x.new_tensor(prep.mean).view(1, -1, 1, 1)
    std = x.new_tensor(prep.std).view(1, -1, 1, 1)
    return (x - mean) / std


class ExplainedClassifier(nn.Module):
    """A frozen classifier that takes generator images and returns logits ``(B, K')``.

    ``classes`` keeps only those logits (e.g. ``[0, 6]``: the 10-class model as a T-shirt vs
    shirt classifier); the softmax over the kept logits is StylEx's condition ``c``. Parameters
    never train, but gradients flow through it to the images (the KL term needs them).
    """

    def __init__(
        self, model: nn.Module, prep: DataConfig, classes: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        self.model = model.eval()
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.prep = prep
        total = int(getattr(model, "num_classes", 0) or 0)
        if classes is not None:
            classes = [int(c) for c in classes]
            bad = [c for c in classes if total and not 0 <= c < total]
            if len(classes) < 2 or len(set(classes)) != len(classes) or bad:
                raise StylexInputError(
                    f"classes {classes} must be at least two distinct class indices of the "
                    f"classifier (0..{total - 1}); e.g. classes: [0, 6] for T-shirt/top vs shirt"
                )
        self.classes = classes
        self.register_buffer(
            "class_index", torch.tensor(classes if classes else [], dtype=torch.long), False
        )
        self.num_classes = len(classes) if classes else total

    def train(self, mode: bool = True) -> ExplainedClassifier:
        super().train(mode)
        self.model.eval()  # frozen: BatchNorm statistics and dropout never change
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K')`` of generator images ``(B, C_g, H, W)`` in ``[-1, 1]``."""
        out = self.model(to_classifier_input(images, self.prep))
        logits = out.logits if hasattr(out, "logits") else out
        return logits.index_select(1, self.class_index) if self.classes else logits


def check_classifier(model: nn.Module, prep: DataConfig, source: str) -> None:
    """Refuse a classifier that cannot take ``prep``'s images (channels, fixed ViT size)."""
    from scouter.models.inputs import channel_mismatch, size_mismatch

    problem = channel_mismatch(model, prep.in_chans) or size_mismatch(model, list(prep.input_size))
    if problem is not None:
        problem = problem.replace("data.in_chans", "model.classifier_preprocessing.in_chans")
        problem = problem.replace("data.image_size", "model.classifier_preprocessing.image_size")
        raise StylexInputError(f"classifier {source}: {problem}")


def resolve_preprocessing(
    path: str | Path, given: Mapping[str, Any] | None, model: nn.Module | None = None
) -> DataConfig:
    """The classifier's preprocessing: recorded in its checkpoint, or given; both must agree.

    ``model``: the classifier already loaded from ``path``, so its file is not read again.
    """
    recorded = recorded_preprocessing(path, model)
    if given is None:
        if recorded is None:
            raise StylexInputError(
                f"classifier {str(path)!r} does not record its preprocessing (a .safetensors "
                "export or a bare state_dict): pass model.classifier_preprocessing: {image_size: "
                "32, in_chans: 3, mean: [0.286], std: [0.353]} with the values it was trained with"
            )
        return recorded
    prep = preprocessing_from_dict(given)
    if recorded is not None and preprocessing_differences(recorded, prep):
        raise StylexInputError(
            f"model.classifier_preprocessing {preprocessing_to_dict(prep)} disagrees with what "
            f"classifier {str(path)!r} was trained with {preprocessing_to_dict(recorded)}: drop "
            "the setting (the "
            "checkpoint's own values are used) or train the classifier with those settings"
        )
    return prep
