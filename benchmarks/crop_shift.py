"""What the test-time views (the crop stages' ``crop_shift``, mirrored inputs: ``flip``)
and reading each video's frames on its side (``facing``) buy and cost on trained runs.

Each ``--run RUN DATA`` pair names a trained run (a ``vit-facemap train`` folder with a
validation split, or ``OUT/runs/<set>/<model>`` of ``benchmarks/tracker.py --monitor``, as
the book's runs are) and the labeled set it was trained from. The run's held-out frames
(``split.json``'s ``val``) are predicted with one crop per second stage (shift 0) and with
each ``--shifts`` value (:func:`vit_facemap.refine.crop_offsets`: the crop and four copies
moved by that share of its side); with ``--flip``, each shift again with every stage's
heatmaps averaged with those of the mirrored input (:attr:`KeypointPredictor.flip`; a run
trained without flips is measured without); with ``--facing both``, each of those with the
frames predicted alone (``frame``) and with those facing against their video predicted
again on its side (``video``, the default; :func:`vit_facemap.evaluate.predict_frames`,
rows say how many in ``facing_redone``). Each stage looks through ``--scales`` box sizes
(default: :data:`vit_facemap.config.TEST_SCALES`, with flips and without). For each run and
setting the script prints, and writes to ``--out`` with the settings, device, versions and
wall time: mean and median error (frame pixels), per keypoint, per held-out animal and per
frame (for a paired comparison), and the frames/s of ``predict`` on the first 64 held-out
frames in memory (best of two passes, after a warm-up). Nothing is trained.

    python benchmarks/crop_shift.py --run RUN_G7C1 ../shared/data/g7c1 \\
        --run RUN_SCHROEDER ../shared/data/schroeder --out _build/results/crop_shift.json
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vit_facemap.commands import crop_shift_arg, scales_arg
from vit_facemap.config import TEST_SCALES
from vit_facemap.dlc import LabeledFrames
from vit_facemap.errors import DataError, run_reporting
from vit_facemap.evaluate import predict_frames
from vit_facemap.images import load_image
from vit_facemap.metrics import group_metrics, keypoint_metrics, per_frame_record
from vit_facemap.predict import KeypointPredictor, load_predictor
from vit_facemap.reports import best_fps
from vit_facemap.runinfo import check_output, describe, resolve_device, write_json
from vit_facemap.splits import groups_for
from vit_facemap.train import SPLIT_FILE, read_split
from vit_facemap.validate import load_set


def held_out(run: Path, data: Path, bodyparts: list[str]) -> LabeledFrames:
    """The labeled frames of ``data`` that ``run`` held out (its split's ``val``), with the
    run's keypoints."""
    split = read_split(run)
    if split is None:
        raise DataError(f"no {SPLIT_FILE}: not a trained run folder, so its held-out frames "
                        "are unknown", run)
    if not split["val"]:
        raise DataError(f"the run held no frames out ({SPLIT_FILE}: val is empty); train "
                        "with a validation split (benchmarks/tracker.py --monitor)", run)
    val = set(split["val"])
    frames = load_set(data, expected_bodyparts=bodyparts, expected_source=run, decode=False)
    rows = [i for i, name in enumerate(frames.index) if name in val]
    if len(rows) < len(val):
        raise DataError(f"{len(val) - len(rows)} of the run's {len(val)} held-out frames are "
                        "not in this set (another set than the run was trained from?)", data)
    return frames.subset(rows)


def measure(predictor: KeypointPredictor, run: Path, data: Path, test: LabeledFrames,
            shifts: list[float], flips: list[bool] | None = None,
            facings: tuple[str, ...] = ("video",)) -> list[dict]:
    """One row per shift, flip and facing setting for one run and its held-out frames
    ``test``."""
    images = np.stack([load_image(p) for p in test.image_paths[:64]])
    animals = groups_for(test, "animal")
    rows = []
    for flip, shift, facing in itertools.product(flips or [False], shifts, facings):
        predictor.flip = flip
        predictor.crop_shift = shift
        pred, _, _, redone = predict_frames(predictor, test, facing=facing)
        m = keypoint_metrics(pred, test.keypoints, test.bodyparts)
        predictor.predict(images[:32])  # warm-up: allocations outside the timing
        rows.append({
            "run": str(run), "data": str(data), "crop_shift": shift, "flip": flip,
            "facing": facing, "facing_redone": redone,
            "scales": list(predictor.scales), "second_stages": len(predictor.refiners),
            "n_test": len(test), "mean_px": m["mean_px"], "median_px": m["median_px"],
            "per_keypoint_mean_px": {k: v["mean_px"] for k, v in m["per_keypoint"].items()},
            "per_animal": group_metrics(pred, test.keypoints, test.bodyparts, animals),
            "per_frame": per_frame_record(pred, test.keypoints, test.index, animals.tolist()),
            "predict_fps": best_fps(lambda: predictor.predict(images), len(images)),
        })
        r = rows[-1]
        print(f"{run} shift {shift:g}{', flipped' if flip else ''}, facing {facing} "
              f"({redone} redone): mean {r['mean_px']:.3f} px, median "
              f"{r['median_px']:.3f} px, {r['predict_fps']:.1f} frames/s", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    return run_reporting("crop_shift.py", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", nargs=2, action="append", required=True, metavar=("RUN", "DATA"),
                   help="a trained run folder and the labeled set it was trained from")
    p.add_argument("--shifts", type=lambda t: [crop_shift_arg(s) for s in t.split(",")],
                   default=[0.05, 0.1], help="shares of the crop side, comma-separated "
                   "(default 0.05,0.1); 0, one crop, is always measured first")
    p.add_argument("--flip", action="store_true", help="measure each shift again with the "
                   "mirrored inputs' heatmaps averaged in, on runs trained with flips")
    p.add_argument("--scales", type=scales_arg, default=None, help="crop-box sizes each stage "
                   "sees a frame at, averaged, with flips and without (comma list of factors; "
                   f"default {','.join(f'{s:g}' for s in TEST_SCALES)})")
    p.add_argument("--facing", choices=("video", "frame", "both"), default="video",
                   help="video (default): frames facing against their video predicted again on "
                   "its side; frame: each frame alone; both: each setting both ways")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("_build/results/crop_shift.json"))
    p.add_argument("--overwrite", action="store_true", help="replace an earlier --out")
    args = p.parse_args(argv)
    check_output(args.out, args.overwrite)
    args.device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    shifts = sorted({0.0, *args.shifts})
    start = time.perf_counter()
    # every run and its held-out frames first: a folder that is no run stops the script
    # before the others were measured for nothing
    runs = []
    for run, data in args.run:
        # a run trained without flips is measured without (load_predictor says why)
        # at the same box sizes with flips and without, so that a row differs in one thing
        predictor = load_predictor(run, args.device, scales=args.scales or TEST_SCALES,
                                   flip=args.flip)
        runs.append((predictor, Path(run), Path(data),
                     held_out(Path(run), Path(data), predictor.bodyparts)))
    rows = []
    with torch.inference_mode():
        for predictor, run, data, test in runs:
            rows += measure(predictor, run, data, test, shifts,
                            [False, True] if predictor.flip else [False],
                            ("frame", "video") if args.facing == "both" else (args.facing,))
    record = describe(vars(args), args.device, rows=rows, wall_s=time.perf_counter() - start)
    write_json(record, args.out, overwrite=args.overwrite)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
