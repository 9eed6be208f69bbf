"""Update throughput of the agents: updates/s at batch 256 with Hopper-sized networks, with Adam
and with Muon, and the ratios that issue 12 targets (SMAC/SAC per optimizer).

    python benchmarks/bench_updates.py [--algos sac,td3,td3bc,awr,calql,iql,smac]
                                       [--optimizers adam,muon] [--seconds 5] [--round 0.25]
                                       [--devices cpu,cuda] [--threads 1]
                                       [--set [ALGO:]KEY=VALUE ...]

Any name in the algorithm registry can be given to ``--algos`` (offline algorithms too). Each
agent is built by ``make_agent`` with its default config (256x256 networks), the optimizer kind
and the ``--set`` overrides, for Hopper's sizes (obs 11, act 3). Agents that run offline first
get ``prepare_offline`` on a random 10k-transition dataset (its time is not counted; SMAC's score
model is trained for 10 steps unless ``--set`` says otherwise: its quality does not change the
cost of an update). Batches are sampled beforehand from a random replay buffer on the device
(sampling is not counted either); each update ends with its metrics copied to the host, as in
training.

Measurement: every (algorithm, optimizer) agent of a device is built first, then they take
turns, one round of ``--round`` seconds each (A, B, C, A, B, C, ...), until each has had
``--seconds``; on CPU with one torch thread the clock is the thread's CPU time
(``time.thread_time``), so other processes on a loaded machine slow every agent alike and leave
the ratios unbiased. Also compares CalQL's critic-ensemble paths: each member as its own matmul
for the 7,680 sampled-action rows (the default) against one (N, 7680, .) batched call. Prints
markdown tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smac_core.algos import ALGORITHMS, Agent, make_agent
from smac_core.checkpoint import RunArtifacts
from smac_core.data.buffers import Batch, ReplayBuffer
from smac_core.data.dataset import TransitionDataset
from smac_core.errors import SmacError, cli_entry
from smac_core.nets import CriticEnsemble

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


@dataclass
class Contender:
    """One agent being timed: ``step()`` runs one update; seconds and updates accumulate."""

    label: tuple[str, ...]
    step: Callable[[], None]
    seconds: float = 0.0
    updates: int = 0

    @property
    def rate(self) -> float:
        return self.updates / self.seconds


@contextmanager
def no_member_loop() -> Iterator[None]:
    """The critic ensemble's batched path for every row count (the path before issue 12)."""
    rows = CriticEnsemble.MEMBER_LOOP_ROWS
    CriticEnsemble.MEMBER_LOOP_ROWS = 2**62
    try:
        yield
    finally:
        CriticEnsemble.MEMBER_LOOP_ROWS = rows


def prepared_agent(algo: str, device: torch.device,
                   overrides: dict[str, Any]) -> tuple[Agent, list[Batch]]:
    """``algo`` built for Hopper's sizes at batch 256 with ``overrides``, prepared offline if it
    runs offline (on a random 10k-transition dataset, seed 0), and ``PREPARED_BATCHES`` batches
    sampled from that dataset's replay buffer (with the returns-to-go ``prepare_offline`` wrote
    into it)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    dataset = random_dataset(10_000, rng)
    buffer = ReplayBuffer.from_dataset(dataset, device,
                                       generator=torch.Generator().manual_seed(0))
    config = {"batch_size": BATCH_SIZE, **overrides}
    if "score_model" in ALGORITHMS[algo].config_class.__dataclass_fields__:
        config["score_model"] = {"steps": 10, **config.get("score_model", {})}
    agent = make_agent(algo, OBS_DIM, ACT_DIM, config, device)
    if "offline" in agent.phases:
        with tempfile.TemporaryDirectory() as workdir:
            agent.prepare_offline(dataset, buffer, RunArtifacts(Path(workdir)))
    return agent, [buffer.sample(agent.update_batch_size) for _ in range(PREPARED_BATCHES)]


def compile_losses(agent: Agent, mode: str) -> Agent:
    """``agent`` with each loss function that its update hands to ``Agent.gradient_step``
    compiled by ``torch.compile(loss_fn, mode=mode)`` on first use ("reduce-overhead" replays
    CUDA graphs on a GPU); the backward goes through the compiled graph, the optimizers' steps
    stay eager. A measurement of what compiling the update would gain: the trainer does not
    compile (README, Benchmarks)."""
    compiled: dict[Callable, Callable] = {}
    eager_step = agent.gradient_step

    def gradient_step(optimizers: tuple[str, ...], loss_fn: Callable, *inputs: Any,
                      max_grad_norm: float | None = None) -> dict[str, torch.Tensor]:
        key = getattr(loss_fn, "__func__", loss_fn)  # a bound method is new at every access
        if key not in compiled:
            compiled[key] = torch.compile(loss_fn, mode=mode)
        return eager_step(optimizers, compiled[key], *inputs, max_grad_norm=max_grad_norm)

    agent.gradient_step = gradient_step
    return agent


def contender(label: tuple[str, ...], algo: str, device: torch.device,
              overrides: dict[str, Any], batched_ensemble: bool = False,
              agent_and_batches: tuple[Agent, list[Batch]] | None = None) -> Contender:
    """Build ``algo`` (``prepared_agent``; or take ``agent_and_batches``), warm it up; a
    ``Contender``."""
    agent, batches = agent_and_batches or prepared_agent(algo, device, overrides)
    done = [0]

    def step() -> None:
        with no_member_loop() if batched_ensemble else nullcontext():
            agent.update(batches[done[0] % PREPARED_BATCHES])
        done[0] += 1

    for _ in range(WARMUP_UPDATES):
        step()
    return Contender(label, step)


def measure(contenders: list[Contender], device: torch.device, seconds: float,
            round_seconds: float, clock: Callable[[], float]) -> None:
    """Interleaved rounds (A, B, C, A, B, C, ...) of about ``round_seconds`` on ``clock`` each,
    until every contender has had ``seconds``."""
    while min(c.seconds for c in contenders) < seconds:
        for c in contenders:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start, done = clock(), 0
            while clock() - start < round_seconds:
                c.step()
                done += 1
                if device.type == "cuda" and clock() - start >= round_seconds:
                    torch.cuda.synchronize(device)
            c.seconds += clock() - start
            c.updates += done


def machine_description(devices: list[torch.device]) -> str:
    parts = [f"torch {torch.__version__}", f"{torch.get_num_threads()} CPU threads",
             platform.processor() or platform.machine()]
    parts += [torch.cuda.get_device_name(d) for d in devices if d.type == "cuda"]
    return ", ".join(parts)


def add_agent_flags(parser: argparse.ArgumentParser, algos: str) -> None:
    """``--algos`` (default ``algos``) and ``--optimizers``, read by ``agents_and_optimizers``."""
    parser.add_argument("--algos", default=algos,
                        help="comma-separated registry names (default: %(default)s)")
    parser.add_argument("--optimizers", default="adam,muon",
                        help="comma-separated optimizer kinds (default: %(default)s)")


def agents_and_optimizers(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The ``--algos`` and ``--optimizers`` lists (``SmacError`` for an unknown name)."""
    algos = [a for a in args.algos.split(",") if a]
    unknown = [a for a in algos if a not in ALGORITHMS]
    if unknown:
        raise SmacError(f"unknown algorithm(s) {unknown}; known: {sorted(ALGORITHMS)}")
    kinds = [k for k in args.optimizers.split(",") if k]
    if not kinds or set(kinds) - {"adam", "muon"}:
        raise SmacError(f"--optimizers takes adam and/or muon; got {args.optimizers!r}")
    return algos, kinds


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_agent_flags(parser, "sac,td3,td3bc,awr,calql,iql,smac")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="measuring time per agent and device (default 5)")
    parser.add_argument("--round", type=float, default=0.25,
                        help="seconds of one agent's turn in the interleaved rounds (default 0.25)")
    parser.add_argument("--devices", default=None,
                        help="comma-separated devices (default: cpu, and cuda when available)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: thread CPU time is then the clock)")
    parser.add_argument("--set", action="append", default=[], metavar="[ALGO:]KEY=VALUE",
                        help="agent config override, for one algorithm or all (repeatable)")
    args = parser.parse_args(argv)

    algos, kinds = agents_and_optimizers(args)
    if args.seconds <= 0 or args.round <= 0:
        raise SmacError(f"--seconds and --round must be positive; got {args.seconds}, "
                        f"{args.round}")
    device_names = (args.devices.split(",") if args.devices
                    else ["cpu", *(["cuda"] if torch.cuda.is_available() else [])])
    if "cuda" in device_names and not torch.cuda.is_available():
        raise SmacError("--devices asks for cuda but torch sees no CUDA device")
    devices = [torch.device(d) for d in device_names]
    overrides = parse_overrides(args.set, algos)
    if args.threads < 1:
        raise SmacError(f"--threads must be >= 1; got {args.threads}")
    torch.set_num_threads(args.threads)

    print(f"Updates/s at batch {BATCH_SIZE}, obs {OBS_DIM}, act {ACT_DIM}, default 256x256 "
          f"networks ({machine_description(devices)}); interleaved rounds of {args.round} s, "
          f"{args.seconds} s per agent\n")
    for device in devices:
        thread_clock = device.type == "cpu" and args.threads == 1
        clock = time.thread_time if thread_clock else time.perf_counter
        contenders = [contender((algo, kind), algo, device, {**overrides[algo], "optimizer": kind})
                      for algo in algos for kind in kinds]
        paths = []
        if "calql" in algos:
            paths = [contender(("calql", kind, "batched ensemble"), "calql", device,
                               {**overrides["calql"], "optimizer": kind}, batched_ensemble=True)
                     for kind in kinds]
        measure(contenders + paths, device, args.seconds, args.round, clock)
        rates = {c.label: c.rate for c in contenders + paths}
        print(f"{device.type}, clock: {'thread CPU time' if thread_clock else 'wall time'}\n")
        print("| algorithm | " + " | ".join(f"{k} updates/s | {k} ms/update" for k in kinds)
              + " |")
        print("| --- |" + " ---: | ---: |" * len(kinds))
        for algo in algos:
            cells = [f"{rates[algo, k]:.1f} | {1000 / rates[algo, k]:.2f}" for k in kinds]
            print(f"| {algo} | " + " | ".join(cells) + " |")
        print("\n| ratio | " + " | ".join(kinds) + " |")
        print("| --- |" + " ---: |" * len(kinds))
        if {"smac", "sac"} <= set(algos):
            print("| SMAC / SAC | " + " | ".join(
                f"{rates['smac', k] / rates['sac', k]:.2f}x" for k in kinds) + " |")
        if paths:
            print("| CalQL member loop / batched ensemble | " + " | ".join(
                f"{rates['calql', k] / rates['calql', k, 'batched ensemble']:.2f}x"
                for k in kinds) + " |")
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
