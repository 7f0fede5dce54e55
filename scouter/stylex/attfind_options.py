"""``stylex.py attfind``'s settings: the options, their checks, the command-line parser."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from scouter.stylex.errors import StylexInputError

EFFECTS = ("probability", "logit")
# Per effect unit: (threshold of a large change for the unstable filter, explained threshold).
# Probability defaults are the authors' (0.3 in their unstable filter, 0.2 in their selection).
UNIT_DEFAULTS = {"probability": (0.3, 0.2), "logit": (5.0, 2.0)}


@dataclass
class AttFindOptions:
    """Settings of one AttFind run (``stylex.py attfind --help`` documents each).

    ``threshold`` and ``explained_threshold`` are in the unit of ``effect``; None takes that
    unit's default (:data:`UNIT_DEFAULTS`).
    """

    checkpoint: str
    out: str
    targets: list[int] | None = None
    num_images: int = 200
    k: int = 10
    effect: str = "probability"
    shift: float = 2.0
    threshold: float | None = None
    max_unstable: float = 0.2
    explained_threshold: float | None = None
    clip_negative: bool = False
    discriminator_filter: bool = True
    discriminator_threshold: float = 0.2
    discriminator_images: int = 10
    chunk: int = 1024
    seed: int = 0
    baseline: str | None = None
    random_draws: int = 5
    held_out_images: int = 0
    show_images: int = 6
    device: str = "auto"
    data_root: str | None = None

    def check(self) -> None:
        """Refuse settings that cannot work, naming the option and the fix."""
        if int(self.held_out_images) < 0:
            raise StylexInputError(
                f"--held-out-images must be >= 0 (0: none), got {self.held_out_images}"
            )
        for name in (
            "num_images",
            "k",
            "chunk",
            "random_draws",
            "show_images",
            "discriminator_images",
        ):
            if int(getattr(self, name)) < 1:
                raise StylexInputError(
                    f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if self.effect not in EFFECTS:
            raise StylexInputError(
                f"--effect {self.effect!r} is not a unit: use one of {', '.join(EFFECTS)}"
            )
        if not float(self.shift) > 0:
            raise StylexInputError(
                f"--shift must be > 0 (1 edits a coordinate to its min/max, 2 twice as far), "
                f"got {self.shift}"
            )
        for name in ("threshold", "explained_threshold"):
            value = getattr(self, name)
            if value is not None and not float(value) > 0:
                raise StylexInputError(
                    f"--{name.replace('_', '-')} must be > 0 ({self.effect} change), got {value}"
                )
        if not float(self.discriminator_threshold) > 0:
            raise StylexInputError(
                f"--discriminator-threshold must be > 0 (the largest allowed change of the "
                f"discriminator's score), got {self.discriminator_threshold}; to turn the filter "
                "off use --no-discriminator-filter"
            )
        if not 0 <= float(self.max_unstable) <= 1:
            raise StylexInputError(
                f"--max-unstable is a share of StyleSpace coordinates in [0, 1], got {self.max_unstable}"
            )
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise StylexInputError(
                f"--out {self.out!r} is a file: pass a folder (created if missing)"
            )


def unit_thresholds(options: AttFindOptions) -> tuple[float, float]:
    """``(threshold, explained_threshold)`` of ``options``, unit defaults filled in."""
    large, explained = UNIT_DEFAULTS[options.effect]
    return (
        large if options.threshold is None else float(options.threshold),
        explained if options.explained_threshold is None else float(options.explained_threshold),
    )


def parse_args(argv: list[str] | None) -> AttFindOptions:
    p = argparse.ArgumentParser(
        prog="stylex.py attfind",
        description=(
            "AttFind on test images of a trained StylEx: writes metrics.json, attributes.json, "
            "<class>_attr<j>.png/.gif, <class>_top.png and report.html into --out"
        ),
    )
    p.add_argument("--checkpoint", required=True, help="a StylEx .ckpt written by `stylex.py fit`")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--targets", type=int, nargs="+", help="classes to explain (default: all)")
    p.add_argument("--num-images", type=int, default=200, help="test images searched")
    p.add_argument("--k", type=int, default=10, help="attributes per class")
    p.add_argument(
        "--effect",
        choices=EFFECTS,
        default="probability",
        help="unit of the effects AttFind ranks and thresholds: softmax-probability change "
        "(the authors') or logit change",
    )
    p.add_argument(
        "--shift",
        type=float,
        default=2.0,
        help="an edit moves a coordinate by shift x (its min or max - its value): 1 lands on the "
        "extreme, 2 (the authors') goes twice as far",
    )
    p.add_argument(
        "--threshold",
        type=float,
        help="|change| counted as large by the unstable filter (default 0.3 probability, 5 logit)",
    )
    p.add_argument(
        "--max-unstable",
        type=float,
        default=0.2,
        help="drop images where more than this share of coordinates has a large change",
    )
    p.add_argument(
        "--explained-threshold",
        type=float,
        help="an image is explained once its chosen attributes add this much to the target "
        "(default 0.2 probability, 2 logit)",
    )
    p.add_argument(
        "--clip-negative",
        action="store_true",
        help="count negative effects as 0 when ranking (the authors' code); default: signed "
        "means, so an attribute that pushes other images away from the target pays for it",
    )
    p.add_argument(
        "--no-discriminator-filter",
        dest="discriminator_filter",
        action="store_false",
        help="keep candidates whose edits change the discriminator's score (default: refuse "
        "them, as the authors' AttFind does)",
    )
    p.add_argument(
        "--discriminator-threshold",
        type=float,
        default=0.2,
        help="refuse a coordinate when its edit changes D(x, c) by more than this on one of "
        "the images it moves the target on (the authors' 0.2; metrics.json records D's "
        "spread over real images as discriminator_scale)",
    )
    p.add_argument(
        "--discriminator-images",
        type=int,
        default=10,
        help="images checked per direction by the discriminator filter (the authors' 10)",
    )
    p.add_argument("--chunk", type=int, default=1024, help="edits per batch")
    p.add_argument("--seed", type=int, default=0, help="noise and random-baseline seed")
    p.add_argument("--baseline", help="an unconditioned StylEx .ckpt (model.conditional false)")
    p.add_argument("--random-draws", type=int, default=5, help="random-coordinate draws per k")
    p.add_argument(
        "--held-out-images",
        type=int,
        default=0,
        help="also measure sufficiency on this many further test images AttFind did not search",
    )
    p.add_argument("--show-images", type=int, default=6, help="images per attribute figure")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--data-root", help="IDX folder, if not where StylEx was trained")
    args = p.parse_args(argv)
    return AttFindOptions(**{k: v for k, v in vars(args).items()})
