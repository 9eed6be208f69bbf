"""Shared test setup: single-threaded torch (tests run side by side on 2 cores), fixed seeds,
and the path of the real data in ../shared."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

SHARED_DATA = Path(os.environ.get("SMAC_SHARED_DATA",
                                  Path(__file__).resolve().parents[1].parent / "shared" / "data"))
DOOR_HUMAN = SHARED_DATA / "door-human"


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - code under test may use the legacy global RNG
    torch.manual_seed(0)


@pytest.fixture
def minari_root(tmp_path, monkeypatch) -> Path:
    """An empty, private Minari store for one test."""
    root = tmp_path / "minari"
    root.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root
