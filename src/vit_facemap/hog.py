"""Histogram-of-oriented-gradients features as used by Dolensek et al. (2020).

Their facial-expression pipeline described each face crop with HOG using 8 orientations,
32-pixel cells, blocks of one cell and a square-root (gamma) transform, and fed the
vector to a random forest. The same features serve the keypoint baseline (regression)
and the facial-state baseline (classification).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.feature import hog
from tqdm import tqdm


@dataclass(frozen=True)
class HogConfig:
    orientations: int = 8
    pixels_per_cell: int = 32
    cells_per_block: int = 1
    transform_sqrt: bool = True
    # with one-cell blocks each cell's histogram is normalised on its own; we found no norm
    # named in Dolensek et al.: scikit-image's default (since 0.15), pinned so a version
    # change cannot change the features
    block_norm: str = "L2-Hys"


def hog_features(images: np.ndarray, config: HogConfig = HogConfig(), progress: bool = False) -> np.ndarray:
    """HOG vectors of a stack of grayscale images (N, H, W) -> (N, n_features) float32."""
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3:
        raise ValueError(f"expected grayscale images (N, H, W), got shape {images.shape}")
    feats = [
        hog(
            img,
            orientations=config.orientations,
            pixels_per_cell=(config.pixels_per_cell, config.pixels_per_cell),
            cells_per_block=(config.cells_per_block, config.cells_per_block),
            transform_sqrt=config.transform_sqrt,
            block_norm=config.block_norm,
            feature_vector=True,
        )
        for img in tqdm(images, desc="HOG", disable=not progress)
    ]
    return np.stack(feats).astype(np.float32)


def hog_grid_shape(height: int, width: int, config: HogConfig = HogConfig()) -> tuple[int, int]:
    """(rows, cols) of HOG cells for an image, so per-feature importances map back to cells."""
    c = config.pixels_per_cell
    return height // c - config.cells_per_block + 1, width // c - config.cells_per_block + 1
