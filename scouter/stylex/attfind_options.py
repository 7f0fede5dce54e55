"""``stylex.py attfind``'s settings: the options, their checks, the command-line parser."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scouter.stylex.preprocessing import StylexInputError


@dataclass
class AttFindOptions:
    """Settings of one AttFind run (``stylex.py attfind --help`` documents each)."""

    checkpoint: str
    out: str
    targets: list[int] | None = None
    num_images: int = 200
    k: int = 10
    threshold: float = 5.0
    max_unstable: float = 0.2
    explained_threshold: float = 2.0
    chunk: int = 1024
    seed: int = 0
    baseline: str | None = None
    random_draws: int = 5
    show_images: int = 6
    device: str = "auto"
    data_root: str | None = None

    def check(self) -> None:
        """Refuse settings that cannot work, naming the option and the fix."""
        for name in ("num_images", "k", "chunk", "random_draws", "show_images"):
            if int(getattr(self, name)) < 1:
                raise StylexInputError(
                    f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        for name in ("threshold", "explained_threshold"):
            if not float(getattr(self, name)) > 0:
                raise StylexInputError(
                    f"--{name.replace('_', '-')} must be > 0 (logits), got {getattr(self, name)}"
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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise StylexInputError(
            f"--device {name!r} is not a device ({error}): use auto, cpu or cuda"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StylexInputError(f"--device {name!r}: CUDA is not available here; use --device cpu")
    return device


def finite_json(value: Any) -> Any:
    """``value`` with NaN / inf floats as ``None`` (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


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
    p.add_argument("--threshold", type=float, default=5.0, help="|logit change| counted as large")
    p.add_argument(
        "--max-unstable",
        type=float,
        default=0.2,
        help="drop images where more than this share of coordinates has a large change",
    )
    p.add_argument(
        "--explained-threshold",
        type=float,
        default=2.0,
        help="an image is explained once its chosen attributes add this much target logit",
    )
    p.add_argument("--chunk", type=int, default=1024, help="edits per batch")
    p.add_argument("--seed", type=int, default=0, help="noise and random-baseline seed")
    p.add_argument("--baseline", help="an unconditioned StylEx .ckpt (model.conditional false)")
    p.add_argument("--random-draws", type=int, default=5, help="random-coordinate draws per k")
    p.add_argument("--show-images", type=int, default=6, help="images per attribute figure")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--data-root", help="IDX folder, if not where StylEx was trained")
    args = p.parse_args(argv)
    return AttFindOptions(**{k: v for k, v in vars(args).items()})
