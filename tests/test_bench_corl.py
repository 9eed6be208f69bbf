"""benchmarks/bench_corl.py's loader of CORL files (behaviour only, no timing): it refuses a
directory that is not a CORL checkout with a clear error, imports a file unchanged with
stand-ins for d4rl, gym, pyrallis, wandb and tqdm, and leaves ``sys.modules`` as it was."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from smac_core.errors import SmacError

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

# a file shaped like CORL's single-file scripts (written for this test; no CORL code)
FAKE_IQL = '''
from dataclasses import dataclass

import d4rl
import gym
import pyrallis
import torch
import wandb
from tqdm import trange


@dataclass
class TrainConfig:
    beta: float = 3.0


class ImplicitQLearning:
    def train(self, batch):
        return {"n": len(batch)}


def wrap_env(env: gym.Env) -> gym.Env:
    return env


@pyrallis.wrap()
def train(config: TrainConfig):
    wandb.init()
    d4rl.qlearning_dataset(gym.make("x"))
'''


@pytest.fixture
def bench_corl(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_corl

    return bench_corl


def fake_checkout(root: Path, text: str = FAKE_IQL) -> Path:
    (root / "algorithms" / "offline").mkdir(parents=True)
    (root / "algorithms" / "offline" / "iql.py").write_text(text)
    return root


def test_refuses_a_directory_that_is_not_a_corl_checkout(bench_corl, tmp_path):
    with pytest.raises(SmacError, match=r"is not a CORL checkout: it has no "
                                         r"algorithms/offline/iql\.py"):
        bench_corl.load_corl_module(tmp_path, "algorithms/offline/iql.py", "ImplicitQLearning")
    with pytest.raises(SmacError, match="no such directory"):
        bench_corl.load_corl_module(tmp_path / "missing", "algorithms/offline/iql.py",
                                    "ImplicitQLearning")


def test_refuses_a_file_without_the_expected_class(bench_corl, tmp_path):
    root = fake_checkout(tmp_path, FAKE_IQL.replace("class ImplicitQLearning", "class Other"))
    with pytest.raises(SmacError, match="defines no class ImplicitQLearning"):
        bench_corl.load_corl_module(root, "algorithms/offline/iql.py", "ImplicitQLearning")


def test_a_file_that_fails_to_import_is_named(bench_corl, tmp_path):
    root = fake_checkout(tmp_path, "import jax_not_installed_here\n")
    with pytest.raises(SmacError, match=r"cannot import CORL's .*iql\.py: ModuleNotFoundError"):
        bench_corl.load_corl_module(root, "algorithms/offline/iql.py", "ImplicitQLearning")


def test_imports_unchanged_with_stand_ins_and_restores_sys_modules(bench_corl, tmp_path):
    root = fake_checkout(tmp_path)
    before = {name: sys.modules.get(name) for name in bench_corl.STUBBED_MODULES}
    module = bench_corl.load_corl_module(root, "algorithms/offline/iql.py", "ImplicitQLearning")
    assert module.ImplicitQLearning().train([1, 2]) == {"n": 2}
    assert module.TrainConfig().beta == 3.0
    assert {name: sys.modules.get(name) for name in bench_corl.STUBBED_MODULES} == before
    # the stand-ins refuse to do anything an update does not need
    with pytest.raises(SmacError, match=r"wandb\.init is a stand-in"):
        module.train(module.TrainConfig())


def test_corl_batch_has_corl_buffer_shapes(bench_corl):
    import torch

    from smac_core.data.buffers import Batch

    n = 4
    batch = Batch(observations=torch.zeros(n, 11), actions=torch.zeros(n, 3),
                  rewards=torch.arange(n, dtype=torch.float32), next_observations=torch.ones(n, 11),
                  dones=torch.zeros(n), returns_to_go=torch.full((n,), 2.0))
    columns = bench_corl.corl_batch(batch, returns_to_go=True)
    assert [tuple(c.shape) for c in columns] == [(n, 11), (n, 3), (n, 1), (n, 11), (n, 1), (n, 1)]
    assert torch.equal(columns[2][:, 0], batch.rewards)
    assert len(bench_corl.corl_batch(batch, returns_to_go=False)) == 5
