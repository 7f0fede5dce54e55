"""AttFind: the StyleSpace coordinates whose change moves the classifier most.

1. **Effect table** ``(N, |S|, 2, K)``: for every image ``n``, coordinate ``i`` and direction
   ``d`` (0: towards the coordinate's minimum over the N images, 1: its maximum), move ``s_i``
   by ``shift · (extreme − s_i)`` (``shift = 1`` sets it to the extreme; the authors' code uses
   2), re-synthesise with the image's own noise and store ``C(x_edit) − C(x_recon)`` in logits
   for every class. The ``2·|S|`` edits of one image run as one batch (``chunk`` at most).
   :func:`probability_effects` turns the table into changes of the softmax probabilities, the
   unit the authors' selection works in (and the default of ``stylex.py attfind``).
2. **Unstable images** are dropped: those with more than ``max_unstable`` coordinates whose
   effect (any direction, any class) exceeds ``threshold`` in absolute value.
3. **Greedy selection** for a target class: ``k`` times, the (coordinate, direction) of largest
   mean effect on the target (signed: an edit that pushes some images away from the target pays
   for it; ``positive_only`` counts negative effects as 0, as the authors' code does) over the
   images *not yet explained* (whose running sum of the chosen attributes' effects is
   still below ``explained_threshold``); a coordinate is chosen at most once; the search stops
   early when no candidate has a positive mean effect. An optional veto (the authors'
   discriminator filter, :mod:`scouter.stylex.realism`) refuses candidates whose edits change
   the discriminator's verdict; the next best is taken instead.

The model is seen through :class:`StyleModel`, four callables, so any generator (the planted one
of the tests included) can be searched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from scouter.stylex.errors import StylexInputError

TOWARDS = ("min", "max")


@dataclass
class StyleModel:
    """What AttFind needs of a generator and a classifier.

    Attributes:
        encode: images ``(N, C, S, S)`` → ``(styles (N, |S|), extras)``; ``extras`` is a tensor or
            a list of tensors with a leading ``N`` (the parts of the synthesis AttFind never edits).
        synthesize: ``(styles (B, |S|), extras, noise)`` → images ``(B, C, S, S)``.
        classify: images → logits ``(B, K)``.
        make_noise: ``(batch, torch.Generator)`` → noise (a tensor or list of tensors, leading B).
        judge: optional ``(images, originals)`` → realness scores ``(B,)``: the discriminator,
            conditioned as for the originals the images were encoded from
            (:mod:`scouter.stylex.realism`).
    """

    encode: Callable[[torch.Tensor], tuple[torch.Tensor, Any]]
    synthesize: Callable[[torch.Tensor, Any, Any], torch.Tensor]
    classify: Callable[[torch.Tensor], torch.Tensor]
    make_noise: Callable[[int, torch.Generator], Any]
    judge: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None


def style_model_from(module: Any) -> StyleModel:
    """The :class:`StyleModel` of a trained :class:`~scouter.stylex.module.StylexModule`."""

    def encode(images: torch.Tensor) -> tuple[torch.Tensor, Any]:
        out = module.encode(images)
        return out["styles"], out["rgb_styles"]

    def judge(images: torch.Tensor, originals: torch.Tensor) -> torch.Tensor:
        # c of the originals: the label the generator was conditioned on (None: baseline).
        return module.discriminator(images, module.condition(originals))

    return StyleModel(
        encode=encode,
        synthesize=module.generator.synthesize,
        classify=module.classifier,
        make_noise=module.generator.make_noise,
        judge=judge,
    )


def take(parts: Any, index: Any) -> Any:
    """Rows ``index`` of a tensor or of every tensor of a list."""
    if isinstance(parts, torch.Tensor):
        return parts[index]
    return [p[index] for p in parts]


def expand_rows(parts: Any, count: int) -> Any:
    """A one-row tensor (or list of them) repeated to ``count`` rows (views, no copies)."""
    if isinstance(parts, torch.Tensor):
        return parts.expand(count, *parts.shape[1:])
    return [p.expand(count, *p.shape[1:]) for p in parts]


def cat_rows(parts: Sequence[Any]) -> Any:
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(list(parts))
    return [torch.cat([p[i] for p in parts]) for i in range(len(parts[0]))]


def image_noise(model: StyleModel, count: int, seed: int, device: torch.device) -> Any:
    """Noise for images ``0..count-1``: image ``n`` always gets the noise of seed ``seed + n``."""
    noises = [model.make_noise(1, torch.Generator().manual_seed(seed + n)) for n in range(count)]
    moved = [
        p.to(device) if isinstance(p, torch.Tensor) else [t.to(device) for t in p] for p in noises
    ]
    return cat_rows(moved)


@torch.no_grad()
def encode_all(
    model: StyleModel, images: torch.Tensor, batch: int = 64
) -> tuple[torch.Tensor, Any]:
    """StyleSpace ``(N, |S|)`` and extras of ``images (N, C, S, S)``, in batches."""
    parts = [model.encode(images[i : i + batch]) for i in range(0, len(images), batch)]
    return torch.cat([p[0] for p in parts]), cat_rows([p[1] for p in parts])


def style_ranges(styles: torch.Tensor) -> torch.Tensor:
    """``(2, |S|)``: each coordinate's minimum (row 0) and maximum (row 1) over ``styles (N, |S|)``."""
    return torch.stack([styles.min(0).values, styles.max(0).values])


DEFAULT_SHIFT = (
    2.0  # the authors' AttFind code moves a coordinate twice its distance to the extreme
)


def edited_value(
    current: torch.Tensor, extreme: torch.Tensor, shift: float = DEFAULT_SHIFT
) -> torch.Tensor:
    """``current + shift · (extreme − current)``: ``shift = 1`` lands on the extreme."""
    return current + shift * (extreme - current)


def single_edits(
    style: torch.Tensor, ranges: torch.Tensor, shift: float = DEFAULT_SHIFT
) -> torch.Tensor:
    """``(2·|S|, |S|)``: row ``2i + d`` is ``style (|S|,)`` with coordinate ``i`` moved towards
    ``ranges[d, i]`` (:func:`edited_value`)."""
    size = style.shape[0]
    edits = style.repeat(2 * size, 1)
    coords = torch.arange(size, device=style.device)
    edits[2 * coords, coords] = edited_value(style, ranges[0], shift)
    edits[2 * coords + 1, coords] = edited_value(style, ranges[1], shift)
    return edits


@torch.no_grad()
def effect_table(
    model: StyleModel,
    styles: torch.Tensor,
    extras: Any,
    noise: Any,
    ranges: torch.Tensor,
    chunk: int = 1024,
    shift: float = DEFAULT_SHIFT,
) -> torch.Tensor:
    """``(N, |S|, 2, K)`` logit changes ``C(x_edit) − C(x_recon)`` of every single-coordinate edit."""
    if chunk < 1:
        raise StylexInputError(f"chunk (edits per batch) must be >= 1, got {chunk}")
    if not shift > 0:
        raise StylexInputError(f"shift must be > 0 (1: edit to the extreme), got {shift}")
    rows = []
    for n in range(styles.shape[0]):
        style, extra, nse = styles[n], take(extras, [n]), take(noise, [n])
        base = model.classify(model.synthesize(style[None], extra, nse))
        edits = single_edits(style, ranges, shift)
        deltas = []
        for start in range(0, edits.shape[0], chunk):
            part = edits[start : start + chunk]
            count = part.shape[0]
            logits = model.classify(
                model.synthesize(part, expand_rows(extra, count), expand_rows(nse, count))
            )
            deltas.append(logits - base)
        rows.append(torch.cat(deltas).view(style.shape[0], 2, -1))
    return torch.stack(rows)


def probability_effects(table: torch.Tensor, base_logits: torch.Tensor) -> torch.Tensor:
    """The logit table ``(N, |S|, 2, K)`` as softmax-probability changes, given the logits of
    the unedited reconstructions ``base_logits (N, K)``: ``softmax(base + Δ) − softmax(base)``.

    Probabilities saturate: an edit that pushes an already confident image further, or a far
    image a long way without reaching the boundary, counts little; one that crosses it counts.
    """
    base = base_logits.to(table.dtype)[:, None, None, :]
    return (base + table).softmax(-1) - base.softmax(-1)


def stable_images(table: torch.Tensor, threshold: float, max_unstable: int) -> torch.Tensor:
    """``(N,)`` bool: images with at most ``max_unstable`` coordinates whose ``|Δ|`` > ``threshold``."""
    large = table.abs().amax(dim=(2, 3)) > threshold  # (N, |S|): any direction, any class
    return large.sum(1) <= max_unstable


@dataclass
class Attribute:
    """One found attribute: StyleSpace ``coordinate`` moved ``towards`` its min or max.

    ``mean_effect``: mean change of the target (in the effect table's unit: probability or logit)
    over the ``images`` it was chosen on.
    """

    coordinate: int
    direction: int
    mean_effect: float
    images: int
    target: int

    @property
    def towards(self) -> str:
        return TOWARDS[self.direction]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "towards": self.towards}


def select_attributes(
    table: torch.Tensor,
    target: int,
    k: int,
    explained_threshold: float,
    keep: torch.Tensor | None = None,
    positive_only: bool = False,
    accept: Callable[[int, int], bool] | None = None,
) -> list[Attribute]:
    """The greedy AttFind selection (module docstring, step 3) over images ``keep (N,)`` bool.

    ``positive_only``: negative effects count as 0, in the means and the running sums (the
    authors' code); False (default) averages the signed effects — sufficiency applies a class's
    attributes to every image, so an edit's harm on some images is part of its worth.
    ``accept(coordinate, target)``: a veto on the best candidate (the discriminator filter of
    :mod:`scouter.stylex.realism`); a refused coordinate is never offered again and does not
    count towards ``k``.
    """
    if not 0 <= target < table.shape[-1]:
        raise StylexInputError(
            f"target class {target} is not an output of the classifier (0..{table.shape[-1] - 1})"
        )
    effects = table[..., target]  # (N, |S|, 2)
    keep = torch.ones(effects.shape[0], dtype=torch.bool) if keep is None else keep.cpu()
    running = torch.zeros(effects.shape[0])
    effects = effects.float().cpu()
    if positive_only:
        effects = effects.clamp(min=0)
    used = torch.zeros(effects.shape[1], dtype=torch.bool)
    chosen: list[Attribute] = []
    while len(chosen) < int(k):
        active = keep & (running < explained_threshold)
        if not active.any():
            break
        mean = effects[active].mean(0)  # (|S|, 2)
        mean[used] = float("-inf")
        best = int(mean.argmax())
        coordinate, direction = divmod(best, 2)
        if not mean[coordinate, direction] > 0:
            break  # nothing left moves the target up on the unexplained images
        used[coordinate] = True
        if accept is not None and not accept(coordinate, int(target)):
            continue
        chosen.append(
            Attribute(
                coordinate,
                direction,
                float(mean[coordinate, direction]),
                int(active.sum()),
                int(target),
            )
        )
        running += effects[:, coordinate, direction]
    return chosen


def merge_two_classes(first: list[Attribute], second: list[Attribute], k: int) -> list[Attribute]:
    """A binary classifier's top-``k``: the two classes' lists interleaved, each coordinate once."""
    merged: list[Attribute] = []
    seen: set[int] = set()
    for pair in zip(first + [None] * len(second), second + [None] * len(first), strict=True):
        for attribute in pair:
            if attribute is not None and attribute.coordinate not in seen and len(merged) < k:
                merged.append(attribute)
                seen.add(attribute.coordinate)
    return merged


def image_top_k(table: torch.Tensor, index: int, target: int, k: int) -> list[Attribute]:
    """Image ``index``'s own top-``k`` attributes for ``target``: largest effects, coordinates once."""
    effects = table[index, :, :, target].float().cpu()  # (|S|, 2)
    order = torch.argsort(effects.flatten(), descending=True)
    chosen: list[Attribute] = []
    seen: set[int] = set()
    for flat in order.tolist():
        coordinate, direction = divmod(flat, 2)
        if coordinate in seen:
            continue
        chosen.append(
            Attribute(coordinate, direction, float(effects[coordinate, direction]), 1, target)
        )
        seen.add(coordinate)
        if len(chosen) == k:
            break
    return chosen


def apply_attributes(
    styles: torch.Tensor,
    attributes: Sequence[Attribute],
    ranges: torch.Tensor,
    shift: float = DEFAULT_SHIFT,
) -> torch.Tensor:
    """``styles (N, |S|)`` with every attribute's coordinate moved towards its min or max
    (:func:`edited_value`), all together."""
    edited = styles.clone()
    for attribute in attributes:
        c = attribute.coordinate
        edited[:, c] = edited_value(styles[:, c], ranges[attribute.direction, c], shift)
    return edited
