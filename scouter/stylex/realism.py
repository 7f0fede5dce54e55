"""Realism of StyleSpace edits, judged by the StylEx discriminator.

* :class:`DiscriminatorFilter` — the authors' AttFind filter: a candidate coordinate is
  rejected when moving it (either direction, the same ``shift`` as the effect table) changes
  the discriminator's score ``D(x, c)`` by more than ``change_threshold`` on any of the first
  ``images`` images where that edit moves the target by more than ``effect_threshold`` —
  an edit that fools the classifier by leaving the data is not an attribute. ``c`` is the
  classifier's output for the *original* image, the label the generator was conditioned on,
  before and after the edit (as in the authors' code).
* :func:`edit_changes` — how far a set of attributes applied together moves each image: pixel
  ``|x_edit − x_recon|`` (model-neutral) and ``|ΔD|`` (on this model's own discriminator, whose
  scale :func:`discriminator_scale` gives); :func:`mean_changes` averages them.

The discriminator is reached through ``StyleModel.judge``: ``(images, originals) → scores``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from scouter.stylex.attfind import (
    DEFAULT_SHIFT,
    Attribute,
    StyleModel,
    apply_attributes,
    take,
)
from scouter.stylex.errors import StylexInputError

DEFAULT_CHANGE = 0.2  # the authors' largest allowed change of the discriminator's score
DEFAULT_IMAGES = 10  # the authors' images checked per direction


def _judge(model: StyleModel) -> Any:
    if model.judge is None:
        raise StylexInputError(
            "this model has no discriminator to judge realism: pass a StyleModel with a judge "
            "or turn the discriminator filter off (--no-discriminator-filter)"
        )
    return model.judge


@torch.no_grad()
def edit_changes(
    model: StyleModel,
    styles: torch.Tensor,
    extras: Any,
    noise: Any,
    originals: torch.Tensor,
    attributes: Sequence[Attribute],
    ranges: torch.Tensor,
    shift: float = DEFAULT_SHIFT,
    batch: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, when ``attributes`` are applied together to ``styles (N, |S|)``:
    ``|D(x_edit) − D(x_recon)|`` (NaN where the model has no discriminator) and the mean pixel
    ``|x_edit − x_recon|``."""
    if styles.shape[0] == 0:
        return torch.zeros(0), torch.zeros(0)
    edited = apply_attributes(styles, attributes, ranges, shift)
    changes, pixels = [], []
    for start in range(0, styles.shape[0], batch):
        rows = slice(start, start + batch)
        ex, nz, orig = take(extras, rows), take(noise, rows), originals[rows]
        recon = model.synthesize(styles[rows], ex, nz)
        edit = model.synthesize(edited[rows], ex, nz)
        pixels.append((edit - recon).abs().flatten(1).mean(1))
        if model.judge is None:
            changes.append(torch.full_like(pixels[-1], float("nan")))
        else:
            changes.append((model.judge(edit, orig) - model.judge(recon, orig)).abs())
    return torch.cat(changes), torch.cat(pixels)


class DiscriminatorFilter:
    """The authors' discriminator filter (module docstring) for one model's searched images.

    Called with ``(coordinate, target)`` it says whether the coordinate may be chosen;
    ``worst[(coordinate, target)]`` keeps the largest ``|ΔD|`` seen and ``rejected[target]``
    the coordinates refused, in the order they were.
    """

    def __init__(
        self,
        model: StyleModel,
        styles: torch.Tensor,
        extras: Any,
        noise: Any,
        originals: torch.Tensor,
        ranges: torch.Tensor,
        effects: torch.Tensor,
        effect_threshold: float,
        change_threshold: float = DEFAULT_CHANGE,
        images: int = DEFAULT_IMAGES,
        shift: float = DEFAULT_SHIFT,
    ) -> None:
        if not change_threshold > 0:
            raise StylexInputError(
                f"the discriminator change threshold must be > 0, got {change_threshold}"
            )
        if int(images) < 1:
            raise StylexInputError(f"the discriminator filter needs >= 1 image, got {images}")
        _judge(model)
        self.model, self.styles, self.extras, self.noise = model, styles, extras, noise
        self.originals, self.ranges, self.effects = originals, ranges, effects
        self.effect_threshold, self.change_threshold = (
            float(effect_threshold),
            float(change_threshold),
        )
        self.images, self.shift = int(images), float(shift)
        self.worst: dict[tuple[int, int], float] = {}
        self.rejected: dict[int, list[int]] = {}

    def __call__(self, coordinate: int, target: int) -> bool:
        worst = 0.0
        for direction in (0, 1):
            moved = self.effects[:, coordinate, direction, target] > self.effect_threshold
            rows = moved.nonzero().flatten()[: self.images].to(self.styles.device)
            if len(rows) == 0:
                continue
            change, _ = edit_changes(
                self.model,
                self.styles[rows],
                take(self.extras, rows),
                take(self.noise, rows),
                self.originals[rows],
                [Attribute(coordinate, direction, float("nan"), 0, target)],
                self.ranges,
                self.shift,
            )
            worst = max(worst, float(change.max()))
        self.worst[(coordinate, target)] = worst
        if worst > self.change_threshold:
            self.rejected.setdefault(target, []).append(coordinate)
            return False
        return True


@torch.no_grad()
def discriminator_scale(model: StyleModel, images: torch.Tensor) -> float:
    """Standard deviation of ``D(x, c)`` over real ``images``: the unit ``|ΔD|`` compares to."""
    scores = _judge(model)(images, images)
    return float(scores.std()) if len(scores) > 1 else 0.0


def mean_changes(changes: torch.Tensor, pixels: torch.Tensor) -> dict[str, float]:
    """``pixel_l1`` and ``discriminator_change``: means of :func:`edit_changes`' outputs (NaN
    over no images)."""
    if len(pixels) == 0:
        return {"pixel_l1": float("nan"), "discriminator_change": float("nan")}
    return {"pixel_l1": float(pixels.mean()), "discriminator_change": float(changes.mean())}
