"""Re-execute the book's notebooks with papermill, in order, and record how they ran.

Every ``notebooks/[0-9][0-9]_*.ipynb`` gets the same parameters (``profile``, ``device``,
``data_dir``, ``seed``, ``out_dir``) and runs with ``notebooks/`` as working directory.
Executed copies go to ``_build/executed/``, which is what MyST builds the book from; the
committed notebooks stay without outputs. A failing notebook stops the run with a non-zero
exit; its partly executed copy is kept next to the others for inspection.

Each notebook records whether it ran on the real labeled sets or on generated frames
(:mod:`vit_facemap.book.data_used`); the build note calls the build real only when every
notebook did, and otherwise names the pages that ran on generated frames.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vit_facemap import config, runinfo
from vit_facemap.book import data_used

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
RECORD_JSON = "build_record.json"
RECORD_MD = "build_record.md"
# included by content/index.md right after the abstract: the first page says how it was built
NOTE_MD = "build_note.md"
# Cells whose outputs are embedded in the manuscript show the figure, not the code, in the
# paper; the notebook pages still offer the code (the renderer folds it away).
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
# In a kernel without ipywidgets, importing tqdm.auto (huggingface_hub does, under
# albumentations) warns "IProgress not found" into a cell's stderr, and the book showed it
# with the builder's venv path. The notebooks draw no progress bars, so that one message is
# ignored in the kernels; every other warning still reaches the page.
NO_WIDGETS_WARNING = "ignore:IProgress not found:Warning"
LABEL_LINE = re.compile(r"^#\|\s*label:\s*(fig|tbl)-", re.MULTILINE)


@dataclass
class BookSettings:
    """What every notebook receives as papermill parameters."""

    profile: str = "default"
    device: str = "auto"
    data_dir: str = ""
    seed: int = 0
    out_dir: str = "_build/results"

    def parameters(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class NotebookRun:
    name: str
    executed: str
    wall_s: float
    ok: bool
    error: str = ""
    title: str = ""        # the notebook's first heading: the name of its page in the book
    data: str = ""         # data_used.REAL, GENERATED or UNRECORDED, as the notebook recorded
    data_source: str = ""  # what it ran on, in the notebook's words


@dataclass
class BuildRecord:
    settings: BookSettings
    device_resolved: str
    real_data: bool  # every notebook recorded the real labeled sets
    notebooks: list[NotebookRun] = field(default_factory=list)
    wall_s: float = 0.0
    data_folder: bool = False  # a real data folder was given (notebooks may still not use it)

    def generated_pages(self) -> list[NotebookRun]:
        """The executed notebooks that did not record running on the real labeled sets."""
        return [r for r in self.notebooks if r.data != data_used.REAL]


def find_notebooks(folder: str | Path) -> list[Path]:
    """The book's notebooks in execution order (``01_...`` before ``02_...``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"notebook folder {folder} does not exist")
    return sorted(folder.glob(NOTEBOOK_GLOB))


def notebook_title(path: str | Path) -> str:
    """The first ``# `` heading of a notebook's markdown cells (its page title), else ''."""
    import nbformat

    for cell in nbformat.read(str(path), as_version=4).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def _page(run: NotebookRun) -> str:
    """A notebook as the note names it: its title and file, and why it is named there."""
    name = f"*{run.title}* (`{run.name}`)" if run.title else f"`{run.name}`"
    return name if run.data == data_used.GENERATED else f"{name}, which recorded no data"


def hide_labeled_inputs(path: str | Path) -> int:
    """Tag cells that carry a ``#| label: fig-``/``tbl-`` line with ``remove-input``.

    Returns how many cells were tagged. Only the executed copy is changed.
    """
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    n = 0
    for cell in nb.cells:
        if cell.cell_type != "code" or not LABEL_LINE.search(cell.source):
            continue
        tags = cell.metadata.setdefault("tags", [])
        if "remove-input" not in tags:
            tags.append("remove-input")
            n += 1
    if n:
        nbformat.write(nb, str(path))
    return n


def execute_notebook(source: Path, executed: Path, settings: BookSettings, *,
                     kernel_name: str = "python3") -> None:
    """Run one notebook with papermill (cwd = its folder); raises on a failing cell."""
    import papermill

    os.environ.setdefault("JUPYTER_ALLOW_ROOT", "1")
    executed.parent.mkdir(parents=True, exist_ok=True)
    kernel_env = {
        # Build tools export MPLBACKEND=Agg, under which plt.show() in a kernel displays
        # nothing; the book needs the figures as cell outputs, hence the inline backend.
        "MPLBACKEND": INLINE_BACKEND,
        # the last option wins, and this one only for its own message
        "PYTHONWARNINGS": ",".join(filter(None, (os.environ.get("PYTHONWARNINGS"),
                                                 NO_WIDGETS_WARNING))),
    }
    saved = {k: os.environ.get(k) for k in kernel_env}
    os.environ.update(kernel_env)
    try:
        _papermill(papermill, source, executed, settings, kernel_name)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _papermill(papermill, source: Path, executed: Path, settings: BookSettings,
               kernel_name: str) -> None:
    papermill.execute_notebook(
        str(source),
        str(executed),
        parameters=settings.parameters(),
        cwd=str(source.parent),
        kernel_name=kernel_name,
        progress_bar=True,  # per-cell tqdm bar: long notebooks show where they are
        log_output=False,
        request_save_on_cell_execute=True,
    )


def record_markdown(record: BuildRecord) -> str:
    """The build record as MyST markdown (included by the manuscript's provenance page)."""
    s = record.settings
    generated = record.generated_pages()
    if record.real_data and not generated:
        data = "the real labeled sets under the data folder"
    elif len(generated) < len(record.notebooks):
        data = ("the real labeled sets on some pages and generated frames on others "
                "(column Data)")
    elif record.data_folder:
        data = "generated frames on every page"
    else:
        data = "generated frames (no real data folder was given)"
    lines = [
        f"This build ran the notebooks with profile **`{s.profile}`** on device "
        f"**`{record.device_resolved}`** (asked for `{s.device}`), seed `{s.seed}`, using {data}. "
        f"Executing all notebooks took {record.wall_s / 60:.1f} min of wall time.",
        "",
        "| Notebook | Wall time (s) | Status | Data |",
        "| --- | ---: | --- | --- |",
    ]
    for run in record.notebooks:
        lines.append(f"| `{run.name}` | {run.wall_s:.1f} | {'ok' if run.ok else 'FAILED'} "
                     f"| {run.data or data_used.UNRECORDED} |")
    if not record.notebooks:
        lines.append("| (no notebooks yet) | | | |")
    return "\n".join(lines) + "\n"


def note_markdown(record: BuildRecord) -> str:
    """The build in two sentences, for the first page of the book and the paper.

    The build is called real only when every notebook recorded running on the real labeled
    sets. A build on generated frames puts them in a warning box: its numbers describe no
    mouse. A build where some notebooks ran on generated frames (profile ``test`` trains on
    them even with the data folder present) gets the box too, naming those pages.
    """
    s = record.settings
    how = (f"This copy was built by `make paper` with profile `{s.profile}` on device "
           f"`{record.device_resolved}`")
    generated = record.generated_pages()
    if record.real_data and not generated:
        return f"{how} from the real labeled sets; @sec-provenance gives the full record.\n"
    if generated and len(generated) < len(record.notebooks):
        pages = "; ".join(_page(r) for r in generated)
        return ("::::{warning} Built partly on generated data\n"
                "Not every page of this copy ran on the real labeled sets. These pages used "
                f"frames generated by `vit_facemap.synthetic`: {pages}. Their numbers and "
                "figures, and those of the manuscript that come from them, say nothing about "
                f"real mice. {how}; @sec-provenance gives the full record.\n"
                "::::\n")
    why = ("The notebooks of this build ran on generated frames" if record.data_folder
           else "No real data folder was given to this build")
    return ("::::{warning} Built on generated data\n"
            f"{why}: every number and figure in this "
            "copy comes from frames generated by `vit_facemap.synthetic` and says nothing "
            f"about real mice. {how}; @sec-provenance gives the full record.\n"
            "::::\n")


def write_record(record: BuildRecord, folder: Path, extra: dict[str, Any] | None = None) -> Path:
    provenance = runinfo.describe(record.settings, record.device_resolved,
                                  real_data=record.real_data, data_folder=record.data_folder,
                                  notebooks=[asdict(r) for r in record.notebooks],
                                  wall_s=record.wall_s, **(extra or {}))
    runinfo.write_json(provenance, folder / RECORD_JSON)
    (folder / RECORD_MD).write_text(record_markdown(record))
    (folder / NOTE_MD).write_text(note_markdown(record))
    return folder / RECORD_JSON


def complete_run(folder: str | Path) -> dict[str, Any]:
    """The build record in ``folder`` if its last run executed every notebook; else raises.

    The book steps call this first: a failing notebook still writes its record and a partly
    executed copy, and a book built from those would look finished. ``RuntimeError`` names
    the failed notebook, or the file that is missing.
    """
    folder = Path(folder)
    path = folder / RECORD_JSON
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: run the notebooks first (make notebooks)")
    try:
        record = json.loads(path.read_text())
    except ValueError as e:
        raise RuntimeError(f"{path} is not valid JSON ({e}): run make notebooks again") from None
    runs = record.get("notebooks") or []
    failed = [r for r in runs if not r.get("ok")]
    if failed:
        first = failed[0]
        error = (first.get("error") or "no error recorded").strip().splitlines()[0]
        raise RuntimeError(f"the last notebook run failed at {first.get('name')} ({error}); "
                           f"{path} records a partial run and the book is not built from it: "
                           "fix the notebook and run make notebooks again")
    if not runs:
        raise RuntimeError(f"{path} records no executed notebook: run make notebooks")
    missing = [str(folder / n) for n in (RECORD_MD, NOTE_MD) if not (folder / n).is_file()]
    missing += [str(folder / r["name"]) for r in runs if not (folder / r["name"]).is_file()]
    if missing:
        raise RuntimeError(f"the notebook run in {folder} is incomplete, missing "
                           f"{', '.join(missing)}: run make notebooks again")
    return record


def check_data_folder(data_dir: str | Path) -> None:
    """Refuse a data folder that is given but holds none of the real sets.

    Without this the notebooks fall back on generated frames, as they do when no folder is
    given: a mistyped ``DATA=`` cost a whole build on generated frames whose note said that
    no folder was given. An empty ``data_dir`` is the documented way to build on them.
    """
    if not str(data_dir):
        return
    folder = Path(data_dir).expanduser()
    sets = ", ".join(config.REAL_SETS)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} (DATA= / --data-dir) does not exist: "
                                f"give the folder that holds the real sets ({sets}), or none "
                                "to build on generated frames")
    if not any((folder / name).is_dir() for name in config.REAL_SETS):
        raise FileNotFoundError(f"data folder {folder} (DATA= / --data-dir) holds none of the "
                                f"real sets ({sets}): give the folder that holds them, or none "
                                "to build on generated frames")


def execute_all(notebooks_dir: str | Path, executed_dir: str | Path, settings: BookSettings, *,
                kernel_name: str = "python3", log=print) -> BuildRecord:
    """Execute every notebook in order; raises ``RuntimeError`` naming the first failure.

    The record (JSON + markdown) is written in ``executed_dir`` in every case, so the
    provenance of a failed build is kept as well.
    """
    notebooks_dir = Path(notebooks_dir).resolve()
    executed_dir = Path(executed_dir).resolve()
    if executed_dir == notebooks_dir:
        # the executed folder's notebooks are deleted first, as copies of an earlier run
        raise ValueError(f"the executed copies would replace the notebooks in {notebooks_dir}, "
                         "which are removed from that folder before the run: give another "
                         "folder for the executed copies")
    config.profile(settings.profile)  # validates the name before spending any time
    check_data_folder(settings.data_dir)
    device = runinfo.resolve_device(settings.device)
    # what the notebooks record as their data lands in their out_dir, which is relative
    # to their working directory (notebooks_dir) unless absolute
    results = Path(settings.out_dir)
    results = results if results.is_absolute() else notebooks_dir / results
    record = BuildRecord(settings=settings, device_resolved=device, real_data=False,
                         data_folder=config.data_root(settings.data_dir) is not None)
    executed_dir.mkdir(parents=True, exist_ok=True)
    # The record of the previous run goes first: a run stopped part-way (Ctrl-C, a killed
    # kernel) writes none, and the old one, listing every notebook as ok, would let the
    # book be built from this run's partial copies under the old run's settings.
    for name in (RECORD_JSON, RECORD_MD, NOTE_MD):
        (executed_dir / name).unlink(missing_ok=True)
    for stale in executed_dir.glob(NOTEBOOK_GLOB):
        stale.unlink()  # a notebook removed from the repo must not linger in the book
    start = time.perf_counter()
    failure: str | None = None
    for source in find_notebooks(notebooks_dir):
        target = executed_dir / source.name
        log(f"[book] executing {source.name} (profile={settings.profile}, device={device})")
        data_used.data_used_path(results, source.name).unlink(missing_ok=True)  # a stale record
        t0 = time.perf_counter()
        try:
            execute_notebook(source, target, settings, kernel_name=kernel_name)
            ok, error = True, ""
        except Exception as exc:  # papermill raises its own error types; keep the message
            ok, error = False, f"{type(exc).__name__}: {exc}"
        wall = time.perf_counter() - t0
        used = data_used.read_data_used(results, source.name)
        record.notebooks.append(NotebookRun(source.name, str(target), round(wall, 2), ok, error,
                                            title=notebook_title(source), data=used["data"],
                                            data_source=used["source"]))
        log(f"[book] {source.name}: {'ok' if ok else 'FAILED'} in {wall:.1f} s")
        if not ok:
            failure = f"notebook {source} failed (executed copy: {target}):\n{error}"
            break
        hide_labeled_inputs(target)
    record.wall_s = round(time.perf_counter() - start, 2)
    record.real_data = bool(record.notebooks) and not record.generated_pages()
    write_record(record, executed_dir)
    if failure:
        raise RuntimeError(failure)
    return record
