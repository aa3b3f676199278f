"""End to end: train a tiny real model (profile test, seconds), track a video with the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vit_facemap.cli import main
from vit_facemap.dlc import read_labels
from vit_facemap.predict import load_predictor
from vit_facemap.synthetic import G7C1_KEYPOINTS, generate_frames, write_synthetic_set
from vit_facemap.testvideo import write_clip
from vit_facemap.track import output_paths
from vit_facemap.train import fit, profile_config
from vit_facemap.video import iter_batches

SIZE = (96, 72)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    labels = read_labels(write_synthetic_set(tmp / "set", 8, 2, size=SIZE))
    config = profile_config("test")
    config.num_threads = 1
    fit(config, labels, tmp / "run", progress=False)
    return tmp / "run"


def test_track_command_with_trained_run(tmp_path, run_dir, capsys):
    video = write_clip(list(generate_frames(12, seed=7, size=SIZE, n_videos=1).images),
                       tmp_path / "new_mouse.avi")
    out = tmp_path / "out"
    assert main(["track", str(run_dir), str(video), "--out", str(out), "--device", "cpu",
                 "--batch-size", "5", "--no-progress"]) == 0
    assert "12 frames" in capsys.readouterr().out
    paths = output_paths(video, out)
    df = pd.read_csv(paths["csv"], header=[0, 1, 2], index_col=0)
    assert df.index.tolist() == list(range(12))
    assert df.columns.get_level_values(1).unique().tolist() == list(G7C1_KEYPOINTS)
    assert df.columns.get_level_values(2).unique().tolist() == ["x", "y", "likelihood"]
    # The pipeline writes what the predictor says for the decoded frames, batch size aside.
    frames = np.concatenate([b.frames for b in iter_batches(video, 12)])
    xy, conf = load_predictor(run_dir, "cpu").predict(frames)
    vals = df.to_numpy().reshape(12, len(G7C1_KEYPOINTS), 3)
    np.testing.assert_allclose(vals[..., :2], xy, atol=1e-3)
    np.testing.assert_allclose(vals[..., 2], conf, atol=1e-4)
    assert pd.read_csv(paths["measures"], index_col=0).shape[0] == 12

    # Frames of another size than the run was trained on are refused, unless resized.
    big = write_clip(list(generate_frames(4, seed=8, size=(128, 96), n_videos=1).images),
                     tmp_path / "big.avi")
    assert main(["track", str(run_dir), str(big), "--out", str(out), "--device", "cpu"]) == 2
    assert "trained on 96x72" in capsys.readouterr().err
    assert main(["track", str(run_dir), str(big), "--out", str(out), "--device", "cpu",
                 "--resize", "--no-progress"]) == 0
