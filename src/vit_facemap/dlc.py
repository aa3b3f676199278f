"""Labeled frames in DeepLabCut's on-disk layout.

A labeled set is a folder holding ``CollectedData*.csv`` (and/or the matching ``.h5``)
and images under ``labeled-data/<video>/<image>``, or a DeepLabCut project, whose tables
sit one per video in ``labeled-data/<video>/`` (:func:`read_labels` joins them). The table has three header rows
(``scorer``, ``bodyparts``, ``coords``) and either three index columns
(``labeled-data``, video, image; DeepLabCut >= 2.2) or one column holding the
relative path (older projects). An empty cell is a keypoint the labeler could not
see: it stays NaN here and is masked out of losses and metrics, never set to zero.
A multi-animal table (a fourth header row, ``individuals``) is read when it holds one
individual; several individuals are refused.

Reading and writing go through pandas so that DeepLabCut, Facemap and other keypoint
tools read what we write. Validation of the images themselves lives in
``vit_facemap.validate``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from vit_facemap.errors import DataError, RunExistsError, first_line, not_utf8
from vit_facemap.images import IMAGE_SUFFIXES

H5_KEY = "df_with_missing"  # the key DeepLabCut uses for labels and predictions
H5_KEYS = (H5_KEY, "keypoints")  # labels keys read: DeepLabCut's, then napari-deeplabcut's
HEADER_NAMES = ("scorer", "bodyparts", "coords")
# what pandas reads as missing by default (its documented ``na_values``): applied to the
# coordinate cells only, so that a video or image named ``NA``, ``null`` or ``01`` is kept
NA_VALUES = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
             "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")


@dataclass
class LabeledFrames:
    """Hand-placed (or predicted) keypoints for a set of frames.

    ``keypoints`` has shape (n_frames, n_keypoints, 2) holding (x, y) in the image's
    own pixel coordinates (origin top-left), NaN where a keypoint is missing.
    ``index`` holds each frame's path relative to ``root`` in POSIX form
    (``labeled-data/<video>/<image>``).
    """

    root: Path
    index: list[str]
    keypoints: np.ndarray
    bodyparts: list[str]
    scorer: str = "vit-facemap"
    likelihood: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.index = [str(PurePosixPath(str(i).replace("\\", "/"))) for i in self.index]
        self.keypoints = np.asarray(self.keypoints, dtype=np.float64)
        self.bodyparts = [str(b) for b in self.bodyparts]
        n, k = len(self.index), len(self.bodyparts)
        if self.keypoints.shape != (n, k, 2):
            raise ValueError(
                f"keypoints must have shape (n_frames={n}, n_keypoints={k}, 2), "
                f"got {self.keypoints.shape}"
            )
        if self.likelihood is not None:
            self.likelihood = np.asarray(self.likelihood, dtype=np.float64)
            if self.likelihood.shape != (n, k):
                raise ValueError(f"likelihood must have shape ({n}, {k}), got {self.likelihood.shape}")

    def __len__(self) -> int:
        return len(self.index)

    @property
    def videos(self) -> np.ndarray:
        """The video (folder under ``labeled-data``) of each frame."""
        return np.array([video_of(i) for i in self.index])

    @property
    def image_paths(self) -> list[Path]:
        return [self.root / i for i in self.index]

    @property
    def missing(self) -> np.ndarray:
        """(n_frames, n_keypoints) boolean mask of missing keypoints."""
        return np.isnan(self.keypoints).any(axis=-1)

    def subset(self, rows: Sequence[int] | np.ndarray) -> LabeledFrames:
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return LabeledFrames(
            root=self.root,
            index=[self.index[i] for i in rows],
            keypoints=self.keypoints[rows].copy(),
            bodyparts=list(self.bodyparts),
            scorer=self.scorer,
            likelihood=None if self.likelihood is None else self.likelihood[rows].copy(),
        )

    def with_bodyparts(self, names: Sequence[str]) -> LabeledFrames:
        """The same frames with keypoints ``names`` (a subset of these, any order)."""
        names = [str(n) for n in names]
        unknown = [n for n in names if n not in self.bodyparts]
        if unknown:
            raise ValueError(f"no keypoint(s) {unknown} here; have {self.bodyparts}")
        cols = [self.bodyparts.index(n) for n in names]
        return LabeledFrames(
            root=self.root, index=list(self.index), keypoints=self.keypoints[:, cols].copy(),
            bodyparts=names, scorer=self.scorer,
            likelihood=None if self.likelihood is None else self.likelihood[:, cols].copy(),
        )

    def to_dataframe(self, three_level_index: bool = True) -> pd.DataFrame:
        """The table in DeepLabCut's layout (labels, or predictions when ``likelihood`` is set).

        The index has three columns (``labeled-data``, video, image) only when asked and every
        path reads ``labeled-data/<video>/<image>``; otherwise it is one column holding the
        path, the older layout that keeps any other path as it is (so the table reads back).
        """
        coords = ["x", "y"] if self.likelihood is None else ["x", "y", "likelihood"]
        columns = pd.MultiIndex.from_product(
            [[self.scorer], self.bodyparts, coords], names=list(HEADER_NAMES)
        )
        values = self.keypoints
        if self.likelihood is not None:
            values = np.concatenate([values, self.likelihood[..., None]], axis=-1)
        data = values.reshape(len(self), -1)
        parts = [PurePosixPath(i).parts for i in self.index]
        if three_level_index and all(len(p) == 3 and p[0] == "labeled-data" for p in parts):
            index = pd.MultiIndex.from_tuples(parts)
        else:
            index = pd.Index(self.index)
        return pd.DataFrame(data, index=index, columns=columns)


def video_of(relpath: str) -> str:
    """The video name of ``labeled-data/<video>/<image>`` (or ``<video>/<image>``)."""
    parts = PurePosixPath(relpath).parts
    if len(parts) >= 3 and parts[0] == "labeled-data":
        return parts[1]
    return parts[-2] if len(parts) >= 2 else ""


def _table_in(folder: Path) -> Path | None:
    """The ``CollectedData*.csv`` (preferred) or ``.h5`` directly inside ``folder``, if any."""
    for pattern in ("CollectedData*.csv", "CollectedData*.h5"):
        found = sorted(p for p in folder.glob(pattern) if p.is_file())
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise DataError(f"several label files ({names}); pass the one to use", folder)
        if found:
            return found[0]
    return None


NO_TABLE = ("no CollectedData*.csv or CollectedData*.h5 here: is this a labeled set in "
            "DeepLabCut's layout (labels table beside a labeled-data/ folder, or a DeepLabCut "
            "project with labeled-data/<video>/CollectedData*)?")


def is_set_file(rel: Path) -> bool:
    """Whether ``rel`` (a path inside a labeled set's folder) is one of the set's files, or a
    name its reader would take for one: its frames, a labels table, ``animals.csv``.

    Frames count by their suffix too: ``--data`` may be one video's folder of a project.
    """
    from vit_facemap.images import IMAGE_SUFFIXES

    top = rel.parts[0] if rel.parts else ""
    return (top == "labeled-data" or rel.name.startswith("CollectedData")
            or rel.suffix.lower() in IMAGE_SUFFIXES or rel.name == "animals.csv"
            or top in ("SOURCE.json", "LICENSE"))


def find_label_file(root: str | Path) -> Path:
    """The ``CollectedData*.csv`` (preferred) or ``.h5`` inside a labeled set's folder."""
    root = Path(root)
    if not root.exists():
        raise DataError("no such file or folder", root)
    if root.is_file():
        if root.suffix.lower() in (".yaml", ".yml") and (root.parent / "labeled-data").is_dir():
            # a DeepLabCut project's config.yaml was "labels must be a .csv or .h5 file",
            # which left the user to guess that the project folder is what to give
            raise DataError("a DeepLabCut project's config, not a labels table: pass the "
                            f"project folder ({root.parent})", root)
        return root
    found = _table_in(root)
    if found is None:
        raise DataError(NO_TABLE, root)
    return found


def find_label_files(root: str | Path) -> list[Path]:
    """The labels table(s) of a set: the file given, the table at the top of the folder, or,
    in a DeepLabCut project (no table at the top), one table per video,
    ``labeled-data/<video>/CollectedData*`` (videos without one are not labeled yet)."""
    root = Path(root)
    if not root.exists() or root.is_file() or _table_in(root) is not None:
        return [find_label_file(root)]
    videos = root / "labeled-data"
    tables = [t for d in sorted(videos.iterdir()) if d.is_dir()
              for t in [_table_in(d)] if t is not None] if videos.is_dir() else []
    if not tables and root.name == "labeled-data" and any(
            _table_in(d) is not None for d in root.iterdir() if d.is_dir()):
        # a project's labeled-data/ itself: its tables are one level down, where the general
        # message ("is this a labeled set?") sent the user looking for what is wrong with them
        raise DataError("the labeled-data folder of a DeepLabCut project: pass the project "
                        f"folder above it ({root.parent})", root)
    if not tables:
        raise DataError(NO_TABLE, root)
    return tables


def _check_row_lengths(path: Path, n_columns: int) -> None:
    """Every row must have as many cells as the header: pandas silently drops extra cells."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for line_no, row in enumerate(csv.reader(fh), start=1):
            if row and len(row) != n_columns:
                raise DataError(
                    f"line {line_no} has {len(row)} cells but the header has {n_columns}: "
                    "cannot parse the labels table (a shifted or extra value?)", path)


def _csv_layout(path: Path) -> tuple[int, int, int]:
    """(header rows, index columns, all columns) of a labels CSV, after checking its header.

    The header is ``scorer / bodyparts / coords``, or ``scorer / individuals / bodyparts /
    coords`` as multi-animal DeepLabCut writes it. A keypoint named twice is refused here,
    from the raw header: pandas would rename the second one's columns (``x.1``, ``y.1``).
    """
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = [row for _, row in zip(range(4), csv.reader(fh), strict=False)]
    first = [r[0].strip().lower() if r else "" for r in rows]
    # a spreadsheet set to decimal commas saves CSV with semicolons ('123,4' in ';'-separated
    # cells), and a "text" export uses tabs: it was "not a DeepLabCut labels table", which
    # sent the user elsewhere. Only the semicolons hint at decimal commas: a tab-separated
    # table with '.' decimals was asked about decimal commas it did not have
    for sep, name, why in ((";", "semicolons", "a spreadsheet set to decimal commas saves "
                                               "CSV so?"),
                           ("\t", "tabs", "a spreadsheet's text or TSV export?")):
        if first and first[0].startswith("scorer" + sep):
            raise DataError(f"cells are separated by {name}, not commas ({why}): save the "
                            "table as comma-separated CSV with '.' as the decimal point", path)
    n_header = 4 if first[1:2] == ["individuals"] else 3
    expected = ["scorer", "individuals", "bodyparts", "coords"] if n_header == 4 else list(HEADER_NAMES)
    if first[:n_header] != expected:
        found = [r[0] if r else "" for r in rows[:3]]
        raise DataError(
            "not a DeepLabCut labels table: the first column of the first three rows must "
            f"read scorer / bodyparts / coords, found {found}",
            path,
        )
    header = rows[:n_header]
    _check_row_lengths(path, len(header[-1]))
    def leading_blanks(row: list[str]) -> int:
        n = 1
        while n < len(row) and row[n].strip() == "":
            n += 1
        return n

    # the index columns are those blank in every header row: a keypoint column whose
    # scorer cell alone is blank is a blank cell (below), not a fourth index column
    n = min(leading_blanks(row) for row in header)
    if n not in (1, 3):
        raise DataError(
            f"expected 1 or 3 index columns before the first keypoint column, found {n}", path
        )
    for row in header:
        blank = [c for c in range(n, len(row)) if row[c].strip() == ""]
        # pandas named such a cell 'Unnamed: 7_level_0', and the error that followed spoke of
        # a second scorer or a keypoint without a 'y' column
        if blank == [len(row) - 1] and all(r[-1].strip() == "" for r in header):
            raise DataError(f"the header's last column ({len(row)}) is empty: a comma at the "
                            "end of each line? remove it", path)
        if blank:
            raise DataError(f"header row '{row[0]}' has an empty cell in column "
                            f"{blank[0] + 1}: every keypoint column needs its "
                            f"{' / '.join(expected)} written out "
                            "(DeepLabCut's tables repeat them)", path)
    seen: set[tuple[str, ...]] = set()
    for column in zip(*(r[n:] for r in header[1:]), strict=False):  # (individual,) bodypart, coord
        if column in seen:
            who = f" of individual '{column[0]}'" if n_header == 4 else ""
            raise DataError(f"keypoint name '{column[-2]}'{who} used twice (its "
                            f"'{column[-1]}' column appears twice in the header)", path)
        seen.add(column)
    return n_header, n, len(header[-1])


def _single_animal(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """A multi-animal table (an ``individuals`` header level) of one individual, without that
    level; a table of several individuals is refused."""
    if not isinstance(df.columns, pd.MultiIndex) or df.columns.nlevels != 4:
        return df
    names = list(df.columns.names)
    level = names.index("individuals") if "individuals" in names else 1
    individuals = list(dict.fromkeys(map(str, df.columns.get_level_values(level))))
    if len(individuals) > 1:
        raise DataError(f"a multi-animal table (individuals {individuals}): multi-animal "
                        "tables are not supported; keep one individual per table", path)
    return df.droplevel(level, axis=1)


def _frame_from_table(df: pd.DataFrame, root: Path, path: Path) -> LabeledFrames:
    df = _single_animal(df, path)
    if not isinstance(df.columns, pd.MultiIndex) or df.columns.nlevels != 3:
        raise DataError("columns must have three header levels (scorer, bodyparts, coords)", path)
    if len(df) == 0:
        raise DataError("the labels table has no frames", path)
    scorers = df.columns.get_level_values(0).unique()
    if len(scorers) != 1:
        raise DataError(f"expected one scorer, found {list(scorers)}", path)
    repeated = df.columns[df.columns.duplicated()]
    if len(repeated):  # an HDF5 table can hold a column twice; a CSV's header is checked raw
        raise DataError(f"keypoint name '{repeated[0][1]}' used twice (its '{repeated[0][2]}' "
                        "column appears twice)", path)
    coords = df.columns.get_level_values(2)
    bad = sorted(set(coords) - {"x", "y", "likelihood"})
    if bad:
        raise DataError(f"unknown coords {bad}; each keypoint needs an x and a y column", path)
    bodyparts = list(dict.fromkeys(df.columns.get_level_values(1)))
    xy = np.empty((len(df), len(bodyparts), 2))
    has_likelihood = "likelihood" in set(coords)
    lik = np.empty((len(df), len(bodyparts))) if has_likelihood else None
    for k, bp in enumerate(bodyparts):
        sub = df.xs(bp, axis=1, level=1)
        sub.columns = sub.columns.get_level_values(-1)
        for c, name in enumerate(("x", "y")):
            if name not in sub.columns:
                raise DataError(f"keypoint '{bp}' has no '{name}' column", path)
            cells = sub[name].squeeze(axis=1) if sub[name].ndim == 2 else sub[name]
            try:
                xy[:, k, c] = pd.to_numeric(cells)
            except (ValueError, TypeError) as exc:
                comma = any("," in str(v) for v in cells)  # '123,4', quoted in a CSV
                hint = "; a decimal comma? write '.' as the decimal point" if comma else ""
                raise DataError(f"keypoint '{bp}' column '{name}' is not numeric: {exc}{hint}",
                                path) from exc
        if lik is not None:
            lik[:, k] = pd.to_numeric(sub["likelihood"]) if "likelihood" in sub.columns else np.nan
    rows = list(df.index) if isinstance(df.index, pd.MultiIndex) else [(i,) for i in df.index]
    for tup in rows:
        if any(pd.isna(p) or str(p).strip() == "" for p in tup):
            shown = ",".join("" if pd.isna(p) else str(p) for p in tup)
            raise DataError(f"a row has an empty video or image name in its index ({shown!r})",
                            path)
    index = ["/".join(str(p) for p in tup) for tup in rows]
    dupes = pd.Index(index)[pd.Index(index).duplicated()].unique()
    if len(dupes):
        raise DataError(f"duplicate rows for {len(dupes)} frame(s), e.g. {dupes[0]}", path)
    return LabeledFrames(
        root=root, index=index, keypoints=xy, bodyparts=bodyparts,
        scorer=str(scorers[0]), likelihood=lik,
    )


def _read_hdf_labels(file: Path) -> pd.DataFrame:
    """The labels table of an HDF5 file: key ``df_with_missing`` (DeepLabCut), else
    ``keypoints`` (napari-deeplabcut, DeepLabCut >= 2.3), else the file's only key."""
    key = None
    try:
        with pd.HDFStore(file, mode="r") as store:
            keys = [k.lstrip("/") for k in store.keys()]
            found = [k for k in H5_KEYS if k in keys] or (keys if len(keys) == 1 else [])
            if found:
                key = found[0]
                return store.get(key)
    except Exception as exc:  # PyTables raises its own types for a corrupt file
        what = f"key '{key}' from " if key else ""
        raise DataError(f"cannot read {what}the HDF5 file (corrupt, or not DeepLabCut's "
                        f"layout): {first_line(exc)}", file) from None
    raise DataError(f"no labels table in the HDF5 file: expected the key "
                    f"{' or '.join(map(repr, H5_KEYS))}, found keys {keys}", file)


def _unlabeled_first_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its first frame back when that frame has no label at all.

    pandas reads a row of index cells followed by empty cells, just after the header, as
    the index names that ``to_csv`` writes there, so a first frame without any label (as
    DeepLabCut keeps frames extracted but not yet labeled) vanished from the set, and from
    every table written from it. Index names that end like an image file are such a frame.
    """
    names = list(df.index.names)
    if not all(isinstance(n, str) and n.strip() for n in names):
        return df
    if PurePosixPath(names[-1].replace("\\", "/")).suffix.lower() not in IMAGE_SUFFIXES:
        return df
    index = (pd.MultiIndex.from_tuples([tuple(names)]) if len(names) > 1
             else pd.Index(names))
    first = pd.DataFrame(np.nan, index=index, columns=df.columns)
    df = df.copy()
    df.index.names = [None] * len(names)
    return pd.concat([first, df])


def _read_table(file: Path) -> LabeledFrames:
    """One labels table. Its image paths are relative to its folder, except for a table in
    ``labeled-data/<video>/`` (DeepLabCut's project layout) whose paths start with
    ``labeled-data/``: those are relative to the project, two folders up."""
    if file.suffix.lower() == ".csv":
        try:
            n_header, n_index, n_columns = _csv_layout(file)
            # index cells are names, read as written ("01" stays "01", "NA" is not missing)
            df = pd.read_csv(file, header=list(range(n_header)), index_col=list(range(n_index)),
                             dtype={i: str for i in range(n_index)}, keep_default_na=False,
                             na_values={i: list(NA_VALUES) for i in range(n_index, n_columns)})
        except UnicodeDecodeError as exc:
            raise not_utf8(exc, file) from None
        except DataError:  # already names the file: not wrapped again (the path would repeat)
            raise
        except (ValueError, pd.errors.ParserError) as exc:
            raise DataError(f"cannot parse the labels table: {exc}", file) from exc
        df = _unlabeled_first_frame(df)
        if n_index == 1 and df.index.name is not None:
            df.index.name = None
    elif file.suffix.lower() in (".h5", ".hdf5"):
        df = _read_hdf_labels(file)
    else:
        raise DataError("labels must be a .csv or .h5 file in DeepLabCut's layout", file)
    frames = _frame_from_table(df, file.parent, file)
    if (file.parent.parent.name == "labeled-data"
            and all(i.startswith("labeled-data/") for i in frames.index)):
        frames.root = file.parent.parent.parent
    return frames


def keypoint_difference(got: Sequence[str], want: Sequence[str]) -> str:
    """``"missing [...]; unexpected [...]"``: the keypoints of ``want`` that ``got`` lacks and
    those it has besides (each part only when not empty; "" for the same names)."""
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    return "; ".join(f"{what} {names}" for what, names in
                     (("missing", missing), ("unexpected", extra)) if names)


def _join_tables(parts: list[LabeledFrames], files: list[Path], root: Path) -> LabeledFrames:
    """The per-video tables of a DeepLabCut project as one set: same keypoints in the same
    order, one scorer, image paths relative to the project."""
    first = parts[0]
    for frames, file in zip(parts, files, strict=True):
        if frames.root != root:
            raise DataError(f"image paths must read labeled-data/<video>/<image> (relative to "
                            f"the project {root}, as DeepLabCut writes them), found "
                            f"'{frames.index[0]}'", file)
        if sorted(frames.bodyparts) != sorted(first.bodyparts):
            # the two full lists (12 names each for g7c1) left the user to find the one
            # keypoint a video's table lacks or adds; name it, as evaluate does
            diff = keypoint_difference(frames.bodyparts, first.bodyparts)
            raise DataError(f"keypoints {frames.bodyparts} differ from those of {files[0]} "
                            f"({diff}): every video's table needs the same keypoints", file)
        if frames.scorer != first.scorer:
            raise DataError(f"scorer '{frames.scorer}' differs from '{first.scorer}' of "
                            f"{files[0]}: a project's tables need one scorer", file)
    # the columns of each table are matched by name: their order is the first table's
    parts = [f.with_bodyparts(first.bodyparts) for f in parts]
    index = [i for f in parts for i in f.index]
    dupes = pd.Index(index)[pd.Index(index).duplicated()].unique()
    if len(dupes):
        raise DataError(f"frame {dupes[0]} is in more than one video's table", root)
    with_lik = all(f.likelihood is not None for f in parts)
    return LabeledFrames(
        root=root, index=index, keypoints=np.concatenate([f.keypoints for f in parts]),
        bodyparts=first.bodyparts, scorer=first.scorer,
        likelihood=np.concatenate([f.likelihood for f in parts]) if with_lik else None,
    )


def read_labels(path: str | Path) -> LabeledFrames:
    """Read a labeled set: its folder, or its ``CollectedData*.csv`` / ``.h5`` file.

    A folder with its table at the top is read as it is; a DeepLabCut project (tables in
    ``labeled-data/<video>/``, none at the top) is read as one set of all its videos,
    which must share the keypoints (in the same order) and the scorer. Raises
    :class:`DataError` naming the file for anything that is not DeepLabCut's layout.
    """
    files = find_label_files(path)
    if len(files) == 1:
        return _read_table(files[0])
    return _join_tables([_read_table(f) for f in files], files, Path(path))


def write_labels(
    frames: LabeledFrames, path: str | Path, *, overwrite: bool = False,
    three_level_index: bool = True,
) -> Path:
    """Write ``frames`` as a DeepLabCut table; the format follows the suffix (.csv or .h5).

    An existing file is never replaced unless ``overwrite`` is true.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise RunExistsError(path)
    df = frames.to_dataframe(three_level_index=three_level_index)
    if path.suffix.lower() not in (".csv", ".h5", ".hdf5"):
        raise ValueError(f"{path}: unsupported suffix; use .csv or .h5")
    path.parent.mkdir(parents=True, exist_ok=True)
    # written beside and moved in place: a write cut short (a full disk, Ctrl-C) truncated
    # the table it was replacing
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix.lower() == ".csv":
        df.to_csv(tmp)
    else:
        df.to_hdf(tmp, key=H5_KEY, mode="w")  # fixed format, as DeepLabCut writes labels
    tmp.replace(path)
    return path


def predictions_dataframe(
    keypoints: np.ndarray, likelihood: np.ndarray, bodyparts: Sequence[str],
    scorer: str = "vit-facemap", frames: Sequence[int] | np.ndarray | None = None,
) -> pd.DataFrame:
    """Tracked keypoints as DeepLabCut's ``analyze_videos`` lays them out.

    Columns ``scorer / bodyparts / coords`` with coords ``x, y, likelihood``; the index is
    the frame number (integers), not an image path as in a labels table.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    likelihood = np.asarray(likelihood, dtype=np.float64)
    n, k = keypoints.shape[:2]
    if keypoints.shape != (n, len(bodyparts), 2) or likelihood.shape != (n, k):
        raise ValueError(
            f"need keypoints (n, {len(bodyparts)}, 2) and likelihood (n, {len(bodyparts)}), "
            f"got {keypoints.shape} and {likelihood.shape}")
    columns = pd.MultiIndex.from_product(
        [[scorer], [str(b) for b in bodyparts], ["x", "y", "likelihood"]],
        names=list(HEADER_NAMES))
    index = pd.Index(np.arange(n) if frames is None else np.asarray(frames, dtype=np.int64))
    data = np.concatenate([keypoints, likelihood[..., None]], axis=-1).reshape(n, 3 * k)
    return pd.DataFrame(data, index=index, columns=columns)


def write_predictions(df: pd.DataFrame, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a :func:`predictions_dataframe` to ``.csv`` or ``.h5`` (table format and key
    ``df_with_missing``, as DeepLabCut writes predictions); never replaces a file unless
    ``overwrite``. The HDF5 file is written beside and renamed, so a crash leaves no half file.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise RunExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix.lower() == ".csv":
        df.to_csv(tmp)
    elif path.suffix.lower() in (".h5", ".hdf5"):
        df.to_hdf(tmp, key=H5_KEY, format="table", mode="w")
    else:
        raise ValueError(f"{path}: unsupported suffix; use .csv or .h5")
    tmp.replace(path)
    return path
