"""Benchmark: the eye locator alone, on the folds of the pupil-state study (leave-animals-out).

The pupil-state classifiers crop the eye that the locator finds; with the labeled eye boxes
the ViT does much better than with the found ones, so the locator is measured on its own
here: centre error in eye widths, share of held-out frames within half / one eye width,
width ratio, per held-out animal, for any locator settings given as ``key=value``.

    python benchmarks/locator.py --json _build/benchmarks/locator.json refine_steps=0

``--predict candidates=1,3,5`` also scores the same trained locators with other
prediction-time settings (candidates, refine_steps, decode), without training again.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from vit_facemap.classifier import fit_locator, fold_extra_rows, load_frames, profile_config
from vit_facemap.commands import seed_arg
from vit_facemap.config import PROFILES, real_set
from vit_facemap.errors import DataError, argument_errors, run_reporting
from vit_facemap.eyes import LocatorConfig
from vit_facemap.interpretation import locator_error
from vit_facemap.runinfo import (
    check_folder,
    check_output,
    check_study_args,
    data_folder,
    describe,
    parse_settings,
    timed,
    write_json,
)
from vit_facemap.states import read_image_set, read_measures, write_pupil_state_set


def main(argv: list[str] | None = None) -> int:
    return run_reporting("locator.py", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="locator settings, key=value")
    p.add_argument("--profile", choices=PROFILES, default="default")
    p.add_argument("--data-root", default=None)
    p.add_argument("--work", default="_build/benchmarks/classify_sets")
    p.add_argument("--json", default="_build/benchmarks/locator.json")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier --json")
    p.add_argument("--folds", type=int, default=4,
                   help="cross-validation folds (at most one per animal: more are clipped, as "
                        "in classify.py)")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--predict", action="append", default=[],
                   help="prediction-time setting to compare, key=v1,v2,...")
    args = p.parse_args(argv)
    # settings are built before any work: a wrong key used to be a TypeError after loading
    with argument_errors():
        check_study_args(args.folds, args.threads)
        overrides = dict(parse_settings(args.overrides, "locator setting", LocatorConfig))
        if "seed" in overrides:
            raise DataError("give the seed as --seed (it also seeds the folds)")
        # the seed the folds are trained with, recorded as such (was the profile's 0)
        config = replace(profile_config(args.profile).locator, **overrides, seed=args.seed)
        variants = parse_settings(args.predict, "--predict", LocatorConfig, many=True)
        for k, v in variants:
            replace(config, **{k: v})
    check_output(args.json, args.overwrite)
    # the sets are written under --work: a file there (or above it) was a traceback
    check_folder(args.work, "--work")
    root, where = data_folder(args.data_root)
    schroeder = real_set("schroeder", root)
    if schroeder is None:
        print(f"schroeder: not found {where}; the locator benchmark needs it", file=sys.stderr)
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    from sklearn.model_selection import StratifiedGroupKFold

    with timed() as total:
        folder = Path(args.work) / "schroeder_pupil"
        write_pupil_state_set(schroeder, folder, overwrite=True)
        data = read_image_set(folder)
        measures = read_measures(data)
        frames = load_frames(data.paths)
        extra = load_frames(measures.extra_paths) if measures is not None else []
        groups = data.groups.astype(str)
        n_groups = len(set(groups))
        folds = min(args.folds, n_groups)
        if folds < args.folds:
            print(f"--folds {args.folds}: the set has {n_groups} animals; {folds} folds (each "
                  f"animal held out once)", flush=True)
        found = np.full((len(data), 3), np.nan)
        found_variant = {f"{k}={v}": np.full((len(data), 3), np.nan) for k, v in variants}
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=args.seed)
        fit_s = 0.0
        for tr, te in splitter.split(np.zeros(len(data)), data.labels, groups):
            keep = fold_extra_rows(measures.extra_groups, groups, te)
            t0 = time.perf_counter()
            loc = fit_locator([frames[i] for i in tr], data.eyes[tr], config,
                              ([extra[i] for i in keep], measures.extra_eyes[keep], None))
            fit_s += time.perf_counter() - t0
            found[te] = loc.predict([frames[i] for i in te])
            for k, v in variants:
                other = replace(loc, config=replace(loc.config, **{k: v}))
                found_variant[f"{k}={v}"][te] = other.predict([frames[i] for i in te])
    err = np.linalg.norm(found[:, :2] - data.eyes[:, :2], axis=1) / data.eyes[:, 2]
    per_animal = {g: {"median_centre_error_eye_widths": float(np.median(err[groups == g])),
                      "share_within_one_eye_width": float(np.mean(err[groups == g] < 1))}
                  for g in sorted(set(groups))}
    summary = {"config": asdict(config), "overall": locator_error(found, data.eyes),
               "per_animal": per_animal, "folds": folds,
               "predict_variants": {k: locator_error(f, data.eyes) for k, f in found_variant.items()},
               "fit_s_per_fold": fit_s / folds, "wall_s": total["wall_s"],
               # the locator trains on the CPU (fit_locator has no device setting)
               "run": describe(config, "cpu", args=vars(args), wall_s=total["wall_s"],
                               data_root=str(root))}
    print(f"locator {asdict(config)}")
    for k, v in summary["overall"].items():
        print(f"  {k}: {v:.3f}")
    for g, v in per_animal.items():
        print(f"  {g:12s} median {v['median_centre_error_eye_widths']:.2f}  "
              f"within 1 eye width {v['share_within_one_eye_width']:.2f}")
    for k, v in summary["predict_variants"].items():
        print(f"  predicting with {k}: " + ", ".join(f"{n} {x:.3f}" for n, x in v.items()))
    print(f"  fit {summary['fit_s_per_fold']:.0f} s per fold, {total['wall_s']:.0f} s in all")
    write_json(summary, args.json, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
