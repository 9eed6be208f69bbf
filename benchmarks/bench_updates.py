"""Update throughput of the agents: updates/s at batch 256 with Hopper-sized networks.

    python benchmarks/bench_updates.py [--algos sac,td3,td3bc,awr] [--seconds 5]
                                       [--devices cpu,cuda] [--threads N]
                                       [--set [ALGO:]KEY=VALUE ...]

Any name in the algorithm registry can be given to ``--algos`` (offline algorithms too). Each
agent is built by ``make_agent`` with its default config (256x256 networks) plus the ``--set``
overrides, for Hopper's sizes (obs 11, act 3). Agents that run offline first get
``prepare_offline`` on a random 10k-transition dataset (its time is not counted; SMAC trains its
score model there, so shorten that: ``--set 'smac:score_model={"steps": 10}'``: its quality
does not change the cost of an update). Batches are
sampled beforehand from a random replay buffer on the device (sampling is not counted either);
each update ends with its metrics copied to the host, as in training. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smac_core.algos import ALGORITHMS, make_agent
from smac_core.data.buffers import ReplayBuffer
from smac_core.data.dataset import TransitionDataset
from smac_core.errors import SmacError, cli_entry

OBS_DIM, ACT_DIM = 11, 3  # Hopper
BATCH_SIZE = 256
WARMUP_UPDATES = 10
PREPARED_BATCHES = 32


def random_dataset(size: int, rng: np.random.Generator) -> TransitionDataset:
    """``size`` random transitions in episodes of 100 steps (a stand-in for an offline dataset)."""
    ends = np.zeros(size, bool)
    ends[99::100] = True
    ends[-1] = True
    observations = rng.standard_normal((size + 1, OBS_DIM), dtype=np.float32)
    return TransitionDataset(
        observations=observations[:-1], next_observations=observations[1:],
        actions=rng.uniform(-1, 1, (size, ACT_DIM)).astype(np.float32),
        rewards=rng.standard_normal(size, dtype=np.float32),
        terminals=np.zeros(size, bool), timeouts=ends, episode_ends=ends)


def parse_overrides(pairs: list[str], algos: list[str]) -> dict[str, dict[str, Any]]:
    """``[ALGO:]KEY=VALUE`` strings -> per-algorithm config dicts. VALUE is read as JSON when it
    parses (numbers, lists, objects), else kept as text; without ``ALGO:`` it applies to all."""
    overrides: dict[str, dict[str, Any]] = {algo: {} for algo in algos}
    for pair in pairs:
        target, sep, text = pair.partition("=")
        if not sep:
            raise SmacError(f"--set expects [ALGO:]KEY=VALUE; got '{pair}'")
        scope, _, key = target.rpartition(":")
        if scope and scope not in overrides:
            raise SmacError(f"--set '{pair}' names algorithm '{scope}', which is not in --algos")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        for algo in [scope] if scope else algos:
            overrides[algo][key] = value
    return overrides


def updates_per_second(algo: str, device: torch.device, seconds: float,
                       overrides: dict[str, Any]) -> float:
    """Run ``algo``'s update for about ``seconds`` on ``device``; return updates/s."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    dataset = random_dataset(10_000, rng)
    buffer = ReplayBuffer.from_dataset(dataset, device,
                                       generator=torch.Generator().manual_seed(0))
    agent = make_agent(algo, OBS_DIM, ACT_DIM, {"batch_size": BATCH_SIZE, **overrides}, device)
    if "offline" in agent.phases:
        with tempfile.TemporaryDirectory() as workdir:
            agent.prepare_offline(dataset, buffer, Path(workdir))
    batches = [buffer.sample(agent.update_batch_size) for _ in range(PREPARED_BATCHES)]
    for i in range(WARMUP_UPDATES):
        agent.update(batches[i % PREPARED_BATCHES])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        agent.update(batches[done % PREPARED_BATCHES])
        done += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return done / (time.perf_counter() - start)


def machine_description(devices: list[torch.device]) -> str:
    parts = [f"torch {torch.__version__}", f"{torch.get_num_threads()} CPU threads",
             platform.processor() or platform.machine()]
    parts += [torch.cuda.get_device_name(d) for d in devices if d.type == "cuda"]
    return ", ".join(parts)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", default="sac,td3,td3bc,awr",
                        help="comma-separated registry names (default: the online algorithms)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="measuring time per algorithm and device (default 5)")
    parser.add_argument("--devices", default=None,
                        help="comma-separated devices (default: cpu, and cuda when available)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--set", action="append", default=[], metavar="[ALGO:]KEY=VALUE",
                        help="agent config override, for one algorithm or all (repeatable)")
    args = parser.parse_args(argv)

    algos = [a for a in args.algos.split(",") if a]
    unknown = [a for a in algos if a not in ALGORITHMS]
    if unknown:
        raise SmacError(f"unknown algorithm(s) {unknown}; known: {sorted(ALGORITHMS)}")
    if args.seconds <= 0:
        raise SmacError(f"--seconds must be positive; got {args.seconds}")
    device_names = (args.devices.split(",") if args.devices
                    else ["cpu", *(["cuda"] if torch.cuda.is_available() else [])])
    if "cuda" in device_names and not torch.cuda.is_available():
        raise SmacError("--devices asks for cuda but torch sees no CUDA device")
    devices = [torch.device(d) for d in device_names]
    overrides = parse_overrides(args.set, algos)
    if args.threads is not None:
        if args.threads < 1:
            raise SmacError(f"--threads must be >= 1; got {args.threads}")
        torch.set_num_threads(args.threads)

    print(f"Updates/s at batch {BATCH_SIZE}, obs {OBS_DIM}, act {ACT_DIM}, default 256x256 "
          f"networks ({machine_description(devices)})\n")
    print("| algorithm | device | updates/s | ms/update |")
    print("| --- | --- | ---: | ---: |")
    for algo in algos:
        for device in devices:
            rate = updates_per_second(algo, device, args.seconds, overrides[algo])
            print(f"| {algo} | {device.type} | {rate:.1f} | {1000 / rate:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
