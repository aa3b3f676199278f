"""Small videos written on the fly, so video tests and demos need no data files.

Each frame is a textured gray background with one bright square spot moving along a
circle; :func:`spot_positions` gives the spot's true centre per frame, so a tracker that
finds the spot can be checked against a known answer. The codec follows the file's
suffix unless one is named (``.mp4`` H.264, ``.avi`` Motion-JPEG, ``.mkv`` FFV1, ``.mj2``
JPEG 2000 in a QuickTime container, which FFmpeg's mj2 demuxer reads).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (codec, pixel format, container format, muxer options) per suffix.
CODECS: dict[str, tuple[str, str, str | None, dict[str, str]]] = {
    ".mp4": ("libx264", "yuv420p", None, {"movflags": "faststart"}),
    ".avi": ("mjpeg", "yuvj420p", None, {}),
    ".mkv": ("ffv1", "gray", None, {}),
    ".mj2": ("jpeg2000", "gray", "mov", {}),
    ".mov": ("libx264", "yuv420p", None, {"movflags": "faststart"}),
}
PIX_FMTS = {"libx264": "yuv420p", "mjpeg": "yuvj420p", "ffv1": "gray", "jpeg2000": "gray",
            "mpeg4": "yuv420p", "png": "gray", "rawvideo": "gray"}
SPOT = 4  # half side of the bright square, in pixels


def spot_positions(n_frames: int, size: tuple[int, int]) -> np.ndarray:
    """The spot's centre (x, y) in each frame, shape (n_frames, 2), for frames of ``size`` (W, H)."""
    w, h = size
    t = np.arange(n_frames) * (2 * np.pi / max(n_frames, 24))
    cx = w / 2 + 0.3 * w * np.cos(t)
    cy = h / 2 + 0.3 * h * np.sin(t)
    return np.stack([np.round(cx), np.round(cy)], axis=1)


def spot_frames(n_frames: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """uint8 frames (n_frames, H, W): a fixed texture plus a bright moving spot."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 60 + 30 * np.sin(xx / 7.0) * np.cos(yy / 9.0) + rng.normal(0, 8, (h, w))
    base = np.clip(base, 0, 150).astype(np.uint8)
    frames = np.repeat(base[None], n_frames, axis=0)
    for i, (x, y) in enumerate(spot_positions(n_frames, size).astype(int)):
        frames[i, max(y - SPOT, 0): y + SPOT + 1, max(x - SPOT, 0): x + SPOT + 1] = 250
    return frames


def write_frames(path: str | Path, frames: np.ndarray, fps: float = 30.0,
                 codec: str | None = None, pts: np.ndarray | None = None) -> Path:
    """Encode uint8 frames (N, H, W) or (N, H, W, 3) into ``path``.

    ``pts`` (optional, integer ticks of 1/1000 s) gives each frame's own time stamp, for a
    variable frame rate; by default frames are 1/fps apart.
    """
    from fractions import Fraction

    import av

    path = Path(path)
    suffix = path.suffix.lower()
    default_codec, pix_fmt, fmt, options = CODECS.get(suffix, ("libx264", "yuv420p", None, {}))
    if codec is not None and codec != default_codec:
        pix_fmt = PIX_FMTS.get(codec, "yuv420p")
        default_codec = codec
    frames = np.asarray(frames, dtype=np.uint8)
    rgb = frames.ndim == 4
    h, w = frames.shape[1:3]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt, options=options) as container:
        stream = container.add_stream(default_codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if pts is not None:
            stream.time_base = Fraction(1, 1000)
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24" if rgb else "gray")
            if pts is not None:
                vf.pts, vf.time_base = int(pts[i]), Fraction(1, 1000)
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_test_video(path: str | Path, n_frames: int = 60, size: tuple[int, int] = (96, 72),
                     fps: float = 30.0, codec: str | None = None, seed: int = 0) -> Path:
    """Write a test video of ``n_frames`` frames of ``size`` (W, H); see the module docstring."""
    return write_frames(path, spot_frames(n_frames, size, seed), fps=fps, codec=codec)


def write_clip(images, path: str | Path, fps: float = 30.0, n_frames: int | None = None,
               codec: str | None = None) -> Path:
    """Encode a sequence of images (paths or uint8 arrays, all one size) as a video clip.

    The images are used in the order given, repeated from the start until ``n_frames``
    frames are written (default: each image once). Used to assemble a short clip from
    labeled frames when no original video is at hand; such a clip is not a recording
    in time order, and callers say so.
    """
    from vit_facemap.errors import DataError
    from vit_facemap.images import load_image

    images = list(images)
    if not images:
        raise ValueError("no images to write")
    n = len(images) if n_frames is None else int(n_frames)
    frames = [load_image(images[i % len(images)], mode="L") if not isinstance(images[0], np.ndarray)
              else images[i % len(images)] for i in range(n)]
    odd = next((i for i, f in enumerate(frames) if f.shape != frames[0].shape), None)
    if odd is not None:
        # sizes as width x height, the image that breaks the run named (the set of numpy
        # shapes said (H, W) and no file)
        def size(f: np.ndarray) -> str:
            return f"{f.shape[1]}x{f.shape[0]}" + (" RGB" if f.ndim == 3 else "")

        message = (f"images come in several sizes: {size(frames[odd])} here, {size(frames[0])} "
                   f"for the first image; a clip needs one")
        if isinstance(images[0], np.ndarray):
            raise ValueError(f"image {odd % len(images)}: {message}")
        raise DataError(message, images[odd % len(images)])
    h, w = frames[0].shape[:2]
    if w % 2 or h % 2:  # 4:2:0 video needs even sides: drop the last row/column
        frames = [f[: h - h % 2, : w - w % 2] for f in frames]
    return write_frames(path, np.stack(frames), fps=fps, codec=codec)
