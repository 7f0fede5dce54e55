"""StylEx's metrics: reconstruction, classifier agreement, and sufficiency of attributes.

* ``reconstruction_l1``: mean ``|x' − x|`` on the ``[-1, 1]`` scale, ``x' = G(E(x), C(x))``.
* ``agreement``: share of images with ``argmax C(x') = argmax C(x)``; ``kl``: mean
  ``KL(C(x) ‖ C(x'))`` (nats).
* ``sufficiency@k``: among images whose reconstruction is *not* classified as the target, the
  share that is after the top-``k`` attributes are applied together (each coordinate moved
  towards its min or max by the same ``shift`` as in the effect table, same noise). Random baseline: ``k`` distinct random coordinates, random directions,
  averaged over ``draws`` seeded draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from scouter.stylex.attfind import DEFAULT_SHIFT, Attribute, StyleModel, apply_attributes, take


@torch.no_grad()
def synthesize_all(
    model: StyleModel, styles: torch.Tensor, extras: Any, noise: Any, batch: int = 256
) -> torch.Tensor:
    """Images of ``styles (N, |S|)`` (with their extras and noise), in batches."""
    parts = []
    for start in range(0, styles.shape[0], batch):
        rows = slice(start, start + batch)
        parts.append(model.synthesize(styles[rows], take(extras, rows), take(noise, rows)))
    return torch.cat(parts)


@torch.no_grad()
def classify_all(model: StyleModel, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Logits ``(N, K)`` of ``images``, in batches."""
    return torch.cat([model.classify(images[i : i + batch]) for i in range(0, len(images), batch)])


@torch.no_grad()
def reconstruction_metrics(
    model: StyleModel, images: torch.Tensor, styles: torch.Tensor, extras: Any, noise: Any
) -> dict[str, float]:
    """``reconstruction_l1``, ``agreement`` and ``kl`` of the reconstructions of ``images``."""
    recon = synthesize_all(model, styles, extras, noise)
    return reconstruction_figures(
        images, recon, classify_all(model, images), classify_all(model, recon)
    )


def reconstruction_figures(
    images: torch.Tensor,
    recon: torch.Tensor,
    original: torch.Tensor,
    reconstructed: torch.Tensor,
) -> dict[str, float]:
    """:func:`reconstruction_metrics` of reconstructions ``recon`` already synthesised, from the
    classifier's logits of the originals and of the reconstructions."""
    kl = F.kl_div(
        F.log_softmax(reconstructed, 1),
        F.log_softmax(original, 1),
        log_target=True,
        reduction="none",
    ).sum(1)
    return {
        "reconstruction_l1": float((recon - images).abs().mean()),
        "agreement": float((reconstructed.argmax(1) == original.argmax(1)).float().mean()),
        "kl": float(kl.mean()),
        "images": int(images.shape[0]),
    }


@torch.no_grad()
def flip_share(
    model: StyleModel,
    styles: torch.Tensor,
    extras: Any,
    noise: Any,
    ranges: torch.Tensor,
    attributes: Sequence[Attribute],
    target: int,
    shift: float = DEFAULT_SHIFT,
) -> float:
    """Share of ``styles`` rows classified as ``target`` after applying ``attributes`` together."""
    if styles.shape[0] == 0:
        return float("nan")
    edited = apply_attributes(styles, attributes, ranges, shift)
    logits = classify_all(model, synthesize_all(model, edited, extras, noise))
    return float((logits.argmax(1) == target).float().mean())


@torch.no_grad()
def eligible_images(
    model: StyleModel, styles: torch.Tensor, extras: Any, noise: Any, target: int
) -> torch.Tensor:
    """``(N,)`` bool: images whose reconstruction is not classified as ``target``."""
    logits = classify_all(model, synthesize_all(model, styles, extras, noise))
    return logits.argmax(1) != target


def eligible_subset(
    model: StyleModel, styles: torch.Tensor, extras: Any, noise: Any, target: int
) -> tuple[torch.Tensor, Any, Any]:
    """Styles, extras and noise of the :func:`eligible_images` rows: what sufficiency counts."""
    rows = eligible_images(model, styles, extras, noise, target).nonzero().flatten()
    return styles[rows], take(extras, rows), take(noise, rows)


def sufficiency_curve(
    model: StyleModel,
    styles: torch.Tensor,
    extras: Any,
    noise: Any,
    ranges: torch.Tensor,
    attributes: Sequence[Attribute],
    target: int,
    max_k: int = 10,
    shift: float = DEFAULT_SHIFT,
) -> list[float]:
    """``sufficiency@k`` for ``k = 1..max_k`` (the first ``min(k, len(attributes))`` applied)."""
    sub = eligible_subset(model, styles, extras, noise, target)
    return [
        flip_share(model, *sub, ranges, attributes[:k], target, shift) for k in range(1, max_k + 1)
    ]


def random_attributes(
    size: int, k: int, generator: torch.Generator, target: int
) -> list[Attribute]:
    """``k`` distinct random coordinates of a ``size``-coordinate StyleSpace, random directions."""
    coords = torch.randperm(size, generator=generator)[:k].tolist()
    directions = torch.randint(0, 2, (len(coords),), generator=generator).tolist()
    return [
        Attribute(c, d, float("nan"), 0, target) for c, d in zip(coords, directions, strict=True)
    ]


def random_sufficiency_curve(
    model: StyleModel,
    styles: torch.Tensor,
    extras: Any,
    noise: Any,
    ranges: torch.Tensor,
    target: int,
    max_k: int = 10,
    draws: int = 5,
    seed: int = 0,
    shift: float = DEFAULT_SHIFT,
) -> list[float]:
    """``sufficiency@k`` of ``k`` random coordinates, mean over ``draws`` draws per ``k``."""
    sub = eligible_subset(model, styles, extras, noise, target)
    generator = torch.Generator().manual_seed(seed)
    curve = []
    for k in range(1, max_k + 1):
        shares = [
            flip_share(
                model,
                *sub,
                ranges,
                random_attributes(styles.shape[1], k, generator, target),
                target,
                shift,
            )
            for _ in range(draws)
        ]
        curve.append(float(sum(shares) / len(shares)))
    return curve
