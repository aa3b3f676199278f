"""Sub-commands of ``vit-facemap``: one module each, exposing ``register(subparsers)``.

``register`` adds a parser and sets ``func`` (taking the parsed namespace, returning an
exit status) with ``parser.set_defaults(func=...)``.
"""

from __future__ import annotations

import argparse

from vit_facemap.config import (
    FLIP_SCALES,
    MAX_SEED,
    TEST_SCALES,
    check_crop_shift,
    check_scales,
    check_seed,
)

SCALES_HELP = ("crop-box sizes each stage sees a frame at, averaged (comma list of factors; "
               f"default {','.join(f'{s:g}' for s in FLIP_SCALES)} where the mirrored frame is "
               f"averaged in, else {','.join(f'{s:g}' for s in TEST_SCALES)}; each size costs "
               "one pass of the model, two with the mirrored frame)")


def seed_arg(text: str) -> int:
    """``--seed``: an integer from 0 to ``config.MAX_SEED``, refused before any work starts."""
    try:
        return check_seed(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an integer from 0 to {MAX_SEED}, got {text!r}") from None


def crop_shift_arg(text: str) -> float:
    """``--crop-shift``: a share of the second stages' crop side in [0, 0.5)."""
    try:
        return check_crop_shift(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a share of the crop's side in [0, 0.5) (e.g. 0.05), got {text!r}"
        ) from None


CROP_SHIFT_HELP = ("also average each second (crop) stage over its crop moved by this share "
                   "of its side left, right, up and down (0, the default: one crop; e.g. 0.05, "
                   "at five times the second stages' compute; benchmarks/crop_shift.py "
                   "measures what it buys)")


FLIP_HELP = ("also show every stage the mirrored frame and average the two heatmaps, then from "
             "the box alone unless --scales says otherwise (default: on wherever the run can, "
             "a heatmap run trained with flips; others predict without; --flip asks for it "
             "and warns where the run cannot; --no-flip predicts from the frame alone, at "
             "three box sizes unless --scales says otherwise, as versions before this "
             "default did; benchmarks/crop_shift.py --flip measures what it buys)")


FACING_HELP = ("video (the default): frames whose face points the other way from most of their "
               "video's (in track, of its frames so far) are predicted again with the nose read "
               "on the video's side of the eye "
               "(a head-fixed animal does not turn round; runs whose keypoints name a nose and "
               "an eye); frame: each frame alone")


def scales_arg(text: str) -> tuple[float, ...]:
    """``--scales`` values: comma-separated positive box-size factors, e.g. ``0.9,1,1.1``."""
    try:
        return check_scales(text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected positive numbers separated by commas (e.g. 0.9,1,1.1), got {text!r}"
        ) from None
