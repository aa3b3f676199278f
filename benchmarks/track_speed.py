"""Frames per second of video tracking: decoding alone, the model alone, end to end.

For each model (the default hybrid ViT, the CNN baseline, FMnet; trained runs with
``--runs``, or untrained models built from their configurations, since speed does not
depend on the weights) on the same video and machine:

- ``decode``: reading the video into uint8 gray frames, nothing else (the ceiling);
- ``model``: ``predictor.predict`` on frames already in memory (crop, resize, network,
  decoding of the heatmaps);
- ``end_to_end``: ``vit_facemap.track.track_video``'s own frames/s: its tracking loop,
  decoding in a background thread, the model, the results streamed to disk; the CSV + H5 +
  measures files it writes after the loop are not in it, but are in
  ``end_to_end_written``, the frames over the wall time of the whole call.

Each is the best of ``--repeats`` passes over the first ``--frames`` frames, after a warm-up
batch for the model. Trained runs are timed with the views ``track`` gives them by default
(the box and its mirror image for a run trained with flips, three box sizes otherwise;
``--no-flip`` / ``--scales`` choose others); each row records its ``scales`` and ``flip``.
A run trained at another frame size gets its frames scaled to that size (``resized_to`` in
its row).

Without ``--video`` a clip is assembled from the real g7c1 frames in frame-name order
(``$VIT_FACEMAP_DATA``), else from generated frames of the same size; it says which.

    python benchmarks/track_speed.py --threads 2 --frames 300 --out _build/results/track_speed.json
    python benchmarks/track_speed.py --device cuda --batch-size 64
    python benchmarks/track_speed.py --compile      # also after torch.compile
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from vit_facemap.commands import SCALES_HELP, scales_arg, seed_arg
from vit_facemap.config import real_set
from vit_facemap.errors import DataError, run_reporting
from vit_facemap.models import ModelConfig, build_model, count_parameters, with_settings
from vit_facemap.predict import KeypointPredictor, load_predictor
from vit_facemap.refine import refine_groups
from vit_facemap.runinfo import check_output, describe, resolve_device, timed, write_json
from vit_facemap.synthetic import G7C1_KEYPOINTS, generate_frames
from vit_facemap.testvideo import write_clip
from vit_facemap.track import TrackOptions, flip_of, scales_of, track_video
from vit_facemap.train import TrainConfig
from vit_facemap.transforms import full_frame_box
from vit_facemap.video import iter_batches, probe

FAMILIES = {
    "vit": lambda: TrainConfig().model,  # the default model of the project
    "cnn": lambda: ModelConfig(family="cnn"),
    "fmnet": lambda: ModelConfig(family="fmnet"),
}


def untrained_predictor(name: str, frame_size: tuple[int, int], device: str,
                        scales: tuple[float, ...] | None = None) -> KeypointPredictor:
    cfg = FAMILIES[name]()
    model = build_model(cfg, len(G7C1_KEYPOINTS)).to(device).eval()
    run_config = {
        "bodyparts": list(G7C1_KEYPOINTS), "frame_size": list(frame_size),
        "channels": cfg.channels, "mapping": asdict(full_frame_box(frame_size, cfg.input_size)),
    }
    refiners, extra = [], ""
    if name == "vit":
        # the default recipe's second stages: its second-stage network on a crop around each group
        rc = TrainConfig().refine
        cfg2 = ModelConfig(**with_settings(asdict(cfg), {**rc.model, "input_w": rc.input_size,
                                                         "input_h": rc.input_size}))
        groups = refine_groups(G7C1_KEYPOINTS, rc)
        for idx in groups.values():
            model2 = build_model(cfg2, len(idx)).to(device).eval()
            refiners.append(KeypointPredictor(model2, {
                "bodyparts": [G7C1_KEYPOINTS[i] for i in idx], "frame_size": list(frame_size),
                "channels": cfg.channels, "mapping": None,
                "refine_of": {"indices": idx, "frame_size": list(frame_size),
                              # the eye of g7c1 spans about a sixth of the frame width; the
                              # crop's side does not change the cost (it is resized)
                              "side_px": rc.factor * frame_size[0] / 6},
            }, device))
        extra = f" + {', '.join(groups)} stages {rc.input_size}x{rc.input_size}"
    predictor = KeypointPredictor(model, run_config, device, refiners=refiners, scales=scales)
    n_params = count_parameters(model) + sum(count_parameters(r.model) for r in refiners)
    predictor.model_name = f"{name} (untrained: {cfg.family}, input {cfg.input_w}x{cfg.input_h}" \
                           f"{extra}, {n_params / 1e6:.2f} M parameters)"
    return predictor


def gflops_per_frame(predictor) -> float | None:
    """Forward-pass GFLOP per frame at the model's input size, every stage, box size and
    mirrored view."""
    from torch.utils.flop_counter import FlopCounterMode

    total = 0.0
    for p in (predictor, *getattr(predictor, "refiners", [])):
        c = p.model.config
        x = torch.zeros(1, p.channels, c.input_h, c.input_w, device=p.device)
        try:
            with torch.inference_mode(), FlopCounterMode(display=False) as counter:
                p.model(x)
        except RuntimeError:  # an operator the counter cannot trace
            return None
        # a mirrored view is one more pass per box size
        total += counter.get_total_flops() / 1e9 * len(scales_of(p)) * (1 + flip_of(p))
    return total


def make_clip(path: Path, n_frames: int, seed: int) -> str:
    g7c1 = real_set("g7c1")
    if g7c1 is not None:
        folder = sorted((g7c1 / "labeled-data").iterdir())[0]
        images = sorted(folder.glob("*.png"))
        write_clip(images, path, fps=30, n_frames=n_frames)
        return (f"clip assembled from the real g7c1 labeled frames of {folder.name} in frame-name "
                f"order ({len(images)} frames, looped to {n_frames}), H.264")
    frames = generate_frames(min(n_frames, 60), seed=seed, size=(864, 646), n_videos=1).images
    write_clip(list(frames), path, fps=30, n_frames=n_frames)
    return f"NO REAL DATA: clip of {min(n_frames, 60)} generated 864x646 frames looped to {n_frames}"


def decode_fps(video: Path, batch_size: int, repeats: int, stop: int | None = None) -> float:
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = sum(len(b) for b in iter_batches(video, batch_size, color="gray", stop=stop))
        best = max(best, n / (time.perf_counter() - t0))
    return best


def model_fps(predictor, frames: np.ndarray, batch_size: int, device: str,
              repeats: int = 2) -> float:
    """Best of ``repeats`` passes over ``frames`` in memory, as decoding is timed: the first
    pass after building a model is slower (allocations, caches), and a warm-up batch smaller
    than the timed ones leaves some of that cost inside the timing."""
    predictor.predict(frames[:batch_size])  # a full batch: the size timed below
    best = 0.0
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(0, len(frames), batch_size):
            predictor.predict(frames[i:i + batch_size])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = max(best, len(frames) / (time.perf_counter() - t0))
    return best


def main(argv: list[str] | None = None) -> int:
    return run_reporting("track_speed.py", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video", type=Path, help="video to track (default: an assembled clip)")
    p.add_argument("--frames", type=int, default=300,
                   help="frames of the assembled clip, or the first frames of --video")
    p.add_argument("--models", default="vit,cnn,fmnet",
                   help="untrained models to build: comma list of vit, cnn, fmnet ('' for none)")
    p.add_argument("--runs", nargs="*", default=[],
                   help="trained run folders to time as well (frames are resized to the size "
                        "a run was trained on, as `track --resize` does)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--scales", type=scales_arg, default=None, help=SCALES_HELP)
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="trained runs (--runs) also see the mirrored frame (default: where a "
                        "run trained with flips, as `track` does; the untrained models never)")
    p.add_argument("--repeats", type=int, default=2,
                   help="timings of decoding, the model and end to end (best of)")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--compile", action="store_true",
                   help="also time each model after torch.compile (what `track --compile` does)")
    p.add_argument("--out", type=Path, default=Path("_build/results/track_speed.json"))
    p.add_argument("--overwrite", action="store_true", help="replace an earlier --out")
    args = p.parse_args(argv)

    with timed() as total:
        for name in ("frames", "threads", "batch_size", "repeats"):
            if getattr(args, name) < 1:
                raise DataError(f"--{name.replace('_', '-')} must be at least 1, "
                                f"got {getattr(args, name)}")
        names = [n for n in args.models.split(",") if n]
        unknown = [n for n in names if n not in FAMILIES]
        if unknown:
            raise DataError(f"unknown model {', '.join(map(repr, unknown))}; choose from "
                            f"{', '.join(FAMILIES)}")
        for r in args.runs:
            if not Path(r).is_dir():
                raise DataError("not a run folder", r)
        device = resolve_device(args.device)
        for r in args.runs:
            # a folder that is no trained run (a classifier's, one without weights) was
            # refused only when its turn came, after the clip, decoding and the untrained
            # models had been timed
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an unfinished run is said when it is timed
                load_predictor(r, device, scales=args.scales, flip=args.flip)
        check_output(args.out, args.overwrite)
        if args.video is not None:
            probe(args.video)  # a missing or broken video is named before any work
        torch.set_num_threads(args.threads)
        dec, rows, source, info = _measure(args, names, device)
    record = describe(vars(args), device, video=source, frame_size=[info.width, info.height],
                      decode_fps=dec, results=rows, load_average=os.getloadavg(),
                      wall_s=total["wall_s"],
                      # the arguments parsed (main(argv) in a notebook or a test: not
                      # sys.argv's), as a line to type at the repository's root
                      command=shlex.join(["python", "benchmarks/track_speed.py",
                                          *(sys.argv[1:] if argv is None else argv)]))
    write_json(record, args.out, overwrite=args.overwrite)
    print(f"wrote {args.out} ({total['wall_s']:.0f} s)")
    return 0


def _measure(args: argparse.Namespace, names: list[str], device: str):
    """Decode frames/s, the models' rows, the clip's description and its header."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.video is None:
            video = tmp / "clip.mp4"
            source = make_clip(video, args.frames, args.seed)
        else:
            video, source = args.video, f"given video {args.video} (first {args.frames} frames)"
        info = probe(video)
        print(f"video: {source}; {info.width}x{info.height}, {info.n_frames} frames, {info.codec}")
        size = (info.width, info.height)
        stop = args.frames
        frames_at: dict[tuple[int, int], np.ndarray] = {}

        def frames_of(want: tuple[int, int]) -> np.ndarray:
            # a run trained at another frame size predicts on frames scaled to it, as
            # `track --resize` feeds them
            if want not in frames_at:
                frames_at[want] = np.concatenate([b.frames for b in iter_batches(
                    video, 256, color="gray", stop=stop, resize=None if want == size else want)])
            return frames_at[want]

        dec = decode_fps(video, args.batch_size, args.repeats, stop)
        print(f"decode only: {dec:.0f} frames/s")
        rows = []
        predictors = [(n, lambda n=n: untrained_predictor(n, size, device, args.scales))
                      for n in names]
        predictors += [(str(r), lambda r=r: load_predictor(r, device, scales=args.scales,
                                                           flip=args.flip))
                       for r in args.runs]
        for name, make in predictors:
            for compiled in (False, True) if args.compile else (False,):
                predictor = make()
                if compiled and not predictor.compile(batch_size=args.batch_size):
                    print(f"{name}: torch.compile failed ({predictor.compile_error})")
                    continue
                want = getattr(predictor, "frame_size", None)
                want = size if want is None else (int(want[0]), int(want[1]))
                m = model_fps(predictor, frames_of(want), args.batch_size, device, args.repeats)
                e2e, written = [], []
                for _ in range(args.repeats):
                    opts = TrackOptions(batch_size=args.batch_size, progress=False,
                                        overwrite=True, stop=stop, resize=want != size,
                                        scorer=f"bench-{len(rows)}")
                    t0 = time.perf_counter()
                    e2e.append(track_video(predictor, video, tmp / "out", opts))
                    # track_video's fps stops before it writes the CSV, H5 and measures
                    written.append(e2e[-1]["frames_tracked"] / (time.perf_counter() - t0))
                summary = max(e2e, key=lambda s: s["fps"])
                row = {"model": name, "description": getattr(predictor, "model_name", name),
                       "compiled": compiled, "compile_s": predictor.compile_s,
                       "scales": list(predictor.scales), "flip": flip_of(predictor),
                       "compile_error": predictor.compile_error,
                       "gflop_per_frame": gflops_per_frame(predictor),
                       "resized_to": None if want == size else list(want),
                       "model_fps": m, "end_to_end_fps": summary["fps"],
                       "end_to_end_written_fps": max(written),
                       "frames": summary["frames_tracked"]}
                rows.append(row)
                print(f"{name:>6}{' (compiled)' if compiled else '':11}: model {m:7.1f} frames/s, "
                      f"end to end {summary['fps']:7.1f} frames/s ({max(written):.1f} with the "
                      "files written), "
                      f"{row['gflop_per_frame'] or float('nan'):.2f} GFLOP/frame"
                      f"{f' (resized to {want[0]}x{want[1]})' if want != size else ''}  "
                      f"[{row['description']}]")
    return dec, rows, source, info


if __name__ == "__main__":
    sys.exit(main())
