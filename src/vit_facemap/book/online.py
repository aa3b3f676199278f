"""``make html-online``: the same book with MyST's own book theme (needs the internet).

The offline build names a local do-nothing site template in ``myst.yml``. For the themed
site we stage a copy of the manuscript, the executed notebooks and the bibliography in
``_build/online/`` with a ``myst.yml`` that uses MyST's book theme, and run
``myst build --html`` there. The committed ``myst.yml`` is never touched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from vit_facemap.book import mystbuild

STAGE = Path("_build/online")
COPY = ("content", "images", "references.bib", "_build/executed")


def stage(root: str | Path = ".", stage_dir: str | Path = STAGE) -> Path:
    """Copy what the site needs into ``stage_dir`` with a themed ``myst.yml``; returns it."""
    root, stage_dir = Path(root), Path(stage_dir)
    config = yaml.safe_load((root / "myst.yml").read_text())
    config.setdefault("site", {})["template"] = "book-theme"
    config["project"].pop("exports", None)  # the paper is built offline by `make paper`
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True)
    for rel in COPY:
        src = root / rel
        if src.is_dir():
            shutil.copytree(src, stage_dir / rel)
        elif src.is_file():
            shutil.copy2(src, stage_dir / rel)
    (stage_dir / "myst.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return stage_dir


def build_online(root: str | Path = ".") -> Path:
    """Stage and run ``myst build --html``; the site lands in ``_build/online/_build/html``."""
    folder = stage(root)
    mystbuild.build(["--html"], folder, expect=["_build/html/index.html"])
    return folder / "_build" / "html"
