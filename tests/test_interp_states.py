"""Pupil-state labels, class-folder sets and the classify command on tiny generated data."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from vit_facemap.classifier import FacialStateClassifier, classification_metrics, profile_config
from vit_facemap.cli import main
from vit_facemap.dlc import LabeledFrames, write_labels
from vit_facemap.errors import DataError, DataWarning, RunExistsError
from vit_facemap.states import (
    pupil_states,
    read_image_set,
    read_measures,
    write_generated_state_set,
    write_pupil_state_set,
)

BODYPARTS = ["nose", "leftpupil", "dorsalpupil", "rightpupil", "ventralpupil",
             "lefteyelid", "dorsaleyelid", "righteyelid", "ventraleyelid"]


def frame(pupil: float) -> np.ndarray:
    # eye 40 px wide centred at (60, 40); a round pupil of diameter `pupil`
    r = pupil / 2
    return np.array([[10, 40], [60 - r, 40], [60, 40 - r], [60 + r, 40], [60, 40 + r],
                     [40, 40], [60, 30], [80, 40], [60, 50]], float)


@pytest.fixture(scope="module")
def dlc_set(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("dlc")
    pupils = [6.0, 9.9, 10.1, 12.0, 14.0, 16.0]  # ratios .15 .2475 .2525 .30 .35 .40
    index = [f"labeled-data/Glaucus2022-03-281/img{i}.png" for i in range(3)] + \
            [f"labeled-data/FG0032023-03-118/img{i}.png" for i in range(3)]
    for rel in index:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((80, 120), 100, np.uint8)).save(root / rel)
    frames = LabeledFrames(root, index, np.stack([frame(p) for p in pupils]), BODYPARTS)
    write_labels(frames, root / "CollectedData_test.csv")
    return root, frames


def test_pupil_state_thresholds(dlc_set):
    _, frames = dlc_set
    states = pupil_states(frames)
    # 14 / 40 = 0.35 exactly is neither (strictly above 0.35 is dilated)
    assert list(states) == ["constricted", "constricted", "", "", "", "dilated"]


def test_write_pupil_state_set_and_read_back(dlc_set, tmp_path):
    root, _ = dlc_set
    out = tmp_path / "pupil"
    s = write_pupil_state_set(root, out)
    assert s.classes == ["constricted", "dilated"]
    assert np.bincount(s.labels).tolist() == [2, 1]
    assert sorted(set(s.groups)) == ["FG003", "Glaucus"]  # animals, not sessions
    np.testing.assert_allclose(s.eyes[0], [60, 40, 40])
    assert (out / "regions.csv").is_file()
    with pytest.raises(RunExistsError):
        write_pupil_state_set(root, out)
    assert len(write_pupil_state_set(root, out, overwrite=True)) == len(s)  # ours: replaced
    # a user's own class-folder set holds a groups.csv too: it was deleted whole
    mine = tmp_path / "mine"
    for cls in ("open", "closed"):
        (mine / cls).mkdir(parents=True)
        (mine / cls / "a.png").write_bytes((out / s.names[0]).read_bytes())
    (mine / "groups.csv").write_text("image,group\nopen/a.png,m1\nclosed/a.png,m2\n")
    with pytest.raises(DataError, match="not a class-folder set written by vit-facemap"):
        write_pupil_state_set(root, mine, overwrite=True)
    assert sorted(p.name for p in mine.rglob("*")) == ["a.png", "a.png", "closed", "groups.csv",
                                                       "open"]
    # groups from a regex instead of the table
    s2 = read_image_set(out, group_regex=r"/([A-Za-z]+)")
    assert sorted(set(s2.groups)) == ["FG", "Glaucus"]


def test_make_pupil_set_refuses_swapped_thresholds(dlc_set, tmp_path, capsys):
    # --constricted-below 0.35 --dilated-above 0.25: frames of ratio .30 were written as
    # dilated, though below the constricted threshold given
    root, frames = dlc_set
    with pytest.raises(DataError, match=r"constricted threshold \(0.35\) is above the dilated "
                                        r"one \(0.25\)"):
        pupil_states(frames, 0.35, 0.25)
    assert main(["classify", "make-pupil-set", str(root), str(tmp_path / "pupil"),
                 "--constricted-below", "0.35", "--dilated-above", "0.25"]) == 2
    assert "give --constricted-below at most --dilated-above" in capsys.readouterr().err
    assert not (tmp_path / "pupil").exists()
    assert list(pupil_states(frames, 0.3, 0.3)) == ["constricted"] * 3 + ["", "dilated", "dilated"]


def test_make_pupil_set_groups_by_the_animals_of_animals_csv(dlc_set, tmp_path):
    # two sessions of one animal that the session names do not tell apart: groups.csv gave
    # each its own group, and group CV trained on one session and tested on the other
    import csv
    import shutil

    root = tmp_path / "labels"
    shutil.copytree(dlc_set[0], root)
    (root / "animals.csv").write_text("video,animal\nGlaucus2022-03-281,mouseA\n"
                                      "FG0032023-03-118,mouseA\n")
    s = write_pupil_state_set(root, tmp_path / "pupil")
    assert set(s.groups.tolist()) == {"mouseA"}
    with open(tmp_path / "pupil" / "measures.csv") as fh:
        assert {r["group"] for r in csv.DictReader(fh)} == {"mouseA"}


def test_make_pupil_set_never_writes_over_the_labeled_set_it_reads(tmp_path):
    # a generated set holds synthetic.json, which passed as a class-folder set of ours: with
    # --overwrite the labeled set was deleted, then its first frame was "missing"
    from vit_facemap.synthetic import write_synthetic_set

    root = write_synthetic_set(tmp_path / "set", n_frames=4, n_videos=1, size=(96, 72),
                               layout="schroeder")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    for out in (root, tmp_path):  # the set's own folder, or one holding it
        for overwrite in (False, True):
            with pytest.raises(DataError, match="holds the labeled set .* an input of this"):
                write_pupil_state_set(root, out, overwrite=overwrite)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_make_pupil_set_refuses_an_out_that_is_a_file(tmp_path):
    # it said "pass --overwrite", and with --overwrite "[Errno 20] Not a directory"
    from vit_facemap.synthetic import write_synthetic_set

    root = write_synthetic_set(tmp_path / "set", n_frames=4, n_videos=1, size=(96, 72),
                               layout="schroeder")
    note = tmp_path / "notes.txt"
    note.write_text("mine")
    for out in (note, note / "pupils"):
        for overwrite in (False, True):
            with pytest.raises(DataError, match="OUT needs a folder, but .*is a file"):
                write_pupil_state_set(root, out, overwrite=overwrite)
    assert note.read_text() == "mine"


def test_read_image_set_errors(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        read_image_set(tmp_path / "nope")
    (tmp_path / "only").mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "only" / "a.png")
    with pytest.raises(DataError, match="at least two class folders"):
        read_image_set(tmp_path)
    (tmp_path / "other").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "other" / "b.png")
    (tmp_path / "groups.csv").write_text("image,group\nonly/a.png,m1\n")
    with pytest.raises(DataError, match="1 image.* have no row, e.g. other/b.png"):
        read_image_set(tmp_path)
    (tmp_path / "groups.csv").write_text("picture,animal\n")
    with pytest.raises(DataError, match="needs columns"):
        read_image_set(tmp_path)
    bad_tables = {
        "image,group\nonly/a.png,m1\nother/b.png,\n": "have no group",  # an empty group
        "image,group\nonly/a.png,m1\nother/b.png,m2\nonly/a.png,m3\n": "two different rows",
        "image,group\nonly/a.png,m\xf61\nother/b.png,m2\n": "not UTF-8",
    }
    for text, problem in bad_tables.items():
        (tmp_path / "groups.csv").write_bytes(text.encode("latin-1"))
        with pytest.raises(DataError, match=f"groups.csv: .*{problem}"):
            read_image_set(tmp_path)
    (tmp_path / "groups.csv").write_text("image,group\nonly/a.png,m1\nother/b.png,m2\n"
                                         "other/gone.png,m2\n")
    with pytest.warns(DataWarning, match="1 row.* name no image of the set, e.g. other/gone.png"):
        assert list(read_image_set(tmp_path).groups) == ["m1", "m2"]
    # a row repeated exactly is one row, not an unmatched one
    (tmp_path / "groups.csv").write_text("image,group\nonly/a.png,m1\nother/b.png,m2\n"
                                         "only/a.png,m1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image_set(tmp_path)
    # no eye box (an eyelid point unlabeled) is NaN, as the package's own writer puts it
    (tmp_path / "eyes.csv").write_text("image,x,y,width\nonly/a.png,nan,nan,nan\n"
                                       "other/b.png,1,1,1\n")
    assert np.isnan(read_image_set(tmp_path).eyes[0]).all()
    (tmp_path / "eyes.csv").write_text("image,x,y,width\nonly/a.png,4,4,-3\n"
                                       "other/b.png,1,1,1\n")
    with pytest.raises(DataError, match="eyes.csv: eye box of only/a.png needs .* width > 0"):
        read_image_set(tmp_path)
    (tmp_path / "eyes.csv").unlink()
    (tmp_path / "measures.csv").write_text("image,pupil\nelsewhere/c.png,0.3\n")
    with pytest.raises(DataError, match="measures.csv: no row names an image"):
        read_measures(read_image_set(tmp_path))


def test_a_group_regex_whose_group_takes_no_part_is_refused(gen_set):
    # a group for video00's images only: the other videos' images were all group None,
    # merged into one animal "None"
    with pytest.raises(DataError, match=r"synthetic_video0[1-9]_img\d+.png: --group-regex .* "
                                        "without its first group taking part"):
        read_image_set(gen_set.root, group_regex=r"(video00)?_img")
    s = read_image_set(gen_set.root, group_regex=r"(video\d+)_img")
    assert set(s.groups.tolist()) == {g.removeprefix("synthetic_") for g in gen_set.groups}


def test_a_table_row_names_its_own_image_only(tmp_path):
    """A row with a folder names that image: another image of the same file name (another
    animal's, in another class folder) does not take its group or eye box."""
    from PIL import Image

    for rel in ("constricted/img001.png", "dilated/img001.png", "dilated/img002.png"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / rel)
    (tmp_path / "groups.csv").write_text("image,group\nconstricted/img001.png,mouseA\n"
                                         "dilated/img002.png,mouseB\n")
    with pytest.raises(DataError, match=r"groups.csv: 1 image.* have no row, "
                                        "e.g. dilated/img001.png"):
        read_image_set(tmp_path)
    (tmp_path / "groups.csv").unlink()
    (tmp_path / "eyes.csv").write_text("image,x,y,width\nconstricted/img001.png,1,2,3\n"
                                       "dilated/img002.png,4,5,6\n")
    with pytest.warns(DataWarning, match="1 image.* have no row, e.g. "
                                         "dilated/img001.png"):
        s = read_image_set(tmp_path)
    np.testing.assert_array_equal(s.eyes, [[1, 2, 3], [np.nan] * 3, [4, 5, 6]])
    # a bare file name names the one image of that name; of two, neither
    (tmp_path / "groups.csv").write_text("image,group\nimg001.png,mouseA\nimg002.png,mouseB\n")
    with pytest.raises(DataError, match="2 image.* have no row, "
                                        "e.g. constricted/img001.png"):
        read_image_set(tmp_path)
    (tmp_path / "constricted" / "img001.png").rename(tmp_path / "constricted" / "img003.png")
    (tmp_path / "groups.csv").write_text("image,group\nconstricted/img003.png,mouseA\n"
                                         "img001.png,mouseB\nimg002.png,mouseB\n")
    (tmp_path / "eyes.csv").unlink()
    assert list(read_image_set(tmp_path).groups) == ["mouseA", "mouseB", "mouseB"]


def test_table_rows_written_with_dot_slash_name_their_images(tmp_path):
    """``find .`` writes ./dilated/d0.png: the same image as dilated/d0.png, in either table."""
    from PIL import Image

    for rel in ("constricted/c0.png", "dilated/d0.png"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / rel)
    (tmp_path / "groups.csv").write_text("image,group\n./constricted/c0.png,mouseA\n"
                                         "dilated//d0.png,mouseB\n")
    (tmp_path / "eyes.csv").write_text("image,x,y,width\n./constricted/c0.png,1,2,3\n"
                                       "./dilated/d0.png,4,5,6\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = read_image_set(tmp_path)
    assert list(s.groups) == ["mouseA", "mouseB"]
    np.testing.assert_array_equal(s.eyes, [[1, 2, 3], [4, 5, 6]])
    (tmp_path / "groups.csv").write_text("image,group\n./constricted/c0.png,mouseA\n"
                                         "constricted/c0.png,mouseB\ndilated/d0.png,mouseB\n")
    with pytest.raises(DataError, match="constricted/c0.png has two different rows"):
        read_image_set(tmp_path)


def test_metrics_by_hand():
    m = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["a", "b"],
                               np.array(["x", "x", "y", "y"]))
    assert m["accuracy"] == 0.75 and m["balanced_accuracy"] == 0.75
    assert m["confusion"] == [[1, 1], [0, 2]]
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert m["per_group"]["y"]["accuracy"] == 1.0


def test_per_group_scores_by_hand():
    # animal "a" holds one state and is called right throughout: a perfect macro-F1, not
    # half of one for the state it does not have
    m = classification_metrics(np.array([0, 0, 0, 0, 1, 1]), np.array([0, 0, 0, 0, 1, 0]),
                               ["a", "b"], np.array(["a", "a", "a", "b", "b", "b"]))
    assert m["per_group"]["a"]["macro_f1"] == 1.0
    assert m["per_group"]["b"]["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_macro_f1_averages_the_classes_present():
    """An animal of one state with 9 of its 10 frames right has that state's F1 (18/19) as
    macro-F1, not half of it; so has a set of one state, pooled."""
    t = np.array([0] * 10 + [0, 1] * 5)
    p = np.array([0] * 9 + [1] + [0, 1] * 5)
    m = classification_metrics(t, p, ["constricted", "dilated"], np.array(["A"] * 10 + ["B"] * 10))
    assert m["per_group"]["A"]["macro_f1"] == pytest.approx(18 / 19)
    assert m["per_group"]["A"]["classes_present"] == ["constricted"]
    assert m["per_group"]["B"]["classes_present"] == ["constricted", "dilated"]
    # pooled, both states: 14 of 15 constricted right, the 15th called dilated
    assert m["macro_f1"] == pytest.approx((2 * 14 / (2 * 14 + 1) + 2 * 5 / (2 * 5 + 1)) / 2)
    one = classification_metrics(np.ones(8, int), np.ones(8, int), ["constricted", "dilated"])
    assert one["macro_f1"] == 1.0 and one["classes_present"] == ["dilated"]
    assert one["confusion"] == [[0, 0], [0, 8]]  # the matrix keeps every class


def test_hog_features_are_dolenseks():
    """8 orientations, 32-pixel cells, blocks of one cell, square-root transform: a 128-pixel
    view gives 4 x 4 cells of 8 orientations."""
    from dataclasses import asdict

    from skimage.feature import hog

    from vit_facemap.hog import HogConfig, hog_features, hog_grid_shape

    assert asdict(HogConfig()) == {"orientations": 8, "pixels_per_cell": 32,
                                   "cells_per_block": 1, "transform_sqrt": True,
                                   "block_norm": "L2-Hys"}
    # a dark disk on a brighter ramp: noise would fill every orientation alike, which the
    # block norm's clipping evens out whatever the transform
    y, x = np.mgrid[0:128, 0:128] / 128
    image = (np.where((x - 0.4) ** 2 + (y - 0.55) ** 2 < 0.08, 30, 220) + 20 * x).astype(np.uint8)
    feats = hog_features(image[None])
    assert feats.shape == (1, 4 * 4 * 8) and hog_grid_shape(128, 128) == (4, 4)
    np.testing.assert_allclose(feats[0], hog(image, orientations=8, pixels_per_cell=(32, 32),
                                             cells_per_block=(1, 1), transform_sqrt=True,
                                             block_norm="L2-Hys"), rtol=1e-6)
    clf = FacialStateClassifier(profile_config("test", model="hog-rf", crop="frame"), ["a", "b"])
    assert clf.inputs(clf.crops([np.zeros((72, 96), np.uint8)])).shape == (1, 128)


@pytest.fixture(scope="module")
def gen_set(tmp_path_factory):
    return write_generated_state_set(tmp_path_factory.mktemp("gen") / "set", 16, n_videos=2,
                                     size=(96, 72))


def test_classifier_sizes_must_tile_the_view():
    # a 60-pixel view in 8-pixel patches: a patch grid saw the top-left 56 pixels (its maps
    # then stretched over all 60), a conv stem crashed on its 64th token; a 100-pixel HOG
    # view left 4 pixels without cells
    for kw, said in ((dict(image_size=60, stem="patch"), "image_size 60 .* patch_size 8; use 56 or 64"),
                     (dict(image_size=60, stem="conv"), "image_size 60 .* patch_size 8; use 56 or 64"),
                     (dict(patch_size=6, stem="conv"), "patch_size 6: .*power of two; use 4 or 8"),
                     (dict(model="hog-rf", hog_size=100), "hog_size 100 .*32-pixel .*; use 96 or 128"),
                     (dict(model="hog-rf", hog_size=20), "hog_size 20 .*; use 32$")):
        with pytest.raises(ValueError, match=said):
            profile_config("test", **kw)
    profile_config("test", image_size=48, patch_size=6, stem="patch")  # a patch: any size


def test_classifier_save_load_roundtrip(gen_set, tmp_path):
    from vit_facemap.classifier import load_frames

    frames = load_frames(gen_set.paths)
    for model in ("vit", "hog-rf"):
        clf = FacialStateClassifier(profile_config("test", model=model), gen_set.classes)
        clf.fit(frames, gen_set.labels, gen_set.eyes, progress=False)
        p = clf.predict_proba(frames)
        assert p.shape == (16, 2) and np.allclose(p.sum(1), 1)
        clf.save(tmp_path / model)
        again = FacialStateClassifier.load(tmp_path / model)
        np.testing.assert_allclose(again.predict_proba(frames), p, atol=1e-5)
    # corrupt files of a saved run: one line naming the run, not a library traceback
    import shutil

    from vit_facemap.classifier import load_vit_weights
    for model, name in (("vit", "model.safetensors"), ("hog-rf", "model.joblib")):
        bad = tmp_path / f"bad-{model}"
        shutil.copytree(tmp_path / model, bad)
        (bad / name).write_bytes(b"\x00" * 64)
        with pytest.raises(DataError, match=f"bad-{model}: cannot load the trained model"):
            FacialStateClassifier.load(bad)
    with pytest.raises(DataError, match="model.joblib: cannot read weights"):
        load_vit_weights(torch.nn.Linear(1, 1), tmp_path / "bad-hog-rf" / "model.joblib")
    # a saved ViT run starts another ViT (--init-weights): every layer, the head as well
    from vit_facemap.classifier import make_vit

    saved = FacialStateClassifier.load(tmp_path / "vit")
    fresh = make_vit(saved.config, len(saved.classes))
    load_vit_weights(fresh, tmp_path / "vit" / "model.safetensors")
    for k, v in saved.vits[0][0].state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k


@pytest.mark.parametrize("crop", ["eye", "frame"])
def test_the_forest_predicts_from_the_features_it_was_trained_on(gen_set, crop, monkeypatch):
    """An image's HOG features are the same when the forest learns from it and when it is
    asked about it."""
    from sklearn.ensemble import RandomForestClassifier

    import vit_facemap.classifier as classifier

    seen = {}

    class Spy(RandomForestClassifier):
        def fit(self, X, y, *args, **kwargs):
            seen["fit"] = np.array(X)
            return super().fit(X, y, *args, **kwargs)

        def predict_proba(self, X):
            seen["predict"] = np.array(X)
            return super().predict_proba(X)
    monkeypatch.setattr(classifier, "RandomForestClassifier", Spy)
    frames = classifier.load_frames(gen_set.paths)
    clf = FacialStateClassifier(profile_config("test", model="hog-rf", crop=crop),
                                gen_set.classes)
    clf.fit(frames, gen_set.labels, gen_set.eyes, progress=False)
    clf.predict_proba(frames, gen_set.eyes if crop == "eye" else None)
    np.testing.assert_array_equal(seen["fit"], seen["predict"])


def test_mirror_tta_averages_the_view_and_its_mirror(gen_set):
    from dataclasses import replace

    from vit_facemap.classifier import load_frames

    frames = load_frames(gen_set.paths)
    clf = FacialStateClassifier(profile_config("test", tta="none"), gen_set.classes)
    clf.fit(frames, gen_set.labels, gen_set.eyes, progress=False)
    plain = clf.predict_proba(frames, gen_set.eyes)
    x = clf.inputs(clf.crops(frames, gen_set.eyes))
    with torch.no_grad():
        mirrored = clf.model(x.flip(-1)).softmax(-1).numpy()
    assert not np.allclose(plain, mirrored, atol=1e-4)  # the test would be void otherwise
    clf.config = replace(clf.config, tta="mirror")
    np.testing.assert_allclose(clf.predict_proba(frames, gen_set.eyes), (plain + mirrored) / 2,
                               atol=1e-5)
    # six views: three zooms, each also mirrored
    from vit_facemap.classifier import _view

    crops = clf.crops(frames, gen_set.eyes)
    with torch.no_grad():
        views = [_view(crops, clf.config.image_size, zoom=z) for z in (0.9, 1.0, 1.1)]
        six = np.mean([clf.model(v.flip(-1) if m else v).softmax(-1).numpy()
                       for v in views for m in (False, True)], 0)
    clf.config = replace(clf.config, tta="mirror-zoom")
    np.testing.assert_allclose(clf.predict_proba(frames, gen_set.eyes), six, atol=1e-5)
    with pytest.raises(ValueError, match="unknown tta"):
        profile_config("test", tta="flip")


def test_ensemble_averages_its_members(gen_set, tmp_path):
    from vit_facemap.classifier import load_frames
    from vit_facemap.rollout import attention_rollout

    frames = load_frames(gen_set.paths)
    clf = FacialStateClassifier(profile_config("test", ensemble=3, tta="none"), gen_set.classes)
    clf.fit(frames, gen_set.labels, gen_set.eyes, progress=False)
    assert len(clf.vits) == 3
    x = clf.inputs(clf.crops(frames, gen_set.eyes))
    with torch.no_grad():
        each = [m(x).softmax(-1).numpy() for m, _ in clf.vits]
    assert not np.allclose(each[0], each[1], atol=1e-4)  # seeds differ, else the test is void
    p = clf.predict_proba(frames, gen_set.eyes)
    np.testing.assert_allclose(p, np.mean(each, 0), atol=1e-5)
    # member 0 is the single model of the same seed: an ensemble only adds members
    one = FacialStateClassifier(profile_config("test", tta="none"), gen_set.classes)
    one.fit(frames, gen_set.labels, gen_set.eyes, progress=False)
    np.testing.assert_allclose(one.predict_proba(frames, gen_set.eyes), each[0], atol=1e-5)
    clf.save(tmp_path / "ens")
    again = FacialStateClassifier.load(tmp_path / "ens")
    np.testing.assert_allclose(again.predict_proba(frames, gen_set.eyes), p, atol=1e-5)
    # a file with fewer members than its config names is refused
    cfg = json.loads((tmp_path / "ens" / "config.json").read_text())
    cfg["config"]["ensemble"] = 4
    (tmp_path / "ens" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="ViT 4 of the ensemble"):
        FacialStateClassifier.load(tmp_path / "ens")
    with pytest.raises(ValueError, match="ensemble"):
        profile_config("test", ensemble=0)
    # geometry is read from the plain view whatever the test-time views (and averaged)
    from dataclasses import replace

    from vit_facemap.classifier import RATIO

    geo = FacialStateClassifier(profile_config("test", ensemble=2, tta="mirror-zoom"),
                                gen_set.classes)
    ratios = np.linspace(0.2, 0.4, len(frames))[:, None]
    geo.fit(frames, gen_set.labels, gen_set.eyes, progress=False, measures=ratios,
            measure_names=[RATIO])
    with torch.no_grad():
        want_geo = np.mean([(g(m.forward_head(m.forward_features(x), pre_logits=True)) * g.std
                             + g.mean).numpy() for m, g in geo.vits], 0)
    np.testing.assert_allclose(geo.predict_measures(frames, gen_set.eyes), want_geo, atol=1e-5)
    geo.config = replace(geo.config, tta="none")
    np.testing.assert_allclose(geo.predict_measures(frames, gen_set.eyes), want_geo, atol=1e-5)
    # the interpretation study maps an ensemble by its members' mean map
    from vit_facemap.interpretation import StudySettings, _vit_maps

    res = _vit_maps(clf, clf.crops(frames[:2], gen_set.eyes[:2]),
                    StudySettings(deletion_steps=2, random_orders=1), np.random.default_rng(0))
    want = np.mean([attention_rollout(m, x[:2]).maps for m, _ in clf.vits], 0)
    np.testing.assert_allclose(res["maps"], want, atol=1e-6)


def test_a_whole_frame_vit_learns_no_eye_relative_positions(gen_set):
    """Pupil and eyelid positions are in eye widths from the eye box, mapped into an eye
    crop's view: on a whole frame they put the pupil where it is not (on the Schroeder
    frames a left-pupil target of (-0.31, -0.18) in the view, the pupil at (0.07, -0.07)).
    A frame-crop ViT regresses the ratios only, and has no keypoint heatmaps."""
    from vit_facemap.classifier import load_frames

    frames = load_frames(gen_set.paths)
    n = len(frames)
    names = ["ratio", "leftpupil_x", "leftpupil_y"]
    values = np.column_stack([np.linspace(0.2, 0.4, n), np.full(n, -0.1), np.zeros(n)])
    clf = FacialStateClassifier(profile_config("test", crop="frame"), gen_set.classes)
    clf.fit(frames, gen_set.labels, progress=False, measures=values, measure_names=names,
            extra=(frames[:2], gen_set.eyes[:2], values[:2]))
    assert clf.measure_names == ["ratio"] and clf.geometry.heatmap is None
    assert clf.predict_measures(frames).shape == (n, 1)
    eye = FacialStateClassifier(profile_config("test", crop="eye", epochs=1), gen_set.classes)
    eye.fit(frames, gen_set.labels, gen_set.eyes, progress=False, measures=values,
            measure_names=names)
    assert eye.measure_names == names and eye.geometry.heatmap is not None


def test_a_vit_trains_for_ten_steps(gen_set):
    # 10 epochs of one batch: the one-cycle schedule's warm-up was one step long and
    # torch divided by zero (ZeroDivisionError from classify train --epochs 10)
    from vit_facemap.classifier import load_frames

    frames = load_frames(gen_set.paths)
    assert len(frames) <= 32
    clf = FacialStateClassifier(profile_config("test", crop="frame", epochs=10), gen_set.classes)
    clf.fit(frames, gen_set.labels, progress=False)
    assert np.isfinite(clf.predict_proba(frames)).all()


def test_a_vit_fold_without_a_class_does_not_call_every_frame_that_class(gen_set):
    # a cross-validation fold whose training frames are all of one class: the class it never
    # saw had the weight of N frames, which label smoothing spreads over every frame's target:
    # its probability went to N / (N + 20) (0.93 on a fold of 250 frames), and the ViT called
    # all 32 frames here by the class it had never seen
    from vit_facemap.classifier import load_frames

    frames = load_frames(gen_set.paths) * 2
    clf = FacialStateClassifier(profile_config("test", crop="frame", epochs=10), gen_set.classes)
    clf.fit(frames, np.zeros(len(frames), int), progress=False)
    assert (clf.predict(frames) == 0).all()


def test_classify_cli(gen_set, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    args = ["classify", "train", "--data", str(gen_set.root), "--out", str(run),
            "--model", "hog-rf", "--profile", "test", "--quiet"]
    assert main(args) == 0
    assert (run / "provenance.json").is_file() and (run / "model.joblib").is_file()
    # an existing run is never replaced silently
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    out = tmp_path / "eval.json"
    assert main(["classify", "evaluate", str(run), "--data", str(gen_set.root),
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert {"accuracy", "balanced_accuracy", "macro_f1", "confusion", "labels",
            "per_group"} <= set(res)
    assert res["labels"] == ["constricted", "dilated"]
    # the scores are of the run's predictions against the set's classes: a run that calls
    # three dilated images constricted and gets every other image right scores, by hand,
    y = gen_set.labels
    n0, n1 = int((y == 0).sum()), int((y == 1).sum())
    assert n0 > 0 and n1 > 3
    wrong = np.flatnonzero(y == 1)[:3]
    guess = y.copy()
    guess[wrong] = 0

    def fixed(self, frames, *args, **kwargs):
        assert len(frames) == len(guess)  # the set's images, in its order
        return np.eye(2)[guess]
    monkeypatch.setattr(FacialStateClassifier, "predict_proba", fixed)
    assert main(["classify", "evaluate", str(run), "--data", str(gen_set.root),
                 "--json", str(out), "--overwrite"]) == 0
    monkeypatch.undo()
    res = json.loads(out.read_text())
    assert res["accuracy"] == pytest.approx(1 - 3 / len(y))
    assert res["balanced_accuracy"] == pytest.approx((1 + (n1 - 3) / n1) / 2)
    assert res["macro_f1"] == pytest.approx((2 * n0 / (2 * n0 + 3)
                                             + 2 * (n1 - 3) / (2 * n1 - 3)) / 2)
    assert res["confusion"] == [[n0, 0], [3, n1 - 3]]
    called = [p["predicted"] for p in res["predictions"]]
    assert called == [["constricted", "dilated"][g] for g in guess]
    assert [p["true"] for p in res["predictions"]] == [["constricted", "dilated"][c] for c in y]
    for g in set(gen_set.groups.tolist()):
        rows = gen_set.groups == g
        assert res["per_group"][g]["accuracy"] == pytest.approx((guess == y)[rows].mean())
    assert main(["classify", "evaluate", str(run), "--data", str(gen_set.root),
                 "--json", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["classify", "evaluate", str(tmp_path / "none"), "--data",
                 str(gen_set.root), "--json", str(tmp_path / "x.json")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    # option values and output paths that cannot work are refused before any training
    for extra, problem in ((["--cv", "1"], "--cv needs K >= 2"),
                           (["--epochs", "0"], "--epochs must be at least 1"),
                           (["--ensemble", "0"], "bad classifier settings"),
                           (["--device", "tpu"], "unknown device"),
                           (["--model", "hog-rf", "--epochs", "3"], "are for --model vit")):
        assert main(["classify", "train", "--data", str(gen_set.root), "--out",
                     str(tmp_path / "r2"), "--profile", "test", "--quiet", *extra]) == 2
        assert problem in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()
    assert main(args[:5] + [str(out)] + args[6:] + ["--overwrite"]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["classify", "evaluate", str(run), "--data", str(gen_set.root),
                 "--json", str(tmp_path), "--overwrite"]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["rollout", str(run), str(gen_set.paths[0]), "--out", str(tmp_path / "m"),
                 "--method", "gradient"]) == 2  # a forest has no per-class map
    assert "are for ViT runs" in capsys.readouterr().err


def test_rollout_of_a_forest_run_records_only_what_shaped_its_maps(gen_set, tmp_path, capsys):
    """A forest's map is its importance per HOG cell: --discard-ratio was ignored, and
    rollout.json recorded it, and a head fusion of 'mean', as the settings of its maps."""
    run = tmp_path / "rf"
    assert main(["classify", "train", "--data", str(gen_set.root), "--out", str(run),
                 "--model", "hog-rf", "--profile", "test", "--quiet"]) == 0
    image = str(gen_set.paths[0])
    capsys.readouterr()
    assert main(["rollout", str(run), image, "--out", str(tmp_path / "m"),
                 "--discard-ratio", "0.5"]) == 2
    assert "--discard-ratio are for ViT runs" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
    assert main(["rollout", str(run), image, "--out", str(tmp_path / "m")]) == 0
    settings = json.loads((tmp_path / "m" / "rollout.json").read_text())["settings"]
    assert settings["head_fusion"] is None and settings["discard_ratio"] == 0


def test_classify_cli_out_under_a_file(gen_set, tmp_path, capsys, monkeypatch):
    """--out under a path that is a file was found when saving, after the training."""
    import vit_facemap.classifier as classifier

    notes = tmp_path / "notes.txt"
    notes.write_text("mine")

    def no_training(*args, **kwargs):
        raise AssertionError("trained before the output was checked")
    monkeypatch.setattr(classifier.FacialStateClassifier, "fit", no_training)
    assert main(["classify", "train", "--data", str(gen_set.root), "--out",
                 str(notes / "run"), "--model", "hog-rf", "--profile", "test", "--quiet"]) == 2
    assert f"{notes} is a file, not a folder" in capsys.readouterr().err
    assert notes.read_text() == "mine"


def test_classify_cli_eye_crop_needs_eye_boxes(gen_set, tmp_path, capsys):
    import shutil

    data = tmp_path / "noeyes"
    shutil.copytree(gen_set.root, data)
    (data / "eyes.csv").unlink()
    rc = main(["classify", "train", "--data", str(data), "--out", str(tmp_path / "r"),
               "--profile", "test", "--quiet"])
    assert rc == 2
    assert "eyes.csv" in capsys.readouterr().err
    assert main(["classify", "train", "--data", str(tmp_path / "missing"), "--out",
                 str(tmp_path / "r"), "--profile", "test"]) == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err
    # a table lacking boxes: how many, and the first
    rows = (gen_set.root / "eyes.csv").read_text().splitlines()
    blank, dropped = rows[1].split(",")[0], rows[2].split(",")[0]
    (data / "eyes.csv").write_text("\n".join([rows[0], f"{blank},nan,nan,nan", *rows[3:]]) + "\n")
    first = min(blank, dropped)  # the set is read class folder by folder, files sorted
    with warnings.catch_warnings():  # the row missing is warned of when the set is read
        warnings.simplefilter("ignore", DataWarning)
        rc = main(["classify", "train", "--data", str(data), "--out", str(tmp_path / "r"),
                   "--profile", "test", "--quiet"])
    assert rc == 2
    assert (f"eyes.csv: 2 image(s) have no eye box, e.g. {first}; --crop eye needs one"
            in capsys.readouterr().err)
    assert not (tmp_path / "r").exists()
    # an image of another size, its eye box now off the image: it trained on a black crop
    from PIL import Image

    shutil.copy(gen_set.root / "eyes.csv", data / "eyes.csv")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(data / blank)
    rc = main(["classify", "train", "--data", str(data), "--out", str(tmp_path / "r"),
               "--model", "hog-rf", "--profile", "test", "--quiet"])
    assert rc == 2
    assert (f"eyes.csv: 1 image(s) have their eye box centre outside the image, e.g. {blank} "
            "(30x20" in capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


def test_classify_train_warns_of_an_empty_class_folder(gen_set, tmp_path):
    import shutil

    data = tmp_path / "set"
    shutil.copytree(gen_set.root, data)
    (data / "sleepy").mkdir()
    (data / "sleepy" / "notes.txt").write_text("images to come")
    with pytest.warns(DataWarning, match=r"sleepy: no images \(.png.*\) in this folder; it is not "
                                         "a class of the set"):
        assert main(["classify", "train", "--data", str(data), "--out", str(tmp_path / "r"),
                     "--model", "hog-rf", "--crop", "frame", "--profile", "test",
                     "--quiet"]) == 0
    assert json.loads((tmp_path / "r" / "config.json").read_text())["classes"] == gen_set.classes


def test_rollout_cli(gen_set, tmp_path, capsys):
    run = tmp_path / "vit"
    assert main(["classify", "train", "--data", str(gen_set.root), "--out", str(run),
                 "--profile", "test", "--quiet"]) == 0
    images = [str(p) for p in gen_set.paths[:2]]
    out = tmp_path / "maps"
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    capsys.readouterr()
    # found when writing, after the maps were made, as "[Errno 20] Not a directory"
    assert main(["rollout", str(run), *images, "--out", str(notes / "maps")]) == 2
    assert f"{notes} is a file, not a folder" in capsys.readouterr().err
    assert main(["rollout", str(run), *images, "--out", str(out)]) == 0
    m = np.load(out / f"{gen_set.paths[0].stem}_map.npy")
    assert m.shape == (8, 8) and m.sum() == pytest.approx(1, abs=1e-4)
    assert (out / f"{gen_set.paths[0].stem}_rollout.png").is_file()
    rec = json.loads((out / "rollout.json").read_text())
    assert len(rec["images"]) == 2 and rec["images"][0]["predicted"] in gen_set.classes
    # provenance as every result has: settings, device, versions and wall time
    assert {"settings", "device", "versions"} <= set(rec) and rec["wall_s"] > 0
    capsys.readouterr()
    assert main(["rollout", str(run), *images, "--out", str(out)]) == 2  # no silent overwrite
    assert "already exists" in capsys.readouterr().err
    assert main(["rollout", str(run), *images, "--out", str(out), "--overwrite",
                 "--method", "gradient", "--target", "dilated"]) == 0
    assert main(["rollout", str(run), *images, "--out", str(out), "--overwrite",
                 "--method", "gradient", "--target", "sleepy"]) == 2
    assert "not one of the run's classes" in capsys.readouterr().err
    # by default the gradient map explains the class reported next to it
    assert main(["rollout", str(run), *images, "--out", str(out), "--overwrite",
                 "--method", "gradient"]) == 0
    rec = json.loads((out / "rollout.json").read_text())
    assert all(r["explained"] == r["predicted"] for r in rec["images"])
    # an option of the other method is refused, not recorded as if it had been used
    for other, words in ((["--target", "dilated"], "--target is for --method gradient"),
                         (["--method", "gradient", "--head-fusion", "max"],
                          "--head-fusion is for --method rollout")):
        assert main(["rollout", str(run), *images, "--out", str(out), "--overwrite",
                     *other]) == 2
        assert words in capsys.readouterr().err
    assert main(["rollout", str(run), str(tmp_path / "nope.png"), "--out",
                 str(tmp_path / "m2")]) == 2
    assert "image file is missing" in capsys.readouterr().err
    # a folder of images given as one was "missing" too
    assert main(["rollout", str(run), str(gen_set.root / "dilated"), "--out",
                 str(tmp_path / "m2")]) == 2
    assert "dilated: is a folder, not an image file" in capsys.readouterr().err
    # --overwrite replaces earlier maps, never a folder holding other things (a class folder)
    before = sorted(p.name for p in (gen_set.root / "dilated").iterdir())
    assert main(["rollout", str(run), *images, "--out", str(gen_set.root / "dilated"),
                 "--overwrite"]) == 2
    assert "not rollout results" in capsys.readouterr().err
    assert sorted(p.name for p in (gen_set.root / "dilated").iterdir()) == before
    assert main(["rollout", str(run), *images, "--out", images[0]]) == 2
    assert "is a file" in capsys.readouterr().err


def test_rollout_cli_makes_its_maps_in_batches(gen_set, tmp_path, monkeypatch):
    """All images went through the model in one pass, holding every layer's attention (and
    for the gradient method the whole graph) of each: thousands of frames ran out of memory.
    The maps in batches are the maps of one pass."""
    import vit_facemap.commands.rollout as command
    import vit_facemap.rollout as rollout

    run = tmp_path / "vit"
    assert main(["classify", "train", "--data", str(gen_set.root), "--out", str(run),
                 "--profile", "test", "--quiet"]) == 0
    images = [str(p) for p in gen_set.paths[:3]]
    sizes = []

    def counted(explain):
        def wrapper(model, x, *args, **kwargs):
            sizes.append(len(x))
            return explain(model, x, *args, **kwargs)
        return wrapper

    for name in ("attention_rollout", "gradient_rollout"):
        monkeypatch.setattr(rollout, name, counted(getattr(rollout, name)))
    for method in ("rollout", "gradient"):
        maps = {}
        for batch in (64, 2):
            monkeypatch.setattr(command, "BATCH", batch, raising=False)
            out = tmp_path / f"{method}{batch}"
            sizes.clear()
            assert main(["rollout", str(run), *images, "--out", str(out),
                         "--method", method]) == 0
            assert max(sizes) == min(batch, 3)
            maps[batch] = [np.load(out / f"{gen_set.paths[i].stem}_map.npy") for i in range(3)]
        np.testing.assert_allclose(maps[2], maps[64], atol=1e-6)


def test_classify_evaluate_never_writes_over_its_inputs(gen_set, tmp_path, capsys):
    """--overwrite replaces an earlier metrics file, never the set's files or the run's."""
    import shutil

    data = tmp_path / "set"
    shutil.copytree(gen_set.root, data)
    run = tmp_path / "run"
    assert main(["classify", "train", "--data", str(data), "--out", str(run), "--model",
                 "hog-rf", "--crop", "frame", "--profile", "test", "--quiet"]) == 0
    groups = tmp_path / "groups.csv"
    shutil.copy(data / "groups.csv", groups)
    kept = {p: p.read_bytes() for p in [groups, data / "groups.csv", *run.iterdir()]}
    base = ["classify", "evaluate", str(run), "--data", str(data), "--overwrite"]
    for extra, problem in ((["--json", str(data / "groups.csv")], "files of the --data set"),
                           (["--json", str(run / "config.json")], "files of the run folder"),
                           (["--json", str(groups), "--groups", str(groups)], "is an input")):
        assert main(base + extra) == 2, extra
        assert problem in capsys.readouterr().err
    assert {p: p.read_bytes() for p in kept} == kept


def test_classify_train_overwrite_replaces_only_a_classifier_run(gen_set, tmp_path, capsys,
                                                                 monkeypatch):
    """--overwrite never deletes a tracker run or a user's files, and keeps the old run until
    the new one is saved."""
    tracker = tmp_path / "tracker"
    tracker.mkdir()
    (tracker / "config.json").write_text(json.dumps({"train": {}, "bodyparts": ["a"]}))
    (tracker / "model.safetensors").write_bytes(b"weights")
    base = ["classify", "train", "--data", str(gen_set.root), "--model", "hog-rf", "--crop",
            "frame", "--profile", "test", "--quiet", "--overwrite", "--out"]
    assert main(base + [str(tracker)]) == 2
    assert "not a classifier run" in capsys.readouterr().err
    assert (tracker / "model.safetensors").read_bytes() == b"weights"
    run = tmp_path / "run"
    assert main(base + [str(run)]) == 0
    (run / "notes.txt").write_text("mine")
    old = {p.name: p.read_bytes() for p in run.iterdir()}

    def broken(self, folder):
        (Path(folder) / "config.json").write_text("{half")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(FacialStateClassifier, "save", broken)
    with pytest.raises(OSError):
        main(base + [str(run)])
    assert {p.name: p.read_bytes() for p in run.iterdir()} == old  # no .replaced-* left
    monkeypatch.undo()
    assert main(base + [str(run), "--seed", "1"]) == 0
    assert (run / "notes.txt").read_text() == "mine"
    assert json.loads((run / "config.json").read_text())["config"]["seed"] == 1
    assert sorted(p.name for p in run.iterdir()) == sorted(old)


def test_classify_train_reports_the_folds_that_ran(gen_set, tmp_path, capsys):
    """Two groups hold out in two folds, whatever --cv asked: said and recorded so."""
    run = tmp_path / "run"
    assert main(["classify", "train", "--data", str(gen_set.root), "--out", str(run),
                 "--model", "hog-rf", "--crop", "frame", "--profile", "test", "--quiet",
                 "--cv", "5"]) == 0
    assert "2-fold group CV (reduced from --cv 5" in capsys.readouterr().out
    cv = json.loads((run / "provenance.json").read_text())["cv"]
    assert cv["n_splits"] == 2 and cv["n_splits_asked"] == 5


def test_classify_train_refuses_cv_without_groups_before_training(gen_set, tmp_path, capsys,
                                                                  monkeypatch):
    import shutil

    data = tmp_path / "nogroups"
    shutil.copytree(gen_set.root, data)
    (data / "groups.csv").unlink()

    def fit(self, *args, **kwargs):
        raise AssertionError("trained before the arguments were checked")
    monkeypatch.setattr(FacialStateClassifier, "fit", fit)
    assert main(["classify", "train", "--data", str(data), "--out", str(tmp_path / "run"),
                 "--model", "hog-rf", "--crop", "frame", "--profile", "test", "--quiet",
                 "--cv", "2"]) == 2
    assert (f"{data}: --cv needs groups (groups.csv or --group-regex) with at least two groups"
            in capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_classify_train_skips_a_fold_that_holds_out_no_group(tmp_path, capsys):
    """Four animals of 2, 4, 4 and 8 frames, of classes 0, 0, 1, 1: stratified group 4-fold
    (seed 0) balances the classes by putting two animals in one fold and none in another.
    That fold has nothing to test; it is skipped and the report says why."""
    from PIL import Image

    from vit_facemap.classifier import cross_validate

    data, rows = tmp_path / "set", ["image,group"]
    rng = np.random.default_rng(0)
    for animal, n, state in (("a", 2, "constricted"), ("b", 4, "constricted"),
                             ("c", 4, "dilated"), ("d", 8, "dilated")):
        (data / state).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (24, 32), dtype=np.uint8)).save(
                data / state / f"{animal}{i}.png")
            rows.append(f"{state}/{animal}{i}.png,{animal}")
    (data / "groups.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    assert main(["classify", "train", "--data", str(data), "--out", str(run), "--model",
                 "hog-rf", "--crop", "frame", "--profile", "test", "--quiet", "--cv", "4"]) == 0
    assert ("3-fold group CV (reduced from --cv 4: stratified group k-fold left 1 of 4 folds "
            "without a group") in capsys.readouterr().out
    cv = json.loads((run / "provenance.json").read_text())["cv"]
    assert cv["n_splits"] == 3 and cv["n_splits_asked"] == 4
    # the folds that ran are numbered as their models: fold f's images are model f's test set
    s = read_image_set(data)
    frames = [np.zeros((24, 32), np.uint8)] * len(s)
    res = cross_validate(frames, s.labels, s.groups, s.classes,
                         {"hog-rf": profile_config("test", model="hog-rf", crop="frame")},
                         n_splits=4, progress=False)
    assert sorted(set(res.fold.tolist())) == [0, 1, 2] and len(res.models["hog-rf"]) == 3
    assert all(len(set(res.fold[s.groups == g].tolist())) == 1 for g in "abcd")


def test_rollout_overwrite_replaces_the_earlier_maps(gen_set, tmp_path, monkeypatch):
    """--overwrite leaves no map of the earlier images beside the new ones; a failed write
    puts the earlier maps back."""
    run = tmp_path / "run"
    assert main(["classify", "train", "--data", str(gen_set.root), "--out", str(run),
                 "--model", "hog-rf", "--crop", "frame", "--profile", "test", "--quiet"]) == 0
    a, b = gen_set.paths[:2]
    out = tmp_path / "maps"
    assert main(["rollout", str(run), str(a), str(b), "--out", str(out)]) == 0
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    real = np.save

    def full_disk(path, *args, **kw):
        real(path, *args, **kw)
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "save", full_disk)
    with pytest.raises(OSError):
        main(["rollout", str(run), str(b), "--out", str(out), "--overwrite"])
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old
    assert main(["rollout", str(run), str(b), "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["rollout.json", f"{b.stem}_map.npy", f"{b.stem}_rollout.png"])


def test_classify_train_overwrite_after_a_hard_kill_puts_the_set_aside_run_back(
        gen_set, tmp_path, monkeypatch):
    # killed between setting the old run aside and saving the new one: the folder holds a
    # .replaced-* folder (and maybe part of the new run); --overwrite must neither call it
    # "not a classifier run" nor hide the old run for good behind a new set-aside folder
    from vit_facemap.commands.classify import RUN_FILES

    base = ["classify", "train", "--data", str(gen_set.root), "--model", "hog-rf", "--crop",
            "frame", "--profile", "test", "--quiet", "--overwrite", "--out"]
    run = tmp_path / "run"
    assert main(base + [str(run)]) == 0
    (run / "notes.txt").write_text("mine")
    old = {p.name: p.read_bytes() for p in run.iterdir()}

    def killed(partial: bool) -> None:
        hidden = run / ".replaced-k1ll3d"
        hidden.mkdir()
        for name in RUN_FILES:
            if (run / name).exists():
                (run / name).rename(hidden / name)
        if partial:
            (run / "config.json").write_text("{half")

    killed(partial=True)

    def broken(self, folder):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(FacialStateClassifier, "save", broken)
    with pytest.raises(OSError):  # the old run was put back first, so it is back in place
        main(base + [str(run)])
    assert {p.name: p.read_bytes() for p in run.iterdir()} == old
    monkeypatch.undo()
    killed(partial=False)
    assert main(base + [str(run), "--seed", "1"]) == 0
    assert not list(run.glob(".replaced-*")) and (run / "notes.txt").read_text() == "mine"
    assert (run / "provenance.json").is_file()


def test_class_set_files_are_its_images_and_tables():
    from pathlib import Path

    from vit_facemap.commands.classify import _is_class_set_file

    assert _is_class_set_file(Path("dilated/a.png")) and _is_class_set_file(Path("groups.csv"))
    # a new results file in a subfolder of the set is no harm
    assert not _is_class_set_file(Path("results/eval.json"))


def test_classify_evaluate_of_a_tracker_run_says_what_it_is(gen_set, tmp_path, capsys):
    # a keypoint-tracker run's config.json has no classifier config: the message was
    # "unreadable classifier config: 'config'"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": {}, "bodyparts": ["eye"]}))
    assert main(["classify", "evaluate", str(run), "--data", str(gen_set.root),
                 "--json", str(tmp_path / "e.json")]) == 2
    err = capsys.readouterr().err
    assert "keypoint-tracker run" in err and "classify train" in err
    # one message naming the run, not wrapped as an unreadable config.json
    assert "unreadable classifier config" not in err and err.count(str(run)) == 1
    assert not (tmp_path / "e.json").exists()


@pytest.mark.parametrize("command", ["evaluate", "track"])
def test_tracker_commands_on_a_classifier_run_say_what_it_is(command, tmp_path, capsys):
    # a classifier run's config.json reads fine; the message was "not a run configuration
    # this version can read (KeyError('train'))"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {"model": "vit"}, "classes": ["a"]}))
    (run / "model.safetensors").write_bytes(b"")
    video = tmp_path / "face.avi"
    video.write_bytes(b"")
    args = (["evaluate", str(run), "--data", str(tmp_path), "--json", str(tmp_path / "e.json")]
            if command == "evaluate" else ["track", str(run), str(video), "--out", str(tmp_path / "t")])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "facial-state classifier run" in err and "'vit-facemap train'" in err
    assert not (tmp_path / "e.json").exists() and not (tmp_path / "t").exists()


def test_a_saved_classifier_config_with_any_seed_reads_and_a_new_fit_checks_it():
    # the range was checked when a saved config was read: a run trained before the check
    # with seed 3000000000 no longer loaded
    from vit_facemap.classifier import ClassifierConfig

    assert ClassifierConfig.from_dict({"model": "hog-rf", "seed": 3_000_000_000}).seed == 3e9
    clf = FacialStateClassifier(ClassifierConfig(model="hog-rf", crop="frame", seed=-1), ["a", "b"])
    with pytest.raises(ValueError, match="classifier seed must be an integer from 0"):
        clf.fit([np.zeros((32, 32), np.uint8)] * 2, np.array(["a", "b"]))


def test_a_missing_init_weights_file_is_refused_before_the_eye_locator_trains(gen_set, tmp_path,
                                                                              monkeypatch):
    # the file was read when the ViT started, after the locator had trained (6 minutes)
    import vit_facemap.classifier as classifier

    monkeypatch.setattr(classifier, "fit_locator",
                        lambda *a, **k: pytest.fail("the eye locator trained first"))
    config = profile_config("test", model="vit", crop="eye",
                            init_weights=str(tmp_path / "nope.safetensors"))
    frames = classifier.load_frames(gen_set.paths)
    with pytest.raises(DataError, match="nope.safetensors: weights file not found"):
        FacialStateClassifier(config, gen_set.classes).fit(frames, gen_set.labels, gen_set.eyes,
                                                           progress=False)
    with pytest.raises(DataError, match="nope.safetensors: weights file not found"):
        classifier.cross_validate(frames, gen_set.labels, gen_set.groups, gen_set.classes,
                                  {"vit": config}, gen_set.eyes, progress=False)


def test_init_weights_of_a_patch_embedding_vit_into_a_conv_stem_names_the_layers(tmp_path):
    # a tracker's or timm's ViT (one linear patch kernel) given to the classifier's conv-stem
    # ViT crashed in timm's filter: "'Sequential' object has no attribute 'weight'"
    from safetensors.torch import save_file

    from vit_facemap.classifier import load_vit_weights, make_vit

    conv = profile_config("test", model="vit", stem="conv")
    patch = profile_config("test", model="vit", stem="patch")
    save_file(make_vit(patch, 2).state_dict(), tmp_path / "patch.safetensors")
    with pytest.raises(DataError, match=r"patch.safetensors: weights do not fit the model .*"
                                        r"not in the model: .*patch_embed.proj.weight"):
        load_vit_weights(make_vit(conv, 2), tmp_path / "patch.safetensors")


def test_a_keypoint_set_given_as_a_class_set_points_to_make_pupil_set(tmp_path):
    from vit_facemap.synthetic import write_synthetic_set

    kp = write_synthetic_set(tmp_path / "kp", n_frames=4, n_videos=1, seed=0, size=(64, 48))
    with pytest.raises(DataError, match="keypoint set: 'vit-facemap classify make-pupil-set'"):
        read_image_set(kp)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"found \[\]$"):  # no hint where none applies
        read_image_set(tmp_path / "empty")


def test_eye_box_region_and_geometry_by_hand(dlc_set, tmp_path):
    from vit_facemap.states import eye_boxes, eyelid_regions, geometry_measures, read_regions

    # a pupil 12 px wide and 14 px high; the upper eyelid raised to y = 20
    kp = frame(12.0)
    kp[4], kp[6] = [60, 48], [60, 20]
    np.testing.assert_allclose(eye_boxes(kp[None], BODYPARTS), [[60, 37.5, 40]])
    np.testing.assert_allclose(eyelid_regions(kp[None], BODYPARTS), [[36, 16, 84, 54]])
    g = geometry_measures(kp[None], BODYPARTS)
    np.testing.assert_allclose([g["ratio"][0], g["pupil_horizontal"][0], g["pupil_vertical"][0],
                                g["dorsalpupil_x"][0], g["dorsalpupil_y"][0]],
                               [13 / 40, 12 / 40, 14 / 40, 0, -3.5 / 40])
    # a ratio of exactly 0.25 is no class (strictly below is constricted)
    frames = LabeledFrames(tmp_path, ["labeled-data/v/a.png"], frame(10.0)[None], BODYPARTS)
    assert list(pupil_states(frames)) == [""]
    # what the set's tables hold is what these give
    s = write_pupil_state_set(dlc_set[0], tmp_path / "pupil")
    np.testing.assert_allclose(read_regions(s), [[36, 26, 84, 54]] * len(s))
    m = read_measures(s)
    assert len(m.extra_paths) == 3  # the frames between the thresholds
    np.testing.assert_allclose(m.values[:, m.names.index("ratio")], [0.15, 0.2475, 0.4])


def test_measures_of_an_image_without_a_class_need_its_eye_box(dlc_set, tmp_path, capsys):
    # the ViT crops the frames between the thresholds around their box: a row without one
    # crashed training ("cannot convert float NaN to integer") after the locator had trained
    s = write_pupil_state_set(dlc_set[0], tmp_path / "pupil")
    table = tmp_path / "pupil" / "measures.csv"
    lines = table.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(".between/"))
    image, group, _, *rest = lines[i].split(",")
    lines[i] = ",".join([image, group, "", *rest])
    table.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"measures.csv: 1 image.* need an eye box .*, e.g. {image}"):
        read_measures(s)
    assert main(["classify", "train", "--data", str(s.root), "--out", str(tmp_path / "run"),
                 "--profile", "test", "--quiet"]) == 2
    assert "need an eye box" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_whole_frame_model_needs_no_eye_box_for_an_image_without_a_class(dlc_set, tmp_path):
    # only eye crops cut these images around their box: a measures table without one (a
    # set without eyes) was refused when read, where --crop frame had trained on it
    s = write_pupil_state_set(dlc_set[0], tmp_path / "pupil")
    table = tmp_path / "pupil" / "measures.csv"
    lines = table.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(".between/"):
            image, group, _, *rest = line.split(",")
            lines[i] = ",".join([image, group, "", *rest])
    table.write_text("\n".join(lines) + "\n")
    assert main(["classify", "train", "--data", str(s.root), "--out", str(tmp_path / "run"),
                 "--profile", "test", "--quiet", "--crop", "frame"]) == 0
    m = read_measures(s, eye_boxes=False)
    assert len(m.extra_paths) and np.isnan(m.extra_eyes[:, 0]).all()


def test_an_eye_box_of_width_zero_is_refused(tmp_path):
    from PIL import Image

    for rel in ("a/x.png", "b/y.png"):
        (tmp_path / rel).parent.mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / rel)
    (tmp_path / "eyes.csv").write_text("image,x,y,width\na/x.png,4,4,0\nb/y.png,1,1,1\n")
    with pytest.raises(DataError, match="eyes.csv: eye box of a/x.png needs .* width > 0"):
        read_image_set(tmp_path)


def test_hog_cells_of_a_wide_image_are_rows_then_columns():
    from vit_facemap.hog import hog_features, hog_grid_shape

    assert hog_grid_shape(64, 128) == (2, 4)
    assert hog_features(np.zeros((1, 64, 128), np.uint8)).shape == (1, 2 * 4 * 8)


def test_make_pupil_set_refuses_a_set_of_one_state_before_writing(dlc_set, tmp_path):
    # one animal, all constricted: the set was written, then refused on reading it back
    # ("OUT: need at least two class folders"), leaving OUT to --overwrite; with --overwrite
    # it had replaced a good set
    import shutil

    root, frames = dlc_set
    shutil.copytree(root / "labeled-data", tmp_path / "one" / "labeled-data")
    one = LabeledFrames(tmp_path / "one", frames.index[:2], frames.keypoints[:2], BODYPARTS)
    labels = write_labels(one, tmp_path / "one" / "CollectedData_test.csv")
    out = tmp_path / "pupil"
    with pytest.raises(DataError, match="2 constricted .* and 0 dilated .* needs both"):
        write_pupil_state_set(labels, out)
    assert not out.exists()
    good = write_pupil_state_set(root, out)
    with pytest.raises(DataError, match="needs both"):
        write_pupil_state_set(labels, out, overwrite=True)
    assert len(read_image_set(out)) == len(good)  # the earlier set is kept


def test_an_interrupted_make_pupil_set_leaves_no_half_set(dlc_set, tmp_path, monkeypatch):
    # Ctrl-C part-way left OUT with frames but no tables: 'classify train' read it as a set
    # of the frames copied so far, and --overwrite refused it as not a set of ours
    import shutil

    import vit_facemap.states as states

    root, _ = dlc_set
    out = tmp_path / "pupil"
    copied, copy = [], shutil.copyfile

    def interrupt(src, dst):
        if copied:
            raise KeyboardInterrupt
        copied.append(copy(src, dst))

    monkeypatch.setattr(states.shutil, "copyfile", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_pupil_state_set(root, out)
    assert copied and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert np.bincount(write_pupil_state_set(root, out).labels).tolist() == [2, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pupil"]
    # an interrupted --overwrite keeps the set it was replacing (it was deleted first)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    monkeypatch.setattr(states.shutil, "copyfile", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_pupil_state_set(root, out, overwrite=True)
    monkeypatch.undo()
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pupil"]
