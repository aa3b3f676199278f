"""``vit-facemap train``: train a keypoint tracker on a labeled set (DeepLabCut layout)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vit_facemap.config import PROFILES
from vit_facemap.errors import DataError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a keypoint tracker",
        description="Train a keypoint model on a labeled set. Without --val-groups every frame "
                    "trains (the recipe's fixed schedule decides when to stop).",
    )
    p.add_argument("--data", required=True, help="labeled set folder or its CollectedData file")
    p.add_argument("--out", required=True, help="run folder to create")
    p.add_argument("--config", help="JSON file of settings overriding the profile's "
                                    "(e.g. {\"steps\": 2000, \"model\": {\"depth\": 6}})")
    p.add_argument("--profile", choices=PROFILES, default="default")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--val-groups", default=None,
                   help="hold out groups for validation: a number, a fraction, or comma-separated "
                        "video names")
    p.add_argument("--group-by", choices=("video", "animal"), default="video")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    import numpy as np

    from vit_facemap.splits import group_split, groups_for
    from vit_facemap.train import TrainConfig, fit, profile_config
    from vit_facemap.validate import load_set

    config = profile_config(args.profile)
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise DataError("config file not found", path)
        try:
            over = json.loads(path.read_text())
            config = TrainConfig.from_dict(_merge(asdict(config), over))
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise DataError(f"bad training config: {exc}", path) from exc
    if args.seed is not None:
        config.seed = args.seed
    frames = load_set(args.data, decode=False)
    train, val = frames, None
    if args.val_groups:
        # animals as everywhere else: animals.csv beside the labels, else the session names
        groups = groups_for(frames, args.group_by)
        spec = args.val_groups
        try:
            n: float | None = float(spec)
        except ValueError:
            n = None  # not a number: group names
        if n is not None:
            try:
                _, val_rows = group_split(groups, int(n) if n >= 1 else n, config.seed)
            except ValueError as exc:
                raise DataError(f"--val-groups {spec} (by {args.group_by}): {exc}",
                                args.data) from None
            mask = np.zeros(len(frames), bool)
            mask[val_rows] = True
        else:
            names = [s.strip() for s in spec.split(",") if s.strip()]
            unknown = sorted(set(names) - set(groups.tolist()))
            if unknown:
                raise DataError(f"--val-groups names unknown groups {unknown}", args.data) from None
            mask = np.isin(groups, names)
        train, val = frames.subset(~mask), frames.subset(mask)
    summary = fit(config, train, args.out, val, device=args.device, overwrite=args.overwrite,
                  resume=args.resume, progress=not args.quiet,
                  extra_info={"profile": args.profile, "data": str(args.data)})
    msg = f"trained {summary['steps']} steps in {summary['train_s']:.0f} s -> {args.out}"
    if summary.get("best_val_mean_px") is not None:
        msg += f" (best validation mean error {summary['best_val_mean_px']:.2f} px)"
    print(msg)
    return 0

