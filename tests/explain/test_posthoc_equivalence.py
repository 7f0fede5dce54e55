"""Post-hoc baselines through our interface equal the independent implementations they wrap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import (
    GuidedBackprop,
    IntegratedGradients,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)

from scouter.explain import get_explainer
from scouter.explain.base import LogitModule

TARGETS = torch.tensor([2, 0])


def logits_of(model):
    return lambda x: model(x).logits


@pytest.mark.parametrize("head", ["fc", "xslot"])
def test_gradcam_equals_captum_layer_gradcam(head, fc_model, scouter_model, images):
    model = fc_model if head == "fc" else scouter_model
    ours = get_explainer("gradcam")(model, images, target=TARGETS).maps
    direct = LayerGradCam(logits_of(model), model.backbone).attribute(images, target=TARGETS)
    torch.testing.assert_close(ours, direct)


def test_integrated_gradients_equal_captum(scouter_model, images):
    ours = get_explainer("ig", steps=16, reduce="sum")(scouter_model, images, target=TARGETS)
    direct = IntegratedGradients(logits_of(scouter_model)).attribute(
        images, baselines=0.0, target=TARGETS, n_steps=16
    )
    torch.testing.assert_close(ours.maps, direct.sum(1, keepdim=True), rtol=1e-4, atol=1e-6)


def test_integrated_gradients_are_complete(fc_model, images):
    """Σ attributions = logit(x) − logit(0), the axiom captum's IG must satisfy on our model."""
    maps = get_explainer("ig", steps=64, reduce="sum")(fc_model, images, target=TARGETS).maps
    logits = fc_model(images).logits.gather(1, TARGETS[:, None])[:, 0]
    baseline = fc_model(torch.zeros_like(images)).logits.gather(1, TARGETS[:, None])[:, 0]
    torch.testing.assert_close(maps.sum(dim=(1, 2, 3)), logits - baseline, rtol=0.02, atol=0.02)


def test_smoothgrad_equals_captum_noise_tunnel(fc_model, images):
    ours = get_explainer("smoothgrad", samples=4, stdev=0.3, seed=3)(
        fc_model, images, target=TARGETS
    )
    torch.manual_seed(3)  # the explainer's seed, on captum's global generator
    direct = NoiseTunnel(Saliency(logits_of(fc_model))).attribute(
        images, nt_type="smoothgrad", nt_samples=4, stdevs=0.3, target=TARGETS
    )
    torch.testing.assert_close(ours.maps, direct.abs().sum(1, keepdim=True), rtol=1e-4, atol=1e-6)


def test_smoothgrad_noise_is_seeded_and_leaves_the_global_generator_alone(fc_model, images):
    """A map must not depend on what ran before it in the process (a leaderboard's worker runs
    many explainers one after another): same seed, same map, whatever the global RNG state."""
    explainer = get_explainer("smoothgrad", samples=4, stdev=0.3)
    torch.manual_seed(11)
    state = torch.get_rng_state()
    first = explainer(fc_model, images, target=TARGETS).maps
    assert torch.equal(torch.get_rng_state(), state)
    torch.rand(100)  # advance the global generator
    again = explainer(fc_model, images, target=TARGETS).maps
    other = get_explainer("smoothgrad", samples=4, stdev=0.3, seed=1)(
        fc_model, images, target=TARGETS
    ).maps
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.allclose(first, other)


def test_saliency_and_guided_backprop_equal_captum(fc_model, images):
    saliency = get_explainer("saliency", reduce="max_abs")(fc_model, images, target=TARGETS)
    direct = Saliency(logits_of(fc_model)).attribute(images, target=TARGETS)
    torch.testing.assert_close(saliency.maps, direct.amax(1, keepdim=True))
    guided = get_explainer("guided_backprop", reduce="sum")(fc_model, images, target=TARGETS)
    direct = GuidedBackprop(LogitModule(fc_model)).attribute(images, target=TARGETS)
    torch.testing.assert_close(guided.maps, direct.sum(1, keepdim=True))


def test_occlusion_is_leave_one_patch_out(fc_model, images):
    ours = get_explainer("occlusion", window=32)(fc_model, images, target=TARGETS).maps
    direct = Occlusion(logits_of(fc_model)).attribute(
        images, sliding_window_shapes=(3, 32, 32), strides=(3, 32, 32), target=TARGETS
    )
    torch.testing.assert_close(ours, direct.mean(1, keepdim=True))
    # By hand: the top-left patch's value is the logit drop when that patch is zeroed.
    occluded = images.clone()
    occluded[:, :, :32, :32] = 0
    drop = (fc_model(images).logits - fc_model(occluded).logits).gather(1, TARGETS[:, None])
    torch.testing.assert_close(ours[:, 0, 0, 0], drop[:, 0], rtol=1e-4, atol=1e-5)


def test_gradcam_on_an_fc_head_is_cam_over_grid_size(fc_model, images):
    """For global-average-pool + linear, ∂logit/∂A = W_c / (h·w): Grad-CAM = CAM / (h·w)."""
    gradcam = get_explainer("gradcam")(fc_model, images, target=TARGETS).maps
    cam = get_explainer("cam")(fc_model, images, target=TARGETS).maps
    features = fc_model.backbone(images)
    by_hand = torch.einsum("nc,nchw->nhw", fc_model.head.fc.weight[TARGETS], features)[:, None]
    torch.testing.assert_close(cam, by_hand, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gradcam, cam / features[0, 0].numel(), rtol=1e-4, atol=1e-6)


def test_cam_rejects_a_scouter_head(scouter_model, images):
    with pytest.raises(ValueError, match="needs an FC head"):
        get_explainer("cam")(scouter_model, images, target=0)


def _pytorch_grad_cam_pipeline(maps: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """pytorch-grad-cam's post-processing (ReLU, min–max, OpenCV resize) applied to our maps."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    relu = maps[:, 0].clamp_min(0).cpu().numpy()
    return scale_cam_image(scale_cam_image(relu, size[::-1]))


@pytest.mark.parametrize("head", ["fc", "xslot"])
def test_gradcam_plus_plus_equals_pytorch_grad_cam(head, fc_model, scouter_model):
    from pytorch_grad_cam import GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = fc_model if head == "fc" else scouter_model
    images = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(5))  # 3×3 grid
    ours = get_explainer("gradcam++")(model, images, target=TARGETS).maps
    reference = GradCAMPlusPlus(LogitModule(model), [model.backbone])(
        images, [ClassifierOutputTarget(int(c)) for c in TARGETS]
    )
    np.testing.assert_allclose(_pytorch_grad_cam_pipeline(ours, (96, 96)), reference, atol=1e-4)


def test_scorecam_equals_pytorch_grad_cam(fc_model):
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    targets = torch.tensor([1])
    explainer = get_explainer("scorecam", score="softmax_logit", align_corners=True)
    ours = explainer(fc_model, images, target=targets).maps
    cam = ScoreCAM(LogitModule(fc_model), [fc_model.backbone])
    cam.batch_size = 96
    reference = cam(images, [ClassifierOutputTarget(1)])
    np.testing.assert_allclose(_pytorch_grad_cam_pipeline(ours, (64, 64)), reference, atol=1e-4)


def test_scorecam_probability_weights_are_masked_input_probabilities(fc_model, images):
    """Paper variant: w_k = softmax(f(x ⊙ H_k))_c, checked for one channel by hand."""
    explainer = get_explainer("scorecam")
    features = fc_model.backbone(images[:1]).detach()
    weights = explainer.cam_weights(fc_model, images[:1], torch.tensor([2]), features, None)
    mask = torch.nn.functional.interpolate(features[:, 5:6], size=(64, 64), mode="bilinear")
    mask = (mask - mask.min()) / (mask.max() - mask.min() + 1e-8)
    probability = fc_model(images[:1] * mask).logits.softmax(1)[0, 2]
    torch.testing.assert_close(weights[0, 5], probability, rtol=1e-4, atol=1e-6)
