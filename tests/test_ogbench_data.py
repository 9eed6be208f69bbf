"""OGBench cube-single data made with the package's oracles, at a tiny scale, into a private
Minari store; a few offline QAM steps on it; the --download path failing cleanly offline."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from smac_core import tasks
from smac_core.envs import import_ogbench
from smac_core.errors import SmacError

try:
    import_ogbench()  # as the commands import it (its viewer's no-display warning dropped)
except SmacError:
    pytest.skip("the optional ogbench package (extra 'ogbench') is not installed; the OGBench "
                "tasks need it", allow_module_level=True)

from smac_core import ogbench_data
from smac_core.data import load_dataset
from smac_core.generate import main as generate_main
from smac_core.train import main as train_main

PLAY = tasks.TASKS["cube-single-play"]


def test_generates_the_declared_dataset_in_the_store(minari_root, capsys):
    assert generate_main(["cube-single-play", "--episodes", "2", "--episode-steps", "150",
                          "--seed", "3"]) == 0
    assert "2 play episodes, 300 transitions" in capsys.readouterr().out
    data = load_dataset(PLAY.dataset_id)
    env = tasks.make_env(PLAY.name)
    assert data.env_id == PLAY.name and data.metadata["play_episodes"] == 2
    assert data.size == 300
    assert data.observations.shape[1:] == env.observation_space.shape == (28,)
    assert data.actions.shape[1:] == env.action_space.shape == (5,)
    assert np.all(data.actions >= env.action_space.low)
    assert np.all(data.actions <= env.action_space.high)
    # OGBench's single-task labels: reward success(s) - 1; a success transition is terminal
    assert set(np.unique(data.rewards)) <= {-1.0, 0.0}
    np.testing.assert_array_equal(data.terminals, data.rewards == 0.0)
    # every stored episode ends in a terminal (success) or the rollout's truncation
    assert data.num_episodes == data.terminals.sum() + data.timeouts.sum()
    assert 1 <= data.timeouts.sum() <= 2
    assert data.metadata["oracle_subtasks"] >= 2  # the oracle went through several targets
    env.close()


def test_collection_is_a_function_of_the_seed():
    def collect(seed: int, kind: str = "play"):
        return ogbench_data.collect(PLAY, "cube-single", kind, 1, seed, episode_steps=80)

    a, b, c = collect(5), collect(5), collect(6)
    for field in ("observations", "actions", "rewards", "next_observations", "terminals"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.actions, c.actions)
    state = np.random.get_state()[1].copy()
    noisy, noisy_again = collect(5, "noisy"), collect(5, "noisy")
    np.testing.assert_array_equal(noisy.actions, noisy_again.actions)
    assert not np.array_equal(noisy.actions, a.actions)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global generator restored
    assert np.abs(noisy.actions).max() <= 1.0


def test_the_noiseless_oracles_complete_most_pick_and_place_tasks():
    # measured on seed 0: play (plan oracle) 0.96, noisy (Markov oracle) 1.00 over 50 tasks
    assert ogbench_data.oracle_success_rate("cube-single", "play", 12, 0) >= 0.75
    assert ogbench_data.oracle_success_rate("cube-single", "noisy", 8, 0) >= 0.75


def test_offline_qam_trains_and_evaluates_on_the_generated_data(minari_root, tmp_path):
    assert generate_main(["cube-single-noisy", "--episodes", "1", "--episode-steps", "100"]) == 0
    out = tmp_path / "run"
    assert train_main(["offline", "--algo", "qam", "--dataset", "cube-single-noisy", "--out",
                       str(out), "--steps", "3", "--eval-every", "3", "--eval-episodes", "1",
                       "--set", "actor_hidden=[32,32]", "--set", "critic_hidden=[32,32]",
                       "--set", "num_critics=2", "--set", "batch_size=8",
                       "--set", "horizon=5"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = [row for row in rows if "eval_score" in row][-1]
    assert last["step"] == 3 and last["eval_score"] in (0.0, 100.0)


def test_download_fails_cleanly_without_internet(minari_root, monkeypatch, capsys):
    import ogbench

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(ogbench, "make_env_and_datasets", offline)
    assert generate_main(["cube-single-play", "--download"]) == 2
    err = capsys.readouterr().err
    assert "cube-single-play-singletask-v0" in err and "needs internet" in err


def test_a_missing_ogbench_package_is_named_with_its_install(monkeypatch):
    from smac_core.envs import import_ogbench

    monkeypatch.setitem(sys.modules, "ogbench", None)
    with pytest.raises(SmacError, match=r"pip install 'smac-landscape\[ogbench\]'"):
        import_ogbench()
