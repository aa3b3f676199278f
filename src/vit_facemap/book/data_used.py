"""Which data each book notebook ran on, for the build note.

A notebook decides for itself whether it runs on the real labeled sets or on generated
frames (profile ``test`` trains on generated frames even with the data folder present), so
the build cannot tell from its settings alone. Each notebook calls :func:`record_data_used`
once it has chosen, which writes ``<out_dir>/data_used/<notebook>.json``; the build reads it
back after running the notebook (:func:`read_data_used`) and says "real data" only when
every notebook recorded the real sets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vit_facemap import runinfo

FOLDER = "data_used"
REAL = "real"
GENERATED = "generated"
UNRECORDED = "unrecorded"  # a notebook that wrote no record (or an unreadable one)


def data_used_path(out_dir: str | Path, notebook: str) -> Path:
    """Where ``notebook`` (its file name, with or without ``.ipynb``) records its data."""
    return Path(out_dir) / FOLDER / f"{Path(notebook).stem}.json"


def record_data_used(out_dir: str | Path, notebook: str, *, real: bool, source: str) -> None:
    """Record that ``notebook`` ran on the real labeled sets (``real``) or on generated
    frames; ``source`` says which, in words. Returns nothing, so that a notebook cell
    ending with the call shows no output."""
    runinfo.write_json({"notebook": Path(notebook).stem,
                        "data": REAL if real else GENERATED, "source": str(source)},
                       data_used_path(out_dir, notebook))


def read_data_used(out_dir: str | Path, notebook: str) -> dict[str, Any]:
    """What ``notebook`` recorded: ``data`` (real, generated or unrecorded) and ``source``."""
    path = data_used_path(out_dir, notebook)
    try:
        got = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"data": UNRECORDED, "source": ""}
    data = got.get("data")
    if data not in (REAL, GENERATED):
        return {"data": UNRECORDED, "source": ""}
    return {"data": data, "source": str(got.get("source", ""))}
