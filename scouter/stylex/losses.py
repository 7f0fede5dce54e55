"""StylEx's loss terms (tensors in, scalars out)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def generator_adversarial(fake_scores: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``softplus(-D(G(.)))``, mean over ``(B,)`` scores."""
    return F.softplus(-fake_scores).mean()


def discriminator_adversarial(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Discriminator loss ``softplus(D(fake)) + softplus(-D(real))``, means over ``(B,)``."""
    return F.softplus(fake_scores).mean() + F.softplus(-real_scores).mean()


def r1_penalty(real_scores: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """``mean_b ||∂D(x_b)/∂x_b||²`` (R1) of images that required grad before scoring."""
    (grad,) = torch.autograd.grad(real_scores.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def classifier_kl(original_logits: torch.Tensor, edited_logits: torch.Tensor) -> torch.Tensor:
    """``KL(C(x) ‖ C(x'))`` with the original's probabilities as target, mean over the batch.

    ``original_logits`` / ``edited_logits``: ``(B, K)``. Zero exactly when the two agree.
    """
    target = F.log_softmax(original_logits, dim=1)
    return F.kl_div(
        F.log_softmax(edited_logits, dim=1), target, log_target=True, reduction="batchmean"
    )
