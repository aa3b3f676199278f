"""``vit-facemap data ...``: look at, generate and fetch labeled sets.

- ``data inspect DIR [--json]``: frames, videos, animals, keypoints, missing labels, image
  sizes, per-keypoint spread and label floors (how far the labels scatter where the frames
  did not change), and each video's face size, turn and side (warning of those the default
  augmentation does not bridge); every problem found is listed, and the exit status is 2
  when there is one.
- ``data synthetic OUT``: write a generated labeled set (or a state-classification set).
- ``data fetch NAME --dest DIR``: download a public set and convert it to this layout.
"""

from __future__ import annotations

import argparse
import json
import sys

from vit_facemap.commands import seed_arg
from vit_facemap.errors import DataError


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"size must read WIDTHxHEIGHT, e.g. 160x120, got {text!r}") from exc
    return w, h


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="inspect, generate or fetch labeled sets",
                              description=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    q = sub.add_parser("inspect", help="summarize and check a labeled set (DeepLabCut layout)")
    q.add_argument("path", help="folder with CollectedData*.csv/.h5 and labeled-data/, or the file")
    q.add_argument("--json", action="store_true", help="print the summary as JSON")
    q.add_argument("--no-images", action="store_true", help="check the labels table only")
    q.add_argument("--headers-only", action="store_true",
                   help="read image sizes from headers without decoding the pixels (faster; "
                        "no label floors)")
    q.add_argument("--no-floors", action="store_true",
                   help="skip the label floors, which compare every pair of frames of a video "
                        "(slow on videos of thousands of labeled frames)")
    q.set_defaults(func=run_inspect)

    g = sub.add_parser("synthetic", help="write generated frames with known keypoints or states")
    g.add_argument("out", help="folder to write (a generated set there is kept unless "
                             "--overwrite; one holding other frames or labels is refused)")
    g.add_argument("--frames", type=int, default=64)
    g.add_argument("--videos", type=int, default=2)
    g.add_argument("--seed", type=seed_arg, default=0)
    g.add_argument("--size", type=_size, default=(160, 120), help="WIDTHxHEIGHT (default 160x120)")
    g.add_argument("--layout", choices=["g7c1", "schroeder"], default="g7c1")
    g.add_argument("--states", choices=["pupil", "eye"], default=None,
                   help="write OUT/<class>/*.png plus groups.csv and regions.csv instead")
    g.add_argument("--color", action="store_true",
                   help="RGB frames instead of grayscale (keypoint sets only)")
    g.add_argument("--overwrite", action="store_true")
    g.set_defaults(func=run_synthetic)

    f = sub.add_parser("fetch", help="download a public labeled set and convert it")
    f.add_argument("name", help="a set of the registry (see --list)", nargs="?")
    f.add_argument("--dest", help="folder to write the converted set into")
    f.add_argument("--cache", default=None, help="download cache (default: pooch's user cache)")
    f.add_argument("--list", action="store_true", help="list the registry and exit")
    f.add_argument("--overwrite", action="store_true",
                   help="replace a set fetched before (one holding SOURCE.json) once the new "
                        "one is complete; files you added to it (animals.csv, ...) are kept")
    f.set_defaults(func=run_fetch)


def run_inspect(args: argparse.Namespace) -> int:
    from vit_facemap.inspect import format_summary, inspect_set
    from vit_facemap.runinfo import jsonable

    summary = inspect_set(args.path, check_images=not args.no_images, decode=not args.headers_only,
                          floors=not args.no_floors)
    if args.json:
        print(json.dumps(jsonable(summary.to_dict(), nan_as_null=True), indent=2,
                         allow_nan=False))
    else:
        print(format_summary(summary))
    if summary.errors:
        n = len(summary.errors)
        print(f"vit-facemap data inspect: {n} problem{'s' if n > 1 else ''} found; first: "
              f"{summary.errors[0]}", file=sys.stderr)
        return 2
    return 0


def run_synthetic(args: argparse.Namespace) -> int:
    from vit_facemap.synthetic import write_state_set, write_synthetic_set

    if args.frames < 1 or args.videos < 1:
        raise DataError("--frames and --videos must be at least 1")
    if args.states and args.color:
        raise DataError("--color applies to keypoint sets only: state sets (--states) are "
                        "written in grayscale; leave out --color")
    try:
        if args.states:
            out = write_state_set(args.out, n_frames=args.frames, task=args.states,
                                  n_videos=args.videos, seed=args.seed, size=args.size,
                                  layout=args.layout, overwrite=args.overwrite)
        else:
            out = write_synthetic_set(args.out, n_frames=args.frames, n_videos=args.videos,
                                      seed=args.seed, size=args.size, layout=args.layout,
                                      color=args.color, overwrite=args.overwrite)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    print(f"wrote {args.frames} generated frames to {out}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from vit_facemap.fetch import REGISTRY, fetch_set

    if args.list or not args.name:
        for name, entry in REGISTRY.items():
            print(f"{name}: {entry.description}\n  {entry.url}\n  sha256: {entry.sha256 or 'not pinned'}")
        return 0
    if not args.dest:
        raise DataError("--dest is required: the folder to write the converted set into")
    out = fetch_set(args.name, args.dest, cache=args.cache, overwrite=args.overwrite)
    print(f"{args.name}: converted set written to {out}")
    return 0
