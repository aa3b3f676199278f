"""Figures of labeled frames."""

import matplotlib

matplotlib.use("Agg")

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
