"""``vit-facemap track RUN VIDEO... --out DIR``: keypoints through whole videos."""

from __future__ import annotations

import argparse
import sys

from vit_facemap.commands import (
    CROP_SHIFT_HELP,
    FACING_HELP,
    FLIP_HELP,
    SCALES_HELP,
    crop_shift_arg,
    scales_arg,
)
from vit_facemap.errors import DataError, RunExistsError

# A compile costs up to a minute on 2 CPU cores; where it pays (it did not for the default
# ViT on our CPU, see track_speed.py --compile), it does so only on long videos.
COMPILE_FROM_FRAMES = 5000


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "track", help="track keypoints through videos (DeepLabCut-layout CSV/H5 + measures)",
        description="Track the keypoints of a trained run through one or more videos. "
        "Writes <video>_<scorer>.csv/.h5 in DeepLabCut's prediction layout, per-frame time "
        "stamps, facial measures and a JSON summary under --out.")
    p.add_argument("run", help="folder of a trained run (see `vit-facemap train`)")
    p.add_argument("videos", nargs="+", help="video files (.mp4, .avi, .mkv, .mj2, ...)")
    p.add_argument("--out", required=True, help="folder for the results")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--start", type=int, default=0, help="first frame to track (default 0)")
    p.add_argument("--stop", type=int, default=None, help="frame to stop before (default: end)")
    p.add_argument("--crop", default=None, metavar="x0,y0,x1,y1",
                   help="track only this box (pixels); coordinates are written in the full frame")
    p.add_argument("--resize", action="store_true",
                   help="scale frames (or the crop) to the size the model was trained on")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--scales", type=scales_arg, default=None, help=SCALES_HELP)
    p.add_argument("--crop-shift", type=crop_shift_arg, default=0.0, help=CROP_SHIFT_HELP)
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help=FLIP_HELP)
    p.add_argument("--facing", choices=("video", "frame"), default="video", help=FACING_HELP)
    p.add_argument("--prefetch", type=int, default=4, help="batches decoded ahead (default 4)")
    p.add_argument("--decode-threads", type=int, default=0,
                   help="FFmpeg decoding threads (default 0: one)")
    p.add_argument("--scorer", default="vit-facemap", help="scorer name in the tables and file names")
    p.add_argument("--formats", default="csv,h5", help="comma list of csv, h5 (default both)")
    p.add_argument("--no-measures", action="store_true", help="skip the facial measures")
    p.add_argument("--overlay", action="store_true", help="also write a video with the keypoints drawn")
    p.add_argument("--nwb", action="store_true",
                   help="also write NWB with ndx-pose (needs: pip install 'vit-facemap[nwb]')")
    p.add_argument("--overwrite", action="store_true", help="replace existing results")
    p.add_argument("--resume", action="store_true",
                   help="continue half-done videos from the next frame; skip videos finished "
                        "with the same settings")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="off",
                   help="torch.compile the model (default off: on our idle 2-core CPU it was "
                        "no faster for the default ViT; measure with benchmarks/track_speed.py "
                        "--compile); auto: on when the videos hold at least "
                        f"{COMPILE_FROM_FRAMES} frames to track")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run, on_interrupt="the same command with --resume continues after "
                   "the last frame tracked")


def run(args: argparse.Namespace) -> int:
    from vit_facemap.track import TrackOptions, track_video
    from vit_facemap.video import parse_crop, probe

    try:
        crop = parse_crop(args.crop)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    bad = sorted(set(formats) - {"csv", "h5"})
    if bad or not formats:
        raise DataError(f"--formats takes csv and/or h5, got {args.formats!r}")
    try:
        from vit_facemap.predict import load_predictor
    except ImportError as exc:
        raise DataError(f"cannot load a trained model: {exc}") from exc
    from collections import Counter
    from pathlib import Path

    from vit_facemap.runinfo import check_outputs_apart, check_parents
    from vit_facemap.track import output_paths
    from vit_facemap.train import is_run_file

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise DataError("--out is a file; give a folder for the results", Path(args.out))
    check_parents(args.out)  # else found when writing, after the model is loaded
    # two videos of one name (from two folders) would write to the same result files
    result = [output_paths(v, args.out, args.scorer)["csv"].name for v in args.videos]
    clash = sorted(n for n, k in Counter(result).items() if k > 1)
    if clash:
        same = [v for v, name in zip(args.videos, result, strict=True) if name in clash]
        raise DataError(f"videos {', '.join(map(str, same))} would write the same results "
                        f"({', '.join(clash)}); track them into separate --out folders",
                        Path(args.out))
    # a video named like another's results (its overlay, say), or --out inside the run
    check_outputs_apart({f"the {kind} of {v}": path for v in args.videos
                         for kind, path in output_paths(v, args.out, args.scorer).items()},
                        inputs=[("a video to track", v) for v in args.videos],
                        folders=[("the run folder", args.run, is_run_file)])
    options = TrackOptions(
        start=args.start, stop=args.stop, crop=crop, resize=args.resize,
        batch_size=args.batch_size, prefetch=args.prefetch, decode_threads=args.decode_threads,
        scorer=args.scorer, formats=formats, measures=not args.no_measures,
        overlay=args.overlay, nwb=args.nwb, overwrite=args.overwrite, resume=args.resume,
        facing=args.facing,
        progress=not args.no_progress, extra={"run": str(args.run)})
    predictor = load_predictor(args.run, device=args.device, scales=args.scales,
                               crop_shift=args.crop_shift, flip=args.flip)
    if args.compile != "off":
        n = 0
        for video in args.videos:
            try:
                n += (args.stop or probe(video).n_frames or 0) - args.start
            except DataError:
                pass  # the video's own error comes from track_video below
        if args.compile == "on" or n >= COMPILE_FROM_FRAMES:
            if predictor.compile(batch_size=args.batch_size):
                print(f"compiled the model in {predictor.compile_s:.0f} s")
            else:
                print(f"could not compile the model ({predictor.compile_error}); eager mode",
                      file=sys.stderr)
    failed = 0
    for video in args.videos:
        try:
            summary = track_video(predictor, video, args.out, options)
        except (DataError, RunExistsError) as exc:  # a decode error too
            # one bad video (corrupt, or its results already there) does not stop the rest
            print(f"vit-facemap track: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        if summary.get("skipped"):
            print(f"{video}: {summary['skipped']}, skipped")
            continue
        fps = summary.get("fps")
        print(f"{video}: {summary['frames_tracked']} frames -> {summary['outputs']['csv' if 'csv' in formats else 'h5']}"
              + (f" ({fps:.1f} frames/s)" if fps else ""))
    return 2 if failed else 0
