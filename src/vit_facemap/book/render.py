"""Render MyST's page ASTs (``myst build --site``) into a static HTML book that works offline.

``myst build --site`` with the project's local site template writes ``_build/site/config.json``
(project metadata and page order) and one ``content/<slug>.json`` per page with the page's
AST (mdast), its frontmatter and its bibliography. This module turns those into
``_build/html/<slug>.html`` with navigation, a title block, numbered figures and equations,
cross-references, citations, notebook outputs (images, tables, text) and a stylesheet, with
nothing fetched from the internet: equations use the MathML that MyST's KaTeX pass already
put in the AST, which browsers display natively.
"""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vit_facemap.book import data_used
from vit_facemap.book.execute import NOTE_MD

STATIC = Path(__file__).parent / "static"
MATHML = re.compile(r"<math\b.*?</math>", re.DOTALL)
Node = dict[str, Any]


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


@dataclass
class Page:
    slug: str
    title: str
    level: int
    data: Node

    @property
    def filename(self) -> str:
        return "index.html" if self.slug == "index" else f"{self.slug}.html"


@dataclass
class Context:
    """What rendering one page needs to know about the others."""

    page: Page
    pages: dict[str, Page]
    in_embed: bool = False
    unknown: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    # the site's files that the book holds beside its pages (figures, linked files)
    files: set[str] = field(default_factory=set)
    # the site's folder of those files (``_build/site/public``)
    public: Path | None = None

    def href(self, url: str | None, html_id: str | None, *, written: str | None = None) -> str:
        anchor = f"#{html_id}" if html_id else ""
        if not url:
            return anchor or "#"
        slug = url.strip("/").split("/")[-1] or "index"
        target = self.pages.get(slug)
        if target is None:
            self.problems.append(f"page {self.page.slug!r} links to {written or url!r}, which "
                                 "is not a page of the book")
        name = target.filename if target else f"{slug}.html"
        return f"{name}{anchor}"

    def file(self, url: str, *, written: str | None = None) -> str:
        """The book's copy of a file that MyST copied to the site (``/name-hash.ext``)."""
        name = url.lstrip("/").split("#")[0]
        if name not in self.files:
            # the tex step refuses such a link too: neither book nor PDF would reach it
            self.problems.append(f"page {self.page.slug!r} links to {written or url!r}, a file "
                                 "that is not a page of the book and is not copied into it; "
                                 "link a page or a web address instead")
        return name


def load_site(site_dir: str | Path) -> tuple[dict[str, Any], list[Page]]:
    """Project metadata and pages in reading order from ``_build/site``."""
    site_dir = Path(site_dir)
    cfg_path = site_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} is missing: run 'myst build --site' first")
    cfg = json.loads(cfg_path.read_text())
    if not cfg.get("projects"):
        raise ValueError(f"{cfg_path} lists no project")
    project = cfg["projects"][0]
    order = [(project.get("index", "index"), None, 0)]
    order += [(p["slug"], p.get("title"), p.get("level", 1)) for p in project.get("pages", [])
              if p.get("slug")]
    pages = []
    for slug, title, level in order:
        path = site_dir / "content" / f"{slug}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing although config.json lists page {slug!r}")
        data = json.loads(path.read_text())
        title = title or data.get("frontmatter", {}).get("title") or slug
        pages.append(Page("index" if slug == order[0][0] else slug, title, level, data))
    # the order of pages and of group titles (toc entries without a file) for navigation
    nav: list[tuple[str, str, int]] = [("page", order[0][0], 0)]
    nav += [("page", p["slug"], p.get("level", 1)) if p.get("slug")
            else ("heading", p.get("title", ""), p.get("level", 1))
            for p in project.get("pages", [])]
    project["_nav"] = nav
    return project, pages


# ----------------------------------------------------------------------------- nodes


def children(node: Node, ctx: Context) -> str:
    return "".join(render_node(c, ctx) for c in node.get("children", []))


# Browsers implement MathML Core, which ignores mathvariant except "normal"; bold and
# double-struck letters are therefore written as the Unicode mathematical alphanumerics.
_VARIANT = re.compile(r'<mi mathvariant="(bold|bold-italic|double-struck)">([^<]+)</mi>')
_DOUBLE_STRUCK_EXCEPTIONS = {"C": "\u2102", "H": "\u210d", "N": "\u2115", "P": "\u2119",
                             "Q": "\u211a", "R": "\u211d", "Z": "\u2124"}


def _variant_char(ch: str, variant: str) -> str:
    upper = {"bold": 0x1D400, "bold-italic": 0x1D468, "double-struck": 0x1D538}[variant]
    if variant == "double-struck" and ch in _DOUBLE_STRUCK_EXCEPTIONS:
        return _DOUBLE_STRUCK_EXCEPTIONS[ch]
    if "A" <= ch <= "Z":
        return chr(upper + ord(ch) - ord("A"))
    if "a" <= ch <= "z":
        return chr(upper + 26 + ord(ch) - ord("a"))
    if "0" <= ch <= "9" and variant == "bold":
        return chr(0x1D7CE + ord(ch) - ord("0"))
    return ch


def unicode_variants(mathml: str) -> str:
    """Replace ``<mi mathvariant="bold">x</mi>`` and friends by Unicode math letters."""
    def swap(m: re.Match) -> str:
        text = "".join(_variant_char(c, m.group(1)) for c in m.group(2))
        return f"<mi>{text}</mi>"

    return _VARIANT.sub(swap, mathml)


def _math(node: Node, display: bool) -> str:
    found = MATHML.search(node.get("html") or "")
    if found:
        return unicode_variants(found.group(0))
    tag = "pre" if display else "code"  # no MathML (KaTeX failed): show the TeX source
    return f'<{tag} class="math-source">{esc(node.get("value", ""))}</{tag}>'


def _stored(item: Node, key: str, ctx: Context) -> Any:
    """``item[key]`` of an output, or the text that MyST moved out of the AST.

    MyST writes an output of more than 25,000 characters to a file of the site (``path``)
    and leaves ``key`` out of the AST (a stream or error keeps its first 61 characters and
    '...'); its theme fetches the file, so the book reads it.
    """
    path = item.get("path")
    if not path:
        return item.get(key, "")
    file = ctx.public / str(path).lstrip("/") if ctx.public else None
    if file is None or not file.is_file():
        ctx.problems.append(f"page {ctx.page.slug!r}: a notebook output is stored in {path}, "
                            "which the site does not hold")
        return item.get(key, "")
    return file.read_text(encoding="utf-8", errors="replace")


def _output(node: Node, ctx: Context) -> str:
    data = node.get("jupyter_data") or {}
    kind = data.get("output_type")
    if kind == "stream":
        cls = "stderr" if data.get("name") == "stderr" else "stdout"
        text = _stored(data, "text", ctx)
        if isinstance(text, dict):
            text = text.get("content", "")
        return f'<pre class="output {cls}">{esc(text)}</pre>'
    if kind == "error":
        # the site's AST holds the traceback as one string (MyST joins the notebook's lines)
        tb = _stored(data, "traceback", ctx) or []
        tb = tb if isinstance(tb, str) else "\n".join(tb)
        tb = re.sub(r"\x1b\[[0-9;]*m", "", tb)
        return f'<pre class="output error">{esc(data.get("ename"))}: {esc(data.get("evalue"))}\n{esc(tb)}</pre>'
    bundle = data.get("data") or {}
    for mime in ("image/png", "image/jpeg", "image/gif", "image/svg+xml"):
        if mime in bundle:
            item = bundle[mime]
            src = item.get("path", "").lstrip("/")
            if not src and item.get("content") and mime == "image/svg+xml":
                # MyST keeps an SVG of up to 25,000 characters in the AST, with no file
                svg = base64.b64encode(str(item["content"]).encode()).decode()
                src = f"data:{mime};base64,{svg}"
            if src:
                alt = (bundle.get("text/plain") or {}).get("content", "output")
                return f'<img class="output-image" src="{esc(src)}" alt="{esc(alt)}">'
    if "text/html" in bundle:
        content = _stored(bundle["text/html"], "content", ctx)
        return f'<div class="output html">{content}</div>'
    if "text/markdown" in bundle:
        # MyST (1.11) does not parse a Markdown output into children: render its source
        source = _stored(bundle["text/markdown"], "content", ctx)
        body = children(node, ctx) if node.get("children") else markdown_html(
            "".join(source) if isinstance(source, list) else source)
        return f'<div class="output markdown">{body}</div>'
    if "text/latex" in bundle:
        return f'<pre class="output">{esc(_stored(bundle["text/latex"], "content", ctx))}</pre>'
    if "text/plain" in bundle:
        return f'<pre class="output">{esc(_stored(bundle["text/plain"], "content", ctx))}</pre>'
    return ""


def markdown_html(text: str) -> str:
    """HTML of a notebook's Markdown output (``IPython.display.Markdown``), CommonMark + tables.

    Raw HTML in it passes through, as ``text/html`` outputs do: notebook outputs are the
    book's own content.
    """
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").render(text)


def _code(node: Node, ctx: Context) -> str:
    body = f'<pre class="code"><code class="language-{esc(node.get("lang", ""))}">{esc(node.get("value", ""))}</code></pre>'
    visibility = node.get("visibility")
    if node.get("executable") and ctx.in_embed:  # a figure embedded from a notebook
        return ""
    if visibility in ("remove", "hide"):
        return f'<details class="code-fold"><summary>Show code</summary>{body}</details>'
    return body


def _container(node: Node, ctx: Context) -> str:
    embed = bool(node.get("source"))
    # the same page's context (its problems and unknown nodes shared), inside an embed or not
    inner_ctx = replace(ctx, in_embed=ctx.in_embed or embed)
    if embed and not _has_output(node):
        src = node["source"]
        if not (src.get("location") or src.get("url")):  # MyST found nothing to embed
            ctx.problems.append(f"page {ctx.page.slug!r}: figure {node.get('label')!r} embeds "
                                f"#{src.get('label')}, but no notebook cell has label "
                                f"{src.get('label')!r}")
        else:
            ctx.problems.append(f"page {ctx.page.slug!r}: figure {node.get('label')!r} embeds "
                                f"{src.get('label')!r} from {src.get('location') or src['url']}"
                                " but that cell has no output")
    kind = node.get("kind", "figure")
    attrs = f' id="{esc(node["html_id"])}"' if node.get("html_id") else ""
    body = children(node, inner_ctx)
    source = node.get("source")
    if source and source.get("url"):
        link = ctx.href(source.get("url"), source.get("label"))
        body += (f'<p class="figure-source">Computed in <a href="{esc(link)}">'
                 f'{esc(source.get("title") or source.get("slug"))}</a></p>')
    return f'<figure class="{esc(kind)}"{attrs}>{body}</figure>'


def _has_output(node: Node) -> bool:
    if node.get("type") in ("image", "output") and (node.get("jupyter_data") or node.get("url")):
        return True
    if node.get("type") in ("table", "math"):  # embedded from a Markdown cell: no output
        return True
    return any(_has_output(c) for c in node.get("children", []))


def _cross_reference(node: Node, ctx: Context) -> str:
    text = children(node, ctx)
    if not node.get("resolved", True) and not node.get("url") and not node.get("html_id"):
        return f'<span class="unresolved">{text}</span>'
    href = ctx.href(node.get("url") if node.get("remote") else None, node.get("html_id"))
    return f'<a class="xref" href="{esc(href)}">{text}</a>'


def _cite(node: Node, ctx: Context) -> str:
    label = node.get("label") or node.get("identifier")
    text = children(node, ctx) or esc(label)
    return f'<a class="cite" href="#cite-{esc(label)}">{text}</a>'


def _cite_group(node: Node, ctx: Context) -> str:
    parts = [render_node(c, ctx) for c in node.get("children", [])]
    if node.get("kind") == "parenthetical":
        return "(" + "; ".join(parts) + ")"
    return ", ".join(parts)


def _heading(node: Node, ctx: Context) -> str:
    depth = min(max(int(node.get("depth", 2)), 2), 6)
    hid = node.get("html_id") or node.get("identifier")
    attrs = f' id="{esc(hid)}"' if hid else ""
    number = f'<span class="heading-number">{esc(node["enumerator"])}</span> ' if node.get(
        "enumerated") and node.get("enumerator") else ""
    return f"<h{depth}{attrs}>{number}{children(node, ctx)}</h{depth}>"


def _math_block(node: Node, ctx: Context) -> str:
    hid = node.get("html_id") or node.get("identifier")
    attrs = f' id="{esc(hid)}"' if hid else ""
    number = f'<span class="eqno">({esc(node["enumerator"])})</span>' if node.get(
        "enumerator") else ""
    return f'<div class="math-display"{attrs}>{_math(node, True)}{number}</div>'


def _table(node: Node, ctx: Context) -> str:
    rows = []
    for row in node.get("children", []):
        cells = []
        for cell in row.get("children", []):
            tag = "th" if cell.get("header") else "td"
            attrs = f' style="text-align:{esc(cell["align"])}"' if cell.get("align") else ""
            # a raw HTML table of a page reaches the AST with its cells' spans
            for span in ("colspan", "rowspan"):
                if cell.get(span):
                    attrs += f' {span}="{int(cell[span])}"'
            cells.append(f"<{tag}{attrs}>{children(cell, ctx)}</{tag}>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return '<table class="table">' + "".join(rows) + "</table>"


def _simple(tag: str, cls: str = "") -> Callable[[Node, Context], str]:
    attr = f' class="{cls}"' if cls else ""

    def render(node: Node, ctx: Context) -> str:
        hid = node.get("html_id")
        id_attr = f' id="{esc(hid)}"' if hid and tag not in ("span", "em", "strong") else ""
        return f"<{tag}{attr}{id_attr}>{children(node, ctx)}</{tag}>"

    return render


def _list(node: Node, ctx: Context) -> str:
    tag = "ol" if node.get("ordered") else "ul"
    start = f' start="{int(node["start"])}"' if node.get("ordered") and node.get("start") else ""
    return f"<{tag}{start}>{children(node, ctx)}</{tag}>"


def _link(node: Node, ctx: Context) -> str:
    url = node.get("url", "")
    written = node.get("urlSource")
    if node.get("static"):  # a local file that is no page: MyST copies it to the site
        url = ctx.file(url, written=written)
    elif node.get("internal") or (url.startswith("/") and not url.startswith("//")):
        url = ctx.href(url.split("#")[0], url.split("#")[1] if "#" in url else None,
                       written=written)
    return f'<a href="{esc(url)}">{children(node, ctx) or esc(url)}</a>'


def _image(node: Node, ctx: Context) -> str:
    src = node.get("urlSource") if str(node.get("url", "")).startswith("http") else None
    src = (src or node.get("url", "")).lstrip("/")
    # an {image} or {figure} of a file keeps its :width: (MyST 1.x drops it from figures
    # that embed a notebook's output, which have nothing to carry it)
    width = f' style="width: {esc(node["width"])}"' if node.get("width") else ""
    return f'<img src="{esc(src)}" alt="{esc(node.get("alt", ""))}"{width}>'


def _iframe(node: Node, ctx: Context) -> str:
    # a :::{iframe}: the page it embeds cannot load in a book opened offline, so its
    # placeholder image (if given) and a link to it
    src = str(node.get("src", ""))
    link = f'<a href="{esc(src)}">{esc(node.get("title") or src)}</a>'
    return f'<div class="iframe">{children(node, ctx)}<p>{link}</p></div>'


def _embed(node: Node, ctx: Context) -> str:
    # an {embed} of a notebook cell holds the cell's code too: the code the cell removes
    # (remove-input, as every labeled cell has) stays on the notebook's page, as on MyST's
    # site and in the PDF, instead of being folded into the page that embeds the output
    return "".join(render_node(c, ctx) for c in node.get("children", [])
                   if not (c.get("type") == "code" and c.get("executable")
                           and c.get("visibility") == "remove"))


def _admonition(node: Node, ctx: Context) -> str:
    kind = node.get("kind", "note")
    return f'<aside class="admonition {esc(kind)}">{children(node, ctx)}</aside>'


def _details(node: Node, ctx: Context) -> str:
    # a :::{dropdown}: folded as on MyST's own site, its summary the title
    hid = f' id="{esc(node["html_id"])}"' if node.get("html_id") else ""
    opened = " open" if node.get("open") else ""
    return f'<details class="dropdown"{hid}{opened}>{children(node, ctx)}</details>'


def _caption_number(node: Node, ctx: Context) -> str:
    return f'<span class="caption-number">{children(node, ctx)}</span> '


RENDERERS: dict[str, Callable[[Node, Context], str]] = {
    "root": children,
    "block": lambda n, c: f'<section class="block">{children(n, c)}</section>',
    "paragraph": _simple("p"),
    "text": lambda n, c: esc(n.get("value", "")),
    "emphasis": _simple("em"),
    "strong": _simple("strong"),
    "underline": _simple("u"),
    "delete": _simple("del"),
    "subscript": _simple("sub"),
    "superscript": _simple("sup"),
    "smallcaps": _simple("span", "smallcaps"),
    "inlineCode": lambda n, c: f"<code>{esc(n.get('value', ''))}</code>",
    "code": _code,
    "heading": _heading,
    "list": _list,
    "listItem": _simple("li"),
    "blockquote": _simple("blockquote"),
    "thematicBreak": lambda n, c: "<hr>",
    "break": lambda n, c: "<br>",
    "link": _link,
    "image": _image,
    "iframe": _iframe,
    "math": _math_block,
    "inlineMath": lambda n, c: _math(n, False),
    "crossReference": _cross_reference,
    "cite": _cite,
    "citeGroup": _cite_group,
    "container": _container,
    "caption": _simple("figcaption"),
    "legend": _simple("div", "legend"),
    "captionNumber": _caption_number,
    "outputs": _simple("div", "outputs"),
    "output": _output,
    "table": _table,
    "admonition": _admonition,
    "admonitionTitle": _simple("p", "admonition-title"),
    "details": _details,
    "summary": _simple("summary"),
    "div": _simple("div"),
    "span": _simple("span"),
    "abbreviation": lambda n, c: f'<abbr title="{esc(n.get("title", ""))}">{children(n, c)}</abbr>',
    "footnoteReference": lambda n, c: f'<sup><a href="#fn-{esc(n.get("identifier"))}">{esc(n.get("enumerator", n.get("identifier")))}</a></sup>',
    "footnoteDefinition": lambda n, c: f'<div class="footnote" id="fn-{esc(n.get("identifier"))}"><sup>{esc(n.get("enumerator", ""))}</sup> {children(n, c)}</div>',
    "definitionList": _simple("dl"),
    "definitionTerm": _simple("dt"),
    "definitionDescription": _simple("dd"),
    "comment": lambda n, c: "",
    "html": lambda n, c: n.get("value", ""),
    "embed": _embed,
    "include": children,
    "mystDirective": children,
    "mystRole": children,
}


def render_node(node: Node, ctx: Context) -> str:
    if node.get("visibility") == "remove" and node.get("type") != "code":
        return ""
    renderer = RENDERERS.get(node.get("type", ""))
    if renderer is None:
        ctx.unknown.add(str(node.get("type")))
        return children(node, ctx) if node.get("children") else esc(node.get("value", ""))
    return renderer(node, ctx)


# ----------------------------------------------------------------------------- pages


def title_block(project: dict[str, Any], page: Page, ctx: Context) -> str:
    fm = page.data.get("frontmatter", {})
    authors = fm.get("authors") or project.get("authors") or []
    affiliations = fm.get("affiliations") or project.get("affiliations") or []
    aff_index = {a["id"]: i + 1 for i, a in enumerate(affiliations)}
    people = []
    for author in authors:
        marks = ",".join(str(aff_index[a]) for a in author.get("affiliations", [])
                         if a in aff_index)
        orcid = author.get("orcid")
        orcid_html = (f' <a class="orcid" href="https://orcid.org/{esc(orcid)}">ORCID {esc(orcid)}</a>'
                      if orcid else "")
        people.append(f'<span class="author">{esc(author.get("name", ""))}'
                      f'{f"<sup>{marks}</sup>" if marks else ""}{orcid_html}</span>')
    affs = "".join(f'<li><sup>{i + 1}</sup> {esc(a.get("name", a.get("id")))}</li>'
                   for i, a in enumerate(affiliations))
    out = [f'<header class="title-block"><h1 class="title">{esc(project.get("title") or fm.get("title", ""))}</h1>',
           f'<p class="authors">{", ".join(people)}</p>', f'<ul class="affiliations">{affs}</ul>']
    abstract = (fm.get("parts") or {}).get("abstract")
    if abstract and abstract.get("mdast"):
        out.append('<section class="abstract"><h2>Abstract</h2>'
                   f'{render_node(abstract["mdast"], ctx)}</section>')
    out.append("</header>")
    return "".join(out)


def bibliography(page: Page) -> str:
    """The page's references, by first author as its author-year citations find them.

    MyST lists them in the order they are first cited; a numbered list in that order read as
    numbered citations, which the text does not have.
    """
    cite = (page.data.get("references") or {}).get("cite") or {}
    order, data = cite.get("order") or [], cite.get("data") or {}
    entries = [(label, data[label].get("html", esc(label))) for label in order if label in data]
    if not entries:
        return ""

    def by_author(entry: tuple[str, str]) -> str:
        return html.unescape(re.sub(r"<[^>]+>", "", entry[1])).casefold()

    items = "".join(f'<li id="cite-{esc(label)}">{text}</li>'
                    for label, text in sorted(entries, key=by_author))
    return f'<section class="bibliography"><h2>References</h2><ul>{items}</ul></section>'


def navigation(project: dict[str, Any], pages: list[Page], current: Page) -> str:
    by_slug = {p.slug: p for p in pages}
    by_slug.setdefault("index", pages[0])
    items = []
    for kind, key, level in project.get("_nav") or [("page", p.slug, p.level) for p in pages]:
        if kind == "heading":
            items.append(f'<li class="nav-heading">{esc(key)}</li>')
            continue
        page = by_slug.get(key) or by_slug.get("index")
        cls = ' class="current"' if page is current else ""
        title = "Title, abstract, introduction" if page.slug == "index" else page.title
        items.append(f'<li class="level-{level}"><a{cls} href="{page.filename}">{esc(title)}</a></li>')
    return (f'<nav class="sidebar"><p class="book-title"><a href="index.html">'
            f'{esc(project.get("short_title") or project.get("title", "Book"))}</a></p>'
            f'<ol>{"".join(items)}</ol></nav>')


def prev_next(pages: list[Page], i: int) -> str:
    out = ['<nav class="prev-next">']
    if i > 0:
        out.append(f'<a class="prev" href="{pages[i - 1].filename}">&larr; {esc(pages[i - 1].title)}</a>')
    if i + 1 < len(pages):
        out.append(f'<a class="next" href="{pages[i + 1].filename}">{esc(pages[i + 1].title)} &rarr;</a>')
    out.append("</nav>")
    return "".join(out)


def build_note(record: dict[str, Any] | None) -> str:
    if not record:
        return ('<p class="build-note">No notebook run record was found: this copy was built '
                'without executing the notebooks.</p>')
    s = record.get("settings", {})
    dev = (record.get("device") or {}).get("device", "?")
    wall = record.get("wall_s", 0) / 60
    data = {True: "the real labeled sets", False: "<strong>generated frames, not real mice</strong>"
            }.get(record.get("real_data"), "data the record does not name")
    used = [r.get("data") for r in record.get("notebooks") or []]
    if data_used.REAL in used and any(u != data_used.REAL for u in used):
        # some pages ran on generated frames (profile test does, with the data folder too)
        data = ("the real labeled sets on some pages and <strong>generated frames, not real "
                "mice,</strong> on others")
    return (f'<p class="build-note">Built from notebooks executed with profile '
            f'<code>{esc(s.get("profile"))}</code> on device <code>{esc(dev)}</code> '
            f'on {data} ({wall:.1f} min, {esc(record.get("created", ""))}); see '
            f'<a href="provenance.html">Build provenance</a>.</p>')


def _includes_note(node: Node) -> bool:
    """Whether the page includes the build note itself (then the title block need not)."""
    if node.get("type") == "include" and str(node.get("file", "")).endswith(NOTE_MD):
        return True
    return any(_includes_note(c) for c in node.get("children", []))


def _starts_with_heading(node: Node) -> bool:
    while node.get("children"):
        node = node["children"][0]
        if node.get("type") == "heading":
            return True
    return False


def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def render_page(project: dict[str, Any], pages: list[Page], i: int,
                record: dict[str, Any] | None = None, *,
                files: set[str] | None = None, public: Path | None = None) -> tuple[str, Context]:
    page = pages[i]
    ctx = Context(page, {p.slug: p for p in pages}, files=set(files or ()), public=public)
    body = []
    fm = page.data.get("frontmatter", {})
    if page.slug == "index":
        body.append(title_block(project, page, ctx))
        if not _includes_note(page.data.get("mdast", {})):
            body.append(build_note(record))
        toc = "".join(f'<li><a href="{p.filename}">{esc(p.title)}</a></li>' for p in pages[1:])
        body.append(f'<section class="contents"><h2>Contents</h2><ol>{toc}</ol></section>')
        if not _starts_with_heading(page.data.get("mdast", {})) and fm.get("title"):
            # MyST took the first heading as the page title; the page still shows it
            body.append(f'<h2 id="{esc(_slugify(fm["title"]))}">{esc(fm["title"])}</h2>')
    else:
        body.append(f'<h1 class="page-title">{esc(fm.get("title") or page.title)}</h1>')
    body.append(render_node(page.data.get("mdast", {}), ctx))
    body.append(bibliography(page))
    body.append(prev_next(pages, i))
    # the browser's tab, bookmarks and history: the book's title, not "Introduction" alone
    title = fm.get("title") or page.title
    if project.get("title"):
        title = project["title"] if page.slug == "index" else f"{title} - {project['title']}"
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<link rel="stylesheet" href="style.css">
</head><body>
{navigation(project, pages, page)}
<main class="page">{''.join(body)}</main>
</body></html>
"""
    return doc, ctx


def render_book(site_dir: str | Path, out_dir: str | Path, *,
                record_path: str | Path | None = None) -> list[Path]:
    """Write the HTML book from ``site_dir`` into ``out_dir``; returns the written pages.

    ``out_dir`` is replaced as a whole so that pages of removed notebooks do not linger. The
    pages are written into a temporary folder beside it that is renamed into place once every
    page rendered: a failed rendering leaves no ``out_dir``, neither half-written nor old.
    """
    site_dir, out_dir = Path(site_dir), Path(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    project, pages = load_site(site_dir)
    record = None
    if record_path and Path(record_path).is_file():
        record = json.loads(Path(record_path).read_text())
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        written = _write_book(site_dir, tmp, project, pages, record)
        tmp.chmod(0o755)  # mkdtemp's folder is private; the book's is not
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [out_dir / p.name for p in written]


def _write_book(site_dir: Path, out_dir: Path, project: dict[str, Any], pages: list[Page],
                record: dict[str, Any] | None) -> list[Path]:
    public = site_dir / "public"
    # MyST copies the project's exports as they stand when the site is built (the previous
    # build's arXiv zip and PDF) and each page's source as downloads; the book offers none
    downloads = {str(e.get("url", "")).lstrip("/") for e in project.get("exports") or []}
    downloads |= {str(e.get("url", "")).lstrip("/") for p in pages
                  for e in p.data.get("frontmatter", {}).get("exports") or []}
    files = set()
    if public.is_dir():
        for item in public.iterdir():
            if item.is_file() and item.suffix not in (".md", ".ipynb") \
                    and item.name not in downloads:
                shutil.copy2(item, out_dir / item.name)
                files.add(item.name)
    shutil.copy2(STATIC / "style.css", out_dir / "style.css")
    written, unknown, problems = [], set(), []
    for i, page in enumerate(pages):
        doc, ctx = render_page(project, pages, i, record, files=files,
                               public=public if public.is_dir() else None)
        unknown |= ctx.unknown
        problems += ctx.problems
        path = out_dir / page.filename
        path.write_text(doc)
        written.append(path)
    if unknown:
        print(f"[book] note: rendered these MyST node types as plain content: {sorted(unknown)}")
    if problems:
        raise RuntimeError("the HTML book would have missing figures or dead links:\n  "
                           + "\n  ".join(problems))
    return written
