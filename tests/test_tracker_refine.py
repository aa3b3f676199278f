"""The tracker's second, top-down stage: crop geometry, training, run folders, prediction."""

import json
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from vit_facemap.augment import AugmentConfig
from vit_facemap.config import FLIP_SCALES, TEST_SCALES
from vit_facemap.datasets import load_inputs
from vit_facemap.dlc import find_label_file, read_labels, write_labels
from vit_facemap.errors import DataError, DataWarning
from vit_facemap.images import load_image
from vit_facemap.predict import load_predictor
from vit_facemap.refine import (
    RefineConfig,
    crop_mappings,
    crop_offsets,
    crop_side,
    estimate_centres,
    group_centres,
    group_extent,
    refine_groups,
    training_crops,
)
from vit_facemap.synthetic import write_synthetic_set
from vit_facemap.train import TrainConfig, fit, profile_config
from vit_facemap.transforms import InputMapping

SCHROEDER = ["nose", "leftpupil", "dorsalpupil", "rightpupil", "ventralpupil",
             "lefteyelid", "dorsaleyelid", "righteyelid", "ventraleyelid"]


@pytest.fixture(scope="module")
def eye_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refine") / "set"
    write_synthetic_set(folder, n_frames=12, n_videos=2, seed=3, size=(96, 72), layout="schroeder",
                        p_missing=0.1)
    return folder


def _config(share=0.5) -> TrainConfig:
    cfg = profile_config("test")
    cfg.steps, cfg.num_threads = 8, 1
    cfg.refine = RefineConfig(share=share, auto="eye", input_size=32, copies=2)
    return cfg


def test_refined_groups_by_name():
    # the default: each face part a set labels, its own second stage; schroeder labels the
    # eye and the nose alone, so its groups are those of the earlier default (eye+nose)
    assert refine_groups(SCHROEDER, RefineConfig()) == {"nose": [0], "eye": list(range(1, 9))}
    assert refine_groups(SCHROEDER, RefineConfig(auto="eye+nose")) == refine_groups(
        SCHROEDER, RefineConfig())
    assert refine_groups(SCHROEDER, RefineConfig(auto="eye")) == {"eye": list(range(1, 9))}
    assert refine_groups(SCHROEDER, RefineConfig(auto="parts")) == {"nose": [0],
                                                                   "eye": list(range(1, 9))}
    g7 = ["eye top", "eye front", "nose tip", "whisker 1", "Lip", "ear"]
    assert refine_groups(g7, RefineConfig()) == {
        "eye": [0, 1], "nose": [2], "whisker": [3], "mouth": [4]}
    assert refine_groups(g7, RefineConfig(auto="eye+nose")) == {"eye": [0, 1], "nose": [2]}
    assert refine_groups(g7, RefineConfig(auto="eye")) == {"eye": [0, 1]}
    assert refine_groups(g7, RefineConfig(auto="parts")) == {
        "eye": [0, 1], "nose": [2], "whisker": [3], "mouth": [4]}  # the ear stays in stage 1
    assert refine_groups(g7, RefineConfig(groups=[["nose tip", "ear"], ["Lip"]])) == {
        "group1": [2, 5], "group2": [4]}
    assert refine_groups(["nose", "mouth"], RefineConfig()) == {"nose": [0], "mouth": [1]}
    assert refine_groups(["nose", "mouth"], RefineConfig(auto="eye+nose")) == {"nose": [0]}
    assert refine_groups(["nose", "mouth"], RefineConfig(auto="eye")) == {}
    with pytest.raises(ValueError, match="not among the keypoints"):
        refine_groups(g7, RefineConfig(groups=[["pupil"]]))
    with pytest.raises(ValueError, match="overlap"):
        refine_groups(g7, RefineConfig(groups=[["nose tip", "ear"], ["ear"]]))
    with pytest.raises(ValueError, match="share"):
        RefineConfig(share=1.0)
    with pytest.raises(ValueError, match="auto"):
        RefineConfig(auto="all")


def test_refine_settings_that_cut_no_crop_are_refused(eye_set, tmp_path):
    # a zoom of 1.5 (the eye locator's meaning: [1/1.5, 1.5]) cut 1-pixel training crops
    kp = np.random.default_rng(0).uniform(100, 140, (5, 3, 2))
    assert min(b.box_w for b in training_crops(kp, [0, 1, 2], 50.0, RefineConfig(zoom=0.9), 0)[1]) > 1
    frames = read_labels(eye_set)
    for bad, what in [({"zoom": 1.5}, r"zoom must be in \[0, 1\).*got 1.5"),
                      ({"zoom": -0.1}, "zoom must be"), ({"point_side": 0.0}, "point_side > 0"),
                      ({"jitter": -0.1}, "jitter must be >= 0")]:
        cfg = _config(0.5)
        cfg.refine = RefineConfig(**{**asdict(cfg.refine), **bad})
        with pytest.raises(DataError, match=what):  # before anything is written
            fit(cfg, frames, tmp_path / "run", None, device="cpu", progress=False)
        assert not (tmp_path / "run" / "config.json").exists()


def test_second_stages_take_their_own_model_settings(eye_set, tmp_path):
    # a first stage without positions and eye stages with them: each folder saves and
    # rebuilds the network it trained
    frames = read_labels(eye_set)
    cfg = _config(0.5)
    cfg.model.pos_embed = False
    cfg.refine.model = {"pos_embed": True}
    run = tmp_path / "run"
    fit(cfg, frames, run, None, device="cpu", progress=False)
    first = json.loads((run / "config.json").read_text())
    second = json.loads((run / "refine" / "eye" / "config.json").read_text())
    assert first["train"]["model"]["pos_embed"] is False
    assert first["train"]["refine"]["model"] == {"pos_embed": True}
    assert second["train"]["model"]["pos_embed"] is True
    assert second["train"]["model"]["input_w"] == second["train"]["model"]["input_h"] == 32
    predictor = load_predictor(run, "cpu")
    assert predictor.model.backbone.vit.pos_embed is None
    assert predictor.refiners[0].model.backbone.vit.pos_embed is not None
    # the setting round-trips through a saved recipe; a run saved before it existed loads
    assert TrainConfig.from_dict(first["train"]).refine.model == {"pos_embed": True}
    del first["train"]["refine"]["model"]
    (run / "config.json").write_text(json.dumps(first))
    assert len(load_predictor(run, "cpu").refiners) == 1


@pytest.mark.parametrize(("model", "error"), [
    ({"dept": 2}, r"refine input_size 40 and model \{'dept': 2\}: unknown model settings "
                  r"\['dept'\]"),
    ({"family": "fmnet"}, r"refine input_size 40 and model \{'family': 'fmnet'\}: FMnet input "
                          r"40x40"),
])
def test_second_stage_model_settings_it_cannot_build_are_refused_before_training(
        eye_set, tmp_path, model, error):
    cfg = _config(0.5)
    cfg.refine = RefineConfig(**{**asdict(cfg.refine), "input_size": 40, "model": model})
    with pytest.raises(DataError, match=error):  # a user's mistake: one line, no traceback
        fit(cfg, read_labels(eye_set), tmp_path / "run", None, device="cpu", progress=False)
    assert not (tmp_path / "run" / "config.json").exists()


def test_second_stage_weights_that_do_not_fit_are_refused_before_training(eye_set, tmp_path):
    # a file made for the first stage's hybrid meets a deeper second stage only when that
    # stage starts, after the first had spent its budget (a second stage of another family
    # or stem does not get the file: models.with_settings)
    from vit_facemap.models import build_model
    from vit_facemap.models.weights import save_weights

    cfg = _config(0.5)
    cfg.model.weights = str(save_weights(build_model(cfg.model, 9), tmp_path / "w.safetensors"))
    cfg.refine.model = {"depth": 2}
    with pytest.raises(DataError, match=r"w.safetensors: refine input_size 32 and model .*: the "
                                        r"second stages start from the first stage's weights, "
                                        r"weights do not fit.*refine model 'weights'\) or none"):
        fit(cfg, read_labels(eye_set), tmp_path / "run", None, device="cpu", progress=False)
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.parametrize(("model", "error"), [
    ({"dept": 2}, r"unknown refine model settings \['dept'\]"),
    ({"pos_embed": "yes"}, r"refine model settings \{'pos_embed': 'yes'\}: bad model settings: "
                           r"pos_embed='yes' \(expected bool\)"),
    ({"family": "resnet"}, r"refine model settings .*unknown model family 'resnet'"),
])
def test_second_stage_model_settings_are_checked_when_a_recipe_is_read(model, error):
    with pytest.raises(ValueError, match=error):
        TrainConfig.from_dict({"refine": {"share": 0.3, "model": model}})


def test_second_stage_model_settings_cannot_change_the_crop_size():
    with pytest.raises(ValueError, match="cannot set input_w / input_h.*refine input_size"):
        RefineConfig(model={"input_w": 64})
    with pytest.raises(ValueError, match="cannot set channels"):
        RefineConfig(model={"channels": 3})
    with pytest.raises(ValueError, match=r"bad refine settings: model=\['pos_embed'\]"):
        RefineConfig(model=["pos_embed"])


def test_second_stages_take_their_own_augmentation_settings(eye_set, tmp_path):
    # wide rotation for the first stage, which must find a face filmed at an angle, and a
    # narrow one for the eye stage; every other setting is the first stage's
    frames = read_labels(eye_set)
    cfg = _config(0.5)
    cfg.augment = replace(cfg.augment, rotate=30.0, translate=0.16)
    cfg.refine.augment = {"rotate": 5.0}
    run = tmp_path / "run"
    fit(cfg, frames, run, None, device="cpu", progress=False)
    first = json.loads((run / "config.json").read_text())["train"]
    second = json.loads((run / "refine" / "eye" / "config.json").read_text())["train"]
    assert first["augment"]["rotate"] == 30.0 and first["refine"]["augment"] == {"rotate": 5.0}
    assert second["augment"]["rotate"] == 5.0 and second["refine"]["augment"] == {}
    assert second["augment"]["translate"] == 0.16
    same = {k for k in first["augment"] if first["augment"][k] == second["augment"][k]}
    assert set(first["augment"]) - same == {"rotate"}
    assert TrainConfig.from_dict(first).refine.augment == {"rotate": 5.0}
    # a run saved before the setting existed loads, its stages as they trained
    first_file = json.loads((run / "config.json").read_text())
    del first_file["train"]["refine"]["augment"]
    (run / "config.json").write_text(json.dumps(first_file))
    assert len(load_predictor(run, "cpu").refiners) == 1


def test_without_own_augmentation_settings_a_second_stage_augments_as_the_first():
    from vit_facemap.train import _refine_stage_config

    cfg = TrainConfig(augment=AugmentConfig(rotate=30.0, shear=10.0))
    assert _refine_stage_config(cfg, 2).augment == cfg.augment
    cfg.refine.augment = {"shear": 0.0}
    assert _refine_stage_config(cfg, 2).augment == replace(cfg.augment, shear=0.0)
    assert cfg.augment.shear == 10.0  # the recipe itself is left as it was


@pytest.mark.parametrize(("augment", "error"), [
    ({"rotat": 5}, r"refine augment settings \{'rotat': 5\}: unknown refine augment settings "
                   r"\['rotat'\]"),
    ({"scale": 1.5}, r"refine augment settings \{'scale': 1.5\}: augmentation scale must be in "
                     r"\[0, 1\)"),
    ({"shear": "10"}, r"bad augmentation settings: shear='10'"),
    ({"hflip": 0.5}, r"refine augment settings cannot set \['hflip'\]: the second stages "
                     r"flip as the first stage does"),
    ({"flip_pairs": []}, r"cannot set \['flip_pairs'\]"),
])
def test_second_stage_augmentation_settings_are_checked_when_a_recipe_is_read(augment, error):
    with pytest.raises(ValueError, match=error):
        TrainConfig.from_dict({"refine": {"share": 0.3, "augment": augment}})


def test_one_group_takes_its_own_augmentation_settings(eye_set, tmp_path):
    # wider shifts for the nose stage alone, whose point may lie far from the first estimate;
    # the eye stage keeps refine.augment over the first stage's
    frames = read_labels(eye_set)
    cfg = _config(0.5)
    cfg.refine.auto = "parts"
    cfg.refine.augment = {"rotate": 5.0}
    cfg.refine.group_augment = {"nose": {"rotate": 30.0, "translate": 0.16}}
    run = tmp_path / "run"
    fit(cfg, frames, run, None, device="cpu", progress=False)
    first = json.loads((run / "config.json").read_text())["train"]
    eye = json.loads((run / "refine" / "eye" / "config.json").read_text())["train"]
    nose = json.loads((run / "refine" / "nose" / "config.json").read_text())["train"]
    assert first["augment"]["rotate"] == cfg.augment.rotate
    assert (eye["augment"]["rotate"], eye["augment"]["translate"]) == (5.0, cfg.augment.translate)
    assert (nose["augment"]["rotate"], nose["augment"]["translate"]) == (30.0, 0.16)
    # flip pairs are each stage's own (the first stage's cut to its group)
    assert {k for k in eye["augment"] if k != "flip_pairs"
            and eye["augment"][k] != nose["augment"][k]} == {"rotate", "translate"}
    assert TrainConfig.from_dict(first).refine.group_augment == cfg.refine.group_augment
    assert len(load_predictor(run, "cpu").refiners) == 2


def test_group_augmentation_for_a_group_the_set_does_not_make_is_refused(eye_set, tmp_path):
    # a misspelt group would train with the shared settings and nothing said
    cfg = _config(0.5)  # the eye stage alone
    cfg.refine.group_augment = {"nose": {"rotate": 30.0}}
    with pytest.raises(DataError, match=r"group_augment names \['nose'\], which are not among "
                                        r"this set's second-stage groups \['eye'\]"):
        fit(cfg, read_labels(eye_set), tmp_path / "run", None, device="cpu", progress=False)
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.parametrize(("group_augment", "error"), [
    ({"nose": {"rotat": 5}}, r"unknown refine group_augment 'nose' settings \['rotat'\]"),
    ({"nose": {"hflip": 0.5}}, r"refine group_augment 'nose' settings cannot set \['hflip'\]"),
    ({"nose": 30}, r"bad refine settings: group_augment=\{'nose': 30\} \(expected "
                   r"dict\[str, dict\[str, Any\]\]\)"),
    ([30], r"bad refine settings: group_augment=\[30\]"),
])
def test_group_augmentation_settings_are_checked_when_a_recipe_is_read(group_augment, error):
    with pytest.raises(ValueError, match=error):
        TrainConfig.from_dict({"refine": {"share": 0.3, "group_augment": group_augment}})


def test_a_run_saved_with_crop_settings_now_refused_still_loads(eye_set, tmp_path):
    # such runs trained (without a word) and predict from their saved crop side: refusing
    # the settings when a config was made refused the run's config.json, so predict, track
    # and evaluate could no longer read it
    run = tmp_path / "run"
    fit(_config(0.5), read_labels(eye_set), run, None, device="cpu", progress=False)
    saved = json.loads((run / "config.json").read_text())
    saved["train"]["refine"].update(zoom=1.5, point_side=0.0)
    (run / "config.json").write_text(json.dumps(saved))
    assert len(load_predictor(run, "cpu").refiners) == 1


def test_a_second_stage_size_fmnet_cannot_take_is_refused_before_training(eye_set, tmp_path):
    """FMnet builds at any size and fails at its first forward pass: a second stage's crop
    size must be refused before the first stage spends its budget and saves its weights."""
    from vit_facemap.models import ModelConfig

    cfg = _config()
    cfg.model = ModelConfig(**{**cfg.model.__dict__, "family": "fmnet"})
    cfg.refine = RefineConfig(share=0.5, auto="eye", input_size=40, copies=1)
    with pytest.raises(ValueError, match=r"refine input_size 40: FMnet input 40x40: each side "
                                         r"must be a multiple of 16 \(width 40: 32 or 48, "
                                         r"height 40: 32 or 48\)"):
        fit(cfg, read_labels(eye_set), tmp_path / "run", None, device="cpu", progress=False)
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.parametrize("family, why", [("vit", "patch size 16x16"), ("cnn", "stride 16")])
def test_a_second_stage_size_other_networks_cannot_take_is_refused_before_training(
        eye_set, tmp_path, family, why):
    # a plain ViT or a CNN refuses a crop size only when built, which came after stage 1
    from vit_facemap.models import ModelConfig

    cfg = _config()
    cfg.model = ModelConfig(**{**cfg.model.__dict__, "family": family, "depth": 1,
                               "input_w": 64, "input_h": 48})
    cfg.refine = RefineConfig(share=0.5, auto="eye", input_size=40, copies=1)
    with pytest.raises(ValueError, match=rf"refine input_size 40: input 40x40 must be a "
                                         rf"multiple of .*{why}"):
        fit(cfg, read_labels(eye_set), tmp_path / "run", None, device="cpu", progress=False)
    assert not (tmp_path / "run" / "config.json").exists()


def test_centres_and_extent_by_hand():
    kp = np.array([
        [[0, 0], [10, 4], [4, 2]],          # box 0..10 x 0..4: centre (5, 2), side 10
        [[2, 2], [np.nan, np.nan], [8, 10]],  # centre (5, 6), side 8
        [[np.nan, np.nan], [np.nan, np.nan], [1, 1]],  # one point: its own centre, no extent
        [[np.nan, np.nan]] * 3,             # nothing labeled
    ], float)
    c = group_centres(kp, [0, 1, 2])
    np.testing.assert_allclose(c[:3], [[5, 2], [5, 6], [1, 1]])
    assert np.isnan(c[3]).all()
    assert group_extent(kp, [0, 1, 2]) == pytest.approx(9.0)  # median of 10 and 8
    assert group_extent(kp[2:], [0, 1, 2]) == 0.0  # a lone point has no extent
    with pytest.raises(ValueError, match="any of the refined"):
        group_extent(kp[3:], [0, 1, 2])
    cfg = RefineConfig(factor=2.0, point_side=0.1)
    assert crop_side(kp, [0, 1, 2], 400.0, cfg) == pytest.approx(18.0)
    assert crop_side(kp[2:3], [0, 1, 2], 400.0, cfg) == pytest.approx(40.0)  # 0.1 of the box
    # the median, not the mean, of the frames' sides (one wide frame, a mislabel, does
    # not widen every crop), and never a crop under 8 pixels: a mean, or a floor of 1
    # pixel, passed every test before
    spread = np.array([[[0, 0], [2, 1]], [[0, 0], [1, 3]], [[0, 0], [10, 0]]], float)
    assert group_extent(spread, [0, 1]) == pytest.approx(3.0)
    assert crop_side(spread[:1], [0, 1], 400.0, cfg) == pytest.approx(8.0)  # 2 * 2 < 8


def test_estimate_centres_leave_out_a_point_far_off():
    eye = np.array([[100, 50], [120, 50], [110, 45], [110, 55]], float)
    off = eye.copy()
    off[3] = [110, 200]  # one point put on the cheek, 150 px off
    kp = np.stack([eye, off, [[np.nan, np.nan]] * 4, [[0, 0], [100, 0], [np.nan] * 2, [np.nan] * 2]])
    c = estimate_centres(kp, [0, 1, 2, 3], 40.0)
    # nothing far off: the box's middle, as training centres its crops
    np.testing.assert_allclose(c[0], group_centres(kp, [0, 1, 2, 3])[0])
    # the far point left out; group_centres would centre the crop at y 122.5, off the eye
    np.testing.assert_allclose(c[1], [110, 47.5])
    assert group_centres(kp, [0, 1, 2, 3])[1, 1] == pytest.approx(122.5)
    assert np.isnan(c[2]).all()
    # two points farther apart than the crop: neither is the odd one out, their middle stays
    np.testing.assert_allclose(c[3], [50, 0])
    # points scattered farther than the crop around their median: the median
    scattered = np.array([[[0, 0], [100, 0], [0, 90], [100, 100]]], float)
    np.testing.assert_allclose(estimate_centres(scattered, range(4), 40.0), [[50, 45]])
    np.testing.assert_allclose(group_centres(scattered, range(4)), [[50, 50]])
    # a side per frame: with a crop of 400 px the point is near enough to count, and a
    # point within one side but beyond half of it stays (the end of an elongated group)
    np.testing.assert_allclose(estimate_centres(kp, [0, 1, 2, 3], [40, 400, 40, 40])[1],
                               group_centres(kp, [0, 1, 2, 3])[1])
    np.testing.assert_allclose(estimate_centres(kp, [0, 1, 2, 3], 200.0)[1],
                               group_centres(kp, [0, 1, 2, 3])[1])


def test_crop_boxes_round_trip():
    (m,) = crop_mappings(np.array([[50.0, 40.0]]), 20.0, 64)
    assert (m.x0, m.y0, m.box_w, m.box_h, m.input_w) == (40, 30, 20, 20, 64)
    pts = np.array([[50.0, 40.0], [41.5, 49.0]])
    np.testing.assert_allclose(m.to_frame(m.to_input(pts)), pts)
    # the centre lands in the middle of the input
    np.testing.assert_allclose(m.to_input(np.array([49.5, 39.5])), [31.5, 31.5])


def test_training_crops_are_seeded_and_jittered():
    rng = np.random.default_rng(0)
    kp = rng.uniform(100, 140, (5, 3, 2))
    kp[2] = np.nan  # a frame without the eye is left out
    cfg = RefineConfig(jitter=0.1, zoom=0.2, copies=3)
    rows, boxes = training_crops(kp, [0, 1, 2], 50.0, cfg, seed=4)
    assert rows.tolist() == [0, 0, 0, 1, 1, 1, 3, 3, 3, 4, 4, 4]
    rows2, boxes2 = training_crops(kp, [0, 1, 2], 50.0, cfg, seed=4)
    assert boxes == boxes2
    centres = group_centres(kp, [0, 1, 2])[rows]
    for b, c in zip(boxes, centres, strict=True):
        assert 40 - 1 <= b.box_w <= 60 + 1
        mid = np.array([b.x0 + b.box_w / 2, b.y0 + b.box_h / 2])
        assert np.abs(mid - c).max() <= 0.1 * 50 + 1
    assert len({(b.x0, b.y0) for b in boxes}) > 4  # copies differ


def test_training_crops_spread_both_ways_around_the_labels():
    """Crop centres are shifted either way in x and y and sides scaled down as well as up,
    so the second stage learns from first estimates off to any side. Shifts drawn from
    [0, jitter] (always right and down) passed every test before."""
    kp = np.array([[[100.0, 80.0], [140.0, 100.0]]])
    cfg = RefineConfig(jitter=0.1, zoom=0.2, copies=400)
    _, boxes = training_crops(kp, [0, 1], 50.0, cfg, seed=0)
    mid = np.array([[b.x0 + b.box_w / 2, b.y0 + b.box_h / 2] for b in boxes]) - [120.0, 90.0]
    assert (mid.min(0) < -3.5).all() and (mid.max(0) > 3.5).all()  # up to 5 either way
    assert abs(np.median(mid, 0)).max() < 1.0
    sides = np.array([b.box_w for b in boxes])
    assert sides.min() <= 42 and sides.max() >= 58 and abs(np.median(sides) - 50) <= 2


def test_load_inputs_per_frame_boxes(eye_set):
    frames = read_labels(eye_set).subset([0, 0, 1])
    boxes = [InputMapping(10, 5, 40, 40, 32, 32), InputMapping(20, 5, 40, 40, 32, 32),
             InputMapping(10, 5, 40, 40, 32, 32)]
    x, k = load_inputs(frames, boxes, 1)
    assert x.shape == (3, 32, 32, 1)
    # the same frame through shifted boxes: the picture moves by the shift (10 px = 8 input px)
    np.testing.assert_allclose(k[0] - k[1], np.tile([8.0, 0.0], (k.shape[1], 1)), atol=1e-4,
                               equal_nan=True)
    with pytest.raises(ValueError, match="crop boxes"):
        load_inputs(frames, boxes[:2], 1)
    # a network trained on equalised crops is trained on each crop equalised as the predictor
    # equalises it (test_a_predictor_equalises_its_inputs_as_its_network_trained), keypoints
    # untouched
    from vit_facemap.transforms import equalize

    xe, ke = load_inputs(frames, boxes, 1, equalize_clip=2.0)
    assert np.array_equal(xe, np.stack([equalize(c, 2.0) for c in x])) and not np.array_equal(xe, x)
    np.testing.assert_array_equal(ke, k)


def test_two_stage_run_predicts_eye_with_second_stage(eye_set, tmp_path):
    frames = read_labels(eye_set)
    v = frames.videos
    tr, va = frames.subset(v == v[0]), frames.subset(v != v[0])
    run = tmp_path / "run"
    s = fit(_config(0.5), tr, run, va, device="cpu", progress=False)
    assert s["steps"] == 4 and s["refine"]["eye"]["steps"] == 4  # the step budget is shared
    saved = json.loads((run / "refine" / "eye" / "config.json").read_text())
    assert saved["refine_of"]["parts"] == SCHROEDER[1:]
    assert saved["mapping"] is None and saved["bodyparts"] == SCHROEDER[1:]
    # three box sizes, no mirrored view (the names pair, so by default it flips)
    both = load_predictor(run, "cpu", flip=False)
    first = load_predictor(run, "cpu", refine=False, flip=False)
    assert len(both.refiners) == 1 and first.refiners == []
    # a stage's folder reads as a run: evaluate and track failed at the first frame
    with pytest.raises(DataError, match=r"second stage of a run.*use the run folder"):
        load_predictor(run / "refine" / "eye", "cpu")
    images = np.stack([load_image(p) for p in va.image_paths])
    kp2, c2 = both.predict(images)
    kp1, c1 = first.predict(images)
    assert kp2.shape == kp1.shape == (len(va), 9, 2)
    np.testing.assert_array_equal(kp2[:, 0], kp1[:, 0])  # the nose is the first stage's
    assert not np.allclose(kp2[:, 1:], kp1[:, 1:])
    assert np.all((c2 >= 0) & (c2 <= 1))
    # every stage averages its box at each size: the second stage's keypoints are the
    # mean of its predictions in the scaled eye boxes around the first stage's estimate
    eye = both.refiners[0]
    assert eye.scales == both.scales and len(both.scales) > 1
    side = float(eye.refine_of["side_px"]) * images.shape[2] / float(eye.refine_of["frame_size"][0])
    boxes = crop_mappings(estimate_centres(kp1, eye.refine_of["indices"], side), side,
                          eye.model.config.input_w)
    one = load_predictor(run, "cpu", scales=(1.0,), flip=False).refiners[0]
    single = [one.predict_in_boxes(images, [b.scaled(f) for b in boxes]) for f in both.scales]
    np.testing.assert_allclose(eye.predict_in_boxes(images, boxes)[0],
                               np.mean([k for k, _ in single], 0), atol=1e-5)
    np.testing.assert_allclose(kp2[:, 1:], np.mean([k for k, _ in single], 0), atol=1e-5)
    # an estimate with one eye point put far off (here the labels, whose points lie near
    # one another) gets the crops of the estimate without it
    near = va.keypoints.astype(np.float64)
    far, gone = near.copy(), near.copy()
    far[:, 1] += 10 * side
    gone[:, 1] = np.nan
    idx = eye.refine_of["indices"]
    np.testing.assert_array_equal(estimate_centres(gone, idx, side), group_centres(gone, idx))
    assert not np.allclose(group_centres(far, idx), group_centres(gone, idx))
    np.testing.assert_array_equal(eye.refine_keypoints(images, far, c1)[0][:, 1:],
                                  eye.refine_keypoints(images, gone, c1)[0][:, 1:])
    # the second stage alone cannot place a whole frame
    with pytest.raises(ValueError, match="second-stage"):
        both.refiners[0].predict(images)
    # retraining the folder as one stage removes the stale second stage, nothing else
    (run / "notes.txt").write_text("mine")
    fit(_config(0.0), tr, run, None, device="cpu", overwrite=True, progress=False)
    assert not (run / "refine").exists() and (run / "notes.txt").read_text() == "mine"
    assert load_predictor(run, "cpu").refiners == []


def test_the_default_layout_trains_a_resnet_stem_first_stage_and_conv_stem_eye_stage(
        eye_set, tmp_path):
    # the default recipe's networks at test size: a ResNet-18 stem under the first stage's
    # ViT, the small conv stem in the eye stage (refine.model); each folder rebuilds its own
    from vit_facemap.models import build_model
    from vit_facemap.models.vit import TimmStem
    from vit_facemap.models.weights import save_weights
    from vit_facemap.rollout import attention_rollout

    frames = read_labels(eye_set)
    cfg = _config(0.5)
    cfg.model.stem = "resnet18"
    assert cfg.refine.model == TrainConfig().refine.model == {"stem": "conv", "equalize": 2.0}
    # a weights file made for the first stage starts the first stage alone: no conv-stem
    # second stage could take it (it was refused before the first stage trained)
    cfg.model.weights = str(save_weights(build_model(cfg.model, 9), tmp_path / "w.safetensors"))
    run = tmp_path / "run"
    s = fit(cfg, frames, run, None, device="cpu", progress=False)
    assert s["steps"] == 4 and s["refine"]["eye"]["steps"] == 4
    second = json.loads((run / "refine" / "eye" / "config.json").read_text())
    assert second["train"]["model"]["stem"] == "conv" and second["train"]["model"]["weights"] is None
    # the crop stage's inputs are equalised (CLAHE), the first stage's are not: each saved with
    # its network and read back by the predictor
    assert (second["train"]["model"]["equalize"], cfg.model.equalize) == (2.0, 0.0)
    first = json.loads((run / "config.json").read_text())
    assert first["train"]["model"]["weights"] == cfg.model.weights
    predictor = load_predictor(run, "cpu")
    assert isinstance(predictor.model.backbone.stem, TimmStem)
    assert not isinstance(predictor.refiners[0].model.backbone.stem, TimmStem)
    assert (predictor.equalize, predictor.refiners[0].equalize) == (0.0, 2.0)
    images = np.stack([load_image(p) for p in frames.image_paths[:3]])
    kp, conf = predictor.predict(images)
    assert kp.shape == (3, 9, 2) and np.isfinite(kp).all() and np.all((conf >= 0) & (conf <= 1))
    x = torch.rand(2, 1, cfg.model.input_h, cfg.model.input_w)
    maps = attention_rollout(predictor.model, x).maps
    assert maps.shape == (2, *predictor.model.backbone.grid) and np.isfinite(maps).all()


def test_second_stage_crops_scale_with_the_frames(eye_set, tmp_path, monkeypatch):
    """The same frames at twice the size: the same places, in the larger frames' pixels. The
    networks are replaced by one that answers a fixed corner of its input, so the keypoints
    follow the crop boxes alone (a crop of the wrong side moves them by about half a side)."""
    import cv2

    from vit_facemap.transforms import rescale_points

    frames = read_labels(eye_set)
    fit(_config(0.5), frames, tmp_path / "run", None, device="cpu", progress=False)
    p = load_predictor(tmp_path / "run", "cpu", scales=(1.0,))
    assert len(p.refiners) == 1

    def corner(stage):
        def run(x):
            kp = np.zeros((len(x), stage.model.n_keypoints, 2))
            kp[..., 1] = stage.model.config.input_h - 1
            return kp, np.ones(kp.shape[:2])
        return run

    for stage in (p, *p.refiners):
        monkeypatch.setattr(stage, "_run", corner(stage))
    images = np.stack([load_image(q) for q in frames.image_paths[:3]])
    h, w = images.shape[1:3]
    double = np.stack([cv2.resize(f, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
                       for f in images])
    one, two = p.predict(images)[0], p.predict(double)[0]
    # the crop boxes are whole pixels at each size: up to a pixel apart
    np.testing.assert_allclose(two, rescale_points(one, (w, h), (2 * w, 2 * h)), atol=1.5)


def test_second_stage_validates_frames_of_another_size_with_scaled_crops(eye_set, tmp_path,
                                                                         monkeypatch):
    """Validation frames twice the training frames' size: the second stage is validated on
    crops twice the side, as prediction cuts them there (its crop scales with the frame);
    they were cut at the training frames' side, half the view prediction gives it."""
    import vit_facemap.train as train_module

    val = write_synthetic_set(tmp_path / "big", n_frames=3, n_videos=1, seed=5, size=(192, 144),
                              layout="schroeder")
    seen = {}
    real = train_module.fit

    def spy(config, frames, out, val_frames=None, **kw):
        if kw.get("boxes") is not None:
            seen.update(val_boxes=kw["val_boxes"], info=kw["stage_info"]["refine_of"])
        return real(config, frames, out, val_frames, **kw)

    monkeypatch.setattr(train_module, "fit", spy)
    frames = read_labels(eye_set)
    real(_config(0.5), frames.subset(np.arange(6)), tmp_path / "run", read_labels(val),
         device="cpu", progress=False)
    info = seen["info"]
    side = info["side_px"] * 192 / info["frame_size"][0]  # as predict.refine_keypoints cuts it
    assert seen["val_boxes"] and all(abs(b.box_w - side) <= 1 for b in seen["val_boxes"])


def test_second_stage_validates_around_the_first_stage_as_prediction_reads_it(eye_set, tmp_path,
                                                                             monkeypatch):
    """The second stage's validation crops are centred where prediction centres them: on
    the first stage's keypoints as the run's predictor reads them (mirrored views, the nose
    within its offsets, each video's side), not on one plain view of the first stage."""
    import vit_facemap.train as train_module
    from vit_facemap.evaluate import predict_frames

    seen = {}
    real = train_module.fit

    def spy(config, frames, out, val_frames=None, **kw):
        if kw.get("boxes") is not None:
            seen.update(val_boxes=kw["val_boxes"], val=val_frames,
                        info=kw["stage_info"]["refine_of"])
        return real(config, frames, out, val_frames, **kw)

    monkeypatch.setattr(train_module, "fit", spy)
    frames = read_labels(eye_set)
    cfg = _config(0.5)
    cfg.augment.hflip = 0.5  # so that the predictor mirrors
    real(cfg, frames.subset(np.arange(8)), tmp_path / "run", frames.subset(np.arange(8, 12)),
         device="cpu", progress=False)
    first = load_predictor(tmp_path / "run", "cpu", refine=False)
    assert first._flip and first.nose_offsets is not None
    kp1 = predict_frames(first, frames.subset(np.arange(8, 12)), facing="video")[0]
    info, side = seen["info"], seen["info"]["side_px"]
    centres = estimate_centres(kp1, info["indices"], np.full(4, side))
    ok = np.isfinite(centres).all(-1) & np.isfinite(
        frames.keypoints[8:][:, info["indices"]]).all(-1).any(-1)
    want = crop_mappings(centres[ok], np.full(ok.sum(), side), cfg.refine.input_size)
    assert len(seen["val_boxes"]) == ok.sum() > 0
    for got, box in zip(seen["val_boxes"], want, strict=True):
        assert (got.x0, got.y0, got.box_w) == (box.x0, box.y0, box.box_w)


def test_training_frames_of_several_sizes_are_refused_past_the_twentieth(tmp_path):
    """Only the first 20 frames' sizes were compared: a larger frame after them trained the
    first stage through a scaled box and the second stage on crops of the first size's side,
    half the view it gets on such frames at prediction."""
    from PIL import Image

    folder = write_synthetic_set(tmp_path / "set", n_frames=22, n_videos=1, seed=1,
                                 size=(96, 72), layout="schroeder")
    frames = read_labels(folder)
    Image.new("L", (192, 144)).save(frames.image_paths[-1])
    with pytest.raises(DataError, match=r"several sizes \[\(96, 72\), \(192, 144\)\]"):
        fit(_config(0.5), frames, tmp_path / "run", None, device="cpu", progress=False)
    assert not (tmp_path / "run" / "config.json").exists()


def test_one_network_per_group(eye_set, tmp_path):
    frames = read_labels(eye_set)
    cfg = _config(0.5)
    cfg.refine.auto = "parts"
    s = fit(cfg, frames, tmp_path / "run", None, device="cpu", progress=False)
    assert sorted(s["refine"]) == ["eye", "nose"]
    assert s["refine"]["eye"]["steps"] == s["refine"]["nose"]["steps"] == 2  # 4 steps shared
    nose = json.loads((tmp_path / "run" / "refine" / "nose" / "config.json").read_text())
    assert nose["refine_of"]["indices"] == [0]
    box = json.loads((tmp_path / "run" / "config.json").read_text())["mapping"]
    # a lone point has no extent: its crop is point_side of the first stage's box (or 8 px)
    assert nose["refine_of"]["side_px"] == pytest.approx(
        max(0.2 * max(box["box_w"], box["box_h"]), 8.0))
    p = load_predictor(tmp_path / "run", "cpu")
    assert [r.refine_of["group"] for r in p.refiners] == ["eye", "nose"]
    kp, conf = p.predict(np.stack([load_image(q) for q in frames.image_paths[:3]]))
    assert kp.shape == (3, 9, 2) and np.isfinite(kp).all()


def test_two_stage_run_resumes(eye_set, tmp_path):
    frames = read_labels(eye_set)
    run = tmp_path / "run"
    fit(_config(0.5), frames, run, None, device="cpu", progress=False)
    for folder in (run, run / "refine" / "eye"):
        cfg = json.loads((folder / "config.json").read_text())
        cfg["train"]["steps"] = 12 if folder == run else 6
        (folder / "config.json").write_text(json.dumps(cfg))
    rows_before = pd.read_csv(run / "refine" / "eye" / "metrics.csv")
    s = fit(_config(0.5), frames, run, None, device="cpu", resume=True, progress=False)
    assert s["steps"] == 6 and s["refine"]["eye"]["steps"] == 6
    # continued, not retrained: the earlier epochs' rows are kept
    rows = pd.read_csv(run / "refine" / "eye" / "metrics.csv")
    assert len(rows) > len(rows_before)
    np.testing.assert_allclose(rows["train_loss"][: len(rows_before)], rows_before["train_loss"])


def test_unfinished_or_unlabeled_second_stage(eye_set, tmp_path):
    frames = read_labels(eye_set)
    run = tmp_path / "run"
    fit(_config(0.5), frames, run, None, device="cpu", progress=False)
    (run / "refine" / "eye" / "runinfo.json").unlink()  # as if stopped during stage 2
    with pytest.warns(RuntimeWarning, match="did not finish"):
        p = load_predictor(run, "cpu")
    assert p.refiners == []
    # a group with no label at all is refused before any training
    empty = frames.subset(np.arange(len(frames)))
    empty.keypoints[:, 0] = np.nan
    cfg = _config(0.5)
    cfg.refine.auto = "parts"
    with pytest.raises(DataError, match="no labeled point"):
        fit(cfg, empty, tmp_path / "run2", None, device="cpu", progress=False)
    assert not (tmp_path / "run2" / "model.safetensors").exists()


def test_a_run_stopped_before_a_second_stage_began_is_said_to_be_unfinished(eye_set, tmp_path,
                                                                            monkeypatch):
    """The first stage's runinfo.json is written before the second stages start: a run
    stopped before a group's folder existed loaded without a word, and its keypoints of that
    group were the first stage's."""
    import vit_facemap.train as train_module

    def stop(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train_module, "_fit_refine", stop)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        fit(_config(0.5), read_labels(eye_set), run, None, device="cpu", progress=False)
    assert (run / "runinfo.json").is_file() and not (run / "refine").exists()
    with pytest.warns(RuntimeWarning, match=r"second stage of \['eye'\] began.*--resume"):
        p = load_predictor(run, "cpu")
    assert p.refiners == []


def test_flip_pairs_of_each_second_stage(eye_set, tmp_path):
    frames = read_labels(eye_set)
    cfg = _config(0.5)
    cfg.steps, cfg.refine.auto = 6, "eye+nose"
    cfg.augment.hflip = 0.5
    cfg.augment.flip_pairs = [["leftpupil", "rightpupil"], ["lefteyelid", "righteyelid"]]
    fit(cfg, frames, tmp_path / "run", None, device="cpu", progress=False)

    def pairs(group):
        folder = tmp_path / "run" / "refine" / group
        return json.loads((folder / "config.json").read_text())["train"]["augment"]["flip_pairs"]
    # each stage keeps the pairs inside its group; the nose, paired with nothing, still flips
    assert pairs("eye") == cfg.augment.flip_pairs and pairs("nose") == []
    assert json.loads((tmp_path / "run" / "refine" / "nose" / "runinfo.json").read_text())
    # a pair the groups split is refused before any training, listed or "auto"
    cfg.refine.groups = [["leftpupil", "dorsalpupil"], ["rightpupil", "ventralpupil"]]
    for listed in (cfg.augment.flip_pairs, "auto"):
        cfg.augment.flip_pairs = listed
        with pytest.raises(DataError, match="'leftpupil'/'rightpupil' is split by the refine"):
            fit(cfg, frames, tmp_path / "run2", None, device="cpu", progress=False)
        assert not (tmp_path / "run2" / "model.safetensors").exists()


def test_auto_flips_are_decided_once_and_saved_with_the_run(eye_set, tmp_path):
    frames = read_labels(eye_set)
    cfg = _config(0.5)
    cfg.steps, cfg.refine.auto = 6, "eye+nose"
    assert cfg.augment.hflip == "auto"
    fit(cfg, frames, tmp_path / "run", None, device="cpu", progress=False)
    assert cfg.augment.hflip == "auto"  # the caller's config is left as given
    run = json.loads((tmp_path / "run" / "config.json").read_text())
    # saved as decided, with the reason: a resumed run and the second stages flip alike
    assert run["train"]["augment"]["hflip"] == 0.5
    assert run["hflip_auto"].startswith("auto: on, the keypoints pair left / right")
    for group in ("eye", "nose"):
        stage = json.loads((tmp_path / "run" / "refine" / group / "config.json").read_text())
        assert stage["train"]["augment"]["hflip"] == 0.5
    info = json.loads((tmp_path / "run" / "runinfo.json").read_text())
    assert info["summary"]["flip_pairs"] == [["leftpupil", "rightpupil"], ["lefteyelid", "righteyelid"]]
    # names that do not pair, videos filmed from one side: no flips
    g7c1 = write_synthetic_set(tmp_path / "g7c1", n_frames=8, n_videos=2, seed=1, size=(96, 72),
                               layout="g7c1")
    one = _config(0.0)
    one.steps = 4
    fit(one, read_labels(g7c1), tmp_path / "run_g7c1", None, device="cpu", progress=False)
    run = json.loads((tmp_path / "run_g7c1" / "config.json").read_text())
    assert run["train"]["augment"]["hflip"] == 0.0 and run["hflip_auto"].startswith("auto: off")
    # the same names with one of three videos labeled as seen from the other side: on, with
    # a warning that the names are taken as the same points in the mirror image
    mirrored = write_synthetic_set(tmp_path / "mirrored", n_frames=9, n_videos=3, seed=1,
                                   size=(96, 72), layout="g7c1")
    labels = read_labels(mirrored)
    last = labels.videos == sorted(set(labels.videos))[-1]
    labels.keypoints[last, :, 0] = 95 - labels.keypoints[last, :, 0]
    write_labels(labels, find_label_file(mirrored), overwrite=True)
    with pytest.warns(UserWarning, match=r"flips half the samples because 1 training video\(s\) "
                                         r"show the face from the other side.*taken to be the same"):
        fit(one, read_labels(mirrored), tmp_path / "run_mirrored", None, device="cpu",
            progress=False)
    run = json.loads((tmp_path / "run_mirrored" / "config.json").read_text())
    assert run["train"]["augment"]["hflip"] == 0.5 and "1 training video(s)" in run["hflip_auto"]
    # a number given is kept, and no reason is recorded
    one.augment.hflip = 0.0
    fit(one, frames, tmp_path / "run_off", None, device="cpu", progress=False)
    run = json.loads((tmp_path / "run_off" / "config.json").read_text())
    assert run["train"]["augment"]["hflip"] == 0.0 and "hflip_auto" not in run


def test_replacing_a_two_stage_run_that_fails_restores_both_stages(eye_set, tmp_path,
                                                                     monkeypatch):
    import vit_facemap.train as train_module

    frames = read_labels(eye_set)
    run = tmp_path / "run"
    fit(_config(0.5), frames, run, None, device="cpu", progress=False)
    files = sorted(p.relative_to(run) for p in run.rglob("*") if p.is_file())
    before = {p: (run / p).read_bytes() for p in files}
    assert Path("refine/eye/model.safetensors") in before

    def broken(*args, **kwargs):  # the new run's second stage fails
        raise DataError("cannot cut the eye crops", tmp_path)
    monkeypatch.setattr(train_module, "_fit_refine", broken)
    with pytest.raises(DataError), pytest.warns(UserWarning, match="can be resumed"):
        fit(_config(0.5), frames, run, None, device="cpu", overwrite=True, progress=False)
    # the new first stage saved its state, so it stays (resumable) and the old run is aside
    (backup,) = run.glob(".replaced-*")
    assert {p: (backup / p).read_bytes() for p in files} == before
    assert not (run / "refine" / "eye" / "model.safetensors").exists()


def test_old_configs_train_one_stage():
    d = asdict(TrainConfig())
    d.pop("refine")
    assert TrainConfig.from_dict(d).refine.share == 0.0
    d["refine"] = {"share": 0.3}  # saved before refine groups could be chosen: the eye alone
    assert TrainConfig.from_dict(d).refine.auto == "eye"
    d["refine"] = asdict(TrainConfig().refine)
    assert TrainConfig.from_dict(d).refine == TrainConfig().refine
    # a run saved under the earlier default (eye and nose stages, 45%) keeps its recipe
    d["refine"] = {**asdict(TrainConfig().refine), "share": 0.45, "auto": "eye+nose"}
    kept = TrainConfig.from_dict(d).refine
    assert (kept.share, kept.auto) == (0.45, "eye+nose")
    assert TrainConfig().refine.share > 0  # the recipe has the second stage
    # a crop stage per face part, half of the budget: what the methods say (measured against
    # the earlier default, the benchmark's hybrid_eye_nose)
    assert (TrainConfig().refine.share, TrainConfig().refine.auto) == (0.5, "parts")
    st = TrainConfig(steps=1000, warmup_steps=100, max_minutes=10.0).stage(0.3, input_w=64)
    assert (st.steps, st.warmup_steps, st.max_minutes, st.model.input_w) == (300, 30, 3.0, 64)
    assert st.refine.share == 0.0


class _Stub(torch.nn.Module):
    """A network the predictor never calls (``_run`` is replaced): only its config is read."""

    def __init__(self, input_w=32, input_h=24):
        super().__init__()
        self.config = SimpleNamespace(input_w=input_w, input_h=input_h)


def _stub_predictor(run_config, scales, answer):
    """A KeypointPredictor whose ``_run`` answers ``answer(x)`` (keypoints in input pixels,
    confidences) for the normalised inputs it is given, one row per (box size, frame)."""
    from vit_facemap.predict import KeypointPredictor

    cfg = {"bodyparts": SCHROEDER[:3], "channels": 1, **run_config}
    p = KeypointPredictor(_Stub(), cfg, "cpu", scales=scales)
    p._run = answer
    return p


def test_a_predictor_equalises_its_inputs_as_its_network_trained():
    """The inputs a predictor hands its network are the crop equalised with the network's
    own ``equalize`` (as load_inputs gave them in training), and unchanged for a network
    saved without the setting (runs from before it)."""
    from vit_facemap.predict import KeypointPredictor
    from vit_facemap.transforms import equalize, normalise

    box = InputMapping(8, 4, 32, 24, 32, 24)
    rng = np.random.default_rng(0)
    frames = rng.integers(20, 60, (2, 40, 48), dtype=np.uint8)  # a dark, low-contrast frame
    raw = normalise(np.stack([box.apply(f)[..., None] for f in frames]))
    for clip in (None, 0.0, 2.0):
        stub = _Stub()
        if clip is not None:
            stub.config.equalize = clip
        cfg = {"bodyparts": SCHROEDER[:3], "channels": 1, "mapping": asdict(box),
               "frame_size": [48, 40]}
        p = KeypointPredictor(stub, cfg, "cpu", scales=(1.0,))
        seen = []

        def answer(x, seen=seen):
            seen.append(x)
            return np.zeros((len(x), 3, 2)), np.ones((len(x), 3))
        p._run = answer
        p.predict(frames)
        want = (raw if not clip else
                normalise(np.stack([equalize(box.apply(f)[..., None], clip) for f in frames])))
        assert np.array_equal(seen[0], want), clip
    assert seen[0].std() > 2 * raw.std()  # the equalised crop spreads the grey levels


def test_box_sizes_are_averaged_per_frame_in_frame_pixels():
    """Each frame's keypoints and confidence are the mean over the box sizes of what was seen
    through each size, mapped to frame pixels by that size's box. The confidence taken as
    the largest of the sizes' (max for mean) passed every test before."""
    box = InputMapping(30, 20, 40, 30, 32, 24)
    p = _stub_predictor({"mapping": asdict(box), "frame_size": [96, 72]}, (1.0, 1.5, 0.7),
                        None)
    uv = np.array([[3.0, 4.0], [20.0, 11.0], [30.0, 22.0]])
    rows = []

    def answer(x):  # the bright frame's points 5 input pixels further; confidence per row
        rows.append(len(x))
        flat = x.reshape(len(x), -1).mean(1)
        bright = (flat > flat.mean()).astype(float)
        conf = np.arange(len(x) * 3, dtype=float).reshape(len(x), 3) / (len(x) * 6)
        return uv[None] + 5 * bright[:, None, None], conf + 0.5 * bright[:, None]

    p._run = answer
    frames = np.full((2, 72, 96), 40, np.uint8)
    frames[1] = 200
    kp, conf = p.predict(frames)
    assert rows == [6]  # every box size of every frame in one pass
    for f in (0, 1):
        expected = np.mean([box.scaled(s).to_frame(uv + 5 * f) for s in p.scales], 0)
        np.testing.assert_allclose(kp[f], expected, atol=1e-9)
    # row i of the pass is (size i // 2, frame i % 2): each frame averages its own rows
    c = np.arange(18, dtype=float).reshape(6, 3) / 36
    np.testing.assert_allclose(conf, [c[[0, 2, 4]].mean(0), c[[1, 3, 5]].mean(0) + 0.5])


def test_second_stage_replaces_its_points_and_their_confidences_only():
    """refine_keypoints puts the second stage's keypoints and confidences in for its group's
    points, in frames where the first stage placed the group, and leaves every other
    number as it was. Before, keeping the first stage's confidences for the refined points
    (the confidence line dropped) passed every test, and so did cropping around a group
    whose centre was half known (one coordinate NaN)."""
    stage = _stub_predictor({"refine_of": {"indices": [1, 2], "side_px": 20,
                                           "frame_size": [96, 72]}}, (1.0,), None)
    stage._run = lambda x: (np.tile([[4.0, 8.0], [28.0, 16.0]], (len(x), 1, 1)),
                            np.full((len(x), 2), 0.9))
    frames = np.zeros((3, 144, 192), np.uint8)  # twice the width the crop side was set for
    kp = np.array([[[10.0, 12.0], [50.0, 40.0], [70.0, 60.0]],
                   [[11.0, 13.0], [np.nan, 40.0], [np.nan, 60.0]],  # the group's x unknown
                   [[12.0, 14.0], [80.0, 30.0], [90.0, 50.0]]])
    conf = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.35]])
    new_kp, new_conf = stage.refine_keypoints(frames, kp, conf)
    np.testing.assert_array_equal(new_kp[:, 0], kp[:, 0])
    np.testing.assert_array_equal(new_kp[1], kp[1])
    np.testing.assert_array_equal(new_conf[:, 0], conf[:, 0])
    np.testing.assert_array_equal(new_conf[1], conf[1])
    np.testing.assert_array_equal(new_conf[[0, 2]][:, 1:], 0.9)
    # the crop: side 20 * 192 / 96 = 40 frame pixels around the middle of the group's box
    for f, (cx, cy) in ((0, (60.0, 50.0)), (2, (85.0, 40.0))):
        (box,) = crop_mappings(np.array([[cx, cy]]), 40.0, 32)
        assert (box.box_w, box.box_h) == (40, 40)
        np.testing.assert_allclose(new_kp[f, 1:], box.to_frame(np.array([[4.0, 8.0], [28.0, 16.0]])))
    assert not np.shares_memory(new_kp, kp) and np.isnan(kp[1, 1, 0])  # the input is kept


def test_crop_offsets_are_the_crop_and_four_shifted_copies():
    np.testing.assert_array_equal(crop_offsets(0), [[0, 0]])
    np.testing.assert_allclose(crop_offsets(np.float32(0.1)),
                               [[0, 0], [-0.1, 0], [0.1, 0], [0, -0.1], [0, 0.1]], atol=1e-7)
    for bad in (-0.01, 0.5, float("nan"), True, np.bool_(False), "0.1"):
        with pytest.raises(ValueError, match="crop_shift must be a share of the crop's side"):
            crop_offsets(bad)


def test_second_stage_averages_its_shifted_crops():
    """With crop_shift, each frame's refined points are the mean of what the stage saw in
    its crop and in four copies moved by that share of the side (in the pixels of frames
    twice as wide as the run's), all in one pass; confidences likewise. The views differ (a
    content-dependent answer), so a stage that kept the first crop alone, or moved the crops
    by another amount, gives other numbers. A frame whose group has no estimate is left as
    it was."""
    from vit_facemap.predict import KeypointPredictor

    seen = []

    def answer(x):  # a point at the brightness-weighted centre of each input
        seen.append(len(x))
        h, w = x.shape[-2:]
        img = x.reshape(len(x), h, w) - x.min()
        yy, xx = np.mgrid[:h, :w]
        c = np.stack([(img * xx).sum((1, 2)), (img * yy).sum((1, 2))], -1) / img.sum((1, 2))[:, None]
        return np.repeat(c[:, None], 2, 1), np.tile([[0.2, 0.4]], (len(x), 1)) + c[:, :1] / 100

    info = {"refine_of": {"indices": [1, 2], "side_px": 20, "frame_size": [96, 72]}}
    stage = _stub_predictor(info, (1.0,), None)
    stage._run = answer
    frames = np.zeros((3, 144, 192), np.uint8)  # twice the width the crop side was set for
    frames[:, 60:80, 100:112] = 255  # a bright patch near the group, off its centre
    kp = np.array([[[10.0, 12.0], [100.0, 60.0], [120.0, 80.0]]] * 3)
    kp[1, 1:] = np.nan  # no estimate of the group in frame 1
    conf = np.full((3, 3), 0.5)
    one_kp, _ = stage.refine_keypoints(frames, kp, conf)
    assert seen == [2]
    with pytest.raises(ValueError, match="crop_shift must be"):
        KeypointPredictor(_Stub(), {"bodyparts": SCHROEDER[:3], "channels": 1, **info}, "cpu",
                          crop_shift=0.6)
    # the first stage hands its shift to its second stages, as it does its scales, and
    # again when it is set later
    first = KeypointPredictor(_Stub(), {"bodyparts": SCHROEDER[:3], "channels": 1}, "cpu",
                              refiners=[stage], scales=(1.0,), crop_shift=0.1)
    assert stage.crop_shift == 0.1
    first.crop_shift = 0.0
    assert stage.crop_shift == 0.0
    with pytest.raises(ValueError, match="crop_shift must be"):
        first.crop_shift = -1
    first.crop_shift = 0.1
    seen.clear()
    new_kp, new_conf = stage.refine_keypoints(frames, kp, conf)
    assert seen == [2 * 5]  # one pass: a compiled graph pads one short batch
    views = []
    first.crop_shift = 0.0
    for dx, dy in crop_offsets(0.1):
        moved = kp.copy()
        moved[:, 1:] += np.array([dx, dy]) * 40  # the side: 20 px at 96 wide, 40 at 192
        views.append(stage.refine_keypoints(frames, moved, conf))
    np.testing.assert_allclose(new_kp[[0, 2], 1:], np.mean([v[0][[0, 2], 1:] for v in views], 0))
    np.testing.assert_allclose(new_conf[[0, 2], 1:],
                               np.mean([v[1][[0, 2], 1:] for v in views], 0))
    assert not np.allclose(new_kp[[0, 2]], one_kp[[0, 2]])
    np.testing.assert_array_equal(new_kp[:, 0], kp[:, 0])
    np.testing.assert_array_equal(new_kp[1], kp[1])
    np.testing.assert_array_equal(new_conf[1], conf[1])


@pytest.fixture(scope="module")
def flip_runs(eye_set, tmp_path_factory):
    """A two-stage run trained with flips (schroeder's names pair left / right) and one
    trained without."""
    frames = read_labels(eye_set)
    runs = {}
    for name, hflip in (("flipped", "auto"), ("unflipped", 0.0)):
        cfg = _config(0.5)
        cfg.augment = replace(cfg.augment, hflip=hflip)
        runs[name] = tmp_path_factory.mktemp("flip") / name
        fit(cfg, frames, runs[name], None, device="cpu", progress=False)
    return runs


def test_flipped_views_make_each_stage_mirror_symmetric(flip_runs):
    """With flip, a stage's answer for a mirrored input is its answer for the input,
    mirrored (x -> width - 1 - x, pixel centres at whole numbers) with left and right
    keypoints swapped: the averaged heatmap is symmetric by construction. A predictor that
    did not mirror the heatmap back, swapped no names or mirrored about another line would
    break it for a network that is not symmetric itself (none trained is)."""
    predictor = load_predictor(flip_runs["flipped"], "cpu", flip=True)
    assert predictor.flip and all(r.flip for r in predictor.refiners)
    rng = np.random.default_rng(0)
    for stage, names in ((predictor, SCHROEDER), (predictor.refiners[0], SCHROEDER[1:])):
        assert stage.bodyparts == names
        cfg = stage.model.config
        x = rng.normal(size=(3, 1, cfg.input_h, cfg.input_w)).astype(np.float32)
        with torch.inference_mode():
            kp, conf = stage._run(x)
            kp_m, conf_m = stage._run(np.ascontiguousarray(x[..., ::-1]))
            stage.flip = False
            plain, _ = stage._run(x)
            plain_m, _ = stage._run(np.ascontiguousarray(x[..., ::-1]))
            stage.flip = True
        swap = [names.index(n.replace("left", "#").replace("right", "left").replace("#", "right"))
                for n in names]
        assert swap != list(range(len(names)))  # the pupils and eyelids swap
        back = kp_m[:, swap].copy()
        back[..., 0] = cfg.input_w - 1 - back[..., 0]
        np.testing.assert_allclose(back, kp, atol=1e-3)
        np.testing.assert_allclose(conf_m[:, swap], conf, atol=1e-5)
        mirrored_plain = plain_m[:, swap].copy()
        mirrored_plain[..., 0] = cfg.input_w - 1 - mirrored_plain[..., 0]
        assert not np.allclose(mirrored_plain, plain, atol=1e-3)  # the network alone is not


def test_flip_is_the_default_where_a_run_can_and_then_from_the_box_alone(flip_runs, eye_set):
    """By default a run trained with flips predicts from the box and its mirror image (every
    stage); one trained without flips from three box sizes, without a word; ``flip=False``
    predicts as before flips were the default, and the flip switch alone changes nothing
    else."""
    frames = read_labels(eye_set)
    images = np.stack([load_image(p) for p in frames.image_paths[:4]])
    default = load_predictor(flip_runs["flipped"], "cpu")
    assert default.flip and all(r.flip for r in default.refiners)
    assert default.scales == FLIP_SCALES == (1.0,)
    assert all(r.scales == FLIP_SCALES for r in default.refiners)
    kp, conf = default.predict(images)
    explicit = load_predictor(flip_runs["flipped"], "cpu", flip=True, scales=(1.0,))
    np.testing.assert_array_equal(explicit.predict(images)[0], kp)
    plain = load_predictor(flip_runs["flipped"], "cpu", flip=False)
    assert not plain.flip and plain.scales == TEST_SCALES
    assert all(r.scales == TEST_SCALES and not r.flip for r in plain.refiners)
    # the box sizes given are kept whether the run flips or not
    sized = load_predictor(flip_runs["flipped"], "cpu", scales=(0.9, 1.1))
    assert sized.flip and all(r.scales == (0.9, 1.1) for r in (sized, *sized.refiners))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a run that cannot flip is not told it cannot
        unflipped = load_predictor(flip_runs["unflipped"], "cpu")
    assert not unflipped.flip and unflipped.scales == TEST_SCALES
    explicit.flip = False  # handed on to the second stages, as crop_shift is
    assert not any(r.flip for r in explicit.refiners)
    one_view = load_predictor(flip_runs["flipped"], "cpu", flip=False, scales=(1.0,))
    kp_1, _ = one_view.predict(images)
    assert not np.allclose(kp, kp_1)
    np.testing.assert_array_equal(explicit.predict(images)[0], kp_1)


def test_flip_needs_a_run_trained_on_mirrored_faces(flip_runs):
    with pytest.warns(RuntimeWarning, match=r"unflipped: test-time flips need a network "
                                            r"trained on mirrored faces.*; flip ignored"):
        predictor = load_predictor(flip_runs["unflipped"], "cpu", flip=True)
    assert not predictor.flip
    with pytest.raises(ValueError, match=r"trained without flips \(train.augment.hflip 0\)"):
        predictor.flip = True
    with pytest.raises(ValueError, match=r"flip must be True, False or None \(where the run "
                                         r"can\), got 'yes'"):
        load_predictor(flip_runs["flipped"], "cpu", flip="yes")
    with pytest.raises(ValueError, match="flip must be True or False, got None"):
        predictor.flip = None  # the predictor itself has no "where it can"
    predictor = load_predictor(flip_runs["flipped"], "cpu", flip=False)
    predictor.model.stride = 7  # a heatmap whose cells do not tile the input
    with pytest.raises(ValueError, match=r"input width \(64\) that is a whole number of "
                                         r"heatmap cells \(7 pixels\)"):
        predictor.flip = True  # refused when set, not at the first frame
    predictor = load_predictor(flip_runs["flipped"], "cpu", flip=False)
    predictor.model.config.head = "regression"
    with pytest.raises(ValueError, match="average heatmaps; this run's network regresses"):
        predictor.flip = True
    # a second stage that cannot flip keeps every stage from flipping
    predictor = load_predictor(flip_runs["flipped"], "cpu", flip=False)
    predictor.refiners[0].model.config.head = "regression"
    assert predictor.why_no_flip().startswith("second stage eye: test-time flips average")
    predictor.scales = (0.9, 1.1)  # handed on to the second stages, and checked
    assert predictor.refiners[0].scales == (0.9, 1.1)
    with pytest.raises(ValueError, match="scales must be one or more positive"):
        predictor.scales = (0.0,)
    with pytest.raises(ValueError, match="second stage eye"):
        predictor.flip = True
    assert not predictor.flip and not predictor.refiners[0].flip


def test_heatmaps_not_keypoints_are_averaged():
    """Where the two views disagree, the stronger peak of the mean heatmap wins: a network
    that sees the point (logit 50) and, in one fixed place of its own, something stronger
    (60) answers that place unflipped, and the point once its mirror is averaged in (the
    mean of the two views' keypoints would land between the two wrong places)."""
    from vit_facemap.predict import KeypointPredictor

    class Peaks(torch.nn.Module):
        stride = 4

        def __init__(self):
            super().__init__()
            self.config = SimpleNamespace(input_w=32, input_h=16, head="heatmap")

        def forward(self, x):
            cells = torch.nn.functional.avg_pool2d(x, 4)  # (B, 1, 4, 8)
            bias = torch.zeros_like(cells)
            bias[..., 1, 1] = 60.0
            return {"heatmap": 50.0 * cells + bias}

    x = np.zeros((1, 1, 16, 32), np.float32)
    x[..., 4:8, 20:24] = 1.0  # the point: cell (1, 5), input pixel x 21.5
    cfg = {"bodyparts": ["nose"], "channels": 1, "train": {"augment": {"hflip": 0.5}}}
    predictor = KeypointPredictor(Peaks(), cfg, "cpu", scales=(1.0,), flip=True)
    with torch.inference_mode():
        kp, _ = predictor._run(x)
        predictor.flip = False
        plain, _ = predictor._run(x)
    assert plain[0, 0, 0] == pytest.approx(5.5, abs=0.01)  # the network's own place, cell 1
    assert kp[0, 0, 0] == pytest.approx(21.5, abs=0.01)


def test_evaluate_records_the_flips_it_made(flip_runs, eye_set, tmp_path):
    from vit_facemap.evaluate import evaluate_run

    with pytest.warns(DataWarning, match="frames .* trained on"):  # all it has: tiny set
        plain = evaluate_run(flip_runs["flipped"], eye_set, tmp_path / "a.json",
                             progress=False, device="cpu", flip=False)
        flipped = evaluate_run(flip_runs["flipped"], eye_set, tmp_path / "b.json",
                               progress=False, device="cpu")
        # numpy's booleans are taken (a flag read from an array of settings)
        sized = evaluate_run(flip_runs["flipped"], eye_set, tmp_path / "c.json",
                             progress=False, device="cpu", flip=np.bool_(True),
                             scales=TEST_SCALES)
    assert (plain["flip"], flipped["flip"], sized["flip"]) == (False, True, True)
    assert (plain["scales"], flipped["scales"]) == ([0.9, 1.0, 1.1], [1.0])
    assert sized["scales"] == [0.9, 1.0, 1.1]
    assert json.loads((tmp_path / "b.json").read_text())["flip"] is True
    # at the same box sizes, the mirrored view alone changes the result
    assert sized["mean_px"] != plain["mean_px"] and flipped["mean_px"] != plain["mean_px"]


def test_evaluate_command_flips_by_default_where_the_run_can(flip_runs, eye_set, tmp_path):
    from vit_facemap.cli import main

    args = ["evaluate", str(flip_runs["flipped"]), "--data", str(eye_set), "--device", "cpu",
            "--quiet"]
    with pytest.warns(DataWarning, match="frames .* trained on"):
        assert main([*args, "--json", str(tmp_path / "a.json")]) == 0
        assert main([*args, "--json", str(tmp_path / "b.json"), "--no-flip"]) == 0
    views = [json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab"]
    assert [(m["flip"], m["scales"]) for m in views] == [(True, [1.0]),
                                                         (False, [0.9, 1.0, 1.1])]
