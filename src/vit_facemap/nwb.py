"""Tracked keypoints as Neurodata Without Borders (NWB) with the ndx-pose extension.

Optional: needs ``pynwb`` and ``ndx-pose`` (``pip install 'vit-facemap[nwb]'``). The file
holds one ``PoseEstimation`` in the ``behavior`` processing module, with one
``PoseEstimationSeries`` per keypoint (x, y in pixels of the full frame, the likelihood
as confidence, each frame's own time stamp) and a ``Skeleton`` naming the keypoints. Times
count from the video's first frame, the session's start. The source video is referred to
by its path relative to the NWB file's folder, as NWB's best practice asks.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from vit_facemap.errors import DataError, RunExistsError

INSTALL_HINT = "writing NWB needs pynwb and ndx-pose: pip install 'vit-facemap[nwb]'"


def nwb_available() -> bool:
    try:
        import ndx_pose  # noqa: F401
        import pynwb  # noqa: F401
    except ImportError:
        return False
    return True


def write_nwb(path: str | Path, keypoints: np.ndarray, likelihood: np.ndarray,
              bodyparts: Sequence[str], times_s: np.ndarray, *, video: str | Path,
              frame_size: tuple[int, int], scorer: str = "vit-facemap",
              frames: np.ndarray | None = None, fps: float | None = None,
              n_video_frames: int | None = None, session_start: datetime | None = None,
              overwrite: bool = False) -> Path:
    """Write keypoints (N, K, 2), likelihood (N, K) and per-frame times (N,) to ``path``.

    ``frames`` are the video frame numbers of the N rows (default 0..N-1); ``times_s`` count
    from the video's first frame (at 0 s), as the source video's description does. Frames
    without a time stamp (raw streams have none) get ``frame / fps``. The source video is
    described from its first frame at the nominal ``fps`` when known (``n_video_frames``
    long, by default up to the last tracked frame), so its frames line up with the file's
    even when tracking started later. ``session_start`` defaults to the video's
    recording time (its ``creation_time`` tag, else the file's modification time).
    """
    from ndx_pose import PoseEstimation, PoseEstimationSeries, Skeleton, Skeletons
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.image import ImageSeries

    from vit_facemap import __version__

    path, video = Path(path), Path(video)
    if path.exists() and not overwrite:
        raise RunExistsError(path)
    times_s = np.asarray(times_s, dtype=np.float64).copy()
    frames = np.arange(len(times_s)) if frames is None else np.asarray(frames, dtype=np.int64)
    missing = ~np.isfinite(times_s)
    if missing.any():
        if not fps:
            raise DataError("frames without time stamps and no frame rate in the header; NWB "
                            "needs a time for every frame (track without --nwb)", video)
        times_s[missing] = frames[missing] / fps
    if session_start is None:
        session_start, start_source = recording_start(video)
    else:
        start_source = "given"
    nwb = NWBFile(
        session_description=f"orofacial keypoints tracked by vit-facemap in {video.name}",
        identifier=str(uuid.uuid4()), session_start_time=session_start,
        notes=f"session start: {start_source}; tracked frames {int(frames[0]) if len(frames) else 0}"
              f" to {int(frames[-1]) if len(frames) else 0} of the video"
              + ("; some time stamps from frame / fps" if missing.any() else ""),
    )
    n_video = n_video_frames or (int(frames[-1]) + 1 if len(frames) else 0)
    timing = (dict(rate=float(fps), starting_time=0.0, num_samples=n_video) if fps
              else dict(timestamps=times_s))  # no rate: the tracked frames' own times
    source = ImageSeries(
        name="source_video", description="the tracked video (not copied into this file)",
        external_file=[external_path(video, path)], format="external", starting_frame=[0],
        dimension=[int(frame_size[0]), int(frame_size[1])], unit="n.a.", **timing,
    )
    nwb.add_acquisition(source)
    skeleton = Skeleton(name="face", nodes=[str(b) for b in bodyparts],
                        edges=np.empty((0, 2), dtype=np.uint8))
    series = []
    for k, name in enumerate(bodyparts):
        series.append(PoseEstimationSeries(
            name=str(name), data=np.asarray(keypoints[:, k], dtype=np.float64),
            confidence=np.asarray(likelihood[:, k], dtype=np.float64), unit="pixels",
            reference_frame="(0, 0) is the top-left corner of the full video frame; "
                            "x to the right, y down",
            timestamps=times_s if k == 0 else series[0],  # one time base, stored once
            confidence_definition="the model's likelihood that the keypoint is where it is "
                                  "placed, in [0, 1]",
        ))
    pose = PoseEstimation(
        name="PoseEstimation", pose_estimation_series=series,
        description=f"keypoints tracked in {video} by vit-facemap, scorer {scorer}",
        scorer=scorer, source_software="vit-facemap", source_software_version=__version__,
        source_video=source, skeleton=skeleton,
    )
    behavior = nwb.create_processing_module("behavior", "orofacial keypoints per video frame")
    behavior.add(Skeletons(skeletons=[skeleton]))
    behavior.add(pose)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.nwb")
    with NWBHDF5IO(str(tmp), "w") as io:
        io.write(nwb)
    tmp.replace(path)
    return path


def external_path(video: Path, nwb_path: Path) -> str:
    """The video's path as NWB wants it in ``external_file``: relative to the NWB file's
    folder (the path as given counts from the folder the command ran in, which a reader
    of the file does not know); absolute where no relative path leads there (another
    drive)."""
    video = video.resolve()
    try:
        return os.path.relpath(video, nwb_path.resolve().parent)
    except ValueError:
        return str(video)


def recording_start(video: str | Path) -> tuple[datetime, str]:
    """When the video was recorded: its container's ``creation_time`` tag, else the file's
    modification time (what a camera's writer leaves), with which one was used."""
    video = Path(video)
    try:
        import av

        with av.open(str(video)) as container:
            tag = container.metadata.get("creation_time")
        if tag:
            when = datetime.fromisoformat(tag.replace("Z", "+00:00"))
            return (when if when.tzinfo else when.replace(tzinfo=UTC)), "the video's creation_time"
    except Exception:  # PyAV's errors, a tag that is not a date: fall back to the file's time
        pass
    return (datetime.fromtimestamp(video.stat().st_mtime, UTC),
            "the video file's modification time")
