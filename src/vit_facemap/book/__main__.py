"""``python -m vit_facemap.book STEP``: the steps that ``make paper`` chains.

- ``execute``: re-run every notebook with papermill into ``_build/executed/``.
- ``html``: ``myst build --site`` (fails on warnings), then render ``_build/html/``.
- ``tex``: ``myst build --tex`` into ``exports/arxiv.zip`` (fails on warnings or no zip).
- ``pdf``: compile the zip with ``latexmk -pdf`` into ``exports/paper.pdf``; adds the .bbl.
- ``check``: every promised output exists and is complete.
- ``html-online``: MyST's book theme in ``_build/online/_build/html`` (needs the internet).

The steps that build the book refuse a notebook run that failed or is incomplete
(:func:`execute.complete_run`), so running one by hand after a failed ``make notebooks``
does not turn a partial run into a finished-looking book.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from vit_facemap.book import check, execute, latex, mystbuild, online, render
from vit_facemap.commands import seed_arg

EXECUTED = Path("_build/executed")
SITE = Path("_build/site")
HTML = Path("_build/html")


def _execute(args: argparse.Namespace) -> int:
    # notebooks run in notebooks/, so relative folders are made absolute first
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else ""
    settings = execute.BookSettings(profile=args.profile, device=args.device,
                                    data_dir=data_dir, seed=args.seed,
                                    out_dir=str(Path(args.out_dir).resolve()))
    record = execute.execute_all(args.notebooks, args.executed, settings)
    print(f"[book] executed {len(record.notebooks)} notebooks in {record.wall_s / 60:.1f} min "
          f"(profile {settings.profile}, device {record.device_resolved})")
    return 0


def _html(args: argparse.Namespace) -> int:
    execute.complete_run(EXECUTED)
    # a failed myst build must not leave the book of an earlier build looking current
    shutil.rmtree(HTML, ignore_errors=True)
    shutil.rmtree(SITE, ignore_errors=True)
    mystbuild.build(["--site", "--strict"], expect=[SITE / "config.json"])
    pages = render.render_book(SITE, HTML, record_path=EXECUTED / execute.RECORD_JSON)
    print(f"[book] wrote {len(pages)} pages to {HTML}/")
    return 0


def _tex(args: argparse.Namespace) -> int:
    execute.complete_run(EXECUTED)
    zip_path = check.ARXIV_ZIP
    zip_path.unlink(missing_ok=True)  # a stale zip must not pass for a fresh export
    mystbuild.build(["--tex", "--strict"], expect=[zip_path])
    latex.polish_zip(zip_path, latex.project_bibliography())
    return 0


def _pdf(args: argparse.Namespace) -> int:
    execute.complete_run(EXECUTED)
    pdf = latex.compile_zip(check.ARXIV_ZIP, check.PAPER_PDF,
                            keep=args.keep if args.keep else None)
    print(f"[book] compiled {check.ARXIV_ZIP} with latexmk -pdf -> {pdf} (.bbl added to the zip)")
    return 0


def _online(args: argparse.Namespace) -> int:
    execute.complete_run(EXECUTED)
    out = online.build_online(".")
    print(f"[book] MyST book theme site in {out}/")
    return 0


def _check(args: argparse.Namespace) -> int:
    problems = check.missing_exports(".")
    for p in problems:
        print(f"[book] MISSING: {p}", file=sys.stderr)
    if not problems:
        print(f"[book] ok: {check.HTML_INDEX}, {check.ARXIV_ZIP}, {check.PAPER_PDF}")
    return 1 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vit_facemap.book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("execute", help="re-run the notebooks with papermill")
    p.add_argument("--profile", default="default")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", default="")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--out-dir", default="_build/results")
    p.add_argument("--notebooks", default="notebooks")
    p.add_argument("--executed", default=str(EXECUTED))
    p.set_defaults(func=_execute)
    sub.add_parser("html", help="myst --site + offline HTML").set_defaults(func=_html)
    sub.add_parser("tex", help="myst --tex -> exports/arxiv.zip").set_defaults(func=_tex)
    p = sub.add_parser("pdf", help="latexmk -pdf on the arXiv zip -> exports/paper.pdf")
    p.add_argument("--keep", default="", help="compile in this folder and keep it (a new or empty folder, or one an "
                   "earlier --keep compiled in: it is emptied first)")
    p.set_defaults(func=_pdf)
    sub.add_parser("check", help="all exports exist").set_defaults(func=_check)
    sub.add_parser("html-online", help="MyST book theme site (needs the internet)"
                   ).set_defaults(func=_online)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (RuntimeError, FileNotFoundError, ValueError) as exc:
        print(f"[book] {args.step} failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
