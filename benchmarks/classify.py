"""Benchmark: pupil state of the Schroeder mice, HOG + RF vs ViT, leave-animals-out.

Writes the pupil-state task (constricted: pupil / eye width < 0.25, dilated: > 0.35) as a
class-folder set under ``--work``, cross-validates both classifiers with every animal held
out once (stratified group k-fold over animals; both models share each fold's eye locator),
and checks their maps (the set's ``measures.csv``, pupil geometry per frame including the
frames between the thresholds, trains the ViT's geometry head and, with those frames, the
eye locator): attention mass inside the eyelid box vs that box's share of the
view, and deletion-curve AUCs against random orders. Also runs the generated pupil task,
whose class-carrying region is known by construction.

    python benchmarks/classify.py --profile default --json _build/benchmarks/classify.json

Without real data (``$VIT_FACEMAP_DATA`` unset) only the generated task runs; ``--predict``
variants are scored on every task that runs. An earlier ``--json`` is replaced only with
``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

from vit_facemap.classifier import ClassifierConfig, profile_config
from vit_facemap.commands import seed_arg
from vit_facemap.config import PROFILES, real_set
from vit_facemap.errors import argument_errors, run_reporting
from vit_facemap.interpretation import StudySettings, run_study
from vit_facemap.runinfo import (
    check_folder,
    check_output,
    check_study_args,
    data_folder,
    describe,
    parse_settings,
    resolve_device,
    timed,
    write_json,
)
from vit_facemap.states import write_generated_state_set, write_pupil_state_set


def main(argv: list[str] | None = None) -> int:
    return run_reporting("classify.py", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", choices=PROFILES, default="default")
    p.add_argument("--data-root", default=None, help="folder holding schroeder/ (default: "
                                                     "$VIT_FACEMAP_DATA)")
    p.add_argument("--work", default="_build/benchmarks/classify_sets",
                   help="where the class-folder sets are written")
    p.add_argument("--json", default="_build/benchmarks/classify.json")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier --json")
    p.add_argument("--folds", type=int, default=4,
                   help="cross-validation folds (at most one per animal: more are clipped)")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--oracle-boxes", action="store_true",
                   help="crop test frames at the labeled eye (isolates the locator's error)")
    p.add_argument("--skip-generated", action="store_true")
    p.add_argument("--predict", action="append", default=[],
                   help="also score the same trained ViTs with another prediction-time "
                        "setting, key=v1,v2 (tta, decision)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a training setting on top of the profile (e.g. ensemble=3)")
    args = p.parse_args(argv)
    # every setting is built before any work: a typo used to fail after the whole study
    with argument_errors():
        check_study_args(args.folds, args.threads)
        overrides = dict(parse_settings(args.set, "--set", ClassifierConfig))
        # first: it refuses --set seed and model, which the configs below would take twice
        settings = StudySettings(profile=args.profile, n_splits=args.folds, seed=args.seed,
                                 overrides=overrides)
        configs = {m: profile_config(args.profile, model=m, seed=args.seed, **overrides)
                   for m in ("hog-rf", "vit")}
        variants = parse_settings(args.predict, "--predict", ClassifierConfig, many=True)
        for k, v in variants:
            replace(configs["vit"], **{k: v})
        device = resolve_device(configs["vit"].device)
    check_output(args.json, args.overwrite)
    # the sets are written under --work: a file there (or above it) was a traceback
    check_folder(args.work, "--work")
    root, where = data_folder(args.data_root)
    if args.skip_generated and real_set("schroeder", root) is None:
        # no task left: the JSON would hold provenance alone (replacing, with --overwrite,
        # an earlier study's results) and say nothing
        print(f"schroeder: not found {where}; with --skip-generated nothing is benchmarked",
              file=sys.stderr)
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    results: dict = {}
    with timed() as total:
        schroeder = real_set("schroeder", root)
        if schroeder is not None:
            folder = work / "schroeder_pupil"
            s = write_pupil_state_set(schroeder, folder, overwrite=True)
            print(f"schroeder pupil task: {len(s)} frames, classes {s.classes}, "
                  f"counts {[int((s.labels == i).sum()) for i in range(len(s.classes))]}, "
                  f"{len(set(s.groups.tolist()))} animals", flush=True)
            _say_folds(args.folds, s.groups)
            study = run_study(folder, settings, oracle_boxes=args.oracle_boxes)
            results["schroeder_pupil"] = study.summary
            _print(study.summary)
            if variants:
                results["schroeder_pupil"]["predict_variants"] = _variants(study, variants)
        else:
            print(f"schroeder: not found {where}; task skipped", file=sys.stderr)
        if not args.skip_generated:
            n = 32 if args.profile == "test" else 160
            generated = write_generated_state_set(work / "generated_pupil", n, n_videos=8,
                                                  seed=args.seed, overwrite=True)
            _say_folds(args.folds, generated.groups)
            study = run_study(generated.root, settings, oracle_boxes=args.oracle_boxes)
            results["generated_pupil"] = study.summary
            _print(study.summary)
            if variants:
                results["generated_pupil"]["predict_variants"] = _variants(study, variants)
    results["provenance"] = describe(settings, device, wall_s=total["wall_s"],
                                     oracle_boxes=args.oracle_boxes, args=vars(args),
                                     data_root=None if root is None else str(root))
    write_json(results, args.json, overwrite=args.overwrite)
    print(f"-> {args.json} ({total['wall_s']:.0f} s)")
    return 0


def _say_folds(folds: int, groups) -> None:
    """The study holds out each animal once at most: more folds than animals are clipped."""
    n = len(set(groups.tolist()))
    if folds > n:
        print(f"--folds {folds}: the set has {n} animals; {n} folds (each animal held out "
              f"once)", flush=True)


def _variants(study, settings: list[tuple[str, str]]) -> dict[str, dict]:
    """Out-of-fold metrics of the study's ViTs under other prediction-time settings."""
    import numpy as np

    from vit_facemap.classifier import classification_metrics

    cv, out = study.cv, {}
    for key, value in settings:
        proba = np.full((len(cv.labels), len(cv.classes)), np.nan)
        for f, clf in enumerate(cv.models["vit"]):
            te = np.flatnonzero(cv.fold == f)
            other = replace(clf.config, **{key: value})
            saved, clf.config = clf.config, other
            try:
                proba[te] = clf.predict_proba([study.frames[i] for i in te], cv.boxes[te])
            finally:
                clf.config = saved
        m = classification_metrics(cv.labels, proba.argmax(1), cv.classes, cv.groups)
        out[f"{key}={value}"] = {k: m[k] for k in ("macro_f1", "balanced_accuracy",
                                                     "accuracy", "confusion")}
        print(f"  vit with {key}={value}: macro-F1 {m['macro_f1']:.3f}  balanced acc "
              f"{m['balanced_accuracy']:.3f}", flush=True)
    return out


def _print(summary: dict) -> None:
    for name in ("hog-rf", "vit"):
        r = summary.get(name)
        if not r:
            continue
        mass, chance = r["attention_mass_in_region"], r["region_share_chance"]
        print(f"  {name:7s} macro-F1 {r['macro_f1']:.3f}  balanced acc "
              f"{r['balanced_accuracy']:.3f}  acc {r['accuracy']:.3f}  "
              f"map mass in region {mass if mass is None else round(mass, 3)} "
              f"(chance {chance if chance is None else round(chance, 3)})  deletion AUC "
              f"{r['deletion_auc']:.3f} vs random {r['deletion_auc_random']:.3f}  "
              f"({r['wall_s']:.0f} s)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
