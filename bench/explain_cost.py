"""Cost of an explanation: SCOUTER's own maps vs post-hoc explainers on the same model and images.

Run (CPU here, GPU unchanged with ``--device cuda``)::

    python bench/explain_cost.py
    python bench/explain_cost.py --images 4 --size 64 --classes 10

SCOUTER explains every class in the forward pass that classifies, so its cost for one class and
for all ``K`` is the same forward. Post-hoc methods run on the same SCOUTER+ classifier (same
backbone, same images) with their default settings (IG: 50 steps). Each method explains one class
per image (the predicted one) and then all ``K`` classes per image; we report images explained
per second and the time ratio to SCOUTER measured in the same run.

The optimisation methods run with fewer steps than their defaults (``SETTINGS``: 50 Adam steps
instead of 300 for ``meaningful_perturbation`` and ``extremal_perturbation``; one forward and
backward per step); the steps they actually ran (early stopping) are printed with their times.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine_description, markdown_table, median, synchronize  # noqa: E402
from scouter.explain import get_explainer  # noqa: E402
from scouter.models.classifier import ModelConfig, build_classifier  # noqa: E402

METHODS = [
    "slot",
    "gradcam",
    "gradcam++",
    "scorecam",
    "ig",
    "smoothgrad",
    "occlusion",
    "rise",
    "guided_gradcam",
    "lime",
    "meaningful_perturbation",
    "extremal_perturbation",
]
# Non-default settings: the optimisation methods' step counts are cut from 300 to keep the run short.
SETTINGS = {"meaningful_perturbation": {"steps": 50}, "extremal_perturbation": {"steps": 50}}


def time_call(fn, device, repeats: int = 1) -> float:
    """Median seconds of ``repeats`` calls (after the caller's warm-up)."""
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--batch-size", type=int, default=64, help="explainers' internal batch")
    args = parser.parse_args()
    device = torch.device(args.device)

    torch.manual_seed(0)
    model = build_classifier(ModelConfig(backbone=args.backbone, num_classes=args.classes))
    model = model.eval().to(device)
    images = torch.randn(args.images, 3, args.size, args.size, device=device)

    results = {}
    for name in args.methods.split(","):
        explainer = (
            get_explainer(name)
            if name == "slot"
            else get_explainer(name, batch_size=args.batch_size, **SETTINGS.get(name, {}))
        )
        explainer(model, images[:1], target=None)  # warm-up (also loads captum lazily)
        repeats = 10 if name == "slot" else 1
        one = time_call(lambda e=explainer: e(model, images, target=None), device, repeats)
        steps = f" (steps run: {explainer.last_steps} for one class" if name in SETTINGS else ""
        every = time_call(lambda e=explainer: e(model, images, target="all"), device, repeats)
        steps += f", {explainer.last_steps} for all)" if name in SETTINGS else ""
        results[name] = (one, every)
        print(
            f"{name}: one class {one:.3f} s, all {args.classes} classes {every:.3f} s{steps}",
            flush=True,
        )

    base_one, base_all = results["slot"]
    rows = []
    for name, (one, every) in results.items():
        rows.append(
            [
                name,
                f"{args.images / one:.2f}",
                f"{one / base_one:.1f}×" if name != "slot" else "1×",
                f"{args.images / every:.3f}",
                f"{every / base_all:.1f}×" if name != "slot" else "1×",
            ]
        )
    print(
        f"\n{args.images} images 3x{args.size}x{args.size}, {args.backbone} SCOUTER+ K={args.classes}"
        f" · {machine_description(device)}"
    )
    print(
        markdown_table(
            [
                "method",
                "img/s (1 class)",
                "time / SCOUTER (1 class)",
                f"img/s (all {args.classes})",
                f"time / SCOUTER (all {args.classes})",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
