"""What is in a labeled set: frames, videos, animals, keypoints, missing labels, spread, how
each video frames the face, and how far its labels scatter (the label floors).

Used by ``vit-facemap data inspect`` and by the data notebook. The numbers come from the
labels table and the images themselves (validated on the way, see
:mod:`vit_facemap.validate`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vit_facemap.dlc import LabeledFrames, read_labels
from vit_facemap.labelcheck import describe_slips, label_repeatability, label_slips, mask_slips
from vit_facemap.poses import describe_poses, video_poses
from vit_facemap.splits import groups_for, read_animals
from vit_facemap.validate import validate_set


@dataclass
class SetSummary:
    """A labeled set in numbers. ``missing`` counts frames without each keypoint."""

    source: str
    n_frames: int
    n_videos: int
    n_animals: int
    keypoints: list[str]
    missing: dict[str, int]
    n_frames_with_missing: int
    frames_per_video: dict[str, int]
    animals: dict[str, list[str]]
    # where the animals come from: "animals.csv", "the session names" or both
    animals_from: str = "the session names"
    image_sizes: dict[str, int] = field(default_factory=dict)
    image_modes: dict[str, int] = field(default_factory=dict)
    # per keypoint, pixels: mean position, SD over all frames, pooled SD within videos
    spread: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # labels lying where another keypoint usually is or far off the face (vit_facemap.labelcheck)
    label_slips: list[dict] = field(default_factory=list)
    # each video's face size, turn and side against the set's typical pose (vit_facemap.poses)
    poses: list[dict] = field(default_factory=list)
    # per keypoint, how far its labels scatter where the frames did not change, in pixels
    # (vit_facemap.labelcheck.label_repeatability, flagged labels left out); empty where the
    # pixels were not read or an image could not be
    label_floors: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def keypoint_spread(frames: LabeledFrames) -> pd.DataFrame:
    """Per keypoint: labeled frames, mean x / y, SD of x / y over all frames, and the SD
    within videos (pooled), all in pixels; missing labels are left out, not counted as zero.

    ``sd`` is the root of the summed x and y variances (a radius); ``sd_within_video`` is
    the same for positions relative to each video's mean, i.e. how much the keypoint moves
    once the camera placement is fixed.
    """
    kp = frames.keypoints
    videos = frames.videos
    rows = []
    for k, name in enumerate(frames.bodyparts):
        xy = kp[:, k]
        seen = ~np.isnan(xy).any(axis=1)
        pts = xy[seen]
        centred = []
        for v in np.unique(videos[seen]):
            p = pts[videos[seen] == v]
            centred.append(p - p.mean(axis=0))
        centred = np.concatenate(centred) if centred else np.zeros((0, 2))
        var = pts.var(axis=0, ddof=1) if len(pts) > 1 else np.full(2, np.nan)
        # each video's mean takes one degree of freedom: with one frame per video nothing is
        # left to measure movement within videos (it read 0.0, "never moves"), so NaN
        dof = len(centred) - len(np.unique(videos[seen]))
        within = (centred**2).sum(axis=0) / max(1, dof)
        rows.append(dict(
            keypoint=name, labeled=int(seen.sum()), missing=int((~seen).sum()),
            mean_x=float(pts[:, 0].mean()) if len(pts) else np.nan,
            mean_y=float(pts[:, 1].mean()) if len(pts) else np.nan,
            sd_x=float(np.sqrt(var[0])), sd_y=float(np.sqrt(var[1])),
            sd=float(np.sqrt(var.sum())),
            sd_within_video=float(np.sqrt(within.sum())) if dof > 0 else np.nan,
        ))
    return pd.DataFrame(rows).set_index("keypoint")


def summarize(frames: LabeledFrames, *, check_images: bool = True, decode: bool = True,
              floors: bool = True, source: str | Path | None = None) -> SetSummary:
    """Count and check a labeled set already read into memory.

    ``floors``: also measure the label floors (:func:`label_floors`), which reads every
    frame's pixels again; only where they were decoded and all of them could be.
    """
    report = validate_set(frames, check_images=check_images, decode=decode)
    videos = frames.videos
    table = read_animals(frames.root) or {}
    animals = groups_for(frames, "animal", animals=table)
    # the report said "from the session names" when animals.csv named them
    listed = {v in table for v in set(videos.tolist())}
    animals_from = ("animals.csv" if listed == {True} else
                    "animals.csv and the session names" if True in listed else
                    "the session names")
    by_animal: dict[str, list[str]] = {}
    for v, a in sorted(set(zip(videos.tolist(), animals.tolist(), strict=True))):
        by_animal.setdefault(a, []).append(v)
    missing = frames.missing
    spread = keypoint_spread(frames) if len(frames) else pd.DataFrame()
    slips = label_slips(frames)
    poses = video_poses(frames)
    readable = check_images and decode and not report.errors and len(frames)
    scatter = label_floors(mask_slips(frames, slips)) if floors and readable else {}
    return SetSummary(
        source=str(source if source is not None else report.source),
        n_frames=len(frames),
        n_videos=len(set(videos.tolist())),
        n_animals=len(by_animal),
        keypoints=list(frames.bodyparts),
        missing={k: int(missing[:, i].sum()) for i, k in enumerate(frames.bodyparts)},
        n_frames_with_missing=int(missing.any(axis=1).sum()),
        frames_per_video=dict(sorted(Counter(videos.tolist()).items())),
        animals=by_animal,
        animals_from=animals_from,
        image_sizes={f"{w}x{h}": n for (w, h), n in
                     sorted(Counter(s for s in report.image_sizes if s is not None).items())},
        image_modes=dict(Counter(m for m in report.image_modes if m is not None)),
        spread={k: {c: round(float(v), 3) for c, v in row.items()}
                for k, row in spread.drop(columns=["labeled", "missing"], errors="ignore")
                .to_dict(orient="index").items()},
        errors=[str(p) for p in report.errors],
        warnings=[str(p) for p in report.warnings] + describe_slips(slips)
        + describe_poses(poses, bodyparts=frames.bodyparts),
        label_slips=slips.round(1).to_dict(orient="records"),
        poses=poses.to_dict(orient="records"),
        label_floors=scatter,
    )


def label_floors(frames: LabeledFrames) -> dict[str, dict[str, float]]:
    """Per keypoint, :func:`~vit_facemap.labelcheck.label_repeatability` at its defaults
    (the data and tracker pages' settings): ``floor_px`` and ``mean_floor_px``, the mean
    error a tracker that finds every keypoint's true place would still score against these
    labels, ``moving_px`` (how far it moves between frames), ``image_diff`` and the pairs
    of frames used; NaN for a keypoint without a pair of unchanged frames. A held-out error
    near the floor is as low as these labels can show."""
    table = label_repeatability(frames).set_index("keypoint")
    cols = ["floor_px", "mean_floor_px", "moving_px", "image_diff", "pairs", "used"]
    return {str(k): {c: (round(float(row[c]), 3) if c not in ("pairs", "used") else int(row[c]))
                     for c in cols}
            for k, row in table.iterrows()}


def inspect_set(path: str | Path, *, check_images: bool = True, decode: bool = True,
                floors: bool = True) -> SetSummary:
    """Read a labeled set (folder or label file) and summarize it.

    A table that cannot be read raises :class:`~vit_facemap.errors.DataError`; problems
    found while checking (corrupt images, labels outside the image, ...) are listed in
    ``errors`` so that all of them can be shown at once.
    """
    frames = read_labels(path)
    return summarize(frames, check_images=check_images, decode=decode, floors=floors)


def format_summary(s: SetSummary) -> str:
    """A plain-text report for the terminal."""
    lines = [
        f"set:        {s.source}",
        f"frames:     {s.n_frames} ({s.n_frames_with_missing} with some keypoints missing)",
        f"videos:     {s.n_videos}",
        f"animals:    {s.n_animals} (from {s.animals_from}: {', '.join(s.animals)})",
        f"keypoints:  {len(s.keypoints)}",
        f"image size: {', '.join(f'{k} ({n})' for k, n in s.image_sizes.items()) or 'not checked'}",
    ]
    if s.image_modes:
        lines.append(f"colour:     {', '.join(f'{k} ({n})' for k, n in s.image_modes.items())}")
    lines.append("")
    head = f"{'keypoint':<18}{'missing':>8}{'mean x':>9}{'mean y':>9}{'SD':>8}{'SD in video':>13}"
    lines.append(head + (f"{'floor':>8}{'mean floor':>12}" if s.label_floors else ""))
    for k in s.keypoints:
        sp = s.spread.get(k, {})
        line = (f"{k:<18}{s.missing[k]:>8}{sp.get('mean_x', np.nan):>9.1f}"
                f"{sp.get('mean_y', np.nan):>9.1f}{sp.get('sd', np.nan):>8.1f}"
                f"{sp.get('sd_within_video', np.nan):>13.1f}")
        if s.label_floors:
            fl = s.label_floors.get(k, {})
            line += f"{fl.get('floor_px', np.nan):>8.1f}{fl.get('mean_floor_px', np.nan):>12.1f}"
        lines.append(line)
    if s.label_floors:
        lines.append("(px; floor, mean floor: how far the labels scatter where the frames did not")
        lines.append(" change, the mean error a perfect tracker would still score against them)")
    lines.append("")
    lines.append("frames per video:")
    lines += [f"  {v}: {n}" for v, n in s.frames_per_video.items()]
    if s.poses:
        lines.append("")
        lines.append(f"face per video ({s.poses[0]['n_keypoints']} keypoints fitted to the set's "
                     "typical pose; scale is over the median video's size):")
        lines.append(f"  {'video':<36}{'size px':>9}{'scale':>7}{'turn':>7}  side")
        lines += [f"  {p['video']:<36}{p['size_px']:>9.1f}{p['scale']:>7.2f}"
                  f"{p['rotation_deg']:>+7.1f}  {'mirrored' if p['mirrored'] else 'typical'}"
                  for p in s.poses]
    lines += [f"warning: {w}" for w in s.warnings]
    lines += [f"error: {e}" for e in s.errors]
    return "\n".join(lines)
