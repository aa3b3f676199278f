"""Short clips from labeled frames, and finding a trained run to track them with.

The real sets ship labeled frames, not their videos. To show tracking through time on
real images, :func:`labeled_clip` encodes one video's labeled frames, in frame-name order,
as a clip; the hand labels of those frames come along, so the tracked keypoints can be
compared with them frame by frame. Such a clip is *assembled from labeled frames*: frames
are in recording order but not evenly spaced in time, and whoever shows it says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from vit_facemap.dlc import LabeledFrames
from vit_facemap.testvideo import write_clip


def labeled_clip(frames: LabeledFrames, video: str, path: str | Path, fps: float = 30.0,
                 max_frames: int | None = None) -> tuple[Path, LabeledFrames]:
    """Encode the labeled frames of ``video`` (in frame-name order) as a clip at ``path``.

    Returns the clip's path and the labels of its frames, row ``i`` being frame ``i``.
    """
    rows = np.flatnonzero(frames.videos == video)
    if not len(rows):
        raise ValueError(f"no labeled frames of video {video!r}; videos: {sorted(set(frames.videos))}")
    rows = rows[np.argsort([frames.index[i] for i in rows], kind="stable")]
    if max_frames is not None:
        rows = rows[:max_frames]
    sub = frames.subset(rows)
    return write_clip(sub.image_paths, path, fps=fps), sub


def find_run(folder: str | Path, bodyparts: list[str] | None = None,
             not_trained_on: str | None = None, name: str | None = None) -> Path | None:
    """The newest trained run (``config.json`` + ``model.safetensors``, training finished:
    an interrupted run's weights are those of some epoch on the way) under ``folder`` whose
    keypoints are ``bodyparts`` (any when None), whose folder is called ``name`` (any when
    None) and, when ``not_trained_on`` names a video, whose ``split.json`` shows it was not
    trained on that video; None if there is none. A run's second stages
    (``refine/<group>``) are not runs of their own: they predict one group on crops."""
    from vit_facemap.dlc import video_of
    from vit_facemap.refine import REFINE_DIR
    from vit_facemap.train import is_finished

    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = []
    for cfg in folder.rglob("config.json"):
        run = cfg.parent
        if not (run / "model.safetensors").is_file() or (name is not None and run.name != name):
            continue
        if run.parent.name == REFINE_DIR and (run.parent.parent / "config.json").is_file():
            continue  # a second stage, written after its run: it would be the newest
        if not is_finished(run):
            continue
        try:
            saved = json.loads(cfg.read_text())
            if bodyparts is not None and list(saved.get("bodyparts", [])) != list(bodyparts):
                continue
            if not_trained_on is not None:
                train = json.loads((run / "split.json").read_text())["train"]
                if not_trained_on in {video_of(i) for i in train}:
                    continue
        except (OSError, ValueError, KeyError):
            continue  # no split on record: cannot tell what it saw, so not used
        found.append((cfg.stat().st_mtime, str(run)))
    return Path(max(found)[1]) if found else None


def tracked_keypoints(csv: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``(frames, xy (N, K, 2), likelihood (N, K), bodyparts)`` of a DeepLabCut prediction CSV."""
    from vit_facemap.errors import DataError

    df = pd.read_csv(csv, header=[0, 1, 2], index_col=0)
    bodyparts = list(dict.fromkeys(df.columns.get_level_values(1)))
    # x, y, likelihood per keypoint, in this order (dlc.predictions_dataframe): a labels
    # table, a multi-animal file or any other CSV failed with a bare parsing error
    expected = [(b, c) for b in bodyparts for c in ("x", "y", "likelihood")]
    if list(zip(df.columns.get_level_values(1), df.columns.get_level_values(2),
                strict=True)) != expected:
        raise DataError("not a DeepLabCut prediction table: need three header rows (scorer, "
                        "bodyparts, coords) with coords x, y, likelihood per keypoint", csv)
    try:
        values = df.to_numpy(dtype=float).reshape(len(df), len(bodyparts), 3)
    except ValueError as exc:
        raise DataError(f"keypoint values that are not numbers ({exc})", csv) from None
    return df.index.to_numpy(), values[..., :2], values[..., 2], bodyparts
