"""The training loop, run folders, prediction API, evaluation and CLI on tiny generated data."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from vit_facemap.cli import main
from vit_facemap.dlc import LabeledFrames, read_labels, write_labels
from vit_facemap.errors import DataError, DataWarning, RunExistsError
from vit_facemap.evaluate import evaluate_run
from vit_facemap.models import ModelConfig, build_model
from vit_facemap.predict import load_predictor
from vit_facemap.refine import RefineConfig
from vit_facemap.synthetic import write_synthetic_set
from vit_facemap.train import TrainConfig, fit, keypoint_loss, profile_config

# most tests here evaluate runs on the frames they trained on, as the warning says; one test
# checks the warning itself
pytestmark = pytest.mark.filterwarnings(r"ignore:.*trained on \(its split\.json\)")


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "set"
    write_synthetic_set(folder, n_frames=16, n_videos=2, seed=1, size=(64, 48), p_missing=0.1)
    return folder


def _first_video_apart(folder):
    """The set's frames of its first video (to train on) and of the others (to validate)."""
    frames = read_labels(folder)
    videos = frames.videos
    return frames.subset(videos == videos[0]), frames.subset(videos != videos[0])


def _config(steps=6) -> TrainConfig:
    cfg = profile_config("test")
    cfg.steps = steps
    cfg.num_threads = 1
    return cfg


def _interrupted_cli_run(tmp_path, monkeypatch, config: dict, first: list[str]):
    """A set of 4 videos and a `vit-facemap train` run of it (8 steps, options ``first``)
    interrupted at its second save; returns the set, the run and the command's arguments."""
    data = write_synthetic_set(tmp_path / "set", n_frames=24, n_videos=4, seed=1, size=(64, 48))
    run = tmp_path / "run"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"steps": 8, "num_threads": 1, "keep": "last", **config}))
    args = ["train", "--data", str(data), "--out", str(run), "--profile", "test", "--config",
            str(cfg), "--device", "cpu", "--quiet"]
    _interrupt_at(monkeypatch, "save_weights", 2)
    assert main(args + first) == 130
    monkeypatch.undo()
    return data, run, args


def _interrupt_at(monkeypatch, name: str, call: int) -> None:
    """Make ``vit_facemap.train.<name>`` raise KeyboardInterrupt at its ``call``-th call,
    before doing its work, as Ctrl-C there would."""
    import vit_facemap.train as train_module

    real, calls = getattr(train_module, name), []

    def interrupted(*args):
        calls.append(args)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args)
    monkeypatch.setattr(train_module, name, interrupted)


def test_an_interrupted_command_says_how_to_continue(tmp_path, monkeypatch, capsys):
    # it said only "interrupted", leaving the user to guess that --resume exists
    from vit_facemap.cli import build_parser

    _interrupted_cli_run(tmp_path, monkeypatch, {}, [])
    assert ("vit-facemap train: interrupted; the same command with --resume continues the run"
            in capsys.readouterr().err)
    track = build_parser().parse_args(["track", "run", "v.avi", "--out", "o"])
    assert "--resume" in track.on_interrupt


def test_fit_resume_and_no_overwrite(tiny_set, tmp_path):
    # the loss must cope with missing keypoints
    assert np.isnan(read_labels(tiny_set).keypoints).any()
    tr, va = _first_video_apart(tiny_set)
    run = tmp_path / "run"
    s = fit(_config(4), tr, run, va, device="cpu", progress=False)
    assert s["steps"] == 4 and s["epochs"] == 2  # 8 frames, batch 4: two steps per epoch
    for name in ("config.json", "model.safetensors", "last.pt", "metrics.csv", "runinfo.json",
                 "split.json"):
        assert (run / name).is_file(), name
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and "val_mean_px" in rows[0]
    with pytest.raises(RunExistsError):
        fit(_config(4), tr, run, va, device="cpu", progress=False)
    # resume continues from the saved step up to the new total
    cfg = json.loads((run / "config.json").read_text())
    cfg["train"]["steps"] = 8
    (run / "config.json").write_text(json.dumps(cfg))
    s2 = fit(_config(8), tr, run, va, device="cpu", resume=True, progress=False)
    assert s2["steps"] == 8 and s2["epochs"] == 4
    assert len((run / "metrics.csv").read_text().splitlines()) == 5
    s3 = fit(_config(4), tr, run, None, device="cpu", overwrite=True, progress=False)
    assert s3["steps"] == 4


# with a moving average of the weights too: one not restored would start again from the
# resumed weights, and the saved (averaged) weights would differ
@pytest.mark.parametrize("where,ema", [("save_weights", 0.0), ("_write_metrics", 0.0),
                                       ("save_weights", 0.9)])
def test_an_interrupted_run_resumes_as_if_never_stopped(tiny_set, tmp_path, monkeypatch, where,
                                                        ema):
    from safetensors.torch import load_file

    tr, va = _first_video_apart(tiny_set)
    cfg = _config(12)  # six epochs of two steps, validated every four steps
    cfg.keep, cfg.val_every_steps, cfg.ema = "last", 4, ema
    fit(cfg, tr, tmp_path / "a", va, device="cpu", progress=False)
    _interrupt_at(monkeypatch, where, 3)  # in the third epoch: before its weights, or its row
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tr, tmp_path / "b", va, device="cpu", progress=False)
    monkeypatch.undo()
    fit(cfg, tr, tmp_path / "b", va, device="cpu", resume=True, progress=False)
    a, b = (load_file(tmp_path / x / "model.safetensors") for x in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the same rows, each once, counts as integers
    ma, mb = (pd.read_csv(tmp_path / x / "metrics.csv").drop(columns="train_s") for x in "ab")
    pd.testing.assert_frame_equal(ma, mb)
    assert mb["step"].tolist() == [2, 4, 6, 8, 10, 12]



def test_a_resumed_run_restores_the_gpus_random_state(tiny_set, tmp_path, monkeypatch):
    """last.pt held the CPU's random state but not the GPU's, where drop path draws: a run
    resumed on a GPU trained on other masks. No GPU here: torch.cuda's state is faked."""
    import vit_facemap.train as train_module

    fake, restored = torch.arange(8, dtype=torch.uint8), []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: fake + 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state",
                        lambda state, device: restored.append((state, device)))
    assert torch.equal(train_module.cuda_rng_state("cuda:0"), fake + 1)
    assert train_module.cuda_rng_state("cpu") is None  # a CPU-only machine has none
    train_module.set_cuda_rng_state(fake, "cuda:0")
    train_module.set_cuda_rng_state(None, "cuda:0")  # saved on the CPU, or before this
    train_module.set_cuda_rng_state(fake, "cpu")  # a GPU run resumed on the CPU
    assert len(restored) == 1 and torch.equal(restored[0][0], fake)
    assert restored[0][1] == "cuda:0"
    # through fit: the state saved with the weights is the one restored on --resume
    real_set = train_module.set_cuda_rng_state
    monkeypatch.setattr(train_module, "cuda_rng_state", lambda device: fake)
    monkeypatch.setattr(train_module, "set_cuda_rng_state",
                        lambda state, device: restored.append((state, device)))
    frames = read_labels(tiny_set)
    run = tmp_path / "run"
    _interrupt_at(monkeypatch, "save_weights", 2)
    with pytest.raises(KeyboardInterrupt):
        fit(_config(8), frames, run, device="cpu", progress=False)
    restored.clear()
    assert fit(_config(8), frames, run, device="cpu", resume=True, progress=False)["steps"] == 8
    assert len(restored) == 1 and torch.equal(restored[0][0], fake)
    # a state saved before it held the GPU's resumes as before
    state = torch.load(run / "last.pt", weights_only=False)
    del state["cuda_rng"]
    torch.save(state, run / "last.pt")
    monkeypatch.setattr(train_module, "set_cuda_rng_state", real_set)
    assert fit(_config(8), frames, run, device="cpu", resume=True, progress=False)["steps"] == 8

def test_overwrite_never_loses_the_run_it_replaces(tiny_set, tmp_path, monkeypatch):
    import vit_facemap.train as train_module

    frames = read_labels(tiny_set)
    tr = frames.subset(frames.videos == frames.videos[0])
    run = tmp_path / "run"
    fit(_config(2), tr, run, None, device="cpu", progress=False)
    (run / "notes.txt").write_text("the user's")
    old = {p.name: p.read_bytes() for p in run.iterdir()}

    def backups():
        return sorted(run.glob(".replaced-*"))

    # bad data: refused before anything is moved
    import shutil

    from PIL import Image
    shutil.copytree(tiny_set, tmp_path / "odd")
    odd = read_labels(tmp_path / "odd").subset(frames.videos == frames.videos[0])
    Image.new("L", (80, 60)).save(odd.image_paths[-1])
    with pytest.raises(DataError, match="several sizes"):
        fit(_config(2), odd, run, None, device="cpu", overwrite=True, progress=False)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == old and not backups()

    # a failure after the old files were set aside, before the new run saved any state
    def broken(*args, **kwargs):
        raise DataError("cannot decode image", tmp_path / "x.png")
    monkeypatch.setattr(train_module, "load_inputs", broken)
    with pytest.raises(DataError, match="cannot decode"):
        fit(_config(2), tr, run, None, device="cpu", overwrite=True, progress=False)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == old and not backups()
    monkeypatch.undo()

    # an interruption mid-training: the new run stays resumable, the old one is kept aside
    real_save = train_module.save_weights

    calls = []

    def interrupted(model, path):  # in the second epoch, after the first saved its state
        real_save(model, path)
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(train_module, "save_weights", interrupted)
    with pytest.raises(KeyboardInterrupt), pytest.warns(UserWarning, match="kept in"):
        fit(_config(4), tr, run, None, device="cpu", overwrite=True, progress=False)
    (kept,) = backups()
    assert (kept / "model.safetensors").read_bytes() == old["model.safetensors"]
    assert (run / "config.json").is_file() and (run / "notes.txt").is_file()
    monkeypatch.undo()

    # a finished replacement drops the old files and keeps the user's
    fit(_config(2), tr, run, None, device="cpu", overwrite=True, progress=False)
    assert (run / "notes.txt").read_text() == "the user's"
    # the interrupted replacement's backup was carried over and goes with it: none hidden
    assert not kept.exists() and backups() == []
    # a resumed run that finishes keeps the user's files too
    cfg = json.loads((run / "config.json").read_text())
    cfg["train"]["steps"] = 4
    (run / "config.json").write_text(json.dumps(cfg))
    fit(_config(4), tr, run, None, device="cpu", resume=True, progress=False)
    assert backups() == [] and (run / "notes.txt").is_file()
    with pytest.raises(DataError, match="is a file"):
        fit(_config(2), tr, run / "notes.txt", None, device="cpu", progress=False)


def test_loader_workers_draw_their_own_augmentations(tiny_set, tmp_path, monkeypatch):
    import vit_facemap.train as train_module

    frames = read_labels(tiny_set)
    # every frame labeled alike: batches differ only by their augmentations
    same = np.repeat(np.nan_to_num(frames.keypoints[:1], nan=20.0), len(frames), axis=0)
    frames = LabeledFrames(frames.root, frames.index, same, frames.bodyparts, frames.scorer)
    targets = []
    real_loss = train_module.keypoint_loss

    def recording(out, target, *args):
        targets.append(torch.nan_to_num(target, nan=-1.0).clone())
        return real_loss(out, target, *args)
    monkeypatch.setattr(train_module, "keypoint_loss", recording)
    cfg = _config(8)  # two epochs of four batches, two workers
    cfg.num_workers = 2
    fit(cfg, frames, tmp_path / "run", None, device="cpu", progress=False)
    assert len(targets) == 8
    # no batch repeats another: not the other worker's, not the last epoch's
    assert not any(torch.equal(a, b) for i, a in enumerate(targets) for b in targets[:i])


def test_missing_keypoints_are_masked():
    cfg = ModelConfig(family="hybrid", depth=1, stem_widths=[8, 16, 32], decoder_channels=8,
                      input_w=64, input_h=48, embed_dim=32, num_heads=2)
    model = build_model(cfg, 3)
    x = torch.randn(2, 1, 48, 64)
    target = torch.tensor([[[10.0, 10.0], [np.nan, np.nan], [30.0, 20.0]],
                           [[5.0, 5.0], [np.nan, np.nan], [np.nan, np.nan]]])
    out = model(x)
    out["heatmap"].retain_grad()
    loss = keypoint_loss(out, target, model, sigma=1.0, coord_weight=0.1)
    assert torch.isfinite(loss)
    loss.backward()
    g = out["heatmap"].grad
    assert g[:, 1].abs().max() == 0 and g[1, 2].abs().max() == 0  # no signal from missing ones
    assert g[0, 0].abs().max() > 0
    reg = build_model(ModelConfig(family="vit", head="regression", depth=1, patch_size=16,
                                  input_w=64, input_h=48, embed_dim=32, num_heads=2), 3)
    assert torch.isfinite(keypoint_loss(reg(x), target, reg, 1.0, 0.1))


def test_predictor_api_and_evaluate(tiny_set, tmp_path):
    frames = read_labels(tiny_set)
    run = tmp_path / "run"
    fit(_config(4), frames, run, None, device="cpu", progress=False)
    # three box sizes, no mirrored view, whatever the default views of tiny_set's names
    p = load_predictor(run, device="cpu", flip=False)
    assert p.bodyparts == frames.bodyparts and p.frame_size == (64, 48) and p.channels == 1
    from vit_facemap.images import load_image

    batch = np.stack([load_image(q) for q in frames.image_paths[:3]])
    kp, conf = p.predict(batch)
    assert kp.shape == (3, len(frames.bodyparts), 2) and conf.shape == (3, len(frames.bodyparts))
    assert np.isfinite(kp).all() and (conf >= 0).all() and (conf <= 1).all()
    kp_rgb, _ = p.predict(np.repeat(batch[..., None], 3, axis=-1))
    assert np.allclose(kp, kp_rgb, atol=1e-4)
    # one colour frame without its batch axis passed as 48 gray frames 3 pixels wide
    with pytest.raises(ValueError, match=r"look like one colour frame: add a batch axis"):
        p.predict(np.repeat(batch[0, ..., None], 3, axis=-1))
    # each box size alone, then their mean: what the default predictor returns
    single = [load_predictor(run, device="cpu", scales=(f,), flip=False).predict(batch)
              for f in p.scales]
    assert len(p.scales) > 1 and not np.allclose(single[0][0], single[-1][0])
    assert np.allclose(kp, np.mean([k for k, _ in single], 0), atol=1e-5)
    assert np.allclose(conf, np.mean([c for _, c in single], 0), atol=1e-6)
    for bad in ((), (1.0, 0.0), (float("nan"),)):
        with pytest.raises(ValueError, match="positive box-size factors"):
            load_predictor(run, device="cpu", scales=bad)
    m = evaluate_run(run, tiny_set, tmp_path / "m.json", device="cpu", progress=False)
    saved = json.loads((tmp_path / "m.json").read_text())
    for key in ("mean_px", "median_px", "rmse_px", "pck", "per_keypoint", "n_frames"):
        assert key in saved
    assert saved["n_frames"] == 16
    assert saved["scales"] == list(p.scales)
    videos = read_labels(tiny_set).videos
    assert sorted(saved["per_video"]) == sorted(set(videos.tolist()))
    assert sum(v["n_frames"] for v in saved["per_video"].values()) == 16
    table = read_labels(tmp_path / "m.predictions.csv")
    assert table.likelihood is not None and np.allclose(table.keypoints[:3], kp, atol=1e-6)
    assert m["mean_px"] == pytest.approx(saved["mean_px"])
    # the saved numbers score the written predictions against the hand labels, worked out
    # here by hand: the error of every labeled keypoint, PCK against a tenth of each frame's
    # eye width (the set's median width where a frame lacks one of the two points)
    labels = read_labels(tiny_set)
    assert table.index == labels.index
    err = np.sqrt(((table.keypoints - labels.keypoints) ** 2).sum(-1))
    labeled = ~np.isnan(labels.keypoints).any(-1)
    assert np.isfinite(err[labeled]).all() and 0 < labeled.sum() < labeled.size
    front, back = (labels.bodyparts.index(b) for b in ("eye front", "eye back"))
    width = np.linalg.norm(labels.keypoints[:, front] - labels.keypoints[:, back], axis=-1)
    width = np.where(np.isnan(width), np.nanmedian(width), width)
    assert saved["mean_px"] == pytest.approx(err[labeled].mean(), rel=1e-9)
    assert saved["median_px"] == pytest.approx(np.median(err[labeled]), rel=1e-9)
    assert saved["pck"] == pytest.approx((err <= 0.1 * width[:, None])[labeled].mean())
    # a set with other keypoint names is refused with a clear DataError
    other = read_labels(tiny_set)
    other.bodyparts = [b + "_x" for b in other.bodyparts]
    write_labels(other, tiny_set.parent / "CollectedData_other.csv", overwrite=True)
    (tiny_set.parent / "labeled-data").symlink_to(tiny_set / "labeled-data")
    with pytest.raises(DataError, match="keypoint names differ"):
        evaluate_run(run, tiny_set.parent / "CollectedData_other.csv", None, device="cpu",
                     progress=False)


def test_evaluate_scores_a_known_offset_exactly(tiny_set, tmp_path, monkeypatch):
    """A predictor that returns the hand labels with every odd keypoint moved by (600, 800)
    px: an error of 0 or exactly 1000 px, whatever the frame's PCK threshold."""
    import vit_facemap.predict as predict_module
    from vit_facemap.images import load_image

    labels = read_labels(tiny_set)
    by_image = {load_image(p).tobytes(): k for p, k in zip(labels.image_paths, labels.keypoints,
                                                           strict=True)}
    assert len(by_image) == len(labels)  # every frame tells which labels it has
    offset = np.zeros((len(labels.bodyparts), 2))
    offset[1::2] = (600.0, 800.0)

    class Shifted:
        bodyparts, scales, device = labels.bodyparts, (1.0,), "cpu"

        def predict(self, batch):
            kp = np.stack([np.nan_to_num(by_image[f.tobytes()], nan=5.0) + offset for f in batch])
            return kp, np.full(kp.shape[:2], 0.5)

    monkeypatch.setattr(predict_module, "load_predictor", lambda *a, **k: Shifted())
    m = evaluate_run(tmp_path / "run", tiny_set, tmp_path / "m.json", device="cpu",
                     progress=False)
    labeled = ~np.isnan(labels.keypoints).any(-1)
    n, n_odd = labeled.sum(), labeled[:, 1::2].sum()
    assert 0 < n_odd < n
    assert m["mean_px"] == pytest.approx(1000.0 * n_odd / n)
    assert m["rmse_px"] == pytest.approx(np.sqrt(1000.0**2 * n_odd / n))
    assert m["pck"] == pytest.approx(1 - n_odd / n)
    k = labels.bodyparts[1]
    assert m["per_keypoint"][k]["mean_px"] == pytest.approx(1000.0)
    assert m["per_keypoint"][labels.bodyparts[0]]["mean_px"] == 0.0
    videos = labels.videos
    for v in set(videos.tolist()):
        rows = videos == v
        assert m["per_video"][v]["mean_px"] == pytest.approx(
            1000.0 * labeled[rows, 1::2].sum() / labeled[rows].sum())
    assert json.loads((tmp_path / "m.json").read_text())["pck"] == pytest.approx(m["pck"])
    table = read_labels(tmp_path / "m.predictions.csv")
    np.testing.assert_allclose(table.keypoints, np.nan_to_num(labels.keypoints, nan=5.0)
                               + offset, atol=1e-6)



def _four_frames(tmp_path, blank) -> tuple:
    """A generated set of 4 frames of one video whose labels at ``blank`` (an index of the
    (frames, keypoints, 2) array) are removed, and its labels as read back."""
    from vit_facemap.dlc import find_label_file

    data = write_synthetic_set(tmp_path / "set", n_frames=4, n_videos=1, seed=1, size=(64, 48))
    labels = read_labels(data)
    labels.keypoints[blank] = np.nan
    write_labels(labels, find_label_file(data), overwrite=True)
    return data, read_labels(data)


def _stub_predictor(bodyparts, predict, **attrs):
    """A stand-in for a trained run's predictor: ``predict(batch)`` gives (keypoints,
    confidences)."""
    return type("Stub", (), {"bodyparts": bodyparts, "scales": (1.0,), "device": "cpu",
                             "predict": lambda self, batch: predict(batch), **attrs})()


def _evaluate_with(predictor, data, tmp_path, monkeypatch) -> int:
    """``vit-facemap evaluate`` of ``data`` by ``predictor`` (loading a run patched out), with
    its JSON at tmp_path/m.json."""
    import vit_facemap.predict as predict_module

    monkeypatch.setattr(predict_module, "load_predictor", lambda *a, **k: predictor)
    (tmp_path / "run").mkdir()
    return main(["evaluate", str(tmp_path / "run"), "--data", str(data), "--json",
                 str(tmp_path / "m.json"), "--quiet"])


def test_evaluate_says_how_many_of_its_frames_are_labeled(tmp_path, monkeypatch, capsys):
    """'4 frames: mean ...' from the labels of 3: a frame not labeled yet counts in n_frames
    (its meaning is kept) but no error comes from it."""
    data, labels = _four_frames(tmp_path, np.s_[0])
    zero = _stub_predictor(labels.bodyparts, lambda batch: (
        np.zeros((len(batch), len(labels.bodyparts), 2)), np.zeros((len(batch), 12))))
    with pytest.warns(DataWarning, match="have no labeled keypoint"):
        assert _evaluate_with(zero, data, tmp_path, monkeypatch) == 0
    assert capsys.readouterr().out.startswith("4 frames (3 labeled): mean ")
    saved = json.loads((tmp_path / "m.json").read_text())
    assert (saved["n_frames"], saved["n_labeled_frames"]) == (4, 3)


def test_evaluate_scores_the_other_keypoints_when_one_is_never_labeled(tmp_path, monkeypatch):
    """A held-out set in which nobody labeled one keypoint (out of view in those frames) was
    refused, so a run got no numbers at all; the others are scored and that one is null."""
    data, labels = _four_frames(tmp_path, np.s_[:, -1])
    gone, truth = labels.bodyparts[-1], labels.keypoints

    def shifted(batch):  # every prediction 3 px right of its label: the error is known
        kp = np.nan_to_num(truth[: len(batch)]) + [3.0, 0.0]
        return kp, np.ones(kp.shape[:2])

    with pytest.warns(DataWarning, match=rf"\['{gone}'\] are missing in all 4 frames"):
        assert _evaluate_with(_stub_predictor(labels.bodyparts, shifted), data, tmp_path,
                              monkeypatch) == 0
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["mean_px"] == pytest.approx(3.0)
    assert saved["per_keypoint"][gone]["mean_px"] is None
    assert saved["per_keypoint"][labels.bodyparts[0]]["mean_px"] == pytest.approx(3.0)
    assert saved["n_keypoints_labeled"] == 4 * (len(labels.bodyparts) - 1)


def test_evaluate_warns_of_frames_shaped_unlike_the_training_frames(tmp_path):
    """The crop box scales with the frame in x and y apart: frames of another aspect ratio
    were predicted from a stretched face without a word; frames of the training frames'
    shape at another size are not warned of."""
    import warnings

    from vit_facemap.evaluate import predict_frames

    data = write_synthetic_set(tmp_path / "set", n_frames=3, n_videos=1, seed=1, size=(64, 48))
    frames = read_labels(data)

    def stub(frame_size):
        return _stub_predictor(frames.bodyparts, lambda batch: (
            np.zeros((len(batch), len(frames.bodyparts), 2)), np.ones((len(batch), 1))),
            frame_size=frame_size)

    with pytest.warns(DataWarning, match=r"frames of 64x48 have another aspect ratio than the "
                                         r"run's training frames \(48x48\)"):
        predict_frames(stub((48, 48)), frames)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict_frames(stub((128, 96)), frames)  # the same shape, twice the size
        predict_frames(stub(None), frames)  # a run saved without its frame size


def test_evaluate_refuses_a_set_in_which_no_keypoint_is_labeled(tmp_path, monkeypatch, capsys):
    """A keypoint labeled in no frame is left unscored, but a set with no label at all has
    nothing to score: it was refused so before, and then ended in a TypeError (a null mean
    formatted as a number) after a warning that 'the others are' scored."""
    data, labels = _four_frames(tmp_path, np.s_[:])
    n = len(labels.bodyparts)
    zero = _stub_predictor(labels.bodyparts, lambda batch: (
        np.zeros((len(batch), n, 2)), np.zeros((len(batch), n))))
    assert _evaluate_with(zero, data, tmp_path, monkeypatch) == 2
    assert "none of the run's keypoints is labeled in any of the 4 frames" in _error(capsys)
    assert not (tmp_path / "m.json").exists()


def _error(capsys) -> str:
    """The one line a command printed for a user mistake (no traceback)."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_cli_exit_codes(tiny_set, tmp_path, capsys):
    run = tmp_path / "run"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"steps": 2, "num_threads": 1}))
    args = ["train", "--data", str(tiny_set), "--out", str(run), "--profile", "test",
            "--config", str(cfg), "--device", "cpu", "--quiet"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2  # exists, no --overwrite
    err = _error(capsys)
    assert str(run) in err and "already exists" in err and "--overwrite" in err
    assert main(args + ["--overwrite", "--val-groups", "1"]) == 0
    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r2"),
                 "--profile", "test"]) == 2
    assert str(tmp_path / "nope") in _error(capsys)
    out = tmp_path / "e.json"
    assert main(["evaluate", str(run), "--data", str(tiny_set), "--json", str(out),
                 "--device", "cpu", "--quiet"]) == 0
    res = json.loads(out.read_text())
    assert res["n_frames"] == 16
    # provenance as every result has: device, versions and wall time
    assert {"device", "versions"} <= set(res["provenance"]) and res["provenance"]["wall_s"] > 0
    assert main(["evaluate", str(run), "--data", str(tiny_set), "--json", str(out),
                 "--device", "cpu", "--quiet", "--overwrite", "--scales", "1"]) == 0
    assert json.loads(out.read_text())["scales"] == [1.0]
    assert json.loads(out.read_text())["crop_shift"] == 0.0
    # this run has no crop stage: a shift is ignored with a warning, not recorded as used
    with pytest.warns(RuntimeWarning, match="no second .crop. stage to shift; crop_shift "
                                            "0.05 ignored"):
        assert main(["evaluate", str(run), "--data", str(tiny_set), "--json", str(out),
                     "--device", "cpu", "--quiet", "--overwrite", "--scales", "1",
                     "--crop-shift", "0.05"]) == 0
    assert json.loads(out.read_text())["crop_shift"] == 0.0
    # nor did it train on mirrored faces (its names do not pair): no flip either
    assert json.loads(out.read_text())["flip"] is False
    with pytest.warns(RuntimeWarning, match="trained without flips .*; flip ignored"):
        assert main(["evaluate", str(run), "--data", str(tiny_set), "--json", str(out),
                     "--device", "cpu", "--quiet", "--overwrite", "--scales", "1",
                     "--flip"]) == 0
    assert json.loads(out.read_text())["flip"] is False
    with pytest.raises(SystemExit):  # argparse: a usage error
        main(["evaluate", str(run), "--data", str(tiny_set), "--json", str(out), "--scales", "0,1"])
    with pytest.raises(SystemExit):
        main(["evaluate", str(run), "--data", str(tiny_set), "--json", str(out),
              "--crop-shift", "0.5"])
    assert "expected a share of the crop's side in [0, 0.5)" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--data", str(tiny_set), "--json", str(out)]) == 2
    err = _error(capsys)
    assert str(out) in err and "already exists" in err
    assert main(["evaluate", str(tmp_path / "norun"), "--data", str(tiny_set), "--json",
                 str(tmp_path / "x.json")]) == 2
    assert str(tmp_path / "norun") in _error(capsys)
    # a table under a file was found after predicting, with the metrics written
    assert main(["evaluate", str(run), "--data", str(tiny_set), "--json", str(tmp_path / "y.json"),
                 "--predictions", str(cfg / "p.csv"), "--device", "cpu", "--quiet"]) == 2
    assert f"{cfg} is a file, not a folder" in _error(capsys)
    assert not (tmp_path / "y.json").exists()


def test_cli_config_file_encoding(tiny_set, tmp_path, capsys):
    """A config file that is not UTF-8 was a UnicodeDecodeError traceback; one with a BOM
    (as Notepad saves) was refused as bad JSON."""
    run = tmp_path / "run"
    cfg = tmp_path / "cfg.json"
    args = ["train", "--data", str(tiny_set), "--out", str(run), "--profile", "test",
            "--config", str(cfg), "--device", "cpu", "--quiet"]
    cfg.write_bytes('{"steps": 2, "num_threads": 1, "note": "\u00e9"}'.encode("latin-1"))
    assert main(args) == 2
    err = _error(capsys)
    assert str(cfg) in err and "not UTF-8" in err and not run.exists()
    cfg.write_bytes(b"\xef\xbb\xbf" + json.dumps({"steps": 2, "num_threads": 1}).encode())
    assert main(args) == 0
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 2


def test_train_and_evaluate_a_deeplabcut_project(tiny_set, tmp_path, as_deeplabcut_project):
    """A DeepLabCut project keeps one table per video in labeled-data/<video>/."""
    project = as_deeplabcut_project(tiny_set, tmp_path / "project", ".h5")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"steps": 2, "num_threads": 1}))
    run, out = tmp_path / "run", tmp_path / "e.json"
    assert main(["train", "--data", str(project), "--out", str(run), "--profile", "test",
                 "--config", str(cfg), "--device", "cpu", "--quiet", "--val-groups", "1"]) == 0
    assert main(["evaluate", str(run), "--data", str(project), "--json", str(out),
                 "--device", "cpu", "--quiet"]) == 0
    assert json.loads(out.read_text())["n_frames"] == 16


def test_train_group_by_animal_reads_animals_csv(tiny_set, tmp_path):
    """--group-by animal takes the animals of animals.csv, as DATA.md says, not only names."""
    import shutil

    data = tmp_path / "set"
    shutil.copytree(tiny_set, data)
    videos = sorted(set(read_labels(data).videos))
    (data / "animals.csv").write_text("video,animal\n" + "".join(
        f"{v},mouse{i}\n" for i, v in enumerate(videos)))
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"steps": 2, "num_threads": 1}))
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--profile",
                 "test", "--config", str(cfg), "--device", "cpu", "--quiet",
                 "--group-by", "animal", "--val-groups", "mouse1"]) == 0


def test_val_groups_reports_why_the_split_fails(tmp_path, capsys):
    data = write_synthetic_set(tmp_path / "one", n_frames=4, n_videos=1, seed=0, size=(64, 48))
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--profile",
                 "test", "--device", "cpu", "--quiet", "--val-groups", "1"]) == 2
    err = capsys.readouterr().err
    assert "needs at least 2 groups" in err and "unknown groups" not in err
    # neither a count of groups nor a share of them (1.5 was taken as 1 group)
    two = write_synthetic_set(tmp_path / "two", n_frames=4, n_videos=2, seed=0, size=(64, 48))
    for spec in ("1.5", "inf", "nan", "0"):
        assert main(["train", "--data", str(two), "--out", str(tmp_path / "run"), "--profile",
                     "test", "--device", "cpu", "--quiet", f"--val-groups={spec}"]) == 2
        assert "give a whole number of groups, a fraction" in _error(capsys)
    # as many as there are: scikit-learn's "smaller than the number of samples 2"
    base = ["train", "--data", str(two), "--out", str(tmp_path / "run"), "--profile", "test",
            "--device", "cpu", "--quiet"]
    assert main(base + ["--val-groups", "2"]) == 2
    assert ("the set has 2 videos (synthetic_video00, synthetic_video01); hold out fewer"
            in _error(capsys))
    assert main(base + ["--val-groups", "video9"]) == 2
    assert "the set's videos are ['synthetic_video00', 'synthetic_video01']" in _error(capsys)
    assert not (tmp_path / "run").exists()


def test_cli_resume_keeps_the_runs_split(tmp_path, monkeypatch, capsys):
    data, run, args = _interrupted_cli_run(tmp_path, monkeypatch, {},
                                           ["--seed", "3", "--val-groups", "1"])
    # the split is part of the run from its start
    split = json.loads((run / "split.json").read_text())
    val_video = split["val"][0].split("/")[1]
    other = sorted({i.split("/")[1] for i in split["train"]})[0]
    # options that would split otherwise are refused, before anything is touched
    state = (run / "last.pt").read_bytes()
    capsys.readouterr()
    assert main(args + ["--resume", "--seed", "4"]) == 2
    assert "--seed 4 is not the seed of the run" in _error(capsys)
    assert main(args + ["--resume", "--val-groups", other]) == 2
    assert f"--val-groups {other}" in _error(capsys)
    # flips: the run saved what "auto" decided (no flips for these names and videos), so the
    # same --config resumes and one that turns flips on is another setting
    flips = tmp_path / "flips.json"
    flips.write_text(json.dumps({"steps": 8, "num_threads": 1, "keep": "last",
                                 "augment": {"hflip": 0.5}}))
    on = [str(flips) if a.endswith("cfg.json") else a for a in args]
    assert main(on + ["--resume"]) == 2
    assert "augment.hflip 0.5 (the run's: 0.0)" in _error(capsys)
    assert (run / "last.pt").read_bytes() == state
    # so are other frames given to fit itself
    with pytest.raises(DataError, match="other frames"):
        fit(_config(8), read_labels(data), run, None, device="cpu", resume=True, progress=False)
    # no options: the run's seed and split, validation included
    assert main(args + ["--resume"]) == 0
    summary = json.loads((run / "runinfo.json").read_text())["summary"]
    assert summary["steps"] == 8
    assert summary["val_videos"] == [val_video] and val_video not in summary["train_videos"]
    assert json.loads((run / "split.json").read_text()) == split
    assert main(args + ["--resume", "--val-groups", val_video, "--seed", "3"]) == 0  # the same


def test_cli_resume_of_a_run_from_before_automatic_flips(tmp_path, monkeypatch, capsys):
    # such a run saved the number it was given (0.0) and no pairs; the --profile and
    # --config it started with now say "auto", which is not another setting
    data, run, args = _interrupted_cli_run(tmp_path, monkeypatch, {}, [])
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["augment"]["hflip"] == 0.0 and "hflip_auto" in saved
    saved["train"]["augment"]["flip_pairs"] = []
    del saved["hflip_auto"]
    (run / "config.json").write_text(json.dumps(saved))
    assert main(args + ["--resume"]) == 0
    assert json.loads((run / "runinfo.json").read_text())["summary"]["steps"] == 8


def test_cli_resume_of_a_finished_run_says_nothing_was_left(tmp_path, monkeypatch, capsys):
    # it printed "trained 8 steps in 0 s" and rewrote runinfo.json with this call's time
    data, run, args = _interrupted_cli_run(tmp_path, monkeypatch, {}, [])
    assert main(args + ["--resume"]) == 0
    record = (run / "runinfo.json").read_bytes()
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0
    assert "nothing left to train: the run had finished its 8 steps" in capsys.readouterr().out
    assert (run / "runinfo.json").read_bytes() == record
    # its steps raised, it trains on
    cfg = json.loads((run / "config.json").read_text())
    cfg["train"]["steps"] = 10
    (run / "config.json").write_text(json.dumps(cfg))
    # without the --profile and --config it started with: they now give other settings
    base = ["train", "--data", str(data), "--out", str(run), "--device", "cpu", "--quiet"]
    assert main(base + ["--resume"]) == 0
    assert capsys.readouterr().out.startswith("trained 10 steps")


def test_cli_resume_of_a_finished_run_never_leaves_half_its_record(tmp_path, monkeypatch):
    # runinfo.json, the mark of a finished run, was put back in place: a write cut short
    # (Ctrl-C, a full disk) left half of it, and the run read as unfinished or unreadable
    from pathlib import Path

    import vit_facemap.train as train_module

    data, run, args = _interrupted_cli_run(tmp_path, monkeypatch, {}, [])
    assert main(args + ["--resume"]) == 0
    real_fit, real_write = train_module.fit, Path.write_bytes

    def cut_short(self, data):
        real_write(self, data[: len(data) // 2])
        raise KeyboardInterrupt

    def fit_then_cut(*a, **kw):
        summary = real_fit(*a, **kw)
        monkeypatch.setattr(Path, "write_bytes", cut_short)
        return summary

    monkeypatch.setattr(train_module, "fit", fit_then_cut)
    try:
        main(args + ["--resume"])
    except KeyboardInterrupt:
        pass
    monkeypatch.undo()
    assert json.loads((run / "runinfo.json").read_text())["summary"]["total_steps"] == 8


def test_cli_resume_of_a_finished_two_stage_run_of_an_earlier_version(tmp_path, monkeypatch,
                                                                       capsys):
    # its record, written before total_steps was, counted the first stage's steps alone
    data, run, args = _interrupted_cli_run(tmp_path, monkeypatch,
                                           {"refine": {"share": 0.5, "input_size": 32}}, [])
    assert main(args + ["--resume"]) == 0
    info = json.loads((run / "runinfo.json").read_text())
    assert info["summary"]["refine"]
    del info["summary"]["total_steps"]
    (run / "runinfo.json").write_text(json.dumps(info))
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0
    assert "nothing left to train: the run had finished its 8 steps" in capsys.readouterr().out


def test_resuming_does_not_need_the_weights_the_run_started_from(tmp_path, monkeypatch):
    """The training state replaces the starting weights; the file (a relative path resumed
    from another folder, moved, or a hub download offline) was still required."""
    from vit_facemap.models.weights import save_weights

    start = save_weights(build_model(_config().model, 3), tmp_path / "start.safetensors")
    data, run, args = _interrupted_cli_run(tmp_path, monkeypatch,
                                           {"model": {"weights": str(start)}}, [])
    start.unlink()
    assert main(args + ["--resume"]) == 0
    assert (run / "runinfo.json").is_file()


def test_cli_resume_keeps_the_runs_settings_and_profile(tmp_path, monkeypatch, capsys):
    """--resume continues with the run's settings: a --config or --profile that gave others
    was silently ignored, and runinfo.json named the command line's profile (its default,
    when left out) rather than the run's."""
    data, run, args = _interrupted_cli_run(tmp_path, monkeypatch, {}, [])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"steps": 50, "num_threads": 1, "keep": "last"}))
    base = ["train", "--data", str(data), "--out", str(run), "--device", "cpu", "--quiet",
            "--resume"]
    state = (run / "last.pt").read_bytes()
    capsys.readouterr()
    assert main(base + ["--profile", "test", "--config", str(other)]) == 2
    assert "steps 50 (the run's: 8)" in _error(capsys)
    assert main(base + ["--profile", "full", "--config", str(tmp_path / "cfg.json")]) == 2
    assert "model.depth 8 (the run's: 1)" in _error(capsys)
    assert (run / "last.pt").read_bytes() == state
    # neither given: the profile the run started with, not the default, though an
    # interrupted run has no runinfo.json yet (it recorded None)
    assert not (run / "runinfo.json").exists()
    assert main(base) == 0
    info = json.loads((run / "runinfo.json").read_text())
    assert info["profile"] == "test" and info["settings"]["steps"] == 8
    assert main(args + ["--resume"]) == 0  # the run's own settings: accepted
    assert json.loads((run / "runinfo.json").read_text())["profile"] == "test"


def test_schedule_follows_steps_or_time_whichever_is_further():
    from vit_facemap.train import lr_factor, training_progress

    assert lr_factor(0.0, 0.1) < 0.01 and lr_factor(0.1, 0.1) == pytest.approx(1.0)
    assert lr_factor(0.55, 0.1) == pytest.approx(0.5) and lr_factor(1.0, 0.1) == pytest.approx(0.0)
    cfg = TrainConfig(steps=100, max_minutes=1.0)
    assert training_progress(10, 6.0, cfg) == pytest.approx(0.1)
    # a lead of the clock within CLOCK_SLACK (3% of the budget) does not pace the schedule
    assert training_progress(10, 7.5, cfg) == pytest.approx(0.1)
    assert training_progress(10, 30.0, cfg) == pytest.approx(0.47 / 0.97)  # time budget dominates
    assert training_progress(0, 60.0, cfg) == pytest.approx(1.0)  # and ends at the budget
    assert training_progress(50, 0.0, TrainConfig(steps=100)) == pytest.approx(0.5)


def test_steps_paced_by_the_clock_are_counted(tiny_set, tmp_path, monkeypatch):
    """A run whose learning rate followed the steps throughout says so (0); one whose clock
    ran ahead of its steps counts the steps it paced, which its seed alone does not fix.
    The clock is a fake that moves 15 s per reading: a 1-minute budget of 6 steps (10 s a
    step) is then paced by the clock from the first step on, its lead past the slack."""
    from types import SimpleNamespace

    import vit_facemap.train as train_module

    frames = read_labels(tiny_set)
    summary = fit(_config(6), frames, tmp_path / "steps", None, device="cpu", progress=False)
    assert summary["clock_paced_steps"] == 0 and summary["steps"] == 6
    assert json.loads((tmp_path / "steps" / "runinfo.json").read_text())["summary"][
        "clock_paced_steps"] == 0
    # a time budget the steps stay ahead of: each stage's first step (the loader starting)
    # was counted as clock-paced, before the clock had a slack
    roomy = _config(6)
    roomy.max_minutes = 600.0
    summary = fit(roomy, frames, tmp_path / "roomy", None, device="cpu", progress=False)
    assert summary["clock_paced_steps"] == 0 and summary["steps"] == 6
    readings = iter(range(0, 10**6, 15))
    monkeypatch.setattr(train_module, "time", SimpleNamespace(perf_counter=lambda: next(readings)))
    cfg = _config(6)
    cfg.max_minutes = 1.0
    summary = fit(cfg, frames, tmp_path / "clock", None, device="cpu", progress=False)
    assert summary["clock_paced_steps"] == summary["steps"] and 1 <= summary["steps"] < 6


def test_schedule_stays_at_zero_past_the_end_and_never_starts_at_zero():
    """A time budget can carry progress past 1: the cosine stays at 0 there, it does not
    rise again (the clamp dropped passed every test); the first step learns a little."""
    from vit_facemap.train import lr_factor

    assert lr_factor(1.5, 0.1) == pytest.approx(0.0) and lr_factor(1.9, 0.1) == pytest.approx(0.0)
    assert lr_factor(0.0, 0.1) > 0


def test_missing_keypoints_count_nowhere_in_the_losses():
    """Both heads' losses are the mean over visible keypoints alone: what a network answers
    where the label is missing changes nothing, and the value is the mean of the visible
    ones. The regression head's mean over every keypoint (missing ones' targets read as 0)
    passed every test before, as did an error averaged over x and y instead of summed."""
    from types import SimpleNamespace

    from vit_facemap.train import errors_px

    model = SimpleNamespace(config=SimpleNamespace(input_w=64, input_h=32), stride=4)
    target = torch.tensor([[[16.0, 8.0], [np.nan, np.nan]], [[32.0, 16.0], [48.0, 24.0]]])
    coords = torch.tensor([[[20.0, 8.0], [5.0, 5.0]], [[32.0, 12.0], [48.0, 24.0]]])
    vis = torch.zeros(2, 2)
    loss = keypoint_loss({"coords": coords, "vis": vis}, target, model, 1.0, 0.1)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        vis, torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    # |dx| / 64 + |dy| / 32 of the three visible keypoints: 4/64, 4/32 and 0
    assert float(loss) == pytest.approx((4 / 64 + 4 / 32 + 0) / 3 + 0.1 * float(bce), abs=1e-6)
    moved = coords.clone()
    moved[0, 1] = torch.tensor([60.0, 30.0])
    assert float(keypoint_loss({"coords": moved, "vis": vis}, target, model, 1.0, 0.1)) == \
        pytest.approx(float(loss), abs=1e-6)
    heat = torch.randn(2, 2, 8, 16)
    h1 = keypoint_loss({"heatmap": heat}, target, model, 1.0, 0.1)
    heat2 = heat.clone()
    heat2[0, 1] = torch.randn(8, 16) * 5
    assert float(keypoint_loss({"heatmap": heat2}, target, model, 1.0, 0.1)) == \
        pytest.approx(float(h1), abs=1e-5)
    err = errors_px(np.array([[[3.0, 4.0], [0.0, 0.0]]]), np.array([[[0.0, 0.0], [np.nan, 1.0]]]))
    assert err[0, 0] == pytest.approx(5.0) and np.isnan(err[0, 1])


def test_fit_with_masked_pretraining(tiny_set, tmp_path, monkeypatch):
    import vit_facemap.train as train_module

    frames = read_labels(tiny_set)
    cfg = _config(12)
    cfg.pretrain_share = 0.5
    # pre-training takes its share of the steps: supervised training gets the other half
    s = fit(cfg, frames, tmp_path / "run", None, device="cpu", progress=False)
    assert (s["pretrain_steps"], s["steps"]) == (6, 6)
    assert s["pretrain_s"] > 0 and np.isfinite(s["pretrain_final_loss"])
    # interrupted after its first supervised epoch (4 steps), the run resumes without
    # pre-training again and with what is left of the supervised steps
    _interrupt_at(monkeypatch, "save_weights", 2)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, frames, tmp_path / "run2", None, device="cpu", progress=False)
    monkeypatch.undo()

    def again(*args, **kwargs):
        raise AssertionError("pre-trained again on resume")
    monkeypatch.setattr(train_module, "pretrain_backbone", again)
    s2 = fit(cfg, frames, tmp_path / "run2", None, device="cpu", resume=True, progress=False)
    assert (s2["pretrain_steps"], s2["steps"]) == (6, 6) and s2["pretrain_s"] > 0


def test_predictor_compile_pads_batches_and_falls_back(tiny_set, tmp_path, monkeypatch):
    import torch

    from vit_facemap.images import load_image

    frames = read_labels(tiny_set)
    run = tmp_path / "run"
    cfg = _config(2)
    cfg.refine = RefineConfig(share=0.5, auto="eye", input_size=32, copies=1)  # an eye stage too
    fit(cfg, frames, run, None, device="cpu", progress=False)
    batch = np.stack([load_image(q) for q in frames.image_paths[:5]])
    eager = load_predictor(run, device="cpu", flip=False)
    assert len(eager.refiners) == 1
    kp, conf = eager.predict(batch)

    seen = []

    def fake_compile(model, **kw):  # records the batch sizes the "compiled" graph gets
        def forward(x):
            seen.append(x.shape[0])
            return model(x)
        return forward

    monkeypatch.setattr(torch, "compile", fake_compile)
    p = load_predictor(run, device="cpu", flip=False)
    assert p.compile(batch_size=4) and p.compiled and p.compile_s is not None
    assert p.refiners[0].compiled  # the eye stage is compiled with the first
    seen.clear()
    kp2, conf2 = p.predict(batch)
    # both stages, each with all box sizes in one pass: 5 frames x 3 sizes in batches of 4,
    # only the last one padded
    assert seen == [4] * 2 * -(-5 * len(p.scales) // 4)
    assert np.allclose(kp, kp2, atol=1e-4) and np.allclose(conf, conf2, atol=1e-5)

    def broken(model, **kw):
        raise RuntimeError("no C compiler")

    monkeypatch.setattr(torch, "compile", broken)
    q = load_predictor(run, device="cpu", flip=False)
    with pytest.warns(RuntimeWarning, match="eager mode"):
        assert not q.compile()
    assert not q.compiled and "no C compiler" in q.compile_error
    assert np.allclose(q.predict(batch)[0], kp, atol=1e-6)

    # a second stage that fails to compile stays eager on its own, and the first says so
    r = load_predictor(run, device="cpu", flip=False)

    def refiner_broken(model, **kw):
        if model is r.refiners[0].model:
            raise RuntimeError("unsupported op")
        return fake_compile(model)

    monkeypatch.setattr(torch, "compile", refiner_broken)
    with pytest.warns(RuntimeWarning, match="a second stage stays in eager mode"):
        assert r.compile(batch_size=4)
    assert r.compiled and not r.refiners[0].compiled
    assert "second stage 1: RuntimeError: unsupported op" in r.compile_error
    assert np.allclose(r.predict(batch)[0], kp, atol=1e-4)


def test_runs_decode_with_the_window_of_their_sigma(tiny_set, tmp_path):
    frames = read_labels(tiny_set)
    cfg = _config(2)
    cfg.sigma = 2.0
    fit(cfg, frames, tmp_path / "run", None, device="cpu", progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["decode_radius"] == 4 and load_predictor(tmp_path / "run", "cpu").radius == 4
    # a run saved before the window followed sigma decodes as it did then
    del saved["decode_radius"]
    (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
    assert load_predictor(tmp_path / "run", "cpu").radius == 2


def test_validation_scores_frames_of_other_sizes_in_their_own_pixels(tiny_set, tmp_path):
    from PIL import Image

    from vit_facemap.images import load_image
    from vit_facemap.transforms import rescale_points

    train = read_labels(tiny_set)  # 64 x 48
    val = read_labels(write_synthetic_set(tmp_path / "big", n_frames=8, n_videos=1, seed=5,
                                          size=(128, 96)))
    keypoints = val.keypoints.copy()
    for i in range(4):  # half the validation frames at the training size, half at twice it
        Image.fromarray(load_image(val.image_paths[i])).resize((64, 48)).save(val.image_paths[i])
        keypoints[i] = rescale_points(keypoints[i], (128, 96), (64, 48))
    val = LabeledFrames(val.root, val.index, keypoints, val.bodyparts, val.scorer)
    cfg = _config(2)
    cfg.keep = "last"
    fit(cfg, train, tmp_path / "run", val, device="cpu", progress=False)
    logged = pd.read_csv(tmp_path / "run" / "metrics.csv")["val_mean_px"].iloc[-1]
    # the predictor maps each frame back through the box of its own size
    predictor = load_predictor(tmp_path / "run", "cpu", scales=(1.0,), flip=False)
    errors = []
    for path, true in zip(val.image_paths, val.keypoints, strict=True):
        kp, _ = predictor.predict(load_image(path))
        errors.append(np.sqrt(((kp[0] - true) ** 2).sum(-1)))
    assert logged == pytest.approx(np.nanmean(errors), abs=1e-3)


def test_validation_interval_and_best_weights(tiny_set, tmp_path):
    import pandas as pd

    frames = read_labels(tiny_set)
    videos = sorted(set(frames.videos))
    train, val = frames.subset(frames.videos == videos[0]), frames.subset(frames.videos == videos[1])
    cfg = _config(steps=3 * (len(train) // 4))  # three epochs of batch 4
    cfg.val_every_steps = 1000
    fit(cfg, train, tmp_path / "run", val, device="cpu", progress=False)
    m = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert len(m) == 3
    # with an interval longer than the run only the end is validated (the last epoch, and the
    # one before it when that one projects to end training)
    assert m["val_mean_px"].isna().iloc[0] and m["val_mean_px"].notna().iloc[-1]
    assert (tmp_path / "run" / "model.safetensors").is_file()
    cfg.val_every_steps = 1
    fit(cfg, train, tmp_path / "run2", val, device="cpu", progress=False)
    assert pd.read_csv(tmp_path / "run2" / "metrics.csv")["val_mean_px"].notna().all()


def _one_slip(frames: LabeledFrames) -> tuple[LabeledFrames, np.ndarray]:
    """``frames`` with 'eye top' of the first video's first frame clicked where that video's
    nose tip sits, and the rows of that video."""
    rows = np.flatnonzero(frames.videos == frames.videos[0])
    kp = frames.keypoints.copy()
    kp[rows[0], 0] = np.nanmedian(kp[rows, frames.bodyparts.index("nose tip")], axis=0)
    return LabeledFrames(frames.root, frames.index, kp, frames.bodyparts), rows


def test_fit_can_leave_out_slipped_labels(tiny_set, tmp_path):
    frames = read_labels(tiny_set)
    bad, rows = _one_slip(frames)
    cfg = _config(2)
    cfg.mask_slips = True
    with pytest.warns(UserWarning, match="left out 1 training label"):
        fit(cfg, bad, tmp_path / "masked", device="cpu", progress=False)
    saved = json.loads((tmp_path / "masked" / "config.json").read_text())
    assert [(m["frame"], m["keypoint"], m["near"]) for m in saved["masked_labels"]] == [
        (frames.index[rows[0]], "eye top", "nose tip")]
    assert saved["train"]["mask_slips"] is True
    fit(_config(2), bad, tmp_path / "kept", device="cpu", progress=False)
    assert "masked_labels" not in json.loads((tmp_path / "kept" / "config.json").read_text())


def test_a_resumed_run_leaves_out_the_slipped_labels_it_left_out(tiny_set, tmp_path, monkeypatch):
    """--resume without --config hands fit the default profile's settings: whether slipped
    labels were masked followed those (mask_slips off), not the run's own, so the rest of a
    mask_slips run trained on the labels it had left out."""
    from safetensors.torch import load_file

    bad, _ = _one_slip(read_labels(tiny_set))
    cfg = _config(8)
    cfg.mask_slips, cfg.keep = True, "last"
    with pytest.warns(UserWarning, match="left out 1 training label"):
        fit(cfg, bad, tmp_path / "a", device="cpu", progress=False)
        _interrupt_at(monkeypatch, "save_weights", 2)
        with pytest.raises(KeyboardInterrupt):
            fit(cfg, bad, tmp_path / "b", device="cpu", progress=False)
        monkeypatch.undo()
        fit(_config(8), bad, tmp_path / "b", device="cpu", resume=True, progress=False)
    a, b = (load_file(tmp_path / x / "model.safetensors") for x in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_validation_frames_without_labels_are_refused(tmp_path, capsys):
    """Held out on a video not labeled yet, every epoch scored NaN, never below the best so
    far: the run said "trained" and left no model.safetensors."""
    data = write_synthetic_set(tmp_path / "set", n_frames=16, n_videos=2, seed=1, size=(64, 48))
    frames = read_labels(data)
    kp = frames.keypoints.copy()
    kp[frames.videos == frames.videos[1]] = np.nan
    write_labels(LabeledFrames(frames.root, frames.index, kp, frames.bodyparts, frames.scorer),
                 data / "CollectedData_synthetic.csv", overwrite=True)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"steps": 2, "num_threads": 1}))
    with pytest.warns(DataWarning, match="8 frame.s. have no labeled keypoint"):
        assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--profile",
                     "test", "--config", str(cfg), "--device", "cpu", "--quiet",
                     "--val-groups", frames.videos[1]]) == 2
    assert (f"the validation frames (videos ['{frames.videos[1]}']) have no labeled keypoint"
            in _error(capsys))
    assert not (tmp_path / "run").exists()


def test_a_run_started_without_mixed_precision_resumes_with_it(tiny_set, tmp_path, monkeypatch):
    """Started on the CPU (its gradient scaler off, saved as an empty state) and resumed on a
    GPU, where mixed precision turns the scaler on: refused as a corrupt training state. No
    GPU here: the resumed run gets an enabled CPU scaler, as a GPU run gets a CUDA one."""
    frames = read_labels(tiny_set)
    _interrupt_at(monkeypatch, "save_weights", 2)
    with pytest.raises(KeyboardInterrupt):
        fit(_config(8), frames, tmp_path / "run", device="cpu", progress=False)
    monkeypatch.undo()
    real = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: real("cpu", enabled=True))
    assert fit(_config(8), frames, tmp_path / "run", device="cpu", resume=True,
               progress=False)["steps"] == 8


def test_a_run_stopped_before_its_first_epoch_can_be_started_again(tiny_set, tmp_path,
                                                                   monkeypatch, capsys):
    """Ctrl-C while the frames load left config.json and split.json: --resume said "no
    last.pt", the same command again "already exists", a dead end short of --overwrite."""
    args = ["train", "--data", str(tiny_set), "--out", str(tmp_path / "run"), "--profile",
            "test", "--device", "cpu", "--quiet"]
    _interrupt_at(monkeypatch, "load_inputs", 1)
    assert main(args) == 130
    monkeypatch.undo()
    assert not (tmp_path / "run").exists()
    assert main(args) == 0


def test_clip_zero_means_no_clipping(tiny_set, tmp_path):
    """clip >= 0 is allowed, and 0 scaled every gradient to zero: the model learnt nothing.
    0 is no clipping, as a threshold no gradient reaches is."""
    from safetensors.torch import load_file

    frames = read_labels(tiny_set)
    for name, clip in (("off", 0.0), ("huge", 1e9)):
        cfg = _config(4)
        cfg.clip = clip
        fit(cfg, frames, tmp_path / name, device="cpu", progress=False)
    a, b = (load_file(tmp_path / x / "model.safetensors") for x in ("off", "huge"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_with_ema_saves_and_scores_the_averaged_weights(tiny_set, tmp_path):
    from safetensors.torch import load_file

    from vit_facemap.evaluate import predict_frames

    tr, va = _first_video_apart(tiny_set)
    for ema in (0.0, 0.9):
        cfg = _config(6)
        cfg.keep, cfg.ema = "last", ema
        fit(cfg, tr, tmp_path / str(ema), va, device="cpu", progress=False)
    off, on = (torch.load(tmp_path / x / "last.pt", weights_only=False) for x in ("0.0", "0.9"))
    assert off["ema"] is None
    saved = load_file(tmp_path / "0.9" / "model.safetensors")
    assert all(torch.equal(saved[k], on["ema"][k]) for k in saved)
    assert not all(torch.equal(saved[k], on["model"][k]) for k in saved)
    # the same training steps (the average is kept aside, not trained)
    assert all(torch.equal(off["model"][k], on["model"][k]) for k in saved)
    # the validation row is the averaged weights' error: predicted again from the saved file
    # each frame alone and its nose read anywhere, as validation predicts
    predictor = load_predictor(tmp_path / "0.9", "cpu", scales=(1.0,), flip=False)
    predictor.nose_offsets = None
    kp, _, _, _ = predict_frames(predictor, va, facing="frame")
    err = np.nanmean(np.linalg.norm(kp - va.keypoints, axis=-1))
    last = pd.read_csv(tmp_path / "0.9" / "metrics.csv")["val_mean_px"].dropna().iloc[-1]
    assert err == pytest.approx(last, rel=1e-4)


@pytest.mark.parametrize("settings,problem", [
    ({"steps": "abc"}, "steps='abc' .expected int"),
    ({"batch_size": 0}, "batch_size >= 1"),
    ({"lr": None}, "lr=None"),
    ({"max_minutes": -1}, "max_minutes > 0"),
    ({"keep": "worst"}, "keep must be"),
    ({"model": {"depth": "x"}}, "depth='x'"),
    ({"model": {"channels": 2}}, "1 .gray. or 3"),
    ({"augment": {"hflip": 2}}, "hflip is a probability"),
    ({"refine": {"copies": 1.5}}, "copies=1.5"),
    ({"lr": float("nan")}, "lr > 0"),
    ({"steps": True}, "steps=True"),
    ({"ema": 1.0}, "0 <= ema < 1"),
    # refused only when pre-training started, after the run folder was written
    ({"pretrain_share": 0.5, "model": {"family": "fmnet", "input_w": 64, "input_h": 48}},
     "pretrain_share: masked pre-training needs a ViT or CNN backbone, not fmnet"),
])
def test_bad_training_settings_are_named(settings, problem):
    with pytest.raises(ValueError, match=problem):
        TrainConfig.from_dict(settings)


def test_settings_computed_with_numpy_are_numbers():
    c = TrainConfig(steps=np.int64(10), lr=np.float32(1e-3), max_minutes=np.float64(2.5))
    assert c.steps == 10
    with pytest.raises(ValueError, match="model=.*expected .*ModelConfig"):
        TrainConfig(model={"depth": 2})


def test_corrupt_run_folder_gives_a_clear_error(tiny_set, tmp_path):
    import shutil

    frames = read_labels(tiny_set)
    run = tmp_path / "run"
    fit(_config(2), frames, run, None, device="cpu", progress=False)
    cases = {
        "config.json": ["{not json", "{}", json.dumps({"train": {"steps": "x"}, "bodyparts": []})],
        "model.safetensors": [b"\x00" * 100],
    }
    for name, contents in cases.items():
        for content in contents:
            bad = tmp_path / "bad"
            shutil.rmtree(bad, ignore_errors=True)
            shutil.copytree(run, bad)
            (bad / name).write_bytes(content if isinstance(content, bytes) else content.encode())
            with pytest.raises(DataError, match=name.replace(".", r"\.")):
                load_predictor(bad, device="cpu")
    # weights of a run with other keypoints
    other = tmp_path / "other"
    shutil.copytree(run, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["bodyparts"] = cfg["bodyparts"][:2]
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="not written for the model"):
        load_predictor(other, device="cpu")
    # a truncated training state refuses to resume, naming the file
    (run / "last.pt").write_bytes(b"\x00" * 200)
    with pytest.raises(DataError, match=r"last\.pt.*cannot resume"):
        fit(_config(4), frames, run, None, device="cpu", resume=True, progress=False)


@pytest.mark.parametrize("content", ["{}", "[]", '{"bodyparts": [], "train": {"steps": "x"}}'])
def test_resuming_a_run_whose_config_cannot_be_read_names_the_file(tmp_path, capsys, content):
    """A hand-edited or truncated config.json failed --resume with a KeyError traceback."""
    data = write_synthetic_set(tmp_path / "set", n_frames=8, n_videos=2, seed=1, size=(64, 48))
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run), "--profile", "test", "--device",
            "cpu", "--quiet"]
    (tmp_path / "cfg.json").write_text(json.dumps({"steps": 2, "num_threads": 1}))
    assert main(args + ["--config", str(tmp_path / "cfg.json")]) == 0
    (run / "config.json").write_text(content)
    assert main(args + ["--resume"]) == 2
    assert "config.json: cannot read the run to resume" in _error(capsys)


@pytest.mark.parametrize("mapping", ["left out", None, [1, 2]])
def test_resuming_a_run_whose_crop_box_was_edited_names_the_file(tmp_path, capsys, mapping):
    """The rest of config.json read, a crop box ("mapping") left out or not an object
    failed --resume with a KeyError or TypeError traceback."""
    data = write_synthetic_set(tmp_path / "set", n_frames=8, n_videos=2, seed=1, size=(64, 48))
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run), "--device", "cpu", "--quiet"]
    (tmp_path / "cfg.json").write_text(json.dumps({"steps": 2, "num_threads": 1}))
    assert main(args + ["--profile", "test", "--config", str(tmp_path / "cfg.json")]) == 0
    saved = json.loads((run / "config.json").read_text())
    if mapping == "left out":
        del saved["mapping"]
    else:
        saved["mapping"] = mapping
    (run / "config.json").write_text(json.dumps(saved))
    assert main(args + ["--resume"]) == 2  # the run's own settings: --profile left out
    assert "config.json: cannot read the run to resume" in _error(capsys)


def test_evaluate_checks_every_output_before_predicting(tiny_set, tmp_path, capsys):
    frames = read_labels(tiny_set)
    run = tmp_path / "run"
    fit(_config(2), frames, run, None, device="cpu", progress=False)
    out = tmp_path / "ev"
    out.mkdir()
    (out / "p.csv").write_text("mine")
    base = ["evaluate", str(run), "--data", str(tiny_set), "--device", "cpu", "--quiet"]
    # the table exists: refused, and no JSON is left behind
    assert main(base + ["--json", str(out / "m.json"), "--predictions", str(out / "p.csv")]) == 2
    err = _error(capsys)
    assert "p.csv" in err and "already exists" in err
    assert not (out / "m.json").exists() and (out / "p.csv").read_text() == "mine"
    with pytest.raises(DataError, match="unsupported suffix"):
        evaluate_run(run, tiny_set, out / "m.json", out / "p.txt", device="cpu", progress=False)
    with pytest.raises(DataError, match="is a folder"):
        evaluate_run(run, tiny_set, out, device="cpu", progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["p.csv"]


def test_setting_a_run_aside_is_all_or_nothing(tiny_set, tmp_path, monkeypatch):
    from pathlib import Path

    from vit_facemap.train import prepare_run_dir

    frames = read_labels(tiny_set)
    run = tmp_path / "run"
    fit(_config(2), frames, run, None, device="cpu", progress=False)
    old = {p.name: p.read_bytes() for p in run.iterdir()}
    real, calls = Path.replace, []

    def flaky(self, target):
        calls.append(self)
        if len(calls) == 3:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, target)
    monkeypatch.setattr(Path, "replace", flaky)
    with pytest.raises(PermissionError):
        prepare_run_dir(run, overwrite=True, resume=False)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in run.iterdir()} == old  # no .replaced-* left either


def test_evaluate_never_writes_over_its_inputs(tiny_set, tmp_path, capsys):
    """--overwrite replaces earlier results, never the labels scored or the run's files."""
    import shutil

    data = tmp_path / "set"
    shutil.copytree(tiny_set, data)
    run = tmp_path / "run"
    fit(_config(2), read_labels(data), run, None, device="cpu", progress=False)
    labels = data / "CollectedData_synthetic.csv"
    kept = {p: p.read_bytes() for p in [labels, *run.iterdir()]}
    base = ["evaluate", str(run), "--data", str(data), "--device", "cpu", "--quiet",
            "--overwrite"]
    same = tmp_path / "same.csv"
    for extra, problem in (
            (["--json", str(tmp_path / "m.json"), "--predictions", str(labels)], "is an input"),
            (["--json", str(run / "model.safetensors")], "files of the run folder"),
            (["--json", str(tmp_path / "m.json"), "--predictions",
              str(data / "CollectedData_pred.csv")], "files of the labeled set"),
            (["--json", str(same), "--predictions", str(same)], "both --json and --predictions")):
        assert main(base + extra) == 2, extra
        assert problem in capsys.readouterr().err
    assert {p: p.read_bytes() for p in kept} == kept
    assert not same.exists() and not (tmp_path / "m.json").exists()
    assert not (data / "CollectedData_pred.csv").exists()
    # a new file beside the run's is no harm (evaluations are often kept with their run),
    # and --overwrite replaces it as any earlier result
    for _ in range(2):
        assert main(base + ["--json", str(run / "eval.json")]) == 0
    assert {p: p.read_bytes() for p in kept} == kept


def test_an_unfinished_run_is_used_with_one_warning(tiny_set, tmp_path, recwarn):
    """A run interrupted before training ended (no runinfo.json) still predicts, but says so."""
    from vit_facemap.errors import DataWarning

    run = tmp_path / "run"
    fit(_config(2), read_labels(tiny_set), run, None, device="cpu", progress=False)
    assert not [w for w in recwarn if issubclass(w.category, DataWarning)]
    (run / "runinfo.json").unlink()  # as Ctrl-C mid-training leaves it
    recwarn.clear()
    assert main(["evaluate", str(run), "--data", str(tiny_set), "--json",
                 str(tmp_path / "m.json"), "--device", "cpu", "--quiet"]) == 0
    said = [str(w.message) for w in recwarn if issubclass(w.category, DataWarning)
            and "did not finish" in str(w.message)]
    assert len(said) == 1 and str(run) in said[0] and "--resume" in said[0]


def test_train_config_must_be_a_json_object(tiny_set, tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text("[1, 2]")
    assert main(["train", "--data", str(tiny_set), "--out", str(tmp_path / "run"), "--profile",
                 "test", "--config", str(cfg), "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: bad training config: give a JSON object" in err and "not a list" in err
    assert not (tmp_path / "run").exists()


def test_a_seed_out_of_range_is_refused_before_any_file_is_written(tiny_set, tmp_path, capsys):
    # numpy refused seed -1 with a traceback after config.json and split.json were written
    base = ["train", "--data", str(tiny_set), "--profile", "test", "--device", "cpu", "--quiet"]
    with pytest.raises(SystemExit) as exit_:
        main(base + ["--out", str(tmp_path / "neg"), "--seed", "-1"])
    assert exit_.value.code == 2
    assert "argument --seed: must be an integer from 0 to 2147483647, got '-1'" in (
        capsys.readouterr().err)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"seed": 2**32}))
    assert main(base + ["--out", str(tmp_path / "big"), "--config", str(cfg)]) == 2
    assert "training seed must be an integer from 0 to 2147483647, got 4294967296" in (
        capsys.readouterr().err)
    with pytest.raises(SystemExit):
        main(["classify", "train", "--data", str(tmp_path), "--out", str(tmp_path / "c"),
              "--seed", "-1"])
    assert "argument --seed: must be an integer" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in ("neg", "big", "c"))
    assert TrainConfig(seed=np.int64(3)).seed == 3  # numpy's integers are integers


def test_runs_saved_before_a_new_check_still_load(tiny_set, tmp_path):
    """Checks of a new run's settings (the seed's range) were made when a saved config was
    read, so a run an earlier version trained with seed 3000000000 no longer loaded; a
    model this version refuses to build (a heatmap stride that is not whole) said so with a
    traceback."""
    from vit_facemap.train import load_run

    run = tmp_path / "run"
    fit(_config(2), read_labels(tiny_set), run, device="cpu", progress=False)
    saved = json.loads((run / "config.json").read_text())
    saved["train"]["seed"] = 3_000_000_000
    (run / "config.json").write_text(json.dumps(saved))
    model, got = load_run(run)
    assert got["train"]["seed"] == 3_000_000_000
    with pytest.raises(DataError, match="training seed must be an integer"):
        fit(TrainConfig.from_dict(saved["train"]), read_labels(tiny_set), tmp_path / "new",
            device="cpu", progress=False)  # a new run with it is refused
    assert not (tmp_path / "new").exists()
    saved["train"]["model"].update(family="vit", patch_size=14, n_up=2)
    (run / "config.json").write_text(json.dumps(saved))
    with pytest.raises(DataError, match="cannot rebuild the run's model .*train it again"):
        load_run(run)


def test_refused_runs_leave_no_empty_folder(tiny_set, tmp_path, capsys, monkeypatch):
    base = ["train", "--data", str(tiny_set), "--profile", "test", "--quiet"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(base + ["--out", str(tmp_path / "gpu"), "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err and not (tmp_path / "gpu").exists()
    assert main(base + ["--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err and not (tmp_path / "none").exists()


def test_a_model_its_settings_cannot_build_is_refused_before_the_run_is_written(
        tiny_set, tmp_path, capsys):
    """A CNN's or ViT's input size is checked when the model is built, which came after the
    run folder got its config.json and split.json: the command printed a traceback and left
    a folder that a second try was refused as 'already exists'."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": {"family": "cnn", "input_w": 40, "input_h": 48}}))
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_set), "--out", str(run), "--profile", "test",
                 "--config", str(cfg), "--device", "cpu", "--quiet"]) == 2
    assert "model: input 40x48 must be a multiple of the CNN's stride 16" in capsys.readouterr().err
    assert not run.exists()
    # a pretrained weights file that is missing (or does not fit) the same
    cfg.write_text(json.dumps({"model": {"weights": str(tmp_path / "nope.safetensors")}}))
    assert main(["train", "--data", str(tiny_set), "--out", str(run), "--profile", "test",
                 "--config", str(cfg), "--device", "cpu", "--quiet"]) == 2
    assert f"{tmp_path / 'nope.safetensors'}: weights file not found" in capsys.readouterr().err
    assert not run.exists()


def test_two_stage_run_reports_the_steps_of_both_stages(tiny_set, tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"steps": 4, "num_threads": 1, "refine": {
        "share": 0.5, "auto": "eye", "input_size": 32, "copies": 1}}))
    assert main(["train", "--data", str(tiny_set), "--out", str(tmp_path / "run"), "--profile",
                 "test", "--config", str(cfg), "--device", "cpu", "--quiet",
                 "--val-groups", "1"]) == 0
    said = capsys.readouterr().out
    assert "trained 4 steps (2 first stage, second stage eye 2)" in said
    # the number is the first stage's, which a user read as the finished model's error
    assert "(first stage: best validation mean error" in said
    assert "'vit-facemap evaluate' scores the finished model" in said


def test_a_second_overwrite_keeps_the_run_the_first_interrupted_one_replaced(
        tiny_set, tmp_path, monkeypatch):
    # an interrupted --overwrite leaves its unfinished run and the old one set aside; a
    # second --overwrite must carry that set-aside run over, not hide it under a new one
    import vit_facemap.train as train_module

    frames = read_labels(tiny_set)
    tr = frames.subset(frames.videos == frames.videos[0])
    run = tmp_path / "run"
    fit(_config(2), tr, run, None, device="cpu", progress=False)
    old = {p.name: p.read_bytes() for p in run.iterdir()}
    real_save, calls = train_module.save_weights, []

    def interrupted(model, path):  # in the second epoch, after the first saved its state
        real_save(model, path)
        calls.append(path)
        if len(calls) % 2 == 0:
            raise KeyboardInterrupt
    monkeypatch.setattr(train_module, "save_weights", interrupted)
    for _ in range(2):  # interrupted twice: the first run stays, named in the warning
        with pytest.raises(KeyboardInterrupt), pytest.warns(UserWarning, match="kept in") as said:
            fit(_config(4), tr, run, None, device="cpu", overwrite=True, progress=False)
        (kept,) = sorted(run.glob(".replaced-*"))
        assert str(kept) in str(said[0].message)
        assert {p.name: p.read_bytes() for p in kept.iterdir()} == old
    monkeypatch.undo()

    # a failure before the new run saved state: the first run is put back in place
    def broken(*args, **kwargs):
        raise DataError("cannot decode image", tmp_path / "x.png")
    monkeypatch.setattr(train_module, "load_inputs", broken)
    with pytest.raises(DataError, match="cannot decode"):
        fit(_config(2), tr, run, None, device="cpu", overwrite=True, progress=False)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == old
    monkeypatch.undo()

    # interrupted once more, then an --overwrite that finishes: nothing hidden is left
    monkeypatch.setattr(train_module, "save_weights", interrupted)
    with pytest.raises(KeyboardInterrupt), pytest.warns(UserWarning, match="kept in"):
        fit(_config(4), tr, run, None, device="cpu", overwrite=True, progress=False)
    monkeypatch.undo()
    fit(_config(2), tr, run, None, device="cpu", overwrite=True, progress=False)
    assert not list(run.glob(".replaced-*")) and (run / "runinfo.json").is_file()


def test_overwrite_after_a_finished_run_keeps_it_beside_an_older_backup(tiny_set, tmp_path):
    # a folder an earlier version left: an orphaned set-aside run beside a finished one; the
    # finished run is the last complete one, never dropped in favour of the older backup
    import shutil

    frames = read_labels(tiny_set)
    tr = frames.subset(frames.videos == frames.videos[0])
    run = tmp_path / "run"
    fit(_config(2), tr, run, None, device="cpu", progress=False)
    shutil.copytree(run, tmp_path / "orphan")
    (tmp_path / "orphan").rename(run / ".replaced-orphan")
    (run / "model.safetensors").write_bytes(b"the finished run's weights")
    with pytest.raises(DataError, match="cannot decode"):
        with pytest.MonkeyPatch.context() as mp:
            def broken(*args, **kwargs):
                raise DataError("cannot decode image", tmp_path / "x.png")
            mp.setattr("vit_facemap.train.load_inputs", broken)
            fit(_config(2), tr, run, None, device="cpu", overwrite=True, progress=False)
    assert (run / "model.safetensors").read_bytes() == b"the finished run's weights"


def test_resuming_a_run_without_split_json_that_validated_needs_its_val_groups(tmp_path,
                                                                              monkeypatch,
                                                                              capsys):
    # a run an earlier version started has no split.json (it was written at the end); left
    # without --val-groups, its resume would train on the frames it validated on
    data, run, args = _interrupted_cli_run(tmp_path, monkeypatch, {"val_every_steps": 1},
                                           ["--val-groups", "1"])
    split = json.loads((run / "split.json").read_text())
    (run / "split.json").unlink()  # as the earlier version left it
    assert "val_mean_px" in (run / "metrics.csv").read_text()
    state = (run / "last.pt").read_bytes()
    assert main(args + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "--val-groups" in err and "--group-by" in err and "split.json" in err
    assert (run / "last.pt").read_bytes() == state and not (run / "split.json").exists()
    # given as the first run was: resumed on its own split, validation included
    assert main(args + ["--resume", "--val-groups", "1"]) == 0
    assert json.loads((run / "split.json").read_text()) == split
    rows = pd.read_csv(run / "metrics.csv")
    assert rows["val_mean_px"].notna().all()


def test_fit_summary_counts_the_steps_of_every_stage(tiny_set, tmp_path):
    # total_steps: what the command prints and the benchmark records, counted once in fit
    cfg = _config(4)
    cfg.refine = RefineConfig(share=0.5, auto="eye", input_size=32, copies=1)
    summary = fit(cfg, read_labels(tiny_set), tmp_path / "run", None, device="cpu",
                  progress=False)
    assert summary["total_steps"] == summary["steps"] + summary["refine"]["eye"]["steps"] == 4
    saved = json.loads((tmp_path / "run" / "runinfo.json").read_text())["summary"]
    assert saved["total_steps"] == 4


@pytest.mark.parametrize("stride", [4, 16])
def test_heatmap_cells_map_to_the_input_pixels_they_cover(stride):
    """Training's target (input pixels -> cells -> Gaussian) decodes back to the same input
    pixel; cell j covers input pixels [j*s, (j+1)*s), so its centre is j*s + (s-1)/2."""
    from vit_facemap.models.heads import gaussian_targets
    from vit_facemap.train import decode, heatmap_to_input, input_to_heatmap

    w, h = 32, 24  # heatmap cells; the input is w*stride x h*stride pixels
    # by hand: the first cell's centre, the input's centre, the last cell's centre
    s = stride
    assert heatmap_to_input(torch.tensor([0.0, (w - 1) / 2, w - 1]), s).tolist() == [
        (s - 1) / 2, (w * s - 1) / 2, w * s - 1 - (s - 1) / 2]
    points = torch.tensor([[0.31, 0.42], [0.5, 0.5], [0.6137, 0.3071], [0.25, 0.7]])
    points = points * torch.tensor([w * s, h * s]) + torch.tensor([0.5, -0.5])  # off the grid
    cells = input_to_heatmap(points[None], s)
    target = gaussian_targets(cells, torch.ones(1, len(points)), (h, w), sigma=1.0)
    # a window wide enough to hold the whole Gaussian: no truncation bias, only the mapping
    xy, _ = decode({"heatmap": torch.log(target.clamp_min(1e-30))}, s, radius=6)
    assert (xy[0] - points).abs().max() < 0.05
    # a Gaussian centred on cell (13, 9) decodes to that cell's centre in input pixels
    one = gaussian_targets(torch.tensor([[[13.0, 9.0]]]), torch.ones(1, 1), (h, w), sigma=1.0)
    xy, _ = decode({"heatmap": torch.log(one.clamp_min(1e-30))}, s, radius=6)
    assert torch.allclose(xy[0, 0], torch.tensor([13 * s + (s - 1) / 2, 9 * s + (s - 1) / 2]),
                          atol=1e-3)


def test_fit_uses_its_thread_count_and_restores_the_callers(tiny_set, tmp_path, monkeypatch):
    import vit_facemap.train as train_module

    frames = read_labels(tiny_set)
    cfg = _config(2)
    caller = 3 if torch.get_num_threads() != 3 else 2
    torch.set_num_threads(caller)
    seen = []
    real_loss = train_module.keypoint_loss

    def recording(*args):
        seen.append(torch.get_num_threads())
        return real_loss(*args)
    monkeypatch.setattr(train_module, "keypoint_loss", recording)
    fit(cfg, frames, tmp_path / "run", None, device="cpu", progress=False)
    assert seen == [1, 1] and torch.get_num_threads() == caller
    # ... also when the run stops with an error (here: interrupted in its first step)

    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(train_module, "keypoint_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, frames, tmp_path / "run2", None, device="cpu", progress=False)
    assert torch.get_num_threads() == caller


def test_overwrite_leaves_what_other_commands_set_aside_in_the_run(tiny_set, tmp_path):
    """track --overwrite into a run folder sets its results aside there too; a retrain of the
    run neither adopts nor deletes them."""
    run = tmp_path / "run"
    fit(_config(2), read_labels(tiny_set), run, None, device="cpu", progress=False)
    theirs = run / ".replaced-abc"
    theirs.mkdir()
    (theirs / "vid_vit-facemap.csv").write_text("tracked")
    fit(_config(2), read_labels(tiny_set), run, None, device="cpu", progress=False,
        overwrite=True)
    assert (theirs / "vid_vit-facemap.csv").read_text() == "tracked"


def test_a_run_stopped_before_its_second_stages_is_not_finished(tiny_set, tmp_path):
    from vit_facemap.train import is_finished

    run = tmp_path / "run"
    cfg = _config(2)
    cfg.refine = RefineConfig(share=0.5, auto="eye", input_size=32, copies=1)
    fit(cfg, read_labels(tiny_set), run, None, device="cpu", progress=False)
    assert is_finished(run)
    info = json.loads((run / "runinfo.json").read_text())
    # what stage 1 writes before its second stages start
    info["summary"] = {k: v for k, v in info["summary"].items()
                       if k not in ("total_steps", "refine")}
    (run / "runinfo.json").write_text(json.dumps(info))
    import shutil

    shutil.rmtree(run / "refine")
    assert not is_finished(run)


@pytest.mark.parametrize("section, over, said", [
    ("model", {"model": {"dept": 2}}, "unknown model settings ['dept']"),
    ("augment", {"augment": {"rotat": 5}}, "unknown augment settings ['rotat']"),
    ("refine", {"refine": {"shar": 0.5}}, "unknown refine settings ['shar']"),
    ("model", {"model": 6}, "'model' must be a JSON object of settings, got int"),
])
def test_a_misspelt_config_key_in_a_section_is_named_with_its_section(
        tiny_set, tmp_path, capsys, section, over, said):
    # was "ModelConfig.__init__() got an unexpected keyword argument 'dept'"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(over))
    assert main(["train", "--data", str(tiny_set), "--out", str(tmp_path / "run"), "--profile",
                 "test", "--config", str(cfg), "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: bad training config: {said}" in err and "__init__" not in err
    assert not (tmp_path / "run").exists()


def test_evaluate_warns_of_frames_the_run_trained_on(tiny_set, tmp_path, recwarn):
    # evaluating a run on the set it trained on gave its training frames' errors as the
    # model's, with no word
    import shutil

    from vit_facemap.dlc import find_label_file
    from vit_facemap.errors import DataWarning

    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_set), "--out", str(run), "--profile", "test",
                 "--device", "cpu", "--quiet", "--val-groups", "1"]) == 0
    split = json.loads((run / "split.json").read_text())
    frames = read_labels(tiny_set)
    evaluate = ["evaluate", str(run), "--device", "cpu", "--quiet", "--scales", "1", "--json"]
    assert main(evaluate + [str(tmp_path / "all.json"), "--data", str(tiny_set)]) == 0
    said = [str(w.message) for w in recwarn if issubclass(w.category, DataWarning)
            and "trained on" in str(w.message)]
    assert said == [f"{tiny_set}: {len(split['train'])} of its {len(frames)} frames are frames "
                    f"{run} trained on (its split.json); their errors flatter the model: "
                    "evaluate on frames it did not train on (such as the videos held out by "
                    "train --val-groups)"]
    recwarn.clear()
    held = tmp_path / "held"  # the held-out video alone: nothing to warn of
    shutil.copytree(tiny_set, held)
    keep = [i for i, name in enumerate(frames.index) if name in set(split["val"])]
    write_labels(read_labels(held).subset(keep), find_label_file(held), overwrite=True)
    assert main(evaluate + [str(tmp_path / "held.json"), "--data", str(held)]) == 0
    assert not [w for w in recwarn if "trained on" in str(w.message)]



def test_evaluate_warns_of_other_frames_of_videos_the_run_trained_on(tiny_set, tmp_path,
                                                                     recwarn):
    # further frames of a training video, near-duplicates of the frames it trained on, were
    # scored as unseen frames without a word
    import shutil

    from vit_facemap.dlc import find_label_file

    frames = read_labels(tiny_set)
    halves = {}
    half = len(frames) // 2  # the first four frames of each of the two videos, then the others
    for name, rows in (("trained", range(half)), ("other", range(half, len(frames)))):
        halves[name] = tmp_path / name
        shutil.copytree(tiny_set, halves[name])
        write_labels(frames.subset(list(rows)), find_label_file(halves[name]), overwrite=True)
    run = tmp_path / "run"
    assert main(["train", "--data", str(halves["trained"]), "--out", str(run), "--profile",
                 "test", "--device", "cpu", "--quiet"]) == 0
    assert main(["evaluate", str(run), "--device", "cpu", "--quiet", "--scales", "1", "--json",
                 str(tmp_path / "m.json"), "--data", str(halves["other"])]) == 0
    said = [str(w.message) for w in recwarn if "trained on" in str(w.message)]
    videos = ", ".join(sorted(set(frames.videos)))
    assert said == [f"{halves['other']}: 8 of its 8 frames are other frames of videos {run} "
                    f"trained on ({videos}): near-duplicates of its training frames, their "
                    "errors flatter the model: evaluate on videos it did not train on"]

def test_a_data_warning_prints_as_one_line_of_the_command():
    # it printed as Python's "/.../commands/train.py:97: DataWarning: ..." followed by the
    # package's line of code that warned ("  frames = load_set(args.data, decode=False)")
    import subprocess
    import sys

    code = ("import warnings\nfrom vit_facemap.errors import DataWarning, run_reporting\n"
            "def command():\n"
            "    warnings.warn('set: 2 frames have no labels', DataWarning)\n"
            "    warnings.warn('other', UserWarning)\n"
            "before = warnings.formatwarning\n"
            "run_reporting('vit-facemap train', command)\n"
            # the format is the command's alone: it leaked into everything after it
            "assert warnings.formatwarning is before\n")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stderr.splitlines()
    assert err[0] == "vit-facemap train: warning: set: 2 frames have no labels"
    assert "UserWarning: other" in err[1]  # others keep Python's format


def test_frames_of_two_sizes_are_refused_naming_the_videos_of_each(tiny_set, tmp_path, capsys):
    # a project of two cameras was told the sizes alone, not which videos are which
    import shutil

    from PIL import Image

    data = tmp_path / "set"
    shutil.copytree(tiny_set, data)
    frames = read_labels(data)
    small, large = sorted(set(map(str, frames.videos)))
    for path in frames.subset(frames.videos == large).image_paths:
        Image.new("L", (80, 60)).save(path)
    with pytest.warns(DataWarning, match="frames come in 2 sizes"):
        assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--profile",
                     "test", "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert (f"several sizes [(64, 48), (80, 60)] (64x48: videos ['{small}']; 80x60: videos "
            f"['{large}']); the tracker needs one size") in err



def test_prediction_uses_mixed_precision_only_when_the_run_trained_with_it(tiny_set, tmp_path,
                                                                          monkeypatch):
    """A run trained with amp false was predicted, and validated, under CUDA autocast all the
    same. No GPU here: autocast is recorded, and the predictor's tensors stay on the CPU."""
    import contextlib

    import vit_facemap.train as train_module
    from vit_facemap.predict import KeypointPredictor

    seen = []

    def autocast(device_type, enabled=True):
        seen.append(enabled)
        return contextlib.nullcontext()
    monkeypatch.setattr(torch, "autocast", autocast)

    class Net(torch.nn.Module):
        stride = 1

        def forward(self, x):
            return {"coords": torch.zeros(len(x), 2, 2), "vis": torch.zeros(len(x), 2)}

    for train, expected in (({"amp": False}, False), ({"amp": True}, True), (None, True)):
        cfg = {"bodyparts": ["a", "b"], **({"train": train} if train else {})}
        p = KeypointPredictor(Net(), cfg, "cpu")
        p.device = "cuda"  # as on a GPU, without moving tensors to one
        monkeypatch.setattr(p, "_to_device", torch.from_numpy)
        seen.clear()
        p._run(np.zeros((3, 1, 8, 8), np.float32))
        assert seen == [expected], train
    seen.clear()
    train_module.inference_autocast("cuda", amp=False), train_module.inference_autocast("cpu")
    assert seen == [False, False]
    # the validation during training: given the run's amp
    asked = []
    real = train_module.inference_autocast
    monkeypatch.setattr(train_module, "inference_autocast",
                        lambda device, amp=True: (asked.append(amp), real(device, amp))[1])
    frames = read_labels(tiny_set)
    cfg = _config(4)
    cfg.amp = False
    fit(cfg, frames.subset(range(12)), tmp_path / "run", val_frames=frames.subset(range(12, 16)),
        device="cpu", progress=False)
    assert asked and not any(asked)
