"""Check that a book build produced everything it promises, with a message per missing piece."""

from __future__ import annotations

import zipfile
from pathlib import Path

HTML_INDEX = Path("_build/html/index.html")
ARXIV_ZIP = Path("exports/arxiv.zip")
PAPER_PDF = Path("exports/paper.pdf")


def zip_problems(path: Path) -> list[str]:
    """What an arXiv zip lacks: a main .tex, the .bib, the .bbl, the figures it includes."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            texts = {n: zf.read(n).decode("utf-8", "replace") for n in names if n.endswith(".tex")}
    except zipfile.BadZipFile:
        return [f"{path} is not a valid zip file"]
    out = []
    if not any("\\documentclass" in t for t in texts.values()):
        out.append(f"{path} has no .tex with \\documentclass")
    for ext in (".bib", ".bbl"):
        if not any(n.endswith(ext) for n in names):
            out.append(f"{path} has no {ext} file")
    for text in texts.values():
        for line in text.splitlines():
            if "\\includegraphics" in line and "{" in line:
                target = line.rsplit("{", 1)[1].split("}", 1)[0]
                if "#" not in target and target not in names:  # '#': a macro definition
                    out.append(f"{path} lacks the figure {target}")
    return out


def missing_exports(root: str | Path = ".", *, html: bool = True, tex: bool = True,
                    pdf: bool = True) -> list[str]:
    """Human-readable problems with the build outputs under ``root`` (empty: all good)."""
    root = Path(root)
    out = []
    wanted = [(html, HTML_INDEX), (tex, ARXIV_ZIP), (pdf, PAPER_PDF)]
    for flag, rel in wanted:
        path = root / rel
        if not flag:
            continue
        if not path.is_file() or path.stat().st_size == 0:
            out.append(f"{path} is missing or empty")
        elif rel == ARXIV_ZIP:
            out.extend(zip_problems(path))
        elif rel == PAPER_PDF and not path.read_bytes()[:5] == b"%PDF-":
            out.append(f"{path} is not a PDF")
    return out
