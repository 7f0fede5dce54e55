"""RISE (Petsiuk, Das & Saenko, BMVC 2018): saliency from randomly masked inputs.

Neither captum nor pytorch-grad-cam has it, so it is written here from the paper (§3):

* masks: a binary ``s×s`` grid with cells on with probability ``p``, upsampled bilinearly to
  ``(s+1)·C_H × (s+1)·C_W`` (``C = ⌈H/s⌉``) and cropped to ``H×W`` at a random shift in
  ``[0, C)`` — smooth masks without grid artefacts;
* saliency of class ``c``: ``S_c = 1/(N·p) · Σ_i f_c(x ⊙ M_i) · M_i``, the Monte-Carlo estimate of
  ``E[f_c(x ⊙ M) | M(λ) = 1]`` with ``f_c`` the softmax probability.

Every class's map comes from the same ``N`` forwards, so ``target="all"`` is free.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scouter.explain.base import Explainer, integer_setting, model_logits, register_explainer

__all__ = ["RISEExplainer", "rise_masks"]


def rise_masks(
    count: int,
    size: tuple[int, int],
    cells: int = 7,
    probability: float = 0.5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """RISE's random smooth masks.

    Args:
        count: ``N``.
        size: ``(H, W)`` of the input.
        cells: ``s``, the grid size.
        probability: ``p``, the chance a grid cell is kept.
        generator: CPU random generator (for reproducible masks).

    Returns:
        ``(N, H, W)`` float32 masks on the CPU, values in ``[0, 1]``.
    """
    height, width = size
    cell_h, cell_w = math.ceil(height / cells), math.ceil(width / cells)
    grid = (torch.rand(count, 1, cells, cells, generator=generator) < probability).float()
    # align_corners=False bilinear upsampling, as the paper's skimage resize (order 1).
    up = F.interpolate(
        grid,
        size=((cells + 1) * cell_h, (cells + 1) * cell_w),
        mode="bilinear",
        align_corners=False,
    )[:, 0]
    shift_y = torch.randint(0, cell_h, (count,), generator=generator)
    shift_x = torch.randint(0, cell_w, (count,), generator=generator)
    rows = shift_y[:, None] + torch.arange(height)  # (N, H)
    cols = shift_x[:, None] + torch.arange(width)  # (N, W)
    crops = up[torch.arange(count)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return crops.clamp(0, 1)  # interpolation can overshoot 1 by a rounding error


@register_explainer
class RISEExplainer(Explainer):
    """Randomized Input Sampling for Explanation, batched over images, masks and classes.

    Args:
        masks: ``N``, the number of random masks (the paper uses 4000–8000 for ImageNet).
        cells: ``s``, the mask grid size (paper: 7).
        probability: ``p``, the keep probability of a grid cell (paper: 0.5).
        fill: value of masked-out pixels in normalised input space (``x·M + fill·(1 − M)``;
            0 is the dataset's mean colour, the paper's ``x ⊙ M`` on normalised inputs).
        seed: seed of the masks; the same masks are used for every image and call.
        batch_size: masked images per forward pass.

    Returns (through ``__call__``):
        maps ``(B, 1, H, W)`` or ``(B, K, H, W)`` at input resolution, values ≈ class
        probabilities (``E[f_c(x ⊙ M) | pixel kept]``).
    """

    name = "rise"
    kind = "pixel"
    needs_gradients = False

    def __init__(
        self,
        masks: int = 4000,
        cells: int = 7,
        probability: float = 0.5,
        fill: float = 0.0,
        seed: int = 0,
        batch_size: int = 64,
    ) -> None:
        self.num_masks = integer_setting(self.name, "masks", masks, 1, "random masks")
        self.cells = integer_setting(self.name, "cells", cells, 1, "mask grid cells per side")
        if not 0.0 < float(probability) <= 1.0:
            raise ValueError(
                f"explainer 'rise': probability must lie in (0, 1] (the keep probability of a "
                f"grid cell), got {probability!r}"
            )
        self.probability = float(probability)
        self.fill = float(fill)
        self.seed = integer_setting(self.name, "seed", seed, None)
        super().__init__(
            batch_size=batch_size,
            masks=self.num_masks,
            cells=self.cells,
            probability=self.probability,
            fill=self.fill,
            seed=self.seed,
        )
        self._cache: dict[tuple[int, int], Tensor] = {}

    def masks_for(self, size: tuple[int, int]) -> Tensor:
        """The ``(N, H, W)`` CPU masks for inputs of ``size`` (deterministic given ``seed``)."""
        size = tuple(int(v) for v in size)
        if size not in self._cache:
            generator = torch.Generator().manual_seed(self.seed)
            self._cache[size] = rise_masks(
                self.num_masks, size, self.cells, self.probability, generator
            )
        return self._cache[size]

    def probabilities(self, model: nn.Module, images: Tensor, masks: Tensor) -> Tensor:
        """Softmax probabilities of every masked image.

        Args:
            model: the classifier.
            images: ``(B, C, H, W)``.
            masks: ``(N, H, W)`` on ``images.device``.

        Returns:
            ``(B, N, K)``.
        """
        batch, count = images.shape[0], masks.shape[0]
        out = []
        for start in range(0, batch * count, self.batch_size):
            pairs = torch.arange(start, min(start + self.batch_size, batch * count))
            image_idx = (pairs // count).to(images.device)
            mask = masks[(pairs % count).to(masks.device)][:, None]  # (n, 1, H, W)
            masked = images[image_idx] * mask + self.fill * (1 - mask)
            out.append(model_logits(model, masked).float().softmax(dim=1))
        probs = torch.cat(out)
        return probs.view(batch, count, -1)

    def explain(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        return self.explain_classes(model, images, targets[:, None])

    def explain_classes(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        masks = self.masks_for(images.shape[-2:]).to(images.device, images.dtype)
        probs = self.probabilities(model, images, masks)  # (B, N, K)
        chosen = probs.gather(2, targets[:, None, :].expand(-1, masks.shape[0], -1))  # (B, N, T)
        saliency = torch.einsum("bnt,nhw->bthw", chosen.to(masks.dtype), masks)
        return saliency / (masks.shape[0] * self.probability)
