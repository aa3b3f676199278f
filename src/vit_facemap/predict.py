"""Keypoints for raw frames from a trained run: the API the video tracker codes against.

``load_predictor(run_dir).predict(frames)`` takes a uint8 batch in the frames' own pixels
((B, H, W) gray or (B, H, W, 3) RGB), crops and resizes it like training did, runs the
model under ``torch.inference_mode`` and maps the keypoints back to the frames' pixels.

:meth:`KeypointPredictor.compile` hands the network to ``torch.compile`` (fused kernels,
after a compile of up to a minute). It is opt-in: on our idle 2-core CPU the compiled
default ViT was not faster than eager mode (``benchmarks/track_speed.py --compile``
measures it on a given machine); it may pay on other hardware. Batches are padded to one fixed size so that the
compiled graph is never rebuilt for a short last batch. Where compiling fails (no C
compiler, an unsupported platform) the predictor stays in eager mode and says why.

A run with a second, top-down stage (``<run>/refine/<group>/``, see
:mod:`vit_facemap.refine`) predicts in two passes: the first stage on the face box, then
each group's network on a crop around the first stage's estimate of that group (the eye
and the nose, by default), whose keypoints and confidences replace the first stage's.

Each stage looks at every frame through its box at a few sizes (``scales``) and averages
the keypoints and confidences in frame pixels: by default (:func:`load_predictor`) at
:data:`vit_facemap.config.TEST_SCALES` (0.9, 1 and 1.1 times the box, at three times the
model compute) where the run cannot flip, and at :data:`vit_facemap.config.FLIP_SCALES`
(the box alone) where it flips. ``scales=(1.0,)`` predicts from the box alone. The averaged
confidence does not say whether the views agreed. ``benchmarks/tracker.py`` scores every
run from one view as well (the box alone, not mirrored: ``one_scale_*``).

``crop_shift`` (off by default) also averages each second stage over its crop moved by
that share of its side left, right, up and down (:func:`vit_facemap.refine.crop_offsets`),
at five times the second stages' compute. ``benchmarks/crop_shift.py`` measures what it buys
and costs on trained runs; it is off by default because it slows tracking several-fold for
about a tenth of a pixel.

``flip`` also shows every stage the mirrored input, where the run trained on mirrored faces,
and averages the two heatmaps' logits (the mirrored one mirrored back, its left and right
keypoints swapped) before the keypoints are read off, at twice the model compute per box
size. :func:`load_predictor` flips by default wherever the run can (``flip=None``), with
the box alone; ``flip=False`` predicts as versions before this default did (three box
sizes, no mirrored view). A run that trained without flips, or regresses coordinates,
cannot: by default it predicts without; asked for it, :func:`load_predictor` warns and
predicts without.

``predict(frames, facing=...)`` reads the nose points off the first stage's heatmaps on one
side of the eye alone: the side a frame's face points to (+1: the nose right of the eye, -1:
left; :func:`facing_points` finds the points by name). On an animal that faces the other
way from most training animals, the first stage now and then puts the nose where a typical
animal's would be, on the far side of the eye, with confidence, and no crop around that
place can find it. In a head-fixed recording every frame of a video faces one way, so the
side most of a video's frames show (:func:`video_facing`) corrects the few that disagree;
:func:`vit_facemap.evaluate.predict_frames` does this per video by default.

Every frame's first-stage nose is also read only where the training labels put a nose from
the eye the first stage found (:attr:`KeypointPredictor.nose_offsets`, saved with runs
trained since: :func:`vit_facemap.refine.nose_offsets`), widened by :data:`NOSE_MARGIN`. A
first stage unsure of an unfamiliar face can put its strongest nose peak far below the eye
or beyond the face, and enough such frames also outvote a video's side. The eye is the box
of its points less any put far off (:func:`vit_facemap.refine.eye_boxes`), here and in
:meth:`KeypointPredictor.facing_of`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vit_facemap.augment import flip_swap
from vit_facemap.config import FLIP_SCALES, check_crop_shift, check_scales
from vit_facemap.errors import DataError, DataWarning, first_line
from vit_facemap.models.heads import DEFAULT_RADIUS, local_soft_argmax
from vit_facemap.refine import (
    crop_mappings,
    crop_offsets,
    estimate_centres,
    eye_boxes,
    facing_points,
    refine_groups,
)
from vit_facemap.runinfo import resolve_device
from vit_facemap.train import (
    CONFIG_FILE,
    TrainConfig,
    decode,
    heatmap_to_input,
    inference_autocast,
    load_run,
    stage_dirs,
    trained_with_amp,
)
from vit_facemap.transforms import InputMapping, model_input, normalise

#: How far past the training labels' :func:`~vit_facemap.refine.nose_offsets` (in eye sizes,
#: each way) a first stage's nose may lie from its eye. Left out of every animal in turn,
#: ``schroeder``'s other animals' range missed the held-out one's by at most 0.42 eye sizes,
#: and ``g7c1``'s other video's by 0.84.
NOSE_MARGIN = 1.0


class KeypointPredictor:
    """A trained keypoint model with its crop box; see :meth:`predict`.

    Built as given (no mirrored views unless ``flip``); :func:`load_predictor` chooses the
    default views of a trained run. ``scales`` (None: :data:`vit_facemap.config.TEST_SCALES`)
    applies to the second stages in ``refiners`` too: one predictor looks at a frame at one
    set of box sizes.
    ``crop_shift`` (a share of the crop's side; 0: one crop) is the second stages' test-time
    shift (:func:`vit_facemap.refine.crop_offsets`).
    """

    def __init__(self, model: torch.nn.Module, run_config: dict, device: str = "cpu",
                 batch_size: int = 64, refiners: list[KeypointPredictor] | None = None,
                 scales: Sequence[float] | None = None, crop_shift: float = 0.0,
                 flip: bool = False) -> None:
        self.model = model
        self.device = device
        self.bodyparts: list[str] = list(run_config["bodyparts"])
        fs = run_config.get("frame_size")
        self.frame_size: tuple[int, int] | None = (int(fs[0]), int(fs[1])) if fs else None
        self.channels: int = int(run_config.get("channels", 1))
        net = getattr(model, "config", None)  # the network's ModelConfig (None in stubs)
        # the local contrast equalisation the network trained on (runs saved before it: none)
        self.equalize: float = float(getattr(net, "equalize", 0.0))
        # the heatmap window the run was validated with (runs saved without one used 2)
        self.radius: int = int(run_config.get("decode_radius", DEFAULT_RADIUS))
        # mixed precision only for a run trained with it: one trained in full precision
        # (amp false) was predicted under autocast on a GPU all the same
        self.amp: bool = trained_with_amp(run_config)
        # a second stage has no fixed box: each frame gets one around the first stage's
        # estimate of its group
        self.mapping = InputMapping(**run_config["mapping"]) if run_config.get("mapping") else None
        self.refine_of: dict | None = run_config.get("refine_of")
        self.refiners = list(refiners or [])
        self.scales = scales  # handed on to the second stages
        self.crop_shift = crop_shift  # refused here, not at the first frame
        # None where the network trained without mirrored faces
        augment = (run_config.get("train") or {}).get("augment", {})
        self._flip_swap = flip_swap(TrainConfig.from_dict({"augment": augment}).augment,
                                    self.bodyparts)
        self.flip = flip
        # nose and eye points (None: names without both, or a head without heatmaps)
        heatmaps = getattr(net, "head", None) == "heatmap"
        self._facing = facing_points(self.bodyparts) if heatmaps else None
        # where the training labels put each nose point from the eye (first stages saved
        # since the rule came; None: read anywhere)
        offsets = run_config.get("nose_offsets")
        self.nose_offsets: np.ndarray | None = (
            np.asarray(offsets, dtype=np.float64)
            if offsets is not None and self._facing is not None and self.mapping is not None
            else None)
        self.batch_size = batch_size
        self.compiled = False
        self.compile_s: float | None = None
        self.compile_error: str | None = None
        if device == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        self._forward = self.model

    @property
    def scales(self) -> tuple[float, ...]:
        """The box sizes (factors of the box) every stage averages over."""
        return self._scales

    @scales.setter
    def scales(self, scales: Sequence[float] | None) -> None:
        # one predictor looks at a frame at one set of box sizes, second stages included
        self._scales = check_scales(scales)
        for refiner in self.refiners:
            refiner.scales = self._scales

    @property
    def crop_shift(self) -> float:
        """The second stages' test-time shift (a share of a crop's side; 0: one crop)."""
        return self._crop_shift

    @crop_shift.setter
    def crop_shift(self, shift: float) -> None:
        # handed on to the second stages whenever it is set, so that what a summary records
        # (vit_facemap.track) is what they do
        self._crop_shift = check_crop_shift(shift)
        for refiner in self.refiners:
            refiner.crop_shift = self._crop_shift

    @property
    def flip(self) -> bool:
        """Whether every stage averages its heatmaps with those of the mirrored input."""
        return self._flip

    @flip.setter
    def flip(self, flip: bool) -> None:
        if not isinstance(flip, bool | np.bool_):
            raise ValueError(f"flip must be True or False, got {flip!r}")
        why = self.why_no_flip() if flip else None
        if why:
            raise ValueError(why)
        self._flip = bool(flip)
        for refiner in self.refiners:  # trained with the first stage's flips
            refiner.flip = self._flip

    def why_no_flip(self) -> str | None:
        """Why this run cannot average over mirrored views (see :attr:`flip`); None if it can."""
        if self.model.config.head != "heatmap":
            return ("test-time flips average heatmaps; this run's network regresses "
                    "coordinates (model head 'regression')")
        if self.model.config.input_w % self.model.stride:
            # a heatmap cell covers stride input pixels from the left edge: mirrored cells
            # are mirrored pixels only when the cells tile the width
            return (f"test-time flips need an input width ({self.model.config.input_w}) that "
                    f"is a whole number of heatmap cells ({self.model.stride} pixels)")
        if self._flip_swap is None:
            # a mirrored view would show the network a face it never saw
            return ("test-time flips need a network trained on mirrored faces; this run "
                    "trained without flips (train.augment.hflip 0)")
        return next((f"second stage {r.refine_of['group']}: {why}" for r in self.refiners
                     if (why := r.why_no_flip())), None)

    def compile(self, batch_size: int | None = None) -> bool:
        """Compile the network with ``torch.compile``; True if it worked (else eager mode stays).

        ``batch_size`` (default: the predictor's) becomes the one batch size the graph is
        built for; pass the size the caller's batches have. A first run on zeros of the
        network's input size triggers the compilation, so its cost is paid here and
        recorded in ``compile_s``. Second stages are compiled with the first, for
        the same batch size; one that fails to compile stays eager on its own.
        """
        if self.compiled:
            return True
        if batch_size is not None:
            self.batch_size = int(batch_size)
        t = time.perf_counter()
        try:
            forward = torch.compile(self.model, dynamic=False)
            cfg = self.model.config
            x = np.zeros((self.batch_size, self.channels, cfg.input_h, cfg.input_w), np.float32)
            # the same autocast as _run: a graph compiled without it is compiled again
            with torch.inference_mode(), inference_autocast(self.device, self.amp):
                forward(self._to_device(self._pad(x, force=True)))
        except Exception as exc:  # noqa: BLE001 - any failure means: stay eager
            self.compile_error = f"{type(exc).__name__}: {first_line(exc)}"
            which = "a second stage stays" if self.mapping is None else "tracking"
            warnings.warn(f"torch.compile failed, {which} in eager mode ({self.compile_error})",
                          RuntimeWarning, stacklevel=2)
            return False
        self._forward = forward
        self.compiled = True
        failed = [f"second stage {i + 1}: {r.compile_error}" for i, r in enumerate(self.refiners)
                  if not r.compile(self.batch_size)]
        # the first stage is compiled; a second stage that is not is said here too
        self.compile_error = "; ".join(failed) or None
        self.compile_s = time.perf_counter() - t
        return True

    def _pad(self, x: np.ndarray, force: bool = False) -> np.ndarray:
        """A compiled graph has one batch size: pad a short batch with zeros."""
        if not (self.compiled or force) or len(x) >= self.batch_size:
            return x
        pad = np.zeros((self.batch_size - len(x), *x.shape[1:]), x.dtype)
        return np.concatenate([x, pad])

    def _to_device(self, x: np.ndarray) -> torch.Tensor:
        xb = torch.from_numpy(x).to(self.device)
        if self.device == "cpu":
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb

    def mapping_for(self, width: int, height: int) -> InputMapping:
        return self.mapping.for_frame_size(self.frame_size, (width, height))

    def _frame_box(self, frames: np.ndarray) -> InputMapping:
        """The first stage's crop box on frames of this batch's size."""
        if self.mapping is None:
            raise ValueError("this is a second-stage model: it predicts in given crop boxes only")
        return self.mapping_for(frames.shape[2], frames.shape[1])

    @staticmethod
    def _as_batch(frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim == 2:  # one gray frame; a 3-D array is a gray batch, never one RGB frame
            frames = frames[None]
        if frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[-1] not in (1, 3)):
            raise ValueError(f"frames must be (B, H, W) or (B, H, W, 3) uint8, got {frames.shape}")
        if frames.ndim == 3 and frames.shape[-1] in (1, 3):
            # one RGB frame (H, W, 3) would pass as H gray frames 3 pixels wide, and each
            # get keypoints of its own without a word
            raise ValueError(f"frames of shape {frames.shape} look like one colour frame: "
                             "add a batch axis (frame[None]); a gray batch is (B, H, W)")
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        return frames

    @property
    def can_face(self) -> bool:
        """Whether :meth:`predict` takes ``facing``: a first stage with a heatmap head whose
        keypoint names hold a nose and an eye (:func:`facing_points`)."""
        return self._facing is not None and self.mapping is not None

    def facing_of(self, keypoints: np.ndarray) -> np.ndarray:
        """The side (B,) each frame's face points to in ``keypoints`` (B, K, 2): +1 where its
        nose points lie right of the eye's middle (:func:`vit_facemap.refine.eye_boxes`),
        -1 left, 0 where either is missing (or where the run's keypoints name no nose or
        eye)."""
        kp = np.asarray(keypoints, dtype=np.float64)
        if self._facing is None:
            return np.zeros(len(kp), dtype=np.int64)
        nose, eye = self._facing
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # frames without the points
            ahead = np.nanmean(kp[:, nose, 0], axis=1) - eye_boxes(kp, eye)[0][:, 0]
        return np.nan_to_num(np.sign(ahead)).astype(np.int64)

    def _decode_nose(self, heat: torch.Tensor, kp: torch.Tensor, conf: torch.Tensor,
                     side: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``kp``/``conf`` (input pixels) with the nose points read again off their heatmaps
        from the cells that can hold them, given the decoded eye: on the frame's ``side`` of
        the eye's centre where it is +1 or -1, and within the run's :attr:`nose_offsets`
        widened by :data:`NOSE_MARGIN` eye sizes where it has them. A nose point none of
        whose cells qualifies stays as read (an eye at the map's edge, say)."""
        n = len(kp)  # a compiled predictor's padded batch: more rows than sides
        want = torch.zeros(n, device=kp.device)
        if side is not None:
            want[:len(side)] = torch.as_tensor(side[:n], device=kp.device, dtype=torch.float32)
        offsets = self.nose_offsets
        rows = (torch.arange(n, device=kp.device) if offsets is not None
                else torch.nonzero(want).flatten())
        if not len(rows):
            return kp, conf
        nose, eye = self._facing
        centre, size = (torch.as_tensor(a, device=kp.device, dtype=torch.float32)
                        for a in eye_boxes(kp[rows].cpu().numpy(), eye))
        h, w = heat.shape[-2:]
        cell_x = heatmap_to_input(torch.arange(w, device=kp.device, dtype=torch.float32),
                                  self.model.stride)
        cell_y = heatmap_to_input(torch.arange(h, device=kp.device, dtype=torch.float32),
                                  self.model.stride)
        across = cell_x[None] - centre[:, :1]  # (R, W)
        down = cell_y[None] - centre[:, 1:]  # (R, H)
        want = want[rows][:, None]
        ok = ((torch.sign(across) == want) | (want == 0))[:, None, None, :]  # (R, 1, 1, W)
        ok = ok.expand(len(rows), len(nose), h, w)
        if offsets is not None:
            size = size[:, None, None]  # (R, 1, 1)
            lim = torch.as_tensor(offsets, device=kp.device, dtype=torch.float32)[None]
            lim = lim + NOSE_MARGIN * torch.tensor([-1.0, 1.0, -1.0, 1.0], device=kp.device)
            a = across.abs()[:, None] / size  # (R, 1, W)
            d = down[:, None] / size  # (R, 1, H)
            ok_x = (a >= lim[..., 0:1]) & (a <= lim[..., 1:2])  # (R, N, W)
            ok_y = (d >= lim[..., 2:3]) & (d <= lim[..., 3:4])  # (R, N, H)
            # an eye of no size (its points on one cell) gives no scale: the side alone
            sized = (size > 0)[..., None]  # (R, 1, 1, 1)
            ok = ok & ((ok_x[:, :, None, :] & ok_y[:, :, :, None]) | ~sized)
        ok = ok | ~ok.flatten(2).any(-1)[..., None, None]
        logits = heat[rows][:, nose].float().masked_fill(~ok, -1e4)
        cells, mass = local_soft_argmax(logits, self.radius)
        kp, conf = kp.clone(), conf.clone()
        kp[rows[:, None], torch.as_tensor(nose, device=kp.device)] = heatmap_to_input(
            cells, self.model.stride)
        conf[rows[:, None], torch.as_tensor(nose, device=kp.device)] = mass
        return kp, conf

    def _run(self, x: np.ndarray, facing: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints in input pixels and confidence for normalised inputs, in batches
        (``facing``: one side per input, see :meth:`predict`)."""
        kps, confs = [], []
        for i in range(0, len(x), self.batch_size):
            chunk = x[i:i + self.batch_size]
            xb = self._to_device(self._pad(chunk))
            with inference_autocast(self.device, self.amp):
                out = self._forward(xb)
                if self._flip:
                    out = self._with_mirror(out, xb)
            kp, conf = decode(out, self.model.stride, self.radius)
            if self._facing is not None and (facing is not None
                                             or self.nose_offsets is not None):
                kp, conf = self._decode_nose(
                    out["heatmap"], kp, conf,
                    None if facing is None else facing[i:i + self.batch_size])
            kps.append(kp[: len(chunk)].cpu().numpy())
            confs.append(conf[: len(chunk)].cpu().numpy())
        return np.concatenate(kps), np.clip(np.concatenate(confs), 0.0, 1.0)

    def _with_mirror(self, out: dict[str, torch.Tensor], xb: torch.Tensor
                     ) -> dict[str, torch.Tensor]:
        """``out`` with its heatmap logits averaged with those of the mirrored input, mirrored
        back and their left / right keypoints swapped (a geometric mean of the two views'
        probability maps, as decode's softmax reads them).

        Heatmaps, not keypoints, are averaged: where one view finds the point and the other
        a wrong place, the mean of two keypoints is neither, while the mean heatmap keeps the
        stronger peak.
        """
        heat = out["heatmap"].float()
        mirrored = self._forward(torch.flip(xb, dims=[-1]))["heatmap"].float()
        swap = torch.as_tensor(self._flip_swap, device=heat.device)
        return {**out, "heatmap": (heat + torch.flip(mirrored, dims=[-1])[:, swap]) / 2}

    @torch.inference_mode()
    def predict(self, frames: np.ndarray, facing: int | np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (B, K, 2) in the frames' pixels and confidence (B, K) in [0, 1].

        ``facing`` (one for all frames or one per frame): +1 or -1 reads the first stage's
        nose points on that side of its eye alone (see the module docs and
        :meth:`facing_of`), 0 or None anywhere. A run that cannot (:attr:`can_face`) refuses
        a side.
        """
        frames = self._as_batch(frames)
        if facing is not None:
            facing = np.broadcast_to(np.asarray(facing), (len(frames),))
            if not np.isin(facing, (-1, 0, 1)).all():
                raise ValueError(f"facing must be -1, 0 or +1 per frame, got {np.unique(facing)}")
            if facing.any() and not self.can_face:
                raise ValueError("facing needs a first stage with heatmaps and keypoints named "
                                 f"for a nose and an eye; this run has {self.bodyparts}")
            facing = facing.astype(np.int64) if facing.any() else None
        kp, conf = self._predict_boxes(frames, [self._frame_box(frames)] * len(frames),
                                       facing)
        for refiner in self.refiners:
            kp, conf = refiner.refine_keypoints(frames, kp, conf)
        return kp, conf

    @torch.inference_mode()
    def predict_in_boxes(self, frames: np.ndarray, boxes: list[InputMapping]
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (B, K, 2) in frame pixels and confidence, each frame seen through its own
        box (averaged over that box at each of ``scales``)."""
        frames = self._as_batch(frames)
        if len(boxes) != len(frames):
            raise ValueError(f"{len(boxes)} crop boxes for {len(frames)} frames")
        return self._predict_boxes(frames, boxes)

    def _predict_boxes(self, frames: np.ndarray | Sequence[np.ndarray], boxes: list[InputMapping],
                       facing: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The mean over ``self.scales`` of the keypoints (frame pixels) and confidences, one
        box per frame (a frame may be listed more than once; ``facing``: one side per frame)."""
        # every box size in one pass, so a compiled graph pads one short batch, not one per size
        scaled = [b.scaled(s) for s in self.scales for b in boxes]
        x = normalise(np.stack([model_input(f, b, self.channels, self.equalize)
                                for b, f in zip(scaled, list(frames) * len(self.scales),
                                                strict=True)]))
        # a box maps input x to frame x increasing, so a side in one is the side in the other
        kp, conf = (self._run(x) if facing is None
                    else self._run(x, np.tile(facing, len(self.scales))))
        kp = np.stack([b.to_frame(p) for b, p in zip(scaled, kp, strict=True)])
        n = len(frames)
        return (kp.reshape(len(self.scales), n, *kp.shape[1:]).mean(0),
                conf.reshape(len(self.scales), n, -1).mean(0))

    def refine_keypoints(self, frames: np.ndarray, kp: np.ndarray, conf: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """The first stage's ``kp``/``conf`` with this second-stage model's keypoints put in."""
        info = self.refine_of
        if info is None:
            raise ValueError("not a second-stage model: its run config has no refine_of")
        idx = list(info["indices"])
        # the crop scales with the frame, like the first stage's box
        side = float(info["side_px"]) * frames.shape[2] / float(info["frame_size"][0])
        centres = estimate_centres(kp, idx, side)
        ok = np.flatnonzero(np.isfinite(centres).all(-1))
        if len(ok) == 0:
            return kp, conf
        size = self.model.config.input_w
        # the mean over the crop and its shifted copies (one crop where crop_shift is 0), all
        # in one pass, so a compiled graph pads one short batch
        offsets = crop_offsets(self.crop_shift)
        boxes = [b for o in offsets for b in crop_mappings(centres[ok] + o * side, side, size)]
        kp2, conf2 = self._predict_boxes(list(frames[ok]) * len(offsets), boxes)
        kp2 = kp2.reshape(len(offsets), len(ok), *kp2.shape[1:]).mean(0)
        conf2 = conf2.reshape(len(offsets), len(ok), -1).mean(0)
        kp, conf = kp.copy(), conf.copy()
        kp[np.ix_(ok, idx)] = kp2
        conf[np.ix_(ok, idx)] = conf2
        return kp, conf


def majority_side(right: int, left: int, share: float = 2 / 3) -> int:
    """+1 or -1 where at least ``share`` of the ``right`` + ``left`` frames showing a side
    agree on it, else 0."""
    if right + left and max(right, left) >= share * (right + left):
        return 1 if right > left else -1
    return 0


def video_facing(sides: np.ndarray, videos: np.ndarray, share: float = 2 / 3) -> np.ndarray:
    """Each frame's video's side (+1 / -1), where at least ``share`` of the video's frames
    that show one (``sides`` not 0) agree on it (:func:`majority_side`); 0 in a video
    without such a majority."""
    sides = np.asarray(sides)
    videos = np.asarray(videos)
    if sides.shape != videos.shape:
        raise ValueError(f"{sides.shape} sides for {videos.shape} videos")
    out = np.zeros(len(sides), dtype=np.int64)
    for v in np.unique(videos):
        m = videos == v
        out[m] = majority_side(int((sides[m] > 0).sum()), int((sides[m] < 0).sum()), share)
    return out


def load_predictor(run_dir: str | Path, device: str = "auto", refine: bool = True,
                   scales: Sequence[float] | None = None, crop_shift: float = 0.0,
                   flip: bool | None = None) -> KeypointPredictor:
    """The predictor of a trained run (``vit-facemap train`` output folder).

    A run with a second stage predicts with both; ``refine=False`` uses the first alone
    (to measure what the second stage adds). ``flip`` averages every stage's heatmaps with
    those of the mirrored frame: None (the default) wherever the run can (it trained with
    flips and has a heatmap head), True asks for it (a run that cannot predicts without,
    and says so), False never. Every stage averages over the box sizes ``scales``; None
    takes :data:`vit_facemap.config.FLIP_SCALES` (the box alone) for a predictor that
    flips and :data:`vit_facemap.config.TEST_SCALES` for one that does not (see the module
    docs). The second stages also average over crops shifted by ``crop_shift`` of their
    side (0: none; see the module docs).
    """
    if flip is not None and not isinstance(flip, bool | np.bool_):
        # before the run is read: a typo in a script fails at once
        raise ValueError(f"flip must be True, False or None (where the run can), got {flip!r}")
    device = resolve_device(device)
    model, run_config = load_run(run_dir, device)
    if run_config.get("mapping") is None:
        # its config.json reads as a run's; the first frame would fail with a traceback
        run = Path(run_dir).resolve()
        raise DataError("this is a second stage of a run: it predicts only in the crop boxes "
                        f"its run's first stage gives; use the run folder ({run.parent.parent})",
                        run_dir)
    if not (Path(run_dir) / "runinfo.json").is_file():  # written when training ends
        # a warning, not a refusal: the best weights so far may be what the user wants
        warnings.warn(f"training of {run_dir} did not finish (no runinfo.json): results come "
                      "from its last saved weights; `vit-facemap train ... --resume` finishes "
                      "it", DataWarning, stacklevel=2)
    refiners, begun = [], set()
    stages = stage_dirs(Path(run_dir)) if refine else []
    for stage in stages:
        if not (stage / CONFIG_FILE).is_file():
            continue
        begun.add(stage.name)
        if not (stage / "runinfo.json").is_file():  # written when a stage's training ends
            warnings.warn(f"{stage}: this second stage did not finish training (resume the run); "
                          "its keypoints come from the first stage", RuntimeWarning, stacklevel=2)
            continue
        refiners.append(KeypointPredictor(*load_run(stage, device), device))
    if refine and (Path(run_dir) / "runinfo.json").is_file():
        # the first stage's runinfo.json is written before the second stages start: a run
        # stopped before a group's stage wrote its folder has no stage to warn about above
        recipe = TrainConfig.from_dict(run_config["train"]).refine
        groups = refine_groups(run_config["bodyparts"], recipe) if recipe.share > 0 else {}
        missing = [g for g in groups if g not in begun]
        if missing:
            warnings.warn(f"{run_dir}: training stopped before the second stage of {missing} "
                          "began; their keypoints come from the first stage (`vit-facemap "
                          "train ... --resume` finishes it)", RuntimeWarning, stacklevel=2)
    if crop_shift and not refiners:
        # recorded as used (evaluate's JSON, a track summary) it would be a setting that was not
        warnings.warn(f"{run_dir}: no second (crop) stage to shift; crop_shift {crop_shift} "
                      "ignored", RuntimeWarning, stacklevel=2)
        crop_shift = 0.0
    predictor = KeypointPredictor(model, run_config, device, refiners=refiners, scales=scales,
                                  crop_shift=crop_shift)
    why = predictor.why_no_flip() if flip is None or flip else None
    if flip is None:
        flip = why is None
    elif flip and why:
        # one switch for every run of a benchmark or a batch of videos: recorded as used, a
        # flip that was not made would be a setting that was not
        warnings.warn(f"{run_dir}: {why}; flip ignored", RuntimeWarning, stacklevel=2)
        flip = False
    predictor.flip = bool(flip)
    if scales is None and predictor.flip:
        predictor.scales = FLIP_SCALES
    return predictor
