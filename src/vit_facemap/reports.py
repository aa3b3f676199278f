"""The book's tables and verdicts, built from the results the benchmarks and studies saved.

The notebooks only call these and show what they return, so everything a page states about
a result (which columns, which groups, whether a target is met) is code the tests reach.
Inputs are the saved records themselves (``tracker.json``'s rows, the interpretation
study's summary, measured speeds), checked here so a stale or hand-edited file fails with
the name of what is missing instead of a ``KeyError`` deep in pandas.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .bootstrap import (
    excludes_zero,
    macro_f1_difference,
    mean_error_difference,
    resampling_units,
    too_few_groups,
)
from .errors import DataError

# column order of the tracker table; columns a benchmark did not write are left out, except
# clean_mean_px, blank where a table was written before it was recorded. total_steps counts
# the optimiser steps of all stages (as train_s times all of them); a table written before
# it was recorded has it from the first stage's steps plus refine_steps
TRACKER_COLUMNS = ("set", "model", "mean_px", "clean_mean_px", "median_px", "rmse_px", "pck",
                   "one_scale_mean_px", "stage1_mean_px", "train_mean_px", "train_s",
                   "total_steps", "predict_fps", "n_train", "n_test", "held_out")
# the columns of text; every other one holds numbers (or is blank)
TRACKER_TEXT_COLUMNS = ("set", "model", "held_out")
# short headers, so the table fits the width of a page of the paper
TRACKER_SHORT_NAMES = {
    "mean_px": "mean px", "clean_mean_px": "clean px", "median_px": "median px",
    "rmse_px": "RMSE px", "pck": "PCK",
    "one_scale_mean_px": "one view px", "stage1_mean_px": "stage 1 px",
    "train_mean_px": "fit px", "train_s": "train s", "total_steps": "steps",
    "predict_fps": "frames/s", "n_train": "train", "n_test": "test", "held_out": "held out",
}
CLASSIFIER_NAMES = {"hog-rf": "HOG + random forest", "vit": "ViT (from scratch)"}


def _require(record: Mapping, keys: Iterable[str], what: str) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise DataError(f"{what} lacks {', '.join(map(repr, missing))}; it was written by "
                        "other code or edited by hand: run the benchmark again")


def _rows(rows: Sequence[Mapping], keys: Iterable[str]) -> list[Mapping]:
    if not len(rows):
        raise DataError("the tracker benchmark's table has no rows")
    keys = tuple(keys)
    for i, r in enumerate(rows):
        _require(r, keys, f"row {i} of the tracker table ({r.get('model', '?')})")
    return list(rows)


def tracker_rows(path: str | Path) -> list[dict]:
    """The rows of a ``tracker.json`` written by ``benchmarks/tracker.py``."""
    path = Path(path)
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError("no tracker table (benchmarks/tracker.py writes it)", path) from None
    except ValueError as e:
        raise DataError(f"not valid JSON ({e})", path) from None
    if not isinstance(saved, dict) or not isinstance(saved.get("rows"), list):
        raise DataError("no 'rows' list; not a table of benchmarks/tracker.py", path)
    if saved.get("complete") is False:
        raise DataError("the benchmark stopped part-way; its table is incomplete", path)
    # checked here, where the file is known: a row that is no object was an AttributeError
    # in the tables, and one of another tool's a message that did not name the file
    for i, r in enumerate(saved["rows"]):
        if not isinstance(r, dict) or not all(k in r for k in ("set", "model")):
            raise DataError(f"row {i} is not a result of benchmarks/tracker.py (an object with "
                            "'set' and 'model')", path)
        _check_row_values(r, f"row {i} ({r['model']})", path)
    return saved["rows"]


def _check_row_values(row: Mapping, what: str, path: Path) -> None:
    """A hand-edited value the tables cannot read, named with its row and file: the tables
    get rows, not the file, and failed with a TypeError (``per_animal: null``) or a message
    that named the column alone."""
    def number(v: Any) -> bool:
        return v is None or (isinstance(v, int | float) and not isinstance(v, bool))

    for c in TRACKER_COLUMNS:
        if c not in TRACKER_TEXT_COLUMNS and c in row and not number(row[c]):
            raise DataError(f"{what}: {c!r} is {row[c]!r}, not a number; it was edited by "
                            "hand: run the benchmark again", path)
    for key in ("per_animal", "per_video"):
        groups = row.get(key, {})
        if not isinstance(groups, dict) or not all(isinstance(g, dict) for g in groups.values()):
            raise DataError(f"{what}: {key!r} is not an object of each group's errors; it was "
                            "edited by hand: run the benchmark again", path)


def _total_steps(r: Mapping) -> float:
    """A row's steps of all stages: its own ``total_steps``, or for a table written before
    the benchmark recorded it, the first stage's plus the second stages'."""
    if r.get("total_steps") is not None:
        return r["total_steps"]
    if r.get("steps") is None:  # a model that trains no network
        return np.nan
    return r["steps"] + sum((r.get("refine_steps") or {}).values())


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def held_out(row: Mapping) -> str | None:
    """The held-out animals and videos of a row, counted from its per-group errors."""
    if "per_animal" not in row or "per_video" not in row:
        return None
    return (f"{_plural(len(row['per_animal']), 'animal')}, "
            f"{_plural(len(row['per_video']), 'video')}")


def tracker_table(rows: Sequence[Mapping], *, short_names: bool = False) -> pd.DataFrame:
    """One line per set and model: held-out error (also without the labels flagged as
    slipped, ``clean px``), PCK, fit, training time and steps of all stages, speed, and the
    numbers of frames and of held-out animals and videos."""
    rows = _rows(rows, ("set", "model", "mean_px"))
    table = pd.DataFrame(rows).assign(set=set_labels(rows))  # splits of one set apart
    # a table written before these were recorded: clean px blank, steps of all stages
    # from the first stage's and the second stages' (refine_steps)
    table["clean_mean_px"] = [np.nan if r.get("clean_mean_px") is None else r["clean_mean_px"]
                              for r in rows]
    if "steps" in table.columns or "total_steps" in table.columns:
        table["total_steps"] = [_total_steps(r) for r in rows]
    if all(held_out(r) is not None for r in rows):
        table["held_out"] = [held_out(r) for r in rows]
    table = table[[c for c in TRACKER_COLUMNS if c in table.columns]]
    # a column null in every row (no model with a PCK, or a mean error) stayed one of
    # objects, shown as 'None' where a single missing number is blank
    for c in table.columns.difference(TRACKER_TEXT_COLUMNS):
        if not pd.api.types.is_numeric_dtype(table[c]):
            try:
                table[c] = table[c].astype(float)
            except (TypeError, ValueError):
                raise DataError(f"the tracker table's {c!r} holds values that are not "
                                "numbers; it was edited by hand: run the benchmark again") from None
    return table.rename(columns=TRACKER_SHORT_NAMES) if short_names else table


def set_labels(rows: Sequence[Mapping]) -> list[str]:
    """The set each row belongs to, with its split named where a set was split several ways
    (``benchmarks/tracker.py --both-directions``): rows of different splits never mix."""
    splits: dict[str, set] = {}
    for r in rows:
        splits.setdefault(r["set"], set()).add(r.get("split"))
    return [r["set"] if len(splits[r["set"]]) == 1 else f"{r['set']} ({r.get('split')})"
            for r in rows]


def _by_set(rows: Sequence[Mapping]) -> dict[str, list[Mapping]]:
    """The rows of each set (:func:`set_labels`), sets in the order they first appear."""
    out: dict[str, list[Mapping]] = {}
    for r, label in zip(rows, set_labels(rows), strict=True):
        out.setdefault(label, []).append(r)
    return out


def tracker_curves(rows: Sequence[Mapping], runs_dir: str | Path
                   ) -> dict[str, list[tuple[str, bool, pd.DataFrame]]]:
    """The training logs of the models in the tracker table, per set (sets sorted by name).

    Each set (its split named where it has several, :func:`set_labels`) maps to ``(label,
    second stage, metrics)`` in the table's order of models: a run's
    ``runs_dir/<row's run>/metrics.csv`` (``<set>/<model>`` for tables that name none),
    then the curves its second stages keep in ``refine/<group>/metrics.csv`` (labelled ``"<model> <group> stage"``). Only the table's
    models are read, so a run folder left from an earlier benchmark with other models does
    not appear; models that train no network (mean shape, HOG forest) have no log. A set
    whose models left no log at all, or a log without ``step`` and ``train_loss``, is a
    ``DataError``.
    """
    runs_dir = Path(runs_dir)
    by_set = _by_set(_rows(rows, ("set", "model")))  # a set split two ways: two sets of curves
    curves: dict[str, list[tuple[str, bool, pd.DataFrame]]] = {}
    for set_name in sorted(by_set):
        found = []
        mine = by_set[set_name]
        for r in mine:
            model = r["model"]
            # the benchmark names each run's folder (a split's own, e.g. g7c1-later);
            # tables written before it did keep runs under <set>/<model>
            run = runs_dir / r.get("run", f"{r['set']}/{model}")
            logs = [(model, False, run / "metrics.csv")]
            logs += [(f"{model} {p.parent.name} stage", True, p)
                     for p in sorted(run.glob("refine/*/metrics.csv"))]
            for label, stage, path in logs:
                if not path.is_file():
                    continue
                metrics = pd.read_csv(path)
                _require(metrics.columns, ("step", "train_loss"), f"training log {path}")
                found.append((label, stage, metrics))
        if not found:
            raise DataError(f"no training log (metrics.csv) of the table's models "
                            f"{sorted({r['model'] for r in mine})} of {set_name}", runs_dir)
        curves[set_name] = found
    return curves


def per_group_table(rows: Sequence[Mapping]) -> pd.DataFrame:
    """Mean held-out error of every model per held-out animal, one column per model.

    A set whose held-out frames come from one animal is broken down by video instead (the
    choice is made per set, so all of its models are shown by the same groups). The index is
    (set, held out, frames), frames counting those with a label; models keep the order of
    the rows.
    """
    rows = _rows(rows, ("set", "model", "per_animal", "per_video"))
    labels = set_labels(rows)
    animals: dict[str, set] = {}
    for r, s in zip(rows, labels, strict=True):
        animals.setdefault(s, set()).update(r["per_animal"])
    long = []
    for r, s in zip(rows, labels, strict=True):
        groups = r["per_animal"] if len(animals[s]) > 1 else r["per_video"]
        for g, v in groups.items():
            _require(v, ("n_frames", "mean_px"), f"{r['model']}'s errors for {g!r}")
            long.append({"set": s, "held out": g, "n_frames": v["n_frames"],
                         "labeled": v.get("n_labeled_frames"), "model": r["model"],
                         "mean_px": np.nan if v["mean_px"] is None else v["mean_px"]})
    if not long:
        raise DataError("the tracker table has no per-animal or per-video errors")
    long = pd.DataFrame(long)
    # the frames the errors come from (a frame without any label has none); a group with a
    # row written before n_labeled_frames was recorded counts all of its frames, in every
    # model's row, so that the group stays one line of the table
    counted = long.groupby(["set", "held out"])["labeled"].transform(lambda c: c.notna().all())
    long["frames"] = long["labeled"].where(counted, long["n_frames"]).astype(int)
    twice = long.duplicated(["set", "held out", "model"])
    if twice.any():
        first = long[twice].iloc[0]
        raise DataError(f"the tracker table has {first['model']!r} twice for {first['set']!r}, "
                        f"{first['held out']!r}")
    order = list(dict.fromkeys(long["set"]))
    wide = long.pivot(index=["set", "held out", "frames"], columns="model", values="mean_px")
    # pivot sorts; keep the benchmark's order of sets, then groups by name
    wide = wide.sort_index(key=lambda ix: ix.map(order.index) if ix.name == "set" else ix)
    wide = wide[[m for m in dict.fromkeys(r["model"] for r in rows) if m in wide.columns]]
    wide.columns.name = None  # else the pivot's "model" label shows as a stray header cell
    return wide


def _per_frame(row: Mapping) -> tuple[list[str], list[str], np.ndarray] | None:
    per = row.get("per_frame")
    if not isinstance(per, Mapping) or not all(k in per for k in ("frames", "animals",
                                                                  "errors_px")):
        return None
    return list(per["frames"]), list(per["animals"]), np.array(per["errors_px"], dtype=float)


def margin_interval(default_row: Mapping, other_row: Mapping, *, seed: int = 0
                    ) -> tuple[dict | None, str]:
    """Paired bootstrap interval of the other model's mean error minus the default's
    (:func:`vit_facemap.bootstrap.mean_error_difference`, over held-out animals, or blocks of
    consecutive frames where one animal is held out), or None and why there is none."""
    a, b = _per_frame(default_row), _per_frame(other_row)
    if a is None or b is None:
        return None, "the table was written without per-frame errors"
    if a[0] != b[0] or a[2].shape != b[2].shape:
        return None, "the two models were scored on different frames"
    units, what = resampling_units(a[0], a[1])
    few = too_few_groups(len(set(units.tolist())), what)
    if few:
        return None, few
    found = mean_error_difference(a[2], b[2], units, seed=seed)
    if found is None:
        return None, "a missed (NaN) prediction makes a mean error infinite"
    found["over"] = what
    return found, ""


def _mean_px(row: Mapping) -> float:
    """A row's mean error, NaN where it has none (null: no held-out label to score)."""
    return np.nan if row["mean_px"] is None else float(row["mean_px"])


def _verdict(margin: float, interval: dict | None, why: str,
             no_margin: str = "both mean errors are infinite") -> str:
    # a tie neither leads nor trails; two infinite means (both missed a prediction) have no
    # margin at all (inf - inf), nor has a default without a mean error (``no_margin``)
    lead = (f"leads by {margin:.2f} px" if margin > 0 else
            f"trails by {-margin:.2f} px" if margin < 0 else
            "level with it (margin 0.00 px)" if margin == 0 else
            f"no margin ({no_margin})")
    if interval is None:
        return f"{lead}; interval not available ({why})"
    span = (f"{interval['level']:.0%} interval [{interval['low']:.2f}, "
            f"{interval['high']:.2f}], bootstrap over {interval['over']}")
    if not excludes_zero(interval):
        return f"not distinguishable on this split: margin {margin:.2f} px ({span})"
    return f"{lead} ({span})"


def tracker_findings(rows: Sequence[Mapping], default: str = "hybrid",
                     reference: str = "mean_shape") -> pd.DataFrame:
    """Per set, whether the ``default`` model leads on mean error and where it does not beat
    the ``reference`` (mean shape) keypoint by keypoint: the two checks the tracker must pass.

    ``margin px`` is the next-best model's mean minus the default's (positive: the default
    leads). ``default leads`` says ``yes`` (or ``NO``, it trails) only where the 95% paired
    bootstrap interval of the margin (:func:`margin_interval`) excludes zero, ``not
    distinguishable`` where it does not, and ``no interval`` for a table written without
    per-frame errors or for too few held-out groups to draw one from (fewer than
    :data:`vit_facemap.bootstrap.MIN_GROUPS`); ``verdict`` says it in words, with the interval and what was resampled.
    A set without the default model, or without another model that has a mean error, is left
    out; one without the reference says its keypoints were ``not compared``. A default
    without a mean error (null: no held-out label it was scored on) has no margin.
    """
    found = []
    for set_name, set_rows in _by_set(_rows(rows, ("set", "model", "mean_px"))).items():
        mine = {r["model"]: r for r in set_rows}
        if default not in mine or len(mine) < 2:
            continue
        d = mine[default]
        d_px = _mean_px(d)
        # a mean of null (or NaN) was a TypeError here, and a NaN one sorted anywhere, so it
        # could be named the next best
        others = sorted((px, m) for m, r in mine.items()
                        if m != default and not np.isnan(px := _mean_px(r)))
        if not others:
            continue
        best_px, best = others[0]
        margin = best_px - d_px
        no_margin = "both mean errors are infinite"
        if np.isnan(d_px):
            no_margin = f"{default}'s mean error is not recorded"
            interval, why = None, "no margin to draw it for"
        else:
            interval, why = margin_interval(d, mine[best])
        leads = ("no interval" if interval is None else "not distinguishable"
                 if not excludes_zero(interval) else "yes" if margin > 0 else "NO")
        # without the reference's row nothing was compared: "none" would claim that the
        # default beats it on every keypoint
        worse = "none" if reference in mine else f"not compared (no {reference} row)"
        if reference in mine and reference != default:
            _require(d, ("per_keypoint_mean_px",), f"the {default!r} row of {set_name!r}")
            _require(mine[reference], ("per_keypoint_mean_px",),
                     f"the {reference!r} row of {set_name!r}")
            ref = mine[reference]["per_keypoint_mean_px"]
            # a keypoint without labels in the held-out frames has no error (None) to compare
            miss = [f"{k} ({v:.2f} vs {ref[k]:.2f})"
                    for k, v in d["per_keypoint_mean_px"].items()
                    if v is not None and ref.get(k) is not None and v >= ref[k]]
            worse = ", ".join(miss) or "none"
        found.append({"set": set_name, "default mean px": d_px,
                      "next best": best, "its mean px": best_px,
                      "margin px": margin, "default leads": leads,
                      "verdict": _verdict(margin, interval, why, no_margin),
                      f"keypoints not beating {reference}": worse})
    if not found:
        # a set whose other models have no mean error is left out too: "and another" alone
        # denied the models the table holds
        raise DataError(f"no set of the tracker table has the model {default!r} and another "
                        "model with a mean error (mean_px is null where no held-out label "
                        "was scored)")
    return pd.DataFrame(found).set_index("set")


def shared_misses(rows: Sequence[Mapping], models: Sequence[str], *, n: int = 3
                  ) -> pd.DataFrame:
    """Per set, the ``n`` held-out frames with the label that the closest of ``models``
    misses by the most.

    A label that one tracker misses says something about that tracker; one that every
    tracker misses by far points to a wrong label, or to a view that no training frame
    showed. For each label (held-out frame and keypoint) the smallest error over ``models``
    is taken (``closest px``); each frame is represented by its label with the largest, and
    the ``n`` frames with the largest are listed, largest first, with every model's error of
    that label (``inf``: a missed prediction) and how many of the frame's labels every model
    misses by more than half of it (``labels``, itself always included: a frame whose labels
    slipped one place has several). With one model these are its own largest misses.

    A set that has none of ``models`` is left out; one of ``models`` in a set without
    per-frame errors, or scored on other frames (or keypoints) than the others, is refused.

    Columns: ``set``, ``frame``, ``animal``, ``keypoint``, ``closest px``, ``labels``, one
    per model.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not len(models):
        raise ValueError("no models to compare")
    found = []
    for set_name, set_rows in _by_set(_rows(rows, ("set", "model"))).items():
        mine = {r["model"]: r for r in set_rows}
        asked = [m for m in models if m in mine]
        if not asked:
            continue
        scored = {m: _per_frame(mine[m]) for m in asked}
        for m, per in scored.items():
            if per is None:
                raise DataError(f"{set_name!r}: the {m!r} row has no per-frame errors; run the "
                                "benchmark again")
        first = asked[0]
        _require(mine[first], ("per_keypoint_mean_px",), f"the {first!r} row of {set_name!r}")
        names = list(mine[first]["per_keypoint_mean_px"])
        frames, animals, _ = scored[first]
        for m, (other, _, e) in scored.items():
            if other != frames or e.shape != (len(frames), len(names)):
                raise DataError(f"{set_name!r}: {m!r} was scored on other held-out frames or "
                                f"keypoints than {first!r} ({e.shape[0]} x {e.shape[-1]} errors, "
                                f"{len(frames)} frames x {len(names)} keypoints); run the "
                                "benchmark again")
        errors = np.stack([per[2] for per in scored.values()])  # (models, frames, keypoints)
        # a keypoint without a label in a frame has no error (NaN) in any model's row
        labeled = ~np.isnan(errors).any(0)
        closest = np.where(labeled, errors.min(0), -np.inf)
        worst = closest.argmax(1)
        per_frame = closest[np.arange(len(frames)), worst]
        for f in np.argsort(-per_frame, kind="stable")[:n]:
            k = worst[f]
            if not labeled[f, k]:
                break
            alike = closest[f] > closest[f, k] / 2
            alike[k] = True
            found.append({"set": set_name, "frame": frames[f], "animal": animals[f],
                          "keypoint": names[k], "closest px": float(closest[f, k]),
                          "labels": int(alike.sum()),
                          **{m: float(errors[i, f, k]) for i, m in enumerate(scored)}})
    if not found:
        raise DataError(f"no set of the tracker table has a labeled held-out frame scored by "
                        f"{list(models)}")
    return pd.DataFrame(found)


_SCORES = ("accuracy", "balanced_accuracy", "macro_f1", "wall_s")
_MAP_CHECKS = ("deletion_auc", "deletion_auc_random")


def _groups(entry: Mapping) -> Mapping[str, Mapping]:
    return entry.get("per_group") or {}


def mean_over_animals(entry: Mapping, score: str = "balanced_accuracy") -> float:
    """The mean over held-out animals of each animal's ``score`` (NaN: no per-animal scores).

    Pooled scores weight animals by their frames (1 to 67 on the Schroeder set); this
    weights every animal alike. An animal of one state has as balanced accuracy the share
    of its frames classified correctly.
    """
    values = [g[score] for g in _groups(entry).values() if g.get(score) is not None]
    return float(np.mean(values)) if values else np.nan


def classifier_table(summary: Mapping) -> pd.DataFrame:
    """Accuracy, balanced accuracy, macro-F1 and time of the two state classifiers, with the
    mean over held-out animals of the per-animal balanced accuracy (blank for a summary
    without per-animal scores) and the number of animals."""
    table = []
    for name, label in CLASSIFIER_NAMES.items():
        _require(summary, (name,), "the interpretation summary")
        r = summary[name]
        _require(r, _SCORES, f"the interpretation summary's {name!r} entry")
        table.append({"model": label, "accuracy": r["accuracy"],
                      "balanced accuracy": r["balanced_accuracy"],
                      "balanced accuracy, mean over animals": mean_over_animals(r),
                      "macro-F1": r["macro_f1"],
                      "animals": len(_groups(r)) or len(summary.get("groups", [])) or np.nan,
                      "train + predict (s)": r["wall_s"]})
    return pd.DataFrame(table).set_index("model")


def classifier_per_animal(summary: Mapping) -> pd.DataFrame:
    """Per held-out animal: its frames of each state and each classifier's balanced accuracy
    on them (for an animal of one state, the share of its frames classified correctly).

    The pooled scores of :func:`classifier_table` weight animals by their number of frames;
    this shows each. Animals sorted by name; a summary without per-animal scores is a
    ``DataError``.
    """
    for name in CLASSIFIER_NAMES:
        _require(summary, (name,), "the interpretation summary")
    classes = summary.get("classes") or summary[next(iter(CLASSIFIER_NAMES))].get("labels")
    rows: dict[str, dict[str, Any]] = {}
    for name, label in CLASSIFIER_NAMES.items():
        if not _groups(summary[name]):
            raise DataError(f"the interpretation summary's {name!r} entry has no per-animal "
                            "scores (per_group); run the study again")
        for g, v in _groups(summary[name]).items():
            _require(v, ("n", "balanced_accuracy"), f"{name}'s scores for {g!r}")
            row = rows.setdefault(g, {"frames": v["n"]})
            if classes and "confusion" in v and len(classes) == len(v["confusion"]):
                for c, counts in zip(classes, v["confusion"], strict=True):
                    row.setdefault(c, int(sum(counts)))
            row[label] = v["balanced_accuracy"]
    table = pd.DataFrame.from_dict(rows, orient="index").sort_index()
    table.index.name = "animal"
    return table


def macro_f1_interval(summary: Mapping, *, seed: int = 0) -> tuple[dict | None, str]:
    """Paired bootstrap interval of the ViT's macro-F1 minus the forest's, resampling
    held-out animals (:func:`vit_facemap.bootstrap.macro_f1_difference`, from each animal's
    confusion matrices), or None and why there is none."""
    v, h = _groups(summary["vit"]), _groups(summary["hog-rf"])
    if not v or not h:
        return None, "the summary has no per-animal results"
    if sorted(v) != sorted(h):
        return None, "the two models' held-out animals differ"
    animals = sorted(v)
    if not all("confusion" in v[g] and "confusion" in h[g] for g in animals):
        return None, "the summary has no per-animal confusion matrices"
    what = f"{len(animals)} held-out animal{'s' if len(animals) > 1 else ''}"
    few = too_few_groups(len(animals), what)
    if few:
        return None, few
    found = macro_f1_difference([v[g]["confusion"] for g in animals],
                                [h[g]["confusion"] for g in animals], seed=seed)
    found["over"] = what
    return found, ""


def classifier_findings(summary: Mapping, source: str, *, target: float = 0.85,
                        margin: float = 0.01) -> list[str]:
    """What the interpretation study found, one sentence per line, from its summary.

    ``target`` is the ViT's macro-F1 that the project set itself as a working goal (the
    Methods of the paper state it; it is no external criterion); a map "ranks the cells the model
    relies on" when deleting cells in its order lowers the deletion AUC by more than
    ``margin`` below random orders.
    """
    for name in CLASSIFIER_NAMES:
        _require(summary, (name,), "the interpretation summary")
        _require(summary[name], ("macro_f1", "balanced_accuracy", *_MAP_CHECKS),
                 f"the interpretation summary's {name!r} entry")
    h, v = summary["hog-rf"], summary["vit"]
    lines = [f"Data: {source}."]
    diff = v["macro_f1"] - h["macro_f1"]
    interval, why = macro_f1_interval(summary)
    head = f"Leave-animals-out macro-F1: ViT {v['macro_f1']:.3f}, HOG + RF {h['macro_f1']:.3f}; "
    if interval is None:
        lines.append(head + f"difference {diff:+.3f}, interval not available ({why}): no "
                     "verdict on which is ahead.")
    else:
        span = (f"{interval['level']:.0%} interval [{interval['low']:+.3f}, "
                f"{interval['high']:+.3f}], bootstrap over {interval['over']}")
        if not excludes_zero(interval):
            lines.append(head + f"not distinguishable on these animals: difference {diff:+.3f} "
                         f"({span}).")
        elif diff > 0:
            lines.append(head + f"the ViT is ahead by {diff:.3f} ({span}).")
        else:
            lines.append(head + f"the ViT does NOT beat the HOG + random-forest baseline: "
                         f"behind by {-diff:.3f} ({span}).")
    if _groups(v) and _groups(h):
        n = [g["n"] for g in _groups(v).values() if "n" in g]
        lines.append("Pooled scores weight animals by their frames"
                     + (f" ({min(n)} to {max(n)} per animal)" if n and min(n) < max(n)
                        else f" ({n[0]} each)" if n else "") + "; the mean over "
                     f"animals of the per-animal balanced accuracy is ViT "
                     f"{mean_over_animals(v):.3f}, HOG + RF {mean_over_animals(h):.3f} (pooled: "
                     f"{v['balanced_accuracy']:.3f}, {h['balanced_accuracy']:.3f}).")
    lines.append("The ViT's macro-F1 is "
                 + ("at or above" if v["macro_f1"] >= target else "below")
                 + f" {target}, a working goal this project set itself (Methods), not a standard "
                 "of the field.")
    for name, r in (("ViT", v), ("HOG + RF", h)):
        if r.get("attention_mass_in_region") is not None:
            ratio = r["attention_mass_in_region"] / max(r["region_share_chance"], 1e-9)
            lines.append(f"{name}: {r['attention_mass_in_region']:.2f} of the map inside the eye "
                         f"region vs {r['region_share_chance']:.2f} by chance ({ratio:.1f}x), on "
                         f"{r['images_with_region_in_view']} held-out crops that show the region, "
                         "whole or in part.")
        if r["deletion_auc"] is None or r["deletion_auc_random"] is None:
            lines.append(f"{name}: no deletion curves (no maps were drawn).")
            continue
        ranks = r["deletion_auc"] < r["deletion_auc_random"] - margin
        lines.append(f"{name}: deletion AUC {r['deletion_auc']:.3f} with the map's order vs "
                     f"{r['deletion_auc_random']:.3f} in random order: the map "
                     + ("ranks cells the model relies on above random." if ranks else
                        "is no better than random at finding what the model relies on."))
    loc = summary.get("locator")
    if loc:
        lines.append(f"Eye locator on held-out animals: crop centre within half an eye width of "
                     f"the labeled eye on {loc['share_within_half_eye_width']:.0%} of frames, "
                     f"within one eye width on {loc['share_within_one_eye_width']:.0%} (median "
                     f"error {loc['median_centre_error_eye_widths']:.2f} eye widths). Where it "
                     "misses the eye, both classifiers see fur or background, and the eye region "
                     "is not in the crop: the locator bounds what either classifier can do.")
    return lines


def best_fps(work: Callable[[], Any], n_frames: int, repeats: int = 2) -> float:
    """Frames per second of the fastest of ``repeats`` calls of ``work`` on ``n_frames``.

    The fastest, since other processes on a shared machine only ever slow a run down.
    """
    if n_frames <= 0 or repeats <= 0:
        raise ValueError(f"need n_frames > 0 and repeats > 0, got {n_frames} and {repeats}")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return n_frames / max(min(times), 1e-9)


def _sizes(scales: Sequence[float], flip: bool = False) -> str:
    # a mirrored view doubles the model's work per frame, as a second box size would
    return ", ".join(f"{s:g}" for s in scales) + (" + mirrored" if flip else "")


def _device_of(record: Mapping) -> str:
    """The device a speed benchmark ran its models on (``runinfo.describe``'s record):
    the GPU's name where it has one, "-" for a file written without it."""
    d = record.get("device")
    if not isinstance(d, dict):
        return "-"
    return str(d.get("gpu") or d.get("device") or "-")


def speed_table(decode_fps: float, model_fps: float, end_to_end_fps: float,
                scales: Sequence[float], benchmark: str | Path | None = None, *,
                device: str = "cpu", flip: bool = False) -> pd.DataFrame:
    """Frames/s of decoding, the model alone and the whole tracking pipeline on this clip,
    whose models ran on ``device`` at the box sizes ``scales``, and with the mirrored frame
    where ``flip``.

    Rows of the speed benchmark (``benchmarks/track_speed.py``'s JSON) are added when
    ``benchmark`` names a file that exists, with the device it recorded (it may have run
    on another: a GPU's frames/s beside this page's CPU ones).
    """
    here = _sizes(scales, flip)
    # decoding runs on the CPU whatever the models' device
    rows = [dict(source="this clip", model="-", stage="decode only", device="cpu",
                 box_sizes="-", frames_per_s=decode_fps),
            dict(source="this clip", model="default (this run)", stage="model only",
                 device=device, box_sizes=here, frames_per_s=model_fps),
            dict(source="this clip", model="default (this run)", stage="end to end",
                 device=device, box_sizes=here, frames_per_s=end_to_end_fps)]
    if benchmark is not None and Path(benchmark).is_file():
        try:
            b = json.loads(Path(benchmark).read_text())
        except ValueError as e:
            raise DataError(f"{benchmark}: not valid JSON ({e})") from None
        # a JSON of another kind (null, a list, a number; results not a list of objects)
        # was a TypeError or AttributeError that did not name the file
        if not isinstance(b, dict):
            raise DataError("not a result of benchmarks/track_speed.py (no JSON object)",
                            benchmark)
        _require(b, ("decode_fps", "results"), f"{benchmark}")
        if not isinstance(b["results"], list) or not all(isinstance(r, dict)
                                                         for r in b["results"]):
            raise DataError("'results' is not a list of objects; not a result of "
                            "benchmarks/track_speed.py", benchmark)
        rows.append(dict(source="benchmark", model="-", stage="decode only", device="cpu",
                         box_sizes="-", frames_per_s=b["decode_fps"]))
        device_there = _device_of(b)
        for r in b["results"]:
            _require(r, ("model", "model_fps", "end_to_end_fps"), f"a result in {benchmark}")
            # results written before box sizes were recorded predicted from the box alone,
            # and those before flips were, without them
            s = _sizes(r.get("scales") or [1.0], bool(r.get("flip", False)))
            # --compile times each model twice, eager and compiled: both read as one model
            model = f"{r['model']} (compiled)" if r.get("compiled") else r["model"]
            rows.append(dict(source="benchmark", model=model, stage="model only",
                             device=device_there, box_sizes=s, frames_per_s=r["model_fps"]))
            rows.append(dict(source="benchmark", model=model, stage="end to end",
                             device=device_there, box_sizes=s,
                             frames_per_s=r["end_to_end_fps"]))
    return pd.DataFrame(rows)
