"""TimmBackbone: feature maps from CNNs and ViTs, channel inference, stems, local weights."""

from __future__ import annotations

import pytest
import timm
import torch

from scouter.models.backbones import TimmBackbone, UnknownBackboneError
from scouter.models.classifier import ModelConfig, build_classifier


def timm_twin(backbone: TimmBackbone, **kwargs) -> torch.nn.Module:
    """A full timm model (classifier included) of the same name, holding the backbone's weights.

    Built under another seed so equal outputs come from the copied weights, not a shared init.
    """
    torch.manual_seed(12345)
    model = timm.create_model(backbone.name, in_chans=backbone.in_chans, **kwargs).eval()
    result = model.load_state_dict(backbone.model.state_dict(), strict=False)
    assert not result.unexpected_keys
    # Only the classifier is missing: every feature weight was copied.
    assert all(k.split(".")[0] in ("fc", "classifier", "head") for k in result.missing_keys)
    return model


@pytest.mark.parametrize(
    "name, size, grid",
    [
        ("resnet18", 64, (2, 2)),
        ("test_resnet", 64, (2, 2)),
        ("test_resnet", (96, 64), (3, 2)),
        ("test_convnext", (64, 32), (2, 1)),
        ("test_mambaout", 64, (2, 2)),
        ("test_vit", (64, 48), (4, 3)),
    ],
)
def test_backbone_equals_timm_last_intermediate(name, size, grid):
    """The feature map is timm's own last NCHW intermediate (final norm applied), value by value.

    ``forward_intermediates`` is timm's independent path to a feature grid: it reshapes ViT tokens
    and permutes channels-last maps itself, so the equality pins the prefix-token drop, the
    row-major token grid and the NHWC permutation, on non-square inputs too.
    """
    height, width = (size, size) if isinstance(size, int) else size
    torch.manual_seed(0)
    backbone = TimmBackbone(name).eval()
    images = torch.rand(2, 3, height, width)
    with torch.no_grad():
        features = backbone(images)
        expected = timm_twin(backbone).forward_intermediates(
            images, indices=1, norm=True, output_fmt="NCHW", intermediates_only=True
        )[-1]
    assert features.shape == (2, backbone.out_channels, *grid)
    torch.testing.assert_close(features, expected)


@pytest.mark.parametrize("name", ["test_resnet", "test_efficientnet"])
def test_pooled_backbone_features_equal_timm_pre_logits(name):
    """Average-pooling the map gives timm's pooled features (``num_classes=0``): nothing of the
    last stage (e.g. EfficientNet's ``conv_head``) is cut off, nothing is added."""
    torch.manual_seed(0)
    backbone = TimmBackbone(name).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        features = backbone(images)
        expected = timm_twin(backbone, num_classes=0)(images)
    assert features.shape == (2, backbone.out_channels, 2, 2)
    torch.testing.assert_close(features.mean(dim=(2, 3)), expected)


def test_resnet18_channels_and_grid_at_reference_size():
    backbone = TimmBackbone("resnet18").eval()
    assert backbone.out_channels == 512
    # 260 px -> 9x9, the reference's grid (docs/method.md#backbone-features).
    assert backbone(torch.rand(1, 3, 260, 260)).shape == (1, 512, 9, 9)


def test_vit_tokens_become_a_grid_without_class_token():
    backbone = TimmBackbone("test_vit").eval()
    assert backbone.num_prefix_tokens >= 1
    images = torch.rand(2, 3, 64, 64)
    features = backbone(images)
    tokens = backbone.model.forward_features(images)
    grid = features.shape[-1]
    assert features.shape == (2, backbone.out_channels, grid, grid)
    assert grid * grid == tokens.shape[1] - backbone.num_prefix_tokens
    # Patch token (row 1, col 2) sits at grid position [1, 2]; prefix tokens are dropped.
    index = backbone.num_prefix_tokens + 1 * grid + 2
    torch.testing.assert_close(features[:, :, 1, 2], tokens[:, index])


def test_channels_last_model_is_permuted():
    backbone = TimmBackbone("test_mambaout").eval()
    images = torch.rand(1, 3, 64, 64)
    features = backbone(images)
    nhwc = backbone.model.forward_features(images)
    torch.testing.assert_close(features, nhwc.permute(0, 3, 1, 2))
    assert features.shape[1] == backbone.out_channels


def test_one_channel_input():
    backbone = TimmBackbone("resnet18", in_chans=1).eval()
    images = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        features = backbone(images)
        expected = timm_twin(backbone, num_classes=0)(images)
    assert features.shape == (2, 512, 1, 1)
    torch.testing.assert_close(features.flatten(1), expected)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        backbone(torch.rand(2, 3, 32, 32))


def test_mnist_stem_is_the_reference_conv():
    backbone = TimmBackbone("resnet18", stem="mnist")
    conv = backbone.model.conv1
    assert (conv.in_channels, conv.kernel_size, conv.stride, conv.padding, conv.bias) == (
        1,
        (3, 3),
        (2, 2),
        (1, 1),
        None,
    )
    # 260 px -> 130 (stem) -> 65 (maxpool) -> 65, 33, 17, 9: the reference's 9x9 grid.
    assert backbone(torch.rand(1, 1, 260, 260)).shape == (1, 512, 9, 9)


def test_mnist_stem_refuses_deep_stem_models():
    with pytest.raises(ValueError, match="plain conv1"):
        TimmBackbone("resnest26d", stem="mnist")


def test_unknown_model_is_named():
    with pytest.raises(UnknownBackboneError, match="resnet1000"):
        TimmBackbone("resnet1000")


def test_local_weight_file_is_loaded_through_timm(tmp_path):
    source = timm.create_model("resnet18", num_classes=1000)
    path = tmp_path / "resnet18_weights.pth"
    torch.save(source.state_dict(), path)
    backbone = TimmBackbone("resnet18", pretrained_file=str(path))
    for key, value in backbone.model.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[key], msg=key)


def test_local_weight_file_adapts_stem_to_one_channel(tmp_path):
    source = timm.create_model("resnet18")
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    backbone = TimmBackbone("resnet18", pretrained_file=str(path), in_chans=1)
    # timm sums the RGB filters for a 1-channel stem.
    torch.testing.assert_close(
        backbone.model.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True)
    )


def test_missing_local_weight_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        TimmBackbone("resnet18", pretrained_file=str(tmp_path / "nope.pth"))


@pytest.mark.parametrize("head", ["xslot", "fc"])
def test_classifier_infers_channels_from_backbone(head):
    model = build_classifier(ModelConfig(backbone="test_vit", num_classes=4, head=head)).eval()
    out = model(torch.rand(2, 3, 64, 64))
    assert out.logits.shape == (2, 4)
    if head == "xslot":
        assert out.attention.shape[:2] == (2, 4)
        assert model.head.in_channels == model.backbone.out_channels
    else:
        assert out.attention is None
