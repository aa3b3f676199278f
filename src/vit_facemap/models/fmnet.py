"""Facemap's own keypoint network (FMnet) as a peer, imported from the ``facemap`` package.

``facemap`` is an optional dependency installed with ``pip install --no-deps facemap`` (its
own pins clash with ours; ``facemap.pose.facemap_network`` needs only torch). FMnet is a
U-Net-like encoder/decoder that outputs ReLU heatmaps (plus offset maps we do not use);
we read ``log(heatmap)`` as logits so the same soft-argmax loss and decoding train and
read it as our heads.
"""

from __future__ import annotations

import torch
from torch import nn


def facemap_available() -> bool:
    try:
        from facemap.pose import facemap_network  # noqa: F401
    except ImportError:
        return False
    return True


CHANNELS = (16, 32, 64, 128, 200)  # facemap's default


def input_multiple(channels: tuple[int, ...] = CHANNELS) -> int:
    """What each input side must be a multiple of: the encoder halves it once per level
    after the first, and the decoder concatenates each upsampled map with the encoder's."""
    return 2 ** (len(channels) - 1)


def check_input_size(input_size: tuple[int, int], channels: tuple[int, ...] = CHANNELS) -> None:
    """Refuse an input size FMnet cannot take, naming the nearest sizes it can: the network
    builds at any size and fails only at its first forward pass."""
    m = input_multiple(channels)
    bad = [(name, v) for name, v in zip(("width", "height"), input_size, strict=True) if v % m]
    if bad:
        near = ", ".join(f"{name} {v}: " + " or ".join(str(n) for n in (v // m * m, v // m * m + m)
                                                       if n > 0) for name, v in bad)
        raise ValueError(f"FMnet input {input_size[0]}x{input_size[1]}: each side must be a "
                         f"multiple of {m} ({near})")


class FMnetModel(nn.Module):
    """FMnet with facemap's default channels; returns heatmap logits at stride ``stride``."""

    def __init__(self, n_keypoints: int, in_chans: int = 1, input_size: tuple[int, int] = (256, 256),
                 channels: tuple[int, ...] = CHANNELS, n_upsample: int = 2) -> None:
        super().__init__()
        check_input_size(input_size, tuple(channels))
        try:
            from facemap.pose.facemap_network import FMnet
        except ImportError as exc:  # pragma: no cover - depends on the optional install
            raise ImportError(
                "the FMnet peer needs Facemap: pip install --no-deps facemap"
            ) from exc
        w, h = input_size
        self.net = FMnet(img_ch=in_chans, output_ch=n_keypoints, labels_id=list(range(n_keypoints)),
                         channels=list(channels), device=torch.device("cpu"), shape=(h, w),
                         n_upsample=n_upsample)
        self.stride = 2 ** (len(channels) - 1 - n_upsample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hm, _, _ = self.net(x)
        return torch.log(hm.float().clamp_min(0) + 1e-4)
