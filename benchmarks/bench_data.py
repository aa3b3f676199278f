"""How fast the data layer is: generating frames, reading and checking the real sets.

    python benchmarks/bench_data.py [--data DIR] [--out FILE.json] [--overwrite]

Prints one line per measurement and writes them, with provenance, as JSON.
"""

from __future__ import annotations

import argparse
import sys
import time

from vit_facemap import config, errors, runinfo
from vit_facemap.dlc import read_labels
from vit_facemap.inspect import summarize
from vit_facemap.synthetic import generate_frames


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    return errors.run_reporting("bench_data.py", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="folder of the real sets (default $VIT_FACEMAP_DATA)")
    parser.add_argument("--out", default="_build/benchmarks/data.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier --out")
    args = parser.parse_args(argv)
    # checked first: a wrong --out or --data used to fail, or be ignored, after the timings
    out = runinfo.check_output(args.out, args.overwrite)
    root, where = runinfo.data_folder(args.data)
    results = {}
    with runinfo.timed() as total:
        for n, size, layout in [(64, (160, 120), "g7c1"), (16, (864, 646), "g7c1"),
                                (16, (720, 540), "schroeder")]:
            s = best_of(lambda n=n, size=size, layout=layout:
                        generate_frames(n, seed=0, size=size, layout=layout))
            key = f"generate_{n}x{size[0]}x{size[1]}_{layout}_s"
            results[key] = round(s, 3)
            print(f"{key}: {s:.3f} s ({s / n * 1000:.1f} ms per frame)")
        for name in config.REAL_SETS:
            folder = config.real_set(name, root)
            if folder is None:
                print(f"{name}: not found {where}; skipped")
                continue
            frames = read_labels(folder)
            results[f"{name}_read_labels_s"] = round(best_of(lambda f=folder: read_labels(f)), 3)
            for decode in (False, True):
                key = f"{name}_summarize_{'decoded' if decode else 'headers'}_s"
                results[key] = round(best_of(lambda fr=frames, d=decode:
                                             summarize(fr, decode=d, floors=False), 1), 3)
            # what `data inspect` adds by default: the label floors read every frame again
            results[f"{name}_summarize_decoded_floors_s"] = round(
                best_of(lambda fr=frames: summarize(fr), 1), 3)
            results[f"{name}_n_frames"] = len(frames)
            for k, v in results.items():
                if k.startswith(name):
                    print(f"{k}: {v}")
    # the folder read (null: none, only generation was timed), not the argument as given
    record = runinfo.describe(vars(args), "cpu", data_root=None if root is None else str(root),
                              results=results, wall_s=total["wall_s"])
    path = runinfo.write_json(record, out, overwrite=args.overwrite)
    print(f"wrote {path} ({total['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
