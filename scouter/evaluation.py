"""The loop behind ``evaluate.py``: model × data × explainers × metrics → results files and report.

    from scouter.evaluation import EvaluationOptions, evaluate
    results = evaluate(EvaluationOptions(checkpoint="run.ckpt", config="configs/x/y.yaml",
                                         explainers=["slot", "gradcam"], out="results/"))

Everything a user can get wrong (names, paths, class counts, explainer/model combinations) is
checked by :func:`prepare` before the first image is explained. The results follow
docs/metrics.md#results-files: ``results.json`` (full config, checkpoint SHA-256, dataset and
split, number of images, each metric's value with settings and NaN count) and ``per_image.csv``
(id, label, explained class, prediction, per-image values per explainer), replaced together
(all old or all new, :func:`scouter.export.write_results`). With ``export``, overlays, a grid figure and a self-contained ``report.html`` are
written too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

from scouter.evaluation_checks import (
    check_finite_outputs,
    check_finite_weights,
    check_model_section,
    metrics_for_dataset,
)

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "EvaluationError",
    "EvaluationOptions",
    "PreparedEvaluation",
    "evaluate",
    "main",
    "prepare",
    "run",
]

#: Metric names accepted by ``--metrics``; "accuracy" is about the classifier, the rest are
#: computed for every explainer.
METRICS = (
    "accuracy",
    "area",
    "area_reference",
    "precision",
    "insertion",
    "deletion",
    "infidelity",
    "sensitivity",
)
DEFAULT_METRICS = ("accuracy", "area", "precision", "insertion", "deletion")
EXPLAINED_CLASS_MODES = ("auto", "target", "predicted", "least_similar", "wordnet")
SPLITS = ("train", "val", "test")


class EvaluationError(ValueError):
    """A user-caused problem (the message says how to fix it): found by :func:`prepare` before
    evaluation starts, or by :func:`run` when the model's outputs turn non-finite."""


@dataclass
class EvaluationOptions:
    """What to evaluate and where to write it.

    Attributes:
        checkpoint: any checkpoint :func:`scouter.load_model` reads (ours or an original SCOUTER
            one); bare state_dicts take their architecture from the config's ``model:`` section.
        config: a training YAML (``configs/<dataset>/<variant>.yaml``) or its parsed dict; its
            ``data:`` section (ScouterDataModule arguments) builds the dataset.
        explainers: explainer names (:func:`scouter.explain.list_explainers`); default
            ``["slot"]`` for SCOUTER models and ``["gradcam"]`` for FC models.
        explainer_settings: explainer name → settings, e.g. ``{"ig": {"steps": 16}}``.
        metrics: names from :data:`METRICS`; default :data:`DEFAULT_METRICS`.
        split: ``"test"`` (default), ``"val"`` or ``"train"`` (always with evaluation transforms).
        limit: evaluate only the first N images of the split.
        explained_class: ``"auto"`` (ground truth for SCOUTER+ and FC; for SCOUTER− the least
            similar class by the model's own class slots), ``"target"``, ``"predicted"``,
            ``"least_similar"`` (by the model's class slots / FC rows), ``"wordnet"`` (Wu–Palmer
            over the dataset's wnids, local WordNet) or a class index
            (docs/metrics.md#explained-class).
        out: folder for ``results.json`` and ``per_image.csv`` (created).
        export: folder for overlays, ``grid.png`` and ``report.html`` (created).
        num_images: images shown in the export.
        batch_size: override of ``data.batch_size``.
        num_workers: override of ``data.num_workers``.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:0"``, …
        seed: seed of the infidelity / sensitivity perturbations.
        metric_batch_size: perturbed images per forward pass inside the metrics.
        progress: show a progress bar.
    """

    checkpoint: str | Path
    config: str | Path | dict[str, Any]
    explainers: Sequence[str] | None = None
    explainer_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: Sequence[str] | None = None
    split: str = "test"
    limit: int | None = None
    explained_class: str | int = "auto"
    out: str | Path | None = None
    export: str | Path | None = None
    num_images: int = 8
    batch_size: int | None = None
    num_workers: int | None = None
    device: str = "auto"
    seed: int = 0
    metric_batch_size: int = 256
    progress: bool = True


@dataclass
class PreparedEvaluation:
    """Everything :func:`run` needs, validated by :func:`prepare`."""

    options: EvaluationOptions
    config: dict[str, Any]
    config_path: str | None
    model: nn.Module
    datamodule: Any
    dataset: Any
    explainers: dict[str, Any]
    metrics: list[str]
    device: torch.device
    explained_class: str | int
    least_similar: Tensor | None
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------- validation


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


def _parse_names(names: Sequence[str] | str | None) -> list[str] | None:
    if names is None:
        return None
    if isinstance(names, str):
        names = [names]
    parsed = [n.strip() for item in names for n in str(item).split(",") if n.strip()]
    return list(dict.fromkeys(parsed))


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise EvaluationError(f"invalid device {device!r}: {error}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EvaluationError(f"device {device!r} requested but CUDA is not available")
    return resolved


def _load_checkpoint(path: Path, model_section: dict[str, Any], num_classes: int) -> nn.Module:
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


def prepare(options: EvaluationOptions) -> PreparedEvaluation:
    """Validate every input and build model, data and explainers, before any evaluation work.

    Raises:
        EvaluationError: with the fix in the message, for unknown explainer or metric names or
            bad explainer settings, an output path that is a file or not writable, ``limit`` or
            ``num_images`` below 1, a missing config, a missing checkpoint or a folder given as
            one, a checkpoint whose class count differs from the dataset's, or an explainer the
            model cannot use; an unknown key in the config's ``model:`` section, a checkpoint
            with NaN/inf weights, ``precision`` asked for on a dataset without boxes or masks
            (by default it is left out there, with a note in ``notes``;
            :mod:`scouter.evaluation_checks`).
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
    device = _resolve_device(options.device)

    config, config_path = _load_config(options.config)
    data_section = _section(config, "data")
    if not data_section.get("dataset"):
        raise EvaluationError(
            "the config has no data.dataset: evaluate.py reads the training config's 'data:' "
            "section (dataset, root, image_size, dataset_options, normalisation)"
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

    model = _load_checkpoint(checkpoint, model_section, num_classes)
    if model.num_classes != num_classes:
        raise EvaluationError(
            f"the checkpoint predicts {model.num_classes} classes but dataset "
            f"{data_section['dataset']!r} (as configured) has {num_classes}: evaluate it with the "
            "config it was trained with (e.g. data.dataset_options.num_classes)"
        )
    check_finite_weights(model, checkpoint)
    model = model.to(device).eval()

    if explainers is None:
        explainers = _build_explainers(
            ["slot"] if model.is_scouter else ["gradcam"], options.explainer_settings
        )
    for explainer in explainers.values():
        if explainer.name == "slot" and not model.is_scouter:
            raise EvaluationError(
                "explainer 'slot' needs a SCOUTER checkpoint; this is an FC model: use a post-hoc "
                "explainer such as 'gradcam' or 'cam'"
            )
        if explainer.name == "cam" and model.is_scouter:
            raise EvaluationError(
                "explainer 'cam' needs an FC head; for SCOUTER models use 'gradcam' (or 'slot')"
            )

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
        notes=[note] if note else [],
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


# --------------------------------------------------------------------------------------- running


def _explained_classes(prepared: PreparedEvaluation, labels: Tensor, logits: Tensor) -> Tensor:
    from scouter.metrics import select_explained_class

    mode = prepared.explained_class
    if mode in ("least_similar", "wordnet"):
        return select_explained_class(labels, "least_similar", least_similar=prepared.least_similar)
    if mode in ("target", "predicted"):
        return select_explained_class(labels, mode, logits=logits)
    return select_explained_class(labels, "explicit", explicit=int(mode))


class _ExplainerMetrics:
    """The explanation metrics of one explainer (torchmetrics objects + their settings)."""

    def __init__(
        self,
        names: Sequence[str],
        explainer: Any,
        model: nn.Module,
        forward_fn: Callable[[Tensor], Tensor],
        input_size: tuple[int, int],
        options: EvaluationOptions,
        device: torch.device,
    ) -> None:
        from scouter import metrics as M

        self.explainer = explainer
        self.model = model
        self.checkpoint = options.checkpoint
        self.metrics: dict[str, Any] = {}
        self.settings: dict[str, dict[str, Any]] = {}
        batch = options.metric_batch_size

        def generator(offset: int) -> torch.Generator:
            return torch.Generator(device=device).manual_seed(options.seed + offset)

        def explain_fn(images: Tensor, classes: Tensor) -> Tensor:
            return explainer(model, images, target=classes).maps

        for name in names:
            if name == "area":
                self.metrics[name] = M.AreaSize(input_size=input_size)
                self.settings[name] = {"preparation": "relu_bilinear_minmax_per_map"}
            elif name == "area_reference":
                self.metrics[name] = M.AreaSize(mode="reference_uint8")
                self.settings[name] = {"preparation": "reference_joint_minmax_uint8"}
            elif name == "precision":
                self.metrics[name] = M.ExplanationPrecision()
                self.settings[name] = {"region": "mask if present, else union of boxes"}
            elif name in ("insertion", "deletion"):
                cls = M.InsertionAUC if name == "insertion" else M.DeletionAUC
                self.metrics[name] = cls(forward_fn, batch_size=batch)
                self.settings[name] = {
                    "step": M.default_step(*input_size),
                    "score": "softmax probability of the explained class",
                    **({"blur": "rise_kernel_11_sigma_5"} if name == "insertion" else {}),
                }
            elif name == "infidelity":
                metric = M.Infidelity(forward_fn, batch_size=batch, generator=generator(1))
                self.metrics[name] = metric
                self.settings[name] = dict(metric.settings)
            elif name == "sensitivity":
                metric = M.MaxSensitivity(explain_fn, batch_size=batch, generator=generator(2))
                self.metrics[name] = metric
                self.settings[name] = dict(metric.settings)
        for metric in self.metrics.values():
            metric.to(device)

    def update(
        self, batch: dict[str, Any], images: Tensor, classes: Tensor, batch_index: int = 0
    ) -> Tensor:
        """Explain the batch and update every metric; returns the ``(B, 1, h, w)`` maps.

        Raises:
            EvaluationError: naming the batch and images, when a map holds NaN or ±inf.
        """
        what = f"{self.explainer.name!r} explanation maps"
        if "area_reference" in self.metrics:
            every = self.explainer(self.model, images, target="all")
            check_finite_outputs(what, every.maps, batch_index, batch["id"], self.checkpoint)
            maps = every.class_maps(classes)
            self.metrics["area_reference"].update(every.maps, classes)
        else:
            maps = self.explainer(self.model, images, target=classes).maps
            check_finite_outputs(what, maps, batch_index, batch["id"], self.checkpoint)
        for name, metric in self.metrics.items():
            if name == "area":
                metric.update(maps)
            elif name == "precision":
                regions = batch.get("mask")
                if regions is None:
                    regions = list(batch["boxes"])
                metric.update(maps, regions, size=tuple(images.shape[-2:]))
            elif name in ("insertion", "deletion", "infidelity"):
                metric.update(images, maps, classes)
            elif name == "sensitivity":
                metric.update(images, classes)
        return maps

    def results(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        summary, per_image = {}, {}
        for name, metric in self.metrics.items():
            values = metric.per_image().detach().float().cpu()
            nan_count = int(values.isnan().sum())
            finite = values[~values.isnan()]
            summary[name] = {
                "value": float(finite.mean()) if finite.numel() else float("nan"),
                "higher_is_better": bool(metric.higher_is_better),
                "nan_count": nan_count,
                "settings": self.settings[name],
            }
            per_image[name] = values
        return summary, per_image


def _unnormalise(images: Tensor, dataset: Any) -> Tensor:
    transform = getattr(dataset, "transform", None)
    mean = getattr(transform, "mean", None)
    std = getattr(transform, "std", None)
    if mean is None or std is None:
        return images.clamp(0, 1)
    return (images * std.to(images) + mean.to(images)).clamp(0, 1)


def run(prepared: PreparedEvaluation) -> dict[str, Any]:
    """Evaluate a prepared run and write its files.

    Returns:
        The results document (also written to ``out/results.json``).

    Raises:
        EvaluationError: at the first batch whose logits or explanation maps hold NaN or ±inf
            (naming the batch, its images and the checkpoint); nothing is written then.
    """
    from torch.utils.data import DataLoader, Subset
    from tqdm.auto import tqdm

    from scouter.data.sample import collate_samples
    from scouter.export import file_sha256, write_results
    from scouter.metrics import BinaryClassificationReport, ClassificationAccuracy, prepare_maps

    options, model, device = prepared.options, prepared.model, prepared.device
    dataset = prepared.dataset
    limit = options.limit
    if limit is None and options.out is None:
        limit = options.num_images  # export only: the shown images are the evaluated ones
    if limit is not None:
        dataset_view = Subset(dataset, range(min(int(limit), len(dataset))))
    else:
        dataset_view = dataset
    datamodule = prepared.datamodule
    loader = DataLoader(
        dataset_view,
        batch_size=datamodule.batch_size,
        shuffle=False,
        num_workers=datamodule.num_workers,
        collate_fn=collate_samples,
    )
    num_classes = model.num_classes

    def forward_fn(images: Tensor) -> Tensor:
        with torch.no_grad():
            return model(images).logits

    want_accuracy = "accuracy" in prepared.metrics
    accuracy = ClassificationAccuracy(num_classes).to(device) if want_accuracy else None
    binary = BinaryClassificationReport().to(device) if want_accuracy and num_classes == 2 else None
    explanation_metrics = [m for m in prepared.metrics if m != "accuracy"]
    per_explainer: dict[str, _ExplainerMetrics] = {}
    rows: list[dict[str, Any]] = []
    shown: dict[str, Any] = {"images": [], "maps": {n: [] for n in prepared.explainers}}
    class_names = list(getattr(dataset, "class_names", [])) or [str(k) for k in range(num_classes)]

    started = time.perf_counter()
    progress = tqdm(
        total=len(dataset_view), desc="evaluate", unit="img", disable=not options.progress
    )
    for batch_index, batch in enumerate(loader):
        images = batch["image"].to(device)
        labels = batch["label"].to(device)
        if "mask" in batch:
            batch["mask"] = batch["mask"].to(device)
        logits = forward_fn(images)
        check_finite_outputs("logits", logits, batch_index, batch["id"], options.checkpoint)
        predictions = logits.argmax(dim=1)
        if accuracy is not None:
            accuracy.update(logits, labels)
            if binary is not None:
                binary.update(logits, labels)
        classes = _explained_classes(prepared, labels, logits)
        for name, explainer in prepared.explainers.items():
            if name not in per_explainer:
                per_explainer[name] = _ExplainerMetrics(
                    explanation_metrics, explainer, model, forward_fn,
                    tuple(images.shape[-2:]), options, device,
                )  # fmt: skip
            maps = per_explainer[name].update(batch, images, classes, batch_index)
            if options.export is not None and len(shown["images"]) < options.num_images:
                take = options.num_images - len(shown["images"])
                shown["maps"][name].append(prepare_maps(maps[:take], tuple(images.shape[-2:])))
        if options.export is not None and len(shown["images"]) < options.num_images:
            take = options.num_images - len(shown["images"])
            shown["images"].extend(_unnormalise(images[:take], dataset).cpu())
        for i, image_id in enumerate(batch["id"]):
            rows.append(
                {
                    "id": image_id,
                    "label": int(labels[i]),
                    "explained_class": int(classes[i]),
                    "prediction": int(predictions[i]),
                }
            )
        progress.update(len(images))
    progress.close()
    elapsed = time.perf_counter() - started
    if not rows:
        raise EvaluationError(f"the {options.split!r} split has no images")

    metrics_doc: dict[str, Any] = {}
    if accuracy is not None:
        values = {k: float(v) for k, v in accuracy.compute().items()}
        metrics_doc["accuracy"] = {
            "value": values["top1"],
            "macro": values["macro"],
            "higher_is_better": True,
            "nan_count": 0,
            "settings": {"top1": "over all images", "macro": "mean of per-class accuracies"},
        }
        if binary is not None:
            metrics_doc["binary"] = {
                "value": {k: float(v) for k, v in binary.compute().items()},
                "higher_is_better": True,
                "nan_count": 0,
                "settings": {"positive_class": 1, "threshold": 0.5},
            }
    explanations_doc: dict[str, Any] = {}
    for name, tracker in per_explainer.items():
        summary, per_image = tracker.results()
        explanations_doc[name] = {"settings": tracker.explainer.settings, "metrics": summary}
        for metric, values in per_image.items():
            for row, value in zip(rows, values.tolist(), strict=True):
                row[f"{name}/{metric}"] = value

    checkpoint = Path(options.checkpoint)
    data_section = _section(prepared.config, "data")
    results = {
        "config": prepared.config,
        "config_path": prepared.config_path,
        "checkpoint": {
            "path": str(checkpoint),
            "sha256": file_sha256(checkpoint),
            "model_config": model.config.to_dict(),
        },
        "dataset": {
            "name": data_section.get("dataset"),
            "root": data_section.get("root"),
            "options": data_section.get("dataset_options") or {},
            "split": options.split,
            "class_names": class_names,
        },
        "num_images": len(rows),
        "explained_class": prepared.explained_class,
        "metrics": metrics_doc,
        "explanations": explanations_doc,
        "evaluation": {
            "limit": options.limit,
            "seed": options.seed,
            "device": str(device),
            "seconds": round(elapsed, 3),
            "versions": _versions(),
        },
    }
    if options.out is not None:
        write_results(options.out, results, rows)  # both files or neither (results_io)
    if options.export is not None:
        _export(prepared, results, rows, shown, class_names)
    return results


def _versions() -> dict[str, str]:
    import importlib.metadata as metadata

    versions = {}
    for package in ("scouter", "torch", "timm", "captum", "torchmetrics"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _export(
    prepared: PreparedEvaluation,
    results: dict[str, Any],
    rows: list[dict[str, Any]],
    shown: dict[str, Any],
    class_names: list[str],
) -> None:
    from scouter.export import explanation_grid, overlay_map, save_overlays, write_html_report

    export = Path(prepared.options.export)
    export.mkdir(parents=True, exist_ok=True)
    images = shown["images"]
    count = len(images)
    maps = {name: torch.cat(chunks)[:count].cpu() for name, chunks in shown["maps"].items()}
    # File names <id>_<explained class>_<method>.png (save_overlays' "<id>_<class>").
    ids = [f"{row['id']}_{class_names[row['explained_class']]}" for row in rows[:count]]
    for name, method_maps in maps.items():
        save_overlays(
            export / "overlays", torch.stack(images), method_maps, ids, class_names=[name]
        )
    labels = [f"{class_names[r['label']]} → {class_names[r['prediction']]}" for r in rows[:count]]
    explanation_grid(export / "grid.png", images, maps, row_labels=labels)

    report_rows = []
    for i, row in enumerate(rows[:count]):
        entry = {
            "id": row["id"],
            "true": class_names[row["label"]],
            "predicted": class_names[row["prediction"]],
            "explained": class_names[row["explained_class"]],
            "image": images[i],
            "overlays": {name: overlay_map(images[i], m[i, 0]) for name, m in maps.items()},
        }
        # One compact cell (rendered "name=value, …") keeps the overlays on screen however
        # many explainers × metrics there are.
        values = {k: round(v, 4) for k, v in row.items() if "/" in k and isinstance(v, float)}
        if values:
            entry["per-image metrics"] = values
        report_rows.append(entry)
    flat_metrics: dict[str, Any] = dict(results["metrics"])
    for name, doc in results["explanations"].items():
        for metric, summary in doc["metrics"].items():
            flat_metrics[f"{name} / {metric}"] = summary
    model_config = results["checkpoint"]["model_config"]
    write_html_report(
        export / "report.html",
        title=f"SCOUTER evaluation: {model_config['backbone']} {prepared.model.config.variant} on "
        f"{results['dataset']['name']} ({results['dataset']['split']})",
        metrics=flat_metrics,
        rows=report_rows,
        settings={
            "checkpoint": results["checkpoint"]["path"],
            "sha256": results["checkpoint"]["sha256"],
            "config": results["config_path"] or "(in memory)",
            "images evaluated": results["num_images"],
            "explained class": results["explained_class"],
            "explainers": ", ".join(results["explanations"]),
        },
    )


def evaluate(options: EvaluationOptions) -> dict[str, Any]:
    """Validate (:func:`prepare`), then evaluate and write the files (:func:`run`)."""
    return run(prepare(options))


# ------------------------------------------------------------------------------------------- CLI


def _parse_setting(text: str) -> tuple[str, str, Any]:
    """``"ig.steps=16"`` → ``("ig", "steps", 16)`` (values parsed as YAML scalars)."""
    key, sep, value = text.partition("=")
    name, dot, setting = key.strip().rpartition(".")
    if not sep or not dot or not name or not setting:
        raise EvaluationError(
            f"--explainer-setting expects EXPLAINER.SETTING=VALUE (e.g. ig.steps=16), got {text!r}"
        )
    return name, setting, yaml.safe_load(value)


def build_parser():
    """The ``evaluate.py`` argument parser."""
    import argparse

    from scouter.explain import list_explainers

    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Evaluate a checkpoint (ours or an original SCOUTER one) on a dataset split: "
        "accuracy and explanation metrics (docs/metrics.md) to results.json + per_image.csv, and "
        "optionally overlays, a grid and a self-contained HTML report.",
    )
    parser.add_argument(
        "--checkpoint", required=True, help="checkpoint file (.ckpt, .safetensors, .pth)"
    )
    parser.add_argument(
        "--config", required=True, help="training YAML whose data: section builds the dataset"
    )
    parser.add_argument(
        "--explainers",
        help=f"comma-separated ({', '.join(list_explainers())}); "
        "default: slot for SCOUTER, gradcam for FC",
    )
    parser.add_argument(
        "--explainer-setting",
        action="append",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="an explainer setting, e.g. ig.steps=16 (repeatable)",
    )
    parser.add_argument(
        "--metrics",
        help=f"comma-separated ({', '.join(METRICS)}); default: {','.join(DEFAULT_METRICS)}",
    )
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--limit", type=int, help="evaluate only the first N images")
    parser.add_argument(
        "--explained-class",
        default="auto",
        help=f"{' | '.join(EXPLAINED_CLASS_MODES)} | a class index "
        "(docs/metrics.md#explained-class)",
    )
    parser.add_argument("--out", help="folder for results.json and per_image.csv")
    parser.add_argument("--export", help="folder for overlays, grid.png and report.html")
    parser.add_argument("--num-images", type=int, default=8, help="images in the export")
    parser.add_argument("--batch-size", type=int, help="override data.batch_size")
    parser.add_argument("--num-workers", type=int, help="override data.num_workers")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="seed of metric perturbations")
    parser.add_argument(
        "--metric-batch-size", type=int, default=256, help="perturbed images per forward pass"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry of ``evaluate.py``; returns the exit code (2 on a user error)."""
    import sys

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings: dict[str, dict[str, Any]] = {}
        for text in args.explainer_setting:
            name, key, value = _parse_setting(text)
            settings.setdefault(name, {})[key] = value
        explained: str | int = args.explained_class
        if isinstance(explained, str) and explained.lstrip("-").isdigit():
            explained = int(explained)
        options = EvaluationOptions(
            checkpoint=args.checkpoint,
            config=args.config,
            explainers=args.explainers,
            explainer_settings=settings,
            metrics=args.metrics,
            split=args.split,
            limit=args.limit,
            explained_class=explained,
            out=args.out,
            export=args.export,
            num_images=args.num_images,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            device=args.device,
            seed=args.seed,
            metric_batch_size=args.metric_batch_size,
            progress=not args.no_progress,
        )
        prepared = prepare(options)
        for note in prepared.notes:
            print(f"evaluate.py: note: {note}", file=sys.stderr)
        results = run(prepared)
    except EvaluationError as error:
        print(f"evaluate.py: error: {error}", file=sys.stderr)
        return 2
    summary = {"images": results["num_images"]}
    if "accuracy" in results["metrics"]:
        summary["accuracy"] = round(results["metrics"]["accuracy"]["value"], 4)
    for name, doc in results["explanations"].items():
        for metric, value in doc["metrics"].items():
            summary[f"{name}/{metric}"] = round(value["value"], 4)
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    for folder, files in ((args.out, "results.json, per_image.csv"), (args.export, "report.html")):
        if folder:
            print(f"wrote {files} to {folder}")
    return 0
