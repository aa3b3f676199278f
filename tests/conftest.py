"""Shared test set-up."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Commands and benchmarks set torch's CPU thread count for their run (``--threads``,
    a config's ``num_threads``); a test that calls one leaves the next test the count it had."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
