"""Blur IG follows Xu et al. 2020: SciPy's blur, its exact σ-derivative, completeness, locality."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from scouter.explain import get_explainer
from scouter.explain.blur_ig import gaussian_blur, gaussian_blur_matrices
from tests.explain.conftest import QuadrantDetailModel


@pytest.mark.parametrize("sigma", [0.7, 3.0, 40.0])
def test_blur_equals_scipy_gaussian_filter_in_reflect_mode(sigma):
    images = torch.randn(
        2, 3, 17, 23, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    expected = gaussian_filter(images.numpy(), sigma=(0, 0, sigma, sigma), mode="reflect")
    np.testing.assert_allclose(gaussian_blur(images, sigma).numpy(), expected, atol=1e-10)


def test_blur_derivative_matches_finite_differences():
    sigma, step = 2.3, 1e-5
    blur, d_blur = gaussian_blur_matrices(19, sigma)
    numeric = (
        gaussian_blur_matrices(19, sigma + step)[0] - gaussian_blur_matrices(19, sigma - step)[0]
    ) / (2 * step)
    torch.testing.assert_close(d_blur, numeric, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(blur.sum(1), torch.ones(19, dtype=torch.float64))


def test_attributions_are_complete():
    """Σ φ = F(x) − F(L(x, σ_max)): the path integral's defining property."""
    model = QuadrantDetailModel()
    images = torch.randn(
        2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    maps = get_explainer("blur_ig", max_sigma=6.0, steps=200, reduce="sum")(
        model, images, target=0
    ).maps
    gap = model(images)[:, 0] - model(gaussian_blur(images, 6.0))[:, 0]
    torch.testing.assert_close(maps.sum(dim=(1, 2, 3)), gap, rtol=1e-3, atol=1e-6)


def test_a_model_looking_at_one_quadrant_gets_all_its_mass_there():
    model = QuadrantDetailModel()
    images = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    maps = get_explainer("blur_ig", max_sigma=10.0, steps=20)(model, images, target=0).maps[0, 0]
    assert float(maps[:16, :16].sum()) > 0
    assert float(maps[16:, :].abs().sum() + maps[:, 16:].abs().sum()) == 0.0
