"""Keypoint heads: CLS-token regression (the original ViT_Facemap baseline) and heatmaps.

The heatmap head follows ViTPose's simple decoder: the patch tokens, reshaped to their
grid, go through a few 2x deconvolutions and a 1x1 convolution to one map per keypoint.
Maps are read as logits of a spatial softmax; coordinates are its expectation (integral
regression / soft-argmax), which is sub-pixel and differentiable. Confidence is the
probability mass near the peak.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class HeatmapHead(nn.Module):
    """(B, C, h, w) features -> (B, K, h * 2**n_up, w * 2**n_up) heatmap logits."""

    def __init__(self, in_channels: int, n_keypoints: int, n_up: int = 2, channels: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(n_up):
            layers += [
                nn.ConvTranspose2d(c, channels, kernel_size=4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            c = channels
        if n_up == 0:
            layers += [nn.Conv2d(c, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                       nn.ReLU(inplace=True)]
        self.up = nn.Sequential(*layers)
        self.out = nn.Conv2d(channels, n_keypoints, kernel_size=1)
        self.n_up = n_up

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(self.up(features))


class SkipHeatmapHead(nn.Module):
    """Token grid upsampled to stride 4 and fused with the stem's stride-4 map (the conv
    stem's, or a CNN stem's stride-4 stage).

    The transformer sees the face at stride 16 (cheap on a CPU); the skip brings back
    the stem's fine detail so peaks land within a pixel. A U-Net-like variant of the
    ViTPose simple decoder for hybrid backbones.
    """

    def __init__(self, in_channels: int, skip_channels: int, n_keypoints: int, channels: int = 64,
                 up: int = 4) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(in_channels, channels, 1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.skip = nn.Sequential(nn.Conv2d(skip_channels, channels, 1, bias=False),
                                  nn.BatchNorm2d(channels))
        self.fuse = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(channels, n_keypoints, kernel_size=1)
        self.up = up

    def forward(self, features: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.proj(features), size=skip.shape[-2:], mode="bilinear",
                          align_corners=False)
        return self.out(self.fuse(F.relu(x + self.skip(skip))))


class RegressionHead(nn.Module):
    """(B, D) pooled / CLS token -> (B, K, 2) coordinates in [0, 1] of the input and (B, K) visibility logits."""

    def __init__(self, in_features: int, n_keypoints: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_features)
        self.fc = nn.Linear(in_features, n_keypoints * 3)
        self.k = n_keypoints

    def forward(self, token: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.fc(self.norm(token)).view(-1, self.k, 3)
        return torch.sigmoid(out[..., :2]), out[..., 2]


def soft_argmax(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected (x, y) in heatmap cells under the spatial softmax, and the probabilities."""
    b, k, h, w = logits.shape
    prob = F.softmax(logits.float().flatten(2), dim=-1).view(b, k, h, w)
    xs = torch.arange(w, device=logits.device, dtype=prob.dtype)
    ys = torch.arange(h, device=logits.device, dtype=prob.dtype)
    x = (prob.sum(2) * xs).sum(-1)
    y = (prob.sum(3) * ys).sum(-1)
    return torch.stack([x, y], dim=-1), prob


# the window runs saved before the radius followed sigma decoded with (their config.json
# has no decode_radius); on real data it beat 1 and 3 for the default sigma of 1
DEFAULT_RADIUS = 2


def decode_radius(sigma: float) -> int:
    """The local soft-argmax window for heatmaps trained with Gaussian targets of ``sigma`` cells.

    A window of 2 sigma keeps the bias of the truncated Gaussian under a tenth of a cell
    (a radius of 2 leaves 0.29 cells for sigma 2); never below :data:`DEFAULT_RADIUS`.
    """
    return max(DEFAULT_RADIUS, math.ceil(2 * sigma))


def local_soft_argmax(logits: torch.Tensor, radius: int = DEFAULT_RADIUS
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-argmax restricted to a (2r+1)^2 window around the peak; confidence = mass in it.

    The global expectation is pulled towards the centre by probability spread over far-away
    cells (a second candidate, background); the local one is not.
    """
    b, k, h, w = logits.shape
    prob = F.softmax(logits.float().flatten(2), dim=-1)
    peak = prob.argmax(-1)
    py, px = peak // w, peak % w
    prob = prob.view(b, k, h, w)
    offs = torch.arange(-radius, radius + 1, device=logits.device)
    yy = (py[..., None] + offs).clamp(0, h - 1)  # (b, k, n)
    xx = (px[..., None] + offs).clamp(0, w - 1)
    # gather the window: (b, k, n, n)
    rows = torch.gather(prob, 2, yy[..., None].expand(b, k, len(offs), w))
    win = torch.gather(rows, 3, xx[:, :, None, :].expand(b, k, len(offs), len(offs)))
    # duplicated indices at the border would count a cell twice: zero them
    valid_y = (py[..., None] + offs >= 0) & (py[..., None] + offs < h)
    valid_x = (px[..., None] + offs >= 0) & (px[..., None] + offs < w)
    win = win * (valid_y[..., :, None] & valid_x[..., None, :])
    mass = win.sum((-1, -2)).clamp_min(1e-12)
    x = (win.sum(-2) * xx).sum(-1) / mass
    y = (win.sum(-1) * yy).sum(-1) / mass
    return torch.stack([x, y], dim=-1), mass.clamp(0, 1)


def gaussian_targets(
    coords: torch.Tensor, visible: torch.Tensor, size: tuple[int, int], sigma: float
) -> torch.Tensor:
    """Normalised Gaussian maps (B, K, h, w) centred at ``coords`` (heatmap cells)."""
    h, w = size
    ys = torch.arange(h, device=coords.device, dtype=torch.float32)
    xs = torch.arange(w, device=coords.device, dtype=torch.float32)
    c = torch.nan_to_num(coords.float())
    gx = torch.exp(-((xs - c[..., :1]) ** 2) / (2 * sigma**2))  # (B, K, w)
    gy = torch.exp(-((ys - c[..., 1:]) ** 2) / (2 * sigma**2))  # (B, K, h)
    g = gy[..., :, None] * gx[..., None, :]
    g = g / g.sum((-1, -2), keepdim=True).clamp_min(1e-12)
    return g * visible[..., None, None]


def heatmap_cross_entropy(logits: torch.Tensor, coords: torch.Tensor, visible: torch.Tensor,
                          sigma: float) -> torch.Tensor:
    """Cross-entropy (B, K) of each heatmap's spatial softmax to a Gaussian at ``coords``
    (heatmap cells); 0 where ``visible`` is 0, so callers average over what they count."""
    target = gaussian_targets(coords, visible, tuple(logits.shape[-2:]), sigma)
    return -(target.flatten(2) * F.log_softmax(logits.flatten(2), -1)).sum(-1)
