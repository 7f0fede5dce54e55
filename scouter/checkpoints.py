"""Saving and safely loading models: our checkpoints and the original SCOUTER ones.

Formats read by :func:`load_model`:

* **Lightning checkpoints** written by :class:`scouter.training.ScouterModule` (``.ckpt``): the
  model config is stored under ``checkpoint["scouter_model_config"]``, weights under
  ``state_dict`` with the ``model.`` prefix, and the data config (resolved preprocessing,
  :class:`~scouter.data_config.DataConfig`) in the ``ScouterDataModule``'s state under
  ``scouter_data_config``.
* **safetensors exports** written by :func:`save_model`: ``<name>.safetensors`` with the config in
  its metadata and in a sidecar ``<name>.json`` (model settings, plus ``data_config`` when the
  model carries one).
* **original SCOUTER checkpoints** (``wbw520/scouter`` ``train.py``): ``{model, optimizer,
  lr_scheduler, epoch, args}`` with ``args`` an ``argparse.Namespace``, converted as
  docs/method.md#original-checkpoints describes: backbone keys lose ``backbone.`` and go to timm,
  head keys go to :class:`XSlotHead` (``slot.to_q`` is unused by the model and dropped),
  ``K``/``s``/``e`` come from ``args`` (:mod:`scouter.original_checkpoints`).
* **bare state_dicts** in either key layout, with the config passed as options.

Checkpoints are untrusted input: every torch file is read with ``weights_only=True`` and only
``argparse.Namespace`` allow-listed; anything else pickled inside is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from scouter.atomic_io import atomic_write
from scouter.data_config import CLASS_NAMES_KEY, DATA_CONFIG_KEY, DataConfig, check_class_names
from scouter.hub import HF_HUB_PREFIX
from scouter.models.classifier import Classifier, ModelConfig, ModelConfigError, build_classifier

# The original SCOUTER conversion lives in scouter.original_checkpoints; importable here too.
from scouter.original_checkpoints import (
    config_from_original_args,
    convert_original_state_dict,
    is_original_state_dict,
)

# The safe reading of files lives in scouter.safe_loading; its public names stay importable here.
from scouter.safe_loading import (
    CHECKPOINT_SUFFIXES,
    SAFE_GLOBALS,
    CheckpointError,
    CheckpointMismatchError,
    UnsafeCheckpointError,
    checkpoint_files_in,
    require_checkpoint_file,
    safe_torch_load,
)

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "JSON_DATA_CONFIG_KEY",
    "LIGHTNING_CONFIG_KEY",
    "LIGHTNING_MODEL_PREFIX",
    "SAFE_GLOBALS",
    "CheckpointConfigError",
    "CheckpointError",
    "CheckpointMismatchError",
    "UnsafeCheckpointError",
    "backbone_state_from_checkpoint",
    "checkpoint_files_in",
    "config_from_original_args",
    "convert_original_state_dict",
    "is_original_state_dict",
    "load_model",
    "load_state_dict_checked",
    "require_checkpoint_file",
    "safe_torch_load",
    "save_model",
]

LIGHTNING_CONFIG_KEY = "scouter_model_config"
LIGHTNING_MODEL_PREFIX = "model."
#: The key of the data config inside ``model.json`` (and the safetensors metadata's config).
JSON_DATA_CONFIG_KEY = "data_config"
#: The key of the class names inside ``model.json`` (and the safetensors metadata's config).
JSON_CLASS_NAMES_KEY = "class_names"

# --- strict state_dict loading with named errors ------------------------------------------------


def load_state_dict_checked(
    module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str
) -> None:
    """Load ``state`` into ``module`` strictly, naming every missing, unexpected or mis-shaped key.

    Nothing is loaded unless everything matches (so a failed load leaves ``module`` unchanged).
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in set(expected) & set(state)
        if tuple(state[key].shape) != tuple(expected[key].shape)
    )
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        ):
            if keys:
                shown = ", ".join(keys[:20]) + (
                    f", … ({len(keys)} in all)" if len(keys) > 20 else ""
                )
                parts.append(f"{label}: {shown}")
        raise CheckpointMismatchError(f"{source} does not match the model — " + "; ".join(parts))
    module.load_state_dict(state, strict=True)


# --- public save / load -------------------------------------------------------------------------


def save_model(model: Classifier, path: str | os.PathLike) -> Path:
    """Export a classifier as ``<path>.safetensors`` plus its config as ``<path>.json``.

    The config is also embedded in the safetensors metadata, so the weight file alone suffices.
    The model's ``data_config`` (its preprocessing) and ``class_names``, when it has them, are
    stored in both under ``"data_config"`` and ``"class_names"``; :func:`load_model` restores
    them. Both files are written atomically.

    Returns:
        The path of the ``.safetensors`` file.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    document = model.config.to_dict()
    data_config = getattr(model, "data_config", None)
    if data_config is not None:
        document[JSON_DATA_CONFIG_KEY] = data_config.to_dict()
    if getattr(model, "class_names", None) is not None:
        document[JSON_CLASS_NAMES_KEY] = list(model.class_names)
    config_json = json.dumps(document, indent=2, sort_keys=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(
        path, lambda tmp: save_file(state, tmp, metadata={LIGHTNING_CONFIG_KEY: config_json})
    )
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(config_json + "\n"))
    return path


#: Where the config of a file without a stored one comes from.
_OPTIONS_SOURCE = "the options given to load_model"


def _config_with_options(
    base: Mapping[str, Any],
    options: Mapping[str, Any],
    source: str = _OPTIONS_SOURCE,
    fix: str = "pass the setting as a load_model option, e.g. load_model(path, num_classes=10)",
) -> ModelConfig:
    """``base`` (read from ``source``) overridden by ``options``; errors name key, origin, fix."""
    try:
        ModelConfig.check(options, _OPTIONS_SOURCE)
    except ModelConfigError as err:
        raise CheckpointConfigError(str(err)) from None
    merged = dict(base)
    merged.update(options)
    # A checkpoint already holds the weights: never fetch pretrained backbone weights for it.
    merged["pretrained"] = False
    merged["pretrained_file"] = None
    try:
        return ModelConfig.from_dict(merged, source)
    except ModelConfigError as err:
        raise CheckpointConfigError(f"{err}; {fix}") from None


def _original_config(
    base: Mapping[str, Any], options: Mapping[str, Any], source: str = _OPTIONS_SOURCE
) -> ModelConfig:
    # Original SCOUTER weights were trained with the paper's signed normalisation: keep it
    # (scouter's own training default differs), unless the caller overrides it.
    return _config_with_options({"attention_norm": "reference", **base}, options, source)


class CheckpointConfigError(CheckpointError, ValueError):
    """The model config stored with a checkpoint (e.g. ``model.json``) is not valid."""


def _parse_config_json(text: str, source: str, fix: str) -> dict[str, Any]:
    """The config dict in ``text``; errors name ``source``, the line and column, and ``fix``."""
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointConfigError(
            f"{source} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}; {fix}"
        ) from None
    if not isinstance(config, dict):
        raise CheckpointConfigError(
            f"{source} must be a JSON object of model settings (backbone, num_classes, …), got "
            f"a {type(config).__name__}; {fix}"
        )
    return config


def _parse_data_config(stored: Any, source: str, fix: str) -> DataConfig | None:
    if stored is None:
        return None
    try:
        return DataConfig.from_dict(stored)
    except (TypeError, ValueError) as err:
        raise CheckpointConfigError(
            f"the data config in {source} is not valid: {err}; {fix}"
        ) from None


def _stored_entry(checkpoint: Mapping[str, Any], key: str) -> Any:
    """An entry of a ``.ckpt`` stored at the top level or in the datamodule's state."""
    if key in checkpoint:
        return checkpoint[key]
    for value in checkpoint.values():  # stored under the datamodule's class name by Lightning
        if isinstance(value, Mapping) and key in value:
            return value[key]
    return None


def _stored_data_config(checkpoint: Mapping[str, Any]) -> Any:
    """The data config dict of a ``.ckpt``: at the top level or in the datamodule's state."""
    return _stored_entry(checkpoint, DATA_CONFIG_KEY)


def _read_safetensors(path: Path, alternative: str = "") -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(
            f"{str(path)!r} is not a readable safetensors file ({err}): it is damaged or of "
            f"another format — export the model again with scouter.save_model{alternative}"
        ) from err


def _load_safetensors(
    path: Path, options: Mapping[str, Any]
) -> tuple[ModelConfig, dict, DataConfig | None, tuple[Any, str]]:
    state = _read_safetensors(path)
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        source = f"model config {str(sidecar)!r}"
        fix = f"fix it, or delete it to use the config stored in {path.name}'s metadata"
        base = _parse_config_json(
            sidecar.read_text(encoding="utf-8", errors="replace"), source, fix
        )
    else:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as handle:
            meta = handle.metadata() or {}
        if LIGHTNING_CONFIG_KEY in meta:
            source = f"the model config in the metadata of {str(path)!r}"
            fix = f"write a {sidecar.name} beside it with the config, which takes precedence"
            base = _parse_config_json(meta[LIGHTNING_CONFIG_KEY], source, fix)
        elif options:
            base, source, fix = {}, _OPTIONS_SOURCE, "pass every required setting"
        else:
            raise CheckpointError(
                f"{str(path)!r} carries no model config (no {sidecar.name} beside it, none in its "
                "metadata): pass the config as options, e.g. "
                "load_model(path, backbone='resnet18', num_classes=10)"
            )
    stored_in = repr(str(sidecar)) if sidecar.is_file() else f"the metadata of {str(path)!r}"
    data_config = _parse_data_config(
        base.pop(JSON_DATA_CONFIG_KEY, None),
        stored_in,
        f"fix its {JSON_DATA_CONFIG_KEY!r} entry, or remove it (the model then has none)",
    )
    names = base.pop(JSON_CLASS_NAMES_KEY, None)
    if is_original_state_dict(state):
        config = _original_config(base, options, source)
        return config, convert_original_state_dict(state, config), data_config, (names, stored_in)
    return _config_with_options(base, options, source, fix), state, data_config, (names, stored_in)


def _lightning_model_state(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The Classifier's weights from a ScouterModule checkpoint (``model.`` prefix removed)."""
    return {
        k.removeprefix(LIGHTNING_MODEL_PREFIX): v
        for k, v in checkpoint["state_dict"].items()
        if k.startswith(LIGHTNING_MODEL_PREFIX)
    }


def _resolve_torch_checkpoint(
    path: Path, options: Mapping[str, Any]
) -> tuple[ModelConfig, dict[str, torch.Tensor], DataConfig | None, tuple[Any, str]]:
    obj = safe_torch_load(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{str(path)!r} holds a {type(obj).__name__}, not a checkpoint dict")
    if LIGHTNING_CONFIG_KEY in obj:  # ours, written by ScouterModule
        config = _config_with_options(
            obj[LIGHTNING_CONFIG_KEY],
            options,
            f"the model config stored in checkpoint {str(path)!r}",
            "override the setting with a load_model option, e.g. load_model(path, num_classes=10)",
        )
        state = _lightning_model_state(obj)
        data_config = _parse_data_config(
            _stored_data_config(obj),
            f"checkpoint {str(path)!r}",
            "pass the preprocessing as load_model(path, data_config=scouter.DataConfig(...))",
        )
        names = _stored_entry(obj, CLASS_NAMES_KEY)
        return config, state, data_config, (names, f"checkpoint {str(path)!r}")
    if "model" in obj and isinstance(obj["model"], Mapping):  # original train.py file
        args = obj.get("args")
        base = config_from_original_args(args) if args is not None else {}
        if not base and not options:
            raise CheckpointError(
                f"{str(path)!r} looks like an original SCOUTER checkpoint without 'args': pass "
                "the config as options (backbone=..., num_classes=..., slots_per_class=..., sign=...)"
            )
        if args is None and "negative_" in path.name:
            base["sign"] = -1  # the reference's file names mark SCOUTER− runs
        source = f"the args of original checkpoint {str(path)!r}" if base else _OPTIONS_SOURCE
        config = _original_config(base, options, source)
        return config, convert_original_state_dict(obj["model"], config), None, (None, "")
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        raise CheckpointError(
            f"{str(path)!r} is a Lightning checkpoint without {LIGHTNING_CONFIG_KEY!r}: it was not "
            "written by scouter's ScouterModule"
        )
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):  # bare state_dict
        if not options:
            raise CheckpointError(
                f"{str(path)!r} is a bare state_dict without a config: pass it as options, e.g. "
                "load_model(path, backbone='resnet18', num_classes=10, slots_per_class=1, sign=1)"
            )
        if is_original_state_dict(obj):
            config = _original_config({}, options)
            return config, convert_original_state_dict(obj, config), None, (None, "")
        return _config_with_options({}, options), dict(obj), None, (None, "")
    raise CheckpointError(
        f"{str(path)!r}: unknown checkpoint layout (top-level keys: {sorted(map(str, obj))[:10]})"
    )


def load_model(path: str | os.PathLike, **options: Any) -> Classifier:
    """Load any supported checkpoint as a :class:`Classifier` in eval mode.

    Args:
        path: a ``.ckpt`` (ours), ``.safetensors`` (ours, or original weights converted to it),
            an original SCOUTER ``train.py`` checkpoint, a bare state_dict, a published model
            folder (``config.json`` + ``model.safetensors``, :mod:`scouter.publish`) or
            ``"hf-hub:<org>/<name>[@revision]"`` (that folder on the Hugging Face Hub, through
            its cache; ``HF_HUB_OFFLINE=1`` reads the cache only).
        **options: :class:`ModelConfig` fields that override (or, for bare files, provide) the
            stored config, e.g. ``backbone="resnest26d", num_classes=100, sign=-1``; and
            ``data_config`` (a :class:`~scouter.data_config.DataConfig` or its dict), which
            overrides or provides the stored preprocessing.

    Returns:
        The model in eval mode on CPU, with ``model.class_names`` when stored (else ``None``).
        ``model.data_config`` is the preprocessing stored with it
        (``.ckpt`` written by ``train.py``, ``.safetensors`` written by :func:`save_model`), or
        ``None`` for files that store none (original SCOUTER checkpoints, bare state_dicts,
        files written before scouter stored it): ``scouter.data.transform_for(model)`` then
        says so.

    Raises:
        FileNotFoundError, IsADirectoryError (checkpoint files inside are listed),
        UnsafeCheckpointError, CheckpointMismatchError, CheckpointError.
    """
    from scouter.model_folder import is_model_folder, load_model_folder

    options = dict(options)
    given_data_config = options.pop(JSON_DATA_CONFIG_KEY, None)
    if given_data_config is not None and not isinstance(given_data_config, DataConfig):
        given_data_config = DataConfig.from_dict(given_data_config)
    if str(path).startswith(HF_HUB_PREFIX):
        from scouter.hub import download_hf_hub_folder

        path = download_hf_hub_folder(str(path))
    path = Path(path)
    if is_model_folder(path):
        model = load_model_folder(path, **options)
    else:
        require_checkpoint_file(path)
        if path.suffix == ".safetensors":
            config, state, data_config, (names, source) = _load_safetensors(path, options)
        else:
            config, state, data_config, (names, source) = _resolve_torch_checkpoint(path, options)
        model = build_classifier(config)
        load_state_dict_checked(model, state, f"checkpoint {str(path)!r}")
        model.data_config = data_config
        try:
            model.class_names = check_class_names(names, config.num_classes, source)
        except ValueError as err:
            raise CheckpointConfigError(str(err)) from None
    if given_data_config is not None:
        model.data_config = given_data_config
    return model.eval()


def backbone_state_from_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The backbone weights (timm key names) of any supported checkpoint.

    Used to start SCOUTER training from an FC-stage checkpoint (the reference's ``use_pre``).
    Config checks are skipped: only backbone keys are read.
    """
    path = Path(path)
    require_checkpoint_file(path)
    if path.suffix == ".safetensors":
        state = _read_safetensors(path, " (or give init_backbone_from the run's .ckpt)")
    else:
        obj = safe_torch_load(path)
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"{str(path)!r} is not a checkpoint dict")
        if LIGHTNING_CONFIG_KEY in obj:
            state = _lightning_model_state(obj)
        elif "model" in obj and isinstance(obj["model"], Mapping):
            state = obj["model"]
        else:
            state = obj
    if is_original_state_dict(state):
        backbone = {
            k.removeprefix("backbone."): v
            for k, v in state.items()
            if k.startswith("backbone.") and not k.startswith("backbone.fc.")
        }
    else:
        backbone = {
            k.removeprefix("backbone.model."): v
            for k, v in state.items()
            if k.startswith("backbone.model.")
        }
    if not backbone:
        raise CheckpointError(f"{str(path)!r} holds no backbone weights")
    return backbone
