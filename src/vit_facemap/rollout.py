"""Attention rollout and gradient-weighted rollout for timm Vision Transformers.

Attention rollout (Abnar & Zuidema 2020) follows how information from the input patches
reaches the CLS token through the layers. Each layer's attention matrix (heads fused by
mean, max or min) gets the identity added for the residual connection, every row is
renormalised to sum to one, and the layers are multiplied together:
``R = Â_L ... Â_2 Â_1`` with ``Â_l = norm_rows(A_l + I)``. The CLS row of ``R`` over the
patch tokens is the map (for a ViT whose head pools the patch tokens, the mean of their
rows). Rows are normalised with the sum kept as a column
(``a / a.sum(-1, keepdim=True)``); dividing by ``a.sum(-1)`` without keeping the
dimension broadcasts over columns instead of rows, a mistake the tests guard against.

An optional ``discard_ratio`` zeroes the weakest fraction of the patch-to-patch entries of
each fused attention matrix (per image and layer) before the identity is added (suppressing
diffuse low attention); entries in the rows and columns of the CLS token, and of register
tokens, the other prefix tokens, are never discarded.

The gradient-weighted variant is class-specific: each head's attention is weighted by the
gradient of the target class score with respect to it, negative contributions are
clipped, and heads are averaged, ``Ā_l = mean_h (∇A_l ⊙ A_l)^+``; the same rollout
(identity, row normalisation, product) then runs on these matrices (in the spirit of
Chefer et al. 2021).

Attention matrices are captured by forward hooks on each attention module's
``attn_drop`` (its input is the softmaxed attention); timm's fused attention never forms
that matrix, so ``fused_attn`` is switched off while capturing and restored afterwards.
Any module that contains a timm ``VisionTransformer`` (a classifier, a keypoint tracker
with its own head) works: pass the module and, if needed, how to get a scalar score.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange
from torch import nn

HEAD_FUSIONS = ("mean", "max", "min")


def find_vit(module: nn.Module) -> nn.Module:
    """The first timm ``VisionTransformer`` inside ``module`` (or ``module`` itself)."""
    from timm.models.vision_transformer import VisionTransformer

    for m in module.modules():
        if isinstance(m, VisionTransformer):
            return m
    raise TypeError(f"no timm VisionTransformer inside {type(module).__name__}")


def _attention_modules(vit: nn.Module) -> list[nn.Module]:
    mods = [b.attn for b in vit.blocks if hasattr(b, "attn") and hasattr(b.attn, "attn_drop")]
    if not mods:
        raise TypeError("the transformer's blocks have no attention modules with attn_drop")
    return mods


@contextmanager
def capture_attention(module: nn.Module, keep_grad: bool = False):
    """Collect each layer's attention (B, heads, T, T) during forward passes inside the block.

    Yields a dict with ``"attn"`` (list, one tensor per layer in order) and, when
    ``keep_grad``, ``"grad"`` (filled in by ``backward``, same order).
    """
    vit = find_vit(module)
    mods = _attention_modules(vit)
    store: dict[str, list] = {"attn": [None] * len(mods), "grad": [None] * len(mods)}
    handles, fused = [], []
    for i, m in enumerate(mods):
        fused.append(getattr(m, "fused_attn", False))
        m.fused_attn = False

        def hook(_mod, inputs, _output, i=i):
            a = inputs[0]
            store["attn"][i] = a if keep_grad else a.detach()
            if keep_grad and a.requires_grad:
                a.register_hook(lambda g, i=i: store["grad"].__setitem__(i, g.detach()))

        handles.append(m.attn_drop.register_forward_hook(hook))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()
        for m, f in zip(mods, fused, strict=True):
            m.fused_attn = f


def fuse_heads(attn: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """(B, H, T, T) -> (B, T, T) by mean, max or min over heads."""
    if how == "mean":
        return attn.mean(1)
    if how == "max":
        return attn.amax(1)
    if how == "min":
        return attn.amin(1)
    raise ValueError(f"unknown head fusion {how!r}; choose one of {', '.join(HEAD_FUSIONS)}")


def _check_discard(ratio: float) -> None:
    """Refuse a ``discard_ratio`` outside [0, 1): above one failed as torch's "selected index
    k out of range", NaN as "cannot convert float NaN to integer", a negative one was taken
    as zero without a word."""
    if not 0 <= ratio < 1:
        raise ValueError(f"discard_ratio must be in [0, 1), got {ratio}")


def _discard(a: torch.Tensor, ratio: float, n_prefix: int) -> torch.Tensor:
    """Zero the weakest ``ratio`` of the patch-to-patch entries of each (T, T) matrix: the
    rows and columns of the ``n_prefix`` prefix tokens (CLS, registers) are spared."""
    if ratio <= 0:
        return a
    a = a.clone()
    b, t, _ = a.shape
    protect = torch.zeros(t, t, dtype=torch.bool, device=a.device)
    protect[:n_prefix, :] = True
    protect[:, :n_prefix] = True
    free = ~protect.flatten()
    flat = a.view(b, -1)
    k = int(free.sum() * ratio)
    if k == 0:
        return a
    vals = flat[:, free]
    idx = vals.topk(k, dim=-1, largest=False).indices
    vals.scatter_(-1, idx, 0.0)
    flat[:, free] = vals
    return a


def rollout(attentions: Sequence[torch.Tensor], head_fusion: str = "mean",
            discard_ratio: float = 0.0, n_prefix: int = 1,
            fused: bool = False) -> torch.Tensor:
    """Roll attention out through the layers: (B, T, T) joint attention.

    ``attentions`` are per-layer (B, H, T, T) tensors (or (B, T, T) already fused when
    ``fused``), first layer first.
    """
    _check_discard(discard_ratio)
    joint = None
    for a in attentions:
        a = a.detach().float()
        a = a if fused else fuse_heads(a, head_fusion)
        a = _discard(a, discard_ratio, n_prefix)
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a + eye
        a = a / a.sum(dim=-1, keepdim=True)
        joint = a if joint is None else a @ joint
    if joint is None:
        raise ValueError("no attention matrices to roll out")
    return joint


@dataclass
class RolloutMaps:
    """Per-image maps over the patch grid, each summing to one; ``scores`` are class probabilities."""

    maps: np.ndarray  # (B, grid_h, grid_w)
    grid: tuple[int, int]
    target: np.ndarray  # class (or output) index explained per image
    scores: np.ndarray | None = None
    shift: float = 0.0  # token_shift of the model: pass on to upsample, overlay, deletion


def _grid(vit: nn.Module, size: Sequence[int] | None = None) -> tuple[int, int]:
    """The patch grid of an input of ``size`` (height, width): a ViT built with
    ``dynamic_img_size`` takes other sizes than its own, and its tokens tile those (the
    nominal grid drew an 8 x 12 model's tokens of a 12 x 8 input transposed, silently)."""
    embed = vit.patch_embed
    if size is not None and getattr(vit, "dynamic_img_size", False) \
            and hasattr(embed, "dynamic_feat_size"):
        g = embed.dynamic_feat_size((int(size[0]), int(size[1])))
    else:
        g = embed.grid_size
    return int(g[0]), int(g[1])


def token_shift(vit: nn.Module) -> float:
    """How far (in cells) a token's centre sits before the middle of the cell it is drawn on.

    A patch embedding's token j sees pixels p*j ... p*j + p - 1: centred, 0. A stem of stride-2
    3x3 convolutions (padding 1; this project's hybrid and conv-stem classifier, ResNet stems)
    with no wider projection after it centres token j on pixel p*j, (p - 1) / 2 pixels,
    (p - 1) / (2p) cells, earlier. Any other stem (a hybrid whose projection spans several
    feature cells, as in ``vit_tiny_r_s16_p8_224``) is measured: see :func:`measure_shift`.
    """
    from timm.layers import HybridEmbed, PatchEmbed

    from vit_facemap.classifier import ConvStemEmbed

    embed = vit.patch_embed
    if isinstance(embed, PatchEmbed):
        return 0.0
    from vit_facemap.models.vit import TimmStem

    # a timm CNN chosen as the hybrid's stem may be anything (a ConvNeXt's 4x4 patchify
    # stem centres its tokens otherwise): measured, not assumed
    if isinstance(embed, ConvStemEmbed) or (
            isinstance(embed, HybridEmbed)
            and not isinstance(getattr(embed, "backbone", None), TimmStem)
            and tuple(getattr(embed.proj, "kernel_size", (1, 1))) == (1, 1)):
        p = int(embed.img_size[0]) // int(embed.grid_size[0])
        return (p - 1) / (2 * p)
    if embed not in _MEASURED:
        _MEASURED[embed] = measure_shift(vit)
    return _MEASURED[embed]


# measured shifts, per patch embedding (the measurement costs a backward pass)
_MEASURED: weakref.WeakKeyDictionary[nn.Module, float] = weakref.WeakKeyDictionary()


def measure_shift(vit: nn.Module, samples: int = 4) -> float:
    """:func:`token_shift` measured: where the middle token looks (the centroid of its
    feature's input gradient, over ``samples`` noise images) against its cell's middle, in
    cells, averaged over rows and columns."""
    embed = vit.patch_embed
    gh, gw = (int(v) for v in embed.grid_size)
    ih, iw = (int(v) for v in embed.img_size)
    first = next((m for m in embed.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:  # nothing known of the input: drawn on the cells as they are
        return 0.0
    param = first.weight
    was_training = embed.training
    embed.eval()  # batch norm: the running statistics, none of them updated
    try:
        # enable_grad alone does not lift inference mode (a caller's torch.inference_mode()),
        # and a tensor made in inference mode cannot take part in autograd: x is made here
        with torch.inference_mode(False), torch.enable_grad():
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(samples, first.in_channels, ih, iw, generator=gen)
            x = x.to(param.device, param.dtype).requires_grad_(True)
            tokens = embed(x)
            # a dynamic-size embedding keeps its grid (B, H, W, D)
            tokens = tokens.reshape(samples, gh * gw, -1)
            r, c = gh // 2, gw // 2
            (g,) = torch.autograd.grad(tokens[:, r * gw + c].abs().sum(), x)
    finally:
        embed.train(was_training)
    g = g.abs().sum((0, 1)).double().cpu().numpy()
    if g.sum() <= 0:
        return 0.0
    ph, pw = ih / gh, iw / gw
    y = (g.sum(1) * np.arange(ih)).sum() / g.sum()
    xc = (g.sum(0) * np.arange(iw)).sum() / g.sum()
    dy = (r * ph + (ph - 1) / 2 - y) / ph
    dx = (c * pw + (pw - 1) / 2 - xc) / pw
    return round(float((dy + dx) / 2), 3)


def _pools_patches(vit: nn.Module, query: int | None,
                   size: Sequence[int] | None = None) -> bool:
    """Whether the map is the mean of the patch rows (the head sees the patch tokens pooled)
    rather than one token's row (the CLS token's, or patch ``query``'s)."""
    if query is not None:
        # a negative index read a prefix token's row (query=-1: the last register, or the
        # CLS token's with none) as if it were a patch's, silently
        gh, gw = _grid(vit, size)
        if int(query) != query or not 0 <= query < gh * gw:
            raise ValueError(f"query {query!r} is not a patch token: the {gh} x {gw} patch grid "
                             f"has row-major indices 0 to {gh * gw - 1}")
        return False
    pool = getattr(vit, "global_pool", None)
    if pool == "map":
        raise ValueError("this ViT pools its tokens by attention (global_pool='map'): no row "
                         "of the rolled-out attention is what its head sees; rollout explains "
                         "global_pool 'token' or 'avg' (or pass query= for a patch token)")
    if pool in ("avg", "avgmax", "max"):
        return True
    return not getattr(vit, "has_class_token", True)


def _cls_map(joint: torch.Tensor, vit: nn.Module, query: int | None = None,
             size: Sequence[int] | None = None) -> np.ndarray:
    """Row of the CLS token (or of patch ``query``, row-major on the grid) over the patches.

    A ViT whose head pools its patch tokens (global_pool 'avg', or no CLS token) has as map
    the mean of their rows, as its prediction is the mean of their outputs; a CLS token it
    may have besides reaches the head only through them.
    """
    n_prefix = int(getattr(vit, "num_prefix_tokens", 1))
    gh, gw = _grid(vit, size)
    if _pools_patches(vit, query, size):
        m = joint[:, n_prefix:, n_prefix:].mean(1).clamp(min=0)
    else:
        row = 0 if query is None else n_prefix + int(query)
        m = joint[:, row, n_prefix:].clamp(min=0)
    m = m / m.sum(-1, keepdim=True).clamp(min=1e-12)
    return rearrange(m, "b (h w) -> b h w", h=gh, w=gw).cpu().numpy()


@torch.no_grad()
def attention_rollout(model: nn.Module, x: torch.Tensor, head_fusion: str = "mean",
                      discard_ratio: float = 0.0, query: int | None = None) -> RolloutMaps:
    """Attention-rollout maps of the CLS token over the patches for a batch ``x``.

    ``query`` reads the row of one patch token instead (row-major index on the patch grid):
    for a heatmap keypoint tracker, whose output at a place comes from the patch tokens there
    rather than from the CLS token.
    """
    vit = find_vit(model)
    # a model rollout cannot explain is refused before the pass
    _pools_patches(vit, query, x.shape[-2:])
    _check_discard(discard_ratio)
    was_training = model.training
    model.eval()
    try:
        with capture_attention(model) as store:
            out = model(x)
    finally:
        model.train(was_training)
    joint = rollout(store["attn"], head_fusion, discard_ratio,
                    int(getattr(vit, "num_prefix_tokens", 1)))
    is_logits = isinstance(out, torch.Tensor) and out.ndim == 2
    scores = out.softmax(-1).cpu().numpy() if is_logits else None
    target = scores.argmax(1) if scores is not None else np.zeros(len(x), dtype=int)
    size = x.shape[-2:]
    return RolloutMaps(_cls_map(joint, vit, query, size), _grid(vit, size), target, scores,
                       token_shift(vit))


def gradient_rollout(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | None = None,
                     score: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     discard_ratio: float = 0.0, query: int | None = None) -> RolloutMaps:
    """Class-specific rollout: attention weighted by the gradient of the target's score.

    ``target`` is a class per image (default: the predicted class). For models whose output
    is not class logits (a keypoint tracker), ``score`` maps the output to one scalar per
    image (e.g. the peak heatmap logit of one keypoint); ``query`` as in
    :func:`attention_rollout`.
    """
    vit = find_vit(model)
    # a model rollout cannot explain is refused before the pass
    _pools_patches(vit, query, x.shape[-2:])
    _check_discard(discard_ratio)
    was_training = model.training
    model.eval()
    # a caller's inference mode would keep autograd off despite enable_grad; the model's
    # parameter gradients are left as they were found, and so is its mode
    try:
        with (torch.inference_mode(False), torch.enable_grad(),
              capture_attention(model, keep_grad=True) as store):
            x = x.detach().clone().requires_grad_(True)
            out = model(x)
            if score is not None:
                s = score(out)
                tgt = np.zeros(len(x), dtype=int)
                probs = None
            else:
                if not (isinstance(out, torch.Tensor) and out.ndim == 2):
                    # a keypoint tracker's dict of heatmaps failed as "'dict' object has no
                    # attribute 'softmax'"
                    raise ValueError(
                        f"{type(model).__name__}'s output is not class logits (B, classes) "
                        f"but {_describe(out)}: pass score=, a function from the output to "
                        "one score per image (for a tracker, e.g. the peak of a keypoint's "
                        "heatmap)")
                probs = out.softmax(-1).detach().cpu().numpy()
                tgt = probs.argmax(1) if target is None else _targets(target, len(x),
                                                                      probs.shape[1])
                s = out[torch.arange(len(x)), torch.as_tensor(tgt)]
            # differentiated for the attention alone (the capture's hooks keep the
            # gradients): a backward pass filled the parameters' .grad and then cleared it,
            # wiping gradients a caller had accumulated (maps drawn between loss.backward()
            # and optimizer.step())
            attn = [a for a in store["attn"] if a is not None and a.requires_grad]
            if attn:
                torch.autograd.grad(s.sum(), attn, allow_unused=True)
    finally:
        model.train(was_training)
    fusedl = []
    for a, g in zip(store["attn"], store["grad"], strict=True):
        if g is None:
            raise RuntimeError("no gradient reached an attention matrix")
        fusedl.append((a.detach() * g).clamp(min=0).mean(1))
    joint = rollout(fusedl, discard_ratio=discard_ratio, n_prefix=int(
        getattr(vit, "num_prefix_tokens", 1)), fused=True)
    size = x.shape[-2:]
    return RolloutMaps(_cls_map(joint, vit, query, size), _grid(vit, size), np.asarray(tgt), probs,
                       token_shift(vit))


def _describe(out: object) -> str:
    if isinstance(out, torch.Tensor):
        return f"a tensor of shape {tuple(out.shape)}"
    if isinstance(out, dict):
        return f"a dict of {', '.join(map(str, out))}"
    return f"a {type(out).__name__}"


def _targets(target: int | Sequence[int], n: int, n_classes: int) -> np.ndarray:
    """One class index per image, checked: numpy's broadcasting error ("operands could not be
    broadcast together with remapped shapes") named neither target nor images, and a
    negative class was explained as the class counted from the end."""
    t = np.asarray(target)
    if t.ndim > 1 or (t.ndim == 1 and len(t) != n):
        raise ValueError(f"target gives {t.size} classes for {n} image(s); give one class "
                         "for all, or one per image")
    t = np.broadcast_to(t, (n,))
    bad = [v for v in t.tolist() if int(v) != v or not 0 <= v < n_classes]
    if bad:
        raise ValueError(f"target {bad[0]!r} is not a class index of the model's {n_classes} "
                         f"outputs (0 to {n_classes - 1})")
    return t.astype(int)


# ----- checking the maps ------------------------------------------------------------------

def _cells(n: int, g: int, shift: float) -> np.ndarray:
    """The token (0..g-1) nearest to each of ``n`` pixels across ``g`` cells (``token_shift``)."""
    centre = (np.arange(n) + 0.5) * g / n  # a pixel's centre; cell k spans [k, k + 1)
    return np.clip(np.floor(centre + shift), 0, g - 1).astype(int)


def upsample(grid_map: np.ndarray, height: int, width: int, shift: float = 0.0) -> np.ndarray:
    """A (gh, gw) map spread over an image of (height, width), mass preserved per token;
    each pixel takes its nearest token (``shift``: :func:`token_shift`)."""
    gh, gw = grid_map.shape
    rows, cols = _cells(height, gh, shift), _cells(width, gw, shift)
    cell_area = np.bincount(rows, minlength=gh)[:, None] * np.bincount(cols, minlength=gw)[None]
    return (grid_map / np.maximum(cell_area, 1))[rows][:, cols]


def mass_in_box(grid_map: np.ndarray, box: Sequence[float], height: int,
                width: int, shift: float = 0.0) -> tuple[float, float]:
    """(share of the map's mass inside ``box`` (x0, y0, x1, y1), box share of the image: chance)."""
    dense = upsample(np.asarray(grid_map, dtype=np.float64), height, width, shift)
    x0, y0, x1, y1 = (float(v) for v in box)
    # the share of each pixel row and column inside the box: rounding the edges out to whole
    # pixels counted up to a pixel more on every side (the study draws the forest's 4 x 4
    # HOG cells on 32 pixels: Schroeder's eye regions came out an eighth larger)
    rows, cols = _coverage(y0, y1, height), _coverage(x0, x1, width)
    total = dense.sum()
    inside = rows @ dense @ cols
    chance = rows.sum() * cols.sum() / (height * width)
    return (float(inside / total) if total > 0 else float("nan")), float(chance)


def _coverage(lo: float, hi: float, n: int) -> np.ndarray:
    """How much of each of ``n`` pixels (pixel k spans [k, k + 1)) lies in [lo, hi]."""
    k = np.arange(n)
    return np.clip(np.minimum(k + 1, hi) - np.maximum(k, lo), 0, 1)


def deletion_curve(predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
                   grid_map: np.ndarray, target: int, fill: float, steps: int = 16,
                   order: np.ndarray | None = None, shift: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Target-class probability as grid cells are filled with ``fill``, most-attended first.

    ``predict`` maps a stack of images (S, H, W) to class probabilities (S, C). ``order``
    (cell indices) replaces the attention order, e.g. a random permutation as the control.
    Returns (fraction of cells removed, probability), ``steps + 1`` points from 0 to 1.
    """
    gh, gw = grid_map.shape
    h, w = image.shape[:2]
    if order is None:
        order = np.argsort(-np.asarray(grid_map).ravel(), kind="stable")
    counts = np.unique(np.linspace(0, gh * gw, steps + 1).round().astype(int))
    cell_of = _cells(h, gh, shift)[:, None] * gw + _cells(w, gw, shift)[None]
    rank = np.empty(gh * gw, dtype=int)
    rank[order] = np.arange(gh * gw)
    pixel_rank = rank[cell_of]
    stack = np.repeat(np.asarray(image)[None], len(counts), axis=0).astype(np.float32)
    for i, n in enumerate(counts):
        stack[i][pixel_rank < n] = fill
    probs = np.asarray(predict(stack))[:, target]
    return counts / (gh * gw), probs


def curve_auc(fraction: np.ndarray, prob: np.ndarray) -> float:
    """Area under a deletion curve (trapezoid); lower means the map found what mattered."""
    return float(np.trapezoid(prob, fraction))


def overlay(image: np.ndarray, grid_map: np.ndarray, alpha: float = 0.5,
            cmap: str = "inferno", shift: float = 0.0) -> np.ndarray:
    """The map, interpolated between token centres (``shift``: :func:`token_shift`) and
    coloured, blended over a grayscale image: RGB uint8."""
    from matplotlib import colormaps
    from scipy.ndimage import map_coordinates

    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        img = img.mean(-1)
    h, w = img.shape
    m = np.asarray(grid_map, dtype=np.float32)
    gh, gw = m.shape
    # each pixel's place in token units (token j at j), linear between tokens
    ys = (np.arange(h) + 0.5) * gh / h - 0.5 + shift
    xs = (np.arange(w) + 0.5) * gw / w - 0.5 + shift
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    m = map_coordinates(m, [yy, xx], order=1, mode="nearest")
    m = (m - m.min()) / max(float(m.max() - m.min()), 1e-12)
    colour = colormaps[cmap](m)[..., :3]
    gray = (img - img.min()) / max(float(img.max() - img.min()), 1e-12)
    out = (1 - alpha) * gray[..., None] + alpha * colour
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)
