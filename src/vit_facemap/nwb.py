"""Tracked keypoints as Neurodata Without Borders (NWB) with the ndx-pose extension.

Optional: needs ``pynwb`` and ``ndx-pose`` (``pip install 'vit-facemap[nwb]'``). The file
holds one ``PoseEstimation`` in the ``behavior`` processing module, with one
``PoseEstimationSeries`` per keypoint (x, y in pixels of the full frame, the likelihood
as confidence, each frame's own time stamp) and a ``Skeleton`` naming the keypoints.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from vit_facemap.errors import RunExistsError

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
              overwrite: bool = False) -> Path:
    """Write keypoints (N, K, 2), likelihood (N, K) and per-frame times (N,) to ``path``."""
    from ndx_pose import PoseEstimation, PoseEstimationSeries, Skeleton, Skeletons
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.image import ImageSeries

    from vit_facemap import __version__

    path = Path(path)
    if path.exists() and not overwrite:
        raise RunExistsError(path)
    times_s = np.asarray(times_s, dtype=np.float64)
    if len(times_s) and not np.all(np.isfinite(times_s)):
        raise ValueError("every frame needs a time stamp for NWB")
    video = Path(video)
    nwb = NWBFile(
        session_description=f"orofacial keypoints tracked by vit-facemap in {video.name}",
        identifier=str(uuid.uuid4()), session_start_time=datetime.now(UTC),
    )
    source = ImageSeries(
        name="source_video", description="the tracked video (not copied into this file)",
        external_file=[str(video)], format="external", starting_frame=[0],
        dimension=[int(frame_size[0]), int(frame_size[1])],
        timestamps=times_s, unit="n.a.",
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
