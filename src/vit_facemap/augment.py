"""Keypoint-aware augmentation with albumentations, applied to the model-sized input.

Geometry (rotation, scale, translation, optional horizontal flip) moves the keypoints
with the pixels; keypoints that leave the image become missing (NaN), never clipped to
the border. Flipping swaps left/right keypoints, so it is only allowed with a declared
pairing. Missing keypoints ride along at a dummy position and come back as NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import albumentations as A
import numpy as np


@dataclass
class AugmentConfig:
    rotate: float = 15.0          # degrees, uniform in [-rotate, rotate]
    scale: float = 0.15           # relative, uniform in [1 - scale, 1 + scale]
    translate: float = 0.08       # fraction of the input size
    brightness: float = 0.25
    contrast: float = 0.25
    blur: float = 0.2             # probability of a Gaussian blur
    noise: float = 0.2            # probability of Gaussian noise
    hflip: float = 0.0            # probability; needs flip_pairs
    flip_pairs: list[list[str]] = field(default_factory=list)
    p_geometric: float = 0.9


class KeypointAugmenter:
    """Callable ``(image (H, W[, C]) uint8, keypoints (K, 2)) -> (image, keypoints)``."""

    def __init__(self, config: AugmentConfig, bodyparts: list[str], seed: int = 0) -> None:
        self.config = config
        c = config
        if c.hflip > 0 and not c.flip_pairs:
            raise ValueError("horizontal flips need flip_pairs naming left/right keypoints "
                             "(e.g. [['leftpupil', 'rightpupil']]); none were given")
        self.swap = np.arange(len(bodyparts))
        for a, b in c.flip_pairs:
            if a not in bodyparts or b not in bodyparts:
                raise ValueError(f"flip pair {a!r}/{b!r} is not among the keypoints {bodyparts}")
            i, j = bodyparts.index(a), bodyparts.index(b)
            self.swap[i], self.swap[j] = j, i
        geo = A.Affine(
            scale=(1 - c.scale, 1 + c.scale), translate_percent=(-c.translate, c.translate),
            rotate=(-c.rotate, c.rotate), border_mode=0, fill=0, p=c.p_geometric,
        )
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

    def __call__(self, image: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kp = np.asarray(keypoints, dtype=np.float64)
        missing = np.isnan(kp).any(-1)
        dummy = np.where(missing[:, None], 0.0, kp)
        out = self.geometric(image=image, keypoints=dummy)
        image, kp = out["image"], np.asarray(out["keypoints"], dtype=np.float64).reshape(-1, 2)
        if self.config.hflip > 0 and self.rng.random() < self.config.hflip:
            out = self.flip(image=image, keypoints=kp)
            image, kp = out["image"], np.asarray(out["keypoints"], dtype=np.float64).reshape(-1, 2)
            kp, missing = kp[self.swap], missing[self.swap]
        h, w = image.shape[:2]
        outside = (kp[:, 0] < -0.5) | (kp[:, 0] > w - 0.5) | (kp[:, 1] < -0.5) | (kp[:, 1] > h - 0.5)
        kp[missing | outside] = np.nan
        image = self.photometric(image=image)["image"]
        return image, kp
