"""Figures of tracked keypoints and facial measures over time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def plot_traces(frames: np.ndarray, xy: np.ndarray, likelihood: np.ndarray,
                bodyparts: Sequence[str], labels: np.ndarray | None = None,
                keypoints: Sequence[str] | None = None, time_s: np.ndarray | None = None):
    """x (top) and y (middle) of some keypoints over frames, hand labels as circles when
    given, and the model's likelihood per keypoint (bottom)."""
    import matplotlib.pyplot as plt
    from matplotlib import colormaps

    names = list(keypoints) if keypoints else list(bodyparts)[:4]
    unknown = [n for n in names if n not in list(bodyparts)]
    if unknown:  # list.index said only "'eye_top' is not in list"
        raise ValueError(f"keypoints {unknown} are not among the tracked ones {list(bodyparts)}")
    cols = [list(bodyparts).index(n) for n in names]
    t = frames if time_s is None else time_s
    fig, axes = plt.subplots(3, 1, figsize=(7.5, 6), sharex=True,
                             gridspec_kw={"height_ratios": [2, 2, 1]})
    colors = colormaps["tab10"].colors
    for j, (name, k) in enumerate(zip(names, cols, strict=True)):
        c = colors[j % 10]
        for ax, d in zip(axes[:2], (0, 1), strict=True):
            ax.plot(t, xy[:, k, d], color=c, lw=1.2, label=name if d == 0 else None)
            if labels is not None:
                ax.plot(t, labels[:, k, d], "o", color=c, ms=3, mfc="none", alpha=0.8)
        axes[2].plot(t, likelihood[:, k], color=c, lw=1)
    axes[0].set_ylabel("x (px)")
    axes[1].set_ylabel("y (px)")
    axes[1].invert_yaxis()  # image rows grow downwards
    axes[2].set_ylabel("likelihood")
    axes[2].set_ylim(0, 1.05)
    axes[2].set_xlabel("frame" if time_s is None else "time (s)")
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8,
                   title="lines: tracked\ncircles: hand labels" if labels is not None else None,
                   title_fontsize=7)
    fig.tight_layout()
    return fig


def plot_measures(measures: pd.DataFrame, columns: Sequence[str] | None = None,
                  x: str | None = None):
    """Facial measures over frames, one panel each (at most four, the first by default),
    each labelled with its unit (:func:`vit_facemap.measures.measure_unit`)."""
    import matplotlib.pyplot as plt

    from vit_facemap.measures import measure_unit

    cols = list(columns) if columns else [c for c in measures.columns if c != "time_s"][:4]
    fig, axes = plt.subplots(len(cols), 1, figsize=(7.5, 1.6 * len(cols) + 0.6), sharex=True,
                             squeeze=False)
    t = measures.index.to_numpy() if x is None else measures[x].to_numpy()
    for ax, col in zip(axes[:, 0], cols, strict=True):
        ax.plot(t, measures[col].to_numpy(), lw=1.2, color="0.2")
        unit = measure_unit(col)
        ax.set_ylabel(col.replace("_", " ") + (f"\n({unit})" if unit else ""), fontsize=8)
    axes[-1, 0].set_xlabel("frame" if x is None else "time (s)" if x == "time_s"
                           else x.replace("_", " "))
    fig.tight_layout()
    return fig
