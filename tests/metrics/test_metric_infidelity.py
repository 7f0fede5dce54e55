import torch
from captum.metrics import infidelity

from scouter.metrics import Infidelity, prepare_maps


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 5),
    )
    return model.double().eval()


def test_infidelity_equals_captum_on_the_same_perturbations():
    model = tiny_model()
    g = torch.Generator().manual_seed(3)
    images = torch.randn(4, 3, 12, 12, generator=g, dtype=torch.float64)
    maps = torch.randn(4, 1, 6, 6, generator=g, dtype=torch.float64)
    classes = torch.tensor([1, 0, 4, 2])
    metric = Infidelity(model, generator=torch.Generator().manual_seed(7), batch_size=9)
    perturbations = metric.sample_perturbations(images)  # (4, 10, 3, 12, 12)
    metric.update(images, maps, classes, perturbations=perturbations)

    def perturb_func(inputs):  # captum repeats each image n times (repeat_interleave)
        noise = perturbations.flatten(0, 1)
        return noise, inputs - noise

    prepared = prepare_maps(maps, (12, 12)).expand(-1, 3, -1, -1)  # broadcast over channels
    expected = infidelity(
        lambda x: model(x).softmax(-1),
        perturb_func,
        images,
        prepared,
        target=classes,
        n_perturb_samples=10,
        normalize=True,
    )
    torch.testing.assert_close(metric.per_image(), expected, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(metric.compute(), expected.mean())


def test_sampled_perturbations_have_requested_sigma_and_are_seeded():
    model = tiny_model()
    images = torch.zeros(2, 3, 32, 32, dtype=torch.float64)
    a = Infidelity(model, generator=torch.Generator().manual_seed(1))
    b = Infidelity(model, generator=torch.Generator().manual_seed(1))
    pa, pb = a.sample_perturbations(images), b.sample_perturbations(images)
    assert pa.shape == (2, 10, 3, 32, 32) and torch.equal(pa, pb)
    assert abs(pa.std().item() - 0.2) < 0.01
    assert a.settings == {
        "noise": "gaussian",
        "sigma": 0.2,
        "n_perturbations": 10,
        "normalize": True,
    }


def test_batch_size_and_update_split_do_not_change_results():
    model = tiny_model()
    g = torch.Generator().manual_seed(5)
    images = torch.randn(3, 3, 8, 8, generator=g, dtype=torch.float64)
    maps = torch.rand(3, 2, 4, 4, generator=g, dtype=torch.float64)
    classes = torch.tensor([0, 1, 1])
    noise = torch.randn(3, 10, 3, 8, 8, generator=g, dtype=torch.float64) * 0.2
    whole = Infidelity(model, batch_size=1000)
    whole.update(images, maps, classes, noise)
    split = Infidelity(model, batch_size=4)
    split.update(images[:2], maps[:2], classes[:2], noise[:2])
    split.update(images[2:], maps[2:], classes[2:], noise[2:])
    torch.testing.assert_close(split.per_image(), whole.per_image(), rtol=1e-12, atol=1e-15)
