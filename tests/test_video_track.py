"""Tracking whole videos: DeepLabCut-layout outputs, ranges, crops, resume, broken files.

The predictor here is a deterministic test double with the interface of
``vit_facemap.predict.KeypointPredictor``: it finds the bright spot that
``vit_facemap.testvideo`` draws, so every written coordinate has a known true value.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vit_facemap.errors import DataError, RunExistsError
from vit_facemap.testvideo import spot_positions, write_test_video
from vit_facemap.track import TrackOptions, output_paths, track_video
from vit_facemap.video import VideoDecodeError

SIZE = (96, 72)
N = 40
PUPIL = ["leftpupil", "rightpupil", "dorsalpupil", "ventralpupil"]
OFFSETS = np.array([[-3, 0], [3, 0], [0, -3], [0, 3]], dtype=float)


class SpotPredictor:
    """Four 'pupil' points 3 px around the brightest spot; confidence = spot brightness / 255."""

    bodyparts = PUPIL
    channels = 1

    def __init__(self, frame_size=None, fail_after=None):
        self.frame_size = frame_size
        self.fail_after = fail_after
        self.calls = 0

    def predict(self, frames):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-video
        xy = np.empty((len(frames), 4, 2))
        conf = np.empty((len(frames), 4))
        for i, f in enumerate(frames):
            ys, xs = np.nonzero(f > 200)
            xy[i] = np.array([xs.mean(), ys.mean()]) + OFFSETS
            conf[i] = f.max() / 255
        return xy, conf


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_test_video(tmp_path_factory.mktemp("vid") / "face.avi", N, SIZE, fps=25)


def truth(frames=slice(None)):
    return spot_positions(N, SIZE)[frames][:, None, :] + OFFSETS


def opts(**kw):
    kw.setdefault("batch_size", 8)
    kw.setdefault("progress", False)
    return TrackOptions(**kw)


def load_xy(path):
    df = pd.read_csv(path, header=[0, 1, 2], index_col=0)
    return df, df.to_numpy().reshape(len(df), -1, 3)


def test_deeplabcut_layout_csv_and_h5(tmp_path, video):
    summary = track_video(SpotPredictor(), video, tmp_path, opts())
    paths = output_paths(video, tmp_path)
    assert summary["complete"] and summary["frames_tracked"] == N and summary["fps"] > 0
    df, vals = load_xy(paths["csv"])
    h5 = pd.read_hdf(paths["h5"], "df_with_missing")
    assert list(df.columns.names) == ["scorer", "bodyparts", "coords"]
    assert list(h5.columns.names) == ["scorer", "bodyparts", "coords"]
    assert df.columns.get_level_values(0).unique().tolist() == ["vit-facemap"]
    assert df.columns.get_level_values(1).unique().tolist() == PUPIL
    assert df.columns.get_level_values(2)[:3].tolist() == ["x", "y", "likelihood"]
    assert df.index.tolist() == list(range(N)) and h5.index.tolist() == list(range(N))
    np.testing.assert_allclose(h5.to_numpy(), df.to_numpy())
    np.testing.assert_allclose(vals[..., :2], truth(), atol=1.0)
    assert np.all((vals[..., 2] > 0.9) & (vals[..., 2] <= 1))
    times = pd.read_csv(paths["frames"], index_col=0)
    np.testing.assert_allclose(times["time_s"], np.arange(N) / 25, atol=1e-3)
    measures = pd.read_csv(paths["measures"], index_col=0)
    np.testing.assert_allclose(measures["pupil_diameter"], 6.0, atol=1e-6)
    record = json.loads(paths["summary"].read_text())
    assert record["complete"] and "versions" in record and record["frames_tracked"] == N
    assert not paths["partial"].exists() and not paths["state"].exists()


def test_existing_output_refused_unless_overwrite(tmp_path, video):
    track_video(SpotPredictor(), video, tmp_path, opts(formats=("csv",), measures=False))
    csv = output_paths(video, tmp_path)["csv"]
    before = csv.read_bytes()
    with pytest.raises(RunExistsError, match="overwrite"):
        track_video(SpotPredictor(), video, tmp_path, opts(formats=("csv",), stop=5))
    assert csv.read_bytes() == before
    track_video(SpotPredictor(), video, tmp_path, opts(formats=("csv",), stop=5, overwrite=True))
    assert len(load_xy(csv)[0]) == 5


def test_start_past_end_leaves_nothing(tmp_path, video):
    with pytest.raises(DataError, match="past the end"):
        track_video(SpotPredictor(), video, tmp_path, opts(start=N + 5))
    assert not list(tmp_path.iterdir())


def test_frame_range(tmp_path, video):
    s = track_video(SpotPredictor(), video, tmp_path, opts(start=7, stop=19, formats=("csv",)))
    df, vals = load_xy(output_paths(video, tmp_path)["csv"])
    assert df.index.tolist() == list(range(7, 19)) and s["frames_tracked"] == 12
    assert (s["first_frame"], s["last_frame"], s["video_frames"]) == (7, 18, N)
    np.testing.assert_allclose(vals[..., :2], truth(slice(7, 19)), atol=1.0)


def test_crop_maps_back_to_full_frame(tmp_path, video):
    track_video(SpotPredictor(), video, tmp_path, opts(crop=(10, 8, 90, 66), formats=("csv",)))
    _, vals = load_xy(output_paths(video, tmp_path)["csv"])
    np.testing.assert_allclose(vals[..., :2], truth(), atol=1.0)


def test_wrong_frame_size_refused_unless_crop_or_resize(tmp_path, video):
    with pytest.raises(DataError, match="96x72 pixels but the model was trained on 80x60 "
                                        "frames; pass --crop x0,y0,x1,y1 to cut"):
        track_video(SpotPredictor(frame_size=(80, 60)), video, tmp_path, opts())
    # a crop given, or a model larger than the frame: only --resize helps (it said --crop)
    with pytest.raises(DataError, match="pass --resize to scale the crop to it"):
        track_video(SpotPredictor(frame_size=(80, 60)), video, tmp_path, opts(crop=(0, 0, 50, 40)))
    with pytest.raises(DataError, match="trained on 128x96 frames; pass --resize to scale the "
                                        "frames to it"):
        track_video(SpotPredictor(frame_size=(128, 96)), video, tmp_path, opts())
    assert not list(tmp_path.iterdir())  # nothing written
    # A crop of the trained size fits.
    track_video(SpotPredictor(frame_size=(80, 60)), video, tmp_path / "crop",
                opts(crop=(8, 6, 88, 66), formats=("csv",)))
    _, vals = load_xy(output_paths(video, tmp_path / "crop")["csv"])
    np.testing.assert_allclose(vals[..., :2], truth(), atol=1.0)
    # Resizing scales coordinates back (the spot blurs when scaled, hence the tolerance).
    track_video(SpotPredictor(frame_size=(48, 36)), video, tmp_path / "resize",
                opts(resize=True, formats=("csv",)))
    _, vals = load_xy(output_paths(video, tmp_path / "resize")["csv"])
    spot = vals[:, :2, :2].mean(axis=1)  # left/right points average to the spot centre
    np.testing.assert_allclose(spot, truth()[:, :2].mean(axis=1), atol=2.0)


def test_truncated_video_keeps_frames_before_break(tmp_path, video):
    cut = tmp_path / "broken.avi"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    with pytest.raises(VideoDecodeError) as err:
        track_video(SpotPredictor(), cut, tmp_path / "out", opts())
    n = err.value.frame
    assert 5 < n < N and "broken.avi" in str(err.value) and f"frame {n}" in str(err.value)
    paths = output_paths(cut, tmp_path / "out")
    df, vals = load_xy(paths["csv"])
    assert df.index.tolist() == list(range(n))
    np.testing.assert_allclose(vals[..., :2], truth(slice(0, n)), atol=1.0)
    record = json.loads(paths["summary"].read_text())
    assert record["complete"] is False and record["frames_tracked"] == n
    assert f"frame {n}" in record["error"]


def test_resume_continues_after_interrupt(tmp_path, video):
    with pytest.raises(KeyboardInterrupt):
        track_video(SpotPredictor(fail_after=2), video, tmp_path, opts())
    paths = output_paths(video, tmp_path)
    assert paths["state"].exists() and not paths["csv"].exists()
    with pytest.raises(RunExistsError, match="--resume"):
        track_video(SpotPredictor(), video, tmp_path, opts())
    resumed = SpotPredictor()
    s = track_video(resumed, video, tmp_path, opts(resume=True))
    assert s["resumed_from"] == 16 and s["frames_this_run"] == N - 16 and resumed.calls == 3
    df, vals = load_xy(paths["csv"])
    assert df.index.tolist() == list(range(N))
    np.testing.assert_allclose(vals[..., :2], truth(), atol=1.0)
    assert not paths["state"].exists()
    # Resuming a finished video skips it; other settings than the half-done run's are refused.
    assert track_video(SpotPredictor(), video, tmp_path, opts(resume=True))["skipped"]
    with pytest.raises(KeyboardInterrupt):
        track_video(SpotPredictor(fail_after=1), video, tmp_path / "b", opts())
    with pytest.raises(DataError, match="other settings"):
        track_video(SpotPredictor(), video, tmp_path / "b", opts(resume=True, stop=20))
    # frames predicted at other crop-box sizes are not mixed into one video
    other = SpotPredictor()
    other.scales = (0.9, 1.0, 1.1)
    with pytest.raises(DataError, match="scales"):
        track_video(other, video, tmp_path / "b", opts(resume=True))
    # nor frames predicted with other test-time shifts of the crop stages
    other = SpotPredictor()
    other.crop_shift = 0.05
    with pytest.raises(DataError, match="crop_shift"):
        track_video(other, video, tmp_path / "b", opts(resume=True))
    # nor frames predicted with mirrored views averaged in
    flipped = SpotPredictor()
    flipped.flip = True
    # the values each run used, so that a video begun before flips were the default
    # resumes with the settings it began with
    with pytest.raises(DataError, match=r"other settings \(flip: False then, True now\); "
                                        r"pass the settings it used \(--flip / --no-flip\) "
                                        r"to resume it, or --overwrite to start again"):
        track_video(flipped, video, tmp_path / "b", opts(resume=True))
    # a state written before box sizes (and crop shifts, flips) were recorded was predicted
    # from the box alone, with one crop, unmirrored
    state = output_paths(video, tmp_path / "b")["state"]
    saved = json.loads(state.read_text())
    assert saved["key"]["flip"] is False
    del saved["key"]["scales"], saved["key"]["crop_shift"], saved["key"]["flip"]
    state.write_text(json.dumps(saved))
    assert track_video(SpotPredictor(), video, tmp_path / "b", opts(resume=True))["resumed_from"] == 8
    record = json.loads(output_paths(video, tmp_path / "b")["summary"].read_text())
    assert record["predictor"]["scales"] == [1.0] and record["predictor"]["crop_shift"] == 0.0
    assert record["predictor"]["flip"] is False
    # a finished video is not skipped as tracked "with these settings" by another shift,
    # also where its summary was written before the shift was recorded
    summary = output_paths(video, tmp_path / "b")["summary"]
    del record["resume_key"]["crop_shift"], record["resume_key"]["flip"]
    summary.write_text(json.dumps(record))
    with pytest.raises(RunExistsError, match="crop_shift"):
        track_video(other, video, tmp_path / "b", opts(resume=True))
    with pytest.raises(RunExistsError, match=r"\(flip: False then, True now\); pass the "
                                             r"settings it used \(--flip / --no-flip\) to "
                                             r"skip it, or --overwrite to track again"):
        track_video(flipped, video, tmp_path / "b", opts(resume=True))
    assert track_video(SpotPredictor(), video, tmp_path / "b", opts(resume=True))["skipped"]



def test_resume_does_not_join_or_skip_the_results_of_another_model(tmp_path, video):
    """A run trained again has the keypoints and settings of the one before: a --resume with
    it skipped the videos the old model tracked ("already tracked with these settings"), and
    continued a half-done video with the new model's keypoints after the old one's."""
    import torch

    def predictor(seed, **kw):
        spot = SpotPredictor(**kw)
        torch.manual_seed(seed)
        spot.model = torch.nn.Linear(3, 2)  # the weights: all that tells the two apart
        return spot

    track_video(predictor(0), video, tmp_path / "done", opts(stop=10))
    # a model cannot be passed as a setting: no advice to pass it
    with pytest.raises(RunExistsError, match=r"used other settings \(model\); pass "
                                             r"--overwrite to track again"):
        track_video(predictor(1), video, tmp_path / "done", opts(resume=True, stop=10))
    assert track_video(predictor(0), video, tmp_path / "done", opts(resume=True, stop=10))[
        "skipped"]
    with pytest.raises(KeyboardInterrupt):
        track_video(predictor(0, fail_after=1), video, tmp_path / "half", opts())
    with pytest.raises(DataError, match=r"other settings \(model\); pass --overwrite to "
                                        r"start again"):
        track_video(predictor(1), video, tmp_path / "half", opts(resume=True))
    assert track_video(predictor(0), video, tmp_path / "half", opts(resume=True))["complete"]


def test_resume_does_not_replace_results_it_cannot_resume_or_skip(tmp_path, video):
    """Results without a summary of a finished run (lost, or unreadable) and no half-done run:
    --resume tracked the video again over them, with other settings too, and no backup."""
    paths = output_paths(video, tmp_path)
    track_video(SpotPredictor(), video, tmp_path, opts(stop=10))
    before = paths["csv"].read_bytes()
    for summary in (None, "{not json"):
        if summary is None:
            paths["summary"].unlink()
        else:
            paths["summary"].write_text(summary)
        with pytest.raises(RunExistsError, match=r"no half-done run to resume.*--overwrite"):
            track_video(SpotPredictor(), video, tmp_path, opts(resume=True, stop=20))
        assert paths["csv"].read_bytes() == before
    s = track_video(SpotPredictor(), video, tmp_path, opts(resume=True, stop=20,
                                                           overwrite=True))
    assert s["complete"] and s["frames_tracked"] == 20


def test_resume_from_an_unreadable_state_names_it(tmp_path, video):
    # an emptied state file (a machine crash) stopped the batch with a JSONDecodeError
    with pytest.raises(KeyboardInterrupt):
        track_video(SpotPredictor(fail_after=1), video, tmp_path, opts())
    state = output_paths(video, tmp_path)["state"]
    for text in ("", "[]"):
        state.write_text(text)
        with pytest.raises(DataError, match=rf"face.avi: cannot resume: .*{state.name}.*"
                                            "--overwrite"):
            track_video(SpotPredictor(), video, tmp_path, opts(resume=True))
    assert track_video(SpotPredictor(), video, tmp_path, opts(overwrite=True))["complete"]

def overlay_frames(path):
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def video_frames(path):
    from vit_facemap.video import iter_batches

    return np.concatenate([b.frames for b in iter_batches(path, N)])


def assert_keypoints_drawn(overlay, frames, xy):
    """Each keypoint of ``xy`` (N, K, 2; overlay pixels) is drawn in its own colour on the
    gray ``frames`` (N, H, W): near the point, a pixel is nearer that colour than the other
    keypoints' colours and the frame's own pixel there. H.264 smears the colours of small
    markers on these tiny frames, so the best of the 3x3 pixels around the point counts."""
    from matplotlib import colormaps

    colors = np.array(colormaps["tab20"].colors)[: xy.shape[1]] * 255
    assert len(overlay) == len(frames) == len(xy)
    for i, (shown, frame, points) in enumerate(zip(overlay, frames, xy, strict=True)):
        for k, (x, y) in enumerate(np.round(points).astype(int)):
            margins = []
            for yy in range(y - 1, y + 2):
                for xx in range(x - 1, x + 2):
                    choices = np.vstack([colors, np.full(3, frame[yy, xx], float)])
                    dist = np.linalg.norm(choices - shown[yy, xx], axis=1)
                    margins.append(np.delete(dist, k).min() - dist[k])
            assert max(margins) > 0, f"frame {i}: keypoint {k} not drawn at {x}, {y}"


def test_resume_skips_a_finished_video_only_with_the_same_settings(tmp_path, video):
    """A finished run limited by --stop, or cropped otherwise, is not what a --resume with
    other settings asks for: refused, not skipped as if tracked."""
    track_video(SpotPredictor(), video, tmp_path, opts(stop=10))
    paths = output_paths(video, tmp_path)
    before = paths["csv"].read_bytes()

    def refused_and_skipped():
        for other in (dict(), dict(stop=10, crop=(0, 0, 50, 50)), dict(start=2, stop=10)):
            with pytest.raises(RunExistsError, match=r"other settings \(.*--overwrite"):
                track_video(SpotPredictor(), video, tmp_path, opts(resume=True, **other))
        assert paths["csv"].read_bytes() == before
        s = track_video(SpotPredictor(), video, tmp_path, opts(resume=True, stop=10))
        assert s["skipped"] == "frames 0 to 9 already tracked with these settings"

    refused_and_skipped()
    # a summary written before the settings were recorded in it: compared by what it holds
    record = json.loads(paths["summary"].read_text())
    del record["resume_key"]
    paths["summary"].write_text(json.dumps(record))
    refused_and_skipped()


def test_resume_skips_a_finished_video_in_a_moved_folder(tmp_path, video, monkeypatch):
    """The finished run's summary records the video's absolute path and the state format's
    version; neither says how it was tracked, so neither refuses a --resume."""
    import shutil

    from vit_facemap import track

    (tmp_path / "project").mkdir()
    shutil.copy(video, tmp_path / "project" / "face.avi")
    track_video(SpotPredictor(), tmp_path / "project" / "face.avi", tmp_path / "project" / "out",
                opts(stop=10))
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "project", moved)
    monkeypatch.setattr(track, "STATE_VERSION", track.STATE_VERSION + 1)
    s = track_video(SpotPredictor(), moved / "face.avi", moved / "out",
                    opts(resume=True, stop=10))
    assert s["skipped"] == "frames 0 to 9 already tracked with these settings"


def test_resume_does_not_take_another_video_of_the_same_name_for_a_finished_one(tmp_path,
                                                                              video):
    # outputs are named by the video's stem: day2/face.avi resumed into the folder holding
    # day1/face.avi's finished run was skipped as "already tracked"
    import shutil

    for day in ("day1", "day2"):
        (tmp_path / day).mkdir()
        shutil.copy(video, tmp_path / day / "face.avi")
    with open(tmp_path / "day2" / "face.avi", "ab") as fh:
        fh.write(b"\0" * 16)  # another recording: other bytes
    track_video(SpotPredictor(), tmp_path / "day1" / "face.avi", tmp_path / "out", opts(stop=10))
    with pytest.raises(RunExistsError, match=r"used other settings \(source\)"):
        track_video(SpotPredictor(), tmp_path / "day2" / "face.avi", tmp_path / "out",
                    opts(resume=True, stop=10))


def test_overlay_video(tmp_path, video):
    from vit_facemap.video import probe

    track_video(SpotPredictor(), video, tmp_path, opts(overlay=True, stop=10, formats=("csv",)))
    paths = output_paths(video, tmp_path)
    info = probe(paths["overlay"])
    assert info.n_frames == 10 and (info.width, info.height) == SIZE
    _, vals = load_xy(paths["csv"])
    assert_keypoints_drawn(overlay_frames(paths["overlay"]), video_frames(video)[:10],
                           vals[..., :2])


def test_resumed_overlay_covers_every_tracked_frame(tmp_path, video, monkeypatch):
    """An overlay cannot be appended to: a resumed run draws the frames tracked before the
    interruption from their stored keypoints, mapped back through the crop and the resize,
    so its overlay is the one a run without interruption draws."""
    import av

    # what is drawn, compared as the pictures handed to the encoder: x264's threads do not
    # always encode the same pictures to the same bytes (1 run in 4 here, on a loaded machine)
    drawn: list[np.ndarray] = []
    from_ndarray = av.VideoFrame.from_ndarray
    monkeypatch.setattr(av.VideoFrame, "from_ndarray", staticmethod(
        lambda array, format: drawn.append(array.copy()) or from_ndarray(array, format=format)))
    size = (40, 29)
    settings = dict(overlay=True, crop=(8, 6, 88, 64), resize=True, formats=("csv",))
    track_video(SpotPredictor(frame_size=size), video, tmp_path / "whole", opts(**settings))
    whole, drawn[:] = list(drawn), []
    with pytest.raises(KeyboardInterrupt):
        track_video(SpotPredictor(frame_size=size, fail_after=2), video, tmp_path / "resumed",
                    opts(**settings))
    drawn.clear()
    # batches of 6 from frame 0: one holds frames drawn from their stored keypoints and
    # frames predicted anew
    s = track_video(SpotPredictor(frame_size=size), video, tmp_path / "resumed",
                    opts(resume=True, batch_size=6, **settings))
    assert s["complete"] and s["resumed_from"] == 16 and s["frames_this_run"] == N - 16
    paths = output_paths(video, tmp_path / "resumed")
    assert len(overlay_frames(paths["overlay"])) == len(load_xy(paths["csv"])[0]) == N
    assert len(drawn) == len(whole) == N
    np.testing.assert_array_equal(np.stack(drawn), np.stack(whole))


def test_resumed_without_overlay_does_not_list_the_interrupted_overlay(tmp_path, video):
    # the interrupted run's overlay stops where it stopped: it was listed among the outputs
    # of a resumed run that drew none
    settings = dict(overlay=True, formats=("csv",))
    with pytest.raises(KeyboardInterrupt):
        track_video(SpotPredictor(fail_after=2), video, tmp_path, opts(**settings))
    with pytest.warns(UserWarning, match=r"interrupted run's overlay, up to frame 15 only; "
                                         r"resume with --overlay"):
        s = track_video(SpotPredictor(), video, tmp_path, opts(resume=True, formats=("csv",)))
    assert s["complete"] and "overlay" not in s["outputs"]
    assert output_paths(video, tmp_path)["overlay"].exists()  # kept: drawn frames are results


def test_resumed_overlay_leaves_the_redraw_out_of_the_frames_per_second(tmp_path, video,
                                                                         monkeypatch):
    """Redrawing the frames tracked before the interruption is no tracking: with a clock that
    only drawing moves (1000 s a batch), the frames/s is that of the new frames alone."""
    from vit_facemap import track

    with pytest.raises(KeyboardInterrupt):
        track_video(SpotPredictor(fail_after=2), video, tmp_path, opts(overlay=True))
    clock = [0.0]
    draw = track._Overlay.add

    def slow_draw(self, frames, xy):
        clock[0] += 1000.0
        draw(self, frames, xy)

    monkeypatch.setattr(track._Overlay, "add", slow_draw)
    monkeypatch.setattr(track.time, "perf_counter", lambda: clock[0])
    s = track_video(SpotPredictor(), video, tmp_path, opts(resume=True, overlay=True,
                                                           batch_size=6))
    # batches of 6: frames 0-5 and 6-11 redrawn, 12-17 redrawn and new, then 4 of new frames
    assert s["resumed_from"] == 16 and s["frames_this_run"] == N - 16
    assert (s["wall_s"], s["redraw_s"]) == (8000.0, 3000.0)
    assert s["fps"] == (N - 16) / 5000.0


def test_command_line(tmp_path, video, monkeypatch, capsys):
    import sys
    import types

    from vit_facemap.cli import main

    fake = types.ModuleType("vit_facemap.predict")
    asked, shifts, flips = [], [], []

    def load_predictor(run_dir, device="auto", scales=None, crop_shift=0.0, flip=None):
        asked.append(scales)
        shifts.append(crop_shift)
        flips.append(flip)
        return SpotPredictor()

    fake.load_predictor = load_predictor
    monkeypatch.setitem(sys.modules, "vit_facemap.predict", fake)
    cut = tmp_path / "broken.avi"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    out = tmp_path / "out"
    args = ["track", "run", str(cut), str(video), "--out", str(out), "--no-progress",
            "--crop", "0,0,96,72", "--stop", "30"]
    assert main(args) == 2  # the broken video fails; the good one is still tracked
    err = capsys.readouterr().err
    assert "broken.avi" in err and "decoding stopped at frame" in err
    assert len(load_xy(output_paths(video, out)["csv"])[0]) == 30
    assert main(args[:2] + args[3:]) == 2  # existing outputs of the good video
    assert "already exists" in capsys.readouterr().err
    assert main(["track", "run", str(video), "--out", str(out), "--crop", "1,2"]) == 2
    assert "four integers" in capsys.readouterr().err
    assert asked[0] is None  # the predictor's default box sizes
    assert main(["track", "run", str(video), "--out", str(tmp_path / "o2"), "--stop", "4",
                 "--crop", "0,0,96,72", "--no-progress", "--scales", "1,1.2"]) == 0
    assert asked[-1] == (1.0, 1.2) and shifts[-1] == 0.0
    assert main(["track", "run", str(video), "--out", str(tmp_path / "o2s"), "--stop", "4",
                 "--crop", "0,0,96,72", "--no-progress", "--crop-shift", "0.05"]) == 0
    assert shifts[-1] == 0.05 and flips[-1] is None  # the predictor's: where the run can
    assert main(["track", "run", str(video), "--out", str(tmp_path / "o2f"), "--stop", "4",
                 "--crop", "0,0,96,72", "--no-progress", "--flip"]) == 0
    assert flips[-1] is True
    assert main(["track", "run", str(video), "--out", str(tmp_path / "o2n"), "--stop", "4",
                 "--crop", "0,0,96,72", "--no-progress", "--no-flip"]) == 0
    assert flips[-1] is False
    with pytest.raises(SystemExit):
        main(["track", "run", str(video), "--out", str(out), "--crop-shift", "-0.1"])
    for bad in ("1,,1.1", "0", "-1", "inf", "nan", "a"):
        with pytest.raises(SystemExit):  # argparse's usage error
            main(["track", "run", str(video), "--out", str(out), "--scales", bad])

    # a video that is not one (text named .avi) is reported; the next video is still tracked
    fake_video = tmp_path / "notes.avi"
    fake_video.write_text("not a video")
    assert main(["track", "run", str(fake_video), str(video), "--out", str(tmp_path / "o3"),
                 "--crop", "0,0,96,72", "--no-progress", "--stop", "3"]) == 2
    assert "notes.avi" in capsys.readouterr().err
    assert output_paths(video, tmp_path / "o3")["csv"].is_file()
    # two videos of one name would write the same files: refused before anything is written
    (tmp_path / "b").mkdir()
    twin = tmp_path / "b" / video.name
    twin.write_bytes(video.read_bytes())
    assert main(["track", "run", str(video), str(twin), "--out", str(tmp_path / "o4")]) == 2
    assert "same results" in capsys.readouterr().err and not (tmp_path / "o4").exists()
    assert main(["track", "run", str(video), "--out", str(fake_video)]) == 2
    assert "--out is a file" in capsys.readouterr().err and fake_video.read_text() == "not a video"
    for bad, what in ((["--start", "10", "--stop", "5"], "start < stop"),
                      (["--start", "5", "--stop", "5"], "start < stop"),  # no frame: refused
                      (["--batch-size", "0"], "batch_size must be at least 1"),
                      # part of every file name: it wrote face_../x.csv outside --out
                      (["--scorer", "../x"], "scorer must be a plain name")):
        assert main(["track", "run", str(video), "--out", str(tmp_path / "o5"), *bad]) == 2
        assert what in capsys.readouterr().err
    assert not list(tmp_path.glob("x*")) and not (tmp_path / "o5").exists()
    # found when writing, after the model was loaded, as "[Errno 20] Not a directory"
    assert main(["track", "run", str(video), "--out", str(fake_video / "o6")]) == 2
    assert f"{fake_video} is a file, not a folder" in capsys.readouterr().err


def test_nwb_output(tmp_path, video):
    pytest.importorskip("ndx_pose")
    from pynwb import NWBHDF5IO

    track_video(SpotPredictor(), video, tmp_path, opts(nwb=True, stop=10, formats=("csv",)))
    _, vals = load_xy(output_paths(video, tmp_path)["csv"])
    with NWBHDF5IO(str(output_paths(video, tmp_path)["nwb"]), "r") as io:
        pose = io.read().processing["behavior"]["PoseEstimation"]
        series = pose.pose_estimation_series["leftpupil"]
        np.testing.assert_allclose(series.data[:], vals[:, 0, :2])
        np.testing.assert_allclose(series.confidence[:], vals[:, 0, 2])
        np.testing.assert_allclose(series.timestamps[:], np.arange(10) / 25, atol=1e-3)
        assert list(pose.skeleton.nodes[:]) == PUPIL



def test_nwb_refers_to_the_video_from_its_own_folder(tmp_path, video, monkeypatch):
    """NWB's external_file is read relative to the NWB file: the video's path as typed (from
    the folder the command ran in) named a file that is not there."""
    pytest.importorskip("ndx_pose")
    from pynwb import NWBHDF5IO

    monkeypatch.chdir(video.parent)
    out = tmp_path / "results"
    track_video(SpotPredictor(), video.name, out, opts(nwb=True, stop=3, formats=("csv",)))
    nwb = output_paths(video, out)["nwb"]
    with NWBHDF5IO(str(nwb), "r") as io:
        name = io.read().acquisition["source_video"].external_file[0]
    assert not Path(name).is_absolute() and (nwb.parent / name).resolve() == video.resolve()

def test_nwb_from_a_later_frame_and_a_raw_stream(tmp_path, video):
    """Tracking from frame 10: the source video is still described from its first frame. A
    raw H.264 stream has no time stamps: NWB gets frame / fps instead of failing at the end."""
    pytest.importorskip("ndx_pose")
    from pynwb import NWBHDF5IO

    from vit_facemap.testvideo import spot_frames, write_frames

    raw = write_frames(tmp_path / "raw.h264", spot_frames(20, SIZE), fps=25, codec="libx264")
    for src, name in ((video, "later"), (raw, "raw")):
        track_video(SpotPredictor(), src, tmp_path / name,
                    opts(nwb=True, start=10, stop=20, formats=("csv",)))
        with NWBHDF5IO(str(output_paths(src, tmp_path / name)["nwb"]), "r") as io:
            f = io.read()
            source = f.acquisition["source_video"]
            assert (source.rate, source.starting_time) == (25.0, 0.0)
            series = f.processing["behavior"]["PoseEstimation"].pose_estimation_series["leftpupil"]
            np.testing.assert_allclose(series.timestamps[:], np.arange(10, 20) / 25, atol=1e-3)
            assert "tracked frames 10 to 19" in f.notes
            assert f.session_start_time.timestamp() == pytest.approx(src.stat().st_mtime, abs=1)


def test_times_count_from_the_first_frame(tmp_path):
    """An MPEG-TS stream's first time stamp is not 0: times (frames.csv, measures, NWB) count
    from the first frame, as NWB's description of the source video does, so the keypoints
    of frame i line up with its frame i there; pts keeps the stamps as stored."""
    from vit_facemap.nwb import nwb_available
    from vit_facemap.testvideo import spot_frames, write_frames

    ts = write_frames(tmp_path / "face.ts", spot_frames(20, SIZE), fps=25, codec="libx264")
    nwb = nwb_available()
    track_video(SpotPredictor(), ts, tmp_path, opts(nwb=nwb, formats=("csv",)))
    paths = output_paths(ts, tmp_path)
    times = pd.read_csv(paths["frames"], index_col=0)
    assert times["pts"].iloc[0] > 0  # the stream's own first stamp
    np.testing.assert_allclose(times["time_s"], np.arange(20) / 25, atol=1e-3)
    measures = pd.read_csv(paths["measures"], index_col=0)
    np.testing.assert_allclose(measures["time_s"], np.arange(20) / 25, atol=1e-3)
    if nwb:
        from pynwb import NWBHDF5IO

        with NWBHDF5IO(str(paths["nwb"]), "r") as io:
            f = io.read()
            source = f.acquisition["source_video"]
            pose = f.processing["behavior"]["PoseEstimation"]
            stamps = pose.pose_estimation_series["leftpupil"].timestamps[:]
            shown = (stamps - source.starting_time) * source.rate  # source frame at each row
            np.testing.assert_allclose(shown, np.arange(20), atol=1e-3)


class CentroidPredictor(SpotPredictor):
    """The spot's brightness-weighted centre: exact for a resized spot, so it shows bias."""

    def predict(self, frames):
        xy = np.empty((len(frames), 4, 2))
        for i, f in enumerate(frames):
            wgt = np.clip(f.astype(float) - 160, 0, None)
            ys, xs = np.mgrid[: f.shape[0], : f.shape[1]]
            xy[i] = np.array([(wgt * xs).sum(), (wgt * ys).sum()]) / wgt.sum() + OFFSETS
        return xy, np.ones((len(frames), 4))


def test_resized_coordinates_map_pixel_centres(tmp_path, video):
    """Frame pixel i covers [i, i+1): at half size, input pixel j is frame 2j + 0.5."""
    track_video(CentroidPredictor(frame_size=(48, 36)), video, tmp_path,
                opts(resize=True, formats=("csv",)))
    _, vals = load_xy(output_paths(video, tmp_path)["csv"])
    bias = (vals[..., :2] - truth()).reshape(-1, 2).mean(0)
    assert np.abs(bias).max() < 0.2, bias  # was -0.5 px in x and y before


def test_command_line_never_writes_over_its_inputs(tmp_path, video, monkeypatch, capsys):
    """A video named like another's results, or results among the run's files, are refused
    up front."""
    import sys
    import types

    from vit_facemap.cli import main

    fake = types.ModuleType("vit_facemap.predict")
    fake.load_predictor = (lambda run_dir, device="auto", scales=None, crop_shift=0.0,
                           flip=None: SpotPredictor())
    monkeypatch.setitem(sys.modules, "vit_facemap.predict", fake)
    out = tmp_path / "out"
    out.mkdir()
    # an overlay written before, tracked again beside the video it was drawn from
    again = output_paths(video, out)["overlay"]
    again.write_bytes(video.read_bytes())
    assert main(["track", "run", str(video), str(again), "--out", str(out), "--overlay",
                 "--overwrite", "--no-progress", "--stop", "3"]) == 2
    assert "is an input of this command" in capsys.readouterr().err
    assert again.read_bytes() == video.read_bytes() and sorted(out.iterdir()) == [again]
    # results among the run's own files (a second stage's folder) are refused; beside them
    # they are fine, also when replacing earlier ones
    run = tmp_path / "run"
    stage = run / "refine" / "eye"
    stage.mkdir(parents=True)
    assert main(["track", str(run), str(video), "--out", str(stage), "--no-progress",
                 "--stop", "3"]) == 2
    assert "files of the run folder" in capsys.readouterr().err and not any(stage.iterdir())
    for extra in ([], ["--overwrite"]):
        assert main(["track", str(run), str(video), "--out", str(run), "--no-progress",
                     "--stop", "3", *extra]) == 0


def test_overwrite_keeps_the_old_results_until_the_new_ones_are_complete(tmp_path, video):
    paths = output_paths(video, tmp_path)
    track_video(SpotPredictor(), video, tmp_path, opts(stop=10))
    old = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # stopped before a frame was tracked: the old results are back in place, as they were
    with pytest.raises(KeyboardInterrupt):
        track_video(SpotPredictor(fail_after=0), video, tmp_path, opts(overwrite=True))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == old
    # stopped part-way: resumable, and the old results are kept where the warning says
    with pytest.warns(UserWarning, match="kept in") as said, pytest.raises(KeyboardInterrupt):
        track_video(SpotPredictor(fail_after=1), video, tmp_path, opts(overwrite=True))
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".replaced-")]
    assert len(kept) == 1 and str(kept[0]) in str(said[0].message)
    assert {p.name: p.read_bytes() for p in kept[0].iterdir()} == old
    # resumed to the end: the new results are complete, the old ones go
    s = track_video(SpotPredictor(), video, tmp_path, opts(resume=True))
    assert s["complete"] and s["frames_tracked"] == N and not kept[0].exists()
    assert len(load_xy(paths["csv"])[0]) == N


def test_start_past_end_leaves_no_new_folder(tmp_path, video):
    with pytest.raises(DataError, match="past the end"):
        track_video(SpotPredictor(), video, tmp_path / "new" / "out", opts(start=N + 5))
    assert not (tmp_path / "new" / "out").exists()


def test_a_second_overwrite_keeps_the_results_the_first_interrupted_one_replaced(tmp_path, video):
    # an interrupted --overwrite leaves its unfinished run and the old results set aside; a
    # second --overwrite must carry that set-aside folder over, not hide it under a new one
    paths = output_paths(video, tmp_path)
    track_video(SpotPredictor(), video, tmp_path, opts(formats=("csv",), stop=10))
    old = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def hidden():
        return [p for p in tmp_path.iterdir() if p.name.startswith(".replaced-")]

    for _ in range(2):  # interrupted twice: the original results stay, named in the warning
        with pytest.warns(UserWarning, match="kept in") as said, \
                pytest.raises(KeyboardInterrupt):
            track_video(SpotPredictor(fail_after=1), video, tmp_path,
                        opts(formats=("csv",), overwrite=True))
        assert len(hidden()) == 1 and str(hidden()[0]) in str(said[0].message)
        assert {p.name: p.read_bytes() for p in hidden()[0].iterdir()} == old
    # stopped before a frame: the original results are put back in place
    with pytest.raises(KeyboardInterrupt):
        track_video(SpotPredictor(fail_after=0), video, tmp_path,
                    opts(formats=("csv",), overwrite=True))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == old
    with pytest.warns(UserWarning), pytest.raises(KeyboardInterrupt):
        track_video(SpotPredictor(fail_after=1), video, tmp_path,
                    opts(formats=("csv",), overwrite=True))
    # a second --overwrite that completes: nothing hidden is left behind
    s = track_video(SpotPredictor(), video, tmp_path, opts(formats=("csv",), overwrite=True))
    assert s["complete"] and not hidden() and not paths["state"].exists()
    assert len(load_xy(paths["csv"])[0]) == N


def test_a_video_cut_short_keeps_the_results_it_replaces(tmp_path, video):
    """Results cut short by a broken video may cover less than the complete ones they
    replace: those stay, named in the error."""
    cut = tmp_path / "clip.avi"
    cut.write_bytes(video.read_bytes())
    out = tmp_path / "out"
    track_video(SpotPredictor(), cut, out, opts())
    paths = output_paths(cut, out)
    complete = paths["csv"].read_bytes()
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    with pytest.raises(VideoDecodeError, match="kept in") as err:
        track_video(SpotPredictor(), cut, out, opts(overwrite=True))
    kept = [p for p in out.glob(".replaced-*/*") if p.name == paths["csv"].name]
    assert len(kept) == 1 and kept[0].read_bytes() == complete and str(kept[0].parent) in str(
        err.value)


def test_a_video_broken_from_its_first_frame_writes_nothing(tmp_path):
    """No frame decoded, no results: no header-only tables, no HDF5 file DeepLabCut cannot
    read; the results an --overwrite set aside are put back as they were."""
    good = write_test_video(tmp_path / "good.mp4", N, SIZE, fps=25)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    out = tmp_path / "out"
    with pytest.raises(VideoDecodeError, match=r"clip.mp4: no frame could be decoded") as err:
        track_video(SpotPredictor(), clip, out, opts())
    assert err.value.frame == 0 and not out.exists()
    clip.write_bytes(good.read_bytes())
    track_video(SpotPredictor(), clip, out, opts(overlay=True))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    clip.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(VideoDecodeError, match="no frame could be decoded.*back in place"):
        track_video(SpotPredictor(), clip, out, opts(overwrite=True, overlay=True))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_model_of_the_frames_width_but_not_their_height_is_refused(tmp_path, video):
    # both sides are compared: a model of 96 x 60 pixels took the 96 x 72 frames as they were
    with pytest.raises(DataError, match="96x72 pixels but the model was trained on 96x60"):
        track_video(SpotPredictor(frame_size=(96, 60)), video, tmp_path, opts())
    assert not list(tmp_path.iterdir())


def test_resume_after_a_crash_mid_write_drops_the_partial_row(tmp_path, video):
    """A crash while a batch was written leaves part of a row at the end of the partial
    file: it is cut off before new rows are appended, else every later row is shifted."""
    with pytest.raises(KeyboardInterrupt):
        track_video(SpotPredictor(fail_after=2), video, tmp_path, opts())
    paths = output_paths(video, tmp_path)
    with open(paths["partial"], "ab") as fh:
        fh.write(np.arange(5, dtype=np.float64).tobytes())  # 5 of a row's 15 values
    s = track_video(SpotPredictor(), video, tmp_path, opts(resume=True))
    assert s["resumed_from"] == 16 and s["complete"]
    df, vals = load_xy(paths["csv"])
    assert df.index.tolist() == list(range(N))
    np.testing.assert_allclose(vals[..., :2], truth(), atol=1.0)


def test_resume_does_not_skip_a_run_its_summary_says_is_incomplete(tmp_path, video):
    # results cut short (complete: false) with no half-done state are not "already tracked"
    paths = output_paths(video, tmp_path)
    track_video(SpotPredictor(), video, tmp_path, opts(stop=10))
    record = json.loads(paths["summary"].read_text())
    paths["summary"].write_text(json.dumps({**record, "complete": False}))
    with pytest.raises(RunExistsError, match="no half-done run to resume"):
        track_video(SpotPredictor(), video, tmp_path, opts(resume=True, stop=10))


def test_resume_refuses_frames_resized_to_another_size(tmp_path, video):
    # two predictors without weights to tell them apart, trained on other frame sizes: the
    # frames they were handed at (the resize) keep their keypoints out of one file
    with pytest.raises(KeyboardInterrupt):
        track_video(SpotPredictor(frame_size=(48, 36), fail_after=1), video, tmp_path,
                    opts(resize=True))
    # the model's size, not an option: no advice to pass it
    with pytest.raises(DataError, match=r"other settings \(resize: \[48, 36\] then, "
                                        r"\[32, 24\] now\); pass --overwrite to start again"):
        track_video(SpotPredictor(frame_size=(32, 24)), video, tmp_path,
                    opts(resize=True, resume=True))


def test_a_video_given_as_the_run_is_named_a_file(video, tmp_path, capsys):
    # 'track VIDEO RUN' (the two swapped) said "not a trained run: config.json is missing"
    from vit_facemap.cli import main

    (tmp_path / "run").mkdir()
    assert main(["track", str(video), str(tmp_path / "run"), "--out", str(tmp_path / "o"),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"{video}: a file, not a run folder" in err and "config.json" not in err
    assert not (tmp_path / "o").exists()
