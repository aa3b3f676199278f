"""Keypoints for raw frames from a trained run: the API the video tracker codes against.

``load_predictor(run_dir).predict(frames)`` takes a uint8 batch in the frames' own pixels
((B, H, W) gray or (B, H, W, 3) RGB), crops and resizes it like training did, runs the
model under ``torch.inference_mode`` and maps the keypoints back to the frames' pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vit_facemap.runinfo import resolve_device
from vit_facemap.train import decode, load_run
from vit_facemap.transforms import InputMapping, normalise, to_channels


class KeypointPredictor:
    """A trained keypoint model with its crop box; see :meth:`predict`."""

    def __init__(self, model: torch.nn.Module, run_config: dict, device: str = "cpu",
                 batch_size: int = 64) -> None:
        self.model = model
        self.device = device
        self.bodyparts: list[str] = list(run_config["bodyparts"])
        fs = run_config.get("frame_size")
        self.frame_size: tuple[int, int] | None = (int(fs[0]), int(fs[1])) if fs else None
        self.channels: int = int(run_config.get("channels", 1))
        self.mapping = InputMapping(**run_config["mapping"])
        self.batch_size = batch_size
        if device == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)

    def mapping_for(self, width: int, height: int) -> InputMapping:
        return self.mapping.for_frame_size(self.frame_size, (width, height))

    def prepare(self, frames: np.ndarray) -> tuple[np.ndarray, InputMapping]:
        """Model inputs (B, C, h, w) float32 for a uint8 batch, and the mapping used."""
        frames = np.asarray(frames)
        if frames.ndim == 2 or (frames.ndim == 3 and frames.shape[-1] == 3 and self._single_rgb(frames)):
            frames = frames[None]
        if frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[-1] not in (1, 3)):
            raise ValueError(f"frames must be (B, H, W) or (B, H, W, 3) uint8, got {frames.shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        h, w = frames.shape[1:3]
        m = self.mapping_for(w, h)
        inputs = np.stack([to_channels(m.apply(f), self.channels) for f in frames])
        return normalise(inputs), m

    @staticmethod
    def _single_rgb(frames: np.ndarray) -> bool:
        return False  # a (B, H, W) batch with W == 3 is never meant; 3-D input is a gray batch

    @torch.inference_mode()
    def predict(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (B, K, 2) in the frames' pixels and confidence (B, K) in [0, 1]."""
        x, m = self.prepare(frames)
        kps, confs = [], []
        for i in range(0, len(x), self.batch_size):
            xb = torch.from_numpy(x[i:i + self.batch_size]).to(self.device)
            if self.device == "cpu":
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type="cuda", enabled=self.device.startswith("cuda")):
                out = self.model(xb)
            kp, conf = decode(out, self.model.stride)
            kps.append(kp.cpu().numpy())
            confs.append(conf.cpu().numpy())
        kp = m.to_frame(np.concatenate(kps))
        return kp, np.clip(np.concatenate(confs), 0.0, 1.0)


def load_predictor(run_dir: str | Path, device: str = "auto") -> KeypointPredictor:
    """The predictor of a trained run (``vit-facemap train`` output folder)."""
    device = resolve_device(device)
    model, run_config = load_run(run_dir, device)
    return KeypointPredictor(model, run_config, device)
