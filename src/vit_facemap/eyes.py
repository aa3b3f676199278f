"""Finding the eye in a whole frame, so that eye-crop classifiers work on frames without keypoints.

Classifiers of pupil state look at a crop around the eye. On labeled frames the eyelid
keypoints give that crop; on new frames (a lab's own videos, the maintainers' held-out
animals) there are no keypoints, so an :class:`EyeLocator` trained on the eyelid keypoints
predicts the eye centre and eye width from the downsized frame. It is a small fully
convolutional network: a spatial-softmax heatmap gives the centre (soft-argmax), and the
heatmap-weighted features give the eye width. Small and convolutional on purpose: it
trains in a minute on a CPU from a few hundred frames and must generalise across rigs.

The whole frame is seen at about one heatmap cell per eye width, which is too coarse to
centre a crop of 1.5 eye widths and lets a bright ring or whisker pad win on an unfamiliar
rig. So a second network of the same shape looks again at a full-resolution crop of
``refine_factor`` eye widths around each of the ``candidates`` strongest coarse peaks: it
scores whether the crop holds the eye (trained with crops elsewhere in the frame, and at
the coarse stage's own wrong peaks on the training frames, as negatives), the best-scoring
candidate wins, and ``refine_steps`` passes re-centre it and
re-measure its width.

Crops are square, ``side = factor * eye width`` centred on the eye, resized with PIL
(antialiased); parts outside the frame are black.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from vit_facemap.config import check_fields


@dataclass(frozen=True)
class LocatorConfig:
    width: int = 128  # the frame is resized to width x height for the locator
    height: int = 96
    channels: int = 32
    epochs: int = 40
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    sigma: float = 1.0  # target heatmap spread, in heatmap cells
    # rigs differ in camera distance and angle: zoom from [1/zoom, zoom], rotation from
    # [-rotation, rotation] radians (leave-animals-out: fewer held-out eyes missed by more
    # than an eye width than with 1.25 and no rotation)
    zoom: float = 1.5
    rotation: float = 0.35
    shift: float = 0.15  # training shift, in half frame sizes
    # "peak": the eye is read from the heatmap around its highest cell, so a second bright
    # spot elsewhere (a head-plate ring) cannot pull the answer between the two; "mean":
    # soft-argmax over the whole heatmap
    decode: str = "peak"
    seed: int = 0
    # second stage on full-resolution crops (0 refine steps: the coarse answer only, as in
    # runs saved before the stage existed)
    # leave-animals-out (benchmarks/locator.py): 1 -> 3 -> 5 candidates put 0.86 -> 0.92 ->
    # 0.94 of held-out eyes within one eye width; a third pass adds a little more
    refine_steps: int = 3
    candidates: int = 5
    refine_factor: float = 3.0  # crop side, in eye widths
    refine_size: int = 96
    refine_jitter: float = 0.4  # training crop offset (SD, eye widths)
    refine_zoom: float = 1.4  # training crop size off by a factor in [1/zoom, zoom]
    refine_negatives: float = 0.3  # share of training crops away from the eye
    # share of those negatives cut at the coarse stage's other strong peaks (more than one
    # eye width from the eye) on the training frames, where glints and head-plate rings
    # draw it; the rest anywhere
    refine_hard: float = 0.5

    def __post_init__(self) -> None:
        check_fields(self, "locator")
        # the networks shrink their input 8 times (three stride-2 layers) and the decoding
        # reads an (h // 8) x (w // 8) heatmap: another size failed in the first training
        # step with a tensor size mismatch
        # (refine_size only where a second stage is trained: with 0 refine steps it is never
        # used, and a run saved so still loads)
        sides = ("width", "height", "refine_size") if self.refine_steps > 0 else ("width", "height")
        bad = [f"{k}={getattr(self, k)}" for k in sides
               if getattr(self, k) < 8 or getattr(self, k) % 8]
        if bad:
            raise ValueError(f"locator {', '.join(bad)}: the locator's input sides must be "
                             "multiples of 8")
        # the ranges [1/zoom, zoom], [-rotation, rotation], [-shift, shift] are drawn with
        # torch's uniform_, which failed in the first step on a range the wrong way round
        if self.zoom < 1 or self.rotation < 0 or self.shift < 0:
            raise ValueError(f"locator zoom must be >= 1 (a factor in [1/zoom, zoom]) and rotation "
                             f"and shift >= 0, got zoom={self.zoom}, rotation={self.rotation}, "
                             f"shift={self.shift}")



def standardize(img: np.ndarray) -> np.ndarray:
    """Per-image zero mean, unit variance: rigs differ mostly in exposure and contrast."""
    img = np.asarray(img, dtype=np.float32)
    return (img - img.mean()) / (img.std() + 1e-6)


def resize_frames(frames: Sequence[np.ndarray], width: int, height: int) -> np.ndarray:
    """Grayscale frames resized (antialiased) and standardized: (N, 1, height, width) float32."""
    out = np.empty((len(frames), 1, height, width), dtype=np.float32)
    for i, f in enumerate(frames):
        im = Image.fromarray(np.asarray(f, dtype=np.uint8)).resize((width, height), Image.BILINEAR,
                                                                    reducing_gap=2.0)
        out[i, 0] = standardize(np.asarray(im))
    return out


def frame_sizes(frames: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 2) width and height of each frame, as floats for mapping coordinates."""
    return np.array([[f.shape[1], f.shape[0]] for f in frames], dtype=np.float64).reshape(-1, 2)


def _in_batches(fn: Callable[[Sequence[np.ndarray]], np.ndarray], frames: Sequence[np.ndarray],
                batch_size: int, axis: int = 0) -> np.ndarray:
    """``fn`` over batches of frames (bounded memory), joined along the frames' axis."""
    return np.concatenate([fn(frames[i:i + batch_size])
                           for i in range(0, len(frames), batch_size)], axis=axis)


def crop_eyes(frames: Sequence[np.ndarray], boxes: np.ndarray, factor: float, size: int) -> np.ndarray:
    """Square crops (N, size, size) uint8 of side ``factor * width`` centred on each (x, y, width)."""
    out = np.zeros((len(frames), size, size), dtype=np.uint8)
    for i, (f, (x, y, w)) in enumerate(zip(frames, np.asarray(boxes, float), strict=True)):
        # a box from an untrained locator can be far larger than the frame; past twice the
        # frame's size a crop is only black border, and PIL would allocate all of it
        half = min(factor * w / 2, 2 * max(np.shape(f)[:2]))
        # PIL's boxes are in pixel corners: the centre of pixel x is at x + 0.5
        box = (x + 0.5 - half, y + 0.5 - half, x + 0.5 + half, y + 0.5 + half)
        im = Image.fromarray(np.asarray(f, dtype=np.uint8))
        # crop() pads outside the frame with black; round to whole pixels first
        box_i = tuple(int(round(v)) for v in box)
        out[i] = np.asarray(im.crop(box_i).resize((size, size), Image.BILINEAR, reducing_gap=2.0))
    return out


class LocatorNet(nn.Module):
    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        c = channels

        def block(i: int, o: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, 3, stride, padding=dilation, dilation=dilation,
                                           bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

        self.features = nn.Sequential(
            block(1, c // 2, 2), block(c // 2, c, 2), block(c, c), block(c, 2 * c, 2),
            block(2 * c, 2 * c, 1, 2), block(2 * c, 2 * c, 1, 4), block(2 * c, 2 * c, 1, 8),
        )
        self.heat = nn.Conv2d(2 * c, 1, 1)
        self.size = nn.Linear(2 * c, 1)

    def forward(self, x: torch.Tensor, peak: bool = False, centre: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits over heatmap cells (N, h*w), log eye width / input width (N,)).

        ``peak``: logits outside a 5 x 5 window around each heatmap's highest cell (or around
        the cell index ``centre`` (N,), when given) are masked out, so the soft-argmax and
        the width read only that candidate.
        """
        f = self.features(x)
        return self.read(f, self.heat(f).flatten(1), peak, centre)

    def read(self, f: torch.Tensor, logits: torch.Tensor, peak: bool = False,
             centre: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` from features and heatmap logits already computed."""
        if peak or centre is not None:
            logits = logits.masked_fill(~_near(logits if centre is None else centre, *f.shape[2:]),
                                        float("-inf"))
        weights = logits.softmax(-1)
        pooled = torch.einsum("nchw,nhw->nc", f, weights.view(-1, *f.shape[2:]))
        return logits, self.size(pooled).squeeze(-1)


class RefineNet(LocatorNet):
    """The second stage: a crop's eye heatmap and width, plus a score that the crop holds the eye."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__(channels)
        self.score = nn.Linear(4 * channels, 1)

    def forward(self, x: torch.Tensor, peak: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.features(x)
        # the score sees the crop as a whole (mean and max over cells), before any masking
        score = self.score(torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)).squeeze(-1)
        return (*self.read(f, self.heat(f).flatten(1), peak), score)


def _near(logits_or_cells: torch.Tensor, h: int, w: int, radius: int = 2) -> torch.Tensor:
    """(N, h*w) mask of the cells within ``radius`` of each row's highest cell (or given cell)."""
    top = logits_or_cells.argmax(-1) if logits_or_cells.ndim == 2 else logits_or_cells
    ys, xs = torch.arange(h).repeat_interleave(w), torch.arange(w).repeat(h)
    return ((ys[None] - (top // w)[:, None]).abs() <= radius) & \
           ((xs[None] - (top % w)[:, None]).abs() <= radius)


def crop_views(frames: Sequence[np.ndarray], centres: np.ndarray, sides: np.ndarray, size: int,
               angles: np.ndarray | None = None, flips: np.ndarray | None = None) -> torch.Tensor:
    """Standardized square views (N, 1, size, size) of side ``sides`` frame pixels, centred at
    ``centres`` (N, 2), optionally rotated (radians) and mirrored (flip -1); black outside.

    Frames are box-filtered first when the view shrinks them more than 1.5x (no aliasing).
    """
    n = len(frames)
    angles = np.zeros(n) if angles is None else angles
    flips = np.ones(n) if flips is None else flips
    out = torch.empty(n, 1, size, size)
    for i, f in enumerate(frames):
        img = torch.from_numpy(np.asarray(f, dtype=np.float32))[None, None]
        hgt, wid = img.shape[2:]
        k = int(sides[i] / size / 1.5) + 1
        if k > 1:
            img = F.avg_pool2d(img, k, ceil_mode=True)
            # the pooled image spans whole blocks: its extent in frame pixels grows to k * cells
            hgt, wid = img.shape[2] * k, img.shape[3] * k
        cos, sin = np.cos(angles[i]), np.sin(angles[i])
        half = sides[i] / 2
        # view v in [-1, 1]^2 -> frame pixel c + half * R(angle) diag(flip, 1) v -> grid units
        a = np.array([[cos * flips[i], -sin], [sin * flips[i], cos]]) * half
        theta = np.zeros((2, 3))
        theta[0, :2], theta[1, :2] = a[0] * 2 / wid, a[1] * 2 / hgt
        # grid units (align_corners=False): -1 and 1 are the outer edges, pixel x's centre
        # is at (2x + 1) / width - 1
        theta[:, 2] = [(2 * centres[i, 0] + 1) / wid - 1, (2 * centres[i, 1] + 1) / hgt - 1]
        grid = F.affine_grid(torch.tensor(theta, dtype=torch.float32)[None], [1, 1, size, size],
                             align_corners=False)
        v = F.grid_sample(img, grid, align_corners=False, padding_mode="zeros")[0, 0]
        out[i, 0] = (v - v.mean()) / (v.std() + 1e-6)
    return out


def _view_coords(points: np.ndarray, centres: np.ndarray, sides: np.ndarray,
                 angles: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """Frame points (N, 2) in the [0, 1] units of the views made by :func:`crop_views`."""
    d = (points - centres) / (sides[:, None] / 2)
    cos, sin = np.cos(-angles), np.sin(-angles)
    v = np.column_stack([(cos * d[:, 0] - sin * d[:, 1]) * flips, sin * d[:, 0] + cos * d[:, 1]])
    return (v + 1) / 2


def _soft_argmax(logits: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Expected (x, y) in [0, 1] frame units from heatmap logits (cell centres)."""
    p = logits.softmax(-1).view(-1, h, w)
    xs = (torch.arange(w, dtype=p.dtype) + 0.5) / w
    ys = (torch.arange(h, dtype=p.dtype) + 0.5) / h
    return torch.stack([(p.sum(1) * xs).sum(-1), (p.sum(2) * ys).sum(-1)], -1)


def _boxes(logits: torch.Tensor, lw: torch.Tensor, config: LocatorConfig,
           sizes: np.ndarray) -> np.ndarray:
    """(N, 3) boxes x, y, width in frame pixels from the coarse stage's outputs; ``sizes``
    (N, 2) are the frames' widths and heights."""
    xy = _soft_argmax(logits, config.height // 8, config.width // 8).numpy()
    return np.column_stack([xy * sizes - 0.5, np.exp(lw.numpy()) * sizes[:, 0]])


def _centre_loss(logits: torch.Tensor, pts: torch.Tensor, h: int, w: int,
                 sigma: float) -> torch.Tensor:
    """Cross-entropy to a Gaussian heatmap around ``pts`` ([0, 1] units) plus an L1 term on
    the soft-argmax, shared by both stages."""
    gy, gx = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w,
                            indexing="ij")
    d2 = ((gx[None] - pts[:, 0, None, None]) * w) ** 2 + \
         ((gy[None] - pts[:, 1, None, None]) * h) ** 2
    target = torch.softmax(-d2.flatten(1) / (2 * sigma ** 2), -1)
    loss = -(target * logits.log_softmax(-1)).sum(-1).mean()
    return loss + 10 * (_soft_argmax(logits, h, w) - pts).abs().sum(-1).mean()


def _augment(x: torch.Tensor, pts: torch.Tensor, logw: torch.Tensor, gen: torch.Generator,
             zoom: float = 1.25, rotation: float = 0.0, shift: float = 0.15):
    """Random zoom, rotation, shift, mirror and contrast; points (normalised [0,1]) move with
    the image."""
    n = x.shape[0]
    s = torch.exp(torch.empty(n).uniform_(-np.log(zoom), np.log(zoom), generator=gen))
    a = torch.empty(n).uniform_(-rotation, rotation, generator=gen)
    t = torch.empty(n, 2).uniform_(-shift, shift, generator=gen)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    # output v -> input u = A v + t, A = rotation * scale * mirror; the frame's aspect ratio
    # is kept by rotating in pixel units (aspect = width / height)
    aspect = x.shape[3] / x.shape[2]
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    theta = torch.zeros(n, 3, 3)
    theta[:, 0, 0] = cos * flip
    theta[:, 0, 1] = -sin / aspect
    theta[:, 1, 0] = sin * aspect * flip
    theta[:, 1, 1] = cos
    theta[:, :2, 2] = t
    theta[:, 2, 2] = 1
    grid = F.affine_grid(theta[:, :2], list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    u = pts * 2 - 1
    v = torch.einsum("nij,nj->ni", torch.linalg.inv(theta[:, :2, :2]), u - t)
    gain = torch.empty(n, 1, 1, 1).uniform_(0.6, 1.5, generator=gen)
    bias = torch.empty(n, 1, 1, 1).uniform_(-0.5, 0.5, generator=gen)
    out = out * gain + bias + 0.1 * torch.randn(out.shape, generator=gen)
    return out, (v + 1) / 2, logw + torch.log(s)


def _fit_refine(frames: Sequence[np.ndarray], boxes: np.ndarray, config: LocatorConfig,
                progress: bool = True, hard: list[np.ndarray] | None = None) -> RefineNet:
    """Train the crop stage on jittered crops around the labeled eyes and crops elsewhere.

    ``hard`` (per frame, (K, 3) boxes x, y, width) are wrong candidates of the coarse stage:
    a ``refine_hard`` share of the negative crops is cut around one of them, at the side
    the prediction would use, so the score learns to reject what the coarse stage mistakes
    for an eye.
    """
    c = config
    rng = np.random.default_rng(c.seed + 1)
    net = RefineNet(c.channels)
    opt = torch.optim.AdamW(net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    n_batches = int(np.ceil(len(frames) / c.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, c.lr, total_steps=c.epochs * n_batches)
    cells = c.refine_size // 8
    sizes = frame_sizes(frames)
    net.train()
    for _ in tqdm(range(c.epochs), desc="eye locator, crop stage", disable=not progress):
        for b in np.array_split(rng.permutation(len(frames)), n_batches):
            m = len(b)
            eye, width = boxes[b, :2], boxes[b, 2]
            centres = eye + rng.normal(0, c.refine_jitter, (m, 2)) * width[:, None]
            neg = rng.random(m) < c.refine_negatives
            centres[neg] = rng.random((int(neg.sum()), 2)) * sizes[b][neg]
            sides = c.refine_factor * width * np.exp(rng.uniform(-np.log(c.refine_zoom),
                                                                np.log(c.refine_zoom), m))
            if hard is not None:
                for j in np.flatnonzero(neg & (rng.random(m) < c.refine_hard)):
                    pool = hard[b[j]]
                    if len(pool):
                        x, y, wd = pool[rng.integers(len(pool))]
                        centres[j] = (x, y) + rng.normal(0, 0.1, 2) * wd
                        sides[j] = c.refine_factor * wd * np.exp(rng.uniform(-0.1, 0.1))
            angles = rng.uniform(-c.rotation, c.rotation, m)
            flips = np.where(rng.random(m) < 0.5, -1.0, 1.0)
            x = crop_views([frames[i] for i in b], centres, sides, c.refine_size, angles, flips)
            x = x * torch.from_numpy(rng.uniform(0.6, 1.5, (m, 1, 1, 1))).float() + \
                torch.from_numpy(rng.uniform(-0.5, 0.5, (m, 1, 1, 1))).float() + \
                0.1 * torch.from_numpy(rng.standard_normal(x.shape)).float()
            pv = torch.from_numpy(_view_coords(eye, centres, sides, angles, flips)).float()
            inside = ((pv > 0.05) & (pv < 0.95)).all(1)
            dist = np.linalg.norm(eye - centres, axis=1) / width
            target_score = torch.from_numpy(np.exp(-dist ** 2 / (2 * 0.5 ** 2))).float()
            logits, lw, score = net(x)
            loss = F.binary_cross_entropy_with_logits(score, target_score)
            if inside.any():
                loss = loss + _centre_loss(logits[inside], pv[inside], cells, cells, c.sigma)
                lwt = torch.from_numpy(np.log(width / sides)).float()[inside]
                loss = loss + (lw[inside] - lwt).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    return net


@dataclass
class EyeLocator:
    """A trained locator; :meth:`predict` returns (x, y, width) in each frame's own pixels."""

    config: LocatorConfig
    net: LocatorNet
    refine: RefineNet | None = None

    @classmethod
    def fit(cls, frames: Sequence[np.ndarray], boxes: np.ndarray,
            config: LocatorConfig = LocatorConfig(), progress: bool = True) -> EyeLocator:
        boxes = np.asarray(boxes, dtype=np.float64)
        # a width of 0 or less (a measures.csv row, eyelid points labeled on one spot) is no
        # eye box: its log width, -inf or NaN, turned every weight NaN in the first step
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(boxes).all(1) & (boxes[:, 2] > 0)
        if ok.sum() < 2:
            raise ValueError("the eye locator needs at least two frames with a known eye box")
        frames = [f for f, k in zip(frames, ok, strict=True) if k]
        boxes = boxes[ok]
        torch.manual_seed(config.seed)
        gen = torch.Generator().manual_seed(config.seed)
        x = torch.from_numpy(resize_frames(frames, config.width, config.height))
        sizes = frame_sizes(frames)
        # [0, 1] frame units as the resized input sees them: pixel x's centre is (x + 0.5) / W
        pts = torch.from_numpy((boxes[:, :2] + 0.5) / sizes).float()
        logw = torch.from_numpy(np.log(boxes[:, 2] / sizes[:, 0])).float()
        net = LocatorNet(config.channels)
        opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps = config.epochs * int(np.ceil(len(x) / config.batch_size))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=steps)
        h, w = config.height // 8, config.width // 8
        net.train()
        for _ in tqdm(range(config.epochs), desc="eye locator", disable=not progress):
            order = torch.randperm(len(x), generator=gen)
            for b in order.split(config.batch_size):
                xb, pb, lb = _augment(x[b], pts[b], logw[b], gen, config.zoom,
                                      config.rotation, config.shift)
                logits, lw = net(xb)
                loss = _centre_loss(logits, pb, h, w, config.sigma) + (lw - lb).abs().mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        net.eval()
        if config.refine_steps <= 0:
            return cls(config, net)
        hard = None
        if config.refine_hard > 0:
            cand = _in_batches(cls(config, net)._candidates, frames, 32, axis=1)
            # a candidate more than one eye width from the labeled eye is a wrong one
            far = np.linalg.norm(cand[..., :2] - boxes[None, :, :2], axis=-1) > boxes[None, :, 2]
            hard = [cand[far[:, i], i] for i in range(len(frames))]
        return cls(config, net, _fit_refine(frames, boxes, config, progress, hard))

    @torch.no_grad()
    def predict(self, frames: Sequence[np.ndarray], batch_size: int = 32,
                decode: str | None = None) -> np.ndarray:
        if not len(frames):
            return np.zeros((0, 3))
        return _in_batches(lambda f: self._predict(f, decode), frames, batch_size)

    def _predict(self, frames: Sequence[np.ndarray], decode: str | None) -> np.ndarray:
        c = self.config
        self.net.eval()
        if self.refine is None or c.refine_steps <= 0:
            sizes = frame_sizes(frames)
            x = torch.from_numpy(resize_frames(frames, c.width, c.height))
            return _boxes(*self.net(x, peak=(decode or c.decode) == "peak"), c, sizes)
        scored = [self._refine(frames, b) for b in self._candidates(frames)]
        best = np.argmax(np.stack([s for _, s in scored]), 0)
        found = np.stack([b for b, _ in scored])[best, np.arange(len(frames))]
        for _ in range(c.refine_steps - 1):
            found, _ = self._refine(frames, found)
        return found

    @torch.no_grad()
    def _candidates(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """(candidates, N, 3) boxes at the strongest coarse peaks, each at least three
        cells from the ones before it."""
        c = self.config
        h, w = c.height // 8, c.width // 8
        sizes = frame_sizes(frames)
        f = self.net.features(torch.from_numpy(resize_frames(frames, c.width, c.height)))
        heat = self.net.heat(f).flatten(1)
        logits, out = heat, []
        for _ in range(max(1, c.candidates)):
            top = logits.argmax(-1)
            out.append(_boxes(*self.net.read(f, heat, centre=top), c, sizes))
            logits = logits.masked_fill(_near(top, h, w), float("-inf"))
        return np.stack(out)

    def _refine(self, frames: Sequence[np.ndarray], boxes: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """Boxes looked at again on crops around ``boxes``, and each crop's eye score."""
        c = self.config
        cells = c.refine_size // 8
        sides = c.refine_factor * boxes[:, 2]
        x = crop_views(frames, boxes[:, :2], sides, c.refine_size)
        logits, lw, score = self.refine(x, peak=True)
        pv = _soft_argmax(logits, cells, cells).numpy()
        xy = boxes[:, :2] + (pv * 2 - 1) * sides[:, None] / 2
        return np.column_stack([xy, np.exp(lw.numpy()) * sides]), score.numpy()

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"locator.{k}": v for k, v in self.net.state_dict().items()}
        if self.refine is not None:
            state.update({f"locator_refine.{k}": v for k, v in self.refine.state_dict().items()})
        return state

    @classmethod
    def from_state_dict(cls, config: LocatorConfig, state: dict[str, torch.Tensor]) -> EyeLocator:
        net = LocatorNet(config.channels)
        net.load_state_dict({k.removeprefix("locator."): v for k, v in state.items()
                             if k.startswith("locator.")})
        net.eval()
        refine = None
        if config.refine_steps > 0:
            refine = RefineNet(config.channels)
            refine.load_state_dict({k.removeprefix("locator_refine."): v for k, v in state.items()
                                    if k.startswith("locator_refine.")})
            refine.eval()
        return cls(config, net, refine)

