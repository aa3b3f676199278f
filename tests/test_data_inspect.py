"""`vit-facemap data inspect` and the summary behind it."""

import json

import numpy as np
import pytest

from vit_facemap.cli import main
from vit_facemap.dlc import LabeledFrames
from vit_facemap.inspect import format_summary, inspect_set, keypoint_spread
from vit_facemap.synthetic import write_synthetic_set


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory):
    return write_synthetic_set(tmp_path_factory.mktemp("syn") / "set", n_frames=12, n_videos=3,
                               seed=0, p_missing=0.1)


def test_keypoint_spread_by_hand(tmp_path):
    kp = np.array([
        [[0, 0], [10, 10]],
        [[2, 0], [np.nan, np.nan]],
        [[10, 4], [12, 10]],
        [[12, 4], [14, 10]],
    ], dtype=float)
    index = ["labeled-data/a/1.png", "labeled-data/a/2.png", "labeled-data/b/1.png", "labeled-data/b/2.png"]
    s = keypoint_spread(LabeledFrames(tmp_path, index, kp, ["p", "q"]))
    assert s.loc["p", "labeled"] == 4 and s.loc["q", "missing"] == 1
    assert s.loc["p", "mean_x"] == 6 and s.loc["q", "mean_x"] == 12
    assert s.loc["p", "sd_x"] == pytest.approx(np.std([0, 2, 10, 12], ddof=1))
    # within each video x moves by +-1 and y not at all: pooled SD = sqrt(4 / (4 - 2))
    assert s.loc["p", "sd_within_video"] == pytest.approx(np.sqrt(2))
    assert s.loc["q", "sd_y"] == 0


def test_spread_within_videos_of_one_frame_each_is_unknown(tmp_path):
    # it read 0.0 (the keypoint never moves) where no video had a second frame to tell
    kp = np.array([[[0, 0], [1, 1]], [[10, 5], [3, 3]], [[20, 0], [np.nan, np.nan]],
                   [[22, 0], [5, 5]]], dtype=float)
    index = ["labeled-data/a/1.png", "labeled-data/b/1.png", "labeled-data/c/1.png",
             "labeled-data/c/2.png"]
    s = keypoint_spread(LabeledFrames(tmp_path, index, kp, ["p", "q"]))
    assert s.loc["p", "sd_within_video"] == pytest.approx(np.sqrt(2))  # c: x 20, 22
    assert np.isnan(s.loc["q", "sd_within_video"])  # one labeled frame in each video


def test_inspect_json(synthetic_set, capsys):
    assert main(["data", "inspect", str(synthetic_set), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_frames"] == 12 and out["n_videos"] == 3
    assert len(out["keypoints"]) == 12 and out["keypoints"][0] == "eye top"
    assert set(out["missing"]) == set(out["keypoints"])
    assert sum(out["missing"].values()) > 0  # p_missing = 0.1
    assert out["image_sizes"] == {"160x120": 12}
    assert out["errors"] == []
    s = inspect_set(synthetic_set)
    assert s.missing == out["missing"]


def test_inspect_text(synthetic_set, capsys):
    assert main(["data", "inspect", str(synthetic_set)]) == 0
    text = capsys.readouterr().out
    assert "frames:     12" in text and "videos:     3" in text and "eye top" in text


def test_inspect_bad_folder_exits_with_message(tmp_path, capsys):
    assert main(["data", "inspect", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "missing: no such file or folder" in err and "Traceback" not in err


def test_inspect_lists_every_broken_image(tmp_path, capsys):
    folder = write_synthetic_set(tmp_path / "set", n_frames=4, n_videos=2, seed=0)
    for name in ("img0000.png", "img0001.png"):
        p = folder / "labeled-data/synthetic_video00" / name
        p.write_bytes(p.read_bytes()[:100])
    assert main(["data", "inspect", str(folder), "--json"]) == 2
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert len(out["errors"]) == 2 and all("cannot decode image" in e for e in out["errors"])
    assert "2 problems found" in captured.err and "Traceback" not in captured.err


def test_inspect_not_deeplabcut(tmp_path, capsys):
    (tmp_path / "CollectedData_x.csv").write_text("a,b\n1,2\n")
    assert main(["data", "inspect", str(tmp_path)]) == 2
    assert "not a DeepLabCut labels table" in capsys.readouterr().err


def test_synthetic_command(tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["data", "synthetic", str(out), "--frames", "4", "--size", "64x48",
                 "--layout", "schroeder"]) == 0
    assert inspect_set(out).n_frames == 4
    assert main(["data", "synthetic", str(out), "--frames", "4"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["data", "synthetic", str(tmp_path / "st"), "--frames", "6", "--states", "pupil"]) == 0
    assert (tmp_path / "st" / "groups.csv").is_file()
    capsys.readouterr()
    # a negative seed is refused by name; --color is not silently dropped from a state set
    for seed in ("-1", "x"):
        with pytest.raises(SystemExit) as exit_:
            main(["data", "synthetic", str(tmp_path / "neg"), "--seed", seed])
        assert exit_.value.code == 2
        assert f"argument --seed: must be an integer from 0 to 2147483647, got '{seed}'" in (
            capsys.readouterr().err)
    assert main(["data", "synthetic", str(tmp_path / "rgb"), "--frames", "2", "--states", "eye",
                 "--color"]) == 2
    assert "--color applies to keypoint sets only" in capsys.readouterr().err
    assert not (tmp_path / "neg").exists() and not (tmp_path / "rgb").exists()


def test_inspect_deeplabcut_project(synthetic_set, tmp_path, capsys, as_deeplabcut_project):
    """A DeepLabCut project (one table per video in labeled-data/<video>/) is inspected whole."""
    project = as_deeplabcut_project(synthetic_set, tmp_path / "project", ".csv")
    assert main(["data", "inspect", str(project), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_frames"] == 12 and out["n_videos"] == 3 and out["errors"] == []


def test_inspect_json_of_one_frame_is_valid_json(tmp_path, capsys):
    """One frame has no spread: NaN in the summary is written as null, not as bare NaN."""
    write_synthetic_set(tmp_path / "one", n_frames=1, n_videos=1, seed=0, size=(64, 48))
    assert main(["data", "inspect", str(tmp_path / "one"), "--json"]) == 0
    text = capsys.readouterr().out
    out = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert out["n_frames"] == 1
    assert out["spread"]["eye top"]["sd"] is None


def test_inspect_json_into_a_closed_pipe_stops_quietly(synthetic_set):
    """`data inspect --json | head -1`: the reader goes first; no traceback follows."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "vit_facemap.cli", "data", "inspect", "--json",
                          "--no-images", str(synthetic_set)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # before the command has written a byte (it takes a while to start)
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_jsonable_writes_nan_as_null_only_when_asked():
    # data inspect --json writes strict JSON (NaN is not JSON) through runinfo.jsonable
    import math

    import numpy as np

    from vit_facemap.runinfo import jsonable

    value = {"a": [np.float64("nan"), 1.5, np.int64(2)], 3: (math.inf, "x", None)}
    assert jsonable(value, nan_as_null=True) == {"a": [None, 1.5, 2], "3": [None, "x", None]}
    kept = jsonable(value)  # the default keeps them, as every run record was written
    assert math.isnan(kept["a"][0]) and kept["3"][0] == math.inf


def test_inspect_says_where_the_animals_come_from(tmp_path, capsys):
    # it said "from the session names" when animals.csv named the animals
    folder = write_synthetic_set(tmp_path / "set", n_frames=3, n_videos=3, seed=0,
                                 size=(64, 48))
    assert main(["data", "inspect", str(folder), "--no-images"]) == 0
    assert "animals:    3 (from the session names: synthetic_video00, " in capsys.readouterr().out
    (folder / "animals.csv").write_text("video,animal\nsynthetic_video00,M1\n"
                                        "synthetic_video01,M1\n")
    assert main(["data", "inspect", str(folder), "--no-images"]) == 0
    assert ("animals:    2 (from animals.csv and the session names: M1, synthetic_video02)"
            in capsys.readouterr().out)
    with (folder / "animals.csv").open("a") as fh:
        fh.write("synthetic_video02,M2\n")
    assert main(["data", "inspect", str(folder), "--no-images", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["animals_from"] == "animals.csv" and out["animals"] == {
        "M1": ["synthetic_video00", "synthetic_video01"], "M2": ["synthetic_video02"]}


def test_inspect_reports_the_label_floors(synthetic_set, capsys):
    """Per keypoint, the floors of labelcheck.label_repeatability on the set less its flagged
    labels (as the data and tracker pages compute them), in the JSON and the text."""
    from vit_facemap.dlc import read_labels
    from vit_facemap.labelcheck import label_repeatability, label_slips, mask_slips

    frames = read_labels(synthetic_set)
    expected = label_repeatability(mask_slips(frames, label_slips(frames))).set_index("keypoint")
    assert main(["data", "inspect", str(synthetic_set), "--json"]) == 0
    floors = json.loads(capsys.readouterr().out)["label_floors"]
    assert list(floors) == list(frames.bodyparts)
    for k, row in expected.iterrows():
        for col in ("floor_px", "mean_floor_px", "moving_px"):
            got = np.nan if floors[k][col] is None else floors[k][col]  # JSON: NaN as null
            assert got == pytest.approx(row[col], abs=5e-4, nan_ok=True), (k, col)
        assert floors[k]["pairs"] == row["pairs"] and floors[k]["used"] == row["used"]
    assert expected["floor_px"].notna().sum() >= 6  # most keypoints have unchanged pairs
    assert main(["data", "inspect", str(synthetic_set)]) == 0
    text = capsys.readouterr().out
    assert "mean floor" in text
    top = next(line for line in text.splitlines() if line.startswith("eye top "))
    assert top.split()[-2:] == [f"{expected.loc['eye top', c]:.1f}"
                                for c in ("floor_px", "mean_floor_px")]
    # skipped where asked, and where the pixels are not decoded
    for flag in ("--no-floors", "--headers-only", "--no-images"):
        assert main(["data", "inspect", str(synthetic_set), "--json", flag]) == 0
        assert json.loads(capsys.readouterr().out)["label_floors"] == {}, flag
        assert "mean floor" not in format_summary(inspect_set(synthetic_set, floors=False))


def test_inspect_leaves_out_the_floors_of_a_set_with_a_broken_image(tmp_path, capsys):
    folder = write_synthetic_set(tmp_path / "set", n_frames=4, n_videos=2, seed=0)
    p = folder / "labeled-data/synthetic_video00/img0000.png"
    p.write_bytes(p.read_bytes()[:100])
    assert main(["data", "inspect", str(folder), "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["label_floors"] == {} and "cannot decode image" in out["errors"][0]
