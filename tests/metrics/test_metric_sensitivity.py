import torch
from captum.metrics import sensitivity_max

from scouter.metrics import MaxSensitivity, prepare_maps


def tiny_cam_model():
    """Conv features + linear classifier; the explanation of class c is its CAM (1, h, w)."""
    torch.manual_seed(0)
    features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()).double()
    classifier = torch.nn.Linear(4, 5).double()

    def explain(images, classes):
        with torch.no_grad():
            f = features(images)  # (N, 4, H, W)
            w = classifier.weight[classes]  # (N, 4)
            return torch.einsum("nchw,nc->nhw", f, w)[:, None, ::2, ::2]

    return explain


def test_max_sensitivity_equals_captum_on_the_same_perturbations():
    explain = tiny_cam_model()
    g = torch.Generator().manual_seed(2)
    images = torch.randn(3, 3, 10, 10, generator=g, dtype=torch.float64)
    classes = torch.tensor([4, 0, 2])
    metric = MaxSensitivity(explain, generator=torch.Generator().manual_seed(9), batch_size=7)
    deltas = metric.sample_perturbations(images)
    metric.update(images, classes, perturbations=deltas)

    # captum already divides by ‖M(x)‖_F (norm_ord="fro"); giving it the same prepared maps and
    # the same stored δ makes the two estimates identical.
    def explanation_func(inputs, target):
        # captum passes the clean inputs as a 1-tuple and expects a tuple back (as its
        # attribute methods do); perturbed inputs come as a plain tensor.
        if isinstance(inputs, tuple):
            return (prepare_maps(explain(inputs[0], target), (10, 10)),)
        return prepare_maps(explain(inputs, target), (10, 10))

    def perturb_func(inputs):
        return inputs + deltas.flatten(0, 1)

    expected = sensitivity_max(
        explanation_func, images, perturb_func, n_perturb_samples=10, target=classes
    )
    torch.testing.assert_close(metric.per_image(), expected, rtol=1e-10, atol=1e-14)


def test_hand_computed_sensitivity_and_zero_norm_convention():
    # explanation = the image itself (no preparation): ‖δ‖ / ‖x‖, maximised over δ
    metric = MaxSensitivity(lambda x, c: x[:, :1], prepare=False, n_perturbations=2)
    images = torch.tensor([[[[3.0, 4.0]]], [[[0.0, 0.0]]]])  # (2, 1, 1, 2), ‖x‖ = 5 and 0
    deltas = torch.tensor([[[[[0.1, 0.0]]], [[[0.0, -0.2]]]], [[[[0.1, 0.0]]], [[[0.0, 0.0]]]]])
    metric.update(images, torch.tensor([0, 0]), deltas)
    # image 0: max(0.1, 0.2) / 5; image 1: zero norm counts as 1 (as captum) -> 0.1
    torch.testing.assert_close(metric.per_image(), torch.tensor([0.04, 0.1]))


def test_uniform_perturbations_within_radius_and_batched_equals_unbatched():
    explain = tiny_cam_model()
    images = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    classes = torch.tensor([0, 1, 2, 3])
    metric = MaxSensitivity(explain, generator=torch.Generator().manual_seed(0), batch_size=3)
    deltas = metric.sample_perturbations(images)
    assert deltas.abs().max() <= 0.2 and deltas.abs().max() > 0.19
    metric.update(images, classes, deltas)
    one_by_one = MaxSensitivity(explain, batch_size=1)
    for b in range(4):
        one_by_one.update(images[b : b + 1], classes[b : b + 1], deltas[b : b + 1])
    torch.testing.assert_close(one_by_one.per_image(), metric.per_image())
