"""Sub-commands of ``vit-facemap``: one module each, exposing ``register(subparsers)``.

``register`` adds a parser and sets ``func`` (taking the parsed namespace, returning an
exit status) with ``parser.set_defaults(func=...)``.
"""

from __future__ import annotations

import argparse

SCALES_HELP = ("box sizes each stage sees a frame at, averaged (comma list of factors; "
               "default 0.9,1,1.1; 1 alone is three times faster)")


def scales_arg(text: str) -> tuple[float, ...]:
    """``--scales`` values: comma-separated positive box-size factors, e.g. ``0.9,1,1.1``."""
    try:
        out = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        out = ()
    if not out or not all(0 < v < float("inf") for v in out):
        raise argparse.ArgumentTypeError(
            f"expected positive numbers separated by commas (e.g. 0.9,1,1.1), got {text!r}")
    return out
