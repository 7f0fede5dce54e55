"""The optimiser and schedules, checked against their formulas by stepping them."""

from __future__ import annotations

import math

import pytest
import torch

from scouter.training import ScouterModule
from scouter.training.optimization import build_optimization

TINY = dict(
    backbone="test_resnet",
    hidden_dim=16,
    attention_norm="none",
    backbone_kwargs={"output_stride": 8},
)


def _build(scheduler: str, warmup: int, total: int, lr=1e-3, backbone_lr=1e-4, floor=0.1):
    head, backbone = [torch.nn.Parameter(torch.ones(2))], [torch.nn.Parameter(torch.ones(2))]
    config = build_optimization(
        head, backbone, lr=lr, backbone_lr=backbone_lr, weight_decay=0.0, scheduler=scheduler,
        lr_step_size=1, lr_gamma=0.1, warmup_steps=warmup, lr_min_factor=floor, total_steps=total,
    )  # fmt: skip
    return config["optimizer"], config["lr_scheduler"]["scheduler"], config


def _lrs(optimizer, schedule, steps: int) -> list[tuple[float, float]]:
    """(head, backbone) learning rate used by each of ``steps`` optimizer steps."""
    seen = []
    for _ in range(steps):
        seen.append(tuple(g["lr"] for g in optimizer.param_groups))
        optimizer.step()
        schedule.step()
    return seen


def _cosine_with_warmup(step: int, base: float, warmup: int, total: int, floor: float) -> float:
    """The documented formula, written out independently."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / (total - warmup))
    low = base * floor
    return low + (base - low) * (1 + math.cos(math.pi * progress)) / 2


def test_cosine_with_warmup_follows_its_formula_for_both_groups():
    warmup, total, floor = 5, 25, 0.1
    optimizer, schedule, config = _build("cosine", warmup, total, floor=floor)
    assert config["lr_scheduler"]["interval"] == "step"
    seen = _lrs(optimizer, schedule, total + 3)
    for step in (0, 2, 4, 5, 10, 15, 24, 25, 27):
        for group, base in ((0, 1e-3), (1, 1e-4)):
            expected = _cosine_with_warmup(step, base, warmup, total, floor)
            assert seen[step][group] == pytest.approx(expected, rel=1e-9), (step, group)
    # Landmarks: the ramp peaks at the base lr, the midpoint is halfway, the end is the floor.
    assert seen[warmup - 1][0] == pytest.approx(1e-3)
    assert seen[warmup + (total - warmup) // 2][0] == pytest.approx((1e-3 + 1e-4) / 2)
    assert seen[total][0] == pytest.approx(1e-4) and seen[total + 2][0] == pytest.approx(1e-4)


def test_cosine_after_warmup_matches_torchs_cosine_annealing():
    warmup, total, floor = 3, 13, 0.2
    optimizer, schedule, _ = _build("cosine", warmup, total, floor=floor)
    ours = [lr for lr, _ in _lrs(optimizer, schedule, total)][warmup:]
    parameter = torch.nn.Parameter(torch.ones(1))
    reference_optimizer = torch.optim.SGD([parameter], lr=1e-3)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(
        reference_optimizer, T_max=total - warmup, eta_min=1e-3 * floor
    )
    reference = []
    for _ in range(total - warmup):
        reference.append(reference_optimizer.param_groups[0]["lr"])
        reference_optimizer.step()
        annealing.step()
    assert ours == pytest.approx(reference, rel=1e-9)


def test_warmup_without_cosine_ramps_then_stays_constant():
    optimizer, schedule, _ = _build("none", warmup=4, total=10)
    seen = [lr for lr, _ in _lrs(optimizer, schedule, 8)]
    assert seen == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3])


def test_a_step_with_zero_gradient_shrinks_every_weight_by_lr_times_weight_decay():
    """AdamW's decoupled decay, measured: ``w ← w · (1 − lr · wd)`` when the gradient is 0."""
    module = ScouterModule(num_classes=3, lr=1e-2, backbone_lr=1e-3, weight_decay=0.05, **TINY)
    optimizer = module.configure_optimizers()["optimizer"]
    before = {id(p): p.detach().clone() for g in optimizer.param_groups for p in g["params"]}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    for group in optimizer.param_groups:
        factor = 1 - group["lr"] * 0.05
        for parameter in group["params"]:
            torch.testing.assert_close(parameter.detach(), before[id(parameter)] * factor)
    head = next(g for g in optimizer.param_groups if g["name"] == "head")
    assert head["lr"] == 1e-2 and any(p.abs().sum() > 0 for p in head["params"])
