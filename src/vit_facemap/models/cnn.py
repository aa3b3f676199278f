"""Convolutional backbones from timm (ResNets; weights from a local file or the hub) for the same heads."""

from __future__ import annotations

import timm
import torch
from torch import nn

from vit_facemap.models import timm_knows


class CNNBackbone(nn.Module):
    """timm ``features_only`` network cut at ``out_index``; returns (feature map, pooled vector)."""

    def __init__(self, name: str = "resnet18", in_chans: int = 1, out_index: int = 3,
                 weights: str | None = None) -> None:
        super().__init__()
        if not timm_knows(name):
            raise ValueError(f"timm_name {name!r} is not a model timm knows")
        try:
            self.net = timm.create_model(name, features_only=True, out_indices=(out_index,),
                                         in_chans=in_chans)
        except IndexError:
            n = len(timm.create_model(name, features_only=True, in_chans=in_chans).feature_info)
            raise ValueError(f"cnn_out_index {out_index}: {name} has feature stages 0 to "
                             f"{n - 1}") from None
        if weights:
            _load(self.net, name, in_chans, weights)
        self.num_features = self.net.feature_info.channels()[-1]
        self.stride = self.net.feature_info.reduction()[-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.net(x)[-1]
        return fmap, fmap.mean((-1, -2))


def _load(net: nn.Module, name: str, in_chans: int, weights: str) -> None:
    """Weights of a timm checkpoint (the whole network) or of this project's runs (the
    feature wrapper alone) into the feature wrapper ``net``."""
    from vit_facemap.errors import DataError
    from vit_facemap.models.weights import load_pretrained

    full = timm.create_model(name, in_chans=in_chans)
    head = full.pretrained_cfg.get("classifier") or "fc"
    try:
        load_pretrained(full, weights, optional=(f"{head}.",))
    except DataError as whole:
        try:  # a run of this project keeps the wrapper's own names
            load_pretrained(net, weights)
            return
        except DataError:
            raise whole from None
    # the wrapper holds the network's first modules in their order, some renamed
    # (convnext's stem.0 -> stem_0), so tensors are matched by position
    mine = net.state_dict()
    theirs = list(full.state_dict().values())[:len(mine)]
    if any(a.shape != b.shape for a, b in zip(mine.values(), theirs, strict=True)):
        raise DataError(f"weights fit {name} but not its feature layers", weights)
    net.load_state_dict(dict(zip(mine, theirs, strict=True)))
