"""``stylex.py attfind``: AttFind on test images of a trained StylEx; attributes, metrics, report.

Writes into ``--out``: ``metrics.json`` (reconstruction, agreement, KL, sufficiency@1..k of
StylEx, of random coordinates and, with ``--baseline``, of the unconditioned StyleSpace
baseline, whose reconstruction metrics are ``baseline_reconstruction``; with
``--held-out-images``, the same three on test images the search never saw; per class, how far
the attributes together move the images and the coordinates the discriminator filter refused),
``attributes.json``, ``<class>_attr<j>.png`` / ``.gif``, ``<class>_top.png``,
``<class>_together.png`` / ``.gif`` and ``report.html``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from scouter.atomic_io import atomic_write_text
from scouter.devices import resolve_device
from scouter.export.results_io import json_safe
from scouter.stylex import attfind as af
from scouter.stylex import metrics as sm
from scouter.stylex import realism
from scouter.stylex.attfind_options import (
    AttFindOptions,
    parse_args,
    unit_thresholds,
)
from scouter.stylex.errors import StylexInputError

__all__ = ["AttFindOptions", "StyleSpaceSearch", "explained_class_names", "main", "run"]


def data_settings(path: str | Path) -> dict[str, Any]:
    """The ``data:`` settings StylEx was trained with (stored by Lightning in the checkpoint)."""
    from scouter.checkpoints import safe_torch_load

    data = safe_torch_load(path).get("datamodule_hyper_parameters") or {}
    return {k: v for k, v in dict(data).items() if not k.startswith("_")}


class StyleSpaceSearch:
    """AttFind's search of one StylEx model over a set of images (formerly ``Explained``): the
    images encoded into StyleSpace (styles, extras, noise, coordinate ranges), their
    reconstructions and logits, and the effect table of every coordinate edit; the selection of
    attributes, the sufficiency curves and the realism figures are computed from them.

    ``table`` holds logit changes; ``effects`` the same in the unit of ``options.effect``, which
    the unstable filter, the selection and the per-image top-k use.
    """

    def __init__(self, module: Any, images: torch.Tensor, options: AttFindOptions) -> None:
        self.module, self.images = module, images
        self.shift = float(options.shift)
        self.model = af.style_model_from(module)
        self.styles, self.extras = af.encode_all(self.model, images)
        self.noise = af.image_noise(self.model, len(images), options.seed, images.device)
        self.ranges = af.style_ranges(self.styles)
        start = time.perf_counter()
        self.table = af.effect_table(
            self.model,
            self.styles,
            self.extras,
            self.noise,
            self.ranges,
            options.chunk,
            self.shift,
        )
        self.seconds = time.perf_counter() - start
        # The unedited reconstructions and their logits: the probability table, eligibility and
        # the reconstruction figures use them.
        self.reconstructions = sm.synthesize_all(self.model, self.styles, self.extras, self.noise)
        self.base_logits = sm.classify_all(self.model, self.reconstructions)
        self.effects = (
            af.probability_effects(self.table, self.base_logits)
            if options.effect == "probability"
            else self.table
        )
        large, self.explained_threshold = unit_thresholds(options)
        size = self.styles.shape[1]
        self.keep = af.stable_images(self.effects, large, int(options.max_unstable * size))
        self.filter = (
            realism.DiscriminatorFilter(
                self.model,
                self.styles,
                self.extras,
                self.noise,
                images,
                self.ranges,
                self.effects,
                self.explained_threshold,  # the authors use the same 0.2 for both
                options.discriminator_threshold,
                options.discriminator_images,
                self.shift,
            )
            if options.discriminator_filter
            else None
        )

    def select(
        self, target: int, options: AttFindOptions
    ) -> tuple[list[af.Attribute], list[float]]:
        """Top-k attributes of ``target`` (over stable images not yet classified as it), sufficiency."""
        picks = af.select_attributes(
            self.effects,
            target,
            options.k,
            self.explained_threshold,
            self.keep & self.eligible(target).cpu(),
            positive_only=options.clip_negative,
            accept=self.filter,
        )
        return picks, self.curve(picks, target, options.k)

    def realism(self, picks: list[af.Attribute], target: int) -> dict[str, Any]:
        """How far ``picks`` applied together move the searched images not classified as
        ``target`` (:func:`~scouter.stylex.realism.edit_changes`, averaged), and the coordinates the
        discriminator filter refused for ``target``."""
        rows = self.eligible(target).nonzero().flatten()
        out: dict[str, Any] = realism.mean_changes(
            *realism.edit_changes(
                self.model,
                self.styles[rows],
                af.take(self.extras, rows),
                af.take(self.noise, rows),
                self.images[rows],
                picks,
                self.ranges,
                self.shift,
            )
        )
        if self.filter is not None:
            out["discriminator_rejected"] = list(self.filter.rejected.get(int(target), []))
        return out

    def reconstruction(self) -> dict[str, float]:
        """Reconstruction L1, classifier agreement and KL on the searched images."""
        return sm.reconstruction_figures(
            self.images,
            self.reconstructions,
            sm.classify_all(self.model, self.images),
            self.base_logits,
        )

    def eligible(self, target: int) -> torch.Tensor:
        """``(N,)`` bool: searched images whose reconstruction is not classified as ``target``."""
        return self.base_logits.argmax(1) != target

    def curve(
        self,
        picks: list[af.Attribute],
        target: int,
        k: int,
        view: tuple[torch.Tensor, Any, Any] | None = None,
    ) -> list[float]:
        """``sufficiency@1..k`` of ``picks`` on the searched images or on a :meth:`held_out`
        view (this search's ranges and shift)."""
        styles, extras, noise = view if view is not None else (self.styles, self.extras, self.noise)
        return sm.sufficiency_curve(
            self.model, styles, extras, noise, self.ranges, picks, target, k, self.shift
        )

    def random_curve(
        self,
        target: int,
        options: AttFindOptions,
        view: tuple[torch.Tensor, Any, Any] | None = None,
    ) -> list[float]:
        """``sufficiency@1..k`` of random coordinates on the searched images or on a ``view``."""
        styles, extras, noise = view if view is not None else (self.styles, self.extras, self.noise)
        return sm.random_sufficiency_curve(
            self.model,
            styles,
            extras,
            noise,
            self.ranges,
            target,
            options.k,
            options.random_draws,
            options.seed,
            self.shift,
        )

    def held_out(self, images: torch.Tensor, seed: int) -> tuple[torch.Tensor, Any, Any]:
        """Styles, extras and noise of images AttFind did not search (noise of seed ``seed``)."""
        styles, extras = af.encode_all(self.model, images)
        return styles, extras, af.image_noise(self.model, len(images), seed, images.device)


def check_same_setting(module: Any, baseline: Any, path: str) -> None:
    """Refuse a ``--baseline`` trained for other images or another classifier output."""
    ours = (module.hparams.image_size, module.classifier.num_classes, module.classifier.classes)
    theirs = (
        baseline.hparams.image_size,
        baseline.classifier.num_classes,
        baseline.classifier.classes,
    )
    if ours != theirs:
        raise StylexInputError(
            f"--baseline {path!r} was trained for (image size, classes, class subset) {theirs} but "
            f"the StylEx checkpoint for {ours}: train the baseline with the same config and "
            "--model.conditional false"
        )


def explained_class_names(module: Any, dataset: str, classes: Sequence[int] | None) -> list[str]:
    """The names of the explained classifier outputs (``classes`` of the classifier's, or the
    first ``num_classes``): the classifier's own ``class_names``, else the dataset's when it has
    names for every classifier class, else the class indices."""
    from scouter.stylex.data import dataset_class_names

    model = module.classifier.model
    total = int(getattr(model, "num_classes", 0) or module.classifier.num_classes)
    names = getattr(model, "class_names", None)
    if names is None or len(names) != total:
        names = dataset_class_names(dataset)
        names = names[:total] if len(names) >= total else [str(k) for k in range(total)]
    return (
        [str(names[c]) for c in classes]
        if classes
        else list(names[: module.classifier.num_classes])
    )


def run(options: AttFindOptions) -> dict[str, Any]:
    """AttFind end to end (module docstring); returns what ``metrics.json`` holds."""
    from scouter.stylex import export
    from scouter.stylex.checkpoints import load_stylex
    from scouter.stylex.data import load_idx_images

    options.check()
    device = resolve_device(options.device, StylexInputError)
    module = load_stylex(options.checkpoint).to(device)
    data = data_settings(options.checkpoint)
    classes = data.get("classes")
    images, labels = load_idx_images(
        data.get("dataset", "fashion_mnist"),
        options.data_root or data.get("root"),
        "test",
        module.hparams.image_size,
        classes,
        options.num_images + options.held_out_images,
    )
    held_images = images[options.num_images :].to(device)
    images = images[: options.num_images].to(device)
    if len(images) < options.num_images:
        # Say it before the search (which takes long), and record it in metrics.json.
        print(
            f"stylex.py attfind: note: --num-images {options.num_images} asks for more test "
            f"images than these classes have ({len(images)} in the test split of "
            f"{data.get('dataset', 'fashion_mnist')}{f', classes {classes}' if classes else ''}):"
            f" searching all {len(images)}",
            file=sys.stderr,
            flush=True,
        )
    if options.held_out_images and len(held_images) < options.held_out_images:
        raise StylexInputError(
            f"--held-out-images {options.held_out_images}: only {len(held_images)} test images "
            f"of these classes are left after the {len(images)} searched; ask for fewer"
        )
    names = explained_class_names(module, data.get("dataset", "fashion_mnist"), classes)
    targets = options.targets if options.targets is not None else list(range(len(names)))
    bad = [t for t in targets if not 0 <= int(t) < len(names)]
    if bad:
        raise StylexInputError(
            f"--targets {bad} are not outputs of this StylEx's classifier (0..{len(names) - 1}: {names})"
        )
    run_main = StyleSpaceSearch(module, images, options)
    baseline = None
    if options.baseline:
        base_module = load_stylex(options.baseline).to(device)
        check_same_setting(module, base_module, options.baseline)
        baseline = StyleSpaceSearch(base_module, images, options)
    # Held-out images: their noise seeds follow the searched images' (no image shares noise).
    held_seed = options.seed + options.num_images
    held_main = run_main.held_out(held_images, held_seed) if len(held_images) else None
    held_base = (
        baseline.held_out(held_images, held_seed)
        if baseline is not None and held_main is not None
        else None
    )
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "checkpoint": str(options.checkpoint),
        "images": len(images),
        "images_requested": int(options.num_images),
        "style_space_size": int(run_main.styles.shape[1]),
        "stable_images": int(run_main.keep.sum()),
        "effect": options.effect,
        "shift": run_main.shift,
        "threshold": unit_thresholds(options)[0],
        "explained_threshold": run_main.explained_threshold,
        "clip_negative": bool(options.clip_negative),
        "discriminator_filter": bool(options.discriminator_filter),
        "discriminator_threshold": float(options.discriminator_threshold),
        "discriminator_images": int(options.discriminator_images),
        "discriminator_scale": realism.discriminator_scale(run_main.model, images),
        "attfind_seconds": run_main.seconds,
        **run_main.reconstruction(),
        "classes": names,
        "targets": {},
    }
    if baseline is not None:
        results["baseline_stable_images"] = int(baseline.keep.sum())
        # Does the unconditioned generator already reproduce the classifier's decisions?
        results["baseline_reconstruction"] = baseline.reconstruction()
        results["baseline_discriminator_scale"] = realism.discriminator_scale(
            baseline.model, images
        )
    sections, picks_by_target = [], {}
    for target in targets:
        picks, curve = run_main.select(target, options)
        picks_by_target[target] = picks
        random_curve = run_main.random_curve(target, options)
        entry = {
            "attributes": [p.to_dict() for p in picks],
            "sufficiency": curve,
            "random": random_curve,
            "realism": run_main.realism(picks, target),
        }
        if baseline is not None:
            base_picks, entry["baseline"] = baseline.select(target, options)
            entry["baseline_attributes"] = [p.to_dict() for p in base_picks]
            entry["baseline_realism"] = baseline.realism(base_picks, target)
        if held_main is not None:
            entry["held_out_sufficiency"] = run_main.curve(picks, target, options.k, held_main)
            entry["held_out_random"] = run_main.random_curve(target, options, held_main)
            if held_base is not None:
                entry["held_out_baseline"] = baseline.curve(
                    base_picks, target, options.k, held_base
                )
        # Image-specific explanations (the paper's per-image top-k) for the images shown.
        shown = run_main.eligible(target)
        entry["per_image_top_3"] = {
            str(int(n)): [a.to_dict() for a in af.image_top_k(run_main.effects, int(n), target, 3)]
            for n in shown.nonzero().flatten()[: options.show_images]
        }
        rows, files = export.export_attributes(run_main, out, names[target], target, picks, options)
        curves = {key: entry[key] for key in ("sufficiency", "random", "baseline") if key in entry}
        sections.append(
            export.attribute_section(f"class {target}: {names[target]}", rows, files, curves)
        )
        results["targets"][names[target]] = entry
    if len(names) == 2 and len(picks_by_target) == 2:
        merged = af.merge_two_classes(picks_by_target[0], picks_by_target[1], options.k)
        results["two_class_merge"] = [p.to_dict() for p in merged]
    if held_main is not None:
        results["held_out_images"] = len(held_images)
    keys = ("sufficiency", "random", "baseline")
    for key in (*keys, *(f"held_out_{key}" for key in keys)):
        curves = [t[key] for t in results["targets"].values() if key in t]
        if curves:
            results[f"mean_{key}"] = [
                sum(c[i] for c in curves) / len(curves) for i in range(options.k)
            ]
    atomic_write_text(out / "metrics.json", json.dumps(json_safe(results), indent=2))
    atomic_write_text(
        out / "attributes.json",
        json.dumps(
            {names[t]: [p.to_dict() for p in picks] for t, picks in picks_by_target.items()},
            indent=2,
        ),
    )
    notes = (
        f"AttFind on {len(images)} test images ({results['stable_images']} stable), "
        f"|S| = {results['style_space_size']}; attributes ranked by {options.effect} change; "
        f"an edit moves a coordinate {run_main.shift:g}x its distance to its min or max; "
        "pairs: reconstruction | edited, p = p(class); the GIF beside them flickers between the "
        "two. "
        + (
            f"Discriminator filter: a coordinate whose edit changes D by more than "
            f"{options.discriminator_threshold:g} on one of {options.discriminator_images} images "
            "it moves is refused (per class: realism.discriminator_rejected)."
            if options.discriminator_filter
            else "Discriminator filter off."
        )
    )
    export.write_report(out / "report.html", "StylEx attributes", results, sections, notes)
    return results


def main(argv: list[str] | None = None) -> Mapping[str, Any]:
    results = run(parse_args(argv))
    print(json.dumps({k: v for k, v in results.items() if k != "targets"}, indent=2))
    return results
