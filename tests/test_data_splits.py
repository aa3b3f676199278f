"""Group-aware splits: by video or by animal, saved with the run and read back."""

import json

import numpy as np
import pytest

from vit_facemap.dlc import LabeledFrames
from vit_facemap.errors import DataError
from vit_facemap.splits import (
    animal_of,
    group_kfold,
    group_split,
    groups_for,
    later_frames_split,
    leave_one_group_out,
    load_split,
    save_split,
)
from vit_facemap.synthetic import generate_frames

SCHROEDER_SESSIONS = {
    "Bellinda_2022-07-25_1_Video0": "Bellinda",
    "Elias2022-09-06": "Elias",
    "Eos_2022-10-20_2_Video0": "Eos",
    "FG001_2022-05-31_1_Video3": "FG001",
    "FG002_2022-10-26_2_Video1": "FG002",
    "FG0032023-03-118": "FG003",
    "FG0032023-03-133": "FG003",
    "FG0032023-03-136": "FG003",
    "FG0032023-03-147": "FG003",
    "FG0042023-06-125": "FG004",
    "Giuseppina2023-01-243": "Giuseppina",
    "Giuseppina2023-02-223": "Giuseppina",
    "Glaucus2022-03-281": "Glaucus",
    "Glaucus2022-08-103": "Glaucus",
    "Glaucus2022-11-101": "Glaucus",
    "Io2023-02-152": "Io",
    "Janus2023-01-181": "Janus",
    "Morpheus2023-02-21": "Morpheus",
    "Oephelia2023-07-211": "Oephelia",
    "SS1092022-04-071": "SS109",
    "SS112_Reward_2022-08-23_2_Video1": "SS112",
    "SS1132022-12-141": "SS113",
    "eye3": "eye3",
}


def test_animal_of_all_schroeder_sessions():
    got = {s: animal_of(s) for s in SCHROEDER_SESSIONS}
    assert got == SCHROEDER_SESSIONS
    assert len(SCHROEDER_SESSIONS) == 23 and len(set(got.values())) == 17


@pytest.mark.parametrize("sessions, animal", [
    (["2022-03-28_M1", "2022-03-29_M1", "2022-03-29_M1_2", "cam2_2022-03-30_M1_Video0"], "M1"),
    (["M1_20220328", "M1_20220329", "M1-2022-03-28", "M1_2022_03_28"], "M1"),
    (["M1_28-03-2022", "M1_29-03-2022", "M1_29.03.2022_1"], "M1"),
    (["M1_day1", "M1_day2", "M1_session3", "M1_s4", "M1_Day5_2", "M1_run1"], "M1"),
])
def test_animal_of_dates_and_sessions_in_other_forms(sessions, animal):
    """One mouse recorded on several days is one animal, wherever and however the date is."""
    assert {s: animal_of(s) for s in sessions} == dict.fromkeys(sessions, animal)


def test_animal_of_names_without_a_date():
    assert animal_of("cam1_G7c1_1") == animal_of("cam1_G7c1_2") == "G7c1"
    assert animal_of("eye3") == "eye3"
    assert animal_of("synthetic_video01") == "synthetic_video01"


def test_groups_for_video_and_animal(tmp_path):
    d = generate_frames(6, n_videos=3, root=tmp_path)
    assert list(groups_for(d.frames, "video")) == list(d.frames.videos)
    assert list(groups_for(d.frames, "animal")) == list(d.frames.videos)  # no date: own animal
    (tmp_path / "animals.csv").write_text(
        "video,animal\nsynthetic_video00,m1\nsynthetic_video01,m1\nsynthetic_video02,m2\n")
    assert list(groups_for(d.frames, "animal")) == ["m1", "m1", "m2"] * 2
    assert list(groups_for(d.frames, "animal", animals={})) == list(d.frames.videos)
    (tmp_path / "animals.csv").write_text("session,mouse\na,b\n")
    with pytest.raises(DataError, match="animals.csv: needs columns"):
        groups_for(d.frames, "animal")
    with pytest.raises(ValueError, match="unknown grouping"):
        groups_for(d.frames, "frame")


def test_animals_csv_with_an_empty_cell_or_a_video_twice_is_refused(tmp_path):
    # an empty cell was the animal 'nan' (all such videos one mouse); a video listed twice
    # took its last animal
    d = generate_frames(6, n_videos=3, root=tmp_path)
    (tmp_path / "animals.csv").write_text(
        "video,animal\nsynthetic_video00,m1\nsynthetic_video01,\nsynthetic_video02,\n")
    with pytest.raises(DataError, match=r"animals.csv: empty video or animal cell \(line 3, "
                                        r"line 4\)"):
        groups_for(d.frames, "animal")
    (tmp_path / "animals.csv").write_text(
        "video,animal\nsynthetic_video00,m1\nsynthetic_video01,m2\nsynthetic_video00,m3\n")
    with pytest.raises(DataError, match="animals.csv: video 'synthetic_video00' is given two "
                                        "animals \\('m1' and 'm3'\\)"):
        groups_for(d.frames, "animal")
    (tmp_path / "animals.csv").write_text(  # the same pair twice is no conflict
        "video,animal\nsynthetic_video00,m1\nsynthetic_video00,m1\nsynthetic_video01,m1\n")
    assert list(groups_for(d.frames, "animal")) == ["m1", "m1", "synthetic_video02"] * 2


def test_animals_csv_cells_are_read_without_surrounding_spaces(tmp_path):
    # "v1, M1" was the animal " M1", another mouse than "M1"; "video, animal" had no column
    # 'animal'
    d = generate_frames(4, n_videos=2, root=tmp_path)
    (tmp_path / "animals.csv").write_text(
        "video, animal \nsynthetic_video00, m1\n synthetic_video01 ,m1 \n")
    assert list(groups_for(d.frames, "animal")) == ["m1"] * 4


def test_animals_csv_rows_left_empty_name_no_video(tmp_path):
    # a row emptied in a spreadsheet is exported as ",": it names no video, and was read
    # without a word before empty cells were refused; one empty cell of two still is
    d = generate_frames(6, n_videos=3, root=tmp_path)
    (tmp_path / "animals.csv").write_text(
        "video,animal\nsynthetic_video00,m1\n,\nsynthetic_video01,m1\n,\n")
    assert list(groups_for(d.frames, "animal")) == ["m1", "m1", "synthetic_video02"] * 2
    (tmp_path / "animals.csv").write_text("video,animal\n,\nsynthetic_video01,\n")
    with pytest.raises(DataError, match=r"empty video or animal cell \(line 3\)"):
        groups_for(d.frames, "animal")


def test_leave_animal_out_folds_keep_animals_apart():
    videos = np.repeat(list(SCHROEDER_SESSIONS), 3)
    animals = np.array([animal_of(v) for v in videos])
    folds = leave_one_group_out(animals)
    assert len(folds) == 17
    for train, held in folds:
        assert len(set(animals[held])) == 1 and set(animals[held]).isdisjoint(animals[train])
    k = group_kfold(animals, 5)
    assert len(k) == 5
    held_all = np.concatenate([h for _, h in k])
    assert sorted(held_all) == list(range(len(animals)))
    for train, held in k:
        assert set(animals[held]).isdisjoint(animals[train])


def test_split_saved_and_loaded_by_frame_name(tmp_path):
    d = generate_frames(12, n_videos=4)
    groups = groups_for(d.frames)
    train, val = group_split(groups, val_groups=1, seed=0)
    assert set(groups[train]).isdisjoint(groups[val])
    path = save_split(tmp_path / "run/split.json", d.frames.index, train, val, groups, seed=0)
    record = json.loads(path.read_text())
    assert len(record["val_groups"]) == 1
    t2, v2 = load_split(path, d.frames.index)
    np.testing.assert_array_equal(t2, train)
    np.testing.assert_array_equal(v2, val)
    # reordered labels table: same frames, new rows
    order = np.arange(12)[::-1]
    reordered = [d.frames.index[i] for i in order]
    t3, _ = load_split(path, reordered)
    assert sorted(reordered[i] for i in t3) == sorted(d.frames.index[i] for i in train)


def test_bad_split_files(tmp_path):
    index = ["labeled-data/a/1.png", "labeled-data/b/1.png"]
    with pytest.raises(DataError, match="split file is missing"):
        load_split(tmp_path / "none.json", index)
    (tmp_path / "bad.json").write_text("{\"train\": []}")
    with pytest.raises(DataError, match="bad.json: not a split file"):
        load_split(tmp_path / "bad.json", index)
    (tmp_path / "other.json").write_text(json.dumps({"train": ["labeled-data/c/1.png"], "val": []}))
    with pytest.raises(DataError, match="1 frame\\(s\\) of the split are not in this set"):
        load_split(tmp_path / "other.json", index)


def test_recommended_split_groups_by_animal_or_video(tmp_path):
    from vit_facemap.dlc import LabeledFrames
    from vit_facemap.splits import recommended_split, split_table

    sessions = list(SCHROEDER_SESSIONS)
    index = [f"labeled-data/{s}/img{i}.png" for s in sessions for i in range(2)]
    frames = LabeledFrames(tmp_path, index, np.zeros((len(index), 1, 2)), ["nose"])
    train, val, by = recommended_split(frames, seed=0)
    animals = groups_for(frames, "animal")
    assert by == "animal" and set(animals[train]).isdisjoint(animals[val])
    assert len(set(animals[val])) == round(0.2 * 17)
    table = split_table(frames, train, val)
    assert table["frames"].sum() == len(index) and set(table["split"]) == {"train", "validation"}
    two = generate_frames(4, n_videos=2)
    train, val, by = recommended_split(two.frames, seed=0)
    assert by == "video" and len(set(two.frames.videos[val])) == 1


def test_later_frames_split_holds_out_each_videos_last_stretch(tmp_path):
    numbers = {"a": [10, 900, 400, 1000, 5000, 5200, 4800, 7000, 9000, 9500],
               "b": [100, 200, 8000, 300]}
    index = [f"labeled-data/{v}/img{n:04d}.png" for v, ns in numbers.items() for n in ns]
    frames = LabeledFrames(tmp_path, index, np.zeros((len(index), 1, 2)), ["nose"])
    train, test = later_frames_split(frames, share=0.2, gap=300)
    names = lambda rows: sorted(index[i].split("/", 1)[1] for i in rows)  # noqa: E731
    # a: 9000 and 9500 are its last 20%; 7000 lies 2000 frames before them, outside the gap
    assert names(test) == ["a/img9000.png", "a/img9500.png", "b/img8000.png"]
    assert "a/img7000.png" in names(train) and len(train) == len(index) - 3
    train, test = later_frames_split(frames, share=0.2, gap=2500)
    assert "a/img7000.png" not in names(train) and "a/img7000.png" not in names(test)
    bad = LabeledFrames(tmp_path, ["labeled-data/a/first.png", "labeled-data/a/img2.png"],
                        np.zeros((2, 1, 2)), ["nose"])
    with pytest.raises(DataError, match="first.png: the image name holds no frame number"):
        later_frames_split(bad)
    one = LabeledFrames(tmp_path, ["labeled-data/a/img1.png"], np.zeros((1, 1, 2)), ["nose"])
    with pytest.raises(ValueError, match="too few"):
        later_frames_split(one)
    close = LabeledFrames(tmp_path, [f"labeled-data/a/img{n}.png" for n in (100, 200, 300)],
                          np.zeros((3, 1, 2)), ["nose"])
    with pytest.raises(ValueError, match="none is left for training"):
        later_frames_split(close, share=0.3, gap=300)


def test_recommended_split_rounds_the_validation_share_and_uses_its_seed(tmp_path):
    # 8 animals (no date in the names: each video is its own animal): 0.2 * 8 = 1.6 -> 2
    index = [f"labeled-data/M{a}/img{i}.png" for a in range(1, 9) for i in range(3)]
    frames = LabeledFrames(tmp_path, index, np.zeros((len(index), 1, 2)), ["nose"])
    from vit_facemap.splits import recommended_split

    train, val, by = recommended_split(frames, seed=0)
    assert by == "animal" and len(set(frames.videos[val])) == 2 and len(val) == 6
    assert len(train) + len(val) == len(index)
    again, _, _ = recommended_split(frames, seed=0)
    np.testing.assert_array_equal(again, train)
    held = {tuple(sorted(set(frames.videos[recommended_split(frames, seed=s)[1]])))
            for s in range(10)}
    assert len(held) > 1  # the seed chooses which animals are held out


def test_group_split_uses_its_seed_and_needs_two_groups():
    groups = np.repeat([f"v{i}" for i in range(10)], 2)
    sides = {tuple(group_split(groups, val_groups=2, seed=s)[1]) for s in range(10)}
    assert len(sides) > 1
    np.testing.assert_array_equal(group_split(groups, 2, seed=3)[1],
                                  group_split(groups, 2, seed=3)[1])
    with pytest.raises(ValueError, match="at least 2 groups"):
        group_split(["a", "a", "a"], val_groups=1)


def test_load_split_refuses_a_frame_on_both_sides(tmp_path):
    index = ["labeled-data/a/1.png", "labeled-data/b/1.png"]
    (tmp_path / "both.json").write_text(json.dumps({"train": index, "val": index[1:]}))
    with pytest.raises(DataError, match="1 frame\\(s\\) are in both train and val"):
        load_split(tmp_path / "both.json", index)


def test_later_frames_split_gap_and_held_out_count_at_their_edges(tmp_path):
    # 13 frames: 0.2 * 13 = 2.6 -> the last 3 are held out (1000, 1010, 1020)
    numbers = [100, 200, 300, 400, 500, 600, 650, 699, 700, 800, 1000, 1010, 1020]
    index = [f"labeled-data/a/img{n:04d}.png" for n in numbers]
    frames = LabeledFrames(tmp_path, index, np.zeros((len(index), 1, 2)), ["nose"])
    train, test = later_frames_split(frames, share=0.2, gap=300)
    assert [numbers[i] for i in test] == [1000, 1010, 1020]
    # 700 lies exactly 300 frames before the first test frame: within the gap, left out
    assert [numbers[i] for i in train] == [100, 200, 300, 400, 500, 600, 650, 699]


def test_frame_number_is_the_last_number_of_the_image_name(tmp_path):
    """A name holding another number before the frame's (a camera, a session) is numbered by
    its last: read by its first, every frame of cam2_img... was frame 2, and the later-frames
    split held out an arbitrary stretch."""
    from vit_facemap.splits import frame_numbers

    index = [f"labeled-data/v/cam2_img{n:04d}.png" for n in (900, 30, 500, 10, 700)]
    frames = LabeledFrames(tmp_path, index, np.zeros((5, 1, 2)), ["nose"])
    assert frame_numbers(frames).tolist() == [900, 30, 500, 10, 700]
    train, test = later_frames_split(frames, share=0.2, gap=250)
    assert [index[i] for i in test] == ["labeled-data/v/cam2_img0900.png"]
    assert train.tolist() == [1, 2, 3]  # 700 lies within the gap


def test_split_table_puts_each_video_on_its_side(tmp_path):
    from vit_facemap.splits import split_table

    index = [f"labeled-data/{v}/img{i}.png" for v, n in (("a", 3), ("b", 2), ("c", 1))
             for i in range(n)]
    frames = LabeledFrames(tmp_path, index, np.zeros((6, 1, 2)), ["nose"])
    table = split_table(frames, np.array([0, 1, 2, 5]), np.array([3, 4]))
    assert table.to_dict("list") == {"split": ["validation", "train", "train"],
                                     "animal": ["b", "a", "c"], "video": ["b", "a", "c"],
                                     "frames": [2, 3, 1]}
