"""RISE follows Petsiuk et al. 2018: its masks, its estimator, and a model with a known answer."""

from __future__ import annotations

import math

import torch

from scouter.explain import get_explainer
from scouter.explain.rise import rise_masks
from tests.explain.conftest import QuadrantModel


def test_masks_are_smooth_shifted_upsampled_grids():
    masks = rise_masks(
        400, (30, 30), cells=5, probability=0.3, generator=torch.Generator().manual_seed(0)
    )
    assert masks.shape == (400, 30, 30)
    assert float(masks.min()) >= 0 and float(masks.max()) <= 1
    # E[M] = p away from the borders' interpolation edge effects.
    assert abs(float(masks.mean()) - 0.3) < 0.03
    # Smooth: neighbouring pixels differ by at most one grid step of the upsampled ramp.
    cell = math.ceil(30 / 5)
    assert float((masks[:, :, 1:] - masks[:, :, :-1]).abs().max()) <= 1 / cell + 1e-6


def test_saliency_is_the_papers_estimator():
    """S_c = 1/(N·p) Σ_i f_c(x ⊙ M_i) M_i, checked mask by mask."""
    model = QuadrantModel()
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    explainer = get_explainer("rise", masks=20, cells=4, probability=0.4, batch_size=7)
    maps = explainer(model, images, target="all").maps
    masks = explainer.masks_for((16, 16))
    expected = torch.zeros(2, 2, 16, 16)
    for mask in masks:
        probs = model(images * mask).softmax(1)  # (2, 2)
        expected += probs[:, :, None, None] * mask
    torch.testing.assert_close(maps, expected / (20 * 0.4), rtol=1e-5, atol=1e-6)


def test_masks_are_reproducible_from_the_seed():
    a = get_explainer("rise", masks=8, seed=4).masks_for((12, 12))
    b = get_explainer("rise", masks=8, seed=4).masks_for((12, 12))
    c = get_explainer("rise", masks=8, seed=5).masks_for((12, 12))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_model_looking_at_one_quadrant_gets_its_mass_there():
    model = QuadrantModel()
    images = torch.ones(1, 3, 32, 32)  # class 0's score grows with the visible top-left pixels
    maps = get_explainer("rise", masks=500, cells=4)(model, images, target="all").maps[0]
    quadrant = torch.zeros(32, 32, dtype=torch.bool)
    quadrant[:16, :16] = True
    for c, sign in ((0, 1), (1, -1)):
        inside, outside = maps[c][quadrant].mean(), maps[c][~quadrant].mean()
        assert sign * (inside - outside) > 0.05, (c, inside, outside)
    # The most salient quarter of the pixels is (almost all) the quadrant; smooth masks blur
    # its border, so not exactly all.
    top = maps[0].flatten().topk(16 * 16).indices
    assert float(quadrant.flatten()[top].float().mean()) > 0.8
