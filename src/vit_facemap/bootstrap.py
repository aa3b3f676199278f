"""Paired bootstrap intervals for the differences the book's verdicts rest on.

Two models scored on the same held-out frames differ by a number (mean error, macro-F1) that
would change with other held-out animals or frames. The frames are not independent: frames
of one animal share its face, fur and rig, and labeled frames of one video share its
lighting and the poses of a stretch of time. The bootstrap here therefore resamples whole
groups with replacement, never single frames:

- held-out **animals** where the held-out frames come from several animals;
- where they come from one animal (``g7c1``: one held-out video), contiguous **blocks** of
  :data:`BLOCK_FRAMES` labeled frames in frame order within each video (a non-overlapping
  block bootstrap), so that neighbouring frames, which look alike, stay together.

Both models are resampled together (paired): each draw takes the same groups for both and
recomputes the statistic from the groups' pooled sums (a mean over all labeled keypoints,
or a macro-F1 over the summed confusion matrices), as the reported figures are computed.
The interval is the percentile interval of :data:`N_BOOT` draws from a seeded generator, so
a build gives the same interval every time. With few groups (4 held-out animals give only 35
distinct resamples) the interval is coarse and, if anything, too narrow: it says what these
groups allow, not what new animals would give. Below :data:`MIN_GROUPS` groups the book's
tables draw none (:func:`too_few_groups`), so give no verdict.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

N_BOOT = 2000
LEVEL = 0.95
# labeled frames per block where one animal is held out; g7c1's held-out video has 91
# labeled frames, so about nine blocks
BLOCK_FRAMES = 10
# the fewest groups an interval is drawn from. G groups give only C(2G-1, G) distinct
# resamples (1, 3, 10, 35 for G = 1 to 4): one group makes every resample the same and the
# interval a point, which "excludes zero" whatever the groups would show; with two to four
# the 2.5% and 97.5% percentiles fall on resamples made of copies of one or two groups, so
# the interval is little more than the range of the groups' own values, and all four agreeing
# on a direction happens by chance one time in eight. Below this no interval, so no verdict.
MIN_GROUPS = 5


def too_few_groups(n_groups: int, what: str) -> str:
    """Why no interval is drawn from ``n_groups`` groups (``what``: them in words), or ''
    where there are enough (:data:`MIN_GROUPS`)."""
    if n_groups >= MIN_GROUPS:
        return ""
    return (f"too few held-out groups ({n_groups}) for an interval: {what}, where "
            f"{MIN_GROUPS} are needed")


def group_bootstrap(per_group: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], *,
                    n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> dict[str, Any]:
    """Percentile interval of ``statistic`` under resampling of groups with replacement.

    ``per_group`` (G, ...) holds each group's additive sums (error sums and counts, confusion
    matrices); ``statistic`` maps summed arrays (B, ...) to (B,) values. Returns the
    estimate on all groups, the interval's ``low`` and ``high``, and what it was drawn from.
    """
    per_group = np.asarray(per_group, float)
    g = len(per_group)
    if g < 1:
        raise ValueError("no groups to resample")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, g, size=(n_boot, g))
    weights = np.stack([np.bincount(d, minlength=g) for d in draws]).astype(float)
    summed = np.tensordot(weights, per_group, axes=(1, 0))
    values = np.asarray(statistic(summed), float)
    estimate = float(np.asarray(statistic(per_group.sum(0)[None]), float)[0])
    alpha = (1 - level) / 2
    low, high = np.nanquantile(values, [alpha, 1 - alpha])
    return {"estimate": estimate, "low": float(low), "high": float(high), "level": level,
            "n_groups": g, "n_boot": n_boot, "seed": seed}


def excludes_zero(interval: dict[str, Any] | None) -> bool:
    """Whether an interval of :func:`group_bootstrap` lies entirely on one side of zero."""
    return interval is not None and (interval["low"] > 0 or interval["high"] < 0)


def _frame_number(name: str) -> int:
    found = re.findall(r"\d+", name.rsplit("/", 1)[-1])
    return int(found[-1]) if found else -1


def resampling_units(frames: Sequence[str], animals: Sequence[str],
                     block_frames: int = BLOCK_FRAMES) -> tuple[np.ndarray, str]:
    """Each frame's resampling unit and what the units are, in words.

    ``frames`` are DeepLabCut-style paths (``labeled-data/<video>/img<number>.png``),
    ``animals`` each frame's animal. Several animals: the animals. One animal: blocks of
    ``block_frames`` consecutive labeled frames (by image number) within each video; a
    video's last block of fewer than half of ``block_frames`` frames is part of the one
    before it.
    """
    from vit_facemap.dlc import video_of

    animals = np.asarray(animals).astype(str)
    if len(animals) != len(frames):
        raise ValueError(f"{len(animals)} animals for {len(frames)} frames")
    n_animals = len(set(animals.tolist()))
    if n_animals > 1:
        return animals, f"{n_animals} held-out animals"
    videos = np.array([video_of(f) for f in frames])
    units = np.empty(len(frames), dtype=object)
    n_blocks = 0
    for v in sorted(set(videos.tolist())):
        rows = np.flatnonzero(videos == v)
        order = rows[np.argsort([_frame_number(frames[i]) for i in rows], kind="stable")]
        # a last block of fewer than half a block's frames joins the one before: those
        # frames follow it closely (and look alike), and a unit of a frame or two counted
        # as one more block towards MIN_GROUPS (41 frames gave 5 blocks and a verdict, 40
        # gave 4 and none)
        full, rest = divmod(len(rows), block_frames)
        n_units = full + (rest > 0 and (2 * rest >= block_frames or full == 0))
        for rank, i in enumerate(order):
            units[i] = f"{v}#{min(rank // block_frames, n_units - 1)}"
        n_blocks += n_units
    n_videos = len(set(videos.tolist()))
    return (units.astype(str), f"{n_blocks} blocks of {block_frames} consecutive frames "
            f"from {n_videos} held-out video{'s' if n_videos > 1 else ''}")


def _per_unit(units: np.ndarray, *columns: np.ndarray) -> np.ndarray:
    names, inverse = np.unique(units, return_inverse=True)
    out = np.zeros((len(names), len(columns)))
    for j, c in enumerate(columns):
        np.add.at(out[:, j], inverse, c)
    return out


def mean_error_difference(errors_a: np.ndarray, errors_b: np.ndarray, units: Sequence[str], *,
                          n_boot: int = N_BOOT, seed: int = 0,
                          level: float = LEVEL) -> dict[str, Any] | None:
    """Bootstrap of mean error of ``b`` minus that of ``a`` (positive: ``a`` is closer).

    ``errors_*`` (N, K) are per-keypoint errors on the same frames (NaN: no label); the mean
    is over all labeled keypoints, as ``mean_px``. None where either has an infinite error (a
    missed prediction makes its mean infinite: no finite difference to draw).
    """
    a, b = np.asarray(errors_a, float), np.asarray(errors_b, float)
    if a.shape != b.shape or len(a) != len(units):
        raise ValueError(f"errors {a.shape} and {b.shape} for {len(units)} frames")
    if np.isinf(a).any() or np.isinf(b).any():
        return None
    la, lb = ~np.isnan(a), ~np.isnan(b)
    per = _per_unit(np.asarray(units).astype(str), np.where(la, a, 0).sum(1), la.sum(1),
                    np.where(lb, b, 0).sum(1), lb.sum(1))

    def diff(s: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return s[:, 2] / s[:, 3] - s[:, 0] / s[:, 1]

    return group_bootstrap(per, diff, n_boot=n_boot, seed=seed, level=level)


def macro_f1_of_confusion(confusion: np.ndarray) -> np.ndarray:
    """Macro-F1 of confusion matrices (..., C, C) (rows true, columns predicted) over the
    classes with true frames, as :func:`vit_facemap.classifier.classification_metrics`
    reports it: a resample of animals without one state is not scored 0 for that state."""
    c = np.asarray(confusion, float)
    tp = np.diagonal(c, axis1=-2, axis2=-1)
    denom = c.sum(-1) + c.sum(-2)  # 2 tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
    present = c.sum(-1) > 0
    n = present.sum(-1)
    return np.where(n > 0, (f1 * present).sum(-1) / np.maximum(n, 1), 0.0)


def macro_f1_difference(confusion_a: np.ndarray, confusion_b: np.ndarray, *,
                        n_boot: int = N_BOOT, seed: int = 0,
                        level: float = LEVEL) -> dict[str, Any]:
    """Bootstrap of macro-F1 of ``a`` minus that of ``b`` over groups (animals).

    ``confusion_*`` (G, C, C): each group's confusion matrix of the two models, groups in
    the same order.
    """
    a, b = np.asarray(confusion_a, float), np.asarray(confusion_b, float)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"confusion matrices {a.shape} and {b.shape}: need (groups, C, C) each")
    c = a.shape[-1]
    per = np.concatenate([a.reshape(len(a), -1), b.reshape(len(b), -1)], axis=1)

    def diff(s: np.ndarray) -> np.ndarray:
        return (macro_f1_of_confusion(s[:, :c * c].reshape(-1, c, c))
                - macro_f1_of_confusion(s[:, c * c:].reshape(-1, c, c)))

    return group_bootstrap(per, diff, n_boot=n_boot, seed=seed, level=level)
