"""Reading videos in batches of frames, with frame numbers and time stamps.

Anything FFmpeg decodes (through PyAV) is read: .mp4, .avi, .mkv, .mj2, .mov, ... Frames
are numbered in decoding order from 0, the way DeepLabCut numbers the rows of its
predictions; each frame also keeps its own presentation time stamp, so videos with a
variable frame rate are described exactly rather than by ``index / fps``. Times in seconds
count from the first frame's time stamp (MPEG-TS streams, say, do not start at 0), so frame
0 is at 0 s, as frame numbers count from it; ``pts`` keeps the stamps as stored.

Real files break: a copy stopped half way, a crashed recording. A decode failure, or a
file that ends before the frames its header announces, raises :class:`VideoDecodeError`
naming the file and the first frame that could not be read; the frames before it have
already been handed out, so callers keep them.

:class:`BackgroundBatches` decodes in a thread while the caller runs a model, with a
bounded queue so that memory stays flat on long videos.
"""

from __future__ import annotations

import math
import queue
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vit_facemap.errors import DataError, DataWarning


class VideoDecodeError(DataError):
    """Decoding stopped at ``frame``: the file is truncated or corrupt from there on."""

    def __init__(self, message: str, path: str | Path, frame: int) -> None:
        self.frame = int(frame)
        super().__init__(message, path)


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    n_frames: int | None  # from the container header; None when it does not say
    fps: float | None  # average frame rate from the header
    duration_s: float | None  # of the video stream; None when the header does not say
    codec: str
    container: str
    start_s: float = 0.0  # the time stamp (s) the video stream starts at


@dataclass
class FrameBatch:
    """A batch of frames: ``frames`` (B, H, W) or (B, H, W, 3) uint8; per-frame ``indices``
    (frame numbers from 0), ``pts`` (in the stream's time base, -1 if unknown) and
    ``times`` (seconds from the video's first frame, NaN if unknown)."""

    frames: np.ndarray
    indices: np.ndarray
    pts: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


def _open(path: Path):
    import av

    if not path.exists():
        raise DataError("no such video file", path)
    if path.is_dir():
        raise DataError("is a folder, not a video file", path)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot open as a video (truncated, corrupt or not a video?): {exc}",
                        path) from exc
    if not container.streams.video:
        container.close()
        raise DataError("has no video stream", path)
    return container


def probe(path: str | Path) -> VideoInfo:
    """Size, frame count, frame rate and codec of a video, from its header (no decoding)."""
    path = Path(path)
    with _open(path) as container:
        return _info(path, container)


def _info(path: Path, container) -> VideoInfo:
    stream = container.streams.video[0]
    ctx = stream.codec_context
    duration = None
    start = 0.0
    tagged = _tagged_end(stream.metadata)
    timed = stream.duration is not None and stream.time_base is not None
    if timed or tagged is not None:
        if stream.start_time is not None and stream.time_base is not None:
            start = float(stream.start_time * stream.time_base)
        # Matroska gives the stream no duration of its own, only a tag; FFmpeg's muxer
        # writes the end of the stream's last frame, counted from 0 rather than from its start
        duration = (float(stream.duration * stream.time_base) if timed
                    else max(tagged - start, 0.0))
    elif container.duration is not None and len(container.streams) == 1:
        # the container's duration spans all its streams: with an audio track that runs
        # past the video's end it is not the video's, so only a lone video stream takes it
        duration = container.duration / 1_000_000
        if container.start_time is not None:
            start = container.start_time / 1_000_000
    rate = stream.average_rate or stream.guessed_rate
    return VideoInfo(
        path=path, width=int(ctx.width), height=int(ctx.height),
        n_frames=int(stream.frames) if stream.frames else None,
        fps=float(rate) if rate else None, duration_s=duration,
        codec=ctx.name, container=container.format.name, start_s=start,
    )


def _tagged_end(metadata) -> float | None:
    """Seconds in a ``DURATION`` tag (``HH:MM:SS.fraction``, as Matroska stores it), or None."""
    text = next((v for k, v in (metadata or {}).items() if k.upper() == "DURATION"), None)
    if not text:
        return None
    try:
        hours, minutes, seconds = str(text).strip().split(":")
        value = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None
    # "inf" parses as a float too, and would announce a video that never ends
    return value if math.isfinite(value) and value > 0 else None


def parse_crop(text: str | None) -> tuple[int, int, int, int] | None:
    """``"x0,y0,x1,y1"`` (pixels, x1/y1 exclusive) as a tuple; None passes through."""
    if text in (None, ""):
        return None
    try:
        box = tuple(int(v) for v in str(text).split(","))
    except ValueError as exc:
        raise ValueError(f"crop must be four integers x0,y0,x1,y1, got {text!r}") from exc
    if len(box) != 4:
        raise ValueError(f"crop must be four integers x0,y0,x1,y1, got {text!r}")
    return box  # type: ignore[return-value]


def check_crop(crop: tuple[int, int, int, int] | None, width: int, height: int,
               path: Path) -> tuple[int, int, int, int]:
    """The crop box checked against the frame size (the whole frame when None)."""
    if crop is None:
        return (0, 0, width, height)
    x0, y0, x1, y1 = crop
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise DataError(
            f"crop box {x0},{y0},{x1},{y1} does not fit in the {width}x{height} frames "
            "(need 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height)", path)
    return (x0, y0, x1, y1)


def iter_frames(path: str | Path, *, start: int = 0, stop: int | None = None,
                color: str = "gray", crop: tuple[int, int, int, int] | None = None,
                resize: tuple[int, int] | None = None, threads: int = 0,
                ) -> Iterator[tuple[int, int, float, np.ndarray]]:
    """Yield ``(index, pts, time_s, frame)`` for frames ``start <= index < stop``.

    ``pts`` is the frame's time stamp in the stream's time base, as stored (-1 if it has
    none); ``time_s`` the seconds from the first frame's time stamp (NaN without one; when
    the first frames have none, frame 0's is put ``index / fps`` before the first stamp).

    ``color`` is ``"gray"`` (H, W) or ``"rgb"`` (H, W, 3). ``crop`` (x0, y0, x1, y1) is
    cut from each frame, then ``resize`` (W, H) scales the cut, both before conversion
    to an array. ``threads`` > 0 lets FFmpeg decode with that many threads (0: one).
    Raises :class:`VideoDecodeError` where decoding breaks, after the good frames; frames
    the decoder flags as corrupt (damaged data it concealed and decoded anyway) are yielded
    and named in a :class:`~vit_facemap.errors.DataWarning` once reading ends.
    """
    corrupt: list[int] = []
    yield from _decode(Path(path), start, stop, color, crop, resize, threads, corrupt)
    if corrupt:  # said once reading is complete; an error or an early stop takes precedence
        _warn_damaged(Path(path), corrupt)


def _decode(path: Path, start: int, stop: int | None, color: str,
            crop: tuple[int, int, int, int] | None, resize: tuple[int, int] | None,
            threads: int, corrupt: list[int]) -> Iterator[tuple[int, int, float, np.ndarray]]:
    import av

    if color not in ("gray", "rgb"):
        raise ValueError(f"color must be 'gray' or 'rgb', got {color!r}")
    if start < 0 or (stop is not None and stop < start):
        raise ValueError(f"need 0 <= start <= stop, got start={start}, stop={stop}")
    fmt = "gray" if color == "gray" else "rgb24"
    container = _open(path)
    try:
        info = _info(path, container)
        x0, y0, x1, y1 = check_crop(crop, info.width, info.height, path)
        full = (x0, y0, x1, y1) == (0, 0, info.width, info.height)
        stream = container.streams.video[0]
        if threads > 0:
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = threads
        gray = _GrayFromLuma() if color == "gray" else None
        index = 0
        last_time = None  # as stored; times handed out count from the first frame's
        origin = None
        broken: Exception | None = None

        def frames_of(decoded) -> Iterator[tuple[int, int, float, np.ndarray]]:
            nonlocal index, last_time, origin
            for frame in decoded:
                i = index
                index += 1
                t = frame.time
                if t is not None:
                    last_time = t
                    origin = _time_origin(t, i, info.fps) if origin is None else origin
                if i < start:
                    continue  # decoded for the reference chain only; no conversion
                if stop is not None and i >= stop:
                    return
                if frame.is_corrupt:
                    corrupt.append(i)
                if resize is not None and full and resize != (info.width, info.height):
                    arr = frame.reformat(width=resize[0], height=resize[1],
                                         format=fmt).to_ndarray()
                else:
                    arr = gray(frame, y0, y1, x0, x1) if gray is not None else None
                    if arr is None:
                        arr = frame.to_ndarray(format=fmt)
                        if not full:
                            arr = arr[y0:y1, x0:x1]
                    if resize is not None and not full:
                        arr = _resize(arr, resize)
                pts = -1 if frame.pts is None else int(frame.pts)
                yield i, pts, (float("nan") if t is None else float(t - origin)), arr

        try:
            for packet in container.demux(stream):
                if stop is not None and index >= stop:
                    return
                try:
                    decoded = packet.decode()
                except av.error.EOFError:
                    break
                except av.error.FFmpegError as exc:
                    broken = exc
                    break
                yield from frames_of(decoded)
            # Frames the decoder still holds (reordering, frame threads). Not after a decode
            # error: those it holds may come after frames it lost, and would be handed out
            # under the lost frames' numbers (frame 47 as frame 1, say)
            try:
                if broken is None:
                    yield from frames_of(stream.codec_context.decode(None))
            except av.error.EOFError:
                pass
            except av.error.FFmpegError as exc:
                broken = broken or exc
        except av.error.FFmpegError as exc:  # demuxing itself failed
            broken = exc
        if stop is not None and index >= stop:
            return
        if broken is not None:
            raise VideoDecodeError(
                f"decoding failed at frame {index} ({broken}); the file is truncated or "
                f"corrupt from there on ({index} frames read before)", path, index)
        short = _ended_early(info, index, last_time)
        if short:
            raise VideoDecodeError(
                f"the video ends at frame {index} but {short}: the file is truncated "
                f"({index} frames read)", path, index)
        if index < start:
            raise DataError(f"start frame {start} is past the end of the video "
                            f"({index} frames)", path)
    finally:
        container.close()


def _time_origin(t: float, index: int, fps: float | None) -> float:
    """The time stamp frame 0 has, or would have, from the first stamped frame's: ``t`` of
    frame ``index``. Taken as 0 s for a later frame, it would share 0 s with the frame 0
    that NWB's frame / fps fill gives the unstamped frames; with no frame rate known, that
    frame is the origin all the same."""
    return t - index / fps if index > 0 and fps else t


def _warn_damaged(path: Path, corrupt: list[int]) -> None:
    shown = ", ".join(map(str, corrupt[:10])) + (" ..." if len(corrupt) > 10 else "")
    warnings.warn(DataWarning(
        f"{path}: {len(corrupt)} frame(s) decoded from damaged data (the decoder concealed "
        f"the damage; their keypoints may be wrong): frames {shown}"), stacklevel=3)


_IDENTITY = np.arange(256, dtype=np.uint8)


class _GrayFromLuma:
    """Gray frames straight from the luma plane of planar YUV video (most camera codecs).

    FFmpeg's own gray conversion (swscale) costs about half as much as decoding an H.264
    frame; reading the Y plane (through a 256-entry table for limited-range video) costs a
    fraction of that. The table
    is built by passing every Y value through swscale once per pixel format and colour
    range, and checked against swscale on the first real frame: any mismatch (a format
    whose conversion is not a per-pixel map) switches back to swscale for the whole video.
    """

    FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "gray",
               "nv12", "yuv410p", "yuv411p", "yuv440p", "yuvj440p"}

    def __init__(self) -> None:
        self.luts: dict[tuple[str, int], np.ndarray | None] = {}

    def _lut(self, frame) -> np.ndarray | None:
        key = (frame.format.name, int(frame.color_range))
        if key not in self.luts:
            lut = None
            if key[0] in self.FORMATS:
                try:
                    lut = self._probe(frame, key[0])
                except (ValueError, TypeError, RuntimeError):  # odd plane layout: use swscale
                    lut = None
            self.luts[key] = lut
        return self.luts[key]

    def _probe(self, frame, fmt: str) -> np.ndarray | None:
        """The Y -> gray table of swscale for ``fmt`` and the frame's colour range, or None
        when it does not reproduce swscale's output on ``frame``."""
        import av

        probe_frame = av.VideoFrame(16, 16, fmt)
        plane = probe_frame.planes[0]
        buf = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size).copy()
        buf[:, :16] = np.arange(256, dtype=np.uint8).reshape(16, 16)  # every Y value once
        plane.update(buf.tobytes())
        for other in probe_frame.planes[1:]:
            other.update(np.full(other.buffer_size, 128, np.uint8).tobytes())
        probe_frame.color_range = frame.color_range
        lut = probe_frame.to_ndarray(format="gray").reshape(256).copy()
        if not np.array_equal(self._luma(frame, lut), frame.to_ndarray(format="gray")):
            return None
        return lut

    @staticmethod
    def _luma(frame, lut: np.ndarray, y0: int = 0, y1: int | None = None, x0: int = 0,
              x1: int | None = None) -> np.ndarray:
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        y = y[: plane.height, : plane.width][y0:y1, x0:x1]
        if lut is _IDENTITY or np.array_equal(lut, _IDENTITY):
            return np.array(y)  # full-range luma is the gray image: copy out of FFmpeg's buffer
        import cv2  # installed with albumentations; its LUT is several times numpy's take

        return cv2.LUT(np.ascontiguousarray(y), lut)

    def __call__(self, frame, y0: int, y1: int, x0: int, x1: int) -> np.ndarray | None:
        lut = self._lut(frame)
        return None if lut is None else self._luma(frame, lut, y0, y1, x0, x1)


def _ended_early(info: VideoInfo, n_read: int, last_time: float | None) -> str:
    """Why the header says there should be more frames than ``n_read`` ('' if it does not)."""
    timed = bool(info.duration_s and info.fps)
    # An edit list (an MP4 cut by stream copy) keeps the cut frames' samples, which the
    # header counts but no decoder presents; the stream's duration covers only the frames
    # shown. Where the two disagree by more than rounding, the time decides.
    counted = info.n_frames is not None and not (
        timed and abs(info.n_frames - info.duration_s * info.fps) > 1)
    if counted:
        return f"its header announces {info.n_frames} frames" if n_read < info.n_frames else ""
    if timed and last_time is not None:
        step = 1.0 / info.fps
        end = info.start_s + info.duration_s
        # Two frame intervals of slack: headers round durations, the last frame has length.
        if last_time + step < end - 2 * step:
            since = f" from {info.start_s:.3f} s" if info.start_s else ""
            return (f"its header announces {info.duration_s:.3f} s{since} and the last frame "
                    f"read is at {last_time:.3f} s")
    return ""


def _resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.BILINEAR))


def iter_batches(path: str | Path, batch_size: int = 32, **kwargs) -> Iterator[FrameBatch]:
    """:func:`iter_frames` grouped into :class:`FrameBatch` es of up to ``batch_size``.

    On a decode failure the frames read before it are yielded as a last (short) batch,
    then :class:`VideoDecodeError` is raised.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    buf: list[tuple[int, int, float, np.ndarray]] = []

    def flush() -> FrameBatch:
        batch = FrameBatch(
            frames=np.stack([b[3] for b in buf]),
            indices=np.array([b[0] for b in buf], dtype=np.int64),
            pts=np.array([b[1] for b in buf], dtype=np.int64),
            times=np.array([b[2] for b in buf], dtype=np.float64),
        )
        buf.clear()
        return batch

    try:
        for item in iter_frames(path, **kwargs):
            buf.append(item)
            if len(buf) == batch_size:
                yield flush()
    except VideoDecodeError:
        if buf:
            yield flush()
        raise
    if buf:
        yield flush()


_DONE = object()


class BackgroundBatches:
    """Iterate :func:`iter_batches` decoded in a background thread.

    At most ``prefetch`` batches wait in the queue, so decoding runs ahead of the model
    without filling memory. Errors of the decoder (e.g. :class:`VideoDecodeError`) are
    raised in the caller's thread after the batches decoded before them. Use as a
    context manager (or call :meth:`close`) so the thread stops when the caller stops early.
    """

    def __init__(self, path: str | Path, batch_size: int = 32, prefetch: int = 4,
                 **kwargs) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._gen = iter_batches(path, batch_size, **kwargs)
        self._thread = threading.Thread(target=self._work, name="video-decode", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for batch in self._gen:
                if not self._put(batch):
                    return
            self._put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
        finally:
            self._gen.close()

    def __iter__(self) -> Iterator[FrameBatch]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> BackgroundBatches:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
