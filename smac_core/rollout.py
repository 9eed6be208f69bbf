"""Deterministic policy rollouts: the one evaluation convention of the trainer and ``landscape``.

Seeds. Evaluation episode ``i`` with seed ``s`` resets with ``eval_episode_seed(s, i)``, in the
trainer's evaluations (``s`` = the run seed) and at every point of a landscape (``s`` = the run
seed of its first checkpoint unless ``--seed`` says otherwise), so a landscape's point at a
checkpoint reproduces the trainer's evaluation of that checkpoint, episode by episode.

Actions. A ``DeterministicPolicy`` (observation normalisation, tanh(mu(trunk(.))), action
scaling, all in float32 torch) runs as ``batched_policy``: one ``functional_call`` under
``vmap`` over P stacked parameter sets, i.e. batched matmuls. MuJoCo amplifies a 1e-7 action
difference into a different episode, and the rounding of a float32 matmul depends on (measured
with MKL on CPU; not yet measured with cuBLAS): the number of rows it multiplies (one-row GEMV
and many-row GEMM sum in different orders), the memory alignment of the input (a vector's block
starting mid cache line is summed differently) and the op (``addmm`` adds the bias first, a
batched matmul last); not on the number of parameter sets stacked nor on where a weight matrix
sits. So the network always runs on a fixed block of ``ROW_BLOCK``-padded rows per parameter
set, (P, ceil(E / 16) * 16, obs_dim), finished envs and zero padding rows included
(``obs_block``): every set's block of every activation then starts on a 64-byte boundary, and
the actions of E episodes do not depend on how many sets run beside them. (The trainer's agents
act through a plain module forward and numpy normalisation, which differ from this kernel by
about one float32 ulp: evaluations use the kernel, never ``Agent.act``.)

``rollout`` plays E episodes of one parameter set in lockstep: the trainer's evaluation and the
landscape's reference path; ``landscape.evaluate.evaluate_vectors`` plays P sets in an env pool
and returns the same returns to the last bit.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch.func import functional_call

from smac_core.nets import DeterministicPolicy

# seed streams: SeedSequence([seed, stream, index]) gives independent, reproducible env seeds
TRAIN_EPISODE_STREAM, EVAL_EPISODE_STREAM, EXPLORATION_STREAM = 1, 2, 3
ROW_BLOCK = 16  # rows per parameter set are padded to a multiple of this: 16 float32 = 64 bytes


def derived_seed(seed: int, stream: int, index: int) -> int:
    """A reproducible 32-bit seed for item ``index`` of a named stream of a run."""
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0])


def eval_episode_seed(seed: int, episode: int) -> int:
    """The reset seed of evaluation episode ``episode`` (0, 1, ...) under seed ``seed``."""
    return derived_seed(seed, EVAL_EPISODE_STREAM, episode)


def batched_policy(template: DeterministicPolicy) -> Callable[[dict[str, torch.Tensor],
                                                               torch.Tensor], torch.Tensor]:
    """The template's forward pass over P stacked parameter sets.

    ``(params: name -> (P, *shape), obs (P, B, obs_dim)) -> actions (P, B, act_dim)``; the
    template's buffers (observation normalisation, action bounds) are shared by all P.
    """
    buffers = dict(template.named_buffers())

    def act(params: dict[str, torch.Tensor], obs: torch.Tensor) -> torch.Tensor:
        return functional_call(template, (params, buffers), (obs,))

    return torch.vmap(act)


def obs_block(obs: np.ndarray, num_sets: int, episodes: int, device: str | torch.device
              ) -> torch.Tensor:
    """Observations (P*E, obs_dim) -> the kernel's input (P, E padded to ROW_BLOCK, obs_dim),
    float32 on ``device``."""
    rows = -(-episodes // ROW_BLOCK) * ROW_BLOCK
    block = torch.zeros(num_sets, rows, obs.shape[-1], device=device)
    block[:, :episodes] = torch.as_tensor(
        np.asarray(obs, np.float32).reshape(num_sets, episodes, -1), device=device)
    return block


@torch.no_grad()
def rollout(policy: DeterministicPolicy, envs: Sequence[gym.Env], seed: int,
            params: dict[str, torch.Tensor] | None = None, horizon: int | None = None,
            device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Play one episode in each of the E ``envs`` (env e reset with ``eval_episode_seed(seed,
    e)``) in lockstep, with the deterministic actions of ``policy`` on ``device``.

    ``params``: name -> (1, *shape) parameters to use (default: the policy's own). An episode
    ends when its env terminates or truncates, or after ``horizon`` steps (default: no cap).
    Returns (returns (E,) float64, successes (E,) bool: ``info["success"]`` at any step,
    lengths (E,) int).
    """
    if params is None:
        params = {name: value.detach()[None] for name, value in policy.named_parameters()}
    act = batched_policy(policy)
    episodes = len(envs)
    obs = np.stack([env.reset(seed=eval_episode_seed(seed, e))[0] for e, env in enumerate(envs)])
    returns, lengths = np.zeros(episodes), np.zeros(episodes, int)
    successes, done = np.zeros(episodes, bool), np.zeros(episodes, bool)
    for _ in itertools.count() if horizon is None else range(horizon):
        actions = act(params, obs_block(obs, 1, episodes, device))[0, :episodes].cpu().numpy()
        for e in np.flatnonzero(~done):
            obs[e], reward, terminated, truncated, info = envs[e].step(actions[e])
            returns[e] += reward
            lengths[e] += 1
            successes[e] |= bool(info.get("success", False))
            done[e] = terminated or truncated
        if done.all():
            break
    return returns, successes, lengths
