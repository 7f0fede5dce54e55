"""LightningDataModule choosing a dataset by name, with seeded splits and box-aware batching."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from scouter.data.loading import (
    check_num_workers,
    check_pin_memory,
    resolve_num_workers,
    resolve_pin_memory,
    trainer_accelerator,
)
from scouter.data.registry import create_dataset, dataset_reader
from scouter.data.sample import collate_samples
from scouter.data.sampling import EpochSeededSampler, ResumableBatchSampler, ResumableDataLoader
from scouter.data.splits import stratified_split
from scouter.data.transforms import (
    TransformedDataset,
    build_transforms,
    check_image_size,
    resolve_normalization,
)
from scouter.data_config import CLASS_NAMES_KEY, DATA_CONFIG_KEY, DataConfig

# Reader split used for each DataModule stage where it differs from the stage name. The
# labelled ImageNet test set is its official validation set.
_TEST_SPLIT = {"imagenet": "val"}


def _resolve_data_config(
    image_size: Any,
    in_chans: int,
    timm_model: str | None,
    mean: Any,
    std: Any,
    eval_resize: str,
    default_normalization: Any,
) -> DataConfig:
    mean, std = resolve_normalization(timm_model, mean, std, in_chans, default_normalization)
    return DataConfig(
        input_size=check_image_size(image_size, "data.image_size"),
        in_chans=in_chans,
        mean=mean,
        std=std,
        eval_resize=eval_resize,
    )


def _seed_worker(worker_id: int) -> None:
    """Seed NumPy in each worker (augmentation is seeded per sample, see scouter.data.sampling)."""
    info = get_worker_info()
    np.random.seed(info.seed % 2**32 if info is not None else worker_id)


class ScouterDataModule(pl.LightningDataModule):
    """Datasets of :func:`~scouter.data.create_dataset` as train/val/test/predict loaders.

    Splits:
        * **train**: the reader's ``train`` split, minus the carved validation part when the set has
          no validation split of its own.
        * **val**: the reader's own ``val`` split where one exists (ACRIMA's seeded split, a
          ``folder`` tree with ``val/``); otherwise a **stratified, seeded** ``val_fraction`` of
          train (:func:`~scouter.data.splits.stratified_split` with ``seed``) — MNIST,
          Fashion-MNIST, CUB, ImageNet, composites, Con-Text.
        * **test** / **predict**: the official test split: MNIST/Fashion-MNIST ``t10k``, CUB's
          ``train_test_split.txt`` test images, ImageNet's official **val** set, composites
          ``test`` (t10k items), ACRIMA's seeded test part; a ``folder`` tree without ``test/``
          uses its validation set.

    The resolved preprocessing (size, channels, mean/std as numbers, eval resize) is
    :attr:`data_config`; Lightning stores it in every checkpoint with the datamodule's state, so
    ``scouter.load_model(ckpt).data_config`` gives it back and ``scouter.data.transform_for``
    rebuilds the eval transform. A run resumed (or validated / tested) from a checkpoint whose
    data config differs from this one warns, naming each field.

    Batches are dicts from :func:`~scouter.data.collate_samples`: ``image (B, C, H, W)``
    normalised float, ``label (B,)`` long, ``boxes`` list of B ``(N_i, 4)`` xyxy model-input
    pixels, ``id`` list of str, and ``mask (B, H, W)`` uint8 only when every sample has one (key
    absent otherwise).

    Args:
        dataset: a name from :func:`~scouter.data.list_datasets`.
        root: dataset folder in its official layout (None where the reader has a default).
        image_size: model input size S or ``[H, W]``.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes, or ``"auto"`` (the default): derived from the
            machine and the trainer's accelerator (:mod:`scouter.data.loading`).
        seed: seed of the validation carving, the training shuffle and the augmentation.
        val_fraction: share of train (per class) held out for validation when there is no
            official validation split.
        mean: per-channel normalisation mean override (0–1 scale).
        std: per-channel normalisation std override.
        timm_model: take mean/std from this timm model's pretrained config (no download).
        in_chans: 1 or 3; images are converted to match.
        dataset_options: options passed to ``create_dataset`` (``num_classes``, ``wnids``,
            ``skip_missing``, ``skip_corrupt``, ``limit``, composites' ``num_samples``/``clutter``…).
        train_augment: the reference ``--aug`` augmentation on the training set.
        eval_resize: ``resize`` (reference: squash to S×S) or ``resize_crop``.
        drop_last: drop the last incomplete training batch (the reference does).
        pin_memory: DataLoader ``pin_memory``, or ``"auto"`` (the default): on GPUs only.
    """

    def __init__(
        self,
        dataset: str = "composites",
        root: str | None = None,
        image_size: int | tuple[int, int] = 260,
        batch_size: int = 64,
        num_workers: int | Literal["auto"] = "auto",
        seed: int = 0,
        val_fraction: float = 0.1,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        timm_model: str | None = None,
        in_chans: int = 3,
        dataset_options: dict[str, Any] | None = None,
        train_augment: bool = False,
        eval_resize: str = "resize",
        drop_last: bool = True,
        pin_memory: bool | Literal["auto"] = "auto",
    ) -> None:
        super().__init__()
        dataset_reader(dataset)  # fail at construction on an unknown name
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        # Fail at construction, naming the setting (albumentations would fail later, obscurely).
        check_image_size(image_size, "data.image_size")
        num_workers, pin_memory = check_num_workers(num_workers), check_pin_memory(pin_memory)
        self.save_hyperparameters()
        self.dataset_name = dataset.lower()
        self.root = root
        self.image_size = image_size if isinstance(image_size, int) else tuple(image_size)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.val_fraction = val_fraction
        self.mean, self.std, self.timm_model, self.in_chans = mean, std, timm_model, in_chans
        self.dataset_options = dict(dataset_options or {})
        self.train_augment, self.eval_resize = train_augment, eval_resize
        self.drop_last, self.pin_memory = drop_last, pin_memory
        self._raw: dict[str, Dataset] = {}
        self._data_config: DataConfig | None = None  # set by use_data_config
        self._used_data_config: DataConfig | None = None  # what setup built the transforms from
        self.train_set: TransformedDataset | None = None
        self.val_set: TransformedDataset | None = None
        self.test_set: TransformedDataset | None = None
        #: Splits whose images come from another split, with why (see :meth:`split_used`).
        self.split_notes: dict[str, str] = {}

    def _read(self, split: str) -> Dataset:
        if split not in self._raw:
            self._raw[split] = create_dataset(
                self.dataset_name, self.root, split, **self.dataset_options
            )
        return self._raw[split]

    def _has_own_val(self) -> bool:
        if self.dataset_name == "acrima":
            return True
        return (
            self.dataset_name == "folder"
            and self.root is not None
            and (Path(self.root) / "val").is_dir()
        )

    @property
    def num_classes(self) -> int:
        """Number of classes (reads the training set's index if ``setup`` has not run)."""
        return self._read("train").num_classes

    @property
    def class_names(self) -> list[str]:
        """Class names, index = label."""
        return list(self._read("train").class_names)

    @property
    def data_config(self) -> DataConfig:
        """The eval preprocessing of these settings, resolved (reads the training set's index for
        a dataset's own normalisation, e.g. MNIST's, when no mean/std/timm_model is given)."""
        if self._data_config is not None:  # set by use_data_config
            return self._data_config
        return _resolve_data_config(
            self.image_size,
            self.in_chans,
            self.timm_model,
            self.mean,
            self.std,
            self.eval_resize,
            getattr(self._read("train"), "normalization", None),
        )

    @classmethod
    def data_config_of_settings(cls, settings: Mapping[str, Any]) -> DataConfig:
        """The :attr:`data_config` a data module built with ``settings`` resolves, reading no data.

        ``settings`` are its init arguments (e.g. the ``datamodule_hyper_parameters`` Lightning
        records in a ``.ckpt``); omitted ones take the init defaults, and a dataset's own
        normalisation is its reader's (so the dataset need not be on this machine).
        """
        defaults = {
            name: param.default
            for name, param in inspect.signature(cls.__init__).parameters.items()
            if param.default is not inspect.Parameter.empty
        }
        values = {**defaults, **settings}
        return _resolve_data_config(
            values["image_size"],
            int(values["in_chans"]),
            values["timm_model"],
            values["mean"],
            values["std"],
            values["eval_resize"],
            getattr(dataset_reader(str(values["dataset"])), "normalization", None),
        )

    def use_data_config(self, config: DataConfig) -> None:
        """Preprocess with ``config`` (e.g. a model's stored one) instead of these settings.

        ``image_size``, ``in_chans``, ``mean``, ``std`` and ``eval_resize`` then report
        ``config``'s values; after :meth:`setup` the splits are rebuilt with the new transforms
        on the next ``setup`` (the datasets' indexes are kept).
        """
        self.train_set = self.val_set = self.test_set = None
        self._data_config = config
        self.image_size = config.input_size
        self.in_chans = config.in_chans
        self.mean, self.std = list(config.mean), list(config.std)
        self.timm_model = None
        self.eval_resize = config.eval_resize

    def state_dict(self) -> dict[str, Any]:
        """What Lightning stores in a checkpoint: the data config the transforms were built from,
        and the class names (index = label)."""
        if self.train_set is None or self._used_data_config is None:
            return {}
        # The class names travel with the model (load_model restores them as model.class_names).
        return {
            DATA_CONFIG_KEY: self._used_data_config.to_dict(),
            CLASS_NAMES_KEY: self.class_names,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Warn when a checkpoint's data config differs from these settings (they are used)."""
        from pytorch_lightning.utilities import rank_zero_warn

        stored = state_dict.get(DATA_CONFIG_KEY)
        if stored is None:
            return
        try:
            stored_config = DataConfig.from_dict(stored)
        except ValueError as error:
            rank_zero_warn(f"the checkpoint's data config is unreadable ({error}); ignored")
            return
        differences = self.data_config.differences(stored_config)
        if differences:
            listed = "; ".join(
                f"{name}: checkpoint {theirs!r}, data settings {mine!r}"
                for name, mine, theirs in differences
            )
            rank_zero_warn(
                "the checkpoint was trained with other preprocessing than these data settings ("
                + listed
                + "): the data settings are used"
            )

    def setup(self, stage: str | None = None) -> None:
        """Index the splits and build the transforms (idempotent)."""
        if self.train_set is not None:
            return
        train_raw = self._read("train")
        config = self._used_data_config = self.data_config
        common = config.transform_kwargs()
        train_tf = build_transforms(
            train=True, augment=self.train_augment, seed=self.seed, **common
        )
        eval_tf = build_transforms(train=False, **common)
        if self._has_own_val():
            self.train_set = TransformedDataset(train_raw, train_tf)
            self.val_set = TransformedDataset(self._read("val"), eval_tf)
        else:
            parts = stratified_split(
                train_raw.targets, {"train": 0.0, "val": self.val_fraction}, self.seed
            )
            self.train_set = TransformedDataset(train_raw, train_tf, parts["train"])
            self.val_set = TransformedDataset(train_raw, eval_tf, parts["val"])
        if self.dataset_name == "folder" and not (Path(self.root or ".") / "test").is_dir():
            from pytorch_lightning.utilities import rank_zero_warn

            self.test_set = self.val_set
            where = (
                "its val/ folder"
                if self._has_own_val()
                else f"the {self.val_fraction:g} of the training images held out for validation "
                f"(seed {self.seed})"
            )
            self.split_notes["test"] = (
                f"'{Path(self.root or '.') / 'test'}' does not exist, so the test split is the "
                f"validation images ({where}): results are validation results; add a test/ folder "
                "for a separate test set"
            )
            rank_zero_warn(self.split_notes["test"])
        else:
            self.test_set = TransformedDataset(
                self._read(_TEST_SPLIT.get(self.dataset_name, "test")), eval_tf
            )

    def split_used(self, split: str) -> str:
        """The split whose images ``split`` gives: ``"val"`` for ``"test"`` of a folder tree
        without ``test/`` (:attr:`split_notes` says why), else ``split``."""
        self.setup()
        return "val" if split == "test" and "test" in self.split_notes else split

    def loader_settings(self, accelerator: str | None = None) -> dict[str, Any]:
        """``num_workers``, ``pin_memory`` and ``persistent_workers`` for this machine.

        Args:
            accelerator: ``"cpu"`` or ``"gpu"``; by default the attached trainer's (CPU without).
        """
        kind, processes = trainer_accelerator(self.trainer)
        kind = accelerator or kind
        workers = resolve_num_workers(self.num_workers, accelerator=kind, processes=processes)
        return {
            "num_workers": workers,
            "pin_memory": resolve_pin_memory(self.pin_memory, accelerator=kind),
            "persistent_workers": workers > 0,
        }

    def _loader(self, dataset: TransformedDataset, train: bool) -> DataLoader:
        common = dict(
            collate_fn=collate_samples, worker_init_fn=_seed_worker, **self.loader_settings()
        )
        if not train:
            # A generator of its own, or creating the iterator draws from torch's global stream,
            # which a validation pass would then shift for the training that follows (and a
            # resumed run, restoring the stream, would not see that shift).
            return DataLoader(
                dataset,
                batch_size=self.batch_size,
                generator=torch.Generator().manual_seed(self.seed),
                **common,
            )
        # The training order and each sample's augmentation are functions of (seed, epoch,
        # position) only (Lightning calls ``set_epoch``), and the loader saves how far the epoch
        # got: a run resumed from any checkpoint, mid-epoch included, sees exactly the batches
        # an uninterrupted run would, whatever the number of workers.
        sampler = EpochSeededSampler(len(dataset), self.seed)
        return ResumableDataLoader(
            dataset,
            batch_sampler=ResumableBatchSampler(sampler, self.batch_size, self.drop_last),
            # seeds the workers' base seed only (augmentation is seeded per sample)
            generator=torch.Generator().manual_seed(self.seed),
            **common,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.test_set, train=False)
