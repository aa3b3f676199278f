"""The benchmark scripts refuse bad arguments before any work, never replace results unasked,
and record what they ran (tiny generated data: seconds each)."""

import importlib.util
import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from vit_facemap.errors import DataError
from vit_facemap.runinfo import resolve_device
from vit_facemap.train import TrainConfig, profile_config

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TRACKER = _script("tracker")


def _tracker_args(out: Path, *extra: str) -> list[str]:
    return ["--synthetic", "--profile", "test", "--models", "mean_shape", "--no-progress",
            "--out", str(out), *extra]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


# --- tracker.py ---------------------------------------------------------------------------


def test_fps_warms_up_on_a_batch_of_the_timed_size():
    # a warm-up of 8 frames left a first batch of 32 (its allocations) inside the timing
    class Counting:
        def __init__(self):
            self.sizes = []

        def predict(self, images):
            self.sizes.append(len(images))

    p = Counting()
    fps = TRACKER.fps_of(p, np.zeros((70, 4, 4), np.uint8), repeats=1)
    assert p.sizes == [32, 32, 32, 6] and fps > 0


def test_tracker_refuses_to_replace_a_table_before_any_work(tmp_path, capsys):
    out = tmp_path / "t"
    assert TRACKER.main(_tracker_args(out)) == 0
    table = out / "tracker.json"
    before = table.read_text()
    capsys.readouterr()
    assert TRACKER.main(_tracker_args(out)) == 2
    line = _one_error_line(capsys)
    assert "tracker.json" in line and "--overwrite" in line
    assert table.read_text() == before
    assert TRACKER.main(_tracker_args(out, "--overwrite")) == 0


def test_tracker_refused_run_keeps_the_generated_set_of_the_table(tmp_path, capsys):
    # the table's predictions are of out/synthetic_set: a run of another seed that is
    # refused must not replace those frames and labels with its own
    out = tmp_path / "t"
    assert TRACKER.main(_tracker_args(out)) == 0
    files = sorted(p for p in (out / "synthetic_set").rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    for extra in (["--seed", "1"], ["--seed", "1", "--reuse"]):
        assert TRACKER.main(_tracker_args(out, *extra)) == 2
        assert "--overwrite" in _one_error_line(capsys)
        assert {p: p.read_bytes() for p in files} == before
    assert TRACKER.main(_tracker_args(out, "--reuse")) == 0  # still the table's set
    assert "kept" in capsys.readouterr().out


@pytest.mark.parametrize("extra, words", [
    (["--models", "mean_shape,hybird"], "hybird"),
    (["--device", "cudax"], "cudax"),
    (["--test-animals", "3"], "--test-animals 3"),  # the generated set has 3 videos
    (["--steps", "0"], "steps"),
    (["--val-every", "0"], "val_every_steps >= 1"),
    (["--models", ","], "no model"),  # used to save an empty table as finished
    (["--models", "mean_shape", "--ablations", "mean_shape"], "'mean_shape' given twice"),
])
def test_tracker_checks_arguments_before_training(tmp_path, capsys, extra, words):
    out = tmp_path / "t"
    assert TRACKER.main(_tracker_args(out, *extra)) == 2
    assert words in _one_error_line(capsys)
    assert not (out / "tracker.json").exists() and not (out / "runs").exists()


def test_tracker_refuses_a_negative_seed_before_training(tmp_path, capsys):
    # numpy refused it with a traceback once the first model had started
    out = tmp_path / "t"
    with pytest.raises(SystemExit) as exit_:
        TRACKER.main(_tracker_args(out, "--seed", "-1"))
    assert exit_.value.code == 2
    assert "argument --seed: must be an integer from 0" in capsys.readouterr().err
    assert not out.exists()


def test_tracker_out_or_data_of_the_wrong_kind_is_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert TRACKER.main(_tracker_args(afile)) == 2
    assert "afile" in _one_error_line(capsys)
    missing = tmp_path / "no_such_folder"
    assert TRACKER.main(["--data", str(missing), "--out", str(tmp_path / "t")]) == 2
    assert str(missing) in _one_error_line(capsys)


@pytest.mark.parametrize("extra, steps, minutes", [
    (["--profile", "quick"], 300, None),  # the profile's own budget
    (["--profile", "test", "--steps", "50", "--minutes", "0.5"], 50, 0.5),  # given: used
    (["--profile", "test"], 8, None),
])
def test_tracker_budget_is_the_profiles_unless_given(tmp_path, extra, steps, minutes):
    out = tmp_path / "t"
    args = ["--synthetic", "--models", "mean_shape", "--no-progress", "--out", str(out),
            "--device", "auto", *extra]
    assert TRACKER.main(args) == 0
    prov = json.loads((out / "tracker.json").read_text())["provenance"]
    assert (prov["settings"]["steps"], prov["settings"]["max_minutes"]) == (steps, minutes)
    # the device as used, not as asked for (a GPU where one is visible); the total wall time
    assert prov["device"]["device"] == resolve_device("auto") != "auto" and prov["wall_s"] > 0
    assert prov["code"]["sources_sha256"] and prov["data"]["synthetic"]["tables_sha256"]


def _frames_of(root: Path, videos: list[str]):
    from vit_facemap.dlc import LabeledFrames

    index = [f"labeled-data/{v}/img{i}.png" for v in videos for i in range(2)]
    kp = np.ones((len(index), 1, 2))
    return LabeledFrames(root, index, kp, ["nose"], "me")


def test_tracker_leave_animal_out_split_follows_animals_csv(tmp_path):
    # session names that look like six animals; animals.csv says they are three
    videos = ["A1_s1", "B1_s1", "C1_s1", "D1_s1", "E1_s1", "F1_s1"]
    (tmp_path / "animals.csv").write_text(
        "video,animal\n" + "".join(f"{v},{'xyz'[i // 2]}\n" for i, v in enumerate(videos)))
    frames = _frames_of(tmp_path, videos)
    from vit_facemap.splits import groups_for

    animals = groups_for(frames, "animal")
    for seed in range(6):
        [(_, name, train, test)] = TRACKER.splits_of("schroeder", frames, 1, seed, False)
        assert not set(animals[train]) & set(animals[test])
        assert name == f"held-out animals {', '.join(sorted(set(animals[test])))}"


def test_tracker_test_animals_that_cannot_be_honoured_is_an_error(tmp_path):
    frames = _frames_of(tmp_path, ["A1", "B1", "C1"])
    with pytest.raises(DataError, match="--test-animals 3"):
        TRACKER.splits_of("schroeder", frames, 3, 0, False)
    [(_, _, _, test)] = TRACKER.splits_of("schroeder", frames, 2, 0, False)
    assert len(set(frames.videos[test])) == 2  # honoured, not replaced by 1
    [(_, _, _, test)] = TRACKER.splits_of("schroeder", frames, None, 0, False)
    assert len(set(frames.videos[test])) == 1  # the default on a small set


def _first_fit(monkeypatch, out: Path, *extra: str):
    """The config, training and validation frames that the benchmark (hybrid, --monitor)
    passes to its first ``fit``, which is stopped there: no model trains."""
    class Given(Exception):
        pass

    def fit(config, train, run_dir, val, **kwargs):
        raise Given(config, train, val)
    monkeypatch.setattr(TRACKER, "fit", fit)
    with pytest.raises(Given) as given:
        TRACKER.main(_tracker_args(out, "--models", "hybrid", "--monitor", *extra))
    return given.value.args


def test_tracker_split_seed_fixes_the_held_out_animals_while_the_seed_varies(tmp_path,
                                                                             monkeypatch):
    def given(*extra: str) -> tuple[int, list[str]]:
        config, _, val = _first_fit(monkeypatch, tmp_path / "t", *extra)
        return config.seed, sorted(set(val.videos))

    held = {s: given("--seed", str(s))[1] for s in range(4)}
    assert len({tuple(v) for v in held.values()}) > 1  # --seed alone moves the split
    for s in range(4):
        assert given("--seed", str(s), "--split-seed", "0") == (s, held[0])


def test_tracker_reuses_a_table_saved_before_split_seed_existed(tmp_path, capsys):
    out = tmp_path / "t"
    assert TRACKER.main(_tracker_args(out, "--reuse")) == 0
    table = out / "tracker.json"
    saved = json.loads(table.read_text())
    del saved["provenance"]["args"]["split_seed"]
    table.write_text(json.dumps(saved))
    capsys.readouterr()
    assert TRACKER.main(_tracker_args(out, "--reuse")) == 0
    assert "kept" in capsys.readouterr().out
    # but a split seed given is another split
    assert TRACKER.main(_tracker_args(out, "--reuse", "--split-seed", "3")) == 2
    assert "split_seed" in _one_error_line(capsys)


def test_tracker_reuse_notices_changed_data(tmp_path, capsys):
    out = tmp_path / "t"
    args = _tracker_args(out, "--reuse")
    assert TRACKER.main(args) == 0
    table = out / "tracker.json"
    saved = json.loads(table.read_text())
    saved["provenance"]["data"]["synthetic"]["tables_sha256"] = "0"
    table.write_text(json.dumps(saved))
    capsys.readouterr()
    assert TRACKER.main(args) == 2
    assert "other data" in _one_error_line(capsys)


@pytest.fixture(scope="module")
def tiny_tracker(tmp_path_factory):
    """The benchmark's output for the hybrid model on generated frames (seconds, profile test);
    tests read it, none changes it."""
    out = tmp_path_factory.mktemp("tracker")
    assert TRACKER.main(_tracker_args(out, "--models", "hybrid")) == 0
    return out


def test_tracker_trains_without_validation_frames_unless_monitored(tiny_tracker, tmp_path,
                                                                   monkeypatch):
    split = json.loads((tiny_tracker / "runs" / "synthetic" / "hybrid" / "split.json").read_text())
    assert split["val"] == []  # the budget goes to training only
    [row] = json.loads((tiny_tracker / "tracker.json").read_text())["rows"]
    assert row["total_steps"] == row["steps"]  # one stage (the test profile's)
    # generated g7c1-like names do not pair: three box sizes, and the one-view score apart
    assert (row["flip"], row["scales"]) == (False, [0.9, 1.0, 1.1])
    assert np.isfinite(row["one_scale_mean_px"]) and row["one_scale_mean_px"] != row["mean_px"]
    # with --monitor, training scores the held-out frames as it goes (what fit is given)
    _, train, val = _first_fit(monkeypatch, tmp_path / "t")
    assert len(val) == row["n_test"] and len(train) == row["n_train"]
    assert not set(train.videos) & set(val.videos)


def test_tracker_val_every_sets_the_validation_interval(tmp_path, monkeypatch):
    # a long GPU schedule validated every 50 steps spent much of its minutes on validation
    for extra, every in (([], profile_config("test").val_every_steps), (["--val-every", "7"], 7)):
        config, _, _ = _first_fit(monkeypatch, tmp_path / "t", *extra)
        assert config.val_every_steps == every
    # a second stage is made from the recipe with stage(): it keeps the interval
    assert TrainConfig(val_every_steps=7).stage(0.5).val_every_steps == 7


def test_tracker_counts_the_steps_of_every_stage(tmp_path):
    # train_s covers every stage: so does total_steps ("steps" is the first stage's)
    out = tmp_path / "t"
    assert TRACKER.main(_tracker_args(out, "--models", "hybrid_eye_stage")) == 0
    [row] = json.loads((out / "tracker.json").read_text())["rows"]
    assert row["refine_steps"]["eye"] > 0
    assert row["total_steps"] == row["steps"] + row["refine_steps"]["eye"]


def test_tracker_training_time_includes_masked_pretraining(tmp_path):
    # hybrid_mim pre-trains on part of its budget: its train_s counts that time, as the
    # other models' train_s counts all of theirs
    out = tmp_path / "t"
    assert TRACKER.main(_tracker_args(out, "--models", "", "--ablations", "hybrid_mim")) == 0
    [row] = json.loads((out / "tracker.json").read_text())["rows"]
    run = json.loads((out / "runs" / "synthetic" / "hybrid_mim" / "runinfo.json").read_text())
    summary = run["summary"]  # one stage (the test profile's)
    assert summary["pretrain_s"] > 0 and row["pretrain_s"] == summary["pretrain_s"]
    assert row["train_s"] == pytest.approx(summary["train_s"] + summary["pretrain_s"])


def test_tracker_keeps_every_held_out_error_for_the_bootstrap(tmp_path):
    out = tmp_path / "t"
    assert TRACKER.main(_tracker_args(out)) == 0
    [row] = json.loads((out / "tracker.json").read_text())["rows"]
    per = row["per_frame"]
    assert len(per["frames"]) == len(per["animals"]) == len(per["errors_px"]) == row["n_test"]
    err = np.array(per["errors_px"], dtype=float)  # None (no label) -> NaN
    assert np.isnan(err).any()  # the generated set misses some labels
    assert np.isclose(np.nanmean(err), row["mean_px"], atol=1e-3)
    assert "per_frame" not in (out / "tracker.csv").read_text()


def test_tracker_baselines_learn_from_the_training_frames_only(tmp_path, monkeypatch):
    """Both baselines are fitted on the training frames, never on the held-out frames they
    are scored on: the mean shape predicts the training frames' mean pose, and the forest is
    given the training frames."""
    from vit_facemap.baselines import HogForestConfig
    from vit_facemap.dlc import read_labels
    from vit_facemap.validate import load_set

    given = []
    fit = TRACKER.HogForestPredictor.fit

    def spy(self, frames):
        given.append(list(frames.index))
        return fit(self, frames)
    monkeypatch.setattr(TRACKER.HogForestPredictor, "fit", spy)
    # a small forest on small crops: seconds
    monkeypatch.setattr(TRACKER, "HogForestConfig", lambda **kw: HogForestConfig(
        **{**kw, "n_estimators": 5, "crop_width": 128, "n_jobs": 1}))
    out = tmp_path / "t"
    assert TRACKER.main(_tracker_args(out, "--models", "mean_shape,hog_forest")) == 0
    rows = {r["model"]: r for r in json.loads((out / "tracker.json").read_text())["rows"]}
    assert sorted(rows) == ["hog_forest", "mean_shape"]
    assert np.isfinite(rows["hog_forest"]["mean_px"]) and rows["hog_forest"]["per_frame"]
    frames = load_set(out / "synthetic_set", decode=False)
    test = set(rows["mean_shape"]["per_frame"]["frames"])
    train = np.array([i not in test for i in frames.index])
    assert 0 < train.sum() < len(frames)
    assert given == [list(frames.subset(train).index)]
    pred = read_labels(out / "predictions" / "synthetic" / "mean_shape.csv").keypoints
    mean = np.nanmean(frames.subset(train).keypoints, axis=0)
    np.testing.assert_allclose(pred, np.broadcast_to(mean, pred.shape), atol=1e-3)


# --- track_speed.py -----------------------------------------------------------------------


SPEED = _script("track_speed")


@pytest.fixture(scope="module")
def tiny_run(tiny_tracker):
    """A run trained on 96x72 generated frames (seconds, profile test)."""
    return tiny_tracker / "runs" / "synthetic" / "hybrid"


def test_track_speed_times_a_run_of_another_frame_size_on_the_given_frames(tmp_path, tiny_run):
    from vit_facemap.synthetic import generate_frames
    from vit_facemap.testvideo import write_clip

    video = tmp_path / "clip.mp4"
    write_clip(list(generate_frames(12, seed=0, size=(128, 96), n_videos=1).images), video,
               fps=30, n_frames=12)
    out = tmp_path / "speed.json"
    assert SPEED.main(["--models", "", "--runs", str(tiny_run), "--video", str(video),
                       "--frames", "5", "--repeats", "1", "--threads", "1",
                       "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    [row] = record["results"]
    assert row["resized_to"] == [96, 72] and row["frames"] == 5  # --frames honoured
    assert row["flip"] is False and row["scales"] == [0.9, 1.0, 1.1]  # its names do not pair
    # track_video's own frames/s leave out the files it writes at the end; the whole call not
    assert 0 < row["end_to_end_written_fps"] <= row["end_to_end_fps"]
    assert record["wall_s"] > 0 and record["device"]["device"] == "cpu"


def test_track_speed_times_a_run_that_flips_with_its_default_views(tmp_path):
    """A run trained with flips is timed as `track` runs it by default, the box and its
    mirror image (two passes per frame), and with --no-flip at three box sizes (three)."""
    from vit_facemap.dlc import read_labels
    from vit_facemap.synthetic import generate_frames, write_synthetic_set
    from vit_facemap.testvideo import write_clip
    from vit_facemap.train import fit

    data = write_synthetic_set(tmp_path / "set", n_frames=6, n_videos=2, seed=3, size=(96, 72),
                               layout="schroeder")
    cfg = profile_config("test")
    cfg.steps, cfg.num_threads = 2, 1
    fit(cfg, read_labels(data), tmp_path / "run", None, device="cpu", progress=False)
    video = tmp_path / "clip.mp4"
    write_clip(list(generate_frames(4, seed=0, size=(96, 72), n_videos=1).images), video,
               fps=30, n_frames=4)
    rows = []
    for name, extra in (("default", []), ("plain", ["--no-flip"])):
        out = tmp_path / f"{name}.json"
        assert SPEED.main(["--models", "", "--runs", str(tmp_path / "run"), "--video", str(video),
                           "--frames", "3", "--repeats", "1", "--threads", "1",
                           "--out", str(out), *extra]) == 0
        [row] = json.loads(out.read_text())["results"]
        rows.append(row)
    flipped, plain = rows
    assert (flipped["flip"], flipped["scales"]) == (True, [1.0])
    assert (plain["flip"], plain["scales"]) == (False, [0.9, 1.0, 1.1])
    assert flipped["gflop_per_frame"] == pytest.approx(plain["gflop_per_frame"] * 2 / 3)


@pytest.mark.parametrize("extra, words", [
    (["--models", "vitt"], "vitt"),
    (["--video", "/nonexistent.mp4"], "/nonexistent.mp4"),
    (["--threads", "0"], "--threads"),
    (["--runs", "/no/such/run"], "/no/such/run"),
    (["--device", "cudax"], "cudax"),
])
def test_track_speed_checks_arguments_before_work(tmp_path, capsys, extra, words):
    out = tmp_path / "speed.json"
    assert SPEED.main(["--models", "", "--frames", "2", *extra, "--out", str(out)]) == 2
    assert words in _one_error_line(capsys)
    assert not out.exists()


def test_track_speed_refuses_a_folder_that_is_no_run_before_work(tmp_path, capsys):
    # refused by load_predictor only after the clip, decoding and every untrained model
    not_run = tmp_path / "not_a_run"
    not_run.mkdir()
    out = tmp_path / "speed.json"
    assert SPEED.main(["--models", "", "--runs", str(not_run), "--frames", "2", "--repeats", "1",
                       "--threads", "1", "--out", str(out)]) == 2
    printed = capsys.readouterr()
    assert "decode only" not in printed.out and "video:" not in printed.out
    line = printed.err.strip().splitlines()[-1]
    assert str(not_run) in line and "config.json is missing" in line
    assert not out.exists()


def test_track_speed_keeps_earlier_results(tmp_path, capsys):
    out = tmp_path / "speed.json"
    out.write_text("{}")
    args = ["--models", "", "--frames", "2", "--repeats", "1", "--threads", "1", "--out", str(out)]
    assert SPEED.main(args) == 2  # arguments that would run: refused for the earlier file alone
    line = _one_error_line(capsys)
    assert str(out) in line and "--overwrite" in line
    assert out.read_text() == "{}"
    assert SPEED.main([*args, "--overwrite"]) == 0  # replaced when asked
    record = json.loads(out.read_text())
    assert record["settings"]["frames"] == 2
    # the command run, not the program that called main (pytest's own arguments)
    assert record["command"] == shlex.join(["python", "benchmarks/track_speed.py", *args,
                                            "--overwrite"])


# --- bench_data.py ------------------------------------------------------------------------


DATA = _script("bench_data")


def test_bench_data_checks_out_and_data_before_timing(tmp_path, capsys):
    assert DATA.main(["--out", str(tmp_path)]) == 2
    assert "is a folder" in _one_error_line(capsys)
    missing = tmp_path / "no_such_data"
    assert DATA.main(["--data", str(missing), "--out", str(tmp_path / "d.json")]) == 2
    assert str(missing) in _one_error_line(capsys)
    earlier = tmp_path / "earlier.json"
    earlier.write_text("{}")
    assert DATA.main(["--out", str(earlier)]) == 2
    assert "--overwrite" in _one_error_line(capsys)
    assert earlier.read_text() == "{}"


# --- classify.py --------------------------------------------------------------------------


CLASSIFY = _script("classify")


@pytest.mark.parametrize("extra, words", [
    (["--predict", "tta=mirror-zom"], "mirror-zom"),
    (["--predict", "tta"], "key=value"),
    (["--predict", "tda=none"], "tda"),
    (["--set", "ensembel=3"], "valid keys"),
    (["--set", "ensemble=0"], "ensemble"),
    (["--set", "seed=3"], "--seed"),  # a TypeError ("multiple values for ... 'seed'")
    (["--set", "model=vit"], "may not set 'model'"),
    (["--predict", "crop_factor=abc"], "crop_factor='abc'"),  # values are typed, not text
    (["--folds", "1"], "--folds"),
    (["--data-root", "/no/such/data"], "/no/such/data"),
])
def test_classify_checks_settings_before_the_study(tmp_path, capsys, extra, words):
    _refused_before_work(CLASSIFY, tmp_path, capsys, extra, words)


def _refused_before_work(script, tmp_path, capsys, extra, words):
    """The cross-validation scripts: exit 2, one line with ``words``, nothing written."""
    out = tmp_path / "out.json"
    argv = ["--profile", "test", "--work", str(tmp_path / "w"), "--json", str(out), *extra]
    assert script.main(argv) == 2
    assert words in _one_error_line(capsys)
    assert not out.exists() and not (tmp_path / "w").exists()


def test_classify_keeps_an_earlier_json_and_refuses_a_folder(tmp_path, capsys):
    earlier = tmp_path / "c.json"
    earlier.write_text("{}")
    for json_arg in (earlier, tmp_path):
        argv = ["--profile", "test", "--work", str(tmp_path / "w"), "--json", str(json_arg)]
        assert CLASSIFY.main(argv) == 2
        assert str(json_arg) in _one_error_line(capsys)
    assert earlier.read_text() == "{}" and not (tmp_path / "w").exists()


@pytest.mark.parametrize("name", ["classify", "locator"])
def test_study_scripts_refuse_a_file_as_work_folder(tmp_path, capsys, name):
    afile = tmp_path / "afile"
    afile.write_text("x")
    script = CLASSIFY if name == "classify" else LOCATOR
    for work in (afile, afile / "sets"):
        assert script.main(["--profile", "test", "--work", str(work),
                            "--json", str(tmp_path / "out.json")]) == 2
        assert "--work" in _one_error_line(capsys)
    assert afile.read_text() == "x" and not (tmp_path / "out.json").exists()


def test_classify_with_no_task_to_run_writes_nothing(tmp_path, capsys):
    (tmp_path / "data").mkdir()  # no schroeder/ there
    out = tmp_path / "c.json"
    assert CLASSIFY.main(["--profile", "test", "--data-root", str(tmp_path / "data"),
                          "--skip-generated", "--work", str(tmp_path / "w"),
                          "--json", str(out)]) == 1
    assert "nothing is benchmarked" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "w").exists()


# --- locator.py ---------------------------------------------------------------------------


LOCATOR = _script("locator")


@pytest.mark.parametrize("extra, words", [
    (["refine_step=0"], "refine_steps"),  # the message names the valid keys
    (["refine_steps"], "key=value"),
    (["--predict", "candidatez=1,3"], "candidatez"),
    (["seed=3"], "--seed"),
    (["--folds", "1"], "--folds"),
    (["--data-root", "/no/such/data"], "/no/such/data"),
])
def test_locator_checks_settings_before_work(tmp_path, capsys, extra, words):
    _refused_before_work(LOCATOR, tmp_path, capsys, extra, words)


def test_locator_keeps_an_earlier_json(tmp_path, capsys):
    earlier = tmp_path / "l.json"
    earlier.write_text("{}")
    assert LOCATOR.main(["--work", str(tmp_path / "w"), "--json", str(earlier)]) == 2
    assert "--overwrite" in _one_error_line(capsys)
    assert earlier.read_text() == "{}"


class _ImageSet:
    """A stand-in for a class-folder set (vit_facemap.states.read_image_set)."""

    def __init__(self, groups: list[str], labels: list[int]) -> None:
        self.groups, self.labels = np.array(groups), np.array(labels)
        self.paths = [f"{g}{i}" for i, g in enumerate(groups)]  # "frames": their names
        self.eyes = np.ones((len(groups), 3))

    def __len__(self) -> int:
        return len(self.groups)


def test_locator_trains_each_fold_on_the_extra_images_the_study_would(tmp_path, monkeypatch):
    """The images without a class train a fold's locator only when their animal is one of
    the fold's training animals, as in the study (classifier.cross_validate): never a
    held-out animal's, nor one of an animal the folds do not know."""
    from types import SimpleNamespace

    (tmp_path / "data" / "schroeder").mkdir(parents=True)
    data = _ImageSet(["A", "A", "B", "B", "C", "C"], [0, 1] * 3)
    extra = ["A", "B", "C", "Z"]  # Z: an animal without class images
    measures = SimpleNamespace(extra_groups=np.array(extra), extra_paths=[f"x{g}" for g in extra],
                               extra_eyes=np.ones((len(extra), 3)))
    given = []

    def fit_locator(frames, eyes, config, extra_images):
        given.append(({f[0] for f in frames}, {f[1] for f in extra_images[0]}))
        return SimpleNamespace(predict=lambda fr: np.ones((len(fr), 3)), config=config)

    monkeypatch.setattr(LOCATOR, "write_pupil_state_set", lambda *a, **k: None)
    monkeypatch.setattr(LOCATOR, "read_image_set", lambda folder: data)
    monkeypatch.setattr(LOCATOR, "read_measures", lambda d: measures)
    monkeypatch.setattr(LOCATOR, "load_frames", lambda paths: list(paths))
    monkeypatch.setattr(LOCATOR, "fit_locator", fit_locator)
    assert LOCATOR.main(["--data-root", str(tmp_path / "data"), "--work", str(tmp_path / "w"),
                         "--json", str(tmp_path / "l.json"), "--folds", "3"]) == 0
    assert len(given) == 3
    for train_animals, extra_animals in given:
        assert extra_animals == train_animals  # Z never, a held-out animal never


def test_code_fingerprint_ignores_the_books_presentation_code(tmp_path, monkeypatch):
    """Editing the book's renderer must not retrain the book's trackers (--reuse)."""
    import shutil

    import vit_facemap
    from vit_facemap.runinfo import code_fingerprint

    copy = tmp_path / "vit_facemap"
    shutil.copytree(Path(vit_facemap.__file__).parent, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(vit_facemap, "__file__", str(copy / "__init__.py"))
    before = code_fingerprint()
    with open(copy / "book" / "render.py", "a") as f:
        f.write("# a comment\n")
    with open(copy / "reports.py", "a") as f:
        f.write("# a comment\n")
    assert code_fingerprint() == before
    with open(copy / "train.py", "a") as f:
        f.write("# a comment\n")
    assert code_fingerprint() != before


def test_data_fingerprint_follows_the_labels_and_images(tmp_path):
    from vit_facemap.runinfo import data_fingerprint
    from vit_facemap.synthetic import write_synthetic_set

    root = write_synthetic_set(tmp_path / "set", 4, 1, size=(64, 48))
    first = data_fingerprint(root)
    assert first == data_fingerprint(root) and first["images"] == 4
    table = next(root.rglob("CollectedData*.csv"))
    table.write_text(table.read_text().replace("\n", "\n", 1) + "\n")
    assert data_fingerprint(root)["tables_sha256"] != first["tables_sha256"]


# --- crop_shift.py ------------------------------------------------------------------------


CROP_SHIFT = _script("crop_shift")


def test_crop_shift_scores_a_runs_held_out_frames_with_one_crop_and_shifted_ones(tmp_path,
                                                                               capsys):
    from vit_facemap.dlc import read_labels
    from vit_facemap.refine import RefineConfig
    from vit_facemap.synthetic import write_synthetic_set
    from vit_facemap.train import fit

    data = tmp_path / "set"
    write_synthetic_set(data, n_frames=8, n_videos=2, seed=3, size=(96, 72), layout="schroeder")
    frames = read_labels(data)
    cfg = profile_config("test")
    cfg.steps, cfg.num_threads = 4, 1
    cfg.refine = RefineConfig(share=0.5, auto="eye", input_size=32, copies=2)
    held = frames.videos == sorted(set(frames.videos))[-1]
    fit(cfg, frames.subset(~held), tmp_path / "run", frames.subset(held), device="cpu",
        progress=False)
    out = tmp_path / "shift.json"
    args = ["--run", str(tmp_path / "run"), str(data), "--shifts", "0.1", "--threads", "1",
            "--out", str(out), "--flip"]
    assert CROP_SHIFT.main(args) == 0
    record = json.loads(out.read_text())
    rows, flipped = record["rows"][:2], record["rows"][2:]
    # one crop always, first; each shift again with mirrored views (the names pair, so the
    # run trained with flips)
    assert [(r["crop_shift"], r["flip"]) for r in record["rows"]] == [
        (0.0, False), (0.1, False), (0.0, True), (0.1, True)]
    assert flipped[0]["mean_px"] != rows[0]["mean_px"]
    assert {tuple(r["scales"]) for r in record["rows"]} == {(0.9, 1.0, 1.1)}
    assert {(r["n_test"], r["second_stages"]) for r in rows} == {(int(held.sum()), 1)}
    assert all(np.isfinite(r["mean_px"]) and r["predict_fps"] > 0 for r in rows)
    assert record["wall_s"] > 0 and record["settings"]["shifts"] == [0.1]
    # the shift reached the eye stage: its points moved, the nose (first stage) did not
    eye = [k for k in rows[0]["per_keypoint_mean_px"] if k != "nose"]
    assert [rows[0]["per_keypoint_mean_px"][k] for k in eye] != \
        [rows[1]["per_keypoint_mean_px"][k] for k in eye]
    assert rows[0]["per_keypoint_mean_px"]["nose"] == rows[1]["per_keypoint_mean_px"]["nose"]
    assert len(rows[0]["per_frame"]["errors_px"]) == int(held.sum())
    capsys.readouterr()
    assert CROP_SHIFT.main(args) == 2  # an earlier result is kept
    assert "already exists" in _one_error_line(capsys)
    # a folder that is no run, or a run that held nothing out: said before any work
    assert CROP_SHIFT.main(["--run", str(tmp_path), str(data), "--out",
                            str(tmp_path / "x.json")]) == 2
    assert "not a trained run" in _one_error_line(capsys) and not (tmp_path / "x.json").exists()
    import shutil
    shutil.copytree(tmp_path / "run", tmp_path / "all_trained")
    split = tmp_path / "all_trained" / "split.json"
    split.write_text(json.dumps({**json.loads(split.read_text()), "val": []}))
    assert CROP_SHIFT.main(["--run", str(tmp_path / "run"), str(data), "--run",
                            str(tmp_path / "all_trained"), str(data), "--out",
                            str(tmp_path / "x.json")]) == 2
    assert "the run held no frames out" in _one_error_line(capsys)
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(SystemExit):
        CROP_SHIFT.main(["--run", str(tmp_path / "run"), str(data), "--shifts", "0.6"])
    # the box sizes are TEST_SCALES unless given, with flips and without
    assert CROP_SHIFT.main(["--run", str(tmp_path / "run"), str(data), "--shifts", "0",
                            "--scales", "1", "--threads", "1", "--out",
                            str(tmp_path / "one.json"), "--facing", "both"]) == 0
    one = json.loads((tmp_path / "one.json").read_text())["rows"]
    assert [r["scales"] for r in one] == [[1.0]] * 2 and one[0]["mean_px"] != rows[0]["mean_px"]
    # each frame alone, then per video (the names hold a nose and an eye)
    assert [r["facing"] for r in one] == ["frame", "video"] and one[0]["facing_redone"] == 0
    assert rows[0]["facing"] == "video" and all(r["facing_redone"] >= 0 for r in record["rows"])
