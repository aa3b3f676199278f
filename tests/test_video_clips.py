"""Clips assembled from labeled frames, and finding a run that did not see the clip's video."""

from __future__ import annotations

import json

import numpy as np

from vit_facemap.clips import find_run, labeled_clip
from vit_facemap.dlc import read_labels
from vit_facemap.synthetic import write_synthetic_set
from vit_facemap.video import iter_batches


def test_labeled_clip_in_name_order(tmp_path):
    labels = read_labels(write_synthetic_set(tmp_path / "set", 8, 2, size=(64, 48)))
    shuffled = labels.subset(np.random.default_rng(0).permutation(len(labels)))
    clip, sub = labeled_clip(shuffled, "synthetic_video01", tmp_path / "clip.avi", max_frames=3)
    assert sub.index == sorted(i for i in labels.index if "video01" in i)[:3]
    frames = np.concatenate([b.frames for b in iter_batches(clip, 8)])
    assert frames.shape == (3, 48, 64)


def _trained(d, bodyparts, finished=True):
    """A run folder as fit() leaves it: config, weights and, once finished, runinfo.json."""
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"bodyparts": bodyparts,
                                               "train": {"refine": {"share": 0.0}}}))
    (d / "model.safetensors").write_bytes(b"")
    if finished:
        (d / "runinfo.json").write_text(json.dumps({"summary": {"steps": 8, "total_steps": 8}}))


def test_find_run_skips_runs_trained_on_the_video(tmp_path):
    def run(name, bodyparts, train):
        d = tmp_path / "runs" / name
        _trained(d, bodyparts)
        (d / "split.json").write_text(json.dumps({"train": train, "val": []}))
        return d

    a = run("a", ["p", "q"], ["labeled-data/v1/img0.png"])
    run("b", ["p", "q"], ["labeled-data/v2/img0.png"])
    run("c", ["other"], ["labeled-data/v1/img0.png"])
    assert find_run(tmp_path / "runs", ["p", "q"], not_trained_on="v2") == a
    assert find_run(tmp_path / "runs", ["p", "q"], not_trained_on="v3") is not None
    assert find_run(tmp_path / "runs", ["p", "q"], name="b") == tmp_path / "runs" / "b"
    assert find_run(tmp_path / "runs", ["p", "q"], not_trained_on="v2", name="b") is None
    assert find_run(tmp_path / "runs", ["x"]) is None
    assert find_run(tmp_path / "missing") is None


def test_find_run_is_not_a_second_stage(tmp_path):
    # fit() writes a run's eye stage (refine/eye: config.json + weights, its own keypoints)
    # after the run itself, so it was "the newest run", a crop model that cannot track a video
    import os

    def run(d, bodyparts, mtime):
        _trained(d, bodyparts)
        (d / "split.json").write_text(json.dumps({"train": ["labeled-data/v1/img0.png"]}))
        os.utime(d / "config.json", (mtime, mtime))

    first = tmp_path / "runs" / "hybrid"
    run(first, ["eye top", "eye back", "nose tip"], 1000)
    run(first / "refine" / "eye", ["eye top", "eye back"], 2000)
    assert find_run(tmp_path / "runs") == first
    assert find_run(tmp_path / "runs", not_trained_on="v2") == first
    assert find_run(tmp_path / "runs", name="eye") is None


def test_tracked_keypoints_reads_predictions_and_names_a_wrong_table(tmp_path):
    import pytest

    from vit_facemap.clips import tracked_keypoints
    from vit_facemap.dlc import predictions_dataframe, write_labels, write_predictions
    from vit_facemap.errors import DataError

    xy = np.arange(12, dtype=float).reshape(2, 3, 2)
    lik = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    csv = write_predictions(predictions_dataframe(xy, lik, ["a", "b", "c"], frames=[4, 5]),
                            tmp_path / "v_scorer.csv")
    frames, got_xy, got_lik, bodyparts = tracked_keypoints(csv)
    assert frames.tolist() == [4, 5] and bodyparts == ["a", "b", "c"]
    np.testing.assert_allclose(got_xy, xy)
    np.testing.assert_allclose(got_lik, lik)
    # a labels table (x, y only, three index columns) is not a prediction table: it failed
    # with "could not convert string to float"
    labels = read_labels(write_synthetic_set(tmp_path / "set", 4, 1, size=(64, 48)))
    table = write_labels(labels, tmp_path / "CollectedData.csv")
    with pytest.raises(DataError, match="CollectedData.csv: not a DeepLabCut prediction table"):
        tracked_keypoints(table)


def test_write_clip_names_the_image_of_another_size(tmp_path):
    import pytest
    from PIL import Image

    from vit_facemap.errors import DataError
    from vit_facemap.testvideo import write_clip

    paths = [tmp_path / f"img{i}.png" for i in range(3)]
    for path, size in zip(paths, [(64, 48), (64, 48), (48, 64)], strict=True):
        Image.new("L", size).save(path)
    # it said "several sizes [(48, 64), (64, 48)]": numpy's (H, W), and no file
    with pytest.raises(DataError, match=r"img2.png: images come in several sizes: 48x64 here, "
                                        r"64x48 for the first image"):
        write_clip(paths, tmp_path / "clip.mp4")
    with pytest.raises(ValueError, match="image 1: images come in several sizes"):
        write_clip([np.zeros((48, 64), np.uint8), np.zeros((64, 48), np.uint8)],
                   tmp_path / "clip.mp4")


def test_find_run_skips_an_interrupted_run(tmp_path):
    # fit() saves weights every epoch and runinfo.json at the end: an interrupted run (newer
    # than the finished one) was reused as "the tracker notebook's run"
    import os

    for name, finished, mtime in (("done", True, 1000), ("interrupted", False, 2000)):
        _trained(tmp_path / "runs" / name, ["a"], finished)
        os.utime(tmp_path / "runs" / name / "config.json", (mtime, mtime))
    assert find_run(tmp_path / "runs", ["a"]) == tmp_path / "runs" / "done"
