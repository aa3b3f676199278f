"""Keypoint errors in the frames' own pixels: mean, median, RMSE, PCK, per keypoint.

PCK counts a keypoint as correct when its error is below ``threshold`` times a reference
length measured on the hand-placed labels of the same frame: the eye's width (eye front to
eye back) for the ViT_Facemap set, lefteyelid to righteyelid for Schroeder's. Sets with
neither use the diagonal of the frame's labeled-keypoint bounding box (recorded in the
output, so numbers are never compared across definitions unknowingly). A frame without a
reference length of its own (a label of the pair missing) uses the median of the evaluated
set's lengths: computed once for the whole set, so that :func:`group_metrics` judges every
frame against the same threshold as :func:`keypoint_metrics` does. A set where no frame has
a reference length has no PCK (None, overall, per keypoint and per group).

A prediction that is NaN where a label exists is a miss of infinite error: it makes
``mean_px`` and ``rmse_px`` (and the mean of its keypoint and group) infinite, never a
smaller number from the frames that were predicted; ``median_px`` and PCK stay finite.

``n_frames`` counts every frame scored, those without any label too (DeepLabCut keeps frames
extracted but not yet labeled); the means are over the labeled keypoints,
``n_keypoints_labeled``, of the ``n_labeled_frames`` frames with at least one label.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

REFERENCE_PAIRS = (("eye front", "eye back"), ("lefteyelid", "righteyelid"))


def reference_pair(bodyparts: Sequence[str]) -> tuple[str, str] | None:
    for a, b in REFERENCE_PAIRS:
        if a in bodyparts and b in bodyparts:
            return a, b
    return None


def reference_lengths(true: np.ndarray, bodyparts: Sequence[str]) -> tuple[np.ndarray, str]:
    """Per-frame reference length (N,) and its definition; NaN frames get the set's median."""
    pair = reference_pair(bodyparts)
    if pair is not None:
        i, j = bodyparts.index(pair[0]), bodyparts.index(pair[1])
        length = np.linalg.norm(true[:, i] - true[:, j], axis=-1)
        name = f"{pair[0]} to {pair[1]}"
    else:
        with warnings.catch_warnings():
            # a frame without any label has no box: NaN, given the median below, as expected
            # (numpy's "All-NaN slice encountered" said nothing a user could act on)
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.nanmin(true, axis=1), np.nanmax(true, axis=1)
        length = np.linalg.norm(hi - lo, axis=-1)
        # one labeled point spans nothing: no length of its own (the set's median below)
        length[(np.isfinite(true).all(-1)).sum(1) < 2] = np.nan
        name = "labeled-keypoint bounding-box diagonal"
    if np.isnan(length).all():
        return np.full(len(true), np.nan), name
    return np.where(np.isnan(length), np.nanmedian(length), length), name


def keypoint_errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Euclidean error (N, K); NaN where the hand label is missing."""
    return np.sqrt(((np.asarray(pred, float) - np.asarray(true, float)) ** 2).sum(-1))


def scored_errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Euclidean error (N, K) as scored: NaN where the hand label is missing, infinite where
    a label exists and the prediction is NaN (a miss, never left out)."""
    true = np.asarray(true, float)
    err = keypoint_errors(pred, true)
    return np.where(np.isnan(err) & ~np.isnan(true).any(-1), np.inf, err)


def per_frame_record(pred: np.ndarray, true: np.ndarray, frames: Sequence[str],
                     animals: Sequence[str]) -> dict[str, list]:
    """Every keypoint's error per frame as a result saves it (:func:`scored_errors`, to
    0.001 px; None: no label; inf: a missed prediction), with the frames and their animals:
    what :mod:`vit_facemap.reports` reads back to bootstrap the gap between two models."""
    err = scored_errors(pred, true)
    return {"frames": list(frames), "animals": list(animals),
            "errors_px": [[None if np.isnan(e) else round(float(e), 3) for e in f]
                          for f in err]}


def _summary(err: np.ndarray, correct: np.ndarray, norm: np.ndarray,
             has_ref: np.ndarray) -> dict[str, float | int]:
    ok = ~np.isnan(err)
    n = int(ok.sum())
    if n == 0:
        return {"mean_px": None, "median_px": None, "rmse_px": None, "pck": None,
                "mean_normalised": None, "n": 0}
    e = err[ok]
    # without a reference length there is no threshold: no PCK, rather than every
    # keypoint counted wrong (a comparison with NaN is False)
    judged = ok & has_ref
    return {
        "mean_px": float(e.mean()), "median_px": float(np.median(e)),
        "rmse_px": float(np.sqrt((e**2).mean())),
        "pck": float(correct[judged].mean()) if judged.any() else None,
        "mean_normalised": float(np.nanmean(norm[ok])) if not np.isnan(norm[ok]).all() else None,
        "n": n,
    }


def keypoint_metrics(
    pred: np.ndarray, true: np.ndarray, bodyparts: Sequence[str], pck_threshold: float = 0.1,
    reference: tuple[np.ndarray, str] | None = None,
) -> dict[str, Any]:
    """Overall and per-keypoint errors of ``pred`` against ``true`` (both (N, K, 2), frame pixels).

    ``reference``: the frames' reference lengths (N,) and their definition, as
    :func:`reference_lengths` gives them for a larger set these frames are part of (what
    :func:`group_metrics` passes); by default those of ``true`` itself.
    """
    bodyparts = list(bodyparts)
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    if pred.shape != true.shape:
        raise ValueError(f"pred {pred.shape} and true {true.shape} differ in shape")
    err = scored_errors(pred, true)  # a NaN prediction where a label exists: infinite
    ref, ref_name = reference_lengths(true, bodyparts) if reference is None else reference
    ref = np.asarray(ref, float)
    if ref.shape != (len(true),):
        raise ValueError(f"{ref.shape} reference lengths for {len(true)} frames")
    with np.errstate(invalid="ignore"):  # a missed keypoint (inf) in a frame without a reference
        norm = err / ref[:, None]
    correct = err <= pck_threshold * ref[:, None]
    has_ref = np.broadcast_to(np.isfinite(ref)[:, None], err.shape)
    overall = _summary(err, correct, norm, has_ref)
    out: dict[str, Any] = {
        **{k: overall[k] for k in ("mean_px", "median_px", "rmse_px", "pck")},
        "pck_threshold": pck_threshold,
        "reference": ref_name,
        "reference_median_px": float(np.nanmedian(ref)) if not np.isnan(ref).all() else None,
        "mean_normalised": overall["mean_normalised"],
        "n_frames": len(true),
        # the frames the errors come from: n_frames also counts frames without any label
        "n_labeled_frames": int((~np.isnan(true).any(-1)).any(-1).sum()),
        "n_keypoints_labeled": overall["n"],
        "per_keypoint": {bp: _summary(err[:, k], correct[:, k], norm[:, k], has_ref[:, k])
                         for k, bp in enumerate(bodyparts)},
    }
    return out


def group_metrics(
    pred: np.ndarray, true: np.ndarray, bodyparts: Sequence[str], groups: Sequence[str],
    pck_threshold: float = 0.1,
) -> dict[str, dict[str, Any]]:
    """Mean and median error, PCK, frame, labeled-frame and labeled-keypoint count of each
    group of frames (a video, an animal).

    A mean over all frames hides an animal or a rig that the model cannot follow; this is
    the same table per group, keyed by the group's name. The reference lengths of PCK are
    those of all the frames given (a frame without its own gets their median), so every
    frame has the same threshold here as in :func:`keypoint_metrics` of all of them.
    """
    groups = np.asarray(groups).astype(str)
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    if len(groups) != len(true):
        raise ValueError(f"{len(groups)} group names for {len(true)} frames")
    ref, ref_name = reference_lengths(true, list(bodyparts))
    out = {}
    for g in sorted(set(groups.tolist())):
        rows = groups == g
        m = keypoint_metrics(pred[rows], true[rows], bodyparts, pck_threshold,
                             reference=(ref[rows], ref_name))
        # the overall mean is over labeled keypoints: their count lets groups be pooled
        out[g] = {k: m[k] for k in ("mean_px", "median_px", "pck", "n_frames",
                                    "n_labeled_frames", "n_keypoints_labeled")}
    return out
