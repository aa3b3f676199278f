"""The book builder: renderer on a tiny MyST AST, papermill runner, export checks."""

from __future__ import annotations

import base64
import json
import re
import shutil
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest

from vit_facemap.book import check, execute, latex, mystbuild, render

MATHML = '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block"><mi>y</mi></math>'


def _text(value):
    return {"type": "text", "value": value}


def _site(tmp_path: Path, *, with_output: bool = True) -> Path:
    """A two-page site as `myst build --site` writes it: an index and a notebook page."""
    site = tmp_path / "site"
    (site / "content").mkdir(parents=True)
    (site / "public").mkdir()
    (site / "public" / "abc.png").write_bytes(b"\x89PNG fake")
    (site / "config.json").write_text(json.dumps({"projects": [{
        "title": "Tiny paper", "short_title": "Tiny", "index": "index",
        "authors": [{"name": "A. Author", "affiliations": ["lab"], "orcid": "0000-0002-1825-0097"}],
        "affiliations": [{"id": "lab", "name": "Some Lab"}],
        "pages": [{"slug": "nb", "title": "Notebook page", "level": 1}],
    }]}))
    output = {"type": "output", "jupyter_data": {"output_type": "display_data", "data": {
        "image/png": {"path": "/abc.png"}, "text/plain": {"content": "<Figure>"}}}}
    # as MyST 1.11 writes an IPython.display.Markdown output: the source, no parsed children
    markdown = {"type": "output", "children": [], "jupyter_data": {
        "output_type": "display_data", "data": {
            "text/markdown": {"content": "**No real data** (`data_dir`): generated frames."},
            "text/plain": {"content": "<IPython.core.display.Markdown object>"}}}}
    figure = {"type": "container", "kind": "figure", "html_id": "fig-a", "label": "fig-a",
              "source": {"url": "/nb", "label": "fig-nb", "title": "Notebook page"},
              "children": [
                  {"type": "code", "executable": True, "value": "plot()", "visibility": "remove"},
                  {"type": "outputs", "children": [output] if with_output else []},
                  {"type": "caption", "children": [{"type": "paragraph", "children": [
                      {"type": "captionNumber", "children": [_text("Figure 1:")]},
                      _text("A caption.")]}]},
              ]}
    index = {"frontmatter": {"title": "Intro", "parts": {"abstract": {"mdast": {
        "type": "root", "children": [{"type": "paragraph", "children": [_text("We study mice.")]}]}}}},
        "mdast": {"type": "root", "children": [{"type": "block", "children": [
            {"type": "heading", "depth": 2, "html_id": "intro", "children": [_text("Introduction")]},
            {"type": "paragraph", "children": [
                _text("See "),
                {"type": "crossReference", "remote": True, "url": "/nb", "html_id": "fig-nb",
                 "resolved": True, "children": [_text("Figure 1")]},
                _text(" and "),
                {"type": "citeGroup", "kind": "parenthetical", "children": [
                    {"type": "cite", "label": "doe2020", "children": [_text("Doe, 2020")]}]},
                _text(" <b>not bold</b>."),
            ]},
            {"type": "math", "html_id": "eq-y", "enumerator": "1",
             "html": f'<span class="katex">{MATHML}</span>', "value": "y"},
            figure,
        ]}]},
        "references": {"cite": {"order": ["doe2020"], "data": {"doe2020": {
            "html": 'Doe, J. (2020). A study. <a href="https://doi.org/10.1/x">10.1/x</a>'}}}}}
    nb = {"frontmatter": {"title": "Notebook page"}, "mdast": {"type": "root", "children": [
        {"type": "block", "children": [
            {"type": "container", "kind": "figure", "html_id": "fig-nb", "children": [
                {"type": "code", "executable": True, "value": "plot()", "visibility": "remove"},
                {"type": "outputs", "children": [output]}]},
            {"type": "outputs", "children": [markdown]},
            {"type": "table", "children": [
                {"type": "tableRow", "children": [{"type": "tableCell", "header": True,
                                                   "children": [_text("a")]}]},
                {"type": "tableRow", "children": [{"type": "tableCell",
                                                   "children": [_text("1")]}]}]},
        ]}]}}
    (site / "content" / "index.json").write_text(json.dumps(index))
    (site / "content" / "nb.json").write_text(json.dumps(nb))
    return site


def test_render_book_writes_linked_pages(tmp_path):
    out = tmp_path / "html"
    record = tmp_path / "record.json"
    record.write_text(json.dumps({"settings": {"profile": "quick"}, "device": {"device": "cpu"},
                                  "wall_s": 120, "created": "2026-01-01"}))
    pages = render.render_book(_site(tmp_path), out, record_path=record)
    assert [p.name for p in pages] == ["index.html", "nb.html"]
    index = (out / "index.html").read_text()
    assert "Tiny paper" in index and "A. Author<sup>1</sup>" in index and "Some Lab" in index
    assert "orcid.org/0000-0002-1825-0097" in index
    assert "We study mice." in index  # abstract
    assert "profile <code>quick</code> on device <code>cpu</code>" in index
    assert '<a class="xref" href="nb.html#fig-nb">Figure 1</a>' in index
    assert '(<a class="cite" href="#cite-doe2020">Doe, 2020</a>)' in index
    assert 'id="cite-doe2020"' in index and "10.1/x" in index
    assert MATHML in index and '<span class="eqno">(1)</span>' in index
    assert '<img class="output-image" src="abc.png"' in index
    assert "plot()" not in index  # code of an embedded figure stays in the notebook page
    assert "&lt;b&gt;not bold&lt;/b&gt;" in index  # text is escaped
    assert 'href="nb.html"' in index and "https://cdn" not in index
    nb = (out / "nb.html").read_text()
    assert "<details" in nb and "plot()" in nb  # folded code on the notebook page
    assert "<th>a</th>" in nb and "<td>1</td>" in nb
    assert ("<p><strong>No real data</strong> (<code>data_dir</code>): generated frames.</p>"
            in nb)
    assert "IPython.core.display.Markdown" not in nb
    assert (out / "abc.png").exists() and (out / "style.css").exists()


def test_render_lists_references_by_author_unnumbered(tmp_path):
    # MyST orders them by first citation; numbered in that order they read as numbered
    # citations beside the text's author-year ones
    site = _site(tmp_path)
    index = json.loads((site / "content/index.json").read_text())
    # by the text a reader sees: not by its tags (<i> before 'a') nor by case ('Z' before 'a')
    index["references"]["cite"] = {"order": ["zed2019", "doe2020", "ab2021"], "data": {
        "zed2019": {"html": "Zed, Z. (2019). Last."},
        "doe2020": {"html": "<i>doe</i>, J. (2020). Middle."},
        "ab2021": {"html": "ab, A. (2021). First."}}}
    (site / "content/index.json").write_text(json.dumps(index))
    render.render_book(site, tmp_path / "html")
    page = (tmp_path / "html" / "index.html").read_text()
    refs = page[page.index('<section class="bibliography">'):]
    assert "<ol>" not in refs and "<ul>" in refs
    found = [refs.index(f'id="cite-{k}"') for k in ("ab2021", "doe2020", "zed2019")]
    assert found == sorted(found)


def test_render_fails_on_embed_without_output(tmp_path):
    with pytest.raises(RuntimeError, match="fig-a"):
        render.render_book(_site(tmp_path, with_output=False), tmp_path / "html")


def test_render_takes_an_embedded_markdown_table_for_content(tmp_path):
    # as MyST 1.11 writes :::{figure} #tbl-md (:kind: table) of a :::{table} in a notebook's
    # Markdown cell: the table itself, which is no cell output
    site = _site(tmp_path)
    index = json.loads((site / "content/index.json").read_text())
    index["mdast"]["children"][0]["children"].append({
        "type": "container", "kind": "table", "html_id": "tbl-a", "label": "tbl-a",
        "source": {"url": "/nb", "label": "tbl-md", "location": "/_build/executed/01_nb.ipynb"},
        "children": [{"type": "table", "children": [{"type": "tableRow", "children": [
            {"type": "tableCell", "children": [_text("lr 0.001")]}]}]}]})
    (site / "content/index.json").write_text(json.dumps(index))
    render.render_book(site, tmp_path / "html")
    assert "<td>lr 0.001</td>" in (tmp_path / "html/index.html").read_text()


def _add_to_index(site: Path, *nodes) -> None:
    index = json.loads((site / "content/index.json").read_text())
    index["mdast"]["children"][0]["children"].append({"type": "paragraph", "children": list(nodes)})
    (site / "content/index.json").write_text(json.dumps(index))


def test_render_fails_on_a_link_to_a_file_that_is_not_a_page(tmp_path):
    # as MyST writes [data](../DATA.md) and [notes](notes.txt): copied to public/, linked there
    site = _site(tmp_path)
    (site / "public/DATA-ab12.md").write_text("# Data")
    (site / "public/notes-cd34.txt").write_text("notes")
    notes = {"type": "link", "url": "/notes-cd34.txt", "urlSource": "notes.txt", "static": True,
             "children": [_text("notes")]}
    _add_to_index(site, notes)
    render.render_book(site, tmp_path / "html")
    assert '<a href="notes-cd34.txt">notes</a>' in (tmp_path / "html/index.html").read_text()
    assert (tmp_path / "html/notes-cd34.txt").is_file()
    _add_to_index(site, {"type": "link", "url": "/DATA-ab12.md", "urlSource": "../DATA.md",
                         "static": True, "children": [_text("data")]},
                  {"type": "link", "url": "/gone", "urlSource": "gone.md", "internal": True,
                   "children": [_text("gone")]})
    with pytest.raises(RuntimeError) as err:
        render.render_book(site, tmp_path / "html2")
    assert "page 'index' links to '../DATA.md', a file that is not a page" in str(err.value)
    assert "page 'index' links to 'gone.md', which is not a page of the book" in str(err.value)


def test_dropdown_renders_as_details_and_summary():
    # a :::{dropdown} More as MyST writes it
    node = {"type": "details", "open": True, "children": [
        {"type": "summary", "children": [_text("More")]},
        {"type": "paragraph", "children": [_text("Hidden text")]}]}
    page = render.Page("index", "T", 0, {})
    ctx = render.Context(page, {"index": page})
    assert render.render_node(node, ctx) == ('<details class="dropdown" open><summary>More'
                                             '</summary><p>Hidden text</p></details>')
    assert not ctx.unknown
    del node["open"]
    assert render.render_node(node, ctx).startswith('<details class="dropdown"><summary>')


def test_image_keeps_its_width():
    # :::{figure} images/x.png with :width: 60%, as MyST writes its image node
    page = render.Page("index", "T", 0, {})
    ctx = render.Context(page, {"index": page})
    node = {"type": "image", "url": "/x-1a2b.png", "alt": "A face", "width": "60%"}
    assert render.render_node(node, ctx) == '<img src="x-1a2b.png" alt="A face" style="width: 60%">'
    del node["width"]
    assert render.render_node(node, ctx) == '<img src="x-1a2b.png" alt="A face">'


def test_error_output_shows_its_traceback_as_lines():
    # as MyST 1.11 writes a cell's error (a raises-exception cell): the traceback's lines
    # joined into one string, not the notebook's list
    node = {"type": "output", "jupyter_data": {
        "output_type": "error", "ename": "ValueError", "evalue": "bad frame",
        "traceback": "Traceback (most recent call last)\n\x1b[0;31mValueError\x1b[0m: bad frame"}}
    page = render.Page("nb", "T", 1, {})
    html = render.render_node(node, render.Context(page, {"nb": page}))
    assert html == ('<pre class="output error">ValueError: bad frame\nTraceback (most recent '
                    'call last)\nValueError: bad frame</pre>')
    node["jupyter_data"]["traceback"] = ["Traceback (most recent call last)", "ValueError: x"]
    assert "last)\nValueError: x</pre>" in render.render_node(node, render.Context(page, {"nb": page}))


def test_notebook_outputs_that_myst_moved_to_files_are_shown_whole(tmp_path):
    # as MyST 1.11 writes an output of more than 25,000 characters into the site: the text in
    # public/<hash>.<ext>, the AST keeping only its path (a stream its first 61 characters)
    site = _site(tmp_path)
    rows = "".join(f"<tr><td>animal {i}</td></tr>" for i in range(1500))
    (site / "public/h1.html").write_text(f"<table>{rows}</table>")
    (site / "public/h2.txt").write_text("epoch 1\n" * 4000)
    table = {"type": "output", "jupyter_data": {"output_type": "execute_result", "data": {
        "text/html": {"content_type": "text/html", "hash": "h1", "path": "/h1.html"},
        "text/plain": {"content_type": "text/plain", "hash": "h3", "path": "/h3.txt"}}}}
    stream = {"type": "output", "jupyter_data": {"output_type": "stream", "name": "stdout",
                                                 "text": "epoch 1\n" * 7 + "epoch...",
                                                 "hash": "h2", "path": "/h2.txt"}}
    nb = json.loads((site / "content/nb.json").read_text())
    nb["mdast"]["children"][0]["children"].append({"type": "outputs",
                                                   "children": [table, stream]})
    (site / "content/nb.json").write_text(json.dumps(nb))
    render.render_book(site, tmp_path / "html")
    page = (tmp_path / "html/nb.html").read_text()
    assert f'<div class="output html"><table>{rows}</table></div>' in page
    assert '<pre class="output stdout">' + "epoch 1\n" * 4000 + "</pre>" in page
    (site / "public/h1.html").unlink()
    with pytest.raises(RuntimeError, match="page 'nb': a notebook output is stored in /h1.html"):
        render.render_book(site, tmp_path / "html2")


def test_a_small_svg_figure_is_shown_not_its_text():
    # as MyST 1.11 writes an SVG output of up to 25,000 characters: in the AST, with no file
    svg = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><circle r="2"/></svg>'
    node = {"type": "output", "jupyter_data": {"output_type": "display_data", "data": {
        "image/svg+xml": {"content_type": "image/svg+xml", "content": svg},
        "text/plain": {"content_type": "text/plain", "content": "<Figure size 640x480>"}}}}
    page = render.Page("nb", "T", 1, {})
    html = render.render_node(node, render.Context(page, {"nb": page}))
    src = re.search(r'<img class="output-image" src="data:image/svg\+xml;base64,([^"]+)"', html)
    assert src and base64.b64decode(src.group(1)).decode() == svg


def test_table_cells_keep_their_spans():
    # as MyST 1.11 writes a raw HTML table of a page: <th colspan="2">, <td rowspan="2">
    def cell(text, **attrs):
        return {"type": "tableCell", "children": [_text(text)], **attrs}

    node = {"type": "table", "children": [
        {"type": "tableRow", "children": [cell("set", header=True, rowspan=2),
                                          cell("error px", header=True, colspan=2)]},
        {"type": "tableRow", "children": [cell("mean", header=True), cell("median", header=True)]},
        {"type": "tableRow", "children": [cell("g7c1"), cell("3.1", align="right"), cell("2.5")]}]}
    page = render.Page("nb", "T", 1, {})
    assert render.render_node(node, render.Context(page, {"nb": page})) == (
        '<table class="table"><tr><th rowspan="2">set</th><th colspan="2">error px</th></tr>'
        "<tr><th>mean</th><th>median</th></tr>"
        '<tr><td>g7c1</td><td style="text-align:right">3.1</td><td>2.5</td></tr></table>')


def test_iframe_becomes_a_link_to_its_page():
    # as MyST 1.11 writes :::{iframe} https://... with :title: (and no placeholder image)
    node = {"type": "iframe", "src": "https://www.youtube.com/embed/abc", "width": "100%",
            "title": "Tracked keypoints, whole video"}
    page = render.Page("nb", "T", 1, {})
    ctx = render.Context(page, {"nb": page})
    assert render.render_node(node, ctx) == (
        '<div class="iframe"><p><a href="https://www.youtube.com/embed/abc">Tracked keypoints, '
        "whole video</a></p></div>")
    assert not ctx.unknown


def test_embed_of_a_notebook_cell_shows_its_output_not_its_removed_code():
    # as MyST 1.11 writes ```{embed} #tbl-speed``` of a labeled cell without a caption (no
    # figure around it): the cell's code, removed by its remove-input tag, and outputs
    output = {"type": "output", "jupyter_data": {"output_type": "stream", "name": "stdout",
                                                 "text": "31.4 frames/s"}}
    node = {"type": "embed", "source": {"label": "tbl-speed", "url": "/tracking"}, "children": [
        {"type": "code", "lang": "python", "executable": True, "visibility": "remove",
         "value": "best_fps(model)"},
        {"type": "outputs", "visibility": "show", "children": [output]}]}
    page = render.Page("results", "T", 1, {})
    html = render.render_node(node, render.Context(page, {"results": page}))
    assert "31.4 frames/s" in html and "best_fps" not in html
    node["children"][0]["visibility"] = "show"  # a cell whose code is shown: shown here too
    assert "best_fps" in render.render_node(node, render.Context(page, {"results": page}))


def test_render_needs_site(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        render.load_site(tmp_path)


def _notebook(path: Path, body: str, title: str = "T") -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        'profile = "default"\ndevice = "auto"\ndata_dir = ""\nseed = 0\nout_dir = "x"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}"), params,
                nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, str(path))


def test_runner_passes_parameters_and_records(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "01_a.ipynb", "#| label: fig-x\nimport json, os, pathlib\n"
              "pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)\n"
              "pathlib.Path(out_dir, 'p.json').write_text(json.dumps(dict(profile=profile, "
              "device=device, data_dir=data_dir, seed=seed, cwd=os.getcwd())))")
    (nbs / "notes.ipynb").write_text("not a book notebook")  # no NN_ prefix: ignored
    out = tmp_path / "results"
    settings = execute.BookSettings(profile="test", device="cpu", data_dir="", seed=3,
                                    out_dir=str(out))
    record = execute.execute_all(nbs, tmp_path / "executed", settings, log=lambda m: None)
    got = json.loads((out / "p.json").read_text())
    assert got == {"profile": "test", "device": "cpu", "data_dir": "", "seed": 3,
                   "cwd": str(nbs.resolve())}
    assert [r.name for r in record.notebooks] == ["01_a.ipynb"] and record.notebooks[0].ok
    saved = json.loads((tmp_path / "executed" / execute.RECORD_JSON).read_text())
    assert saved["settings"]["profile"] == "test" and saved["notebooks"][0]["wall_s"] > 0
    assert "profile **`test`**" in (tmp_path / "executed" / execute.RECORD_MD).read_text()
    executed = nbformat.read(str(tmp_path / "executed" / "01_a.ipynb"), as_version=4)
    assert "remove-input" in executed.cells[-1].metadata["tags"]
    assert not any(c.get("outputs") for c in nbformat.read(str(nbs / "01_a.ipynb"), 4).cells
                   if c.cell_type == "code")  # the committed notebook is left alone


def test_build_note_is_real_only_if_every_notebook_used_the_real_sets(tmp_path):
    """Profile test runs some notebooks on generated frames although the data folder is
    there: the note must not say "from the real labeled sets"; it names those pages. A
    notebook that records nothing is not counted as real, even with a stale record left
    from an earlier run."""
    data = tmp_path / "data"
    (data / "g7c1").mkdir(parents=True)  # a real data folder the build is given
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    record = "from vit_facemap.book.data_used import record_data_used\n"
    _notebook(nbs / "01_real.ipynb", record + "record_data_used(out_dir, '01_real', real=True, "
              "source='real g7c1')", title="Real page")
    _notebook(nbs / "02_gen.ipynb", record + "record_data_used(out_dir, '02_gen', "
              "real=False, source='generated frames')", title="Tracker page")
    _notebook(nbs / "03_silent.ipynb", "pass", title="Silent page")
    out = tmp_path / "results"
    (out / "data_used").mkdir(parents=True)
    (out / "data_used" / "03_silent.json").write_text('{"data": "real", "source": "old"}')
    settings = execute.BookSettings(profile="test", device="cpu", data_dir=str(data),
                                    out_dir=str(out))
    got = execute.execute_all(nbs, tmp_path / "executed", settings, log=lambda m: None)
    assert [(r.data, r.title) for r in got.notebooks] == [
        ("real", "Real page"), ("generated", "Tracker page"), ("unrecorded", "Silent page")]
    assert not got.real_data and got.data_folder
    note = (tmp_path / "executed" / execute.NOTE_MD).read_text()
    assert note.startswith("::::{warning} Built partly on generated data\n")
    assert "real labeled sets;" not in note
    assert "*Tracker page* (`02_gen.ipynb`)" in note and "`03_silent.ipynb`" in note
    assert "01_real" not in note
    saved = json.loads((tmp_path / "executed" / execute.RECORD_JSON).read_text())
    assert saved["real_data"] is False
    assert [n["data"] for n in saved["notebooks"]] == ["real", "generated", "unrecorded"]
    assert "generated frames, not real mice" in render.build_note(saved)


def test_runner_fails_on_a_failing_notebook(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "01_bad.ipynb", "raise ValueError('broken on purpose')")
    _notebook(nbs / "02_never.ipynb", "pass")
    with pytest.raises(RuntimeError, match="01_bad.ipynb"):
        execute.execute_all(nbs, tmp_path / "executed", execute.BookSettings(
            profile="test", device="cpu", out_dir=str(tmp_path)), log=lambda m: None)
    saved = json.loads((tmp_path / "executed" / execute.RECORD_JSON).read_text())
    assert [n["ok"] for n in saved["notebooks"]] == [False]  # stopped at the first failure
    assert "broken on purpose" in saved["notebooks"][0]["error"]


def test_an_interrupted_run_leaves_no_record_of_the_run_before(tmp_path, monkeypatch):
    """Ctrl-C in the last notebook: its partly executed copy is there, as are the fresh
    copies before it, and the previous run's record listed them all as ok."""
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    for name in ("01_a.ipynb", "02_b.ipynb"):
        _notebook(nbs / name, "pass")
    stop = set()

    def papermill(source, executed, settings, **kwargs):  # no kernel: copies the notebook
        shutil.copyfile(source, executed)
        if source.name in stop:
            raise KeyboardInterrupt

    monkeypatch.setattr(execute, "execute_notebook", papermill)
    ex = tmp_path / "executed"
    execute.execute_all(nbs, ex, execute.BookSettings(profile="default", out_dir=str(tmp_path)),
                        log=lambda m: None)
    assert execute.complete_run(ex)["settings"]["profile"] == "default"
    stop.add("02_b.ipynb")
    with pytest.raises(KeyboardInterrupt):
        execute.execute_all(nbs, ex, execute.BookSettings(profile="quick", out_dir=str(tmp_path)),
                            log=lambda m: None)
    with pytest.raises(RuntimeError, match="build_record.json is missing"):
        execute.complete_run(ex)
    assert not (ex / execute.NOTE_MD).exists()


@pytest.mark.parametrize("given", ["typo", "empty"])
def test_execute_refuses_a_data_folder_without_the_real_sets(tmp_path, monkeypatch, capsys,
                                                             given):
    """A mistyped DATA= built the whole book on generated frames, whose note then said no
    data folder was given."""
    from vit_facemap.book import __main__ as book

    ran = []
    monkeypatch.setattr(execute, "execute_notebook", lambda *a, **k: ran.append(a))
    monkeypatch.chdir(tmp_path)
    _notebook(tmp_path / "01_a.ipynb", "pass")
    (tmp_path / "empty").mkdir()
    assert book.main(["execute", "--profile", "test", "--device", "cpu", "--data-dir", given,
                      "--notebooks", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"data folder {tmp_path / given}" in err and "g7c1, schroeder" in err
    assert ran == [] and not (tmp_path / "_build/executed" / execute.RECORD_JSON).exists()


def test_runner_keeps_the_notebooks_it_is_asked_to_write_over(tmp_path, monkeypatch):
    # execute --executed notebooks: the earlier copies removed first were the notebooks
    monkeypatch.setattr(execute, "execute_notebook", lambda *a, **k: None)
    _notebook(tmp_path / "01_a.ipynb", "pass")
    with pytest.raises(ValueError, match="give another folder for the executed copies"):
        execute.execute_all(tmp_path, tmp_path / ".", execute.BookSettings(profile="test"))
    assert (tmp_path / "01_a.ipynb").is_file()


def test_runner_rejects_unknown_profile(tmp_path):
    (tmp_path / "nb").mkdir()
    with pytest.raises(ValueError, match="profile"):
        execute.execute_all(tmp_path / "nb", tmp_path / "ex", execute.BookSettings(profile="huge"))


def _zip(path: Path, files: dict[str, str | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _pdf(pages: int = 1, text: str = "") -> bytes:
    """A small well-formed PDF with ``pages`` pages, empty or each showing ``text``."""
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    objs = ["<< /Type /Catalog /Pages 2 0 R >>",
            f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>"]
    if not text:
        objs += ["<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>"] * pages
    else:
        font, stream = 3 + pages, 4 + pages
        objs += [f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 100] /Contents {stream} 0 R "
                 f"/Resources << /Font << /F1 {font} 0 R >> >> >>"] * pages
        content = f"BT /F1 12 Tf 10 50 Td ({text}) Tj ET"
        objs += ["<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
                 f"<< /Length {len(content)} >>\nstream\n{content}\nendstream"]
    out, offsets = b"%PDF-1.4\n", []
    for i, obj in enumerate(objs):
        offsets.append(len(out))
        out += f"{i + 1} 0 obj\n{obj}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
            .encode())
    return out


ARXIV_TEX = ("\\documentclass{article}\n\\begin{document}\n\\input{arxiv-intro}\n"
             "\\include{arxiv-results.tex}\n% \\input{arxiv-old} is commented out\n"
             "\\includegraphics[width=1cm]{files/a.png}\n\\end{document}\n")


def _outputs(root: Path) -> Path:
    """A complete set of build outputs: two-page HTML book, arXiv zip, PDF."""
    (root / "_build/site").mkdir(parents=True)
    (root / "_build/site/config.json").write_text(json.dumps({"projects": [{
        "index": "intro", "pages": [{"slug": "intro"}, {"title": "Group"}, {"slug": "nb"}]}]}))
    html = root / "_build/html"
    html.mkdir()
    (html / "style.css").write_text("")
    (html / "a.png").write_bytes(b"png")
    (html / "index.html").write_text(
        '<link rel="stylesheet" href="style.css"><h2 id="intro">Intro</h2>'
        '<a href="#intro">top</a> <a href="#">up</a> <a href="nb.html#fig-1">Figure 1</a> '
        '<a href="https://example.org/x.html">web</a> <a href="mailto:a@b.c">mail</a>')
    (html / "nb.html").write_text('<figure id="fig-1"><img src="a.png"></figure>'
                                  '<a href="index.html">back</a>')
    (root / "exports").mkdir()
    (root / "exports/paper.pdf").write_bytes(_pdf())
    _zip(root / "exports/arxiv.zip", {"arxiv.tex": ARXIV_TEX, "arxiv-intro.tex": "x",
                                       "arxiv-results.tex": "y", "main.bib": "",
                                       "arxiv.bbl": "", "files/a.png": b"x"})
    return root


def test_missing_exports_are_reported(tmp_path):
    problems = check.missing_exports(tmp_path)
    assert len(problems) == 3 and any("paper.pdf" in p for p in problems)
    _outputs(tmp_path)
    assert check.missing_exports(tmp_path) == []
    zpath = tmp_path / "exports/arxiv.zip"
    _zip(zpath, {"arxiv.tex": ARXIV_TEX, "main.bib": "", "arxiv-intro.tex": "x",
                 "arxiv-results.tex": "y", "files/a.png": b"x"})
    assert check.missing_exports(tmp_path) == [f"{zpath} has no .bbl file"]
    _zip(zpath, {"arxiv.tex": ARXIV_TEX, "main.bib": "", "arxiv.bbl": "", "arxiv-intro.tex": "x",
                 "arxiv-results.tex": "y"})
    assert check.missing_exports(tmp_path) == [f"{zpath} lacks the figure files/a.png"]


def test_check_finds_pages_and_link_targets_missing_from_the_html_book(tmp_path):
    html = _outputs(tmp_path) / "_build/html"
    (html / "nb.html").unlink()
    assert check.missing_exports(tmp_path) == [
        f"{html}/nb.html is missing: the site config lists that page",
        "_build/html/index.html links to nb.html#fig-1, which does not exist"]
    _outputs(tmp_path / "b")
    html = tmp_path / "b/_build/html"
    (html / "a.png").unlink()
    (html / "index.html").write_text((html / "index.html").read_text().replace(
        "#intro", "#nowhere").replace("fig-1", "fig-2") + '<a href="/nb.html">root</a>')
    assert check.missing_exports(tmp_path / "b") == [
        "_build/html/index.html links to #nowhere, but index.html has no id 'nowhere'",
        "_build/html/index.html links to nb.html#fig-2, but nb.html has no id 'fig-2'",
        "_build/html/index.html links to /nb.html, which leads nowhere in a book opened from "
        "its folder",
        "_build/html/nb.html links to a.png, which does not exist"]
    # a file beside the book is not in it, wherever the book is opened or published
    (tmp_path / "b/_build/DATA.md").write_text("x")
    (html / "nb.html").write_text('<a href="../DATA.md">data</a><a href="../html/index.html">'
                                  'home</a><a href="../../_build/html/index.html">home</a>')
    assert check.missing_exports(tmp_path / "b", tex=False, pdf=False)[3:] == [
        "_build/html/nb.html links to ../DATA.md, which leaves the book's folder"]
    (tmp_path / "b/_build/site/config.json").unlink()
    assert check.missing_exports(tmp_path / "b", tex=False, pdf=False) == [
        f"{tmp_path}/b/_build/site/config.json is missing: cannot tell which pages the HTML "
        "book should have"]


def test_check_finds_a_file_the_paper_includes_missing_from_the_zip(tmp_path):
    zpath = _outputs(tmp_path) / "exports/arxiv.zip"
    _zip(zpath, {"arxiv.tex": ARXIV_TEX, "main.bib": "", "arxiv.bbl": "", "files/a.png": b"x"})
    assert check.missing_exports(tmp_path) == [
        f"{zpath} lacks arxiv-intro.tex, which the paper includes",
        f"{zpath} lacks arxiv-results.tex, which the paper includes"]


@pytest.mark.parametrize("pdfinfo", [True, False], ids=["pdfinfo", "scan"])
def test_check_finds_a_cut_short_or_empty_pdf(tmp_path, monkeypatch, pdfinfo):
    if pdfinfo and shutil.which("pdfinfo") is None:
        pytest.skip("pdfinfo is not installed")
    if not pdfinfo:
        monkeypatch.setattr(check, "_pdf_pages", lambda path: None)
    pdf = _outputs(tmp_path) / "exports/paper.pdf"
    pdf.write_bytes(_pdf() + b"\n  \n")  # whitespace after %%EOF is fine
    assert check.missing_exports(tmp_path) == []
    pdf.write_bytes(_pdf()[:-20])
    assert f"{pdf} does not end with %%EOF: it was cut short" in check.missing_exports(tmp_path)
    pdf.write_bytes(_pdf(pages=0))
    assert [p for p in check.missing_exports(tmp_path) if p.startswith(f"{pdf} has no pages")]
    pdf.write_bytes(b"%PDF-1.5 ...")
    assert len([p for p in check.missing_exports(tmp_path) if str(pdf) in p]) == 2


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext is not installed")
def test_check_finds_unresolved_references_printed_in_the_pdf(tmp_path):
    pdf = _outputs(tmp_path) / "exports/paper.pdf"
    pdf.write_bytes(_pdf(text="See Figure 2 of Doe et al. \\(2020\\)."))
    assert check.missing_exports(tmp_path) == []
    pdf.write_bytes(_pdf(text="See Figure ?? of Doe et al. \\(?\\)."))
    assert check.missing_exports(tmp_path) == [
        f"{pdf} prints ?? where LaTeX could not resolve a reference",
        f"{pdf} prints (?) where LaTeX could not resolve a citation"]


def test_check_finds_what_the_html_book_loads_from_the_web_and_empty_images(tmp_path):
    html = _outputs(tmp_path) / "_build/html"
    page = html / "nb.html"
    # a notebook's HTML output (a plotting library's script) or an image from the web would
    # make the offline book fetch it; links to the web stay links
    page.write_text(page.read_text() + '<script src="https://cdn.example.org/plot.js"></script>'
                    '<img src="//example.org/x.png"><a href="https://example.org/">web</a>'
                    '<link rel="stylesheet" href="https://fonts.example.org/f.css">')
    (html / "a.png").write_bytes(b"")
    assert check.missing_exports(tmp_path) == [
        "_build/html/nb.html shows the image a.png, an empty file",
        "_build/html/nb.html loads https://cdn.example.org/plot.js from the web: the book must "
        "open offline",
        "_build/html/nb.html loads //example.org/x.png from the web: the book must open offline",
        "_build/html/nb.html loads https://fonts.example.org/f.css from the web: the book must "
        "open offline"]


def test_myst_log_problems():
    log = ("📖 Built content/index.md in 2 s.\n"
           "  - ⚠️  Could not link citation with label \"nobody2020\".\n"
           "⛔️ myst.yml 'source' must be valid URL\n"
           "   │     Update available! v1.11.0 ≫ v1.8.3     │\n")
    found = mystbuild.problems(log)
    assert len(found) == 2 and "nobody2020" in found[0]


@pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk is not installed")
def test_compile_zip_adds_bbl(tmp_path):
    tex = ("\\documentclass{article}\\usepackage{natbib}\\begin{document}\n"
           "A claim \\citep{doe2020}.\\bibliographystyle{plainnat}\\bibliography{main}"
           "\\end{document}\n")
    bib = "@article{doe2020, author={Doe, Jane}, title={A study}, journal={J}, year={2020}}\n"
    zpath = _zip(tmp_path / "arxiv.zip", {"arxiv.tex": tex, "main.bib": bib})
    pdf = latex.compile_zip(zpath, tmp_path / "paper.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert "arxiv.bbl" in zipfile.ZipFile(zpath).namelist()
    bad = _zip(tmp_path / "bad.zip", {"arxiv.tex": tex.replace("doe2020", "nobody"),
                                       "main.bib": bib})
    with pytest.raises(RuntimeError, match="undefined"):
        latex.compile_zip(bad, tmp_path / "bad.pdf")


def test_compile_zip_keeps_to_a_folder_it_may_empty(tmp_path):
    """``pdf --keep exports`` emptied exports/ first: the zip it was to compile was gone,
    with anything else there."""
    (tmp_path / "exports").mkdir()
    zpath = _zip(tmp_path / "exports" / "arxiv.zip", {"arxiv.tex": ARXIV_TEX})
    (tmp_path / "exports" / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="holds files this step did not write"):
        latex.compile_zip(zpath, tmp_path / "exports/paper.pdf", keep=tmp_path / "exports",
                          latexmk="true")
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["arxiv.zip", "notes.txt"]
    # a folder of its own is replaced by the next compile ("true" writes no PDF)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="wrote no PDF"):
            latex.compile_zip(zpath, tmp_path / "paper.pdf", keep=tmp_path / "tex",
                              latexmk="true")
    assert (tmp_path / "tex" / "arxiv.tex").is_file()


def _template_preamble() -> str:
    """The arXiv template up to MyST's imports: the preamble the paper compiles with."""
    text = (Path(latex.__file__).parent / "templates" / "arxiv" / "template.tex").read_text()
    preamble = text.split("[-IMPORTS-]")[0]
    # jtex reads these as template syntax, in a comment too: the tex export would fail
    assert "[-" not in preamble and "[#" not in preamble
    return preamble


@pytest.mark.skipif(shutil.which("latexmk") is None or shutil.which("pdftotext") is None,
                    reason="latexmk or pdftotext is not installed")
def test_template_keeps_double_dashes_of_code(tmp_path):
    # `--scales 1` in the methods printed as "–scales 1": T1 typewriter fonts join -- too
    tex = _template_preamble() + "\\begin{document}\\texttt{--scales 1} and 1--2\\end{document}\n"
    zpath = _zip(tmp_path / "arxiv.zip", {"arxiv.tex": tex})
    with pytest.raises(RuntimeError, match="no .bbl"):  # no bibliography here
        latex.compile_zip(zpath, tmp_path / "paper.pdf", keep=tmp_path / "work")
    import subprocess

    text = subprocess.run(["pdftotext", str(tmp_path / "work" / "arxiv.pdf"), "-"],
                          stdout=subprocess.PIPE, text=True, check=True).stdout
    assert "--scales 1" in text and "1\u20132" in text  # prose keeps its en dash


def test_vit_diagram_draws_patch_grid(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from vit_facemap.diagrams import DiagramSettings, example_frame, patchify, vit_diagram

    monkeypatch.delenv("VIT_FACEMAP_DATA", raising=False)
    frame, source = example_frame(None, size=(64, 48))
    assert frame.shape == (48, 64) and "generated" in source
    patches = patchify(frame, 16)
    assert patches.shape == (12, 16, 16)
    np.testing.assert_array_equal(patches[5], frame[16:32, 16:32])  # row-major order
    with pytest.raises(ValueError, match="patches"):
        patchify(frame[:, :60], 16)
    fig = vit_diagram(frame, DiagramSettings(patch=16, size=(64, 48), tokens_shown=3))
    assert len(fig.axes) == 1


def test_example_frame_says_why_it_is_generated(tmp_path, monkeypatch):
    from vit_facemap.diagrams import example_frame, example_frame_notice

    monkeypatch.delenv("VIT_FACEMAP_DATA", raising=False)
    assert example_frame(None, size=(64, 48))[1] == "generated frame (no real data folder given)"
    assert example_frame_notice("") == ("No real data folder was given: this figure uses a "
                                        "generated frame.")
    # a folder given that holds no g7c1 set is not "no folder given"
    (tmp_path / "schroeder").mkdir()
    for given in (str(tmp_path), ""):
        if not given:
            monkeypatch.setenv("VIT_FACEMAP_DATA", str(tmp_path))
        assert (example_frame(given, size=(64, 48))[1]
                == "generated frame (no g7c1 set in the data folder)")
        assert example_frame_notice(given) == (f"The data folder {tmp_path} holds no g7c1 set: "
                                               "this figure uses a generated frame.")
    missing = tmp_path / "nowhere"
    assert example_frame(missing, size=(64, 48))[1] == "generated frame (data folder not found)"
    assert example_frame_notice(missing) == (f"The data folder {missing} does not exist: this "
                                             "figure uses a generated frame.")


EXPORT = {
    "arxiv.tex": "\\documentclass{article}\\input{arxiv-intro}\\input{arxiv-results}",
    "arxiv-intro.tex": "\\section{Introduction}\nSee \\href{/results}{Results} and "
                       "\\href{https://doi.org/x}{a paper}.\n",
    "arxiv-results.tex": "\\section{Results}\n\\begin{figure}\n\\caption[]{A table.}\n"
                         "\\label{tbl-a}\n\\begin{tabular}{p{\\dimexpr 0.5\\linewidth-2\\tabcolsep}"
                         "p{\\dimexpr 0.5\\linewidth-2\\tabcolsep}}\na & b\\\\\n\\end{tabular}\n"
                         "\\end{figure}\n"
                         "\\begin{figure}[!htbp]\n\\includegraphics{a.png}\n\\label{fig-b}\n"
                         "\\end{figure}\n",
}


def test_export_gets_tables_as_tables_and_page_links_as_references():
    out = latex.polish_tex(EXPORT, "arxiv.tex")
    assert out["arxiv.tex"] == EXPORT["arxiv.tex"]
    intro = out["arxiv-intro.tex"]
    assert "See Section~\\ref{page-results} and" in intro
    assert "\\href{https://doi.org/x}{a paper}" in intro  # real links stay links
    res = out["arxiv-results.tex"]
    assert res.startswith("\\section{Results}\\label{page-results}\n")
    # the labeled table becomes a table; the figure after it stays a figure
    assert res.count("\\begin{table}") == 1 and res.count("\\end{table}") == 1
    assert res.index("\\end{table}") < res.index("\\begin{figure}[!htbp]")
    assert res.count("\\begin{figure}") == 1 and "\\label{fig-b}\n\\end{figure}" in res
    # its equal paragraph columns become natural ones, shrunk to the line only when wider
    assert ("\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n"
            "\\begin{tabular}{ll}\na & b\\\\\n\\end{tabular}}\n\\end{table}") in res
    assert latex.polish_tex(out, "arxiv.tex") == out  # a second pass changes nothing


def test_export_fits_a_markdown_table_of_the_prose():
    # the build record's table (a Markdown table, no figure) kept MyST's four quarter-width
    # columns: "04_interpretation.ipynb" ran 30pt into the next column of the PDF
    col = "p{\\dimexpr 0.250\\linewidth-2\\tabcolsep}"
    table = ("\\bigskip\\noindent\n\\begin{tabular}{" + col * 4 + "}\n\\toprule\n"
             "Notebook & Wall time (s) & Status & Data \\\\\n\\hline\n"
             "\\texttt{04\\_interpretation.ipynb} & 26.1 & ok & generated \\\\\n"
             "\\bottomrule\n\\end{tabular}\n")
    page = "\\section{Build provenance}\n" + table
    out = latex.polish_tex({**EXPORT, "arxiv-provenance.tex": page}, "arxiv.tex")
    res = out["arxiv-provenance.tex"]
    assert "\\dimexpr" not in res and "\\begin{table}" not in res
    assert (latex.FIT_WIDTH + "\\begin{tabular}{llll}\n\\toprule") in res
    assert res.endswith("\\bottomrule\n\\end{tabular}}\n")
    assert latex.polish_tex(out, "arxiv.tex") == out


def test_export_wraps_a_long_text_column_instead_of_shrinking_the_table():
    long = ", ".join(f"eye point {i} (4.{i}5 vs 4.66)" for i in range(6))
    col = "p{\\dimexpr 0.33\\linewidth-2\\tabcolsep}"
    table = ("\\begin{figure}\n\\caption[]{T.}\n\\label{tbl-f}\n\\begin{tabular}{" + col * 3
             + "}\n\\toprule\nset & mean\\_px & keypoints \\\\\n\\hline\ng7c1 & 9.65 & "
             + long + " \\\\\n\\bottomrule\n\\end{tabular}\n\\end{figure}\n")
    res = latex.polish_tex({**EXPORT, "arxiv-results.tex": "\\section{Results}\n" + table},
                           "arxiv.tex")["arxiv-results.tex"]
    assert "\\begin{tabular}{ll" + latex.WRAP_COLUMN + "}" in res
    # short cells alone keep natural widths
    short = table.replace(long, "none")
    res = latex.polish_tex({**EXPORT, "arxiv-results.tex": "\\section{Results}\n" + short},
                           "arxiv.tex")["arxiv-results.tex"]
    assert "\\begin{tabular}{lll}" in res
    # a short link's long target is not text on the page
    link = "\\href{https://example.org/" + "x" * 60 + "}{run}"
    res = latex.polish_tex({**EXPORT, "arxiv-results.tex": "\\section{Results}\n"
                            + table.replace(long, link)}, "arxiv.tex")["arxiv-results.tex"]
    assert "\\begin{tabular}{lll}" in res


@pytest.mark.parametrize("page,text,problem", [
    ("arxiv-intro.tex", "See \\href{/missing}{Missing}.", "not part of the paper"),
    ("arxiv-intro.tex", "See \\href{/results#sec-x}{there}.", "not part of the paper"),
    ("arxiv-results.tex", "\\section*{Results}\n", "no numbered"),
])
def test_export_refuses_page_links_it_cannot_turn_into_references(page, text, problem):
    files = {**EXPORT, page: text}
    with pytest.raises(RuntimeError, match=problem):
        latex.polish_tex(files, "arxiv.tex")


def test_polish_zip_rewrites_the_pages_and_keeps_the_rest(tmp_path):
    zpath = tmp_path / "arxiv.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for name, text in EXPORT.items():
            zf.writestr(name, text)
        zf.writestr("files/a.png", b"\x89PNG")
    latex.polish_zip(zpath)
    with zipfile.ZipFile(zpath) as zf:
        assert sorted(zf.namelist()) == sorted([*EXPORT, "files/a.png"])
        assert zf.read("files/a.png") == b"\x89PNG"
        assert "\\begin{table}" in zf.read("arxiv-results.tex").decode()
    assert not (tmp_path / "arxiv.zip.tmp").exists()
    with zipfile.ZipFile(zpath, "a") as zf:
        zf.writestr("arxiv-more.tex", "\\href{/nowhere}{x}")
    before = zpath.read_bytes()
    with pytest.raises(RuntimeError, match="not part of the paper"):
        latex.polish_zip(zpath)
    assert zpath.read_bytes() == before and not (tmp_path / "arxiv.zip.tmp").exists()


BIB = ("@misc{stuckert2024vitfacemap,\n  author = {{AnnaStuckert}},\n  title = {{ViT\\_facemap}},\n"
       "  howpublished = {GitHub repository},\n  year = {2024}\n}\n\n"
       "@article{mathis2018deeplabcut,\n  author = {Mathis, Alexander},\n"
       "  title = {{DeepLabCut}: markerless pose estimation},\n  journal = {Nat. Neurosci.},\n"
       "  year = {2018}\n}\n")
# what MyST writes for it: braces gone, howpublished renamed, entries reordered
MYST_BIB = ("@article{mathis2018deeplabcut,\n\tauthor = {Mathis, Alexander},\n"
            "\ttitle = {DeepLabCut: markerless pose estimation},\n}\n\n"
            "@misc{stuckert2024vitfacemap,\n\tauthor = {AnnaStuckert},\n\ttitle = {ViT\\_facemap},\n"
            "\tpublisher = {GitHub repository},\n}\n")


def test_polish_zip_puts_the_project_bibliography_back(tmp_path):
    bib = tmp_path / "references.bib"
    bib.write_text(BIB)
    zpath = _zip(tmp_path / "arxiv.zip", {**EXPORT, "main.bib": MYST_BIB,
                                           "arxiv.bbl": "from MyST's main.bib"})
    latex.polish_zip(zpath, [bib])
    with zipfile.ZipFile(zpath) as zf:
        assert zf.read("main.bib").decode() == BIB
        assert "arxiv.bbl" not in zf.namelist()  # made from the old .bib; the pdf step remakes it
        assert "\\begin{table}" in zf.read("arxiv-results.tex").decode()
    # an entry the export cites that the project's .bib lacks is an error, not a lost citation
    zpath = _zip(tmp_path / "arxiv.zip", {**EXPORT, "main.bib": MYST_BIB + "@misc{other,\n}\n"})
    with pytest.raises(RuntimeError, match="other"):
        latex.polish_zip(zpath, [bib])
    root = Path(__file__).resolve().parents[1]
    assert latex.project_bibliography(root) == [root / "references.bib"]


def test_polish_zip_refuses_a_key_the_bibliography_defines_twice(tmp_path):
    """Concatenated, two .bib files that both define a key give BibTeX's "Repeated entry"
    only at the pdf step; the export step names the key and the files."""
    first, second = tmp_path / "references.bib", tmp_path / "extra.bib"
    first.write_text(BIB)
    second.write_text("@article{Mathis2018DeepLabCut,\n  title = {again},\n}\n"
                      "@string{nn = {Nat. Neurosci.}}\n@misc{other,\n}\n")
    zpath = _zip(tmp_path / "arxiv.zip", {**EXPORT, "main.bib": MYST_BIB})
    before = zpath.read_bytes()
    shown = re.escape(f"mathis2018deeplabcut ({first}, {second})")
    with pytest.raises(RuntimeError, match=f"more than once.*: {shown}$"):
        latex.polish_zip(zpath, [first, second])
    assert zpath.read_bytes() == before
    second.write_text("@misc{other,\n}\n")
    latex.polish_zip(zpath, [first, second])


@pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk is not installed")
def test_pdf_bbl_keeps_the_capitals_of_the_project_bibliography(tmp_path):
    bib = tmp_path / "references.bib"
    bib.write_text(BIB)
    tex = ("\\documentclass{article}\\usepackage{natbib}\\begin{document}\n"
           "\\citet{mathis2018deeplabcut,stuckert2024vitfacemap}.\\bibliographystyle{plainnat}"
           "\\bibliography{main}\\end{document}\n")
    zpath = _zip(tmp_path / "arxiv.zip", {"arxiv.tex": tex, "main.bib": MYST_BIB})
    latex.polish_zip(zpath, [bib])
    latex.compile_zip(zpath, tmp_path / "paper.pdf")
    bbl = zipfile.ZipFile(zpath).read("arxiv.bbl").decode()
    assert "{DeepLabCut}:" in bbl and "{ViT\\_facemap}" in bbl and "GitHub repository" in bbl


def test_committed_overview_figure_is_what_the_code_draws(tmp_path):
    # images/overview.png is a drawing, not a result: it must follow its code, which a
    # forgotten redraw after editing the drawing would break
    import matplotlib
    from PIL import Image

    matplotlib.use("Agg")
    from vit_facemap.diagrams import main, overview_fingerprint

    root = Path(__file__).resolve().parents[1]
    kept = Image.open(root / "images" / "overview.png")
    assert kept.text.get("Comment") == f"drawing {overview_fingerprint()}", \
        "redraw it: make images"
    main([str(tmp_path / "overview.png")])
    fresh = Image.open(tmp_path / "overview.png")
    assert fresh.size == kept.size and fresh.text == kept.text
    assert "../images/overview.png" in (root / "content" / "index.md").read_text()


def test_overview_names_the_default_trackers_second_stages():
    # the drawing said "+ crop stage for the eye" while the default recipe also refines the nose
    from vit_facemap.diagrams import OVERVIEW
    from vit_facemap.refine import AUTO
    from vit_facemap.train import TrainConfig

    refine = TrainConfig().refine
    text = next(t for _, _, _, title, t in OVERVIEW if title == "keypoint tracker")
    assert refine.share > 0 and "crop stage" in text
    for group in AUTO[refine.auto]:
        assert group in text, group


def test_bold_math_becomes_unicode_letters():
    got = render.unicode_variants('<mi mathvariant="bold">z</mi><mi mathvariant="double-struck">R'
                                  '</mi><mi mathvariant="normal">s</mi>')
    assert got == '<mi>\U0001d433</mi><mi>\u211d</mi><mi mathvariant="normal">s</mi>'


def test_notebook_cell_options_are_valid_yaml():
    """MyST reads ``#| key: value`` lines as YAML: an unquoted ': ' in a caption breaks the build."""
    import json

    import yaml

    for nb in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            lines = "".join(cell["source"]).splitlines()
            options = [ln[3:] for ln in lines if ln.startswith("#| ")]
            if options:
                parsed = yaml.safe_load("\n".join(options))
                assert isinstance(parsed, dict), f"{nb.name}: cell options {options} are not YAML"


def test_tracker_page_run_chooses_data_models_budget_and_reproduce_line(tmp_path, monkeypatch):
    from vit_facemap.book.tracker_page import run_benchmark, tracker_page_run

    monkeypatch.delenv("VIT_FACEMAP_DATA", raising=False)
    data = tmp_path / "data"
    (data / "g7c1").mkdir(parents=True)
    out = tmp_path / "results" / "tracker"
    generated = ("python benchmarks/tracker.py --out OUT --seed 0 --device cpu --monitor "
                 "--synthetic --profile test --models mean_shape,hybrid")
    # profile test trains on generated frames even with the real sets there
    for profile, folder in (("test", data), ("default", None), ("default", tmp_path / "none")):
        run = tracker_page_run(profile, folder, out)
        assert run.synthetic and run.data is None and run.reproduce == generated
        # the page records minutes_per_model: the test recipe has steps, not minutes
        assert run.minutes is None and "--minutes" not in run.args
    # real sets: the budget of the profile, the folder made absolute (the page runs in
    # notebooks/), and the aliases in the line to reproduce
    monkeypatch.chdir(tmp_path)
    for profile, minutes in (("quick", 1.0), ("default", 6.0), ("full", 30.0)):
        run = tracker_page_run(profile, "data", out, seed=3, device="cuda")
        assert not run.synthetic and run.minutes == minutes and run.data == data
        assert run.args[run.args.index("--data") + 1] == str(data)
        assert run.args[1] == "../benchmarks/tracker.py"
        assert run.reproduce == (
            f"python benchmarks/tracker.py --out OUT --seed 3 --device cuda --monitor --minutes "
            f"{minutes} --data DATA --models mean_shape,hog_forest,vit_regression,hybrid,cnn,fmnet")
    # no folder given: $VIT_FACEMAP_DATA, as everywhere else (not the page's own folder)
    monkeypatch.setenv("VIT_FACEMAP_DATA", str(data))
    assert tracker_page_run("default", "", out).data == data
    assert tracker_page_run("default", tmp_path / "none", out).synthetic  # not the variable's
    # every option is one the benchmark script defines
    script = (Path(__file__).resolve().parents[1] / "benchmarks" / "tracker.py").read_text()
    for a in run.args[2:]:
        assert not a.startswith("--") or f'"{a}"' in script, a
    # the run: the script's output on success, its error output on failure
    fake = tmp_path / "fake.py"
    fake.write_text("import os, sys\nprint('ran', *sys.argv[1:3], os.environ['VIT_FACEMAP_DATA'])\n")
    run = tracker_page_run("default", data, out, script=fake)
    assert run_benchmark(run).split() == ["ran", "--out", str(out), str(data)]
    fake.write_text("import sys\nprint('half done')\nsys.exit('no sets found')\n")
    with pytest.raises(RuntimeError, match="fake.py exited with status 1:\nno sets found\n"
                                           "\nits output ended:\nhalf done"):
        run_benchmark(run)
