"""Download the public labeled sets and convert them to this project's layout.

For users with internet access. Each source is *data* in :data:`REGISTRY`: an archive URL
pinned to a commit, its SHA-256 (or ``None`` where we have not been able to pin it), where
the label tables sit inside the archive, and how to convert (grayscale, scale factor,
video-name clean-up). Downloads go through :mod:`pooch` into a local cache, so a second
call does not download again, and a pinned hash is checked before anything is unpacked.

The conversion writes ``DEST/CollectedData.csv`` and ``DEST/labeled-data/<video>/<image>.png``
(DeepLabCut's layout, see :mod:`vit_facemap.dlc`) plus the source's ``LICENSE`` and a
``SOURCE.json`` saying where it came from and listing the files written, then validates
the result. Replacing a set keeps the files the user added to it (see :func:`fetch_set`).

Honesty note: this machine has no internet access. The URLs below point at the public
repositories' archives for the commits named in ``/work/shared/data/README.md``; the
path patterns inside them were read from the repositories' file listings. Their SHA-256
hashes have **not** been computed here (``sha256=None``), so the first download is not
verified: :func:`fetch_set` prints the hash it got so that it can be pinned. The
download-and-convert path itself is tested against a local HTTP server.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vit_facemap.dlc import LabeledFrames, read_labels, write_labels
from vit_facemap.errors import DataError, RunExistsError, first_line
from vit_facemap.images import IMAGE_SUFFIXES
from vit_facemap.validate import validate_set


@dataclass(frozen=True)
class Source:
    """Where a public labeled set lives and how to turn it into this project's layout."""

    name: str
    description: str
    url: str
    sha256: str | None             # None: not pinned yet (download is not verified)
    labels: tuple[str, ...]        # glob patterns, relative to the unpacked archive
    license: str                   # e.g. "MIT, (c) 2024 AnnaStuckert"
    license_file: str | None = None  # glob of the license inside the archive
    scorer: str | None = None      # scorer name to write (None: keep the source's)
    scale: float = 1.0             # resize factor for frames and coordinates
    gray: bool = True              # store single-channel frames when R = G = B
    video_prefix: str = ""         # regex removed from the start of video names


REGISTRY: dict[str, Source] = {
    "g7c1": Source(
        name="g7c1",
        description="ViT_Facemap frames of mouse G7c1: 2 videos, 12 keypoints (Stuckert)",
        url="https://github.com/AnnaStuckert/ViT_facemap/archive/95c4dd6.zip",
        sha256=None,
        labels=("*/ViT-timm/data/facemap_multi_video/cam1_G7c1_*/CollectedData*.csv",),
        license="MIT, (c) 2024 AnnaStuckert",
        license_file="*/LICENSE",
        scorer="Stuckert",
    ),
    "schroeder": Source(
        name="schroeder",
        description="Schroeder lab frames: 23 sessions of 17 mice, 9 eye/nose keypoints",
        url="https://github.com/sorenorm/facemap/archive/f7b98d3.zip",
        sha256=None,
        labels=("*/data/schroeder/labels.csv",),
        license="MIT, (c) 2023 Raghav",
        license_file="*/LICENSE",
        scale=0.5,  # 1440x1080 frames stored at 720x540, coordinates halved with them
        video_prefix=r"\d+\._(?:.*_RawData_)?",
    ),
}


# ----------------------------------------------------------------------------- download


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(source: Source, cache: str | Path | None = None, progress: bool = True) -> Path:
    """The source's archive in the local cache, downloaded (and hash-checked) if needed."""
    import pooch

    cache = Path(cache) if cache is not None else Path(pooch.os_cache("vit-facemap"))
    known = f"sha256:{source.sha256}" if source.sha256 else None
    suffix = ".tar.gz" if source.url.endswith((".tar.gz", ".tgz")) else Path(source.url).suffix
    # an unpinned archive is known by its URL: under one name for every URL, pooch handed
    # back the archive of an earlier URL (another commit) without downloading the new one
    key = source.sha256 or "url-" + hashlib.sha256(source.url.encode()).hexdigest()
    fname = f"{source.name}-{key[:12]}{suffix}"
    try:
        return Path(pooch.retrieve(source.url, known_hash=known, fname=fname, path=cache,
                                   progressbar=progress))
    except ValueError as exc:  # pooch reports a hash mismatch as ValueError
        raise DataError(f"download of {source.url} failed its SHA-256 check: {exc}",
                        cache / fname) from exc
    except Exception as exc:  # requests' connection and HTTP errors
        import requests

        hint = (" (no network connection: fetch the set on a machine that is online and "
                "copy it, or point VIT_FACEMAP_DATA at a copy)"
                if isinstance(exc, requests.ConnectionError) else "")
        raise DataError(f"cannot download {source.url}{hint}: {first_line(exc)}",
                        cache / fname) from exc


def _unpack(archive: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():  # refuse paths that climb out of the folder
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise DataError(f"unsafe path in the archive: {member}", archive)
                zf.extractall(into)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                tf.extractall(into, filter="data")
        else:
            raise DataError("not a zip or tar archive", archive)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise DataError(f"cannot unpack the archive: {exc}", archive) from exc
    return into


# ----------------------------------------------------------------------------- convert


def _clean_header_table(path: Path, workdir: Path) -> Path:
    """A copy of a labels CSV whose header pandas once mangled (``Unnamed: 1``,
    ``Scorer.1``), restored to DeepLabCut's three header rows."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise DataError("the labels table is empty", path)
    first = rows[0]
    fixed = [first[0]] + [
        "" if re.fullmatch(r"Unnamed: \d+(_level_\d+)?", c) else re.sub(r"\.\d+$", "", c)
        for c in first[1:]
    ]
    if fixed == first:
        return path
    out = Path(tempfile.mkdtemp(prefix="labels-", dir=workdir)) / path.name
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([fixed, *rows[1:]])
    out.write_text(buf.getvalue())
    return out


def _find_image(rel: str, table_dir: Path, by_name: dict[str, list[Path]]) -> Path | None:
    parts = Path(rel).parts
    for candidate in (table_dir / rel, table_dir / parts[-1],
                      table_dir / Path(*parts[-2:]) if len(parts) > 1 else None):
        if candidate is not None and candidate.is_file():
            return candidate
    hits = by_name.get(parts[-1], [])
    return hits[0] if len(hits) == 1 else None


def _convert_image(src: Path, dst: Path, scale: float, gray: bool) -> None:
    try:
        with Image.open(src) as im:
            im.load()
            if im.mode not in ("L", "RGB"):
                im = im.convert("RGB")
            if im.mode == "RGB" and gray:
                arr = np.asarray(im)
                if (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
                    im = Image.fromarray(arr[..., 0])
            if scale != 1.0:
                size = (round(im.width * scale), round(im.height * scale))
                im = im.resize(size, Image.Resampling.LANCZOS)
            dst.parent.mkdir(parents=True, exist_ok=True)
            im.save(dst)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot convert image: {exc}", src) from exc


def convert(unpacked: str | Path, source: Source, dest: str | Path,
            workdir: str | Path | None = None) -> LabeledFrames:
    """Convert an unpacked source into ``dest`` (which must be empty or absent)."""
    unpacked, dest = Path(unpacked), Path(dest)
    workdir = Path(workdir) if workdir is not None else dest.parent
    tables = sorted({p for pattern in source.labels for p in unpacked.glob(pattern)})
    if not tables:
        raise DataError(f"no label table matching {list(source.labels)} in the download "
                        "(has the repository moved its files?)", unpacked)
    by_name: dict[str, list[Path]] = {}
    for p in unpacked.rglob("*"):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            by_name.setdefault(p.name, []).append(p)
    prefix = re.compile("^" + source.video_prefix) if source.video_prefix else None
    index, keypoints, bodyparts, scorer = [], [], None, source.scorer
    for table in tables:
        frames = read_labels(_clean_header_table(table, workdir))
        if bodyparts is None:
            bodyparts, scorer = frames.bodyparts, scorer or frames.scorer
        elif frames.bodyparts != bodyparts:
            raise DataError(f"keypoints {frames.bodyparts} differ from those of "
                            f"{tables[0].name} ({bodyparts})", table)
        for rel, xy in zip(frames.index, frames.keypoints, strict=True):
            src = _find_image(rel, table.parent, by_name)
            if src is None:
                raise DataError(f"image {rel} of the labels table is not in the download", table)
            parts = Path(rel).parts
            video = parts[-2] if len(parts) >= 2 else table.parent.name
            if len(parts) >= 2 and parts[-2] == "labeled-data":
                video = table.parent.name
            if prefix is not None:
                video = prefix.sub("", video)
            out_rel = f"labeled-data/{video}/{Path(parts[-1]).with_suffix('.png').name}"
            _convert_image(src, dest / out_rel, source.scale, source.gray)
            index.append(out_rel)
            keypoints.append(xy * source.scale)
    result = LabeledFrames(dest, index, np.stack(keypoints), bodyparts, scorer=scorer)
    write_labels(result, dest / "CollectedData.csv", overwrite=True)
    return result


def _files_under(folder: Path) -> list[str]:
    """Relative POSIX paths of the files (and links) under ``folder``; links not followed."""
    out = []
    for here, dirs, files in os.walk(folder):
        base = Path(here)
        out += [(base / n).relative_to(folder).as_posix() for n in files]
        out += [(base / n).relative_to(folder).as_posix() for n in dirs if (base / n).is_symlink()]
    return sorted(out)


def _users_files(dest: Path, new_files: set[str]) -> list[str]:
    """Files in the fetched set ``dest`` that `data fetch` did not write (an ``animals.csv``
    the user added, say): those not in its ``SOURCE.json`` list of files, or, for a set
    fetched before that list was kept, those the new set does not hold. A file of the
    user's at a path the new set writes is refused, so that neither copy is lost."""
    try:
        written = json.loads((dest / "SOURCE.json").read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        written = None
    ours = set(written) | {"SOURCE.json"} if isinstance(written, list) else new_files
    mine = [f for f in _files_under(dest) if f not in ours]
    clash = [f for f in mine if f in new_files]
    if clash:
        raise DataError(f"holds files that `data fetch` did not write at paths the new set "
                        f"writes ({', '.join(clash[:5])}); move them elsewhere first", dest)
    return mine


def fetch_set(
    name: str,
    dest: str | Path,
    *,
    cache: str | Path | None = None,
    overwrite: bool = False,
    registry: Mapping[str, Source] | None = None,
    progress: bool = True,
) -> Path:
    """Download (or reuse from ``cache``) a registered set and write it converted to ``dest``.

    An existing set in ``dest`` is kept unless ``overwrite``; with it, only a set this
    function wrote (it holds ``SOURCE.json``) is replaced, and only once the new one is
    complete, so a failed download leaves the old set as it was. Files in the old set that
    fetch did not write (an ``animals.csv`` added beside the labels, notes, ...: those not
    listed in its ``SOURCE.json``) are carried over into the new set, and said so; one at
    a path the new set writes makes fetch refuse, naming it. The new set is built, and the
    old one set aside, in a fresh temporary folder beside ``dest``
    (``<dest>.fetching-XXXX``, removed at the end), so no other folder is ever deleted.
    Returns ``dest``.
    """
    registry = REGISTRY if registry is None else registry
    if name not in registry:
        raise DataError(f"unknown set {name!r}; known: {', '.join(registry)}")
    source = registry[name]
    # absolute, links kept: "." (or "..") has no name to put the new set and the old one
    # beside it under, and cannot be renamed
    dest = Path(os.path.abspath(dest))
    if dest.exists() and not dest.is_dir():
        raise DataError("--dest is a file; give a folder for the set", dest)
    replace = dest.exists() and any(dest.iterdir())
    if replace:
        if not overwrite:
            raise RunExistsError(dest)
        if not (dest / "SOURCE.json").is_file():
            # a folder of the user's own, not a set fetched here: never deleted
            raise DataError("holds files that are not a set written by `data fetch` "
                            "(no SOURCE.json); choose another --dest", dest)
    if cache is not None and Path(os.path.abspath(cache)).is_relative_to(dest):
        # the set is built beside dest and renamed into its place: an empty dest holding
        # the archive could not be, and a fetched one would carry the archive over as a
        # file of the user's
        raise DataError(f"--cache ({cache}) is inside --dest; keep the downloads outside "
                        "the set", dest)
    archive = download(source, cache, progress=progress)
    digest = file_sha256(archive)
    if source.sha256 is None:
        print(f"{name}: downloaded {source.url} (not pinned; its sha256 is {digest})")
    work = Path(tempfile.mkdtemp(prefix=f"vitfm-{name}-"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    # a new folder of ours, beside dest (same file system, so the swap is a rename)
    side = Path(tempfile.mkdtemp(prefix=f"{dest.name}.fetching-", dir=dest.parent))
    staging = side / dest.name
    try:
        unpacked = _unpack(archive, work / "unpacked")
        frames = convert(unpacked, source, staging, workdir=work)
        licenses = sorted(unpacked.glob(source.license_file)) if source.license_file else []
        if licenses:
            shutil.copyfile(licenses[0], staging / "LICENSE")
        written = sorted({*_files_under(staging), "SOURCE.json"})
        (staging / "SOURCE.json").write_text(json.dumps(
            {**asdict(source), "sha256_downloaded": digest, "n_frames": len(frames),
             "files": written}, indent=2) + "\n")
        validate_set(read_labels(staging), decode=False).raise_for_errors()
        if replace:
            kept = _users_files(dest, set(written))
            for rel in kept:  # copied: the old set stays whole until the swap has worked
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(dest / rel, staging / rel, follow_symlinks=False)
            old = side / f"{dest.name}.old"
            dest.rename(old)
            try:
                staging.rename(dest)  # the set appears complete or not at all
            except OSError:
                old.rename(dest)
                raise
            if kept:
                print(f"{name}: kept {len(kept)} file(s) of yours from the set it replaced: "
                      f"{', '.join(kept[:5])}{' ...' if len(kept) > 5 else ''}")
        else:
            if dest.exists():
                dest.rmdir()
            staging.rename(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(side, ignore_errors=True)
    return dest
