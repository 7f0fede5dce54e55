"""Published model folders: the layout the Hugging Face Hub and timm use, written and read.

A model folder holds::

    config.json          architecture (scouter's ModelConfig), class names, data config, and the
                         weights file's dtype and SHA-256
    model.safetensors    the weights (float32, or float16 to halve the size)
    README.md            the model card (:mod:`scouter.model_card`)
    recipe.yaml          the training config it was trained with (optional)
    results/*.json       the evaluate.py results the card's numbers come from (optional)

:func:`save_pretrained` writes the folder atomically (a hidden sibling folder renamed into place:
an interrupted publish leaves no half-written folder), :func:`load_model_folder` reads it (what
``scouter.load_model(folder)`` does), checking the weights against the SHA-256 in ``config.json``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from scouter.atomic_io import file_sha256
from scouter.data_config import DataConfig, check_class_names
from scouter.safe_loading import CheckpointError

__all__ = [
    "CONFIG_FILE",
    "FORMAT",
    "WEIGHTS_FILE",
    "ModelFolderError",
    "is_model_folder",
    "load_model_folder",
    "read_folder_config",
    "save_pretrained",
    "weights_file",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
RECIPE_FILE = "recipe.yaml"
RESULTS_FOLDER = "results"
FORMAT = "scouter-model-folder/1"
_DTYPES = {"float32": torch.float32, "float16": torch.float16}


class ModelFolderError(CheckpointError, ValueError):
    """A model folder is incomplete, inconsistent or tampered with; the message says the fix."""


def weights_file(path: str | os.PathLike) -> Path:
    """The weights file of a model folder, or ``path`` itself when it is a file."""
    path = Path(path)
    if not is_model_folder(path):
        return path
    info = read_folder_config(path).get("weights") or {}
    return path / str(info.get("file", WEIGHTS_FILE))


def is_model_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a ``config.json`` (a published model folder)."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG_FILE).is_file()


# --- writing ------------------------------------------------------------------------------------


def folder_config(model: Any, dtype: str = "float32", **extra: Any) -> dict[str, Any]:
    """The ``config.json`` document of ``model`` (without the weights' hash)."""
    config = model.config
    document: dict[str, Any] = {
        "format": FORMAT,
        "library_name": "scouter",
        "variant": config.variant,
        "architecture": config.backbone,
        "num_classes": config.num_classes,
        "label_names": list(model.class_names) if model.class_names is not None else None,
        "model_config": {**config.to_dict(), "pretrained": False, "pretrained_file": None},
        "data_config": model.data_config.to_dict() if model.data_config is not None else None,
        "weights": {"file": WEIGHTS_FILE, "dtype": dtype},
    }
    document.update(extra)
    return document


def save_pretrained(
    model: Any,
    folder: str | os.PathLike,
    *,
    card: str | Callable[[float], str] | None = None,
    recipe: str | None = None,
    results: Mapping[str, Mapping[str, Any]] | None = None,
    dtype: str = "float32",
    overwrite: bool = False,
    extra_config: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a model folder (see the module docstring), atomically.

    Args:
        model: a :class:`~scouter.models.classifier.Classifier`.
        folder: the folder to create.
        card: the model card's text (``README.md``), e.g. from :func:`scouter.model_card.render_card`,
            or a function of the written weights' size in MB returning it (a card that states it).
        recipe: the training config's YAML text (``recipe.yaml``).
        results: ``{name: results.json document}`` written as ``results/<name>.json``.
        dtype: ``"float32"`` or ``"float16"`` (floating tensors only; integer buffers stay as they
            are). Loading casts back to float32.
        overwrite: replace an existing folder (the old one is removed only once the new one is
            complete).
        extra_config: more ``config.json`` entries (e.g. ``zoo_entry``, ``description``).

    Returns:
        The folder.

    Raises:
        FileExistsError: ``folder`` exists and ``overwrite`` is false.
        ValueError: an unknown ``dtype``.
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(
            f"{str(folder)!r} exists: choose another folder, or replace it (overwrite=True, "
            "--overwrite on the command line)"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.partial-{secrets.token_hex(4)}"
    try:
        staging.mkdir()
        state = {
            k: (v.to(_DTYPES[dtype]) if v.is_floating_point() else v).detach().contiguous().cpu()
            for k, v in model.state_dict().items()
        }
        save_file(state, staging / WEIGHTS_FILE, metadata={"format": "pt"})
        os.chmod(staging / WEIGHTS_FILE, _plain_file_mode())  # safetensors writes 0600
        document = folder_config(model, dtype, **dict(extra_config or {}))
        document["weights"]["sha256"] = file_sha256(staging / WEIGHTS_FILE)
        _write_text(staging / CONFIG_FILE, json.dumps(document, indent=2) + "\n")
        if callable(card):
            card = card((staging / WEIGHTS_FILE).stat().st_size / 1e6)
        if card is not None:
            _write_text(staging / CARD_FILE, card)
        if recipe is not None:
            _write_text(staging / RECIPE_FILE, recipe)
        for name, doc in (results or {}).items():
            (staging / RESULTS_FOLDER).mkdir(exist_ok=True)
            _write_text(staging / RESULTS_FOLDER / f"{name}.json", json.dumps(doc, indent=2) + "\n")
        _swap_into_place(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _plain_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0666 minus the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _swap_into_place(staging: Path, folder: Path) -> None:
    """Rename the complete ``staging`` folder to ``folder``; an old one goes only afterwards."""
    if not folder.exists():
        os.rename(staging, folder)
        return
    old = folder.parent / f".{folder.name}.old-{secrets.token_hex(4)}"
    os.rename(folder, old)
    try:
        os.rename(staging, folder)
    except BaseException:
        os.rename(old, folder)  # put the previous folder back
        raise
    shutil.rmtree(old, ignore_errors=True)


# --- reading ------------------------------------------------------------------------------------


def read_folder_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The validated ``config.json`` of a model folder.

    Raises:
        ModelFolderError: no ``config.json``, not JSON, or without ``model_config``.
    """
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise ModelFolderError(
            f"{str(folder)!r} has no {CONFIG_FILE}: it is not a published model folder (those "
            f"hold {CONFIG_FILE} + {WEIGHTS_FILE}; write one with `python -m scouter.publish`), "
            "or pass a checkpoint file inside it instead"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFolderError(
            f"{str(path)!r} is not valid JSON ({err}): restore it from the published folder"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("model_config"), dict):
        raise ModelFolderError(
            f"{str(path)!r} has no 'model_config' object: it was not written by scouter's "
            "save_pretrained / `python -m scouter.publish`"
        )
    return document


def _weights(folder: Path, document: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    info = document.get("weights") or {}
    path = folder / str(info.get("file", WEIGHTS_FILE))
    if not path.is_file():
        raise ModelFolderError(
            f"model folder {str(folder)!r} has no weights file {path.name!r}: download or copy "
            "the whole folder again"
        )
    expected = info.get("sha256")
    if expected is not None and file_sha256(path) != expected:
        raise ModelFolderError(
            f"{str(path)!r} does not match the SHA-256 recorded in its {CONFIG_FILE} (expected "
            f"{expected}): the file is corrupt or was changed; download or copy the folder again"
        )
    try:
        state = load_file(path)
    except (SafetensorError, OSError) as err:
        raise ModelFolderError(
            f"{str(path)!r} is not a readable safetensors file ({err}): download or copy the "
            "folder again"
        ) from None
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_model_folder(folder: str | os.PathLike, **options: Any) -> Any:
    """Build the classifier of a model folder and load its weights (eval mode, float32, CPU).

    Args:
        folder: a folder written by :func:`save_pretrained`.
        **options: :class:`~scouter.models.classifier.ModelConfig` fields overriding the stored
            ones (a shape-changing override fails naming the keys).

    Returns:
        The classifier, with ``data_config`` and ``class_names`` from ``config.json``.

    Raises:
        ModelFolderError: missing or invalid files, a hash mismatch.
        CheckpointMismatchError: the weights do not fit the architecture (keys named).
    """
    from scouter.checkpoints import load_state_dict_checked
    from scouter.models.classifier import ModelConfig, build_classifier

    folder = Path(folder)
    document = read_folder_config(folder)
    source = f"{str(folder / CONFIG_FILE)!r}"
    try:
        config = ModelConfig.from_dict(
            {**document["model_config"], **options, "pretrained": False, "pretrained_file": None}
        )
        data = document.get("data_config")
        data_config = DataConfig.from_dict(data) if data is not None else None
        names = check_class_names(document.get("label_names"), config.num_classes, source)
    except (TypeError, ValueError) as err:
        raise ModelFolderError(f"{source} is not valid: {err}") from None
    model = build_classifier(config)
    load_state_dict_checked(model, _weights(folder, document), f"model folder {str(folder)!r}")
    model.data_config = data_config
    model.class_names = names
    if document.get("zoo_entry"):
        model.zoo_entry = document["zoo_entry"]
    return model.eval()
