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


@pytest.fixture
def pendulum_dataset(minari_root) -> str:
    """400 transitions of uniform random actions on Pendulum-v1, as Minari "local/pendulum/..."."""
    from smac_core import tasks
    from smac_core.data.dataset import TransitionDataset
    from smac_core.data.minari_store import write_minari

    env = tasks.make_env("Pendulum-v1")
    rng = np.random.default_rng(0)
    episodes = []
    for k in range(2):
        obs, _ = env.reset(seed=k)
        ep = {"observations": [obs], "actions": [], "rewards": [], "terminals": [],
              "truncations": []}
        for t in range(200):
            action = rng.uniform(-2.0, 2.0, 1).astype(np.float32)
            obs, reward, terminated, _, _ = env.step(action)
            for key, value in (("observations", obs), ("actions", action), ("rewards", reward),
                               ("terminals", terminated), ("truncations", t == 199)):
                ep[key].append(value)
        episodes.append({k: np.asarray(v) for k, v in ep.items()})
    write_minari(TransitionDataset.from_episodes(episodes), "local/pendulum/random-v0", env)
    return "local/pendulum/random-v0"
