"""``vit-facemap classify``: train and evaluate facial-state classifiers on class folders.

``classify train --data DIR --out RUN`` trains on images laid out ``DIR/<class>/<image>``;
``classify evaluate RUN --data DIR --json OUT.json`` scores a run on another such set;
``classify make-pupil-set LABELS OUT`` writes the pupil-state task of a DeepLabCut set.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from vit_facemap.commands import seed_arg
from vit_facemap.config import PROFILES
from vit_facemap.errors import DataError, RunExistsError
from vit_facemap.runinfo import CLASSIFIER, check_parents, is_set_aside, run_config


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "classify", help="facial-state classifiers (HOG + random forest, ViT)",
        description="Train and evaluate facial-state classifiers on images in class folders "
                    "(DIR/<class>/<image>).",
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    t = sub.add_parser("train", help="train a classifier on a class-folder set")
    t.add_argument("--data", required=True, help="folder of class folders DIR/<class>/<image>")
    t.add_argument("--out", required=True, help="run folder to create")
    t.add_argument("--model", choices=("vit", "hog-rf"), default="vit")
    t.add_argument("--crop", choices=("eye", "frame"), default="eye",
                   help="eye: a crop around the eye (needs DIR/eyes.csv to train the eye "
                        "locator); frame: the whole frame")
    _group_args(t)
    t.add_argument("--seed", type=seed_arg, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu or cuda (ViT training)")
    t.add_argument("--profile", choices=PROFILES, default="default")
    t.add_argument("--epochs", type=int, default=None, help="ViT epochs (overrides the profile)")
    t.add_argument("--ensemble", type=int, default=None,
                   help="ViTs trained with seeds seed, seed+1, ... and averaged (overrides the profile)")
    t.add_argument("--init-weights", default=None,
                   help="local safetensors file to initialise the ViT from")
    t.add_argument("--no-measures", action="store_true",
                   help="ignore DIR/measures.csv (by default the ViT also learns to regress "
                        "the pupil geometry it lists)")
    t.add_argument("--cv", type=int, default=0, metavar="K",
                   help="also report K-fold group-aware cross-validation (needs groups)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=run_train)

    e = sub.add_parser("evaluate", help="score a trained classifier on a class-folder set")
    e.add_argument("run_dir", metavar="RUN", help="run folder written by 'classify train'")
    e.add_argument("--data", required=True, help="folder of class folders DIR/<class>/<image>")
    e.add_argument("--json", required=True, help="where to write the metrics (JSON)")
    _group_args(e)
    e.add_argument("--overwrite", action="store_true", help="replace an existing JSON file")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=run_evaluate)

    m = sub.add_parser("make-pupil-set",
                       help="write the pupil-state task of a DeepLabCut set as class folders")
    m.add_argument("labels", help="labeled set (folder or CollectedData file)")
    m.add_argument("out", help="folder to create (constricted/, dilated/, groups.csv, eyes.csv)")
    m.add_argument("--constricted-below", type=float, default=0.25)
    m.add_argument("--dilated-above", type=float, default=0.35)
    m.add_argument("--overwrite", action="store_true")
    m.set_defaults(func=run_make_set)


def _group_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--groups", default=None,
                   help="CSV with columns image,group (default: DIR/groups.csv if present)")
    g.add_argument("--group-regex", default=None,
                   help="regex on each image's path relative to DIR; group = first capture group")


# what `classify train` writes into its run folder; anything else there is the user's
RUN_FILES = ("config.json", "model.safetensors", "model.joblib", "provenance.json")


def is_classifier_file(rel: Path) -> bool:
    """Whether ``rel`` (a path inside a classifier run) is one of the run's own files."""
    top = rel.parts[0] if rel.parts else ""
    return top in RUN_FILES or is_set_aside(top)


def _is_class_set_file(rel: Path) -> bool:
    from vit_facemap.images import IMAGE_SUFFIXES

    # the images sit in one folder per class, groups.csv and eyes.csv beside them
    return rel.suffix.lower() in IMAGE_SUFFIXES or rel.name in ("groups.csv", "eyes.csv")


def _check_out(path: Path, overwrite: bool) -> None:
    if path.exists() and not path.is_dir():
        raise DataError("--out is a file; give a folder for the run", path)
    check_parents(path)  # else found when saving, after the training
    if path.exists() and not overwrite:
        raise RunExistsError(path)
    if path.is_dir():
        _restore_interrupted(path)
    if path.is_dir() and any(path.iterdir()) and run_config(path)[0] != CLASSIFIER:
        raise DataError("refusing to overwrite a folder that is not a classifier run (no "
                        "config.json of 'classify train' in it)", path)


def _restore_interrupted(out: Path) -> None:
    """Put back the run an earlier ``--overwrite`` set aside, where a hard kill stopped it
    before its new run was saved whole (what it left of that run is deleted).

    Such a folder holds a ``.replaced-*`` folder and no saved run (provenance.json is
    written last), and would read as "not a classifier run"; replaced again, the run set
    aside would stay hidden for good. Of several (left by earlier versions), the newest
    complete one is put back; the rest go when the new run is saved.
    """
    from vit_facemap.runinfo import newest_set_aside, put_back, set_aside_folders

    backups = set_aside_folders(out)
    if not backups or (out / "provenance.json").is_file():
        return
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    put_back(out, newest_set_aside(backups, lambda b: (b / "provenance.json").is_file()))


def _save_replacing(out: Path, save: Callable[[], None]) -> None:
    """``save()`` the new run into ``out``, the earlier run's files set aside until it is
    saved whole (put back if saving fails); the user's other files in ``out`` stay."""
    import shutil

    from vit_facemap.runinfo import set_aside_folders, write_replacing

    write_replacing(out, lambda p: p.is_file() and p.name in RUN_FILES, save)
    # saved whole: any run an interrupted replacement left goes too
    for old in set_aside_folders(out):
        shutil.rmtree(old, ignore_errors=True)


def run_train(args: argparse.Namespace) -> int:
    import numpy as np

    from vit_facemap.classifier import (
        FacialStateClassifier,
        classification_metrics,
        cross_validate,
        load_frames,
        profile_config,
    )
    from vit_facemap.runinfo import describe, resolve_device, timed, write_json
    from vit_facemap.states import read_image_set, read_measures, require_eye_boxes

    out = Path(args.out)
    _check_out(out, args.overwrite)
    device = resolve_device(args.device)
    # checked before any image is read or any model trained
    if args.epochs is not None and args.epochs < 1:
        raise DataError(f"--epochs must be at least 1, got {args.epochs}")
    if args.model != "vit" and (args.init_weights or args.ensemble is not None
                                or args.epochs is not None):
        raise DataError("--init-weights, --ensemble and --epochs are for --model vit; a "
                        f"{args.model} model would ignore them")
    if args.cv and args.cv < 2:
        raise DataError(f"--cv needs K >= 2 folds (0: no cross-validation), got {args.cv}")
    overrides = {"model": args.model, "crop": args.crop, "seed": args.seed, "device": device}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.ensemble is not None:
        overrides["ensemble"] = args.ensemble
    if args.init_weights:
        overrides["init_weights"] = args.init_weights
    try:
        config = profile_config(args.profile, **overrides)
    except ValueError as exc:
        raise DataError(f"bad classifier settings: {exc}") from None
    data = read_image_set(args.data, groups=args.groups, group_regex=args.group_regex)
    if args.cv and len(set(data.groups.tolist()) - {""}) < 2:
        raise DataError("--cv needs groups (groups.csv or --group-regex) with at least two "
                        "groups", data.root)
    if config.crop == "eye" and data.eyes is None:
        raise DataError("--crop eye needs eyes.csv (image,x,y,width) with the eye box of every "
                        "image to train the eye locator; use --crop frame otherwise", data.root)
    if config.crop == "eye":
        require_eye_boxes(data, "--crop eye needs one for every image to train the eye locator; "
                                "use --crop frame otherwise")
    progress = not args.quiet
    frames = load_frames(data.paths, progress=progress)
    if config.crop == "eye":
        # an eye box off its image (eyes.csv of frames at another size) trained the locator
        # and the model on a black crop without a word
        off = [i for i, (e, f) in enumerate(zip(data.eyes, frames, strict=True))
               if not (0 <= e[0] < f.shape[1] and 0 <= e[1] < f.shape[0])]
        if off:
            (x, y, _), (h, w) = data.eyes[off[0]], frames[off[0]].shape[:2]
            raise DataError(f"{len(off)} image(s) have their eye box centre outside the image, "
                            f"e.g. {data.names[off[0]]} ({w}x{h}, eye at x {x:.0f}, y {y:.0f}); "
                            "give each image's eye box in its own pixels", data.root / "eyes.csv")
    measures = None if args.no_measures else read_measures(
        data, eye_boxes=config.crop == "eye")
    geo = {}
    if measures is not None:  # the forest uses only the extra images' eye boxes (locator)
        geo = {"measures": measures.values, "measure_names": measures.names,
               "extra": (load_frames(measures.extra_paths), measures.extra_eyes,
                         measures.extra_values)}
    record = {"measures": measures.names if geo else None,
              "measure_only_images": len(measures.extra_paths) if geo else 0}
    with timed() as t:
        clf = FacialStateClassifier(config, data.classes).fit(frames, data.labels, data.eyes,
                                                               progress=progress, **geo)
    record["train_wall_s"] = t["wall_s"]
    record["train_metrics"] = classification_metrics(
        data.labels, clf.predict(frames, data.eyes if config.crop == "eye" else None),
        data.classes, data.groups)
    if args.cv:
        with timed() as t:
            cv = cross_validate(frames, data.labels, data.groups, data.classes,
                                {config.model: config}, data.eyes, n_splits=args.cv,
                                seed=args.seed, progress=progress, measures=measures)
        record["cv"] = {"n_splits": cv.n_folds, "n_splits_asked": args.cv,
                        "folds_note": cv.folds_note, "metrics": cv.metrics[config.model],
                        "wall_s": t["wall_s"]}
    def save() -> None:
        clf.save(out)
        write_json(describe(config, device, profile=args.profile,
                            data=str(Path(args.data).resolve()), classes=data.classes,
                            n_images=len(data),
                            class_counts=np.bincount(data.labels,
                                                     minlength=len(data.classes)).tolist(),
                            groups=sorted(set(data.groups.tolist()) - {""}), **record),
                   out / "provenance.json")
    out.mkdir(parents=True, exist_ok=True)
    _save_replacing(out, save)
    m = record["train_metrics"]
    print(f"trained {config.model} ({config.crop} crop) on {len(data)} images of "
          f"{len(data.classes)} classes in {record['train_wall_s']:.0f} s -> {out}")
    print(f"training-set macro-F1 {m['macro_f1']:.3f} (optimistic: seen images)")
    if args.cv:
        c, used, why = (record["cv"][k] for k in ("metrics", "n_splits", "folds_note"))
        fewer = f" (reduced from --cv {args.cv}: {why})" if used < args.cv else ""
        print(f"{used}-fold group CV{fewer}: accuracy {c['accuracy']:.3f}, balanced accuracy "
              f"{c['balanced_accuracy']:.3f}, macro-F1 {c['macro_f1']:.3f}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from vit_facemap.classifier import FacialStateClassifier, classification_metrics, load_frames
    from vit_facemap.runinfo import check_outputs_apart, describe, timed, write_json
    from vit_facemap.states import read_image_set

    out = Path(args.json)
    # the set's files (groups.csv, eyes.csv, images) and the run's are never results to replace
    check_outputs_apart({"--json": out}, inputs=[("--groups", args.groups)],
                        folders=[("the run folder", args.run_dir, is_classifier_file),
                                 ("the --data set", args.data, _is_class_set_file)])
    if out.is_dir():
        raise DataError("--json is a folder; give a file name for the metrics", out)
    if out.exists() and not args.overwrite:
        raise RunExistsError(out)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise DataError("no such run folder", run_dir)
    clf = FacialStateClassifier.load(run_dir)
    data = read_image_set(args.data, groups=args.groups, group_regex=args.group_regex,
                          classes=clf.classes)
    frames = load_frames(data.paths, progress=not args.quiet)
    with timed() as t:
        proba = clf.predict_proba(frames)
    metrics = classification_metrics(data.labels, proba.argmax(1), clf.classes, data.groups)
    metrics["predictions"] = [
        {"image": n, "true": clf.classes[y], "predicted": clf.classes[p],
         "probabilities": [round(float(v), 4) for v in pr]}
        for n, y, p, pr in zip(data.names, data.labels, proba.argmax(1), proba, strict=True)]
    metrics["provenance"] = describe(clf.config, "cpu", run=str(run_dir.resolve()),
                                     data=str(Path(args.data).resolve()),
                                     predict_wall_s=t["wall_s"])
    write_json(metrics, out)
    print(f"{len(data)} images: accuracy {metrics['accuracy']:.3f}, balanced accuracy "
          f"{metrics['balanced_accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} -> {out}")
    return 0


def run_make_set(args: argparse.Namespace) -> int:
    import numpy as np

    from vit_facemap.states import write_pupil_state_set

    s = write_pupil_state_set(args.labels, args.out, overwrite=args.overwrite,
                              constricted_below=args.constricted_below,
                              dilated_above=args.dilated_above)
    counts = np.bincount(s.labels, minlength=len(s.classes))
    print(", ".join(f"{n} {c}" for c, n in zip(s.classes, counts, strict=True))
          + f" frames of {len(set(s.groups.tolist()))} animals -> {args.out}")
    return 0
