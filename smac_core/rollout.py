"""Deterministic policy rollouts: the one evaluation convention of the trainer and ``landscape``.

Seeds. Evaluation episode ``i`` with seed ``s`` resets with ``eval_episode_seed(s, i)``, in the
trainer's evaluations (``s`` = the run seed) and at every point of a landscape (``s`` = the run
seed of its first checkpoint unless ``--seed`` says otherwise), so a landscape's point at a
checkpoint reproduces the trainer's evaluation of that checkpoint, episode by episode.

Actions. A ``DeterministicPolicy`` (observation normalisation, tanh(mu(trunk(.))), action
scaling, all in float32 torch) runs as ``batched_policy``: the ops of one ``functional_call``
under ``vmap`` over P stacked parameter sets (written out, ``plain_batched_forward``), i.e.
batched matmuls. MuJoCo amplifies a 1e-7 action
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

Noise. A policy with ``noise_dim`` > 0 (a flow policy, ``smac_core.algos.flow.FlowPolicy``)
acts from an initial noise as well as the observation: evaluation uses common random numbers,
the noise of step ``t`` of evaluation episode ``e`` under seed ``s`` being ``eval_action_noise(s,
e, t, dim)``, a standard normal vector drawn from ``SeedSequence([eval_episode_seed(s, e),
EVAL_NOISE_STREAM, t])``. It depends on nothing else (not on the parameters, the number of sets
or episodes run beside it, the device), so the same checkpoint evaluated twice gives the same
returns, and two checkpoints, or the points of a landscape, are compared on the same noise. The
kernel takes it as a second block (P, rows, dim), the same rows for every set, zero in padding
rows (``noise_block``). Policies with ``noise_dim`` 0 (every Gaussian or deterministic actor)
take the observation only. A policy with action chunks (``action_horizon`` H > 1) returns H
actions per call: it is called at steps 0, H, 2H, ... of an episode (with that step's noise) and
the H actions are played open-loop.

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
from torch import nn
from torch.func import functional_call

from smac_core.errors import SmacError
from smac_core.nets import DeterministicPolicy

# seed streams: SeedSequence([seed, stream, index]) gives independent, reproducible env seeds
TRAIN_EPISODE_STREAM, EVAL_EPISODE_STREAM, EXPLORATION_STREAM = 1, 2, 3
EVAL_NOISE_STREAM = 4  # under an evaluation episode's seed: the policy's noise at each step
ROW_BLOCK = 16  # rows per parameter set are padded to a multiple of this: 16 float32 = 64 bytes


def derived_seed(seed: int, stream: int, index: int) -> int:
    """A reproducible 32-bit seed for item ``index`` of a named stream of a run."""
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0])


def eval_episode_seed(seed: int, episode: int) -> int:
    """The reset seed of evaluation episode ``episode`` (0, 1, ...) under seed ``seed``."""
    return derived_seed(seed, EVAL_EPISODE_STREAM, episode)


def eval_action_noise(seed: int, episode: int, step: int, dim: int) -> np.ndarray:
    """The policy noise (dim,) float32 ~ N(0, I) of step ``step`` (0, 1, ...) of evaluation
    episode ``episode`` under seed ``seed``: from ``SeedSequence([eval_episode_seed(seed,
    episode), EVAL_NOISE_STREAM, step])``, so a function of the episode's reset seed and the
    step only."""
    sequence = np.random.SeedSequence([eval_episode_seed(seed, episode), EVAL_NOISE_STREAM, step])
    return np.random.default_rng(sequence).standard_normal(dim, dtype=np.float32)


def noise_dim(policy: torch.nn.Module) -> int:
    """How many noise inputs ``policy`` takes per row (0: it acts from the observation only)."""
    return int(getattr(policy, "noise_dim", 0))


def action_horizon(policy: torch.nn.Module) -> int:
    """H: how many actions one call of ``policy`` returns per row (H * act_dim outputs), played
    open-loop over the next H steps (a flow policy with action chunks; 1 otherwise)."""
    return int(getattr(policy, "horizon", 1))


def batched_policy(template: DeterministicPolicy) -> Callable[..., torch.Tensor]:
    """The template's forward pass over P stacked parameter sets.

    ``(params: name -> (P, *shape), obs (P, B, obs_dim)[, noise (P, B, noise_dim)]) ->
    actions (P, B, act_dim)``; the template's buffers (observation normalisation, action bounds)
    are shared by all P. ``noise`` is required exactly when ``noise_dim(template)`` > 0.

    A ``DeterministicPolicy`` with a Linear/ReLU trunk runs as ``plain_batched_forward``: the
    ops ``vmap`` runs, without its per-call cost (about 0.2 ms); any other policy (a flow
    policy) runs its forward under ``vmap``.
    """
    needs_noise = noise_dim(template) > 0
    if type(template) is DeterministicPolicy and all(
            isinstance(layer, nn.Linear | nn.ReLU) for layer in template.trunk.layers):
        vectorised = lambda params, *inputs: plain_batched_forward(template, params, *inputs)  # noqa: E731
    else:
        buffers = dict(template.named_buffers())

        def act(params: dict[str, torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(template, (params, buffers), inputs)

        vectorised = torch.vmap(act)

    def call(params: dict[str, torch.Tensor], obs: torch.Tensor,
             noise: torch.Tensor | None = None) -> torch.Tensor:
        if needs_noise != (noise is not None):
            raise SmacError("a flow policy acts from an initial noise as well as the observation "
                            "(smac_core.rollout.noise_block)" if needs_noise else
                            "this policy takes no noise input")
        return vectorised(params, obs) if noise is None else vectorised(params, obs, noise)

    return call


def plain_batched_forward(template: DeterministicPolicy, params: dict[str, torch.Tensor],
                          obs: torch.Tensor) -> torch.Tensor:
    """``DeterministicPolicy.forward`` (a Linear/ReLU trunk) of P parameter sets: (params: name
    -> (P, *shape), obs (P, B, obs_dim)) -> (P, B, act_dim), with the ops that ``vmap`` of the
    forward runs (a linear layer: ``bmm`` with the transposed weights, then the bias added), so
    the same float32 results to the last bit (tests/test_landscape_engine.py)."""
    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        return torch.bmm(x, params[f"{name}.weight"].mT) + params[f"{name}.bias"][:, None]

    x = (obs - template.obs_mean) / template.obs_std
    for index, layer in enumerate(template.trunk.layers):
        x = linear(x, f"trunk.layers.{index}") if isinstance(layer, nn.Linear) else torch.relu(x)
    squashed = torch.tanh(linear(x, "mu"))
    return template.action_low + (squashed + 1.0) * 0.5 * (template.action_high
                                                          - template.action_low)


def obs_block(obs: np.ndarray, num_sets: int, episodes: int, device: str | torch.device
              ) -> torch.Tensor:
    """Observations (P*E, obs_dim) -> the kernel's input (P, E padded to ROW_BLOCK, obs_dim),
    float32 on ``device``."""
    rows = -(-episodes // ROW_BLOCK) * ROW_BLOCK
    block = torch.zeros(num_sets, rows, obs.shape[-1], device=device)
    block[:, :episodes] = torch.as_tensor(
        np.asarray(obs, np.float32).reshape(num_sets, episodes, -1), device=device)
    return block


def noise_block(seed: int, episodes: int, step: int, dim: int, num_sets: int,
                device: str | torch.device) -> torch.Tensor | None:
    """The kernel's noise input at step ``step``: (P, E padded to ROW_BLOCK, dim) float32, row e
    of every set ``eval_action_noise(seed, e, step, dim)``, padding rows 0; None when ``dim`` is
    0 (the policy takes no noise)."""
    if dim == 0:
        return None
    rows = -(-episodes // ROW_BLOCK) * ROW_BLOCK
    noise = np.zeros((rows, dim), np.float32)
    for e in range(episodes):
        noise[e] = eval_action_noise(seed, e, step, dim)
    return torch.as_tensor(noise, device=device).expand(num_sets, rows, dim).contiguous()


@torch.no_grad()
def rollout(policy: DeterministicPolicy, envs: Sequence[gym.Env], seed: int,
            params: dict[str, torch.Tensor] | None = None, horizon: int | None = None,
            device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Play one episode in each of the E ``envs`` (env e reset with ``eval_episode_seed(seed,
    e)``) in lockstep, with the deterministic actions of ``policy`` on ``device``.

    ``params``: name -> (1, *shape) parameters to use (default: the policy's own). An episode
    ends when its env terminates or truncates, or after ``horizon`` steps (default: no cap).
    A policy with ``noise_dim`` > 0 gets ``noise_block(seed, E, t, ...)`` at step t; one with
    ``action_horizon`` H > 1 is called at steps 0, H, 2H, ... and its H actions played in turn.
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
    dim, chunk, act_dim = noise_dim(policy), action_horizon(policy), policy.action_low.shape[0]
    for step in itertools.count() if horizon is None else range(horizon):
        k = step % chunk  # an action chunk is asked for every H steps and played open-loop
        if k == 0:
            noise = noise_block(seed, episodes, step, dim, 1, device)
            actions_of_chunk = act(params, obs_block(obs, 1, episodes, device), noise
                                   )[0, :episodes].cpu().numpy()
        actions = actions_of_chunk[:, k * act_dim : (k + 1) * act_dim]
        for e in np.flatnonzero(~done):
            obs[e], reward, terminated, truncated, info = envs[e].step(actions[e])
            returns[e] += reward
            lengths[e] += 1
            successes[e] |= bool(info.get("success", False))
            done[e] = terminated or truncated
        if done.all():
            break
    return returns, successes, lengths
