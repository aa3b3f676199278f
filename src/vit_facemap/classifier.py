"""Facial-state classifiers: HOG + random forest (Dolensek et al. 2020) and a small ViT.

Both see the same frames and the same eye locations, so that they can be compared frame for
frame; each cuts its own view around that eye:

- ``crop="eye"``: a square of side ``crop_factor`` eye widths (ViT 1.5, forest 2.0 by
  default, so the two crops differ in width) centred on the eye. At
  training time the eye box comes from the set's ``eyes.csv`` (eyelid keypoints); at
  evaluation time, on frames without keypoints, from an :class:`~vit_facemap.eyes.EyeLocator`
  trained on the same training frames and saved in the run.
- ``crop="frame"``: the whole frame resized to a square (no keypoints needed anywhere).

The ViT is a timm ``VisionTransformer`` with a CLS-token head, trained from scratch (no
pretrained weights can be downloaded here; ``init_weights`` may name a local safetensors
file) with strong augmentation: random zoom, shift, rotation, mirror, contrast, gamma and
noise. Its crops are contrast-equalised (CLAHE: a dark pupil in a dark eye stays visible
under every rig's exposure). When the set has a ``measures.csv`` (written by
:func:`vit_facemap.states.write_pupil_state_set`: the pupil / eye width ratio and the
pupil and eyelid keypoints relative to the eye box), a second linear head on the CLS token
learns to regress them, and a ViTPose-style decoder on the patch tokens learns heatmaps of
the pupil and eyelid keypoints (``heatmap_weight``), also on frames between the class
thresholds. The class head still decides: the keypoints only teach the tokens where the
pupil's edge and the eye's corners are (``decision="ratio"`` would threshold the regressed
ratio instead, ``"keypoints"`` the ratio measured from the heatmaps, ``"mean"`` average
the head and the regressed ratio). At test time the class probabilities are averaged over
the view and its mirror image (``tta``) and over ``ensemble`` ViTs. The forest uses HOG
with Dolensek et al.'s settings (8 orientations, 32-pixel cells, 1x1 blocks, square-root
transform) on the crop resized to ``hog_size`` pixels.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score
from tqdm import tqdm

from vit_facemap.config import check_fields, check_seed
from vit_facemap.errors import DataError, DataWarning, first_line
from vit_facemap.eyes import EyeLocator, LocatorConfig, crop_eyes
from vit_facemap.hog import HogConfig, hog_features, hog_grid_shape
from vit_facemap.images import load_image
from vit_facemap.runinfo import TRACKER, run_config
from vit_facemap.states import SetMeasures

MODELS = ("vit", "hog-rf")
CROPS = ("eye", "frame")
DECISIONS = ("head", "ratio", "mean", "keypoints")
# test-time views of the ViT (zoom, mirror): each is inside training's augmentation range
TTA_VIEWS = {"none": [(1.0, False)], "mirror": [(1.0, False), (1.0, True)],
             "mirror-zoom": [(z, m) for z in (0.9, 1.0, 1.1) for m in (False, True)]}
# Default view side per model, in eye widths. The ViT sees 1.5 (the eyelids stay in view and
# the pupil is 1.3x larger than at 2.0); the forest keeps the 2.0 it had, on which HOG did
# better with labeled eye boxes (pupil-state CV on the Schroeder mice, benchmarks/classify.py).
CROP_FACTORS = {"vit": 1.5, "hog-rf": 2.0}
RATIO = "ratio"  # the measure that pupil-state classes threshold (see vit_facemap.states)
MARGIN = 1.25  # crops are cut this much larger than the model's view, room for augmentation


@dataclass(frozen=True)
class ClassifierConfig:
    model: str = "vit"
    crop: str = "eye"
    # view side in eye widths; None: the model's own default (CROP_FACTORS)
    crop_factor: float | None = None
    # ViT
    image_size: int = 64
    patch_size: int = 8
    stem: str = "conv"  # "conv": small convolutional stem (Xiao et al. 2021); "patch": linear
    embed_dim: int = 96
    depth: int = 4
    num_heads: int = 3
    mlp_ratio: float = 2.0
    drop_path: float = 0.1
    epochs: int = 60
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    shift: float = 0.12  # training shift of the view, in half view sides
    init_weights: str | None = None
    # "clahe": adaptive histogram equalisation of the ViT's crops, so a dark pupil in a dark
    # eye keeps its edge under every rig's exposure; "none": raw crops
    contrast: str = "clahe"
    # geometry supervision: when the set has measures (measures.csv), a linear head on the
    # CLS token regresses them (pupil / eye width ratio, eye-relative keypoints) beside the
    # class head, with this loss weight (0: off)
    aux_weight: float = 1.0
    # "head": the class head decides; "ratio": the predicted pupil / eye width ratio against
    # the threshold between the training classes (falls back to the head without measures);
    # "mean": the average of the two; "keypoints": the ratio measured from the keypoint
    # heatmaps (see heatmap_weight) against that threshold
    decision: str = "head"
    # keypoint heatmaps: when the measures give pupil and eyelid positions, a ViTPose-style
    # decoder on the patch tokens learns their heatmaps with this loss weight (0: off);
    # decision="keypoints" thresholds the pupil / eye width ratio measured from its peaks
    # (leave-animals-out pupil state, same crops: head macro-F1 0.778 -> 0.912 with seed 0,
    # 0.737 -> 0.789 with seed 1)
    heatmap_weight: float = 1.0
    # "mirror": class probabilities averaged over the view and its mirror image (training
    # mirrors too, and a left or right eye is the same eye); "mirror-zoom": also over views
    # 0.9 and 1.1 times as wide; "none": the view alone
    tta: str = "mirror"
    # ViTs trained with seeds seed, seed + 1, ...; their class probabilities (and geometry)
    # are averaged. One ViT's held-out score moves by 0.1 macro-F1 between seeds; the default
    # profile trains three
    ensemble: int = 1
    # HOG + RF
    hog_size: int = 128
    n_trees: int = 500
    # eye locator (crop="eye")
    locator: LocatorConfig = field(default_factory=LocatorConfig)
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_fields(self, "classifier")  # a command line's crop_factor=abc, say
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        if self.crop not in CROPS:
            raise ValueError(f"unknown crop {self.crop!r}; choose one of {', '.join(CROPS)}")
        if self.crop_factor is None:
            object.__setattr__(self, "crop_factor", CROP_FACTORS[self.model])
        if self.contrast not in ("none", "clahe"):
            raise ValueError(f"unknown contrast {self.contrast!r}; choose none or clahe")
        if self.tta not in TTA_VIEWS:
            raise ValueError(f"unknown tta {self.tta!r}; choose one of {', '.join(TTA_VIEWS)}")
        if self.decision not in DECISIONS:
            raise ValueError(f"unknown decision {self.decision!r}; choose one of "
                             f"{', '.join(DECISIONS)}")
        if int(self.ensemble) < 1:
            raise ValueError(f"ensemble must be at least 1 ViT, got {self.ensemble}")
        if self.model == "vit":
            self._check_vit_sizes()
        else:
            # HOG cells past the last whole one are dropped: part of the view has no features
            cell = HogConfig().pixels_per_cell
            if self.hog_size < cell or self.hog_size % cell:
                raise ValueError(f"hog_size {self.hog_size} is not a multiple of the "
                                 f"{cell}-pixel HOG cell; use {_nearest_multiples(self.hog_size, cell)}")

    def _check_vit_sizes(self) -> None:
        if self.image_size < 1 or self.patch_size < 1:
            raise ValueError(f"image_size and patch_size must be at least 1, got "
                             f"{self.image_size} and {self.patch_size}")
        if self.stem == "conv" and self.patch_size & (self.patch_size - 1):
            # the stem is a stack of stride-2 convolutions: its stride is a power of two
            lower = 1 << (self.patch_size.bit_length() - 1)
            raise ValueError(f"patch_size {self.patch_size}: stem 'conv' needs a power of two; "
                             f"use {lower} or {2 * lower}")
        if self.image_size % self.patch_size:
            # a patch grid would cover the top-left only (maps then drawn stretched over the
            # whole view), a conv stem would give more tokens than position embeddings
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size "
                             f"{self.patch_size}; use "
                             f"{_nearest_multiples(self.image_size, self.patch_size)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassifierConfig:
        d = dict(d)
        d.setdefault("contrast", "none")  # runs saved before CLAHE was an option had none
        d.setdefault("tta", "none")  # nor test-time mirroring
        d.setdefault("heatmap_weight", 0.0)  # nor keypoint heatmaps
        # runs saved before peak decoding (or the crop stage) existed read the whole heatmap
        # (and those saved before hard negatives trained their crop stage without them)
        d["locator"] = LocatorConfig(**{"decode": "mean", "refine_steps": 0, "refine_hard": 0.0,
                                        **d.get("locator", {})})
        return cls(**d)


def _nearest_multiples(value: int, step: int) -> str:
    """The multiples of ``step`` either side of ``value`` (at least ``step``), for a message."""
    lower = value // step * step
    return f"{lower} or {lower + step}" if lower >= step else str(step)


# Run sizes per profile: test = seconds on generated frames, default = the book's CPU run.
PROFILE_SETTINGS: dict[str, dict[str, Any]] = {
    "test": {"epochs": 3, "n_trees": 20, "embed_dim": 32, "depth": 2, "num_heads": 2,
             "locator": {"epochs": 3, "channels": 8, "refine_size": 32, "candidates": 2,
                         "refine_steps": 1}},
    "quick": {"epochs": 15, "n_trees": 100, "locator": {"epochs": 15}},
    "default": {"ensemble": 3},
    "full": {"epochs": 300, "embed_dim": 192, "depth": 6, "num_heads": 3, "ensemble": 3,
             "locator": {"epochs": 150}},
}


def profile_config(profile: str = "default", **overrides: Any) -> ClassifierConfig:
    """The classifier settings of a run profile, with ``overrides`` on top."""
    if profile not in PROFILE_SETTINGS:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILE_SETTINGS)}")
    d = asdict(ClassifierConfig())
    d["crop_factor"] = None  # the model's own unless a profile or override sets one
    for src in (PROFILE_SETTINGS[profile], overrides):
        for k, v in src.items():
            if k == "locator":
                d["locator"] = {**d["locator"], **v}
            else:
                d[k] = v
    return ClassifierConfig.from_dict(d)


def load_frames(paths: Sequence[str | Path], progress: bool = False) -> list[np.ndarray]:
    return [load_image(p, "L") for p in tqdm(paths, desc="frames", disable=not progress)]


class ConvStemEmbed(torch.nn.Module):
    """Patch embedding by stride-2 3x3 convolutions instead of one linear patch projection.

    Early convolutions give a ViT the locality it otherwise has to learn from data, which
    matters with a few hundred training images (Xiao et al. 2021). Same interface as timm's
    ``PatchEmbed``: (B, C, H, W) -> (B, tokens, dim) over a ``grid_size`` grid.
    """

    def __init__(self, img_size: int = 64, patch_size: int = 8, in_chans: int = 1,
                 embed_dim: int = 96, bias: bool = True, **_: Any) -> None:
        super().__init__()
        n = int(np.log2(patch_size))
        if 2 ** n != patch_size:
            raise ValueError(f"the conv stem needs a power-of-two patch size, got {patch_size}")
        layers, c = [], in_chans
        for i in range(n):
            o = min(embed_dim, 16 * 2 ** i)
            layers += [torch.nn.Conv2d(c, o, 3, 2, 1, bias=False), torch.nn.BatchNorm2d(o),
                       torch.nn.ReLU(inplace=True)]
            c = o
        layers.append(torch.nn.Conv2d(c, embed_dim, 1, bias=bias))
        self.proj = torch.nn.Sequential(*layers)
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]

    def feat_ratio(self, as_scalar: bool = True) -> int:
        return self.patch_size[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def make_vit(config: ClassifierConfig, num_classes: int) -> torch.nn.Module:
    from timm.layers import PatchEmbed
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        embed_layer=ConvStemEmbed if config.stem == "conv" else PatchEmbed,
        img_size=config.image_size, patch_size=config.patch_size, in_chans=1,
        num_classes=num_classes, embed_dim=config.embed_dim, depth=config.depth,
        num_heads=config.num_heads, mlp_ratio=config.mlp_ratio, class_token=True,
        global_pool="token", drop_path_rate=config.drop_path,
    )


def _standardize_batch(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True)
    return (x - mean) / (std + 1e-6)


def _view(crops: np.ndarray, size: int, gen: torch.Generator | None = None,
          return_theta: bool = False, shift: float = 0.12, zoom: float = 1.0
          ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The model's view of margin crops: the centre 1/(MARGIN * zoom), randomly jittered when
    ``gen`` (then ``zoom`` is drawn from training's range instead).

    ``return_theta`` also gives the (N, 2, 3) affine map from view to crop coordinates
    (both in [-1, 1]), which moves geometry targets with the image.
    """
    x = torch.from_numpy(np.asarray(crops, dtype=np.float32))[:, None] / 255
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3)
    if gen is None:
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / (MARGIN * zoom)
        grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
        out = _standardize_batch(F.grid_sample(x, grid, align_corners=False))
        return (out, theta) if return_theta else out
    s = torch.empty(n).uniform_(0.85, 1.2, generator=gen)
    a = torch.empty(n).uniform_(-0.3, 0.3, generator=gen)  # radians
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    k = 1 / (MARGIN * s)
    theta[:, 0, 0] = k * torch.cos(a) * flip
    theta[:, 0, 1] = -k * torch.sin(a)
    theta[:, 1, 0] = k * torch.sin(a) * flip
    theta[:, 1, 1] = k * torch.cos(a)
    theta[:, :, 2] = torch.empty(n, 2).uniform_(-shift, shift, generator=gen)
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False).clamp(1e-4, 1)
    gamma = torch.exp(torch.empty(n, 1, 1, 1).uniform_(-0.5, 0.5, generator=gen))
    x = x ** gamma
    x = _standardize_batch(x) * torch.empty(n, 1, 1, 1).uniform_(0.7, 1.3, generator=gen)
    x = x + 0.1 * torch.randn(x.shape, generator=gen)
    return (x, theta) if return_theta else x


def _point_pairs(names: Sequence[str]) -> list[tuple[int, int]]:
    """Column pairs (``<p>_x``, ``<p>_y``) of the geometry targets that are image positions."""
    return [(i, names.index(n[:-2] + "_y")) for i, n in enumerate(names)
            if n.endswith("_x") and n[:-2] + "_y" in names]


def _point_names(names: Sequence[str]) -> list[str]:
    """The image positions among geometry targets, in :func:`_point_pairs` order."""
    return [names[i][:-2] for i, _ in _point_pairs(names)]


def _mirror_permutation(names: Sequence[str]) -> list[int]:
    """Column order after a mirror: ``left*`` and ``right*`` targets swap (image sides)."""
    perm = list(range(len(names)))
    for i, n in enumerate(names):
        for a, b in (("left", "right"), ("right", "left")):
            if a in n and n.replace(a, b) in names:
                perm[i] = list(names).index(n.replace(a, b))
    return perm


def view_targets(values: np.ndarray, names: Sequence[str], theta: torch.Tensor,
                 crop_factor: float) -> torch.Tensor:
    """Geometry targets as seen in the (augmented) view.

    ``values`` (N, M) are crop-independent: ratios stay as they are (similarity transforms
    keep them), positions ``<p>_x``/``<p>_y`` are in eye widths from the eye-box centre and
    are mapped into view coordinates ([-1, 1]) through the inverse of ``theta``; after a
    mirror, left and right targets swap so that "left" stays the image's left.
    """
    v = torch.as_tensor(np.asarray(values, dtype=np.float32)).clone()
    pairs = _point_pairs(list(names))
    if pairs:
        ix, iy = [p[0] for p in pairs], [p[1] for p in pairs]
        u = torch.stack([v[:, ix], v[:, iy]], -1) / (crop_factor * MARGIN / 2)  # (N, P, 2)
        a_inv = torch.linalg.inv(theta[:, :, :2])
        w = torch.einsum("nij,npj->npi", a_inv, u - theta[:, None, :, 2])
        v[:, ix], v[:, iy] = w[..., 0], w[..., 1]
    flipped = torch.linalg.det(theta[:, :, :2]) < 0
    perm = _mirror_permutation(list(names))
    return torch.where(flipped[:, None], v[:, perm], v)


class GeometryHead(torch.nn.Module):
    """A linear map from the ViT's pre-logits (CLS token) to standardized geometry targets,
    and optionally (``n_points``) keypoint heatmaps decoded from the patch tokens."""

    def __init__(self, dim: int, n_out: int, n_points: int = 0) -> None:
        super().__init__()
        from vit_facemap.models.heads import HeatmapHead

        self.fc = torch.nn.Linear(dim, n_out)
        self.register_buffer("mean", torch.zeros(n_out))
        self.register_buffer("std", torch.ones(n_out))
        # two 2x deconvolutions: at 64 input pixels and patch 8, a 32 x 32 map of 2-pixel cells
        self.heatmap = HeatmapHead(dim, n_points, n_up=2, channels=64) if n_points else None

    def forward(self, pre_logits: torch.Tensor) -> torch.Tensor:
        """Standardized predictions; ``* std + mean`` gives the targets' units."""
        return self.fc(pre_logits)

    def heatmaps(self, tokens: torch.Tensor, n_prefix: int) -> torch.Tensor:
        """Heatmap logits (B, K, H, W) from the ViT's output tokens (B, prefix + h*w, D)."""
        from einops import rearrange

        patches = tokens[:, n_prefix:]
        side = int(round(patches.shape[1] ** 0.5))
        return self.heatmap(rearrange(patches, "b (h w) d -> b d h w", h=side))


def heatmap_loss(logits: torch.Tensor, points: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Cross-entropy of the heatmaps' spatial softmax to Gaussians at ``points`` (B, K, 2),
    given in view coordinates ([-1, 1], edges); points unknown or outside the view are skipped."""
    from vit_facemap.models.heads import heatmap_cross_entropy

    h, w = logits.shape[-2:]
    cells = torch.stack([(points[..., 0] + 1) / 2 * w, (points[..., 1] + 1) / 2 * h], -1) - 0.5
    ok = torch.isfinite(cells).all(-1) & (cells[..., 0] > -0.5) & (cells[..., 0] < w - 0.5) & \
        (cells[..., 1] > -0.5) & (cells[..., 1] < h - 0.5)
    if not ok.any():
        return logits.sum() * 0
    return heatmap_cross_entropy(logits, cells, ok.float(), sigma)[ok].mean()


def keypoint_ratio(logits: torch.Tensor, names: Sequence[str]) -> np.ndarray:
    """Pupil diameter / eye width (:func:`vit_facemap.measures.facial_measures`) from the
    heatmap peaks; ``names`` are the heatmaps' point names. NaN when a needed point is not
    among them."""
    from vit_facemap.measures import facial_measures
    from vit_facemap.models.heads import local_soft_argmax

    xy, _ = local_soft_argmax(logits)
    m = facial_measures(xy.numpy(), names)
    if "pupil_eye_ratio" not in m:
        return np.full(len(logits), np.nan)
    return m["pupil_eye_ratio"].to_numpy()


def ratio_rule(ratio: np.ndarray, labels: np.ndarray, n_classes: int) -> dict[str, Any] | None:
    """The threshold on the ratio that separates two classes of the training set, or None.

    The classes are ordered by their median ratio; the threshold is the midpoint of the gap
    between them (for the pupil task the midpoint of 0.25 and 0.35, up to the sample).
    """
    ok = np.isfinite(ratio) & (labels >= 0)
    if n_classes != 2 or any(((labels == c) & ok).sum() == 0 for c in range(2)):
        return None
    med = [np.median(ratio[ok & (labels == c)]) for c in range(2)]
    low, high = (0, 1) if med[0] <= med[1] else (1, 0)
    top_low = float(np.max(ratio[ok & (labels == low)]))
    bottom_high = float(np.min(ratio[ok & (labels == high)]))
    thr = (top_low + bottom_high) / 2 if top_low < bottom_high else float(np.mean(med))
    return {"threshold": thr, "low": low, "high": high}


@dataclass
class FacialStateClassifier:
    """A trained classifier: config, class names, the model and (for eye crops) the locator."""

    config: ClassifierConfig
    classes: list[str]
    model: Any = None  # timm VisionTransformer or RandomForestClassifier
    locator: EyeLocator | None = None
    geometry: GeometryHead | None = None  # ViT trained with measures: their regression head
    measure_names: list[str] = field(default_factory=list)
    rule: dict[str, Any] | None = None  # ratio threshold between the classes (decision="ratio")
    # further ViTs of an ensemble (config.ensemble > 1), each with its geometry head
    members: list[tuple[Any, GeometryHead | None]] = field(default_factory=list)

    @property
    def vits(self) -> list[tuple[Any, GeometryHead | None]]:
        """Every ViT of the classifier with its geometry head (one unless an ensemble)."""
        return [(self.model, self.geometry), *self.members] if self.config.model == "vit" else []

    # ----- inputs --------------------------------------------------------------------
    def crops(self, frames: Sequence[np.ndarray], boxes: np.ndarray | None = None) -> np.ndarray:
        """Crops (N, S, S) uint8 with a margin around the model's view, from which
        :meth:`inputs` cuts what the model sees (in training as in prediction).

        ``boxes`` (x, y, width) default to the locator's predictions.
        """
        c = self.config
        size = c.image_size if c.model == "vit" else c.hog_size
        out_size = int(round(size * MARGIN))
        if c.crop == "frame":
            return resize_frames_uint8(frames, out_size, MARGIN)
        if boxes is None:
            boxes = self.locate(frames)
        out = crop_eyes(frames, boxes, c.crop_factor * MARGIN, out_size)
        if c.model == "vit" and c.contrast == "clahe":
            out = equalize_crops(out)
        return out

    def locate(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        if self.locator is None:
            raise DataError("this classifier works on eye crops but has no eye locator")
        return self.locator.predict(frames)

    # ----- training ------------------------------------------------------------------
    def fit(self, frames: Sequence[np.ndarray], labels: np.ndarray,
            boxes: np.ndarray | None = None, progress: bool = True,
            measures: np.ndarray | None = None, measure_names: Sequence[str] = (),
            extra: tuple[Sequence[np.ndarray], np.ndarray, np.ndarray] | None = None,
            ) -> FacialStateClassifier:
        """Train on ``frames`` with class ``labels``.

        ``measures`` (N, M) with column names ``measure_names`` (the set's measures.csv;
        NaN where unknown) train the ViT's geometry head; ``extra`` (frames, boxes,
        measures) are further images without a class (between the pupil thresholds) that
        train only that head, and the eye locator (they have eye boxes). The forest ignores
        the measures; a whole-frame ViT (``crop="frame"``) learns only those that are not
        eye-relative positions (no keypoint heatmaps).
        """
        c = self.config
        # checked when training starts, not when a saved run's config is read
        check_seed(c.seed, "classifier seed")
        _check_init_weights(c, len(self.classes))
        labels = np.asarray(labels)
        if c.crop == "eye":
            if boxes is None or not np.isfinite(boxes).all():
                raise DataError("eye crops need the eye box of every training image (eyes.csv "
                                "with image,x,y,width); use --crop frame for sets without one")
            if self.locator is None:
                self.locator = fit_locator(frames, boxes, replace(c.locator, seed=c.seed),
                                           extra, progress)
        if c.model == "hog-rf":
            # the features predict_proba computes: cut straight to the view, an image's
            # features differed from its own at prediction as much as two images' differ
            feats = self.inputs(self.crops(frames, boxes))
            self.model = RandomForestClassifier(
                n_estimators=c.n_trees, class_weight="balanced_subsample", random_state=c.seed,
                n_jobs=1).fit(feats, labels)
            return self
        crops = self.crops(frames, boxes)
        use_geometry = (measures is not None and (c.aux_weight > 0 or c.heatmap_weight > 0)
                        and len(measure_names) > 0)
        if use_geometry and c.crop == "frame":
            # positions are in eye widths from the eye box, mapped into an eye crop's view: a
            # whole-frame view is neither centred on the eye nor that wide, and the heads
            # learnt the pupil where it is not; the ratios hold in any view
            points = {i for pair in _point_pairs(list(measure_names)) for i in pair}
            keep = [i for i in range(len(measure_names)) if i not in points]
            measure_names = [measure_names[i] for i in keep]
            measures = np.asarray(measures, dtype=np.float64)[:, keep]
            if extra is not None and len(extra[0]):
                extra = (extra[0], extra[1], np.asarray(extra[2], np.float64)[:, keep])
            use_geometry = len(keep) > 0
        if use_geometry:
            measures = np.asarray(measures, dtype=np.float64)
            self.measure_names = list(measure_names)
            if RATIO in self.measure_names:
                self.rule = ratio_rule(measures[:, self.measure_names.index(RATIO)], labels,
                                       len(self.classes))
            if extra is not None and len(extra[0]):
                e_frames, e_boxes, e_measures = extra
                crops = np.concatenate([crops, self.crops(e_frames, e_boxes)])
                labels = np.concatenate([labels, np.full(len(e_frames), -1)])
                measures = np.concatenate([measures, np.asarray(e_measures, np.float64)])
        else:
            measures = None
        trained = [self._fit_vit(crops, labels, measures, progress, c.seed + i)
                   for i in range(c.ensemble)]
        (self.model, self.geometry), self.members = trained[0], trained[1:]
        return self

    @property
    def hog_config(self) -> HogConfig:
        return HogConfig()

    def _fit_vit(self, crops: np.ndarray, labels: np.ndarray, measures: np.ndarray | None,
                 progress: bool, seed: int) -> tuple[torch.nn.Module, GeometryHead | None]:
        c = self.config
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = make_vit(c, len(self.classes))
        if c.init_weights:
            load_vit_weights(model, c.init_weights)
        dev = torch.device(c.device)
        model.to(dev)
        params = list(model.parameters())
        head = None
        pairs = _point_pairs(self.measure_names) if measures is not None else []
        if measures is not None:
            head = GeometryHead(c.embed_dim, measures.shape[1],
                                len(pairs) if c.heatmap_weight > 0 else 0)
            # standardize with the statistics of the (unaugmented) view, per column
            _, theta0 = _view(crops[:1], c.image_size, return_theta=True)
            t0 = view_targets(measures, self.measure_names, theta0.expand(len(measures), 2, 3),
                              c.crop_factor).numpy()
            mean, std = np.nanmean(t0, 0), np.nanstd(t0, 0)
            head.mean.copy_(torch.from_numpy(np.nan_to_num(mean)).float())
            head.std.copy_(torch.from_numpy(np.where(np.isfinite(std) & (std > 1e-6), std,
                                                     1.0)).float())
            head.to(dev)
            params += list(head.parameters())
        labeled = labels[labels >= 0]
        counts = np.bincount(labeled, minlength=len(self.classes)).astype(np.float32)
        # a class without training frames (a fold without it) gets weight 0: label smoothing
        # spreads every frame's target over all classes, and its weight of N / 1 pulled every
        # frame towards the class the fold never saw
        weight = torch.from_numpy(np.where(counts > 0, counts.sum() / np.maximum(counts, 1)
                                           / len(counts), 0).astype(np.float32)).to(dev)
        opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        steps = c.epochs * int(np.ceil(len(crops) / c.batch_size))
        # OneCycleLR's warm-up ends at step pct_start * steps - 1: at step 0 (10 steps, as
        # --epochs 10 on up to 32 images or 1 epoch on 289 to 320 gives) it divided by zero
        pct_start = 0.1 if 0.1 * steps != 1 else 2 / steps
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, c.lr, total_steps=steps,
                                                    pct_start=pct_start)
        y = torch.from_numpy(labels.astype(np.int64)).to(dev)
        model.train()
        for _ in tqdm(range(c.epochs), desc="ViT", disable=not progress):
            for b in torch.randperm(len(crops), generator=gen).split(c.batch_size):
                x, theta = _view(crops[b.numpy()], c.image_size, gen, return_theta=True,
                                 shift=c.shift)
                yb = y[b.to(dev)]
                tokens = model.forward_features(x.to(dev))
                pre = model.forward_head(tokens, pre_logits=True)
                loss = torch.zeros((), device=dev)
                if (yb >= 0).any():
                    loss = F.cross_entropy(model.head(pre), yb, weight=weight, ignore_index=-1,
                                           label_smoothing=c.label_smoothing)
                if head is not None:
                    t = view_targets(measures[b.numpy()], self.measure_names, theta,
                                     c.crop_factor).to(dev)
                    if head.heatmap is not None:
                        pts = torch.stack([t[:, [i for i, _ in pairs]],
                                           t[:, [j for _, j in pairs]]], -1)
                        loss = loss + c.heatmap_weight * heatmap_loss(
                            head.heatmaps(tokens, model.num_prefix_tokens), pts)
                    t = (t - head.mean) / head.std
                    ok = torch.isfinite(t)
                    if ok.any():
                        err = F.smooth_l1_loss(head(pre)[ok], t[ok], beta=0.5)
                        loss = loss + c.aux_weight * err
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        model.eval()
        if head is not None:
            head.eval()
            head = head.cpu()
        return model.cpu(), head

    # ----- prediction ----------------------------------------------------------------
    def inputs(self, crops: np.ndarray) -> torch.Tensor | np.ndarray:
        """Model inputs from margin crops (:meth:`crops`): tensors for the ViT, HOG for the forest."""
        if self.config.model == "vit":
            return _view(crops, self.config.image_size)
        return hog_features(center_view(crops, self.config.hog_size), self.hog_config)

    @torch.no_grad()
    def predict_proba(self, frames: Sequence[np.ndarray], boxes: np.ndarray | None = None,
                      batch_size: int = 64) -> np.ndarray:
        crops = self.crops(frames, boxes)
        if self.config.model == "hog-rf":
            # the forest has a column only for the classes it saw: a class missing from a
            # fold's training frames gets probability 0
            proba = np.zeros((len(crops), len(self.classes)))
            proba[:, self.model.classes_] = self.model.predict_proba(self.inputs(crops))
            return proba
        keypoints = self.config.decision == "keypoints"
        proba, geometry, kp_ratio = self._vit_outputs(crops, batch_size, keypoints)
        if keypoints:
            if self.rule is None or kp_ratio is None:
                return proba
            # frames whose ratio cannot be measured (a point outside the maps' names) keep
            # the head's answer
            ok = np.isfinite(kp_ratio)
            return np.where(ok[:, None], self._ratio_proba(np.where(ok, kp_ratio, 0.0)), proba)
        if self.config.decision != "head" and self.rule is not None and geometry is not None:
            by_ratio = self._ratio_proba(geometry[:, self.measure_names.index(RATIO)])
            return by_ratio if self.config.decision == "ratio" else (proba + by_ratio) / 2
        return proba

    @torch.no_grad()
    def predict_measures(self, frames: Sequence[np.ndarray], boxes: np.ndarray | None = None,
                         batch_size: int = 64) -> np.ndarray | None:
        """The geometry head's predictions (N, M) in the measures' units (view coordinates
        for positions), or None for a model without one."""
        if self.geometry is None:
            return None
        return self._vit_outputs(self.crops(frames, boxes), batch_size)[1]

    @torch.no_grad()
    def predict_keypoint_ratio(self, frames: Sequence[np.ndarray], boxes: np.ndarray | None = None,
                               batch_size: int = 64) -> np.ndarray | None:
        """Pupil / eye width ratio measured from the keypoint heatmaps (mean over test-time
        views and ensemble members), or None for a model without heatmaps."""
        if not any(g is not None and g.heatmap is not None for _, g in self.vits):
            return None
        return self._vit_outputs(self.crops(frames, boxes), batch_size, keypoints=True)[2]

    @torch.no_grad()
    def _vit_outputs(self, crops: np.ndarray, batch_size: int, keypoints: bool = False
                     ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Class probabilities, geometry and (with ``keypoints``: the decoder costs as much as
        the ViT itself, so only when asked) the keypoint ratio, each averaged over views and
        ensemble members (geometry: the plain view only)."""
        vits = self.vits
        probs, geo, kp = [], [], []
        names = _point_names(self.measure_names)
        with_maps = [keypoints and g is not None and g.heatmap is not None for _, g in vits]
        views = TTA_VIEWS[self.config.tta]
        for i in range(0, len(crops), batch_size):
            x = self.inputs(crops[i:i + batch_size])
            inputs = []
            for zoom, mirror in views:
                v = x if zoom == 1.0 else _view(crops[i:i + batch_size], self.config.image_size,
                                                zoom=zoom)
                inputs.append(v.flip(-1) if mirror else v)
            p = torch.zeros(len(x), len(self.classes))
            g_sum = None
            r_sum = np.zeros(len(x))
            for model, g in vits:
                model.eval()
                for view, v in zip(views, inputs, strict=True):
                    tokens = model.forward_features(v)
                    pre = model.forward_head(tokens, pre_logits=True)
                    p += model.head(pre).softmax(-1) / (len(views) * len(vits))
                    if view == (1.0, False) and g is not None:  # geometry: the plain view
                        out = (g(pre) * g.std + g.mean) / len(vits)
                        g_sum = out if g_sum is None else g_sum + out
                    if keypoints and g is not None and g.heatmap is not None:
                        # a ratio of lengths: the same in every (mirrored, zoomed) view
                        r_sum += keypoint_ratio(g.heatmaps(tokens, model.num_prefix_tokens),
                                                names) / (len(views) * sum(with_maps))
            probs.append(p.numpy())
            if g_sum is not None:
                geo.append(g_sum.numpy())
            if any(with_maps):
                kp.append(r_sum)
        if not probs:
            return np.zeros((0, len(self.classes))), None, None
        return (np.concatenate(probs), np.concatenate(geo) if geo else None,
                np.concatenate(kp) if kp else None)

    def _ratio_proba(self, ratio: np.ndarray) -> np.ndarray:
        # a soft step at the threshold; its width (0.02) is a fifth of the 0.25-0.35 margin
        r = self.rule
        p_high = 1 / (1 + np.exp(-(ratio - r["threshold"]) / 0.02))
        out = np.zeros((len(ratio), len(self.classes)))
        out[:, r["high"]], out[:, r["low"]] = p_high, 1 - p_high
        return out

    def predict(self, frames: Sequence[np.ndarray], boxes: np.ndarray | None = None) -> np.ndarray:
        return self.predict_proba(frames, boxes).argmax(1)

    def hog_importance_map(self) -> np.ndarray:
        """The forest's feature importances summed over orientations, as a (rows, cols) cell map."""
        if self.config.model != "hog-rf":
            raise ValueError("importance maps are for the hog-rf model")
        hc = self.hog_config
        rows, cols = hog_grid_shape(self.config.hog_size, self.config.hog_size, hc)
        imp = self.model.feature_importances_.reshape(rows, cols, hc.cells_per_block ** 2,
                                                      hc.orientations)
        return imp.sum(axis=(2, 3))

    # ----- saving --------------------------------------------------------------------
    def save(self, run: str | Path) -> None:
        from vit_facemap.models.weights import save_tensors

        run = Path(run)
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps(
            {"config": asdict(self.config), "classes": self.classes,
             **({"hog": asdict(self.hog_config)} if self.config.model == "hog-rf" else {}),
             "measures": self.measure_names, "ratio_rule": self.rule}, indent=2) + "\n")
        tensors: dict[str, torch.Tensor] = {}
        if self.locator is not None:
            tensors.update(self.locator.state_dict())
        if self.config.model == "vit":
            # member 0 keeps the prefixes of runs saved before ensembles existed
            for i, (model, geometry) in enumerate(self.vits):
                tag = "" if i == 0 else str(i)
                tensors.update({f"vit{tag}.{k}": v.contiguous()
                                for k, v in model.state_dict().items()})
                if geometry is not None:
                    tensors.update({f"geometry{tag}.{k}": v.contiguous()
                                    for k, v in geometry.state_dict().items()})
        else:
            import joblib

            joblib.dump(self.model, run / "model.joblib", compress=3)
        if tensors:
            save_tensors(tensors, run / "model.safetensors")

    @classmethod
    def load(cls, run: str | Path) -> FacialStateClassifier:
        run = Path(run)
        cfg_file = run / "config.json"
        if not cfg_file.is_file():
            raise DataError("not a classifier run (no config.json); train one with "
                            "'vit-facemap classify train'", run)
        try:
            if run_config(run)[0] == TRACKER:
                # a tracker run's config.json reads fine; "'config'" missing would say nothing
                raise DataError("this is a keypoint-tracker run ('vit-facemap train'), not a "
                                "classifier run; train one with 'vit-facemap classify train'",
                                run)
            meta = json.loads(cfg_file.read_text())
            config = ClassifierConfig.from_dict(meta["config"])
            classes = list(meta["classes"])
            measure_names = list(meta.get("measures") or [])
            rule = meta.get("ratio_rule")
        except DataError:
            raise  # already says what is wrong (wrapped, it read "unreadable ...: run: this is")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"unreadable classifier config: {exc}", cfg_file) from exc
        # a forest's features must be computed as they were in training
        if "hog" in meta and meta["hog"] != asdict(HogConfig()):
            raise DataError(f"the forest was trained on other HOG features ({meta['hog']}) "
                            f"than this version computes ({asdict(HogConfig())})", cfg_file)
        try:
            return cls._restore(run, config, classes, measure_names, rule)
        except DataError:
            raise
        except Exception as exc:  # safetensors, torch, joblib: corrupt files or other shapes
            raise DataError("cannot load the trained model (a file is corrupt, or was not "
                            f"written for the settings in config.json): {first_line(exc)}",
                            run) from None

    @classmethod
    def _restore(cls, run: Path, config: ClassifierConfig, classes: list[str],
                 measure_names: list[str], rule: Any) -> FacialStateClassifier:
        from safetensors.torch import load_file

        tensors = load_file(str(run / "model.safetensors")) if (run / "model.safetensors").is_file() else {}
        clf = cls(config, classes, measure_names=measure_names, rule=rule)
        if config.crop == "eye":
            clf.locator = EyeLocator.from_state_dict(config.locator, tensors)
        if config.model == "vit":
            vits = []
            for i in range(config.ensemble):
                tag = "" if i == 0 else str(i)
                part = {k.removeprefix(f"vit{tag}."): v for k, v in tensors.items()
                        if k.startswith(f"vit{tag}.")}
                if not part:
                    raise DataError(f"ViT {i + 1} of the ensemble of {config.ensemble} is "
                                    "missing from model.safetensors", run)
                model = make_vit(config, len(classes))
                model.load_state_dict(part)
                model.eval()
                geometry = None
                if measure_names and f"geometry{tag}.fc.weight" in tensors:
                    maps = any(k.startswith(f"geometry{tag}.heatmap.") for k in tensors)
                    geometry = GeometryHead(config.embed_dim, len(measure_names),
                                            len(_point_pairs(measure_names)) if maps else 0)
                    geometry.load_state_dict({k.removeprefix(f"geometry{tag}."): v
                                              for k, v in tensors.items()
                                              if k.startswith(f"geometry{tag}.")})
                    geometry.eval()
                vits.append((model, geometry))
            (clf.model, clf.geometry), clf.members = vits[0], vits[1:]
        else:
            import joblib

            if not (run / "model.joblib").is_file():
                raise DataError("the forest (model.joblib) is missing from this run", run)
            clf.model = joblib.load(run / "model.joblib")
        return clf


def equalize_crops(crops: np.ndarray, clip_limit: float = 0.02) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of each crop (uint8 in, uint8 out)."""
    from skimage.exposure import equalize_adapthist

    out = np.empty_like(crops)
    for i, c in enumerate(crops):
        kernel = max(8, c.shape[0] // 4)
        out[i] = np.round(equalize_adapthist(c, kernel_size=kernel, clip_limit=clip_limit)
                          * 255).astype(np.uint8)
    return out


def center_view(crops: np.ndarray, size: int) -> np.ndarray:
    """The centre 1/MARGIN of margin crops, resized to ``size`` (uint8)."""
    from PIL import Image

    out = np.empty((len(crops), size, size), dtype=np.uint8)
    for i, c in enumerate(crops):
        s = c.shape[0]
        lo = (s - s / MARGIN) / 2
        box = (lo, lo, s - lo, s - lo)
        out[i] = np.asarray(Image.fromarray(c).resize((size, size), Image.BILINEAR, box=box))
    return out


def resize_frames_uint8(frames: Sequence[np.ndarray], size: int, margin: float) -> np.ndarray:
    """Whole frames squashed to a square, padded by ``margin`` so views match eye crops."""
    from PIL import Image

    inner = int(round(size / margin))
    pad = (size - inner) // 2
    out = np.zeros((len(frames), size, size), dtype=np.uint8)
    for i, f in enumerate(frames):
        im = Image.fromarray(np.asarray(f, dtype=np.uint8)).resize((inner, inner), Image.BILINEAR,
                                                                    reducing_gap=2.0)
        out[i, pad:pad + inner, pad:pad + inner] = np.asarray(im)
    return out


def _check_init_weights(config: ClassifierConfig, n_classes: int) -> None:
    """Start a ViT from ``init_weights`` now: a missing or unfit file was found only after
    the eye locator had trained (minutes). The ViTs trained later are seeded afresh."""
    if config.model == "vit" and config.init_weights:
        load_vit_weights(make_vit(config, n_classes), config.init_weights)


def load_vit_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Initialise from a file (or ``hf-hub:org/name``): every layer of the ViT must fit; the
    class head is kept only if its shape does (a run with the same classes)."""
    from vit_facemap.models.weights import load_pretrained

    load_pretrained(model, path, optional=("head.",))


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str],
                           groups: np.ndarray | None = None) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1 and confusion matrix, overall and per group.

    Macro-F1 averages the F1 of the classes present in ``y_true`` (listed as
    ``classes_present``): a class a set or an animal does not have has no F1 of its own, and
    counting it as 0 would halve a perfect score on a set of one state.
    """
    all_labels = list(range(len(classes)))
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)

    def block(t: np.ndarray, p: np.ndarray) -> dict[str, Any]:
        present = sorted(set(t.tolist()))
        return {
            "n": int(len(t)),
            "accuracy": float(accuracy_score(t, p)),
            "balanced_accuracy": float(balanced_accuracy_score(t, p)) if len(present) > 1
            else float(accuracy_score(t, p)),
            "macro_f1": float(f1_score(t, p, labels=present, average="macro", zero_division=0)),
            "classes_present": [classes[c] for c in present],
            "confusion": confusion_matrix(t, p, labels=all_labels).tolist(),
        }

    out = block(y_true, y_pred)
    out["labels"] = list(classes)
    if groups is not None and len(groups) and any(str(g) for g in groups):
        groups = np.asarray(groups).astype(str)
        out["per_group"] = {g: block(y_true[groups == g], y_pred[groups == g])
                            for g in sorted(set(groups))}
    return out


@dataclass
class CrossValidation:
    """Out-of-fold results of group-aware cross-validation (each group held out once)."""

    classes: list[str]
    labels: np.ndarray
    groups: np.ndarray
    fold: np.ndarray  # fold in which each image was held out
    boxes: np.ndarray | None  # eye boxes used at test time (locator predictions)
    proba: dict[str, np.ndarray]  # model name -> (N, n_classes) held-out probabilities
    metrics: dict[str, dict[str, Any]]
    models: dict[str, list[FacialStateClassifier]]  # per fold, for maps and deletion curves
    wall_s: dict[str, float]
    # why fewer folds ran than were asked for ("" when as many as asked)
    folds_note: str = ""

    @property
    def n_folds(self) -> int:
        return int(len(np.unique(self.fold[self.fold >= 0])))


def fit_locator(frames: Sequence[np.ndarray], boxes: np.ndarray, config: LocatorConfig,
                extra: tuple[Sequence[np.ndarray], np.ndarray, Any] | None = None,
                progress: bool = True) -> EyeLocator:
    """The eye locator, trained on the class images and on ``extra`` images with eye boxes."""
    if extra is not None and len(extra[0]):
        ok = np.isfinite(np.asarray(extra[1], float)).all(1)
        frames = list(frames) + [f for f, k in zip(extra[0], ok, strict=True) if k]
        boxes = np.concatenate([boxes, np.asarray(extra[1], float)[ok]])
    return EyeLocator.fit(frames, boxes, config, progress=progress)


def fold_extra_rows(extra_groups: np.ndarray, groups: np.ndarray, test: np.ndarray
                    ) -> np.ndarray:
    """The images without a class (measures.csv, their groups ``extra_groups``) that train a
    fold whose held-out rows of ``groups`` are ``test``: those of the fold's training groups.
    A group the folds do not use could be a held-out animal's frame, and is left out too."""
    extra_groups = np.asarray(extra_groups).astype(str)
    groups = np.asarray(groups).astype(str)
    return np.flatnonzero(np.isin(extra_groups, groups) & ~np.isin(extra_groups, groups[test]))


def cross_validate(frames: Sequence[np.ndarray], labels: np.ndarray, groups: np.ndarray,
                   classes: Sequence[str], configs: dict[str, ClassifierConfig],
                   boxes: np.ndarray | None = None, n_splits: int = 4, seed: int = 0,
                   oracle_boxes: bool = False, progress: bool = True,
                   measures: SetMeasures | None = None) -> CrossValidation:
    """Leave-groups-out CV: stratified group k-fold, every group (animal) held out once.

    All models of one fold share the eye locator trained on that fold's training frames,
    so they are judged on the same frames and eye locations (each cuts its own
    ``crop_factor`` around them). ``oracle_boxes`` uses the labeled eye boxes
    at test time too (an upper bound that isolates the locator's share of the error).
    ``measures`` (the set's measures.csv) train the ViTs' geometry heads; its images
    without a class (only those of the fold's training groups) also train the locator.
    """
    import time

    from sklearn.model_selection import StratifiedGroupKFold

    check_seed(seed, "cross-validation seed")
    for c in configs.values():
        check_seed(c.seed, "classifier seed")
        _check_init_weights(c, len(classes))
    labels = np.asarray(labels)
    groups = np.asarray(groups).astype(str)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise DataError(f"group-aware cross-validation needs at least 2 groups, found {n_groups}")
    if boxes is None and any(c.crop == "eye" for c in configs.values()):
        raise DataError("eye-crop models need the eye box of every image (eyes.csv)")
    k = min(n_splits, n_groups)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    splits = list(splitter.split(np.zeros(len(labels)), labels, groups))
    # groups are spread over the folds to balance the classes: with about as many folds as
    # groups, two can share a fold and leave another with nothing to test, which is skipped
    # (the other folds stay as they are)
    empty = sum(len(te) == 0 for _, te in splits)
    splits = [(tr, te) for tr, te in splits if len(te)]
    notes = []
    if n_splits > n_groups:
        notes.append(f"{n_groups} groups, one fold per group at most")
    if empty:
        notes.append(f"stratified group k-fold left {empty} of {k} folds without a group, "
                     "spreading the groups to balance the classes")
    fold = np.full(len(labels), -1)
    proba = {name: np.full((len(labels), len(classes)), np.nan) for name in configs}
    models: dict[str, list[FacialStateClassifier]] = {name: [] for name in configs}
    wall = dict.fromkeys(configs, 0.0)
    used_boxes = None if boxes is None else np.full((len(labels), 3), np.nan)
    extra_frames: dict[int, np.ndarray] = {}
    if measures is not None:
        # an image without a class trains a fold only when its group is one of the fold's
        # training groups; a group the folds do not use (animals in measures.csv, videos in
        # groups.csv; none given) could be a test animal's frame, so it is left out
        extra_groups = measures.extra_groups.astype(str)
        known_extra = np.isin(extra_groups, groups)
        if len(extra_groups) and not known_extra.all():
            # str, not numpy's: the message showed np.str_('Janus')
            odd = sorted(set(extra_groups[~known_extra].tolist()))
            warnings.warn(DataWarning(
                f"{(~known_extra).sum()} image(s) of measures.csv without a class have a group "
                f"the cross-validation does not use ({', '.join(map(repr, odd[:3]))}"
                f"{' ...' if len(odd) > 3 else ''}); they are left out of training, since "
                "they could show a held-out animal"), stacklevel=2)
        used = np.flatnonzero(known_extra)  # only those are read
        extra_frames = dict(zip(used.tolist(),
                                load_frames([measures.extra_paths[i] for i in used]),
                                strict=True))
    for f, (tr, te) in enumerate(splits):
        fold[te] = f
        tr_frames = [frames[i] for i in tr]
        te_frames = [frames[i] for i in te]
        geo: dict[str, Any] = {}
        if measures is not None:
            keep = fold_extra_rows(extra_groups, groups, te)
            geo = {"measures": measures.values[tr], "measure_names": measures.names,
                   "extra": ([extra_frames[i] for i in keep] if extra_frames else [],
                             measures.extra_eyes[keep], measures.extra_values[keep])}
        locator = None
        te_boxes = None
        if any(c.crop == "eye" for c in configs.values()):
            first = next(c for c in configs.values() if c.crop == "eye")
            t0 = time.perf_counter()
            locator = fit_locator(tr_frames, boxes[tr], replace(first.locator, seed=seed),
                                  geo.get("extra"), progress)
            te_boxes = boxes[te] if oracle_boxes else locator.predict(te_frames)
            used_boxes[te] = te_boxes
            for name, c in configs.items():  # the locator's time counts for every eye model
                if c.crop == "eye":
                    wall[name] += time.perf_counter() - t0
        for name, c in configs.items():
            t0 = time.perf_counter()
            clf = FacialStateClassifier(c, list(classes), locator=locator if c.crop == "eye"
                                        else None)
            clf.fit(tr_frames, labels[tr], None if boxes is None else boxes[tr], progress=progress,
                    **geo)
            proba[name][te] = clf.predict_proba(te_frames, te_boxes if c.crop == "eye" else None)
            wall[name] += time.perf_counter() - t0
            models[name].append(clf)
    metrics = {name: classification_metrics(labels, p.argmax(1), classes, groups)
               for name, p in proba.items()}
    return CrossValidation(list(classes), labels, groups, fold, used_boxes, proba, metrics,
                           models, wall, "; ".join(notes))
