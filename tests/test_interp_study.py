"""The interpretation study's own arithmetic: where a frame region lands in the model's view,
how much of a map falls in it, and how far the eye locator's boxes are off."""

import numpy as np
import pytest

from vit_facemap.classifier import CrossValidation, FacialStateClassifier, profile_config
from vit_facemap.interpretation import StudySettings, check_maps, locator_error, view_box


def _bright_extent(view: np.ndarray) -> tuple[float, float, float, float]:
    """Corner coordinates (x0, y0, x1, y1) of the pixels brighter than halfway."""
    rows, cols = np.nonzero(view > (view.max() + view.min()) / 2)
    return cols.min(), rows.min(), cols.max() + 1.0, rows.max() + 1.0


@pytest.mark.parametrize("model", ["vit", "hog-rf"])
def test_a_bright_region_lands_in_its_view_box(model):
    """A block drawn in the frame is where view_box says in what the model is given."""
    from vit_facemap.classifier import center_view

    clf = FacialStateClassifier(profile_config("test", model=model), ["a", "b"])
    factor = clf.config.crop_factor
    eye = np.array([100.0, 80.0, 40.0])  # x, y, width in frame pixels
    frame = np.full((160, 200), 30, np.uint8)
    region = np.array([88.0, 70.0, 99.0, 77.0])  # pixels 88..99 x 70..77 (centres), up-left
    frame[70:78, 88:100] = 230
    crops = clf.crops([frame], eye[None])
    if model == "vit":  # the ViT's actual input tensor
        view = clf.inputs(crops)[0, 0].numpy()
    else:  # the forest's view (its HOG features are computed on this)
        view = center_view(crops, clf.config.hog_size)[0].astype(float)
    size = view.shape[0]
    vb = view_box(region, eye, factor, size)
    # the region's pixels reach half a frame pixel beyond their centres (in view pixels:
    # half); the crop is cut at whole frame pixels (up to half again) and resampled
    half = 0.5 * size / (factor * eye[2])
    found = _bright_extent(view)
    np.testing.assert_allclose(found, vb + [-half, -half, half, half], atol=half + 0.5)
    assert vb[0] > 0 and vb[3] < size / 2 + 1  # the drawn block is up and left of the eye


def test_view_box_by_hand():
    # a view of side 2 * 40 = 80 frame pixels around (100, 80), seen at 64 pixels: 0.8 / px
    vb = view_box(np.array([60.0, 40.0, 100.0, 90.0]), np.array([100.0, 80.0, 40.0]), 2.0, 64)
    np.testing.assert_allclose(vb, [0.0, 0.0, 32.0, 40.0])


class _Fold:
    """What check_maps needs of a fold's classifier: its config and its crops."""

    def __init__(self, config):
        self.config = config

    def crops(self, frames, boxes):
        self.seen = boxes
        return np.zeros((len(frames), 80, 80), np.uint8)


def test_check_maps_measures_the_mass_in_each_images_region(monkeypatch):
    """Maps with 0.75 of their mass in grid cell (row 1, col 2) and 0.25 in cell (6, 6) of an
    8 x 8 grid over a 64-pixel view that spans 64 frame pixels (crop factor 1.6, eye 40 px
    wide): each image's region, placed by hand around its own eye box, holds what it covers."""
    import vit_facemap.interpretation as interpretation

    grid = np.zeros((8, 8))
    grid[1, 2], grid[6, 6] = 0.75, 0.25

    def maps(clf, crops, st, rng):
        n = len(crops)
        return {"maps": np.repeat(grid[None], n, 0), "target": np.zeros(n, int),
                "aucs": [0.5] * n, "random_aucs": [0.5] * n, "curves": [np.zeros(3)] * n,
                "random_curves": [np.zeros(3)] * n, "fraction": np.linspace(0, 1, 3),
                "shift": 0.0}
    monkeypatch.setattr(interpretation, "_vit_maps", maps)
    eyes = np.array([[100.0, 80.0, 40.0], [60.0, 50.0, 40.0], [90.0, 90.0, 40.0],
                     [70.0, 60.0, 40.0]])
    # view pixel (u, v) is frame pixel (x - 32 + u, y - 32 + v)
    in_view = np.array([[16, 8, 24, 16],   # cell (1, 2) alone: 0.75 of the mass, 1/64 of the view
                        [44, 44, 60, 60],  # around cell (6, 6): 0.25, 1/16 of the view
                        [0, 0, 8, 8],      # no region (NaN): not scored
                        [0, 0, 64, 64]], float)  # the whole view: all of it
    regions = in_view + np.tile(eyes[:, :2] - 32, 2)
    regions[2] = np.nan
    config = profile_config("test", crop_factor=1.6)
    folds = [_Fold(config), _Fold(config)]
    cv = CrossValidation(classes=["a", "b"], labels=np.array([0, 1, 0, 1]),
                         groups=np.array(["m", "n", "m", "n"]), fold=np.array([1, 0, 1, 0]),
                         boxes=eyes, proba={}, metrics={}, models={"vit": folds}, wall_s={})
    frames = [np.zeros((160, 200), np.uint8)] * 4
    out = check_maps(cv, frames, regions, StudySettings(), progress=False)["vit"]
    # fold 0 holds out images 1 and 3, fold 1 images 0 and 2: each crops with their boxes
    np.testing.assert_array_equal(folds[0].seen, eyes[[1, 3]])
    np.testing.assert_array_equal(folds[1].seen, eyes[[0, 2]])
    order = np.argsort(out["index"])
    np.testing.assert_allclose(out["mass"][order], [0.75, 0.25, np.nan, 1.0])
    np.testing.assert_allclose(out["chance"][order], [1 / 64, 1 / 16, np.nan, 1.0])
    # a whole-frame model's view is not the eye's: no region mass for it
    frame_config = profile_config("test", crop="frame", crop_factor=1.6)
    cv.models = {"vit": [_Fold(frame_config), _Fold(frame_config)]}
    out = check_maps(cv, frames, regions, StudySettings(), progress=False)["vit"]
    assert np.isnan(out["mass"]).all() and len(out["mass"]) == 4


def test_check_maps_chance_is_the_regions_share_of_the_view(monkeypatch):
    """The forest's 4 x 4 HOG cells over a view of two eye widths (80 frame pixels): a region
    whose edges fall between pixels of check_maps' grid is counted as it is, not rounded
    out to whole pixels (which made its share 0.114 instead of 0.1 here)."""
    import vit_facemap.interpretation as interpretation

    def maps(clf, crops, st, rng):  # spread evenly: its mass in the region is the region's share
        return {"maps": np.full((1, 4, 4), 1 / 16), "target": np.zeros(1, int), "aucs": [0.5],
                "random_aucs": [0.5], "curves": [np.zeros(3)], "random_curves": [np.zeros(3)],
                "fraction": np.linspace(0, 1, 3), "shift": 0.0}
    monkeypatch.setattr(interpretation, "_forest_maps", maps)
    eyes = np.array([[100.0, 80.0, 40.0]])
    # 20 x 32 frame pixels of the 80 x 80 view: a tenth of it
    regions = np.array([[71.0, 50.5, 91.0, 82.5]])
    cv = CrossValidation(classes=["a", "b"], labels=np.array([0]), groups=np.array(["m"]),
                         fold=np.array([0]), boxes=eyes, proba={}, metrics={},
                         models={"hog-rf": [_Fold(profile_config("test", model="hog-rf"))]},
                         wall_s={})
    out = check_maps(cv, [np.zeros((160, 200), np.uint8)], regions, StudySettings(),
                     progress=False)["hog-rf"]
    np.testing.assert_allclose(out["chance"], [0.1])
    np.testing.assert_allclose(out["mass"], [0.1])


def test_check_maps_counts_mass_in_the_cells_as_drawn_for_shifted_tokens(monkeypatch):
    """Tokens half a cell early (shift 0.5): on an 8 x 8 grid over a 64-pixel view, cell
    (1, 2) is drawn on pixels 4..11 x 12..19, not 8..15 x 16..23; a region there holds all
    of the map (counted on the unshifted cells, only a quarter)."""
    import vit_facemap.interpretation as interpretation

    grid = np.zeros((8, 8))
    grid[1, 2] = 1.0

    def maps(clf, crops, st, rng):
        return {"maps": grid[None], "target": np.zeros(1, int), "aucs": [0.5],
                "random_aucs": [0.5], "curves": [np.zeros(3)], "random_curves": [np.zeros(3)],
                "fraction": np.linspace(0, 1, 3), "shift": 0.5}
    monkeypatch.setattr(interpretation, "_vit_maps", maps)
    eyes = np.array([[100.0, 80.0, 40.0]])
    regions = np.array([[12.0, 4.0, 20.0, 12.0]]) + np.tile(eyes[:, :2] - 32, 2)
    cv = CrossValidation(classes=["a", "b"], labels=np.array([0]), groups=np.array(["m"]),
                         fold=np.array([0]), boxes=eyes, proba={}, metrics={},
                         models={"vit": [_Fold(profile_config("test", crop_factor=1.6))]},
                         wall_s={})
    out = check_maps(cv, [np.zeros((160, 200), np.uint8)], regions, StudySettings(),
                     progress=False)["vit"]
    np.testing.assert_allclose(out["mass"], [1.0])
    assert out["shift"] == 0.5


def test_deletion_blanks_the_cells_as_drawn_for_shifted_tokens():
    """Shift 0.5 on a 4 x 4 grid of 8-pixel cells: cell (1, 1) is drawn on pixels 4..11. A
    model that reads exactly those pixels loses its class when that one cell is deleted."""
    from vit_facemap.interpretation import _deletion_checks

    img = np.zeros((32, 32), np.float32)
    img[4:12, 4:12] = 1

    def predict(stack):
        p1 = stack[:, 4:12, 4:12].mean(axis=(1, 2)).clip(0, 1)
        return np.stack([1 - p1, p1], 1)

    one = np.zeros((4, 4))
    one[1, 1] = 1
    out = {"shift": 0.5, "aucs": [], "random_aucs": [], "curves": [], "random_curves": []}
    out = _deletion_checks(out, predict, [img], [one], np.array([1]), [0.0],
                           StudySettings(deletion_steps=16, random_orders=1),
                           np.random.default_rng(0))
    # 1/16 of the cells gone, that one first: nothing left of what the model reads
    assert out["fraction"][1] == 1 / 16
    np.testing.assert_allclose(out["curves"][0][:2], [1.0, 0.0])
    # the control's random order (the same generator's) also loses it with that cell alone
    k = list(np.random.default_rng(0).permutation(16)).index(1 * 4 + 1) + 1
    np.testing.assert_allclose(out["random_curves"][0], [1.0] * k + [0.0] * (17 - k))


def test_locator_error_by_hand():
    truth = np.array([[100, 80, 40], [50, 50, 20], [10, 10, 10], [0, 0, 10],
                      [np.nan, np.nan, np.nan], [30, 30, 10]], float)
    found = np.array([[110, 80, 44], [50, 65, 20], [10, 10, 5], [3, 4, 10],
                      [0, 0, 1], [np.nan, 30, 10]], float)
    # centre errors in eye widths of the label: 10/40, 15/20, 0, 5/10 (the last two rows
    # have no label or no prediction: left out)
    assert locator_error(found, truth) == {
        "median_centre_error_eye_widths": pytest.approx(0.375),
        "share_within_half_eye_width": 0.5,  # 0.25 and 0; 0.5 itself is not within
        "share_within_one_eye_width": 1.0,
        "median_width_ratio": pytest.approx(1.0),  # 1.1, 1, 0.5, 1
    }
    assert locator_error(None, truth) is None
    assert locator_error(found[4:], truth[4:]) is None  # nothing to compare


@pytest.fixture(scope="module")
def state_set(tmp_path_factory):
    from vit_facemap.states import write_generated_state_set

    return write_generated_state_set(tmp_path_factory.mktemp("study") / "set", 16, n_videos=2,
                                     size=(96, 72))


@pytest.mark.parametrize("oracle", [True, False])
def test_run_study_holds_animals_out_and_reports_what_it_measured(state_set, oracle):
    from vit_facemap.interpretation import run_study

    settings = StudySettings(profile="test", n_splits=2, deletion_steps=2, random_orders=1)
    study = run_study(state_set.root, settings, models=("hog-rf",), progress=False,
                      oracle_boxes=oracle)
    cv, s, eyes = study.cv, study.summary, state_set.eyes
    # every animal (here: video) held out once, in a fold of its own
    folds = {g: set(cv.fold[state_set.groups == g].tolist()) for g in set(state_set.groups)}
    assert sorted(len(f) for f in folds.values()) == [1, 1] and len(set.union(*folds.values())) == 2
    # scores of the held-out predictions
    assert s["hog-rf"]["accuracy"] == pytest.approx(
        np.mean(cv.proba["hog-rf"].argmax(1) == state_set.labels))
    assert s["n_images"] == 16 and s["class_counts"] == np.bincount(state_set.labels).tolist()
    # the locator's error: of the boxes the models were shown, against the labeled eyes
    if oracle:
        np.testing.assert_array_equal(cv.boxes, eyes)
        assert s["locator"] == {"median_centre_error_eye_widths": 0.0,
                                "share_within_half_eye_width": 1.0,
                                "share_within_one_eye_width": 1.0, "median_width_ratio": 1.0}
    else:
        assert not np.allclose(cv.boxes, eyes)
        err = np.hypot(*(cv.boxes[:, :2] - eyes[:, :2]).T) / eyes[:, 2]
        assert s["locator"]["median_centre_error_eye_widths"] == pytest.approx(np.median(err))
        assert s["locator"]["median_width_ratio"] == pytest.approx(
            np.median(cv.boxes[:, 2] / eyes[:, 2]))
    # the map checks on every held-out image, each region inside the forest's view
    mass = study.maps["hog-rf"]["mass"]
    assert s["hog-rf"]["map_images"] == s["hog-rf"]["images_with_region_in_view"] == 16
    assert s["hog-rf"]["attention_mass_in_region"] == pytest.approx(mass.mean())
    assert 0 < s["hog-rf"]["region_share_chance"] < 1
    assert s["view"]["crop_factor"] == {"hog-rf": 2.0} and s["oracle_boxes"] is oracle
    assert s["settings"]["n_splits"] == 2 and s["settings"]["profile"] == "test"


def test_each_fold_trains_on_its_training_groups_only(state_set, monkeypatch):
    """The classifier and the eye locator of a fold never see a frame of a held-out group."""
    import vit_facemap.classifier as classifier
    from vit_facemap.classifier import cross_validate, load_frames

    frames = load_frames(state_set.paths)
    index = {id(f): i for i, f in enumerate(frames)}
    seen: dict[str, list[list[int]]] = {"classifier": [], "locator": []}
    real_fit, real_locator = FacialStateClassifier.fit, classifier.fit_locator

    def fit(self, frames, *args, **kwargs):
        seen["classifier"].append([index[id(f)] for f in frames])
        return real_fit(self, frames, *args, **kwargs)

    def fit_locator(frames, *args, **kwargs):
        seen["locator"].append([index[id(f)] for f in frames])
        return real_locator(frames, *args, **kwargs)
    monkeypatch.setattr(FacialStateClassifier, "fit", fit)
    monkeypatch.setattr(classifier, "fit_locator", fit_locator)
    cv = cross_validate(frames, state_set.labels, state_set.groups, state_set.classes,
                        {"hog-rf": profile_config("test", model="hog-rf")}, state_set.eyes,
                        n_splits=2, progress=False)
    assert len(seen["classifier"]) == len(seen["locator"]) == 2
    for f in range(2):
        held_out = set(state_set.groups[cv.fold == f])
        for who, rows in seen.items():
            assert sorted(rows[f]) == np.flatnonzero(cv.fold != f).tolist(), (who, f)
            assert not held_out & set(state_set.groups[rows[f]]), (who, f)


def test_run_study_needs_eye_boxes(state_set, tmp_path):
    import shutil

    shutil.copytree(state_set.root, tmp_path / "set")
    (tmp_path / "set" / "eyes.csv").unlink()
    from vit_facemap.interpretation import run_study

    with pytest.raises(ValueError, match="needs eyes.csv"):
        run_study(tmp_path / "set", StudySettings(profile="test", n_splits=2), progress=False)


def test_the_interpretation_notebook_trains_on_the_builds_device(tmp_path):
    """The notebook resolved the book's device and recorded it, but its classifiers trained
    on ClassifierConfig's default (cpu) whatever the build chose."""
    from pathlib import Path

    import nbformat

    nb = nbformat.read(Path(__file__).parents[1] / "notebooks" / "04_interpretation.ipynb", 4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    ns = {"profile": "test", "device": "cpu", "data_dir": "", "seed": 0,
          "out_dir": str(tmp_path)}
    exec(code[1], ns)  # the setup cell: settings, data set, device
    assert ns["settings"].overrides == {"device": "cpu"}


def test_run_study_reads_a_malformed_regions_table_before_training(state_set, tmp_path,
                                                                    monkeypatch):
    """An empty coordinate in regions.csv was a bare 'could not convert string to float',
    raised after the whole cross-validation had trained."""
    import shutil

    import vit_facemap.interpretation as interpretation
    from vit_facemap.errors import DataError

    shutil.copytree(state_set.root, tmp_path / "set")
    table = tmp_path / "set" / "regions.csv"
    lines = table.read_text().splitlines()
    cells = lines[3].split(",")
    cells[-4] = ""  # x0
    lines[3] = ",".join(cells)
    table.write_text("\n".join(lines) + "\n")

    def no_training(*args, **kwargs):
        raise AssertionError("the study trained before reading regions.csv")
    monkeypatch.setattr(interpretation, "cross_validate", no_training)
    with pytest.raises(DataError, match=rf"regions.csv: region of {cells[0]} is not numeric"):
        interpretation.run_study(tmp_path / "set", StudySettings(profile="test", n_splits=2),
                                 progress=False)


def test_regions_with_swapped_corners_are_refused(state_set, tmp_path):
    """x1, y1 before x0, y0: an empty box, scored as 0 of the map inside it against a chance
    above 0 (or left out when one pair was swapped), without a word."""
    import shutil

    from vit_facemap.errors import DataError
    from vit_facemap.states import read_image_set, read_regions

    shutil.copytree(state_set.root, tmp_path / "set")
    table = tmp_path / "set" / "regions.csv"
    lines = table.read_text().splitlines()
    cells = lines[1].split(",")
    cells[-4:] = cells[-2:] + cells[-4:-2]
    lines[1] = ",".join(cells)
    table.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"region of {cells[0]} needs x0 < x1 and y0 < y1"):
        read_regions(read_image_set(tmp_path / "set"))


@pytest.mark.parametrize("kw, message", [
    ({"head_fusion": "median"}, "unknown head_fusion 'median'"),
    ({"deletion_steps": 0}, "deletion_steps must be at least 1"),
    ({"random_orders": 0}, "random_orders must be at least 1"),
    ({"discard_ratio": 1.0}, r"discard_ratio must be in \[0, 1\)"),
    ({"max_map_images": -1}, "max_map_images must be 0 or more"),
    ({"n_splits": 1}, "n_splits must be at least 2"),
    ({"seed": "0"}, "bad study settings: seed='0'"),
    ({"overrides": {"seed": 3}}, "overrides may not set 'seed'"),
    ({"overrides": {"model": "vit"}}, "overrides may not set 'model'"),
])
def test_study_settings_are_checked_before_anything_trains(kw, message):
    """An unknown head fusion failed after the whole cross-validation had trained; no
    deletion steps gave every deletion AUC 0, no random orders a control AUC of NaN."""
    with pytest.raises(ValueError, match=message):
        StudySettings(**kw)


def test_run_study_names_the_images_without_an_eye_box(state_set, tmp_path, monkeypatch):
    """An image missing from eyes.csv stopped the first fold after its eye locator had
    trained, with 'eye crops need the eye box of every training image' and no image named."""
    import shutil

    import vit_facemap.interpretation as interpretation
    from vit_facemap.errors import DataError

    shutil.copytree(state_set.root, tmp_path / "set")
    table = tmp_path / "set" / "eyes.csv"
    lines = table.read_text().splitlines()
    gone = lines.pop(3).split(",")[0]
    table.write_text("\n".join(lines) + "\n")

    def no_training(*args, **kwargs):
        raise AssertionError("the study trained before checking the eye boxes")
    monkeypatch.setattr(interpretation, "cross_validate", no_training)
    with pytest.warns(UserWarning, match="have no row"), \
            pytest.raises(DataError, match=rf"eyes.csv: 1 image\(s\) have no eye box, e.g. {gone}"):
        interpretation.run_study(tmp_path / "set", StudySettings(profile="test", n_splits=2),
                                 progress=False)


def test_run_study_with_oracle_boxes_says_where_its_crops_came_from(state_set):
    """With the labeled boxes at test time the summary still said 'eye crops at test time
    come from the fold's eye locator'."""
    from vit_facemap.interpretation import run_study

    settings = StudySettings(profile="test", n_splits=2, deletion_steps=2, random_orders=1,
                             max_map_images=2)
    s = run_study(state_set.root, settings, models=("hog-rf",), progress=False,
                  oracle_boxes=True).summary
    assert s["oracle_boxes"] is True and "labeled eye boxes" in s["note_boxes"]
    assert "locator" not in s["note_boxes"]


def test_regions_that_name_no_image_of_the_set_are_refused(state_set, tmp_path):
    """Rows naming the images by another path (here absolute) matched none of them: every
    image was read as having no region, and the study reported no attention mass."""
    import shutil

    from vit_facemap.errors import DataError
    from vit_facemap.states import read_image_set, read_regions

    shutil.copytree(state_set.root, tmp_path / "set")
    table = tmp_path / "set" / "regions.csv"
    lines = table.read_text().splitlines()
    table.write_text("\n".join([lines[0]] + [f"/data/{ln}" for ln in lines[1:]]) + "\n")
    with pytest.raises(DataError, match="regions.csv: no row names an image of the set"):
        read_regions(read_image_set(tmp_path / "set"))
