"""Labels that slipped onto another keypoint's place or strayed off the face: found, reported,
left out of training."""

import json
import warnings

import numpy as np
import pytest

from vit_facemap.cli import main
from vit_facemap.dlc import LabeledFrames, write_labels
from vit_facemap.errors import DataError
from vit_facemap.labelcheck import (
    FLOOR_PER_PAIR,
    describe_slips,
    label_repeatability,
    label_slips,
    mask_slips,
)


def _row(rng, a=(0, 0), b=(50, 0), c=(100, 0)):
    return np.array([a, b, c], float) + rng.uniform(-1, 1, (3, 2))


def _frames(tmp_path, slip: bool) -> LabeledFrames:
    rng = np.random.default_rng(0)
    kp = np.stack([_row(rng) + 100 for _ in range(10)])
    if slip:  # frame 3: 'a' clicked on b's place, 'b' on c's, 'c' skipped
        kp[3] = [[150, 100], [200, 100], [np.nan, np.nan]]
    index = [f"labeled-data/v/img{i:03d}.png" for i in range(10)]
    return LabeledFrames(tmp_path, index, kp, ["a", "b", "c"])


def test_slipped_labels_are_found_and_masked(tmp_path):
    assert label_slips(_frames(tmp_path, slip=False)).empty
    frames = _frames(tmp_path, slip=True)
    slips = label_slips(frames)
    assert list(zip(slips["frame"], slips["keypoint"], slips["near"], strict=True)) == [
        ("labeled-data/v/img003.png", "a", "b"), ("labeled-data/v/img003.png", "b", "c")]
    assert np.allclose(slips["offset_px"], 50, atol=2) and (slips["near_px"] < 2).all()
    masked = mask_slips(frames, slips)
    assert np.isnan(masked.keypoints[3]).all()
    assert np.isfinite(frames.keypoints[3, :2]).all()  # the input is left as it was
    assert np.array_equal(masked.keypoints[:3], frames.keypoints[:3])
    lines = describe_slips(slips, limit=1)
    assert "img003.png: 'a' lies 50 px from its usual place" in lines[0]
    assert "where 'b' usually is" in lines[0] and lines[1] == "... and 1 more"
    # a video with fewer frames than min_frames is not judged
    assert label_slips(frames, min_frames=11).empty


def test_inspect_reports_slips(tmp_path, capsys):
    frames = _frames(tmp_path, slip=True)
    write_labels(frames, tmp_path / "CollectedData.csv")
    assert main(["data", "inspect", str(tmp_path / "CollectedData.csv"), "--no-images",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["keypoint"] for s in out["label_slips"]] == ["a", "b"]
    assert any("slipped or swapped" in w for w in out["warnings"])


def test_a_slipped_run_is_followed_past_labels_that_moved_little(tmp_path):
    # 'b' scatters by 5 px, so a move of 18 px is under its own limit (4 x 5 = 20 px), but it
    # sits next to a flagged label and on 'c''s place: the whole run a -> b -> c slipped
    b_x = np.where(np.arange(10) % 2 == 0, 45.0, 55.0)
    kp = np.zeros((10, 4, 2))
    kp[:, :, 0] = np.c_[np.zeros(10), b_x, np.full(10, 68.0), np.full(10, 150.0)]
    kp[3, :3] = [[50, 0], [68, 0], [150, 0]]  # a on b, b on c, c on d; d stays
    index = [f"labeled-data/v/img{i:03d}.png" for i in range(10)]
    slips = label_slips(LabeledFrames(tmp_path, index, kp, ["a", "b", "c", "d"]))
    assert list(zip(slips["keypoint"], slips["near"], strict=True)) == [
        ("a", "b"), ("b", "c"), ("c", "d")]
    assert slips.loc[1, "offset_px"] < 4 * slips.loc[1, "typical_px"]


def test_a_face_that_moved_far_is_not_a_slip(tmp_path):
    # frame 3: the whole face shifted by a keypoint spacing, so 'a' lies on b's usual place
    # and 'b' on c's, but b and c are labeled too and moved with them. Frame 6: 'a' moved onto
    # b's usual place while 'b' itself moved away (a raised nose: its tip where its top was)
    frames = _frames(tmp_path, slip=False)
    frames.keypoints[3] += [45, 0]
    frames.keypoints[6, :2] = [[150, 100], [150, 50]]
    assert label_slips(frames).empty
    # the slips stay: 'b' missing, or 'b' labeled on the same spot as 'a' (a double click)
    frames.keypoints[6, 1] = np.nan
    frames.keypoints[8, 0] = frames.keypoints[8, 1]
    slips = label_slips(frames)
    assert list(zip(slips["frame"], slips["keypoint"], slips["near"], strict=True)) == [
        ("labeled-data/v/img006.png", "a", "b"), ("labeled-data/v/img008.png", "a", "b")]


def test_a_label_far_from_its_place_but_near_no_other_is_not_flagged(tmp_path):
    # far from its usual place is not enough: the label has to sit on another keypoint's
    frames = _frames(tmp_path, slip=False)
    frames.keypoints[3, 0] = [100, 200]  # 'a' alone, 100 px below its place
    frames.keypoints[5, :2] = [[100, 200], [150, 200]]  # 'a' and 'b' together
    frames.keypoints[7] = [[100, 200], [np.nan, np.nan], [200, 100]]  # 'a', with 'b' missing
    assert label_slips(frames).empty


def test_a_label_farther_off_than_the_face_is_wide_is_a_stray(tmp_path):
    # the face spans 100 px ('a' to 'c'): a click 150 px off lies on no pose of it
    frames = _frames(tmp_path, slip=False)
    frames.keypoints[4, 0] = [100, 250]
    frames.keypoints[6, 2] = [200, 195]  # 95 px off, within the face's width: not flagged
    slips = label_slips(frames)
    assert list(zip(slips["frame"], slips["keypoint"], slips["near"], strict=True)) == [
        ("labeled-data/v/img004.png", "a", "")]
    assert np.isclose(slips["offset_px"].iloc[0], 150, atol=2) and slips["near_px"].isna().all()
    assert np.isnan(mask_slips(frames, slips).keypoints[4, 0]).all()
    assert describe_slips(slips)[0].endswith("farther than the labeled face is wide (stray click?)")
    # a slip in the same video is still reported as one, and the stray beside it
    frames.keypoints[3] = [[150, 100], [200, 100], [np.nan, np.nan]]
    assert list(label_slips(frames)["near"]) == ["b", "c", ""]
    # one keypoint labeled: no face width to judge by
    one = LabeledFrames(tmp_path, frames.index, frames.keypoints[:, :1], ["a"])
    assert label_slips(one).empty


def test_a_swap_stays_flagged_when_the_partner_scatters_widely(tmp_path):
    # 'a' and 'c' swapped in frame 3. 'c' scatters by 30 px, so its 100 px move is under its
    # own limit (4 x 30) and it is not flagged itself; it still lies off its place and on
    # a's, so 'a' is not a label the face carried away (it was excused: no flag at all)
    rng = np.random.default_rng(0)
    kp = np.stack([_row(rng, c=(100, (0, 30, -30)[i % 3])) + 100 for i in range(10)])
    kp[3, [0, 2]] = kp[3, [2, 0]]
    index = [f"labeled-data/v/img{i:03d}.png" for i in range(10)]
    slips = label_slips(LabeledFrames(tmp_path, index, kp, ["a", "b", "c"]))
    assert list(zip(slips["frame"], slips["keypoint"], slips["near"], strict=True)) == [
        ("labeled-data/v/img003.png", "a", "c")]


def test_limits_of_a_slip(tmp_path):
    # a label a third of the way to another's place is off its own, not on the other's
    frames = _frames(tmp_path, slip=False)
    # 30 px from a's place, 20 from b's (b unlabeled here): not 3x closer
    frames.keypoints[3, :2] = [[130, 100], [np.nan, np.nan]]
    assert label_slips(frames).empty
    # a video of exactly min_frames frames is judged
    frames = _frames(tmp_path, slip=True)
    assert len(label_slips(frames, min_frames=10)) == 2
    assert len(describe_slips(label_slips(frames), limit=2)) == 2  # no "... and 0 more"
    # keypoints closer than min_px: a label on its neighbour's place moved too little to tell
    kp = frames.keypoints[:, :2].copy()
    kp[:, 1] = kp[:, 0] + [8, 0]
    kp[3] = [kp[0, 1], [np.nan, np.nan]]
    assert label_slips(LabeledFrames(tmp_path, frames.index, kp, ["a", "b"])).empty
    assert not label_slips(LabeledFrames(tmp_path, frames.index, kp, ["a", "b"]),
                           min_px=5).empty


def test_a_slipped_run_is_followed_both_ways_in_labeling_order(tmp_path):
    # as above, 'b' moved less than its own limit onto c's place next to the slipped 'a',
    # and 'c' was skipped; the run is followed whether 'b' comes after 'a' or before it
    b_x = np.where(np.arange(10) % 2 == 0, 45.0, 55.0)
    kp = np.zeros((10, 4, 2))
    kp[:, :, 0] = np.c_[np.zeros(10), b_x, np.full(10, 68.0), np.full(10, 150.0)]
    kp[3, :3] = [[50, 0], [68, 0], [np.nan, np.nan]]
    index = [f"labeled-data/v/img{i:03d}.png" for i in range(10)]
    slips = label_slips(LabeledFrames(tmp_path, index, kp, ["a", "b", "c", "d"]))
    assert list(zip(slips["keypoint"], slips["near"], strict=True)) == [("a", "b"), ("b", "c")]
    slips = label_slips(LabeledFrames(tmp_path, index, kp[:, ::-1], ["d", "c", "b", "a"]))
    assert list(zip(slips["keypoint"], slips["near"], strict=True)) == [("b", "c"), ("a", "b")]


def _write_video(root, video, images):
    from PIL import Image
    index = []
    for i, img in enumerate(images):
        rel = f"labeled-data/{video}/img{i:03d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / rel)
        index.append(rel)
    return index


def test_label_repeatability_measures_the_scatter_of_labels_on_unchanged_frames(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    sigma, shift, n = 1.5, 15, 30
    # video v: n copies of a frame and n of the frame moved right by 15 px; keypoint a moves
    # with it and its labels scatter by sigma; b is labeled in one frame only
    index = _write_video(tmp_path, "v", [img] * n + [np.roll(img, shift, axis=1)] * n)
    index += _write_video(tmp_path, "w", [img] * 3)  # a second video: no pairs across videos
    kp = np.full((2 * n + 3, 2, 2), np.nan)
    kp[:, 0] = 24 + rng.normal(0, sigma, (2 * n + 3, 2))
    kp[n:2 * n, 0, 0] += shift
    kp[3, 1] = [30, 30]
    frames = LabeledFrames(tmp_path, index, kp, ["a", "b"])
    same = [np.linalg.norm(kp[i, 0] - kp[j, 0]) for lo, hi in ((0, n), (n, 2 * n), (2 * n, 2 * n + 3))
            for i in range(lo, hi) for j in range(i + 1, hi)]
    table = label_repeatability(frames, half=8, closest=len(same)).set_index("keypoint")
    a = table.loc["a"]
    assert a["pairs"] == 2 * n * (2 * n - 1) // 2 + 3 and a["used"] == len(same)
    assert a["image_diff"] == 0  # only pairs of the same frame were kept, not moved ones
    assert np.isclose(a["pair_px"], np.median(same))
    assert np.isclose(a["floor_px"], a["pair_px"] * FLOOR_PER_PAIR)
    assert np.isclose(a["mean_floor_px"], np.mean(same) / np.sqrt(2))
    assert a["frames"] == 2 * n + 3
    # a tracker finding the true place scores sigma sqrt(pi / 2) against Gaussian labels
    assert abs(a["floor_px"] - sigma * np.sqrt(np.pi / 2)) < 0.15 * sigma
    assert 8 < a["moving_px"] < 20  # more than half the pairs straddle the 15-px move
    b = table.loc["b"]
    assert b["pairs"] == 0 and np.isnan(b["floor_px"])
    # fewer kept pairs: the moved frames' pairs never come before the unchanged ones; one
    # more, and the largest difference kept is that moved pair's
    fewest = label_repeatability(frames, half=8, closest=5)
    assert fewest.loc[0, "image_diff"] == 0 and fewest.loc[0, "frames"] <= 10
    assert fewest.attrs["settings"] == {"half": 8, "closest": 5}
    assert label_repeatability(frames, half=8, closest=len(same) + 1).loc[0, "image_diff"] > 5


def test_the_floor_of_a_median_pair_distance_is_a_gaussian_scatter_s_mean_error():
    rng = np.random.default_rng(0)
    first, second = rng.normal(0, 2.0, (2, 200_000, 2))  # two labels of each of many places
    pair = np.median(np.linalg.norm(first - second, axis=-1))
    assert np.isclose(pair * FLOOR_PER_PAIR, np.linalg.norm(first, axis=-1).mean(), rtol=0.01)


def test_label_repeatability_compares_the_frames_around_each_label(tmp_path):
    def frame(*xs):
        img = np.full((64, 64), 100, np.uint8)
        for x in xs:
            img[30:35, x - 2:x + 3] = 255
        return img

    # a spot at x = 10 in the first frame, at 54 in the second, and each label on a spot:
    # the frames are the same midway between the two labels (moved), the same around the
    # first label but not the second (a spot appeared), or the reverse
    for name, frames in (("moved", [frame(10), frame(54)]), ("appeared", [frame(10), frame(10, 54)]),
                         ("vanished", [frame(10, 54), frame(54)])):
        index = _write_video(tmp_path / name, "v", frames)
        labels = LabeledFrames(tmp_path / name, index, np.array([[[10.0, 32.0]], [[54.0, 32.0]]]),
                               ["spot"])
        row = label_repeatability(labels, half=8).iloc[0]
        assert row["pairs"] == 1 and row["frames"] == 2 and row["pair_px"] == 44, name
        assert row["image_diff"] > 5, name  # the pair is not taken for an unchanged one


def test_label_repeatability_squares_their_edges_sizes_and_frames(tmp_path):
    base = np.full((64, 64), 100, np.uint8)
    # the square around x = 32 with half 8 is columns 24-40: a change in column 40 counts,
    # one in column 41 does not
    for column, seen in ((40, True), (41, False), (23, False), (24, True)):
        changed = base.copy()
        changed[:, column] = 255
        folder = tmp_path / f"column{column}"
        index = _write_video(folder, "v", [base, changed])
        labels = LabeledFrames(folder, index, np.full((2, 1, 2), 32.0), ["p"])
        assert (label_repeatability(labels, half=8).loc[0, "image_diff"] > 0) == seen, column
    # frames of two sizes in one video pair only with their own size; a label far outside
    # the frame has no square and no pair
    index = _write_video(tmp_path / "sizes", "v", [base] * 3 + [base[:48]] * 2)
    kp = np.full((5, 1, 2), 20.0)
    labels = LabeledFrames(tmp_path / "sizes", index, kp, ["p"])
    assert label_repeatability(labels, half=8).loc[0, "pairs"] == 3 + 1
    kp[0] = [-100, 20]
    labels = LabeledFrames(tmp_path / "sizes", index, kp, ["p"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no mean of an empty square on the way
        assert label_repeatability(labels, half=8).loc[0, "pairs"] == 1 + 1
    with pytest.raises(ValueError, match="no frames"):
        label_repeatability(LabeledFrames(tmp_path, [], np.zeros((0, 1, 2)), ["p"]))


def test_label_repeatability_names_a_missing_frame_and_refuses_bad_settings(tmp_path):
    frames = _frames(tmp_path, slip=False)  # labels only: the image files do not exist
    with pytest.raises(DataError, match="img000.png"):
        label_repeatability(frames)
    with pytest.raises(ValueError, match="half and closest"):
        label_repeatability(frames, half=0)
