"""Group-aware splits: by video or animal, never by frame.

Frames of one video are near-duplicates, so a frame-level split would let the model be
judged on copies of its training frames. Splits are seeded and saved with the run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, LeaveOneGroupOut

from vit_facemap.errors import DataError

if TYPE_CHECKING:
    from vit_facemap.dlc import LabeledFrames

# A recording date inside a session name, in the forms labs use: 2022-03-28 or 2022_03_28
# (a part number may follow it directly, Glaucus2022-03-281), 28-03-2022, 20220328.
_DATE = re.compile(
    r"(?:19|20)\d\d(?P<a>[-_.])(?:0[1-9]|1[0-2])(?P=a)(?:0[1-9]|[12]\d|3[01])"
    r"|(?<!\d)(?:0[1-9]|[12]\d|3[01])(?P<b>[-_.])(?:0[1-9]|1[0-2])(?P=b)(?:19|20)\d\d(?!\d)"
    r"|(?<!\d)(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?!\d)"
)
_CAMERA_PREFIX = re.compile(r"^cam(?:era)?\d*[_-]", re.IGNORECASE)
# a trailing part or session number: _2, -2, _day1, _session2, _s3, _run1 ...
_PART_SUFFIX = re.compile(r"[_-](?:(?:day|d|session|sess|ses|s|run|rec|trial)[_-]?)?\d+$",
                          re.IGNORECASE)
ANIMALS_FILE = "animals.csv"  # optional table (video, animal) beside the labels


def _without_parts(name: str) -> str:
    """``name`` less its trailing part / session numbers (``M1_day2_1`` -> ``M1``)."""
    while (shorter := _PART_SUFFIX.sub("", name)) not in ("", name):
        name = shorter
    return name


def animal_of(video: str) -> str:
    """The animal of a session named after it, read by these rules, in order:

    1. A camera prefix is dropped (``cam1_``, ``camera2-``).
    2. With a recording date before which something stands (``2022-03-28``, ``2022_03_28``,
       ``28-03-2022`` or ``20220328``), the animal is what comes before the date, with or
       without an underscore, cut at its first underscore: ``Glaucus2022-03-281`` and
       ``FG0032023-03-118`` (date glued to the name and to a part number),
       ``Bellinda_2022-07-25_1_Video0``, ``SS112_Reward_2022-08-23...`` (a tag between
       animal and date), ``M1_20220328``, ``M1_28-03-2022`` all name their first word.
    3. With the date first (``2022-03-28_M1_2``), the animal is the first word after it
       that is not a number, less a part number.
    4. Without a date, the name less trailing part or session numbers (``_2``, ``-2``,
       ``_day1``, ``_session2``, ``_s3``, ``_run1``): ``cam1_G7c1_2`` -> ``G7c1``,
       ``M1_day2`` -> ``M1``; ``eye3`` stays ``eye3``.

    When in doubt sessions are merged rather than split: a merged group cannot leak frames
    of one animal into both sides of a split. A name these rules do not see through
    (``mouseA_morning``, ``mouseA_evening``) stays its own animal, one per video, and then
    grouping by animal is no better than grouping by video: put an ``animals.csv``
    (columns ``video``, ``animal``) beside the labels (see :func:`groups_for`), and check
    the animals ``vit-facemap data inspect`` lists.
    """
    video = str(video)
    name = _CAMERA_PREFIX.sub("", video) or video
    m = _DATE.search(name)
    if m is not None and m.start() > 0:
        head = name[: m.start()].rstrip("_-. ").split("_", 1)[0]
        if head:
            return head
    if m is not None:
        words = [w for w in name[m.end():].split("_") if w.strip("-. ") and not w.isdigit()]
        if words:
            return _without_parts(words[0].strip("-. ")) or words[0]
    return _without_parts(name) or video


def read_animals(root: str | Path) -> dict[str, str] | None:
    """The ``animals.csv`` table (video -> animal) in a set's folder, or None if there is none."""
    path = Path(root) / ANIMALS_FILE
    if not path.is_file():
        return None
    import pandas as pd

    try:
        # "v1, M1" (a space after the comma) was the animal " M1", another than "M1"
        table = pd.read_csv(path, dtype=str, skipinitialspace=True)
        table = table.rename(columns=str.strip).apply(lambda c: c.str.strip())
        pairs = list(zip(table["video"], table["animal"], strict=True))
    except (KeyError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"needs columns 'video' and 'animal': {exc}", path) from exc
    # an empty cell was read as the animal 'nan' (every such video one mouse), and a video
    # listed twice took its last animal: either can put one mouse on both sides of a split
    # a row with neither (",", as spreadsheets export an emptied row) names no video: skipped
    lines = [(i + 2, v, a) for i, (v, a) in enumerate(pairs) if not (pd.isna(v) and pd.isna(a))]
    pairs = [(v, a) for _, v, a in lines]
    blank = [f"line {n}" for n, v, a in lines if pd.isna(v) or pd.isna(a)]
    if blank:
        raise DataError(f"empty video or animal cell ({', '.join(blank[:5])}); fill it in, or "
                        "drop the row to read that video's animal from its name", path)
    animals: dict[str, str] = {}
    for video, animal in pairs:
        if animals.setdefault(video, animal) != animal:
            raise DataError(f"video {video!r} is given two animals ({animals[video]!r} and "
                            f"{animal!r})", path)
    return animals


def groups_for(frames: LabeledFrames, by: str = "video",
               animals: dict[str, str] | None = None) -> np.ndarray:
    """Each frame's group for a group-aware split: its ``video`` or its ``animal``.

    Animals come from ``animals`` (video -> animal), else from ``animals.csv`` in the
    set's folder, else from the session names (:func:`animal_of`).
    """
    videos = frames.videos
    if by == "video":
        return videos
    if by == "animal":
        table = animals if animals is not None else read_animals(frames.root)
        table = table or {}
        return np.array([table.get(v, animal_of(v)) for v in videos])
    raise ValueError(f"unknown grouping {by!r}; use 'video' or 'animal'")


def group_kfold(groups: np.ndarray | list[str], n_folds: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_folds`` (train, held-out) pairs; each group is held out in exactly one fold.

    With ``n_folds`` equal to the number of groups this is leave-one-group-out
    (e.g. leave-one-animal-out on the Schroeder set).
    """
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if not 2 <= n_folds <= n_groups:
        raise ValueError(f"n_folds must be between 2 and the number of groups ({n_groups})")
    return list(GroupKFold(n_splits=n_folds).split(np.zeros(len(groups)), groups=groups))


def group_split(
    groups: np.ndarray | list[str], val_groups: int | float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation row indices with every group on one side only.

    ``val_groups`` is a number of groups (int >= 1) or a fraction of them (float < 1).
    """
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(
            f"a group split needs at least 2 groups (videos or animals), found {n_groups}"
        )
    splitter = GroupShuffleSplit(n_splits=1, test_size=val_groups, random_state=seed)
    train, val = next(splitter.split(np.zeros(len(groups)), groups=groups))
    return np.sort(train), np.sort(val)


def leave_one_group_out(groups: np.ndarray | list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One (train, held-out) pair per group."""
    groups = np.asarray(groups)
    return [(tr, te) for tr, te in LeaveOneGroupOut().split(np.zeros(len(groups)), groups=groups)]


def save_split(path: str | Path, index: list[str], train: np.ndarray, val: np.ndarray,
               groups: np.ndarray | list[str], seed: int) -> Path:
    """Record which frames (by their relative path) went where, and the groups of each side."""
    groups = np.asarray(groups)
    record = {
        "seed": int(seed),
        "train_groups": sorted(set(groups[train].tolist())),
        "val_groups": sorted(set(groups[val].tolist())),
        "train": [index[i] for i in train],
        "val": [index[i] for i in val],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def load_split(path: str | Path, index: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation row indices into ``index`` from a split saved by :func:`save_split`.

    Frames are matched by their relative path, so the split survives reordering of the
    labels table; frames named in the split but absent from ``index`` are an error.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        train_names, val_names = record["train"], record["val"]
    except FileNotFoundError as exc:
        raise DataError("split file is missing", path) from exc
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"not a split file (needs 'train' and 'val' lists): {exc}", path) from exc
    position = {name: i for i, name in enumerate(index)}
    absent = [n for n in [*train_names, *val_names] if n not in position]
    if absent:
        raise DataError(f"{len(absent)} frame(s) of the split are not in this set, "
                        f"e.g. {absent[0]}", path)
    overlap = set(train_names) & set(val_names)
    if overlap:
        raise DataError(f"{len(overlap)} frame(s) are in both train and val", path)
    train = np.sort([position[n] for n in train_names]).astype(int)
    val = np.sort([position[n] for n in val_names]).astype(int)
    return train, val


def recommended_split(
    frames: LabeledFrames, seed: int = 0, val_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray, str]:
    """The project's train / validation split of a labeled set: ``(train, val, by)``.

    Frames are grouped by animal when the set has more than two animals (so validation
    frames come from mice the model never saw), else by video (e.g. ``g7c1``: two videos
    of one mouse, one for training and one for validation). At least one group, and about
    ``val_fraction`` of them, go to validation.
    """
    animals = groups_for(frames, "animal")
    by = "animal" if len(np.unique(animals)) > 2 else "video"
    groups = animals if by == "animal" else groups_for(frames, "video")
    n_groups = len(np.unique(groups))
    n_val = max(1, int(round(val_fraction * n_groups)))
    train, val = group_split(groups, val_groups=n_val, seed=seed)
    return train, val, by


def split_table(frames: LabeledFrames, train: np.ndarray, val: np.ndarray):
    """One row per video: its animal, the side of the split it is on, and its frame count."""
    import pandas as pd

    side = np.full(len(frames), "", dtype=object)
    side[train], side[val] = "train", "validation"
    table = pd.DataFrame({"video": frames.videos, "animal": groups_for(frames, "animal"),
                          "split": side})
    table = table[table["split"] != ""]
    out = table.groupby(["split", "animal", "video"]).size().rename("frames").reset_index()
    return out.sort_values(["split", "animal", "video"], ascending=[False, True, True],
                           ignore_index=True)


_FRAME_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def frame_numbers(frames: LabeledFrames) -> np.ndarray:
    """Each labeled frame's number in its video, read from the image name (``img0051.png``: 51)."""
    numbers = []
    for name in frames.index:
        m = _FRAME_NUMBER.search(Path(name).stem)
        if m is None:
            raise DataError("the image name holds no frame number (a later-frames split "
                            "needs names such as img0051.png)", Path(frames.root) / name)
        numbers.append(int(m.group(1)))
    return np.array(numbers, dtype=int)


def later_frames_split(frames: LabeledFrames, share: float = 0.2,
                       gap: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Train / test row indices: the last ``share`` of every video's labeled frames are held out.

    This stands in for "further frames of the same rigs": the model trains on every video,
    but is judged on a later stretch of each. Frames within ``gap`` frame numbers before a
    video's first test frame are left out (of training; they are not test frames either),
    so that no training frame is a near-copy of a test frame (at 30 frames/s, 300 frames
    are 10 s). A video with no training frame left is an error.
    """
    if not 0 < share < 1:
        raise ValueError(f"share must be between 0 and 1, got {share}")
    numbers = frame_numbers(frames)
    videos = frames.videos
    train, test = [], []
    for video in np.unique(videos):
        rows = np.flatnonzero(videos == video)
        rows = rows[np.argsort(numbers[rows], kind="stable")]
        n_test = max(1, int(round(share * len(rows))))
        if n_test >= len(rows):
            raise ValueError(f"video {video!r} has {len(rows)} labeled frame(s): too few to "
                             "hold out a later stretch and keep earlier frames for training")
        first = numbers[rows[-n_test]]
        kept = [r for r in rows[:-n_test] if numbers[r] < first - gap]
        if not kept:
            raise ValueError(f"video {video!r}: every earlier labeled frame lies within {gap} "
                             "frames of the held-out stretch, so none is left for training")
        test.extend(rows[-n_test:].tolist())
        train.extend(kept)
    return np.sort(np.array(train, int)), np.sort(np.array(test, int))
