"""Figures of labeled frames."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vit_facemap.plotting import keypoint_colors, mean_frame, plot_frames, plot_spread  # noqa: E402
from vit_facemap.synthetic import generate_frames, write_synthetic_set  # noqa: E402
from vit_facemap.validate import load_set  # noqa: E402


def test_plot_frames_draws_every_visible_keypoint(tmp_path):
    folder = write_synthetic_set(tmp_path / "s", n_frames=4, n_videos=2, p_missing=0.2, seed=1)
    frames = load_set(folder)
    fig = plot_frames(frames, [0, 1, 2], ncols=2)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 3
    for ax, row in zip(panels, [0, 1, 2], strict=True):
        assert len(ax.collections) == int((~frames.missing[row]).sum())
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == frames.bodyparts


def test_plot_frames_in_memory_and_colour():
    d = generate_frames(2, color=True)
    fig = plot_frames(d.frames, images=d.images)
    assert fig.axes[0].images[0].get_array().shape == (120, 160, 3)


def test_plot_spread_and_mean_frame():
    d = generate_frames(8, n_videos=2)
    m = mean_frame(d.frames, images=d.images)
    np.testing.assert_allclose(m, d.images.astype(float).mean(0))
    fig = plot_spread(d.frames, images=d.images, backdrop_frames=5)
    bars = fig.axes[1].patches
    assert len(bars) == 2 * len(d.frames.bodyparts)


def test_colours_are_distinct():
    names = [f"k{i}" for i in range(20)]
    assert len(set(keypoint_colors(names).values())) == 20


def test_plot_states_outlines_the_region():
    from vit_facemap.plotting import plot_states

    d = generate_frames(8, task="pupil", n_videos=2)
    fig = plot_states(d, n_per_class=2)
    boxed = [ax for ax in fig.axes if ax.patches]
    assert len(boxed) == 4
    x0, y0 = boxed[0].patches[0].get_xy()
    assert (x0, y0) in {(b[0], b[1]) for b in d.state_boxes}


def _curve(first_loss, steps=4, val=True):
    import pandas as pd

    m = pd.DataFrame({"step": np.arange(steps) * 10,
                      "train_loss": first_loss / (1 + np.arange(steps))})
    if val:
        m["val_mean_px"] = [8.0 - i if i % 2 == 0 else np.nan for i in range(steps)]
    return m


def test_tracker_curves_compare_losses_relative_and_stages_apart():
    """Losses of different models are on different scales (a heatmap model's 40, a
    regression's 0.4): each is drawn over its first value. A second stage's held-out error
    covers its group's keypoints only and is not drawn beside whole-face errors."""
    from vit_facemap.plotting import plot_tracker_curves

    curves = {"g7c1": [("hybrid", False, _curve(40.0)),
                       ("hybrid eye stage", True, _curve(3.0)),
                       ("vit_regression", False, _curve(0.4))],
              "schroeder": [("hybrid", False, _curve(20.0)),
                            ("vit_regression", False, _curve(0.2, val=False))]}
    fig = plot_tracker_curves(curves)
    axes = np.array(fig.axes).reshape(2, 3)
    loss, whole, stages = axes[0]
    assert loss.get_ylabel() == "training loss / first value"
    for line in loss.lines:
        assert line.get_ydata()[0] == 1.0 and line.get_ydata()[-1] == 0.25
    assert [t.get_text() for t in loss.get_legend().get_texts()] == [
        "hybrid", "hybrid eye stage (on its crops)", "vit_regression"]
    assert "all keypoints" in whole.get_ylabel()
    assert [t.get_text() for t in whole.get_legend().get_texts()] == ["hybrid", "vit_regression"]
    assert "stage's keypoints" in stages.get_ylabel()
    assert [t.get_text() for t in stages.get_legend().get_texts()] == [
        "hybrid eye stage (eye keypoints only)"]
    assert stages.lines[0].get_linestyle() == "--"
    assert not axes[1, 2].lines and [t.get_text() for t in axes[1, 2].texts] == ["none logged"]
    plt.close("all")


def test_tracker_curves_without_second_stages_have_two_panels():
    from vit_facemap.plotting import plot_tracker_curves

    fig = plot_tracker_curves({"g7c1": [("cnn", False, _curve(5.0))]})
    assert len(fig.axes) == 2
    plt.close("all")


def test_plot_predictions_uses_the_keypoint_colours_and_a_legend(tmp_path):
    """The tracker's example frames colour keypoints as every other figure of frames does
    (keypoint_colors) and name them in a legend; predictions are found by frame path."""
    from matplotlib.colors import to_rgba

    from vit_facemap.dlc import LabeledFrames
    from vit_facemap.plotting import plot_predictions

    truth = load_set(write_synthetic_set(tmp_path / "s", n_frames=6, n_videos=2, seed=2))
    rows = [5, 1, 3, 0]  # predictions in another order than the labels
    pred = LabeledFrames(tmp_path / "elsewhere", [truth.index[r] for r in rows],
                         truth.keypoints[rows] + 2.0, truth.bodyparts)
    fig = plot_predictions([("g7c1", truth, pred), ("again", truth, pred)])
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 6
    colours = [to_rgba(c) for c in keypoint_colors(truth.bodyparts).values()]
    for ax, i in zip(panels[:3], [0, 1, 3], strict=True):  # evenly over the 4 predictions
        circles, crosses = ax.collections
        np.testing.assert_allclose(circles.get_edgecolors(), colours)
        np.testing.assert_allclose(crosses.get_facecolors(), colours)
        np.testing.assert_allclose(circles.get_offsets(), truth.keypoints[rows[i]])
        np.testing.assert_allclose(crosses.get_offsets(), truth.keypoints[rows[i]] + 2.0)
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 2
    for legend in legends:
        assert [t.get_text() for t in legend.get_texts()] == truth.bodyparts
    plt.close("all")


def test_plot_predictions_draws_the_frames_picked_for_a_set_in_their_order(tmp_path):
    from pathlib import PurePath

    import pytest

    from vit_facemap.dlc import LabeledFrames
    from vit_facemap.plotting import plot_predictions

    truth = load_set(write_synthetic_set(tmp_path / "s", n_frames=6, n_videos=2, seed=2))
    pred = LabeledFrames(tmp_path, list(truth.index), truth.keypoints + 2.0, truth.bodyparts)
    picked = [truth.index[4], truth.index[1]]
    fig = plot_predictions([("a", truth, pred), ("b", truth, pred)], n_frames=2,
                           picks={"a": picked, "b": picked[::-1] + [truth.index[0]]})
    panels = [ax for ax in fig.axes if ax.images]
    # the picked frames, in the order given, n_frames of them
    for ax, row in zip(panels, [4, 1, 1, 4], strict=True):
        np.testing.assert_allclose(ax.collections[0].get_offsets(), truth.keypoints[row])
    # titled by file, the name a table of the picked frames gives
    assert panels[0].get_title() == f"a: {PurePath(truth.index[4]).stem}"
    plt.close("all")
    with pytest.raises(ValueError, match=r"a: frame elsewhere.png to draw has no prediction"):
        plot_predictions([("a", truth, pred)], picks={"a": ["elsewhere.png"]})
    with pytest.raises(ValueError, match=r"no frames picked for 'b' \(picks names \['a'\]\)"):
        plot_predictions([("a", truth, pred), ("b", truth, pred)], picks={"a": picked})
    plt.close("all")


def test_plot_predictions_titles_frames_by_their_video_whatever_the_layout(tmp_path):
    # the video a frame is titled with is dlc.video_of's: a frame path without a folder
    # (a table that names images alone) has none, and broke the figure
    from PIL import Image

    from vit_facemap.dlc import LabeledFrames
    from vit_facemap.plotting import plot_predictions

    names = ["labeled-data/mouse1/img0.png", "img1.png"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (20, 16)).save(tmp_path / name)
    kp = np.full((2, 1, 2), 5.0)
    truth = LabeledFrames(tmp_path, names, kp, ["eye"])
    fig = plot_predictions([("set", truth, LabeledFrames(tmp_path, names, kp + 1, ["eye"]))],
                           n_frames=2)
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["set: mouse1", "set: "]
    plt.close("all")


def test_plot_traces_draws_the_named_keypoints_and_names_unknown_ones():
    import pytest

    from vit_facemap.traces import plot_traces

    n = 5
    xy = np.stack([np.stack([np.arange(n) + 10 * k, 100 - np.arange(n)], -1) for k in range(3)], 1)
    lik = np.full((n, 3), 0.9)
    fig = plot_traces(np.arange(n), xy.astype(float), lik, ["eye top", "nose tip", "mouth"],
                      keypoints=["mouth"])
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), xy[:, 2, 0])
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), xy[:, 2, 1])
    with pytest.raises(ValueError, match=r"keypoints \['eye_top'\] are not among the tracked"):
        plot_traces(np.arange(n), xy, lik, ["eye top", "nose tip", "mouth"], keypoints=["eye_top"])
    plt.close("all")


def test_plot_spread_legend_covers_no_bar():
    # like schroeder's: one keypoint moves twice as far as the others, all far: the legend
    # ("best" place inside the axes) lay over the longest bar
    from vit_facemap.dlc import LabeledFrames

    rng = np.random.default_rng(0)
    n, names = 40, [f"k{i}" for i in range(9)]
    kp = np.stack([rng.normal(300, 160 if k == 0 else 80, (n, 2)) for k in range(9)], axis=1)
    frames = LabeledFrames("/nowhere", [f"labeled-data/v{i % 4}/img{i}.png" for i in range(n)],
                           kp, names)
    fig = plot_spread(frames, images=np.zeros((n, 48, 64), np.uint8), backdrop_frames=4)
    fig.canvas.draw()
    ax = fig.axes[1]
    legend = ax.get_legend().get_window_extent()
    assert not [p for p in ax.patches if p.get_window_extent().overlaps(legend)]
    plt.close("all")
