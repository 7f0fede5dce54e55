"""Loading and checking everything before the first image is explained: :func:`prepare` (output
folders, names, config, checkpoint, dataset split, explainers, explained-class mode)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from torch import Tensor, nn

from scouter.devices import resolve_device
from scouter.evaluation.checks import (
    check_finite_weights,
    check_model_section,
    metrics_for_dataset,
)
from scouter.evaluation.options import (
    DEFAULT_METRICS,
    EXPLAINED_CLASS_MODES,
    METRICS,
    PREPROCESSING_SOURCES,
    SPLITS,
    DataConfigMismatchWarning,
    EvaluationError,
    EvaluationOptions,
    PreparedEvaluation,
)


def _check_output_dir(path: str | Path | None, flag: str) -> Path | None:
    """The folder, once it is known to be creatable and writable (tested, then left as found)."""
    if path is None:
        return None
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EvaluationError(
            f"{flag} {str(path)!r} is a file, not a directory: choose a folder path (it is "
            "created if missing)"
        )
    missing = []  # the folders a test write creates, deepest first, removed afterwards
    existing = path
    while not existing.exists() and existing != existing.parent:
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        raise EvaluationError(
            f"{flag} {str(path)!r} cannot be created: {str(existing)!r} is a file, not a folder; "
            "choose a folder path"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=path, prefix=".evaluate-write-test-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise EvaluationError(
            f"{flag} {str(path)!r} is not writable ({error.strerror or error}): choose a folder "
            "you can write to, or fix its permissions; nothing was evaluated"
        ) from None
    finally:
        for folder in missing:
            with contextlib.suppress(OSError):
                folder.rmdir()
    return path


def _load_config(config: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    if isinstance(config, dict):
        return dict(config), None
    path = Path(config)
    if not path.is_file():
        raise EvaluationError(f"config {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise EvaluationError(f"config {str(path)!r} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise EvaluationError(f"config {str(path)!r} must be a mapping with a 'data:' section")
    return data, str(path)


def _section(config: dict[str, Any], name: str) -> dict[str, Any]:
    """A LightningCLI section, plain (``data: {...}``) or ``class_path``/``init_args`` form."""
    section = config.get(name) or {}
    if not isinstance(section, dict):
        raise EvaluationError(f"the config's {name!r} section must be a mapping")
    if "init_args" in section:
        section = section.get("init_args") or {}
    return dict(section)


def apply_data_overrides(section: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``section`` with each dotted key of ``overrides`` set (``"dataset_options.num_classes"``
    sets ``section["dataset_options"]["num_classes"]``); ``section`` itself is left as is."""
    section = copy.deepcopy(section)
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = section
        for depth, parent in enumerate(parents):
            child = node.get(parent)
            if child is None:
                child = node[parent] = {}
            if not isinstance(child, dict):
                where = ".".join(["data", *parents[: depth + 1]])
                raise EvaluationError(
                    f"--data.{key}: {where} is {child!r} in the config, not a mapping; give "
                    f"--{where} instead"
                )
            node = child
        node[leaf] = value
    return section


def _parse_names(names: Sequence[str] | str | None) -> list[str] | None:
    if names is None:
        return None
    if isinstance(names, str):
        names = [names]
    parsed = [n.strip() for item in names for n in str(item).split(",") if n.strip()]
    return list(dict.fromkeys(parsed))


def _load_checkpoint(
    path: Path, model_section: dict[str, Any], num_classes: int, in_chans: int = 3
) -> nn.Module:
    from scouter.checkpoints import CheckpointError, load_model
    from scouter.models.classifier import ModelConfig

    try:
        return load_model(path)
    except CheckpointError as error:
        # Bare state_dicts (and original files without `args`) carry no architecture: take it
        # from the config's model section, as training would have built it.
        fields = {f.name for f in dataclasses.fields(ModelConfig)}
        options = {k: v for k, v in model_section.items() if k in fields}
        if not options:
            raise EvaluationError(f"cannot load the checkpoint: {error}") from None
        options.setdefault("num_classes", num_classes)
        options.setdefault("in_chans", in_chans)  # train.py links it from data.in_chans
        try:
            return load_model(path, **options)
        except CheckpointError as second:
            raise EvaluationError(f"cannot load the checkpoint: {second}") from None


def _least_similar_by_model(model: nn.Module) -> Tensor:
    from scouter.metrics import cosine_similarity_matrix, least_similar_classes

    head = model.head
    if hasattr(head, "initial_slots"):
        # Class-major slots (docs/method.md#slots): a class's vector is its s slots concatenated.
        weights = head.initial_slots.detach()[0].reshape(model.num_classes, -1)
    elif hasattr(head, "fc"):
        weights = head.fc.weight.detach()
    else:
        raise EvaluationError("explained_class='least_similar' needs an xslot or FC head")
    return least_similar_classes(cosine_similarity_matrix(weights.float().cpu()))


def _least_similar_by_wordnet(dataset: Any) -> Tensor:
    from scouter.metrics import least_similar_classes, wordnet_similarity_matrix

    wnids = getattr(dataset, "wnids", None) or getattr(
        getattr(dataset, "dataset", None), "wnids", None
    )
    if not wnids:
        raise EvaluationError(
            "explained_class='wordnet' needs a dataset with WordNet ids (ImageNet); use "
            "'least_similar' (the model's class slots) for other datasets"
        )
    return least_similar_classes(wordnet_similarity_matrix(list(wnids)))


def _split_dataset(datamodule: Any, split: str) -> Any:
    from scouter.data.transforms import TransformedDataset

    datamodule.setup()
    if split == "test":
        return datamodule.test_set
    if split == "val":
        return datamodule.val_set
    # The training images through the evaluation transform (no augmentation).
    train = datamodule.train_set
    return TransformedDataset(train.dataset, datamodule.val_set.transform, train.indices)


def _field_value(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + ")"
    return repr(value)


def choose_preprocessing(model: nn.Module, datamodule: Any, source: str) -> str | None:
    """Make ``datamodule`` preprocess as ``source`` says; the mismatch warning, if any.

    ``source="checkpoint"`` uses the model's stored data config (when it has one) instead of the
    config's ``data:`` settings; ``"config"`` keeps the config's. Every field where the two
    disagree is named with both values and which one is used.
    """
    stored = getattr(model, "data_config", None)
    if stored is None:
        return None
    try:
        configured = datamodule.data_config
    except ValueError as error:  # e.g. a mean/std that does not fit data.in_chans
        raise EvaluationError(f"the config's data section is invalid: {error}") from None
    differences = stored.differences(configured)
    if not differences:
        return None
    if source == "checkpoint":
        datamodule.use_data_config(stored)
    used = (
        "the checkpoint's values are used (--preprocessing config uses the config's)"
        if source == "checkpoint"
        else "the config's values are used, as --preprocessing config asks"
    )
    listed = "; ".join(
        f"{name}: checkpoint {_field_value(mine)}, config {_field_value(theirs)}"
        for name, mine, theirs in differences
    )
    return (
        f"the config's data section preprocesses differently from the data config stored with "
        f"the checkpoint ({listed}): {used}"
    )


def prepare(options: EvaluationOptions) -> PreparedEvaluation:
    """Validate every input and build model, data and explainers, before any evaluation work.

    Raises:
        EvaluationError: with the fix in the message, for unknown explainer or metric names or
            bad explainer settings, an output path that is a file or not writable, ``limit`` or
            ``num_images`` below 1, a missing config, a missing checkpoint or a folder given as
            one, a checkpoint whose class count differs from the dataset's, a model that takes
            another channel count than ``data.in_chans`` (or, for a fixed-size ViT, another size
            than ``data.image_size``), or an explainer the
            model cannot use; an unknown key in the config's ``model:`` section, a checkpoint
            with NaN/inf weights, ``precision`` asked for on a dataset without boxes or masks
            (by default it is left out there, with a note in ``notes``;
            :mod:`scouter.evaluation.checks`); bad GridPG settings or grids file
            (:func:`~scouter.evaluation.gridpg.prepare_gridpg`).

    Preprocessing: when the checkpoint stores a data config (``.ckpt`` from ``train.py``,
    ``.safetensors`` from ``save_model``) and the config's ``data:`` section resolves to another
    size, channel count, mean, std or eval resize, a :class:`DataConfigMismatchWarning` names each
    field and both values (also in ``warnings``); ``options.preprocessing`` says which is used
    (the checkpoint's by default).
    """
    out = _check_output_dir(options.out, "--out")
    export = _check_output_dir(options.export, "--export")
    if out is None and export is None:
        raise EvaluationError("nothing to write: pass --out DIR and/or --export DIR")
    if out is not None and out.is_dir():
        from scouter.export import recover_results_folder

        recover_results_folder(out)  # finish or discard a results write a kill interrupted

    explicit_metrics = _parse_names(options.metrics)
    metrics = explicit_metrics or list(DEFAULT_METRICS)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise EvaluationError(f"unknown metric(s) {unknown}; valid names: {', '.join(METRICS)}")
    explainer_names = _parse_names(options.explainers)
    explainers = _build_explainers(explainer_names, options.explainer_settings)
    if options.split not in SPLITS:
        raise EvaluationError(f"split must be one of {SPLITS}, got {options.split!r}")
    if options.limit is not None and int(options.limit) < 1:
        raise EvaluationError(f"limit (--limit) must be >= 1, got {options.limit}")
    if int(options.num_images) < 1:
        raise EvaluationError(
            f"num_images (--num-images, the images shown in the export) must be >= 1, got "
            f"{options.num_images}"
        )
    if isinstance(options.explained_class, str) and options.explained_class not in (
        EXPLAINED_CLASS_MODES
    ):
        raise EvaluationError(
            f"explained_class must be one of {EXPLAINED_CLASS_MODES} or a class index, "
            f"got {options.explained_class!r}"
        )
    if options.preprocessing not in PREPROCESSING_SOURCES:
        raise EvaluationError(
            f"preprocessing must be one of {PREPROCESSING_SOURCES}, got {options.preprocessing!r}"
        )
    device = resolve_device(options.device, EvaluationError)

    config, config_path = _load_config(options.config)
    data_section = apply_data_overrides(_section(config, "data"), options.data_overrides)
    if not data_section.get("dataset"):
        raise EvaluationError(
            "the config has no data.dataset: evaluate.py reads the training config's 'data:' "
            "section (dataset, root, image_size, dataset_options, normalisation); give the run's "
            "config (train.py saves it as config.yaml beside the run's logs, e.g. "
            "runs/<...>/csv/version_0/config.yaml) or --data.dataset NAME"
        )
    model_section = _section(config, "model")
    check_model_section(model_section)
    from scouter.checkpoints import require_checkpoint_file

    checkpoint = Path(options.checkpoint)
    try:
        require_checkpoint_file(checkpoint)
    except OSError as error:  # missing, or a folder (its checkpoint files are listed)
        raise EvaluationError(str(error)) from None

    from scouter.data import ScouterDataModule

    data_args = dict(data_section)
    if options.batch_size is not None:
        data_args["batch_size"] = int(options.batch_size)
    if options.num_workers is not None:
        data_args["num_workers"] = int(options.num_workers)
    try:
        datamodule = ScouterDataModule(**data_args)
        num_classes = datamodule.num_classes
    except TypeError as error:
        raise EvaluationError(f"the config's data section is invalid: {error}") from None
    dataset = _split_dataset(datamodule, options.split)
    metrics, note = metrics_for_dataset(
        metrics, bool(explicit_metrics), dataset, data_section["dataset"]
    )
    notes = [n for n in (datamodule.split_notes.get(options.split), note) if n]

    model = _load_checkpoint(checkpoint, model_section, num_classes, datamodule.in_chans)
    if model.num_classes != num_classes:
        given = f"config {config_path!r}" if config_path else "the config given"
        raise EvaluationError(
            f"the checkpoint predicts {model.num_classes} classes but dataset "
            f"{data_section['dataset']!r} as configured ({given}, --data.* overrides) has "
            f"{num_classes}: evaluate it with the data settings it was trained with: the run's "
            "config.yaml, which train.py saves beside the run's logs (e.g. "
            "--config runs/<...>/csv/version_0/config.yaml), or --data.* overrides of the "
            "training command's (e.g. --data.root, --data.dataset_options.num_classes)"
        )
    mismatch = choose_preprocessing(model, datamodule, options.preprocessing)
    if mismatch is not None:
        warnings.warn(mismatch, DataConfigMismatchWarning, stacklevel=2)
        if options.preprocessing == "checkpoint":  # the splits again, through the model's transform
            dataset = _split_dataset(datamodule, options.split)
    from scouter.models.inputs import channel_mismatch, size_mismatch

    # The data module converts every image to data.in_chans and resizes it to data.image_size,
    # so these settings decide what the model is fed (a mismatch would otherwise fail as a
    # tensor-shape error inside the first forward pass).
    problem = channel_mismatch(model, datamodule.in_chans) or size_mismatch(
        model, datamodule.image_size
    )
    if problem is not None:
        raise EvaluationError(
            f"{problem} (checkpoint {str(checkpoint)!r}; evaluate it with the data settings it "
            "was trained with)"
        )
    check_finite_weights(model, checkpoint)
    model = model.to(device).eval()

    if explainers is None:
        explainers = _build_explainers(
            ["slot"] if model.is_scouter else ["gradcam"], options.explainer_settings
        )
    for explainer in explainers.values():  # each explainer's `requires`, before any work
        problem = explainer.model_problem(model, noun="checkpoint")
        if problem is not None:
            raise EvaluationError(f"{problem} (checkpoint {str(checkpoint)!r})")

    mode = options.explained_class
    least_similar = None
    if mode == "auto":
        mode = "least_similar" if model.is_scouter and model.config.sign < 0 else "target"
    if mode == "least_similar":
        least_similar = _least_similar_by_model(model)
    elif mode == "wordnet":
        least_similar = _least_similar_by_wordnet(dataset)
    elif not isinstance(mode, str):
        if not 0 <= int(mode) < num_classes:
            raise EvaluationError(f"explained class {mode} is outside [0, {num_classes})")
    gridpg = None
    if "gridpg" in metrics:  # the one grid metric (metric_specs): its settings and grids file
        from scouter.evaluation.gridpg import prepare_gridpg

        input_size = datamodule.data_config.input_size
        gridpg = prepare_gridpg(options, dataset, data_section, model, num_classes, input_size)
    return PreparedEvaluation(
        options=options,
        config=config,
        config_path=config_path,
        model=model,
        datamodule=datamodule,
        dataset=dataset,
        explainers=explainers,
        metrics=metrics,
        device=device,
        explained_class=mode,
        least_similar=least_similar,
        notes=notes,
        warnings=[mismatch] if mismatch else [],
        gridpg=gridpg,
    )


def _build_explainers(
    names: list[str] | None, settings: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """Explainers by canonical name; unknown names and settings fail here, before any work."""
    from scouter.explain import get_explainer

    if names is None:
        return None
    explainers: dict[str, Any] = {}
    used = set()
    for name in names:
        own = settings.get(name, {})
        try:
            explainer = get_explainer(name, **own)
        except (TypeError, ValueError) as error:
            raise EvaluationError(str(error)) from None
        if explainer.name in explainers:
            continue
        if not own and explainer.name in settings:  # settings given under the canonical name
            explainer = get_explainer(explainer.name, **settings[explainer.name])
            used.add(explainer.name)
        used.add(name)
        explainers[explainer.name] = explainer
    extra = sorted(set(settings) - used)
    if extra:
        raise EvaluationError(
            f"settings given for explainer(s) {extra} that are not evaluated "
            f"(evaluated: {', '.join(explainers)})"
        )
    return explainers
