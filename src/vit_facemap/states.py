"""Facial states as image classes: pupil-state labels and class-folder image sets.

A class-folder set is what any lab can make by hand: ``DIR/<class>/<image>``, with an
optional ``DIR/groups.csv`` (``image,group``: the animal or session of each image, for
group-aware cross-validation) and an optional ``DIR/eyes.csv`` (``image,x,y,width``: the
eye centre and width in pixels, used to train the eye locator of eye-crop classifiers).
``image`` in both tables is the path relative to ``DIR`` (``dilated/a.png``), or a bare
file name where no other image of the set has that name.

The pupil-state task of the Schroeder mice is derived from hand-placed keypoints: a frame
is *constricted* when pupil diameter / eye width < 0.25 and *dilated* when > 0.35; frames
in between are left out so the two classes are separated by a margin.
"""

from __future__ import annotations

import csv
import re
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from vit_facemap.dlc import LabeledFrames, read_labels
from vit_facemap.errors import DataError, DataWarning, RunExistsError, not_utf8
from vit_facemap.images import IMAGE_SUFFIXES
from vit_facemap.measures import facial_measures
from vit_facemap.runinfo import check_folder
from vit_facemap.splits import groups_for

CONSTRICTED_BELOW = 0.25
DILATED_ABOVE = 0.35
EYELID_POINTS = ("lefteyelid", "righteyelid", "dorsaleyelid", "ventraleyelid")
G7C1_EYE_POINTS = ("eyetop", "eyefront", "eyebottom", "eyeback")
PUPIL_POINTS = ("leftpupil", "rightpupil", "dorsalpupil", "ventralpupil")
BETWEEN = ".between"  # frames between the thresholds: no class, measures only (hidden folder)

@dataclass
class ImageSet:
    """Images with class labels, optional groups and optional eye boxes."""

    root: Path
    paths: list[Path]
    labels: np.ndarray  # int class index per image
    classes: list[str]
    groups: np.ndarray  # str group per image ("" when unknown)
    eyes: np.ndarray | None = None  # (N, 3) x, y, width; NaN rows where unknown

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def names(self) -> list[str]:
        return [p.relative_to(self.root).as_posix() for p in self.paths]

    def subset(self, rows: Sequence[int] | np.ndarray) -> ImageSet:
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return ImageSet(self.root, [self.paths[i] for i in rows], self.labels[rows],
                        list(self.classes), self.groups[rows],
                        None if self.eyes is None else self.eyes[rows])


def pupil_states(frames: LabeledFrames, constricted_below: float = CONSTRICTED_BELOW,
                 dilated_above: float = DILATED_ABOVE) -> np.ndarray:
    """Per frame ``"constricted"``, ``"dilated"`` or ``""`` (between thresholds or unmeasurable)."""
    if constricted_below > dilated_above:
        # swapped thresholds: a frame between them is both, and was called dilated (the
        # second rule) without a word, whatever --constricted-below said
        raise DataError(f"the constricted threshold ({constricted_below:g}) is above the dilated "
                        f"one ({dilated_above:g}): a frame between them would be both states; "
                        "give --constricted-below at most --dilated-above")
    ratio = facial_measures(frames.keypoints, frames.bodyparts)
    if "pupil_eye_ratio" not in ratio:
        raise DataError(
            "pupil states need leftpupil, rightpupil, dorsalpupil, ventralpupil, lefteyelid "
            f"and righteyelid keypoints; this set has {frames.bodyparts}", frames.root)
    r = ratio["pupil_eye_ratio"].to_numpy()
    out = np.full(len(r), "", dtype=object)
    out[r < constricted_below] = "constricted"
    out[r > dilated_above] = "dilated"
    return out


def eye_boxes(keypoints: np.ndarray, bodyparts: Sequence[str]) -> np.ndarray:
    """(N, 3) eye centre x, y and eye width from eyelid (or g7c1 eye) keypoints; NaN if missing."""
    m = facial_measures(keypoints, bodyparts)
    key = [re.sub(r"[\s_\-]+", "", b.lower()) for b in bodyparts]
    names = EYELID_POINTS if all(n in key for n in EYELID_POINTS) else G7C1_EYE_POINTS
    if not all(n in key for n in names) or "eye_width" not in m:
        raise ValueError(f"no eyelid or eye keypoints among {list(bodyparts)}")
    idx = [key.index(n) for n in names]
    centre = np.asarray(keypoints, float)[:, idx].mean(axis=1)
    return np.column_stack([centre, m["eye_width"].to_numpy()])


def geometry_measures(keypoints: np.ndarray, bodyparts: Sequence[str]) -> dict[str, np.ndarray]:
    """Crop-independent pupil geometry per frame, the targets of a ViT's geometry head.

    ``ratio`` (pupil diameter / eye width, what the classes threshold), ``pupil_horizontal``
    and ``pupil_vertical`` (over eye width), and each pupil and eyelid keypoint as
    ``<name>_x``, ``<name>_y`` in eye widths from the eye-box centre (:func:`eye_boxes`).
    """
    m = facial_measures(keypoints, bodyparts)
    boxes = eye_boxes(keypoints, bodyparts)
    w = boxes[:, 2]
    out = {"ratio": m["pupil_eye_ratio"].to_numpy(),
           "pupil_horizontal": m["pupil_horizontal"].to_numpy() / w,
           "pupil_vertical": m["pupil_vertical"].to_numpy() / w}
    key = [re.sub(r"[\s_\-]+", "", b.lower()) for b in bodyparts]
    kp = np.asarray(keypoints, float)
    for name in PUPIL_POINTS + EYELID_POINTS:
        i = key.index(name)
        out[f"{name}_x"] = (kp[:, i, 0] - boxes[:, 0]) / w
        out[f"{name}_y"] = (kp[:, i, 1] - boxes[:, 1]) / w
    return out


@dataclass
class SetMeasures:
    """A set's measures.csv: geometry per class image, and images without a class.

    ``values`` (N, M) follow the set's image order (NaN where an image has no row);
    ``extra_*`` are images listed in the table outside the class folders (for the pupil
    task: frames between the thresholds, in ``.between/``), usable as regression targets.
    """

    names: list[str]
    values: np.ndarray
    extra_paths: list[Path]
    extra_values: np.ndarray
    extra_eyes: np.ndarray
    extra_groups: np.ndarray


def eyelid_regions(keypoints: np.ndarray, bodyparts: Sequence[str],
                   pad: float = 0.1) -> np.ndarray:
    """(N, 4) box x0, y0, x1, y1 around the eyelid (or eye) keypoints, padded by ``pad`` eye widths."""
    key = [re.sub(r"[\s_\-]+", "", b.lower()) for b in bodyparts]
    names = EYELID_POINTS if all(n in key for n in EYELID_POINTS) else G7C1_EYE_POINTS
    if not all(n in key for n in names):
        raise ValueError(f"no eyelid or eye keypoints among {list(bodyparts)}")
    pts = np.asarray(keypoints, float)[:, [key.index(n) for n in names]]
    width = eye_boxes(keypoints, bodyparts)[:, 2:3]
    return np.concatenate([pts.min(1) - pad * width, pts.max(1) + pad * width], axis=1)


# what write_pupil_state_set writes beside its class folders (and .between)
PUPIL_SET_TABLES = ("groups.csv", "eyes.csv", "regions.csv", "measures.csv")


def _not_ours(out: Path) -> str | None:
    """Why the non-empty folder ``out`` is not a set written here (None: it is one).

    groups.csv alone is no proof: a user's own class-folder set has one (``classify train``
    reads it), and was deleted whole. A generated set holds synthetic.json; one of
    write_pupil_state_set only its tables and frames named ``<class>/<video>__<image>``.
    """
    if (out / "synthetic.json").is_file():
        return None
    if not (out / "groups.csv").is_file():
        return "no groups.csv"
    for p in sorted(out.iterdir()):
        if p.is_file() and p.name in PUPIL_SET_TABLES:
            continue
        if not (p.is_dir() and p.name in ("constricted", "dilated", BETWEEN)):
            return f"it holds {p.name}"
        for f in sorted(p.iterdir()):
            if not (f.is_file() and "__" in f.name):
                return f"it holds {f.relative_to(out)}"
    return None


def _check_set_folder(out: Path, overwrite: bool) -> None:
    """Refuse an existing folder ``out`` unless ``overwrite`` and it is a set written here."""
    if out.exists():
        if not overwrite:
            raise RunExistsError(out)
        why = _not_ours(out) if any(out.iterdir()) else None
        if why is not None:
            raise DataError("refusing to overwrite a folder that is not a class-folder set "
                            f"written by vit-facemap ({why})", out)


def write_pupil_state_set(labels: str | Path, out: str | Path, *, overwrite: bool = False,
                          constricted_below: float = CONSTRICTED_BELOW,
                          dilated_above: float = DILATED_ABOVE) -> ImageSet:
    """Write the pupil-state task of a DeepLabCut set as a class-folder set.

    ``out/constricted/*.png``, ``out/dilated/*.png`` (copies of the frames, named
    ``<video>__<image>``), ``out/groups.csv`` (animal of each frame: from ``animals.csv``
    beside the labels, else the session names, as :func:`~vit_facemap.splits.groups_for`
    gives them), ``out/eyes.csv``
    (eye centre and width from the eyelid keypoints) and ``out/regions.csv`` (the eyelid
    keypoints' box, padded by 0.1 eye width: where attention maps should point) and
    ``out/measures.csv`` (:func:`geometry_measures` of every measurable frame, with its
    group and eye box; frames between the thresholds are copied to ``out/.between/``,
    which class-folder readers skip, and serve only as regression targets). Refuses to
    touch an existing ``out`` unless ``overwrite``.
    """
    frames = read_labels(labels)
    states = pupil_states(frames, constricted_below, dilated_above)
    eyes = eye_boxes(frames.keypoints, frames.bodyparts)
    regions = eyelid_regions(frames.keypoints, frames.bodyparts)
    geometry = geometry_measures(frames.keypoints, frames.bodyparts)
    # animals.csv as every other split reads it: the session names alone kept two sessions of
    # one animal apart (mouseA_morning, mouseA_evening), and group CV held one out while
    # training on the other
    animals = groups_for(frames, "animal")
    out = Path(out)
    # refused with or without overwrite: clearing a folder that holds the labeled set (a
    # generated one passes as ours, by its synthetic.json) deleted the frames and table read
    # above, and the copy then stopped at the first frame it could no longer find
    if any(Path(p).resolve().is_relative_to(out.resolve()) for p in (frames.root, labels)):
        raise DataError(f"holds the labeled set {labels}, an input of this command; writing "
                        "the pupil set here would delete it: give another folder", out)
    # an OUT that is a file (or under one) was asked to be overwritten first, then failed
    # with "[Errno 20] Not a directory"
    check_folder(out, "OUT")
    # a set with one class only (one animal, all constricted) was written, then refused on
    # reading it back, naming OUT: a failed command left a set to --overwrite, or had
    # replaced a good one; refused here before anything is written
    counts = {c: int((states == c).sum()) for c in ("constricted", "dilated")}
    if min(counts.values()) == 0:
        raise DataError(
            f"{counts['constricted']} constricted (ratio < {constricted_below}) and "
            f"{counts['dilated']} dilated (ratio > {dilated_above}) frames: a pupil set needs "
            "both; add animals or sessions that show the other state, or move the thresholds "
            "(--constricted-below, --dilated-above)", labels)
    _check_set_folder(out, overwrite)  # replaced once the new set is whole
    # written beside OUT and renamed when whole: an interrupted run left OUT without its
    # tables, which 'classify train' read as a set (of the frames copied so far, no groups)
    # and --overwrite refused as not a set of ours
    part = out.parent / f".{out.name}.partial"
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    try:
        rows, between, measure_rows = [], [], []
        for i, (rel, state) in enumerate(zip(frames.index, states, strict=True)):
            values = [geometry[k][i] for k in geometry]
            if not state and not (np.isfinite(values).all() and np.isfinite(eyes[i]).all()):
                continue  # unmeasurable frames get no class and no measures
            folder = state or BETWEEN
            src = frames.root / rel
            if not src.is_file():
                raise DataError("image file is missing", src)
            video = frames.videos[i]
            name = f"{folder}/{video}__{PurePosixPath(rel).name}"
            (part / folder).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, part / name)
            measure_rows.append((name, animals[i], *eyes[i], *values))
            if state:
                rows.append((name, animals[i], *eyes[i], *regions[i]))
            else:
                between.append(name)
        with open(part / "groups.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image", "group"])
            w.writerows(r[:2] for r in rows)
        with open(part / "eyes.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image", "x", "y", "width"])
            w.writerows([r[0], f"{r[2]:.3f}", f"{r[3]:.3f}", f"{r[4]:.3f}"] for r in rows)
        with open(part / "regions.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image", "x0", "y0", "x1", "y1"])
            w.writerows([r[0], *(f"{v:.2f}" for v in r[5:9])] for r in rows)
        with open(part / "measures.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image", "group", "x", "y", "width", *geometry])
            w.writerows([r[0], r[1], *(f"{v:.3f}" for v in r[2:5]), *(f"{v:.5f}" for v in r[5:])]
                        for r in measure_rows)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    # the set it replaces (checked above) goes only now: interrupted or failed, --overwrite
    # had deleted it before the first frame was copied
    if out.exists():
        shutil.rmtree(out)
    part.rename(out)
    return read_image_set(out)


def _read_table(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            have = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in columns if c not in have]
            if missing:
                raise DataError(f"table needs columns {list(columns)}, missing {missing} "
                                f"(found {have})", path)
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    except UnicodeDecodeError as exc:
        raise not_utf8(exc, path) from None
    key = columns[0] if columns else None
    if key is not None:
        for row in rows:
            # as images are named: ./dilated/a.png (from `find .`) or dilated//a.png is the
            # same image as dilated/a.png
            if row[key]:
                row[key] = PurePosixPath(row[key]).as_posix()
        seen: dict[str, dict[str, str]] = {}
        for row in rows:
            if row[key] in seen and seen[row[key]] != row:
                raise DataError(f"{row[key]} has two different rows", path)
            seen[row[key]] = row
    return rows


def _warn_unmatched(table: list[dict[str, str]], rows: dict, path: Path) -> None:
    """A table row that names no image of the set is likely a typo or a moved file."""
    used = {r["image"] for r in rows.values()}
    unmatched = [r["image"] for r in table if r["image"] not in used]
    if unmatched:
        warnings.warn(f"{path}: {len(unmatched)} row(s) name no image of the set, e.g. "
                      f"{unmatched[0]}", DataWarning, stacklevel=3)


def _lookup(table: list[dict[str, str]], key: str, names: list[str], path: Path) -> dict:
    """Map table rows to images by relative path; a row that gives a bare file name
    (``a.png``) names the one image of the set with that name, if only one has it."""
    by_rel = {r[key]: r for r in table}
    # a row with a folder part names that image and no other: dilated/img001.png missing
    # from the table must not take constricted/img001.png's group (another animal's)
    bare = {r[key]: r for r in table if len(PurePosixPath(r[key]).parts) == 1}
    name_count: dict[str, int] = {}
    for n in names:
        name_count[PurePosixPath(n).name] = name_count.get(PurePosixPath(n).name, 0) + 1
    out = {}
    for n in names:
        row = by_rel.get(n)
        name = PurePosixPath(n).name
        if row is None and name_count[name] == 1:
            row = bare.get(name)
        if row is not None:
            out[n] = row
    return out


def read_image_set(root: str | Path, *, groups: str | Path | None = None,
                   group_regex: str | None = None,
                   classes: Sequence[str] | None = None) -> ImageSet:
    """Read a class-folder set ``root/<class>/<image>``.

    Groups come from ``groups`` (CSV ``image,group``; default ``root/groups.csv`` when it
    exists) or from ``group_regex`` applied to each image's relative path (its first
    capture group, or the whole match). ``classes`` fixes the class order (a trained
    model's); by default the sorted folder names.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError("no such folder (expected class folders DIR/<class>/<image>)", root)
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    folders = [d for d in found if any(p.suffix.lower() in IMAGE_SUFFIXES
                                       for p in (root / d).iterdir())]
    if classes is None:
        classes = folders
        if len(classes) < 2:
            # a keypoint set (DeepLabCut's layout) is the likely mistake: say how to make one
            hint = ("; this is a keypoint set: 'vit-facemap classify make-pupil-set' writes its "
                    "pupil-state task as class folders" if any(
                        (root / n).exists() for n in ("labeled-data", "CollectedData.csv"))
                    else "")
            raise DataError(f"need at least two class folders holding images, found {folders}"
                            f"{hint}", root)
        # a class whose images were not copied yet, or went elsewhere, would vanish unseen
        for d in found:
            if d not in folders:
                warnings.warn(f"{root / d}: no images ({', '.join(IMAGE_SUFFIXES)}) in this "
                              "folder; it is not a class of the set", DataWarning, stacklevel=2)
    classes = list(classes)
    unknown = sorted(set(folders) - set(classes))
    if unknown:
        raise DataError(f"class folders {unknown} are not among the model's classes {classes}",
                        root)
    paths, labels = [], []
    for c, name in enumerate(classes):
        if not (root / name).is_dir():
            continue
        for p in sorted((root / name).iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(p)
                labels.append(c)
    if not paths:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders", root)
    names = [p.relative_to(root).as_posix() for p in paths]
    group = np.full(len(paths), "", dtype=object)
    if group_regex:
        try:
            rx = re.compile(group_regex)
        except re.error as exc:
            raise DataError(f"bad --group-regex {group_regex!r}: {exc}") from exc
        for i, n in enumerate(names):
            m = rx.search(n)
            if m is None:
                raise DataError(f"--group-regex {group_regex!r} does not match this image",
                                paths[i])
            group[i] = m.group(1) if rx.groups else m.group(0)
            if group[i] is None:
                # an optional first group that took no part: every such image was group
                # None, one animal "None" for cross-validation
                raise DataError(f"--group-regex {group_regex!r} matches this image without its "
                                "first group taking part; make that group match every image",
                                paths[i])
    else:
        gfile = Path(groups) if groups else root / "groups.csv"
        if groups and not gfile.is_file():
            raise DataError("groups table is missing", gfile)
        if gfile.is_file():
            table = _read_table(gfile, ["image", "group"])
            rows = _lookup(table, "image", names, gfile)
            missing = [n for n in names if n not in rows]
            if missing:
                raise DataError(f"{len(missing)} image(s) have no row, e.g. {missing[0]}", gfile)
            lacking = [n for n in names if not rows[n]["group"]]
            if lacking:
                raise DataError(f"{len(lacking)} image(s) have no group, e.g. {lacking[0]}",
                                gfile)
            _warn_unmatched(table, rows, gfile)
            group = np.array([rows[n]["group"] for n in names], dtype=object)
    eyes = None
    efile = root / "eyes.csv"
    if efile.is_file():
        rows = _lookup(_read_table(efile, ["image", "x", "y", "width"]), "image", names, efile)
        missing = [n for n in names if n not in rows]
        if missing:  # no box for them: only eye crops need one, and they say so
            warnings.warn(f"{efile}: {len(missing)} image(s) have no row, e.g. {missing[0]}",
                          DataWarning, stacklevel=2)
        eyes = np.full((len(names), 3), np.nan)
        for i, n in enumerate(names):
            if n in rows:
                try:
                    eyes[i] = [float(rows[n][k]) for k in ("x", "y", "width")]
                except ValueError as exc:
                    raise DataError(f"eye box of {n} is not numeric: {exc}", efile) from exc
                # NaN: no box for this image (an eyelid point was not labeled); a box that
                # is there must be usable
                if not np.isnan(eyes[i]).any() and (not np.isfinite(eyes[i]).all()
                                                    or not eyes[i, 2] > 0):
                    raise DataError(f"eye box of {n} needs finite x, y and a width > 0, got "
                                    f"{rows[n]['x']}, {rows[n]['y']}, {rows[n]['width']}", efile)
    return ImageSet(root, paths, np.asarray(labels, dtype=np.int64), classes,
                    np.asarray(group, dtype=object), eyes)


def require_eye_boxes(image_set: ImageSet, why: str) -> None:
    """Refuse a set in which an image has no eye box (eyes.csv), naming how many and one;
    ``why`` says what needs them."""
    lacking = [n for n, e in zip(image_set.names, image_set.eyes, strict=True)
               if not np.isfinite(e).all()]
    if lacking:
        raise DataError(f"{len(lacking)} image(s) have no eye box, e.g. {lacking[0]}; {why}",
                        image_set.root / "eyes.csv")


def write_generated_state_set(out: str | Path, n_frames: int = 48, task: str = "pupil",
                              n_videos: int = 4, seed: int = 0, *,
                              size: tuple[int, int] = (160, 120),
                              overwrite: bool = False) -> ImageSet:
    """A class-folder set of generated frames (Schroeder layout) for a state task, read back.

    :func:`vit_facemap.synthetic.write_state_set` writes the images, ``groups.csv`` (the
    video), ``eyes.csv`` (from the generated eyelid keypoints) and ``regions.csv``: the
    region whose appearance carries the class, which an attention map should point at.
    Unlike that writer, an existing folder is replaced as a whole with ``overwrite`` (so no
    stale class folder survives), and only when it is a set written by vit-facemap.
    """
    from vit_facemap.synthetic import write_state_set

    out = Path(out)
    _check_set_folder(out, overwrite)
    if out.exists():
        shutil.rmtree(out)
    write_state_set(out, n_frames, task, n_videos, seed, size=size, layout="schroeder")
    return read_image_set(out)


def read_measures(image_set: ImageSet, path: str | Path | None = None, *,
                  eye_boxes: bool = True) -> SetMeasures | None:
    """The set's ``measures.csv`` (default: in its folder), or None when there is none.

    Columns: ``image`` (path relative to the set), optional ``group``, ``x``, ``y``,
    ``width`` (eye box, needed for images outside the class folders by eye crops: refused
    without one unless ``eye_boxes`` is false, for whole-frame models), then numeric
    measures.
    """
    path = Path(path) if path else image_set.root / "measures.csv"
    if not path.is_file():
        return None
    table = _read_table(path, ["image"])
    fixed = {"image", "group", "x", "y", "width"}
    names = [k for k in (table[0] if table else {}) if k not in fixed]
    if not names:
        raise DataError("measures table has no measure columns besides image, group, x, y, "
                        "width", path)

    def numbers(row: dict[str, str], keys: Sequence[str]) -> list[float]:
        try:
            return [float(row[k]) if row.get(k, "") != "" else np.nan for k in keys]
        except ValueError as exc:
            raise DataError(f"measures of {row['image']} are not numeric: {exc}", path) from exc

    rows = _lookup(table, "image", image_set.names, path)
    values = np.full((len(image_set), len(names)), np.nan)
    for i, n in enumerate(image_set.names):
        if n in rows:
            values[i] = numbers(rows[n], names)
    known = set(image_set.names)
    extra = [r for r in table if r["image"] not in known
             and PurePosixPath(r["image"]).parts[0] not in image_set.classes
             and (image_set.root / r["image"]).is_file()]
    if not rows and not extra:
        raise DataError("no row names an image of the set (image paths are relative to the "
                        f"set's folder, e.g. {image_set.names[0]})", path)
    extra_eyes = np.array([numbers(r, ("x", "y", "width")) for r in extra]).reshape(len(extra), 3)
    # the ViT crops these images around their box: one without (an empty x) crashed it with
    # "cannot convert float NaN to integer", after the eye locator had trained
    # (a whole-frame model does not crop them: it read such tables before, and still does)
    bad = [r["image"] for r, e in zip(extra, extra_eyes, strict=True)
           if eye_boxes and not (np.isfinite(e).all() and e[2] > 0)]
    if bad:
        raise DataError(f"{len(bad)} image(s) outside the class folders need an eye box (finite "
                        f"x, y and a width > 0), e.g. {bad[0]}", path)
    return SetMeasures(
        names, values, [image_set.root / r["image"] for r in extra],
        np.array([numbers(r, names) for r in extra]).reshape(len(extra), len(names)),
        extra_eyes, np.array([r.get("group", "") for r in extra], dtype=object))


def read_regions(image_set: ImageSet, path: str | Path | None = None) -> np.ndarray | None:
    """(N, 4) boxes x0, y0, x1, y1 from ``regions.csv`` (default: in the set's folder), or None."""
    path = Path(path) if path else image_set.root / "regions.csv"
    if not path.is_file():
        return None
    table = _read_table(path, ["image", "x0", "y0", "x1", "y1"])
    rows = _lookup(table, "image", image_set.names, path)
    if table and not rows:
        # every image without a region: the study reported no attention mass, without a word
        raise DataError("no row names an image of the set (image paths are relative to the "
                        f"set's folder, e.g. {image_set.names[0]})", path)
    out = np.full((len(image_set), 4), np.nan)
    for i, n in enumerate(image_set.names):
        if n in rows:
            try:
                out[i] = [float(rows[n][k]) for k in ("x0", "y0", "x1", "y1")]
            except ValueError as exc:
                # a bare "could not convert string to float: ''" named neither file nor row
                raise DataError(f"region of {n} is not numeric: {exc} (an image without a "
                                "region needs no row)", path) from exc
            x0, y0, x1, y1 = out[i]
            # corners swapped had no area: no map mass in it, and a chance of 0 or above 0
            if np.isfinite(out[i]).all() and not (x1 > x0 and y1 > y0):
                raise DataError(f"region of {n} needs x0 < x1 and y0 < y1 (corners top-left, "
                                f"then bottom-right), got {x0:g}, {y0:g}, {x1:g}, {y1:g}", path)
    return out
