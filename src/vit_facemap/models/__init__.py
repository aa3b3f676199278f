"""Keypoint models: a backbone (ViT, hybrid ViT, CNN, FMnet) and a head (heatmap or regression).

:class:`ModelConfig` describes a model completely and is saved (JSON) beside its weights
(safetensors), so :func:`build_model` rebuilds it for prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vit_facemap.config import check_fields
from vit_facemap.models.heads import HeatmapHead, RegressionHead, SkipHeatmapHead

FAMILIES = ("vit", "hybrid", "cnn", "fmnet")
RECIPE = dict(depth=4, embed_dim=128, num_heads=4)  # the ViT of the default recipe
SIZES = {  # timm's ViT sizes
    "tiny": dict(depth=12, embed_dim=192, num_heads=3),
    "small": dict(depth=12, embed_dim=384, num_heads=6),
    "base": dict(depth=12, embed_dim=768, num_heads=12),
}
HEADS = ("heatmap", "regression")


def with_settings(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Model settings ``base`` with ``changes`` over them. A change to a family with no stem
    to choose (all but the hybrid) also resets a ``stem`` that ``changes`` does not name:
    the default recipe's first stage has a ResNet stem, which ``ModelConfig`` refuses on a
    plain ViT or a CNN, and moving that recipe to another family should not need
    ``"stem": "conv"`` said as well. Likewise a change of family, stem or timm network leaves
    behind a ``weights`` file that ``changes`` does not name: it was made for the base's
    network (the default's first stage, say, whose file no conv-stem second stage fits)."""
    out = {**base, **changes}
    if out.get("family", "hybrid") != "hybrid" and "stem" not in changes:
        out["stem"] = "conv"
    if "weights" not in changes and any(out.get(k) != base.get(k)
                                        for k in ("family", "stem", "timm_name")):
        out["weights"] = None
    return out


def timm_knows(name: str) -> bool:
    """Whether timm can build ``name``: a registered model, or a hub or local source
    (``hf-hub:org/name``, ``local-dir:...``) that only building can check."""
    import timm

    return ":" in name or timm.is_model(name)


@dataclass
class ModelConfig:
    family: str = "hybrid"          # vit | hybrid | cnn | fmnet
    head: str = "heatmap"           # heatmap | regression (CLS token)
    # ViT size: tiny | small | base (timm's, 12 blocks), or None for this project's CPU-sized
    # recipe (4 blocks of 128); depth, embed_dim and num_heads given explicitly override it
    size: str | None = None
    depth: int | None = None
    embed_dim: int | None = None
    num_heads: int | None = None
    patch_size: int = 16            # plain ViT only
    stem_widths: list[int] = field(default_factory=lambda: [24, 48, 96, 128])  # hybrid conv stem
    # hybrid: "conv" (the stem_widths stack) or a timm CNN cut at cnn_out_index ("resnet18",
    # as in the ViT-R50 hybrid), whose deeper features find a face's parts more like a CNN;
    # trained with the ViT (weights start the whole hybrid, not the CNN alone)
    stem: str = "conv"
    skip: bool = True               # hybrid heatmap head: fuse the stem's fine map (stride 4)
    timm_name: str | None = None    # a registered timm model instead (vit or cnn)
    cnn_out_index: int = 3          # CNN or CNN stem: the stage used (3: stride 16 for ResNets)
    decoder_channels: int = 64
    n_up: int = 2                   # 2x deconvolutions in the heatmap head
    channels: int = 1               # 1 (gray) or 3 (RGB)
    input_w: int = 192
    input_h: int = 128
    drop_path: float = 0.0
    # ViT and hybrid: a learned absolute position per token (timm's); False leaves it out, so a
    # token knows where it sits only from the stem's borders, as in a fully convolutional net
    pos_embed: bool = True
    # local contrast equalisation of every input (CLAHE clip limit, transforms.equalize; 0:
    # off), in training and prediction alike; the default recipe's crop stages use it
    equalize: float = 0.0
    weights: str | None = None      # pretrained backbone: a file (.safetensors, .pth) or hf-hub:org/name

    def __post_init__(self) -> None:
        check_fields(self, "model")
        if self.size is not None and self.size not in SIZES:
            raise ValueError(f"unknown ViT size {self.size!r}; choose one of {tuple(SIZES)}")
        for name in ("depth", "embed_dim", "num_heads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"model {name} must be at least 1, got {getattr(self, name)}")
        if self.channels not in (1, 3):
            raise ValueError(f"model channels must be 1 (gray) or 3 (RGB), got {self.channels}")
        if min(self.input_w, self.input_h, self.patch_size, self.decoder_channels) < 1:
            raise ValueError("model input_w, input_h, patch_size and decoder_channels must be "
                             "at least 1")
        if self.family not in FAMILIES:
            raise ValueError(f"unknown model family {self.family!r}; choose one of {FAMILIES}")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose one of {HEADS}")
        if self.family == "fmnet" and self.head != "heatmap":
            raise ValueError("FMnet only has a heatmap head")
        # values torch or timm would refuse only when the model is built or first trained,
        # with a message that does not name the setting
        if self.n_up < 0:
            raise ValueError(f"model n_up must be at least 0, got {self.n_up}")
        if not 0 <= self.drop_path <= 1:
            raise ValueError(f"model drop_path must be in [0, 1], got {self.drop_path}")
        if not self.equalize >= 0:  # NaN too
            raise ValueError(f"model equalize (a CLAHE clip limit) must be >= 0 (0: off), got "
                             f"{self.equalize}")
        self.equalize = float(self.equalize)
        if self.family == "hybrid" and (not self.stem_widths or min(self.stem_widths) < 1):
            raise ValueError("model stem_widths must be one or more widths of at least 1, got "
                             f"{self.stem_widths}")
        if self.stem != "conv":
            if self.family != "hybrid":
                raise ValueError(f"model stem {self.stem!r}: only the hybrid family has a stem "
                                 f"to choose (family {self.family!r})")
            if not timm_knows(self.stem):  # refused when the recipe is read
                raise ValueError(f"model stem {self.stem!r} is neither 'conv' nor a CNN timm "
                                 "knows")
        if self.family in ("vit", "hybrid") and self.timm_name is None:
            dims = self.dims()
            if dims["embed_dim"] % dims["num_heads"]:
                raise ValueError(f"model embed_dim {dims['embed_dim']} must be a multiple of "
                                 f"num_heads {dims['num_heads']}")
        if self.family == "fmnet":
            from vit_facemap.models.fmnet import check_input_size

            check_input_size(self.input_size)
        self.stem_widths = [int(w) for w in self.stem_widths]

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_w, self.input_h

    def dims(self) -> dict[str, int]:
        """depth, embed_dim and num_heads of the ViT: those given, the others the size's (or
        the recipe's). Resolved here, not stored, so that a ``--config`` of ``{"size": "small"}``
        over a profile's settings still gives a small ViT."""
        base = SIZES[self.size] if self.size else RECIPE
        return {k: base[k] if getattr(self, k) is None else getattr(self, k) for k in base}


class KeypointModel(nn.Module):
    """``forward(x)`` returns ``{"heatmap": (B, K, h, w)}`` or ``{"coords": (B, K, 2), "vis": (B, K)}``.

    ``stride`` is the number of input pixels per heatmap cell.
    """

    def __init__(self, config: ModelConfig, n_keypoints: int) -> None:
        super().__init__()
        self.config = config
        self.n_keypoints = n_keypoints
        c = config
        self.fmnet = None
        self.backbone = None
        if c.family == "fmnet":
            from vit_facemap.models.fmnet import FMnetModel

            if c.weights:
                # FMnet is built from facemap's network code alone: a file would be ignored.
                # Refused when built, not in ModelConfig, so that a run saved with the
                # setting (trained from random weights) still loads (load_run drops it)
                raise ValueError("model weights: FMnet starts from random weights here; "
                                 "pretrained weights start the vit, hybrid and cnn families")

            self.fmnet = FMnetModel(n_keypoints, c.channels, c.input_size)
            self.stride = self.fmnet.stride
            return
        if c.family in ("vit", "hybrid"):
            from vit_facemap.models.vit import build_vit

            self.backbone = build_vit(
                patch_size=c.patch_size, input_size=c.input_size, in_chans=c.channels,
                **c.dims(), hybrid=c.family == "hybrid",
                stem_widths=tuple(c.stem_widths), timm_name=c.timm_name, weights=c.weights,
                drop_path=c.drop_path, pos_embed=c.pos_embed, stem=c.stem,
                cnn_out_index=c.cnn_out_index,
            )
        else:
            from vit_facemap.models.cnn import CNNBackbone

            self.backbone = CNNBackbone(c.timm_name or "resnet18", c.channels, c.cnn_out_index,
                                        c.weights)
            # the heads and masked pre-training assume whole cells at the network's stride
            if c.input_w % self.backbone.stride or c.input_h % self.backbone.stride:
                raise ValueError(f"input {c.input_w}x{c.input_h} must be a multiple of the "
                                 f"CNN's stride {self.backbone.stride}")
        feat = self.backbone.num_features
        stem = getattr(self.backbone, "stem", None)
        self.use_skip = c.head == "heatmap" and c.skip and stem is not None
        if self.use_skip:
            self.head = SkipHeatmapHead(feat, stem.skip_channels, n_keypoints, c.decoder_channels)
            self.stride = stem.skip_stride
        elif c.head == "heatmap":
            # keypoints are read back as cell * stride: a stride that is not a whole number
            # (patch 14 halved twice) would be rounded down and every keypoint pulled to the
            # top left, silently
            if self.backbone.stride % 2**c.n_up:
                raise ValueError(f"n_up {c.n_up}: the backbone's stride {self.backbone.stride} "
                                 f"is not a multiple of 2**{c.n_up}; choose an n_up whose "
                                 "upsampling leaves a whole-pixel heatmap stride")
            self.head = HeatmapHead(feat, n_keypoints, c.n_up, c.decoder_channels)
            self.stride = self.backbone.stride // 2**c.n_up
        else:
            self.head = RegressionHead(feat, n_keypoints)
            self.stride = 1

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.fmnet is not None:
            return {"heatmap": self.fmnet(x)}
        grid, token = self.backbone(x)
        if self.use_skip:
            return {"heatmap": self.head(grid, self.backbone.stem.skip)}
        if self.config.head == "heatmap":
            return {"heatmap": self.head(grid)}
        coords, vis = self.head(token)
        scale = torch.tensor([self.config.input_w - 1, self.config.input_h - 1],
                             device=coords.device, dtype=coords.dtype)
        return {"coords": coords * scale, "vis": vis}


def build_model(config: ModelConfig, n_keypoints: int) -> KeypointModel:
    return KeypointModel(config, n_keypoints)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
