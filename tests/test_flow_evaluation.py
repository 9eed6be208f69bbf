"""Evaluation of flow policies (QAM, TRQAM) with common random numbers: the policy's initial
noise is a fixed function of (seed, episode, step) (smac_core.rollout), so a checkpoint evaluated
twice gives identical returns and episodes/steps get different noise. The trainer's evaluation
against the landscape's on MuJoCo: tests/test_evaluation_convention.py; batched flow vectors and
flow checkpoints in the landscape: tests/test_flow_landscape.py."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from analytic_env import ACT_DIM, HORIZON, OBS_DIM, OBSERVATIONS, TARGETS, register_analytic_env

from smac_core.algos.flow import FlowPolicy, VelocityField
from smac_core.rollout import (
    ROW_BLOCK,
    eval_action_noise,
    eval_episode_seed,
    noise_block,
    rollout,
)


def make_flow(obs_dim: int = OBS_DIM, act_dim: int = ACT_DIM, hidden=(16, 16), steps: int = 4,
              low=-1.0, high=1.0, gain: float = 30.0, seed: int = 0) -> FlowPolicy:
    """A flow policy whose actions visibly depend on the observation and the noise (the field's
    output layer starts near 0: scaled up by ``gain``)."""
    torch.manual_seed(seed)
    field = VelocityField(obs_dim, act_dim, hidden)
    with torch.no_grad():
        field.net.layers[-1].weight.mul_(gain)
    return FlowPolicy(field, steps, np.zeros(obs_dim), np.ones(obs_dim), np.full(act_dim, low),
                      np.full(act_dim, high))


# ------------------------------------------------------------------------------ the noise
def test_evaluation_noise_is_a_function_of_seed_episode_and_step():
    a = eval_action_noise(3, 1, 7, 5)
    assert a.dtype == np.float32 and a.shape == (5,)
    np.testing.assert_array_equal(a, eval_action_noise(3, 1, 7, 5))     # same draw twice
    others = [eval_action_noise(3, 2, 7, 5), eval_action_noise(3, 1, 8, 5),
              eval_action_noise(4, 1, 7, 5)]                           # episode, step, seed
    assert all(not np.allclose(a, other) for other in others)
    # derived from the episode's reset seed and the step only
    expected = np.random.default_rng(np.random.SeedSequence(
        [eval_episode_seed(3, 1), 4, 7])).standard_normal(5, dtype=np.float32)
    np.testing.assert_array_equal(a, expected)
    draws = np.stack([eval_action_noise(0, e, t, 2) for e in range(50) for t in range(50)])
    assert abs(draws.mean()) < 0.05 and abs(draws.std() - 1.0) < 0.05  # N(0, I)


def test_noise_block_rows_are_the_episodes_noise_for_every_set():
    block = noise_block(5, 3, 2, 4, num_sets=2, device="cpu")
    assert block.shape == (2, ROW_BLOCK, 4) and block.is_contiguous()
    for e in range(3):
        np.testing.assert_array_equal(block[0, e].numpy(), eval_action_noise(5, e, 2, 4))
    assert torch.equal(block[0], block[1]) and not block[:, 3:].any()  # padding rows are 0
    assert noise_block(5, 3, 2, 0, 2, "cpu") is None  # a policy without noise input


# ------------------------------------------------------------------------------ rollouts
def expected_flow_return(policy: FlowPolicy, seed: int, episode: int) -> float:
    """The analytic env's return of episode ``episode``: -sum_t ||pi(o_t, noise(e, t)) -
    target_t||^2, the policy run on one row at a time."""
    total = 0.0
    with torch.no_grad():
        for t in range(HORIZON):
            noise = torch.as_tensor(eval_action_noise(seed, episode, t, ACT_DIM))[None]
            action = policy(torch.as_tensor(OBSERVATIONS[t : t + 1]), noise)[0].numpy()
            total += -float(np.sum((action.astype(np.float64) - TARGETS[t]) ** 2))
    return total


def test_a_flow_policy_is_evaluated_on_its_episode_and_step_noise_reproducibly():
    policy, env_id = make_flow(), register_analytic_env()
    runs = [rollout(policy, [gym.make(env_id) for _ in range(3)], seed=9)[0] for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])       # the same returns, twice
    # the env is the same in every episode: the episodes differ by their noise only
    assert len(np.unique(runs[0])) == 3
    expected = [expected_flow_return(policy, 9, e) for e in range(3)]
    np.testing.assert_allclose(runs[0], expected, rtol=0, atol=1e-5)
    other_seed = rollout(policy, [gym.make(env_id) for _ in range(3)], seed=10)[0]
    assert not np.allclose(other_seed, runs[0])
