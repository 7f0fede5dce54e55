"""Meaningful and Extremal Perturbation: known answers, convergence, cost records, invariances."""

from __future__ import annotations

import pytest
import torch

from scouter.explain import get_explainer, list_explainers
from tests.explain.conftest import QuadrantDetailModel, tiny_classifier

NAMES = ["meaningful_perturbation", "extremal_perturbation"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Each step is many tiny ops: on a busy 2-core machine, the second thread's synchronisation
    dominates (measured 17× slower than one thread), so this module runs single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_images() -> torch.Tensor:
    """Two 32×32 noise images: all their detail, and so all of class 0's evidence, is local."""
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def top_left_share(maps: torch.Tensor) -> torch.Tensor:
    """Fraction of each map's mass inside the top-left quadrant, ``(B,)``."""
    h, w = maps.shape[-2] // 2, maps.shape[-1] // 2
    return maps[:, 0, :h, :w].sum(dim=(1, 2)) / maps[:, 0].sum(dim=(1, 2))


def test_registry_lists_both_and_takes_settings():
    assert set(NAMES) <= set(list_explainers())
    explainer = get_explainer("extremal_perturbation", area=0.2)
    assert explainer.area == 0.2 and explainer.settings["area"] == 0.2
    assert get_explainer("Meaningful-Perturbation", steps=7).settings["steps"] == 7


def test_meaningful_perturbation_deletes_the_evidence_region(small_images):
    # The default weights (the paper's) let the TV-smoothed edge spill past the quadrant (~73 %
    # inside); a dearer deletion keeps the known answer sharp.
    explainer = get_explainer("meaningful_perturbation", steps=100, l1_coeff=0.3)
    maps = explainer(QuadrantDetailModel(), small_images, target=0).maps
    assert maps.shape == (2, 1, 32, 32)
    assert maps.min() >= 0 and maps.max() <= 1
    assert (top_left_share(maps) > 0.8).all()
    assert maps[:, 0, 2:14, 2:14].mean() > 0.9  # the quadrant's interior is fully deleted
    losses = explainer.last_losses
    assert (losses[-1] < losses[0] - 0.2).all()  # the objective falls (probability 0.87 → ~0.5)


@pytest.mark.parametrize("area", [0.1, 0.2])
def test_extremal_perturbation_keeps_the_requested_area_inside_the_evidence(small_images, area):
    explainer = get_explainer("extremal_perturbation", area=area, steps=150)
    masks = explainer(QuadrantDetailModel(), small_images, target=0).maps
    assert masks.shape == (2, 1, 32, 32)
    assert masks.min() >= 0 and masks.max() <= 1
    assert (masks.mean(dim=(1, 2, 3)) - area).abs().max() < 0.05
    assert (top_left_share(masks) > 0.9).all()
    losses = explainer.last_losses
    assert (losses[-1] < losses[0]).all()


class ScaledDetail(QuadrantDetailModel):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.scale * super().forward(images)


def test_extremal_perturbation_does_not_depend_on_the_logit_scale(small_images):
    # The reward is measured in units of each image's logit gap (intact vs blurred).
    explainer = get_explainer("extremal_perturbation", steps=60)
    small = explainer(ScaledDetail(0.3), small_images, target=0).maps
    large = explainer(ScaledDetail(30.0), small_images, target=0).maps
    torch.testing.assert_close(small, large, rtol=1e-4, atol=1e-4)


def test_early_stopping_is_reported(small_images):
    model = QuadrantDetailModel()
    explainer = get_explainer("meaningful_perturbation", steps=300, tol=1e-3, window=10)
    explainer(model, small_images, target=0)
    assert explainer.last_steps < 300
    assert explainer.last_steps == int(explainer.last_steps_per_image.max())
    assert explainer.last_losses.shape == (explainer.last_steps, 2)
    full = get_explainer("meaningful_perturbation", steps=30, tol=0.0)
    full(model, small_images, target=0)
    assert full.last_steps == 30 and full.last_steps_per_image.tolist() == [30, 30]


def test_target_all_reports_the_steps_of_every_mask(small_images):
    explainer = get_explainer("extremal_perturbation", steps=6, batch_size=3)
    explanation = explainer(QuadrantDetailModel(), small_images, target="all")
    assert explanation.maps.shape == (2, 2, 32, 32)
    assert explainer.last_steps_per_image.tolist() == [6, 6, 6, 6]
    assert explainer.last_steps == 12  # two chunks of 3 and 1 (image, class) pairs
    assert explainer.last_losses.shape == (6, 4)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_maps_and_batched_equals_single(name, small_images):
    model = QuadrantDetailModel()
    seed = {"seed": 3} if name == "meaningful_perturbation" else {}
    first = get_explainer(name, steps=40, **seed)
    batched = first(model, small_images, target=0).maps
    torch.testing.assert_close(first(model, small_images, target=0).maps, batched)
    single = first(model, small_images[1:], target=0).maps
    torch.testing.assert_close(batched[1:], single, rtol=1e-4, atol=1e-4)


def test_the_jitter_follows_the_seed(small_images):
    model = QuadrantDetailModel()
    one = get_explainer("meaningful_perturbation", steps=20, seed=0)(model, small_images, 0)
    other = get_explainer("meaningful_perturbation", steps=20, seed=1)(model, small_images, 0)
    assert not torch.allclose(one.maps, other.maps)


@pytest.mark.parametrize(
    "name, settings, message",
    [
        ("meaningful_perturbation", {"steps": 0}, "steps must be an integer >= 1"),
        ("meaningful_perturbation", {"l1_coeff": -1.0}, "l1_coeff must be >= 0"),
        ("meaningful_perturbation", {"tv_coeff": -1.0}, "tv_coeff must be >= 0"),
        ("meaningful_perturbation", {"tol": -0.1}, "0 disables early stopping"),
        ("meaningful_perturbation", {"jitter": -1}, "jitter must be an integer >= 0"),
        ("extremal_perturbation", {"area": 1.0}, r"area must lie in \(0, 1\)"),
        ("extremal_perturbation", {"area": 0.0}, r"area must lie in \(0, 1\)"),
        ("extremal_perturbation", {"area_coeff": -1.0}, "area_coeff must be >= 0"),
        ("extremal_perturbation", {"lr": 0.0}, "lr must be > 0"),
        ("extremal_perturbation", {"mask_size": 1}, "mask_size must be an integer >= 2"),
    ],
)
def test_bad_settings_are_rejected(name, settings, message):
    with pytest.raises(ValueError, match=message):
        get_explainer(name, **settings)


@pytest.mark.parametrize("name", NAMES)
def test_a_mask_larger_than_the_input_is_rejected(name, small_images):
    with pytest.raises(ValueError, match="mask_size 40 is larger than the 32×32 input"):
        get_explainer(name, mask_size=40, steps=2)(QuadrantDetailModel(), small_images, 0)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_classifier_model_mode_and_gradients_untouched(name):
    model = tiny_classifier("fc")
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    user_grad = torch.ones_like(next(model.parameters()))
    next(model.parameters()).grad = user_grad.clone()
    explainer = get_explainer(name, steps=8)
    explanation = explainer(model, images, target=torch.tensor([0, 2]))
    assert explanation.maps.shape == (2, 1, 64, 64)
    assert torch.isfinite(explanation.maps).all()
    assert not model.training
    params = list(model.parameters())
    torch.testing.assert_close(params[0].grad, user_grad)  # the caller's gradient is kept
    assert all(p.grad is None for p in params[1:])
    assert explainer.last_steps == 8
