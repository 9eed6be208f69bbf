"""One evaluation convention for the trainer and the landscape (smac_core.rollout): a landscape's
point at a checkpoint is, episode for episode and bit for bit, the trainer's evaluation of that
checkpoint, for Gaussian actors and for flow policies (their evaluation noise is a function of the
episode and the step); checkpoints that normalise observations differently are never mixed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from analytic_env import ACT_DIM, OBS_DIM, register_analytic_env
from conftest import DOOR_HUMAN

from landscape import interpolate, surface, trajectory
from smac_core import train
from smac_core.checkpoint import load_checkpoint, save_checkpoint
from smac_core.data.__main__ import main as data_main
from smac_core.nets import TanhGaussianActor
from smac_core.rundir import read_metrics

RUN_SEED = 3  # not 0: the landscape's default seed must come from the checkpoint
TINY = ["--eval-episodes", "2", "--checkpoint-every", "4", "--log-every", "4",
        "--seed", str(RUN_SEED), "--set", "actor_hidden=[16,16]",
        "--set", "critic_hidden=[16,16]", "--set", "batch_size=16"]


@pytest.fixture(scope="module")
def dense_store(tmp_path_factory) -> Path:
    """The real door demonstrations with their dense reward (MuJoCo: a one-ulp action
    difference changes the return) in a private Minari store, as ``test/door-dense-v0``."""
    store = tmp_path_factory.mktemp("convention-minari")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(store))
        assert data_main(["import", str(DOOR_HUMAN / "door-v0_demos_clipped.hdf5"),
                          "--id", "test/door-dense-v0", "--env", "AdroitHandDoor-v1",
                          "--ignore-timeouts"]) == 0
    return store


@pytest.fixture(scope="module")
def door_runs(dense_store, tmp_path_factory) -> tuple[Path, Path]:
    """An offline IQL run (4 updates) on the door data, and a SAC run (4 env steps) started
    from it; both evaluate 2 episodes at their last step, the online one also at 0."""
    tmp = tmp_path_factory.mktemp("convention")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(dense_store))
        offline, online = tmp / "offline", tmp / "online"
        assert train.main(["offline", "--algo", "iql", "--dataset", "test/door-dense-v0",
                           "--steps", "4", "--eval-every", "4", "--out", str(offline),
                           *TINY]) == 0
        assert train.main(["online", "--algo", "sac", "--from", str(offline), "--steps", "4",
                           "--early-eval-every", "4", "--eval-every", "4",
                           "--out", str(online), *TINY]) == 0
    return offline, online


@pytest.fixture(scope="module")
def flow_run(dense_store, tmp_path_factory) -> Path:
    """An offline QAM run (tiny flow, 4 Euler steps) on the door data: 8 updates, evaluated
    (2 episodes) and checkpointed at steps 4 and 8."""
    run = tmp_path_factory.mktemp("convention-flow") / "qam"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(dense_store))
        assert train.main(["offline", "--algo", "qam", "--dataset", "test/door-dense-v0",
                           "--steps", "8", "--eval-every", "4", "--out", str(run), *TINY,
                           "--set", "num_critics=3", "--set", "flow_steps=4"]) == 0
    return run


def evaluations(run: Path) -> dict[int, list[float]]:
    """step -> per-episode returns of the run's evaluations in metrics.jsonl."""
    return {row["step"]: row["eval_returns"] for row in read_metrics(run) if "eval_returns" in row}


def test_interpolation_endpoints_are_the_trainer_evaluations(door_runs, tmp_path):
    offline, online = door_runs
    # an online run started from an offline one normalises as it does: the pair is accepted
    a, b = load_checkpoint(offline), load_checkpoint(online)
    assert a.metadata["obs_std"] != [1.0] * 39  # the dataset's normaliser, not the identity
    for stat in ("obs_mean", "obs_std"):
        assert b.metadata[stat] == a.metadata[stat]
    out = tmp_path / "interpolation"
    assert interpolate.main([str(offline), str(online), "--points", "3", "--range", "0", "1",
                             "--episodes", "2", "--workers", "0", "--out", str(out)]) == 0
    curve = json.loads((out / "interpolation.json").read_text())["curves"][0]
    at_a, _, at_b = curve["returns"]
    # bit for bit: the landscape's t = 0 is the offline run's final evaluation, which is also
    # the online run's step-0 evaluation of the handed-over policy; t = 1 is the online final
    assert at_a == evaluations(offline)[4] == evaluations(online)[0]
    assert at_b == evaluations(online)[4]
    assert at_a[0] != at_a[1] and at_a != at_b  # real, distinct episodes and policies
    assert curve["t"] == [0.0, 0.5, 1.0] and curve["seed"] == RUN_SEED

    overridden = tmp_path / "seed4"
    assert interpolate.main([str(offline), str(online), "--points", "3", "--range", "0", "1",
                             "--episodes", "2", "--workers", "0", "--seed", "4",
                             "--out", str(overridden)]) == 0
    curve = json.loads((overridden / "interpolation.json").read_text())["curves"][0]
    assert curve["seed"] == 4 and curve["returns"][0] != at_a


def write_checkpoint(path: Path, obs_mean: float, step: int = 0) -> Path:
    """A policy checkpoint on the analytic env whose observation normalisation has mean
    ``obs_mean`` in every dimension."""
    torch.manual_seed(step)
    actor = TanhGaussianActor(OBS_DIM, ACT_DIM, (8,))
    metadata = {"algorithm": "sac", "phase": "offline", "config": {}, "step": step,
                "env": register_analytic_env(), "dataset_id": None, "obs_dim": OBS_DIM,
                "act_dim": ACT_DIM, "actor_hidden": [8], "obs_mean": [obs_mean] * OBS_DIM,
                "obs_std": [1.0] * OBS_DIM, "action_low": [-1.0] * ACT_DIM,
                "action_high": [1.0] * ACT_DIM, "seed": 0}
    return save_checkpoint(path, {"actor": actor}, metadata)


def assert_refused(capsys, first: Path, second: Path, out: Path) -> None:
    error = capsys.readouterr().err
    assert f"checkpoints {first} and {second} normalise observations differently" in error
    assert "max |obs_mean difference| = 0.5 (dimension 0)" in error
    assert "max |obs_std difference| = 0" in error
    assert not out.exists()


def test_checkpoints_with_different_normalisers_are_refused_before_anything_is_written(
        tmp_path, capsys):
    a, b = write_checkpoint(tmp_path / "a", 0.0), write_checkpoint(tmp_path / "b", 0.0, 1)
    shifted = write_checkpoint(tmp_path / "shifted", 0.5, 2)
    fast = ["--episodes", "2", "--workers", "0"]

    out = tmp_path / "interpolation"
    # the first pair is fine; the second is refused before the first is evaluated
    assert interpolate.main(["--pair", str(a), str(b), "--pair", str(a), str(shifted),
                             "--out", str(out), *fast]) == 2
    assert_refused(capsys, a, shifted, out)

    out = tmp_path / "surface"
    assert surface.main([str(a), str(b), str(shifted), "--x-points", "2", "--y-points", "2",
                         "--out", str(out), *fast]) == 2
    assert_refused(capsys, a, shifted, out)

    run = tmp_path / "run"
    write_checkpoint(run / "checkpoints" / "step_100", 0.0, 100)
    write_checkpoint(run / "checkpoints" / "step_200", 0.5, 200)
    out = tmp_path / "trajectory"
    assert trajectory.main([str(run), "--out", str(out), *fast]) == 2
    assert_refused(capsys, run / "checkpoints" / "step_100", run / "checkpoints" / "step_200",
                   out)


def test_flow_landscape_points_are_the_trainer_evaluations_and_repeat_exactly(flow_run,
                                                                                tmp_path):
    """A flow checkpoint's landscape point is the trainer's evaluation of it, episode for
    episode, bit for bit (the same evaluation noise per episode and step); evaluating again
    gives the same returns; a plane of random directions through it has that point at its
    origin."""
    step4 = flow_run / "checkpoints" / "step_4"
    assert load_checkpoint(step4).policy.noise_dim == 28  # AdroitHandDoor: 28 actions, H = 1
    command = [str(step4), str(flow_run), "--points", "3", "--range", "0", "1",
               "--episodes", "2", "--workers", "0"]
    curves = []
    for out in (tmp_path / "first", tmp_path / "second"):
        assert interpolate.main([*command, "--out", str(out)]) == 0
        curves.append(json.loads((out / "interpolation.json").read_text())["curves"][0])
    at_a, _, at_b = curves[0]["returns"]
    assert at_a == evaluations(flow_run)[4] and at_b == evaluations(flow_run)[8]
    assert at_a[0] != at_a[1] and at_a != at_b  # real, distinct episodes and policies
    assert curves[1]["returns"] == curves[0]["returns"] and curves[0]["seed"] == RUN_SEED

    out = tmp_path / "surface"
    assert surface.main([str(step4), "--random-directions", "--x-points", "2",
                         "--y-points", "2", "--x-range", "0", "1",
                         "--y-range", "0", "1", "--episodes", "2", "--workers", "0",
                         "--out", str(out)]) == 0
    grid = json.loads((out / "surface.json").read_text())
    assert grid["x"][0] == grid["y"][0] == 0.0 and grid["returns"][0] == at_a  # (0, 0): T0
