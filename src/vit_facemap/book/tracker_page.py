"""How the tracker page (``notebooks/03_tracker.ipynb``) runs ``benchmarks/tracker.py``.

The page trains on the real sets when the data folder holds ``g7c1`` and the profile is
not ``test``, else on generated frames, with a training budget per profile.
:func:`tracker_page_run` makes these choices and the command line, together with the
command a reader types to reproduce the table; :func:`run_benchmark` runs it. The script
owns its options: this module only picks their values.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from vit_facemap import config

SYNTHETIC_MODELS = ("mean_shape", "hybrid")
REAL_MODELS = ("mean_shape", "hog_forest", "vit_regression", "hybrid", "cnn", "fmnet")
# training minutes per neural model and split on 2 CPU cores (the build record gives the
# page's wall time); a GPU (profile full) trains longer
MINUTES = {"quick": 1.0, "default": 6.0, "full": 30.0}
SCRIPT = "benchmarks/tracker.py"  # from the repository's root
# how the page runs the benchmark (quietly, reusing or replacing its table), not the recipe
_INTERNAL = ("--no-progress", "--reuse", "--overwrite")


@dataclass(frozen=True)
class TrackerRun:
    """The page's benchmark run: ``args`` is the whole command line (Python, the script,
    its options); ``data`` the real data folder and ``minutes`` the training budget per
    neural model, both None on generated frames (the test recipe's steps, no time budget)."""

    synthetic: bool
    minutes: float | None
    data: Path | None
    out: Path
    args: list[str]

    @property
    def reproduce(self) -> str:
        """The command that reproduces the table from the repository's root, with ``OUT``
        for the output folder and ``DATA`` for the data folder."""
        names = {str(self.out): "OUT"}
        if self.data is not None:
            names[str(self.data)] = "DATA"
        return " ".join(["python", SCRIPT]
                        + [names.get(a, a) for a in self.args[2:] if a not in _INTERNAL])


def tracker_page_run(profile: str, data_dir: str | Path | None, out: str | Path, *,
                     seed: int = 0, device: str = "cpu", script: str | Path = "../" + SCRIPT,
                     python: str = sys.executable) -> TrackerRun:
    """The run for ``profile`` with the data folder ``data_dir`` (else
    ``$VIT_FACEMAP_DATA``): generated frames under profile ``test`` or without a real
    ``g7c1`` set; ``script`` is the benchmark as seen from the page's folder."""
    profile = config.profile(profile)
    root = config.data_root(data_dir or None)
    synthetic = profile == "test" or root is None or config.real_set("g7c1", root) is None
    # generated frames run the benchmark's --profile test without --minutes: a number here
    # would be recorded as a budget that run never had
    minutes = None if synthetic else MINUTES[profile]
    out = Path(out)
    # --reuse: a finished table of the same settings, recipe, code and data is read, not
    # trained again; --overwrite: any other table in `out` is replaced. --monitor: the
    # held-out learning curves (their passes count against each model's budget)
    args = [python, str(script), "--out", str(out), "--seed", str(seed), "--no-progress",
            "--device", device, "--reuse", "--overwrite", "--monitor"]
    data = None
    if synthetic:
        args += ["--synthetic", "--profile", "test", "--models", ",".join(SYNTHETIC_MODELS)]
    else:
        # the page runs in notebooks/: a relative folder would not be the one given
        data = root.resolve()
        args += ["--minutes", str(minutes), "--data", str(data),
                 "--models", ",".join(REAL_MODELS)]
    return TrackerRun(synthetic=synthetic, minutes=minutes, data=data, out=out, args=args)


def run_benchmark(run: TrackerRun, tail: int = 3000) -> str:
    """Run the benchmark; returns the last ``tail`` characters of what it printed, or
    raises RuntimeError with the end of its error output (and of what it printed)."""
    # the script falls back on $VIT_FACEMAP_DATA: it sees the folder the page chose
    env = dict(os.environ, **{config.DATA_ENV: str(run.data or "")})
    done = subprocess.run(run.args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        printed = f"\nits output ended:\n{done.stdout[-tail:]}" if done.stdout.strip() else ""
        raise RuntimeError(f"{Path(run.args[1]).name} exited with status {done.returncode}:\n"
                           f"{done.stderr[-tail:]}{printed}")
    return done.stdout[-tail:]
