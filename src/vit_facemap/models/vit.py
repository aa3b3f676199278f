"""Vision Transformer backbones (timm) that return a token grid for the keypoint heads.

Plain ViTs of any size and patch (``vit_tiny_patch16_224``-style, built by timm at the
configured input size and channel count) and a hybrid whose tokens come from convolutional
layers in place of the patch embedding, a small stem or a timm CNN cut at stride 16 (the
idea of timm's ``vit_*_r50_*`` hybrids, at a size that trains on a CPU). Weights come from a local file or the hub
(:func:`vit_facemap.models.weights.load_pretrained`: position embeddings resampled to the
input's token grid, input channels adapted, every tensor of the backbone required).
"""

from __future__ import annotations

from functools import partial

import timm
import torch
from einops import rearrange
from timm.layers import PatchEmbed
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer_hybrid import HybridEmbed
from torch import nn

from vit_facemap.errors import first_line
from vit_facemap.models import SIZES, timm_knows


class ConvStem(nn.Module):
    """Stride-``2**n`` stack of stride-2 3x3 conv-BN-ReLU layers; the hybrid's patch embedding.

    The stride-4 feature map is kept in ``self.skip`` after each forward pass, so the
    heatmap head can add fine detail back (timm's hybrid embedding only passes on the
    last map).
    """

    def __init__(self, in_chans: int, widths: tuple[int, ...] = (24, 48, 96, 128)) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        c = in_chans
        for w in widths:
            self.stages.append(nn.Sequential(
                nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w),
                nn.ReLU(inplace=True)))
            c = w
        self.num_features = c
        self.stride = 2 ** len(widths)
        self.skip_channels = widths[1] if len(widths) > 1 else widths[0]
        self.skip_stride = 4 if len(widths) > 1 else 2
        self.skip: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i == 1 or len(self.stages) == 1:
                self.skip = x
        return x


class TimmStem(nn.Module):
    """A timm CNN cut at ``out_index`` (stride 16 for ResNets) as the hybrid's patch
    embedding, as in the ViT-R50 hybrid of Dosovitskiy et al. (2021) but at a CPU size.

    Like :class:`ConvStem` it keeps its stride-4 map in ``self.skip`` for the heatmap head.
    """

    def __init__(self, name: str, in_chans: int, out_index: int = 3) -> None:
        super().__init__()
        if not timm_knows(name):
            raise ValueError(f"model stem {name!r} is neither 'conv' nor a CNN timm knows")
        try:
            info = timm.create_model(name, features_only=True, in_chans=in_chans).feature_info
        except (AssertionError, RuntimeError, TypeError, OSError) as exc:
            # OSError: an hf-hub: stem that cannot be fetched
            raise ValueError(f"model stem {name!r}: timm cannot build it as a feature "
                             f"extractor ({first_line(exc)})") from None
        reductions = info.reduction()
        if not 0 <= out_index < len(reductions):
            raise ValueError(f"cnn_out_index {out_index}: stem {name} has feature stages 0 to "
                             f"{len(reductions) - 1}")
        # the stride-4 stage feeds the skip head (the first when none is at 4)
        skip_index = next((i for i, r in enumerate(reductions) if r == 4), 0)
        if reductions[skip_index] >= reductions[out_index]:
            raise ValueError(f"cnn_out_index {out_index}: stem {name}'s stage {out_index} "
                             f"(stride {reductions[out_index]}) is not coarser than the map "
                             f"the heatmap head fuses (stride {reductions[skip_index]})")
        # cut after out_index: the stages beyond it would be computed and never used
        self.net = timm.create_model(name, features_only=True, in_chans=in_chans,
                                     out_indices=(skip_index, out_index))
        self.num_features = info.channels()[out_index]
        self.stride = reductions[out_index]
        self.skip_channels = info.channels()[skip_index]
        self.skip_stride = reductions[skip_index]
        self.skip: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.skip, out = self.net(x)
        return out


class ViTBackbone(nn.Module):
    """A timm ViT; ``forward`` returns (grid features (B, D, h, w), CLS token (B, D))."""

    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        self.vit = vit
        self.grid = tuple(vit.patch_embed.grid_size)
        self.num_features = vit.embed_dim
        h_in = vit.patch_embed.img_size[0]
        self.stride = h_in // self.grid[0]

    @property
    def stem(self) -> ConvStem | TimmStem | None:
        """The hybrid's stem (None for a plain ViT or one of timm's hybrids)."""
        backbone = getattr(self.vit.patch_embed, "backbone", None)
        return backbone if isinstance(backbone, ConvStem | TimmStem) else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.vit.forward_features(x)
        n_prefix = self.vit.num_prefix_tokens
        grid = rearrange(tokens[:, n_prefix:], "b (h w) d -> b d h w", h=self.grid[0], w=self.grid[1])
        cls = tokens[:, 0] if n_prefix else tokens.mean(1)
        return grid, cls


def build_vit(
    size: str = "tiny",
    patch_size: int = 16,
    input_size: tuple[int, int] = (192, 128),
    in_chans: int = 1,
    depth: int | None = None,
    embed_dim: int | None = None,
    num_heads: int | None = None,
    hybrid: bool = False,
    stem_widths: tuple[int, ...] = (32, 64, 128),
    timm_name: str | None = None,
    weights: str | None = None,
    drop_path: float = 0.0,
    pos_embed: bool = True,
    stem: str = "conv",
    cnn_out_index: int = 3,
) -> ViTBackbone:
    """A ViT backbone for ``input_size`` = (width, height).

    ``timm_name`` builds a registered timm model (e.g. ``vit_small_patch8_224``,
    ``vit_base_r50_s16_224``) instead of the ``size`` / ``patch_size`` recipe (not with
    ``hybrid``, this project's own stem); ``weights`` (a safetensors or .pth file, or
    ``hf-hub:org/name``) starts the backbone from a file. ``pos_embed=False`` builds it
    without timm's learned absolute position embedding. ``stem`` (hybrid only) is "conv",
    the ``stem_widths`` stack, or a timm CNN (``resnet18``) cut at ``cnn_out_index``.
    """
    w, h = input_size
    # passed only to leave it out: a registered model keeps its own default otherwise
    positions = {} if pos_embed else {"pos_embed": "none"}
    if hybrid and timm_name:
        raise ValueError(f"timm_name {timm_name!r} names a registered model; the hybrid family "
                         "is this project's (choose its CNN with the stem setting, or use "
                         "family 'vit' for timm's hybrids)")
    if stem != "conv" and not hybrid:
        raise ValueError(f"model stem {stem!r}: only the hybrid family has a stem to choose")
    if hybrid:
        net = (ConvStem(in_chans, tuple(stem_widths)) if stem == "conv"
               else TimmStem(stem, in_chans, cnn_out_index))
        if h % net.stride or w % net.stride:
            raise ValueError(f"input {w}x{h} must be a multiple of the stem stride {net.stride}")
        args = dict(SIZES[size])
        for key, value in (("depth", depth), ("embed_dim", embed_dim), ("num_heads", num_heads)):
            if value is not None:
                args[key] = value
        vit = VisionTransformer(
            img_size=(h, w), patch_size=1, in_chans=in_chans, num_classes=0,
            embed_layer=partial(HybridEmbed, backbone=net), drop_path_rate=drop_path,
            **positions, **args,
        )
    else:
        kwargs: dict = dict(img_size=(h, w), in_chans=in_chans, num_classes=0,
                            drop_path_rate=drop_path, **positions)
        if timm_name is None:
            timm_name = f"vit_{size}_patch16_224"
            kwargs["patch_size"] = patch_size
            for key, value in (("depth", depth), ("embed_dim", embed_dim),
                               ("num_heads", num_heads)):
                if value is not None:
                    kwargs[key] = value
        if not timm_knows(timm_name):
            raise ValueError(f"timm_name {timm_name!r} is not a model timm knows")
        try:
            vit = timm.create_model(timm_name, **kwargs)
        except (AssertionError, TypeError) as exc:
            # timm's hybrids assert that the input tiles their patches (no message); a
            # network other than a ViT refuses the ViT's keywords
            raise ValueError(f"timm cannot build {timm_name} for input {w}x{h} "
                             f"({first_line(exc)}): not a ViT, or an input size it does not "
                             "tile") from None
        if not isinstance(vit, VisionTransformer):
            raise ValueError(f"{timm_name} is not a timm VisionTransformer")
        if not isinstance(vit.patch_embed, PatchEmbed | HybridEmbed):
            raise ValueError(f"{timm_name}: unsupported patch embedding")
        # the model's own patch (a timm_name fixes it): timm would drop the remainder silently
        ph, pw = (int(v) for v in vit.patch_embed.feat_ratio(as_scalar=False))
        if h % ph or w % pw:
            raise ValueError(f"input {w}x{h} must be a multiple of {timm_name}'s patch size "
                             f"{pw}x{ph}")
    if weights:
        from vit_facemap.models.weights import load_pretrained

        load_pretrained(vit, weights)
    return ViTBackbone(vit)
