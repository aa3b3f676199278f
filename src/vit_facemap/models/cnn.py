"""Convolutional backbones from timm (ResNets; weights from a local file or the hub) for the same heads."""

from __future__ import annotations

import timm
import torch
from torch import nn


class CNNBackbone(nn.Module):
    """timm ``features_only`` network cut at ``out_index``; returns (feature map, pooled vector)."""

    def __init__(self, name: str = "resnet18", in_chans: int = 1, out_index: int = 3,
                 weights: str | None = None) -> None:
        super().__init__()
        self.net = timm.create_model(name, features_only=True, out_indices=(out_index,),
                                     in_chans=in_chans)
        if weights:
            from vit_facemap.models.weights import load_pretrained

            load_pretrained(self.net, weights)
        self.num_features = self.net.feature_info.channels()[-1]
        self.stride = self.net.feature_info.reduction()[-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.net(x)[-1]
        return fmap, fmap.mean((-1, -2))
