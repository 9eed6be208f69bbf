"""Landscape engine throughput: env steps/s of ``evaluate_vectors`` on Hopper-v5, as fractions of
the physical limit per core used and for the whole machine.

For P = 1, 4, 16, 64 parameter vectors (a Hopper-sized 256x256 policy near its initialisation
plus small per-vector perturbations, like neighbouring grid points) x E episodes each, against
one vector at a time (what one does without the engine: the plain policy module, one env, one
episode after another) and against the physical limit: the raw ``mujoco.mj_step`` rate of
Hopper's model on one core / frame skip = env steps/s of one core. A run's per-core fraction
divides its rate by that limit x the cores it used, its total fraction by the limit x every
usable core. Cores used: 1 in-process; on cpu with ``workers`` >= 2 and P >= 2 the vector groups
(``landscape.evaluate``), min(workers, P, usable cores), this process only waiting for them; on
cuda the env slices, workers + 1 (this process runs the policy), at most the usable cores.

Measurement: the limit and every method are timed in interleaved rounds (limit, method 1,
method 2, ..., limit, ...; ``--rounds``), so that a loaded machine slows them alike. In-process
runs and the limit are timed by thread CPU time (``time.thread_time``: other processes do not
count); runs with worker processes, whose work is in other processes, by wall time (then
compare them on an idle machine), with the worker pool warm: every such method is called once
before the rounds, untimed (the first of those calls starts the workers, seconds of imports; its
wall time is printed apart). ``--workers 0 2`` times each P with each count: the scaling from
one core to all. CPU, and CUDA when available. Prints a markdown table.

    python benchmarks/bench_landscape.py [--quick] [--episodes E] [--max-steps T] [--rounds R]
        [--vectors 1 4 16 64] [--devices cpu cuda] [--workers N ...] [--threads N]
        [--groups-per-worker K ...]

``--groups-per-worker 1 2 3 4`` times the vector-group path with each number of groups per
worker (the engine's ``GROUPS_PER_WORKER`` is 3).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import mujoco
import numpy as np
import torch

import landscape.evaluate
from landscape.evaluate import default_workers, evaluate_vectors
from landscape.params import flatten_params, param_spec, unflatten_params
from smac_core.nets import DeterministicActor, DeterministicPolicy
from smac_core.tasks import make_env

ENV = "Hopper-v5"


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def mj_steps(seconds: float, clock: Callable[[], float]) -> tuple[int, float]:
    """(raw mj_step calls, seconds on ``clock``) of about ``seconds`` of Hopper's physics."""
    env = make_env(ENV)
    env.reset(seed=0)
    model, data = env.unwrapped.model, env.unwrapped.data
    steps, start = 0, clock()
    while clock() - start < seconds:
        for _ in range(1000):
            mujoco.mj_step(model, data)
        steps += 1000
    return steps, clock() - start


def grid_vectors(count: int, seed: int = 0) -> tuple[DeterministicPolicy, torch.Tensor]:
    """A 256x256 Hopper policy and ``count`` vectors around it (relative noise 5%)."""
    torch.manual_seed(seed)
    env = make_env(ENV)
    actor = DeterministicActor(env.observation_space.shape[0], env.action_space.shape[0])
    policy = DeterministicPolicy.from_actor(actor, np.zeros(11), np.ones(11),
                                            env.action_space.low, env.action_space.high)
    base = flatten_params(policy)
    return policy, base + 0.05 * base.abs().mean() * torch.randn(count, base.numel())


@torch.no_grad()
def one_at_a_time(policy: DeterministicPolicy, vectors: torch.Tensor, episodes: int,
                  max_steps: int, device: str, clock: Callable[[], float]) -> tuple[int, float]:
    """(env steps, seconds on ``clock``) of the plain loop: each vector loaded into the module in
    turn, its episodes (seeds 0..E-1) run one after another in one env."""
    start, steps = clock(), 0
    env = make_env(ENV)
    module = policy.to(device)
    for vector in vectors:
        module.load_state_dict(unflatten_params(vector, param_spec(module)), strict=False)
        for episode in range(episodes):
            obs, _ = env.reset(seed=episode)
            for _ in range(max_steps):
                action = module(torch.as_tensor(obs, dtype=torch.float32, device=device)[None])
                obs, _, terminated, truncated, _ = env.step(action[0].cpu().numpy())
                steps += 1
                if terminated or truncated:
                    break
    return steps, clock() - start


def batched(policy: DeterministicPolicy, vectors: torch.Tensor, episodes: int, max_steps: int,
            device: str, workers: int, clock: Callable[[], float],
            groups_per_worker: int | None = None) -> tuple[int, float]:
    """(env steps, seconds on ``clock``) of one ``evaluate_vectors`` call (with
    ``groups_per_worker`` vector groups per worker instead of the engine's constant)."""
    default = landscape.evaluate.GROUPS_PER_WORKER
    landscape.evaluate.GROUPS_PER_WORKER = groups_per_worker or default
    try:
        start = clock()
        result = evaluate_vectors(policy, vectors, ENV, episodes, seed=0, device=device,
                                  max_episode_steps=max_steps, workers=workers)
        return int(result.lengths.sum()), clock() - start
    finally:
        landscape.evaluate.GROUPS_PER_WORKER = default


def engine_path(device: str, vectors: int, workers: int) -> str:
    """Where ``evaluate_vectors`` runs a job (``landscape.evaluate``'s module docstring)."""
    if device == "cpu":
        return "vector groups" if min(workers, vectors) >= 2 else "in-process"
    return "env slices" if workers > 0 else "in-process"


@dataclass
class Method:
    """One timed row: ``run()`` -> (env steps, seconds); totals over the rounds."""

    device: str
    name: str
    vectors: int
    workers: int
    run: Callable[[], tuple[int, float]]
    steps: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.steps / self.seconds

    @property
    def path(self) -> str:
        return engine_path(self.device, self.vectors, self.workers)

    @property
    def cores(self) -> int:
        if self.path == "vector groups":  # a worker per group; this process only waits
            return min(usable_cores(), self.workers, self.vectors)
        if self.path == "env slices":  # the workers' envs and this process's policy
            return min(usable_cores(), self.workers + 1)
        return 1


def clock_name(method: Method) -> str:
    return "thread CPU" if method.path == "in-process" else "wall, warm pool"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a short run: 2 episodes of at most 100 steps, P up to 16")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per vector (E)")
    parser.add_argument("--max-steps", type=int, default=1000, help="episode length cap")
    parser.add_argument("--vectors", type=int, nargs="+", default=[1, 4, 16, 64],
                        help="the numbers of parameter vectors P to time")
    parser.add_argument("--reference-vectors", type=int, default=4,
                        help="vectors timed one at a time for the baseline")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"],
                        help="devices to try (cuda is skipped when absent)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="env worker process counts to time (default: the engine's choice "
                             "per P)")
    parser.add_argument("--groups-per-worker", type=int, nargs="+", default=None,
                        help="vector groups per worker to time on cpu (default: the engine's "
                             "GROUPS_PER_WORKER)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--limit-seconds", type=float, default=1.0,
                        help="how long to time raw mj_step in each round")
    args = parser.parse_args()
    if args.quick:
        args.episodes, args.max_steps = 2, 100
        args.vectors = [p for p in args.vectors if p <= 16]
        args.reference_vectors, args.limit_seconds, args.rounds = 2, 0.5, 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = [d for d in args.devices if d == "cpu" or torch.cuda.is_available()]

    def clock_for(device: str, count: int, workers: int) -> Callable[[], float]:
        in_process = engine_path(device, count, workers) == "in-process"
        return time.thread_time if in_process else time.perf_counter

    methods: list[Method] = []
    for device in devices:
        policy, vectors = grid_vectors(args.reference_vectors)
        methods.append(Method(device, "one at a time", args.reference_vectors, 0,
                              lambda p=policy, v=vectors, d=device: one_at_a_time(
                                  p, v, args.episodes, args.max_steps, d, time.thread_time)))
        for count in args.vectors:
            policy, vectors = grid_vectors(count)
            for workers in args.workers or [default_workers(count, args.episodes,
                                                            args.max_steps, device)]:
                grouped = engine_path(device, count, workers) == "vector groups"
                for groups in (args.groups_per_worker or [None]) if grouped else [None]:
                    name = "batched" if groups is None else f"batched, {groups} groups/worker"
                    methods.append(Method(device, name, count, workers,
                                          lambda p=policy, v=vectors, d=device, w=workers,
                                          c=count, g=groups: batched(
                                              p, v, args.episodes, args.max_steps, d, w,
                                              clock_for(d, c, w), g)))
    # worker pools warm before the rounds: the first call starts them (timed apart)
    startup = None
    for method in methods:
        if method.path != "in-process":
            start = time.perf_counter()
            method.run()
            if startup is None:
                startup = (method, time.perf_counter() - start)
    limit_steps, limit_seconds = 0, 0.0
    for _ in range(args.rounds):
        steps, seconds = mj_steps(args.limit_seconds, time.thread_time)
        limit_steps, limit_seconds = limit_steps + steps, limit_seconds + seconds
        for method in methods:
            steps, seconds = method.run()
            method.steps, method.seconds = method.steps + steps, method.seconds + seconds

    mj_rate = limit_steps / limit_seconds
    per_core = mj_rate / make_env(ENV).unwrapped.frame_skip
    cores = usable_cores()
    print(f"{platform.node()}: {cores} usable cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), devices {devices}")
    print(f"physical limit: raw mj_step {mj_rate:,.0f}/s on one core (thread CPU time) -> "
          f"{per_core:,.0f} env steps/s per core (frame skip 4), {per_core * cores:,.0f} on "
          f"{cores} cores")
    print(f"E = {args.episodes} episodes per vector, at most {args.max_steps} steps; "
          f"{args.rounds} interleaved rounds")
    if startup is not None:
        method, seconds = startup
        print(f"runs with worker processes: warm pools, the first call excluded (it starts "
              f"them: {method.device} P = {method.vectors}, workers {method.workers}, "
              f"{method.path}: {seconds:.2f} s wall, start-up included)")
    print()
    print("| device | method | P | workers | cores used | clock | env steps | seconds "
          "| env steps/s | x one-at-a-time | per-core fraction of limit "
          "| total fraction of limit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for device in devices:
        rows = [m for m in methods if m.device == device]
        baseline = rows[0].rate
        for m in rows:
            name = m.name if m.path == "in-process" else f"{m.name}, {m.path}"
            print(f"| {device} | {name} | {m.vectors} | {m.workers} | {m.cores} | {clock_name(m)} "
                  f"| {m.steps} | {m.seconds:.2f} | {m.rate:,.0f} | {m.rate / baseline:.2f} "
                  f"| {m.rate / (per_core * m.cores):.3f} | {m.rate / (per_core * cores):.3f} |")
        by_vectors: dict[int, list[Method]] = {}
        for m in rows[1:]:
            by_vectors.setdefault(m.vectors, []).append(m)
        for count, group in by_vectors.items():
            low, high = min(group, key=lambda m: m.cores), max(group, key=lambda m: m.cores)
            if high.cores > low.cores:
                print(f"\nP = {count} on {device}: {high.cores} cores / {low.cores} core(s) = "
                      f"{high.rate / low.rate:.2f}x the env steps/s ({high.path}, wall time, "
                      f"warm pool / {low.path}, {clock_name(low)})")


if __name__ == "__main__":
    main()
