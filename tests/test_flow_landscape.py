"""Landscapes of flow checkpoints (QAM, TRQAM): they load as ``FlowPolicy`` (the fine-tuned
field that acts), P flow parameter vectors evaluated at once equal each alone, an interpolation
between two flow checkpoints runs end to end, and the commands whose objective is not defined
for flows refuse them."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from analytic_env import ACT_DIM, OBS_DIM, register_analytic_env
from test_flow_evaluation import make_flow

from landscape import critic, interpolate, path
from landscape.evaluate import evaluate_vector_reference, evaluate_vectors
from landscape.params import check_compatible, flatten_params, param_spec, policy_vector
from smac_core.algos.flow import FlowPolicy, VelocityField
from smac_core.checkpoint import load_checkpoint, save_checkpoint
from smac_core.errors import SmacError
from smac_core.rollout import rollout


@pytest.mark.parametrize("env_id", [register_analytic_env(obs_noise=0.2), "Hopper-v5"])
def test_batched_flow_vectors_equal_each_alone(env_id):
    """P flow parameter vectors at once (one vmapped flow) give bit-identical returns to each
    alone (the trainer's rollout); equal vectors see equal episodes (common random numbers)."""
    env = gym.make(env_id)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    policy = make_flow(obs_dim, act_dim, low=env.action_space.low, high=env.action_space.high)
    base = flatten_params(policy)
    vectors = torch.stack([base, base, base + 0.05 * torch.randn_like(base), 0.5 * base])
    kwargs = {"episodes": 3, "seed": 11, "max_episode_steps": 40}
    batched = evaluate_vectors(policy, vectors, env_id, workers=0, **kwargs)
    reference = evaluate_vector_reference(policy, vectors, env_id, **kwargs)
    np.testing.assert_array_equal(batched.returns, reference.returns)
    np.testing.assert_array_equal(batched.lengths, reference.lengths)
    np.testing.assert_array_equal(batched.returns[0], batched.returns[1])
    assert len(np.unique(batched.returns)) == 9


def test_batched_flow_vectors_with_action_chunks_equal_each_alone():
    """H = 3: both paths ask for a chunk every 3 steps and play it open-loop (Hopper, where a
    one-ulp action difference changes the return); episodes end at different steps."""
    env = gym.make("Hopper-v5")
    torch.manual_seed(0)
    field = VelocityField(11, 3, (16, 16), horizon=3)
    with torch.no_grad():
        field.net.layers[-1].weight.mul_(30)
    policy = FlowPolicy(field, 4, np.zeros(11), np.ones(11), env.action_space.low,
                        env.action_space.high)
    assert policy(torch.zeros(1, 11), torch.zeros(1, 9)).shape == (1, 9)
    base = flatten_params(policy)
    vectors = torch.stack([base, base + 0.05 * torch.randn_like(base), 0.5 * base])
    kwargs = {"episodes": 3, "seed": 5, "max_episode_steps": 40}
    batched = evaluate_vectors(policy, vectors, "Hopper-v5", workers=0, **kwargs)
    reference = evaluate_vector_reference(policy, vectors, "Hopper-v5", **kwargs)
    np.testing.assert_array_equal(batched.returns, reference.returns)
    np.testing.assert_array_equal(batched.lengths, reference.lengths)
    assert len(np.unique(batched.returns)) == 9


# ------------------------------------------------------------------------------ checkpoints
def write_flow_checkpoint(path, seed: int, steps: int = 4, algorithm: str = "qam"):
    """A QAM-like checkpoint on the analytic env: fine-tuned field ``actor``, a base, a
    critic."""
    from smac_core.nets import CriticEnsemble

    actor = make_flow(seed=seed).field
    networks = {"actor": actor, "actor_base": make_flow(seed=seed + 100).field,
                "critic": CriticEnsemble(OBS_DIM, ACT_DIM, (8,), 2)}
    metadata = {"algorithm": algorithm, "phase": "offline", "step": seed,
                "config": {"flow_steps": steps}, "env": register_analytic_env(obs_noise=0.2),
                "dataset_id": None, "obs_dim": OBS_DIM, "act_dim": ACT_DIM,
                "actor_hidden": [16, 16], "obs_mean": [0.0] * OBS_DIM,
                "obs_std": [1.0] * OBS_DIM, "action_low": [-1.0] * ACT_DIM,
                "action_high": [1.0] * ACT_DIM, "seed": 2}
    return save_checkpoint(path, networks, metadata)


def test_a_flow_checkpoint_loads_as_its_fine_tuned_flow(tmp_path):
    ckpt = load_checkpoint(write_flow_checkpoint(tmp_path / "a", 0, steps=3))
    assert isinstance(ckpt.policy, FlowPolicy) and ckpt.policy.steps == 3
    assert ckpt.policy.noise_dim == ACT_DIM
    # the vector is the acting field only, not the base or the critic
    assert all(name.startswith("field.net.") for name in param_spec(ckpt.policy).names)
    vector, _ = policy_vector(ckpt)
    expected = flatten_params(make_flow(seed=0).field)
    assert torch.equal(vector, expected)
    other = load_checkpoint(write_flow_checkpoint(tmp_path / "b", 1, steps=5))
    with pytest.raises(SmacError, match="flow_steps 3 vs 5"):
        check_compatible([ckpt, other])


def test_interpolation_between_flow_checkpoints_runs_end_to_end(tmp_path):
    a = write_flow_checkpoint(tmp_path / "a", 0)
    b = write_flow_checkpoint(tmp_path / "b", 1, algorithm="trqam")
    out = tmp_path / "line"
    assert interpolate.main([str(a), str(b), "--points", "3", "--range", "0", "1",
                             "--episodes", "3", "--workers", "0", "--out", str(out)]) == 0
    curve = json.loads((out / "interpolation.json").read_text())["curves"][0]
    at_a, _, at_b = curve["returns"]
    for endpoint, returns in ((a, at_a), (b, at_b)):
        reference = rollout(load_checkpoint(endpoint).policy,
                            [gym.make(register_analytic_env(obs_noise=0.2)) for _ in range(3)],
                            seed=2)[0]
        assert returns == reference.tolist()     # the endpoint's own evaluation (run seed 2)
    assert at_a != at_b


def test_path_critic_and_risk_refuse_flow_checkpoints(tmp_path, capsys):
    from landscape import risk

    a, b = write_flow_checkpoint(tmp_path / "a", 0), write_flow_checkpoint(tmp_path / "b", 1)
    for command, argv in ((path, [str(a), str(b)]), (critic, [str(a), str(b)]),
                          (risk, [str(a)])):
        out = tmp_path / command.__name__.split(".")[-1]
        assert command.main([*argv, "--episodes", "2", "--out", str(out)]) == 2
        error = capsys.readouterr().err
        assert "does not take flow-policy checkpoints" in error and "qam" in error
        assert not out.exists()


def test_trajectory_of_a_flow_run_runs_end_to_end(tmp_path):
    from landscape import trajectory

    run = tmp_path / "run"
    for step in (1, 2, 3):
        write_flow_checkpoint(run / "checkpoints" / f"step_{step}", step)
    out = tmp_path / "trajectory"
    assert trajectory.main([str(run), "--episodes", "2", "--workers", "0",
                            "--out", str(out)]) == 0
    assert any(out.glob("*.json"))
