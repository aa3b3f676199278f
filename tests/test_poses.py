"""Each video's face size, turn and side from the labels (vit_facemap.poses)."""

import subprocess
import sys

import numpy as np
import pytest

from vit_facemap.augment import AugmentConfig
from vit_facemap.dlc import LabeledFrames
from vit_facemap.inspect import format_summary, summarize
from vit_facemap.poses import describe_poses, video_poses

# a face seen from the left: nose, eye corners, pupil, mouth, ear (no symmetry to hide a flip)
FACE = np.array([[100, 200], [260, 150], [320, 140], [290, 130], [150, 260], [420, 120]], float)
NAMES = [f"p{k}" for k in range(len(FACE))]  # no side words: the points are anatomical


def _turn(pose: np.ndarray, degrees: float = 0.0, scale: float = 1.0, mirror: bool = False
          ) -> np.ndarray:
    c = pose.mean(0)
    p = pose - c
    if mirror:
        p[:, 0] = -p[:, 0]
    t = np.radians(degrees)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return (p @ rot.T) * scale + c + 50


def _frames(videos: dict[str, np.ndarray], n: int = 4, seed: int = 0) -> LabeledFrames:
    rng = np.random.default_rng(seed)
    index, kps = [], []
    for name, pose in videos.items():
        for i in range(n):
            index.append(f"labeled-data/{name}/img{i:03d}.png")
            kps.append(pose + rng.normal(0, 1.0, pose.shape))
    return LabeledFrames(root="/nowhere", index=index, keypoints=np.stack(kps),
                         bodyparts=NAMES)


def _set() -> LabeledFrames:
    return _frames({"a1": _turn(FACE), "a2": _turn(FACE, 3), "a3": _turn(FACE, -3, 1.05),
                    "small": _turn(FACE, scale=0.6), "right": _turn(FACE, mirror=True),
                    "tilted": _turn(FACE, 30)})


def test_video_poses_finds_size_side_and_turn():
    p = video_poses(_set()).set_index("video")
    assert p["mirrored"].tolist() == [False, False, False, True, False, False]  # sorted names
    assert p.loc["right", "mirrored"]
    assert p.loc["small", "scale"] == pytest.approx(0.6, abs=0.03)
    assert p.loc["a1", "scale"] == pytest.approx(1.0, abs=0.03)
    # turns are from the videos' circular mean, which the tilted video pulls by about 5
    turn = p["rotation_deg"] - p.loc["a1", "rotation_deg"]
    assert abs(turn["tilted"]) == pytest.approx(30, abs=2)
    assert abs(turn["right"]) < 2 and abs(turn["small"]) < 2
    assert (p["n_keypoints"] == len(FACE)).all() and (p["n_frames"] == 4).all()
    assert p.loc["a1", "size_px"] == pytest.approx(
        np.sqrt(((FACE - FACE.mean(0)) ** 2).sum(1).mean()), rel=0.02)


def test_mirrored_names_the_minority_side():
    # the video with most frames faces the other way from most videos
    frames = _frames({"b": _turn(FACE), "c": _turn(FACE, 5), "d": _turn(FACE, -5)})
    big = _frames({"a": _turn(FACE, mirror=True)}, n=12)
    both = LabeledFrames(root="/nowhere", index=big.index + frames.index,
                         keypoints=np.concatenate([big.keypoints, frames.keypoints]),
                         bodyparts=frames.bodyparts)
    p = video_poses(both).set_index("video")
    assert p["mirrored"].to_dict() == {"a": True, "b": False, "c": False, "d": False}


def test_keypoints_missing_in_a_video_are_left_out_of_the_fit():
    frames = _set()
    frames.keypoints[frames.videos == "a2", 5] = np.nan
    p = video_poses(frames)
    assert (p["n_keypoints"] == len(FACE) - 1).all()
    assert p.set_index("video").loc["right", "mirrored"]
    # fewer than three keypoints shared by every video, or one video: nothing to fit
    frames.keypoints[frames.videos == "a1", :4] = np.nan
    assert video_poses(frames).empty
    assert video_poses(_frames({"only": FACE})).empty
    assert describe_poses(video_poses(frames), bodyparts=NAMES) == []


def test_describe_poses_warns_of_what_the_augmentation_does_not_bridge():
    p = video_poses(_set())
    narrow = AugmentConfig(scale=0.15, hflip=0)
    side, size, turn = describe_poses(p, narrow, bodyparts=NAMES)
    assert "1 of 6 videos show the face from the other side (right)" in side
    assert "augment.hflip" in side
    assert "smallest small" in size and "1.35 that scaling by 0.85-1.15" in size
    assert "tilted" in turn and "15 degrees" in turn and "a1" not in turn
    # flips and wide enough scale and rotation ranges leave nothing to say
    wide = AugmentConfig(hflip=0.5, flip_pairs="auto", scale=0.4, rotate=40)
    assert describe_poses(p, wide, bodyparts=NAMES) == []
    # a set filmed alike gives no warning
    alike = video_poses(_frames({"a": _turn(FACE), "b": _turn(FACE, 4, 1.05), "c": _turn(FACE, -4)}))
    assert not alike["mirrored"].any()
    assert describe_poses(alike, narrow, bodyparts=NAMES) == []
    # the default scales faces by 0.6-1.4: a spread of 1 to 0.6 (1.67) is bridged, 0.4 is
    # not; it flips where a training video faces the other way ("auto"), which the one
    # such video held out would not be: said so, beside the turn
    held, turned = describe_poses(p, bodyparts=NAMES)
    assert "other side (right)" in held and "only where one of them is among the training" in held
    assert "tilted" in turned
    # names that pair left / right flip whatever the videos: the turn alone is left
    (turned,) = describe_poses(p, bodyparts=["p0", "p1", "left eye", "right eye", "p4", "p5"])
    assert "tilted" in turned
    # a name of one side without a partner keeps "auto" from flipping at all
    side, _ = describe_poses(p, bodyparts=["p0", "p1", "p2", "left ear", "p4", "p5"])
    assert "other side (right)" in side and "learns each side from its own videos alone" in side
    tiny = video_poses(_frames({"a": _turn(FACE), "b": _turn(FACE, 2), "c": _turn(FACE, scale=0.4)}))
    assert any("face sizes differ by a factor of 2.5" in w or "factor of 2.4" in w for w in describe_poses(tiny, bodyparts=NAMES))


def test_inspect_reports_the_poses():
    s = summarize(_set(), check_images=False)
    assert [p["video"] for p in s.poses] == ["a1", "a2", "a3", "right", "small", "tilted"]
    # the default flips only where such a video is among the training videos
    assert any("other side (right)" in w and "among the training videos" in w for w in s.warnings)
    text = format_summary(s)
    assert "face per video (6 keypoints" in text
    table = text.split("face per video")[1].splitlines()
    line = next(ln for ln in table if ln.strip().startswith("right"))
    assert line.endswith("mirrored")
    assert s.to_dict()["poses"][4]["scale"] == pytest.approx(0.6, abs=0.03)


def test_a_face_seen_from_the_front_is_not_its_own_mirror_image():
    # both sides labeled: a mirror puts the left points where the right ones are
    front = np.array([[-50, 0], [50, 0], [0, 40], [0, 80], [-90, -60], [90, -60]], float) + 200
    frames = _frames({f"v{i}": _turn(front, d, s) for i, (d, s) in
                      enumerate([(0, 1), (5, 0.95), (-6, 1.05), (3, 1.0), (-2, 0.9)])}, seed=3)
    p = video_poses(frames)
    assert not p["mirrored"].any()
    # the same set with one video filmed through a mirror (names kept) is told apart
    frames.keypoints[frames.videos == "v3"] = _turn(front, 3, mirror=True)
    assert video_poses(frames).set_index("video")["mirrored"].to_dict() == {
        "v0": False, "v1": False, "v2": False, "v3": True, "v4": False}


def test_inspecting_a_set_does_not_load_torch():
    # the pose warnings read AugmentConfig's defaults; albumentations (and torch with it)
    # waits for a KeypointAugmenter
    code = ("import sys, vit_facemap.inspect, vit_facemap.poses; "
            "loaded = sorted({'torch', 'albumentations'} & set(sys.modules)); "
            "sys.exit(f'loaded {loaded}' if loaded else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("seed", range(4))
def test_keypoints_on_a_line_have_no_side(seed):
    # a line is its own mirror image across itself: which side a video showed, and its turn
    # (off by 90-180 degrees), were decided by one pixel of labelling noise
    line = np.array([[100, 200], [200, 200], [260, 200], [400, 200], [450, 200], [500, 200]], float)
    turns = [0, 5, -6, 3, -2, 10]
    frames = _frames({f"v{i}": _turn(line, d, s) for i, (d, s) in
                      enumerate(zip(turns, [1, 0.95, 1.05, 1, 0.9, 1], strict=True))}, seed=seed)
    p = video_poses(frames)
    assert not p["mirrored"].any()
    relative = (p["rotation_deg"] - p["rotation_deg"].iloc[0]).abs().to_numpy()
    np.testing.assert_allclose(relative, np.abs(turns), atol=1.5)
    assert p["scale"].tolist() == pytest.approx([1, 0.95, 1.05, 1, 0.9, 1], abs=0.01)
