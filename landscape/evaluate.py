"""Batched rollout evaluation: P parameter vectors x E episodes in one go.

The P policies run as one batched network (``smac_core.rollout.batched_policy``: the template's
forward over the stacked parameters as batched matmuls) on the chosen device; the P*E
environments form a pool stepped together. Every vector sees the same E reset seeds, episode e
resets with ``smac_core.rollout.eval_episode_seed(seed, e)`` (common random numbers, and the
trainer's evaluation episodes when ``seed`` is the run seed), actions are deterministic, a flow
policy acts from the noise ``smac_core.rollout.eval_action_noise(seed, e, t)`` at step t of
episode e, the same for every vector (common random numbers), and an env stops counting (and
stops being stepped) when its episode ends; the rollout stops when every episode has ended.

Bit-identical to one vector at a time, and to the trainer's evaluation of a checkpoint (with its
run seed): the network always runs on the fixed block of ``ROW_BLOCK``-padded rows per vector
that ``smac_core.rollout`` explains (``obs_block``), finished envs and zero padding rows
included, whatever else is in the batch. A vector leaves the batch once all its episodes have
ended. The reference path (``evaluate_vector_reference``) plays each vector with
``smac_core.rollout.rollout``, the trainer's evaluation. All give the same returns to the last
bit (tests/test_landscape_engine.py, tests/test_evaluation_convention.py).

The env pool is our own rather than a gymnasium vector env: it steps only the envs whose
episode is still running (a vector env steps all of them and autoresets finished ones, wasted
physics when early falls are common, as in a reward valley) and needs no autoreset bookkeeping.

More cores (``workers``, default ``default_workers``; kept for later calls, ``_WORKERS``): on
cpu, min(workers, P) workers evaluate the P vectors in contiguous groups (``GROUPS_PER_WORKER``
per worker, each to the first worker free), each group by this in-process engine,
unsynchronised, the results the same to the last bit (a vector's actions do not depend on the
vectors beside it). On cuda the policy runs here and
the envs are spread over the workers, one pipe round trip per step (``EnvPool``; on cpu slower
than one process, 0.49-0.64x on 2 cores). Else (0 or 1 worker, P = 1 on cpu) one process.
"""

from __future__ import annotations

import copy
import itertools
import multiprocessing as mp
import multiprocessing.connection
import os
import pickle
import signal
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from landscape.hopper import HopperBatch
from landscape.params import check_finite, param_spec, unflatten_params
from smac_core.errors import SmacError
from smac_core.metrics import standard_error
from smac_core.nets import DeterministicPolicy
from smac_core.rollout import (
    action_horizon,
    batched_policy,
    eval_episode_seed,
    noise_block,
    noise_dim,
    obs_block,
    rollout,
)
from smac_core.tasks import episode_score, make_env

MIN_CORES_FOR_WORKERS = 4  # env slices (cuda)
MIN_STEPS_FOR_WORKERS = 100_000  # ~10 s of single-process stepping (Hopper: ~10k steps/s)
# vector groups (cpu): on the 2-core VM (Hopper, E = 10, wall time) 2 workers beat one process
# from ~25,000 env steps on a first call (their start-up included), from 1,000 once started
MIN_STEPS_FOR_VECTOR_WORKERS = 30_000
# more groups than workers, each to the first worker free: episodes of unequal length balance
# out (bench_landscape.py --groups-per-worker; README, Benchmarks: 3 is best or near it)
GROUPS_PER_WORKER = 3


@dataclass
class EvaluationResult:
    """Per-episode outcomes of P parameter vectors x E episodes (episode e reset with
    ``eval_episode_seed(seed, e)``)."""

    returns: np.ndarray  # (P, E) float64 undiscounted episode returns
    successes: np.ndarray  # (P, E) bool: info["success"] at any step
    scores: np.ndarray | None  # (P, E) normalised scores (100 = expert), None without references
    lengths: np.ndarray  # (P, E) int episode lengths in env steps

    @property
    def values(self) -> np.ndarray:
        """(P, E) what mean/stderr summarise: scores when present, else returns."""
        return self.returns if self.scores is None else self.scores

    def mean(self) -> np.ndarray:
        """(P,) mean over episodes."""
        return self.values.mean(axis=1)

    def stderr(self) -> np.ndarray:
        """(P,) standard error of the mean over episodes (``smac_core.metrics.standard_error``:
        std with ddof=1 / sqrt(E)); NaN when E = 1."""
        return standard_error(self.values, axis=1)


def default_workers(num_vectors: int, episodes: int, horizon: int, device: str = "cpu") -> int:
    """Worker processes for P x E x ``horizon`` env steps (module docstring): one per usable core,
    on cpu (vector groups, at most one per vector) from ``MIN_STEPS_FOR_VECTOR_WORKERS`` steps, on
    cuda (env slices) from ``MIN_CORES_FOR_WORKERS`` cores and ``MIN_STEPS_FOR_WORKERS``; else 0."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    steps = num_vectors * episodes * horizon
    if torch.device(device).type == "cpu":
        workers = min(cores or 1, num_vectors)
        return workers if workers >= 2 and steps >= MIN_STEPS_FOR_VECTOR_WORKERS else 0
    enough = (cores or 1) >= MIN_CORES_FOR_WORKERS and steps >= MIN_STEPS_FOR_WORKERS
    return min(cores or 1, num_vectors * episodes) if enough else 0


# envs of earlier calls in this process, by env name, for the next call: making a MuJoCo env
# (parsing its model) costs 2 ms, ~10% of a Hopper grid chunk's time when made anew per call.
# A reset with a seed restores an env completely (the trainer's evaluation envs rely on it too).
_IDLE_ENVS: dict[str, list[gym.Env]] = {}


def _take_envs(env_name: str, count: int) -> list[gym.Env]:
    """``count`` envs of ``env_name``: idle ones of earlier calls first, then new ones."""
    idle = _IDLE_ENVS.setdefault(env_name, [])
    envs = [idle.pop() for _ in range(min(count, len(idle)))]
    envs += [make_env(env_name) for _ in range(count - len(envs))]
    return envs


def _give_back(env_name: str, envs: list[gym.Env]) -> None:
    """Keep ``envs`` (reset before their next use) for later calls in this process."""
    _IDLE_ENVS.setdefault(env_name, []).extend(envs)


class _EnvSlice:
    """Envs of one process: reset with their seeds, then step only the active ones (plain
    Hopper envs all at once, ``HopperBatch``)."""

    def __init__(self, env_name: str, seeds: Sequence[int]) -> None:
        self.env_name, self.seeds = env_name, list(seeds)
        self.envs = _take_envs(env_name, len(self.seeds))
        self.hopper = HopperBatch(self.envs) if HopperBatch.applies_to(self.envs) else None
        self.obs: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        self.obs = np.stack([env.reset(seed=s)[0] for env, s in zip(self.envs, self.seeds,
                                                                    strict=True)])
        if self.hopper is not None:
            self.hopper.reset()
        return self.obs

    def step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, ...]:
        """-> obs (n, obs_dim) (unchanged where inactive), rewards (n,), done (n,), success (n,)."""
        rewards = np.zeros(len(self.envs))
        done, success = np.zeros(len(self.envs), bool), np.zeros(len(self.envs), bool)
        index = np.flatnonzero(active)
        if self.hopper is not None:
            obs, rewards[index], terminated, truncated = self.hopper.step(actions[index], index)
            self.obs[index], done[index] = obs, terminated | truncated
            return self.obs, rewards, done, success
        for i in index:
            obs, reward, terminated, truncated, info = self.envs[i].step(actions[i])
            self.obs[i], rewards[i] = obs, reward
            done[i], success[i] = terminated or truncated, bool(info.get("success", False))
        return self.obs, rewards, done, success

    def close(self) -> None:
        _give_back(self.env_name, self.envs)


# worker processes (process, this end of its pipe), kept for later calls in this process (each
# takes seconds to start: it imports torch and MuJoCo); all are ended when one fails
_WORKERS: list[tuple[Any, Any]] = []


def _worker(conn: Any) -> None:
    """Run the parent's commands: ("evaluate", (spec, args, kwargs)) -> ("progress", fraction)
    every 1%, then ("ok", (returns, successes, lengths)); ("reset", (spec, env_name, seeds)) and
    ("step", (actions, active)) of an env slice -> ("ok", value); an error -> ("failed", trace)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it ends the workers
    torch.set_num_threads(1)
    envs, sent = None, [0.0]

    def report(fraction: float) -> None:
        if fraction - sent[0] >= 0.01:
            conn.send(("progress", fraction))
            sent[0] = fraction

    while True:
        try:
            # the parent's own pipe (as ``conn.recv`` would, which unpickles too)
            command, payload = pickle.loads(conn.recv_bytes())
        except EOFError:  # the parent has gone
            return
        try:
            if command != "step" and payload[0] is not None:  # the parent's registration
                gym.registry[payload[0].id] = payload[0]
            if command == "evaluate":
                sent[0] = 0.0
                result = evaluate_vectors(*payload[1], **payload[2], workers=0, progress=report)
                conn.send(("ok", (result.returns, result.successes, result.lengths)))
            elif command == "reset":
                if envs is not None:  # the last slice's envs, kept for the new one
                    envs.close()
                envs = _EnvSlice(*payload[1:])
                conn.send(("ok", envs.reset()))
            else:
                conn.send(("ok", envs.step(*payload)))
        except Exception:
            conn.send(("failed", traceback.format_exc()))


def _run(workers: list[tuple[Any, Any]], parts: list[tuple[int, int]], what: str,
         messages: list[tuple], progress: Callable[[float], None] | None = None) -> list:
    """The ("ok", value) replies to ``messages`` (job j about ``what`` ``parts[j]``), in job
    order. Job j < len(workers) goes to worker j, each later one to the first worker free (so a
    job's worker is fixed when there are as many jobs as workers: env slices).
    ``progress``: the "progress" replies' mean by part size. A failure or an interruption (they
    may be mid-command) raises and ends every worker."""
    try:
        conns, values, job_of = [conn for _, conn in workers], {}, {}
        fractions, sizes = np.zeros(len(parts)), np.diff(parts).ravel()

        def send(i: int, job: int) -> None:
            # plain pickle: the pipe's own pickler would move a tensor to shared memory
            conns[i].send_bytes(pickle.dumps(messages[job]))
            job_of[i] = job

        for i in range(min(len(workers), len(messages))):
            send(i, i)
        pending = list(range(len(job_of), len(messages)))
        while job_of:
            for conn in mp.connection.wait([conns[i] for i in job_of]):
                i = conns.index(conn)
                job = job_of[i]
                try:
                    kind, value = conn.recv()
                except (EOFError, OSError):  # its end of the pipe closed: it has ended
                    workers[i][0].join(timeout=10)
                    kind, value = "died", f"exit code {workers[i][0].exitcode}"
                if kind in ("failed", "died"):
                    raise RuntimeError(f"landscape worker {i} ({what} {parts[job][0]}.."
                                       f"{parts[job][1] - 1}) {kind}: {value.strip()}")
                if kind == "ok":
                    values[job] = value
                    del job_of[i]
                    if pending:
                        send(i, pending.pop(0))
                if progress is not None:
                    fractions[job] = 1.0 if kind == "ok" else value
                    progress(float(fractions @ sizes) / sizes.sum())
        return [values[job] for job in range(len(messages))]
    except BaseException:
        _end_workers()
        raise


def _take_workers(count: int) -> list[tuple[Any, Any]]:
    """``count`` live workers: those of earlier calls (all new if one has died), then new ones."""
    if not all(process.is_alive() for process, _ in _WORKERS):
        _end_workers()
    while len(_WORKERS) < count:
        parent, child = mp.get_context("spawn").Pipe()
        process = mp.get_context("spawn").Process(target=_worker, args=(child,), daemon=True)
        process.start()
        child.close()
        _WORKERS.append((process, parent))
    return _WORKERS[:count]


def _end_workers() -> None:
    """End every worker: after a failure or an interruption they may be mid-command."""
    for process, conn in _WORKERS:
        process.terminate()
        process.join(timeout=10)
        conn.close()
    _WORKERS.clear()


class EnvPool:
    """N envs (env n reset with ``seeds[n]``) in contiguous slices over ``workers`` worker
    processes, stepped together like an ``_EnvSlice`` (one at a time: the workers are shared)."""

    def __init__(self, env_name: str, seeds: Sequence[int], workers: int) -> None:
        bounds = np.linspace(0, len(seeds), workers + 1).round().astype(int)
        self.parts, self.workers = list(itertools.pairwise(bounds)), _take_workers(workers)
        self.spec = gym.spec(env_name) if env_name in gym.registry else None
        self.env_name, self.seeds = env_name, list(seeds)

    def reset(self) -> np.ndarray:
        return np.concatenate(_run(self.workers, self.parts, "envs", [
            ("reset", (self.spec, self.env_name, self.seeds[a:b])) for a, b in self.parts]))

    def step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, ...]:
        parts = _run(self.workers, self.parts, "envs",
                     [("step", (actions[a:b], active[a:b])) for a, b in self.parts])
        return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def _evaluate_in_groups(policy: DeterministicPolicy, vectors: torch.Tensor, env_name: str,
                        episodes: int, workers: int, progress: Callable[[float], None] | None,
                        **kwargs: Any) -> tuple[np.ndarray, ...]:
    """The vectors in contiguous groups, ``GROUPS_PER_WORKER`` per worker (at most one vector
    each), each evaluated by ``evaluate_vectors`` in the first worker free -> returns,
    successes, lengths (P, E); ``progress``: the groups' mean fraction."""
    groups = min(len(vectors), GROUPS_PER_WORKER * workers)
    parts = list(itertools.pairwise(np.linspace(0, len(vectors), groups + 1).round().astype(int)))
    spec = gym.spec(env_name) if env_name in gym.registry else None
    messages = [("evaluate", (spec, (policy, vectors[start:stop].detach().cpu().clone(),
                                     env_name, episodes), kwargs))  # a view sends all rows
                for start, stop in parts]
    outcomes = _run(_take_workers(workers), parts, "vectors", messages, progress)
    return tuple(np.concatenate(column) for column in zip(*outcomes, strict=True))


@dataclass(frozen=True)
class _Setup:
    """What both evaluation paths need, validated once."""

    policy: DeterministicPolicy  # a copy of the template on the device
    params: dict[str, torch.Tensor]  # name -> contiguous (P, *shape) on the device
    horizon: int  # the most steps an episode may take


def _setup(template: DeterministicPolicy, vectors: torch.Tensor, env_name: str, episodes: int,
           device: str, max_episode_steps: int | None) -> _Setup:
    spec = param_spec(template)
    if vectors.dim() != 2 or vectors.shape[1] != spec.size:
        raise SmacError(f"expected parameter vectors of shape (P, {spec.size}) for this policy, "
                        f"got {tuple(vectors.shape)}")
    check_finite(vectors, spec, "parameter vectors")
    if episodes < 1:
        raise SmacError(f"episodes must be at least 1, got {episodes}")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise SmacError(f"device {device!r} requested but CUDA is not available; use 'cpu'")
    [env] = _take_envs(env_name, 1)
    obs_dim, act_dim = template.obs_mean.shape[0], template.action_low.shape[0]
    if env.observation_space.shape != (obs_dim,) or env.action_space.shape != (act_dim,):
        raise SmacError(f"env {env_name!r} has observations {env.observation_space.shape} and "
                        f"actions {env.action_space.shape}; the policy expects ({obs_dim},) and "
                        f"({act_dim},)")
    horizon = max_episode_steps or (env.spec.max_episode_steps if env.spec else None)
    _give_back(env_name, [env])
    if horizon is None:
        raise SmacError(f"env {env_name!r} has no time limit; pass max_episode_steps")
    policy = copy.deepcopy(template).to(device)
    # contiguous (P, *shape) tensors: vector p's weights sit at the same place for both paths
    params = {name: value.contiguous()
              for name, value in unflatten_params(vectors.to(device, torch.float32), spec).items()}
    return _Setup(policy, params, horizon)


def _result(env_name: str, returns: np.ndarray, successes: np.ndarray,
            lengths: np.ndarray) -> EvaluationResult:
    scores = [episode_score(env_name, float(r), bool(s))
              for r, s in zip(returns.ravel(), successes.ravel(), strict=True)]
    score_array = None if scores[0] is None else np.array(scores).reshape(returns.shape)
    return EvaluationResult(returns, successes, score_array, lengths)


@torch.no_grad()
def evaluate_vectors(template: DeterministicPolicy, vectors: torch.Tensor, env_name: str,
                     episodes: int, seed: int = 0, device: str = "cpu",
                     max_episode_steps: int | None = None,
                     progress: Callable[[float], None] | None = None,
                     workers: int | None = None) -> EvaluationResult:
    """Roll out P parameter vectors (P, D) of ``template``'s architecture for E episodes each.

    Env p*E + e runs vector p from reset seed ``eval_episode_seed(seed, e)`` (a flow policy
    with the noise ``noise_block(seed, E, t, ...)`` at step t). ``max_episode_steps`` caps episodes
    (default: the env's time limit). ``workers``: worker processes (default ``default_workers``;
    the module docstring says how they are used; the results are the same). ``progress(fraction)``
    is called with the fraction of the horizon done: after each env step (with vector groups:
    the groups' mean every 1% of a group's horizon, and 1.0 at the end).
    """
    setup = _setup(template, vectors, env_name, episodes, device, max_episode_steps)
    num_vectors = vectors.shape[0]
    num_envs = num_vectors * episodes
    if workers is None:
        workers = default_workers(num_vectors, episodes, setup.horizon, device)
    on_cpu = torch.device(device).type == "cpu"  # vector groups or this process (module doc)
    if on_cpu and min(workers, num_vectors) >= 2:
        return _result(env_name, *_evaluate_in_groups(
            setup.policy, vectors, env_name, episodes, min(workers, num_vectors), progress,
            seed=seed, device=device, max_episode_steps=max_episode_steps))
    act, dim = batched_policy(setup.policy), noise_dim(setup.policy)
    chunk = action_horizon(setup.policy)
    seeds = [eval_episode_seed(seed, e) for _ in range(num_vectors) for e in range(episodes)]
    returns, lengths = np.zeros(num_envs), np.zeros(num_envs, int)
    successes, active = np.zeros(num_envs, bool), np.ones(num_envs, bool)
    workers = 0 if on_cpu else min(workers, num_envs)  # never more env slices than envs
    pool = EnvPool(env_name, seeds, workers) if workers else _EnvSlice(env_name, seeds)
    obs = pool.reset()
    running = np.arange(num_vectors)  # vectors with an episode still running
    params = setup.params
    act_dim = setup.policy.action_low.shape[0]
    chunks = np.zeros((num_vectors, episodes, chunk * act_dim), np.float32)
    for t in range(setup.horizon):
        k = t % chunk  # action chunks (H > 1): a call every H steps, played open-loop
        if k == 0:
            # the running vectors' whole blocks, finished envs and padding rows included
            # (see the module docstring); finished envs' actions are computed but not used
            block = obs_block(obs.reshape(num_vectors, episodes, -1)[running], len(running),
                              episodes, device)
            noise = noise_block(seed, episodes, t, dim, len(running), device)
            chunks[running] = act(params, block, noise)[:, :episodes].cpu().numpy()
        actions = np.ascontiguousarray(chunks[..., k * act_dim : (k + 1) * act_dim])
        obs, rewards, done, success = pool.step(actions.reshape(num_envs, -1), active)
        returns[active] += rewards[active]
        lengths[active] += 1
        successes |= success & active
        active &= ~done
        if progress is not None:
            progress((t + 1) / setup.horizon)
        still_running = np.flatnonzero(active.reshape(num_vectors, episodes).any(axis=1))
        if len(still_running) == 0:
            break
        if len(still_running) < len(running):  # drop finished vectors from the network
            running = still_running
            index = torch.as_tensor(running, device=device)
            params = {name: value[index] for name, value in setup.params.items()}
    if not workers:
        pool.close()  # keeps the envs for the next call
    shape = (num_vectors, episodes)
    return _result(env_name, returns.reshape(shape), successes.reshape(shape),
                   lengths.reshape(shape))


@torch.no_grad()
def evaluate_vector_reference(template: DeterministicPolicy, vectors: torch.Tensor,
                              env_name: str, episodes: int, seed: int = 0, device: str = "cpu",
                              max_episode_steps: int | None = None) -> EvaluationResult:
    """The simple path ``evaluate_vectors`` is tested against: one vector at a time, its E
    episodes played by ``smac_core.rollout.rollout`` (the trainer's evaluation) in E plain envs."""
    setup = _setup(template, vectors, env_name, episodes, device, max_episode_steps)
    outcomes = []
    for p in range(vectors.shape[0]):
        envs = [make_env(env_name) for _ in range(episodes)]
        params = {name: value[p : p + 1] for name, value in setup.params.items()}
        outcomes.append(rollout(setup.policy, envs, seed, params, setup.horizon, device))
        for env in envs:
            env.close()
    returns, successes, lengths = (np.stack(column) for column in zip(*outcomes, strict=True))
    return _result(env_name, returns, successes, lengths)
