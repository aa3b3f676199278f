"""Keypoint-aware augmentation with albumentations, applied to the model-sized input.

Geometry (rotation, scale, translation, optional horizontal flip) moves the keypoints
with the pixels; keypoints that leave the image become missing (NaN), never clipped to
the border. Flipping swaps left/right keypoints: ``flip_pairs`` lists them, or ``"auto"``
pairs the names that differ only in left / right (:func:`mirror_pairs`); every other name is
taken to be anatomical, the same point in the mirror image (``eye front``, ``nose tip``), and
a name with a side word that is in no pair is refused. Side names are read as sides of the
*image*, as in ``schroeder``, where ``lefteyelid`` is the image-left eye corner whichever
way the mouse faces. A set whose names mean something else under a mirror without a side
word (``eye1`` / ``eye2`` for image sides) must list its pairs or set ``hflip=0``: "auto"
cannot tell. Missing keypoints ride along at a dummy position and come back as NaN.

Flips are on by default only where the training set calls for them (``hflip="auto"``,
:func:`resolve_hflip`): where keypoint names pair left / right, or where some videos show
the face from the other side. On ``schroeder`` (paired names, two animals filmed facing
the other way) flips lowered the mean error on three of four held-out splits and left the
fourth within the spread between seeds (28-minute runs; issue #4's notes), most where a
held-out animal faces the other way,
while some animals that face like most training animals lost up to about 1 px; on ``g7c1``
(one side, anatomical names) they cost about 0.3 px (``benchmarks/tracker.py --ablations
hybrid_flip,hybrid_no_flip``), so there "auto" leaves them off.

Two settings for eye crops, off by default, change a pupil rather than the whole input:
``pupil`` scales it inside the eye (:func:`scale_pupil`) and ``glints`` moves the corneal
reflections off it (:func:`replace_glints`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from vit_facemap.config import check_fields

# a side word: "left" / "right" not preceded by a letter ("leftpupil", "eye_right", not
# "cleft" or "upright"), capitalised after a lower-case letter ("eyeLeft"), or a lone L / R
# ("eye_L", "nose(r)", "eyeR"; not "r1")
_SIDE = re.compile(r"(?<![A-Za-z])(?:left|right|Left|Right|LEFT|RIGHT)|(?<=[a-z])(?:Left|Right|LEFT|RIGHT)"
                   r"|(?<![A-Za-z0-9])[lLrR](?![A-Za-z0-9])|(?<=[a-z])[LR](?![A-Za-z0-9])")
_OTHER = {"left": "right", "right": "left", "l": "r", "r": "l"}


def _mirrored(name: str) -> str:
    """``name`` with every side word swapped for the other side, in the same case."""
    def swap(m: re.Match) -> str:
        word, new = m.group(0), _OTHER[m.group(0).lower()]
        if word.isupper():
            return new.upper()
        return new.capitalize() if word[0].isupper() else new
    return _SIDE.sub(swap, name)


def side_names(bodyparts: Sequence[str]) -> list[str]:
    """The keypoint names that name a side (left / right, L / R)."""
    return [n for n in bodyparts if _SIDE.search(n)]


def mirror_pairs(bodyparts: Sequence[str]) -> list[list[str]]:
    """Pairs of keypoint names that differ only in the side they name.

    ``leftpupil`` / ``rightpupil``, ``eye_L`` / ``eye_r`` and ``Left ear`` / ``Right ear``
    pair up (case is ignored when looking for the partner). Names with a side word and no
    partner are not paired; :class:`KeypointAugmenter` refuses to flip them (see
    :func:`side_names`).
    """
    names = list(bodyparts)
    lower = {n.lower(): n for n in names}
    pairs: list[list[str]] = []
    for name in names:
        mirrored = _mirrored(name)
        partner = lower.get(mirrored.lower()) if mirrored != name else None
        if partner is not None and [partner, name] not in pairs:
            pairs.append([name, partner])
    return pairs


def _pairs_and_lone(config: AugmentConfig, bodyparts: list[str]
                    ) -> tuple[list[list[str]] | str, list[str]]:
    """The flip pairs of ``config`` for these names ("auto": :func:`mirror_pairs`), and the
    names with a side word in none of them (none where the pairs are a bad string)."""
    pairs = mirror_pairs(bodyparts) if config.flip_pairs == "auto" else config.flip_pairs
    if isinstance(pairs, str):
        return pairs, []
    paired = {n for p in pairs for n in p}
    return pairs, [n for n in side_names(bodyparts) if n not in paired]


def _swap(pairs: Sequence[Sequence[str]], bodyparts: list[str]) -> np.ndarray:
    """The keypoint order of the mirror image: index i of a flipped face holds keypoint
    ``swap[i]`` of the face as filmed."""
    swap = np.arange(len(bodyparts))
    seen: set[str] = set()
    for pair in pairs:
        if len(pair) != 2 or pair[0] == pair[1]:
            raise ValueError(f"a flip pair names two different keypoints, got {list(pair)}")
        a, b = pair
        if a not in bodyparts or b not in bodyparts:
            raise ValueError(f"flip pair {a!r}/{b!r} is not among the keypoints {bodyparts}")
        twice = sorted({a, b} & seen)
        if twice:
            raise ValueError(f"flip pairs name {twice} more than once: {[list(p) for p in pairs]}")
        seen |= {a, b}
        i, j = bodyparts.index(a), bodyparts.index(b)
        swap[i], swap[j] = j, i
    return swap


def flip_swap(config: AugmentConfig, bodyparts: Sequence[str]) -> np.ndarray | None:
    """The keypoint order of the mirror image (:func:`_swap`) for a network trained with
    ``config``, or None where it trained without flips (it never saw a mirrored face)."""
    names = list(bodyparts)
    if resolve_hflip(config, names)[0] == 0:
        return None
    pairs, _ = _pairs_and_lone(config, names)
    if isinstance(pairs, str):
        raise ValueError(f"flip_pairs must be a list of name pairs or 'auto', got {pairs!r}")
    return _swap(pairs, names)


# the flip probability "auto" stands for where a set calls for flips: a mirrored face as
# often as the one filmed
AUTO_HFLIP = 0.5


def resolve_hflip(config: AugmentConfig, bodyparts: Sequence[str],
                  mirrored_videos: Sequence[str] = ()) -> tuple[float, str]:
    """The flip probability of ``config`` for a set with these keypoint names, and why.

    A number is kept as given. ``"auto"`` is :data:`AUTO_HFLIP` where the flip pairs
    (``flip_pairs``, or the names :func:`mirror_pairs` pairs) are not empty or where
    ``mirrored_videos`` (:func:`vit_facemap.poses.video_poses`' ``mirrored`` videos of the
    training set) are, and 0 otherwise; also 0 where a name of one side is in no pair,
    which a flip would put on the wrong side of the mirror image.
    """
    if config.hflip != "auto":
        return float(config.hflip), "set in the recipe"
    pairs, lone = _pairs_and_lone(config, list(bodyparts))
    if lone:
        return 0.0, (f"auto: off, the keypoints {lone} name a side of the image but are in no "
                     "flip pair (flip_pairs lists the pairs)")
    if pairs:
        listed = ", ".join("/".join(p) for p in pairs)
        return AUTO_HFLIP, f"auto: on, the keypoints pair left / right ({listed})"
    if len(mirrored_videos):
        return AUTO_HFLIP, (f"auto: on, {len(mirrored_videos)} training video(s) show the face "
                            f"from the other side ({', '.join(mirrored_videos)})")
    return 0.0, ("auto: off, no keypoint names pair left / right and no training video shows "
                 "the face from the other side")


@dataclass
class AugmentConfig:
    rotate: float = 15.0          # degrees, uniform in [-rotate, rotate]
    # relative, uniform in [1 - scale, 1 + scale]: schroeder's animals are filmed at face sizes
    # 0.7-1.25 times the median video's (vit_facemap.poses), and with 0.15 held-out animals
    # at the small end were lost (benchmarks/tracker.py --ablations hybrid_narrow_scale)
    scale: float = 0.4
    translate: float = 0.08       # fraction of the input size
    # degrees, uniform in [-shear, shear] along each axis: a face filmed from above or at a
    # slant is skewed as well as turned, which rotation and per-axis scale alone do not make
    shear: float = 0.0
    brightness: float = 0.25
    contrast: float = 0.25
    blur: float = 0.2             # probability of a Gaussian blur
    noise: float = 0.2            # probability of Gaussian noise
    # probability, or "auto": on where the set calls for flips (resolve_hflip)
    hflip: float | str = "auto"
    flip_pairs: list[list[str]] | str = "auto"  # or a list of name pairs (mirror_pairs)
    p_geometric: float = 0.9
    # probability that a sample's rotation and shift are drawn from ranges twice as wide
    # (the scale range kept); 0: off. For a crop stage whose first estimate is sometimes far
    # off: twice the ranges in every sample brought far-off noses in and moved good ones off
    # (benchmarks/tracker.py --ablations hybrid_strong_geometry_nose), and a 30% tail in the
    # nose stage left schroeder split 1's far-off noses where they were (6.52 px against the
    # default's 6.76 on one machine, --ablations hybrid_wide_tail_nose)
    wide: float = 0.0
    # Two settings for an eye whose pupil is unlike the training animals' (both need points
    # named "pupil" and other "eye" points; off by default: on the held-out FG002, whose
    # pupil is wider than any training animal's and lit off-centre, neither moved its pupil
    # points more than a fraction of a pixel closer, one run each, benchmarks/tracker.py
    # --ablations hybrid_pupil,hybrid_glints):
    # pupil scaled inside the eye by a factor drawn log-uniformly in [1 / (1 + pupil),
    # 1 + pupil] (scale_pupil); 0: off
    pupil: float = 0.0
    # probability that the eye's corneal reflections are painted out and one to three drawn
    # at random places in it (replace_glints)
    glints: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self, "augmentation")
        if isinstance(self.hflip, str) and self.hflip != "auto":
            raise ValueError(f"augmentation hflip is a probability or 'auto', got {self.hflip!r}")
        if isinstance(self.flip_pairs, str) and self.flip_pairs != "auto":
            raise ValueError(f"flip_pairs must be a list of name pairs or 'auto', got "
                             f"{self.flip_pairs!r}")
        for name in ("hflip", "blur", "noise", "p_geometric", "glints", "wide"):
            if name == "hflip" and self.hflip == "auto":
                continue
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"augmentation {name} is a probability, got {getattr(self, name)}")
        # a scale of 1 or more drew factors down to 0 or below (an input shrunk to a point,
        # its keypoints with it) and NaN made every keypoint missing, both without a word
        if not 0 <= self.scale < 1:
            raise ValueError(f"augmentation scale must be in [0, 1) (images are scaled by a "
                             f"factor in [1 - scale, 1 + scale]), got {self.scale}")
        for name in ("rotate", "translate", "brightness", "contrast", "shear", "pupil"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"augmentation {name} must be a finite number, got "
                                 f"{getattr(self, name)}")
        # each is the half-width of a range drawn around 0 (+- degrees, +- share of the side,
        # +- change), so a sign means nothing: -15 was handed to albumentations as the
        # reversed range (15, -15) and drawn as +-15 without a word
        for name in ("rotate", "translate", "brightness", "contrast"):
            if getattr(self, name) < 0:
                raise ValueError(f"augmentation {name} is the half-width of a range around 0 and "
                                 f"must be >= 0, got {getattr(self, name)}")
        if self.pupil < 0:
            raise ValueError(f"augmentation pupil must be >= 0 (pupils are scaled by a factor in "
                             f"[1 / (1 + pupil), 1 + pupil]), got {self.pupil}")
        # past 45 degrees an axis folds onto the other and the face is no longer a face
        if not 0 <= self.shear <= 45:
            raise ValueError(f"augmentation shear must be in [0, 45] degrees, got {self.shear}")


def pupil_groups(bodyparts: Sequence[str]) -> tuple[list[int], list[int]]:
    """Indices of the pupil's points (names with "pupil") and of the eye's outline (other
    names with "eye": eyelids, eye corners), for :func:`scale_pupil` and
    :func:`replace_glints`."""
    low = [str(b).lower() for b in bodyparts]
    pupil = [i for i, b in enumerate(low) if "pupil" in b]
    outline = [i for i, b in enumerate(low) if "eye" in b and "pupil" not in b]
    return pupil, outline


RIM = 1.2  # scale_pupil's rim, in units of the eye outline's ellipse


def _eye_frame(outline: np.ndarray, rim: float = RIM) -> tuple[np.ndarray, np.ndarray]:
    """Centre and the matrix taking image points to eye coordinates, in which the ellipse
    along the outline's main axes through its outermost point, widened ``rim`` times, is the
    unit circle."""
    centre = outline.mean(0)
    _, vecs = np.linalg.eigh(np.cov((outline - centre).T))
    half = np.abs((outline - centre) @ vecs).max(0)
    to_eye = np.diag(1.0 / np.maximum(half, 1.0)) @ vecs.T
    reach = np.linalg.norm((outline - centre) @ to_eye.T, axis=1).max()
    # the rim a little outside the outline: the ellipse misses the eye's corners, and where
    # the warp ends (in the fur, not on the eyelid margin) shows no edge an eyelid point
    # could be learned from
    return centre, to_eye / (rim * max(reach, 1e-9))


def _to_rim(p: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Distance from ``p`` (inside the unit circle) to the circle along unit directions ``d``."""
    pd = d @ p
    return -pd + np.sqrt(pd ** 2 + 1.0 - p @ p)


def scale_pupil(image: np.ndarray, keypoints: np.ndarray, pupil: Sequence[int],
                outline: Sequence[int], factor: float) -> tuple[np.ndarray, np.ndarray]:
    """The pupil dilated (``factor`` > 1) or constricted (< 1) inside the eye.

    In eye coordinates (:func:`_eye_frame`: the ellipse of the outline's points, widened to
    ``RIM`` times, as the unit circle) each point's place between the pupil's centre (0) and
    the rim (1) along its ray is mapped piecewise linearly: scaled by ``factor`` up to a knee
    a little outside the pupil's median point, the iris and eyelids between knee and rim
    squeezed or stretched to fit, the rim and all outside it unmoved. A pupil that already
    fills its eye is dilated less (its scaled edge stays inside 0.95 of the rim). The
    keypoints move by the map the pixels move by. Returns the inputs as they are where fewer
    than three pupil or outline points are labeled or the pupil's centre is not well inside
    the eye.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    pts, rim = kp[list(pupil)], kp[list(outline)]
    pts, rim = pts[np.isfinite(pts).all(1)], rim[np.isfinite(rim).all(1)]
    if len(pts) < 3 or len(rim) < 3 or factor == 1.0:
        return image, kp
    centre, to_eye = _eye_frame(rim)
    from_eye = np.linalg.inv(to_eye)
    p = (pts.mean(0) - centre) @ to_eye.T
    if p @ p > 0.8 ** 2:
        return image, kp

    def place(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = (x - centre) @ to_eye.T - p
        r = np.linalg.norm(d, axis=-1)
        unit = d / np.maximum(r, 1e-12)[..., None]
        reach = _to_rim(p, unit.reshape(-1, 2)).reshape(r.shape)
        return r / reach, unit, reach

    t_pts = place(pts)[0]
    # the knee sits a little outside the pupil's edge, so its dark-to-iris gradient scales
    # whole; an image point at t maps to s t below it
    knee = min(1.2 * float(np.median(t_pts)), 0.8)
    if knee < 1e-3:  # the pupil's points on one spot: no size to scale
        return image, kp
    s = min(float(factor), 0.95 / knee)

    def forward(t: np.ndarray) -> np.ndarray:
        return np.where(t < knee, s * t,
                        np.where(t < 1.0, s * knee + (t - knee) * (1 - s * knee) / (1 - knee), t))

    def back(t: np.ndarray) -> np.ndarray:
        return np.where(t < s * knee, t / s,
                        np.where(t < 1.0, knee + (t - s * knee) * (1 - knee) / (1 - s * knee), t))

    def move(x: np.ndarray, fn: Any) -> np.ndarray:
        t, unit, reach = place(x)
        u = p + unit * (fn(t) * reach)[..., None]
        return centre + u @ from_eye.T

    # only pixels inside the rim move: the map is made over the rim's bounding box
    h, w = image.shape[:2]
    half = np.linalg.norm(from_eye, axis=1)
    x0, y0 = np.maximum(np.floor(centre - half), 0).astype(int)
    x1, y1 = np.minimum(np.ceil(centre + half) + 1, [w, h]).astype(int)
    out = image.copy()
    if x1 > x0 and y1 > y0:
        grid = np.stack(np.meshgrid(np.arange(x0, x1, dtype=np.float64),
                                    np.arange(y0, y1, dtype=np.float64)), -1)
        src = move(grid, back).astype(np.float32)
        out[y0:y1, x0:x1] = cv2.remap(image, src[..., 0], src[..., 1], cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REFLECT_101
                                      ).reshape(out[y0:y1, x0:x1].shape)
    moved = kp.copy()
    ok = np.isfinite(kp).all(1)
    moved[ok] = move(kp[ok], forward)
    return out, moved


def replace_glints(image: np.ndarray, outline: np.ndarray, spots: np.ndarray) -> np.ndarray:
    """The eye's corneal reflections painted out and ``spots`` painted in their stead.

    ``outline``: the eye's outline points (at least three, labeled); the reflections are the
    pixels inside its ellipse brighter than halfway from the eye's median to white, filled
    from their surroundings (OpenCV's Telea inpainting). ``spots``: (N, 4) rows of x, y in
    eye coordinates (the unit disc of the outline's ellipse, its axes in no set order or
    sense), Gaussian sigma in pixels and peak grey level. The keypoints do not move: where
    the network saw the pupil's centre under the reflection in every training animal, it
    placed the pupil of an animal lit from elsewhere on its reflection (FG002, issue #4's
    notes).
    """
    centre, to_eye = _eye_frame(np.asarray(outline, dtype=np.float64), rim=1.0)
    h, w = image.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    u = (np.stack([xs, ys], -1) - centre) @ to_eye.T
    inside = (u ** 2).sum(-1) < 1.0
    if not inside.any():
        return image
    gray = image.reshape(h, w, -1).mean(-1)
    median = float(np.median(gray[inside]))
    bright = inside & (gray > median + 0.5 * (255 - median))
    out = image
    if bright.any():
        # the halo round a reflection is lighter than the eye but under the threshold
        mask = cv2.dilate(bright.astype(np.uint8), np.ones((5, 5), np.uint8))
        out = cv2.inpaint(image, mask, 3, cv2.INPAINT_TELEA).reshape(image.shape)
    if len(spots):
        at = centre + np.asarray(spots, dtype=np.float64)[:, :2] @ np.linalg.inv(to_eye).T
        glow = np.zeros((h, w))
        for (x, y), (sigma, peak) in zip(at, np.asarray(spots)[:, 2:], strict=True):
            glow = np.maximum(glow, peak * np.exp(-((xs - x) ** 2 + (ys - y) ** 2)
                                                   / (2 * sigma ** 2)))
        if image.ndim == 3:
            glow = glow[..., None]
        out = np.maximum(out, glow).astype(np.uint8)
    return out


class KeypointAugmenter:
    """Callable ``(image (H, W[, C]) uint8, keypoints (K, 2)) -> (image, keypoints)``.

    ``pairs_required=False`` skips the check of side names against a listed set of pairs,
    for a group of keypoints cut from a set whose pairs were checked as a whole (a second
    stage's, :mod:`vit_facemap.refine`, whose list holds only the pairs inside the group).
    ``hflip="auto"`` is resolved from the names alone (:func:`resolve_hflip`; training
    resolves it with the videos too) and kept as ``hflip``.
    """

    def __init__(self, config: AugmentConfig, bodyparts: list[str], seed: int = 0, *,
                 pairs_required: bool = True) -> None:
        self.config = config
        c = config
        bodyparts = list(bodyparts)
        self.hflip = hflip = resolve_hflip(c, bodyparts)[0]
        auto = c.flip_pairs == "auto"
        pairs, lone = _pairs_and_lone(c, bodyparts)
        if isinstance(pairs, str):
            raise ValueError(f"flip_pairs must be a list of name pairs or 'auto', got {pairs!r}")
        if hflip > 0 and (auto or pairs_required) and lone:
            # a lone side name would keep its label on the wrong side of a mirrored face
            raise ValueError(f"horizontal flips: the keypoints {lone} name a side but are in "
                             f"no flip pair (flip_pairs={c.flip_pairs!r}); list their pairs "
                             "in flip_pairs or set hflip=0")
        self.pairs = [list(p) for p in pairs]
        self.swap = _swap(self.pairs, bodyparts)
        pupil, outline = pupil_groups(bodyparts)
        # None where the setting is off or the set has no pupil and eye outline to work on
        # (reflections mislead only where there is a pupil to place; g7c1's eye stage places
        # its corners alone): no draw is made, so such a set draws the same augmentations as
        # before the settings existed
        eye = len(pupil) >= 3 and len(outline) >= 3
        self.pupil = (pupil, outline) if eye and c.pupil > 0 else None
        self.glints = outline if eye and c.glints > 0 else None
        # imported here: albumentations loads torch, and AugmentConfig alone (its defaults, as
        # `data inspect` reads them through vit_facemap.poses) needs neither
        import albumentations as A

        def affine(widen: float, p: float) -> Any:
            return A.Affine(
                scale=(1 - c.scale, 1 + c.scale),
                translate_percent=(-widen * c.translate, widen * c.translate),
                rotate=(-widen * c.rotate, widen * c.rotate), shear=(-c.shear, c.shear),
                border_mode=0, fill=0, p=p,
            )
        # without the tail the one transform of before, so its draws (and a saved run's
        # random state) are those of a recipe from before the setting existed
        geo = (A.OneOf([affine(1.0, 1.0 - c.wide), affine(2.0, c.wide)], p=c.p_geometric)
               if c.wide > 0 else affine(1.0, c.p_geometric))
        self.geometric = A.Compose(
            [geo], keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
            seed=seed,
        )
        self.flip = A.Compose(
            [A.HorizontalFlip(p=1.0)],
            keypoint_params=A.KeypointParams(format="xy", remove_invisible=False), seed=seed + 1,
        )
        photometric = [
            A.RandomBrightnessContrast(c.brightness, c.contrast, p=0.8),
            A.GaussianBlur(blur_limit=(3, 5), p=c.blur),
            A.GaussNoise(std_range=(0.01, 0.05), p=c.noise),
        ]
        self.photometric = A.Compose(photometric, seed=seed + 2)
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        """Fresh random streams from ``seed``, as the constructor seeds them.

        Each DataLoader worker holds a copy of the augmenter: reseeded from the worker's own
        seed, workers (and epochs, whose workers are started anew) draw different
        augmentations instead of repeating the same ones.
        """
        self.rng = np.random.default_rng(seed)
        for offset, compose in enumerate((self.geometric, self.flip, self.photometric)):
            compose.set_random_seed(seed + offset)

    def _streams(self) -> list[Any]:
        """The pipelines and each of their transforms: albumentations gives every one its own
        numpy and Python random streams."""
        found: list[Any] = []

        def walk(item: Any) -> None:
            found.append(item)
            for child in getattr(item, "transforms", []):
                walk(child)
        for compose in (self.geometric, self.flip, self.photometric):
            walk(compose)
        return found

    def random_state(self) -> dict[str, Any]:
        """Where every random stream stands (saved with a run's training state)."""
        return {"rng": self.rng.bit_generator.state,
                "albumentations": [(s.random_generator.bit_generator.state, s.py_random.getstate())
                                   for s in self._streams()]}

    def set_random_state(self, state: dict[str, Any]) -> None:
        """Put every random stream where :meth:`random_state` found it, so a resumed run
        draws the augmentations the uninterrupted one would have."""
        self.rng.bit_generator.state = state["rng"]
        for stream, (np_state, py_state) in zip(self._streams(), state["albumentations"],
                                                strict=True):
            stream.random_generator.bit_generator.state = np_state
            stream.py_random.setstate(py_state)

    def __call__(self, image: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kp = np.asarray(keypoints, dtype=np.float64)
        if self.pupil is not None:
            span = math.log1p(self.config.pupil)
            image, kp = scale_pupil(image, kp, *self.pupil,
                                    factor=math.exp(self.rng.uniform(-span, span)))
        if self.glints is not None and self.rng.random() < self.config.glints:
            rim = kp[self.glints]
            rim = rim[np.isfinite(rim).all(1)]
            if len(rim) >= 3:
                n = int(self.rng.integers(1, 4))
                radius, angle = 0.8 * np.sqrt(self.rng.random(n)), self.rng.uniform(0, 2 * np.pi, n)
                spots = np.column_stack([radius * np.cos(angle), radius * np.sin(angle),
                                         self.rng.uniform(0.8, 2.5, n),
                                         self.rng.uniform(180, 255, n)])
                image = replace_glints(image, rim, spots)
        missing = np.isnan(kp).any(-1)
        dummy = np.where(missing[:, None], 0.0, kp)
        out = self.geometric(image=image, keypoints=dummy)
        image, kp = out["image"], np.asarray(out["keypoints"], dtype=np.float64).reshape(-1, 2)
        if self.hflip > 0 and self.rng.random() < self.hflip:
            out = self.flip(image=image, keypoints=kp)
            image, kp = out["image"], np.asarray(out["keypoints"], dtype=np.float64).reshape(-1, 2)
            kp, missing = kp[self.swap], missing[self.swap]
        h, w = image.shape[:2]
        outside = (kp[:, 0] < -0.5) | (kp[:, 0] > w - 0.5) | (kp[:, 1] < -0.5) | (kp[:, 1] > h - 0.5)
        kp[missing | outside] = np.nan
        image = self.photometric(image=image)["image"]
        return image, kp
