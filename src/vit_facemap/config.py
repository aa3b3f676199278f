"""Where data lives, how big a run is, and the box sizes a tracker predicts at.

Nothing here is a hidden global: functions take explicit arguments and fall back to
environment variables only where a user would expect to set one.

- ``VIT_FACEMAP_DATA``: folder holding the real labeled sets (``g7c1``, ``schroeder``).
- ``VIT_FACEMAP_PROFILE``: default run size for notebooks (``test``, ``quick``,
  ``default``, ``full``); papermill passes it explicitly when building the book.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import types
import typing
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PROFILES = ("test", "quick", "default", "full")
DATA_ENV = "VIT_FACEMAP_DATA"
PROFILE_ENV = "VIT_FACEMAP_PROFILE"
REAL_SETS = ("g7c1", "schroeder")
# crop-box sizes (factors about the box centre) a trained tracker averages over
# (vit_facemap.predict); kept here, free of torch, for the command line's help
TEST_SCALES: tuple[float, ...] = (0.9, 1.0, 1.1)
# those of a tracker that also averages over the mirrored frame (a run trained with flips):
# the mirrored view takes the place of the other sizes, at two thirds of their compute and,
# on all four held-out splits of schroeder, lower mean error (benchmarks/crop_shift.py)
FLIP_SCALES: tuple[float, ...] = (1.0,)


# numpy, torch and scikit-learn all take seeds in [0, 2**32); runs add small offsets to
# theirs (seed + 1000 * epoch, an ensemble's seed + i), hence the margin
MAX_SEED = 2**31 - 1


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` as an int in [0, :data:`MAX_SEED`]; ValueError naming ``what`` otherwise
    (numpy's and scikit-learn's own refusals come only after a run has started, and name no
    setting)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) \
            or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{what} must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    return int(seed)


def check_scales(scales: Sequence[float] | None) -> tuple[float, ...]:
    """``scales`` (None: :data:`TEST_SCALES`) as a tuple of positive box-size factors.

    Raises ValueError for an empty list or a factor that is not a positive finite number.
    """
    if scales is None:
        return TEST_SCALES
    try:
        out = tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        out = ()
    if not out or not all(math.isfinite(s) and s > 0 for s in out):
        raise ValueError(f"scales must be one or more positive box-size factors, got {scales!r}")
    return out


def check_crop_shift(shift: object) -> float:
    """``shift``, the crop stages' test-time shift (a share of a crop's side), as a float in
    [0, 0.5); ValueError otherwise (half a side would put the first stage's estimate on the
    crop's edge)."""
    if isinstance(shift, bool | np.bool_) or not isinstance(shift, numbers.Real) \
            or not (math.isfinite(shift) and 0 <= shift < 0.5):
        raise ValueError(f"crop_shift must be a share of the crop's side in [0, 0.5), got "
                         f"{shift!r}")
    return float(shift)


def data_root(path: str | Path | None = None) -> Path | None:
    """The folder of real labeled sets: ``path``, else ``$VIT_FACEMAP_DATA``.

    Returns None when neither is given or the folder does not exist, in which case
    callers use generated frames and must say so.
    """
    candidate = path if path not in (None, "") else os.environ.get(DATA_ENV) or None
    if candidate is None:
        return None
    candidate = Path(candidate).expanduser()
    return candidate if candidate.is_dir() else None


def real_set(name: str, root: str | Path | None = None) -> Path | None:
    """The folder of real set ``name`` under :func:`data_root`, or None if absent."""
    base = data_root(root)
    if base is None:
        return None
    folder = base / name
    return folder if folder.is_dir() else None


def profile(value: str | None = None) -> str:
    """The run profile: ``value``, else ``$VIT_FACEMAP_PROFILE``, else ``default``."""
    p = value or os.environ.get(PROFILE_ENV) or "default"
    if p not in PROFILES:
        raise ValueError(f"unknown profile {p!r}; choose one of {', '.join(PROFILES)}")
    return p


def _fits(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool | np.bool_)
    # numpy scalars count (a value computed with numpy); True is not a number of steps
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return isinstance(value, list | tuple) and all(
            _fits(v, args[0]) for v in value) if args else isinstance(value, list | tuple)
    if origin is dict:
        # keys and values too: {"nose": 30} where settings were wanted failed as Python's
        # "'int' object is not a mapping", far from the config that held it
        args = typing.get_args(hint)
        return isinstance(value, dict) and (not args or all(
            _fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items()))
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint)  # its own fields it checks itself
    return True


def check_fields(config, what: str) -> None:
    """Raise ValueError naming every field of the dataclass ``config`` whose value has the
    wrong type (a config file's ``"steps": "abc"``), before it fails deep inside torch."""
    hints = typing.get_type_hints(type(config))
    bad = [f"{f.name}={getattr(config, f.name)!r} (expected {_hint_name(hints[f.name])})"
           for f in dataclasses.fields(config) if not _fits(getattr(config, f.name), hints[f.name])]
    if bad:
        raise ValueError(f"bad {what} settings: {', '.join(bad)}")


def _hint_name(hint) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")
