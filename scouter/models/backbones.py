"""timm backbones that return the last feature map ``(B, C, h, w)``, CNN or ViT alike."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import timm
import torch
from torch import nn

Stem = Literal["default", "mnist"]


class UnknownBackboneError(ValueError):
    """Raised when timm has no model of the requested name."""


class TimmBackbone(nn.Module):
    """A timm model truncated before pooling, returning the last feature map.

    CNNs (ResNet, ResNeSt, EfficientNet, ConvNeXt, …) return their last stage; token models (ViT,
    DeiT, …) drop their class/register tokens and reshape the patch tokens to the patch grid;
    channels-last models (Swin) are permuted to channels-first. The channel count ``C`` is read
    from the model (``out_channels``), never passed by hand.

    Args:
        name: any ``timm.list_models()`` name.
        pretrained: load timm's pretrained weights (hub or URL; needs network) or, with
            ``pretrained_file``, a local file.
        pretrained_file: local weight file in timm's key layout (``.pth``/``.bin``/``.safetensors``),
            loaded through timm's own mechanism (``pretrained_cfg_overlay={"file": ...}``), which
            adapts the stem to ``in_chans`` and drops a classifier of a different size.
        in_chans: input channels (1 for grayscale; timm adapts pretrained stems).
        stem: ``"default"`` or ``"mnist"``: the reference's MNIST stem, a fresh
            1-channel 3×3 stride-2 ``conv1`` without bias (plain ResNets only;
            docs/method.md#mnist-stem).
        **timm_kwargs: passed to ``timm.create_model`` (e.g. ``img_size`` for ViTs,
            ``drop_path_rate``).

    Attributes:
        model: the timm model (no classifier, no pooling).
        out_channels: ``C``.
    """

    def __init__(
        self,
        name: str,
        *,
        pretrained: bool = False,
        pretrained_file: str | Path | None = None,
        in_chans: int = 3,
        stem: Stem = "default",
        **timm_kwargs,
    ) -> None:
        super().__init__()
        if not timm.is_model(name):
            close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
            hint = f" Similar names: {', '.join(close)}." if close else ""
            raise UnknownBackboneError(
                f"timm does not know a model named {name!r}.{hint} "
                "See timm.list_models() for every name."
            )
        if pretrained_file is not None:
            path = Path(pretrained_file)
            if not path.is_file():
                raise FileNotFoundError(
                    f"pretrained_file {str(path)!r} for {name!r} does not exist"
                )
            pretrained = True
            timm_kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
        if stem not in ("default", "mnist"):
            raise ValueError(f"stem must be 'default' or 'mnist', got {stem!r}")
        self.name = name
        self.stem = stem
        self.in_chans = in_chans
        model = timm.create_model(
            name,
            pretrained=pretrained,
            num_classes=0,
            global_pool="",
            in_chans=1 if stem == "mnist" else in_chans,
            **timm_kwargs,
        )
        if stem == "mnist":
            conv1 = getattr(model, "conv1", None)
            if not isinstance(conv1, nn.Conv2d):
                raise ValueError(
                    f"stem='mnist' replaces a plain conv1 (ResNet-18/34/50), but {name!r} has "
                    f"{type(conv1).__name__} there"
                )
            # The reference swaps in a fresh 3x3/2 one-channel conv after creation
            # (docs/method.md#mnist-stem).
            model.conv1 = nn.Conv2d(1, conv1.out_channels, 3, stride=2, padding=1, bias=False)
            self.in_chans = 1
        self.model = model
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 0))
        self.channels_last = getattr(model, "output_fmt", "NCHW") == "NHWC"
        self.out_channels = int(model.num_features)

    def _token_grid(self, height: int, width: int) -> tuple[int, int]:
        patch_embed = self.model.patch_embed
        if hasattr(patch_embed, "dynamic_feat_size"):
            return tuple(patch_embed.dynamic_feat_size((height, width)))
        return tuple(patch_embed.grid_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Compute the last feature map.

        Args:
            images: ``(B, in_chans, H, W)``.

        Returns:
            ``(B, C, h, w)``.
        """
        if images.ndim != 4 or images.shape[1] != self.in_chans:
            raise ValueError(
                f"{self.name} expects images (B, {self.in_chans}, H, W), got {tuple(images.shape)}"
            )
        features = self.model.forward_features(images)
        if features.ndim == 3:  # token model: (B, prefix + h*w, C)
            tokens = features[:, self.num_prefix_tokens :]
            grid_h, grid_w = self._token_grid(*images.shape[-2:])
            if grid_h * grid_w != tokens.shape[1]:
                raise RuntimeError(
                    f"{self.name}: {tokens.shape[1]} patch tokens do not form a "
                    f"{grid_h}x{grid_w} grid"
                )
            return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, grid_h, grid_w)
        if self.channels_last:
            return features.permute(0, 3, 1, 2)
        return features
