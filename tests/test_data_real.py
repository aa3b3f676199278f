"""The two real sets, when this machine has them (VIT_FACEMAP_DATA or /work/shared/data)."""

import os
from pathlib import Path

import numpy as np
import pytest

from vit_facemap.config import real_set
from vit_facemap.dlc import read_labels, write_labels
from vit_facemap.inspect import summarize
from vit_facemap.splits import groups_for
from vit_facemap.synthetic import G7C1_KEYPOINTS, SCHROEDER_KEYPOINTS
from vit_facemap.validate import load_set

ROOT = os.environ.get("VIT_FACEMAP_DATA") or "/work/shared/data"


def _set(name):
    folder = real_set(name, ROOT)
    if folder is None:
        pytest.skip(f"real set {name!r} not found under {ROOT} (set VIT_FACEMAP_DATA)")
    return folder


def test_g7c1_counts():
    frames = load_set(_set("g7c1"), expected_bodyparts=G7C1_KEYPOINTS, decode=False)
    s = summarize(frames, decode=False)
    assert (s.n_frames, s.n_videos, len(s.keypoints), s.n_frames_with_missing) == (210, 2, 12, 11)
    assert s.image_sizes == {"864x646": 210}
    assert s.n_animals == 1  # cam1_G7c1_1 and cam1_G7c1_2: one mouse
    assert s.errors == []


def test_schroeder_counts():
    frames = load_set(_set("schroeder"), expected_bodyparts=SCHROEDER_KEYPOINTS, decode=False)
    s = summarize(frames, decode=False)
    assert (s.n_frames, s.n_videos, s.n_animals, len(s.keypoints)) == (508, 23, 17, 9)
    assert s.image_sizes == {"720x540": 508}
    assert len(set(groups_for(frames, "animal"))) == 17


def test_g7c1_round_trip_is_lossless(tmp_path):
    folder = _set("g7c1")
    original = read_labels(folder)
    csv = write_labels(original, tmp_path / "CollectedData_copy.csv")
    # the same table as the source, cell for cell: header rows as text, numbers equal as
    # numbers (127.0820 is written 127.082), empty cells still empty
    src = [line.split(",") for line in Path(folder, "CollectedData.csv").read_text().splitlines()]
    out = [line.split(",") for line in csv.read_text().splitlines()]
    assert out[:3] == src[:3] and len(out) == len(src)
    for a, b in zip(out[3:], src[3:], strict=True):
        assert a[:3] == b[:3]
        assert [c == "" for c in a] == [c == "" for c in b]
        assert [float(c) for c in a[3:] if c] == [float(c) for c in b[3:] if c]
    for path in (csv, write_labels(original, tmp_path / "CollectedData_copy.h5")):
        back = read_labels(path)
        assert back.index == original.index and back.bodyparts == original.bodyparts
        assert back.scorer == original.scorer
        np.testing.assert_array_equal(back.keypoints, original.keypoints)  # NaN where missing
        assert back.missing.sum() == original.missing.sum() == 19


@pytest.mark.parametrize("name", ["g7c1", "schroeder"])
def test_real_splits_keep_every_video_and_animal_on_one_side_for_every_seed(name):
    from vit_facemap.splits import group_split, recommended_split

    frames = read_labels(_set(name))
    videos, animals = frames.videos, groups_for(frames, "animal")
    for seed in range(50):
        train, val, by = recommended_split(frames, seed=seed)
        assert by == ("video" if name == "g7c1" else "animal")
        assert len(train) + len(val) == len(frames) and not set(train) & set(val)
        for groups in (videos, animals) if by == "animal" else (videos,):
            assert not set(groups[train]) & set(groups[val]), (seed, by)
        if by == "animal":  # held-out animals, then validation from the training ones only
            rest, test = group_split(animals, 4, seed)
            inner = frames.subset(rest)
            _, inner_val, _ = recommended_split(inner, seed=seed)
            assert not set(inner.videos[inner_val]) & set(videos[test])
            assert not set(animals[rest]) & set(animals[test])


# the g7c1 frames whose flagged labels were drawn and judged by eye (DATA.md): all are labels
# out of order. A change of label_slips that flags other frames, or misses one of these,
# needs a new look at the frames and new numbers in DATA.md
G7C1_SLIPPED_FRAMES = {f"labeled-data/cam1_G7c1_{v}/img{n}.png" for v, n in (
    (1, "0068"), (1, "2997"), (1, "3575"), (1, "5379"), (1, "7197"), (1, "8629"),
    (2, "0539"), (2, "8482"), (2, "9325"))}


def test_label_slips_on_the_real_sets_are_those_documented():
    g7c1 = summarize(read_labels(_set("g7c1")), decode=False).label_slips
    assert len(g7c1) == 33 and {s["frame"] for s in g7c1} == G7C1_SLIPPED_FRAMES
    by_frame: dict[str, set[str]] = {}
    for s in g7c1:
        by_frame.setdefault(s["frame"], set()).add(s["keypoint"])
    swapped = "labeled-data/cam1_G7c1_2/img0539.png"  # nose and whisker labels exchanged
    assert by_frame.pop(swapped) == {"nose top", "nose tip", "nose bottom",
                                     "whisker 1", "whisker 2", "whisker 3"}
    # the other 8: a run ending with whisker 3 on the mouth and the mouth on the lip
    assert all({"whisker 3", "mouth"} <= kps for kps in by_frame.values())
    # schroeder: no slip, one stray click (the nose on the head plate, 368 px from its place)
    (stray,) = summarize(read_labels(_set("schroeder")), decode=False).label_slips
    assert (stray["frame"], stray["keypoint"], stray["near"]) == (
        "labeled-data/Glaucus2022-03-281/Glaucus2022-03-281_img14865.png", "nose", "")
    assert stray["offset_px"] > 300
