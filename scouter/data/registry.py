"""One registry of dataset readers behind :func:`create_dataset` (like ``timm.create_model``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

_READERS: dict[str, Callable[..., Dataset]] = {}


def register_dataset(*names: str) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Register a reader under one or more names.

    The reader is called as ``reader(root, split, **options)`` and returns a Dataset of
    :class:`~scouter.data.sample.Sample` with ``class_names``, ``num_classes`` and ``targets``
    (and, for ``evaluate.py``'s precision metric, ``has_regions``: whether items carry boxes or
    masks, and ``regions_option``: the reader option that adds them, or None).
    """

    def wrap(reader: Callable[..., Dataset]) -> Callable[..., Dataset]:
        for name in names:
            _READERS[name] = reader
        return reader

    return wrap


def list_datasets() -> list[str]:
    """Names accepted by :func:`create_dataset`, sorted."""
    return sorted(_READERS)


def dataset_reader(name: str) -> Callable[..., Dataset]:
    """The reader registered under ``name``; a ``KeyError`` listing the known names otherwise."""
    try:
        return _READERS[name.lower()]
    except KeyError:
        raise KeyError(
            f"unknown dataset {name!r} — known datasets: {', '.join(list_datasets())}"
        ) from None


def create_dataset(
    name: str, root: str | None = None, split: str = "train", **options: Any
) -> Dataset:
    """Read a dataset in its official on-disk layout.

    Args:
        name: one of :func:`list_datasets` (``imagenet``, ``cub200``, ``acrima``, ``mnist``,
            ``fashion_mnist``, ``composites``, ``folder``, ``context``).
        root: the dataset folder in its official layout (``None`` where a default exists:
            Fashion-MNIST and composites).
        split: the reader's split name (``train``/``val``/``test``; see each reader).
        **options: reader options such as ``num_classes``, ``wnids``, ``skip_missing``,
            ``skip_corrupt``, ``limit``.

    Returns:
        A ``torch.utils.data.Dataset`` of raw :class:`~scouter.data.sample.Sample` with attributes
        ``class_names``, ``num_classes`` and ``targets``.

    Example:
        >>> ds = create_dataset("composites", split="train", num_samples=100)  # doctest: +SKIP
        >>> ds[0].image.shape, ds.num_classes  # doctest: +SKIP
        ((64, 64, 3), 10)
    """
    reader = dataset_reader(name)
    accepted = inspect.signature(reader).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            valid = sorted(k for k in accepted if k not in ("root", "split"))
            raise TypeError(
                f"dataset {name!r} does not accept option(s) {unknown} — valid options: {valid}"
            )
    return reader(root=root, split=split, **options)
