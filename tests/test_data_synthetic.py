"""The generated frames: deterministic, keypoints on the drawn features, states in their boxes."""

import numpy as np
import pandas as pd
import pytest

from vit_facemap import synthetic
from vit_facemap.errors import RunExistsError
from vit_facemap.synthetic import (
    G7C1_KEYPOINTS,
    SCHROEDER_KEYPOINTS,
    generate_frames,
    write_state_set,
    write_synthetic_set,
)
from vit_facemap.validate import load_set, validate_set


def test_same_seed_same_frames_other_seed_other_frames():
    a = generate_frames(6, seed=3)
    b = generate_frames(6, seed=3)
    c = generate_frames(6, seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.frames.keypoints, b.frames.keypoints)
    assert not np.array_equal(a.images, c.images)


@pytest.mark.parametrize("size", [(160, 120), (97, 211)])
@pytest.mark.parametrize("layout,names", [("g7c1", G7C1_KEYPOINTS), ("schroeder", SCHROEDER_KEYPOINTS)])
def test_shapes_names_and_videos(size, layout, names):
    d = generate_frames(9, seed=0, size=size, layout=layout, n_videos=3)
    w, h = size
    assert d.images.shape == (9, h, w) and d.images.dtype == np.uint8
    assert d.frames.bodyparts == list(names)
    assert sorted(set(d.frames.videos)) == [f"synthetic_video{v:02d}" for v in range(3)]
    kp = d.frames.keypoints
    seen = ~np.isnan(kp[..., 0])
    assert seen.mean() > 0.8
    assert (kp[seen][:, 0] >= 0).all() and (kp[seen][:, 0] <= w - 1).all()
    assert (kp[seen][:, 1] >= 0).all() and (kp[seen][:, 1] <= h - 1).all()


def test_colour_frames():
    d = generate_frames(2, seed=0, color=True)
    assert d.images.shape == (2, 120, 160, 3)
    assert d.images[..., 0].mean() > d.images[..., 2].mean()  # brownish fur


def _window(img, xy, r=2):
    x, y = np.round(xy).astype(int)
    return img[max(0, y - r): y + r + 1, max(0, x - r): x + r + 1].astype(float)


def test_keypoints_land_on_the_drawn_features():
    d = generate_frames(12, seed=1, size=(320, 240), n_videos=3)
    names = d.frames.bodyparts
    for img, kp in zip(d.images, d.frames.keypoints, strict=True):
        pts = dict(zip(names, kp, strict=True))
        eye_centre = np.mean([pts[k] for k in ("eye top", "eye front", "eye bottom", "eye back")], 0)
        fur = np.median(_window(img, (pts["whisker 1"] + pts["eye bottom"]) / 2, 6))
        # the eye is dark against the fur around it; lids' corners sit on its dark rim
        assert _window(img, eye_centre, 1).mean() < 0.6 * fur
        for k in ("eye front", "eye back"):
            assert _window(img, pts[k], 1).min() < 0.75 * fur
        # nose tip, mouth and lip lie on the head's outline: fur on one side, background on the other
        for k in ("nose tip", "mouth", "lip"):
            win = _window(img, pts[k], 6)
            assert win.max() - win.min() > 0.3 * fur, k


def test_pupil_points_ring_the_dark_pupil():
    d = generate_frames(8, seed=2, size=(720, 540), layout="schroeder", n_videos=2)
    for img, kp in zip(d.images, d.frames.keypoints, strict=True):
        pupil = kp[1:5]
        if np.isnan(pupil).any():
            continue
        centre = pupil.mean(0)
        radius = np.linalg.norm(pupil - centre, axis=1).mean()
        assert radius > 3
        inside = _window(img, centre + np.array([radius * 0.4, radius * 0.4]), 1).mean()
        iris = _window(img, centre + np.array([radius * 1.3, 0]), 1).mean()
        assert inside < iris


# (a, b, axis): in every frame keypoint a lies left of (axis 0) or above (axis 1) keypoint b,
# as the generator draws them: the nose pad's top, tip and bottom from above to below with the
# tip foremost, whisker 2 (upper) over 1 (middle) over 3 (lower), the mouth corner above and
# in front of the lip, the eye's front corner before its back, the pupil inside the lids
_ORDER = {
    "g7c1": [("nose top", "nose tip", 1), ("nose tip", "nose bottom", 1),
             ("nose tip", "nose top", 0), ("nose tip", "nose bottom", 0),
             ("whisker 2", "whisker 1", 1), ("whisker 1", "whisker 3", 1),
             ("nose bottom", "mouth", 1), ("whisker 3", "mouth", 1), ("mouth", "lip", 1),
             ("mouth", "lip", 0), ("nose top", "whisker 2", 0), ("whisker 1", "eye front", 0),
             ("eye front", "eye back", 0)],
    "schroeder": [("nose", "lefteyelid", 0), ("lefteyelid", "leftpupil", 0),
                  ("leftpupil", "rightpupil", 0), ("rightpupil", "righteyelid", 0),
                  ("dorsalpupil", "ventralpupil", 1)],
}


@pytest.mark.parametrize("layout", ["g7c1", "schroeder"])
def test_keypoints_are_in_their_places_order(layout):
    d = generate_frames(30, seed=11, layout=layout, n_videos=10)
    names, kp = d.frames.bodyparts, d.frames.keypoints
    for a, b, axis in _ORDER[layout]:
        ka, kb = kp[:, names.index(a), axis], kp[:, names.index(b), axis]
        seen = np.isfinite(ka) & np.isfinite(kb)
        assert seen.sum() >= 20, (a, b)
        assert (ka[seen] < kb[seen]).all(), f"{a} is not {'left of' if axis == 0 else 'above'} {b}"


@pytest.mark.parametrize("task,classes", [("pupil", ("constricted", "dilated")), ("eye", ("closed", "open"))])
def test_states_change_only_inside_their_box(task, classes):
    d = generate_frames(40, seed=5, task=task, n_videos=4, size=(160, 120))
    assert set(d.states) == set(classes)
    assert 10 <= (d.states == classes[0]).sum() <= 30
    boxes = d.state_boxes
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    dark_in, dark_out = {c: [] for c in classes}, {c: [] for c in classes}
    for img, state, box in zip(d.images, d.states, boxes, strict=True):
        inside = _inside(img.shape, box)
        dark = img < 40
        dark_in[state].append(dark[inside].mean())
        dark_out[state].append(dark[~inside].mean())
    # dilated pupils and open eyes show more dark pixels, but only inside the box
    assert np.mean(dark_in[classes[1]]) > np.mean(dark_in[classes[0]]) + 0.03
    assert abs(np.mean(dark_out[classes[1]]) - np.mean(dark_out[classes[0]])) < 0.03
    # one frame drawn in either state from the same random stream differs only by its state:
    # nearly all of that difference lies inside each state's box
    size = (160, 120)
    for v in range(2):
        look = synthetic._video_look(5, v, "g7c1")
        for f in range(4):
            imgs, frame_boxes = [], []
            for state in classes:
                r = np.random.default_rng([5, v, f])
                pose = synthetic._frame_pose(r, look, size[0], task, state)
                face = synthetic._face(look, pose, r)
                img, _, to_px = synthetic._render(face, look, pose, size, r, False)
                imgs.append(img.astype(float))
                frame_boxes.append(synthetic._state_box(face, task, to_px, size))
            diff = np.abs(imgs[1] - imgs[0])
            assert diff.sum() > 0
            for state, box in zip(classes, frame_boxes, strict=True):
                outside = diff[~_inside(diff.shape, box)].sum() / diff.sum()
                assert outside < 0.01, (state, v, f, outside)


def _inside(shape, box):
    x0, y0, x1, y1 = box
    inside = np.zeros(shape, bool)
    inside[int(y0): int(np.ceil(y1)) + 1, int(x0): int(np.ceil(x1)) + 1] = True
    return inside


@pytest.mark.parametrize("n,n_videos", [(8, 4), (11, 3), (2, 1), (5, 5)])
def test_states_are_balanced_within_each_video(n, n_videos):
    d = generate_frames(n, seed=42, n_videos=n_videos, task="pupil", size=(64, 48))
    for video in np.unique(d.frames.videos):
        states = d.states[d.frames.videos == video]
        counts = [(states == c).sum() for c in ("constricted", "dilated")]
        assert abs(counts[0] - counts[1]) <= 1, (video, counts)
    counts = [(d.states == c).sum() for c in ("constricted", "dilated")]
    assert abs(counts[0] - counts[1]) <= 1
    again = generate_frames(n, seed=42, n_videos=n_videos, task="pupil", size=(64, 48))
    assert list(again.states) == list(d.states)


def test_write_synthetic_set_is_a_valid_deeplabcut_set(tmp_path):
    folder = write_synthetic_set(tmp_path / "syn", n_frames=10, n_videos=2, seed=0,
                                 layout="schroeder", p_missing=0.1)
    frames = load_set(folder, expected_bodyparts=SCHROEDER_KEYPOINTS)
    assert len(frames) == 10 and sorted(set(frames.videos)) == ["synthetic_video00", "synthetic_video01"]
    assert (folder / "CollectedData_synthetic.csv").is_file() and (folder / "synthetic.json").is_file()
    assert frames.missing.any()  # p_missing left empty cells, read back as NaN
    mem = generate_frames(10, seed=0, n_videos=2, layout="schroeder", p_missing=0.1)
    np.testing.assert_allclose(frames.keypoints, mem.frames.keypoints, atol=1e-6)
    assert validate_set(frames).ok
    with pytest.raises(RunExistsError):
        write_synthetic_set(folder, n_frames=10)


def test_write_state_set(tmp_path):
    folder = write_state_set(tmp_path / "states", n_frames=12, task="eye", n_videos=3, seed=1)
    groups = pd.read_csv(folder / "groups.csv")
    regions = pd.read_csv(folder / "regions.csv")
    assert list(groups.columns) == ["image", "group"] and len(groups) == 12
    assert set(regions["class"]) <= {"open", "closed"}
    assert groups["group"].nunique() == 3
    for image, cls in zip(regions["image"], regions["class"], strict=True):
        assert image.startswith(f"{cls}/") and (folder / image).is_file()
    eyes = pd.read_csv(folder / "eyes.csv")
    assert list(eyes.columns) == ["image", "x", "y", "width"] and (eyes["width"] > 5).all()
    boxes = regions[["x0", "y0", "x1", "y1"]].to_numpy()
    inside = ((eyes["x"] >= boxes[:, 0]) & (eyes["x"] <= boxes[:, 2])
              & (eyes["y"] >= boxes[:, 1]) & (eyes["y"] <= boxes[:, 3]))
    assert inside.all()  # the eye centre lies in the region of the eye task
    with pytest.raises(RunExistsError):
        write_state_set(folder, n_frames=4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown layout"):
        generate_frames(2, layout="rat")
    with pytest.raises(ValueError, match="unknown task"):
        generate_frames(2, task="mood")


def test_filled_shapes_are_centred_on_their_points():
    """A disc drawn about (30.3, 20.7) has its mass there (PIL's fill sat 0.5 px up-left)."""
    from vit_facemap.synthetic import _Canvas

    t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    disc = np.stack([30.3 + 7 * np.cos(t), 20.7 + 7 * np.sin(t)], 1)
    sl, m = _Canvas(64, 48, lambda q: q).mask(disc, soft=0)
    ys, xs = np.mgrid[sl]
    centre = np.array([(m * xs).sum(), (m * ys).sum()]) / m.sum()
    np.testing.assert_allclose(centre, [30.3, 20.7], atol=0.15)


def test_synthetic_command_never_writes_into_a_users_set(tmp_path, capsys):
    from vit_facemap.cli import main

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "CollectedData_me.csv").write_text("my labels")
    for extra in ([], ["--overwrite"]):
        assert main(["data", "synthetic", str(mine), "--frames", "2", *extra]) == 2
        assert "CollectedData_me.csv) that `data synthetic` did not write" in capsys.readouterr().err
    # a table of our name that we did not write (no synthetic.json) is not replaced either
    (mine / "CollectedData_me.csv").rename(mine / "CollectedData_synthetic.csv")
    assert main(["data", "synthetic", str(mine), "--frames", "2", "--overwrite"]) == 2
    assert "no synthetic.json" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["CollectedData_synthetic.csv"]
    # a generated set is replaced with --overwrite; bad settings leave no folder behind
    ours = tmp_path / "ours"
    assert main(["data", "synthetic", str(ours), "--frames", "2", "--size", "64x48"]) == 0
    assert main(["data", "synthetic", str(ours), "--frames", "3", "--size", "64x48",
                 "--overwrite"]) == 0
    assert main(["data", "synthetic", str(tmp_path / "new"), "--size", "0x0"]) == 2
    assert "at least 32x24" in capsys.readouterr().err and not (tmp_path / "new").exists()
    # a folder under a file: one line naming it, not a traceback
    assert main(["data", "synthetic", str(mine / "CollectedData_synthetic.csv" / "set"),
                 "--frames", "2", "--size", "64x48"]) == 2
    err = capsys.readouterr().err
    assert "Not a directory" in err and "CollectedData_synthetic.csv" in err
    assert len(err.strip().splitlines()) == 1


def test_synthetic_command_keeps_a_generated_set_of_the_other_kind_and_a_users_frames(
        tmp_path, capsys):
    from vit_facemap.cli import main

    # a keypoint set was written into a state set (its synthetic.json replaced) without
    # --overwrite: the state set was judged by groups.csv, the keypoint set by its table
    states = tmp_path / "states"
    assert main(["data", "synthetic", str(states), "--states", "pupil", "--frames", "2",
                 "--size", "64x48"]) == 0
    before = (states / "synthetic.json").read_bytes()
    assert main(["data", "synthetic", str(states), "--frames", "2", "--size", "64x48"]) == 2
    assert "synthetic.json: already exists" in capsys.readouterr().err
    assert (states / "synthetic.json").read_bytes() == before
    assert not (states / "CollectedData_synthetic.csv").exists()
    # frames of a DeepLabCut project not labeled yet, or of a class-folder set, got
    # generated frames (and a labels table for them) written among them
    for frame in ("labeled-data/mousevid/img0000.png", "open/m1_0001.jpg"):
        mine = tmp_path / frame.split("/")[0].replace("-", "_") / "set"
        (mine / frame).parent.mkdir(parents=True)
        (mine / frame).write_bytes(b"my frame")
        for extra in ([], ["--overwrite"], ["--states", "eye"]):
            assert main(["data", "synthetic", str(mine), "--frames", "2", "--size", "64x48",
                         *extra]) == 2
            assert f"holds frames ({frame}) that `data synthetic` did not write" in \
                capsys.readouterr().err
        assert sorted(p.relative_to(mine).as_posix() for p in mine.rglob("*")
                      if p.is_file()) == [frame]


def test_overwrite_replaces_the_generated_set_whole(tmp_path):
    from vit_facemap.states import read_image_set

    # frames of the set replaced stayed behind: a state set of other states (or seed) then
    # held images without a row in groups.csv and could not be read
    folder = tmp_path / "set"
    write_state_set(folder, n_frames=6, task="pupil", n_videos=2, size=(64, 48))
    (folder / "notes.txt").write_text("mine")
    write_state_set(folder, n_frames=4, task="eye", n_videos=1, size=(64, 48), overwrite=True)
    images = read_image_set(folder)
    assert images.classes == ["closed", "open"] and len(images.paths) == 4
    # a keypoint set of fewer videos in its place, then a state set in the keypoint set's
    write_synthetic_set(folder, n_frames=2, n_videos=1, size=(64, 48), overwrite=True)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) \
        == ["CollectedData_synthetic.csv", "labeled-data/synthetic_video00/img0000.png",
            "labeled-data/synthetic_video00/img0001.png", "notes.txt", "synthetic.json"]
    write_state_set(folder, n_frames=2, task="eye", n_videos=1, size=(64, 48), overwrite=True)
    assert not (folder / "labeled-data").exists()
    assert not (folder / "CollectedData_synthetic.csv").exists()
    assert (folder / "notes.txt").read_text() == "mine"


def test_a_generated_set_cut_short_is_replaced_with_overwrite(tmp_path, monkeypatch):
    # its frames, written before its synthetic.json, passed for a user's frames
    save_png = synthetic._save_png
    saved = []

    def save_one(img, path):
        if saved:
            raise KeyboardInterrupt
        saved.append(path)
        save_png(img, path)

    folder = tmp_path / "set"
    for write in (write_synthetic_set, write_state_set):
        saved.clear()
        with monkeypatch.context() as m:
            m.setattr(synthetic, "_save_png", save_one)
            with pytest.raises(KeyboardInterrupt):
                write(folder, 4, size=(64, 48), overwrite=True)
        assert len(saved) == 1 and saved[0].is_file()
        write(folder, 4, size=(64, 48), overwrite=True)
