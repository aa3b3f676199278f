"""The side a face points to: the nose read on one side of the eye, and per video."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from vit_facemap.dlc import read_labels
from vit_facemap.evaluate import predict_frames
from vit_facemap.images import load_image
from vit_facemap.predict import facing_points, load_predictor, video_facing
from vit_facemap.refine import EYE_OUTLIER, RefineConfig, eye_boxes, nose_offsets
from vit_facemap.synthetic import LAYOUTS, write_synthetic_set
from vit_facemap.train import fit, profile_config


@pytest.fixture(scope="module")
def face_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("facing") / "set"
    write_synthetic_set(folder, n_frames=12, n_videos=2, seed=5, size=(96, 72), layout="schroeder")
    return folder


@pytest.fixture(scope="module")
def face_run(face_set, tmp_path_factory):
    cfg = profile_config("test")
    cfg.steps, cfg.num_threads = 2, 1
    cfg.refine = RefineConfig(share=0.0)
    cfg.augment = replace(cfg.augment, hflip=0.0)
    run = tmp_path_factory.mktemp("facing") / "run"
    fit(cfg, read_labels(face_set), run, None, device="cpu", progress=False)
    return run


def test_nose_and_eye_points_are_found_by_name():
    assert facing_points(LAYOUTS["schroeder"]) == ([0], list(range(1, 9)))
    g7c1 = LAYOUTS["g7c1"]
    assert facing_points(g7c1) == ([4, 5, 6], [0, 1, 2, 3])
    assert facing_points(["eye top", "whisker 1"]) is None  # no nose
    assert facing_points(["nose", "mouth"]) is None  # no eye


def test_a_video_faces_the_side_two_thirds_of_its_frames_show():
    sides = np.array([1, 1, -1, 0, 1, -1, -1, -1, -1, 1, 0, 0])
    videos = np.array(list("aaaabbccccdd"))
    # a: 2 of 3 showing a side; b: a tie; c: 3 of 4; d: none shows one
    assert video_facing(sides, videos).tolist() == [1] * 4 + [0] * 2 + [-1] * 4 + [0] * 2
    # a stricter share leaves a (2 of 3) undecided
    assert video_facing(sides, videos, share=0.75).tolist()[:4] == [0] * 4
    with pytest.raises(ValueError, match="sides for"):
        video_facing(sides[:3], videos)


def _two_peaks(predictor, n: int) -> torch.Tensor:
    """Heatmap logits with every eye point at the middle column and the nose at two places:
    a strong peak 4 cells left of the eye and a weaker one 4 cells right of it."""
    cfg = predictor.model.config
    h, w = cfg.input_h // predictor.model.stride, cfg.input_w // predictor.model.stride
    heat = torch.zeros(n, len(predictor.bodyparts), h, w)
    nose, eye = facing_points(predictor.bodyparts)
    mid = w // 2
    heat[:, eye, h // 2, mid] = 30.0
    heat[:, nose, h // 2, mid - 4] = 30.0
    heat[:, nose, h // 2, mid + 4] = 20.0
    return heat


def test_the_nose_is_read_on_the_side_a_frame_is_said_to_face(face_run, face_set):
    predictor = load_predictor(face_run, "cpu", scales=(1.0,), flip=False)
    assert predictor.can_face and not predictor.refiners
    predictor._forward = lambda xb: {"heatmap": _two_peaks(predictor, len(xb))}
    frames = np.stack([load_image(p) for p in read_labels(face_set).image_paths[:3]])
    free, conf = predictor.predict(frames)
    assert predictor.facing_of(free).tolist() == [-1, -1, -1]  # the stronger peak
    kp, conf2 = predictor.predict(frames, facing=np.array([1, 0, -1]))
    assert predictor.facing_of(kp).tolist() == [1, -1, -1]
    # only the first frame's nose moved, to the mirror image of its place about the eye
    nose = facing_points(predictor.bodyparts)[0]
    other = [i for i in range(len(predictor.bodyparts)) if i not in nose]
    np.testing.assert_allclose(kp[1:], free[1:])
    np.testing.assert_allclose(kp[0, other], free[0, other])
    eye_x = free[0, 1, 0]
    assert kp[0, 0, 0] - eye_x == pytest.approx(eye_x - free[0, 0, 0], rel=1e-3)
    assert 0 <= conf2[0, 0] <= 1
    # one side for all frames
    assert predictor.facing_of(predictor.predict(frames, facing=1)[0]).tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="-1, 0 or \\+1"):
        predictor.predict(frames, facing=2)
    # an eye at the map's right edge leaves no cell right of it: the nose stays as read
    def edge(xb):
        heat = _two_peaks(predictor, len(xb))
        eye = facing_points(predictor.bodyparts)[1]
        heat[:, eye] = 0.0
        heat[:, eye, heat.shape[2] // 2, -1] = 30.0
        return {"heatmap": heat}

    predictor._forward = edge
    np.testing.assert_allclose(predictor.predict(frames, facing=1)[0], predictor.predict(frames)[0])


def test_an_eye_point_put_far_off_leaves_the_eye_box():
    eye = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 6.0], [0.0, 6.0]])
    far = eye.copy()
    far[3] = [200.0, 300.0]  # one point on the cheek
    kp = np.stack([eye, far, np.full_like(eye, np.nan)])
    centre, size = eye_boxes(kp, range(4))
    np.testing.assert_allclose(centre[0], [5.0, 3.0])
    assert size[0] == pytest.approx(np.hypot(10.0, 6.0))
    # the three points left still span the 10 x 6 box
    np.testing.assert_allclose(centre[1], [5.0, 3.0])
    assert size[1] == pytest.approx(np.hypot(10.0, 6.0))
    assert np.isnan(centre[2]).all() and np.isnan(size[2])
    # four points 1 from their median (0, 0), a fifth below: it stays within EYE_OUTLIER
    cross = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0], [0.0, 0.0]])
    for reach, kept in ((0.99, True), (1.01, False)):
        cross[4, 1] = reach * EYE_OUTLIER
        expected = np.hypot(2.0, 1.0 + cross[4, 1]) if kept else np.hypot(2.0, 2.0)
        assert eye_boxes(cross[None], range(5))[1][0] == pytest.approx(expected)


def test_nose_offsets_are_the_labels_range_in_eye_sizes():
    eye = np.array([[0.0, 0.0], [30.0, 0.0], [30.0, 40.0], [0.0, 40.0]])  # size 50
    frames = []
    for nose, shift in (([115.0, 20.0], 0.0), ([-85.0, 45.0], 7.0), ([np.nan, np.nan], 0.0)):
        frames.append(np.vstack([np.array(nose)[None] + shift, eye + shift]))
    frames.append(np.vstack([[[100.0, 20.0]], eye[:3], [[np.nan, np.nan]]]))  # an eye point missing
    kp = np.stack(frames)
    # from the middle (15, 20): 100 px right, level; 100 px left, 25 px down
    np.testing.assert_allclose(nose_offsets(kp, [0], [1, 2, 3, 4]), [[2.0, 2.0, 0.0, 0.5]])
    assert nose_offsets(kp[2:], [0], [1, 2, 3, 4]) is None  # never with the whole eye
    np.testing.assert_allclose(nose_offsets(kp, [0, 0], [1, 2, 3, 4]), [[2.0, 2.0, 0.0, 0.5]] * 2)


def test_a_first_stage_saves_where_its_labels_put_the_nose(face_run, face_set):
    saved = json.loads((face_run / "config.json").read_text())
    labels = read_labels(face_set)
    assert "masked_labels" not in saved  # trained on the labels as read
    np.testing.assert_allclose(saved["nose_offsets"],
                               nose_offsets(labels.keypoints, *facing_points(labels.bodyparts)))
    assert load_predictor(face_run, "cpu").nose_offsets is not None


def test_the_nose_is_read_where_the_labels_put_it_from_the_eye(face_run, face_set):
    predictor = load_predictor(face_run, "cpu", scales=(1.0,), flip=False)
    cfg = predictor.model.config
    h, w = cfg.input_h // predictor.model.stride, cfg.input_w // predictor.model.stride
    assert h >= 12 and w >= 16
    nose, eye = facing_points(predictor.bodyparts)
    mid, row = w // 2, h // 2

    def heat(sized: bool = True):
        def forward(xb):
            out = torch.zeros(len(xb), len(predictor.bodyparts), h, w)
            for k, i in enumerate(eye):  # a 2 x 2 cell eye (or all on one cell)
                dy, dx = ((-1, -1), (-1, 1), (1, 1), (1, -1))[k % 4] if sized else (0, 0)
                out[:, i, row + dy, mid + dx] = 30.0
            out[:, nose, h - 1, mid] = 30.0  # far below the eye: 5 or more cells
            out[:, nose, row, mid + 4] = 20.0  # level with it, 4 cells right
            return {"heatmap": out}
        return forward

    frames = np.stack([load_image(p) for p in read_labels(face_set).image_paths[:2]])
    predictor._forward = heat()
    predictor.nose_offsets = None
    anywhere = predictor.predict(frames)[0]
    # 1 to 1.5 eye sizes (2.8 cells) across, within 0.2 up or down, then NOSE_MARGIN more
    predictor.nose_offsets = np.array([[1.0, 1.5, -0.2, 0.2]])
    kp, conf = predictor.predict(frames)
    middle, size = eye_boxes(kp, eye)
    below = (anywhere[:, nose[0]] - middle) / size[:, None]
    level = (kp[:, nose[0]] - middle) / size[:, None]
    # the stronger peak, 5 cells below (1.77 eye sizes); the weaker, 4 cells right (1.41)
    np.testing.assert_allclose(below, [[0.0, 5 / 8**0.5]] * 2, atol=0.05)
    np.testing.assert_allclose(level, [[4 / 8**0.5, 0.0]] * 2, atol=0.05)
    other = [i for i in range(len(predictor.bodyparts)) if i not in nose]
    np.testing.assert_allclose(kp[:, other], anywhere[:, other])
    assert ((conf >= 0) & (conf <= 1)).all()
    # a side as well: the best cell left of the eye within the offsets (no peak there)
    left = predictor.predict(frames, facing=-1)[0]
    off = (left[:, nose[0]] - middle) / size[:, None]
    assert (off[:, 0] < 0).all() and (off[:, 0] >= -2.5 - 0.2).all()
    assert (np.abs(off[:, 1]) <= 1.2 + 0.2).all()  # 0.2: a cell's reach of the soft-argmax
    # an eye of no size gives no scale: the side alone counts, and here allows either peak
    predictor._forward = heat(sized=False)
    predictor.nose_offsets = None
    unscaled = predictor.predict(frames)[0]
    predictor.nose_offsets = np.array([[1.0, 1.5, -0.2, 0.2]])
    np.testing.assert_allclose(predictor.predict(frames)[0], unscaled)


def test_an_eye_point_put_far_off_does_not_turn_the_face(face_run):
    predictor = load_predictor(face_run, "cpu")
    nose, eye = facing_points(predictor.bodyparts)
    kp = np.zeros((1, len(predictor.bodyparts), 2))
    kp[0, eye] = [[0, 0], [10, 0], [10, 6], [0, 6], [2, 1], [8, 1], [8, 5], [2, 5]]
    kp[0, nose] = [40.0, 3.0]
    assert predictor.facing_of(kp).tolist() == [1]
    kp[0, eye[0]] = [400.0, 3.0]  # the box's middle would lie right of the nose
    assert predictor.facing_of(kp).tolist() == [1]


def test_a_run_without_a_nose_and_an_eye_refuses_a_side(face_run, face_set):
    predictor = load_predictor(face_run, "cpu", scales=(1.0,), flip=False)
    predictor._facing = None  # as for keypoint names without both
    frames = np.stack([load_image(p) for p in read_labels(face_set).image_paths[:2]])
    assert not predictor.can_face
    assert predictor.facing_of(predictor.predict(frames)[0]).tolist() == [0, 0]
    with pytest.raises(ValueError, match="named for a nose and an eye"):
        predictor.predict(frames, facing=1)
    predictor.predict(frames, facing=0)  # no side asked: nothing to refuse


class _Flipper:
    """A stand-in predictor whose nose (point 0) lies 10 px right of the eye (point 1) in
    every frame but the listed ones, where it lies left, unless a side is asked for."""

    def __init__(self, bodyparts, left: set[bytes]):
        self.bodyparts, self.scales, self.device = bodyparts, (1.0,), "cpu"
        self.left, self.calls = left, []
        self.can_face = True

    def facing_of(self, kp):
        return np.sign(kp[:, 0, 0] - kp[:, 1, 0]).astype(int)

    def predict(self, batch, facing=None):
        self.calls.append(len(batch))
        sides = np.array([-1 if f.tobytes() in self.left else 1 for f in batch])
        if facing is not None:
            sides = np.where(facing != 0, facing, sides)
        kp = np.full((len(batch), len(self.bodyparts), 2), 40.0)
        kp[:, 0, 0] += 10 * sides
        return kp, np.ones(kp.shape[:2])


def test_frames_against_their_video_are_predicted_again_on_its_side(face_set, tmp_path,
                                                                      monkeypatch):
    frames = read_labels(face_set)
    first = frames.videos == frames.videos[0]
    # one frame of the first video faces left; the second video is split evenly
    rows = [np.flatnonzero(first)[0], *np.flatnonzero(~first)[:3]]
    left = {load_image(frames.image_paths[i]).tobytes() for i in rows}
    stub = _Flipper(frames.bodyparts, left)
    kp, _, _, redone = predict_frames(stub, frames)
    assert redone == 1 and stub.calls[-1] == 1
    sides = stub.facing_of(kp)
    assert (sides[first] == 1).all()
    assert sorted(sides[~first].tolist()) == [-1] * 3 + [1] * 3  # no majority: left alone
    kp, _, _, redone = predict_frames(stub, frames, facing="frame")
    assert redone == 0 and stub.facing_of(kp)[rows[0]] == -1
    with pytest.raises(ValueError, match="facing must be one of"):
        predict_frames(stub, frames, facing="animal")

    # evaluate says what it did
    import vit_facemap.predict as predict_module
    from vit_facemap.cli import main

    monkeypatch.setattr(predict_module, "load_predictor", lambda *a, **k: stub)
    (tmp_path / "run").mkdir()
    for how in ("video", "frame"):
        out = tmp_path / f"{how}.json"
        assert main(["evaluate", str(tmp_path / "run"), "--data", str(face_set), "--json",
                     str(out), "--quiet", "--facing", how]) == 0
        m = json.loads(out.read_text())
        assert (m["facing"], m["facing_redone"]) == (how, 1 if how == "video" else 0)


class _FacingSpot:
    """A tracker stand-in with a nose and two eye points: the eye 3 px either side of the
    test video's spot and the nose 10 px right of it, except in the frames ``left``, where
    it lies left unless a side is asked for."""

    bodyparts = ["nose", "eye front", "eye back"]
    channels = 1
    frame_size = None
    can_face = True

    def __init__(self, left, fail_after=None):
        from vit_facemap.testvideo import spot_positions

        self.spots = spot_positions(N_VIDEO, SIZE)
        self.left, self.fail_after, self.calls = set(left), fail_after, 0

    def facing_of(self, kp):
        return np.sign(kp[:, 0, 0] - kp[:, 1:, 0].mean(1)).astype(int)

    def predict(self, frames, facing=None):
        if facing is None:
            self.calls += 1
            if self.fail_after is not None and self.calls > self.fail_after:
                raise KeyboardInterrupt
        xy = np.empty((len(frames), 3, 2))
        for i, f in enumerate(frames):
            ys, xs = np.nonzero(f > 200)
            spot = np.array([xs.mean(), ys.mean()])
            frame = int(np.argmin(np.linalg.norm(self.spots - spot, axis=1)))
            side = facing or (-1 if frame in self.left else 1)
            xy[i] = spot + np.array([[10 * side, 0], [-3, 0], [3, 0]])
        return xy, np.ones((len(frames), 3))


N_VIDEO, SIZE = 40, (96, 72)


@pytest.fixture(scope="module")
def spot_video(tmp_path_factory):
    from vit_facemap.testvideo import write_test_video

    return write_test_video(tmp_path_factory.mktemp("vid") / "face.avi", N_VIDEO, SIZE, fps=25)


def test_tracking_predicts_frames_against_the_video_so_far_again_on_its_side(spot_video,
                                                                               tmp_path):
    import pandas as pd

    from vit_facemap.errors import DataError
    from vit_facemap.track import TrackOptions, output_paths, track_video

    def sides(out):
        df = pd.read_csv(output_paths(spot_video, out)["csv"], header=[0, 1, 2], index_col=0)
        xy = df.to_numpy().reshape(len(df), 3, 3)[..., :2]
        return np.sign(xy[:, 0, 0] - xy[:, 1:, 0].mean(1)).astype(int)

    left = {3, 12, 13, 30}  # one or two of each batch of 8: always outvoted
    opts = {"batch_size": 8, "progress": False}
    s = track_video(_FacingSpot(left), spot_video, tmp_path / "a", TrackOptions(**opts))
    assert (s["facing"], s["facing_redone"]) == ("video", 4)
    assert (sides(tmp_path / "a") == 1).all()
    s = track_video(_FacingSpot(left), spot_video, tmp_path / "b",
                    TrackOptions(facing="frame", **opts))
    assert (s["facing"], s["facing_redone"]) == ("frame", 0)
    assert np.flatnonzero(sides(tmp_path / "b") == -1).tolist() == sorted(left)
    # interrupted after two batches and resumed: the votes of the stored frames count
    with pytest.raises(KeyboardInterrupt):
        track_video(_FacingSpot(left, fail_after=2), spot_video, tmp_path / "c",
                    TrackOptions(**opts))
    with pytest.raises(DataError, match=r"facing: 'video' then, 'frame' now.*--facing"):
        track_video(_FacingSpot(left), spot_video, tmp_path / "c",
                    TrackOptions(resume=True, facing="frame", **opts))
    s = track_video(_FacingSpot(left), spot_video, tmp_path / "c",
                    TrackOptions(resume=True, **opts))
    assert s["resumed_from"] == 16 and s["facing_redone"] == 1
    assert (sides(tmp_path / "c") == 1).all()
    with pytest.raises(DataError, match="facing must be one of"):
        TrackOptions(facing="animal")
