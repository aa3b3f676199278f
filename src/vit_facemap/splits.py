"""Group-aware splits: by video or animal, never by frame.

Frames of one video are near-duplicates, so a frame-level split would let the model be
judged on copies of its training frames. Splits are seeded and saved with the run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, LeaveOneGroupOut


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
