"""Landscapes of flow checkpoints (QAM, TRQAM): they load as ``FlowPolicy`` (the fine-tuned
field that acts), P flow parameter vectors evaluated at once equal each alone, an interpolation
between two flow checkpoints runs end to end, so does a learned path (its critic surrogate through
the flow from fixed noise), and the commands whose objective is not defined for flows refuse
them."""

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
    from smac_core.algos import make_agent

    config = {"flow_steps": steps, "critic_hidden": [8], "num_critics": 2}
    torch.manual_seed(seed)
    critic_net = make_agent(algorithm, OBS_DIM, ACT_DIM, config).networks["critic"]
    actor = make_flow(seed=seed).field
    networks = {"actor": actor, "actor_base": make_flow(seed=seed + 100).field,
                "critic": critic_net}
    metadata = {"algorithm": algorithm, "phase": "offline", "step": seed,
                "config": config, "env": register_analytic_env(obs_noise=0.2),
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


def test_critic_and_risk_refuse_flow_checkpoints(tmp_path, capsys):
    from landscape import risk

    a, b = write_flow_checkpoint(tmp_path / "a", 0), write_flow_checkpoint(tmp_path / "b", 1)
    for command, argv in ((critic, [str(a), str(b)]), (risk, [str(a)])):
        out = tmp_path / command.__name__.split(".")[-1]
        assert command.main([*argv, "--episodes", "2", "--out", str(out)]) == 2
        error = capsys.readouterr().err
        assert "does not take flow-policy checkpoints" in error and "qam" in error
        assert not out.exists()


@pytest.mark.parametrize("horizon", [1, 2])
def test_flow_surrogate_is_the_mean_q_of_the_flow_actions_batched_or_not(horizon):
    """The path's surrogate for a flow policy: Q of the chunk the flow makes from each state's
    fixed noise; P vectors at once equal each alone and the hand computation, and it is
    differentiable through the Euler steps."""
    from landscape.params import unflatten_params
    from smac_core.nets import CriticEnsemble

    torch.manual_seed(horizon)
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 1.0])
    policy = FlowPolicy(VelocityField(3, 2, (16, 16), horizon=horizon), 4, np.full(3, 0.5),
                        np.full(3, 2.0), low, high)
    q = CriticEnsemble(3, 2 * horizon, (8,), 2)
    states = torch.randn(6, 3)
    noise = path.surrogate_noise(policy, 6, seed=3)
    assert noise.shape == (6, 2 * horizon)
    assert torch.equal(noise, path.surrogate_noise(policy, 6, seed=3))  # fixed by the seed
    base = flatten_params(policy)
    vectors = base + 0.1 * torch.randn(4, base.numel())
    surrogate = path.critic_surrogate(policy, q, states, noise)
    batched = surrogate(vectors)
    torch.testing.assert_close(batched, torch.cat([surrogate(v[None]) for v in vectors]))
    with torch.no_grad():  # by hand: the flow's chunk for each state, mapped to [-1, 1]
        params = {k: v[0] for k, v in unflatten_params(vectors[1:2], param_spec(policy)).items()}
        chunk = torch.func.functional_call(policy, params, (states, noise))
        unit = 2.0 * (chunk - torch.as_tensor(low, dtype=torch.float32).repeat(horizon)) / \
            torch.as_tensor(high - low, dtype=torch.float32).repeat(horizon) - 1.0
        expected = q((states - 0.5) / 2.0, unit).mean()
    torch.testing.assert_close(batched[1], expected)
    vectors.requires_grad_(True)
    surrogate(vectors).sum().backward()
    assert vectors.grad.abs().sum() > 0


def test_path_between_flow_checkpoints_runs_end_to_end(tmp_path, capsys):
    a, b = write_flow_checkpoint(tmp_path / "a", 0), write_flow_checkpoint(tmp_path / "b", 1)
    demos = tmp_path / "demos.npy"
    observations = np.random.default_rng(0).normal(size=(9, OBS_DIM)).astype(np.float32)
    np.save(demos, np.array([{"observations": observations,
                              "next_observations": np.roll(observations, -1, 0),
                              "actions": np.zeros((9, ACT_DIM), np.float32),
                              "rewards": np.zeros(9, np.float32),
                              "terminals": np.zeros(9, bool)}], dtype=object),
            allow_pickle=True)
    out = tmp_path / "path"
    assert path.main([str(a), str(b), "--dataset", str(demos), "--steps", "5", "--lr", "0.01",
                      "--t-samples", "2", "--points", "3", "--episodes", "2", "--workers", "0",
                      "--out", str(out)]) == 0
    result = json.loads((out / "path.json").read_text())
    line, curve = result["curves"]
    assert len(result["training"]["objective"]) == 5
    assert curve["mean"][0] == line["mean"][0] and curve["mean"][-1] == line["mean"][-1]
    assert line["surrogate"][0] == pytest.approx(curve["surrogate"][0], rel=1e-5)
    assert "== learned bezier:" in capsys.readouterr().out


def test_trajectory_of_a_flow_run_runs_end_to_end(tmp_path):
    from landscape import trajectory

    run = tmp_path / "run"
    for step in (1, 2, 3):
        write_flow_checkpoint(run / "checkpoints" / f"step_{step}", step)
    out = tmp_path / "trajectory"
    assert trajectory.main([str(run), "--episodes", "2", "--workers", "0",
                            "--out", str(out)]) == 0
    assert any(out.glob("*.json"))
