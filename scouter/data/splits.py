"""Seeded, stratified splits for sets without an official one (ACRIMA, validation carving)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def stratified_split(
    labels: Sequence[int], fractions: Mapping[str, float], seed: int
) -> dict[str, np.ndarray]:
    """Split indices per class with one seeded permutation per class.

    Part sizes: each named part except the first gets ``floor(N · fraction + 0.5)`` items in
    total, shared among classes by largest remainder (``floor(n_c · fraction)`` each, the rest one
    by one to the classes with the largest fractional part, lower label first on ties), so even
    tiny sets get their share while every part keeps the class proportions. The first part gets
    what is left. Within a class, its indices are permuted with
    ``np.random.default_rng([seed, label])`` and the parts take consecutive runs in the order given.
    The split depends only on the labels, the fractions and the seed.

    Args:
        labels: ``(N,)`` class index per item.
        fractions: e.g. ``{"train": 0.7, "val": 0.1, "test": 0.2}``; the first part's value is
            ignored (it gets the remainder).
        seed: the split seed.

    Returns:
        ``part name -> sorted (M,) int64 indices``; the parts partition ``range(N)``.
    """
    labels = np.asarray(labels)
    names = list(fractions)
    if sum(fractions[n] for n in names[1:]) >= 1.0 or any(fractions[n] < 0 for n in names[1:]):
        raise ValueError(
            f"split fractions {dict(fractions)} must be >= 0 and leave room for '{names[0]}'"
        )
    classes, sizes = np.unique(labels, return_counts=True)
    counts = {}
    for name in names[1:]:
        exact = sizes * fractions[name]
        share = np.floor(exact).astype(np.int64)
        missing = int(np.floor(labels.size * fractions[name] + 0.5)) - int(share.sum())
        order = np.lexsort((classes, -(exact - share)))  # largest remainder first, then lower label
        share[order[: max(missing, 0)]] += 1
        counts[name] = share
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for k, label in enumerate(classes):
        where = np.flatnonzero(labels == label)
        where = where[np.random.default_rng([seed, int(label)]).permutation(where.size)]
        start = 0
        for name in names[1:]:
            parts[name].append(where[start : start + counts[name][k]])
            start += counts[name][k]
        parts[names[0]].append(where[start:])
    return {
        n: np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64)
        for n, p in parts.items()
    }
