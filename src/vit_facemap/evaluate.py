"""Evaluate a trained run on any labeled set in DeepLabCut's layout with the run's keypoints."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vit_facemap.dlc import LabeledFrames, find_label_files, is_set_file, video_of, write_labels
from vit_facemap.errors import DataError, DataWarning
from vit_facemap.images import load_image
from vit_facemap.metrics import group_metrics, keypoint_metrics
from vit_facemap.runinfo import check_output, check_outputs_apart, describe, write_json
from vit_facemap.track import check_facing, crop_shift_of, facing_mode, flip_of
from vit_facemap.validate import _listed, load_set


def predict_frames(predictor: Any, frames: LabeledFrames, batch_size: int = 32,
                   progress: bool = False, facing: str = "video"
                   ) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Predictions (N, K, 2), confidences (N, K), model+decode time (s) for a labeled set,
    and how many frames were predicted again on their video's side.

    Frames of different sizes are predicted in separate batches (each maps back exactly).
    The crop box scales with the frame, so frames of another aspect ratio than the run's
    training frames get a warning: their faces reach the model stretched.

    ``facing="video"`` (where the predictor can: its ``can_face``) predicts again the frames
    whose face points the other way from most of their video's
    (:func:`vit_facemap.predict.video_facing`), with their nose read on the video's side of
    the eye: a head-fixed animal does not turn round within a video. ``"frame"``: each frame
    as it comes.
    """
    check_facing(facing)
    sizes: set[tuple[int, int]] = set()
    kps = np.full(frames.keypoints.shape, np.nan)
    confs = np.zeros(frames.keypoints.shape[:2])
    seconds = _predict_rows(predictor, frames, np.arange(len(frames)), None, kps, confs,
                            batch_size, progress, sizes)
    redo = np.zeros(0, dtype=np.int64)
    if facing_mode(facing, predictor) == "video":
        from vit_facemap.predict import video_facing

        sides = predictor.facing_of(kps)
        want = video_facing(sides, frames.videos)
        redo = np.flatnonzero((want != 0) & (sides != want))
        seconds += _predict_rows(predictor, frames, redo, want, kps, confs, batch_size,
                                 False, sizes)
    _warn_stretched(sizes, getattr(predictor, "frame_size", None), frames)
    return kps, confs, seconds, len(redo)


def _predict_rows(predictor: Any, frames: LabeledFrames, rows: np.ndarray,
                  facing: np.ndarray | None, kps: np.ndarray, confs: np.ndarray,
                  batch_size: int, progress: bool, sizes: set[tuple[int, int]]) -> float:
    """Predict ``rows`` of ``frames`` into ``kps``/``confs`` (with each row's ``facing``
    side where given); the model+decode time (s)."""
    seconds = 0.0
    paths = frames.image_paths
    for start in tqdm(range(0, len(rows), batch_size), desc="predict", disable=not progress):
        chunk = rows[start:start + batch_size]
        images = [load_image(paths[i]) for i in chunk]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for j, img in enumerate(images):
            by_shape.setdefault(img.shape, []).append(j)
            sizes.add((img.shape[1], img.shape[0]))
        for js in by_shape.values():
            batch = np.stack([images[j] for j in js])
            t = time.perf_counter()
            if facing is None:
                kp, conf = predictor.predict(batch)
            else:
                kp, conf = predictor.predict(batch, facing=facing[chunk[js]])
            seconds += time.perf_counter() - t
            kps[chunk[js]] = kp
            confs[chunk[js]] = conf
    return seconds


def _warn_stretched(sizes: set[tuple[int, int]], train_size: tuple[int, int] | None,
                    frames: LabeledFrames) -> None:
    """Warn of frames whose aspect ratio is not the training frames': the box is scaled
    with the frame in x and y apart, so a frame cropped or padded otherwise than the
    training frames was predicted from a stretched face without a word (``track`` refuses
    such videos)."""
    if not train_size:
        return
    aspect = train_size[0] / train_size[1]
    other = sorted(s for s in sizes if abs(s[0] / s[1] / aspect - 1) > 0.01)
    if other:
        shown = ", ".join(f"{w}x{h}" for w, h in other)
        warnings.warn(f"{frames.root}: frames of {shown} have another aspect ratio than the "
                      f"run's training frames ({train_size[0]}x{train_size[1]}); the crop box "
                      "is scaled with the frame, so the face reaches the model stretched and "
                      "its errors are larger than on frames shaped like the training ones",
                      DataWarning, stacklevel=3)


def check_outputs(json_out: str | Path | None, table_out: str | Path | None,
                  overwrite: bool, run_dir: str | Path | None = None,
                  data: str | Path | None = None) -> None:
    """Refuse, before any work, outputs that exist (unless ``overwrite``), are folders, are
    the run's or the labeled set's files, or a prediction table of a format we cannot write:
    an evaluation never stops half-written, and never writes over what it reads."""
    if table_out is not None and Path(table_out).suffix.lower() not in (".csv", ".h5", ".hdf5"):
        raise DataError("unsupported suffix for the prediction table; use .csv or .h5", table_out)
    tables: list[Path] = []
    if data is not None:
        try:
            tables = find_label_files(data)
        except DataError:
            pass  # not a labeled set: reading it says so, after these checks
    # the set's images sit beside or below its table (a CollectedData file given as --data)
    set_folder = None if data is None else Path(data) if Path(data).is_dir() else Path(data).parent
    from vit_facemap.train import is_run_file

    check_outputs_apart({"--json": json_out, "--predictions": table_out},
                        inputs=[("the labels table of --data", t) for t in tables],
                        folders=[("the run folder", run_dir, is_run_file),
                                 ("the labeled set", set_folder, is_set_file)])
    for path in (Path(p) for p in (json_out, table_out) if p is not None):
        if path.is_dir():
            raise DataError("is a folder; give a file name for the results", path)
        # a file on the way (results.json/preds.csv) was found only when writing, after
        # the predictions, with the metrics written and the table not
        check_output(path, overwrite)


def _warn_trained_frames(run_dir: str | Path, data: str | Path,
                         frames: LabeledFrames) -> None:
    """Warn when the set holds frames the run trained on (its split.json), or other frames
    of the videos it trained on. Training on a whole DeepLabCut project (the default, no
    --val-groups) and evaluating on that project gave near-duplicate frames' errors as the
    model's, with nothing to tell them apart."""
    from vit_facemap.train import read_split

    try:
        split = read_split(Path(run_dir))
    except DataError:  # an unreadable split.json: nothing to compare with, as for none
        return
    if split is None:
        return
    trained = set(split["train"])
    n = sum(i in trained for i in frames.index)
    if n:
        warnings.warn(f"{data}: {n} of its {len(frames)} frames are frames "
                      f"{run_dir} trained on (its split.json); their errors flatter the model: "
                      "evaluate on frames it did not train on (such as the videos held out by "
                      "train --val-groups)",
                      DataWarning, stacklevel=3)
    # further frames of a video it trained on are near-duplicates of its training frames
    # (frames of one video are split together, never apart), and flatter it as much; they
    # were scored as unseen without a word
    videos = {video_of(i) for i in split["train"]} - {""}
    near = [v for i, v in zip(frames.index, frames.videos, strict=True)
            if i not in trained and v in videos]
    if near:
        warnings.warn(f"{data}: {len(near)} of its {len(frames)} frames are other frames of "
                      f"videos {run_dir} trained on ({_listed(sorted(set(near)))}): "
                      "near-duplicates of its training frames, their errors flatter the model: "
                      "evaluate on videos it did not train on", DataWarning, stacklevel=3)


def evaluate_run(run_dir: str | Path, data: str | Path, json_out: str | Path | None = None,
                 predictions_out: str | Path | None = None, device: str = "auto",
                 overwrite: bool = True, progress: bool = True,
                 scales: Sequence[float] | None = None, crop_shift: float = 0.0,
                 flip: bool | None = None, facing: str = "video") -> dict[str, Any]:
    """Metrics of a run on a labeled set; writes JSON and a per-frame DeepLabCut table.

    ``scales``: the box sizes the predictor averages over; ``crop_shift``: the second
    stages' test-time shift; ``flip``: mirrored views averaged in (None: wherever the run
    can); all as :func:`vit_facemap.predict.load_predictor` takes them, and recorded in the
    metrics as made. ``facing``: as :func:`predict_frames` takes it (recorded with the
    number of frames predicted again, ``facing_redone``).

    Raises :class:`~vit_facemap.errors.DataError` when the set lacks one of the run's
    keypoints; keypoints the run does not predict are left out, and one labeled in none of
    the set's frames is not scored (``per_keypoint`` null), each with a warning.
    """
    from vit_facemap.predict import load_predictor

    check_facing(facing)  # before the run is loaded
    if json_out is not None and predictions_out is None:
        predictions_out = Path(json_out).with_suffix(".predictions.csv")
    check_outputs(json_out, predictions_out, overwrite, run_dir, data)
    start = time.perf_counter()
    predictor = load_predictor(run_dir, device, scales=scales, crop_shift=crop_shift, flip=flip)
    frames = load_set(data, expected_bodyparts=predictor.bodyparts, expected_source=run_dir,
                      decode=False)
    _warn_trained_frames(run_dir, data, frames)
    pred, conf, seconds, redone = predict_frames(predictor, frames, progress=progress,
                                                 facing=facing)
    metrics = keypoint_metrics(pred, frames.keypoints, frames.bodyparts)
    metrics["per_video"] = group_metrics(pred, frames.keypoints, frames.bodyparts, frames.videos)
    metrics["predict_fps"] = len(frames) / seconds if seconds > 0 else None
    metrics["scales"] = list(predictor.scales)
    metrics["crop_shift"] = crop_shift_of(predictor)
    # False where the run cannot flip (warned only where flip=True was asked for)
    metrics["flip"] = flip_of(predictor)
    metrics["facing"] = facing_mode(facing, predictor)
    metrics["facing_redone"] = redone
    metrics["run"] = str(run_dir)
    metrics["data"] = str(data)
    # loading the run, reading the frames, predicting and scoring
    metrics["provenance"] = describe(None, predictor.device, task="evaluate",
                                     wall_s=time.perf_counter() - start)
    if json_out is not None:
        write_json(metrics, json_out, overwrite=overwrite)
    if predictions_out is not None:
        table = LabeledFrames(root=frames.root, index=frames.index, keypoints=pred,
                              bodyparts=frames.bodyparts, scorer="vit-facemap", likelihood=conf)
        write_labels(table, predictions_out, overwrite=overwrite)
        metrics["predictions"] = str(predictions_out)
    return metrics
