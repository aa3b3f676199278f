"""What the second stages' test-time shift (``crop_shift``) buys and costs on trained runs.

Each ``--run RUN DATA`` pair names a trained run (a ``vit-facemap train`` folder, or
``OUT/runs/<set>/<model>`` of ``benchmarks/tracker.py``) and the labeled set it was trained
from. The run's held-out frames (``split.json``'s ``val``) are predicted with one crop per
second stage (shift 0) and with each ``--shifts`` value
(:func:`vit_facemap.refine.crop_offsets`: the crop and four copies moved by that share of its
side). The script prints, and writes to ``--out`` with the settings, device, versions and
wall time, for each run and shift: mean and median error (frame pixels), per keypoint and
per held-out animal, and the frames/s of ``predict`` on the first 64 held-out frames in
memory. Nothing is trained; a run takes a minute or two on 2 CPU cores.

    python benchmarks/crop_shift.py --run RUN_G7C1 ../shared/data/g7c1 \\
        --run RUN_SCHROEDER ../shared/data/schroeder --out _build/results/crop_shift.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tracker import fps_of, per_keypoint_means, score  # noqa: E402

from vit_facemap.commands import crop_shift_arg  # noqa: E402
from vit_facemap.dlc import LabeledFrames  # noqa: E402
from vit_facemap.errors import DataError, run_reporting  # noqa: E402
from vit_facemap.images import load_image  # noqa: E402
from vit_facemap.metrics import group_metrics  # noqa: E402
from vit_facemap.predict import load_predictor  # noqa: E402
from vit_facemap.runinfo import check_output, describe, write_json  # noqa: E402
from vit_facemap.splits import groups_for  # noqa: E402
from vit_facemap.train import SPLIT_FILE  # noqa: E402
from vit_facemap.validate import load_set  # noqa: E402


def held_out(run: Path, data: Path) -> LabeledFrames:
    """The labeled frames of ``data`` that ``run`` held out (its split's ``val``)."""
    split = run / SPLIT_FILE
    if not split.is_file():
        raise DataError(f"no {SPLIT_FILE}: not a trained run folder, so its held-out frames "
                        "are unknown", run)
    val = set(json.loads(split.read_text()).get("val") or [])
    frames = load_set(data, decode=False)
    rows = [i for i, name in enumerate(frames.index) if name in val]
    if not rows:
        raise DataError(f"none of the run's {len(val)} held-out frames is in this set (another "
                        "set than the run was trained from?)", data)
    return frames.subset(rows)


def measure(run: Path, data: Path, test: LabeledFrames, shifts: list[float], device: str
            ) -> list[dict]:
    """One row per shift (0 first) for one run and its held-out frames ``test``."""
    images = np.stack([load_image(p) for p in test.image_paths[:64]])
    animals = groups_for(test, "animal")
    rows = []
    for shift in [0.0, *shifts]:
        predictor = load_predictor(run, device, crop_shift=shift)
        m, (pred, _) = score(predictor, test)
        rows.append({"run": str(run), "data": str(data), "crop_shift": shift,
                     "second_stages": len(predictor.refiners), "n_test": len(test),
                     "mean_px": m["mean_px"], "median_px": m["median_px"],
                     "per_keypoint_mean_px": per_keypoint_means(m),
                     "per_animal": group_metrics(pred, test.keypoints, test.bodyparts, animals),
                     "predict_fps": fps_of(predictor, images)})
        r = rows[-1]
        print(f"{run} shift {shift:g}: mean {r['mean_px']:.3f} px, median "
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
                   "(default 0.05,0.1); 0, one crop, is always measured")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("_build/results/crop_shift.json"))
    p.add_argument("--overwrite", action="store_true", help="replace an earlier --out")
    args = p.parse_args(argv)
    check_output(args.out, args.overwrite)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    # every run's held-out frames first: a folder that is no run stops the script before
    # the others were measured for nothing
    runs = [(Path(run), Path(data), held_out(Path(run), Path(data))) for run, data in args.run]
    rows = []
    with torch.inference_mode():
        for run, data, test in runs:
            rows += measure(run, data, test, [s for s in args.shifts if s > 0], args.device)
    record = describe(vars(args), args.device, rows=rows, wall_s=time.perf_counter() - start)
    write_json(record, args.out, overwrite=args.overwrite)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
