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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class StylexInputError(ValueError):
    """A StylEx input (classifier, preprocessing, data, settings) that cannot work; says the fix."""


@dataclass(frozen=True)
class ClassifierPreprocessing:
    """What the classifier takes: ``image_size`` (H, W), ``in_chans`` and per-channel mean/std."""

    image_size: tuple[int, int]
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.in_chans not in (1, 3):
            raise StylexInputError(
                f"classifier in_chans must be 1 or 3, got {self.in_chans}: set "
                "model.classifier_preprocessing.in_chans to the channel count it was trained on"
            )
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise StylexInputError(
                f"classifier preprocessing has {len(self.mean)} mean and {len(self.std)} std "
                f"values for {self.in_chans} channels: give one value per channel"
            )
        if any(s <= 0 for s in self.std):
            raise StylexInputError(f"classifier preprocessing std must be > 0, got {self.std}")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise StylexInputError(
                f"classifier preprocessing image_size must be a positive size, got {self.image_size}"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassifierPreprocessing:
        """Build from ``{image_size, in_chans, mean, std}`` (one mean/std value is repeated)."""
        known = {"image_size", "in_chans", "mean", "std"}
        unknown = sorted(set(data) - known)
        missing = sorted(known - set(data))
        if unknown or missing:
            raise StylexInputError(
                f"model.classifier_preprocessing needs exactly {sorted(known)}; unknown "
                f"{unknown}, missing {missing}"
            )
        size = data["image_size"]
        size = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(map(int, size))
        chans = int(data["in_chans"])
        mean, std = tuple(map(float, data["mean"])), tuple(map(float, data["std"]))
        mean = mean * chans if len(mean) == 1 else mean
        std = std * chans if len(std) == 1 else std
        return cls(size, chans, mean, std)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def preprocessing_from_data_settings(data: Mapping[str, Any]) -> ClassifierPreprocessing:
    """The preprocessing a ``ScouterDataModule`` with these settings applied (see its docstring)."""
    from scouter.data.registry import dataset_reader
    from scouter.data.transforms import check_image_size, resolve_normalization

    size = check_image_size(data.get("image_size", 260), "data.image_size")
    chans = int(data.get("in_chans", 3))
    default = getattr(dataset_reader(str(data.get("dataset", "composites"))), "normalization", None)
    mean, std = resolve_normalization(
        data.get("timm_model"), data.get("mean"), data.get("std"), chans, default
    )
    return ClassifierPreprocessing(tuple(size), chans, tuple(mean), tuple(std))


def recorded_preprocessing(
    path: str | Path, model: nn.Module | None = None
) -> ClassifierPreprocessing | None:
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
        return ClassifierPreprocessing(
            tuple(config.input_size), config.in_chans, tuple(config.mean), tuple(config.std)
        )
    if path.suffix == ".safetensors":
        return None
    obj = safe_torch_load(path)
    data = obj.get("datamodule_hyper_parameters") if isinstance(obj, Mapping) else None
    return preprocessing_from_data_settings(data) if isinstance(data, Mapping) else None


def to_classifier_input(images: torch.Tensor, prep: ClassifierPreprocessing) -> torch.Tensor:
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
    if tuple(x.shape[-2:]) != prep.image_size:
        shrink = prep.image_size[0] < x.shape[-2] or prep.image_size[1] < x.shape[-1]
        x = F.interpolate(
            x, size=prep.image_size, mode="bilinear", align_corners=False, antialias=shrink
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
        self, model: nn.Module, prep: ClassifierPreprocessing, classes: Sequence[int] | None = None
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


def check_classifier(model: nn.Module, prep: ClassifierPreprocessing, source: str) -> None:
    """Refuse a classifier that cannot take ``prep``'s images (channels, fixed ViT size)."""
    from scouter.models.inputs import channel_mismatch, size_mismatch

    problem = channel_mismatch(model, prep.in_chans) or size_mismatch(model, list(prep.image_size))
    if problem is not None:
        problem = problem.replace("data.in_chans", "model.classifier_preprocessing.in_chans")
        problem = problem.replace("data.image_size", "model.classifier_preprocessing.image_size")
        raise StylexInputError(f"classifier {source}: {problem}")


def resolve_preprocessing(
    path: str | Path, given: Mapping[str, Any] | None, model: nn.Module | None = None
) -> ClassifierPreprocessing:
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
    prep = ClassifierPreprocessing.from_dict(given)
    if recorded is not None and recorded != prep:
        raise StylexInputError(
            f"model.classifier_preprocessing {prep.to_dict()} disagrees with what classifier "
            f"{str(path)!r} was trained with {recorded.to_dict()}: drop the setting (the "
            "checkpoint's own values are used) or train the classifier with those settings"
        )
    return prep
