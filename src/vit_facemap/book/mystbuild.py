"""Run ``myst build`` and turn its warnings into a failing exit status.

MyST reports unresolved cross-references and citations as warnings and still exits 0 (a
failed TeX export can exit 0 too), so the book build reads the log: any warning or error
line fails the build unless it is on the short list of messages that do not concern the
content (the update check, which needs the internet).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# ⚠️ / ⛔️ / 🚨 mark problems in MyST's log.
PROBLEM = re.compile("(\u26a0|\u26d4|\U0001f6a8)")
MIN_NODE = 20  # the oldest Node.js that mystmd runs on
BENIGN = (
    re.compile(r"update available", re.IGNORECASE),
    re.compile(r"Could not (check|reach) .*(version|update)", re.IGNORECASE),
)


def problems(log: str) -> list[str]:
    """The lines of a MyST log that report a content problem."""
    out = []
    for line in log.splitlines():
        if PROBLEM.search(line) and not any(p.search(line) for p in BENIGN):
            out.append(line.strip())
    return out


def myst_executable() -> str:
    here = Path(sys.executable).parent / "myst"
    if here.exists():
        return str(here)
    found = shutil.which("myst")
    if not found:
        raise FileNotFoundError("the 'myst' command was not found; install mystmd (make install)")
    return found


def run_myst(args: list[str], root: str | Path = ".", *, echo: bool = True) -> tuple[int, str]:
    """Run ``myst build ARGS`` in ``root``; returns (exit status, combined log)."""
    env = dict(os.environ)
    # MyST asks the npm registry for newer versions; nothing of the build depends on it.
    env.setdefault("MYST_NO_UPDATE_CHECK", "1")
    # stdin closed: without Node.js, mystmd asks whether to install it, and as its output is
    # captured the question went unseen while the build waited for an answer at a terminal
    proc = subprocess.run([myst_executable(), "build", *args], cwd=root, env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if echo:
        print(proc.stdout, end="")
    return proc.returncode, proc.stdout


def build(args: list[str], root: str | Path = ".", *, expect: list[str | Path] = ()) -> None:
    """``myst build ARGS`` that raises ``RuntimeError`` on a warning, error or missing file."""
    code, log = run_myst(args, root)
    found = problems(log)
    missing = [str(p) for p in expect if not (Path(root) / p).exists()]
    errors = []
    if code != 0:
        errors.append(f"myst build {' '.join(args)} exited with status {code}")
    if found:
        errors.append("MyST reported problems:\n  " + "\n  ".join(found))
        if any('"_lift"' in line for line in found):
            # what MyST's TeX export says about an embed it could not resolve
            errors.append("(a '_lift' node is an embed such as ':::{figure} #fig-x' whose label "
                          "no notebook cell has)")
    if "Node.js" in log and ("could not be found" in log or "requires Node.js" in log):
        errors.append(f"(MyST runs on Node.js >= {MIN_NODE}: install it, or let mystmd fetch "
                      "it, with the internet, by setting MYSTMD_ALLOW_NODEENV=1 (make sysdeps does))")
    if missing:
        errors.append("expected outputs are missing: " + ", ".join(missing))
    if errors:
        raise RuntimeError("\n".join(errors))
