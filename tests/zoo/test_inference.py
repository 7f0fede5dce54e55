"""model.explain / model.transform: one call from an image file to prediction and map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from scouter.data import preprocess
from tests.zoo.conftest import CLASS_NAMES, tiny_model


@pytest.fixture
def image_file(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (45, 60, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def test_explain_an_image_file_in_one_call(model, image_file, tmp_path):
    result = model.explain(image_file)
    batch = preprocess(model, [Image.open(image_file)])
    logits = model(batch).logits
    assert torch.equal(result.logits, logits.detach())
    assert result.predictions.tolist() == [int(logits.argmax())]
    assert torch.allclose(result.probabilities.sum(dim=1), torch.ones(1))
    assert result.predicted_names == [CLASS_NAMES[int(logits.argmax())]]
    assert result.method == "slot" and result.maps.shape == (1, 1, 32, 32)  # input resolution
    # SCOUTER's own map of the predicted class, upsampled bilinearly from its 4x4 feature grid
    own = model(batch).attention[:, int(logits.argmax())][:, None].detach()
    assert own.shape[-2:] == (4, 4)
    expected = torch.nn.functional.interpolate(own, size=(32, 32), mode="bilinear")
    assert torch.allclose(result.maps, expected)
    written = result.save(tmp_path / "maps")
    assert [p.name for p in written] == [f"image0_{result.predicted_names[0]}.png"]
    assert Image.open(written[0]).size == (32, 32)


def test_targets_by_name_all_classes_and_fc_models(model, image_file):
    result = model.explain([image_file, image_file], target="all")
    assert result.maps.shape == (2, 3, 32, 32) and result.target_names[0] == CLASS_NAMES
    result = model.explain(image_file, target="square")
    assert result.targets.tolist() == [1]
    fc = tiny_model(head="fc")
    result = fc.explain(image_file)
    assert result.method == "gradcam" and result.maps.shape == (1, 1, 32, 32)
    assert fc.explain(image_file, method="saliency").maps.shape == (1, 1, 32, 32)


def test_bad_inputs_name_the_problem(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        model.explain(tmp_path / "nowhere.png")
    with pytest.raises(ValueError, match=r"unknown class name 'dog'.*circle, square, cross"):
        model.explain(np.zeros((8, 8), np.uint8), target="dog")
    model.data_config = None
    with pytest.raises(ValueError, match="data config"):
        model.transform  # noqa: B018


def test_transform_gives_the_model_input(model, image_file):
    x = model.transform(image_file)
    assert x.shape == (1, 32, 32)
    assert torch.equal(x, preprocess(model, [Image.open(image_file)])[0])
