"""Shared test set-up."""

import pytest
import torch


def pytest_sessionstart(session):
    """One torch CPU thread: the tests' models are tiny, and on a machine whose cores other
    work shares, threads that wait for each other made single tests 2-5x slower and their
    times erratic (test_fit_with_measures: 6 s on one thread, 12-36 s on two)."""
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Commands and benchmarks set torch's CPU thread count for their run (``--threads``,
    a config's ``num_threads``); a test that calls one leaves the next test the count it had."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def as_deeplabcut_project():
    """A labeled set laid out as a DeepLabCut project: its frames under ``labeled-data/``
    and one labels table per video beside them (``suffix`` ``.csv`` or ``.h5``)."""
    import shutil
    from pathlib import Path

    from vit_facemap.dlc import read_labels, write_labels

    def make(labeled_set: Path, project: Path, suffix: str) -> Path:
        frames = read_labels(labeled_set)
        shutil.copytree(Path(labeled_set) / "labeled-data", project / "labeled-data")
        for video in sorted(set(frames.videos)):
            write_labels(frames.subset(frames.videos == video), project / "labeled-data" / video
                         / f"CollectedData_{frames.scorer}{suffix}")
        return project
    return make
