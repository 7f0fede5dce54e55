"""Seeded, stratified splits for sets without an official one (ACRIMA, validation carving)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def stratified_split(
    labels: Sequence[int], fractions: Mapping[str, float], seed: int
) -> dict[str, np.ndarray]:
    """Split indices per class with one seeded permutation per class.

    For every class (in increasing label order) its indices are permuted with
    ``np.random.default_rng([seed, label])``; each named part except the first takes
    ``round(n_class * fraction)`` of them in the order given, and the first part takes the rest.
    So the split depends only on the labels, the fractions and the seed, and each part keeps the
    class proportions.

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
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        where = where[np.random.default_rng([seed, int(label)]).permutation(where.size)]
        start = 0
        for name in names[1:]:
            count = int(round(where.size * fractions[name]))
            parts[name].append(where[start : start + count])
            start += count
        parts[names[0]].append(where[start:])
    return {
        n: np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64)
        for n, p in parts.items()
    }
