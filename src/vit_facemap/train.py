"""Training loop for keypoint models: AdamW, warm-up + cosine, clipping, AMP on GPU, resume.

A run directory holds everything needed to use or continue a run:

- ``config.json``: the :class:`TrainConfig`, keypoint names, frame size and crop box (and,
  for a first stage whose keypoints name a nose and an eye, where the labels put the nose
  from the eye: :func:`vit_facemap.refine.nose_offsets`);
- ``model.safetensors``: the weights (best validation epoch, or the last one without a
  validation split; with ``ema``, the moving average of the weights, which is also what
  validation scores);
- ``last.pt``: the full training state for ``--resume`` (weights and their average,
  optimiser, schedule, epoch, random states), written after every epoch;
- ``metrics.csv``: one row per epoch (loss, validation errors in frame pixels, lr, time);
- ``split.json``: which frames train and validate, written when training starts (a resumed
  run continues with it: ``vit-facemap train --resume`` rebuilds the split from it);
- ``runinfo.json``: provenance and the run's summary.
- ``refine/<group>/``: the second, top-down stage for each keypoint group
  (:mod:`vit_facemap.refine`), itself a run folder of this layout whose ``config.json`` also
  names the refined keypoints and the crop side.

The schedule is set in optimiser steps, not epochs, so one recipe takes the same time on
a set of 200 or 500 frames; validation runs after every pass over the training frames.
With ``max_minutes`` the schedule is also budgeted in wall time: training progress is the
larger of steps done / ``steps`` and the share of the time budget spent beyond a slack of
:data:`CLOCK_SLACK` (``(t / T - slack) / (1 - slack)``); warm-up and cosine decay follow that
progress, and training ends when it reaches 1, at the budget. A slow machine therefore runs
fewer steps but still completes the learning-rate schedule within the budget (the number
of steps done is recorded). A step whose learning rate followed the clock rather than the
step count depends on how fast the machine ran at that moment, so the seed alone no longer
fixes the run: the summary counts such steps (``clock_paced_steps``; 0: the schedule
followed the steps throughout, and the same seed, machine and threads give the same run).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import random
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader
from tqdm import tqdm

from vit_facemap.augment import AugmentConfig, KeypointAugmenter, mirror_pairs, resolve_hflip
from vit_facemap.config import check_fields, check_seed
from vit_facemap.datasets import KeypointDataset, load_inputs
from vit_facemap.dlc import LabeledFrames
from vit_facemap.errors import DataError, RunExistsError, first_line
from vit_facemap.images import image_size
from vit_facemap.labelcheck import label_slips, mask_slips
from vit_facemap.models import KeypointModel, ModelConfig, build_model, with_settings
from vit_facemap.models.heads import (
    DEFAULT_RADIUS,
    decode_radius,
    heatmap_cross_entropy,
    local_soft_argmax,
    soft_argmax,
)
from vit_facemap.models.weights import load_weights, save_weights
from vit_facemap.poses import mirrored_videos, video_poses
from vit_facemap.refine import (
    REFINE_DIR,
    RefineConfig,
    crop_mappings,
    crop_side,
    estimate_centres,
    facing_points,
    nose_offsets,
    refine_groups,
    training_crops,
)
from vit_facemap.runinfo import (
    CLASSIFIER,
    describe,
    is_set_aside,
    newest_set_aside,
    put_back,
    resolve_device,
    run_config,
    set_aside,
    set_aside_folders,
    write_json,
)
from vit_facemap.transforms import InputMapping, full_frame_box, label_box, normalise

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "last.pt"
METRICS_FILE = "metrics.csv"
SPLIT_FILE = "split.json"


# The default recipe's first stage, which must find the face's parts wherever and however
# large the animal sits, is a hybrid ViT whose tokens come from a ResNet-18 cut at stride 16
# (trained with it from scratch); the crop stages (eye, nose, whiskers, mouth), which place
# points in a crop, keep the small conv stem (on contrast-equalised crops: refine.py). On
# held-out schroeder animals filmed unlike the rest the conv-stem first stage lost eyes that
# this one finds (benchmarks/tracker.py, ablation conv_stem_first).
DEFAULT_STEM = "resnet18"


def default_model() -> ModelConfig:
    """The first-stage network of the default recipe."""
    return ModelConfig(stem=DEFAULT_STEM)


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=default_model)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    steps: int = 4000               # optimiser steps in all (both stages)
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 150
    clip: float = 1.0               # gradient-norm clipping threshold; 0: no clipping
    # decay of an exponential moving average of the weights (timm's ModelEmaV3, warm-up on:
    # the decay is 1 - (1 + step)^(-2/3), at most this value, so 0.998 is reached only after
    # some 11000 steps: 0.99 at step 1000); the average is what validation scores and what
    # the run saves; 0: off
    ema: float = 0.0
    sigma: float = 1.0              # heatmap target width, in heatmap cells
    coord_weight: float = 0.1       # weight of the L1 loss on soft-argmax coordinates
    crop: str = "labels"            # labels: box around the training labels; full: whole frame
    crop_margin: float = 0.15
    amp: bool = True                # mixed precision (GPU only)
    max_minutes: float | None = None  # wall-time budget of the schedule (see module docs)
    keep: str = "best"              # best (by validation error, when there is one) | last
    val_every_steps: int = 50       # validate after the epoch in which this many steps passed
    pretrain_share: float = 0.0     # share of steps and time budget for masked image modelling
    #                                 (supervised training gets the rest)
    refine: RefineConfig = field(default_factory=RefineConfig)  # second, top-down crop stages
    # leave out training labels that sit where another keypoint usually is (slipped or
    # swapped labels) or far off the face (stray clicks; vit_facemap.labelcheck), as if
    # they were missing
    mask_slips: bool = False
    mask_ratio: float = 0.5         # share of patches blanked in pre-training
    num_threads: int = 2
    num_workers: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self, "training")
        # written as "not (ok)" so that NaN, which fails every comparison, is refused too
        positive = {"steps": 1, "batch_size": 1, "num_threads": 1, "val_every_steps": 1}
        low = [f"{k} >= {v}" for k, v in positive.items() if not getattr(self, k) >= v]
        low += [f"{k} >= 0" for k in ("warmup_steps", "num_workers", "weight_decay", "clip",
                                      "crop_margin", "coord_weight") if not getattr(self, k) >= 0]
        low += [f"{k} > 0" for k in ("lr", "sigma") if not getattr(self, k) > 0]
        if self.max_minutes is not None and not self.max_minutes > 0:
            low.append("max_minutes > 0 (or null for no time budget)")
        if not 0 <= self.pretrain_share < 1 or not 0 < self.mask_ratio < 1:
            low.append("0 <= pretrain_share < 1 and 0 < mask_ratio < 1")
        if not 0 <= self.ema < 1:
            low.append("0 <= ema < 1")
        if low:
            raise ValueError(f"training settings need {', '.join(low)}")
        if self.crop not in ("labels", "full"):
            raise ValueError(f"crop must be 'labels' or 'full', got {self.crop!r}")
        if self.keep not in ("best", "last"):
            raise ValueError(f"keep must be 'best' or 'last', got {self.keep!r}")
        if self.refine.model:
            # a bad value met first when the second stages are built, after the first stage
            try:
                _section("refine model", ModelConfig,
                         with_settings(asdict(self.model), self.refine.model))
            except ValueError as exc:
                raise ValueError(f"refine model settings {self.refine.model}: {exc}") from None
        if self.refine.augment or self.refine.group_augment:
            # a bad value met first when the second stages start
            for group in [None, *self.refine.group_augment]:
                stage_augment(self, group)
        if self.pretrain_share > 0 and self.model.family == "fmnet":
            # refused when pre-training starts, after the run's files are written
            raise ValueError("pretrain_share: masked pre-training needs a ViT or CNN backbone, "
                             "not fmnet")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        # saved runs hold a whole model section (one without "stem" had the conv stem, the
        # only one then); a dict without the section is the default recipe's network
        model = _section("model", ModelConfig, d.pop("model", asdict(default_model())))
        augment = _section("augment", AugmentConfig, d.pop("augment", {}))
        # runs saved before the second stage existed trained one stage, and those saved
        # before groups could be chosen refined the eye alone
        refine = d.pop("refine", {"share": 0.0})
        refine = _section("refine", RefineConfig,
                          {"auto": "eye", **refine} if isinstance(refine, dict) else refine)
        return _section("training", cls, {**d, "model": model, "augment": augment, "refine": refine})

    def stage(self, share: float, minutes_share: float | None = None, **model: Any) -> TrainConfig:
        """This recipe with ``share`` of its steps and ``minutes_share`` of its minutes (by
        default ``share``), one stage, other model settings."""
        d = asdict(self)
        d["steps"] = max(1, int(round(self.steps * share)))
        d["warmup_steps"] = int(round(self.warmup_steps * share))
        if self.max_minutes is not None:
            d["max_minutes"] = self.max_minutes * (share if minutes_share is None else minutes_share)
        # a stage has no stages of its own
        d["refine"] = {**d["refine"], "share": 0.0, "model": {}, "augment": {}}
        d["model"] = with_settings(d["model"], model)
        return TrainConfig.from_dict(d)

    def refine_minutes_share(self) -> float:
        """The second stages' share of the minutes: ``refine.share``, raised to give them
        ``refine.min_minutes`` in all, but never more than half the budget."""
        rc = self.refine
        if not rc.share or not rc.min_minutes or self.max_minutes is None:
            return rc.share
        return max(rc.share, min(rc.min_minutes / self.max_minutes, 0.5))


def _section(name: str, cls: type, d: Any) -> Any:
    """``cls(**d)`` for the ``name`` section of a training config. A misspelt key was
    refused as Python's "ModelConfig.__init__() got an unexpected keyword argument 'dept'",
    which names neither the section nor the config's own words; the top level is read by
    it too ("unknown training settings")."""
    if not isinstance(d, dict):
        raise ValueError(f"'{name}' must be a JSON object of settings, got {type(d).__name__}")
    unknown = sorted(map(str, set(d) - set(cls.__dataclass_fields__)))
    if unknown:
        raise ValueError(f"unknown {name} settings {unknown}")
    return cls(**d)


def profile_config(profile: str) -> TrainConfig:
    """The recipe of each run profile (see ``vit_facemap.config.PROFILES``)."""
    if profile == "test":
        return TrainConfig(
            model=ModelConfig(family="hybrid", depth=1, stem_widths=[8, 16, 32], decoder_channels=16,
                              input_w=64, input_h=48),
            steps=8, batch_size=4, warmup_steps=2, refine=RefineConfig(share=0.0),
        )
    if profile == "quick":
        return TrainConfig(steps=300, warmup_steps=30)
    if profile == "full":
        return TrainConfig(steps=20000, batch_size=32, warmup_steps=1000,
                           model=replace(default_model(), depth=8, input_w=256, input_h=192))
    if profile == "default":
        # 2 CPU cores, 30 minutes in all: at most 28 minutes of training, the rest for
        # reading frames and saving (each stage stops at its share of steps or of minutes).
        # The crop stages get a quarter: their 2000 steps (1000 each on schroeder) take a
        # fast machine a few minutes. The first stage gets three quarters under a 6000-step
        # cap that its clock reaches first on 2 cores: on a slow machine (no AVX-512) its
        # steps set the nose, and half the minutes lost 0.3-1.9 px on each split tried. At
        # 6 minutes the crop stages' share runs too few steps and half won by 0.2-0.5 px
        # (benchmarks/tracker.py's hybrid_even_split), so they get 6 minutes at least (half
        # up to 12 minutes): at 12, 3 minutes left g7c1's crop stages on about 200 steps
        # each and half won there too (seeds 0 and 1: g7c1 9.06 and 9.19 px against 9.59
        # and 9.68, schroeder split 0 3.82 and 3.93 against 3.80 and 3.87; seed 0 at 16, 6
        # minutes against 4: g7c1 9.23 against 9.43, schroeder 3.82 against 3.79; at 20, 6
        # against 5: g7c1 9.27 against 9.20, schroeder 3.75 against 4.04). The book
        # re-executed at 6 minutes, where the crop stages get half either way: g7c1 9.53 px,
        # schroeder split 0 4.29. At 28 minutes 30% of the steps and minutes for the crop stages
        # (share 0.3 against 0.25, seeds 0 and 1, each pair on one machine) scored g7c1 9.11 and
        # 9.61 against 9.17 and 9.23 px and schroeder split 0 3.32 and 3.25 against 3.47 and
        # 3.21, within a seed's 0.45 px; 0.4 (seed 0, without AVX-512, where the first stage
        # lost a fifth to a quarter of its steps) tied g7c1 (8.90 against 8.90) and lost
        # schroeder's nose (3.42 against 3.28): kept at a quarter. On a fast machine (and on
        # that pair's) every crop stage reached its step cap and a run trained 25-26 of its 28
        # minutes; 12000 steps, which let the crop stages run their minutes out (750 steps a
        # group on g7c1), scored g7c1 9.10 and 9.30 against 8.90 and 9.23 and schroeder 3.22
        # and 3.33 against 3.27 and 3.21 (seeds 0 and 1, fast machine): kept at 8000
        return TrainConfig(max_minutes=28.0, steps=8000,
                           refine=RefineConfig(share=0.25, min_minutes=6.0))
    raise ValueError(f"unknown profile {profile!r}")


def set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def cuda_rng_state(device: str) -> torch.Tensor | None:
    """The random state of the GPU a run trains on (drop path draws there); None on the CPU."""
    return torch.cuda.get_rng_state(device) if device.startswith("cuda") else None


def set_cuda_rng_state(state: torch.Tensor | None, device: str) -> None:
    """Restore :func:`cuda_rng_state`'s ``state`` when resuming on a GPU; a state saved on the
    CPU or by an earlier version (None), or a resume on the CPU, leaves the GPU's as it is."""
    if state is not None and device.startswith("cuda"):
        torch.cuda.set_rng_state(state.cpu(), device)  # map_location moved it with the weights


def heatmap_to_input(cells: torch.Tensor, stride: int) -> torch.Tensor:
    """Heatmap cell coordinates -> input pixel coordinates (cell j covers pixels [j*s, (j+1)*s))."""
    return cells * stride + (stride - 1) / 2


def input_to_heatmap(uv: torch.Tensor, stride: int) -> torch.Tensor:
    return (uv - (stride - 1) / 2) / stride


def keypoint_loss(out: dict[str, torch.Tensor], target: torch.Tensor, model: KeypointModel,
                  sigma: float, coord_weight: float) -> torch.Tensor:
    """Loss over visible keypoints only (NaN targets are masked out)."""
    visible = ~torch.isnan(target).any(-1)
    n_vis = visible.sum().clamp_min(1)
    if "heatmap" in out:
        logits = out["heatmap"].float()
        cells = input_to_heatmap(target, model.stride)
        ce = heatmap_cross_entropy(logits, cells, visible.float(), sigma)
        pred, _ = soft_argmax(logits)
        l1 = (pred - torch.nan_to_num(cells)).abs().sum(-1)
        per = ce + coord_weight * l1
        return (per * visible).sum() / n_vis
    size = torch.tensor([model.config.input_w, model.config.input_h], device=target.device)
    l1 = ((out["coords"].float() - torch.nan_to_num(target)) / size).abs().sum(-1)
    bce = F.binary_cross_entropy_with_logits(out["vis"].float(), visible.float(), reduction="mean")
    return (l1 * visible).sum() / n_vis + 0.1 * bce


@torch.inference_mode()
def decode(out: dict[str, torch.Tensor], stride: int, radius: int = DEFAULT_RADIUS
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Model output -> keypoints in input pixels (B, K, 2) and confidence in [0, 1] (B, K).

    ``radius``: the heatmap window read around each peak (a run's ``decode_radius``).
    """
    if "heatmap" in out:
        cells, conf = local_soft_argmax(out["heatmap"].float(), radius)
        return heatmap_to_input(cells, stride), conf
    return out["coords"].float(), torch.sigmoid(out["vis"].float())


def trained_with_amp(run_config: dict[str, Any]) -> bool:
    """Whether a saved run trained in mixed precision (its TrainConfig.amp): its prediction
    follows it. Runs saved without the setting predicted under autocast, and still do."""
    return bool((run_config.get("train") or {}).get("amp", True))


def inference_autocast(device: str, amp: bool = True) -> torch.autocast:
    """Mixed precision for prediction on a GPU when the run trained with it (``amp``, its
    TrainConfig.amp), none on the CPU."""
    return torch.autocast(device_type="cuda", enabled=amp and device.startswith("cuda"))


@torch.inference_mode()
def predict_inputs(model: KeypointModel, images: np.ndarray | torch.Tensor, device: str,
                   batch_size: int = 32, radius: int = DEFAULT_RADIUS, amp: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (input pixels) and confidence for normalised inputs (N, C, h, w);
    ``amp``: the run's TrainConfig.amp."""
    model.eval()
    kps, confs = [], []
    for i in range(0, len(images), batch_size):
        x = torch.as_tensor(images[i:i + batch_size]).to(device)
        with inference_autocast(device, amp):
            out = model(x)
        kp, conf = decode(out, model.stride, radius)
        kps.append(kp.cpu().numpy())
        confs.append(conf.cpu().numpy())
    return np.concatenate(kps), np.concatenate(confs)


def crop_mapping(config: TrainConfig, keypoints: np.ndarray, frame_size: tuple[int, int]) -> InputMapping:
    size = config.model.input_size
    if config.crop == "labels":
        return label_box(keypoints, frame_size, size, config.crop_margin)
    if config.crop == "full":
        return full_frame_box(frame_size, size)
    raise ValueError(f"unknown crop {config.crop!r}; use labels or full")


RUN_FILES = (CONFIG_FILE, WEIGHTS_FILE, STATE_FILE, METRICS_FILE, SPLIT_FILE, "runinfo.json")


def is_run_file(rel: Path) -> bool:
    """Whether ``rel`` (a path inside a run folder) is one of the run's own files: those a run
    writes, its second stages and the earlier run an ``--overwrite`` set aside."""
    top = rel.parts[0] if rel.parts else ""
    return top in RUN_FILES or top == REFINE_DIR or is_set_aside(top)


def stage_dirs(out: Path) -> list[Path]:
    """A run's second-stage folders (``out/refine/<group>``); hidden folders are not stages."""
    folder = out / REFINE_DIR
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []


def _run_files(out: Path) -> list[Path]:
    """The files a run wrote in ``out`` and its second stages' folders, relative to ``out``."""
    stages = stage_dirs(out)
    return [(folder / name).relative_to(out) for folder in (out, *stages) for name in RUN_FILES
            if (folder / name).is_file()]


def _delete_run_files(out: Path) -> None:
    """Delete the files a run wrote (not a user's own) and the stage folders left empty."""
    for rel in _run_files(out):
        (out / rel).unlink()
    for folder in (*stage_dirs(out), out / REFINE_DIR):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def prepare_run_dir(out: Path, overwrite: bool, resume: bool, keep_replaced: bool = True
                    ) -> Path | None:
    """Make ``out`` ready for a run; with ``overwrite``, set the old run's files aside.

    Returns the hidden folder inside ``out`` that holds the replaced run's files, or None.
    The caller deletes it once the new run is saved, or puts the files back if it fails, so
    a retrain that stops on bad data or an error never loses the run it was replacing.
    ``keep_replaced=False`` deletes them at once (a second stage's unfinished files, whose
    run as a whole was already set aside or is being resumed).
    """
    if out.exists() and not out.is_dir():
        raise DataError("the run folder is a file; give a folder for the run", out)
    backup = None
    if out.exists() and any(out.iterdir()):
        if resume:
            if not (out / STATE_FILE).is_file():
                raise DataError(f"nothing to resume: no {STATE_FILE} in the run folder", out)
            return None
        if not overwrite:
            raise RunExistsError(out, "pass --overwrite to replace it or --resume to continue it")
        earlier = _own_set_aside(out)
        if keep_replaced and earlier and not is_finished(out):
            # an earlier --overwrite stopped part-way (one that finishes drops its backup):
            # the run here is its unfinished one, which this run starts again, and the
            # newest finished run set aside is the last complete one. That folder becomes
            # this run's backup, named if it is interrupted too and put back if it fails,
            # rather than hidden for good behind a new set-aside folder.
            backup = newest_set_aside(earlier, is_finished)
        elif keep_replaced:
            # only the files a run writes: anything else of the user's in the folder stays
            backup = set_aside(out, _run_files(out))
        _delete_run_files(out)  # what was not moved aside (keep_replaced=False: all of it)
    out.mkdir(parents=True, exist_ok=True)
    return backup


def is_finished(out: Path) -> bool:
    """Whether the run in ``out`` finished training, its second stages included.

    The first stage's runinfo.json is written before the second stages start (an
    interrupted run still describes stage 1), so the file alone does not say it: the summary
    of a finished run holds ``total_steps`` (set last) or, written before that was, its
    second stages (``refine``) where the recipe asked for any.
    """
    if not all((folder / "runinfo.json").is_file() for folder in (out, *stage_dirs(out))):
        return False
    try:
        summary = json.loads((out / "runinfo.json").read_text()).get("summary") or {}
        refine = json.loads((out / CONFIG_FILE).read_text())["train"].get("refine") or {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return "total_steps" in summary or "refine" in summary or not refine.get("share")


def _own_set_aside(out: Path) -> list[Path]:
    """The runs an ``--overwrite`` set aside in ``out``, oldest first: not the results another
    command (``track`` into the run folder) set aside there."""
    return [b for b in set_aside_folders(out) if any((b / n).is_file() for n in RUN_FILES)]


def _finish_replacing(out: Path, backup: Path | None, ok: bool) -> None:
    """Drop the replaced run once the new one is saved (``ok``); else keep both.

    A new run that failed before saving any training state is removed and the old one put
    back. One that saved state (interrupted mid-training) stays, so ``--resume`` can continue
    it, and the old run's files stay in ``backup``, which the warning names.
    """
    if backup is None:
        return
    if ok:
        shutil.rmtree(backup, ignore_errors=True)
    elif (out / STATE_FILE).is_file():
        warnings.warn(f"{out}: the new run stopped part-way and can be resumed; the run it "
                      f"replaces is kept in {backup} until the new one finishes",
                      stacklevel=3)
    else:
        _delete_run_files(out)
        (out / (STATE_FILE + ".tmp")).unlink(missing_ok=True)
        put_back(out, backup)


def _frame_size(frames: LabeledFrames) -> tuple[int, int]:
    # every frame: a header read each (0.06 s for 508 frames); a frame of another size past
    # the first few trained the second stage on crops of the wrong side
    size_of = {p: image_size(p) for p in set(frames.image_paths)}  # a second stage's crops repeat
    sizes = set(size_of.values())
    if len(sizes) > 1:
        # the sizes alone left a project of two cameras to find which videos are which
        videos: dict[tuple[int, int], set[str]] = {}
        for path, video in zip(frames.image_paths, frames.videos, strict=True):
            videos.setdefault(size_of[path], set()).add(str(video))
        which = "; ".join(f"{w}x{h}: videos {sorted(videos[w, h])[:3]}"
                          f"{' ...' if len(videos[w, h]) > 3 else ''}" for w, h in sorted(sizes))
        raise DataError(f"frames come in several sizes {sorted(sizes)} ({which}); the tracker "
                        "needs one size: train a run per camera, or resize the frames and their "
                        "labels to one size", frames.root)
    return sizes.pop()


def lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` of training, then cosine decay to zero."""
    if progress < warmup:
        return max(progress / warmup, 1e-3)
    t = (progress - warmup) / max(1e-9, 1 - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


# the share of a stage's time budget the clock may lead its steps by before it paces the
# schedule: the first steps of a stage are slow (kernels built, frames first read), and a
# lead of a few seconds there made a handful of early steps' learning rates follow the
# clock, so two runs of one seed on one machine differed (schroeder split 1: 8.27 and 8.68 px)
CLOCK_SLACK = 0.03


def training_progress(step: int, seconds: float, config: TrainConfig) -> float:
    """The schedule's progress (1: done) after ``step`` steps and ``seconds`` of training."""
    p = step / max(1, config.steps)
    if config.max_minutes is not None:
        spent = seconds / (60 * config.max_minutes)
        p = max(p, (spent - CLOCK_SLACK) / (1 - CLOCK_SLACK))
    return p


def errors_px(pred_frame: np.ndarray, true_frame: np.ndarray) -> np.ndarray:
    """Euclidean error per frame and keypoint (NaN where the label is missing)."""
    return np.sqrt(((pred_frame - true_frame) ** 2).sum(-1))


def fit(
    config: TrainConfig,
    train_frames: LabeledFrames,
    out: str | Path,
    val_frames: LabeledFrames | None = None,
    device: str = "auto",
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    extra_info: dict[str, Any] | None = None,
    *,
    boxes: list[InputMapping] | None = None,
    val_boxes: list[InputMapping] | None = None,
    stage_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a keypoint model on ``train_frames``; returns a summary (also in ``runinfo.json``).

    With ``config.refine.share > 0`` and keypoint groups to refine (by default the eye and
    pupil points, and the nose points), the first stage gets ``1 - share`` of the budget
    (fewer minutes where ``refine.min_minutes`` asks for more) and a second, top-down stage
    per group (:mod:`vit_facemap.refine`) the rest, saved in
    ``out/refine/<group>/``.
    ``boxes`` / ``val_boxes`` (one crop box per frame) and ``stage_info`` are how that
    second stage is trained; callers leave them out.
    Torch runs on ``config.num_threads`` CPU threads during the run; the caller's thread
    count is restored after it, however it ends.
    """
    out = Path(out)
    if not resume:
        # checked when a run starts, not when its config is read: a run saved before the
        # check (any seed numpy took) still loads and resumes
        try:
            check_seed(config.seed, "training seed")
        except ValueError as exc:
            raise DataError(str(exc)) from None
    frame_size = _frame_size(train_frames)  # bad data fails before a run it replaces is touched
    if (val_frames is not None and boxes is None and len(val_frames)
            and not np.isfinite(val_frames.keypoints).any()):
        # every score was NaN, which is never below the best so far: the run ended "trained"
        # with no model.safetensors (a held-out video that is not labeled yet)
        videos = sorted(set(map(str, val_frames.videos)))
        raise DataError(f"the validation frames (videos {videos}) have no labeled keypoint, so "
                        "no epoch can be scored; hold out videos with labels (--val-groups)",
                        val_frames.root)
    # a second stage (boxes given) is part of a run its caller already set aside
    backup = prepare_run_dir(out, overwrite, resume, keep_replaced=boxes is None)
    threads = torch.get_num_threads()  # config.num_threads is for this run only
    try:
        summary = _fit(config, train_frames, frame_size, out, val_frames, device, resume,
                       progress, extra_info, boxes=boxes, val_boxes=val_boxes,
                       stage_info=stage_info)
    except BaseException:
        _finish_replacing(out, backup, ok=False)
        if backup is None and not resume and not (out / STATE_FILE).is_file():
            # a new run stopped before its first epoch was saved (Ctrl-C while its frames
            # load, say): its config.json and split.json alone could neither be resumed
            # ("no last.pt") nor started again without --overwrite ("already exists")
            _delete_run_files(out)
            (out / (STATE_FILE + ".tmp")).unlink(missing_ok=True)
        raise
    finally:
        torch.set_num_threads(threads)
    _finish_replacing(out, backup, ok=True)
    if boxes is None:
        # the run is complete, so every run set aside before it goes: the one an interrupted
        # --overwrite replaced (now resumed or replaced again to the end), and any other an
        # earlier version left beside it
        for old in _own_set_aside(out):
            shutil.rmtree(old, ignore_errors=True)
    return summary


def _fit(config: TrainConfig, train_frames: LabeledFrames, frame_size: tuple[int, int],
         out: Path, val_frames: LabeledFrames | None, device: str, resume: bool, progress: bool,
         extra_info: dict[str, Any] | None, *, boxes: list[InputMapping] | None,
         val_boxes: list[InputMapping] | None, stage_info: dict[str, Any] | None
         ) -> dict[str, Any]:
    device = resolve_device(device)
    saved: dict[str, Any] = {}
    if resume:
        try:
            saved = json.loads((out / CONFIG_FILE).read_text())
            # the run's own settings from the start: the caller's (the command line's default
            # profile, when --resume names none) decided whether slipped labels were left
            # out, and a mask_slips run trained on after --resume with the labels it had masked
            config = TrainConfig.from_dict(saved["train"])
            list(saved["bodyparts"])
            # the first stage's crop box, read here: a hand-edited one (left out, null) was a
            # KeyError or TypeError traceback further down
            saved_mapping = InputMapping(**saved["mapping"]) if boxes is None else None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # hand-edited or truncated: a KeyError traceback said nothing of the file
            raise DataError(f"cannot read the run to resume ({exc!r})", out / CONFIG_FILE) from None
    torch.set_num_threads(config.num_threads)
    set_seed(config.seed)
    masked = []
    if config.mask_slips and boxes is None:
        slips = label_slips(train_frames)
        train_frames = mask_slips(train_frames, slips)
        masked = slips.round(1).to_dict(orient="records")
        if masked:
            warnings.warn(f"left out {len(masked)} training label(s) that sit where another "
                          "keypoint usually is or far off the face (listed in config.json: "
                          "masked_labels)", stacklevel=2)
    flips = None
    if boxes is None and config.augment.hflip == "auto":
        # resolved once, on the first stage's training frames, and saved resolved: the
        # second stages and a resumed run flip as the first stage decided
        mirrored = mirrored_videos(video_poses(train_frames))
        hflip, flips = resolve_hflip(config.augment, list(train_frames.bodyparts), mirrored)
        if hflip > 0 and resolve_hflip(config.augment, list(train_frames.bodyparts))[0] == 0:
            # the videos alone turned flips on: a name meaning an image side without a side
            # word (eye1 / eye2) would now be wrong in every mirrored sample
            warnings.warn(f"training flips half the samples because {len(mirrored)} training "
                          f"video(s) show the face from the other side ({', '.join(mirrored)}); "
                          f"the keypoints {list(train_frames.bodyparts)} are taken to be the same "
                          "points in the mirror image (augment.flip_pairs lists pairs that swap, "
                          "augment.hflip: 0 turns flips off)", stacklevel=2)
        # a copy, not replace(): the caller's config stays as given, and its other settings
        # are checked below, where a bad one is a one-line DataError
        config = copy.copy(config)
        config.augment = replace(config.augment, hflip=hflip)
    mapping = None if boxes is not None else crop_mapping(config, train_frames.keypoints, frame_size)
    run_config = {
        "train": asdict(config), "bodyparts": list(train_frames.bodyparts),
        "frame_size": list(frame_size), "mapping": None if mapping is None else asdict(mapping),
        "channels": config.model.channels, "decode_radius": decode_radius(config.sigma),
        **(stage_info or {}),
    }
    if masked:
        run_config["masked_labels"] = masked
    facing = facing_points(train_frames.bodyparts) if boxes is None else None
    offsets = None if facing is None else nose_offsets(train_frames.keypoints, *facing)
    if offsets is not None:
        # where prediction may read the nose from the eye (vit_facemap.predict.NOSE_MARGIN)
        run_config["nose_offsets"] = offsets
    if flips is not None:
        run_config["hflip_auto"] = flips  # why "auto" came to train.augment.hflip
    if extra_info and extra_info.get("profile"):
        # runinfo.json comes only when the first stage ends: a run interrupted before
        # that is resumed with the profile it started with from here
        run_config["profile"] = extra_info["profile"]
    if resume:
        if saved["bodyparts"] != run_config["bodyparts"]:
            raise DataError("the run to resume was trained on other keypoints", out / CONFIG_FILE)
        if boxes is None:
            mapping = saved_mapping
        run_config = saved
    # saved with the run: one decoded before the radius followed sigma keeps its window
    radius = int(run_config.get("decode_radius", DEFAULT_RADIUS))
    recipe = config
    groups = (refine_groups(train_frames.bodyparts, config.refine)
              if config.refine.share > 0 and boxes is None else {})
    # a resumed run's weights come from its training state: the file it started from is not
    # read again (it may have moved, or be a hub download now offline)
    start = ModelConfig(**{**asdict(config.model), "weights": None}) if resume else config.model
    # a model its settings cannot build, or a weights file that does not fit it, fails here,
    # not after the run's files are written
    _check_model(start, "model", weights=True)
    if groups:
        # fail now, not after the first stage has spent its budget
        _check_refine_stage(recipe, len(groups))
        unknown = sorted(set(config.refine.group_augment) - set(groups))
        if unknown:
            # a misspelt name would train that group with the shared settings unnoticed
            raise DataError(f"refine group_augment names {unknown}, which are not among this "
                            f"set's second-stage groups {list(groups)}")
    for name, idx in groups.items():
        if not np.isfinite(train_frames.keypoints[:, idx]).all(-1).any():
            raise DataError(f"refine group {name!r} ({[train_frames.bodyparts[i] for i in idx]}) "
                            "has no labeled point in any training frame", train_frames.root)
    stage_pairs = _stage_flip_pairs(recipe.augment, list(train_frames.bodyparts), groups)
    split = {"train": train_frames.index, "val": [] if val_frames is None else val_frames.index}
    if not resume:  # after the checks above: a refused run leaves no run behind
        write_json(run_config, out / CONFIG_FILE)
        write_json(split, out / SPLIT_FILE)  # part of the run from its first step
    else:
        _check_split(out, split, first_stage=boxes is None)
    if groups:
        config = _first_stage_config(recipe)
    n_k = len(train_frames.bodyparts)

    t_load = time.perf_counter()
    x_tr, k_tr = load_inputs(train_frames, boxes if boxes is not None else mapping,
                             config.model.channels, frame_size, progress, config.model.equalize)
    augmenter = KeypointAugmenter(config.augment, list(train_frames.bodyparts), seed=config.seed,
                                  pairs_required=boxes is None)
    train_ds = KeypointDataset(x_tr, k_tr, augmenter)
    val_x, val_back = None, None
    val_map = val_boxes if boxes is not None else mapping
    if val_frames is not None and len(val_frames) and val_map is not None:
        vx, _ = load_inputs(val_frames, val_map, config.model.channels, frame_size, progress,
                            config.model.equalize)
        val_x = torch.from_numpy(normalise(vx))
        # load_inputs scales the first stage's box to each frame's size; predictions go back
        # through that same box (a second stage's boxes are already in each frame's pixels)
        val_back = (_frame_boxes(val_map, frame_size, val_frames)
                    if isinstance(val_map, InputMapping) else val_map)
    load_s = time.perf_counter() - t_load

    model = build_model(start, n_k).to(device)
    pretrain_s, pretrain_loss, pre_steps = 0.0, None, 0
    if config.pretrain_share > 0 and not resume:
        pretrain_s, pretrain_loss = pretrain_backbone(model, train_ds, config, device, progress)
        pre_steps = pretrain_steps(config)
    if device == "cpu":
        model = model.to(memory_format=torch.channels_last)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or "pos_embed" in name or "cls_token" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    use_amp = config.amp and device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    step, epoch, best, history = 0, 0, math.inf, []
    last_val_step = clock_paced = 0
    elapsed_before = 0.0
    loader_rng = None
    ema_state = None
    if resume:
        try:
            state = torch.load(out / STATE_FILE, map_location=device, weights_only=False)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            step, epoch, best = state["step"], state["epoch"], state["best"]
            ema_state = state.get("ema")
            if "augmenter" in state:
                augmenter.set_random_state(state["augmenter"])
            # empty when saved with mixed precision off (on the CPU): a run started there and
            # resumed on a GPU was refused as corrupt; its scaler starts afresh instead
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
        except Exception as exc:  # truncated file, or the state of another model
            raise DataError(f"cannot resume from this training state (corrupt, or saved for "
                            f"another model): {first_line(exc)}", out / STATE_FILE) from None
        elapsed_before = state.get("train_s", 0.0)
        torch.set_rng_state(state["torch_rng"].cpu())  # map_location moved it with the weights
        # the GPU's too: without it a resumed run drew other drop-path masks on a GPU
        set_cuda_rng_state(state.get("cuda_rng"), device)
        random.setstate(state["python_rng"])
        if "augmenter" not in state:  # saved before the augmentation streams were
            augmenter.rng = np.random.default_rng(config.seed + 1000 * epoch)
        # the rows up to the saved step, from the state: metrics.csv is written after it, so
        # an interruption in between left the file a row behind (written again here)
        history = state.get("history")
        if history is None:  # saved before the state held them
            history = [r for r in _read_metrics(out / METRICS_FILE) if r["step"] <= step]
        _write_metrics(out / METRICS_FILE, history)
        validated = [r["step"] for r in history if r.get("val_mean_px") is not None]
        last_val_step = state.get("last_val_step", validated[-1] if validated else 0)
        loader_rng = state.get("loader_rng")
        # a state saved before it held these gave supervised training all steps and minutes
        pre_steps = state.get("pretrain_steps", 0)
        pretrain_s = state.get("pretrain_s", 0.0)
        pretrain_loss = state.get("pretrain_loss")
        clock_paced = state.get("clock_paced_steps", 0)  # saved before it was counted: 0
    # the average starts from the weights training starts from (pre-trained, or resumed)
    ema = ModelEmaV3(model, decay=config.ema, use_warmup=True) if config.ema > 0 else None
    if ema is not None and ema_state is not None:
        ema.module.load_state_dict(ema_state)
    kept = model if ema is None else ema.module  # the weights validated and saved
    if config.pretrain_share > 0:
        config = _after_pretraining(config, pre_steps, pretrain_s)
    # warm-up as a share of training, capped so that a short run still decays
    warmup = min(config.warmup_steps / max(1, config.steps), 0.2)

    gen = torch.Generator().manual_seed(config.seed + epoch)
    if loader_rng is not None:
        gen.set_state(loader_rng.cpu())  # the next epoch's order, as it would have been
    loader = DataLoader(train_ds, batch_size=min(config.batch_size, len(train_ds)), shuffle=True,
                        drop_last=len(train_ds) >= config.batch_size, generator=gen,
                        num_workers=config.num_workers, worker_init_fn=_seed_worker)
    t0 = time.perf_counter() - elapsed_before
    progress_now = training_progress(step, elapsed_before, config)
    bar = tqdm(total=config.steps, initial=step, desc="train", disable=not progress)
    while progress_now < 1:
        model.train()
        losses = []
        epoch_start_progress = progress_now
        for x, kp in loader:
            progress_now = training_progress(step, time.perf_counter() - t0, config)
            if progress_now >= 1:
                break
            if progress_now > training_progress(step, 0.0, config):
                clock_paced += 1  # this step's learning rate came from the clock
            for g in opt.param_groups:
                g["lr"] = config.lr * lr_factor(progress_now, warmup)
            x, kp = x.to(device, non_blocking=True), kp.to(device)
            if device == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type="cuda", enabled=use_amp):
                outputs = model(x)
            loss = keypoint_loss(outputs, kp, model, config.sigma, config.coord_weight)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            if config.clip > 0:  # clip 0 (allowed) scaled every gradient to 0: nothing learnt
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            scaler.step(opt)
            scaler.update()
            step += 1
            if ema is not None:
                ema.update(model, step=step)
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if not losses:
            break
        epoch += 1
        row: dict[str, Any] = {"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)),
                               "lr": opt.param_groups[0]["lr"],
                               "train_s": time.perf_counter() - t0}
        score = None
        progress_now = training_progress(step, time.perf_counter() - t0, config)
        # On a small set an epoch is a few steps and a pass over the validation frames costs
        # as much as those steps: validate every epoch that completes val_every_steps steps
        # (every epoch on larger sets) and at the end, so validation cannot eat the budget.
        # (the epoch that will end training, as projected from this one's length, is validated)
        last_epoch = 2 * progress_now - epoch_start_progress >= 1
        due = step - last_val_step >= config.val_every_steps or last_epoch
        if val_x is not None and due:
            last_val_step = step
            pred, _ = predict_inputs(kept, val_x, device, radius=radius, amp=config.amp)
            err = errors_px(to_frame(val_back, pred), val_frames.keypoints)
            row["val_mean_px"] = float(np.nanmean(err))
            row["val_median_px"] = float(np.nanmedian(err))
            score = row["val_mean_px"]
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_px=f"{score:.2f}")
        history.append(row)
        improved = (config.keep == "last" or (val_x is None and score is None)
                    or (score is not None and score < best))
        # weights, then the state, then the metrics: an interruption in between repeats the
        # epoch on --resume (the same epoch, all random streams being restored), and the
        # state holds the rows, so metrics.csv never keeps a row the resumed run writes again
        if improved:
            best = score if score is not None and score < best else best
            save_weights(kept, out / WEIGHTS_FILE)
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                    "ema": None if ema is None else ema.module.state_dict(),
                    "step": step, "epoch": epoch, "best": best, "last_val_step": last_val_step,
                    "train_s": time.perf_counter() - t0, "torch_rng": torch.get_rng_state(),
                    "cuda_rng": cuda_rng_state(device),
                    "python_rng": random.getstate(), "loader_rng": gen.get_state(),
                    "augmenter": augmenter.random_state(), "scaler": scaler.state_dict(),
                    "history": history, "pretrain_steps": pre_steps, "pretrain_s": pretrain_s,
                    "pretrain_loss": pretrain_loss, "clock_paced_steps": clock_paced},
                   out / (STATE_FILE + ".tmp"))
        (out / (STATE_FILE + ".tmp")).replace(out / STATE_FILE)
        _write_metrics(out / METRICS_FILE, history)
    bar.close()
    train_s = time.perf_counter() - t0
    summary = {
        "steps": step, "epochs": epoch, "train_s": train_s, "load_s": load_s,
        "best_val_mean_px": None if math.isinf(best) else best,
        "stopped_by_time_budget": step < config.steps,
        "clock_paced_steps": clock_paced,
        "pretrain_s": pretrain_s, "pretrain_steps": pre_steps, "pretrain_final_loss": pretrain_loss,
        "n_train_frames": len(train_frames),
        # the keypoints a horizontal flip swaps, as resolved for these names ("auto" included)
        "flip_pairs": augmenter.pairs if augmenter.hflip > 0 else [],
        "n_val_frames": 0 if val_frames is None else len(val_frames),
        "train_videos": sorted(set(train_frames.videos.tolist())),
        "val_videos": [] if val_frames is None else sorted(set(val_frames.videos.tolist())),
    }
    if groups:
        # written before the second stage starts, so an interrupted run still describes stage 1
        write_json(describe(recipe, device, summary=summary, **(extra_info or {})), out / "runinfo.json")
        summary["refine"] = {}
        val_kp1 = (_first_stage_keypoints(out, device, val_frames)
                   if val_frames is not None and len(val_frames) else None)
        for name, idx in groups.items():
            s2 = _fit_refine(recipe, name, idx, len(groups), train_frames, val_frames, val_kp1,
                             out, device, resume, progress, stage_pairs[name])
            summary["refine"][name] = s2
            summary["train_s"] += s2["train_s"]
    # "steps" counts the first stage (as a stage's own run does); this, every stage's, for
    # the command's message and the benchmark's table (set last: a run interrupted in its
    # second stage describes the first alone)
    summary["total_steps"] = all_stages(summary, "steps")
    write_json(describe(recipe, device, summary=summary, **(extra_info or {})), out / "runinfo.json")
    return summary


def all_stages(summary: dict, key: str) -> float:
    """``key`` of a :func:`fit` summary summed over the first stage and its second stages."""
    return summary[key] + sum(s2[key] for s2 in summary.get("refine", {}).values())


def _seed_worker(worker_id: int) -> None:
    """Reseed a DataLoader worker's copy of the augmenter from the worker's seed.

    That seed is the loader's base seed, drawn from its generator for every epoch, plus the
    worker's number: without it every worker would repeat the augmentations of the others,
    epoch after epoch.
    """
    info = torch.utils.data.get_worker_info()
    augmenter = getattr(info.dataset, "augmenter", None) if info is not None else None
    if augmenter is not None:
        augmenter.reseed(info.seed)


def to_frame(mapping: InputMapping | list[InputMapping], uv: np.ndarray) -> np.ndarray:
    """Input pixels (N, K, 2) -> frame pixels, through one crop box or one per frame."""
    if isinstance(mapping, InputMapping):
        return mapping.to_frame(uv)
    return np.stack([m.to_frame(p) for m, p in zip(mapping, uv, strict=True)])


def read_split(run_dir: Path) -> dict[str, list[str]] | None:
    """A run's split.json: the names of the frames it trains and validates on
    (``{"train": [...], "val": [...]}``); None for a run saved before it was written at the
    start. One that cannot be read is refused: resuming needs the run's own split."""
    path = Path(run_dir) / SPLIT_FILE
    if not path.is_file():
        return None
    try:
        split = json.loads(path.read_text())
        return {"train": list(split["train"]), "val": list(split["val"])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read the run's split ({exc})", path) from None


def _check_split(out: Path, split: dict[str, list[str]], first_stage: bool) -> None:
    """Refuse to resume a run on other training or validation frames than it started with.

    A run saved before split.json was written at the start has none to compare with: it
    gets the frames given. A second stage's frames are cut from the first stage's, already
    checked, so its split is written only when missing.
    """
    saved = read_split(out) if first_stage else None
    if saved is None:
        if not (out / SPLIT_FILE).is_file():
            write_json(split, out / SPLIT_FILE)
        return
    if [saved["train"], saved["val"]] != [list(split["train"]), list(split["val"])]:
        raise DataError("the run to resume trained and validated on other frames than these "
                        f"({len(saved['train'])} training, {len(saved['val'])} validation frames); "
                        "resume it with the same split (vit-facemap train --resume rebuilds it "
                        "from this file)", out / SPLIT_FILE)


def _stage_flip_pairs(augment: AugmentConfig, bodyparts: list[str], groups: dict[str, list[int]]
                      ) -> dict[str, list[list[str]] | str]:
    """Each refine group's flip pairs: the recipe's pairs inside the group ("auto" stays, and
    pairs the group's own names the same way).

    A second stage sees its group's keypoints alone, so a pair with one keypoint inside a
    group and its partner outside could not be swapped in a flipped crop: with flips on that
    is refused here, before the first stage spends its budget.
    """
    pairs = augment.flip_pairs
    if not groups or (isinstance(pairs, str) and pairs != "auto"):
        return {name: pairs for name in groups}  # a bad setting: the first stage names it
    auto = pairs == "auto"
    resolved = mirror_pairs(bodyparts) if auto else pairs
    out: dict[str, list[list[str]] | str] = {}
    for name, idx in groups.items():
        inside = {bodyparts[i] for i in idx}
        for pair in resolved:
            # pairs naming unknown keypoints, or one twice, are the first stage's to refuse
            split = len(set(pair) & inside) == 1 and set(pair) <= set(bodyparts)
            if augment.hflip > 0 and len(pair) == 2 and split:
                a, b = pair if pair[0] in inside else pair[::-1]
                raise DataError(f"flip pair {a!r}/{b!r} is split by the refine groups: {a!r} is "
                                f"refined in group {name!r} and {b!r} is not, so a flipped crop "
                                f"cannot swap them; put both in one refine group or set hflip=0")
        out[name] = "auto" if auto else [list(p) for p in resolved if set(p) <= inside]
    return out


def _frame_boxes(mapping: InputMapping, frame_size: tuple[int, int], frames: LabeledFrames
                 ) -> InputMapping | list[InputMapping]:
    """The crop box of training frames of ``frame_size`` on ``frames``: one box when they all
    have one size, else one per frame."""
    sizes = [image_size(p) for p in frames.image_paths]
    if len(set(sizes)) == 1:
        return mapping.for_frame_size(frame_size, sizes[0])
    return [mapping.for_frame_size(frame_size, size) for size in sizes]


def _first_stage_config(recipe: TrainConfig) -> TrainConfig:
    """The recipe of a two-stage run's first stage: what the second stages leave of the budget."""
    return recipe.stage(1 - recipe.refine.share, 1 - recipe.refine_minutes_share())


def _refine_stage_config(recipe: TrainConfig, n_groups: int,
                         group: str | None = None) -> TrainConfig:
    """The recipe of one group's second stage: its share of the budget, square crops, the
    first stage's model and augmentation with ``refine.model``'s and ``refine.augment``'s
    settings over them (and ``refine.group_augment``'s for ``group``)."""
    rc = recipe.refine
    try:
        config = recipe.stage(rc.share / n_groups, recipe.refine_minutes_share() / n_groups,
                              **{**rc.model, "input_w": rc.input_size, "input_h": rc.input_size})
    except ValueError as exc:
        raise ValueError(f"{_refine_what(rc)}: {exc}") from None
    # saved with the stage: the settings it used
    config.augment = stage_augment(recipe, group)
    return config


def stage_augment(recipe: TrainConfig, group: str | None = None) -> AugmentConfig:
    """A second stage's augmentation: the recipe's with ``refine.augment``'s settings over
    it, and ``refine.group_augment``'s for ``group`` over those."""
    rc = recipe.refine
    own = rc.group_augment.get(group, {})
    what = f"refine group_augment {group!r}" if own else "refine augment"
    given = {**rc.augment, **own}
    flips = sorted({"hflip", "flip_pairs"} & set(given))
    if flips:
        # a stage's flip pairs are the first stage's cut to its group: a stage flipping
        # where the first stage does not would have no pairs to swap
        raise ValueError(f"{what} settings cannot set {flips}: the second stages "
                         "flip as the first stage does")
    try:
        return _section(what, AugmentConfig, {**asdict(recipe.augment), **given})
    except ValueError as exc:
        raise ValueError(f"{what} settings {given}: {exc}") from None


def _refine_what(rc: RefineConfig) -> str:
    """How errors name a second stage's model: its crop size, and its own settings if any
    beyond the default's."""
    own = rc.model and rc.model != RefineConfig().model
    return f"refine input_size {rc.input_size}" + (f" and model {rc.model}" if own else "")


def _check_refine_stage(recipe: TrainConfig, n_groups: int) -> None:
    """Refuse a second stage's recipe its network cannot take (a crop size its patches or
    strides do not tile, settings of ``refine.model`` it cannot build, a weights file that
    does not fit it), as building it would after the first stage."""
    try:
        recipe.refine.check_crops()  # not when a saved run is read: such runs still load
        config = _refine_stage_config(recipe, n_groups)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    # a stage of its own network would meet a weights file made for the first stage's
    # only when its training starts, after the first stage spent its budget
    what = _refine_what(recipe.refine)
    weights = bool(recipe.refine.model) and config.model.weights is not None
    try:
        _check_model(config.model, what, weights=weights)
    except DataError as exc:
        if not weights or exc.path is None:
            raise
        # a second stage of another family or stem does not get the file (with_settings):
        # this one is the first stage's kind of network, changed so the file no longer fits
        raise DataError(f"{what}: the second stages start from the first stage's weights, "
                        f"{exc.message}; give them their own file (refine model 'weights') "
                        "or none (null)", exc.path) from None


def _check_model(model: ModelConfig, what: str, weights: bool = False) -> None:
    """Refuse a network that cannot be built (an input size its patches or strides do not
    tile) before the run's files are written: a user's mistake, said in one line.
    ``weights``: also start it from its pretrained weights (a missing or unfit file)."""
    # built on a side stream of random numbers, so the first stage starts from the same
    # state as without this check; without weights unless asked (no file read, no download)
    with torch.random.fork_rng(devices=[]):
        try:
            build_model(ModelConfig(**{**asdict(model), **({} if weights else {"weights": None})}),
                        1)
        except DataError:
            raise  # a weights file's own error names the file
        except ValueError as exc:
            raise DataError(f"{what}: {exc}") from None


def _first_stage_keypoints(out: Path, device: str, frames: LabeledFrames) -> np.ndarray:
    """The run's first-stage keypoints (frame pixels) on ``frames`` as prediction reads them
    (mirrored views, the nose within its offsets, each video's side): where prediction
    centres the second stages' crops, and so where they are validated."""
    # imported here: predict imports this module
    from vit_facemap.evaluate import predict_frames
    from vit_facemap.predict import load_predictor

    return predict_frames(load_predictor(out, device, refine=False), frames, facing="video")[0]


def _fit_refine(recipe: TrainConfig, name: str, idx: list[int], n_groups: int,
                train_frames: LabeledFrames, val_frames: LabeledFrames | None,
                val_kp1: np.ndarray | None, out: Path, device: str, resume: bool,
                progress: bool, flip_pairs: list[list[str]] | str) -> dict[str, Any]:
    """Train one group's second stage on crops around its keypoints (:mod:`vit_facemap.refine`),
    validated on crops around ``val_kp1``, the first stage's keypoints on ``val_frames``."""
    rc = recipe.refine
    parts = [train_frames.bodyparts[i] for i in idx]
    run1 = json.loads((out / CONFIG_FILE).read_text())
    m1 = InputMapping(**run1["mapping"])
    train_size = tuple(run1["frame_size"])  # the first stage's, from these same frames
    side = crop_side(train_frames.keypoints, idx, max(m1.box_w, m1.box_h), rc)
    rows, boxes = training_crops(train_frames.keypoints, idx, side, rc, recipe.seed)
    crops = LabeledFrames(train_frames.root, [train_frames.index[r] for r in rows],
                          train_frames.keypoints[rows][:, idx], parts, train_frames.scorer)
    config = _refine_stage_config(recipe, n_groups, name)
    config.augment.flip_pairs = flip_pairs
    val_crops, val_boxes = None, None
    if val_frames is not None and val_kp1 is not None:
        # validated where it will work: around the first stage's estimates, not the labels.
        # The crop scales with each frame's width, as prediction cuts it
        # (KeypointPredictor.refine_keypoints); validation frames may have another size
        sides = side * np.array([image_size(p)[0] for p in val_frames.image_paths]) / train_size[0]
        centres = estimate_centres(val_kp1, idx, sides)
        # frames without a label of this group cannot score it
        ok = (np.isfinite(centres).all(-1)
              & np.isfinite(val_frames.keypoints[:, idx]).all(-1).any(-1))
        val_crops = LabeledFrames(val_frames.root, [val_frames.index[r] for r in np.flatnonzero(ok)],
                                  val_frames.keypoints[ok][:, idx], parts, val_frames.scorer)
        val_boxes = crop_mappings(centres[ok], sides[ok], rc.input_size)
    folder = out / REFINE_DIR / name
    again = resume and (folder / STATE_FILE).is_file()
    info = {"refine_of": {"group": name, "parts": parts, "indices": idx, "side_px": side,
                          "frame_size": list(train_size)}}
    return fit(config, crops, folder, val_crops, device=device, overwrite=not again, resume=again,
               progress=progress, boxes=boxes, val_boxes=val_boxes, stage_info=info)


def pretrain_steps(config: TrainConfig) -> int:
    """The masked pre-training steps of a recipe: its ``pretrain_share`` of ``steps``."""
    return max(1, int(config.pretrain_share * config.steps))


def _after_pretraining(config: TrainConfig, steps: int, seconds: float) -> TrainConfig:
    """The supervised part of a recipe whose pre-training took ``steps`` and ``seconds``."""
    d: dict[str, Any] = {**asdict(config), "pretrain_share": 0.0,
                         "steps": max(1, config.steps - steps)}
    if config.max_minutes is not None:
        # at least a few seconds: pre-training may overrun its share of the budget
        d["max_minutes"] = max(config.max_minutes - seconds / 60, 0.05)
    return TrainConfig.from_dict(d)


def pretrain_backbone(model: KeypointModel, dataset: KeypointDataset, config: TrainConfig,
                      device: str, progress: bool = True) -> tuple[float, float | None]:
    """Masked image modelling on the training frames; returns (seconds, last loss).

    Runs ``pretrain_share * steps`` steps (or that share of the time budget) with its own
    warm-up + cosine schedule, then hands the backbone to supervised training.
    """
    from vit_facemap.models.mae import MaskedImageModel

    if model.backbone is None:
        raise ValueError(f"masked pre-training needs a ViT or CNN backbone, not {config.model.family}")
    mim = MaskedImageModel(model.backbone, config.model.channels).to(device)
    opt = torch.optim.AdamW(mim.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = pretrain_steps(config)
    budget = None if config.max_minutes is None else config.pretrain_share * config.max_minutes
    pre_cfg = TrainConfig(steps=steps, max_minutes=budget)
    gen = torch.Generator().manual_seed(config.seed + 7)
    loader = DataLoader(dataset, batch_size=min(config.batch_size, len(dataset)), shuffle=True,
                        drop_last=len(dataset) >= config.batch_size, generator=gen)
    t0 = time.perf_counter()
    step, loss_value = 0, None
    bar = tqdm(total=steps, desc="pre-train (masked)", disable=not progress)
    mim.train()
    while training_progress(step, time.perf_counter() - t0, pre_cfg) < 1:
        for x, _ in loader:
            p = training_progress(step, time.perf_counter() - t0, pre_cfg)
            if p >= 1:
                break
            for g in opt.param_groups:
                g["lr"] = config.lr * lr_factor(p, 0.1)
            x = x.to(device)
            loss = mim(x, mim.random_mask(x, config.mask_ratio, gen))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip > 0:  # 0: no clipping, as in supervised training
                torch.nn.utils.clip_grad_norm_(mim.parameters(), config.clip)
            opt.step()
            step += 1
            loss_value = float(loss.detach())
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}")
    bar.close()
    return time.perf_counter() - t0, loss_value


def _write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        rows = [{k: float(v) if v not in ("", None) else None for k, v in r.items()}
                for r in csv.DictReader(fh)]
    for r in rows:  # counts stay integers when the rows are written again ("4", not "4.0")
        for k in ("epoch", "step"):
            if r.get(k) is not None:
                r[k] = int(r[k])
    return rows


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[KeypointModel, dict[str, Any]]:
    """The trained model (eval mode) and the run's saved configuration."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / CONFIG_FILE
    if run_dir.is_file():
        # a video given where the run goes ('track VIDEO RUN', the two swapped) was "not a
        # trained run: config.json is missing", as if a run folder had lost a file
        raise DataError("a file, not a run folder: give the folder 'vit-facemap train --out' "
                        "wrote", run_dir)
    if not cfg_path.is_file():
        raise DataError(f"not a trained run: {CONFIG_FILE} is missing", run_dir)
    if run_config(run_dir)[0] == CLASSIFIER:
        # its config.json reads fine; "KeyError('train')" would say nothing
        raise DataError("this is a facial-state classifier run ('vit-facemap classify train'), "
                        "not a keypoint-tracker run; train one with 'vit-facemap train'", run_dir)
    if not (run_dir / WEIGHTS_FILE).is_file():
        raise DataError(f"not a trained run: {WEIGHTS_FILE} is missing", run_dir)
    try:
        saved = json.loads(cfg_path.read_text())
        config = TrainConfig.from_dict(saved["train"])
        n_keypoints = len(saved["bodyparts"])
    except (ValueError, KeyError, TypeError) as exc:
        # hand-edited, truncated, or written by something else
        raise DataError(f"not a run configuration this version can read ({exc!r})",
                        cfg_path) from None
    model_cfg = config.model
    model_cfg.weights = None  # the run's own weights replace any starting point
    try:
        model = build_model(model_cfg, n_keypoints)
    except ValueError as exc:  # a model this version refuses (a heatmap stride not whole)
        raise DataError(f"this version cannot rebuild the run's model ({first_line(exc)}); "
                        "train it again", cfg_path) from None
    try:
        load_weights(model, run_dir / WEIGHTS_FILE)
    except Exception as exc:  # safetensors, torch: corrupt file or weights of another model
        raise DataError(f"cannot load the run's weights (corrupt, or not written for the model "
                        f"in {CONFIG_FILE}): {first_line(exc)}", run_dir / WEIGHTS_FILE) from None
    model.to(device).eval()
    return model, saved
