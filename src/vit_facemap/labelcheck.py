"""Labels that slipped onto another keypoint's place or strayed off the face, and how far
labels scatter.

When a labeler skips a keypoint in DeepLabCut's labeling tool, or clicks the parts in the
wrong order, the following labels of that frame can land one place off: "whisker 3" where
the mouth is, "mouth" where the lip is, and the lip missing. Such a label is not noise
around the right place but a confident label at the wrong one; the `g7c1` set has
several. :func:`label_slips` finds labels that lie far from where their keypoint sits in
the rest of the video and close to where another keypoint sits, and stray clicks that lie
farther from it than the labeled face is wide (a nose on the head plate). It reports,
never edits:
the set on disk stays as it is, and training can leave the flagged labels out
(``TrainConfig.mask_slips``) the way it leaves out missing ones.

:func:`label_repeatability` measures the other kind of label error, the scatter of a
labeler's clicks around the right place, from frames that show a keypoint's surroundings
(nearly) unchanged: a held-out error near that scatter is as low as the labels can show.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
from tqdm import tqdm

from vit_facemap.dlc import LabeledFrames
from vit_facemap.images import load_image

SLIP_COLUMNS = ["frame", "keypoint", "near", "offset_px", "near_px", "typical_px"]
# a Gaussian scatter's mean distance from the true place over the median distance of two
# labels: sqrt(pi / 2) sigma over 2 sqrt(ln 2) sigma
FLOOR_PER_PAIR = float(np.sqrt(np.pi / (8 * np.log(2))))
REPEAT_COLUMNS = ["keypoint", "pairs", "used", "frames", "image_diff", "pair_px", "floor_px",
                  "mean_floor_px", "moving_px"]


def label_slips(frames: LabeledFrames, *, factor: float = 4.0, ratio: float = 3.0,
                min_px: float = 10.0, min_frames: int = 5) -> pd.DataFrame:
    """Labels that sit where another keypoint usually is, or far off the face, one row each.

    Within each video of at least ``min_frames`` frames, a keypoint's usual place is the
    median of its labels and its typical scatter the median distance of its labels from
    that place. A label is flagged when it lies more than ``factor`` times its typical
    scatter (and more than ``min_px``) from its own usual place, and ``ratio`` times
    closer to another keypoint's usual place (``near``). A slip moves a run of labels, so
    a label next to a flagged one in labeling order (the order of ``frames.bodyparts``) is
    flagged too when it lies more than twice its typical scatter (and more than ``min_px``)
    from its place and nearer to another keypoint's. A label is not flagged when that other
    keypoint is labeled in the same frame, not flagged itself, not off its own place onto
    another's (a swap), and at least a ``ratio``-th of the label's offset away from it: the
    face moved, and the two labels are distinct points.

    A label not flagged so is flagged as a stray (``near`` empty, ``near_px`` NaN) when it
    lies farther from its usual place than the labeled face is wide (the largest distance
    between two keypoints' usual places in the video), and more than ``factor`` times its
    typical scatter and ``min_px`` from it: no pose of a face carries one of its points that
    far.

    Distances, and so ``min_px``, are in pixels of the frames as stored: the same labels
    at another scale can be judged differently where keypoints lie only a few times
    ``min_px`` apart (the pupil points of a small eye). ``min_frames`` counts a video's
    frames, not the labels of each keypoint in it. Videos of fewer frames are not judged,
    and a slip repeated in half of a video's frames or more moves the usual place with it.

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
        placed = usual[np.isfinite(usual[:, 0])]
        span = (np.linalg.norm(placed[:, None] - placed[None], axis=-1).max()
                if len(placed) > 1 else np.inf)
        far = np.maximum(np.maximum(factor * typical, min_px), span)
        with np.errstate(invalid="ignore"):
            stray = own > far  # NaN (a missing label, a keypoint never labeled): False
        for f in range(len(idx)):
            flagged = {k: (names[j], near) for k, (j, near) in _slips_in_frame(
                pts[f], own[f], dist[f], typical, factor, ratio, min_px).items()}
            for k in np.flatnonzero(stray[f]):
                flagged.setdefault(int(k), ("", np.nan))
            for k in sorted(flagged):
                near_name, near = flagged[k]
                rows.append((frames.index[idx[f]], names[k], near_name, float(own[f, k]),
                             float(near), float(typical[k])))
    return pd.DataFrame(rows, columns=SLIP_COLUMNS)


def _slips_in_frame(pts: np.ndarray, own: np.ndarray, dist: np.ndarray, typical: np.ndarray,
                    factor: float, ratio: float, min_px: float) -> dict[int, tuple[int, float]]:
    """The flagged labels of one frame: keypoint -> (the keypoint it sits on, distance)."""
    labeled = np.flatnonzero(np.isfinite(own))
    candidates: dict[int, tuple[int, float]] = {}
    for k in labeled:
        j, near = _nearest_other(dist[k], k)
        if own[k] > max(factor * typical[k], min_px) and near * ratio < own[k]:
            candidates[k] = (j, near)
    # a face that moves far (a raised nose) can carry a label onto another keypoint's usual
    # place while that keypoint, labeled too, moved elsewhere: the label has not taken its
    # place. A slip either leaves the other label missing, moves it on as well (flagged), or
    # puts both on one spot, and a swap puts the other label off its place; so a label is
    # kept out when the keypoint it sits on is labeled, not flagged, not off its own place
    # onto another's (unless the face carried it too), and ratio times farther from it than
    # a slip would be
    excused: set[int] = set()
    while True:
        flagged = _grow(candidates, excused, own, dist, typical, min_px)
        more = {k for k, (j, _) in flagged.items()
                if np.isfinite(own[j]) and j not in flagged
                and (j in excused or not _displaced(j, own, dist, typical, min_px))
                and np.linalg.norm(pts[k] - pts[j]) * ratio >= own[k]}
        if not more:
            return flagged
        excused |= more
        candidates = {k: v for k, v in candidates.items() if k not in excused}


def _displaced(j: int, own: np.ndarray, dist: np.ndarray, typical: np.ndarray,
               min_px: float) -> bool:
    """Whether label ``j`` is off its own place and nearer another keypoint's: the partner
    of a swap, which excuses nothing even when it is not flagged itself (unless the face
    carried it there too, as found by an earlier pass)."""
    _, near = _nearest_other(dist[j], j)
    return bool(own[j] > max(2 * typical[j], min_px) and near < own[j])


def _grow(candidates: dict[int, tuple[int, float]], excused: set[int], own: np.ndarray,
          dist: np.ndarray, typical: np.ndarray, min_px: float) -> dict[int, tuple[int, float]]:
    """``candidates`` and the labels next to them in labeling order that slipped with them."""
    # a slip shifts a run of labels in labeling order; its inner links may move less than
    # the limit, so a neighbour of a flagged label needs only to lie nearer to another
    # keypoint's place than to its own
    flagged = dict(candidates)
    grown = bool(flagged)
    while grown:
        grown = False
        for k in np.flatnonzero(np.isfinite(own)):
            if k in flagged or k in excused or not ({k - 1, k + 1} & set(flagged)):
                continue
            if _displaced(k, own, dist, typical, min_px):
                flagged[k], grown = _nearest_other(dist[k], k), True
    return flagged


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
             f"(typically {r.typical_px:.0f}) and "
             + (f"{r.near_px:.0f} px from where '{r.near}' usually is (slipped or swapped "
                "label?)" if r.near else "farther than the labeled face is wide (stray click?)")
             for r in slips.head(limit).itertuples()]
    if len(slips) > limit:
        lines.append(f"... and {len(slips) - limit} more")
    return lines


def label_repeatability(frames: LabeledFrames, *, half: int = 24, closest: int = 50,
                        progress: bool = False) -> pd.DataFrame:
    """How far the labels of each keypoint scatter where the image did not change.

    Two frames of one video whose pixels around a keypoint are the same show the keypoint
    in the same place, so their two labels of it would coincide if clicks did not scatter.
    For every pair of frames of one video with the keypoint labeled in both, the mean
    absolute gray-level difference of the two frames is taken over the square of side
    ``2 * half + 1`` around each of the two labels, and the larger of the two kept (both
    places must look alike: a labeler who clicks one whisker in one frame and its
    neighbour in the next, on frames that are the same, has scattered). The ``closest``
    pairs with the smallest difference are kept, and the distances between their two
    labels measured.

    If each label scatters around the true place independently, alike and Gaussian, with
    SD sigma per axis, the distance between two labels has median 2 sqrt(ln 2) sigma and
    mean sqrt(pi) sigma, and a label's distance from the true place has mean sqrt(pi / 2)
    sigma. So ``floor_px``, the kept pairs' median distance ``pair_px`` times
    sqrt(pi / (8 ln 2)) (about 0.75), is the mean error that a tracker finding the true
    place in every frame would still score against these labels; ``mean_floor_px``, their
    mean distance over sqrt(2), is the same for Gaussian scatter, and higher where a few
    labels of unchanged frames lie far apart (a whisker clicked on its neighbour); it then
    overstates what those labels cost a mean error, by up to about sqrt(2) (a share p of
    far labels puts about 2p of the pairs far apart), and is a rough guide.

    These are estimates, not bounds. Where even the closest pairs differ in the squares
    (``image_diff``, gray levels; compare the keypoints whose closest pairs differ least)
    the keypoint may have moved between them and the floors overstate the scatter, as they
    do where ``pair_px`` is near ``moving_px``; a keypoint on a plain patch can move without
    changing its square much. Clicks on similar frames that agree more than independent
    ones would understate it. The kept pairs share frames (``frames`` counts them), so one
    frame's label can enter many of them. Labels placed on a coarse grid make the distances
    take few values. Frame pixels are read in gray (:func:`vit_facemap.images.load_image`);
    ``half`` is in those pixels. One video's frames are held in memory at a time.

    Columns: ``keypoint``, ``pairs`` (pairs of frames of one video and one size with both
    labels and both squares reaching into the frame; a square is cut at the frame's edge),
    ``used`` (pairs kept), ``frames`` (frames among them), ``image_diff`` (the largest
    difference among them), ``pair_px`` (their median label distance), ``floor_px``,
    ``mean_floor_px`` and ``moving_px`` (median label distance over all pairs: how far the
    keypoint moves between frames in general). A keypoint without a pair gets NaN. The
    settings are in the table's ``attrs["settings"]``.
    """
    if half < 1 or closest < 1:
        raise ValueError(f"half and closest must be >= 1, got half={half}, closest={closest}")
    if not len(frames):
        raise ValueError("no frames: label repeatability needs frames of one video to compare")
    n_kp = len(frames.bodyparts)
    found: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in range(n_kp)]
    videos = frames.videos
    paths = frames.image_paths
    for video in tqdm(np.unique(videos), desc="label repeatability", disable=not progress):
        rows = np.flatnonzero(videos == video)
        images = [load_image(paths[i], mode="L") for i in rows]
        for shape in sorted({im.shape for im in images}):
            same = [a for a, im in enumerate(images) if im.shape == shape]
            stack = np.stack([images[a] for a in same])
            for k in range(n_kp):
                found[k].append(_pairs(stack, frames.keypoints[rows[same], k], rows[same], half))
    out = []
    for k, name in enumerate(frames.bodyparts):
        diff, dist, members = (np.concatenate(x) for x in zip(*found[k], strict=True))
        if not len(diff):
            out.append((name, 0, 0, 0, *[np.nan] * 5))
            continue
        keep = np.argsort(diff, kind="stable")[:closest]
        pair_px = float(np.median(dist[keep]))
        out.append((name, len(diff), len(keep), len(np.unique(members[keep])),
                    float(diff[keep].max()), pair_px, pair_px * FLOOR_PER_PAIR,
                    float(dist[keep].mean() / np.sqrt(2)), float(np.median(dist))))
    table = pd.DataFrame(out, columns=REPEAT_COLUMNS)
    table.attrs["settings"] = {"half": half, "closest": closest}
    return table


def _pairs(stack: np.ndarray, kp: np.ndarray, rows: np.ndarray, half: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every pair of frames of ``stack`` (one video, one size) with the point labeled in
    both: the image difference around the two labels, the label distance, and the pair's
    two rows of the set (``(pairs, 2)``)."""
    labeled = np.flatnonzero(np.isfinite(kp).all(-1))
    n = len(labeled)
    h, w = stack.shape[1:]
    # around[a, b]: frames a and b compared over the square around frame a's label
    around = np.full((n, n), np.nan)
    for a, i in enumerate(labeled):
        cx, cy = np.round(kp[i]).astype(int)
        x0, x1 = max(cx - half, 0), min(cx + half + 1, w)
        y0, y1 = max(cy - half, 0), min(cy + half + 1, h)
        if x1 > x0 and y1 > y0:  # else the label lies outside the frame: no square
            crops = stack[labeled, y0:y1, x0:x1].astype(np.int16)
            around[a] = np.abs(crops - crops[a]).mean(axis=(1, 2))
    a, b = np.triu_indices(n, 1)
    diff = np.maximum(around[a, b], around[b, a])
    ok = np.isfinite(diff)
    a, b = labeled[a[ok]], labeled[b[ok]]
    dist = np.linalg.norm(kp[a] - kp[b], axis=-1)
    return diff[ok], dist, np.stack([rows[a], rows[b]], axis=-1)
