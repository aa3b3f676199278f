"""Sub-commands of ``vit-facemap``: one module each, exposing ``register(subparsers)``.

``register`` adds a parser and sets ``func`` (taking the parsed namespace, returning an
exit status) with ``parser.set_defaults(func=...)``.
"""

from __future__ import annotations

import argparse

from vit_facemap.config import TEST_SCALES, check_scales

SCALES_HELP = ("crop-box sizes each stage sees a frame at, averaged (comma list of factors; "
               f"default {','.join(f'{s:g}' for s in TEST_SCALES)}; 1 alone needs a third of "
               "the model compute)")


def scales_arg(text: str) -> tuple[float, ...]:
    """``--scales`` values: comma-separated positive box-size factors, e.g. ``0.9,1,1.1``."""
    try:
        return check_scales(text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected positive numbers separated by commas (e.g. 0.9,1,1.1), got {text!r}"
        ) from None
