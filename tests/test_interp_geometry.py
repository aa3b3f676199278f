"""Geometry supervision of the pupil-state ViT: measures.csv, view targets, ratio decisions."""

import numpy as np
import pytest
import torch

from vit_facemap.classifier import (
    MARGIN,
    FacialStateClassifier,
    _view,
    cross_validate,
    load_frames,
    profile_config,
    ratio_rule,
    view_targets,
)
from vit_facemap.dlc import LabeledFrames, write_labels
from vit_facemap.states import (
    BETWEEN,
    read_image_set,
    read_measures,
    write_generated_state_set,
    write_pupil_state_set,
)

BODYPARTS = ["nose", "leftpupil", "dorsalpupil", "rightpupil", "ventralpupil",
             "lefteyelid", "dorsaleyelid", "righteyelid", "ventraleyelid"]


def keypoints(pupil: float, dx: float = 0.0) -> np.ndarray:
    # eye 40 px wide centred at (60 + dx, 40); a round pupil of diameter `pupil`
    r, c = pupil / 2, 60 + dx
    return np.array([[10, 40], [c - r, 40], [c, 40 - r], [c + r, 40], [c, 40 + r],
                     [c - 20, 40], [c, 30], [c + 20, 40], [c, 50]], float)


@pytest.fixture(scope="module")
def dlc_set(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("dlc")
    pupils = [6.0, 9.9, 12.0, 16.0]  # ratios .15 .2475 .30 .40
    index = [f"labeled-data/Glaucus2022-03-281/img{i}.png" for i in range(2)] + \
            [f"labeled-data/FG0032023-03-118/img{i}.png" for i in range(2)]
    for rel in index:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((80, 120), 100, np.uint8)).save(root / rel)
    kp = np.stack([keypoints(p, dx=4.0 * i) for i, p in enumerate(pupils)])
    write_labels(LabeledFrames(root, index, kp, BODYPARTS), root / "CollectedData_test.csv")
    return root


def test_measures_table_and_between_frames(dlc_set, tmp_path):
    s = write_pupil_state_set(dlc_set, tmp_path / "pupil")
    assert len(s) == 3 and s.classes == ["constricted", "dilated"]  # .between is no class
    m = read_measures(s)
    assert m is not None
    ratio = m.values[:, m.names.index("ratio")]
    np.testing.assert_allclose(sorted(ratio), [0.15, 0.2475, 0.40], atol=1e-4)
    # positions are in eye widths from the eye-box centre, whatever the frame position
    np.testing.assert_allclose(m.values[:, m.names.index("lefteyelid_x")], -0.5, atol=1e-4)
    np.testing.assert_allclose(m.values[:, m.names.index("righteyelid_x")], 0.5, atol=1e-4)
    # the frame between the thresholds: measures only, with its group and eye box
    assert len(m.extra_paths) == 1 and m.extra_paths[0].parent.name == BETWEEN
    assert m.extra_paths[0].is_file()
    np.testing.assert_allclose(m.extra_values[0, m.names.index("ratio")], 0.30, atol=1e-4)
    np.testing.assert_allclose(m.extra_eyes[0], [68, 40, 40], atol=1e-3)
    assert m.extra_groups.tolist() == ["FG003"]


def test_set_without_measures_reads_none(tmp_path):
    s = write_generated_state_set(tmp_path / "g", 8, n_videos=2, size=(96, 72))
    assert read_measures(s) is None


def test_view_targets_follow_the_augmented_image():
    # a crop with one bright dot; the target moved by the view's affine map must land on it
    cf, size = 2.0, 32
    side = int(round(size * MARGIN))
    gen = torch.Generator().manual_seed(3)
    names = ["ratio", "leftdot_x", "leftdot_y", "rightdot_x", "rightdot_y"]
    hits = 0
    for _ in range(12):
        p = np.random.default_rng(hits).uniform(-0.35, 0.35, 2)  # eye widths from the centre
        crop = np.zeros((1, side, side), np.uint8)
        px = (p / (cf * MARGIN) + 0.5) * side  # pixel position in the margin crop
        crop[0, int(px[1]), int(px[0])] = 255
        x, theta = _view(crop, size, gen, return_theta=True)
        t = view_targets(np.array([[0.3, *p, *p]]), names, theta, cf)[0]
        assert t[0] == pytest.approx(0.3)  # ratios are kept
        iy, ix = np.unravel_index(int(x[0, 0].argmax()), (size, size))
        want = (t[1:3].numpy() + 1) / 2 * size  # [-1, 1] view units -> pixels
        if np.hypot(ix + 0.5 - want[0], iy + 0.5 - want[1]) < 2.5:
            hits += 1
        if torch.linalg.det(theta[0, :, :2]) < 0:  # mirrored: left and right swapped
            assert torch.equal(t[1:3], t[3:5])
    assert hits >= 11


def test_view_targets_without_augmentation():
    _, theta = _view(np.zeros((2, 40, 40), np.uint8), 32, return_theta=True)
    t = view_targets(np.array([[1.0, 0.0], [-0.5, 0.25]]), ["a_x", "a_y"], theta, 2.0)
    # crop_factor 2: the view is two eye widths wide, one eye width from the centre its edge
    np.testing.assert_allclose(t.numpy(), [[1.0, 0.0], [-0.5, 0.25]], atol=1e-5)


def test_ratio_rule():
    r = ratio_rule(np.array([0.1, 0.2, 0.24, 0.36, 0.5]), np.array([1, 1, 1, 0, 0]), 2)
    assert r == {"threshold": pytest.approx(0.30), "low": 1, "high": 0}
    assert ratio_rule(np.array([0.1, 0.2]), np.array([0, 0]), 2) is None
    assert ratio_rule(np.array([0.1, 0.2, 0.3]), np.array([0, 1, 2]), 3) is None


@pytest.fixture(scope="module")
def gen_with_measures(tmp_path_factory):
    s = write_generated_state_set(tmp_path_factory.mktemp("g") / "set", 16, n_videos=4,
                                  size=(96, 72))
    frames = load_frames(s.paths)
    rng = np.random.default_rng(0)
    # a made-up ratio that follows the class, and one position
    ratio = np.where(s.labels == 1, 0.4, 0.2) + rng.normal(0, 0.02, len(s))
    values = np.column_stack([ratio, rng.uniform(-0.3, 0.3, len(s)), np.full(len(s), 0.1)])
    return s, frames, values, ["ratio", "dot_x", "dot_y"]


def test_fit_with_measures_save_load_and_ratio_decision(gen_with_measures, tmp_path):
    s, frames, values, names = gen_with_measures
    extra = (frames[:3], s.eyes[:3], values[:3])
    clf = FacialStateClassifier(profile_config("test", decision="ratio"), s.classes)
    clf.fit(frames, s.labels, s.eyes, progress=False, measures=values, measure_names=names,
            extra=extra)
    assert clf.geometry is not None and clf.rule["high"] == 1
    geo = clf.predict_measures(frames, s.eyes)
    assert geo.shape == (16, 3) and np.isfinite(geo).all()
    p = clf.predict_proba(frames)
    assert p.shape == (16, 2) and np.allclose(p.sum(1), 1)
    clf.save(tmp_path / "run")
    again = FacialStateClassifier.load(tmp_path / "run")
    assert again.measure_names == names and again.rule == clf.rule
    np.testing.assert_allclose(again.predict_proba(frames), p, atol=1e-5)
    # "mean": halfway between the class head and the ratio rule
    from dataclasses import replace

    head = replace(clf, config=replace(clf.config, decision="head")).predict_proba(frames)
    mean = replace(clf, config=replace(clf.config, decision="mean")).predict_proba(frames)
    np.testing.assert_allclose(mean, (head + p) / 2, atol=1e-6)
    # without measures the same config trains the class head only (and decides with it)
    plain = FacialStateClassifier(profile_config("test", decision="ratio"), s.classes,
                                  locator=clf.locator)
    plain.fit(frames, s.labels, s.eyes, progress=False)
    assert plain.geometry is None and plain.predict_measures(frames) is None
    assert plain.predict_proba(frames).shape == (16, 2)


def test_cross_validate_passes_measures(gen_with_measures):
    from vit_facemap.states import SetMeasures

    s, frames, values, names = gen_with_measures
    m = SetMeasures(names, values, [s.paths[0]], values[:1], s.eyes[:1],
                    np.array([s.groups[0]], dtype=object))
    cv = cross_validate(frames, s.labels, s.groups, s.classes,
                        {"vit": profile_config("test", epochs=1)}, s.eyes, n_splits=2,
                        progress=False, measures=m)
    assert all(c.geometry is not None for c in cv.models["vit"])
    assert np.isfinite(cv.proba["vit"]).all()



def test_unclassed_images_of_unknown_groups_do_not_train_any_fold(gen_with_measures, monkeypatch):
    """An extra image whose group the folds do not use could show a held-out animal."""
    import vit_facemap.classifier as C
    from vit_facemap.errors import DataWarning
    from vit_facemap.states import SetMeasures

    s, frames, values, names = gen_with_measures
    m = SetMeasures(names, values, [s.paths[0], s.paths[1]], values[:2], s.eyes[:2],
                    np.array([s.groups[0], "an animal under another name"], dtype=object))
    seen, fit_locator = [], C.fit_locator
    monkeypatch.setattr(C, "fit_locator", lambda fr, bx, cfg, extra, progress: (
        seen.append(len(extra[0])), fit_locator(fr, bx, cfg, extra, progress))[1])
    # the group named as the user wrote it (it read "np.str_('an animal ...')")
    with pytest.warns(DataWarning, match=r"1 image.* group the cross-validation does not use "
                                         r"\('an animal under another name'\)"):
        cross_validate(frames, s.labels, s.groups, s.classes,
                       {"hog": profile_config("test", model="hog-rf")}, s.eyes, n_splits=2,
                       progress=False, measures=m)
    # the known group's image trains the fold that holds that group out of its test set only
    assert sorted(seen) == [0, 1]


def test_forest_with_a_class_missing_from_training_gives_every_column(gen_with_measures):
    s, frames, _, _ = gen_with_measures
    clf = FacialStateClassifier(profile_config("test", model="hog-rf"), [*s.classes, "third"])
    clf.fit(frames, s.labels, s.eyes, progress=False)
    p = clf.predict_proba(frames, s.eyes)
    assert p.shape == (len(frames), 3) and (p[:, 2] == 0).all() and np.allclose(p.sum(1), 1)


def test_read_image_set_skips_hidden_between_folder(dlc_set, tmp_path):
    out = tmp_path / "p"
    write_pupil_state_set(dlc_set, out)
    assert (out / BETWEEN).is_dir()
    assert BETWEEN not in read_image_set(out).classes


def test_equalize_crops_brings_out_a_dark_pupil():
    from vit_facemap.classifier import equalize_crops

    yy, xx = np.mgrid[:40, :40]
    crop = np.full((40, 40), 30, np.uint8)  # a dark eye ...
    crop[(yy - 20) ** 2 + (xx - 20) ** 2 < 36] = 22  # ... with a slightly darker pupil
    out = equalize_crops(crop[None])
    assert out.dtype == np.uint8 and out.shape == (1, 40, 40)
    pupil, iris = out[0][(yy - 20) ** 2 + (xx - 20) ** 2 < 16], out[0][:, :5]
    assert iris.mean() - pupil.mean() > 4 * (30 - 22)


def test_classify_cli_trains_the_geometry_head_from_measures(dlc_set, tmp_path, capsys):
    import json

    from vit_facemap.cli import main

    data = tmp_path / "pupil"
    assert main(["classify", "make-pupil-set", str(dlc_set), str(data)]) == 0
    run = tmp_path / "run"
    assert main(["classify", "train", "--data", str(data), "--out", str(run), "--profile",
                 "test", "--quiet"]) == 0
    prov = json.loads((run / "provenance.json").read_text())
    assert "ratio" in prov["measures"] and prov["measure_only_images"] == 1
    assert FacialStateClassifier.load(run).geometry is not None
    out = tmp_path / "m.json"
    assert main(["classify", "evaluate", str(run), "--data", str(data), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["n"] == 3
    plain = tmp_path / "plain"
    assert main(["classify", "train", "--data", str(data), "--out", str(plain), "--profile",
                 "test", "--quiet", "--no-measures"]) == 0
    assert FacialStateClassifier.load(plain).geometry is None


def _peaked(cells: dict[int, tuple[float, float]], k: int, side: int = 32) -> torch.Tensor:
    """Heatmap logits (1, k, side, side) with one sharp peak per map at the given cell."""
    logits = torch.full((1, k, side, side), -50.0)
    for i, (x, y) in cells.items():
        logits[0, i, int(y), int(x)] = 50.0
    return logits


def test_keypoint_ratio_equals_the_measure_by_hand():
    from vit_facemap.classifier import keypoint_ratio

    names = ["leftpupil", "dorsalpupil", "rightpupil", "ventralpupil", "lefteyelid",
             "righteyelid"]
    # eye 20 cells wide; pupil 6 cells across and 4 cells high: (6 + 4) / 2 / 20 = 0.25
    at = {0: (13, 16), 1: (16, 14), 2: (19, 16), 3: (16, 18), 4: (6, 16), 5: (26, 16)}
    np.testing.assert_allclose(keypoint_ratio(_peaked(at, 6), names), [0.25], atol=1e-6)
    # a point the maps do not hold: no ratio
    assert np.isnan(keypoint_ratio(_peaked(at, 6), ["nose", *names[1:]])).all()


def test_heatmap_loss_prefers_maps_at_the_points_and_skips_unknown_ones():
    from vit_facemap.classifier import heatmap_loss

    # view coordinates [-1, 1] -> cell (v + 1) / 2 * 32 - 0.5: -0.5 -> 7.5, 0.25 -> 19.5
    pts = torch.tensor([[[-0.5, 0.25], [float("nan"), float("nan")]]])
    right = _peaked({0: (7.5, 19.5), 1: (0, 0)}, 2) / 25
    wrong = _peaked({0: (20, 5), 1: (0, 0)}, 2) / 25
    assert heatmap_loss(right, pts) < heatmap_loss(wrong, pts)
    # the unknown second point adds nothing whatever its map
    other = _peaked({0: (7.5, 19.5), 1: (30, 30)}, 2) / 25
    assert torch.isclose(heatmap_loss(right, pts), heatmap_loss(other, pts))
    outside = torch.tensor([[[1.5, 0.0], [float("nan"), 0.0]]])
    assert heatmap_loss(right, outside) == 0
    # outside on the left (or above) is skipped too: dropping the left-edge check passed
    # every test before
    for off in ([-1.5, 0.0], [0.0, -1.5]):
        assert heatmap_loss(right, torch.tensor([[off, [float("nan"), 0.0]]])) == 0
    # half a cell matters: cell i spans [i, i + 1) of the 32 in view units, so a point a
    # quarter cell right of and below the centre of cell (7, 19) costs least on that cell
    centre = torch.tensor([[[(7.75 / 32) * 2 - 1, (19.75 / 32) * 2 - 1]]])
    costs = {(x, y): float(heatmap_loss(_peaked({0: (x, y)}, 1) / 25, centre))
             for x in (6, 7, 8) for y in (18, 19, 20)}
    assert min(costs, key=costs.get) == (7, 19)


def test_keypoint_heatmaps_train_save_load_and_decide(dlc_set, tmp_path):
    from dataclasses import replace

    s = write_pupil_state_set(dlc_set, tmp_path / "pupil")
    m = read_measures(s)
    frames = load_frames(s.paths)
    clf = FacialStateClassifier(profile_config("test", decision="keypoints"), s.classes)
    clf.fit(frames, s.labels, s.eyes, progress=False, measures=m.values, measure_names=m.names)
    assert clf.geometry.heatmap is not None
    ratio = clf.predict_keypoint_ratio(frames, s.eyes)
    assert ratio.shape == (3,) and np.isfinite(ratio).all()
    p = clf.predict_proba(frames, s.eyes)
    np.testing.assert_allclose(p, clf._ratio_proba(ratio), atol=1e-6)
    clf.save(tmp_path / "run")
    again = FacialStateClassifier.load(tmp_path / "run")
    assert again.geometry.heatmap is not None
    np.testing.assert_allclose(again.predict_keypoint_ratio(frames, s.eyes), ratio, atol=1e-5)
    # without heatmaps (weight 0, as in runs saved before them) "keypoints" falls back to the head
    plain = FacialStateClassifier(profile_config("test", decision="keypoints",
                                                 heatmap_weight=0.0), s.classes,
                                  locator=clf.locator)
    plain.fit(frames, s.labels, s.eyes, progress=False, measures=m.values, measure_names=m.names)
    assert plain.geometry.heatmap is None and plain.predict_keypoint_ratio(frames, s.eyes) is None
    head = replace(plain, config=replace(plain.config, decision="head"))
    np.testing.assert_allclose(plain.predict_proba(frames, s.eyes),
                               head.predict_proba(frames, s.eyes), atol=1e-6)
    # and such a run (geometry head without heatmap tensors) loads as it was trained
    plain.save(tmp_path / "plain")
    loaded = FacialStateClassifier.load(tmp_path / "plain")
    assert loaded.geometry is not None and loaded.geometry.heatmap is None
    np.testing.assert_allclose(loaded.predict_measures(frames, s.eyes),
                               plain.predict_measures(frames, s.eyes), atol=1e-5)


def test_keypoint_decision_keeps_the_head_where_no_ratio_can_be_measured(gen_with_measures):
    from dataclasses import replace

    # the measures hold one point ("dot"): heatmaps train, but no pupil ratio comes from them
    s, frames, values, names = gen_with_measures
    clf = FacialStateClassifier(profile_config("test", decision="keypoints"), s.classes)
    clf.fit(frames, s.labels, s.eyes, progress=False, measures=values, measure_names=names)
    assert clf.geometry.heatmap is not None
    assert np.isnan(clf.predict_keypoint_ratio(frames, s.eyes)).all()
    head = replace(clf, config=replace(clf.config, decision="head"))
    p = clf.predict_proba(frames, s.eyes)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p, head.predict_proba(frames, s.eyes), atol=1e-6)
    assert FacialStateClassifier(profile_config("test", model="hog-rf"), s.classes
                                 ).predict_keypoint_ratio(frames, s.eyes) is None
