"""Frames to model input and back: crop box, resize, exact inverse for keypoints.

The rigs are head-fixed, so the face sits in the same region of every frame. A run keeps
one crop box (from the training labels' extent plus a margin), cuts it out of each frame
(padding with zeros where it passes the border) and resizes it to the model's input with
``cv2.resize`` (area interpolation: no aliasing when shrinking). ``cv2.resize`` aligns pixel
centres, so a point ``x`` of the frame lands at ``(x - x0 + 0.5) * s - 0.5`` in the input;
:meth:`InputMapping.to_frame` is the exact inverse of :meth:`InputMapping.to_input`.
Coordinates follow DeepLabCut: pixel centres at integers, origin top-left.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class InputMapping:
    """A crop box ``[x0, x0 + box_w) x [y0, y0 + box_h)`` of a frame resized to ``input_w x input_h``."""

    x0: int
    y0: int
    box_w: int
    box_h: int
    input_w: int
    input_h: int

    @property
    def scale(self) -> tuple[float, float]:
        return self.input_w / self.box_w, self.input_h / self.box_h

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        """Frame pixel coordinates (..., 2) -> input pixel coordinates (NaN stays NaN)."""
        xy = np.asarray(xy, dtype=np.float64)
        sx, sy = self.scale
        out = np.empty_like(xy)
        out[..., 0] = (xy[..., 0] - self.x0 + 0.5) * sx - 0.5
        out[..., 1] = (xy[..., 1] - self.y0 + 0.5) * sy - 0.5
        return out

    def to_frame(self, uv: np.ndarray) -> np.ndarray:
        """Input pixel coordinates (..., 2) -> frame pixel coordinates; inverse of :meth:`to_input`."""
        uv = np.asarray(uv, dtype=np.float64)
        sx, sy = self.scale
        out = np.empty_like(uv)
        out[..., 0] = (uv[..., 0] + 0.5) / sx - 0.5 + self.x0
        out[..., 1] = (uv[..., 1] + 0.5) / sy - 0.5 + self.y0
        return out

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Crop (zero padding outside the frame) and resize one image (H, W) or (H, W, C)."""
        h, w = image.shape[:2]
        x1, y1 = self.x0 + self.box_w, self.y0 + self.box_h
        if x1 <= 0 or y1 <= 0 or self.x0 >= w or self.y0 >= h:
            # nothing of the frame in the box; and a slice ending at a negative x1 or y1 would
            # count from the far side of the frame, cutting out real content
            return np.zeros((self.input_h, self.input_w, *image.shape[2:]), image.dtype)
        pad_l, pad_t = max(0, -self.x0), max(0, -self.y0)
        pad_r, pad_b = max(0, x1 - w), max(0, y1 - h)
        crop = image[max(0, self.y0):min(h, y1), max(0, self.x0):min(w, x1)]
        if pad_l or pad_t or pad_r or pad_b:
            crop = cv2.copyMakeBorder(crop, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_CONSTANT, value=0)
        if crop.shape[1] == self.input_w and crop.shape[0] == self.input_h:
            return np.ascontiguousarray(crop)
        interp = cv2.INTER_AREA if self.box_w >= self.input_w else cv2.INTER_LINEAR
        return cv2.resize(crop, (self.input_w, self.input_h), interpolation=interp)

    def scaled(self, factor: float) -> InputMapping:
        """The box grown (``factor`` > 1) or shrunk about its centre; same input size."""
        if factor == 1:
            return self
        w = max(1, int(round(self.box_w * factor)))
        h = max(1, int(round(self.box_h * factor)))
        return InputMapping(x0=int(round(self.x0 + (self.box_w - w) / 2)),
                            y0=int(round(self.y0 + (self.box_h - h) / 2)),
                            box_w=w, box_h=h, input_w=self.input_w, input_h=self.input_h)

    def for_frame_size(self, train_size: tuple[int, int] | None, size: tuple[int, int]) -> InputMapping:
        """The same box on a frame of another size (the box scales with the frame)."""
        if train_size is None or tuple(train_size) == tuple(size):
            return self
        fx, fy = size[0] / train_size[0], size[1] / train_size[1]
        return InputMapping(
            x0=int(round(self.x0 * fx)), y0=int(round(self.y0 * fy)),
            box_w=max(1, int(round(self.box_w * fx))), box_h=max(1, int(round(self.box_h * fy))),
            input_w=self.input_w, input_h=self.input_h,
        )


def rescale_points(xy: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]
                   ) -> np.ndarray:
    """Pixel coordinates (..., 2) on frames of ``from_size`` (W, H) -> the same places on
    frames of ``to_size``; pixel centres stay pixel centres ((x + 0.5) * s - 0.5)."""
    s = np.array([to_size[0] / from_size[0], to_size[1] / from_size[1]])
    return (np.asarray(xy, dtype=np.float64) + 0.5) * s - 0.5


def full_frame_box(frame_size: tuple[int, int], input_size: tuple[int, int]) -> InputMapping:
    """The whole frame, padded on the right/bottom to the input's aspect ratio."""
    w, h = frame_size
    iw, ih = input_size
    bw, bh = _fit_aspect(w, h, iw / ih)
    return InputMapping(0, 0, bw, bh, iw, ih)


def _fit_aspect(bw: float, bh: float, aspect: float) -> tuple[int, int]:
    if bw / bh < aspect:
        bw = bh * aspect
    else:
        bh = bw / aspect
    return int(np.ceil(bw)), int(np.ceil(bh))


def label_box(
    keypoints: np.ndarray,
    frame_size: tuple[int, int],
    input_size: tuple[int, int],
    margin: float = 0.15,
) -> InputMapping:
    """Crop box around all labeled keypoints of the training frames, plus ``margin``.

    ``margin`` is a fraction of the box's larger side added on every side, so that an animal
    moving a bit further than in the training frames stays inside. The box takes the input's
    aspect ratio (grown, never shrunk) and is clipped to the frame where that keeps it large
    enough; any remainder is zero padding at predict time.
    """
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    kp = kp[~np.isnan(kp).any(axis=1)]
    if len(kp) == 0:
        return full_frame_box(frame_size, input_size)
    lo, hi = kp.min(axis=0), kp.max(axis=0)
    pad = margin * float(max(hi - lo))
    lo, hi = lo - pad, hi + pad
    iw, ih = input_size
    bw, bh = _fit_aspect(hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, iw / ih)
    fw, fh = frame_size
    cx, cy = (lo + hi) / 2
    x0 = int(round(cx - bw / 2))
    y0 = int(round(cy - bh / 2))
    # Slide the box inside the frame where it fits, so less of it is padding.
    if bw <= fw:
        x0 = min(max(x0, 0), fw - bw)
    if bh <= fh:
        y0 = min(max(y0, 0), fh - bh)
    return InputMapping(x0, y0, bw, bh, iw, ih)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Gray (H, W) or RGB (H, W, 3) uint8 to ``channels`` (1 or 3), as (H, W, C)."""
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == channels:
        return image
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]
    return np.repeat(image[..., :1], 3, axis=-1)


EQUALIZE_TILES = 4  # CLAHE tiles along each side of the model input


def equalize(image: np.ndarray, clip: float) -> np.ndarray:
    """A model-sized uint8 input (H, W, C) with its local contrast equalised (OpenCV's CLAHE
    over 4 x 4 tiles, ``clip`` its clip limit), or as it is where ``clip`` is 0.

    An eye filmed dark shows its pupil's edge in a few grey levels, which the fixed
    statistics of :func:`normalise` pass on as they are; equalising each input tile by tile
    spreads them as in a well-lit eye. An RGB input is equalised in its lightness alone
    (CIELAB's L), so its colours keep their balance.
    """
    if clip < 0:
        raise ValueError(f"equalize clip limit must be >= 0 (0: off), got {clip}")
    if clip == 0:
        return image
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"equalize takes a uint8 (H, W, 1 or 3) image, got {image.dtype} "
                         f"{image.shape}")
    clahe = cv2.createCLAHE(clipLimit=float(clip), tileGridSize=(EQUALIZE_TILES, EQUALIZE_TILES))
    if image.shape[-1] == 1:
        return clahe.apply(np.ascontiguousarray(image[..., 0]))[..., None]
    lab = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2LAB)
    lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def model_input(image: np.ndarray, box: InputMapping, channels: int,
                equalize_clip: float = 0.0) -> np.ndarray:
    """What a network sees of ``image``: ``box`` cut out and resized, as ``channels``, its
    local contrast equalised with ``equalize_clip`` (:func:`equalize`; 0: as it is), uint8
    (h, w, C). Training (:func:`vit_facemap.datasets.load_inputs`) and prediction
    (:class:`vit_facemap.predict.KeypointPredictor`) both cut inputs with it."""
    return equalize(to_channels(box.apply(image), channels), equalize_clip)


def normalise(batch: np.ndarray) -> np.ndarray:
    """uint8 (B, H, W, C) -> float32 (B, C, H, W) around zero (fixed statistics, set-independent)."""
    x = batch.astype(np.float32) / 255.0
    x = (x - 0.45) / 0.25
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
