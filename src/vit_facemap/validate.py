"""Checks at the door: a labeled set is read, then validated before anything trains on it.

Every problem names the file it is about and says what is wrong, so a user can fix it
without reading a traceback. :func:`validate_set` collects all problems into a
:class:`ValidationReport` (errors stop a run, warnings are printed);
:func:`load_set` reads and validates in one call and raises :class:`DataError` on the
first error, mentioning how many more there are.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from vit_facemap.dlc import LabeledFrames, find_label_file, keypoint_difference, read_labels
from vit_facemap.errors import DataError, DataWarning
from vit_facemap.images import (
    SIXTEEN_BIT_LOW,
    image_header,
    is_sixteen_bit,
    load_image_and_peak,
    sixteen_bit_peak,
)

# Tools disagree on whether pixel centres sit at integers or half-integers, so a label up to
# one pixel past the border is still a click on the border pixel; further is outside.
EDGE_TOLERANCE = 1.0
MAX_LISTED = 5  # problems of one kind listed by name before "... and N more"


@dataclass
class Problem:
    """One thing wrong with the input: the file it is about and what is wrong."""

    path: Path | None
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path is not None else self.message


@dataclass
class ValidationReport:
    """What :func:`validate_set` found. ``ok`` is true when there are no errors."""

    source: Path | None
    n_frames: int
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    # (width, height) of each frame, when the images were checked
    image_sizes: list[tuple[int, int] | None] = field(default_factory=list, repr=False)
    # "L" or "RGB" of each frame, when the images were decoded
    image_modes: list[str | None] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> None:
        """Raise :class:`DataError` for the first error, saying how many others there are."""
        if not self.errors:
            return
        first = self.errors[0]
        more = len(self.errors) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''}; run `vit-facemap data inspect` to list them)" if more else ""
        raise DataError(first.message + suffix, first.path)

    def summary(self) -> str:
        lines = [f"{self.n_frames} frames, {len(self.errors)} errors, {len(self.warnings)} warnings"]
        lines += [f"error: {p}" for p in self.errors]
        lines += [f"warning: {p}" for p in self.warnings]
        return "\n".join(lines)


def check_keypoint_names(
    frames: LabeledFrames, expected: Sequence[str], source: str | Path | None = None
) -> None:
    """Raise :class:`DataError` unless ``frames`` has exactly the keypoints ``expected``, in order.

    ``source`` names what the expected names come from (e.g. a trained model's folder), so
    the message says which two things disagree.
    """
    got, want = list(frames.bodyparts), [str(e) for e in expected]
    if got == want:
        return
    where = f" of {source}" if source is not None else ""
    diff = keypoint_difference(got, want)
    if not diff:
        msg = (f"keypoints are in a different order than those{where}: "
               f"labels have {got}, expected {want}")
    else:
        msg = f"keypoint names differ from those{where}: {diff} (expected {want})"
    raise DataError(msg, _label_path(frames))


def _label_path(frames: LabeledFrames) -> Path:
    try:
        return find_label_file(frames.root)
    except DataError:
        return frames.root


def _found_elsewhere(frames: LabeledFrames, label_file: Path) -> str:
    """Where the first frame is, when it is beside the table or in ``<video>/`` there rather
    than where its path points; "" when not. A DeepLabCut project's labeled-data/<video>/
    folder copied out of its project keeps its frames beside the table, and the message
    said only that <folder>/labeled-data was missing, with the frames in plain sight."""
    first = PurePosixPath(frames.index[0])
    folder = label_file.parent if label_file.is_file() else frames.root
    for candidate in (folder / first.name, folder.joinpath(*first.parts[-2:])):
        if candidate.is_file():
            return (f"; {first.name} is at {candidate}: the table's paths are read from "
                    f"{frames.root}; give the DeepLabCut project folder these frames belong in, "
                    "or put them where the paths say")
    return ""


def _message(exc: DataError) -> str:
    """The message of a DataError without the path prefix it adds."""
    text = str(exc)
    prefix = f"{exc.path}: " if exc.path is not None else ""
    return text[len(prefix):] if text.startswith(prefix) else text


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def validate_set(
    frames: LabeledFrames,
    *,
    check_images: bool = True,
    decode: bool = True,
    expected_bodyparts: Sequence[str] | None = None,
    expected_source: str | Path | None = None,
) -> ValidationReport:
    """Check labels and (optionally) images of a labeled set; returns every problem found.

    ``check_images`` opens each frame: missing files are errors; with ``decode`` the pixels
    are decoded too, so truncated or corrupt PNG/JPEG files are caught here rather than in
    the middle of training. Coordinates are checked against each image's own size.
    """
    label_file = _label_path(frames)
    report = ValidationReport(source=label_file, n_frames=len(frames))
    err, warn = report.errors.append, report.warnings.append

    if len(frames) == 0:
        err(Problem(label_file, "the set is empty: the labels table has no frames"))
        return report
    if len(frames.bodyparts) == 0:
        err(Problem(label_file, "the labels table has no keypoint columns"))
        return report
    if expected_bodyparts is not None:
        try:
            check_keypoint_names(frames, expected_bodyparts, expected_source)
        except DataError as exc:
            err(Problem(exc.path, _message(exc)))

    index = pd.Index(frames.index)
    dupes = index[index.duplicated()].unique().tolist()
    if dupes:
        err(Problem(label_file, f"duplicate rows for {len(dupes)} frame(s): {_listed(dupes)}"))

    names = list(map(str, frames.bodyparts))
    dup_names = sorted({n for n in names if names.count(n) > 1})
    if dup_names:
        err(Problem(label_file, f"keypoint names used twice: {dup_names}"))

    kp = frames.keypoints
    if not np.isfinite(kp[~np.isnan(kp)]).all():
        err(Problem(label_file, "coordinates hold infinite values"))
    missing = frames.missing
    half = np.isnan(kp).any(-1) & ~np.isnan(kp).all(-1)
    if half.any():
        rows, cols = np.nonzero(half)
        which = [f"{frames.index[r]} '{names[c]}'" for r, c in zip(rows, cols, strict=True)]
        err(Problem(label_file, f"keypoints with only one of x / y: {_listed(which)}"))
    never = [names[k] for k in np.flatnonzero(missing.all(axis=0))]
    if never and expected_bodyparts is None:
        err(Problem(label_file, f"keypoint(s) {never} are missing in all {len(frames)} frames: "
                                "nothing to learn them from (drop the column or label them)"))
    elif never and len(never) == len(names):
        # evaluating a run on a set without any label: nothing is scored, and evaluate ended
        # in a TypeError formatting its null mean
        err(Problem(label_file, f"none of the run's keypoints is labeled in any of the "
                                f"{len(frames)} frames: nothing to score them against (label "
                                "them, or evaluate on a set that has them)"))
    elif never:
        # evaluating a run: a keypoint nobody labeled in these frames (hidden, out of view)
        # has no error, but the others do; refusing the set gave no numbers at all
        warn(Problem(label_file, f"keypoint(s) {never} are missing in all {len(frames)} "
                                 "frames: they are not scored (per_keypoint null), the others are"))
    blank = [frames.index[i] for i in np.flatnonzero(missing.all(axis=1))]
    if blank and len(blank) < len(frames):
        warn(Problem(label_file, f"{len(blank)} frame(s) have no labeled keypoint: {_listed(blank)}"))
    zeros = (kp == 0).all(-1)
    if zeros.any():
        rows, cols = np.nonzero(zeros)
        which = [f"{frames.index[r]} '{names[c]}'" for r, c in zip(rows, cols, strict=True)]
        warn(Problem(label_file, "keypoints at exactly (0, 0), often a missing label written as "
                                 f"zero (leave the cell empty instead): {_listed(which)}"))

    if not check_images:
        return report
    if not any(p.is_file() for p in frames.image_paths):
        # one clear message instead of one per frame when the images were never copied
        where = frames.root / "labeled-data"
        err(Problem(label_file, f"none of the {len(frames)} images of the table exist "
                                f"(expected under {where}{'' if where.is_dir() else ', which is missing'}; "
                                f"e.g. {frames.index[0]}){_found_elsewhere(frames, label_file)}"))
        return report
    outside: list[str] = []
    shallow: list[str] = []  # 16-bit frames holding 12 bits or fewer
    # Without decoding, the 12-bit check decodes only the first frame of each video: the
    # warning is about how a set was saved, and decoding every 16-bit frame here would make
    # a training start-up that reads headers only decode the whole set.
    _, first_rows = np.unique(np.asarray(frames.videos), return_index=True)
    sampled = set(first_rows.tolist())
    for i, path in enumerate(frames.image_paths):
        try:
            if decode:
                arr, peak = load_image_and_peak(path)  # the frame decoded once for both
                h, w = arr.shape[:2]
                report.image_modes.append("RGB" if arr.ndim == 3 else "L")
            else:
                (w, h), mode = image_header(path)
                report.image_modes.append(None)
                peak = sixteen_bit_peak(path) if i in sampled and is_sixteen_bit(mode) else None
            if peak is not None and peak < SIXTEEN_BIT_LOW:
                shallow.append(frames.index[i])
        except DataError as exc:
            err(Problem(exc.path, _message(exc)))
            report.image_sizes.append(None)
            report.image_modes.append(None)
            continue
        report.image_sizes.append((w, h))
        xy = kp[i]
        lo, hi_x, hi_y = -EDGE_TOLERANCE, w + EDGE_TOLERANCE - 1, h + EDGE_TOLERANCE - 1
        bad = ~np.isnan(xy[:, 0]) & (
            (xy[:, 0] < lo) | (xy[:, 0] > hi_x) | (xy[:, 1] < lo) | (xy[:, 1] > hi_y)
        )
        for k in np.flatnonzero(bad):
            outside.append(f"{frames.index[i]} '{names[k]}' at ({xy[k, 0]:.1f}, {xy[k, 1]:.1f}) "
                           f"in a {w}x{h} image")
    if outside:
        err(Problem(label_file, f"{len(outside)} keypoint(s) lie outside their image: "
                                f"{_listed(outside)}"))
    if shallow:
        which = "" if decode else " (of the first frame of each video, those checked)"
        warn(Problem(label_file, f"{len(shallow)} 16-bit frame(s) use only values below "
                                 f"{SIXTEEN_BIT_LOW} (12-bit data or less?): read on the 16-bit "
                                 "scale they keep at most 16 grey levels; save them as 8-bit "
                                 f"(scaled to 0..255) first: {_listed(shallow)}{which}"))
    sizes = {s for s in report.image_sizes if s is not None}
    if len(sizes) > 1:
        warn(Problem(label_file, f"frames come in {len(sizes)} sizes: "
                                 f"{_listed(sorted(f'{w}x{h}' for w, h in sizes))}"))
    return report


def load_set(
    path: str | Path,
    expected_bodyparts: Sequence[str] | None = None,
    *,
    check_images: bool = True,
    decode: bool = True,
    expected_source: str | Path | None = None,
) -> LabeledFrames:
    """Read a labeled set (folder or label file) and validate it; raise :class:`DataError` if
    bad. Problems that do not stop a run (frames without labels, labels at (0, 0), ...) are
    issued as warnings, so a command line shows them."""
    frames = read_labels(path)
    if expected_bodyparts is not None:
        frames = _as_expected(frames, expected_bodyparts, expected_source)
    report = validate_set(frames, check_images=check_images, decode=decode,
                          expected_bodyparts=expected_bodyparts, expected_source=expected_source)
    report.raise_for_errors()
    for problem in report.warnings:
        warnings.warn(str(problem), DataWarning, stacklevel=2)
    return frames


def _as_expected(frames: LabeledFrames, expected: Sequence[str],
                 source: str | Path | None) -> LabeledFrames:
    """``frames`` with the keypoints ``expected`` in their order, matched by name (a table
    may order its columns otherwise); keypoints of the table not expected are left out with
    a warning. Unchanged when an expected keypoint is not there (the check says so)."""
    want = [str(e) for e in expected]
    if list(frames.bodyparts) == want or not set(want) <= set(frames.bodyparts):
        return frames
    extra = [b for b in frames.bodyparts if b not in want]
    if extra:
        where = f" of {source}" if source is not None else ""
        warnings.warn(f"{_label_path(frames)}: keypoint(s) {extra} are not among those{where} "
                      "and are left out", DataWarning, stacklevel=3)
    return frames.with_bodyparts(want)
