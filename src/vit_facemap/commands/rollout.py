"""``vit-facemap rollout RUN IMAGE... --out DIR``: attention maps of a classifier run.

For a ViT run: attention rollout (or its gradient-weighted, class-specific variant) over
the model's view of each image (the eye crop found by the run's eye locator, or the whole
frame). For a HOG + random forest run: the forest's feature importances per HOG cell.
Writes, per image, ``<name>_rollout.png`` (the map over the view) and ``<name>_map.npy``
(the raw grid map, summing to one), plus ``rollout.json`` (predictions, crop boxes,
settings).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vit_facemap.errors import DataError, RunExistsError

# images per rollout pass: each holds every layer's attention, and for --method gradient the
# whole autograd graph (about 0.8 and 2.3 MB an image with the default ViT), so a folder of
# thousands of frames in one pass ran out of memory
BATCH = 64


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "rollout", help="attention maps (rollout) of a classifier run on images",
        description="Attention rollout of a trained classifier on images: PNG overlays and "
                    "raw maps (.npy).",
    )
    p.add_argument("run_dir", metavar="RUN", help="run folder written by 'classify train'")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    p.add_argument("--out", required=True, help="folder to write overlays and maps into")
    p.add_argument("--method", choices=("rollout", "gradient"), default="rollout",
                   help="plain attention rollout, or gradient-weighted (class-specific)")
    p.add_argument("--head-fusion", choices=("mean", "max", "min"), default=None,
                   help="how the heads' attention is fused per layer (rollout method; default mean)")
    p.add_argument("--discard-ratio", type=float, default=0.0,
                   help="share of the weakest attention to drop per layer (never the CLS token)")
    p.add_argument("--target", default=None,
                   help="class to explain (gradient method; default: the predicted class)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier rollout's maps and rollout.json in --out (kept "
                        "until the new ones are written); other files there are refused")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    from PIL import Image

    from vit_facemap.classifier import FacialStateClassifier, center_view, load_frames
    from vit_facemap.commands.classify import is_classifier_file
    from vit_facemap.rollout import attention_rollout, gradient_rollout, overlay
    from vit_facemap.runinfo import (
        check_outputs_apart,
        check_parents,
        describe,
        is_set_aside,
        write_json,
        write_replacing,
    )

    if not 0 <= args.discard_ratio < 1:
        raise DataError(f"--discard-ratio must be in [0, 1), got {args.discard_ratio}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DataError("--out is a file; give a folder for the maps", out)
    check_parents(out)  # else found when writing, after the maps are made
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise RunExistsError(out)
        # --overwrite replaces an earlier rollout's files, never a folder of other things
        # (a class folder of images, say)
        # (a .replaced-* folder: an earlier rollout's files, left by a hard kill mid-write)
        others = [p.name for p in out.iterdir()
                  if not _is_result(p) and not is_set_aside(p.name)]
        if others:
            raise DataError(f"holds files that are not rollout results (e.g. {others[0]}); "
                            "choose another --out", out)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise DataError("no such run folder", run_dir)
    family = _tracker_family(run_dir)
    if family is not None:
        # the tracker's heatmaps come from patch tokens, not a CLS token and its classes:
        # its maps need a query token, which only the Python API takes
        cnn = family not in ("vit", "hybrid")
        raise DataError(
            "this is a keypoint-tracker run ('vit-facemap train'); 'rollout' explains classifier "
            "runs ('vit-facemap classify train'). "
            + (f"Its model (family {family}) is a CNN, which has no attention to roll out"
               if cnn else
               "For a ViT tracker use the Python API: model, _ = vit_facemap.train.load_run("
               f"{str(run_dir)!r}); vit_facemap.rollout.attention_rollout(model, x, "
               "query=TOKEN) (TOKEN: the row-major index of the patch token at a keypoint)"),
            run_dir)
    paths = [Path(p) for p in args.images]
    stems = _stems(paths)
    names = [n for stem in stems for n in (f"{stem}_rollout.png", f"{stem}_map.npy")]
    check_outputs_apart({f"--out's {n}": out / n for n in [*names, "rollout.json"]},
                        inputs=[("an image to explain", p) for p in paths],
                        folders=[("the run folder", run_dir, is_classifier_file)])
    clf = FacialStateClassifier.load(run_dir)
    if clf.config.model != "vit" and (args.method != "rollout" or args.target is not None
                                      or args.head_fusion is not None or args.discard_ratio):
        # a forest has one importance map for all images, nothing per class to follow (and no
        # attention to discard: --discard-ratio was ignored, and recorded as if it had acted)
        raise DataError("--method gradient, --target, --head-fusion and --discard-ratio are for "
                        "ViT runs; this run is a "
                        f"{clf.config.model} model (its map is the forest's importance per "
                        "HOG cell)", run_dir)
    # options of the other method would be recorded as if they had shaped the maps
    if args.method == "rollout" and args.target is not None:
        raise DataError("--target is for --method gradient: plain rollout follows the CLS "
                        "token's attention, the same for every class")
    if args.method == "gradient" and args.head_fusion is not None:
        raise DataError("--head-fusion is for --method rollout: the gradient method weights "
                        "each head by its gradient")
    head_fusion = args.head_fusion or "mean"
    target = None
    if args.target is not None:
        if args.target not in clf.classes:
            raise DataError(f"--target {args.target!r} is not one of the run's classes "
                            f"{clf.classes}")
        target = clf.classes.index(args.target)
    start = time.perf_counter()
    frames = load_frames(paths)
    boxes = clf.locate(frames) if clf.config.crop == "eye" else None
    crops = clf.crops(frames, boxes)
    proba = clf.predict_proba(frames, boxes)
    if clf.config.model == "vit":
        x = clf.inputs(crops)
        if args.method == "gradient" and target is None:
            # the class the run predicts (mirror averaging, geometry decisions included), so
            # the map explains the class reported next to it
            target = proba.argmax(1)
        def rollout_of(model, i: int):
            xb = x[i:i + BATCH]
            if args.method == "gradient":
                tb = target if np.ndim(target) == 0 else target[i:i + BATCH]
                return gradient_rollout(model, xb, target=tb, discard_ratio=args.discard_ratio)
            return attention_rollout(model, xb, head_fusion, args.discard_ratio)

        # an ensemble's map is the mean of its members' maps
        rolled = [[rollout_of(m, i) for i in range(0, len(x), BATCH)] for m, _ in clf.vits]
        maps = np.mean([np.concatenate([r.maps for r in parts]) for parts in rolled], axis=0)
        shift = rolled[0][0].shift
        views = center_view(crops, clf.config.image_size * 4)
        kind = f"attention {args.method}"
    else:
        imp = clf.hog_importance_map()
        maps = np.repeat((imp / imp.sum())[None], len(frames), 0)
        views = center_view(crops, clf.config.hog_size)
        kind = "forest importance per HOG cell"
        shift = 0.0
    wall_s = time.perf_counter() - start  # reading the images and making the maps
    out.mkdir(parents=True, exist_ok=True)
    # an earlier rollout's files (maps of other images too) are set aside, not mixed with
    # the new ones, and come back if writing these fails
    def write() -> None:
        records = []
        for i, (p, stem) in enumerate(zip(paths, stems, strict=True)):
            Image.fromarray(overlay(views[i], maps[i], shift=shift)).save(
                out / f"{stem}_rollout.png")
            np.save(out / f"{stem}_map.npy", maps[i].astype(np.float32))
            records.append({
                "image": str(p), "name": stem,
                "predicted": clf.classes[int(proba[i].argmax())],
                # the class the map is for (plain rollout and the forest: none)
                "explained": None if target is None else
                clf.classes[int(np.broadcast_to(target, (len(paths),))[i])],
                "probabilities": dict(zip(clf.classes, map(float, proba[i]), strict=True)),
                "eye_box": None if boxes is None else [float(v) for v in boxes[i]]})
        write_json(describe({"method": args.method,
                             "head_fusion": head_fusion if args.method == "rollout"
                             and clf.config.model == "vit" else None,
                             "discard_ratio": args.discard_ratio, "target": args.target},
                            "cpu", run=str(run_dir.resolve()), map=kind, wall_s=wall_s,
                            images=records),
                   out / "rollout.json")

    write_replacing(out, _is_result, write)
    print(f"{kind} maps of {len(paths)} image(s) -> {out}")
    return 0


def _tracker_family(run_dir: Path) -> str | None:
    """The model family of a keypoint-tracker run; None for anything else."""
    from vit_facemap.runinfo import TRACKER, run_config

    kind, meta = run_config(run_dir)
    if kind != TRACKER:
        return None
    model = meta["train"].get("model") if isinstance(meta["train"], dict) else None
    family = model.get("family") if isinstance(model, dict) else None
    return str(family) if family else "hybrid"  # ModelConfig's default family


def _stems(paths: list[Path]) -> list[str]:
    """Each image's name in the output files; ``_`` added for a name seen before (the same
    file name from different folders)."""
    stems: list[str] = []
    for p in paths:
        stem = p.stem
        while stem in stems:
            stem += "_"
        stems.append(stem)
    return stems


def _is_result(path: Path) -> bool:
    """A file this command writes (what ``--overwrite`` may replace)."""
    return path.is_file() and (path.name == "rollout.json"
                               or path.name.endswith(("_rollout.png", "_map.npy")))
