"""DataConfig: the preprocessing a model expects, stored with it (timm's ``data_config`` idea).

A :class:`DataConfig` holds **resolved values** (input size, channels, mean, std, eval resize),
never the names they came from (``timm_model``, a dataset's default statistics): a model keeps
the exact numbers it was trained with even when timm's registry or a dataset reader changes.

Where it comes from:

* a ``.ckpt`` written by ``train.py``: :class:`~scouter.data.ScouterDataModule` resolves it at fit
  time and Lightning stores it with the datamodule's state (key :data:`DATA_CONFIG_KEY`);
* a ``.safetensors`` export: :func:`scouter.save_model` writes it into ``model.json`` (and the
  safetensors metadata) under ``data_config``;
* :func:`scouter.create_model`: the zoo entry's recipe; :func:`~scouter.models.classifier.
  build_classifier` with ``pretrained=True``: timm's pretrained config of the backbone.

Models without one (bare state_dicts, original SCOUTER checkpoints, files written before the
data config was stored, randomly initialised models) have ``model.data_config is None``;
:func:`scouter.data.transform_for` then says so and how to give the preprocessing explicitly.

This module imports only the standard library (timm lazily), so ``scouter.models`` and
``scouter.data`` can both use it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Where a checkpoint stores the data config (``.ckpt``: in the datamodule's state; ``model.json``
#: and the safetensors metadata: at the top level of the JSON document).
DATA_CONFIG_KEY = "scouter_data_config"

EVAL_RESIZE_MODES = ("resize", "resize_crop")

#: ImageNet's RGB statistics (torchvision's / timm's defaults): the default normalisation of the
#: zoo's recipes and of datasets without their own.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Where the class names a model was trained on are stored: the ``.ckpt``'s datamodule state,
#: ``model.json`` / the safetensors metadata (as ``class_names``) and a model folder's
#: ``config.json`` (as ``label_names``, timm's key).
CLASS_NAMES_KEY = "scouter_class_names"


def check_class_names(names: Any, num_classes: int, source: str) -> list[str] | None:
    """``names`` as a list of ``num_classes`` strings (``None`` stays ``None``).

    Raises:
        ValueError: not a list of strings, or another count than ``num_classes``; the message
            names ``source``.
    """
    if names is None:
        return None
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise ValueError(f"class names in {source} must be a list of strings, got {names!r}")
    names = [str(n) for n in names]
    if len(names) != num_classes:
        raise ValueError(
            f"{source} has {len(names)} class names for a model of {num_classes} classes; give "
            f"one name per class, in label order"
        )
    return names


class MissingDataConfigError(ValueError):
    """A model carries no data config, so its preprocessing cannot be rebuilt from it."""


def _positive_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class DataConfig:
    """The eval preprocessing a model was trained with (resolved values).

    Attributes:
        input_size: ``(H, W)`` of the model input.
        in_chans: image channels (1 or 3); images are converted to it.
        mean: per-channel mean on the 0–1 scale, ``in_chans`` values.
        std: per-channel std on the 0–1 scale, ``in_chans`` values.
        eval_resize: ``"resize"`` (squash to ``(H, W)``, the reference) or ``"resize_crop"``
            (shorter side to ``size / crop_pct``, centre crop; timm's eval).
        crop_pct: used by ``"resize_crop"`` only.
    """

    input_size: tuple[int, int]
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    eval_resize: str = "resize"
    crop_pct: float = 0.875

    def __post_init__(self) -> None:
        size = self.input_size
        if _positive_int(size):
            size = (int(size), int(size))
        if not (
            isinstance(size, Sequence) and len(size) == 2 and all(_positive_int(v) for v in size)
        ):
            raise ValueError(
                f"DataConfig.input_size must be (H, W) of integers >= 1, got {self.input_size!r}"
            )
        object.__setattr__(self, "input_size", (int(size[0]), int(size[1])))
        if self.in_chans not in (1, 3) or isinstance(self.in_chans, bool):
            raise ValueError(f"DataConfig.in_chans must be 1 or 3, got {self.in_chans!r}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
                raise ValueError(f"DataConfig.{name} must be a sequence of numbers, got {values!r}")
            values = tuple(float(v) for v in values)
            if len(values) != self.in_chans:
                raise ValueError(
                    f"DataConfig.{name} needs one value per channel (in_chans={self.in_chans}), "
                    f"got {len(values)}: {values}"
                )
            if not all(math.isfinite(v) for v in values) or (
                name == "std" and not all(v > 0 for v in values)
            ):
                raise ValueError(f"DataConfig.{name} must be finite (std > 0), got {values}")
            object.__setattr__(self, name, values)
        if self.eval_resize not in EVAL_RESIZE_MODES:
            raise ValueError(
                "eval_resize must be 'resize' (reference) or 'resize_crop', "
                f"got {self.eval_resize!r}"
            )
        crop_pct = float(self.crop_pct)
        if not 0.0 < crop_pct <= 1.0:
            raise ValueError(f"DataConfig.crop_pct must be in (0, 1], got {self.crop_pct!r}")
        object.__setattr__(self, "crop_pct", crop_pct)

    # --- (de)serialisation ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON- and ``weights_only``-safe values (lists, floats, ints, str)."""
        return {
            "input_size": list(self.input_size),
            "in_chans": self.in_chans,
            "mean": list(self.mean),
            "std": list(self.std),
            "eval_resize": self.eval_resize,
            "crop_pct": self.crop_pct,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataConfig:
        """Build from :meth:`to_dict`'s form, naming unknown or missing keys."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a data config must be a mapping, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown data config keys {unknown}; known keys: {known}")
        missing = [k for k in ("input_size", "in_chans", "mean", "std") if k not in data]
        if missing:
            raise ValueError(f"the data config lacks {missing}; it has {sorted(data)}")
        values = dict(data)
        values["input_size"] = tuple(values["input_size"])
        return cls(**values)

    @classmethod
    def from_timm(
        cls, model_name: str, in_chans: int | None = None, eval_resize: str = "resize_crop"
    ) -> DataConfig | None:
        """timm's pretrained data config of ``model_name`` (registry only, nothing downloaded).

        Returns ``None`` when timm has no pretrained config for that name. ``eval_resize``
        defaults to timm's own evaluation (resize the shorter side, centre crop ``crop_pct``).
        """
        import timm
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(model_name)
        if cfg is None:
            return None
        data = timm.data.resolve_data_config(pretrained_cfg=cfg.to_dict())
        channels, height, width = data["input_size"]
        chans = int(in_chans if in_chans is not None else channels)
        return cls(
            input_size=(int(height), int(width)),
            in_chans=chans,
            mean=fit_channels(data["mean"], chans),
            std=fit_channels(data["std"], chans),
            eval_resize=eval_resize,
            crop_pct=float(data.get("crop_pct") or 0.875),
        )

    # --- use ------------------------------------------------------------------------------------

    def transform_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`scouter.data.build_transforms` reproducing this config."""
        return {
            "image_size": self.input_size,
            "in_chans": self.in_chans,
            "mean": self.mean,
            "std": self.std,
            "eval_resize": self.eval_resize,
            "crop_pct": self.crop_pct,
        }

    def differences(self, other: DataConfig) -> list[tuple[str, Any, Any]]:
        """``(field, self's value, other's value)`` for every field that differs.

        Means and stds are compared to a relative 1e-6 (values that went through float32 or
        JSON still agree); ``crop_pct`` only matters, and is only compared, for
        ``"resize_crop"``.
        """

        def same(a: Any, b: Any) -> bool:
            if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
                return all(same(x, y) for x, y in zip(a, b, strict=True))
            if isinstance(a, float) or isinstance(b, float):
                return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
            return a == b

        found = []
        for f in dataclasses.fields(self):
            if f.name == "crop_pct" and "resize_crop" not in (self.eval_resize, other.eval_resize):
                continue
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if not same(mine, theirs):
                found.append((f.name, mine, theirs))
        return found

    def describe(self) -> str:
        """One line: ``64x64, 1 channel, mean (0.286,), std (0.353,), resize``."""
        height, width = self.input_size
        plural = "s" if self.in_chans > 1 else ""
        resize = (
            self.eval_resize
            if self.eval_resize == "resize"
            else f"{self.eval_resize} (crop_pct {self.crop_pct:g})"
        )
        return (
            f"{height}x{width}, {self.in_chans} channel{plural}, mean {_short(self.mean)}, "
            f"std {_short(self.std)}, {resize}"
        )


def _short(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ("," if len(values) == 1 else "") + ")"


def fit_channels(values: Sequence[float], in_chans: int) -> tuple[float, ...]:
    """``values`` as one per channel: one value repeated, three averaged for ``in_chans=1``."""
    values = tuple(float(v) for v in values)
    if len(values) == in_chans:
        return values
    if len(values) == 1:
        return values * in_chans
    if in_chans == 1:
        return (sum(values) / len(values),)  # a gray image's channel is a mix of R, G, B
    raise ValueError(f"cannot adapt {len(values)} normalisation values to in_chans={in_chans}")


def no_data_config_message(what: str = "this model") -> str:
    """Why there is no transform to build, and how to give the preprocessing instead."""
    return (
        f"{what} carries no data config (input size, channels, mean, std): it was built without "
        "one (a randomly initialised or bare-state_dict model, an original SCOUTER checkpoint, or "
        "a checkpoint written before scouter stored the data config). Give the preprocessing "
        "it was trained with explicitly, e.g. scouter.data.build_transforms(image_size, "
        "in_chans=..., mean=..., std=...), or attach it once: model.data_config = "
        "scouter.DataConfig(input_size=(H, W), in_chans=..., mean=(...), std=(...))"
    )
