"""Benchmark of keypoint trackers on the real sets: error, PCK, training time, frames/s.

Every model is trained and evaluated by the same harness on the same group splits:

- ``g7c1``: leave-video-out, train on ``cam1_G7c1_1`` and test on ``cam1_G7c1_2``
  (``--both-directions`` adds the reverse); ``--g7c1-split later`` instead trains on both
  videos and holds out the later 20% of each (``vit_facemap.splits.later_frames_split``),
  closer to judging on further frames of the same rig, but easier than a new video;
- ``schroeder``: leave-animal-out, a seeded group split holding out ``--test-animals``
  animals (``vit_facemap.splits.groups_for``: the set's ``animals.csv``, else the session
  names). ``--seed`` seeds the split and the training; ``--split-seed`` fixes the split
  while ``--seed`` varies the training alone.

Models: mean shape, HOG + random forest (Dolensek settings), plain ViT with CLS regression
(the original ViT_Facemap head), plain ViT with a heatmap head, the hybrid ViT (the
default recipe: ResNet-18 stem in the first stage, small conv stem in the crop stages of
the eye, nose, whiskers and mouth, on contrast-equalised crops), a ResNet-18 with the same
heatmap head, Facemap's FMnet (if the ``facemap`` package is installed), plus ablations of
the default recipe. Neural models get
the same wall-time budget (``--minutes``) and the same step cap (both the ``--profile``'s
own unless given); the weights of the last step are evaluated, never the best held-out
epoch. ``--monitor`` also scores the held-out frames during training, for learning curves.

Each row keeps every held-out keypoint's error with its frame and animal (``per_frame``),
from which the book draws a bootstrap interval of the gap between two models
(``vit_facemap.bootstrap``); ``steps`` counts the first stage's optimiser steps,
``total_steps`` those of all stages (``train_s`` is the time of all stages, masked
pre-training included, also given alone as ``pretrain_s``). A prediction
that is NaN where a label exists is a miss of infinite error: it makes ``mean_px`` and
``rmse_px`` infinite (``vit_facemap.metrics``).

Each row also gives the error on the training frames themselves (``train_mean_px``,
``train_median_px``, per keypoint: how well the model fits the labels it learned from), and
the errors with the test labels that ``vit_facemap.labelcheck`` flags
as slipped onto another keypoint's place or strayed off the face (found on the whole set)
left out: ``clean_*``.

Writes ``tracker.json`` (rows + provenance: settings, resolved device, code and data
fingerprints, wall time) and ``tracker.csv`` to ``--out``, and one run folder per model
(learning curves in ``metrics.csv``, predictions in DeepLabCut layout). An earlier table is
replaced only with ``--overwrite``; ``--reuse`` keeps one of the same settings, code and data.

    python benchmarks/tracker.py --minutes 8 --sets g7c1
    python benchmarks/tracker.py --quick            # minutes, for a smoke test
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vit_facemap.augment import AugmentConfig
from vit_facemap.baselines import HogForestConfig, HogForestPredictor, MeanShapePredictor
from vit_facemap.commands import seed_arg
from vit_facemap.config import REAL_SETS, real_set
from vit_facemap.dlc import LabeledFrames, write_labels
from vit_facemap.errors import DataError, RunExistsError, argument_errors, run_reporting
from vit_facemap.evaluate import predict_frames
from vit_facemap.images import load_image
from vit_facemap.labelcheck import label_slips, mask_slips
from vit_facemap.metrics import group_metrics, keypoint_metrics, per_frame_record
from vit_facemap.models import ModelConfig, count_parameters, with_settings
from vit_facemap.models.fmnet import facemap_available
from vit_facemap.predict import load_predictor
from vit_facemap.refine import RefineConfig
from vit_facemap.runinfo import (
    code_fingerprint,
    data_fingerprint,
    data_folder,
    describe,
    jsonable,
    resolve_device,
    write_json,
)
from vit_facemap.splits import group_split, groups_for, later_frames_split
from vit_facemap.train import TrainConfig, all_stages, fit, profile_config

# the ResNet-18 peer's model settings (stride 16), alone or in the two-stage recipe
RESNET18 = {"family": "cnn", "timm_name": "resnet18", "cnn_out_index": 3, "n_up": 2}
NEURAL = {
    # name: (description, function of the default TrainConfig -> TrainConfig)
    # The peers keep their authors' networks (the ResNet-18 cut at stride 16, trained from
    # scratch; FMnet without its offset maps) but take our input size, loss, decoding and
    # training loop, one network on the face box; the two-stage ablations below give them
    # our second (crop) stages as well.
    "hybrid": ("hybrid ViT + skip heatmap head, two stages: ResNet-18 stem in the first, small "
               "conv stem in the eye, nose, whisker and mouth crop stages, whose crops are "
               "contrast-equalised (default recipe)",
               lambda c: c),
    "vit_regression": ("plain ViT/16, CLS-token regression (original study's head)",
                       lambda c: _one(_model(c, family="vit", head="regression", patch_size=16))),
    "vit_heatmap": ("plain ViT/16 + deconvolution heatmap head",
                    lambda c: _one(_model(c, family="vit", patch_size=16, n_up=2))),
    "cnn": ("ResNet-18 (stride 16) + deconvolution heatmap head",
            lambda c: _one(_model(c, **RESNET18))),
    "fmnet": ("Facemap FMnet (facemap.pose.facemap_network)",
              lambda c: _one(_model(c, family="fmnet"))),
}
# the default's crop-stage share and minimum minutes, named in hybrid_even_split's description
_DEFAULT_REFINE = profile_config("default").refine
# hybrid_strong_geometry's ranges: twice the default's rotation and shift, a narrower scale
STRONG_GEOMETRY = {"rotate": 30.0, "scale": 0.3, "translate": 0.16}
ABLATIONS = {
    "hybrid_no_crop": ("default recipe on the whole frame (no crop to the face)",
                       lambda c: _set(c, crop="full")),
    "hybrid_no_skip": ("default recipe without the stem skip (stride-8 heatmap)",
                       lambda c: _model(c, skip=False, n_up=1)),
    "hybrid_no_augment": ("default recipe without augmentation",
                          lambda c: _set(c, augment=AugmentConfig(
                              rotate=0, scale=0, translate=0, brightness=0, contrast=0, blur=0,
                              noise=0, p_geometric=0, hflip=0))),
    "hybrid_mim": ("default recipe after masked-image pre-training on the training frames "
                   "(30% of the budget)", lambda c: _set(c, pretrain_share=0.3)),
    "hybrid_regression": ("hybrid backbone, CLS-token regression head",
                          lambda c: _model(c, head="regression")),
    "hybrid_one_stage": ("default recipe without the second (crop) stages: the "
                         "whole budget to the first", lambda c: _one(c)),
    "hybrid_eye_stage": ("default recipe with an eye stage alone (30% of the budget; the default "
                         "until the nose stage was added)",
                         lambda c: _set(c, refine=replace(c.refine, share=0.3, auto="eye"))),
    # the default until whisker and mouth stages beat it on g7c1 at 28 minutes (then measured as
    # hybrid_parts); on schroeder, which labels neither, it differs by its share alone
    "hybrid_eye_nose": ("default recipe with eye and nose stages alone (45% of the budget; the "
                        "default until the whisker and mouth stages were added)",
                        lambda c: _set(c, refine=replace(c.refine, share=0.45, auto="eye+nose"))),
    # the warm-up keeps the decay below its 0.998 cap in the default's budget: it ends near
    # 0.994 in a 2000-step first stage and near 0.98 in a 500-step crop stage
    "hybrid_ema": ("default recipe with a moving average of the weights (timm's ModelEmaV3, decay "
                   "rising with the steps, capped at 0.998), saved in their place",
                   lambda c: _set(c, ema=0.998)),
    "hybrid_mask_slips": ("default recipe leaving out training labels that sit where another "
                          "keypoint usually is or far off the face (vit_facemap.labelcheck)",
                          lambda c: _set(c, mask_slips=True)),
    "hybrid_hires": ("default recipe with a 288x192 first-stage input (1.5x the side, 2.25x "
                     "the tokens)", lambda c: _model(c, input_w=288, input_h=192)),
    "hybrid_eye_hires": ("default recipe with a 192x192 crop-stage input (1.5x the side)",
                         lambda c: _set(c, refine=replace(c.refine, input_size=192))),
    "hybrid_wide_point": ("default recipe with one-point second stages (the schroeder nose) on "
                          "crops 1.5 times as wide (0.3 of the face box): a first estimate tens "
                          "of pixels off still puts the point in the crop",
                          lambda c: _set(c, refine=replace(c.refine, point_side=0.3))),
    "hybrid_wide_point_jitter": ("hybrid_wide_point with the second stages' training crops "
                                 "shifted by up to 0.2 of their side (0.12 by default)",
                                 lambda c: _set(c, refine=replace(c.refine, point_side=0.3,
                                                                  jitter=0.2))),
    # the default flips where names pair left / right or videos face both ways (hflip
    # "auto": schroeder yes, g7c1 no); these two set it either way on any set
    "hybrid_flip": ("default recipe with horizontal flips on (half the samples), left / right "
                    "keypoint names swapped", lambda c: _set(c, augment=replace(
                        c.augment, hflip=0.5, flip_pairs="auto"))),
    "hybrid_no_flip": ("default recipe without horizontal flips (the default until they were "
                       "made automatic)", lambda c: _set(c, augment=replace(c.augment, hflip=0.0))),
    "hybrid_strong_geometry": ("default recipe with twice its rotation (30 degrees) and shift (16%), "
                               "and faces scaled by 0.7-1.3 (twice the earlier default's 15%, less "
                               "than the 40% of the default now), for rigs filmed from other angles",
                               lambda c: _set(c, augment=replace(c.augment, **STRONG_GEOMETRY))),
    # the second stages place points on a crop around the first stage's estimate: a wider
    # geometry may help the first stage find a face filmed from another angle (FG001's nose)
    # and cost the crop stages' precision (split 0's eyelids)
    "hybrid_strong_geometry_first": ("hybrid_strong_geometry in the first stage alone: the crop "
                                     "stages keep the default's rotation, scale and shift",
                                     lambda c: _first_augment(c, **STRONG_GEOMETRY)),
    # the first stage alone did not carry the gain on split 1 (FG001 13.0 px against 13.2,
    # stop 45); there the nose crop stage moved the first stage's nose closer (26 -> 15 px)
    # where the default's moved it further (36 -> 38): whether the crop stages carry it alone
    "hybrid_strong_geometry_crops": ("hybrid_strong_geometry in the crop stages alone: the "
                                     "first stage keeps the default's rotation, scale and shift",
                                     lambda c: _crop_augment(c, **STRONG_GEOMETRY)),
    # on split 1 the crop stages alone kept most of the gain (4.64 px; FG001 6.29), and on
    # split 0 they cost the nose and the ventral eyelid (3.74 against 3.24): the nose stage
    # carries the gain, the eye stage only a cost
    "hybrid_strong_geometry_nose": ("hybrid_strong_geometry in the nose stage alone: the "
                                    "first stage and the other crop stages keep the default's "
                                    "rotation, scale and shift",
                                    lambda c: _crop_augment(c, "nose", **STRONG_GEOMETRY)),
    # the nose stage alone carried both the gain (split 1: FG001 far-off noses pulled in) and
    # the cost (splits 0 and 2: good noses moved off): most samples at the default's ranges,
    # a tail at twice them, to see whether the far-off ones are learned without the cost
    # (they were not: split 1 6.52 px, the nose 35.0 -> 33.3, against the default's 6.76)
    "hybrid_wide_tail_nose": ("default recipe with the nose stage's rotation and shift drawn "
                              "from twice their ranges in 30% of its samples (augment.wide)",
                              lambda c: _crop_augment(c, "nose", wide=0.3)),
    # hybrid_strong_geometry pulled in animals filmed unlike the rest (schroeder splits 1, 3)
    # and lost split 0's eyelids, with the scale range narrowed too: half its extra rotation
    # and shift, the default's scale kept, to see whether the gain survives without the cost
    "hybrid_mid_geometry": ("default recipe with 1.5 times its rotation (22.5 degrees) and "
                            "shift (12%), its scale range (0.6-1.4) kept",
                            lambda c: _set(c, augment=replace(c.augment, rotate=22.5,
                                                              translate=0.12))),
    # FG001 (filmed from above) and FG003 kept most of the unseen-animal error after flips
    # and more rotation: a view from another angle skews the face, which neither rotation nor
    # the per-axis scale makes
    "hybrid_shear": ("default recipe with the training inputs also sheared by up to 15 degrees "
                     "along each axis (0 by default)",
                     lambda c: _set(c, augment=replace(c.augment, shear=15.0))),
    # schroeder's animals this recipe lost when held out (FG001-FG003, Oephelia) have faces 0.7-0.95
    # times the median video's size (vit_facemap.poses); the default now scales by 0.6-1.4
    "hybrid_narrow_scale": ("default recipe with faces scaled by 0.85-1.15 in both stages' "
                            "training inputs (the earlier default; 0.6-1.4 now)",
                            lambda c: _narrow_zoom(_narrow_first(c))),
    # which stage's wider range carries the gain: each narrowed alone
    # until the stages could take their own augmentation (refine.augment), hybrid_narrow_zoom
    # narrowed the crop stages' zoom alone and hybrid_narrow_first both stages' input scale
    "hybrid_narrow_zoom": ("default recipe with the crop stages' crops zoomed and their inputs "
                           "scaled by 0.85-1.15 only (the first stage keeps 0.6-1.4)",
                           lambda c: _narrow_zoom(c)),
    "hybrid_narrow_first": ("default recipe with the first stage's faces scaled by 0.85-1.15 only "
                            "(the crop stages keep 0.6-1.4)", lambda c: _narrow_first(c)),
    # FMnet and the ResNet, fully convolutional, find the eye of held-out animals filmed
    # small, turned or mirrored where the default recipe misses it at 6 minutes: whether the
    # ViT's learned positions, which can tie keypoints to where faces sat in training, are why
    "hybrid_no_pos": ("default recipe without the ViT's learned position embedding (both "
                      "stages)", lambda c: _model(c, pos_embed=False)),
    # which stage the positions cost or help: the first, which must find the face's parts
    # wherever the animal sits, or the crop stages, which place them to a few pixels
    "hybrid_no_pos_first": ("default recipe without the ViT's learned position embedding in the "
                            "first stage only (the crop stages keep it)",
                            lambda c: _first_stage(c, pos_embed=False)),
    # the default until 75% of the minutes went to the first stage. The crop stages reach
    # their step caps in a few minutes on a fast machine, so it left part of its 28 minutes
    # unused there, while a slow one (no AVX-512) ran only 740-850 first-stage steps in its
    # 14 minutes. There (one seed each, as hybrid_long_first against the default) it lost on
    # every split tried: schroeder split 0 3.84 px against 3.53, split 1 7.44 against 6.65,
    # split 2 7.19 against 5.27 (the nose 34.8 against 18.9), g7c1 later frames 9.18 against
    # 8.83; its eye stage, not stopped by its clock, kept the pupils 0.06-0.25 px closer.
    # At the book's 6 minutes the trade turns (same slow machine, the book's splits): the
    # crop stages' 1.5 minutes run about half their steps, and it wins, g7c1 9.81 against
    # 10.31 and schroeder split 0 4.78 against 4.98, though its first stage alone is worse
    # (11.75 against 10.22, 14.70 against 11.92). The default's refine.min_minutes now gives
    # the crop stages half up to 12 minutes, so there the two differ only in the first
    # stage's step cap (2000 here, 6000 in the default), which its clock reaches first; the
    # rows under the floor are in vit_facemap.train.profile_config's comment, the other
    # budgets' in the README
    "hybrid_even_split": ("default recipe with 50% of the minutes to the first stage (the "
                          f"default's own split up to {2 * _DEFAULT_REFINE.min_minutes:g} "
                          "minutes, where the crop stages' "
                          f"{_DEFAULT_REFINE.min_minutes:g}-minute floor gives them half, and "
                          f"{1 - _DEFAULT_REFINE.share:.0%} from "
                          f"{_DEFAULT_REFINE.min_minutes / _DEFAULT_REFINE.share:g} minutes up); "
                          "the crop stages keep their steps",
                          lambda c: _crop_minutes(c, 0.5)),
    # FG002's dark eye: the pupil's edge shows in a few grey levels, and the eye stage put
    # the pupil on the corneal reflections at a quarter of its labeled width (about half
    # with the equalisation; issue #4's notes)
    "hybrid_no_equalize": ("default recipe without the crop stages' local contrast "
                           "equalisation (CLAHE; the default until it was measured)",
                           lambda c: _set(c, refine=replace(
                               c.refine, model={**c.refine.model, "equalize": 0.0}))),
    # clip 4 gave FG002's pupil points the lowest error of any run on two splits (one run
    # each, on a slow hour that also cost split 2's first stage); beside the default in one
    # hour on split 2 it was no better (issue #4's notes), so it stays an ablation
    "hybrid_equalize4": ("default recipe with the crop stages' local contrast equalisation at "
                         "clip limit 4 (2 by default)",
                         lambda c: _set(c, refine=replace(
                             c.refine, model={**c.refine.model, "equalize": 4.0}))),
    # the first stage sees whole frames unequalised: equalised too, as a test of whether
    # lighting that differs between animals is what puts its nose off on a held-out one
    "hybrid_equalize_first": ("default recipe with the first stage's input equalised as the "
                              "crop stages' are (CLAHE clip limit 2)",
                              lambda c: _first_stage(c, equalize=2.0)),
    # FG002's pupil is two thirds of its eye's width (median of its labels), wider than any
    # training animal's video (0.10-0.47)
    "hybrid_pupil": ("default recipe with the crop stages' pupils scaled by 0.5-2 times in "
                     "training (augment pupil 1.0)",
                     lambda c: _set(c, refine=replace(
                         c.refine, augment={**c.refine.augment, "pupil": 1.0}))),
    # FG002's eye stage placed its pupil on the corneal reflections, which sit at the pupil's
    # centre in the training animals and beside it in FG002's eye
    "hybrid_glints": ("default recipe with half the eye crops' corneal reflections painted "
                      "out and one to three drawn elsewhere in the eye in training "
                      "(augment glints 0.5)",
                      lambda c: _set(c, refine=replace(
                          c.refine, augment={**c.refine.augment, "glints": 0.5}))),
    "cnn_first": ("ResNet-18 first stage, the default's hybrid ViT crop stages",
                  lambda c: _first_stage(c, **RESNET18)),
    # the earlier default: the small conv stem in the first stage too, which lost the eyes of
    # held-out animals filmed unlike the rest that the ResNet stem (and cnn_first) find
    "conv_stem_first": ("default recipe with the small conv stem in the first stage as in the "
                        "crop stages (the default until the ResNet-18 stem)",
                        lambda c: _first_stage(c, stem="conv")),
    "cnn_two_stage": ("ResNet-18 heatmap model in our two-stage recipe",
                      lambda c: _model(c, **RESNET18)),
    "fmnet_two_stage": ("FMnet in our two-stage recipe", lambda c: _model(c, family="fmnet")),
}


def _model(c: TrainConfig, **kw) -> TrainConfig:
    c = copy.deepcopy(c)
    c.model = ModelConfig(**with_settings(c.model.__dict__, kw))
    return c


def _first_stage(c: TrainConfig, **kw) -> TrainConfig:
    """Another first-stage network; the second stages keep the recipe's own."""
    first = _model(c, **kw)
    # a second stage's input is its crop, whatever the first stage's
    own = {k: v for k, v in c.model.__dict__.items()
           if getattr(first.model, k) != v and k not in ("input_w", "input_h")}
    return _set(first, refine=replace(c.refine, model={**own, **c.refine.model}))


def _one(c: TrainConfig) -> TrainConfig:
    """One stage: the whole budget to the network on the face box."""
    return _set(c, refine=RefineConfig(share=0.0))


# the scale range of the earlier default (0.85-1.15), which the hybrid_narrow_* ablations restore
EARLIER_SCALE = 0.15


def _narrow_first(c: TrainConfig) -> TrainConfig:
    return _first_augment(c, scale=EARLIER_SCALE)


def _first_augment(c: TrainConfig, **kw) -> TrainConfig:
    """Other augmentation settings for the first stage; the second stages keep the recipe's."""
    kept = {k: getattr(c.augment, k) for k in kw}
    return _set(c, augment=replace(c.augment, **kw),
                refine=replace(c.refine, augment={**kept, **c.refine.augment}))


def _crop_augment(c: TrainConfig, group: str | None = None, **kw) -> TrainConfig:
    """Other augmentation settings for the crop stages (``group``'s alone where named); the
    first stage keeps the recipe's."""
    if group is None:
        return _set(c, refine=replace(c.refine, augment={**c.refine.augment, **kw}))
    own = {**c.refine.group_augment.get(group, {}), **kw}
    return _set(c, refine=replace(c.refine, group_augment={**c.refine.group_augment, group: own}))


def _narrow_zoom(c: TrainConfig) -> TrainConfig:
    # a crop stage's faces are scaled twice: by its crop side (zoom) and by its input scale
    return _set(c, refine=replace(c.refine, zoom=EARLIER_SCALE,
                                  augment={**c.refine.augment, "scale": EARLIER_SCALE}))


def _crop_minutes(c: TrainConfig, share: float) -> TrainConfig:
    """``c`` with ``share`` of its minutes to the crop stages, which keep their steps: the
    step total changes so that ``share`` of it is what they had, and the first stage's cap
    with it."""
    crop_steps = c.steps * c.refine.share
    return _set(c, steps=int(round(crop_steps / share)), refine=replace(c.refine, share=share))


def _set(c: TrainConfig, **kw) -> TrainConfig:
    c = copy.deepcopy(c)
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def splits_of(name: str, frames: LabeledFrames, test_animals: int | None, seed: int,
              both_directions: bool, g7c1_split: str = "video"
              ) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(folder key, split name, train mask, test mask) for each split of one set."""
    videos = frames.videos

    def masks(test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return ~test, test

    if name == "g7c1" and "cam1_G7c1_1" in set(videos):
        out = []
        if g7c1_split in ("video", "both"):
            out.append((name, "train cam1_G7c1_1 / test cam1_G7c1_2",
                        *masks(videos == "cam1_G7c1_2")))
            if both_directions:
                out.append((f"{name}-reverse", "train cam1_G7c1_2 / test cam1_G7c1_1",
                            *masks(videos == "cam1_G7c1_1")))
        if g7c1_split in ("later", "both"):
            tr, te = later_frames_split(frames)
            train, test = np.zeros(len(frames), bool), np.zeros(len(frames), bool)
            train[tr], test[te] = True, True
            out.append((f"{name}-later", "both videos, later 20% of each held out", train, test))
        return out
    if g7c1_split != "video" and name == "g7c1":
        print("g7c1: the videos cam1_G7c1_1/2 are not there; --g7c1-split is ignored",
              file=sys.stderr)
    # animals.csv where the set has one, as the per-animal metrics group them: session
    # names alone can put one animal on both sides
    animals = groups_for(frames, "animal")
    groups = animals if len(set(animals)) > 1 else videos
    n_groups = len(set(groups))
    if test_animals is None:
        n_test = 4 if n_groups > 8 else 1
    elif test_animals >= n_groups:
        what = "animals" if groups is animals else "videos (one animal)"
        raise DataError(f"--test-animals {test_animals} leaves no training group: the set has "
                        f"{n_groups} {what}", frames.root)
    else:
        n_test = test_animals
    _, test = group_split(groups, n_test, seed)
    mask = np.zeros(len(frames), bool)
    mask[test] = True
    held = sorted(set(groups[mask].tolist()))
    return [(name, f"held-out animals {', '.join(held)}", *masks(mask))]


def fps_of(predictor, images: np.ndarray, repeats: int = 2) -> float:
    """Frames per second of ``predictor.predict`` on in-memory uint8 frames (batches of 32)."""
    # warm up on a batch of the timed size: a smaller first batch left the allocations of
    # a full one (and oneDNN's kernels for its shape) inside the timing
    predictor.predict(images[:32])
    t = time.perf_counter()
    n = 0
    for _ in range(repeats):
        for i in range(0, len(images), 32):
            predictor.predict(images[i:i + 32])
            n += len(images[i:i + 32])
    return n / (time.perf_counter() - t)


def score(predictor, frames: LabeledFrames, facing: str = "video"
          ) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """Metrics of ``predictor`` on labeled ``frames`` (with ``facing_redone``, the frames
    predicted again on their video's side: vit_facemap.evaluate.predict_frames), and its
    (keypoints, confidences)."""
    pred, conf, _, redone = predict_frames(predictor, frames, facing=facing)
    m = keypoint_metrics(pred, frames.keypoints, frames.bodyparts)
    return {**m, "facing_redone": redone}, (pred, conf)


def per_keypoint_means(metrics: dict) -> dict[str, float]:
    """Keypoint name -> mean error, from :func:`vit_facemap.metrics.keypoint_metrics`."""
    return {k: v["mean_px"] for k, v in metrics["per_keypoint"].items()}


def run_one(model_name: str, set_name: str, split_name: str, train: LabeledFrames,
            test: LabeledFrames, out: Path, cfg: TrainConfig, args: argparse.Namespace,
            key: str | None = None, clean: LabeledFrames | None = None, device: str = "cpu",
            overwrite: bool = False) -> dict:
    row = {"set": set_name, "split": split_name, "model": model_name,
           "n_train": len(train), "n_test": len(test)}
    t0 = time.perf_counter()
    key = key or set_name  # one folder per split of a set
    run_dir = out / "runs" / key / model_name
    row["run"] = f"{key}/{model_name}"  # under OUT/runs, for the learning curves
    if model_name == "mean_shape":
        predictor = MeanShapePredictor(train)
        row.update(description="mean training pose", train_s=time.perf_counter() - t0)
    elif model_name == "hog_forest":
        hcfg = HogForestConfig(n_estimators=50 if args.quick else 200, seed=args.seed)
        predictor = HogForestPredictor(hcfg).fit(train)
        row.update(description="HOG (8 or., 32-px cells, 1x1 blocks, sqrt) + random forest",
                   train_s=time.perf_counter() - t0)
    else:
        table = {**NEURAL, **ABLATIONS}
        description, make = table[model_name]
        c = make(copy.deepcopy(cfg))
        # without --monitor no validation frames: their passes would eat the time budget,
        # and the test frames are scored below anyway (keep="last": nothing is selected on them)
        summary = fit(c, train, run_dir, test if args.monitor else None, device=device,
                      overwrite=overwrite, progress=not args.no_progress)
        predictor = load_predictor(run_dir, device)
        # what averaging over views buys (box sizes, or the mirrored frame where the run
        # flips; vit_facemap.predict): the same weights from one view, the box not mirrored
        ms, _ = score(load_predictor(run_dir, device, scales=(1.0,), flip=False), test)
        row.update(scales=list(predictor.scales), flip=predictor.flip,
                   one_scale_mean_px=ms["mean_px"],
                   one_scale_median_px=ms["median_px"], one_scale_pck=ms["pck"],
                   one_scale_per_keypoint_mean_px=per_keypoint_means(ms))
        # "steps" is the first stage's; train_s is all stages' (second stages included), with
        # their masked pre-training, which fit times apart (pretrain_s) but which spends the
        # same budget: without it hybrid_mim's row left out 30% of its training time
        pretrain_s = all_stages(summary, "pretrain_s")
        row.update(description=description, train_s=summary["train_s"] + pretrain_s,
                   pretrain_s=pretrain_s, steps=summary["steps"],
                   # steps of all stages whose learning rate followed the clock: a row with
                   # any is not reproduced exactly by its seed (vit_facemap.train)
                   clock_paced_steps=all_stages(summary, "clock_paced_steps"),
                   total_steps=summary["total_steps"],
                   epochs=summary["epochs"],
                   # every stage the tracker runs, as track_speed.py counts them
                   params=count_parameters(predictor.model)
                   + sum(count_parameters(r.model) for r in predictor.refiners),
                   input=f"{c.model.input_w}x{c.model.input_h}", crop=c.crop)
    m, (pred, conf) = score(predictor, test)
    images = np.stack([load_image(p) for p in test.image_paths[:64]])
    torch.set_num_threads(2)
    row.update(mean_px=m["mean_px"], median_px=m["median_px"], rmse_px=m["rmse_px"], pck=m["pck"],
               mean_normalised=m["mean_normalised"], reference=m["reference"],
               predict_fps=fps_of(predictor, images),
               # other processes on the machine slow every timing: record how busy it was
               load_average_1min=os.getloadavg()[0])
    row["per_keypoint_mean_px"] = per_keypoint_means(m)
    row["facing_redone"] = m["facing_redone"]
    if m["facing_redone"]:
        # what reading those frames' noses on their video's side bought: each frame alone
        mf, _ = score(predictor, test, facing="frame")
        row.update(frame_facing_mean_px=mf["mean_px"],
                   frame_facing_per_keypoint_mean_px=per_keypoint_means(mf))
    # one animal or session the model cannot follow dominates the mean (FG001 on schroeder)
    row["per_animal"] = group_metrics(pred, test.keypoints, test.bodyparts,
                                      groups_for(test, "animal"))
    row["per_video"] = group_metrics(pred, test.keypoints, test.bodyparts, test.videos)
    # every held-out keypoint's error (None: no label; Infinity: a missed prediction), with
    # the frames and their animals: what vit_facemap.reports bootstraps the gap between two
    # models from (vit_facemap.bootstrap)
    row["per_frame"] = per_frame_record(pred, test.keypoints, test.index,
                                        groups_for(test, "animal").tolist())
    # the same error on the frames the model trained on: a model that cannot get near its
    # own training labels is limited by its fit (budget, resolution) or by the labels'
    # scatter, and is rarely much closer to new labels of the same kind (measured against
    # the labels as given, including any a run left out of training, e.g. mask_slips)
    mt, _ = score(predictor, train)
    row.update(train_mean_px=mt["mean_px"], train_median_px=mt["median_px"],
               per_keypoint_train_mean_px=per_keypoint_means(mt))
    if clean is not None:
        mc = keypoint_metrics(pred, clean.keypoints, clean.bodyparts)
        row.update(n_slipped_test_labels=int(np.isnan(clean.keypoints[..., 0]).sum()
                                             - np.isnan(test.keypoints[..., 0]).sum()),
                   clean_mean_px=mc["mean_px"], clean_median_px=mc["median_px"],
                   clean_pck=mc["pck"])
    if getattr(predictor, "refiners", None):
        # what the second (crop) stages bought: the same run's first stage alone
        # at the whole run's views: a second stage that cannot flip keeps the run from it
        m1, _ = score(load_predictor(run_dir, device, refine=False, flip=predictor.flip,
                                     scales=predictor.scales), test)
        row.update(stage1_mean_px=m1["mean_px"], stage1_median_px=m1["median_px"],
                   stage1_pck=m1["pck"],
                   refine_steps={g: r["steps"] for g, r in summary["refine"].items()},
                   stage1_per_keypoint_mean_px=per_keypoint_means(m1))
    pred_table = LabeledFrames(test.root, test.index, pred, test.bodyparts, "vit-facemap", conf)
    write_labels(pred_table, out / "predictions" / key / f"{model_name}.csv", overwrite=True)
    return row


BASELINES = ("mean_shape", "hog_forest")


def main(argv: list[str] | None = None) -> int:
    return run_reporting("tracker.py", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="folder of real sets (default $VIT_FACEMAP_DATA)")
    p.add_argument("--sets", default="g7c1,schroeder")
    p.add_argument("--models", default="mean_shape,hog_forest,vit_regression,hybrid,cnn,fmnet")
    p.add_argument("--ablations", default="", help=f"comma list of {', '.join(ABLATIONS)}")
    p.add_argument("--minutes", type=float, default=None,
                   help="training budget per neural model (default: the profile's own)")
    p.add_argument("--steps", type=int, default=None,
                   help="step cap per neural model (default: the profile's own)")
    p.add_argument("--test-animals", type=int, default=None,
                   help="animals held out on schroeder (default: 4, or 1 on a set of at most "
                        "8 animals); a number given must leave training animals")
    p.add_argument("--both-directions", action="store_true")
    p.add_argument("--g7c1-split", choices=("video", "later", "both"), default="video",
                   help="g7c1: leave-video-out, or both videos with the later 20%% of each held "
                        "out (a stand-in for further frames of the same rig), or both")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--split-seed", type=seed_arg, default=None,
                   help="seed of the held-out animals (default: --seed); fixed while --seed "
                        "varies, it measures how much of a gap is the training seed")
    p.add_argument("--quick", action="store_true", help="tiny budgets: a smoke test")
    p.add_argument("--profile", default="default", help="base recipe (vit_facemap.train profiles)")
    p.add_argument("--synthetic", action="store_true",
                   help="benchmark on generated frames instead of the real sets")
    p.add_argument("--monitor", action="store_true",
                   help="pass the test frames to training as validation, for held-out learning "
                        "curves in metrics.csv; the validation passes count against --minutes, "
                        "more for models slow to predict (weights of the last step are evaluated "
                        "either way)")
    p.add_argument("--val-every", type=int, default=None,
                   help="with --monitor, validate after the epoch in which this many steps "
                        "passed (default: the profile's); a long schedule on a GPU otherwise "
                        "spends much of --minutes on validation passes")
    p.add_argument("--out", default="_build/results/tracker")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier table and run folders in --out")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--reuse", action="store_true",
                   help="keep OUT/tracker.json, without training, when a finished run of the same "
                        "settings, recipe, code and data wrote it; resume one stopped part-way")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    torch.set_num_threads(2)
    out = Path(args.out)
    table_path = out / "tracker.json"

    # every check of the arguments before any training: a typo must not cost the models
    # that would have run before it
    with argument_errors():
        device = resolve_device(args.device)
        cfg = profile_config(args.profile)
        cfg.seed = args.seed
        cfg.keep = "last"
        if args.quick:
            cfg.steps, cfg.max_minutes, cfg.warmup_steps = 20, 1.0, 4
        # a number given wins over the profile's (and --quick's); none given keeps them
        if args.steps is not None:
            cfg.steps = args.steps
        if args.minutes is not None:
            cfg.max_minutes = args.minutes
        if args.val_every is not None:
            cfg.val_every_steps = args.val_every
        cfg.__post_init__()
        if args.test_animals is not None and args.test_animals < 1:
            raise DataError(f"--test-animals must be at least 1, got {args.test_animals}")
    if out.exists() and not out.is_dir():
        raise DataError("--out is a file; give a folder for the table and runs", out)
    models = [m for m in args.models.split(",") if m]
    models += [a for a in args.ablations.split(",") if a]
    known = (*BASELINES, *NEURAL, *ABLATIONS)
    unknown = [m for m in models if m not in known]
    if unknown:
        raise DataError(f"unknown model {', '.join(map(repr, unknown))}; choose from "
                        f"{', '.join(known)}")
    # a model named twice trained twice into one run folder (refused after the first
    # training without --overwrite) and gave the table two rows the book refuses
    twice = sorted({m for m in models if models.count(m) > 1})
    if twice:
        raise DataError(f"model {', '.join(map(repr, twice))} given twice (--models and "
                        "--ablations together name each model once)")
    if "fmnet" in models and not facemap_available():
        print("facemap is not installed (pip install --no-deps facemap): skipping fmnet")
        models.remove("fmnet")
    if not models:
        # an empty table would be saved as finished (replacing an earlier one with
        # --overwrite), and the book cannot draw it
        raise DataError("no model to benchmark: give --models or --ablations")
    sets = [s for s in args.sets.split(",") if s]
    bad_sets = [s for s in sets if s not in REAL_SETS]
    if bad_sets and not args.synthetic:
        raise DataError(f"unknown set {', '.join(map(repr, bad_sets))}; choose from "
                        f"{', '.join(REAL_SETS)}")

    from vit_facemap.validate import load_set

    folders: dict[str, Path] = {}
    if args.synthetic:
        from vit_facemap.synthetic import write_synthetic_set

        # generated input, not results: the same settings give the same frames. But an
        # earlier table was scored on the set there: unless it may be replaced, that set is
        # read as it is (a run of another --seed is refused below), not replaced by other
        # frames under the table's predictions
        synthetic_set = out / "synthetic_set"
        if synthetic_set.is_dir() and table_path.exists() and not args.overwrite:
            folders["synthetic"] = synthetic_set
        else:
            folders["synthetic"] = write_synthetic_set(
                synthetic_set, n_frames=48, n_videos=3, seed=args.seed, size=(96, 72),
                p_missing=0.05, overwrite=True)
    else:
        root, where = data_folder(args.data)
        for set_name in sets:
            folder = real_set(set_name, root)
            if folder is None:
                print(f"{set_name}: not found {where}; skipped", file=sys.stderr)
                continue
            folders[set_name] = folder
        if not folders:
            print(f"no real set found {where}: nothing benchmarked", file=sys.stderr)
            return 1
    fingerprints = {"code": code_fingerprint(__file__),
                    "data": {k: data_fingerprint(f) for k, f in folders.items()}}
    plan = []  # (set, key, split, frames, slips, train mask, test mask), before training
    for set_name, folder in folders.items():
        frames = load_set(folder, decode=False)
        slips = label_slips(frames)  # found on the whole set, once for all its splits
        for key, split_name, train_mask, test_mask in splits_of(
                set_name, frames, args.test_animals,
                args.seed if args.split_seed is None else args.split_seed, args.both_directions,
                args.g7c1_split):
            plan.append((set_name, key, split_name, frames, slips, train_mask, test_mask))

    rows: list[dict] = []
    state, why = saved_state(table_path, args, cfg, fingerprints)
    if args.reuse and state == "complete":
        print(f"{table_path}: a finished table of these settings; kept")
        return 0
    if args.reuse and state == "partial":
        saved = json.loads(table_path.read_text())
        rows = saved["rows"]
        # the wall time of the runs that computed the kept rows: without it the table's
        # wall_s was that of the resumed part alone
        earlier_s = saved["provenance"].get("wall_s")
        if isinstance(earlier_s, int | float):
            t_start -= earlier_s
        print(f"{table_path}: stopped part-way with these settings; resuming after "
              f"{len(rows)} rows", flush=True)
    elif table_path.exists() and not args.overwrite:
        hint = (f"not reused: {why}; pass --overwrite to replace it" if args.reuse else
                "pass --overwrite to replace it (or --reuse to keep a table of these settings)")
        raise RunExistsError(table_path, hint)
    elif args.reuse and table_path.exists():
        print(f"{table_path}: not reused ({why}); replaced", flush=True)
    done = {(r["set"], r["split"], r["model"]) for r in rows}
    # a resumed table's missing rows are of these settings: their run folders may be replaced
    replace_runs = args.overwrite or bool(rows)
    if not replace_runs:
        for _, key, *_ in plan:
            for m in models:
                if m not in BASELINES and (out / "runs" / key / m).exists():
                    raise RunExistsError(out / "runs" / key / m)

    for set_name, key, split_name, frames, slips, train_mask, test_mask in plan:
        train, test = frames.subset(train_mask), frames.subset(test_mask)
        # the same test frames without labels that slipped or strayed (labelcheck)
        clean = mask_slips(test, slips[slips["frame"].isin(test.index)])
        for model_name in models:
            if (set_name, split_name, model_name) in done:
                continue
            print(f"== {set_name} | {split_name} | {model_name}", flush=True)
            row = run_one(model_name, set_name, split_name, train, test, out, cfg, args,
                          key=key, clean=clean, device=device, overwrite=replace_runs)
            print({k: v for k, v in row.items() if "per_" not in k}, flush=True)
            print("mean px per animal:", {a: None if v["mean_px"] is None else round(v["mean_px"], 2)
                                          for a, v in row["per_animal"].items()}, flush=True)
            rows.append(row)
            _save(rows, out, cfg, args, device, fingerprints, time.perf_counter() - t_start)
    _save(rows, out, cfg, args, device, fingerprints, time.perf_counter() - t_start,
          complete=True)
    return 0


# arguments that do not change the table
_NOT_SETTINGS = ("out", "no_progress", "reuse", "overwrite")


def saved_state(table: Path, args: argparse.Namespace, cfg: TrainConfig,
                fingerprints: dict) -> tuple[str | None, str]:
    """Whether ``table`` holds a benchmark of the same arguments, recipe, code and data:
    ``"complete"``, ``"partial"`` (stopped part-way) or None, and why not when None.

    A table of other code or data under the same path is not: model code changed, or new
    labels, and reusing it would report numbers of something else.
    """
    if not table.is_file():
        return None, "no table"
    try:
        saved = json.loads(table.read_text())
        prov = saved["provenance"]
        saved_args, rows = prov.get("args", {}), saved["rows"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, "not a table of this benchmark"

    def settings(a: dict) -> dict:
        # an option left unset reads as one a table saved before the option existed lacks
        return {k: v for k, v in a.items() if k not in _NOT_SETTINGS and v is not None}

    now = settings(jsonable(vars(args)))
    if settings(saved_args) != now:
        diff = sorted(k for k in set(now) | set(saved_args)
                      if k not in _NOT_SETTINGS and saved_args.get(k) != now.get(k))
        return None, f"other arguments ({', '.join(diff)})"
    if prov.get("settings") != jsonable(cfg):
        return None, "another training recipe"
    if prov.get("code") != fingerprints["code"]:
        return None, "other code (package version or sources changed)"
    if prov.get("data") != jsonable(fingerprints["data"]):
        return None, "other data (label tables or frames changed)"
    if not isinstance(rows, list):
        return None, "not a table of this benchmark"
    return ("complete" if saved.get("complete") is True else "partial"), ""


def _save(rows: list[dict], out: Path, cfg: TrainConfig, args: argparse.Namespace, device: str,
          fingerprints: dict, wall_s: float, complete: bool = False) -> None:
    write_json({"rows": rows, "synthetic": args.synthetic, "complete": complete,
                "provenance": describe(cfg, device, args=vars(args), wall_s=wall_s,
                                       **fingerprints)},
               out / "tracker.json")
    flat = pd.DataFrame([{k: v for k, v in r.items() if "per_" not in k} for r in rows])
    flat.to_csv(out / "tracker.csv", index=False)


if __name__ == "__main__":
    sys.exit(main())
