"""Provenance saved next to every result: settings, device, software versions, wall time."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
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
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DataError("device 'cuda' was asked for but no CUDA GPU is visible; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise DataError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def device_info(device: str = "cpu") -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "device": device,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def jsonable(obj: Any) -> Any:
    """Dataclasses, paths and numpy scalars as plain JSON values."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
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
    from vit_facemap.errors import DataError, RunExistsError

    path = Path(path)
    if path.is_dir():
        raise DataError("is a folder; give a file name for the JSON", path)
    if path.exists() and not overwrite:
        raise RunExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(jsonable(obj), indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path
