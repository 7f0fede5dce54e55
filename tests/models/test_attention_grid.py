"""The model reports the grid of its explanation maps, and it is what forward returns."""

from __future__ import annotations

import pytest
import torch

from scouter.models.classifier import ModelConfig, build_classifier


@pytest.mark.parametrize(
    ("backbone", "kwargs", "size", "grid"),
    [
        ("tf_efficientnet_lite0", {}, 128, (4, 4)),  # output stride 32: the old 4x4 maps
        ("tf_efficientnet_lite0", {"output_stride": 16}, 128, (8, 8)),  # the composites recipe
        ("test_resnet", {"output_stride": 8}, 28, (4, 4)),
        ("test_resnet", {"output_stride": 8}, 64, (8, 8)),
        ("test_resnet", {"output_stride": 8}, (32, 48), (4, 6)),
    ],
)
def test_configured_grid_is_the_grid_forward_returns(backbone, kwargs, size, grid):
    model = build_classifier(
        ModelConfig(backbone=backbone, num_classes=3, hidden_dim=16, backbone_kwargs=kwargs)
    )
    model.train()
    bn_before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    assert model.attention_grid(size) == grid
    # Reporting the grid is side-effect free: BatchNorm statistics and the mode are unchanged.
    assert model.training
    for key, value in bn_before.items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    height, width = (size, size) if isinstance(size, int) else size
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 3, height, width))
    assert tuple(out.attention.shape) == (2, 3, *grid)
