"""The video reader: formats, frame ranges, crops, time stamps, broken files."""

from __future__ import annotations

import numpy as np
import pytest

from vit_facemap.errors import DataError
from vit_facemap.testvideo import spot_frames, spot_positions, write_frames, write_test_video
from vit_facemap.video import (
    BackgroundBatches,
    VideoDecodeError,
    iter_batches,
    parse_crop,
    probe,
)

SIZE = (96, 72)


def spot_centre(frame: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(frame > 200)
    return np.array([xs.mean(), ys.mean()])


def read_all(path, **kw):
    batches = list(iter_batches(path, 16, **kw))
    return (np.concatenate([b.frames for b in batches]), np.concatenate([b.indices for b in batches]),
            np.concatenate([b.times for b in batches]))


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mkv", ".mj2"])
def test_formats_round_trip(tmp_path, suffix):
    path = write_test_video(tmp_path / f"v{suffix}", 40, SIZE, fps=25)
    info = probe(path)
    assert (info.width, info.height) == SIZE
    assert info.fps == pytest.approx(25)
    frames, idx, times = read_all(path)
    assert frames.shape == (40, SIZE[1], SIZE[0]) and frames.dtype == np.uint8
    np.testing.assert_array_equal(idx, np.arange(40))
    np.testing.assert_allclose(times, np.arange(40) / 25, atol=1e-3)
    truth = spot_positions(40, SIZE)
    found = np.array([spot_centre(f) for f in frames])
    np.testing.assert_allclose(found, truth, atol=1.0)


def test_range_crop_rgb(tmp_path):
    path = write_test_video(tmp_path / "v.avi", 30, SIZE)
    frames, idx, _ = read_all(path, start=5, stop=12, crop=(10, 20, 60, 50), color="rgb")
    np.testing.assert_array_equal(idx, np.arange(5, 12))
    assert frames.shape == (7, 30, 50, 3)
    full, _, _ = read_all(path, stop=12)
    np.testing.assert_array_equal(frames[..., 0], full[5:12, 20:50, 10:60])
    with pytest.raises(DataError, match="does not fit"):
        read_all(path, crop=(0, 0, 200, 10))
    assert parse_crop("1,2,3,4") == (1, 2, 3, 4)
    with pytest.raises(ValueError):
        parse_crop("1,2,3")


def test_variable_frame_rate_times(tmp_path):
    pts = np.cumsum([0, 33, 33, 50, 20, 100, 33, 33, 40, 33])  # ms, irregular
    path = write_frames(tmp_path / "vfr.mkv", spot_frames(10, SIZE), fps=30, pts=pts)
    _, idx, times = read_all(path)
    np.testing.assert_array_equal(idx, np.arange(10))
    np.testing.assert_allclose(times, pts / 1000, atol=1e-3)


@pytest.mark.parametrize("suffix", [".avi", ".mkv"])
def test_truncated_video_names_file_and_frame(tmp_path, suffix):
    path = write_test_video(tmp_path / f"v{suffix}", 40, SIZE)
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    got = []
    with pytest.raises(VideoDecodeError) as err:
        for batch in iter_batches(cut, 8):
            got.append(batch.indices)
    n = len(np.concatenate(got))
    assert 5 < n < 40
    assert err.value.frame == n
    assert "cut" + suffix in str(err.value) and f"frame {n}" in str(err.value)


def test_mp4_cut_by_stream_copy_is_complete(tmp_path):
    """A cut by stream copy (ffmpeg -ss ... -c copy) leaves an edit list: the header counts
    the frames before the cut, which are not presented, so it announces more frames than a
    complete file has. Its duration covers the frames shown."""
    import av

    src = write_test_video(tmp_path / "src.mp4", 60, SIZE, fps=25)
    cut = tmp_path / "cut.mp4"
    with av.open(str(src)) as ic, av.open(str(cut), "w") as oc:
        stream = ic.streams.video[0]
        out = oc.add_stream_from_template(stream)
        step = int(1 / (25 * stream.time_base))
        for packet in ic.demux(stream):
            if packet.dts is None:
                continue
            packet.pts -= 5 * step  # the first 5 frames fall before t = 0
            packet.dts -= 5 * step
            packet.stream = out
            oc.mux(packet)
    assert probe(cut).n_frames == 60
    frames, idx, times = read_all(cut)
    np.testing.assert_array_equal(idx, np.arange(55))
    np.testing.assert_allclose(times, np.arange(55) / 25, atol=1e-3)
    np.testing.assert_array_equal(frames, read_all(src)[0][5:])


def test_audio_longer_than_the_video_is_not_truncation(tmp_path):
    """A Matroska file's duration spans all its streams; its video stream has none of its
    own. With 3 s of audio beside 1.6 s of video, the video is still complete."""
    from fractions import Fraction

    import av

    path = tmp_path / "with_audio.mkv"
    with av.open(str(path), "w") as container:
        video = container.add_stream("ffv1", rate=25)
        video.width, video.height, video.pix_fmt = *SIZE, "gray"
        audio = container.add_stream("aac", rate=48000)
        for frame in spot_frames(40, SIZE):
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="gray")))
        container.mux(video.encode())
        for i in range(3 * 48000 // 1024):
            sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            sound.sample_rate, sound.pts, sound.time_base = 48000, i * 1024, Fraction(1, 48000)
            container.mux(audio.encode(sound))
        container.mux(audio.encode())
    _, idx, _ = read_all(path)
    np.testing.assert_array_equal(idx, np.arange(40))


def _mkv_video(path, n_frames, audio_s, first_pts=0):
    """FFV1 video at 25 fps beside ``audio_s`` seconds of PCM audio (none for 0), in Matroska."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("ffv1", rate=25)
        video.width, video.height, video.pix_fmt = *SIZE, "gray"
        audio = container.add_stream("pcm_s16le", rate=8000, layout="mono") if audio_s else None
        for i, frame in enumerate(spot_frames(n_frames, SIZE)):
            picture = av.VideoFrame.from_ndarray(frame, format="gray")
            picture.pts, picture.time_base = first_pts + i, Fraction(1, 25)
            container.mux(video.encode(picture))
        container.mux(video.encode())
        for i in range(int(audio_s * 10)):
            sound = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                               layout="mono")
            sound.sample_rate, sound.pts, sound.time_base = 8000, i * 800, Fraction(1, 8000)
            container.mux(audio.encode(sound))
        if audio is not None:
            container.mux(audio.encode())
    return path


def test_truncated_mkv_video_is_caught(tmp_path):
    """Beside an audio track, the Matroska video stream has neither a frame count nor a
    duration; its DURATION tag still tells where the video ends."""
    path = _mkv_video(tmp_path / "v.mkv", 100, audio_s=5)
    _, idx, _ = read_all(path)
    np.testing.assert_array_equal(idx, np.arange(100))
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(VideoDecodeError, match="truncated"):
        read_all(cut)


def test_mkv_starting_late_is_complete(tmp_path):
    """FFmpeg's Matroska muxer writes the video's end time in the DURATION tag, not its
    length: a video starting at 1 s and ending at 3 s lasts 2 s."""
    path = _mkv_video(tmp_path / "late.mkv", 50, audio_s=0, first_pts=25)
    info = probe(path)
    assert (info.start_s, info.duration_s) == pytest.approx((1.0, 2.0))
    _, idx, times = read_all(path)
    np.testing.assert_array_equal(idx, np.arange(50))
    np.testing.assert_allclose(times, np.arange(50) / 25, atol=1e-3)


def test_times_count_from_frame_0_when_it_has_no_stamp():
    """When frame 0 has no time stamp, frame 3 stamped 1.12 s (at 25 fps) is at 0.12 s,
    not 0 s, where the frame / fps fill for the unstamped frames puts frame 0."""
    from vit_facemap.video import _time_origin

    assert _time_origin(1.12, 3, 25.0) == pytest.approx(1.0)
    assert _time_origin(1.12, 0, 25.0) == 1.12
    assert _time_origin(1.12, 3, None) == 1.12  # no rate to step back by


def test_damaged_frames_are_named(tmp_path):
    """Zeroed bytes mid-file: H.264 conceals the damage and decodes on; the frames are named."""
    from vit_facemap.errors import DataWarning

    rng = np.random.default_rng(0)
    path = write_frames(tmp_path / "v.mp4", rng.integers(0, 255, (60, 64, 96), dtype=np.uint8))
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 500] = bytes(500)
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    with pytest.warns(DataWarning, match=r"damaged.mp4: \d+ frame\(s\) decoded from damaged data.*frames \d+"):
        frames, indices, _ = read_all(bad)
    assert len(frames) == 60  # still every frame: the user decides what to do with them


def test_not_a_video(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    with pytest.raises(DataError, match="notes.mp4"):
        probe(bad)
    with pytest.raises(DataError, match="no such"):
        probe(tmp_path / "missing.avi")


def test_background_reader_same_frames_and_errors(tmp_path):
    path = write_test_video(tmp_path / "v.avi", 30, SIZE)
    with BackgroundBatches(path, 8, prefetch=2) as reader:
        frames = np.concatenate([b.frames for b in reader])
    np.testing.assert_array_equal(frames, read_all(path)[0])
    cut = tmp_path / "cut.avi"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    n = 0
    with pytest.raises(VideoDecodeError), BackgroundBatches(cut, 8) as reader:
        for b in reader:
            n += len(b)
    assert n > 0
    # Stopping early ends the thread instead of leaving it blocked on a full queue.
    reader = BackgroundBatches(path, 1, prefetch=1)
    next(iter(reader))
    reader.close()
    assert not reader._thread.is_alive()


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])  # limited-range and full-range luma
def test_fast_gray_equals_ffmpeg_gray(tmp_path, suffix):
    import av

    path = write_test_video(tmp_path / f"v{suffix}", 6, SIZE)
    with av.open(str(path)) as c:
        expected = np.stack([f.to_ndarray(format="gray") for f in c.decode(video=0)])
    np.testing.assert_array_equal(read_all(path)[0], expected)
    np.testing.assert_array_equal(read_all(path, threads=2)[0], expected)  # FFmpeg threads
    np.testing.assert_array_equal(read_all(path, crop=(3, 5, 50, 40))[0], expected[:, 5:40, 3:50])


def test_a_matroska_duration_tag_is_read_when_it_is_a_time():
    # Matroska keeps the video stream's length only in this tag; "inf" parsed as a float
    # and announced a video that never ends (every complete file then "truncated")
    from vit_facemap.video import _tagged_end

    assert _tagged_end({"DURATION": "00:00:04.000000000"}) == 4.0
    assert _tagged_end({"duration": "01:02:03.5"}) == 3723.5
    for bad in ("00:00:inf", "00:00:1e309", "00:00:nan", "4.0", "", "00:00:00.000"):
        assert _tagged_end({"DURATION": bad}) is None, bad
    assert _tagged_end(None) is None


def test_frames_after_a_decode_error_keep_their_numbers(tmp_path):
    """After a decode error the decoder still holds frames that come after the ones it lost;
    handed out, they took the lost frames' numbers (frame 47's keypoints written as frame
    1's). Every frame handed out from a damaged file is the one its number says."""
    import warnings

    from vit_facemap.errors import DataWarning

    good = write_frames(tmp_path / "good.mp4", spot_frames(120, SIZE), fps=25)
    stamps = np.concatenate([b.pts for b in iter_batches(good, 32)])
    data = good.read_bytes()
    failed = 0
    for percent in range(30, 95, 2):  # zeroed bytes in the frames' data, after the header
        bad = tmp_path / f"damaged{percent}.mp4"
        at = len(data) * percent // 100
        bad.write_bytes(data[:at] + bytes(200) + data[at + 200:])
        got = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)  # concealed frames: named elsewhere
            try:
                got.extend(iter_batches(bad, 16))
            except VideoDecodeError:
                failed += 1
        for batch in got:
            np.testing.assert_array_equal(batch.pts, stamps[batch.indices], err_msg=bad.name)
    assert failed  # the damage broke decoding somewhere
