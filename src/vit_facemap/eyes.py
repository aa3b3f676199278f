"""Finding the eye in a whole frame, so that eye-crop classifiers work on frames without keypoints.

Classifiers of pupil state look at a crop around the eye. On labeled frames the eyelid
keypoints give that crop; on new frames (a lab's own videos, the maintainers' held-out
animals) there are no keypoints, so an :class:`EyeLocator` trained on the eyelid keypoints
predicts the eye centre and eye width from the downsized frame. It is a small fully
convolutional network: a spatial-softmax heatmap gives the centre (soft-argmax), and the
heatmap-weighted features give the eye width. Small and convolutional on purpose: it
trains in a minute on a CPU from a few hundred frames and must generalise across rigs.

Crops are square, ``side = factor * eye width`` centred on the eye, resized with PIL
(antialiased); parts outside the frame are black.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm


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


def crop_eyes(frames: Sequence[np.ndarray], boxes: np.ndarray, factor: float, size: int) -> np.ndarray:
    """Square crops (N, size, size) uint8 of side ``factor * width`` centred on each (x, y, width)."""
    out = np.zeros((len(frames), size, size), dtype=np.uint8)
    for i, (f, (x, y, w)) in enumerate(zip(frames, np.asarray(boxes, float), strict=True)):
        half = factor * w / 2
        box = (x - half, y - half, x + half, y + half)
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

    def forward(self, x: torch.Tensor, peak: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits over heatmap cells (N, h*w), log eye width / frame width (N,)).

        ``peak``: logits outside a 5 x 5 window around each heatmap's highest cell are
        masked out (so the soft-argmax and the width read only the strongest candidate).
        """
        f = self.features(x)
        logits = self.heat(f).flatten(1)
        if peak:
            h, w = f.shape[2:]
            top = logits.argmax(-1)
            ys, xs = torch.arange(h).repeat_interleave(w), torch.arange(w).repeat(h)
            near = ((ys[None] - (top // w)[:, None]).abs() <= 2) & \
                   ((xs[None] - (top % w)[:, None]).abs() <= 2)
            logits = logits.masked_fill(~near, float("-inf"))
        weights = logits.softmax(-1)
        pooled = torch.einsum("nchw,nhw->nc", f, weights.view(-1, *f.shape[2:]))
        return logits, self.size(pooled).squeeze(-1)


def _soft_argmax(logits: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Expected (x, y) in [0, 1] frame units from heatmap logits (cell centres)."""
    p = logits.softmax(-1).view(-1, h, w)
    xs = (torch.arange(w, dtype=p.dtype) + 0.5) / w
    ys = (torch.arange(h, dtype=p.dtype) + 0.5) / h
    return torch.stack([(p.sum(1) * xs).sum(-1), (p.sum(2) * ys).sum(-1)], -1)


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


@dataclass
class EyeLocator:
    """A trained locator; :meth:`predict` returns (x, y, width) in each frame's own pixels."""

    config: LocatorConfig
    net: LocatorNet

    @classmethod
    def fit(cls, frames: Sequence[np.ndarray], boxes: np.ndarray,
            config: LocatorConfig = LocatorConfig(), progress: bool = True) -> EyeLocator:
        boxes = np.asarray(boxes, dtype=np.float64)
        ok = np.isfinite(boxes).all(1)
        if ok.sum() < 2:
            raise ValueError("the eye locator needs at least two frames with a known eye box")
        frames = [f for f, k in zip(frames, ok, strict=True) if k]
        boxes = boxes[ok]
        torch.manual_seed(config.seed)
        gen = torch.Generator().manual_seed(config.seed)
        x = torch.from_numpy(resize_frames(frames, config.width, config.height))
        sizes = np.array([[f.shape[1], f.shape[0]] for f in frames], dtype=np.float64)
        pts = torch.from_numpy(boxes[:, :2] / sizes).float()
        logw = torch.from_numpy(np.log(boxes[:, 2] / sizes[:, 0])).float()
        net = LocatorNet(config.channels)
        opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps = config.epochs * int(np.ceil(len(x) / config.batch_size))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=steps)
        h, w = config.height // 8, config.width // 8
        gy, gx = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w,
                                indexing="ij")
        net.train()
        for _ in tqdm(range(config.epochs), desc="eye locator", disable=not progress):
            order = torch.randperm(len(x), generator=gen)
            for b in order.split(config.batch_size):
                xb, pb, lb = _augment(x[b], pts[b], logw[b], gen, config.zoom,
                                      config.rotation, config.shift)
                logits, lw = net(xb)
                # Gaussian target heatmap around the true centre (in cell units)
                d2 = ((gx[None] - pb[:, 0, None, None]) * w) ** 2 + \
                     ((gy[None] - pb[:, 1, None, None]) * h) ** 2
                target = torch.softmax(-d2.flatten(1) / (2 * config.sigma ** 2), -1)
                loss = -(target * logits.log_softmax(-1)).sum(-1).mean()
                loss = loss + 10 * (_soft_argmax(logits, h, w) - pb).abs().sum(-1).mean()
                loss = loss + (lw - lb).abs().mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        net.eval()
        return cls(config, net)

    @torch.no_grad()
    def predict(self, frames: Sequence[np.ndarray], batch_size: int = 32,
                decode: str | None = None) -> np.ndarray:
        c = self.config
        peak = (decode or c.decode) == "peak"
        h, w = c.height // 8, c.width // 8
        out = []
        self.net.eval()
        for i in range(0, len(frames), batch_size):
            chunk = frames[i:i + batch_size]
            x = torch.from_numpy(resize_frames(chunk, c.width, c.height))
            logits, lw = self.net(x, peak=peak)
            xy = _soft_argmax(logits, h, w).numpy()
            sizes = np.array([[f.shape[1], f.shape[0]] for f in chunk], dtype=np.float64)
            out.append(np.column_stack([xy * sizes, np.exp(lw.numpy()) * sizes[:, 0]]))
        return np.concatenate(out) if out else np.zeros((0, 3))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"locator.{k}": v for k, v in self.net.state_dict().items()}

    @classmethod
    def from_state_dict(cls, config: LocatorConfig, state: dict[str, torch.Tensor]) -> EyeLocator:
        net = LocatorNet(config.channels)
        net.load_state_dict({k.removeprefix("locator."): v for k, v in state.items()
                             if k.startswith("locator.")})
        net.eval()
        return cls(config, net)

