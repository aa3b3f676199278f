"""The interpretation study: HOG + RF vs ViT, leave-animals-out, and checks of their maps.

:func:`run_study` cross-validates both classifiers on a class-folder set (every group, an
animal, held out once; the two models share each fold's eye locator, so they see the same
eye locations, each through its own crop width), then checks what each model looks at on the held-out frames:

- *attention mass*: the share of the map inside the region that carries the state
  (``regions.csv``: for the pupil task the eyelid keypoints' box, padded), against that
  region's share of the model's view (what a uniform map would give: chance);
- *deletion*: the probability of the predicted class as the most-attended grid cells are
  blanked first, against random orders (the control); a lower area under the curve means
  the map found what the model relies on.

For the ViT the map is attention rollout (per image); for the forest it is the feature
importances summed per HOG cell (one map for all images: a forest has no per-image
attention).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from vit_facemap.classifier import (
    MARGIN,
    ClassifierConfig,
    CrossValidation,
    FacialStateClassifier,
    center_view,
    cross_validate,
    load_frames,
    profile_config,
)
from vit_facemap.config import check_fields
from vit_facemap.rollout import (
    HEAD_FUSIONS,
    attention_rollout,
    curve_auc,
    deletion_curve,
    mass_in_box,
)
from vit_facemap.states import (
    ImageSet,
    read_image_set,
    read_measures,
    read_regions,
    require_eye_boxes,
)


@dataclass
class StudySettings:
    profile: str = "default"
    n_splits: int = 4
    seed: int = 0
    deletion_steps: int = 16
    random_orders: int = 3
    head_fusion: str = "mean"
    discard_ratio: float = 0.0
    max_map_images: int = 400  # maps and deletion curves on at most this many held-out images
    use_measures: bool = True  # train the ViT's geometry head on the set's measures.csv
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # checked before any fold trains: an unknown head fusion failed only when the maps
        # were drawn, after the whole cross-validation; no deletion steps scored every
        # curve 0, no random orders a control of NaN
        check_fields(self, "study")
        if self.head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"unknown head_fusion {self.head_fusion!r}; choose one of "
                             f"{', '.join(HEAD_FUSIONS)}")
        if not 0 <= self.discard_ratio < 1:
            raise ValueError(f"discard_ratio must be in [0, 1), got {self.discard_ratio}")
        for name in ("n_splits", "deletion_steps", "random_orders"):
            least = 2 if name == "n_splits" else 1
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be at least {least}, got {getattr(self, name)}")
        if self.max_map_images < 0:
            raise ValueError(f"max_map_images must be 0 or more, got {self.max_map_images}")
        # run_study sets these itself: a bare TypeError ("got multiple values for keyword
        # argument 'seed'") came from profile_config
        taken = {"seed": "the study's seed (--seed of benchmarks/classify.py) seeds every "
                         "classifier", "model": "run_study's models choose the classifiers"}
        for key in taken.keys() & self.overrides.keys():
            raise ValueError(f"overrides may not set {key!r}: {taken[key]}")


@dataclass
class Study:
    settings: StudySettings
    data: ImageSet
    frames: list[np.ndarray]
    configs: dict[str, ClassifierConfig]
    cv: CrossValidation
    regions: np.ndarray | None
    maps: dict[str, dict[str, Any]]
    summary: dict[str, Any]


def view_box(region: np.ndarray, eye: np.ndarray, factor: float, size: int) -> np.ndarray:
    """A frame-pixel box (x0, y0, x1, y1) in the coordinates of the model's view of side ``size``."""
    x, y, w = eye
    side = factor * w
    scale = size / side
    return np.array([(region[0] - (x - side / 2)) * scale, (region[1] - (y - side / 2)) * scale,
                     (region[2] - (x - side / 2)) * scale, (region[3] - (y - side / 2)) * scale])


def _vit_maps(clf: FacialStateClassifier, crops: np.ndarray, st: StudySettings,
              rng: np.random.Generator) -> dict[str, np.ndarray]:
    x = clf.inputs(crops)
    models = [m for m, _ in clf.vits]
    # an ensemble's map is the mean of its members' maps; its prediction the mean probability
    rolled = [attention_rollout(m, x, st.head_fusion, st.discard_ratio) for m in models]
    maps = np.mean([r.maps for r in rolled], axis=0)

    def predict(stack: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            xs = torch.from_numpy(stack)[:, None]
            return np.mean([m(xs).softmax(-1).numpy() for m in models], axis=0)

    images = [x[i, 0].numpy() for i in range(len(crops))]
    target = predict(np.stack(images)).argmax(1)
    out = {"maps": maps, "target": target, "aucs": [], "random_aucs": [], "curves": [],
           "random_curves": [], "shift": rolled[0].shift}
    return _deletion_checks(out, predict, images, list(maps), target, [0.0] * len(images),
                            st, rng)


def _forest_maps(clf: FacialStateClassifier, crops: np.ndarray, st: StudySettings,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    from vit_facemap.hog import hog_features

    imp = clf.hog_importance_map()
    imp = imp / imp.sum()
    views = center_view(crops, clf.config.hog_size)

    def predict(stack: np.ndarray) -> np.ndarray:
        return clf.model.predict_proba(hog_features(np.clip(stack, 0, 255).astype(np.uint8),
                                                    clf.hog_config))

    proba = predict(views.astype(np.float32))
    target = proba.argmax(1)
    out = {"maps": np.repeat(imp[None], len(views), 0), "target": target, "aucs": [],
           "random_aucs": [], "curves": [], "random_curves": [], "shift": 0.0}  # HOG cells
    return _deletion_checks(out, predict, list(views), [imp] * len(views), target,
                            [float(v.mean()) for v in views], st, rng)


def _deletion_checks(out: dict, predict, images: list[np.ndarray], maps: list[np.ndarray],
                     targets: np.ndarray, fills: list[float], st: StudySettings,
                     rng: np.random.Generator) -> dict:
    """Deletion curve per image in map order and in ``st.random_orders`` random orders."""
    frac = np.zeros(0)
    shift = out["shift"]
    for img, m, t, fill in zip(images, maps, targets, fills, strict=True):
        frac, p = deletion_curve(predict, img, m, int(t), fill, st.deletion_steps, shift=shift)
        rand = [deletion_curve(predict, img, m, int(t), fill, st.deletion_steps,
                               order=rng.permutation(m.size), shift=shift)[1]
                for _ in range(st.random_orders)]
        out["curves"].append(p)
        out["random_curves"].append(np.mean(rand, 0))
        out["aucs"].append(curve_auc(frac, p))
        out["random_aucs"].append(float(np.mean([curve_auc(frac, q) for q in rand])))
    out["fraction"] = frac
    return out


def check_maps(cv: CrossValidation, frames: list[np.ndarray], regions: np.ndarray | None,
               st: StudySettings, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Attention mass in the region and deletion curves for every model, on held-out images."""
    rng = np.random.default_rng(st.seed)
    n = len(cv.labels)
    chosen = np.sort(rng.permutation(n)[: st.max_map_images])
    results: dict[str, dict[str, Any]] = {}
    for name, models in cv.models.items():
        per: dict[str, list] = {"index": [], "maps": [], "target": [], "aucs": [],
                                "random_aucs": [], "curves": [], "random_curves": [],
                                "mass": [], "chance": []}
        frac = None
        for f, clf in enumerate(tqdm(models, desc=f"maps {name}", disable=not progress)):
            rows = chosen[cv.fold[chosen] == f]
            if not len(rows):
                continue
            fr = [frames[i] for i in rows]
            boxes = cv.boxes[rows] if clf.config.crop == "eye" else None
            crops = clf.crops(fr, boxes)
            res = (_vit_maps if clf.config.model == "vit" else _forest_maps)(clf, crops, st, rng)
            frac = res["fraction"]
            for k in ("maps", "target", "aucs", "random_aucs", "curves", "random_curves"):
                per[k].extend(list(res[k]))
            per["index"].extend(rows.tolist())
            for j, i in enumerate(rows):
                if regions is None or clf.config.crop != "eye" or not np.isfinite(regions[i]).all():
                    per["mass"].append(np.nan)
                    per["chance"].append(np.nan)
                    continue
                size = res["maps"][j].shape[0] * 8  # nominal view side; only ratios matter
                vb = view_box(regions[i], cv.boxes[i], clf.config.crop_factor, size)
                m, c = mass_in_box(res["maps"][j], vb, size, size, res["shift"])
                per["mass"].append(m)
                per["chance"].append(c)
        out = {k: np.asarray(v) for k, v in per.items()}
        out["fraction"] = frac
        out["shift"] = res["shift"] if frac is not None else 0.0  # for overlays of the maps
        results[name] = out
    return results


def summarize(cv: CrossValidation, maps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Metrics and map checks as plain numbers (what the benchmark writes as JSON)."""
    out: dict[str, Any] = {"classes": cv.classes, "n_images": int(len(cv.labels)),
                           "groups": sorted(set(cv.groups.tolist())),
                           "class_counts": np.bincount(cv.labels,
                                                       minlength=len(cv.classes)).tolist(),
                           "n_folds": cv.n_folds, "folds_note": cv.folds_note}
    if cv.boxes is not None:
        out["note_boxes"] = "eye crops at test time come from the fold's eye locator"
    for name, met in cv.metrics.items():
        m = maps.get(name, {})
        mass, chance = m.get("mass", np.array([])), m.get("chance", np.array([]))
        ok = np.isfinite(mass) & (chance > 0) if len(mass) else np.array([], bool)
        out[name] = {
            "accuracy": met["accuracy"], "balanced_accuracy": met["balanced_accuracy"],
            "macro_f1": met["macro_f1"], "confusion": met["confusion"], "labels": met["labels"],
            "per_group": met.get("per_group", {}), "wall_s": cv.wall_s[name],
            "map_images": int(len(m.get("aucs", []))),
            "attention_mass_in_region": float(np.mean(mass[ok])) if ok.any() else None,
            "region_share_chance": float(np.mean(chance[ok])) if ok.any() else None,
            "images_with_region_in_view": int(ok.sum()),
            "deletion_auc": float(np.mean(m["aucs"])) if len(m.get("aucs", [])) else None,
            "deletion_auc_random": float(np.mean(m["random_aucs"]))
            if len(m.get("random_aucs", [])) else None,
        }
    return out


def locator_error(found: np.ndarray | None, truth: np.ndarray) -> dict[str, float] | None:
    """How far the held-out eye boxes are from the labeled ones, in eye widths."""
    if found is None:
        return None
    ok = np.isfinite(found).all(1) & np.isfinite(truth).all(1)
    err = np.linalg.norm(found[ok, :2] - truth[ok, :2], axis=1) / truth[ok, 2]
    if not len(err):
        return None
    return {"median_centre_error_eye_widths": float(np.median(err)),
            "share_within_half_eye_width": float(np.mean(err < 0.5)),
            "share_within_one_eye_width": float(np.mean(err < 1.0)),
            "median_width_ratio": float(np.median(found[ok, 2] / truth[ok, 2]))}


def run_study(data_dir: str | Path, settings: StudySettings | None = None,
              models: tuple[str, ...] = ("hog-rf", "vit"), progress: bool = True,
              oracle_boxes: bool = False) -> Study:
    """Cross-validate the models on ``data_dir`` and check their maps (see module docstring)."""
    settings = settings or StudySettings()
    data = read_image_set(data_dir)
    if data.eyes is None:
        raise ValueError(f"{data_dir}: the study uses eye crops and needs eyes.csv")
    configs = {m: profile_config(settings.profile, model=m, seed=settings.seed,
                                 **settings.overrides) for m in models}
    if any(c.crop == "eye" for c in configs.values()):
        # the first fold's classifiers refused them, after its eye locator had trained, with
        # a message that named neither the table nor an image
        require_eye_boxes(data, "the study's eye-crop classifiers train on every image of the "
                                "set")
    # read before the training: a malformed regions.csv stopped the study after all of it
    regions = read_regions(data)
    frames = load_frames(data.paths, progress=progress)
    cv = cross_validate(frames, data.labels, data.groups, data.classes, configs, data.eyes,
                        n_splits=settings.n_splits, seed=settings.seed,
                        oracle_boxes=oracle_boxes, progress=progress,
                        measures=read_measures(data, eye_boxes=any(
                            c.crop == "eye" for c in configs.values()))
                        if settings.use_measures else None)
    maps = check_maps(cv, frames, regions, settings, progress)
    summary = summarize(cv, maps)
    summary["settings"] = asdict(settings)
    summary["oracle_boxes"] = oracle_boxes
    if oracle_boxes and "note_boxes" in summary:  # summarize's note is of the locator's boxes
        summary["note_boxes"] = "eye crops at test time come from the labeled eye boxes"
    summary["view"] = {"crop_factor": {m: c.crop_factor for m, c in configs.items()},
                       "margin": MARGIN}
    summary["locator"] = locator_error(cv.boxes, data.eyes)
    return Study(settings, data, frames, configs, cv, regions, maps, summary)
