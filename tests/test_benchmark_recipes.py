"""The tracker benchmark's models and ablations are valid recipes built on the default one."""

import copy
import importlib.util
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from vit_facemap.models import KeypointModel
from vit_facemap.train import TrainConfig, profile_config

ROOT = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("bench_tracker", ROOT / "benchmarks" / "tracker.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


BENCH = _benchmark()


@pytest.mark.parametrize("name", sorted({**BENCH.NEURAL, **BENCH.ABLATIONS}))
def test_each_recipe_builds_a_model_and_leaves_the_default_alone(name):
    default = profile_config("default")
    before = copy.deepcopy(default)
    description, make = {**BENCH.NEURAL, **BENCH.ABLATIONS}[name]
    cfg = make(default)
    assert isinstance(cfg, TrainConfig) and description
    assert default == before  # recipes are copies, never edits of the base
    if cfg.model.family == "fmnet":
        pytest.importorskip("facemap")
    model = KeypointModel(cfg.model, n_keypoints=3)
    assert model.stride > 0 and min(cfg.model.input_size) > 0


def test_saved_table_is_reused_only_when_finished_with_the_same_settings(tmp_path, capsys):
    import json

    out = tmp_path / "bench"
    base = ["--synthetic", "--profile", "test", "--models", "mean_shape", "--no-progress",
            "--out", str(out)]
    assert BENCH.main(base) == 0
    table = out / "tracker.json"
    first = json.loads(table.read_text())
    assert first["complete"] is True
    capsys.readouterr()

    assert BENCH.main(base + ["--reuse"]) == 0
    assert "kept" in capsys.readouterr().out
    assert json.loads(table.read_text()) == first  # not run again

    # a table stopped part-way with these settings is finished, not started again
    # (its finished rows are kept, not computed again: the marker survives)
    partial = {**first, "complete": False, "rows": [{**first["rows"][0], "marker": 1}],
               "provenance": {**first["provenance"], "wall_s": 1000.0}}
    table.write_text(json.dumps(partial))
    assert BENCH.main(base + ["--reuse"]) == 0
    assert "resuming" in capsys.readouterr().out
    resumed = json.loads(table.read_text())
    assert resumed["complete"] is True and [r.get("marker") for r in resumed["rows"]] == [1]
    # the table's wall time counts the run that computed the kept rows (was the resumed part's)
    assert resumed["provenance"]["wall_s"] >= 1000.0

    # one written for another recipe, or other code, is not reused: refused without
    # --overwrite (saying why), replaced with it
    for edit, why in (({"settings": {**first["provenance"]["settings"], "steps": 1}},
                       "another training recipe"),
                      ({"code": {**first["provenance"]["code"], "sources_sha256": "0"}},
                       "other code")):
        table.write_text(json.dumps({**first, "provenance": {**first["provenance"], **edit}}))
        assert BENCH.main(base + ["--reuse"]) == 2
        assert why in capsys.readouterr().err
        assert BENCH.main(base + ["--reuse", "--overwrite"]) == 0
        assert "kept" not in capsys.readouterr().out
        assert json.loads(table.read_text())["complete"] is True
    # and so is one of other settings
    assert BENCH.main(base + ["--reuse", "--seed", "1"]) == 2
    assert "seed" in capsys.readouterr().err
    assert BENCH.main(base + ["--reuse", "--seed", "1", "--overwrite"]) == 0
    assert json.loads(table.read_text())["provenance"]["args"]["seed"] == 1


@pytest.mark.parametrize(("name", "scales"), [
    ("hybrid_narrow_scale", (0.15, 0.15, 0.15)),
    ("hybrid_narrow_first", (0.15, 0.4, 0.4)),
    ("hybrid_narrow_zoom", (0.4, 0.15, 0.15)),
])
def test_scale_ablations_narrow_only_the_stage_they_name(name, scales):
    # the three runs that tell which stage's scale range carries the gain: (first stage's
    # input scale, crop stages' input scale, crop zoom), narrowed to the earlier default's
    # 0.85-1.15 where named; the crop stages took the first stage's input scale until
    # refine.augment let each stage keep its own, so the two halves add up to the whole
    from vit_facemap.train import _refine_stage_config

    default = profile_config("default")
    cfg = BENCH.ABLATIONS[name][1](copy.deepcopy(default))
    stage = _refine_stage_config(cfg, 2)
    assert (cfg.augment.scale, stage.augment.scale, cfg.refine.zoom) == scales
    assert replace(cfg.augment, scale=default.augment.scale) == default.augment
    assert replace(stage.augment, scale=default.augment.scale) == default.augment
    assert replace(cfg.refine, zoom=default.refine.zoom, augment={}) == default.refine
    assert cfg.model == default.model and cfg.crop == default.crop


def test_strong_geometry_first_changes_the_first_stage_alone():
    # whether strong geometry's gain on animals filmed from other angles comes from the
    # first stage and its cost on split 0's eyelids from the crop stages
    from vit_facemap.train import _refine_stage_config

    default = profile_config("default")
    strong = BENCH.ABLATIONS["hybrid_strong_geometry"][1](copy.deepcopy(default))
    first = BENCH.ABLATIONS["hybrid_strong_geometry_first"][1](copy.deepcopy(default))
    assert first.augment == strong.augment != default.augment
    assert _refine_stage_config(first, 2).augment == _refine_stage_config(default, 2).augment
    assert _refine_stage_config(strong, 2).augment == strong.augment
    assert (first.model, first.crop) == (default.model, default.crop)
    assert replace(first.refine, augment={}) == default.refine


def test_strong_geometry_crops_changes_the_crop_stages_alone():
    # the converse of hybrid_strong_geometry_first: the two add up to hybrid_strong_geometry
    from vit_facemap.train import _refine_stage_config

    default = profile_config("default")
    strong = BENCH.ABLATIONS["hybrid_strong_geometry"][1](copy.deepcopy(default))
    crops = BENCH.ABLATIONS["hybrid_strong_geometry_crops"][1](copy.deepcopy(default))
    assert crops.augment == default.augment
    for n_groups in (1, 2):
        assert _refine_stage_config(crops, n_groups).augment == strong.augment
    assert (crops.model, crops.crop) == (default.model, default.crop)
    assert replace(crops.refine, augment=default.refine.augment) == default.refine


def test_strong_geometry_nose_changes_the_nose_stage_alone():
    from vit_facemap.train import _refine_stage_config

    default = profile_config("default")
    strong = BENCH.ABLATIONS["hybrid_strong_geometry"][1](copy.deepcopy(default))
    nose = BENCH.ABLATIONS["hybrid_strong_geometry_nose"][1](copy.deepcopy(default))
    assert nose.augment == default.augment
    assert _refine_stage_config(nose, 2, "nose").augment == strong.augment
    for group in ("eye", "whisker", "mouth", None):
        assert _refine_stage_config(nose, 4, group).augment == default.augment
    assert (nose.model, nose.crop) == (default.model, default.crop)
    assert replace(nose.refine, group_augment={}) == default.refine


def test_wide_tail_nose_adds_the_tail_to_the_nose_stage_alone():
    from vit_facemap.train import _refine_stage_config

    default = profile_config("default")
    tail = BENCH.ABLATIONS["hybrid_wide_tail_nose"][1](copy.deepcopy(default))
    assert tail.augment == default.augment
    assert _refine_stage_config(tail, 2, "nose").augment == replace(default.augment, wide=0.3)
    for group in ("eye", "whisker", "mouth", None):
        assert _refine_stage_config(tail, 4, group).augment == default.augment
    assert replace(tail.refine, group_augment={}) == default.refine


def test_default_gives_the_first_stage_three_quarters_of_the_minutes():
    from vit_facemap.train import _first_stage_config, _refine_stage_config

    default = profile_config("default")
    even = BENCH.ABLATIONS["hybrid_even_split"][1](copy.deepcopy(default))
    first, first_even = _first_stage_config(default), _first_stage_config(even)
    assert first.max_minutes == pytest.approx(0.75 * default.max_minutes)
    assert first_even.max_minutes == pytest.approx(0.5 * default.max_minutes)
    # the default's first stage runs until its clock on 2 cores; the old split capped it at
    # 2000 steps, which a fast machine reached before its 14 minutes ended
    assert (first.steps, first_even.steps) == (6000, 2000)
    for n_groups in (2, 4):  # schroeder's eye and nose; g7c1's four parts
        crop = _refine_stage_config(default, n_groups)
        crop_even = _refine_stage_config(even, n_groups)
        assert crop.steps == crop_even.steps == 2000 // n_groups
        assert crop.max_minutes == pytest.approx(crop_even.max_minutes / 2)
    assert replace(even, steps=default.steps, refine=replace(even.refine, share=0.25)) == default


def test_mid_geometry_sits_between_the_default_and_strong_geometry():
    # the run asks whether half of strong geometry's extra rotation and shift keeps its gain
    # on animals filmed unlike the rest: only those two fields may move, the scale kept
    default = profile_config("default")
    mid = BENCH.ABLATIONS["hybrid_mid_geometry"][1](copy.deepcopy(default))
    strong = BENCH.ABLATIONS["hybrid_strong_geometry"][1](copy.deepcopy(default))
    changed = {k for k, v in mid.augment.__dict__.items() if getattr(default.augment, k) != v}
    assert changed == {"rotate", "translate"}
    for k in changed:
        assert getattr(default.augment, k) < getattr(mid.augment, k) < getattr(strong.augment, k)
    assert (mid.model, mid.refine, mid.crop) == (default.model, default.refine, default.crop)


def test_the_ablations_the_manuscript_and_readme_name_exist():
    # a renamed or dropped ablation would leave the text telling readers to run a name the
    # benchmark refuses
    import re

    texts = [*sorted((ROOT / "content").glob("*.md")), ROOT / "README.md"]
    named = set()
    for path in texts:
        text = path.read_text()
        for listed in re.findall(r"--ablations ([a-z0-9_,]+)", text):
            named.update(listed.split(","))
        named.update(re.findall(r"`((?:hybrid|cnn|fmnet)_[a-z0-9_]+)`", text))
    assert {"hybrid_flip", "hybrid_no_pos", "hybrid_narrow_scale"} <= named  # the scan reads them
    assert named - set(BENCH.ABLATIONS) == set()


@pytest.mark.parametrize(("name", "first"), [
    ("hybrid_no_pos_first", "hybrid_no_pos"), ("cnn_first", "cnn_two_stage"),
    ("conv_stem_first", None)])
def test_first_stage_ablations_change_the_first_stage_alone(name, first):
    # each asks which stage a network choice helps: its first stage is that of the ablation
    # changing both, its crop stages the default's
    from dataclasses import replace

    from vit_facemap.train import _refine_stage_config

    default = profile_config("default")
    cfg = BENCH.ABLATIONS[name][1](copy.deepcopy(default))
    if first is None:  # no ablation changes both stages this way
        assert replace(cfg.model, stem="resnet18") == default.model and cfg.model.stem == "conv"
    else:
        both = BENCH.ABLATIONS[first][1](copy.deepcopy(default))
        assert cfg.model == both.model != default.model
    assert _refine_stage_config(cfg, 2) == _refine_stage_config(default, 2)
    assert replace(cfg.refine, model=default.refine.model) == default.refine
    assert cfg.augment == default.augment and cfg.steps == default.steps


def test_every_ablation_changes_the_default_recipe():
    # an ablation equal to the default (as hybrid_parts became when the default took its
    # crop stages) would spend a benchmark run measuring nothing
    default = profile_config("default")
    same = [n for n, (_, make) in BENCH.ABLATIONS.items() if make(copy.deepcopy(default)) == default]
    assert same == []


def test_eye_nose_ablation_is_the_earlier_default():
    from dataclasses import replace

    default = profile_config("default")
    cfg = BENCH.ABLATIONS["hybrid_eye_nose"][1](copy.deepcopy(default))
    assert (cfg.refine.share, cfg.refine.auto) == (0.45, "eye+nose")
    assert replace(cfg, refine=default.refine) == default


# hybrid_no_equalize: the earlier default, the crop stages' networks as before CLAHE;
# hybrid_equalize4: a stronger clip limit; nothing else changed in either
@pytest.mark.parametrize(("name", "clip"), [("hybrid_no_equalize", 0.0),
                                            ("hybrid_equalize4", 4.0)])
def test_crop_stage_equalize_ablations_change_the_clip_limit_alone(name, clip):
    from vit_facemap.train import _refine_stage_config

    default = profile_config("default")
    cfg = BENCH.ABLATIONS[name][1](copy.deepcopy(default))
    stage, stage0 = _refine_stage_config(cfg, 2), _refine_stage_config(default, 2)
    assert (stage.model.equalize, stage0.model.equalize) == (clip, 2.0)
    assert cfg.model.equalize == default.model.equalize == 0.0
    assert replace(stage.model, equalize=2.0) == stage0.model
    assert replace(cfg, refine=default.refine) == default


def test_equalize_first_equalises_the_first_stage_and_keeps_the_crop_stages():
    from dataclasses import replace

    from vit_facemap.train import _refine_stage_config

    default = profile_config("default")
    cfg = BENCH.ABLATIONS["hybrid_equalize_first"][1](copy.deepcopy(default))
    assert (cfg.model.equalize, default.model.equalize) == (2.0, 0.0)
    assert replace(cfg.model, equalize=0.0) == default.model
    assert _refine_stage_config(cfg, 2).model == _refine_stage_config(default, 2).model
    assert replace(cfg, model=default.model) == default


def test_a_short_budget_gives_the_crop_stages_their_minimum_minutes():
    from vit_facemap.train import _first_stage_config, _refine_stage_config

    default = profile_config("default")
    # 16: the floor binds below half; 6 and 4: half at most
    for minutes, crop_minutes in ((28.0, 7.0), (16.0, 6.0), (6.0, 3.0), (4.0, 2.0)):
        c = replace(default, max_minutes=minutes)
        assert _first_stage_config(c).max_minutes == pytest.approx(minutes - crop_minutes)
        for n_groups in (2, 4):
            crop = _refine_stage_config(c, n_groups)
            assert crop.max_minutes == pytest.approx(crop_minutes / n_groups)
            assert crop.steps == 2000 // n_groups  # the floor moves minutes, never steps
        assert _first_stage_config(c).steps == 6000
    # up to twice the floor the default splits the minutes as hybrid_even_split does
    c12 = replace(default, max_minutes=12.0)
    even12 = BENCH.ABLATIONS["hybrid_even_split"][1](copy.deepcopy(c12))
    assert _first_stage_config(c12).max_minutes == pytest.approx(6.0)
    assert _first_stage_config(even12).max_minutes == pytest.approx(6.0)
    off = replace(default, max_minutes=6.0, refine=replace(default.refine, min_minutes=0.0))
    assert _first_stage_config(off).max_minutes == pytest.approx(4.5)


def test_min_minutes_is_checked_and_old_configs_load_without_it():
    from vit_facemap.refine import RefineConfig
    from vit_facemap.train import TrainConfig

    with pytest.raises(ValueError, match="min_minutes"):
        RefineConfig(min_minutes=-1.0)
    saved = asdict(profile_config("default"))
    del saved["refine"]["min_minutes"]  # a config.json written before the field
    assert TrainConfig.from_dict(saved).refine.min_minutes == 0.0
