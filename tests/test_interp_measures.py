"""Facial measures on hand-made keypoints (values worked out by hand)."""

import numpy as np
import pytest

from vit_facemap.measures import facial_measures

SCHROEDER = ["nose", "leftpupil", "dorsalpupil", "rightpupil", "ventralpupil",
             "lefteyelid", "dorsaleyelid", "righteyelid", "ventraleyelid"]
G7C1 = ["eye top", "eye front", "eye bottom", "eye back", "nose top", "nose tip",
        "nose bottom", "whisker 1", "whisker 2", "whisker 3", "mouth", "lip"]


def schroeder_frame():
    # pupil 6 wide, 4 tall around (100, 50); eyelids 20 wide, 8 tall
    return np.array([[0, 0], [97, 50], [100, 48], [103, 50], [100, 52],
                     [90, 50], [100, 46], [110, 50], [100, 54]], float)


def test_pupil_measures_by_hand():
    kp = np.stack([schroeder_frame(), schroeder_frame()])
    kp[1, 2] = np.nan  # dorsal pupil missing in frame 1
    m = facial_measures(kp, SCHROEDER)
    assert len(m) == 2
    assert m.loc[0, "pupil_horizontal"] == pytest.approx(6)
    assert m.loc[0, "pupil_vertical"] == pytest.approx(4)
    assert m.loc[0, "pupil_diameter"] == pytest.approx(5)
    assert m.loc[0, "eye_width"] == pytest.approx(20)
    assert m.loc[0, "eye_aperture"] == pytest.approx(8 / 20)
    assert m.loc[0, "pupil_eye_ratio"] == pytest.approx(5 / 20)
    assert (m.loc[0, "pupil_x"], m.loc[0, "pupil_y"]) == pytest.approx((100, 50))
    # a missing keypoint makes exactly the measures that need it NaN
    assert np.isnan(m.loc[1, "pupil_diameter"]) and np.isnan(m.loc[1, "pupil_eye_ratio"])
    assert m.loc[1, "eye_width"] == pytest.approx(20)
    assert m.loc[1, "pupil_horizontal"] == pytest.approx(6)


def test_an_eye_of_no_width_has_no_ratios():
    kp = schroeder_frame()[None].copy()
    kp[0, 7] = kp[0, 5]  # eye corners on one point
    with np.errstate(all="raise"):  # and no divide-by-zero warning either
        m = facial_measures(kp, SCHROEDER)
    assert m.loc[0, "eye_width"] == 0
    assert np.isnan(m.loc[0, "eye_aperture"]) and np.isnan(m.loc[0, "pupil_eye_ratio"])
    face = np.zeros((1, len(G7C1), 2))
    face[0, G7C1.index("nose tip")] = [5, 5]
    m = facial_measures(face, G7C1)
    assert np.isnan(m.loc[0, "eye_aperture"]) and np.isnan(m.loc[0, "nose_tip_distance"])


def test_only_measures_the_bodyparts_allow():
    kp = schroeder_frame()[None, 5:]  # eyelids only
    m = facial_measures(kp, SCHROEDER[5:])
    assert set(m.columns) == {"eye_width", "eye_aperture"}
    assert facial_measures(np.zeros((3, 1, 2)), ["nose"]).shape == (3, 0)


def test_face_positions_relative_to_eye():
    kp = np.full((1, 12, 2), np.nan)
    # eye centred at (10, 10), back (0,10) -> front (20,10): width 20, forward = +x
    kp[0, :4] = [[10, 5], [20, 10], [10, 15], [0, 10]]
    kp[0, 5] = [50, 30]  # nose tip: 40 ahead, 20 below -> (2, 1) eye widths
    m = facial_measures(kp, G7C1)
    assert m.loc[0, "eye_width"] == pytest.approx(20)
    assert m.loc[0, "eye_aperture"] == pytest.approx(10 / 20)
    assert m.loc[0, "nose_tip_forward"] == pytest.approx(2)
    assert m.loc[0, "nose_tip_down"] == pytest.approx(1)
    assert m.loc[0, "nose_tip_distance"] == pytest.approx(np.sqrt(5))
    assert np.isnan(m.loc[0, "mouth_forward"])
    # a mouse facing the other way: the eye axis flips, forward stays forward, down stays down
    flipped = kp.copy()
    flipped[..., 0] = 100 - flipped[..., 0]
    mf = facial_measures(flipped, G7C1)
    assert mf.loc[0, "nose_tip_forward"] == pytest.approx(2)
    assert mf.loc[0, "nose_tip_down"] == pytest.approx(1)


def test_shape_errors():
    with pytest.raises(ValueError, match="bodyparts"):
        facial_measures(np.zeros((2, 3, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        facial_measures(np.zeros((2, 3)), ["a", "b", "c"])


def test_measure_plots_name_their_units():
    """Eye width is a length in pixels; aperture and eye-relative positions are in eye
    widths: a panel must say which."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vit_facemap.measures import measure_unit
    from vit_facemap.traces import plot_measures

    kp = np.stack([np.arange(24, dtype=float).reshape(12, 2) * (1 + 0.1 * i) for i in range(3)])
    m = facial_measures(kp, G7C1)
    assert {c: measure_unit(c) for c in ("eye_width", "eye_aperture", "whisker_1_forward",
                                         "mouth_down", "pupil_diameter", "pupil_eye_ratio")} == {
        "eye_width": "px", "eye_aperture": "eye widths", "whisker_1_forward": "eye widths",
        "mouth_down": "eye widths", "pupil_diameter": "px", "pupil_eye_ratio": "eye widths"}
    schroeder = facial_measures(schroeder_frame(), SCHROEDER)
    assert all(measure_unit(c) for c in [*m.columns, *schroeder.columns])  # all have one
    cols = ["eye_aperture", "eye_width", "whisker_1_forward", "mouth_down"]
    fig = plot_measures(m, cols)
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "eye aperture\n(eye widths)", "eye width\n(px)", "whisker 1 forward\n(eye widths)",
        "mouth down\n(eye widths)"]
    assert fig.axes[-1].get_xlabel() == "frame"
    plt.close(fig)
    fig = plot_measures(m.assign(time_s=np.arange(len(m)) / 30), cols[:1], x="time_s")
    assert fig.axes[-1].get_xlabel() == "time (s)"  # was "time s"
    plt.close(fig)


def test_pupil_centre_is_the_mean_of_all_four_pupil_points():
    kp = schroeder_frame()[None].copy()
    kp[0, 1:5] = [[96, 50], [101, 47], [104, 50], [101, 55]]  # left, dorsal, right, ventral
    m = facial_measures(kp, SCHROEDER)
    assert (m.loc[0, "pupil_x"], m.loc[0, "pupil_y"]) == pytest.approx((100.5, 50.5))


def test_face_positions_per_frame_whatever_the_names_spelling():
    names = ["Eye-Top", "eye_front", "EYE BOTTOM", "eye-back", "Nose-Tip", "whisker 1"]
    # frame 0 faces right, eye centred at (30, 10), 20 wide; frame 1 is its mirror image
    right = np.array([[30, 5], [40, 10], [30, 15], [20, 10], [70, 30], [10, 0]], float)
    left = right.copy()
    left[:, 0] = 100 - left[:, 0]
    m = facial_measures(np.stack([right, left]), names)
    assert m["eye_x"].tolist() == pytest.approx([30, 70])
    assert m["eye_y"].tolist() == pytest.approx([10, 10])
    # nose tip 40 ahead and 20 below the eye; whisker 1 20 behind and 10 above it
    assert m["nose_tip_forward"].tolist() == pytest.approx([2, 2])
    assert m["nose_tip_down"].tolist() == pytest.approx([1, 1])
    assert m["whisker_1_forward"].tolist() == pytest.approx([-1, -1])
    assert m["whisker_1_down"].tolist() == pytest.approx([-0.5, -0.5])


def test_a_missing_eye_or_pupil_point_leaves_its_centre_missing():
    """Centres are the mean of all four points; with one missing they are NaN (nothing is
    filled in), not the mean of the other three, which lies off the centre and would also
    move every eye-relative position."""
    face = np.full((1, len(G7C1), 2), np.nan)
    face[0, :4] = [[10, 5], [20, 10], [10, 15], [0, 10]]
    face[0, G7C1.index("nose tip")] = [50, 30]
    face[0, G7C1.index("eye top")] = np.nan
    m = facial_measures(face, G7C1)
    assert m.loc[0, "eye_width"] == pytest.approx(20)  # front and back are there
    assert np.isnan(m.loc[0, "eye_x"]) and np.isnan(m.loc[0, "eye_y"])
    assert np.isnan(m.loc[0, "nose_tip_forward"]) and np.isnan(m.loc[0, "nose_tip_down"])
    kp = schroeder_frame()[None].copy()
    kp[0, SCHROEDER.index("dorsalpupil")] = np.nan
    m = facial_measures(kp, SCHROEDER)
    assert np.isnan(m.loc[0, "pupil_x"]) and np.isnan(m.loc[0, "pupil_y"])


def test_bodyparts_alike_but_for_spelling_are_refused():
    # "eye top" and "Eye_Top" are one keypoint to the measures: which column they would be
    # read from is no choice to make silently
    names = [*G7C1, "Eye_Top"]
    with pytest.raises(ValueError, match="named more than once"):
        facial_measures(np.zeros((1, len(names), 2)), names)


def test_an_eye_of_no_width_on_the_face_has_no_aperture():
    # eye front on eye back but top and bottom 10 apart: no width to divide by, NaN (an
    # infinite aperture would pass any threshold)
    face = np.full((1, len(G7C1), 2), np.nan)
    face[0, :4] = [[10, 5], [10, 10], [10, 15], [10, 10]]
    with np.errstate(all="raise"):
        m = facial_measures(face, G7C1)
    assert m.loc[0, "eye_width"] == 0 and np.isnan(m.loc[0, "eye_aperture"])
