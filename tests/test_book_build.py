"""The book's build steps: the build note on the first page, refusing partial runs,
no stale outputs after a failed step."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vit_facemap.book import execute, render

ROOT = Path(__file__).resolve().parents[1]


def _record(real_data: bool) -> execute.BuildRecord:
    return execute.BuildRecord(settings=execute.BookSettings(profile="quick", device="auto"),
                               device_resolved="cpu", real_data=real_data)


def test_build_note_warns_about_generated_data():
    note = execute.note_markdown(_record(real_data=False))
    assert note.startswith("::::{warning} Built on generated data\n")
    assert "says nothing about real mice" in note
    assert "profile `quick` on device `cpu`" in note and "@sec-provenance" in note
    real = execute.note_markdown(_record(real_data=True))
    assert "{warning}" not in real and "real labeled sets" in real
    assert "profile `quick` on device `cpu`" in real


def _pages(*data: str) -> execute.BuildRecord:
    """A finished run whose notebooks recorded ``data`` (real, generated, unrecorded)."""
    record = _record(real_data=all(d == "real" for d in data))
    record.data_folder = True
    record.notebooks = [execute.NotebookRun(f"0{i}_nb.ipynb", "x", 1.0, True, title=f"Page {i}",
                                            data=d) for i, d in enumerate(data, 1)]
    return record


def test_build_note_says_real_only_when_every_notebook_used_real_data():
    assert "{warning}" not in execute.note_markdown(_pages("real", "real"))
    for mixed in (_pages("real", "generated", "real"), _pages("real", "unrecorded")):
        note = execute.note_markdown(mixed)
        assert note.startswith("::::{warning} Built partly on generated data\n")
        assert "*Page 2* (`02_nb.ipynb`)" in note and "Page 1" not in note
        assert "real labeled sets;" not in note
    # even a record claiming real data is not believed over its notebooks
    claimed = _pages("real", "generated")
    claimed.real_data = True
    assert "Built partly on generated data" in execute.note_markdown(claimed)
    every = execute.note_markdown(_pages("generated", "generated"))
    assert every.startswith("::::{warning} Built on generated data\n")
    assert "No real data folder" not in every  # the folder was given; the notebooks chose
    table = execute.record_markdown(_pages("real", "generated"))
    assert "| Data |" in table and "| `02_nb.ipynb` | 1.0 | ok | generated |" in table
    assert "generated frames on others" in table


def test_record_is_written_with_the_note(tmp_path):
    execute.write_record(_record(real_data=False), tmp_path)
    assert (tmp_path / execute.NOTE_MD).read_text() == execute.note_markdown(
        _record(real_data=False))


def test_first_page_includes_the_note_before_any_prose():
    """content/index.md includes the note right below its first heading, so page 1 of the
    PDF and the HTML title page carry it (MyST's title is that first heading)."""
    text = (ROOT / "content/index.md").read_text()
    body = text.split("\n---\n", 1)[1]  # after the frontmatter with the abstract
    blocks = [b for b in body.strip().split("\n\n") if b.strip()]
    assert blocks[0].splitlines()[-1] == "# Introduction"
    assert blocks[1] == f"```{{include}} ../_build/executed/{execute.NOTE_MD}\n```"
    # the provenance page the note points to
    assert re.search(r"^label: sec-provenance$", (ROOT / "content/provenance.md").read_text(),
                     re.M)


def test_title_page_note_names_the_data_unless_the_page_includes_the_note():
    record = {"settings": {"profile": "test"}, "device": {"device": "cpu"}, "wall_s": 60,
              "real_data": False}
    assert "generated frames, not real mice" in render.build_note(record)
    assert "the real labeled sets" in render.build_note({**record, "real_data": True})
    page = render.Page("index", "Intro", 0, {"mdast": {"type": "root", "children": [
        {"type": "include", "file": f"../_build/executed/{execute.NOTE_MD}", "children": [
            {"type": "admonition", "kind": "warning", "children": [
                {"type": "paragraph", "children": [{"type": "text", "value": "Generated!"}]}]}]}]}})
    doc, _ = render.render_page({"title": "T"}, [page], 0, record)
    assert "Generated!" in doc and 'class="admonition warning"' in doc
    assert 'class="build-note"' not in doc  # said once, by the included note
    page.data["mdast"]["children"] = []
    doc, _ = render.render_page({"title": "T"}, [page], 0, record)
    assert 'class="build-note"' in doc and "generated frames" in doc


def test_pages_are_titled_with_the_book():
    # the first page's <title> was "Introduction" alone
    pages = [render.Page("index", "Introduction", 0, {"mdast": {"type": "root", "children": []}}),
             render.Page("methods", "Methods", 0, {"mdast": {"type": "root", "children": []}})]
    doc, _ = render.render_page({"title": "ViT Facemap"}, pages, 0)
    assert "<title>ViT Facemap</title>" in doc
    doc, _ = render.render_page({"title": "ViT Facemap"}, pages, 1)
    assert "<title>Methods - ViT Facemap</title>" in doc


def _cells(label_prefix: str):
    import nbformat

    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in nbformat.read(str(path), as_version=4).cells:
            if cell.cell_type == "code" and re.search(rf"^#\|\s*label:\s*{label_prefix}",
                                                      cell.source, re.M):
                yield path.name, cell.source


def test_notebook_tables_are_numbered_as_tables_through_the_book():
    """``#| caption:`` makes MyST number a table cell as a figure ("Figure 19" for a table);
    ``#| tbl-cap:`` makes it a table, and the numbering continues across pages so the
    notebook pages' tables do not restart at 1 beside the manuscript's Tables 1-5."""
    import yaml

    tables = list(_cells("tbl-"))
    assert tables
    for name, source in tables:
        options = yaml.safe_load("\n".join(ln[3:] for ln in source.splitlines()
                                           if ln.startswith("#| ")))
        assert "tbl-cap" in options and "caption" not in options, f"{name}: {options['label']}"
    numbering = yaml.safe_load((ROOT / "myst.yml").read_text())["project"]["numbering"]
    assert all(numbering[kind] == {"continue": True} for kind in ("figure", "table"))


def _run(folder: Path, *oks: bool) -> None:
    """A notebook run's files as ``make notebooks`` leaves them, one notebook per flag."""
    record = _record(real_data=True)
    for i, ok in enumerate(oks):
        name = f"0{i + 1}_nb.ipynb"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("{}")
        record.notebooks.append(execute.NotebookRun(
            name, str(folder / name), 1.0, ok,
            "" if ok else "PapermillExecutionError: cell 3 raised\nTraceback ..."))
    execute.write_record(record, folder)


@pytest.mark.parametrize("step", ["html", "tex", "pdf", "html-online"])
def test_book_steps_refuse_a_failed_notebook_run(tmp_path, monkeypatch, capsys, step):
    from vit_facemap.book import __main__ as book
    from vit_facemap.book import latex, mystbuild, online

    def must_not_run(*args, **kwargs):
        raise AssertionError("the book was built from a failed notebook run")

    for module, name in ((mystbuild, "build"), (latex, "compile_zip"),
                         (online, "build_online")):
        monkeypatch.setattr(module, name, must_not_run)
    monkeypatch.chdir(tmp_path)
    _run(Path("_build/executed"), True, False)
    assert book.main([step]) == 1
    err = capsys.readouterr().err
    assert "02_nb.ipynb" in err and "PapermillExecutionError: cell 3 raised" in err
    assert "make notebooks" in err


def test_complete_run_names_what_is_missing(tmp_path):
    with pytest.raises(RuntimeError, match="build_record.json is missing"):
        execute.complete_run(tmp_path)
    _run(tmp_path, True, True)
    assert [r["name"] for r in execute.complete_run(tmp_path)["notebooks"]] == [
        "01_nb.ipynb", "02_nb.ipynb"]
    (tmp_path / execute.NOTE_MD).unlink()  # a run by an older version of the runner
    with pytest.raises(RuntimeError, match="build_note.md"):
        execute.complete_run(tmp_path)


def test_failed_html_and_pdf_steps_leave_no_earlier_output(tmp_path, monkeypatch, capsys):
    from vit_facemap.book import __main__ as book
    from vit_facemap.book import check, mystbuild

    def myst_fails(*args, **kwargs):
        raise RuntimeError("myst build --site exited with status 1")

    monkeypatch.setattr(mystbuild, "build", myst_fails)
    monkeypatch.chdir(tmp_path)
    _run(Path("_build/executed"), True)
    for old in (book.HTML / "index.html", check.PAPER_PDF):
        old.parent.mkdir(parents=True)
        old.write_text("from an earlier build")
    assert book.main(["html"]) == 1
    assert not book.HTML.exists()
    # no zip: latexmk never runs, and the earlier PDF is gone all the same
    assert book.main(["pdf"]) == 1
    assert not check.PAPER_PDF.exists()
    assert "arxiv.zip does not exist" in capsys.readouterr().err


def test_a_failed_rendering_leaves_no_html_folder(tmp_path):
    from test_book import _site

    out = tmp_path / "html"
    (out / "old").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="fig-a"):
        render.render_book(_site(tmp_path / "bad", with_output=False), out)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["bad"]
    render.render_book(_site(tmp_path / "good"), out)
    assert sorted(p.name for p in out.iterdir()) == ["abc.png", "index.html", "nb.html",
                                                     "style.css"]


def test_the_exports_of_an_earlier_build_stay_out_of_the_html_book(tmp_path):
    """``myst build --site`` copies exports/arxiv.zip and paper.pdf, as the previous build
    left them, into the site's public files and lists them as the project's exports."""
    from test_book import _site

    site = _site(tmp_path)
    config = json.loads((site / "config.json").read_text())
    config["projects"][0]["exports"] = [
        {"format": "tex", "filename": "arxiv.zip", "url": "/arxiv-0a1b.zip"},
        {"format": "pdf", "filename": "paper.pdf", "url": "/paper-2c3d.pdf"}]
    (site / "config.json").write_text(json.dumps(config))
    for name in ("arxiv-0a1b.zip", "paper-2c3d.pdf", "figure-4e5f.pdf"):
        (site / "public" / name).write_bytes(b"x")
    render.render_book(site, tmp_path / "html")
    assert sorted(p.name for p in (tmp_path / "html").iterdir()) == [
        "abc.png", "figure-4e5f.pdf", "index.html", "nb.html", "style.css"]


def test_an_embed_of_a_label_no_cell_has_says_so(tmp_path):
    """``:::{figure} #fig-nonexistent``: MyST builds the site without a warning and leaves
    the embed with its label only; the book names the missing label."""
    from test_book import _site

    site = _site(tmp_path)
    index = json.loads((site / "content/index.json").read_text())
    figure = index["mdast"]["children"][0]["children"][-1]
    figure["source"] = {"label": "fig-nonexistent"}
    figure["children"] = [{"type": "_lift", "source": {"label": "fig-nonexistent"}}]
    (site / "content/index.json").write_text(json.dumps(index))
    with pytest.raises(RuntimeError, match="no notebook cell has label 'fig-nonexistent'"):
        render.render_book(site, tmp_path / "html")


def test_myst_tex_error_on_an_unresolved_embed_gets_a_hint(monkeypatch):
    from vit_facemap.book import mystbuild

    log = '\u26d4\ufe0f Unhandled LaTeX conversion for node of "_lift"\n'
    monkeypatch.setattr(mystbuild, "run_myst", lambda args, root=".": (0, log))
    with pytest.raises(RuntimeError, match="whose label no notebook cell has"):
        mystbuild.build(["--tex"])


def test_package_progress_bars_do_not_warn_inside_the_notebooks():
    # the package's own bars stay console bars: tqdm.auto would turn to widgets in the
    # book's kernels and, without ipywidgets, warn into the page
    import vit_facemap

    package = Path(vit_facemap.__file__).parent
    uses = sorted(p.name for p in package.rglob("*.py")
                  if re.search(r"^\s*(from|import)\s+tqdm\.(auto|autonotebook|notebook)\b",
                               p.read_text(), re.M))
    assert uses == []


def test_notebook_pages_show_real_warnings_but_not_tqdms_missing_widgets(tmp_path):
    # huggingface_hub, imported by albumentations, imports tqdm.auto, which warns in a kernel
    # without ipywidgets; the executed notebook is what the book page shows
    import nbformat
    from test_book import _notebook

    _notebook(tmp_path / "01_w.ipynb", "import warnings\nimport tqdm.auto\n"
              "warnings.warn('a real problem')")
    execute.execute_notebook(tmp_path / "01_w.ipynb", tmp_path / "out.ipynb",
                             execute.BookSettings(profile="test", out_dir=str(tmp_path)))
    cell = nbformat.read(str(tmp_path / "out.ipynb"), as_version=4).cells[-1]
    stderr = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stderr")
    assert "a real problem" in stderr and "TqdmWarning" not in stderr


def test_make_test_runs_the_notebooks_outside_the_books_results():
    """``make test`` executes the notebooks (nbval, profile test): in the book's results
    folder it replaced the tracker table and runs that ``make paper`` reuses."""
    from vit_facemap.book import __main__ as book

    recipe = (ROOT / "Makefile").read_text().split("\ntest:", 1)[1].split("\n\n", 1)[0]
    nbval = recipe.replace("\\\n", " ")
    nbval = next(line for line in nbval.splitlines() if "--nbval" in line)
    found = re.search(r"\bVIT_FACEMAP_OUT=(\S+)", nbval)
    assert found, f"the nbval run of make test writes to the book's results: {nbval.strip()}"
    out = Path(found.group(1).replace("$(CURDIR)", str(ROOT)))
    book_out = ROOT / book.build_parser().parse_args(["execute"]).out_dir
    assert out.is_absolute() and out.resolve() != book_out.resolve()


def test_myst_without_node_fails_instead_of_waiting_for_an_unseen_answer(tmp_path, monkeypatch):
    """Without Node.js, mystmd asks on stdout whether to install it and waits on stdin; the
    build captures stdout, so at a terminal it waited for an answer to a question no one saw."""
    import os
    import sys
    import time

    from vit_facemap.book import mystbuild

    myst = tmp_path / "myst"  # what mystmd 1.11 does on a machine without node
    myst.write_text(f"#!{sys.executable}\nimport select, sys\n"
                    "print('\\u2757 Node.js (node) is required to run MyST, but could not be "
                    "found`.')\nprint('Install Node.js? (y/N): ', end='', flush=True)\n"
                    "if not select.select([sys.stdin], [], [], 5)[0]:\n"
                    "    print('still waiting'); sys.exit(3)\n"
                    "sys.exit(1 if sys.stdin.readline() == '' else 0)\n")
    myst.chmod(0o755)
    monkeypatch.setattr(mystbuild, "myst_executable", lambda: str(myst))
    read, write = os.pipe()  # stdin as at a terminal: open, nothing typed
    saved = os.dup(0)
    os.dup2(read, 0)
    try:
        t0 = time.perf_counter()
        with pytest.raises(RuntimeError) as err:
            mystbuild.build(["--site"])
        waited = time.perf_counter() - t0
    finally:
        os.dup2(saved, 0)
        for fd in (saved, read, write):
            os.close(fd)
    assert waited < 4 and "status 1" in str(err.value)
    assert "Node.js >= 20" in str(err.value) and "MYSTMD_ALLOW_NODEENV=1" in str(err.value)


def _recipe(target: str) -> tuple[str, str]:
    """A Makefile target's prerequisites and recipe (continued lines joined)."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    found = re.search(rf"^{target}:([^\n]*)\n((?:\t[^\n]*\n)*)", text, re.M)
    assert found, f"no target {target} in the Makefile"
    return found.group(1), found.group(2)


def test_make_paper_gets_node_for_myst_before_the_notebooks():
    """MyST runs on Node.js >= 20, which Debian's TeX packages do not bring (and Debian 12's
    own is 18): on a fresh machine make paper ran the notebooks for two hours, then the book
    step found no node."""
    prereqs, recipe = _recipe("paper")
    assert "sysdeps" in prereqs.split() and "notebooks" in recipe
    prereqs, recipe = _recipe("sysdeps")
    assert "install" in prereqs.split()
    assert re.search(r"MYSTMD_ALLOW_NODEENV=1 .*\$\(BIN\)/myst --version", recipe)
