"""The NaN/inf guard of training: the error it raises and the gradient test it runs."""

from __future__ import annotations

from collections.abc import Iterable

import torch


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradients became NaN/inf; training stopped before the optimizer step."""


def non_finite_error(what: str, detail: str, step: int, epoch: int) -> NonFiniteLossError:
    """The error for ``what`` ("the loss", "the gradients") turning non-finite at ``step``."""
    return NonFiniteLossError(
        f"{what} became non-finite at global step {step} (epoch {epoch}){detail}. Training "
        "stopped before the optimizer step, so no checkpoint holds these values and the last "
        "saved one is intact. Known cause: the reference attention normalisation divides by a "
        "signed row sum that can reach 0 (docs/method.md#attention-normalisation) — try "
        "attention_norm: none (the training default), a lower lr, or --trainer.gradient_clip_val."
    )


def gradients_finite(parameters: Iterable[torch.nn.Parameter]) -> bool:
    """Whether every gradient present is finite (one fused norm, one host sync)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    return not grads or bool(torch.isfinite(torch.stack(torch._foreach_norm(grads)).sum()))
