"""A tiny env whose return is a known smooth function of a deterministic policy's parameters.

``AnalyticTarget-v0``: observation dim 3, action dim 2 in [-1, 1], episodes of exactly
``HORIZON`` = 5 steps (the last step is ``truncated``). The observation at step t is the fixed
vector ``OBSERVATIONS[t]`` whatever the actions, and the reward is

    r_t = -||a_t - TARGETS[t]||^2,

so a deterministic policy pi_theta earns R(theta) = -sum_t ||pi_theta(o_t) - target_t||^2,
which ``analytic_return`` computes directly with torch, hence along any line or plane in
parameter space. ``info["success"]`` is True on a step whose squared error is below
``SUCCESS_RADIUS_SQ``.

By default the reset seed perturbs nothing, so the analytic answer is exact for every episode.
``register_analytic_env(obs_noise=s)`` registers a variant whose reset adds N(0, s^2) noise
(drawn from the reset seed) to every observation of the episode: returns then differ between
seeds but not between two evaluations with the same seed, which tests common random numbers.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

HORIZON = 5
OBS_DIM, ACT_DIM = 3, 2
SUCCESS_RADIUS_SQ = 0.01
# o_t: distinct, well-spread inputs so that the policy's parameters matter at every step; on a
# grid of 1/8 so that a policy whose weights are multiples of 1/8 computes its actions exactly in
# float32, whatever order a matmul sums in (tests compare such rollouts bit for bit)
OBSERVATIONS = (np.round(8 * np.array([[np.cos(t), np.sin(t), t / HORIZON - 0.5]
                                        for t in range(HORIZON)])) / 8).astype(np.float32)
# target_t: reachable actions strictly inside the box
TARGETS = np.array([[0.6 * np.sin(0.7 * t + 0.3), 0.5 * np.cos(1.3 * t)] for t in range(HORIZON)])


class AnalyticTargetEnv(gym.Env):
    """Fixed observation sequence, reward = -squared distance of the action to a fixed target."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's convention)

    def __init__(self, obs_noise: float = 0.0) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
        self.obs_noise = obs_noise
        self._observations = OBSERVATIONS
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        noise = self.np_random.normal(size=OBSERVATIONS.shape) * self.obs_noise
        self._observations = (OBSERVATIONS + noise).astype(np.float32)
        self._t = 0
        return self._observations[0].copy(), {}

    def step(self, action):
        squared_error = float(np.sum((np.asarray(action, np.float64) - TARGETS[self._t]) ** 2))
        self._t += 1
        truncated = self._t == HORIZON
        obs = self._observations[min(self._t, HORIZON - 1)].copy()
        return obs, -squared_error, False, truncated, {"success": squared_error < SUCCESS_RADIUS_SQ}


def register_analytic_env(obs_noise: float = 0.0) -> str:
    """Register the env with gymnasium (idempotent) and return its id.

    ``obs_noise=0`` gives ``AnalyticTarget-v0`` (exact analytic returns); a positive value gives
    ``AnalyticTargetNoise<s>-v0`` whose observations are perturbed by the reset seed.
    """
    env_id = "AnalyticTarget-v0" if obs_noise == 0 else f"AnalyticTargetNoise{obs_noise:g}-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=AnalyticTargetEnv, max_episode_steps=HORIZON,
                     kwargs={"obs_noise": obs_noise})
    return env_id


@torch.no_grad()
def analytic_rewards(policy: nn.Module) -> np.ndarray:
    """Per-step rewards (HORIZON,) of ``policy`` (raw obs (B, 3) -> action (B, 2)) in the
    noise-free env, computed as the env computes them (each step's observation on its own)."""
    device = next(policy.parameters()).device
    rewards = []
    for t in range(HORIZON):
        obs = torch.as_tensor(OBSERVATIONS[t : t + 1], device=device)
        action = policy(obs)[0].cpu().numpy()
        rewards.append(-float(np.sum((action.astype(np.float64) - TARGETS[t]) ** 2)))
    return np.array(rewards)


def analytic_return(policy: nn.Module) -> float:
    """R(theta) = -sum_t ||pi_theta(o_t) - target_t||^2, summed in step order like a rollout."""
    total = 0.0
    for reward in analytic_rewards(policy):
        total += float(reward)
    return total
