"""Generated mouse-face frames with known keypoints and known facial states.

This is the project's embedded data set: when no real data is configured, tests and
notebooks run on these frames (and say so). Each frame is drawn from a parametric
side view of a mouse head facing left, as a head-fixed mouse is filmed for orofacial
tracking: head and ear, nose pad, eye with eyelids, iris, pupil and a corneal highlight,
whisker pad with whiskers, mouth slit and lower lip. Keypoints are computed from the same
shape parameters that draw the features, so they sit on them by construction.

Frames come in *videos*: a video fixes the camera placement, the animal's proportions,
fur tone, background and lighting; frames within it vary pose a little, whisking,
gaze, pupil size and blinking, plus sensor noise and blur. Splitting by video therefore
means the same thing here as for real data.

For the interpretation work a *state task* makes one facial feature carry a class label
while everything else stays random: ``"pupil"`` (``dilated`` vs ``constricted``) or
``"eye"`` (``open`` vs ``closed``). Each frame then comes with the bounding box of the
region whose appearance depends on the class, which an attention map should point at.

Everything is drawn with numpy, scipy and scikit-image; the same seed gives the same
frames.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from scipy.interpolate import splev, splprep
from scipy.ndimage import gaussian_filter

from vit_facemap.dlc import LabeledFrames, write_labels
from vit_facemap.errors import DataError, RunExistsError
from vit_facemap.images import IMAGE_SUFFIXES

G7C1_KEYPOINTS = (
    "eye top", "eye front", "eye bottom", "eye back", "nose top", "nose tip", "nose bottom",
    "whisker 1", "whisker 2", "whisker 3", "mouth", "lip",
)
SCHROEDER_KEYPOINTS = (
    "nose", "leftpupil", "dorsalpupil", "rightpupil", "ventralpupil",
    "lefteyelid", "dorsaleyelid", "righteyelid", "ventraleyelid",
)
LAYOUTS = {"g7c1": G7C1_KEYPOINTS, "schroeder": SCHROEDER_KEYPOINTS}
STATE_TASKS = {"pupil": ("constricted", "dilated"), "eye": ("closed", "open")}
SCORER = "synthetic"
_KEYPOINT_TABLE = "CollectedData_synthetic.csv"  # the labels table of a generated keypoint set
_STATE_TABLES = ("groups.csv", "regions.csv", "eyes.csv")  # the tables of a generated state set

# Face model in head units (nose tip at the origin, x towards the back of the head, y down;
# nose tip to eye centre is about 0.73). Numbers chosen by eye to resemble the side view
# of a head-fixed mouse; ``video`` and ``frame`` parameters perturb them.
_HEAD_OUTLINE = np.array([  # closed outline through the profile, ending off-frame behind
    (0.000, 0.000), (0.020, -0.055), (0.090, -0.105), (0.250, -0.175), (0.450, -0.250),
    (0.650, -0.320), (0.850, -0.420), (1.050, -0.560), (1.400, -0.800), (2.600, -0.900),
    (2.800, 1.600), (1.000, 1.300), (0.700, 0.750), (0.480, 0.500), (0.345, 0.430),
    (0.270, 0.385), (0.150, 0.290), (0.060, 0.200), (0.025, 0.120),
])
_LIP_VERTEX, _MOUTH_VERTEX = 14, 15  # outline vertices that are the lip and mouth keypoints
_RING_SOFT = 5.0  # blur of the dark fur ring around the eye, in pixels per 300 px head unit


@dataclass(frozen=True)
class VideoLook:
    """What stays fixed within one video: camera, animal and lighting."""

    angle: float          # head rotation in degrees (positive: nose down)
    scale: float          # head unit in pixels / frame width
    origin: tuple[float, float]  # nose tip in fractions of (width, height)
    background: float     # mean background level in [0, 1]
    fur: float            # mean fur level
    light_angle: float    # direction the light comes from, radians
    light_strength: float
    eye_size: float       # multiplies the eye's length
    nose_size: float
    whisker_level: float  # whiskers' brightness
    pupil_base: float     # typical pupil radius in head units
    tint: tuple[float, float, float]  # RGB gains for colour frames


@dataclass(frozen=True)
class FramePose:
    """What changes from frame to frame."""

    angle: float
    scale: float
    shift: tuple[float, float]   # pixels
    whisk: float                 # whisker protraction angle offset, radians
    gaze: tuple[float, float]    # pupil offset in head units
    pupil: float                 # pupil radius in head units
    openness: float              # 1 open, ~0.1 closed
    blur: float                  # pixels
    noise: float                 # standard deviation in [0, 1] units
    gain: float


@dataclass
class SyntheticSet:
    """Generated frames in memory: images (n, H, W) or (n, H, W, 3) uint8 plus labels.

    ``frames.root`` is the folder they would be written to (``.`` until written);
    ``states`` and ``state_boxes`` (x0, y0, x1, y1 in pixels) are set for a state task.
    """

    frames: LabeledFrames
    images: np.ndarray
    layout: str
    task: str | None = None
    states: np.ndarray | None = None
    state_boxes: np.ndarray | None = None
    settings: dict | None = None

    def __len__(self) -> int:
        return len(self.frames)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *map(int, keys)])


def _video_look(seed: int, video: int, layout: str) -> VideoLook:
    r = _rng(seed, 1, video)
    if layout == "g7c1":  # close-up framing as in the ViT_Facemap recordings
        origin = (0.15 + r.uniform(-0.03, 0.03), 0.29 + r.uniform(-0.03, 0.03))
        scale = 0.70 * r.uniform(0.9, 1.08)
    else:  # wider framing around the eye, as in the Schroeder lab recordings
        origin = (0.29 + r.uniform(-0.04, 0.04), 0.36 + r.uniform(-0.04, 0.04))
        scale = 0.42 * r.uniform(0.9, 1.1)
    return VideoLook(
        angle=r.uniform(-4, 12), scale=scale, origin=origin,
        background=r.uniform(0.03, 0.2), fur=r.uniform(0.35, 0.6),
        light_angle=r.uniform(0, 2 * np.pi), light_strength=r.uniform(0.05, 0.25),
        eye_size=r.uniform(0.9, 1.1), nose_size=r.uniform(0.9, 1.1),
        whisker_level=r.uniform(0.7, 0.9), pupil_base=r.uniform(0.03, 0.045),
        tint=(1.0, r.uniform(0.82, 0.9), r.uniform(0.72, 0.82)),
    )


def _frame_pose(r: np.random.Generator, look: VideoLook, width: int, task: str | None,
                state: str | None) -> FramePose:
    pupil = float(np.clip(look.pupil_base * np.exp(r.normal(0, 0.25)), 0.018, 0.062))
    openness = 1.0 if r.random() > 0.05 else r.uniform(0.1, 0.5)  # an occasional blink
    if task == "pupil":
        pupil = r.uniform(0.018, 0.026) if state == "constricted" else r.uniform(0.048, 0.06)
        openness = r.uniform(0.85, 1.0)
    elif task == "eye":
        openness = r.uniform(0.04, 0.16) if state == "closed" else r.uniform(0.85, 1.0)
    return FramePose(
        angle=r.normal(0, 2.5), scale=r.normal(1, 0.025),
        shift=(r.normal(0, 0.015 * width), r.normal(0, 0.015 * width)),
        whisk=r.uniform(-0.35, 0.35), gaze=(r.normal(0, 0.006), r.normal(0, 0.004)),
        pupil=pupil, openness=openness,
        blur=r.uniform(0.4, 1.2) * width / 320, noise=r.uniform(0.01, 0.035),
        gain=r.uniform(0.85, 1.15),
    )


# ----------------------------------------------------------------------------- geometry


def _rot(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _smooth_closed(points: np.ndarray, n: int = 400) -> np.ndarray:
    """A closed interpolating spline through ``points`` (it passes through every vertex)."""
    pts = np.vstack([points, points[:1]])
    tck, _ = splprep([pts[:, 0], pts[:, 1]], s=0, per=1, k=3)
    x, y = splev(np.linspace(0, 1, n), tck)
    return np.stack([x, y], -1)


def _ellipse(center, a, b, angle_deg=0.0, n=90) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pts = np.stack([a * np.cos(t), b * np.sin(t)], -1) @ _rot(angle_deg).T
    return pts + np.asarray(center)


def _bezier(p0, p1, p2, n=24) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * np.asarray(p0) + 2 * (1 - t) * t * np.asarray(p1) + t**2 * np.asarray(p2)


@dataclass
class _Face:
    """All shapes of one frame in head units, and the keypoints computed from them."""

    outline: np.ndarray
    ear: np.ndarray
    snout_light: np.ndarray
    nose_pad: np.ndarray
    eye_opening: np.ndarray
    eye_ring: np.ndarray
    eye_ring_open: np.ndarray  # the ring of this eye wide open: its largest extent
    iris: tuple[np.ndarray, float]
    pupil: tuple[np.ndarray, float]
    highlight: tuple[np.ndarray, float]
    whiskers: list[tuple[np.ndarray, float]]
    follicles: np.ndarray
    mouth: np.ndarray
    lip: np.ndarray
    keypoints: dict[str, np.ndarray]


def _face(look: VideoLook, pose: FramePose, r: np.random.Generator) -> _Face:
    # nose pad: an ellipse whose left end is the nose tip
    na, nb = 0.055 * look.nose_size, 0.09 * look.nose_size
    nose_c = np.array([na, 0.03])
    nose_pad = _ellipse(nose_c, na, nb, angle_deg=-12)

    def on_nose(t_deg):
        t = np.deg2rad(t_deg)
        return nose_c + np.array([na * np.cos(t), nb * np.sin(t)]) @ _rot(-12).T

    # eye: almond between two lid curves along an axis tilted down towards the back
    eye_c = np.array([0.72, -0.065])
    axis_deg = 20.0
    ea = 0.118 * look.eye_size
    up_h, low_h = 0.075 * look.eye_size * pose.openness, 0.06 * look.eye_size * pose.openness
    xs = np.linspace(-ea, ea, 40)
    skew = 0.12  # the upper lid peaks a little behind the middle, as in a mouse's eye

    def upper(x):
        return -up_h * (1 - (x / ea) ** 2) * (1 + skew * x / ea)

    def lower(x):
        return low_h * (1 - (x / ea) ** 2) * (1 - skew * x / ea)

    R_eye = _rot(axis_deg)

    def eye_pt(x, y):
        return eye_c + np.array([x, y]) @ R_eye.T

    top_x, bot_x = 0.12 * ea, -0.12 * ea
    opening = np.vstack([
        np.stack([xs, upper(xs)], -1) @ R_eye.T + eye_c,
        (np.stack([xs, lower(xs)], -1) @ R_eye.T + eye_c)[::-1],
    ])

    def ring_of(lid_h):
        return _ellipse(eye_c, ea * 1.35, max(lid_h, 0.02) * 1.25 + 0.03, axis_deg)

    ring, ring_open = ring_of(up_h), ring_of(0.075 * look.eye_size)
    iris_r = 0.066 * look.eye_size
    iris_c = eye_c + np.asarray(pose.gaze)
    pupil_r = min(pose.pupil * look.eye_size, iris_r * 0.95)
    hl_c = iris_c + np.array([-0.35, -0.45]) * iris_r
    # whiskers: three thick ones (the keypoints) among thinner ones, all fanning out forward
    pad_c = np.array([0.36, 0.12])
    bases = [pad_c + np.array([0.025, -0.075]), pad_c + np.array([0.04, 0.0]),
             pad_c + np.array([-0.015, 0.065])]  # whisker 2 (upper), 1 (middle), 3 (lower)
    whiskers = []
    follicles = []
    for row in range(5):
        for col in range(4):
            base = pad_c + np.array([0.05 - 0.035 * col + 0.01 * row, -0.095 + 0.045 * row])
            base = base + r.normal(0, 0.004, 2)
            follicles.append(base)
            whiskers.append((base, 0.6 + 0.1 * col))
    thick = [(b, 1.6) for b in bases]
    strokes = []
    for base, width in whiskers + thick:
        # upper rows point forward and up, lower rows forward and down
        row_angle = np.deg2rad(180 - 30 * (base[1] - pad_c[1]) / 0.1) + pose.whisk
        length = (0.3 + 0.25 * (width > 1)) * (1 + r.normal(0, 0.1))
        direction = np.array([np.cos(row_angle), np.sin(row_angle)])
        normal = np.array([-direction[1], direction[0]])
        mid = base + direction * length * 0.5 - normal * length * 0.08  # whiskers arc downwards
        end = base + direction * length - normal * length * 0.25
        strokes.append((_bezier(base, mid, end), width))
    # mouth slit from under the nose to the mouth corner; lower lip below it
    outline_pts = _HEAD_OUTLINE.copy()
    mouth_corner = outline_pts[_MOUTH_VERTEX] + np.array([0.0, -0.01])
    lip_pt = outline_pts[_LIP_VERTEX]
    mouth = _bezier(on_nose(125) + np.array([0.01, 0.02]), np.array([0.12, 0.3]), mouth_corner)
    lip = _bezier(mouth_corner, (mouth_corner + lip_pt) / 2 + np.array([0.02, -0.01]), lip_pt)
    ear = _ellipse((1.05, -0.36), 0.16, 0.11, -35)
    snout_light = _ellipse((0.13, 0.12), 0.15, 0.12, 35)

    kp = {
        "eye top": eye_pt(top_x, upper(top_x)), "eye front": eye_pt(-ea, 0.0),
        "eye bottom": eye_pt(bot_x, lower(bot_x)), "eye back": eye_pt(ea, 0.0),
        "nose top": on_nose(-100), "nose tip": on_nose(180), "nose bottom": on_nose(115),
        "whisker 1": bases[1], "whisker 2": bases[0], "whisker 3": bases[2],
        "mouth": mouth_corner, "lip": lip_pt,
    }
    kp["nose"] = kp["nose tip"]
    kp["lefteyelid"], kp["righteyelid"] = kp["eye front"], kp["eye back"]
    kp["dorsaleyelid"], kp["ventraleyelid"] = kp["eye top"], kp["eye bottom"]
    return _Face(
        outline=_smooth_closed(outline_pts), ear=ear, snout_light=snout_light, nose_pad=nose_pad,
        eye_opening=opening, eye_ring=ring, eye_ring_open=ring_open, iris=(iris_c, iris_r),
        pupil=(iris_c, pupil_r), highlight=(hl_c, 0.16 * iris_r), whiskers=strokes, follicles=np.array(follicles),
        mouth=mouth, lip=lip, keypoints=kp,
    )


# ----------------------------------------------------------------------------- drawing


class _Canvas:
    """A float image plus soft masks computed only inside each shape's bounding box."""

    def __init__(self, w: int, h: int, to_px):
        self.w, self.h, self.to_px = w, h, to_px
        self.img = np.zeros((h, w))

    def _window(self, p: np.ndarray, margin: float):
        x0 = int(max(0, np.floor(p[:, 0].min() - margin)))
        y0 = int(max(0, np.floor(p[:, 1].min() - margin)))
        x1 = int(min(self.w, np.ceil(p[:, 0].max() + margin) + 1))
        y1 = int(min(self.h, np.ceil(p[:, 1].max() + margin) + 1))
        if x1 <= x0 or y1 <= y0:
            return None
        return (slice(y0, y1), slice(x0, x1)), np.array([x0, y0])

    def mask(self, polys: np.ndarray | list[np.ndarray], soft: float = 0.6):
        """Filled polygon(s), blurred by ``soft`` pixels: (window, local mask) or None."""
        polys = [self.to_px(q) for q in (polys if isinstance(polys, list) else [polys])]
        win = self._window(np.vstack(polys), 3 * soft + 2)
        if win is None:
            return None
        sl, off = win
        # PIL's scan-line fill is far faster than a point-in-polygon test per pixel
        canvas = Image.new("L", (sl[1].stop - sl[1].start, sl[0].stop - sl[0].start), 0)
        draw = ImageDraw.Draw(canvas)
        for q in polys:
            # PIL fills the pixels whose corner lies inside; +0.5 puts the shape on its keypoints
            draw.polygon([tuple(v) for v in (q - off + 0.5).tolist()], fill=255)
        m = np.asarray(canvas, dtype=np.float64) / 255.0
        return sl, (gaussian_filter(m, soft) if soft > 0 else m)

    def strokes(self, lines: list[np.ndarray], width_px: float):
        """Soft lines: dense samples splatted into a layer, blurred to the stroke's width."""
        pts = [self.to_px(q) for q in lines]
        sigma = max(0.5, width_px / 2)
        win = self._window(np.vstack(pts), 3 * sigma + 2)
        if win is None:
            return None
        sl, off = win
        layer = np.zeros((sl[0].stop - sl[0].start, sl[1].stop - sl[1].start))
        # all polylines at once: about two samples per pixel along every segment
        starts = np.concatenate([q[:-1] for q in pts]) - off
        steps = np.concatenate([np.diff(q, axis=0) for q in pts])
        k = np.maximum(1, np.ceil(np.hypot(steps[:, 0], steps[:, 1]) * 2)).astype(int)
        seg = np.repeat(np.arange(len(k)), k)
        frac = (np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)) / np.repeat(k, k)
        xy = np.round(starts[seg] + steps[seg] * frac[:, None]).astype(int)
        keep = (xy[:, 0] >= 0) & (xy[:, 0] < layer.shape[1]) & (xy[:, 1] >= 0) & (xy[:, 1] < layer.shape[0])
        np.add.at(layer, (xy[keep, 1], xy[keep, 0]), 0.5)
        layer = gaussian_filter(layer, sigma)
        # a line of unit density blurred by sigma peaks at 1 / (sqrt(2 pi) sigma)
        return sl, np.clip(layer * sigma * 2.5, 0, 1)

    def dots(self, centers: np.ndarray, radius_px: float):
        """Soft round spots, as blurred point splats (much cheaper than many small polygons)."""
        p = self.to_px(centers)
        sigma = max(0.5, radius_px)
        win = self._window(p, 3 * sigma + 2)
        if win is None:
            return None
        sl, off = win
        layer = np.zeros((sl[0].stop - sl[0].start, sl[1].stop - sl[1].start))
        q = np.round(p - off).astype(int)
        keep = (q[:, 0] >= 0) & (q[:, 0] < layer.shape[1]) & (q[:, 1] >= 0) & (q[:, 1] < layer.shape[0])
        np.add.at(layer, (q[keep, 1], q[keep, 0]), 1.0)
        layer = gaussian_filter(layer, sigma)
        return sl, np.clip(layer * 2 * np.pi * sigma**2 * 0.6, 0, 1)

    def paint(self, region, value, alpha: float = 1.0) -> None:
        if region is None:
            return
        sl, m = region
        v = value[sl] if isinstance(value, np.ndarray) and value.ndim == 2 else value
        m = m * alpha
        self.img[sl] = self.img[sl] * (1 - m) + v * m


def _smooth_noise(r: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Unit-variance noise varying over about ``cell`` pixels (cheap at any frame size)."""
    small = r.normal(size=(h // cell + 3, w // cell + 3)).astype(np.float32)
    big = np.asarray(Image.fromarray(small, mode="F").resize(
        (small.shape[1] * cell, small.shape[0] * cell), Image.Resampling.BILINEAR))[:h, :w]
    return big / max(big.std(), 1e-6)


def _render(face: _Face, look: VideoLook, pose: FramePose, size: tuple[int, int],
            r: np.random.Generator, color: bool) -> tuple[np.ndarray, dict[str, np.ndarray], Callable]:
    w, h = size
    s = look.scale * pose.scale * w
    R = _rot(look.angle + pose.angle)
    t = np.array([look.origin[0] * w, look.origin[1] * h]) + np.asarray(pose.shift)

    def to_px(p):
        return np.asarray(p) @ R.T * s + t

    px = s / 300  # stroke widths below are for a head unit of 300 pixels
    c = _Canvas(w, h, to_px)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    light = np.cos(look.light_angle) * (xx - 0.5) + np.sin(look.light_angle) * (yy - 0.5)
    c.img[:] = look.background * (1 + 0.8 * light + 0.12 * _smooth_noise(r, h, w, max(2, w // 8)))
    texture = gaussian_filter(r.normal(size=(h, w)), max(0.5, px * 0.8))
    texture /= max(texture.std(), 1e-6)
    fur = look.fur * (1 + look.light_strength * 2 * light) + 0.045 * texture
    c.paint(c.mask(face.outline), fur)
    c.paint(c.mask(face.ear), fur * 1.12, 0.8)
    c.paint(c.strokes([face.ear[18:60]], 1.5 * px), look.fur * 0.55)
    c.paint(c.mask(face.snout_light, soft=12 * px), fur + 0.22, 0.9)  # lit, short-haired snout
    c.paint(c.mask(face.nose_pad, soft=2 * px), look.fur * 0.7, 0.9)
    c.paint(c.strokes([face.mouth], 2.5 * px), look.background * 0.5, 0.9)
    c.paint(c.strokes([face.lip], 1.6 * px), look.fur * 0.75, 0.6)
    c.paint(c.mask(face.eye_ring, soft=_RING_SOFT * px), look.fur * 0.7, 0.6)  # darker fur
    c.paint(c.dots(face.follicles, 2.0 * px), look.fur * 0.6, 0.7)
    thin = [q for q, wd in face.whiskers if wd < 1]
    thick = [q for q, wd in face.whiskers if wd >= 1]
    c.paint(c.strokes(thin, 0.8 * px), look.whisker_level, 0.55)
    c.paint(c.strokes(thick, 1.8 * px), look.whisker_level, 0.8)
    # eye: dark iris with a darker pupil and a corneal highlight, inside the lids
    opening = c.mask(face.eye_opening, soft=0.5)
    if opening is not None:
        eye = np.full((h, w), 0.14)
        sub = _Canvas(w, h, to_px)
        sub.img = eye
        for (center, radius), value in ((face.iris, 0.3), (face.pupil, 0.03)):
            sub.paint(sub.mask(_ellipse(center, radius, radius), soft=0.6), value)
        sub.paint(sub.mask(_ellipse(*face.highlight, face.highlight[1], n=24), soft=0.7), 0.97)
        c.paint(opening, sub.img)
        c.paint(c.strokes([face.eye_opening], 2.0 * px), 0.08, 0.8)

    img = gaussian_filter(c.img, pose.blur) * pose.gain
    if color:
        img = img[..., None] * np.asarray(look.tint)[None, None, :]
    img = img + r.normal(0, pose.noise, img.shape)
    img = np.clip(img, 0, 1)
    kp_px = {k: to_px(v) for k, v in face.keypoints.items()}
    # pupil points in image directions (left = smaller x, dorsal = smaller y)
    pc, pr = to_px(face.pupil[0]), face.pupil[1] * s
    kp_px.update(leftpupil=pc - (pr, 0), rightpupil=pc + (pr, 0),
                 dorsalpupil=pc - (0, pr), ventralpupil=pc + (0, pr))
    return (img * 255 + 0.5).astype(np.uint8), kp_px, to_px


def _state_box(face: _Face, task: str, to_px, size) -> np.ndarray:
    """Pixels whose look depends on the state: the iris (pupil task) or the eye (eye task)."""
    margin = 0.0
    if task == "pupil":
        (cx, cy), rad = face.iris
        pts = _ellipse((cx, cy), rad, rad)
    else:
        # the fur ring shrinks with the lids, so a closed eye's own ring leaves out the
        # pixels where the open eye's ring would be; the open ring and its blurred edge
        # hold both, whatever this frame's state
        pts = face.eye_ring_open
        head_px = np.linalg.norm(to_px((1.0, 0.0)) - to_px((0.0, 0.0)))
        margin = 3 * _RING_SOFT * head_px / 300
    p = to_px(pts)
    w, h = size
    x0, y0 = np.clip(p.min(0) - margin, 0, [w, h])
    x1, y1 = np.clip(p.max(0) + margin, 0, [w, h])
    return np.array([x0, y0, x1, y1])


# ----------------------------------------------------------------------------- public API


def generate_frames(
    n: int,
    *,
    seed: int = 0,
    size: tuple[int, int] = (160, 120),
    layout: str = "g7c1",
    n_videos: int = 2,
    task: str | None = None,
    color: bool = False,
    p_missing: float = 0.0,
    root: str | Path = ".",
) -> SyntheticSet:
    """``n`` generated frames of ``size`` = (width, height), spread evenly over ``n_videos``.

    ``layout`` picks the keypoint names and order (``"g7c1"`` or ``"schroeder"``).
    Keypoints outside the frame, pupil points of a closed eye, and a random
    ``p_missing`` share of the rest are missing (NaN), as a labeler would leave them.
    ``task`` (``"pupil"`` or ``"eye"``) assigns each frame a facial state, balanced within
    each video (its two classes differ by at most one frame, in a seeded order), and the
    bounding box of the region that carries it.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if task is not None and task not in STATE_TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(STATE_TASKS)}")
    if n < 1 or n_videos < 1:
        raise ValueError("n and n_videos must be at least 1")
    w, h = int(size[0]), int(size[1])
    if w < 32 or h < 24:
        raise ValueError(f"frames must be at least 32x24 pixels, got {w}x{h}")
    names = LAYOUTS[layout]
    video_names = [f"synthetic_video{v:02d}" for v in range(n_videos)]
    looks = [_video_look(seed, v, layout) for v in range(n_videos)]
    per_video = [0] * n_videos
    if task:
        # drawn per frame, a video of few frames could hold one class only (half of all
        # two-frame videos), and a whole set could; an odd video's extra frame alternates
        # between the classes from video to video
        video_states = [
            _rng(seed, 3, v).permutation((np.arange(len(range(v, n, n_videos))) + v) % 2)
            for v in range(n_videos)]
    images, keypoints, index, states, boxes = [], [], [], [], []
    for i in range(n):
        v = i % n_videos
        r = _rng(seed, 2, v, per_video[v])
        state = STATE_TASKS[task][video_states[v][per_video[v]]] if task else None
        pose = _frame_pose(r, looks[v], w, task, state)
        face = _face(looks[v], pose, r)
        img, kp_px, to_px = _render(face, looks[v], pose, (w, h), r, color)
        xy = np.array([kp_px[k] for k in names], dtype=float)
        outside = (xy[:, 0] < 0) | (xy[:, 0] > w - 1) | (xy[:, 1] < 0) | (xy[:, 1] > h - 1)
        xy[outside] = np.nan
        if layout == "schroeder" and pose.openness < 0.5:  # no pupil to see behind closed lids
            xy[[names.index(k) for k in SCHROEDER_KEYPOINTS[1:5]]] = np.nan
        if p_missing > 0:
            xy[r.random(len(names)) < p_missing] = np.nan
        images.append(img)
        keypoints.append(xy)
        index.append(f"labeled-data/{video_names[v]}/img{per_video[v]:04d}.png")
        if task:
            states.append(state)
            boxes.append(_state_box(face, task, to_px, (w, h)))
        per_video[v] += 1
    frames = LabeledFrames(Path(root), index, np.stack(keypoints), list(names), scorer=SCORER)
    settings = dict(n=n, seed=seed, size=[w, h], layout=layout, n_videos=n_videos, task=task,
                    color=color, p_missing=p_missing,
                    videos={vn: asdict(lk) for vn, lk in zip(video_names, looks, strict=True)})
    return SyntheticSet(
        frames=frames, images=np.stack(images), layout=layout, task=task,
        states=np.array(states) if task else None,
        state_boxes=np.stack(boxes) if task else None, settings=settings,
    )


def _prepare(folder: str | Path, marker: str, overwrite: bool) -> Path:
    """Refuse a folder holding a set this command did not write, or one it did (unless
    ``overwrite``). Checks only: the caller creates the folder once the frames are made, so
    bad settings leave no empty folder behind."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError("is a file; give a folder for the generated set", folder)
    # a generated set of either kind is known by synthetic.json, written beside every one
    # (judged by the marker of the kind being written alone, a keypoint set was written
    # into a state set, replacing its synthetic.json without --overwrite)
    generated = (folder / "synthetic.json").is_file()
    ours = folder / (_KEYPOINT_TABLE if generated else marker)
    # a user's labels (a set's table, or a DeepLabCut project's per-video tables) beside
    # generated ones would be read as the set, or stop it being read
    tables = [*folder.glob("CollectedData*"), *folder.glob("labeled-data/*/CollectedData*")]
    theirs = sorted(str(t.relative_to(folder)) for t in tables if t != ours)
    if theirs:
        raise DataError(f"holds a labels table ({theirs[0]}) that `data synthetic` did not "
                        "write; choose another folder", folder)
    if (folder / marker).exists() or generated:
        if not overwrite:
            raise RunExistsError(folder / (marker if (folder / marker).exists()
                                           else "synthetic.json"))
        if not generated:
            raise DataError(f"{marker} here was not written by `data synthetic` (no "
                            "synthetic.json); --overwrite replaces only a generated set: "
                            "choose another folder", folder)
        return folder
    # frames of the user's without a table yet (a DeepLabCut project's extracted frames, a
    # class-folder set): generated frames written among them would be taken for theirs
    frames = sorted(str(p.relative_to(folder)) for pattern in ("*", "*/*", "labeled-data/*/*")
                    for p in folder.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES)
    if frames:
        raise DataError(f"holds frames ({frames[0]}) that `data synthetic` did not write; "
                        "choose another folder", folder)
    return folder


def _clear_generated(folder: Path) -> None:
    """Remove the frames and tables of the generated set in ``folder`` (one ``_prepare``
    let --overwrite replace), and the folders they leave empty: frames of a larger set, of
    more videos or of other states stayed behind among the new ones, and a state set then
    held images without a row in groups.csv and could not be read."""
    if not (folder / "synthetic.json").is_file():
        return
    frames = [*folder.glob("labeled-data/synthetic_video*/img*.png"),  # a keypoint set's
              *folder.glob("*/synthetic_video*_img*.png")]  # a state set's, in class folders
    for path in [*frames, *(folder / name for name in (_KEYPOINT_TABLE, *_STATE_TABLES))]:
        path.unlink(missing_ok=True)
    for sub in sorted({p.parent for p in frames} | {folder / "labeled-data"}, reverse=True):
        if sub.is_dir() and not any(sub.iterdir()):
            sub.rmdir()


def _save_png(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, optimize=False, compress_level=1)


def write_synthetic_set(
    folder: str | Path,
    n_frames: int = 64,
    n_videos: int = 2,
    seed: int = 0,
    *,
    size: tuple[int, int] = (160, 120),
    layout: str = "g7c1",
    color: bool = False,
    p_missing: float = 0.0,
    overwrite: bool = False,
) -> Path:
    """Write a generated labeled set in DeepLabCut's layout; returns ``folder``.

    ``folder/labeled-data/<video>/imgNNNN.png`` plus ``folder/CollectedData_synthetic.csv``
    and ``folder/synthetic.json`` (the generator's settings). A generated set of either kind
    in ``folder`` is kept unless ``overwrite``, which replaces its frames and tables (other
    files stay); a folder holding a labels table or frames of anything else is refused.
    """
    label_file = _KEYPOINT_TABLE
    folder = _prepare(folder, label_file, overwrite)
    data = generate_frames(n_frames, seed=seed, size=size, layout=layout, n_videos=n_videos,
                           color=color, p_missing=p_missing, root=folder)
    _clear_generated(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # first: a write cut short leaves a generated set, which --overwrite replaces
    (folder / "synthetic.json").write_text(json.dumps(data.settings, indent=2) + "\n")
    for img, rel in zip(data.images, data.frames.index, strict=True):
        _save_png(img, folder / rel)
    write_labels(data.frames, folder / label_file, overwrite=True)
    return folder


def write_state_set(
    folder: str | Path,
    n_frames: int = 64,
    task: str = "pupil",
    n_videos: int = 4,
    seed: int = 0,
    *,
    size: tuple[int, int] = (160, 120),
    layout: str = "g7c1",
    overwrite: bool = False,
) -> Path:
    """Write generated frames for state classification; returns ``folder``.

    ``folder/<class>/<video>_imgNNNN.png``; ``folder/groups.csv`` (``image``, ``group``: the
    video, for group-aware splits) and ``folder/regions.csv`` (``image``, ``class``,
    ``group``, ``x0``, ``y0``, ``x1``, ``y1``: the region that carries the state) and
    ``folder/eyes.csv`` (``image``, ``x``, ``y``, ``width``: eye centre and corner-to-corner
    width from the eyelid keypoints), with ``image`` relative to ``folder``; the layout
    read by :func:`vit_facemap.states.read_image_set`. An existing folder is treated as by
    :func:`write_synthetic_set`.
    """
    folder = _prepare(folder, "groups.csv", overwrite)
    data = generate_frames(n_frames, seed=seed, size=size, layout=layout, n_videos=n_videos,
                           task=task, root=folder)
    _clear_generated(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # first: a write cut short leaves a generated set, which --overwrite replaces
    (folder / "synthetic.json").write_text(json.dumps(data.settings, indent=2) + "\n")
    names = data.frames.bodyparts
    corners = ("eye front", "eye back") if layout == "g7c1" else ("lefteyelid", "righteyelid")
    lids = [names.index(k) for k in names if "eye" in k and "pupil" not in k]
    rows = []
    for i, (img, rel, state, box) in enumerate(zip(data.images, data.frames.index, data.states,
                                                   data.state_boxes, strict=True)):
        video, name = rel.split("/")[1:]
        image = f"{state}/{video}_{name}"
        _save_png(img, folder / image)
        kp = data.frames.keypoints[i]
        centre = kp[lids].mean(axis=0)
        width = np.linalg.norm(kp[names.index(corners[1])] - kp[names.index(corners[0])])
        rows.append(dict(image=image, **{"class": state}, group=video,
                         x0=box[0], y0=box[1], x1=box[2], y1=box[3],
                         x=centre[0], y=centre[1], width=width))
    table = pd.DataFrame(rows)
    table[["image", "group"]].to_csv(folder / "groups.csv", index=False)
    table[["image", "class", "group", "x0", "y0", "x1", "y1"]].to_csv(
        folder / "regions.csv", index=False, float_format="%.2f")
    table[["image", "x", "y", "width"]].to_csv(folder / "eyes.csv", index=False,
                                               float_format="%.3f")
    return folder


def keypoint_names(layout: str) -> Sequence[str]:
    """The keypoint names, in order, of a layout."""
    return LAYOUTS[layout]
