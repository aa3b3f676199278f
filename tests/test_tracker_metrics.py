"""Metric values on hand-made cases."""

import numpy as np
import pytest

from vit_facemap.metrics import group_metrics, keypoint_metrics, reference_lengths


def test_hand_made_errors_and_pck():
    bp = ["eye front", "eye back", "nose"]
    true = np.array([[[0.0, 0.0], [100.0, 0.0], [50.0, 50.0]],
                     [[0.0, 0.0], [100.0, 0.0], [np.nan, np.nan]]])
    pred = true.copy()
    pred[0, 0] += [3.0, 4.0]     # 5 px
    pred[0, 2] += [0.0, 20.0]    # 20 px
    pred[1, 1] += [6.0, 8.0]     # 10 px
    pred[1, 2] = [999.0, 999.0]  # label missing: ignored
    m = keypoint_metrics(pred, true, bp, pck_threshold=0.1)
    errs = np.array([5.0, 0.0, 20.0, 0.0, 10.0])
    assert np.isclose(m["mean_px"], errs.mean())
    assert np.isclose(m["median_px"], 5.0)
    assert np.isclose(m["rmse_px"], np.sqrt((errs**2).mean()))
    # reference length 100 px -> threshold 10 px: 5, 0, 0, 10 correct; 20 not
    assert np.isclose(m["pck"], 4 / 5)
    assert m["reference"] == "eye front to eye back"
    assert m["n_frames"] == 2 and m["n_keypoints_labeled"] == 5
    assert np.isclose(m["per_keypoint"]["nose"]["mean_px"], 20.0)
    assert m["per_keypoint"]["nose"]["n"] == 1
    assert np.isclose(m["per_keypoint"]["eye back"]["pck"], 1.0)
    assert np.isclose(m["mean_normalised"], (errs / 100).mean())


def test_reference_fallbacks():
    true = np.array([[[0.0, 0.0], [30.0, 40.0]]])
    length, name = reference_lengths(true, ["a", "b"])
    assert np.isclose(length[0], 50.0) and "bounding-box" in name
    true = np.array([[[0.0, 0.0], [10.0, 0.0]], [[np.nan, np.nan], [1.0, 1.0]]])
    length, _ = reference_lengths(true, ["lefteyelid", "righteyelid"])
    assert np.allclose(length, [10.0, 10.0])  # a frame without the pair uses the median
    # a frame with one labeled point has no bounding box: the median, not a length of 0
    true = np.array([[[0.0, 0.0], [30.0, 40.0]], [[5.0, 5.0], [np.nan, np.nan]]])
    assert np.allclose(reference_lengths(true, ["a", "b"])[0], [50.0, 50.0])



def test_a_frame_without_labels_scores_without_a_numpy_warning():
    """A set without the reference pair measures each frame's labeled-keypoint box: a frame
    with no label at all (unlabeled frames are kept in a set) printed numpy's
    "All-NaN slice encountered" from metrics.py on every evaluation."""
    import warnings

    true = np.array([[[0.0, 0.0], [30.0, 40.0]], [[np.nan, np.nan], [np.nan, np.nan]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        length, _ = reference_lengths(true, ["a", "b"])
        m = keypoint_metrics(true + 1.0, true, ["a", "b"])
    np.testing.assert_allclose(length, [50.0, 50.0])  # the unlabeled frame: the median
    assert m["n_keypoints_labeled"] == 2 and m["pck"] == 1.0

def test_no_reference_length_gives_no_pck():
    """Where no frame has both keypoints of the reference pair there is no threshold: PCK is
    None (overall, per keypoint, per group), not 0 from comparisons with NaN."""
    bp = ["eye front", "eye back", "nose"]
    true = np.array([[[0.0, 0.0], [np.nan, np.nan], [50.0, 50.0]],
                     [[0.0, 0.0], [np.nan, np.nan], [60.0, 50.0]]])
    m = keypoint_metrics(true.copy(), true, bp)
    assert m["mean_px"] == 0.0 and m["reference_median_px"] is None
    assert m["pck"] is None
    assert all(v["pck"] is None for v in m["per_keypoint"].values())
    assert all(g["pck"] is None for g in group_metrics(true, true, bp, ["a", "b"]).values())


def test_missing_prediction_counts_as_a_miss():
    true = np.zeros((1, 2, 2))
    pred = np.array([[[0.0, 0.0], [np.nan, np.nan]]])
    m = keypoint_metrics(pred, true, ["a", "b"])
    assert m["mean_px"] == np.inf and m["pck"] == 0.5


def test_group_metrics_split_the_frames_by_group():
    bp = ["eye front", "eye back"]
    true = np.tile([[0.0, 0.0], [100.0, 0.0]], (3, 1, 1))
    pred = true.copy()
    pred[0, 0] += [3.0, 4.0]    # video a: errors 5, 0
    pred[1:, 1] += [0.0, 30.0]  # video b: errors 0, 30, 0, 30
    g = group_metrics(pred, true, bp, ["a", "b", "b"])
    assert list(g) == ["a", "b"]
    assert np.isclose(g["a"]["mean_px"], 2.5) and g["a"]["n_frames"] == 1
    assert np.isclose(g["b"]["mean_px"], 15.0) and np.isclose(g["b"]["pck"], 0.5)
    assert g["b"]["n_frames"] == 2
    # the overall mean weights frames, not groups
    assert np.isclose(keypoint_metrics(pred, true, bp)["mean_px"], 65 / 6)
    with pytest.raises(ValueError, match="2 group names for 3 frames"):
        group_metrics(pred, true, bp, ["a", "b"])



def test_frames_without_any_label_are_counted_apart():
    """n_frames counts the frames scored, unlabeled ones too (DeepLabCut keeps frames
    extracted but not labeled yet): "4 frames: mean 2.31 px" came from 2 of them."""
    true = np.full((4, 2, 2), np.nan)
    true[0] = [[0.0, 0.0], [3.0, 4.0]]
    true[1, 0] = [1.0, 1.0]
    true[2, 1] = [np.nan, 2.0]  # an x without its y: no label
    pred = np.zeros_like(true)
    m = keypoint_metrics(pred, true, ["a", "b"])
    assert (m["n_frames"], m["n_labeled_frames"], m["n_keypoints_labeled"]) == (4, 2, 3)
    g = group_metrics(pred, true, ["a", "b"], ["v", "v", "w", "w"])
    assert [(g[k]["n_frames"], g[k]["n_labeled_frames"]) for k in "vw"] == [(2, 2), (2, 0)]

def test_group_metrics_judge_a_frame_by_the_same_threshold_as_the_whole_set():
    """A frame without its own reference length gets the median of the whole evaluated set,
    not of its group: its PCK threshold must not change with how the frames are grouped."""
    bp = ["eye front", "eye back"]
    true = np.array([[[0.0, 0.0], [100.0, 0.0]],        # a: length 100
                     [[0.0, 0.0], [100.0, 0.0]],        # a: length 100
                     [[0.0, 0.0], [20.0, 0.0]],         # b: length 20
                     [[0.0, 0.0], [np.nan, np.nan]]])   # b: none of its own -> median 100
    pred = true.copy()
    pred[3, 0] += [5.0, 0.0]  # 5 px: within 0.1 x 100, not within 0.1 x 20
    whole = keypoint_metrics(pred, true, bp)
    g = group_metrics(pred, true, bp, ["a", "a", "b", "b"])
    assert np.isclose(g["b"]["pck"], 3 / 3)
    # per-group correct counts add up to the whole set's
    n = {"a": 4, "b": 3}
    assert {k: g[k]["n_keypoints_labeled"] for k in n} == n
    assert np.isclose(sum(g[k]["pck"] * n[k] for k in n), whole["pck"] * 7)
    # and so do the per-group means, weighted by labeled keypoints (not frames)
    assert np.isclose(sum(g[k]["mean_px"] * n[k] for k in n), whole["mean_px"] * 7)
    ref, name = reference_lengths(true, bp)
    same = keypoint_metrics(pred[2:], true[2:], bp, reference=(ref[2:], name))
    assert np.isclose(same["pck"], 1.0)
    with pytest.raises(ValueError, match="reference lengths for 2 frames"):
        keypoint_metrics(pred[2:], true[2:], bp, reference=(ref, name))


# --- vit_facemap.bootstrap -----------------------------------------------------------------


def test_bootstrap_units_are_animals_or_blocks_of_consecutive_frames():
    from vit_facemap.bootstrap import resampling_units

    frames = ["labeled-data/s1/img1.png", "labeled-data/s2/img5.png", "labeled-data/s1/img2.png"]
    units, what = resampling_units(frames, ["FG001", "Io", "FG001"])
    assert units.tolist() == ["FG001", "Io", "FG001"] and what == "2 held-out animals"
    # one animal: blocks in image-number order (img9 before img10), per video
    frames = [f"labeled-data/v/img{i}.png" for i in (10, 9, 11, 1, 30)]
    units, what = resampling_units(frames, ["G7"] * 5, block_frames=2)
    assert units.tolist() == ["v#1", "v#0", "v#1", "v#0", "v#2"]
    assert what == "3 blocks of 2 consecutive frames from 1 held-out video"
    # the frame number is the image name's last number (read by its first, every frame of
    # cam2_img... was frame 2, and blocks followed the table's order)
    frames = [f"labeled-data/v/cam2_img{i}.png" for i in (10, 9, 11, 1, 30)]
    units, _ = resampling_units(frames, ["G7"] * 5, block_frames=2)
    assert units.tolist() == ["v#1", "v#0", "v#1", "v#0", "v#2"]
    with pytest.raises(ValueError, match="4 animals for 5 frames"):
        resampling_units(frames, ["G7"] * 4)


def test_a_short_last_block_joins_the_one_before():
    # frames that follow a block closely are no independent stretch: a tail of a frame or
    # two counted as one more block towards MIN_GROUPS (41 frames: 5 blocks, a verdict)
    from collections import Counter

    from vit_facemap.bootstrap import resampling_units

    def sizes(n, video="v"):
        frames = [f"labeled-data/{video}/img{i}.png" for i in range(n)]
        units, what = resampling_units(frames, ["G7"] * n)
        return sorted(Counter(units.tolist()).values()), what

    assert sizes(41) == ([10, 10, 10, 11], "4 blocks of 10 consecutive frames from 1 "
                                           "held-out video")
    assert sizes(91)[0] == [10] * 8 + [11]  # g7c1's held-out video: 9 blocks, not 10
    assert sizes(45)[0] == [5, 10, 10, 10, 10]  # half a block or more stays a block
    assert sizes(4)[0] == [4]  # a video of fewer frames than a block is one block
    units, _ = resampling_units([f"labeled-data/v/img{i}.png" for i in (9, 1, 12, 5)],
                                ["G7"] * 4, block_frames=3)
    assert units.tolist() == ["v#0", "v#0", "v#0", "v#0"]  # frames 1, 5, 9 and 12 in one


def test_mean_error_difference_resamples_groups_and_is_seeded():
    from vit_facemap.bootstrap import excludes_zero, mean_error_difference

    rng = np.random.default_rng(0)
    a = rng.uniform(1, 3, (40, 3))
    a[0, 1] = np.nan  # no label: left out of both means
    units = np.repeat(list("abcdefgh"), 5)
    b = a + 2.0 + rng.normal(0, 0.1, a.shape)  # b is 2 px worse everywhere
    r = mean_error_difference(a, b, units)
    assert np.isclose(r["estimate"], np.nanmean(b) - np.nanmean(a))
    assert r["low"] <= r["estimate"] <= r["high"] and r["n_groups"] == 8
    assert excludes_zero(r) and r["low"] > 1.5
    assert mean_error_difference(a, b, units) == r  # seeded: the same interval every time
    # b better on half the animals, worse on the other half: no verdict
    c = a + np.where(np.isin(units, list("abcd")), 2.0, -2.0)[:, None]
    assert not excludes_zero(mean_error_difference(a, c, units))
    a[3, 0] = np.inf  # a missed prediction: its mean is infinite, no interval
    assert mean_error_difference(a, b, units) is None


def test_macro_f1_of_confusion_is_scikit_learns():
    from sklearn.metrics import confusion_matrix, f1_score

    from vit_facemap.bootstrap import macro_f1_difference, macro_f1_of_confusion

    rng = np.random.default_rng(1)
    for n_classes in (2, 3):
        t, p = rng.integers(0, n_classes, 30), rng.integers(0, n_classes, 30)
        t[t == n_classes - 1] = 0  # a class never true is not averaged, predicted or not
        labels = list(range(n_classes))
        cm = confusion_matrix(t, p, labels=labels)
        assert np.isclose(macro_f1_of_confusion(cm),
                          f1_score(t, p, labels=sorted(set(t)), average="macro",
                                   zero_division=0))
    # one state, all of its frames right: 1, not half of it
    assert macro_f1_of_confusion(np.array([[0, 0], [0, 8]])) == 1.0
    good = np.array([[[5, 0], [0, 5]], [[3, 1], [0, 4]], [[0, 0], [1, 6]]])
    bad = np.array([[[2, 3], [3, 2]], [[2, 2], [2, 2]], [[0, 0], [4, 3]]])
    r = macro_f1_difference(good, bad)
    assert np.isclose(r["estimate"], macro_f1_of_confusion(good.sum(0))
                      - macro_f1_of_confusion(bad.sum(0)))
    assert r["n_groups"] == 3 and r["low"] > 0


def test_group_bootstrap_is_the_percentile_interval_of_seeded_group_resamples():
    from vit_facemap.bootstrap import group_bootstrap

    per_group = np.array([[1.0, 1.0], [4.0, 2.0], [9.0, 3.0], [2.0, 2.0], [10.0, 2.0]])

    def ratio(s):
        return s[:, 0] / s[:, 1]

    r = group_bootstrap(per_group, ratio, n_boot=400, seed=5, level=0.8)
    assert r["estimate"] == pytest.approx(26.0 / 10.0)
    # the same draws made here: whole groups with replacement, summed, the 10% / 90% points
    draws = np.random.default_rng(5).integers(0, 5, size=(400, 5))
    values = ratio(per_group[draws].sum(1))
    assert r["low"] == pytest.approx(np.quantile(values, 0.1))
    assert r["high"] == pytest.approx(np.quantile(values, 0.9))
    other = group_bootstrap(per_group, ratio, n_boot=400, seed=6, level=0.8)
    assert (other["low"], other["high"]) != (r["low"], r["high"])  # the seed is used


def test_mean_error_difference_skips_resamples_with_no_label():
    from vit_facemap.bootstrap import mean_error_difference

    # unit "y" has no labeled keypoint: a resample of "y" alone has no mean and is left out;
    # every other resample holds only x's difference, (4 + 5) / 2 - (1 + 2) / 2 = 3
    a = np.array([[1.0, 2.0], [np.nan, np.nan]])
    b = np.array([[4.0, 5.0], [np.nan, np.nan]])
    r = mean_error_difference(a, b, ["x", "y"], n_boot=200)
    assert r["estimate"] == r["low"] == r["high"] == pytest.approx(3.0)


def test_reference_lengths_are_euclidean_and_filled_with_the_median():
    """The eye's width is the straight distance of its two points (not along the axes); a
    frame without it gets the median of the others (not their mean), which the output
    reports; the default PCK threshold is a tenth of it."""
    bp = ["eye front", "eye back"]
    true = np.array([[[0.0, 0.0], [30.0, 40.0]],     # 50 (70 along the axes)
                     [[0.0, 0.0], [50.0, 0.0]],      # 50
                     [[0.0, 0.0], [200.0, 0.0]],     # 200: the mean would be 100
                     [[0.0, 0.0], [np.nan, np.nan]]])
    length, _ = reference_lengths(true, bp)
    np.testing.assert_allclose(length, [50.0, 50.0, 200.0, 50.0])
    pred = true.copy()
    pred[3, 0] += [7.0, 0.0]  # 7 px: over a tenth of 50, under a fifth (or a tenth of 100)
    m = keypoint_metrics(pred, true, bp)
    assert m["reference_median_px"] == 50.0 and m["pck_threshold"] == 0.1
    assert np.isclose(m["pck"], 6 / 7)
    assert np.isclose(group_metrics(pred, true, bp, ["a", "a", "b", "b"])["b"]["pck"], 2 / 3)


def test_a_half_label_is_no_label():
    # read_labels keeps the x of a label whose y cell is empty: missing, not a miss
    true = np.array([[[0.0, 0.0], [5.0, np.nan]]])
    m = keypoint_metrics(np.zeros((1, 2, 2)), true, ["a", "b"])
    assert m["n_keypoints_labeled"] == 1 and m["mean_px"] == 0.0
