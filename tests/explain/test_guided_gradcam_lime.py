"""Guided Grad-CAM and LIME on superpixels: checked against their definitions and against captum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scouter.explain import get_explainer, list_explainers
from scouter.explain.posthoc import GuidedBackpropExplainer
from scouter.explain.superpixel_lime import grid_segments, slic_segments
from tests.explain.conftest import QuadrantModel, tiny_classifier


def _photo(size: int = 32) -> torch.Tensor:
    """scikit-image's astronaut, ``(3, size, size)``, ImageNet-normalised-like range."""
    from skimage import data
    from skimage.transform import resize

    image = resize(data.astronaut(), (size, size), anti_aliasing=True)  # float in [0, 1]
    return (torch.from_numpy(image).permute(2, 0, 1).float() - 0.5) / 0.25


# ------------------------------------------------------------------------------ Guided Grad-CAM


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_guided_gradcam_is_guided_backprop_times_upsampled_relu_gradcam(fc_model, images, mode):
    # Each image's class with the most positive Grad-CAM (random weights: most maps are < 0).
    all_cams = get_explainer("gradcam")(fc_model, images, target="all").maps
    targets = all_cams.clamp_min(0).sum(dim=(2, 3)).argmax(dim=1)
    assert bool((all_cams.clamp_min(0).sum(dim=(2, 3)).amax(dim=1) > 0).all())
    explanation = get_explainer("guided_gradcam", interpolate_mode=mode, reduce="sum")(
        fc_model, images, target=targets
    )
    # The definition, from our own Grad-CAM and guided-backprop explainers.
    cam = get_explainer("gradcam")(fc_model, images, target=targets).maps.clamp_min(0)
    upsampled = F.interpolate(cam, size=images.shape[-2:], mode=mode)
    with torch.enable_grad():
        guided = GuidedBackpropExplainer().attribute(
            fc_model, images.clone().requires_grad_(True), targets
        )
    expected = (guided * upsampled).sum(dim=1, keepdim=True)
    assert explanation.maps.shape == (2, 1, 64, 64) and explanation.kind == "pixel"
    assert explanation.settings["interpolate_mode"] == mode
    torch.testing.assert_close(explanation.maps, expected, rtol=1e-4, atol=1e-6)
    assert explanation.maps.abs().sum() > 0


def test_guided_gradcam_is_class_specific_and_explains_scouter(fc_model, scouter_model, images):
    explainer = get_explainer("guided_gradcam")
    maps = explainer(fc_model, images, target="all").maps
    assert maps.shape == (2, 3, 64, 64) and bool((maps >= 0).all())  # sum_abs by default
    assert not torch.allclose(maps[:, 0], maps[:, 1])
    scouter_maps = explainer(scouter_model, images, target=1).maps
    assert scouter_maps.shape == (2, 1, 64, 64) and torch.isfinite(scouter_maps).all()


def test_guided_gradcam_rejects_an_unknown_interpolation():
    with pytest.raises(ValueError, match="interpolate_mode must be one of"):
        get_explainer("guided_gradcam", interpolate_mode="linear")


# ---------------------------------------------------------------------------------------- LIME


def test_slic_segments_are_scikit_images_superpixels_relabelled_densely():
    from skimage.segmentation import slic

    image = _photo(48)
    labels = slic_segments(image, segments=30, compactness=10.0)
    scaled = (image - image.min()) / (image.max() - image.min())
    reference = slic(
        scaled.permute(1, 2, 0).numpy(), n_segments=30, compactness=10.0, start_label=0
    )
    assert labels.shape == (48, 48) and labels.dtype == torch.long
    # Same partition: a bijection between our labels and SLIC's.
    pairs = np.unique(np.stack([labels.numpy().ravel(), reference.ravel()]), axis=1)
    assert pairs.shape[1] == len(np.unique(reference)) == int(labels.max()) + 1
    assert 10 <= int(labels.max()) + 1 <= 45


def test_grid_segments_tile_the_image_in_square_cells():
    labels = grid_segments(10, 12, segments=30, device="cpu")  # side ceil(sqrt(4)) = 2
    assert labels.shape == (10, 12) and int(labels.max()) + 1 == 5 * 6
    counts = torch.bincount(labels.flatten())
    assert bool((counts == 4).all())
    assert labels[0, 0] == labels[1, 1] != labels[0, 2]


def test_lime_finds_the_only_region_the_model_reads():
    model = QuadrantModel()  # logit_0 = 8 · mean of the top-left quadrant
    images = torch.stack([_photo(32), _photo(32).flip(-1)]).abs() + 0.5  # positive pixels
    explanation = get_explainer("lime", samples=300, segments=16, segmentation="grid")(
        model, images, target=0
    )
    maps = explanation.maps
    assert maps.shape == (2, 1, 32, 32) and explanation.settings["segmentation"] == "grid"
    positive = maps.clamp_min(0)
    inside = positive[..., :16, :16].sum(dim=(1, 2, 3)) / positive.sum(dim=(1, 2, 3))
    assert bool((inside > 0.95).all()), inside
    # One value per superpixel (cells of 8×8 here).
    cells = maps[:, 0].unfold(1, 8, 8).unfold(2, 8, 8)  # (2, 4, 4, 8, 8)
    assert torch.allclose(cells, cells[..., :1, :1].expand_as(cells))


def test_lime_equals_captum_lime_with_the_same_features_kernel_and_samples(fc_model):
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime

    from scouter.explain.superpixel_lime import _lime_kernel

    image = _photo(64)[None]
    explainer = get_explainer("lime", samples=64, segments=20, seed=3, reduce="sum")
    ours = explainer(fc_model, image, target=1).maps

    mask = slic_segments(image[0], 20, 10.0).expand(3, -1, -1)[None]
    lime = Lime(
        lambda x: fc_model(x).logits,
        interpretable_model=SkLearnRidge(alpha=1.0),
        similarity_func=_lime_kernel(0.25),
    )
    torch.manual_seed(3)
    with torch.no_grad():
        reference = lime.attribute(
            image, target=1, baselines=0.0, feature_mask=mask, n_samples=64,
            perturbations_per_eval=64,
        ).sum(dim=1, keepdim=True)  # fmt: skip
    torch.testing.assert_close(ours, reference)


def test_lime_kernel_is_the_reference_packages():
    from scouter.explain.superpixel_lime import _lime_kernel

    kernel = _lime_kernel(0.25)
    all_on = torch.ones(1, 10)
    assert float(kernel(None, None, all_on)) == pytest.approx(1.0)
    half = torch.tensor([[1.0] * 5 + [0.0] * 5])
    distance = 1 - 5 / (5**0.5 * 10**0.5)  # cosine distance to the all-on vector
    assert float(kernel(None, None, half)) == pytest.approx(
        np.sqrt(np.exp(-(distance**2) / 0.0625))
    )


def test_lime_is_reproducible_and_leaves_the_global_generator_alone(fc_model):
    images = torch.stack([_photo(32), _photo(32).flip(-2)])
    state = torch.get_rng_state()
    first = get_explainer("lime", samples=40, segments=10, seed=1)(fc_model, images, target=0)
    assert torch.equal(torch.get_rng_state(), state)
    again = get_explainer("lime", samples=40, segments=10, seed=1)(fc_model, images, target=0)
    other = get_explainer("lime", samples=40, segments=10, seed=2)(fc_model, images, target=0)
    assert torch.equal(first.maps, again.maps)
    assert not torch.equal(first.maps, other.maps)
    # Batched equals one image at a time.
    single = get_explainer("lime", samples=40, segments=10, seed=1)(fc_model, images[1:], target=0)
    torch.testing.assert_close(first.maps[1:], single.maps)


def test_lime_falls_back_to_the_grid_where_slic_finds_one_superpixel(fc_model):
    # Uniform noise: SLIC's connectivity step merges everything into one superpixel.
    noise = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert int(slic_segments(noise, 16, 10.0).max()) == 0
    explainer = get_explainer("lime", samples=20, segments=16)
    labels, fell_back = explainer.superpixels(noise)
    assert fell_back and torch.equal(labels, grid_segments(32, 32, 16, "cpu"))
    photo_labels, photo_fell_back = explainer.superpixels(_photo(32))
    assert not photo_fell_back and int(photo_labels.max()) >= 1
    # One warning per call, counting the images that fell back.
    images = torch.stack([noise, _photo(32), noise.flip(-1)])
    with pytest.warns(UserWarning, match="single superpixel in 2 of 3 images") as record:
        maps = explainer(fc_model, images, target=0).maps
    assert maps.shape == (3, 1, 32, 32)
    assert sum("superpixel" in str(w.message) for w in record) == 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"samples": 1}, "samples must be an integer >= 2"),
        ({"segments": 0}, "segments must be an integer >= 2"),
        ({"kernel_width": 0}, "kernel_width must be > 0"),
        ({"compactness": -1}, "compactness must be > 0"),
        ({"alpha": -0.1}, "alpha"),
        ({"segmentation": "quickshift"}, "segmentation must be 'slic' or 'grid'"),
    ],
)
def test_lime_rejects_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        get_explainer("lime", **settings)


def test_both_are_registered():
    assert {"guided_gradcam", "lime"} <= set(list_explainers())
    assert get_explainer("Guided-GradCAM").name == "guided_gradcam"
    # A quick smoke of the tiny model on the defaults, so settings round-trip.
    model = tiny_classifier("fc")
    explanation = get_explainer("lime", samples=16)(model, torch.randn(1, 3, 32, 32), target=0)
    assert (
        get_explainer(explanation.method, **explanation.settings).settings == explanation.settings
    )
