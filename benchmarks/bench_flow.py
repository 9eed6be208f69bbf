"""Update rate of the flow-policy agents (QAM, TRQAM) at the sizes of their tasks, with action
chunks: updates/s on random batches (ChunkBatch for H > 1), CPU, one torch thread, clock = the
thread's CPU time (``time.thread_time``), so other processes on a shared machine do not bias it.

    python benchmarks/bench_flow.py [--algos qam,trqam] [--tasks door-binary,cube-single-play]
                                    [--seconds 10] [--set KEY=VALUE ...]

Sizes (obs_dim, act_dim, H): door-binary (39, 28, 1), cube-single-play (28, 5, 5),
hopper-medium-replay (11, 3, 1). ``--set`` overrides the agent config (JSON values), e.g.
``--set actor_hidden=[256,256] --set critic_hidden=[256,256] --set num_critics=2`` (the
CPU-budget study, notebooks/specs/flow.yaml); without it the papers' sizes (4x512, 10 critics).
Prints one markdown row per (algorithm, task).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from smac_core.algos import make_agent
from smac_core.data.buffers import Batch, ChunkBatch

SIZES = {"door-binary": (39, 28, 1), "cube-single-play": (28, 5, 5),
         "hopper-medium-replay": (11, 3, 1)}
BATCHES = 8


def random_batch(obs_dim: int, act_dim: int, horizon: int, batch_size: int,
                 generator: torch.Generator) -> Batch | ChunkBatch:
    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    actions = (torch.rand(batch_size, act_dim * horizon, generator=generator) * 2 - 1)
    dones = (torch.rand(batch_size, generator=generator) < 0.01).float()
    if horizon == 1:
        return Batch(normal(batch_size, obs_dim), actions, normal(batch_size),
                     normal(batch_size, obs_dim), dones, normal(batch_size))
    return ChunkBatch(normal(batch_size, obs_dim), actions, normal(batch_size, horizon),
                      normal(batch_size, obs_dim), dones, normal(batch_size))


def measure(algo: str, task: str, overrides: dict, seconds: float) -> float:
    obs_dim, act_dim, horizon = SIZES[task]
    config = {"horizon": horizon, **overrides}
    agent = make_agent(algo, obs_dim, act_dim, config)
    generator = torch.Generator().manual_seed(0)
    batches = [random_batch(obs_dim, act_dim, config["horizon"], agent.config.batch_size,
                            generator) for _ in range(BATCHES)]
    for batch in batches[:2]:  # warm-up
        agent.update(batch)
    updates, start = 0, time.thread_time()
    while time.thread_time() - start < seconds:
        agent.update(batches[updates % BATCHES])
        updates += 1
    return updates / (time.thread_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algos", default="qam,trqam")
    parser.add_argument("--tasks", default="door-binary,cube-single-play")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = {}
    for pair in args.set:
        key, _, value = pair.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    print(f"flow-agent updates/s, batch 256, {torch.get_num_threads()} CPU thread(s), "
          f"overrides {overrides or 'none (paper sizes)'}; clock: thread CPU time\n")
    print("| algorithm | task (obs, act, H) | updates/s | ms/update |\n| --- | --- | ---: | ---: |")
    for algo in args.algos.split(","):
        for task in args.tasks.split(","):
            rate = measure(algo, task, overrides, args.seconds)
            print(f"| {algo} | {task} {SIZES[task]} | {rate:.2f} | {1000 / rate:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
