import math

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate, gaussian_filter

from scouter.metrics import DeletionAUC, InsertionAUC, default_step, rise_blur, rise_curves


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 5),
    )
    return model.double().eval()


def loop_rise_curve(model, image, saliency, cls, mode, step):
    """Plain RISE: one image, one forward per step, pixels moved by coordinates (NumPy)."""
    c, h, w = image.shape
    x = image.numpy()
    order = np.argsort(-saliency.numpy().reshape(-1), kind="stable")  # descending, ties by index
    if mode == "deletion":
        current, source = x.copy(), np.zeros_like(x)
    else:
        k = np.zeros((11, 11))
        k[5, 5] = 1
        k = gaussian_filter(k, 5)
        current = np.stack([correlate(ch, k, mode="constant", cval=0.0) for ch in x])
        source = x
    n_steps = (h * w + step - 1) // step
    scores = []
    for i in range(n_steps + 1):
        with torch.no_grad():
            logits = model(torch.from_numpy(current)[None])
        scores.append(torch.softmax(logits, -1)[0, cls].item())
        rows, cols = np.unravel_index(order[i * step : (i + 1) * step], (h, w))
        current[:, rows, cols] = source[:, rows, cols]
    return np.array(scores)


@pytest.fixture(autouse=True)
def one_thread():
    # The per-step reference loop runs hundreds of tiny forwards; with intra-op threads on a
    # loaded 2-core machine those are dominated by thread contention.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(3, 3, 16, 16, generator=g, dtype=torch.float64)
    maps = torch.rand(3, 1, 16, 16, generator=g, dtype=torch.float64)
    maps[2, 0, :8] = 0.5  # ties: stable order must keep row-major order
    classes = torch.tensor([0, 3, 4])
    return images, maps, classes


@pytest.mark.parametrize("mode", ["insertion", "deletion"])
def test_batched_curves_equal_per_step_loop_point_for_point(batch, mode):
    images, maps, classes = batch
    model = tiny_model()
    step = default_step(16, 16)  # ceil(256 / 224) = 2 -> 128 steps
    curves = rise_curves(model, images, maps, classes, mode, batch_size=37)
    assert curves.shape == (3, 129)
    for b in range(3):
        expected = loop_rise_curve(model, images[b], maps[b, 0], classes[b].item(), mode, step)
        np.testing.assert_allclose(curves[b].numpy(), expected, rtol=1e-10, atol=1e-12)


def test_uneven_last_step_and_auc_is_trapezoid(batch):
    images, maps, classes = batch
    model = tiny_model()
    metric = DeletionAUC(model, step=50, batch_size=1000, prepare=False)  # 256 px: 6 steps
    metric.update(images, maps, classes)
    curves = metric.curves()
    assert curves.shape == (3, 7)
    for b in range(3):
        expected = loop_rise_curve(model, images[b], maps[b, 0], classes[b].item(), "deletion", 50)
        np.testing.assert_allclose(curves[b].numpy(), expected, rtol=1e-10)
        auc = np.trapezoid(expected, np.linspace(0, 1, 7))
        assert metric.per_image()[b].item() == pytest.approx(auc, rel=1e-12)
    assert metric.compute().item() == pytest.approx(metric.per_image().mean().item())


def test_chunk_size_and_update_split_do_not_change_results(batch):
    images, maps, classes = batch
    model = tiny_model()
    maps_small = maps[:, :, ::4, ::4]  # prepared: bilinear up to 16x16
    results = []
    for batch_size, split in [(1, False), (64, True), (10_000, False)]:
        metric = InsertionAUC(model, batch_size=batch_size)
        if split:
            metric.update(images[:1], maps_small[:1], classes[:1])
            metric.update(images[1:], maps_small[1:], classes[1:])
        else:
            metric.update(images, maps_small, classes)
        results.append((metric.per_image(), metric.curves()))
    for per_image, curves in results[1:]:
        torch.testing.assert_close(per_image, results[0][0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(curves, results[0][1], rtol=1e-12, atol=1e-12)


def test_model_is_called_in_chunks_not_per_step(batch):
    images, maps, classes = batch
    model = tiny_model()
    calls = []

    def forward(x):
        calls.append(x.shape[0])
        return model(x)

    rise_curves(forward, images, maps, classes, "deletion", batch_size=200)
    assert calls == [200, 187]  # 3 images x 129 steps = 387 perturbed images


def test_rise_blur_kernel_is_reflect_filtered_delta_with_zero_padding():
    image = torch.zeros(1, 2, 21, 21, dtype=torch.float64)
    image[0, 1, 10, 10] = 1.0
    out = rise_blur(image)
    delta = np.zeros((11, 11))
    delta[5, 5] = 1
    kernel = gaussian_filter(delta, 5, mode="reflect")
    np.testing.assert_allclose(out[0, 1, 5:16, 5:16].numpy(), kernel, rtol=1e-12)
    assert out[0, 0].abs().max() == 0  # channels blurred separately
    truncated = np.exp(-((np.arange(11) - 5) ** 2) / 50)
    truncated = np.outer(truncated, truncated) / np.outer(truncated, truncated).sum()
    assert kernel[0, 0] > truncated[0, 0] * 1.5  # flatter than a truncated Gaussian
    assert math.isclose(kernel.sum(), 1.0)
    # zero padding: a constant image darkens at the border
    ones = rise_blur(torch.ones(1, 1, 21, 21, dtype=torch.float64))
    assert ones[0, 0, 10, 10] == pytest.approx(1.0) and ones[0, 0, 0, 0] < 0.5


def test_dtype_is_preserved_in_float32(batch):
    images, maps, classes = batch
    model = tiny_model().float()
    metric = InsertionAUC(model)
    metric.update(images.float(), maps.float(), classes)
    assert metric.compute().dtype == torch.float32


@pytest.mark.parametrize("metric_type", [InsertionAUC, DeletionAUC])
def test_a_nan_map_has_an_undefined_curve_not_a_score(metric_type):
    model = tiny_model()
    images = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    maps = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    maps[0, 0, 3, 3] = float("nan")
    metric = metric_type(lambda x: model(x), step=16)
    metric.update(images, maps, torch.tensor([1, 2]))
    assert metric.per_image()[0].isnan() and torch.isfinite(metric.per_image()[1])
    assert metric.curves()[0].isnan().all()
