"""Facial measures computed from keypoints, per frame.

The same function serves hand-placed labels and tracked videos: it takes an array of
keypoints (N frames, K keypoints, xy) and the keypoint names, and returns one row per
frame with every measure the names allow. A measure whose keypoints are missing (NaN) in
a frame is NaN in that frame; nothing is filled in.

Two keypoint vocabularies are understood (names are matched ignoring case, spaces,
underscores and hyphens):

- pupil/eyelid sets such as Schroeder's (``leftpupil``, ``rightpupil``, ``dorsalpupil``,
  ``ventralpupil``, ``lefteyelid``, ``righteyelid``, ``dorsaleyelid``, ``ventraleyelid``):
  pupil diameter = mean of the horizontal (left-right) and vertical (dorsal-ventral) pupil
  extents; eye width = lefteyelid to righteyelid; eye aperture = dorsal to ventral eyelid
  over eye width; pupil/eye ratio = pupil diameter over eye width (the quantity the
  pupil-state labels threshold, see :mod:`vit_facemap.states`).
- the 12-keypoint face of the ViT Facemap study (g7c1: ``eye top``, ``eye front``,
  ``eye bottom``, ``eye back``, nose, whiskers, mouth, lip): eye centre = mean of the four
  eye points; eye width = eye front to eye back; eye aperture = eye top to eye bottom over
  eye width; and each other point's position relative to the eye, in eye widths, in a
  frame attached to the eye: ``forward`` along the back-to-front eye axis and ``down``
  perpendicular to it (pointing to the lower half of the image), plus its ``distance``.
  Expressing positions in the eye's own frame and scale makes them comparable across
  camera distances and small head rotations.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

PUPIL_POINTS = ("leftpupil", "rightpupil", "dorsalpupil", "ventralpupil")
EYELID_POINTS = ("lefteyelid", "righteyelid", "dorsaleyelid", "ventraleyelid")
EYE_POINTS = ("eyetop", "eyefront", "eyebottom", "eyeback")
# Points of the 12-keypoint face that get eye-relative positions, in this order.
FACE_POINTS = ("nosetop", "nosetip", "nosebottom", "whisker1", "whisker2", "whisker3",
               "mouth", "lip")


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(name).lower())


def _column(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=-1)


# Units of the measures: lengths and positions in the frame's pixels, ratios and
# eye-relative positions in eye widths (see facial_measures).
PIXEL_MEASURES = ("pupil_horizontal", "pupil_vertical", "pupil_diameter", "pupil_x", "pupil_y",
                  "eye_width", "eye_x", "eye_y")
EYE_WIDTH_MEASURES = ("eye_aperture", "pupil_eye_ratio")


def measure_unit(column: str) -> str:
    """The unit of a column of :func:`facial_measures` ("px" or "eye widths"), "s" for a
    ``time_s`` column, "" for a column it does not make."""
    if column in PIXEL_MEASURES:
        return "px"
    if column in EYE_WIDTH_MEASURES or column.endswith(("_forward", "_down", "_distance")):
        return "eye widths"
    return "s" if column == "time_s" else ""


def facial_measures(keypoints: np.ndarray, bodyparts: Sequence[str]) -> pd.DataFrame:
    """Per-frame facial measures from keypoints (N, K, 2), NaN where a keypoint is missing.

    Returns a DataFrame with one row per frame and only the columns that ``bodyparts``
    allow (see the module docstring); lengths are in pixels, ratios and eye-relative
    positions are unitless (eye widths).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim == 2 and kp.shape[-1] == 2:
        kp = kp[None]
    if kp.ndim != 3 or kp.shape[-1] != 2:
        raise ValueError(f"keypoints must have shape (n_frames, n_keypoints, 2), got {kp.shape}")
    if kp.shape[1] != len(bodyparts):
        raise ValueError(
            f"keypoints have {kp.shape[1]} points per frame but {len(bodyparts)} bodyparts "
            "were named"
        )
    keys = [_key(b) for b in bodyparts]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"bodyparts named more than once: {dupes}")
    where = {k: i for i, k in enumerate(keys)}

    def has(*names: str) -> bool:
        return all(n in where for n in names)

    def pt(name: str) -> np.ndarray:
        return kp[:, where[name]]

    out: dict[str, np.ndarray] = {}
    # --- pupil / eyelid vocabulary (Schroeder) -----------------------------------------
    if has(*PUPIL_POINTS):
        horizontal = _dist(pt("leftpupil"), pt("rightpupil"))
        vertical = _dist(pt("dorsalpupil"), pt("ventralpupil"))
        out["pupil_horizontal"] = horizontal
        out["pupil_vertical"] = vertical
        out["pupil_diameter"] = (horizontal + vertical) / 2
        centre = np.stack([pt(n) for n in PUPIL_POINTS]).mean(axis=0)
        out["pupil_x"], out["pupil_y"] = centre[:, 0], centre[:, 1]
    if has("lefteyelid", "righteyelid"):
        out["eye_width"] = _dist(pt("lefteyelid"), pt("righteyelid"))
        # an eye of no width (corners on one point) has no ratios: NaN, not inf, which
        # would pass any pupil threshold
        width = np.where(out["eye_width"] > 0, out["eye_width"], np.nan)
        if has("dorsaleyelid", "ventraleyelid"):
            out["eye_aperture"] = _dist(pt("dorsaleyelid"), pt("ventraleyelid")) / width
        if "pupil_diameter" in out:
            out["pupil_eye_ratio"] = out["pupil_diameter"] / width
    # --- 12-keypoint face (g7c1) ---------------------------------------------------------
    if has(*EYE_POINTS):
        centre = np.stack([pt(n) for n in EYE_POINTS]).mean(axis=0)
        axis = pt("eyefront") - pt("eyeback")
        out["eye_width"] = np.linalg.norm(axis, axis=-1)
        width = np.where(out["eye_width"] > 0, out["eye_width"], np.nan)  # as above
        out["eye_x"], out["eye_y"] = centre[:, 0], centre[:, 1]
        out["eye_aperture"] = _dist(pt("eyetop"), pt("eyebottom")) / width
        with np.errstate(invalid="ignore", divide="ignore"):
            u = axis / width[:, None]
        v = np.stack([-u[:, 1], u[:, 0]], axis=-1)
        v = np.where(v[:, 1:2] < 0, -v, v)  # point "down" into the lower half of the image
        for name in FACE_POINTS:
            if name not in where:
                continue
            col = _column(bodyparts[where[name]])
            rel = (pt(name) - centre) / width[:, None]
            out[f"{col}_forward"] = np.einsum("nd,nd->n", rel, u)
            out[f"{col}_down"] = np.einsum("nd,nd->n", rel, v)
            out[f"{col}_distance"] = np.linalg.norm(rel, axis=-1)
    return pd.DataFrame(out, index=pd.RangeIndex(kp.shape[0], name="frame"))
