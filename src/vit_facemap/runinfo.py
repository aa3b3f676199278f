"""Provenance saved next to every result: settings, device, software versions, wall time."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("vit-facemap", "torch", "timm", "numpy", "pandas", "scikit-learn", "scikit-image",
            "albumentations", "einops")


def resolve_device(device: str = "auto") -> str:
    """``auto`` picks ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    from vit_facemap.errors import DataError

    # DataError: the command line prints one line, not a traceback
    if device != "cpu" and re.fullmatch(r"cuda(:\d+)?", device) is None:
        raise DataError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DataError("device 'cuda' was asked for but no CUDA GPU is visible; use --device cpu")
    return device


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The processor's model name as Linux lists it in ``cpuinfo`` ("AMD EPYC 7B13", ...);
    elsewhere, or where the file names none, what :func:`platform.processor` says (often
    only the architecture)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def device_info(device: str = "cpu") -> dict[str, Any]:
    """Where a result was computed. Seeded CPU training repeats on one machine, but its
    floats can differ on another processor, whose vector instructions torch uses in its
    kernels (``cpu_capability``: "AVX2", "AVX512", ...): two results to compare need both."""
    import torch

    info: dict[str, Any] = {
        "device": device,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def device_name(device: str) -> str:
    """The GPU's name for a CUDA ``device`` (as :func:`device_info` records it), else
    ``device`` itself: a table beside the benchmarks' rows, which record the name."""
    return str(device_info(device).get("gpu") or device)


def jsonable(obj: Any, *, nan_as_null: bool = False) -> Any:
    """Dataclasses, paths and numpy scalars as plain JSON values.

    ``nan_as_null``: NaN and infinities as None (JSON's null), for output that strict JSON
    readers take (Python's json writes them as the non-standard ``NaN``).
    """
    if is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(asdict(obj), nan_as_null=nan_as_null)
    if isinstance(obj, dict):
        return {str(k): jsonable(v, nan_as_null=nan_as_null) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v, nan_as_null=nan_as_null) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):
        obj = obj.item()
    if nan_as_null and isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def describe(settings: Any = None, device: str = "cpu", **extra: Any) -> dict[str, Any]:
    """A provenance record: settings, device, versions, time stamp, plus ``extra``."""
    record = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": jsonable(settings),
        "device": device_info(device),
        "versions": versions(),
    }
    record.update(jsonable(extra))
    return record


@contextmanager
def timed():
    """``with timed() as t: ...``; ``t["wall_s"]`` holds the elapsed wall time afterwards."""
    box: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield box
    finally:
        box["wall_s"] = time.perf_counter() - start


def write_json(obj: Any, path: str | Path, *, overwrite: bool = True) -> Path:
    """Write JSON atomically (a crash never leaves half a file where results were)."""
    path = check_output(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(jsonable(obj), indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def move_files(src: Path, dst: Path, files: list[Path]) -> None:
    """Move ``files`` (relative paths) from ``src`` to ``dst``: all of them, or none."""
    moved = []
    try:
        for rel in files:
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).replace(dst / rel)
            moved.append(rel)
    except OSError:
        for rel in moved:
            (dst / rel).replace(src / rel)
        raise


SET_ASIDE_PREFIX = ".replaced-"


def is_set_aside(name: str) -> bool:
    """Whether ``name`` (a file or folder name) is of a folder :func:`set_aside` makes."""
    return name.startswith(SET_ASIDE_PREFIX)


def set_aside(folder: Path, files: list[Path]) -> Path | None:
    """Move ``files`` (relative to ``folder``) into a new hidden ``folder/.replaced-*``
    folder, all or none; returns it (None when there is nothing to move).

    How a command with ``--overwrite`` keeps the results it replaces until the new ones are
    complete: the caller deletes the folder then, or puts the files back with
    :func:`put_back` when the new results fail. Inside ``folder``: the same file system (a
    move, never a half copy), and a new one each time, so an earlier interrupted
    replacement's files stay whole.
    """
    import shutil
    import tempfile

    if not files:
        return None
    backup = Path(tempfile.mkdtemp(prefix=SET_ASIDE_PREFIX, dir=folder))
    try:
        move_files(folder, backup, files)
    except OSError:
        shutil.rmtree(backup, ignore_errors=True)  # emptied by the roll-back
        raise
    return backup


def set_aside_folders(folder: Path) -> list[Path]:
    """The folders :func:`set_aside` made in ``folder`` that are still there, oldest first:
    the replaced results of a replacement that was interrupted (one that ends, well or not,
    removes its folder)."""
    return sorted((p for p in Path(folder).glob(f"{SET_ASIDE_PREFIX}*") if p.is_dir()),
                  key=lambda p: p.stat().st_mtime)


def newest_set_aside(backups: list[Path], complete: Callable[[Path], bool]) -> Path:
    """The set-aside run to keep of ``backups`` (oldest first, not empty): the newest
    ``complete`` one, else the newest. Earlier versions could leave several, and only a
    complete one is worth putting back over a newer half-written one."""
    return ([b for b in backups if complete(b)] or backups)[-1]


def put_back(folder: Path, backup: Path | None) -> None:
    """Undo :func:`set_aside`: the files in ``backup`` back into ``folder`` (replacing what
    stands there under their names), and ``backup`` removed."""
    import shutil

    if backup is None:
        return
    files = [p.relative_to(backup) for p in backup.rglob("*") if p.is_file()]
    move_files(backup, folder, files)
    shutil.rmtree(backup, ignore_errors=True)


def write_replacing(folder: Path, is_result: Callable[[Path], bool],
                    write: Callable[[], None]) -> None:
    """``write()`` new results into ``folder`` with the earlier ones (its files that
    ``is_result`` names) set aside: dropped once ``write`` returns, put back, and what it
    wrote removed, if it fails, so a failed replacement never costs the earlier results.
    The user's other files in ``folder`` stay."""
    import shutil

    def results() -> list[Path]:
        return [p for p in folder.iterdir() if is_result(p)]

    backup = set_aside(folder, [Path(p.name) for p in results()])
    try:
        write()
    except BaseException:
        for p in results():
            p.unlink()
        put_back(folder, backup)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def check_parents(path: str | Path, what: str | None = None) -> Path:
    """Refuse, before any work, an output under a path that is a file (``notes.txt/run``):
    writing finds it only at the end, after the work, as a NotADirectoryError. ``what``
    (an option) is named in the message."""
    from vit_facemap.errors import DataError

    path = Path(path)
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            message = (f"{what} needs a folder, but {parent} is a file" if what
                       else f"{parent} is a file, not a folder")
            raise DataError(message, path)
    return path


def check_folder(path: str | Path, what: str = "--out") -> Path:
    """:func:`check_parents` for an output folder, which must not be a file itself."""
    from vit_facemap.errors import DataError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{what} needs a folder, but it is a file", path)
    return check_parents(path, what)


def check_output(path: str | Path, overwrite: bool = False, *,
                 hint: str = "pass --overwrite to replace it") -> Path:
    """Refuse, before any work, an output that cannot be written or would replace results.

    A benchmark that only found out when writing would have spent its run for nothing, or
    silently replaced the numbers of an earlier one.
    """
    from vit_facemap.errors import DataError, RunExistsError

    path = Path(path)
    if path.is_dir():
        raise DataError("is a folder; give a file name for the JSON", path)
    check_parents(path)
    if path.exists() and not overwrite:
        raise RunExistsError(path, hint)
    return path


def check_outputs_apart(outputs: Mapping[str, str | Path | None], *,
                        inputs: Iterable[tuple[str, str | Path | None]] = (),
                        folders: Iterable[tuple[str, str | Path | None, Callable[[Path], bool]]]
                        = ()) -> None:
    """Refuse, before any work, an output that is one of the command's inputs, is also given
    as another output, or is one of the files of an input folder.

    ``outputs`` maps each option to its path (None: not written); ``inputs`` are (what, path)
    pairs named in the message; ``folders`` are (what, folder, is_input) triples, where
    ``is_input(relative_path)`` says whether a path inside the folder is one of its files (a
    run's weights, a set's labels and frames). Other paths inside are fair game: an
    evaluation kept beside its run harms neither. ``--overwrite`` is for a command's earlier
    results: without this check it let an evaluation write its predictions over the labels
    it scored, or its metrics over the run's weights.
    """
    from vit_facemap.errors import DataError

    def key(path: Path) -> tuple:
        # one file under two names: a link (resolve) or a hard link (device and inode)
        try:
            st = path.stat()
        except OSError:
            return ("path", path.resolve())
        return ("file", st.st_dev, st.st_ino)

    # each path resolved once: rollout over a folder of images checks thousands
    taken = {key(Path(p)): what for what, p in inputs if p is not None}
    dirs = [(what, Path(d), Path(d).resolve(), is_input) for what, d, is_input in folders
            if d is not None]
    given: dict[tuple, str] = {}
    for opt, p in outputs.items():
        if p is None:
            continue
        path = Path(p)
        k = key(path)
        if k in given:
            raise DataError(f"given as both {given[k]} and {opt}; give each its own file", path)
        given[k] = opt
        if k in taken:
            raise DataError(f"{opt} is an input of this command ({taken[k]}); writing there "
                            "would destroy it: give another path", path)
        resolved = path.resolve()
        for what, d, d_resolved, is_input in dirs:
            if resolved.is_relative_to(d_resolved) and resolved != d_resolved \
                    and is_input(resolved.relative_to(d_resolved)):
                raise DataError(f"{opt} is one of the files of {what} ({d}), an input of this "
                                "command: write results elsewhere", path)


def data_folder(path: str | Path | None) -> tuple[Path | None, str]:
    """The folder of real sets, and where it was looked for as words to follow "not found"
    in a message (``in /data``; ``(no data folder: ...)``).

    ``path`` (a command line's ``--data``) must be a folder when given: a typo would
    otherwise run on generated frames, or on nothing, without saying why.
    """
    from vit_facemap.config import DATA_ENV, data_root
    from vit_facemap.errors import DataError

    if path not in (None, ""):
        if not Path(path).expanduser().is_dir():
            raise DataError("the data folder given does not exist or is not a folder", path)
        return data_root(path), f"in {Path(path).expanduser()}"
    env = os.environ.get(DATA_ENV) or ""
    if not env:
        return None, f"(no data folder: --data and ${DATA_ENV} not set)"
    root = data_root(env)
    return root, f"in {env}" if root is not None else f"(${DATA_ENV}={env} is not a folder)"


TRACKER, CLASSIFIER = "tracker", "classifier"


def run_config(run_dir: str | Path) -> tuple[str | None, dict[str, Any]]:
    """A trained run's ``config.json`` and the kind of run that wrote it: ``TRACKER``
    ('vit-facemap train': ``train`` and ``bodyparts``), ``CLASSIFIER`` ('classify train':
    a ``config`` object and ``classes``), or None with ``{}`` when the file is missing,
    unreadable or neither's.

    Each command that takes a run folder asks this first, so that the other kind's run is
    named as such instead of failing on a missing key.
    """
    try:
        meta = json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return None, {}
    if not isinstance(meta, dict):
        return None, {}
    if "train" in meta and "bodyparts" in meta:
        return TRACKER, meta
    if isinstance(meta.get("config"), dict) and "classes" in meta:
        return CLASSIFIER, meta
    return None, {}


def _digest(files: list[Path], base: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.relative_to(base)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


# the package's presentation code: the book's build and the report tables and figures it
# draws from results; a change there does not change a trained model's numbers
PRESENTATION = ("book", "reports.py", "plotting.py", "diagrams.py")


def code_fingerprint(*extra: str | Path, exclude: tuple[str, ...] = PRESENTATION
                     ) -> dict[str, str]:
    """The package version and a hash of its sources (plus ``extra`` files, e.g. the script
    itself): results of other code are told apart even when the version was not bumped.
    Sources under ``exclude`` (top-level modules or subpackages of the package) are left out.
    """
    import vit_facemap

    src = Path(vit_facemap.__file__).resolve().parent
    files = [f for f in src.rglob("*.py") if "__pycache__" not in f.parts
             and f.relative_to(src).parts[0] not in exclude]
    out = {"version": vit_facemap.__version__, "sources_sha256": _digest(files, src)}
    for e in extra:
        e = Path(e).resolve()
        out[e.name] = _digest([e], e.parent)
    return out


def data_fingerprint(folder: str | Path) -> dict[str, Any]:
    """A hash of a labeled set's tables (labels, animals; CSV and H5) and its image count:
    new labels or frames under the same path give another fingerprint."""
    folder = Path(folder)
    tables = [f for f in folder.rglob("*") if f.suffix in (".csv", ".h5") and f.is_file()]
    images = sum(1 for f in folder.rglob("*.png"))
    return {"tables": len(tables), "tables_sha256": _digest(tables, folder), "images": images}


def check_study_args(folds: int, threads: int) -> None:
    """The cross-validation benchmarks' ``--folds`` and ``--threads``."""
    from vit_facemap.errors import DataError

    if folds < 2:
        raise DataError(f"--folds must be at least 2, got {folds}")
    if threads < 0:
        raise DataError(f"--threads must be 0 (torch's default) or more, got {threads}")


def parse_settings(texts: list[str], what: str, into: type, many: bool = False
                   ) -> list[tuple[str, Any]]:
    """``key=value`` settings of a command line (``key=v1,v2`` -> two pairs with ``many``),
    each value read as JSON where it parses (numbers, true, null), else as text; keys that
    are not fields of the dataclass ``into`` are refused (its own checks see the types)."""
    from vit_facemap.errors import DataError, check_keys

    out = []
    for text in texts:
        key, sep, value = text.partition("=")
        if not key or not sep or not value:
            raise DataError(f"{what} {text!r}: give key=value" + ("1,value2" if many else ""))
        for v in value.split(",") if many else [value]:
            try:
                out.append((key, json.loads(v)))
            except json.JSONDecodeError:
                out.append((key, v))
    check_keys(into, sorted({k for k, _ in out}), f"{what} key")
    return out
