"""Compile the arXiv zip exactly as arXiv would (plain ``latexmk -pdf``) and complete it.

MyST writes ``exports/arxiv.zip`` with the .tex files, figures and ``main.bib``. This step
unpacks it into a clean folder, compiles it with pdflatex through latexmk, fails on
undefined references or citations, copies the PDF to ``exports/paper.pdf`` and adds the
generated ``.bbl`` to the zip (arXiv does not run BibTeX reliably, so it wants the .bbl).

:func:`polish_zip` mends what MyST's export gets wrong for a one-file article: tables
embedded from notebooks arrive in ``figure`` environments (captioned "Figure n") with
equal-width columns that long entries overrun (so do the Markdown tables of the prose),
and a reference to another page becomes a web link (``\\href{/methods}{Methods}``), dead
in a PDF. It also puts the project's own
bibliography back in place of MyST's ``main.bib``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

UNDEFINED = re.compile(
    r"(LaTeX Warning: (Reference|Citation) .* undefined|There were undefined (references|citations)"
    r"|Package natbib Warning: Citation .* undefined)"
)


# written in the folder the zip is compiled in: a later compile may empty that folder
KEPT_MARK = ".vit-facemap-tex"


def main_tex(folder: Path) -> str:
    """The top-level .tex of an unpacked export: the one with ``\\documentclass``."""
    tops = sorted(p.name for p in folder.glob("*.tex")
                  if "\\documentclass" in p.read_text(errors="replace"))
    if len(tops) != 1:
        raise RuntimeError(f"expected one .tex with \\documentclass in the arXiv zip, found {tops}")
    return tops[0]


def compile_zip(zip_path: str | Path, pdf_out: str | Path, *, keep: str | Path | None = None,
                latexmk: str = "latexmk") -> Path:
    """Compile ``zip_path`` with ``latexmk -pdf``; write ``pdf_out`` and add the .bbl to the zip."""
    zip_path, pdf_out = Path(zip_path), Path(pdf_out)
    pdf_out.unlink(missing_ok=True)  # a failed compile must not leave an earlier PDF behind
    if not zip_path.is_file():
        raise FileNotFoundError(f"{zip_path} does not exist: the TeX export did not run")
    if shutil.which(latexmk) is None:
        raise FileNotFoundError("latexmk was not found; run 'make sysdeps'")
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="vit-facemap-tex-"))
    # the folder is emptied first: only one this step made before (or an empty one), since
    # --keep exports deleted the zip it was about to compile, and any folder its files
    if work.exists() and (not work.is_dir()
                          or (any(work.iterdir()) and not (work / KEPT_MARK).is_file())):
        raise RuntimeError(f"the folder to compile in, {work}, holds files this step did not "
                           "write and would be emptied first: give a new or empty folder")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / KEPT_MARK).write_text("compiled by python -m vit_facemap.book pdf; replaced by "
                                  "the next compile in this folder\n")
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(work)
    top = main_tex(work)
    cmd = [latexmk, "-pdf", "-interaction=nonstopmode", "-halt-on-error", top]
    proc = subprocess.run(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    log_file = work / (Path(top).stem + ".log")
    log = log_file.read_text(errors="replace") if log_file.exists() else proc.stdout
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        raise RuntimeError(f"latexmk -pdf failed on {zip_path} (in {work}):\n{tail}")
    bad = sorted({m.group(0) for m in UNDEFINED.finditer(log)})
    if bad:
        raise RuntimeError(f"LaTeX found undefined references in {zip_path}: " + "; ".join(bad))
    pdf = work / (Path(top).stem + ".pdf")
    bbl = work / (Path(top).stem + ".bbl")
    if not pdf.is_file():
        raise RuntimeError(f"latexmk ran but wrote no PDF in {work}")
    if not bbl.is_file():
        raise RuntimeError(f"no .bbl was written in {work}: is the bibliography in the template?")
    pdf_out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pdf, pdf_out)
    add_to_zip(zip_path, bbl)
    if keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return pdf_out


TABLE_FIGURE = re.compile(r"\\begin\{figure\}(\[[^\]]*\])?((?:(?!\\end\{figure\}).)*?"
                          r"\\label\{tbl-(?:(?!\\end\{figure\}).)*?)\\end\{figure\}", re.S)
# MyST gives every column of a notebook table the same paragraph width, so a long model
# name runs into the next column; natural widths, shrunk to the line only when wider
TABULAR = re.compile(r"\\begin\{tabular\}\{((?:p\{\\dimexpr[^{}]*\})+)\}(.*?\\end\{tabular\})", re.S)
FIT_WIDTH = "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n"
PAGE_LINK = re.compile(r"\\href\{/([A-Za-z0-9_-]+)\}\{[^{}]*\}")
SECTION = re.compile(r"^(\\section\{.*?\})(\\label\{page-[^}]*\})?$", re.M)


def polish_tex(files: dict[str, str], main: str) -> dict[str, str]:
    """The export's .tex files (name -> text) with tables as tables and page links as refs.

    ``main`` is the top-level file; a page ``/slug`` is the file ``<main stem>-<slug>.tex``,
    whose first numbered ``\\section`` gets the label ``page-<slug>`` that its links now
    point to. A page link left over (to no page, with an anchor or formatted text) is an
    error rather than a dead link in the PDF. Running it twice changes nothing.
    """
    stem = Path(main).stem
    pages = {Path(n).stem.removeprefix(stem + "-"): n for n in files
             if n != main and Path(n).stem.startswith(stem + "-")}
    out, linked = {}, set()

    def ref(m: re.Match) -> str:
        if m.group(1) not in pages:
            return m.group(0)
        linked.add(m.group(1))
        return f"Section~\\ref{{page-{m.group(1)}}}"

    for name, text in files.items():
        text = TABLE_FIGURE.sub(lambda m: "\\begin{table}[!htbp]" + _fit_tabular(m.group(2))
                                + "\\end{table}", text)
        # a Markdown table of the prose (the build record's) has the same equal columns
        text = _fit_tabular(text)
        text = PAGE_LINK.sub(ref, text)
        left = re.findall(r"\\href\{/[^}]*\}", text)
        if left:
            raise RuntimeError(f"{name}: links to pages that are not part of the paper: {left}")
        out[name] = text
    for slug, name in pages.items():
        out[name], n = SECTION.subn(lambda m, s=slug: m.group(1) + f"\\label{{page-{s}}}",
                                    out[name], count=1)
        if n == 0 and slug in linked:
            raise RuntimeError(f"{name} has no numbered \\section for links to /{slug} to refer to")
    return out


# a column with a cell longer than this (visible characters) wraps in a fixed width, so
# one long text cell does not shrink the whole table to an unreadable size
WRAP_CHARS = 40
WRAP_COLUMN = ">{\\raggedright\\arraybackslash}p{0.3\\linewidth}"


def _visible_length(cell: str) -> int:
    cell = re.sub(r"\\href\{[^{}]*\}", "", cell)  # a link's target is not printed
    return len(re.sub(r"\\[A-Za-z]+\*?|[{}\\]", "", cell).strip())


def _column_lengths(tabular: str, n: int) -> list[int]:
    longest = [0] * n
    for row in re.split(r"\\\\", tabular):
        cells = re.split(r"(?<!\\)&", row)
        if len(cells) != n:  # \toprule, \hline, the end of the tabular
            continue
        longest = [max(a, _visible_length(c)) for a, c in zip(longest, cells, strict=True)]
    return longest


def _fit_tabular(body: str) -> str:
    """A table's body with its tabular at natural column widths, no wider than the line."""
    def fit(m: re.Match) -> str:
        n = m.group(1).count("p{")
        spec = "".join(WRAP_COLUMN if k > WRAP_CHARS else "l"
                       for k in _column_lengths(m.group(2), n))
        return FIT_WIDTH + "\\begin{tabular}{" + spec + "}" + m.group(2) + "}"
    return TABULAR.sub(fit, body)


BIB_KEY = re.compile(r"^\s*@\s*(\w+)\s*\{\s*([^,\s]+)\s*,", re.M)


def _entry_keys(text: str) -> list[str]:
    """The entry keys of a BibTeX text in order (``@string``, ``@comment`` and
    ``@preamble`` aside)."""
    return [key for kind, key in BIB_KEY.findall(text)
            if kind.lower() not in ("string", "comment", "preamble")]


def bib_keys(text: str) -> set[str]:
    """The entry keys of a BibTeX file (``@string``, ``@comment`` and ``@preamble`` aside)."""
    return set(_entry_keys(text))


def repeated_keys(texts: list[tuple[Path, str]]) -> list[str]:
    """Entry keys defined more than once across ``texts`` ((file, its text) pairs; BibTeX
    compares keys without case), each with the files that define it."""
    where: dict[str, list[Path]] = {}
    shown: dict[str, str] = {}
    for file, text in texts:
        for key in _entry_keys(text):
            where.setdefault(key.lower(), []).append(file)
            shown.setdefault(key.lower(), key)
    return [f"{shown[k]} ({', '.join(map(str, dict.fromkeys(fs)))})"
            for k, fs in where.items() if len(fs) > 1]


def project_bibliography(root: str | Path = ".") -> list[Path]:
    """The .bib files that ``myst.yml`` names under ``project.bibliography``."""
    import yaml

    root = Path(root)
    project = (yaml.safe_load((root / "myst.yml").read_text()) or {}).get("project") or {}
    files = project.get("bibliography") or []
    return [root / f for f in ([files] if isinstance(files, str) else files)]


def polish_zip(zip_path: str | Path, bibliography: list[str | Path] | None = None) -> None:
    """Apply :func:`polish_tex` to the .tex files of the arXiv zip (rewritten atomically).

    With ``bibliography`` (the project's .bib files), the zip's .bib becomes their text:
    MyST rewrites the entries it exports, dropping the braces that keep BibTeX from
    lowercasing names ("{DeepLabCut}: ..." turns into "Deeplabcut: ...") and renaming
    ``howpublished`` to ``publisher``, which plainnat ignores for @misc. A .bbl already in
    the zip came from the old .bib and is dropped; the pdf step writes a new one.
    """
    zip_path = Path(zip_path)
    tmp = zip_path.with_name(zip_path.name + ".tmp")
    try:
        with zipfile.ZipFile(zip_path) as zf:
            # MyST writes every page at the top of the zip; files/ only holds figures
            tex = {i.filename: zf.read(i.filename).decode() for i in zf.infolist()
                   if i.filename.endswith(".tex") and "/" not in i.filename}
            tops = [n for n, t in tex.items() if "\\documentclass" in t]
            if len(tops) != 1:
                raise RuntimeError(f"expected one .tex with \\documentclass in {zip_path}, "
                                   f"found {tops}")
            new: dict[str, str | bytes] = dict(polish_tex(tex, tops[0]))
            drop: set[str] = set()
            if bibliography:
                bibs = [n for n in zf.namelist() if n.endswith(".bib") and "/" not in n]
                if len(bibs) > 1:
                    raise RuntimeError(f"expected at most one .bib in {zip_path}, found {bibs}")
                if bibs:
                    # BibTeX reports a key defined twice only at the pdf step ("Repeated
                    # entry"), after the export
                    texts = [(Path(b), Path(b).read_text()) for b in bibliography]
                    repeated = repeated_keys(texts)
                    if repeated:
                        raise RuntimeError("the bibliography defines entries more than once, "
                                           f"which BibTeX refuses: {'; '.join(repeated)}")
                    ours = "\n".join(text for _, text in texts)
                    theirs = zf.read(bibs[0]).decode()
                    lost = sorted(bib_keys(theirs) - bib_keys(ours))
                    if lost:
                        raise RuntimeError(f"{bibs[0]} in {zip_path} cites entries that "
                                           f"{', '.join(map(str, bibliography))} lacks: {lost}")
                    if ours != theirs:
                        new[bibs[0]] = ours
                        drop = {n for n in zf.namelist() if n.endswith(".bbl")}
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
                for item in zf.infolist():
                    if item.filename in drop:
                        continue
                    data = new.get(item.filename)
                    dst.writestr(item, data if data is not None else zf.read(item.filename))
        tmp.replace(zip_path)
    finally:
        tmp.unlink(missing_ok=True)


def add_to_zip(zip_path: Path, file: Path) -> None:
    """Put ``file`` at the top of the zip, replacing an older copy (rewrites atomically)."""
    tmp = zip_path.with_name(zip_path.name + ".tmp")
    with zipfile.ZipFile(zip_path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if item.filename != file.name:
                dst.writestr(item, src.read(item.filename))
        dst.write(file, file.name)
    tmp.replace(zip_path)
