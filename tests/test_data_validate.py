"""Validation at the door: every bad input is a real broken file, and the message names it."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vit_facemap.dlc import LabeledFrames, read_labels, write_labels
from vit_facemap.errors import DataError, DataWarning
from vit_facemap.validate import check_keypoint_names, load_set, validate_set

NAMES = ["eye top", "nose tip", "mouth"]


def make_set(root: Path, n: int = 4, size=(40, 30), mode="L", names=NAMES, fmt="png") -> LabeledFrames:
    """A tiny labeled set on disk: n frames in two videos, keypoints inside the image."""
    rng = np.random.default_rng(0)
    w, h = size
    index = [f"labeled-data/vid{i % 2}/img{i:03d}.{fmt}" for i in range(n)]
    for rel in index:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        shape = (h, w, 3) if mode == "RGB" else (h, w)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(p)
    kp = np.stack([rng.uniform(0, w - 1, (n, len(names))), rng.uniform(0, h - 1, (n, len(names)))], -1)
    frames = LabeledFrames(root, index, kp, names, scorer="tester")
    write_labels(frames, root / "CollectedData_tester.csv")
    return frames


def test_valid_set_loads_gray_and_rgb_any_size(tmp_path):
    for mode, size in [("L", (40, 30)), ("RGB", (17, 53))]:
        root = tmp_path / mode
        make_set(root, size=size, mode=mode)
        frames = load_set(root, expected_bodyparts=NAMES)
        report = validate_set(frames)
        assert report.ok and report.warnings == []
        assert set(report.image_sizes) == {size}
        assert set(report.image_modes) == {mode}


def test_any_number_of_keypoints_with_any_names(tmp_path):
    names = [f"part-{i} (é)" for i in range(17)]
    make_set(tmp_path, names=names)
    frames = load_set(tmp_path)
    assert frames.bodyparts == names and frames.keypoints.shape == (4, 17, 2)


def test_empty_cells_are_missing_not_zero(tmp_path):
    make_set(tmp_path)
    csv = tmp_path / "CollectedData_tester.csv"
    lines = csv.read_text().splitlines()
    cells = lines[3].split(",")
    cells[3] = cells[4] = ""  # first keypoint of the first frame not visible
    lines[3] = ",".join(cells)
    csv.write_text("\n".join(lines) + "\n")
    frames = load_set(tmp_path)
    assert np.isnan(frames.keypoints[0, 0]).all()
    assert frames.missing[0].tolist() == [True, False, False]
    assert not (frames.keypoints == 0).any()


def test_old_single_column_index(tmp_path):
    """Older DeepLabCut projects keep the relative path in one index column."""
    make_set(tmp_path)
    (tmp_path / "CollectedData_tester.csv").write_text(
        "scorer,tester,tester\n"
        "bodyparts,eye,eye\n"
        "coords,x,y\n"
        "labeled-data/vid0/img000.png,3.5,4.25\n"
        "labeled-data/vid1/img001.png,,\n"
    )
    with pytest.warns(DataWarning, match="1 frame"):  # the second frame has no label
        frames = load_set(tmp_path)
    assert frames.index == ["labeled-data/vid0/img000.png", "labeled-data/vid1/img001.png"]
    assert list(frames.videos) == ["vid0", "vid1"]
    np.testing.assert_array_equal(frames.keypoints[0, 0], [3.5, 4.25])
    assert frames.missing[:, 0].tolist() == [False, True]


def test_missing_image(tmp_path):
    make_set(tmp_path)
    gone = tmp_path / "labeled-data/vid1/img001.png"
    gone.unlink()
    with pytest.raises(DataError, match=r"img001.png: image file is missing"):
        load_set(tmp_path)


def test_truncated_png(tmp_path):
    make_set(tmp_path)
    bad = tmp_path / "labeled-data/vid0/img002.png"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"img002.png: cannot decode image"):
        load_set(tmp_path)
    # reading only the headers does not see it; decoding does
    assert validate_set(read_labels(tmp_path), decode=False).ok


def test_truncated_jpeg(tmp_path):
    make_set(tmp_path, fmt="jpg")
    bad = tmp_path / "labeled-data/vid1/img003.jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match=r"img003.jpg: cannot decode image"):
        load_set(tmp_path)


def test_not_an_image(tmp_path):
    make_set(tmp_path)
    (tmp_path / "labeled-data/vid0/img000.png").write_text("this is not a PNG")
    with pytest.raises(DataError, match=r"img000.png: cannot decode image"):
        load_set(tmp_path)


def test_header_not_deeplabcut(tmp_path):
    make_set(tmp_path)
    (tmp_path / "CollectedData_tester.csv").write_text(
        "image,eye_x,eye_y\nlabeled-data/vid0/img000.png,1,2\n"
    )
    with pytest.raises(DataError, match=r"CollectedData_tester.csv: not a DeepLabCut labels table"):
        load_set(tmp_path)


def test_wrong_coords_columns(tmp_path):
    make_set(tmp_path)
    (tmp_path / "CollectedData_tester.csv").write_text(
        "scorer,,,tester,tester\n"
        "bodyparts,,,eye,eye\n"
        "coords,,,x,z\n"
        "labeled-data,vid0,img000.png,1,2\n"
    )
    with pytest.raises(DataError, match=r"CollectedData_tester.csv: unknown coords \['z'\]"):
        load_set(tmp_path)


def test_keypoint_without_y_column(tmp_path):
    make_set(tmp_path)
    (tmp_path / "CollectedData_tester.csv").write_text(
        "scorer,,,tester,tester,tester\n"
        "bodyparts,,,eye,eye,nose\n"
        "coords,,,x,y,x\n"
        "labeled-data,vid0,img000.png,1,2,3\n"
    )
    with pytest.raises(DataError, match=r"keypoint 'nose' has no 'y' column"):
        load_set(tmp_path)


def test_non_numeric_coordinate(tmp_path):
    make_set(tmp_path)
    (tmp_path / "CollectedData_tester.csv").write_text(
        "scorer,,,tester,tester\n"
        "bodyparts,,,eye,eye\n"
        "coords,,,x,y\n"
        "labeled-data,vid0,img000.png,1,abc\n"
    )
    with pytest.raises(DataError, match=r"keypoint 'eye' column 'y' is not numeric"):
        load_set(tmp_path)


def test_wrong_number_of_index_columns(tmp_path):
    make_set(tmp_path)
    (tmp_path / "CollectedData_tester.csv").write_text(
        "scorer,,tester,tester\n"
        "bodyparts,,eye,eye\n"
        "coords,,x,y\n"
        "vid0,img000.png,1,2\n"
    )
    with pytest.raises(DataError, match=r"expected 1 or 3 index columns"):
        load_set(tmp_path)


def test_coordinates_outside_the_image(tmp_path):
    make_set(tmp_path, size=(40, 30))
    csv = tmp_path / "CollectedData_tester.csv"
    lines = csv.read_text().splitlines()
    cells = lines[4].split(",")
    cells[5] = "45.0"  # x of 'nose tip' in img001, past the 40-pixel width
    lines[4] = ",".join(cells)
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"1 keypoint\(s\) lie outside their image: "
                                        r"labeled-data/vid1/img001.png 'nose tip' at \(45.0"):
        load_set(tmp_path)


def test_duplicate_rows(tmp_path):
    make_set(tmp_path)
    csv = tmp_path / "CollectedData_tester.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines + [lines[3]]) + "\n")
    with pytest.raises(DataError, match=r"CollectedData_tester.csv: duplicate rows for 1 frame"):
        load_set(tmp_path)


def test_duplicate_rows_in_memory(tmp_path):
    f = make_set(tmp_path)
    g = LabeledFrames(tmp_path, f.index + f.index[:1], np.concatenate([f.keypoints, f.keypoints[:1]]),
                      f.bodyparts)
    report = validate_set(g, check_images=False)
    assert not report.ok and "duplicate rows" in str(report.errors[0])


def test_keypoint_names_differ_from_model(tmp_path):
    frames = make_set(tmp_path)
    check_keypoint_names(frames, NAMES, "runs/model")
    with pytest.raises(DataError, match=r"CollectedData_tester.csv: keypoint names differ from "
                                        r"those of runs/model: missing \['lip'\]; unexpected \['mouth'\]"):
        check_keypoint_names(frames, ["eye top", "nose tip", "lip"], "runs/model")
    with pytest.raises(DataError, match=r"different order"):
        check_keypoint_names(frames, NAMES[::-1], "runs/model")
    with pytest.raises(DataError, match=r"keypoint names differ"):
        load_set(tmp_path, expected_bodyparts=["a", "b", "c"])


def test_empty_set(tmp_path):
    make_set(tmp_path)
    (tmp_path / "CollectedData_tester.csv").write_text(
        "scorer,,,tester,tester\nbodyparts,,,eye,eye\ncoords,,,x,y\n"
    )
    with pytest.raises(DataError, match=r"CollectedData_tester.csv: the labels table has no frames"):
        load_set(tmp_path)
    empty = LabeledFrames(tmp_path, [], np.zeros((0, 1, 2)), ["eye"])
    report = validate_set(empty)
    assert "the set is empty" in str(report.errors[0])


def test_keypoint_missing_in_every_frame(tmp_path):
    make_set(tmp_path)
    csv = tmp_path / "CollectedData_tester.csv"
    lines = csv.read_text().splitlines()
    for r in range(3, len(lines)):
        cells = lines[r].split(",")
        cells[7] = cells[8] = ""  # 'mouth' never labeled
        lines[r] = ",".join(cells)
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"keypoint\(s\) \['mouth'\] are missing in all 4 frames"
                                         ".*nothing to learn"):
        load_set(tmp_path)
    # evaluating a run: the other keypoints are scored, this one is named
    with pytest.warns(DataWarning, match=r"\['mouth'\] are missing in all 4 frames: they are "
                                         "not scored"):
        load_set(tmp_path, expected_bodyparts=NAMES)


def test_no_folder_and_no_label_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_set(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"no CollectedData\*.csv"):
        load_set(tmp_path)


def test_zero_coordinates_warn(tmp_path):
    f = make_set(tmp_path)
    f.keypoints[1, 2] = 0.0
    report = validate_set(f)
    assert report.ok
    assert "exactly (0, 0)" in str(report.warnings[0]) and "'mouth'" in str(report.warnings[0])
    write_labels(f, tmp_path / "CollectedData_tester.csv", overwrite=True)
    # load_set raises for errors only; what does not stop a run reaches the user as a warning
    with pytest.warns(DataWarning, match=r"CollectedData_tester.csv: .*exactly \(0, 0\)"):
        load_set(tmp_path)


def test_several_problems_are_counted(tmp_path):
    make_set(tmp_path)
    (tmp_path / "labeled-data/vid0/img000.png").unlink()
    (tmp_path / "labeled-data/vid1/img001.png").unlink()
    with pytest.raises(DataError, match=r"img000.png: image file is missing \(and 1 more problem;"):
        load_set(tmp_path)


def test_ragged_csv_row(tmp_path):
    make_set(tmp_path)
    csv = tmp_path / "CollectedData_tester.csv"
    lines = csv.read_text().splitlines()
    lines[4] += ",12.5,7"  # two cells more than the header has columns
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"CollectedData_tester.csv: line 5 has 11 cells but the header has 9"):
        load_set(tmp_path)


def test_h5_with_wrong_key(tmp_path):
    frames = make_set(tmp_path)
    (tmp_path / "CollectedData_tester.csv").unlink()
    path = tmp_path / "CollectedData_tester.h5"
    frames.to_dataframe().to_hdf(path, key="predictions")
    frames.to_dataframe().to_hdf(path, key="other")
    with pytest.raises(DataError, match=r"CollectedData_tester.h5: no labels table .*"
                                        r"'df_with_missing' or 'keypoints', found keys "
                                        r"\['other', 'predictions'\]"):
        load_set(tmp_path)


@pytest.mark.parametrize("keys", [["keypoints"], ["predictions"], ["other", "keypoints"]])
def test_h5_labels_under_napari_or_single_key(tmp_path, keys):
    frames = make_set(tmp_path)
    (tmp_path / "CollectedData_tester.csv").unlink()
    for key in keys:  # napari-deeplabcut (DeepLabCut >= 2.3) saves labels under "keypoints"
        frames.to_dataframe().to_hdf(tmp_path / "CollectedData_tester.h5", key=key)
    back = load_set(tmp_path, expected_bodyparts=NAMES)
    np.testing.assert_array_equal(back.keypoints, frames.keypoints)


def test_h5_labels_load_and_validate(tmp_path):
    frames = make_set(tmp_path, mode="RGB")
    (tmp_path / "CollectedData_tester.csv").unlink()
    write_labels(frames, tmp_path / "CollectedData_tester.h5")
    back = load_set(tmp_path, expected_bodyparts=NAMES)
    np.testing.assert_array_equal(back.keypoints, frames.keypoints)


def test_labels_without_any_images(tmp_path):
    make_set(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "labeled-data")
    report = validate_set(read_labels(tmp_path))
    assert len(report.errors) == 1
    assert "none of the 4 images of the table exist" in str(report.errors[0])
    assert "which is missing" in str(report.errors[0])



@pytest.mark.parametrize("beside", [True, False])
def test_labels_whose_frames_are_elsewhere_in_the_folder_say_where(tmp_path, beside):
    # a DeepLabCut project's labeled-data/<video>/ folder copied out of its project (its
    # frames beside the table), or a set without its labeled-data/ level: the message said
    # only that <folder>/labeled-data was missing, with the frames in plain sight
    import shutil

    frames = make_set(tmp_path / "set")
    video = frames.videos[0]
    folder = tmp_path / "copy"
    shutil.copytree(tmp_path / "set" / "labeled-data" / video, folder / ("" if beside else video))
    table = write_labels(frames.subset(frames.videos == video), folder / "CollectedData_x.csv")
    report = validate_set(read_labels(table))
    name = Path(frames.index[0]).name
    found = folder / name if beside else folder / video / name
    assert [str(e) for e in report.errors] == [
        f"{table}: none of the 2 images of the table exist (expected under "
        f"{folder / 'labeled-data'}, which is missing; e.g. {frames.index[0]}); {name} is at "
        f"{found}: the table's paths are read from {folder}; give the DeepLabCut project "
        "folder these frames belong in, or put them where the paths say"]

def test_sixteen_bit_frames_keep_their_grey_levels(tmp_path):
    from vit_facemap.images import load_image

    ramp = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode.startswith("I")  # PIL keeps it 16-bit
    for mode in (None, "L"):
        gray = load_image(tmp_path / "deep.png", mode)
        assert gray.dtype == np.uint8 and gray.shape == (48, 64)
        np.testing.assert_array_equal(gray, np.round(ramp / 257.0).astype(np.uint8))
        assert len(np.unique(gray)) > 200  # PIL's own convert("L") leaves 2 levels
    assert load_image(tmp_path / "deep.png", "RGB").shape == (48, 64, 3)
    # 32-bit "I" (how older Pillow opens 16-bit PNGs): the same mapping, whatever the frame holds
    Image.fromarray(ramp.astype(np.int32)[:4, :4] // 1000).save(tmp_path / "deep.tif")
    with Image.open(tmp_path / "deep.tif") as im:
        assert im.mode == "I"
    np.testing.assert_array_equal(load_image(tmp_path / "deep.tif"),
                                  np.round(ramp[:4, :4] // 1000 / 257.0).astype(np.uint8))


def test_float_frames_are_scaled_by_the_range_they_are_stored_in(tmp_path):
    from vit_facemap.images import load_image

    # PIL's convert("L") rounded a 0..1 frame to 0 and 1: black, without a word
    ramp = np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(48, 64)
    expected = np.round(ramp * 255).astype(np.uint8)
    for name, stored in (("unit.tif", ramp), ("byte.tif", ramp * 255)):
        Image.fromarray(stored).save(tmp_path / name)
        for mode in (None, "L"):
            np.testing.assert_array_equal(load_image(tmp_path / name, mode), expected)
        assert load_image(tmp_path / name, "RGB").shape == (48, 64, 3)
    Image.fromarray(ramp * 2 - 1).save(tmp_path / "signed.tif")
    with pytest.raises(DataError, match=r"signed.tif: float frame holds values from -1 to 1"):
        load_image(tmp_path / "signed.tif")

def test_image_too_large_to_decode(tmp_path, monkeypatch):
    from vit_facemap.images import image_size, load_image

    Image.new("L", (80, 60)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 80 x 60 is over twice the limit
    for read in (load_image, image_size):
        with pytest.raises(DataError, match=r"big.png: image too large"):
            read(tmp_path / "big.png")


def test_table_error_names_the_file_once(tmp_path):
    make_set(tmp_path)
    (tmp_path / "CollectedData_tester.csv").write_text(
        "scorer,,tester,tester\nbodyparts,,eye,eye\ncoords,,x,y\nvid0,img000.png,1,2\n")
    with pytest.raises(DataError) as info:
        load_set(tmp_path)
    assert str(info.value).count("CollectedData_tester.csv") == 1
    assert "cannot parse" not in str(info.value)


@pytest.mark.parametrize("decode", [True, False])
def test_sixteen_bit_frames_with_twelve_bit_content_warn(tmp_path, decode):
    frames = make_set(tmp_path, size=(40, 30))
    twelve = (np.arange(30 * 40).reshape(30, 40) * 3).astype(np.uint16)  # max 3597 < 4096
    Image.fromarray(twelve).save(frames.image_paths[1])
    Image.fromarray(twelve * 16).save(frames.image_paths[2])  # the full 16-bit range: fine
    report = validate_set(read_labels(tmp_path), decode=decode)
    assert report.ok and len(report.warnings) == 1
    text = str(report.warnings[0])
    assert "1 16-bit frame(s) use only values below 4096" in text and frames.index[1] in text
    if decode:
        with pytest.warns(DataWarning, match=frames.index[1]):
            load_set(tmp_path)


@pytest.mark.parametrize("decode", [True, False])
def test_twelve_bit_check_decodes_each_frame_at_most_once(tmp_path, monkeypatch, decode):
    # without decoding (train, evaluate) only the first frame of each video is decoded for
    # the 12-bit check; decoding, the check uses the frame already decoded
    from PIL import ImageFile

    frames = make_set(tmp_path, n=6, size=(40, 30))  # 3 frames in each of 2 videos
    twelve = (np.arange(30 * 40).reshape(30, 40) * 3).astype(np.uint16)  # max 3597 < 4096
    for path in frames.image_paths:
        Image.fromarray(twelve).save(path)
    real, decoded = ImageFile.ImageFile.load, []

    def counted(self):
        if self.tile:  # pixels still to decode (a second load() of an image is a no-op)
            decoded.append(self.filename)
        return real(self)
    monkeypatch.setattr(ImageFile.ImageFile, "load", counted)
    report = validate_set(read_labels(tmp_path), decode=decode)
    assert len(decoded) == (6 if decode else 2)
    assert len(set(decoded)) == len(decoded)
    assert report.ok and len(report.warnings) == 1
    text = str(report.warnings[0])
    assert f"{6 if decode else 2} 16-bit frame(s) use only values below 4096" in text
    assert ("first frame of each video" in text) is not decode


def test_keypoints_are_matched_to_a_run_by_name(tmp_path):
    # a table with the run's keypoints in another order (or with one more) was refused
    make_set(tmp_path / "a")
    make_set(tmp_path / "b", names=NAMES[::-1])
    got = load_set(tmp_path / "b", expected_bodyparts=NAMES)
    assert got.bodyparts == NAMES
    np.testing.assert_array_equal(got.keypoints, read_labels(tmp_path / "b").keypoints[:, ::-1])
    make_set(tmp_path / "c", names=[*NAMES, "lip"])
    with pytest.warns(DataWarning, match=r"CollectedData_tester.csv: keypoint\(s\) \['lip'\] "
                                         r"are not among those of runs/m and are left out"):
        got = load_set(tmp_path / "c", expected_bodyparts=NAMES, expected_source="runs/m")
    assert got.bodyparts == NAMES
    np.testing.assert_array_equal(got.keypoints, read_labels(tmp_path / "c").keypoints[:, :3])
    with pytest.raises(DataError, match=r"missing \['lip'\]"):
        load_set(tmp_path / "a", expected_bodyparts=[*NAMES, "lip"])


def test_keypoints_outside_each_edge_by_more_than_a_pixel(tmp_path):
    """Each of the four edges is checked, one pixel past the last pixel centre is still in
    (a click on the border pixel), further is out; in a 40 x 30 image."""
    f = make_set(tmp_path, n=6, size=(40, 30))
    f.keypoints[:, :, :] = 10.0
    f.keypoints[0, 0] = [40.0, 29.0]  # the far corner, one pixel past the last centres: in
    f.keypoints[1, 0] = [-1.0, -1.0]  # one pixel before the first: in
    assert validate_set(f).ok
    f.keypoints[2, 0] = [-1.5, 5.0]
    f.keypoints[3, 0] = [5.0, -1.5]
    f.keypoints[4, 0] = [40.5, 5.0]
    f.keypoints[5, 0] = [5.0, 30.5]
    report = validate_set(f)
    assert len(report.errors) == 1
    message = str(report.errors[0])
    assert "4 keypoint(s) lie outside their image" in message
    for i in (2, 3, 4, 5):
        assert f"img{i:03d}.png 'eye top'" in message


def test_half_labels_infinite_values_and_zeros_in_memory(tmp_path):
    f = make_set(tmp_path, n=4)
    f.keypoints[0, 1, 0] = 0.0  # x at the left edge, y not 0: a real label, no warning
    report = validate_set(f, check_images=False)
    assert report.ok and not report.warnings
    f.keypoints[1, 1] = [np.nan, 5.0]
    report = validate_set(f, check_images=False)
    assert "keypoints with only one of x / y: labeled-data/vid1/img001.png 'nose tip'" in str(
        report.errors[0])
    f.keypoints[1, 1] = [np.inf, 5.0]
    report = validate_set(f, check_images=False)
    assert [str(e).split(": ", 1)[1] for e in report.errors] == [
        "coordinates hold infinite values"]


def test_frames_of_two_sizes_warn(tmp_path):
    f = make_set(tmp_path, n=4, size=(40, 30))
    Image.fromarray(np.zeros((36, 48), np.uint8)).save(tmp_path / f.index[3])
    report = validate_set(f)
    assert report.ok
    assert [str(w).split(": ", 1)[1] for w in report.warnings] == [
        "frames come in 2 sizes: 40x30, 48x36"]
