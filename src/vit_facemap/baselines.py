"""Keypoint baselines with the predictor API of :mod:`vit_facemap.predict`.

- :class:`MeanShapePredictor`: every frame gets the training frames' mean keypoints (the
  floor any tracker must beat on head-fixed rigs).
- :class:`HogForestPredictor`: HOG features with Dolensek et al.'s settings
  (:func:`vit_facemap.hog.hog_features`) of the face crop, regressed to the coordinates
  by scikit-learn random forests, each fitted on the frames where its keypoints are labeled.

Both take uint8 frames in their own pixels and return ``(keypoints (B, K, 2), confidence
(B, K))``, so the evaluation harness treats them like trained networks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import RandomForestRegressor

from vit_facemap.dlc import LabeledFrames
from vit_facemap.hog import hog_features
from vit_facemap.images import load_image
from vit_facemap.transforms import InputMapping, label_box, rescale_points, to_channels


class MeanShapePredictor:
    """Predicts the mean training pose for every frame (confidence 1)."""

    def __init__(self, frames: LabeledFrames, frame_size: tuple[int, int] | None = None) -> None:
        self.bodyparts = list(frames.bodyparts)
        self.frame_size = frame_size
        self.channels = 1
        self.mean = np.nanmean(frames.keypoints, axis=0)
        if np.isnan(self.mean).any():
            raise ValueError("a keypoint is missing in every training frame")

    def predict(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(frames)
        kp = np.repeat(self.mean[None], n, axis=0)
        if self.frame_size is not None:
            kp = rescale_points(kp, self.frame_size, (frames.shape[2], frames.shape[1]))
        return kp, np.ones(kp.shape[:2])


@dataclass
class HogForestConfig:
    crop_width: int = 512          # the face crop is resized to this width before HOG
    crop_margin: float = 0.15
    n_estimators: int = 200
    min_samples_leaf: int = 2
    max_features: float = 0.3
    n_jobs: int = 2
    seed: int = 0


class HogForestPredictor:
    """HOG (8 orientations, 32-px cells, 1x1 blocks, sqrt) + random-forest regression."""

    def __init__(self, config: HogForestConfig | None = None) -> None:
        self.config = config or HogForestConfig()
        self.channels = 1
        self.bodyparts: list[str] = []
        self.frame_size: tuple[int, int] | None = None
        self.mapping: InputMapping | None = None

    def _features(self, images: list[np.ndarray] | np.ndarray) -> np.ndarray:
        assert self.mapping is not None
        crops = []
        for img in images:
            m = self.mapping.for_frame_size(self.frame_size, (img.shape[1], img.shape[0]))
            crops.append(to_channels(m.apply(img), 1)[..., 0])
        return hog_features(np.stack(crops))

    def fit(self, frames: LabeledFrames) -> HogForestPredictor:
        c = self.config
        images = [to_channels(load_image(p), 1)[..., 0] for p in frames.image_paths]
        h, w = images[0].shape
        self.frame_size = (w, h)
        self.bodyparts = list(frames.bodyparts)
        # keep the crop's (about 4:3) aspect: derive the input height from the box
        aspect_box = label_box(frames.keypoints, self.frame_size, (4, 3), c.crop_margin)
        height = int(round(c.crop_width * aspect_box.box_h / aspect_box.box_w))
        self.mapping = InputMapping(aspect_box.x0, aspect_box.y0, aspect_box.box_w,
                                    aspect_box.box_h, c.crop_width, height)
        x = self._features(images)
        labeled = np.isfinite(frames.keypoints).all(-1)  # (N, K)
        never = [b for b, seen in zip(self.bodyparts, labeled.any(0), strict=True) if not seen]
        if never:
            raise ValueError(f"keypoint {never[0]!r} is missing in every training frame")
        # a filled-in target would pull the forest toward the fill (the neural models leave
        # missing labels out of their loss), so each set of keypoints labeled in the same
        # frames gets a forest of those frames only; a fully labeled set keeps one forest
        self.forests: list[tuple[np.ndarray, RandomForestRegressor]] = []
        for pattern in np.unique(labeled, axis=1).T:
            ks = np.flatnonzero((labeled == pattern[:, None]).all(0))
            y = frames.keypoints[pattern][:, ks].reshape(int(pattern.sum()), -1)
            forest = RandomForestRegressor(
                n_estimators=c.n_estimators, min_samples_leaf=c.min_samples_leaf,
                max_features=c.max_features, n_jobs=c.n_jobs, random_state=c.seed,
            ).fit(x[pattern], y)
            self.forests.append((ks, forest))
        return self

    def predict(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frames = np.asarray(frames)
        imgs = [to_channels(f, 1)[..., 0] for f in frames]
        feats = self._features(imgs)
        kp = np.empty((len(frames), len(self.bodyparts), 2))
        spread = np.empty((len(frames), len(self.bodyparts)))
        for ks, forest in self.forests:
            kp[:, ks] = forest.predict(feats).reshape(len(frames), len(ks), 2)
            # spread of the trees' votes as a rough confidence: 1 / (1 + std in px / 10)
            per_tree = np.stack([t.predict(feats) for t in forest.estimators_[:20]])
            spread[:, ks] = per_tree.reshape(len(per_tree), len(frames), len(ks), 2).std(0).mean(-1)
        # the forests answer in the training frames' pixels
        kp = rescale_points(kp, self.frame_size, (frames.shape[2], frames.shape[1]))
        return kp, 1.0 / (1.0 + spread / 10.0)
