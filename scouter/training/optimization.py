"""AdamW with head / backbone parameter groups and the step or warm-up + cosine schedules."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, StepLR


def build_optimization(
    head: Iterable[torch.nn.Parameter],
    backbone: Iterable[torch.nn.Parameter],
    *,
    lr: float,
    backbone_lr: float | None,
    weight_decay: float,
    scheduler: str,
    lr_step_size: int,
    lr_gamma: float,
    warmup_steps: int,
    lr_min_factor: float,
    total_steps: int | None,
) -> dict[str, Any]:
    """What ``LightningModule.configure_optimizers`` returns for a ScouterModule.

    Args:
        head / backbone: trainable parameters of each group (the backbone group is omitted when
            empty, e.g. fully frozen).
        lr / backbone_lr: learning rates (``backbone_lr=None`` → ``lr``).
        weight_decay: AdamW's, applied to every parameter.
        scheduler: ``"step"`` (StepLR per epoch), ``"cosine"`` (per step, after ``warmup_steps``
            linear warm-up, down to ``lr · lr_min_factor`` at ``total_steps``) or ``"none"``
            (constant, after the optional warm-up).
        total_steps: optimizer steps of the whole run (cosine and warm-up only).
    """
    groups = [{"params": list(head), "lr": lr, "name": "head"}]
    backbone = list(backbone)
    if backbone:
        groups.append(
            {
                "params": backbone,
                "lr": lr if backbone_lr is None else backbone_lr,
                "name": "backbone",
            }
        )
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    if scheduler == "step":
        step = StepLR(optimizer, step_size=lr_step_size, gamma=lr_gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": step, "interval": "epoch"}}
    if scheduler == "none" and not warmup_steps:
        return {"optimizer": optimizer}
    total = max(1, int(total_steps or 1))
    warmup, floor, cosine = int(warmup_steps), float(lr_min_factor), scheduler == "cosine"

    # A closure, not an object: LambdaLR then keeps nothing but numbers in its state_dict,
    # so checkpoints stay loadable with weights_only=True.
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if not cosine:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    schedule = LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
