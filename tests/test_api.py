"""The Python API (studies.api): the README's example at tiny budgets on the real door
demonstrations, through the command lines' own code path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DOOR_HUMAN

from smac_core.data.__main__ import main as data_main
from smac_core.errors import SmacError
from smac_core.rundir import read_metrics
from studies import api

TINY = {"actor_hidden": [16, 16], "critic_hidden": [16, 16], "batch_size": 16}
FLAGS = {"eval_episodes": 2, "checkpoint_every": 4, "log_every": 4}


@pytest.fixture
def door_binary(minari_root):
    assert data_main(["import", str(DOOR_HUMAN / "door-v0_demos_clipped.hdf5"), "--id",
                      "local/door/human-binary-v0", "--env", "AdroitHandDoor-v1", "--reward",
                      "binary", "--ignore-timeouts"]) == 0


@pytest.mark.slow
def test_the_readme_example_at_tiny_budgets(door_binary, tmp_path):
    offline = api.train_offline("door-binary", algo="smac", out=tmp_path / "smac", steps=8,
                                config={**TINY, "score_model": {"steps": 8}}, eval_every=4,
                                **FLAGS)
    online = api.train_online(offline, algo="sac", out=tmp_path / "smac-sac", steps=6,
                              config=TINY, early_eval_every=3, eval_every=6, **FLAGS)

    run = api.load_run(online)
    assert run.config["from_algorithm"] == "smac" and run.metric == "score"
    rows = [r for r in read_metrics(online.path) if "eval_scores" in r]
    assert run.steps.tolist() == [0, 3, 6] == [r["step"] for r in rows]
    np.testing.assert_array_equal(run.scores, [np.mean(r["eval_scores"]) for r in rows])
    # the command line's own run: config.json records the equivalent command
    assert run.config["command"][:3] == ["python -m smac_core.train", "online", "--algo"]

    evaluation = api.evaluate(online, episodes=2)  # the run's own evaluation episodes
    assert evaluation.returns.tolist() == rows[-1]["eval_returns"]
    assert evaluation.mean == pytest.approx(run.scores[-1])

    line = api.interpolate(offline, online, out=tmp_path / "line", points=3, episodes=2,
                           max_episode_steps=20)
    assert line.t.tolist() == [-0.25, 0.0, 0.5, 1.0, 1.25]
    assert line.mean.shape == line.se.shape == (5,) and line.unit == "normalised score"
    assert line.verdict["verdict"] in {"valley", "monotone", "non-monotone"}
    assert json.loads((line.path / "interpolation.json").read_text())["curves"][0]["mean"] == \
        line.mean.tolist()


def test_bad_arguments_raise_smac_errors_before_anything_runs(tmp_path):
    with pytest.raises(SmacError, match="--algo 'ppo' is not one of smac, "):
        api.train_offline("door-binary", algo="ppo", out=tmp_path / "x")
    with pytest.raises(SmacError, match="--steps must be a positive integer; got 0"):
        api.train_offline("door-binary", out=tmp_path / "x", steps=0)
    with pytest.raises(SmacError, match="--device 'gpu' is not a torch device"):
        api.train_online(None, env="Pendulum-v1", out=tmp_path / "x", device="gpu")
    with pytest.raises(SmacError, match="is not a run directory"):
        api.load_run(tmp_path)
    with pytest.raises(SmacError, match=r"not a training option: .*'learning_rate'"):
        api.train_offline("door-binary", out=tmp_path / "x", learning_rate=1e-3)
    assert not (tmp_path / "x").exists()


def test_seeds_train_seed_stacked_and_return_each_seeds_run(tmp_path):
    runs = api.train_online(None, env="Pendulum-v1", out=tmp_path / "sac", steps=40,
                            config=TINY, seeds=(3, 4), start_steps=20, eval_every=40,
                            early_eval_every=40, **FLAGS)
    assert [run.path for run in runs] == [tmp_path / "sac/seed3", tmp_path / "sac/seed4"]
    assert [run.config["seed"] for run in runs] == [3, 4]
    assert all(run.steps.tolist() == [0, 40] for run in runs)
