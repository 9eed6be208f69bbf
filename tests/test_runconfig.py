"""The trainer's typed entry point: ``RunConfig`` <-> flags, one check for both callers, and
``train.run`` making the run the command line makes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from smac_core.errors import SmacError
from smac_core.runconfig import TRAIN_COMMAND, RunConfig
from smac_core.rundir import read_metrics
from smac_core.train import main, parse_config, run

SMALL = {"actor_hidden": [32, 32], "critic_hidden": [32, 32], "batch_size": 32}


@pytest.mark.parametrize("config", [
    RunConfig("online", "sac", "runs/a b", env="Pendulum-v1"),
    RunConfig("online", "td3", "r", from_checkpoint="runs/off", handoff="inherit", mix=0.25,
              start_steps=0, buffer_size=100, early_eval_every=50, early_eval_until=0,
              steps=7, seed=3, device="cpu", threads=2, eval_every=5, eval_episodes=1,
              checkpoint_every=4, log_every=2, resume=True,
              overrides={"utd": 2, "optimizer": "adam", "actor_hidden": [64, 64],
                         "score_model": {"steps": 20}, "name": "[not json"}),
    RunConfig("offline", "smac", Path("r"), dataset="door-binary", env="AdroitHandDoor-v1",
              optimizer="muon", normalize_obs=False, steps=1),
])
def test_to_argv_is_read_back_as_the_same_config(config):
    argv = config.to_argv()
    assert argv[:3] == [config.phase, "--algo", config.algo]
    assert parse_config(argv) == config
    assert config.command() == [TRAIN_COMMAND, *argv]


def test_phase_defaults_and_only_non_defaults_are_spelled():
    online, offline = RunConfig("online", "sac", "o"), RunConfig("offline", "iql", "f", dataset="d")
    assert (online.steps, online.checkpoint_every) == (100_000, 50_000)
    assert (offline.steps, offline.checkpoint_every) == (1_000_000, 100_000)
    assert online.to_argv() == ["online", "--algo", "sac", "--out", "o"]
    assert offline.to_argv() == ["offline", "--algo", "iql", "--out", "f", "--dataset", "d"]
    assert parse_config(["online", "--algo", "sac", "--out", "o"]) == online


def test_spelled_fields_are_given_at_their_defaults_too():
    """What the experiment runner asks: every value its spec gives, on the command line."""
    config = RunConfig("online", "sac", "o", env="E", mix=0.5, eval_every=7)
    assert config.to_argv(spell=("seed", "mix", "start_steps")) == \
        ["online", "--algo", "sac", "--out", "o", "--env", "E", "--seed", "0", "--eval-every",
         "7", "--mix", "0.5"]  # start_steps is None: nothing to spell
    assert parse_config(config.to_argv(spell=("seed", "mix"))) == config
    with pytest.raises(ValueError, match="not RunConfig fields"):
        config.to_argv(spell=("mixing",))


# errors that argparse cannot give (a value of the right type out of range): the command line
# gives the same message
SAME_ON_THE_COMMAND_LINE = [
    (RunConfig("online", "sac", "o", env="E", steps=-5),
     "--steps must be a positive integer; got -5"),
    (RunConfig("online", "sac", "o", env="E", mix=1.5), "--mix must be in [0, 1]; got 1.5"),
    (RunConfig("online", "sac", "o"), "online runs need --env"),
    (RunConfig("online", "sac", "o", env="E", seed=-1), "--seed must be in [0, 4294967295]"),
    (RunConfig("online", "sac", "o", env="E", device="gpu"), "--device 'gpu' is not a torch"),
]
# what argparse refuses on the command line (a choice, a flag of the other phase)
PYTHON_ONLY = [
    (RunConfig("online", "smac", "o", env="E"), "--algo 'smac' is not one of sac"),
    (RunConfig("online", "sac", "o", env="E", dataset="d"), "--dataset is a flag of offline runs"),
    (RunConfig("offline", "iql", "o", dataset="d", mix=0.1), "--mix is a flag of online runs"),
    (RunConfig("offline", "iql", "o"), "offline runs need --dataset"),
    (RunConfig("sideways", "iql", "o"), "phase must be online or offline"),
]


@pytest.mark.parametrize(("config", "message", "on_the_command_line"),
                         [(*row, True) for row in SAME_ON_THE_COMMAND_LINE]
                         + [(*row, False) for row in PYTHON_ONLY])
def test_python_callers_get_the_command_lines_errors_before_anything_is_written(
        tmp_path, capsys, config, message, on_the_command_line):
    config = replace(config, out=tmp_path / "run")
    with pytest.raises(SmacError) as error:
        run(config)
    assert message in str(error.value)
    assert not config.out.exists()
    if on_the_command_line:
        assert main(config.to_argv()) == 2
        assert message in capsys.readouterr().err
        assert not config.out.exists()


def test_run_from_python_is_the_command_lines_run(tmp_path):
    config = RunConfig("online", "sac", tmp_path / "py", env="Pendulum-v1", steps=30,
                       start_steps=10, eval_every=30, eval_episodes=1, device="cpu",
                       overrides=SMALL)
    seen = []
    assert run(config, on_eval=lambda trainer, step, row: seen.append(step)) == 0
    assert seen == [0, 30]
    stored = json.loads((tmp_path / "py" / "config.json").read_text())
    assert stored["command"] == config.command()
    assert main(replace(config, out=tmp_path / "cli").to_argv()) == 0
    rows = [[r["eval_returns"] for r in read_metrics(tmp_path / d) if "eval_returns" in r]
            for d in ("py", "cli")]
    assert rows[0] == rows[1]
