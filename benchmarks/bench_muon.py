"""Muon step time on the hidden matrices of SAC critic ensembles (Hopper sizes), three ways.

- batched: ``smac_core.optim.Muon`` on the ``VectorizedLinear`` weight (N, 256, 256), one
  batched Newton-Schulz iteration for all N critics;
- per-matrix: ``smac_core.optim.Muon`` on N separate 2-D matrices (a Python loop);
- torch: ``torch.optim.Muon`` on the same N separate matrices (it takes 2-D parameters only;
  torch >= 2.9, left out before).

Plus the whole critic optimizer step for context: ``make_optimizer(critic, kind)`` for "muon"
(Muon on the hidden matrices + AdamW on the rest, one object) and "adam". Newton-Schulz runs in
float32 on CPU (ours) and bfloat16 on CUDA; torch.optim.Muon always uses bfloat16, so on CPU
ours is also timed with ``ns_dtype="bfloat16"``. Prints a markdown table::

    python benchmarks/bench_muon.py [--repeats 50] [--budget 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from smac_core.nets import CriticEnsemble
from smac_core.optim import Muon, hidden_matrices, make_optimizer

OBS_DIM, ACT_DIM = 11, 3  # Hopper-v5
ENSEMBLES = (2, 10)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(optimizer: torch.optim.Optimizer, device: torch.device, repeats: int,
              budget_s: float) -> float:
    """Median wall time of ``optimizer.step()`` in milliseconds (gradients set beforehand).

    ``repeats`` timed steps after two warm-up steps, fewer (at least 3) when they would take
    longer than ``budget_s`` (bfloat16 matmuls are ~50x slower than float32 on CPUs without
    native bfloat16).
    """
    for _ in range(2):
        optimizer.step()
    samples: list[float] = []
    while len(samples) < repeats and (len(samples) < 3 or sum(samples) < budget_s):
        _sync(device)
        start = time.perf_counter()
        optimizer.step()
        _sync(device)
        samples.append(time.perf_counter() - start)
    return 1e3 * statistics.median(samples)


def with_random_grads(params: list[nn.Parameter]) -> list[nn.Parameter]:
    for p in params:
        p.grad = torch.randn_like(p)
    return params


def per_member_matrices(stacks: list[nn.Parameter]) -> list[nn.Parameter]:
    """Each (N, in, out) stack as N nn.Linear-layout (out, in) parameters with gradients."""
    return with_random_grads([nn.Parameter(stack.detach()[i].T.clone())
                              for stack in stacks for i in range(stack.shape[0])])


def benchmark(device: torch.device, repeats: int, budget_s: float
              ) -> list[tuple[str, int, str, float]]:
    rows = []
    for n in ENSEMBLES:
        critic = CriticEnsemble(OBS_DIM, ACT_DIM, (256, 256), ensemble_size=n).to(device)
        stacks = with_random_grads(hidden_matrices(critic))
        cases: dict[str, Callable[[], torch.optim.Optimizer]] = {
            "batched (ours)": lambda s=stacks: Muon(s),
            "per-matrix loop (ours)": lambda s=stacks: Muon(per_member_matrices(s)),
        }
        if hasattr(torch.optim, "Muon"):  # torch >= 2.9
            cases["torch.optim.Muon per matrix"] = lambda s=stacks: torch.optim.Muon(
                per_member_matrices(s))
        if device.type == "cpu":
            cases["batched (ours, bf16)"] = lambda s=stacks: Muon(s, ns_dtype="bfloat16")
        for kind in ("muon", "adam"):
            def whole(kind=kind, critic=critic):
                with_random_grads(list(critic.parameters()))
                return make_optimizer(critic, 3e-4, kind)
            cases[f"whole critic, make_optimizer({kind!r})"] = whole
        for name, build in cases.items():
            rows.append((device.type, n, name, time_step(build(), device, repeats, budget_s)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--budget", type=float, default=3.0,
                        help="seconds of timed steps per case at most (at least 3 steps)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; Muon on the "
          f"256x256 hidden matrices of Hopper critic ensembles ({OBS_DIM}+{ACT_DIM} -> 256 -> "
          "256 -> 1)\n")
    print("| device | critics | optimizer step | ms/step |")
    print("| --- | ---: | --- | ---: |")
    for device in devices:
        for dev, n, name, ms in benchmark(device, args.repeats, args.budget):
            print(f"| {dev} | {n} | {name} | {ms:.3f} |")


if __name__ == "__main__":
    main()
