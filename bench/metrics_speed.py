"""Insertion/deletion AUC speed: our batched engine vs a plain per-step loop vs Quantus.

Run (CPU here, GPU unchanged with ``--device cuda``)::

    python bench/metrics_speed.py
    python bench/metrics_speed.py --images 16 --size 64 --batch-size 64

Every deletion curve of ``B`` images costs ``B·(N+1)`` model evaluations (``N`` steps plus the
start). The engine's own ceiling is the model's best batched forward throughput, measured here
on the same model and chunk size; we report the engine's evaluations per second as a fraction of
it, the speed-up over a per-step loop (one forward per image per step, the way most code does it),
and Quantus ``PixelFlipping`` on the same maps where Quantus is installed. Values are compared
point for point.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine_description, markdown_table  # noqa: E402
from scouter.metrics.insertion_deletion import curve_auc, default_step, rise_curves  # noqa: E402
from scouter.models.classifier import ModelConfig, build_classifier  # noqa: E402


class LogitsOnly(nn.Module):
    """Expose a Classifier as ``images -> logits`` (what captum and Quantus expect)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images).logits


@torch.no_grad()
def per_step_loop(model, images, maps, classes, step):
    """Deletion curves with one forward per image per step (the plain implementation)."""
    b, c, h, w = images.shape
    n_pixels = h * w
    n_steps = math.ceil(n_pixels / step)
    curves = torch.empty(b, n_steps + 1, dtype=images.dtype, device=images.device)
    for i in range(b):
        order = torch.sort(maps[i].flatten(), descending=True, stable=True).indices
        current = images[i : i + 1].clone()
        for s in range(n_steps + 1):
            if s:
                idx = order[(s - 1) * step : s * step]
                current.view(1, c, -1)[:, :, idx] = 0
            curves[i, s] = model(current).softmax(-1)[0, classes[i]]
    return curves


def quantus_curves(model, images, maps, classes, step):
    """Quantus PixelFlipping on the same maps (baseline 0, no normalisation), or None."""
    try:
        import quantus
    except ImportError:
        return None
    metric = quantus.PixelFlipping(
        features_in_step=step,
        perturb_baseline=0.0,
        normalise=False,
        abs=False,
        disable_warnings=True,
    )
    scores = metric(
        model=model,
        x_batch=images.numpy(),
        y_batch=classes.numpy(),
        a_batch=maps.numpy(),
        channel_first=True,
        softmax=True,
        device="cpu",
        batch_size=images.shape[0],
    )
    return torch.tensor(scores, dtype=images.dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument(
        "--stem", default="mnist", help="'mnist' (reference 1-channel stem) or 'default'"
    )
    parser.add_argument(
        "--step",
        type=int,
        default=None,
        help="pixels per step; default: the largest divisor of H*W not above ceil(H*W/224) "
        "(Quantus requires a divisor)",
    )
    parser.add_argument(
        "--head",
        default="fc",
        help="'fc' (default: a randomly initialised SCOUTER head gives near-uniform probabilities, "
        "which would make the value comparison vacuous) or 'xslot'",
    )
    parser.add_argument("--no-quantus", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)

    torch.manual_seed(0)
    # One input channel, as in the Fashion-MNIST demo: Quantus 0.6 ranks and flips array
    # *elements*, so only with C = 1 is its protocol the same per-pixel protocol as ours.
    model = build_classifier(
        ModelConfig(
            backbone=args.backbone, num_classes=10, in_chans=1, stem=args.stem, head=args.head
        )
    )
    model = model.eval().to(device)
    logits_model = LogitsOnly(model).eval()
    images = torch.randn(args.images, 1, args.size, args.size, device=device)
    maps = torch.rand(args.images, 1, args.size, args.size, device=device)
    classes = torch.randint(0, 10, (args.images,), device=device)
    n_pixels = args.size**2
    step = args.step or max(
        d for d in range(1, default_step(args.size, args.size) + 1) if n_pixels % d == 0
    )
    n_evals = args.images * (math.ceil(args.size**2 / step) + 1)

    def timed(fn):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - start

    # Ceiling: the best throughput of plain batched forwards of the same chunk size.
    chunk = torch.randn(args.batch_size, 1, args.size, args.size, device=device)
    reps = max(1, n_evals // args.batch_size)

    def measure_ceiling() -> float:
        with torch.no_grad():
            _, t_fwd = timed(lambda: [logits_model(chunk) for _ in range(reps)])
        return reps * args.batch_size / t_fwd

    with torch.no_grad():
        logits_model(chunk)

    forward = logits_model
    rise_curves(forward, images[:1], maps[:1], classes[:1], "deletion", batch_size=args.batch_size)
    ceiling_before = measure_ceiling()
    ours, t_ours = timed(
        lambda: rise_curves(
            forward, images, maps, classes, "deletion", step=step, batch_size=args.batch_size
        )
    )
    # The ceiling is measured right before and after our run; the better of the two counts.
    ceiling = max(ceiling_before, measure_ceiling())
    loop, t_loop = timed(lambda: per_step_loop(logits_model, images, maps, classes, step))
    quantus_result, t_quantus = (None, float("nan"))
    if not args.no_quantus and device.type == "cpu":
        quantus_result, t_quantus = timed(
            lambda: quantus_curves(logits_model, images, maps, classes, step)
        )

    loop_diff = (ours - loop).abs().max().item()
    rows = [
        ["batched forward ceiling", f"{ceiling:.0f}", "1.00", "–", "–"],
        [
            "scouter rise_curves (ours)",
            f"{n_evals / t_ours:.0f}",
            f"{n_evals / t_ours / ceiling:.2f}",
            f"{t_ours:.2f} s",
            "reference",
        ],
        [
            "per-step loop",
            f"{n_evals / t_loop:.0f}",
            f"{n_evals / t_loop / ceiling:.2f}",
            f"{t_loop:.2f} s",
            f"max |Δ| {loop_diff:.1e}",
        ],
    ]
    if quantus_result is not None:
        q_diff = (ours.cpu()[:, 1:] - quantus_result).abs().max().item()
        rows.append(
            [
                "Quantus PixelFlipping",
                f"{(n_evals - args.images) / t_quantus:.0f}",
                f"{(n_evals - args.images) / t_quantus / ceiling:.2f}",
                f"{t_quantus:.2f} s",
                f"max |Δ| {q_diff:.1e} (steps 1..N)",
            ]
        )
    print(
        f"{args.images} images 1x{args.size}x{args.size}, {args.backbone} ({args.head} head), step {step} px, "
        f"{n_evals} evaluations, chunk {args.batch_size} · {machine_description(device)}"
    )
    print(markdown_table(["method", "evals/s", "of ceiling", "time", "values vs ours"], rows))
    print(
        f"speed-up over per-step loop: {t_loop / t_ours:.1f}x; "
        + (
            f"over Quantus: {t_quantus / t_ours:.1f}x"
            if quantus_result is not None
            else "Quantus not run (--no-quantus, not installed, or not on CPU)"
        )
    )
    spread = (ours.max(dim=1).values - ours.min(dim=1).values).mean().item()
    print(
        f"deletion AUC (ours) mean {curve_auc(ours).mean().item():.4f}; mean curve range {spread:.3f}"
    )


if __name__ == "__main__":
    main()
