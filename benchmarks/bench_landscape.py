"""Landscape engine throughput: env steps/s of ``evaluate_vectors`` on Hopper-v5.

For P = 1, 4, 16, 64 parameter vectors (a Hopper-sized 256x256 policy near its initialisation
plus small per-vector perturbations, like neighbouring grid points) x E episodes each, against
one vector at a time (what one does without the engine: the plain policy module, one env, one
episode after another) and against the physical limit measured here: the raw
``mujoco.mj_step`` rate of Hopper's model / frame skip x usable cores. CPU, and CUDA when
available. Prints a markdown table.

    python benchmarks/bench_landscape.py [--quick] [--episodes E] [--max-steps T]
        [--vectors 1 4 16 64] [--devices cpu cuda] [--workers N] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import mujoco
import numpy as np
import torch

from landscape.evaluate import default_workers, evaluate_vectors
from landscape.params import flatten_params, param_spec, unflatten_params
from smac_core.nets import DeterministicActor, DeterministicPolicy
from smac_core.tasks import make_env

ENV = "Hopper-v5"


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def physical_limit(seconds: float) -> tuple[float, float]:
    """(raw mj_step/s on one core, env steps/s of the machine = that / frame skip x cores)."""
    env = make_env(ENV)
    env.reset(seed=0)
    model, data = env.unwrapped.model, env.unwrapped.data
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(1000):
            mujoco.mj_step(model, data)
        steps += 1000
    rate = steps / (time.perf_counter() - start)
    return rate, rate / env.unwrapped.frame_skip * usable_cores()


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
                  max_steps: int, device: str) -> tuple[int, float]:
    """(env steps, seconds) of the plain loop: each vector loaded into the module in turn, its
    episodes (seeds 0..E-1) run one after another in one env."""
    start, steps = time.perf_counter(), 0
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
    return steps, time.perf_counter() - start


def batched(policy: DeterministicPolicy, vectors: torch.Tensor, episodes: int, max_steps: int,
            device: str, workers: int) -> tuple[int, float]:
    """(env steps, seconds) of one ``evaluate_vectors`` call."""
    start = time.perf_counter()
    result = evaluate_vectors(policy, vectors, ENV, episodes, seed=0, device=device,
                              max_episode_steps=max_steps, workers=workers)
    return int(result.lengths.sum()), time.perf_counter() - start


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
    parser.add_argument("--workers", type=int, default=None,
                        help="env worker processes (default: the engine's choice per P)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--limit-seconds", type=float, default=3.0,
                        help="how long to time raw mj_step")
    args = parser.parse_args()
    if args.quick:
        args.episodes, args.max_steps = 2, 100
        args.vectors = [p for p in args.vectors if p <= 16]
        args.reference_vectors, args.limit_seconds = 2, 1.0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = [d for d in args.devices if d == "cpu" or torch.cuda.is_available()]

    mj_rate, limit = physical_limit(args.limit_seconds)
    print(f"{platform.node()}: {usable_cores()} usable cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), devices {devices}")
    print(f"physical limit: raw mj_step {mj_rate:,.0f}/s per core -> {limit:,.0f} env steps/s "
          f"(frame skip 4 x {usable_cores()} cores)")
    print(f"E = {args.episodes} episodes per vector, at most {args.max_steps} steps\n")
    print("| device | method | P | workers | env steps | seconds | env steps/s "
          "| x one-at-a-time | fraction of limit | s per vector |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for device in devices:
        policy, vectors = grid_vectors(args.reference_vectors)
        steps, seconds = one_at_a_time(policy, vectors, args.episodes, args.max_steps, device)
        baseline = steps / seconds
        print(f"| {device} | one at a time | {args.reference_vectors} | 0 | {steps} "
              f"| {seconds:.2f} | {baseline:,.0f} | 1.00 | {baseline / limit:.3f} "
              f"| {seconds / args.reference_vectors:.3f} |")
        for count in args.vectors:
            policy, vectors = grid_vectors(count)
            workers = args.workers
            if workers is None:
                workers = default_workers(count * args.episodes, args.max_steps)
            steps, seconds = batched(policy, vectors, args.episodes, args.max_steps, device,
                                     workers)
            rate = steps / seconds
            print(f"| {device} | batched | {count} | {workers} | {steps} | {seconds:.2f} "
                  f"| {rate:,.0f} | {rate / baseline:.2f} | {rate / limit:.3f} "
                  f"| {seconds / count:.3f} |")


if __name__ == "__main__":
    main()
