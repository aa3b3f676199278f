"""Reading frames, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vit_facemap.errors import DataError

# the frame files the sets hold (DeepLabCut's labeled-data, class folders)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def load_image(path: str | Path, mode: str | None = None) -> np.ndarray:
    """Read an image as uint8: (H, W) for grayscale, (H, W, 3) for colour.

    ``mode`` forces ``"L"`` (grayscale) or ``"RGB"``. RGB frames whose channels are
    equal are returned as they are stored; convert with ``mode="L"`` when a model is gray.
    16-bit frames are mapped from the 16-bit range; 32-bit float frames are read as 0..1
    when no value exceeds 1 and as 0..255 otherwise (other ranges are refused).
    """
    return load_image_and_peak(path, mode)[0]


def _check_image_file(path: Path) -> None:
    if path.is_dir():
        # a folder of frames given as an image ('rollout RUN FOLDER') was "missing"
        raise DataError("is a folder, not an image file; give the image files "
                        "(e.g. FOLDER/*.png)", path)
    if not path.is_file():
        raise DataError("image file is missing", path)


def load_image_and_peak(path: str | Path, mode: str | None = None
                        ) -> tuple[np.ndarray, int | None]:
    """:func:`load_image`'s array and, for a 16-bit frame, its largest value as stored (None
    for any other frame; :func:`sixteen_bit_peak`): one decode for both, where a check
    reads every frame anyway."""
    path = Path(path)
    _check_image_file(path)
    try:
        with Image.open(path) as im:
            im.load()  # decode now so truncated / corrupt files fail here, with the path
            if im.mode.startswith("I;16") or im.mode == "I":
                # PIL's convert clips 16-bit values to 0..255 (a binary image); map the
                # 16-bit range onto 8 bits instead, the same for every frame
                # ("I" too: older Pillow opens 16-bit PNGs so; one scale for every frame)
                deep = np.asarray(im).astype(np.float64)
                gray = np.clip(np.round(deep / 257.0), 0, 255).astype(np.uint8)
                peak = int(deep.max())
                return (np.repeat(gray[..., None], 3, axis=-1) if mode == "RGB" else gray), peak
            # PIL's convert rounds and clips float ("F") values: a frame stored as 0..1
            # came out 0 or 1 (black) without a word; it is scaled below, out of this try
            if mode is not None and im.mode != "F":
                im = im.convert(mode)
            elif im.mode not in ("L", "RGB", "F"):
                im = im.convert("RGB" if im.mode in ("RGBA", "P", "CMYK", "YCbCr") else "L")
            arr = np.asarray(im)
    except Image.DecompressionBombError as exc:
        raise DataError(f"image too large to decode safely ({exc})", path) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode image ({exc})", path) from exc
    if arr.dtype.kind == "f":  # one channel: PIL has no float colour mode
        gray = _float_to_uint8(arr, path)
        return (np.repeat(gray[..., None], 3, axis=-1) if mode == "RGB" else gray), None
    if arr.dtype != np.uint8:
        arr = np.clip(arr / max(1, arr.max()) * 255, 0, 255).astype(np.uint8)
    return arr, None


def _float_to_uint8(deep: np.ndarray, path: Path) -> np.ndarray:
    """A 32-bit float frame as 8 bits: values within 0..1 scaled by 255, values within
    0..255 kept; any other range is refused, as no scale for it is known. (A frame of a
    0..255 set whose values all lie within 0..1, all but black, is read as 0..1.)"""
    if not np.isfinite(deep).all():
        raise DataError("float frame holds NaN or infinite values; save it as 8-bit "
                        "(0..255)", path)
    lo, hi = float(deep.min()), float(deep.max())
    if lo < 0 or hi > 255:
        raise DataError(f"float frame holds values from {lo:g} to {hi:g}, outside 0..1 and "
                        "0..255, so its grey scale is unknown; save it as 8-bit (0..255)", path)
    scale = 255.0 if hi <= 1 else 1.0
    return np.clip(np.round(deep * scale), 0, 255).astype(np.uint8)


# A 16-bit frame whose values all lie below this holds 12 bits or fewer: mapped from the
# 16-bit range (as load_image does, one scale for every frame) it keeps at most 16 grey levels
SIXTEEN_BIT_LOW = 4096


def is_sixteen_bit(mode: str) -> bool:
    """Whether PIL's ``mode`` is one that :func:`load_image` maps from the 16-bit range."""
    return mode.startswith("I;16") or mode == "I"


def sixteen_bit_peak(path: str | Path) -> int | None:
    """The largest pixel value of a 16-bit frame (decoded); None for any other frame."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            if not is_sixteen_bit(im.mode):
                return None
            im.load()
            return int(np.asarray(im).max())
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode image ({exc})", path) from exc


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header, without decoding the pixels."""
    return image_header(path)[0]


def image_header(path: str | Path) -> tuple[tuple[int, int], str]:
    """((width, height), PIL mode) from the header, without decoding the pixels."""
    path = Path(path)
    _check_image_file(path)
    try:
        with Image.open(path) as im:
            return im.size, im.mode
    except Image.DecompressionBombError as exc:
        raise DataError(f"image too large to decode safely ({exc})", path) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read image header ({exc})", path) from exc
