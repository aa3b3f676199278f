"""Check that a book build produced everything it promises, with a message per missing piece.

A file that merely exists can still be broken, so each output is opened: every page that
the site config lists has its HTML file and every local link or image in the HTML book
leads somewhere, and nothing a page shows is loaded from the web (the book opens offline);
every file the arXiv zip's .tex includes is in the zip; the PDF is whole (a compile cut
short leaves a file that starts like a PDF but has no end or no page) and, where pdftotext
is installed, prints no ?? or (?) of a reference or citation LaTeX could not resolve.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

HTML_INDEX = Path("_build/html/index.html")
SITE_CONFIG = Path("_build/site/config.json")
ARXIV_ZIP = Path("exports/arxiv.zip")
PAPER_PDF = Path("exports/paper.pdf")

TEX_INCLUDE = re.compile(r"\\(?:include|input)\s*\{([^{}]*)\}")
TEX_COMMENT = re.compile(r"(?<!\\)%.*")


def zip_problems(path: Path) -> list[str]:
    """What an arXiv zip lacks: a main .tex, the .bib, the .bbl, the files it includes."""
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
            for target in TEX_INCLUDE.findall(TEX_COMMENT.sub("", line)):
                target = target.strip()
                # TeX tries the name with .tex first, then as given
                if "#" not in target and not {target, target + ".tex"} & set(names):
                    shown = target if Path(target).suffix else target + ".tex"
                    out.append(f"{path} lacks {shown}, which the paper includes")
    return out


class _Links(HTMLParser):
    """The ids an HTML page defines and the local links and sources it uses."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.targets: list[str] = []
        # what the browser loads to show the page (a link's target it does not)
        self.loads: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value and (name == "id" or tag == "a"):
                self.ids.add(value)
            elif name in ("href", "src") and value is not None:
                self.targets.append(value)
                if name == "src" or tag == "link":
                    self.loads.append(value)
                if tag == "img" and name == "src":
                    self.images.append(value)


def _site_pages(config: Path) -> list[str]:
    """The HTML file of every page the site config lists, as the renderer names them."""
    project = (json.loads(config.read_text()).get("projects") or [{}])[0]
    index = project.get("index", "index")
    slugs = [p["slug"] for p in project.get("pages", []) if p.get("slug")]
    return ["index.html"] + [f"{s}.html" for s in slugs if s != index]


def html_problems(root: Path) -> list[str]:
    """Pages of the site config with no HTML file, and local links that lead nowhere."""
    book = (root / HTML_INDEX).parent
    config = root / SITE_CONFIG
    if not config.is_file():
        return [f"{config} is missing: cannot tell which pages the HTML book should have"]
    out = [f"{book / name} is missing: the site config lists that page"
           for name in _site_pages(config) if not (book / name).is_file()]
    parsed: dict[Path, _Links] = {}

    def links(page: Path) -> _Links:
        if page not in parsed:
            parser = _Links()
            parser.feed(page.read_text(errors="replace"))
            parsed[page] = parser
        return parsed[page]

    inside = book.resolve()
    for page in sorted(book.rglob("*.html")):
        for target in dict.fromkeys(links(page).targets):  # each once, in page order
            url = urlsplit(target)
            if url.scheme in ("http", "https") or url.netloc:
                if target in links(page).loads:  # a script, style, font or image
                    out.append(f"{page.relative_to(root)} loads {target} from the web: the "
                               "book must open offline")
                continue
            if url.scheme:
                continue  # mail, data: URIs
            if target.startswith("/"):
                out.append(f"{page.relative_to(root)} links to {target}, which leads nowhere "
                           "in a book opened from its folder")
                continue
            dest = (page.parent / unquote(url.path)).resolve() if url.path else page.resolve()
            # a file beside the book (the repository's) is there on the build machine only:
            # the book is published, copied, opened on its own
            if not dest.is_relative_to(inside):
                out.append(f"{page.relative_to(root)} links to {target}, which leaves the "
                           "book's folder")
            elif not dest.is_file():
                out.append(f"{page.relative_to(root)} links to {target}, which does not exist")
            elif target in links(page).images and dest.stat().st_size == 0:
                out.append(f"{page.relative_to(root)} shows the image {target}, an empty file")
            elif url.fragment and dest.suffix == ".html" \
                    and unquote(url.fragment) not in links(dest).ids:
                out.append(f"{page.relative_to(root)} links to {target}, but "
                           f"{dest.name} has no id {unquote(url.fragment)!r}")
    return out


def _pdf_pages(path: Path) -> int | None:
    """Pages of a PDF by pdfinfo, or None where pdfinfo is not installed or cannot read it."""
    if shutil.which("pdfinfo") is None:
        return None
    proc = subprocess.run(["pdfinfo", str(path)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace")
    found = re.search(r"^Pages:\s*(\d+)", proc.stdout, re.M)
    return int(found.group(1)) if proc.returncode == 0 and found else 0


PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
STREAM = re.compile(rb"stream\r?\n(.*?)endstream", re.S)


def _has_page_object(data: bytes) -> bool:
    if PAGE_OBJECT.search(data):
        return True
    # pdflatex packs page objects into compressed object streams
    for m in STREAM.finditer(data):
        try:
            if PAGE_OBJECT.search(zlib.decompressobj().decompress(m.group(1))):
                return True
        except zlib.error:
            continue
    return False


def _pdf_text(path: Path) -> str | None:
    """The text of a PDF by pdftotext, or None where pdftotext is not installed or fails."""
    if shutil.which("pdftotext") is None:
        return None
    proc = subprocess.run(["pdftotext", str(path), "-"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, errors="replace")
    return proc.stdout if proc.returncode == 0 else None


# what LaTeX prints for a \ref and a natbib or plain \cite it could not resolve
UNRESOLVED = {"??": "a reference", "(?)": "a citation", "[?]": "a citation"}


def pdf_problems(path: Path) -> list[str]:
    """Whether ``path`` is a whole PDF with at least one page and no unresolved references."""
    data = path.read_bytes()
    if data[:5] != b"%PDF-":
        return [f"{path} is not a PDF"]
    out = []
    if not data.rstrip().endswith(b"%%EOF"):
        out.append(f"{path} does not end with %%EOF: it was cut short")
    pages = _pdf_pages(path)
    if pages == 0 or (pages is None and not _has_page_object(data)):
        out.append(f"{path} has no pages" + (" that pdfinfo can read" if pages == 0 else ""))
    text = _pdf_text(path) if not out else None
    for mark, what in UNRESOLVED.items():
        if text and mark in text:
            out.append(f"{path} prints {mark} where LaTeX could not resolve {what}")
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
        elif rel == HTML_INDEX:
            out.extend(html_problems(root))
        elif rel == ARXIV_ZIP:
            out.extend(zip_problems(path))
        elif rel == PAPER_PDF:
            out.extend(pdf_problems(path))
    return out
