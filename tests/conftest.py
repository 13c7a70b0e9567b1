"""Shared test set-up: one thread per xdist worker, deterministic seeds, CPU."""

import os
import warnings

import pytest
import torch

os.environ.setdefault("PYTHONWARNINGS", "ignore")
torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
