"""Convolutional backbones from timm (ResNets, no pretrained weights) for the same heads."""

from __future__ import annotations

import timm
import torch
from torch import nn


class CNNBackbone(nn.Module):
    """timm ``features_only`` network cut at ``out_index``; returns (feature map, pooled vector)."""

    def __init__(self, name: str = "resnet18", in_chans: int = 1, out_index: int = 3,
                 weights: str | None = None) -> None:
        super().__init__()
        kwargs: dict = dict(features_only=True, out_indices=(out_index,), in_chans=in_chans)
        if weights:
            kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)))
        self.net = timm.create_model(name, **kwargs)
        self.num_features = self.net.feature_info.channels()[-1]
        self.stride = self.net.feature_info.reduction()[-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.net(x)[-1]
        return fmap, fmap.mean((-1, -2))
