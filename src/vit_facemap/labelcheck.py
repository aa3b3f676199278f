"""Labels that slipped onto another keypoint's place.

When a labeler skips a keypoint in DeepLabCut's labeling tool, or clicks the parts in the
wrong order, the following labels of that frame can land one place off: "whisker 3" where
the mouth is, "mouth" where the lip is, and the lip missing. Such a label is not noise
around the right place but a confident label at the wrong one; the `g7c1` set has
several. :func:`label_slips` finds labels that lie far from where their keypoint sits in
the rest of the video and close to where another keypoint sits. It reports, never edits:
the set on disk stays as it is, and training can leave the flagged labels out
(``TrainConfig.mask_slips``) the way it leaves out missing ones.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd

from vit_facemap.dlc import LabeledFrames

SLIP_COLUMNS = ["frame", "keypoint", "near", "offset_px", "near_px", "typical_px"]


def label_slips(frames: LabeledFrames, *, factor: float = 4.0, ratio: float = 3.0,
                min_px: float = 10.0, min_frames: int = 5) -> pd.DataFrame:
    """Labels that sit where another keypoint usually is, one row each.

    Within each video of at least ``min_frames`` frames, a keypoint's usual place is the
    median of its labels and its typical scatter the median distance of its labels from
    that place. A label is flagged when it lies more than ``factor`` times its typical
    scatter (and more than ``min_px``) from its own usual place, and ``ratio`` times
    closer to another keypoint's usual place (``near``). A slip moves a run of labels, so
    a label next to a flagged one in labeling order is flagged too when it lies more than
    twice its typical scatter from its place and nearer to another keypoint's.

    Columns: ``frame`` (path in the set), ``keypoint``, ``near``, ``offset_px`` (distance
    from its own usual place), ``near_px`` (from the other's) and ``typical_px`` (its
    typical scatter).
    """
    rows = []
    videos = frames.videos
    names = frames.bodyparts
    for video in np.unique(videos):
        idx = np.flatnonzero(videos == video)
        if len(idx) < min_frames:
            continue
        pts = frames.keypoints[idx]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a keypoint never labeled here
            usual = np.nanmedian(pts, axis=0)
            # distance of each label to each keypoint's usual place: (frames, K, K)
            dist = np.linalg.norm(pts[:, :, None, :] - usual[None, None], axis=-1)
            own = np.diagonal(dist, axis1=1, axis2=2)
            typical = np.nanmedian(own, axis=0)
        for f in range(len(idx)):
            flagged: dict[int, tuple[int, float]] = {}
            for k in np.flatnonzero(np.isfinite(own[f])):
                j, near = _nearest_other(dist[f, k], k)
                if own[f, k] > max(factor * typical[k], min_px) and near * ratio < own[f, k]:
                    flagged[k] = (j, near)
            # a slip shifts a run of labels in labeling order; its inner links may move less
            # than the limit, so a neighbour of a flagged label needs only to lie nearer to
            # another keypoint's place than to its own
            grown = bool(flagged)
            while grown:
                grown = False
                for k in np.flatnonzero(np.isfinite(own[f])):
                    if k in flagged or not ({k - 1, k + 1} & set(flagged)):
                        continue
                    j, near = _nearest_other(dist[f, k], k)
                    if own[f, k] > max(2 * typical[k], min_px) and near < own[f, k]:
                        flagged[k], grown = (j, near), True
            for k in sorted(flagged):
                j, near = flagged[k]
                rows.append((frames.index[idx[f]], names[k], names[j], float(own[f, k]),
                             float(near), float(typical[k])))
    return pd.DataFrame(rows, columns=SLIP_COLUMNS)


def _nearest_other(dist: np.ndarray, k: int) -> tuple[int, float]:
    """The keypoint (other than ``k``) whose usual place is nearest, and its distance."""
    d = np.where(np.isfinite(dist), dist, np.inf)
    d[k] = np.inf
    j = int(np.argmin(d))
    return j, float(d[j])


def mask_slips(frames: LabeledFrames, slips: pd.DataFrame) -> LabeledFrames:
    """A copy of ``frames`` with the labels in ``slips`` set to missing (NaN)."""
    kp = frames.keypoints.copy()
    row = {name: i for i, name in enumerate(frames.index)}
    col = {name: k for k, name in enumerate(frames.bodyparts)}
    for frame, keypoint in zip(slips["frame"], slips["keypoint"], strict=True):
        kp[row[frame], col[keypoint]] = np.nan
    return replace(frames, keypoints=kp)


def describe_slips(slips: pd.DataFrame, limit: int | None = None) -> list[str]:
    """One line per flagged label (at most ``limit``, then a count of the rest)."""
    limit = len(slips) if limit is None else limit
    lines = [f"{r.frame}: '{r.keypoint}' lies {r.offset_px:.0f} px from its usual place "
             f"(typically {r.typical_px:.0f}) and {r.near_px:.0f} px from where '{r.near}' "
             "usually is (slipped or swapped label?)"
             for r in slips.head(limit).itertuples()]
    if len(slips) > limit:
        lines.append(f"... and {len(slips) - limit} more")
    return lines
