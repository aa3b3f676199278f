import re
from pathlib import Path

import numpy as np
import pytest

from vit_facemap.dlc import LabeledFrames, read_labels, write_labels
from vit_facemap.errors import DataError, RunExistsError


def _frames(tmp_path):
    kp = np.arange(3 * 2 * 2, dtype=float).reshape(3, 2, 2) + 0.125
    kp[1, 0] = np.nan
    index = [f"labeled-data/vid{v}/img{i:03d}.png" for v, i in [(0, 1), (0, 2), (1, 1)]]
    return LabeledFrames(tmp_path, index, kp, ["eye", "nose"], scorer="me")


@pytest.mark.parametrize("name", ["CollectedData_me.csv", "CollectedData_me.h5"])
@pytest.mark.parametrize("three", [True, False])
def test_round_trip_is_lossless(tmp_path, name, three):
    f = _frames(tmp_path)
    write_labels(f, tmp_path / name, three_level_index=three)
    g = read_labels(tmp_path)
    assert g.index == f.index
    assert g.bodyparts == f.bodyparts and g.scorer == "me"
    np.testing.assert_array_equal(g.keypoints, f.keypoints)
    assert list(g.videos) == ["vid0", "vid0", "vid1"]
    assert g.missing.tolist() == [[False, False], [True, False], [False, False]]


def test_write_refuses_to_overwrite(tmp_path):
    f = _frames(tmp_path)
    write_labels(f, tmp_path / "CollectedData_me.csv")
    with pytest.raises(RunExistsError, match="already exists"):
        write_labels(f, tmp_path / "CollectedData_me.csv")


def test_an_overwrite_cut_short_keeps_the_old_table(tmp_path, monkeypatch):
    # the CSV was written in place: a write cut short truncated the table it replaced
    import pandas as pd

    f = _frames(tmp_path)
    for name in ("CollectedData_me.csv", "CollectedData_me.h5"):
        path = write_labels(f, tmp_path / name)
        before = path.read_bytes()

        def cut_short(self, target, *args, **kwargs):
            Path(target).write_text("scorer,half a ro")
            raise KeyboardInterrupt

        with monkeypatch.context() as m:
            m.setattr(pd.DataFrame, "to_csv", cut_short)
            m.setattr(pd.DataFrame, "to_hdf", cut_short)
            with pytest.raises(KeyboardInterrupt):
                write_labels(f, path, overwrite=True)
        assert path.read_bytes() == before


def test_header_that_is_not_deeplabcut(tmp_path):
    bad = tmp_path / "CollectedData_x.csv"
    bad.write_text("frame,eye_x,eye_y\nlabeled-data/v/a.png,1,2\n")
    with pytest.raises(DataError, match=r"CollectedData_x.csv: not a DeepLabCut labels table"):
        read_labels(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_labels(tmp_path / "nope")


def test_table_that_is_not_utf8(tmp_path):
    f = _frames(tmp_path)
    path = write_labels(f, tmp_path / "CollectedData_me.csv")
    path.write_bytes(path.read_bytes().replace(b"nose", "n\u00f6se".encode("latin-1")))
    with pytest.raises(DataError, match=r"CollectedData_me.csv: not UTF-8 text"):
        read_labels(tmp_path)


def test_corrupt_hdf5_table(tmp_path):
    f = _frames(tmp_path)
    path = write_labels(f, tmp_path / "CollectedData_me.h5")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match=r"CollectedData_me.h5: cannot read .*corrupt"):
        read_labels(tmp_path)


HEADER = "scorer,,,me,me\nbodyparts,,,a,a\ncoords,,,x,y\n"


@pytest.mark.parametrize("three", [True, False])
def test_index_cells_are_read_as_written(tmp_path, three):
    videos = ["01", "NA", "null", "1"]
    rows = [f"labeled-data,{v},0{i}.png" if three else f"labeled-data/{v}/0{i}.png"
            for i, v in enumerate(videos)]
    header = HEADER if three else HEADER.replace(",,,", ",")
    cells = ["1,2", "NA,NA", ",", "nan,null"]  # value cells: missing as pandas reads them
    (tmp_path / "CollectedData_me.csv").write_text(
        header + "".join(f"{r},{c}\n" for r, c in zip(rows, cells, strict=True)))
    f = read_labels(tmp_path)
    assert list(f.videos) == videos
    assert f.index[0] == "labeled-data/01/00.png"
    assert f.missing[:, 0].tolist() == [False, True, True, True]


@pytest.mark.parametrize("name", ["CollectedData_me.csv", "CollectedData_me.h5"])
@pytest.mark.parametrize("three", [True, False])
def test_a_first_frame_without_any_label_is_kept(tmp_path, name, three):
    # pandas takes such a row, just below the CSV header, for a row of index names
    f = _frames(tmp_path)
    f.keypoints[0] = np.nan
    write_labels(f, tmp_path / name, three_level_index=three)
    g = read_labels(tmp_path / name)
    assert g.index == f.index
    np.testing.assert_array_equal(g.keypoints, f.keypoints)


def test_a_row_of_index_names_is_not_a_frame(tmp_path):
    (tmp_path / "CollectedData_me.csv").write_text(
        HEADER + "folder,video,image,,\nlabeled-data,v,img1.png,1,2\n")
    assert read_labels(tmp_path).index == ["labeled-data/v/img1.png"]


def test_empty_video_name_is_an_error(tmp_path):
    (tmp_path / "CollectedData_me.csv").write_text(HEADER + "labeled-data,,img1.png,1,2\n")
    with pytest.raises(DataError, match=r"CollectedData_me.csv: a row has an empty video"):
        read_labels(tmp_path)


@pytest.mark.parametrize("name", ["CollectedData_me.csv", "CollectedData_me.h5"])
@pytest.mark.parametrize("index", [
    ["v1/img001.png", "v1/img002.png"],                       # no labeled-data/ prefix
    ["v1/img001.png", "labeled-data/v1/img002.png"],          # mixed depths
    ["labeled-data/v1/sub/img001.png", "labeled-data/v1/img002.png"],
])
def test_any_index_reads_back_as_written(tmp_path, name, index):
    f = LabeledFrames(tmp_path, index, np.arange(4.0).reshape(2, 1, 2), ["a"], scorer="me")
    write_labels(f, tmp_path / name)
    g = read_labels(tmp_path / name)
    assert g.index == index
    np.testing.assert_array_equal(g.keypoints, f.keypoints)


def test_keypoint_named_twice(tmp_path):
    (tmp_path / "CollectedData_me.csv").write_text(
        "scorer,,,me,me,me,me\nbodyparts,,,a,a,a,a\ncoords,,,x,y,x,y\n"
        "labeled-data,v1,img001.png,1,2,3,4\n")
    with pytest.raises(DataError, match=r"CollectedData_me.csv: keypoint name 'a' used twice"):
        read_labels(tmp_path)


def test_keypoint_named_twice_in_hdf5(tmp_path):
    import pandas as pd

    cols = pd.MultiIndex.from_tuples([("me", "a", "x"), ("me", "a", "y")] * 2,
                                     names=["scorer", "bodyparts", "coords"])
    pd.DataFrame([[1.0, 2, 3, 4]], index=["labeled-data/v1/img001.png"], columns=cols).to_hdf(
        tmp_path / "CollectedData_me.h5", key="df_with_missing", format="table")
    with pytest.raises(DataError, match=r"CollectedData_me.h5: keypoint name 'a' used twice"):
        read_labels(tmp_path)


MULTI = "scorer,,,me,me,me,me\nindividuals,,,{},{},{},{}\nbodyparts,,,a,a,b,b\ncoords,,,x,y,x,y\n"


@pytest.mark.parametrize("suffix", ["csv", "h5"])
def test_multi_animal_table_of_one_individual(tmp_path, suffix):
    csv = tmp_path / "src.csv"
    csv.write_text(MULTI.format(*["m1"] * 4) + "labeled-data,v1,img001.png,1,2,,\n")
    path = csv
    if suffix == "h5":
        import pandas as pd

        path = tmp_path / "CollectedData_me.h5"
        pd.read_csv(csv, header=[0, 1, 2, 3], index_col=[0, 1, 2]).to_hdf(path, key="df_with_missing")
    f = read_labels(path)
    assert f.bodyparts == ["a", "b"] and f.index == ["labeled-data/v1/img001.png"]
    assert f.missing.tolist() == [[False, True]]


def test_multi_animal_table_is_refused(tmp_path):
    (tmp_path / "CollectedData_me.csv").write_text(
        MULTI.format("m1", "m1", "m2", "m2") + "labeled-data,v1,img001.png,1,2,3,4\n")
    with pytest.raises(DataError, match=r"CollectedData_me.csv: a multi-animal table "
                                        r"\(individuals \['m1', 'm2'\]\): multi-animal tables "
                                        "are not supported"):
        read_labels(tmp_path)


def _project(tmp_path, fmt=("csv", "h5"), scorer=("me", "me"), names=(["eye", "nose"],) * 2):
    """A DeepLabCut project: one table per video in labeled-data/<video>/, none at the top."""
    from PIL import Image

    root = tmp_path / "proj"
    for v, (suffix, who, bps) in enumerate(zip(fmt, scorer, names, strict=True)):
        index = [f"labeled-data/vid{v}/img{i:03d}.png" for i in range(2)]
        for rel in index:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.new("L", (8, 6)).save(root / rel)
        f = LabeledFrames(root, index, np.full((2, len(bps), 2), v + 1.0), bps, scorer=who)
        write_labels(f, root / f"labeled-data/vid{v}/CollectedData_{who}.{suffix}",
                     three_level_index=v == 0)
    (root / "labeled-data/unlabeled").mkdir()  # a video not labeled yet: no table
    (root / "config.yaml").write_text("scorer: me\n")
    return root


def test_deeplabcut_project_is_read_whole(tmp_path):
    root = _project(tmp_path)
    f = read_labels(root)
    assert f.root == root and f.bodyparts == ["eye", "nose"] and f.scorer == "me"
    assert f.index == [f"labeled-data/vid{v}/img{i:03d}.png" for v in (0, 1) for i in (0, 1)]
    assert all(p.is_file() for p in f.image_paths)
    assert f.keypoints[:, 0, 0].tolist() == [1, 1, 2, 2]
    # one video's table alone: its paths are relative to the project, two folders up
    one = read_labels(root / "labeled-data/vid1/CollectedData_me.h5")
    assert one.root == root and all(p.is_file() for p in one.image_paths)


def test_a_projects_labeled_data_folder_or_config_names_the_project_folder(tmp_path):
    # both were refused as if the set were broken ("is this a labeled set in DeepLabCut's
    # layout?", "labels must be a .csv or .h5 file") while its project folder reads whole
    root = _project(tmp_path)
    for given in (root / "labeled-data", root / "config.yaml"):
        with pytest.raises(DataError) as err:
            read_labels(given)
        said = str(err.value)
        above = " above it" if given.name == "labeled-data" else ""
        assert said.startswith(f"{given}: ") and "DeepLabCut project" in said
        assert said.endswith(f"pass the project folder{above} ({root})")
    assert len(read_labels(root)) == 4


def test_deeplabcut_project_tables_must_agree(tmp_path):
    with pytest.raises(DataError, match=r"vid1/CollectedData_me.csv: keypoints \['eye', 'lip'\] "
                                        r"differ from those of .*vid0/CollectedData_me.csv"):
        read_labels(_project(tmp_path / "a", fmt=("csv", "csv"),
                             names=(["eye", "nose"], ["eye", "lip"])))
    with pytest.raises(DataError, match=r"vid1/CollectedData_you.csv: scorer 'you' differs"):
        read_labels(_project(tmp_path / "b", fmt=("csv", "csv"), scorer=("me", "you")))


def test_deeplabcut_project_tables_name_the_keypoints_that_differ(tmp_path):
    # the message listed both tables' keypoints whole and left the difference to find
    for names, diff in [(["eye", "nose", "lip"], "unexpected ['lip']"), (["nose"], "missing ['eye']"),
                        (["eye", "lip"], "missing ['nose']; unexpected ['lip']")]:
        with pytest.raises(DataError, match=re.escape(f"CollectedData_me.csv ({diff}): every")):
            read_labels(_project(tmp_path / diff[:12], fmt=("csv", "csv"),
                                 names=(["eye", "nose"], names)))


def test_deeplabcut_project_tables_are_joined_by_keypoint_name(tmp_path):
    # tables with the same keypoints in another order were refused
    root = _project(tmp_path, fmt=("csv", "csv"), names=(["eye", "nose"], ["nose", "eye"]))
    table = root / "labeled-data/vid1/CollectedData_me.csv"
    one = read_labels(table)
    one.keypoints[:, 0] = 7.0  # nose
    write_labels(one, table, three_level_index=False, overwrite=True)
    f = read_labels(root)
    assert f.bodyparts == ["eye", "nose"]
    assert f.keypoints[2:, 0, 0].tolist() == [2, 2] and f.keypoints[2:, 1, 0].tolist() == [7, 7]


def test_set_files_are_its_frames_and_tables_wherever_data_points():
    from pathlib import Path

    from vit_facemap.dlc import is_set_file

    # --data as one video's folder of a project: its frames are still the set's
    assert is_set_file(Path("img001.png")) and is_set_file(Path("labeled-data/v1/x.JPG"))
    assert is_set_file(Path("CollectedData_me.csv")) and is_set_file(Path("v1/animals.csv"))
    assert not is_set_file(Path("eval.json")) and not is_set_file(Path("results/pred.csv"))


def test_a_label_with_one_coordinate_is_missing(tmp_path):
    # an x without its y (a cell deleted by hand) is no label: masked, never half used
    (tmp_path / "CollectedData_me.csv").write_text(HEADER + "labeled-data,v1,img001.png,1,\n"
                                                   "labeled-data,v1,img002.png,1,2\n")
    assert read_labels(tmp_path).missing[:, 0].tolist() == [True, False]


def test_a_short_row_is_an_error(tmp_path):
    # pandas fills a row that lacks cells with NaN: its labels would vanish unseen
    (tmp_path / "CollectedData_me.csv").write_text(HEADER + "labeled-data,v1,img001.png,1\n")
    with pytest.raises(DataError, match=r"CollectedData_me.csv: line 4 has 4 cells but the "
                                        "header has 5"):
        read_labels(tmp_path)



@pytest.mark.parametrize(("text", "message"), [
    # a trailing comma on each line: was "expected one scorer, found [..., 'Unnamed: 5_level_0']"
    ("".join(line + ",\n" for line in (HEADER + "labeled-data,v1,img001.png,1,2").splitlines()),
     r"the header's last column \(6\) is empty: a comma at the end of each line"),
    # a keypoint name left out: was "keypoint 'Unnamed: 4_level_1' has no 'y' column"
    (HEADER.replace("a,a", "a,") + "labeled-data,v1,img001.png,1,2\n",
     "header row 'bodyparts' has an empty cell in column 5"),
    # a scorer cell left out: was "expected 1 or 3 index columns ..., found 4"
    (HEADER.replace(",,,me,me", ",,,,me") + "labeled-data,v1,img001.png,1,2\n",
     "header row 'scorer' has an empty cell in column 4"),
    # a spreadsheet set to decimal commas: was "not a DeepLabCut labels table"
    ((HEADER + "labeled-data,v1,img001.png,1.5,2\n").replace(",", ";").replace("1.5", "1,5"),
     "cells are separated by semicolons, not commas"),
    # tab-separated with '.' decimals: was asked about decimal commas it did not have
    ((HEADER + "labeled-data,v1,img001.png,1.5,2\n").replace(",", "\t"),
     r"cells are separated by tabs, not commas \(a spreadsheet's text or TSV export\?\)"),
    ('scorer,me,me\nbodyparts,a,a\ncoords,x,y\nlabeled-data/v1/img001.png,"1,5",2\n',
     "keypoint 'a' column 'x' is not numeric: .*; a decimal comma"),
])
def test_a_malformed_header_or_cell_is_named(tmp_path, text, message):
    (tmp_path / "CollectedData_me.csv").write_text(text)
    with pytest.raises(DataError, match=rf"CollectedData_me.csv: {message}"):
        read_labels(tmp_path)

def test_duplicate_frames_are_an_error_when_read(tmp_path):
    (tmp_path / "CollectedData_me.csv").write_text(HEADER + "labeled-data,v1,img001.png,1,2\n"
                                                   "labeled-data,v1,img001.png,3,4\n")
    with pytest.raises(DataError, match=r"CollectedData_me.csv: duplicate rows for 1 frame"):
        read_labels(tmp_path)


def test_the_csv_table_is_preferred_to_the_h5(tmp_path):
    f = _frames(tmp_path)
    write_labels(f, tmp_path / "CollectedData_me.csv")
    f.keypoints += 1
    write_labels(f, tmp_path / "CollectedData_me.h5")
    assert read_labels(tmp_path).keypoints[0, 0, 0] == 0.125


def test_video_of_a_deeper_path_is_the_folder_under_labeled_data():
    from vit_facemap.dlc import video_of

    assert video_of("labeled-data/v1/sub/img001.png") == "v1"
    assert video_of("v2/img001.png") == "v2" and video_of("img001.png") == ""


@pytest.mark.parametrize("suffix", ["csv", "h5"])
def test_predictions_keep_frame_numbers_and_likelihood_and_are_never_overwritten(tmp_path,
                                                                                 suffix):
    from vit_facemap.dlc import predictions_dataframe, write_predictions

    xy = np.arange(12, dtype=float).reshape(2, 3, 2)
    lik = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    df = predictions_dataframe(xy, lik, ["a", "b", "c"])
    assert df.index.tolist() == [0, 1]  # frame numbers count from 0, as DeepLabCut's
    path = write_predictions(df, tmp_path / f"v.{suffix}")
    with pytest.raises(RunExistsError, match="already exists"):
        write_predictions(df.iloc[:1], path)
    back = read_labels(path)
    np.testing.assert_array_equal(back.keypoints, xy)
    np.testing.assert_array_equal(back.likelihood, lik)


@pytest.mark.parametrize("name", ["CollectedData_me.csv", "CollectedData_me.h5"])
def test_a_table_with_likelihood_round_trips(tmp_path, name):
    # evaluate writes its predictions as such a table
    f = _frames(tmp_path)
    f.likelihood = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    g = read_labels(write_labels(f, tmp_path / name))
    np.testing.assert_array_equal(g.keypoints, f.keypoints)
    np.testing.assert_array_equal(g.likelihood, f.likelihood)
