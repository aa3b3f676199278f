"""How each video frames the face: its size, turn and side, against the set's typical pose.

A network trained on faces of one size facing one way does not follow a new animal filmed
larger, smaller or from the other side: on ``schroeder``, the animals a recipe scaling faces
by 0.85-1.15 lost when they were held out (``benchmarks/tracker.py``'s per-animal columns,
``--ablations hybrid_narrow_scale``) have faces 0.7-0.9 times the median video's size, face
right where most face left, or are turned further than training turned them.
:func:`video_poses` measures this from the labels alone, so ``vit-facemap data inspect``
can say so before anything is trained.

A reflection is chosen only where it fits better, and keypoints named for an image side
keep their names under it, so a face seen from the front (both sides labeled) is not taken
for its own mirror image.

Each video's mean labeled pose is fitted to the set's typical pose by a similarity
transform (scale, rotation and, where it fits better, a reflection: SciPy's orthogonal
Procrustes). The typical pose is itself found by generalised Procrustes analysis over the
videos' poses, each weighted alike. ``size`` is the root mean square distance of a
video's mean keypoints from their centre; ``scale`` is that size over the median video's.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.linalg import orthogonal_procrustes
from scipy.stats import circmean

from vit_facemap.augment import AugmentConfig, resolve_hflip
from vit_facemap.dlc import LabeledFrames

POSE_COLUMNS = ["video", "n_frames", "n_keypoints", "size_px", "scale", "rotation_deg",
                "mirrored"]


# keypoints whose spread across their line is under 5% of their spread along it (5 px on a
# 100 px face, within labelling noise) have no side to tell: which side a video shows would
# be decided by the noise, and the rotation with it (by up to 180 degrees)
LINE_WIDTH = 0.05


def _centred(pose: np.ndarray) -> tuple[np.ndarray, float]:
    """``pose`` about its centre and its size (RMS distance from the centre)."""
    c = pose - pose.mean(axis=0)
    return c, float(np.sqrt((c ** 2).sum(axis=1).mean()))


def _fit(pose: np.ndarray, reference: np.ndarray, axis: np.ndarray | None = None
         ) -> tuple[np.ndarray, bool, float]:
    """Unit-size ``pose`` rotated (and reflected where that fits better) onto the unit-size
    ``reference``; whether it was reflected; its rotation in degrees. ``axis``: the direction
    of a ``reference`` whose points lie on a line, which a reflection across that line leaves
    in place, so there the fit is kept a rotation."""
    r, _ = orthogonal_procrustes(pose, reference)
    mirrored = bool(np.linalg.det(r) < 0)
    if mirrored and axis is not None:
        r = r @ (2 * np.outer(axis, axis) - np.eye(2))
        mirrored = False
    # the rotation part: a left-right mirror first (x -> -x), then r's rotation
    rot = np.diag([-1.0, 1.0]) @ r if mirrored else r
    angle = float(np.degrees(np.arctan2(rot[0, 1], rot[0, 0])))
    return pose @ r, mirrored, angle


def _line_axis(pose: np.ndarray) -> np.ndarray | None:
    """The direction of a centred ``pose`` whose points lie on a line (within
    :data:`LINE_WIDTH` of its length), else None."""
    _, s, vt = np.linalg.svd(pose, full_matrices=False)
    return vt[0] if s[1] <= LINE_WIDTH * s[0] else None


def video_poses(frames: LabeledFrames, *, iterations: int = 5) -> pd.DataFrame:
    """One row per video (columns :data:`POSE_COLUMNS`) of a labeled set.

    Only keypoints labeled in every video enter the fit (a pose needs the same points on
    both sides); a set with fewer than three such keypoints, or one video, gives an empty
    table. ``mirrored`` is relative to the typical pose, which follows the videos that
    make up the most: in a set filmed mostly from the left, the videos filmed from the
    right are the mirrored ones. Keypoints that lie on a line (:data:`LINE_WIDTH`) have no
    side: no video is called mirrored there.
    """
    videos = frames.videos
    names, counts = np.unique(videos, return_counts=True)
    if len(names) < 2 or len(frames.bodyparts) < 3:
        return pd.DataFrame(columns=POSE_COLUMNS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a keypoint never labeled in a video
        means = np.stack([np.nanmean(frames.keypoints[videos == v], axis=0) for v in names])
    shared = np.isfinite(means).all(axis=(0, 2))
    if shared.sum() < 3:
        return pd.DataFrame(columns=POSE_COLUMNS)
    sizes, unit = [], []
    for pose in means[:, shared]:
        c, size = _centred(pose)
        sizes.append(size)
        unit.append(c / size if size > 0 else c)
    # start from the video with most frames: a typical pose, not an average of both sides
    reference = unit[int(np.argmax(counts))]
    axis = _line_axis(reference)
    for _ in range(iterations):
        reference, size = _centred(np.mean([_fit(u, reference, axis)[0] for u in unit], axis=0))
        reference = reference / max(size, 1e-12)
        axis = _line_axis(reference)
    fits = [_fit(u, reference, axis) for u in unit]
    mirrored = np.array([f[1] for f in fits])
    if mirrored.sum() > len(names) / 2:
        # the reference ended up on the minority side: name the minority as mirrored
        mirrored = ~mirrored
    median = float(np.median(sizes))
    # the typical pose's own turn is arbitrary (it started from one video): turns are
    # given from the videos' circular mean
    angles = np.array([f[2] for f in fits])
    mean_angle = np.degrees(circmean(np.radians(angles), high=np.pi, low=-np.pi))
    turn = (angles - mean_angle + 180.0) % 360.0 - 180.0
    return pd.DataFrame({
        "video": names.tolist(),
        "n_frames": counts,
        "n_keypoints": int(shared.sum()),
        "size_px": np.round(sizes, 1),
        "scale": np.round(np.array(sizes) / median, 3) if median > 0 else np.nan,
        "rotation_deg": np.round(turn, 1),
        "mirrored": mirrored,
    })


def mirrored_videos(poses: pd.DataFrame) -> list[str]:
    """The videos of a :func:`video_poses` table that show the face from the other side."""
    if poses.empty:
        return []
    return poses.loc[poses["mirrored"].astype(bool), "video"].tolist()


def describe_poses(poses: pd.DataFrame, augment: AugmentConfig | None = None, *,
                   bodyparts: Sequence[str]) -> list[str]:
    """Warnings for what ``augment`` (default: :class:`AugmentConfig`'s defaults) does not
    bridge: videos filmed from the other side without flips, a spread of face sizes wider
    than its scale range, and videos turned further than its rotation from the mean.
    ``bodyparts``: the set's keypoint names, which with the videos decide whether
    ``hflip="auto"`` flips (:func:`vit_facemap.augment.resolve_hflip`)."""
    if poses.empty:
        return []
    a = augment if augment is not None else AugmentConfig()
    out = []
    flipped = mirrored_videos(poses)
    side = (f"{len(flipped)} of {len(poses)} videos show the face from the other side "
            f"({', '.join(flipped)}): ")
    if flipped and resolve_hflip(a, bodyparts, flipped)[0] == 0:
        out.append(side + "a model learns each side from its own videos alone unless training "
                   "flips the frames (augment.hflip: 0.5, augment.flip_pairs: auto)")
    elif flipped and resolve_hflip(a, bodyparts)[0] == 0:
        # "auto" decides on the training videos: with these held out it does not flip
        out.append(side + "training flips the frames (augment.hflip: auto) only where one of "
                   "them is among the training videos; held out, they meet a model that saw "
                   "one side alone (augment.hflip: 0.5 flips always)")
    bridged = (1 + a.scale) / (1 - a.scale)
    small, large = poses.loc[poses["scale"].idxmin()], poses.loc[poses["scale"].idxmax()]
    if large["scale"] / small["scale"] > bridged:
        out.append(f"face sizes differ by a factor of {large['scale'] / small['scale']:.2f} "
                   f"between videos (smallest {small['video']}, {small['size_px']:g} px; largest "
                   f"{large['video']}, {large['size_px']:g} px), more than the {bridged:.2f} "
                   f"that scaling by {1 - a.scale:g}-{1 + a.scale:g} bridges: an animal filmed "
                   "at either end may not be followed when it is held out (augment.scale "
                   "widens the range)")
    turned = poses[poses["rotation_deg"].abs() > a.rotate]
    if len(turned):
        listed = ", ".join(f"{v} ({d:+.1f})" for v, d in zip(turned["video"],
                                                            turned["rotation_deg"], strict=True))
        out.append(f"{len(turned)} of {len(poses)} videos show the face turned by more than the "
                   f"{a.rotate:g} degrees training rotates it (augment.rotate), from the videos' "
                   f"mean: {listed}")
    return out
