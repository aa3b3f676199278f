"""Track keypoints through a video and write them where keypoint tools can read them.

:func:`track_video` takes any *predictor* with the interface of
:class:`vit_facemap.predict.KeypointPredictor` (``bodyparts``, ``frame_size`` (W, H) or
None, ``channels``, ``predict(frames) -> (xy, confidence)``), decodes the video in a
background thread while the predictor runs on the previous batch, and writes:

- ``<video>_<scorer>.csv`` / ``.h5``: keypoints in the full frame's pixels with a
  likelihood per keypoint, in DeepLabCut's prediction layout (index = frame number,
  HDF5 key ``df_with_missing``), which DeepLabCut, Facemap and other tools read;
- ``<video>_<scorer>_frames.csv``: each frame's time stamp, ``pts`` as stored in the
  video (in its stream's time base) and ``time_s`` in seconds from the video's first frame
  (also the time of the measures and of NWB), so videos with a variable frame rate are
  described exactly;
- ``<video>_<scorer>_measures.csv``: facial measures per frame
  (:func:`vit_facemap.measures.facial_measures`) where the keypoint names allow them;
- ``<video>_<scorer>_track.json``: settings, provenance, speed and whether the video
  was tracked to its end;
- optionally ``<video>_<scorer>_overlay.mp4`` with the keypoints drawn on the frames, and
  ``<video>_<scorer>.nwb`` (NWB with ndx-pose, when ``pynwb`` and ``ndx-pose`` are installed).

By default (``facing="video"``, where the predictor can: ``can_face``) a frame whose face
points the other way from most of the video's frames so far, its own batch included, is
predicted again with its nose read on the video's side of the eye
(:mod:`vit_facemap.predict`); the summary says how many (``facing_redone``).

While it runs, every batch is appended to ``<video>_<scorer>.partial.bin`` beside a small
``.state.json``; an interrupted run continues from the next frame with ``resume=True``.
A truncated or corrupt video stops at the first bad frame: the frames before it are
written as above (``complete: false`` in the JSON) and :class:`VideoDecodeError` is
raised, naming the file, the frame and what was written; a video broken from its first
frame leaves no results.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from vit_facemap.dlc import predictions_dataframe, write_predictions
from vit_facemap.errors import DataError, RunExistsError
from vit_facemap.runinfo import describe, is_set_aside, put_back, set_aside, write_json
from vit_facemap.transforms import rescale_points
from vit_facemap.video import (
    BackgroundBatches,
    FrameBatch,
    VideoDecodeError,
    check_crop,
    probe,
)

# 2: times count from the first frame; rows stored before took the video's own stamps,
# which would not join them in one file
STATE_VERSION = 2


class Predictor(Protocol):
    bodyparts: list[str]
    frame_size: tuple[int, int] | None
    channels: int

    def predict(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


FACING = ("video", "frame")


def check_facing(facing: str) -> str:
    """``facing`` if it is one of :data:`FACING`, else a DataError naming them."""
    if facing not in FACING:
        raise DataError(f"facing must be one of {FACING}, got {facing!r}")
    return facing


@dataclass
class TrackOptions:
    """How to track one video (saved in the summary JSON and the resume state)."""

    start: int = 0
    stop: int | None = None  # exclusive; None = to the end
    crop: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 in full-frame pixels
    resize: bool = False  # scale the (cropped) frames to the predictor's frame size
    batch_size: int = 32
    prefetch: int = 4  # batches decoded ahead of the model
    decode_threads: int = 0  # FFmpeg threads for decoding (0: one)
    scorer: str = "vit-facemap"
    formats: tuple[str, ...] = ("csv", "h5")
    measures: bool = True
    overlay: bool = False
    nwb: bool = False  # also write NWB (ndx-pose); needs the optional pynwb + ndx-pose
    # "video": frames whose face points the other way from most of the video's frames so
    # far are predicted again on its side (a head-fixed animal does not turn round; see
    # vit_facemap.predict); "frame": each frame alone
    facing: str = "video"
    overwrite: bool = False
    resume: bool = False
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # recorded as given (e.g. run dir)

    def __post_init__(self) -> None:
        # checked here, before any video is opened, rather than deep in the decoder
        if self.start < 0 or (self.stop is not None and self.stop <= self.start):
            raise DataError(f"need 0 <= start < stop, got start {self.start}, stop {self.stop}")
        for name in ("batch_size", "prefetch"):
            if getattr(self, name) < 1:
                raise DataError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.decode_threads < 0:
            raise DataError(f"decode_threads must be 0 or more, got {self.decode_threads}")
        check_facing(self.facing)
        # the scorer is part of every output's file name: a separator would put the files
        # in another folder (--scorer ../../x outside --out)
        if not self.scorer or any(c in self.scorer for c in ("/", "\\", "\0")):
            raise DataError(f"scorer must be a plain name (no path separators), got "
                            f"{self.scorer!r}")


def output_paths(video: str | Path, out_dir: str | Path, scorer: str = "vit-facemap",
                 ) -> dict[str, Path]:
    """Where :func:`track_video` writes the results for ``video``."""
    base = Path(out_dir) / f"{Path(video).stem}_{scorer}"
    return {
        "csv": base.with_name(base.name + ".csv"),
        "h5": base.with_name(base.name + ".h5"),
        "frames": base.with_name(base.name + "_frames.csv"),
        "measures": base.with_name(base.name + "_measures.csv"),
        "summary": base.with_name(base.name + "_track.json"),
        "overlay": base.with_name(base.name + "_overlay.mp4"),
        "nwb": base.with_name(base.name + ".nwb"),
        "partial": base.with_name(base.name + ".partial.bin"),
        "state": base.with_name(base.name + ".state.json"),
    }


FINAL_OUTPUTS = ("csv", "h5", "frames", "measures", "summary", "overlay", "nwb")


def _region(options: TrackOptions, predictor: Predictor, info, path: Path):
    """The crop box, the size frames are handed to the model at, and the resize target."""
    box = check_crop(options.crop, info.width, info.height, path)
    size = (box[2] - box[0], box[3] - box[1])
    want = getattr(predictor, "frame_size", None)
    want = None if want is None else (int(want[0]), int(want[1]))
    resize = None
    if want is not None and size != want:
        if not options.resize:
            what = "the crop box is" if options.crop else "the frames are"
            # a crop can only shrink the frame: to a model's larger size, or once a crop is
            # given (it said "pass --crop" to a user who had), --resize is the way
            fits = options.crop is None and want[0] <= info.width and want[1] <= info.height
            how = ("pass --crop x0,y0,x1,y1 to cut a region of that size or --resize to scale "
                   "the frames to it" if fits else
                   f"pass --resize to scale the {'crop' if options.crop else 'frames'} to it")
            raise DataError(
                f"{what} {size[0]}x{size[1]} pixels but the model was trained on "
                f"{want[0]}x{want[1]} frames; {how}", path)
        resize = want
    return box, resize


def _state_key(options: TrackOptions, predictor: Predictor, info, box, resize) -> dict:
    return {
        "version": STATE_VERSION,
        "video": str(info.path.resolve()),
        # which video, wherever its folder now is: outputs are named by the file's stem,
        # so another day's face.avi tracked into the same folder must not pass for it
        "source": {"name": info.path.name, "bytes": info.path.stat().st_size},
        "frame_size": [info.width, info.height],
        "start": options.start, "stop": options.stop, "crop": list(box),
        "resize": None if resize is None else list(resize),
        "scorer": options.scorer, "bodyparts": list(predictor.bodyparts),
        # frames predicted at other box sizes would not match the rest of the video
        "scales": scales_of(predictor),
        "crop_shift": crop_shift_of(predictor),
        "flip": flip_of(predictor),
        "facing": facing_mode(options.facing, predictor),
        # nor would those of another model with the same keypoints (a run trained again)
        "model": model_digest(predictor),
    }


def _load_partial(paths: dict[str, Path], key: dict, n_cols: int, video: Path) -> np.ndarray:
    try:
        state = json.loads(paths["state"].read_text())
    except (OSError, ValueError) as exc:  # emptied by a crash of the machine, say
        raise DataError(f"cannot resume: the half-done run's state {paths['state'].name} cannot "
                        f"be read ({exc}); pass --overwrite to start again", video) from None
    if not isinstance(state, dict):
        raise DataError(f"cannot resume: {paths['state'].name} is not a half-done run's state; "
                        "pass --overwrite to start again", video)
    # states written before box sizes were recorded were predicted from the box alone; those
    # written before the model was recorded cannot tell it, and are taken at their word
    # (and before the crop stages' shift was, with one crop; before flips, without them;
    # before facing, frame by frame)
    saved = {"scales": [1.0], "crop_shift": 0.0, "flip": False, "facing": "frame",
             "model": key["model"], **state.get("key", {})}
    differs = sorted(k for k in key if saved.get(k) != key[k])
    if differs:
        raise DataError(
            f"cannot resume: the half-done run in {paths['state'].name} used other settings "
            + _differences(saved, key, differs, ("to resume it", "to start again")), video)
    rows = np.fromfile(paths["partial"], dtype=np.float64) if paths["partial"].exists() \
        else np.empty(0)
    whole = len(rows) // n_cols * n_cols  # a crash mid-write leaves a partial row
    if whole != len(rows):
        with open(paths["partial"], "r+b") as fh:
            fh.truncate(whole * 8)
    return rows[:whole].reshape(-1, n_cols)


# the settings a user chooses, with the options of `vit-facemap track` that set them; each
# is shown with its value then and now (a video's name, its size or the model's digest would
# only lengthen the message, and cannot be passed). The size frames were resized to is
# shown too, but it is the model's as much as --resize's: no option restores it
_OPTIONS = {"scales": "--scales", "crop_shift": "--crop-shift", "flip": "--flip / --no-flip",
            "facing": "--facing",
            "start": "--start", "stop": "--stop", "crop": "--crop", "scorer": "--scorer"}
_SHOWN = {*_OPTIONS, "resize"}


def _differences(saved: dict, key: dict, differs: list[str], again: tuple[str, str]) -> str:
    """What differs, for a message, and what to do (``again``: the words after passing the
    old settings, and after --overwrite): the settings a user chooses with the value each run
    used and their options, since the default views changed with a version (a run tracked
    before it goes on with the settings it had)."""
    said = ", ".join(f"{k}: {saved.get(k)!r} then, {key[k]!r} now" if k in _SHOWN else k
                     for k in differs)
    if all(k in _OPTIONS for k in differs):
        options = ", ".join(_OPTIONS[k] for k in differs)
        return (f"({said}); pass the settings it used ({options}) {again[0]}, or --overwrite "
                f"{again[1]}")
    return f"({said}); pass --overwrite {again[1]}"


def _finished_key(record: dict) -> dict:
    """The settings a finished run's summary was tracked with, as :func:`_state_key` gives
    them; for summaries written before they were recorded there, the ones it holds."""
    if "resume_key" in record:
        # one written before the crop stages' shift was recorded tracked with one crop, one
        # written before flips were, without them, and one before facing was, frame by frame
        return {"crop_shift": 0.0, "flip": False, "facing": "frame", **record["resume_key"]}
    settings = record.get("settings") or {}
    predictor = record.get("predictor") or {}
    return {"frame_size": record.get("frame_size"), "start": settings.get("start"),
            "stop": settings.get("stop"), "crop": record.get("crop"),
            "resize": record.get("resize"), "scorer": settings.get("scorer"),
            "bodyparts": predictor.get("bodyparts"), "scales": predictor.get("scales", [1.0]),
            "crop_shift": predictor.get("crop_shift", 0.0), "flip": predictor.get("flip", False),
            "facing": "frame"}


def _unfinished_replacement(paths: dict[str, Path], out_dir: Path) -> Path | None:
    """The set-aside folder of the results an interrupted ``--overwrite`` run replaced, as
    its state file names it, while that folder is still there (None otherwise: a state of
    a run that replaced nothing, or one whose results were written, which drops it)."""
    try:
        name = json.loads(paths["state"].read_text()).get("replaced")
    except (OSError, ValueError, AttributeError):
        return None  # unreadable: set aside whole like any other files
    # a bare folder name as set_aside makes it: nothing outside out_dir
    if not (isinstance(name, str) and is_set_aside(name) and Path(name).name == name):
        return None
    return out_dir / name if (out_dir / name).is_dir() else None


def _leave_nothing(paths: dict[str, Path], out_dir: Path, replaced: Path | None,
                   made: bool) -> None:
    """After a run that tracked no frame: no half-done state stays, the results it set
    aside are put back, and an output folder it made goes again."""
    paths["partial"].unlink(missing_ok=True)
    paths["state"].unlink(missing_ok=True)
    put_back(out_dir, replaced)
    if made and not any(out_dir.iterdir()):
        out_dir.rmdir()


def _color(predictor: Predictor) -> str:
    return "rgb" if int(getattr(predictor, "channels", 1)) == 3 else "gray"


def track_video(predictor: Predictor, video: str | Path, out_dir: str | Path,
                options: TrackOptions | None = None) -> dict[str, Any]:
    """Track ``video`` with ``predictor`` and write the results under ``out_dir``.

    Returns the summary also written to ``<video>_<scorer>_track.json``: frames tracked,
    frames/s end to end and of the model alone (of this run's new frames: the time a resumed
    ``overlay`` run spends redrawing the frames tracked before is ``redraw_s``, left out),
    output paths, ``complete``. Raises :class:`RunExistsError` for existing outputs (unless
    ``overwrite``, or ``resume`` of a half-done run or of a finished one with the same
    settings, model included), :class:`DataError` for a video the model cannot take,
    :class:`VideoDecodeError` after writing what was tracked when the video breaks part way.
    """
    options = options or TrackOptions()
    video = Path(video)
    out_dir = Path(out_dir)
    if options.nwb:
        from vit_facemap.nwb import INSTALL_HINT, nwb_available

        if not nwb_available():
            raise DataError(INSTALL_HINT)
    info = probe(video)
    box, resize = _region(options, predictor, info, video)
    paths = output_paths(video, out_dir, options.scorer)
    bodyparts = list(predictor.bodyparts)
    k = len(bodyparts)
    n_cols = 3 + 3 * k  # frame, pts, time, then x, y, likelihood per keypoint
    key = _state_key(options, predictor, info, box, resize)

    existing = [paths[n] for n in FINAL_OUTPUTS if paths[n].exists()]
    half_done = paths["state"].exists()
    backup = None
    made = not out_dir.exists()  # removed again if nothing comes of this run
    if options.overwrite:
        out_dir.mkdir(parents=True, exist_ok=True)
        mine = [p for p in [*existing, paths["partial"], paths["state"]] if p.exists()]
        backup = _unfinished_replacement(paths, out_dir) if half_done else None
        if backup is not None:
            # an earlier --overwrite stopped part-way: what stands here is its unfinished
            # run, and the results it replaced (the last complete ones) are in its set-aside
            # folder. That folder stays this run's backup, so it is never orphaned; the
            # unfinished run, which this one starts again, goes.
            for p in mine:
                p.unlink()
        else:
            # set aside, not deleted: an interrupted or failed new run must not lose them
            backup = set_aside(out_dir, [p.relative_to(out_dir) for p in mine])
        existing, half_done = [], False
    elif options.resume and not half_done and existing:
        try:
            summary = json.loads(paths["summary"].read_text())
        except (OSError, ValueError):
            summary = None  # missing or unreadable: nothing says how the results were made
        if not isinstance(summary, dict) or not summary.get("complete"):
            # no half-done run to continue and no finished one to skip: what stands there
            # is not --resume's to replace (it was, and went without a backup)
            raise RunExistsError(existing[0], "there is no half-done run to resume and no "
                                 f"summary of a finished one ({paths['summary'].name}); "
                                 "pass --overwrite to replace it")
        saved = _finished_key(summary)
        # a finished run is judged by what it tracked and how, not by where the project
        # folder now sits (moved, remounted) or by the format of half-done state files;
        # a summary from before "source" was recorded knows its video by path only
        ignore = {"version"} | ({"video"} if "source" in saved else set())
        differs = sorted(k for k in key if k not in ignore
                         and k in saved and saved[k] != key[k])
        if differs:
            raise RunExistsError(
                paths["summary"], "the finished run there used other settings "
                + _differences(saved, key, differs, ("to skip it", "to track again")))
        summary["skipped"] = (f"frames {summary.get('first_frame')} to "
                              f"{summary.get('last_frame')} already tracked with these "
                              "settings")
        return summary
    elif not options.resume and (existing or half_done):
        hint = ("pass --resume to continue the half-done run or --overwrite to start again"
                if half_done else "pass --overwrite to replace it")
        raise RunExistsError(existing[0] if existing else paths["state"], hint)

    rows = (_load_partial(paths, key, n_cols, video) if options.resume and half_done
            else np.empty((0, n_cols)))
    first = int(rows[-1, 0]) + 1 if len(rows) else options.start
    out_dir.mkdir(parents=True, exist_ok=True)
    if not len(rows):
        paths["partial"].unlink(missing_ok=True)
        # the replaced results' folder is recorded so that a resumed run that completes
        # drops them, as this one would have
        write_json({"key": key, "options": asdict(options),
                    "replaced": None if backup is None else backup.name}, paths["state"])

    import torch  # noqa: F401  (imported here so its first import is not timed as tracking)

    mode = key["facing"]  # facing_mode, as the resume key holds it
    facing = mode == "video"
    # the sides of the frames tracked before (resumed): the same votes as had it not stopped
    votes = np.zeros(2, dtype=np.int64)
    if facing and len(rows):
        sides = predictor.facing_of(rows[:, 3:].reshape(len(rows), k, 3)[..., :2])
        votes += [(sides > 0).sum(), (sides < 0).sum()]
    redone = 0
    total = (options.stop if options.stop is not None else (info.n_frames or 0)) - first
    overlay = _Overlay(paths["overlay"], info.fps) if options.overlay else None
    # an overlay cannot be appended to: a resumed run draws the frames tracked before
    # from their stored keypoints, so the overlay covers every tracked frame
    redraw = rows if overlay is not None and len(rows) else None
    error: VideoDecodeError | None = None
    n_new = 0
    model_s = 0.0
    redraw_s = 0.0  # decoding and drawing frames tracked before, kept out of the frames/s
    t0 = time.perf_counter()
    try:
        from tqdm import tqdm

        bar = tqdm(total=max(total, 0) or None, desc=video.name, unit="frame",
                   disable=not options.progress)
        reader = BackgroundBatches(
            video, options.batch_size, options.prefetch,
            start=options.start if redraw is not None else first, stop=options.stop,
            color=_color(predictor), crop=None if options.crop is None else box,
            resize=resize, threads=options.decode_threads)
        with reader, open(paths["partial"], "ab") as sink, bar:
            try:
                b0 = time.perf_counter()
                for batch in reader:
                    if redraw is not None and batch.indices[0] < first:
                        a0 = time.perf_counter()
                        done = batch.indices < first
                        overlay.add(batch.frames[done],
                                    _stored_points(redraw, batch.indices[done], box, resize))
                        batch = FrameBatch(batch.frames[~done], batch.indices[~done],
                                           batch.pts[~done], batch.times[~done])
                        if not len(batch):
                            # earlier frames only: waiting for their decoding is redraw too
                            redraw_s += time.perf_counter() - b0
                            b0 = time.perf_counter()
                            continue
                        redraw_s += time.perf_counter() - a0
                    m0 = time.perf_counter()
                    xy, conf = _predict(predictor, batch.frames)
                    if facing:
                        xy, conf, votes, n = _face_batch(predictor, batch.frames, xy, conf,
                                                         votes)
                        redone += n
                    model_s += time.perf_counter() - m0
                    if overlay is not None:
                        overlay.add(batch.frames, xy)
                    full = np.asarray(xy, np.float64) if resize is None else rescale_points(
                        xy, resize, (box[2] - box[0], box[3] - box[1]))
                    full = full + np.array([box[0], box[1]], np.float64)
                    block = np.concatenate([
                        np.stack([batch.indices, batch.pts, batch.times], axis=1),
                        np.concatenate([full, conf[..., None]], axis=-1).reshape(len(batch), -1),
                    ], axis=1).astype(np.float64)
                    sink.write(block.tobytes())
                    sink.flush()
                    n_new += len(batch)
                    bar.update(len(batch))
            except VideoDecodeError as exc:
                error = exc
    except BaseException:
        # Nothing tracked in a fresh run (e.g. --start past the end): leave no half-done
        # state behind that would make the next run ask for --resume. With frames done the
        # state stays, so --resume continues after the cause is fixed (Ctrl-C included).
        if not n_new and first == options.start and (
                not paths["partial"].exists() or paths["partial"].stat().st_size == 0):
            _leave_nothing(paths, out_dir, backup, made)
        elif backup is not None:
            warnings.warn(f"{video}: the new tracking stopped part-way and can be resumed "
                          f"(--resume); the results it replaces are kept in {backup} until "
                          "it finishes", stacklevel=2)
        raise
    finally:
        if overlay is not None:
            overlay.close()
    wall = time.perf_counter() - t0

    rows = np.fromfile(paths["partial"], dtype=np.float64).reshape(-1, n_cols)
    if not len(rows):
        # results of no frame are no results (DeepLabCut cannot read such an HDF5 file): as
        # for a run stopped before its first frame, nothing stays and what it replaced is back
        replaced = backup or _unfinished_replacement(paths, out_dir)
        _leave_nothing(paths, out_dir, replaced, made)
        back = "; the results it would have replaced are back in place" if replaced else ""
        if error is None:
            raise DataError(f"holds no frames to track; nothing written{back}", video)
        reason = str(error).removeprefix(f"{error.path}: ")
        raise VideoDecodeError(f"no frame could be decoded ({reason}); nothing written{back}",
                               video, error.frame)
    try:
        summary = _write_outputs(rows, bodyparts, paths, options, info, box, resize)
    except BaseException:
        if backup is not None:  # the frames tracked stay (partial), resumable
            warnings.warn(f"{video}: writing the new results failed; the results they replace "
                          f"are kept in {backup}", stacklevel=2)
        raise
    listed = [n for n in FINAL_OUTPUTS if n != "overlay" or options.overlay]
    if not options.overlay and first != options.start and paths["overlay"].exists():
        # drawn while the interrupted run went: it stops where that run stopped
        warnings.warn(f"{video}: {paths['overlay']} is the interrupted run's overlay, up to "
                      f"frame {first - 1} only; resume with --overlay to draw it whole",
                      stacklevel=2)
    summary.update(
        complete=error is None, error=None if error is None else str(error),
        frames_this_run=n_new, resumed_from=first if first != options.start else None,
        facing=mode, facing_redone=redone,
        wall_s=wall, redraw_s=redraw_s if redraw is not None else None,
        fps=n_new / (wall - redraw_s) if wall - redraw_s > 0 else None,
        model_fps=n_new / model_s if model_s > 0 else None,
        outputs={n: str(paths[n]) for n in listed if paths[n].exists() or n == "summary"},
    )
    device = str(getattr(predictor, "device", "cpu"))
    record = describe(options, device, predictor=_predictor_info(predictor),
                      resume_key=key, **summary)
    write_json(record, paths["summary"])
    replaced = _unfinished_replacement(paths, out_dir) if paths["state"].exists() else None
    if error is None:
        # the new results are complete: the ones they replace (this run's, or those of the
        # --overwrite run this one resumed) go
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)
        paths["partial"].unlink(missing_ok=True)
        paths["state"].unlink(missing_ok=True)
    else:
        # results cut short by the video may cover less than those they replace: keep those
        kept = f"; the results this run replaces are kept in {replaced}" \
            if replaced is not None else ""
        raise VideoDecodeError(
            f"decoding stopped at frame {error.frame}; the {len(rows)} frames tracked before "
            f"it are written to {paths['csv'] if 'csv' in options.formats else paths['h5']} "
            f"({error}){kept}", video, error.frame)
    return summary


def _stored_points(rows: np.ndarray, indices: np.ndarray, box, resize) -> np.ndarray:
    """The keypoints stored in ``rows`` for frames ``indices``, in the pixels of the frames
    the model saw (the inverse of the mapping to the full frame); NaN for a frame not there."""
    k = (rows.shape[1] - 3) // 3
    at = np.clip(np.searchsorted(rows[:, 0], indices), 0, len(rows) - 1)
    xy = rows[at, 3:].reshape(len(indices), k, 3)[..., :2].copy()
    xy[rows[at, 0] != indices] = np.nan
    xy -= np.array([box[0], box[1]], np.float64)
    if resize is not None:
        xy = rescale_points(xy, (box[2] - box[0], box[3] - box[1]), resize)
    return xy


def _predict(predictor: Predictor, frames: np.ndarray, facing: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    kw = {} if facing is None else {"facing": facing}
    try:
        import torch

        with torch.inference_mode():
            xy, conf = predictor.predict(frames, **kw)
    except ImportError:  # pragma: no cover - torch is a dependency
        xy, conf = predictor.predict(frames, **kw)
    xy, conf = np.asarray(xy, dtype=np.float64), np.asarray(conf, dtype=np.float64)
    b, k = len(frames), len(predictor.bodyparts)
    if xy.shape != (b, k, 2) or conf.shape != (b, k):
        raise ValueError(f"predictor returned xy {xy.shape} and confidence {conf.shape}; "
                         f"expected ({b}, {k}, 2) and ({b}, {k})")
    return xy, conf


def model_digest(predictor: Predictor) -> str | None:
    """sha256 of the weights of the predictor's network and its second stages, or None for
    a predictor without a torch ``model``: a run trained again has the keypoint names and
    settings of the one before, so only its weights tell its keypoints apart."""
    stages = [predictor, *getattr(predictor, "refiners", [])]
    if not all(hasattr(getattr(p, "model", None), "state_dict") for p in stages):
        return None
    import torch

    h = hashlib.sha256()
    for stage in stages:
        for name, tensor in stage.model.state_dict().items():
            h.update(name.encode())
            # the values, whatever the dtype, device or memory layout (channels_last on CPU)
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
                     .numpy().tobytes())
    return h.hexdigest()


def scales_of(predictor: Predictor) -> list[float]:
    """The crop-box sizes a predictor averages over (one, the box, for any other predictor)."""
    return [float(s) for s in getattr(predictor, "scales", (1.0,))]


def crop_shift_of(predictor: Predictor) -> float:
    """The crop stages' test-time shift of a predictor (0, one crop, for any other)."""
    return float(getattr(predictor, "crop_shift", 0.0))


def facing_mode(facing: str, predictor: Predictor) -> str:
    """How a video's frames are told which way the face points: ``facing`` ("video" or
    "frame") where the predictor can be told (``can_face``), else "frame"."""
    return facing if getattr(predictor, "can_face", False) else "frame"


def _face_batch(predictor: Predictor, frames: np.ndarray, xy: np.ndarray, conf: np.ndarray,
                votes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """A batch's keypoints with its frames that face the other way from most of the video's
    frames so far (``votes``: frames tracked facing right, left; this batch's own sides
    added) predicted again on the video's side; the votes with the batch's final sides
    added (what a resumed run counts from the stored rows), and how many were redone."""
    from vit_facemap.predict import majority_side

    sides = predictor.facing_of(xy)
    want = majority_side(int(votes[0] + (sides > 0).sum()), int(votes[1] + (sides < 0).sum()))
    redo = np.flatnonzero(sides != want) if want else np.zeros(0, dtype=np.int64)
    if len(redo):
        xy, conf = xy.copy(), conf.copy()
        xy[redo], conf[redo] = _predict(predictor, frames[redo], facing=want)
        sides = predictor.facing_of(xy)
    return xy, conf, votes + [(sides > 0).sum(), (sides < 0).sum()], len(redo)


def flip_of(predictor: Predictor) -> bool:
    """Whether a predictor averages in mirrored views (False for any other)."""
    return bool(getattr(predictor, "flip", False))


def _predictor_info(predictor: Predictor) -> dict[str, Any]:
    out = {"type": type(predictor).__name__, "bodyparts": list(predictor.bodyparts),
           "frame_size": getattr(predictor, "frame_size", None),
           "channels": getattr(predictor, "channels", None)}
    for name in ("run_dir", "model_name", "device", "compiled", "compile_s", "compile_error"):
        if hasattr(predictor, name):
            out[name] = str(getattr(predictor, name))
    out["scales"] = scales_of(predictor)
    out["crop_shift"] = crop_shift_of(predictor)
    out["flip"] = flip_of(predictor)
    # which stages ran compiled (a second stage that failed to compile runs eager)
    refiners = getattr(predictor, "refiners", [])
    if refiners:
        out["second_stages_compiled"] = [bool(r.compiled) for r in refiners]
    return out


def _write_outputs(rows: np.ndarray, bodyparts: list[str], paths: dict[str, Path],
                   options: TrackOptions, info, box, resize) -> dict[str, Any]:
    k = len(bodyparts)
    frames = rows[:, 0].astype(np.int64)
    values = rows[:, 3:].reshape(len(rows), k, 3)
    xy, lik = values[..., :2], values[..., 2]
    df = predictions_dataframe(xy, lik, bodyparts, options.scorer, frames)
    df.index.name = None
    for fmt in options.formats:
        if fmt not in ("csv", "h5"):
            raise ValueError(f"unknown output format {fmt!r}; use csv and/or h5")
        write_predictions(df, paths[fmt], overwrite=True)
    times = pd.DataFrame({"pts": rows[:, 1].astype(np.int64), "time_s": rows[:, 2]},
                         index=pd.Index(frames, name="frame"))
    times.to_csv(paths["frames"])
    if options.nwb:
        from vit_facemap.nwb import write_nwb

        write_nwb(paths["nwb"], xy, lik, bodyparts, rows[:, 2], video=info.path,
                  frame_size=(info.width, info.height), scorer=options.scorer, frames=frames,
                  fps=info.fps, n_video_frames=info.n_frames, overwrite=True)
    n_measures = 0
    if options.measures and len(rows):
        from vit_facemap.measures import facial_measures

        with np.errstate(divide="ignore", invalid="ignore"):  # degenerate frames give NaN
            measures = facial_measures(xy, bodyparts)
        n_measures = measures.shape[1]
        if n_measures:
            measures.index = pd.Index(frames, name="frame")
            measures.insert(0, "time_s", rows[:, 2])
            measures.to_csv(paths["measures"])
    return {
        "video": str(info.path), "frame_size": [info.width, info.height],
        "video_frames": info.n_frames, "video_fps": info.fps, "codec": info.codec,
        "crop": list(box), "resize": None if resize is None else list(resize),
        "frames_tracked": int(len(rows)),
        "first_frame": int(frames[0]) if len(rows) else None,
        "last_frame": int(frames[-1]) if len(rows) else None,
        "measures": int(n_measures),
    }


class _Overlay:
    """Keypoints drawn on the frames the model saw, encoded as H.264 (``--overlay``)."""

    def __init__(self, path: Path, fps: float | None) -> None:
        self.path = path
        self.fps = fps or 30.0
        self.container = None
        self.stream = None

    def _open(self, w: int, h: int) -> None:
        from fractions import Fraction

        import av

        self.container = av.open(str(self.path), "w")
        self.stream = self.container.add_stream(
            "libx264", rate=Fraction(self.fps).limit_denominator(1000))
        self.stream.width, self.stream.height = w + w % 2, h + h % 2
        self.stream.pix_fmt = "yuv420p"

    def add(self, frames: np.ndarray, xy: np.ndarray) -> None:
        import av
        from matplotlib import colormaps

        h, w = frames.shape[1:3]
        if self.container is None:
            self._open(w, h)
        colors = (np.array(colormaps["tab20"].colors)[np.arange(xy.shape[1]) % 20] * 255
                  ).astype(np.uint8)
        r = max(2, round(min(w, h) / 100))
        for frame, pts in zip(frames, xy, strict=True):
            rgb = np.repeat(frame[..., None], 3, axis=-1) if frame.ndim == 2 else frame.copy()
            canvas = np.zeros((h + h % 2, w + w % 2, 3), np.uint8)
            canvas[:h, :w] = rgb
            for c, (x, y) in zip(colors, pts, strict=True):
                if np.isfinite(x) and np.isfinite(y):
                    xi, yi = int(round(x)), int(round(y))
                    canvas[max(yi - r, 0): yi + r + 1, max(xi - r, 0): xi + r + 1] = c
            for packet in self.stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                self.container.mux(packet)

    def close(self) -> None:
        if self.container is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
            self.container = None
