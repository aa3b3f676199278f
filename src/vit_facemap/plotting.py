"""Figures of labeled frames (keypoints over frames, how much each keypoint moves, facial
states) and of the tracker benchmark's training logs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePath

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from vit_facemap.dlc import LabeledFrames, video_of
from vit_facemap.images import load_image
from vit_facemap.inspect import keypoint_spread


def keypoint_colors(names: Sequence[str]) -> dict[str, tuple]:
    """One distinct colour per keypoint (tab10 up to 10 keypoints, tab20 beyond)."""
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _image(frames: LabeledFrames, row: int, images: np.ndarray | None) -> np.ndarray:
    return images[row] if images is not None else load_image(frames.image_paths[row])


def plot_frames(
    frames: LabeledFrames,
    rows: Sequence[int] | None = None,
    *,
    images: np.ndarray | None = None,
    ncols: int = 3,
    panel_width: float = 3.2,
    marker_size: float = 28,
    titles: bool = True,
) -> Figure:
    """Frames with their keypoints drawn on top, one colour per keypoint, shared legend.

    ``images`` gives the pixels for frames held in memory (generated ones); otherwise they
    are read from ``frames.image_paths``. Missing keypoints are simply not drawn.
    """
    rows = list(range(min(len(frames), 6))) if rows is None else list(rows)
    if not rows:
        raise ValueError("no frames to plot")
    ncols = max(1, min(ncols, len(rows)))
    nrows = int(np.ceil(len(rows) / ncols))
    first = _image(frames, rows[0], images)
    aspect = first.shape[0] / first.shape[1]
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_width * ncols + 1.8,
                                                    panel_width * aspect * nrows + 0.3),
                             squeeze=False, layout="constrained")
    colors = keypoint_colors(frames.bodyparts)
    for ax, row in zip(axes.flat, rows, strict=False):
        img = _image(frames, row, images)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
        for k, name in enumerate(frames.bodyparts):
            x, y = frames.keypoints[row, k]
            if np.isfinite(x) and np.isfinite(y):
                ax.scatter(x, y, s=marker_size, color=colors[name], edgecolors="white",
                           linewidths=0.6, label=name)
        if titles:
            ax.set_title(frames.index[row].split("/", 1)[-1], fontsize=7)
        ax.set_axis_off()
    for ax in list(axes.flat)[len(rows):]:
        ax.set_axis_off()
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colors[n], markeredgecolor="white",
                          label=n) for n in frames.bodyparts]
    fig.legend(handles=handles, loc="outside right center", fontsize=7, frameon=False,
               title="keypoint", title_fontsize=8)
    return fig


def mean_frame(frames: LabeledFrames, rows: Sequence[int] | None = None,
               images: np.ndarray | None = None) -> np.ndarray:
    """The average of frames of one size (grayscale), for a backdrop of the label scatter."""
    rows = list(range(len(frames))) if rows is None else list(rows)
    acc, n, shape = None, 0, None
    for r in rows:
        img = _image(frames, r, images).astype(np.float64)
        if img.ndim == 3:
            img = img.mean(axis=-1)
        if shape is None:
            shape, acc = img.shape, np.zeros(img.shape)
        if img.shape != shape:
            continue  # frames of another size cannot be averaged with these
        acc += img
        n += 1
    return acc / max(n, 1)


def plot_spread(
    frames: LabeledFrames,
    *,
    images: np.ndarray | None = None,
    backdrop_frames: int = 40,
    seed: int = 0,
    panel_width: float = 4.2,
) -> Figure:
    """Left: every label of every frame over the mean frame. Right: per-keypoint SD (pixels)
    over all frames and within videos (movement once the camera placement is fixed)."""
    rng = np.random.default_rng(seed)
    rows = np.arange(len(frames))
    pick = np.sort(rng.choice(rows, size=min(backdrop_frames, len(rows)), replace=False))
    backdrop = mean_frame(frames, pick, images)
    aspect = backdrop.shape[0] / backdrop.shape[1]
    fig, (ax_img, ax_bar) = plt.subplots(
        1, 2, figsize=(panel_width * 2.2, max(panel_width * aspect, 0.28 * len(frames.bodyparts) + 1)),
        width_ratios=[1.3, 1], layout="constrained")
    ax_img.imshow(backdrop, cmap="gray")
    colors = keypoint_colors(frames.bodyparts)
    for k, name in enumerate(frames.bodyparts):
        xy = frames.keypoints[:, k]
        ok = np.isfinite(xy).all(axis=1)
        ax_img.scatter(xy[ok, 0], xy[ok, 1], s=4, alpha=0.5, color=colors[name], linewidths=0)
    ax_img.set_axis_off()
    ax_img.set_title(f"all labels over the mean of {len(pick)} frames", fontsize=9)
    spread = keypoint_spread(frames)
    y = np.arange(len(spread))
    ax_bar.barh(y + 0.2, spread["sd"], height=0.4, color=[colors[n] for n in spread.index],
                label="all frames (keypoint colour)")
    ax_bar.barh(y - 0.2, spread["sd_within_video"], height=0.4, color="0.6", label="within videos")
    ax_bar.set_yticks(y, spread.index, fontsize=8)
    ax_bar.invert_yaxis()
    ax_bar.set_xlabel("SD of position (pixels)")
    # above the bars: inside, "best" still covered the longest bar (schroeder's nose)
    ax_bar.legend(fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(0, 1), ncols=2)
    ax_bar.spines[["top", "right"]].set_visible(False)
    return fig


def plot_states(data, n_per_class: int = 3, *, panel_width: float = 2.6) -> Figure:
    """Generated frames of a state task, one row per class, with the region that carries
    the state outlined (``data`` is a :class:`vit_facemap.synthetic.SyntheticSet`)."""
    if data.states is None:
        raise ValueError("these frames have no facial states (generate them with task=...)")
    classes = sorted(set(data.states.tolist()))
    h, w = data.images.shape[1:3]
    fig, axes = plt.subplots(len(classes), n_per_class, squeeze=False, layout="constrained",
                             figsize=(panel_width * n_per_class, panel_width * h / w * len(classes) + 0.3))
    for r, cls in enumerate(classes):
        rows = np.flatnonzero(data.states == cls)[:n_per_class]
        for c in range(n_per_class):
            ax = axes[r, c]
            ax.set_axis_off()
            if c >= len(rows):
                continue
            img = data.images[rows[c]]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
            x0, y0, x1, y1 = data.state_boxes[rows[c]]
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="#ffcc00",
                                       linewidth=1.2))
            if c == 0:
                ax.set_title(f"{data.task}: {cls}", fontsize=9, loc="left")
    return fig


def plot_predictions(examples: Sequence[tuple[str, LabeledFrames, LabeledFrames]],
                     n_frames: int = 3, *, panel_width: float = 3.2,
                     picks: Mapping[str, Sequence[str]] | None = None) -> Figure:
    """Held-out frames with hand-placed keypoints (circles) and predictions (crosses).

    ``examples`` holds ``(set name, hand labels, predictions)`` per set, one row each;
    ``n_frames`` predicted frames spread evenly over the predictions are drawn or, where
    ``picks`` is given, the first ``n_frames`` of ``picks[set name]`` (frame indices,
    relative paths; a set it does not name is an error), each looked up in the hand labels
    by its index. Keypoints take the colours of
    :func:`keypoint_colors`, as in the other figures of frames, and each row has a legend
    of its set's keypoints.
    """
    if not examples:
        raise ValueError("no predictions to plot")
    fig, axes = plt.subplots(len(examples), n_frames, squeeze=False, layout="constrained",
                             figsize=(panel_width * n_frames + 2.0, 0.8 * panel_width * len(examples)))
    for row_axes, (name, truth, pred) in zip(axes, examples, strict=True):
        if list(truth.bodyparts) != list(pred.bodyparts):
            raise ValueError(f"{name}: predictions name keypoints {list(pred.bodyparts)}, the "
                             f"hand labels {list(truth.bodyparts)}")
        lookup = {idx: i for i, idx in enumerate(truth.index)}
        missing = [idx for idx in pred.index if idx not in lookup]
        if missing:
            raise ValueError(f"{name}: predicted frame {missing[0]} is not among the hand labels")
        colors = keypoint_colors(pred.bodyparts)
        rgba = [colors[n] for n in pred.bodyparts]
        if picks is not None:
            if name not in picks:
                raise ValueError(f"no frames picked for {name!r} (picks names "
                                 f"{list(picks)})")
            where = {idx: i for i, idx in enumerate(pred.index)}
            unknown = [idx for idx in picks[name] if idx not in where]
            if unknown:
                raise ValueError(f"{name}: frame {unknown[0]} to draw has no prediction")
            chosen = [where[idx] for idx in picks[name]][:n_frames]
        else:
            chosen = np.unique(np.linspace(0, len(pred) - 1, n_frames).astype(int)).tolist()
        for ax in row_axes:
            ax.set_axis_off()
        for ax, i in zip(row_axes, chosen, strict=False):
            j = lookup[pred.index[i]]
            img = load_image(truth.image_paths[j])
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
            t = truth.keypoints[j]
            ax.scatter(t[:, 0], t[:, 1], s=40, facecolors="none", edgecolors=rgba, linewidths=1.2)
            ax.scatter(pred.keypoints[i, :, 0], pred.keypoints[i, :, 1], s=30, marker="x",
                       c=rgba)
            # a picked frame is named by its file, which a table beside the figure lists
            shown = (PurePath(pred.index[i]).stem[:32] if picks is not None
                     else video_of(pred.index[i])[:24])
            ax.set_title(f"{name}: {shown}", fontsize=8)
        handles = [plt.Line2D([], [], marker="o", linestyle="", color=colors[n], label=n)
                   for n in pred.bodyparts]
        row_axes[-1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5),
                            fontsize=7, frameon=False, title="keypoint", title_fontsize=8)
    return fig


def _stage_group(label: str) -> str:
    """The keypoint group of a second stage's label (``"hybrid eye stage"`` -> ``"eye"``)."""
    words = label.removesuffix(" stage").split(" ", 1)
    return words[-1] if len(words) > 1 else label


def _relative_loss(loss: pd.Series) -> pd.Series:
    """A loss curve over its first finite, positive value (NaN where there is none)."""
    values = loss.to_numpy(dtype=float)
    ok = np.flatnonzero(np.isfinite(values) & (values > 0))
    return loss / values[ok[0]] if len(ok) else loss * np.nan


def plot_tracker_curves(curves: Mapping[str, Sequence[tuple[str, bool, pd.DataFrame]]]
                        ) -> Figure:
    """Training loss and held-out error against steps, one row per set.

    ``curves`` is what :func:`vit_facemap.reports.tracker_curves` returns. The models'
    losses are on different scales (heatmap cross-entropy plus an offset term, a
    regression's normalised L1, a second stage's loss on its crops), so each loss curve is
    divided by its first logged value: the left panel compares how far each loss fell, not
    their levels. The middle panel is the held-out mean error over all keypoints of the
    whole-face models (drawn where it was logged); a second stage (dashed) is scored on its
    own group's keypoints only, around the first stage's estimates, so its held-out error
    gets a panel of its own (right; only when some set has one), labelled with its group.
    """
    has_stage_val = any(stage and "val_mean_px" in m for runs in curves.values()
                        for _, stage, m in runs)
    ncols = 3 if has_stage_val else 2
    fig, axes = plt.subplots(len(curves), ncols, figsize=(4.2 * ncols, 3.0 * len(curves)),
                             squeeze=False)
    for row, (set_name, runs) in zip(axes, curves.items(), strict=True):
        ax_loss, ax_val = row[0], row[1]
        for label, stage, m in runs:
            ls = "--" if stage else "-"
            # a short log (a test run logs a row or two) is drawn with markers, else unseen
            line, = ax_loss.plot(m["step"], _relative_loss(m["train_loss"]), ls=ls,
                                 marker="." if len(m) <= 20 else None,
                                 label=f"{label} (on its crops)" if stage else label)
            if "val_mean_px" not in m:
                continue
            v = m.dropna(subset=["val_mean_px"])
            ax = row[2] if stage else ax_val
            ax.plot(v["step"], v["val_mean_px"], marker="o", ms=3, color=line.get_color(),
                    ls=ls, label=f"{label} ({_stage_group(label)} keypoints only)" if stage
                    else label)
        ax_loss.set(xlabel="step", ylabel="training loss / first value", yscale="log",
                    title=f"{set_name}: training loss")
        ax_val.set(xlabel="step", ylabel="held-out mean error,\nall keypoints (px)",
                   yscale="log", title=f"{set_name}: whole-face models")
        ax_loss.legend(fontsize=7)
        for ax in row[1:]:
            if ax.lines:
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, "none logged", ha="center", va="center",
                        transform=ax.transAxes, fontsize=8, color="0.4")
        if ncols == 3:
            row[2].set(xlabel="step", ylabel="held-out mean error,\nstage's keypoints (px)",
                       yscale="log", title=f"{set_name}: second stages")
    fig.tight_layout()
    return fig
