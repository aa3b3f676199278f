"""The tracker benchmark's models and ablations are valid recipes built on the default one."""

import copy
import importlib.util
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
