"""A torch Dataset over labeled frames, cropped and resized once, augmented per sample."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from vit_facemap.augment import KeypointAugmenter
from vit_facemap.dlc import LabeledFrames
from vit_facemap.images import load_image
from vit_facemap.transforms import InputMapping, model_input, normalise, to_channels


def load_inputs(
    frames: LabeledFrames, mapping: InputMapping | Sequence[InputMapping], channels: int,
    frame_size: tuple[int, int] | None = None, progress: bool = False,
    equalize_clip: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Model-sized uint8 inputs (N, h, w, C) and keypoints in input pixels (N, K, 2).

    ``mapping`` is one crop box for all frames, or one per frame (in the frame's own
    pixels, as the second, top-down stage uses); a frame listed several times in a row
    is read once. ``equalize_clip``: the model's ``equalize`` (local contrast, CLAHE; 0: off).
    """
    per_frame = not isinstance(mapping, InputMapping)
    if per_frame and len(mapping) != len(frames):
        raise ValueError(f"{len(mapping)} crop boxes for {len(frames)} frames")
    images, kps = [], []
    last_path, frame = None, None
    for i, (path, kp) in enumerate(tqdm(zip(frames.image_paths, frames.keypoints, strict=True),
                                        total=len(frames), desc="load frames",
                                        disable=not progress)):
        if path != last_path:
            frame, last_path = load_image(path), path
        size = (frame.shape[1], frame.shape[0])
        m = mapping[i] if per_frame else mapping.for_frame_size(frame_size, size)
        img = to_channels(frame, 3 if frame.ndim == 3 and channels == 3 else 1)
        images.append(model_input(img, m, channels, equalize_clip))
        kps.append(m.to_input(kp))
    return np.stack(images), np.stack(kps).astype(np.float32)


class KeypointDataset(Dataset):
    """Items: ``(image float (C, h, w), keypoints (K, 2) in input pixels with NaN = missing)``."""

    def __init__(self, images: np.ndarray, keypoints: np.ndarray,
                 augmenter: KeypointAugmenter | None = None) -> None:
        self.images = images
        self.keypoints = keypoints
        self.augmenter = augmenter

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, kp = self.images[i], self.keypoints[i]
        if self.augmenter is not None:
            squeeze = img.shape[-1] == 1
            img, kp = self.augmenter(img[..., 0] if squeeze else img, kp)
            if img.ndim == 2:
                img = img[..., None]
        x = normalise(img[None])[0]
        return torch.from_numpy(x), torch.as_tensor(np.asarray(kp, dtype=np.float32))
