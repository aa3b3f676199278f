"""``vit-facemap evaluate``: errors of a trained run on a labeled set it may never have seen."""

from __future__ import annotations

import argparse

from vit_facemap.commands import (
    CROP_SHIFT_HELP,
    FACING_HELP,
    FLIP_HELP,
    SCALES_HELP,
    crop_shift_arg,
    scales_arg,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="evaluate a trained tracker on a labeled set",
        description="Predict every frame of a labeled set (DeepLabCut layout, the run's keypoint "
                    "names) and write errors in frame pixels as JSON, plus a DeepLabCut table of "
                    "the predictions with likelihoods. Its n_frames counts every frame, those "
                    "without any label too; the errors come from the n_keypoints_labeled "
                    "keypoints of its n_labeled_frames frames.",
    )
    p.add_argument("run_dir", help="run folder written by `vit-facemap train`")
    p.add_argument("--data", required=True, help="labeled set folder or its CollectedData file")
    p.add_argument("--json", required=True, help="metrics file to write")
    p.add_argument("--predictions", default=None,
                   help="per-frame predictions (.csv or .h5; default: next to --json)")
    p.add_argument("--device", default="auto")
    p.add_argument("--scales", type=scales_arg, default=None, help=SCALES_HELP)
    p.add_argument("--crop-shift", type=crop_shift_arg, default=0.0, help=CROP_SHIFT_HELP)
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help=FLIP_HELP)
    p.add_argument("--facing", choices=("video", "frame"), default="video", help=FACING_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vit_facemap.evaluate import evaluate_run

    out = Path(args.json)
    m = evaluate_run(args.run_dir, args.data, out, args.predictions, device=args.device,
                     overwrite=args.overwrite, progress=not args.quiet, scales=args.scales,
                     crop_shift=args.crop_shift, flip=args.flip,
                     facing=args.facing)
    pck = "none (no reference length)" if m["pck"] is None else f"{m['pck']:.3f}"
    labeled = "" if m["n_labeled_frames"] == m["n_frames"] else f" ({m['n_labeled_frames']} labeled)"
    print(f"{m['n_frames']} frames{labeled}: mean {m['mean_px']:.2f} px, median {m['median_px']:.2f} px, "
          f"PCK@{m['pck_threshold']} {pck} -> {out}")
    return 0
