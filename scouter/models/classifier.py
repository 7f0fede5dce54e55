"""Classifier = timm backbone + SCOUTER (xSlot) or FC head, built from a ModelConfig."""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from scouter.data_config import DataConfig
from scouter.models.backbones import TimmBackbone
from scouter.models.fc import FCHead
from scouter.models.output import ClassifierOutput
from scouter.models.xslot import ATTENTION_NORMS, XSlotHead

HeadType = Literal["xslot", "fc"]

# The attention normalisation new models train with. Both row/total rescalings ("reference",
# "abs") multiply the dot products by about the number of slots, saturating the sigmoid: measured,
# they stalled near chance where "none" trained (bench/RESULTS.md, "Recipes ablation"). Original
# SCOUTER checkpoints and the paper-recipe zoo entries keep "reference" explicitly.
TRAINING_ATTENTION_NORM = "none"


class ModelConfigError(ValueError):
    """A model config (e.g. a ``model.json``) with an unknown key or a value of the wrong type."""


def _type_mismatch(value: Any, hint: Any) -> str | None:
    """What ``hint`` expects, in words, if ``value`` does not fit it (None if it does)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        found = [_type_mismatch(value, arg) for arg in args]
        return None if None in found else " or ".join(found)
    if hint is type(None):
        return None if value is None else "null"
    if origin is Literal:
        return None if value in args else f"one of {', '.join(map(repr, args))}"
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        return None if integral else "an integer"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if origin is dict or hint is dict:
        return None if isinstance(value, Mapping) else "an object (a dict of settings)"
    return None


@dataclass
class ModelConfig:
    """Everything needed to rebuild a Classifier (saved inside every checkpoint).

    Attributes:
        backbone: timm model name.
        num_classes: ``K``.
        head: ``"xslot"`` (SCOUTER) or ``"fc"`` (baseline).
        slots_per_class: ``s`` (xslot only).
        sign: ``e``: ``+1`` SCOUTER+, ``-1`` SCOUTER− (xslot only).
        hidden_dim: ``D`` (xslot only).
        to_k_layers: key-MLP depth (xslot only).
        iterations: attention passes (xslot only).
        attention_norm: ``"reference" | "abs" | "none"`` (xslot only). Default
            :data:`TRAINING_ATTENTION_NORM`; ``"reference"`` is the paper's, kept by original
            checkpoints and the paper-recipe zoo entries.
        in_chans: image channels.
        stem: ``"default"`` or ``"mnist"`` (the reference's 1-channel ResNet stem).
        pretrained: load the backbone's pretrained weights when building.
        pretrained_file: local backbone weight file (timm key layout).
        backbone_kwargs: extra ``timm.create_model`` arguments (e.g. ``img_size`` for ViTs).
    """

    backbone: str
    num_classes: int
    head: HeadType = "xslot"
    slots_per_class: int = 1
    sign: int = 1
    hidden_dim: int = 64
    to_k_layers: int = 1
    iterations: int = 3
    attention_norm: str = TRAINING_ATTENTION_NORM
    in_chans: int = 3
    stem: str = "default"
    pretrained: bool = False
    pretrained_file: str | None = None
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.head not in ("xslot", "fc"):
            raise ValueError(f"head must be 'xslot' or 'fc', got {self.head!r}")
        if int(self.num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes!r}")
        if self.sign not in (1, -1):
            raise ValueError(f"sign must be +1 or -1, got {self.sign!r}")
        if self.attention_norm not in ATTENTION_NORMS:
            raise ValueError(f"attention_norm must be one of {ATTENTION_NORMS}")

    @classmethod
    def check(cls, data: Mapping[str, Any], source: str = "the model config") -> None:
        """Check ``data``'s keys and value types (a partial config is fine).

        Raises:
            ModelConfigError: naming ``source``, each unknown key with the closest known one,
                or the key, its expected type and the value found.
        """
        hints = typing.get_type_hints(cls)
        unknown = sorted(set(data) - set(hints))
        if unknown:
            guesses = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), list(hints), n=1, cutoff=0.6)
                guesses.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ModelConfigError(
                f"{source}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(guesses)}; "
                f"known keys: {', '.join(sorted(hints))}"
            )
        for key, value in data.items():
            expected = _type_mismatch(value, hints[key])
            if expected is not None:
                raise ModelConfigError(
                    f"{source}: {key!r} must be {expected}, got {value!r} "
                    f"(a {type(value).__name__})"
                )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "the model config") -> ModelConfig:
        """Build from a dict, checking keys and types first (:meth:`check`).

        Raises:
            ModelConfigError: an unknown key (with the closest known one), a value of the wrong
                type or an invalid value, naming ``source``.
        """
        cls.check(data, source)
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in data]
        if missing:
            raise ModelConfigError(f"{source}: missing required key(s) {missing}")
        try:
            return cls(**data)
        except ValueError as err:
            raise ModelConfigError(f"{source}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def variant(self) -> str:
        """``"fc"``, ``"scouter_pos"`` or ``"scouter_neg"``."""
        if self.head == "fc":
            return "fc"
        return "scouter_pos" if self.sign > 0 else "scouter_neg"


class Classifier(nn.Module):
    """A timm backbone followed by an xSlot or FC head.

    Args:
        backbone: module mapping images ``(B, in_chans, H, W)`` to features ``(B, C, h, w)``.
        head: :class:`XSlotHead` or :class:`FCHead`: features ``(B, C, h, w)`` →
            :class:`ClassifierOutput`.
        config: the configuration that built it (kept for checkpoints).
        data_config: the preprocessing its inputs need (:class:`~scouter.data_config.DataConfig`:
            size, channels, mean, std, eval resize), stored with every checkpoint; ``None`` when
            unknown (a random or bare-state_dict model). ``scouter.data.transform_for(model)``
            builds the matching transform.
        class_names: ``K`` names, index = label, stored with every checkpoint written by
            ``train.py``, :func:`scouter.save_model` and :func:`scouter.publish.save_pretrained`;
            ``None`` when unknown.
    """

    def __init__(
        self,
        backbone: TimmBackbone,
        head: nn.Module,
        config: ModelConfig,
        data_config: DataConfig | None = None,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.config = config
        self.data_config = data_config
        self.class_names = class_names

    # --- conveniences of the upper layers (imported lazily: models/ stays below data/ and
    # explain/, which these two only call) -------------------------------------------------------

    @property
    def transform(self) -> Any:
        """The eval preprocessing of this model: a PIL image, a uint8 array or an image file path
        → the normalised input ``(C, H, W)`` (:func:`scouter.inference.image_transform`; built from
        ``data_config``, which must be set)."""
        from scouter.inference import image_transform

        return image_transform(self)

    def explain(self, images: Any, target: Any = None, method: str | None = None, **settings: Any):
        """Predict and explain in one call (:func:`scouter.inference.explain`).

        Args:
            images: an image file path, a PIL image, a uint8 array, a list of those, or an
                already preprocessed ``(B, C, H, W)`` tensor.
            target: ``None`` (each image's predicted class), a class index or name, a ``(B,)``
                tensor / list, or ``"all"``.
            method: any registered explainer; default SCOUTER's own ``"slot"`` maps for xSlot
                heads, ``"gradcam"`` for FC heads.
            **settings: the explainer's settings.

        Returns:
            :class:`scouter.inference.ExplainedImages`: predictions, probabilities and maps at
            input resolution.
        """
        from scouter.inference import explain

        return explain(self, images, target=target, method=method, **settings)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def is_scouter(self) -> bool:
        return isinstance(self.head, XSlotHead)

    def attention_grid(self, image_size: int | tuple[int, int]) -> tuple[int, int]:
        """The ``(h, w)`` grid of the explanation maps for inputs of ``image_size``.

        Each map of ``forward(images).attention`` has ``h × w`` cells: the backbone's feature
        grid, set by the input size and the backbone's output stride (``backbone_kwargs:
        {output_stride: 16}`` doubles it for CNNs). Computed by running the backbone once on a
        zero image in eval mode (training mode and BatchNorm statistics are left untouched).

        Example:
            >>> model.attention_grid(128)  # EfficientNet-Lite0 at output stride 16
            (8, 8)
        """
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        param = next(self.backbone.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            with torch.no_grad():
                probe = torch.zeros(1, self.backbone.in_chans, height, width, device=device)
                features = self.backbone(probe.to(dtype))
        finally:
            self.backbone.train(was_training)
        return int(features.shape[-2]), int(features.shape[-1])

    def forward(self, images: torch.Tensor) -> ClassifierOutput:
        """Classify and explain.

        Args:
            images: ``(B, in_chans, H, W)`` normalised images.

        Returns:
            :class:`ClassifierOutput`: ``logits (B, K)``, ``attention (B, K, h, w)`` or ``None``.
        """
        return self.classify_features(self.backbone(images))

    def classify_features(self, features: torch.Tensor) -> ClassifierOutput:
        """The head's output for backbone features ``(B, C, h, w)`` (``forward`` after the
        backbone; for callers that also feed the features elsewhere)."""
        return self.head(features)


def build_head(config: ModelConfig, in_channels: int) -> nn.Module:
    """Create the head of ``config`` on top of ``in_channels`` backbone channels."""
    if config.head == "fc":
        return FCHead(in_channels, config.num_classes)
    return XSlotHead(
        in_channels,
        config.num_classes,
        slots_per_class=config.slots_per_class,
        hidden_dim=config.hidden_dim,
        sign=config.sign,
        to_k_layers=config.to_k_layers,
        iterations=config.iterations,
        attention_norm=config.attention_norm,
    )


def pretrained_data_config(config: ModelConfig) -> DataConfig | None:
    """timm's pretrained data config of the backbone, for ``pretrained=True`` models, else None.

    ``backbone_kwargs: {img_size: ...}`` (ViTs) replaces timm's input size.
    """
    if not config.pretrained:
        return None
    found = DataConfig.from_timm(config.backbone, in_chans=config.in_chans)
    size = config.backbone_kwargs.get("img_size")
    if found is not None and size is not None:
        found = dataclasses.replace(found, input_size=size)
    return found


def build_classifier(config: ModelConfig | dict[str, Any]) -> Classifier:
    """Build a :class:`Classifier` from a config (the backbone decides ``C``).

    ``data_config`` is timm's pretrained one for ``pretrained=True`` backbones, else ``None``.
    """
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    backbone = TimmBackbone(
        config.backbone,
        pretrained=config.pretrained,
        pretrained_file=config.pretrained_file,
        in_chans=config.in_chans,
        stem=config.stem,
        **config.backbone_kwargs,
    )
    return Classifier(
        backbone,
        build_head(config, backbone.out_channels),
        config,
        pretrained_data_config(config),
    )
