"""Self-supervised pre-training on the frames themselves: masked image modelling.

Nothing can be downloaded, so the backbone learns what mouse faces look like from the
training frames (and any unlabeled frames) before it learns keypoints. We use the SimMIM
form of masked auto-encoding because it works for every backbone here, hybrid ViTs with
either stem included: random patches of the input are blanked, the backbone sees the blanked
image, and a linear layer on the token grid reconstructs the pixels of the blanked
patches (L1 loss on those pixels only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class MaskedImageModel(nn.Module):
    """Backbone + pixel decoder for masked image modelling (SimMIM)."""

    def __init__(self, backbone: nn.Module, in_chans: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.stride = backbone.stride
        self.in_chans = in_chans
        self.decoder = nn.Conv2d(backbone.num_features, self.stride**2 * in_chans, kernel_size=1)

    def random_mask(self, x: torch.Tensor, ratio: float, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
        """(B, 1, h, w) boolean mask of blanked patches (one per backbone token)."""
        b, _, hh, ww = x.shape
        h, w = hh // self.stride, ww // self.stride
        scores = torch.rand(b, h * w, generator=generator).to(x.device)
        k = max(1, int(round(ratio * h * w)))
        idx = scores.topk(k, dim=1).indices
        mask = torch.zeros(b, h * w, dtype=torch.bool, device=x.device)
        mask.scatter_(1, idx, True)
        return mask.view(b, 1, h, w)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """L1 reconstruction loss on the blanked pixels."""
        pix_mask = mask.repeat_interleave(self.stride, 2).repeat_interleave(self.stride, 3)
        grid, _ = self.backbone(x.masked_fill(pix_mask, 0.0))
        rec = rearrange(self.decoder(grid), "b (p q c) h w -> b c (h p) (w q)",
                        p=self.stride, q=self.stride, c=self.in_chans)
        err = F.l1_loss(rec, x, reduction="none") * pix_mask
        return err.sum() / (pix_mask.sum() * self.in_chans).clamp_min(1)
