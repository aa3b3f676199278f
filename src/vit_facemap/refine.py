"""Second, top-down stages of the tracker: the eye, nose or other parts seen again on a crop.

The first stage sees the whole face box shrunk to the model input: on ``schroeder`` one
input pixel is about four frame pixels and the pupil is five input pixels wide, so a
pupil point cannot be placed to a few frame pixels however well the network learns. The
second stage is a keypoint model, by default the first stage's network with the small conv
stem and the crop's local contrast equalised (see ``model``),
trained on square crops around the eye (``factor`` times the eye's typical extent in the
training labels, resized to ``input_size``), at close to the frame's own resolution. At prediction time the crop is
centred on the first stage's estimate of the refined keypoints (less any point put farther
off than the crop is wide from the group's median: :func:`estimate_centres`), and their
positions and confidences are replaced by the second stage's.

Training crops are centred on the labels' centre, shifted by up to ``jitter`` of the crop
side and resized by up to ``zoom``, so the second stage learns to work from an imperfect
first estimate; ``copies`` such crops are cut per labeled frame.

Keypoints are refined in groups, one second-stage network per group, each with an equal
part of ``share`` of the budget. By default (``auto="parts"``) there is a group for each
part of the face a set labels: the keypoints whose names hold "eye" or "pupil"; those
holding "nose"; those holding "whisker"; and those holding "mouth", "lip", "jaw", "chin"
or "tongue" (four groups on ``g7c1``, the eye and nose on ``schroeder``);
``auto="eye+nose"`` makes the first two alone (the default until the whisker and mouth
stages were measured to help), and ``auto="eye"`` the first; ``groups`` names them
explicitly. A group of one point has no extent, so its crop side is ``point_side`` of the
first stage's box. The run keeps each group's network in ``<run>/refine/<group>/`` (an
ordinary run folder whose ``config.json`` names the refined keypoints and the crop side),
so a run without that folder predicts with one stage. ``model`` changes second-stage model
settings from the first stage's (a first stage without positions and second stages with
them, say), ``augment`` its augmentation settings (wider rotation for the first stage
alone, say), and ``group_augment`` one group's over those (wider shifts for the nose alone).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vit_facemap.config import check_crop_shift, check_fields
from vit_facemap.transforms import InputMapping

REFINE_DIR = "refine"
# groups made from keypoint names (a name joins the first group with one of its words)
AUTO_GROUPS = {
    "eye": ("eye", "pupil"),
    "nose": ("nose",),
    "whisker": ("whisker",),
    "mouth": ("mouth", "lip", "jaw", "chin", "tongue"),
}
# auto setting -> the groups it makes (those the keypoint names allow)
AUTO = {"eye": ("eye",), "eye+nose": ("eye", "nose"), "parts": tuple(AUTO_GROUPS)}


@dataclass
class RefineConfig:
    share: float = 0.5          # share of the training budget (steps and minutes) for stage 2; 0: off
    # the second stages' minutes in all, at least (at most half the budget): under a short
    # budget their share of the minutes runs too few of their steps (issue #4's notes); 0: off
    min_minutes: float = 0.0
    groups: list[list[str]] = field(default_factory=list)  # keypoint groups; empty: see auto
    auto: str = "parts"         # eye: eye and pupil points | eye+nose: and the nose | parts: all four
    factor: float = 2.0         # crop side, in units of the group's median extent
    point_side: float = 0.2     # a one-point group's crop side, as a share of the first stage's box
    input_size: int = 128       # crop side in model input pixels
    jitter: float = 0.12        # training crop centre shift, uniform, in crop sides
    # training crop side scaled by a factor in [1 - zoom, 1 + zoom]: the crop side is fixed
    # in frame pixels, so an animal filmed smaller shows a smaller eye in it (as augment.scale)
    zoom: float = 0.4
    copies: int = 4             # training crops cut per labeled frame
    # model settings the second stages change from the first stage's (e.g. {"pos_embed":
    # true}, or another family's); by default the small conv stem, which places points in a
    # crop as well as the default first stage's ResNet stem at a fraction of its cost, and
    # each crop's local contrast equalised (CLAHE, clip limit 2: transforms.equalize), which
    # lets the eye stage see the pupil of an eye filmed dark; empty: the first stage's
    # network at the crop size (a first-stage weights file stays with the first stage when
    # the stem or family differs: models.with_settings)
    model: dict[str, Any] = field(default_factory=lambda: {"stem": "conv", "equalize": 2.0})
    # augmentation settings the second stages change from the first stage's (e.g. {"rotate":
    # 15.0}): a first stage that must find a face filmed from another angle may want wider
    # geometry than a crop stage placing an eyelid to a pixel; empty: the first stage's
    augment: dict[str, Any] = field(default_factory=dict)
    # one group's augmentation settings over ``augment``, by group name (e.g. {"nose":
    # {"translate": 0.16}}): a one-point stage must find its point tens of pixels from a
    # first estimate where an eye stage places eyelids to a pixel; empty: ``augment``'s
    group_augment: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_fields(self, "refine")
        if not 0.0 <= self.share < 1.0:
            raise ValueError(f"refine share must be in [0, 1), got {self.share}")
        if not self.min_minutes >= 0.0:
            raise ValueError(f"refine min_minutes must be >= 0, got {self.min_minutes}")
        if self.factor <= 0 or self.input_size < 16 or self.copies < 1:
            raise ValueError("refine factor must be > 0, input_size >= 16 and copies >= 1")
        if self.auto not in AUTO:
            raise ValueError(f"refine auto must be one of {tuple(AUTO)}, got {self.auto!r}")
        self.groups = [[str(p) for p in g] for g in self.groups]
        if {"input_w", "input_h"} & set(self.model):
            raise ValueError("refine model settings cannot set input_w / input_h: a second "
                             "stage's input is the square crop of side refine input_size")
        if "channels" in self.model:
            # tracking decodes a video's frames gray or in colour for the first stage alone
            raise ValueError("refine model settings cannot set channels: a second stage sees "
                             "the frames as the first stage reads them")

    def check_crops(self) -> None:
        """Refuse training crop settings that cut no crop (train.fit, before it trains).

        Not checked when a config is made: runs saved before these were refused trained
        with them, and their second stages predict from their saved crop side, so they
        still load.
        """
        # a zoom of 1 or more gave crop sides of zero or less, cut as 1-pixel crops without a
        # word (the eye locator's zoom of 1.5 means [1/1.5, 1.5]; this one is 1 +- zoom)
        if not 0.0 <= self.zoom < 1.0:
            raise ValueError(f"refine zoom must be in [0, 1) (crop sides are scaled by a factor "
                             f"in [1 - zoom, 1 + zoom]), got {self.zoom}")
        if self.jitter < 0 or self.point_side <= 0:
            raise ValueError(f"refine jitter must be >= 0 and point_side > 0, got jitter="
                             f"{self.jitter} and point_side={self.point_side}")


def refine_groups(bodyparts: Sequence[str], config: RefineConfig) -> dict[str, list[int]]:
    """Group name -> indices of the keypoints that group's second stage refines (empty: none)."""
    names = list(bodyparts)
    if config.groups:
        out = {}
        for i, group in enumerate(config.groups, 1):
            unknown = [p for p in group if p not in names]
            if unknown:
                raise ValueError(f"refine group {group} names {unknown}, which are not among the "
                                 f"keypoints {names}")
            taken = [p for p in group if any(names.index(p) in g for g in out.values())]
            if taken:
                # a later group would be cropped around points an earlier one already moved
                raise ValueError(f"refine groups overlap: {taken} are in more than one group")
            out[f"group{i}"] = [names.index(p) for p in group]
        return out
    wanted = AUTO[config.auto]
    out = {}
    for i, n in enumerate(names):
        group = next((g for g, words in AUTO_GROUPS.items()
                      if any(w in n.lower() for w in words)), None)
        if group in wanted:
            out.setdefault(group, []).append(i)
    return out


def group_centres(keypoints: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """Centre (N, 2) of each frame's points ``idx``: the middle of their bounding box (NaN if none)."""
    kp = np.asarray(keypoints, dtype=np.float64)[:, list(idx)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN frames are expected
        return (np.nanmin(kp, axis=1) + np.nanmax(kp, axis=1)) / 2


def _box_less_far(kp: np.ndarray, reach: Callable[[np.ndarray], np.ndarray]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The low and high corners (N, 2) of the box of each frame's points ``kp`` (N, P, 2)
    less those farther from the points' median than ``reach`` of their distances (N, P)
    from it allows, and that median (N, 2); NaN where no point is left."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN frames are expected
        median = np.nanmedian(kp, axis=1)
        dist = np.linalg.norm(kp - median[:, None], axis=-1)
        kept = np.where((dist > reach(dist))[..., None], np.nan, kp)
        return np.nanmin(kept, axis=1), np.nanmax(kept, axis=1), median


def estimate_centres(keypoints: np.ndarray, idx: Sequence[int], side: np.ndarray | float
                     ) -> np.ndarray:
    """Where a second stage centres its crop (N, 2) on a first-stage estimate: the middle of
    the points ``idx`` (:func:`group_centres`) less those farther than the crop ``side``
    from the points' median.

    One point put far off (an eyelid on the cheek, say) moves a box's middle by half its
    error, enough to cut the crop beside the eye the other points found. A point half a
    side from the median already lies outside a crop around it, but an elongated group's
    end (a nose's bottom on ``g7c1``) can sit that far and be right, and leaving it out
    cost that nose's crop stage; a whole side lies beyond its reach. Where no point is that
    far, this is :func:`group_centres`, where the training crops are centred (on the
    labels); where all are, the median.
    """
    kp = np.asarray(keypoints, dtype=np.float64)[:, list(idx)]
    reach = np.broadcast_to(np.asarray(side, dtype=np.float64), (len(kp),))[:, None]
    low, high, median = _box_less_far(kp, lambda dist: reach)
    centres = (low + high) / 2
    # every point that far (two points farther apart than the crop, an estimate scattered
    # over the face): no odd one out, and the median is the middle of where they are
    lost = ~np.isfinite(centres).all(-1)
    centres[lost] = median[lost]
    return centres


def facing_points(bodyparts: Sequence[str]) -> tuple[list[int], list[int]] | None:
    """Indices of the nose points and of the eye points (named as the crop stages' groups
    are, :func:`refine_groups`); None without both."""
    groups = refine_groups(bodyparts, RefineConfig(auto="eye+nose"))
    return (groups["nose"], groups["eye"]) if {"nose", "eye"} <= set(groups) else None


#: An eye point farther from the eye points' median than this many times their median
#: distance from it is left out of :func:`eye_boxes`. In the labels of both sets the
#: farthest point lies at most 4.0 times the median distance (a corner of a wide eye
#: around a small pupil); one eyelid put on the cheek lies about 17 times.
EYE_OUTLIER = 8.0


def eye_boxes(keypoints: np.ndarray, eye: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Middle (N, 2) and size (N,) of each frame's eye: the middle and diagonal of the box
    of the ``eye`` points, less any point farther from their median than
    :data:`EYE_OUTLIER` times the points' median distance from it (NaN without points).

    One eyelid point put on the cheek would move the box's middle by half its error and
    stretch the box several-fold.
    """
    kp = np.asarray(keypoints, dtype=np.float64)[:, list(eye)]
    low, high, _ = _box_less_far(
        kp, lambda dist: EYE_OUTLIER * np.nanmedian(dist, axis=1, keepdims=True))
    return (low + high) / 2, np.linalg.norm(high - low, axis=-1)


def nose_offsets(keypoints: np.ndarray, nose: Sequence[int], eye: Sequence[int]
                 ) -> list[list[float]] | None:
    """Where each ``nose`` point lies from the eye in a set's labels, in eye sizes
    (:func:`eye_boxes`): per point, the least and largest horizontal distance from the
    eye's middle (either side) and the least and largest vertical offset (down positive),
    each divided by the eye's size, over the frames with every eye point and that point
    labeled. None where a nose point has no such frame.

    Ratios, not pixels, so that they hold at any zoom; the horizontal side is left out, so
    that they hold for faces that point either way.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    whole = np.isfinite(kp[:, list(eye)]).all((1, 2))
    centre, size = eye_boxes(kp, eye)
    out = []
    for j in nose:
        ok = whole & np.isfinite(kp[:, j]).all(-1) & (size > 0)
        if not ok.any():
            return None
        off = (kp[ok, j] - centre[ok]) / size[ok, None]
        across, down = np.abs(off[:, 0]), off[:, 1]
        out.append([float(across.min()), float(across.max()), float(down.min()),
                    float(down.max())])
    return out


def group_extent(keypoints: np.ndarray, idx: Sequence[int]) -> float:
    """Median over frames of the larger side of the points' bounding box (0 for a single point)."""
    kp = np.asarray(keypoints, dtype=np.float64)[:, list(idx)]
    n_vis = (~np.isnan(kp).any(-1)).sum(1)
    if not n_vis.any():
        raise ValueError("no training frame has any of the refined keypoints labeled")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        side = np.nanmax(np.nanmax(kp, axis=1) - np.nanmin(kp, axis=1), axis=-1)
    side = side[(n_vis >= 2) & np.isfinite(side)]
    return float(np.median(side)) if len(side) else 0.0


def crop_side(keypoints: np.ndarray, idx: Sequence[int], box_side: float, config: RefineConfig
              ) -> float:
    """A group's crop side in frame pixels: ``factor`` extents, or ``point_side`` of the box
    for a group without extent (one point)."""
    extent = group_extent(keypoints, idx)
    return max(config.factor * extent if extent > 0 else config.point_side * box_side, 8.0)


def crop_mappings(centres: np.ndarray, sides: np.ndarray | float, input_size: int) -> list[InputMapping]:
    """Square crop boxes of the given sides around ``centres`` (frame pixels), one per frame."""
    centres = np.asarray(centres, dtype=np.float64)
    sides = np.broadcast_to(np.asarray(sides, dtype=np.float64), (len(centres),))
    out = []
    for (cx, cy), s in zip(centres, sides, strict=True):
        s = max(1, int(round(s)))
        out.append(InputMapping(int(round(cx - s / 2)), int(round(cy - s / 2)), s, s,
                                input_size, input_size))
    return out


def crop_offsets(shift: float) -> np.ndarray:
    """Where a second stage looks, as offsets (n, 2) of its crop's centre in crop sides: the
    crop itself, and for ``shift`` > 0 four more moved by ``shift`` left, right, up and down
    (test-time shifts; :class:`vit_facemap.predict.KeypointPredictor` averages the five).
    A ``shift`` outside [0, 0.5) is a ValueError (:func:`vit_facemap.config.check_crop_shift`).
    """
    s = check_crop_shift(shift)
    if s == 0:
        return np.zeros((1, 2))
    return np.array([(0, 0), (-s, 0), (s, 0), (0, -s), (0, s)])


def training_crops(keypoints: np.ndarray, idx: Sequence[int], side: float, config: RefineConfig,
                   seed: int) -> tuple[np.ndarray, list[InputMapping]]:
    """Rows of the frames to repeat and one jittered crop box per repeat.

    Frames without any refined point labeled are left out. Each kept frame appears
    ``config.copies`` times in a row (so a loader reads its image once).
    """
    rng = np.random.default_rng(seed)
    centres = group_centres(keypoints, idx)
    rows = np.flatnonzero(np.isfinite(centres).all(-1))
    rows = np.repeat(rows, config.copies)
    shift = rng.uniform(-config.jitter, config.jitter, (len(rows), 2)) * side
    sides = side * rng.uniform(1 - config.zoom, 1 + config.zoom, len(rows))
    return rows, crop_mappings(centres[rows] + shift, sides, config.input_size)

