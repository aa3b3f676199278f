"""``vit-facemap train``: train a keypoint tracker on a labeled set (DeepLabCut layout)."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

from vit_facemap.commands import seed_arg
from vit_facemap.config import PROFILES, check_seed
from vit_facemap.errors import DataError

if TYPE_CHECKING:
    from vit_facemap.dlc import LabeledFrames
    from vit_facemap.train import TrainConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a keypoint tracker",
        description="Train a keypoint model on a labeled set. Without --val-groups every frame "
                    "trains (the recipe's fixed schedule decides when to stop). --resume "
                    "continues a run with its own settings, seed and split of the frames into "
                    "training and validation (saved in the run's split.json when it started): "
                    "--seed and --val-groups may then be left out, and are refused if they "
                    "would make another split; so may --profile and --config, refused if they "
                    "give other settings. A run an earlier version started has no "
                    "split.json: give it the --val-groups and --group-by of its first run.",
    )
    p.add_argument("--data", required=True, help="labeled set folder or its CollectedData file")
    p.add_argument("--out", required=True, help="run folder to create")
    p.add_argument("--config", help="JSON file of settings overriding the profile's "
                                    "(e.g. {\"steps\": 2000, \"model\": {\"depth\": 6}})")
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help="run size (default: default); with --resume, the run's own")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=seed_arg, default=None,
                   help="random seed (default: the profile's); with --resume, the run's own")
    p.add_argument("--val-groups", default=None,
                   help="hold out groups for validation: a number, a fraction, or comma-separated "
                        "video names")
    p.add_argument("--group-by", choices=("video", "animal"), default="video")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run on the frames it trained and validated on "
                        "(its split.json; a run without one needs its first --val-groups), "
                        "with its saved settings and seed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    # training state is saved every epoch: a Ctrl-C loses at most the epoch under way
    p.set_defaults(func=run, on_interrupt="the same command with --resume continues the run "
                   "from its last saved epoch")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def merge_config(config: TrainConfig, over: dict) -> TrainConfig:
    """``config`` (a profile's recipe) with a config file's settings ``over`` over it; a
    model section that moves to another family drops the recipe's stem with it
    (``models.with_settings``)."""
    from dataclasses import asdict

    from vit_facemap.models import with_settings
    from vit_facemap.train import TrainConfig

    merged = _merge(asdict(config), over)
    if isinstance(over.get("model"), dict):
        merged["model"] = with_settings(asdict(config.model), over["model"])
    return TrainConfig.from_dict(merged)


def run(args: argparse.Namespace) -> int:
    from vit_facemap.runinfo import write_json
    from vit_facemap.train import fit, is_finished, profile_config, stage_dirs
    from vit_facemap.validate import load_set

    config = profile_config(args.profile or "default")
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise DataError("config file not found", path)
        try:
            # utf-8-sig: a BOM, as some Windows editors write, is no JSON error
            over = json.loads(path.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError as exc:  # saved as Latin-1, say: a traceback before
            raise DataError(f"bad training config: not UTF-8 text (byte {exc.start}); save it "
                            "as UTF-8", path) from None
        except json.JSONDecodeError as exc:
            raise DataError(f"bad training config: {exc}", path) from exc
        if not isinstance(over, dict):  # a list or a number holds no settings to merge
            raise DataError("bad training config: give a JSON object of settings "
                            f"({{\"steps\": 2000, ...}}), not a {type(over).__name__}", path)
        try:
            config = merge_config(config, over)
        except (TypeError, ValueError) as exc:
            raise DataError(f"bad training config: {exc}", path) from exc
    if args.seed is not None:
        config.seed = args.seed
    elif not args.resume:
        try:  # before the split, which draws with it (numpy's refusal names no setting)
            check_seed(config.seed, "training seed")
        except ValueError as exc:
            raise DataError(f"bad training config: {exc}", args.config) from None
    frames = load_set(args.data, decode=False)
    out = Path(args.out)
    if args.resume and not out.is_dir():
        raise DataError("nothing to resume: no such run folder", out)
    saved = _resumed_split(args, frames) if args.resume else None
    train, val = saved if saved is not None else _split(args, frames, config.seed)
    profile = _resumed_profile(args, config) if args.resume else args.profile or "default"
    made = not out.exists()
    # steps only grow: the same count after --resume means nothing was left to train
    done_before = _total_steps(out) if args.resume and is_finished(out) else None
    records = ({f: json.loads(f.read_text())
                for f in (d / "runinfo.json" for d in (out, *stage_dirs(out)))}
               if done_before is not None else {})
    try:
        summary = fit(config, train, out, val, device=args.device, overwrite=args.overwrite,
                      resume=args.resume, progress=not args.quiet,
                      extra_info={"profile": profile, "data": str(args.data)})
    except BaseException:
        # refused before anything was saved (--device cuda without a GPU, say): no empty
        # run folder left behind
        if made and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    if done_before is not None and summary["total_steps"] == done_before:
        # it said "trained N steps in 0 s", as if it had trained again, and runinfo.json
        # gave the time of this call as the run's
        # (atomically: a write cut short left half of the record that marks a run finished)
        for f, record in records.items():
            write_json(record, f)
        print(f"nothing left to train: the run had finished its {done_before} steps (raise "
              f"\"steps\", and \"max_minutes\" where it has one, in its config.json to train "
              f"it further) -> {args.out}")
        return 0
    # summary["steps"] counts the first stage; each second stage reports its own
    stages = {name: s["steps"] for name, s in (summary.get("refine") or {}).items()}
    msg = f"trained {summary['total_steps']} steps"
    if stages:
        msg += (f" ({summary['steps']} first stage, second stage "
                + ", ".join(f"{name} {n}" for name, n in stages.items()) + ")")
    msg += f" in {summary['train_s']:.0f} s -> {args.out}"
    if summary.get("best_val_mean_px") is not None:
        # the first stage's number, on one box size: the finished model (its second stages,
        # the box sizes averaged) scores otherwise, and read as its error it misled
        msg += (f" ({'first stage: ' if stages else ''}best validation mean error "
                f"{summary['best_val_mean_px']:.2f} px; 'vit-facemap evaluate' scores the "
                "finished model)")
    print(msg)
    return 0


def _split(args: argparse.Namespace, frames: LabeledFrames, seed: int
           ) -> tuple[LabeledFrames, LabeledFrames | None]:
    """Training and validation frames as --val-groups and --group-by ask, drawn with ``seed``."""
    import math

    import numpy as np

    from vit_facemap.splits import group_split, groups_for

    if not args.val_groups:
        return frames, None
    # animals as everywhere else: animals.csv beside the labels, else the session names
    groups = groups_for(frames, args.group_by)
    spec = args.val_groups
    try:
        n: float | None = float(spec)
    except ValueError:
        n = None  # not a number: group names
    if n is not None:
        # a count of groups or a share of them: 1.5 was taken as 1 group, inf was an
        # OverflowError traceback
        if not math.isfinite(n) or not (0 < n < 1 or (n >= 1 and n.is_integer())):
            raise DataError(f"--val-groups {spec}: give a whole number of groups, a fraction "
                            "between 0 and 1, or group names", args.data)
        n_groups = len(set(groups.tolist()))
        if n >= n_groups >= 2:  # (one group: group_split says it needs two)
            # scikit-learn's words ("test_size=2 should be ... smaller than the number of
            # samples 2") did not say that its samples are the videos or animals
            raise DataError(f"--val-groups {spec}: the set has {n_groups} {args.group_by}"
                            f"{'s' if n_groups != 1 else ''} ({', '.join(sorted(set(groups.tolist())))}); "
                            "hold out fewer, to leave some to train on", args.data)
        try:
            _, val_rows = group_split(groups, int(n) if n >= 1 else n, seed)
        except ValueError as exc:
            raise DataError(f"--val-groups {spec} (by {args.group_by}): {exc}",
                            args.data) from None
        mask = np.zeros(len(frames), bool)
        mask[val_rows] = True
    else:
        names = [s.strip() for s in spec.split(",") if s.strip()]
        unknown = sorted(set(names) - set(groups.tolist()))
        if unknown:
            raise DataError(f"--val-groups names unknown groups {unknown}; the set's "
                            f"{args.group_by}s are {sorted(set(groups.tolist()))}",
                            args.data) from None
        mask = np.isin(groups, names)
    return frames.subset(~mask), frames.subset(mask)


def _total_steps(out: Path) -> int | None:
    """The steps a finished run trained, every stage's (its runinfo.json), or None."""
    try:
        summary = json.loads((out / "runinfo.json").read_text())["summary"]
        # written before total_steps was: the first stage's steps and its second stages'
        return int(summary.get("total_steps", summary["steps"] + sum(
            s["steps"] for s in (summary.get("refine") or {}).values())))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _resumed_profile(args: argparse.Namespace, config: TrainConfig) -> str | None:
    """The profile a resumed run records in runinfo.json.

    The run continues with its own settings (its config.json): a --profile or --config
    that gives others is refused, not silently ignored; one that gives the same is the
    profile. Without either, the profile the run started with (its config.json; for a run
    started before that was recorded, its runinfo.json; None if neither names one), not
    the command line's default.
    """
    from dataclasses import asdict

    from vit_facemap.runinfo import jsonable
    from vit_facemap.train import CONFIG_FILE, TrainConfig

    out = Path(args.out)
    if args.profile is None and not args.config:
        for name in (CONFIG_FILE, "runinfo.json"):
            try:
                named = json.loads((out / name).read_text()).get("profile")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(named, str):
                return named
        return None
    try:
        own = TrainConfig.from_dict(json.loads((out / CONFIG_FILE).read_text())["train"])
    except (OSError, ValueError, KeyError, TypeError):
        return args.profile or "default"  # no run to read: fit says what is wrong
    given = asdict(config)
    if config.augment.hflip == "auto":
        # a run decides "auto" when it starts and saves the number (hflip_auto says why); a
        # run from before "auto" saved the number it was given, and the pairs do not matter
        # to a run that does not flip
        given["augment"]["hflip"] = own.augment.hflip
        if config.augment.flip_pairs == "auto" and own.augment.hflip == 0:
            given["augment"]["flip_pairs"] = own.augment.flip_pairs
    # the seed is _resumed_split's to check (--seed left out: the run's own)
    differ = _differences(jsonable({**given, "seed": None}),
                          jsonable({**asdict(own), "seed": None}))
    if differ:
        raise DataError(f"--profile and --config give settings other than the run's "
                        f"({'; '.join(differ[:5])}): --resume continues the run with its own "
                        f"(its {CONFIG_FILE}); leave --profile and --config out", out)
    return args.profile or "default"


def _differences(given: dict, own: dict, prefix: str = "") -> list[str]:
    """The settings (dotted names) whose values differ, as ``steps 50 (the run's: 8)``."""
    out = []
    for k in sorted(set(given) | set(own)):
        a, b = given.get(k), own.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} {a!r} (the run's: {b!r})")
    return out


def _resumed_split(args: argparse.Namespace, frames: LabeledFrames
                   ) -> tuple[LabeledFrames, LabeledFrames | None] | None:
    """The frames the run to resume started with, from its split.json.

    The run resumes with its own seed and split whatever this command line says: a --seed
    or --val-groups that would split otherwise is refused, not silently ignored. A run
    without split.json (interrupted under a version that wrote it at the end) is split by
    --val-groups again, with the run's seed; if it validated, --val-groups must be given,
    else it would train on its validation frames. None: no run to read (fit says what is
    wrong).
    """
    from vit_facemap.train import CONFIG_FILE, METRICS_FILE, SPLIT_FILE, _read_metrics, read_split

    out = Path(args.out)
    try:
        seed = int(json.loads((out / CONFIG_FILE).read_text())["train"]["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if args.seed is not None and args.seed != seed:
        raise DataError(f"--seed {args.seed} is not the seed of the run to resume ({seed}); "
                        "leave --seed out to continue it", out)
    names = read_split(out)
    if names is None:
        try:
            validated = any(r.get("val_mean_px") is not None
                            for r in _read_metrics(out / METRICS_FILE))
        except (OSError, ValueError, csv.Error):
            validated = False  # unreadable rows: fit's own checks speak for the run
        if validated and not args.val_groups:
            raise DataError(f"the run has no {SPLIT_FILE} (started by an earlier version) and "
                            "validated on held-out frames: give the same --val-groups (and "
                            "--group-by) as its first run, or it would train on them", out)
        return _split(args, frames, seed)
    if args.val_groups:
        train, val = _split(args, frames, seed)
        if [train.index, [] if val is None else val.index] != [names["train"], names["val"]]:
            raise DataError(f"--val-groups {args.val_groups} (by {args.group_by}) does not give "
                            f"the split the run started with (its {SPLIT_FILE}); leave "
                            "--val-groups out to continue with the run's own split", out)
    row = {name: i for i, name in enumerate(frames.index)}
    gone = [name for name in names["train"] + names["val"] if name not in row]
    if gone:
        raise DataError(f"{len(gone)} frame(s) the run trained or validated on are not in the "
                        f"labeled set (first: {gone[0]}); resume with the set it started on",
                        args.data)
    train = frames.subset([row[name] for name in names["train"]])
    val = frames.subset([row[name] for name in names["val"]]) if names["val"] else None
    return train, val
