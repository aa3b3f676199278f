"""The ``vit-facemap`` command line.

Each sub-command lives in a module of :mod:`vit_facemap.commands` that defines
``register(subparsers)``; this file only discovers them, so adding a command never
touches the others. User mistakes (:class:`DataError`, an existing output) print one
clear line and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from vit_facemap import __version__, commands
from vit_facemap.errors import run_reporting


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vit-facemap",
        description="Vision Transformers for mouse orofacial keypoints, facial states and attention maps.",
    )
    parser.add_argument("--version", action="version", version=f"vit-facemap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_reporting(f"vit-facemap {args.command}", lambda: args.func(args),
                         getattr(args, "on_interrupt", ""))


if __name__ == "__main__":
    sys.exit(main())
