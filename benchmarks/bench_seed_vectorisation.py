"""What training seeds as one stacked network (one batched matmul per layer across seeds) gains
over running them one after another, measured on this machine.

Three measurements, all at Hopper's sizes (obs 11, act 3) and one torch thread (``--threads N``:
N threads for the first and third, timed by wall time; the roofline stays at one thread):

1. Stacked layers. S seeds' copies of a critic-shaped MLP (obs + act -> 256 -> 256 -> 1) and an
   actor-shaped one (obs -> 256 -> 256 -> 2 act), forward and backward at batch B: S separate
   ``addmm`` chains (what S single-seed runs do) against one ``baddbmm`` per layer over (S, B, .)
   stacks (what a seed-vectorised run does). Both compute the same numbers (``stacked_forward``
   equals ``separate_forward``; tests/test_bench_seed_vectorisation.py). Also at a small size
   (batch 32, width 64), where per-call overhead rather than arithmetic sets the time.

2. Roofline of whole updates. For each algorithm and optimizer: the matrix-multiply FLOPs of one
   update (``torch.utils.flop_counter``, counted with oneDNN's private linear op switched off so
   that every GEMM goes through an aten op the counter knows; the update's maths is the same),
   the time of one update as training runs it (thread CPU time), and so the GFLOP/s the update
   achieves. A seed-vectorised run still has to do every seed's GEMM FLOPs, at most at the
   GEMM kernels' peak, so its aggregate speed-up over sequential single-seed runs is at most
   peak / achieved (all non-GEMM time removed, every GEMM at the peak). Two peaks, each the
   best float32 rate over the updates' own shapes and a large square GEMM: torch's matmul
   (``a @ b``, and batched: the kernels a stacked run's layers use; MKL on x86 CPUs) and
   oneDNN's linear (``torch.ops.mkldnn._linear_pointwise``, what SMAC's score model and fused
   action-gradient use), which on AMD CPUs runs about twice as fast as MKL. Issue 12 asks for
   >= 2x.

3. Whole updates of the stackable ``--algos`` (``smac_core.seeds.STACKABLE``; SAC and SMAC by
   default) for S seeds: one ``SeedStack.update`` (what ``--seeds`` trains) against the S
   agents' own updates one after another, on the same batches, at batch 256 / width 256 and
   batch 32 / width 64, per optimizer; the aggregate seed-updates per second of both and their
   ratio (tests/test_seeds.py checks that the two compute the same updates).

    python benchmarks/bench_seed_vectorisation.py [--algos sac,smac] [--optimizers adam,muon]
        [--seeds 5] [--seconds 3] [--device cpu|cuda] [--threads 1]

With ``--device cuda`` the stacked-layer and whole-update tables run on the GPU (wall time); the
roofline is a CPU measurement.

Prints markdown tables. A measurement, never a test: the ratios depend on the CPU.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import sys
import time
from collections.abc import Callable, Sequence

import torch
from bench_updates import (
    ACT_DIM,
    BATCH_SIZE,
    OBS_DIM,
    PREPARED_BATCHES,
    WARMUP_UPDATES,
    Contender,
    add_agent_flags,
    agents_and_optimizers,
    contender,
    machine_description,
    measure,
    prepared_agent,
)
from torch.utils.flop_counter import FlopCounterMode

from smac_core.algos.base import Agent
from smac_core.data.buffers import Batch
from smac_core.errors import SmacError, cli_entry
from smac_core.seeds import STACKABLE, SeedStack, rng_state

Layers = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: weight (S, in, out), bias (S, 1, out)


def stacked_mlp(seeds: int, dims: Sequence[int], generator: torch.Generator) -> Layers:
    """``seeds`` independent MLPs ``dims[0] -> ... -> dims[-1]`` as stacked leaf tensors."""
    layers = []
    for fan_in, fan_out in itertools.pairwise(dims):
        weight = torch.randn(seeds, fan_in, fan_out, generator=generator) / fan_in ** 0.5
        bias = torch.zeros(seeds, 1, fan_out)
        layers.append((weight.requires_grad_(), bias.requires_grad_()))
    return layers


def separate_forward(layers: Layers, x: torch.Tensor) -> torch.Tensor:
    """Seed by seed, one ``addmm`` per layer: x (S, B, in) -> (S, B, out), ReLU between layers."""
    outputs = []
    for k in range(x.shape[0]):
        h = x[k]
        for i, (weight, bias) in enumerate(layers):
            h = torch.addmm(bias[k], h, weight[k])
            h = h.relu() if i < len(layers) - 1 else h
        outputs.append(h)
    return torch.stack(outputs)


def stacked_forward(layers: Layers, x: torch.Tensor) -> torch.Tensor:
    """All seeds at once, one ``baddbmm`` per layer: x (S, B, in) -> (S, B, out)."""
    h = x
    for i, (weight, bias) in enumerate(layers):
        h = torch.baddbmm(bias, h, weight)
        h = h.relu() if i < len(layers) - 1 else h
    return h


def matmul_flops(step: Callable[[], object]) -> int:
    """Matrix-multiply FLOPs (2 per multiply-add) of one call of ``step``, counted by torch's
    flop counter with oneDNN off (its private linear op is not counted; F.linear computes the
    same)."""
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        with FlopCounterMode(display=False) as counter:
            step()
    finally:
        torch.backends.mkldnn.enabled = enabled
    return counter.get_total_flops()


def rate_of(step: Callable[[], object], flops: int, seconds: float) -> float:
    """GFLOP/s of ``step`` over about ``seconds`` of thread CPU time."""
    step()
    start, calls = time.thread_time(), 0
    while time.thread_time() - start < seconds:
        step()
        calls += 1
    return flops * calls / (time.thread_time() - start) / 1e9


def gemm_peaks(seconds: float) -> dict[str, tuple[float, str]]:
    """The best float32 GEMM rate (GFLOP/s, shape) of this CPU thread over the updates' shapes
    and large ones, per kernel library: "torch matmul" (``a @ b``) and, where torch has it,
    "oneDNN linear"."""
    shapes = {"256x256 @ 256x256": ((256, 256), (256, 256)),
              f"256x{OBS_DIM + ACT_DIM} @ {OBS_DIM + ACT_DIM}x256": ((256, 14), (14, 256)),
              "1024x1024 @ 1024x1024": ((1024, 1024), (1024, 1024)),
              "5 x (256x256 @ 256x256) batched": ((5, 256, 256), (5, 256, 256))}
    peaks = {}
    for library in ("torch matmul", "oneDNN linear"):
        if library == "oneDNN linear" and not torch.backends.mkldnn.is_available():
            continue
        best = (0.0, "")
        for name, (a_shape, b_shape) in shapes.items():
            if library == "oneDNN linear" and len(a_shape) > 2:
                continue  # oneDNN's linear takes one matrix
            a, b = torch.randn(a_shape), torch.randn(b_shape)
            flops = 2 * a.numel() * b_shape[-1]
            w = b.mT.contiguous()  # (out, in), the linear layout
            step = ((lambda a=a, b=b: a @ b) if library == "torch matmul" else
                    (lambda a=a, w=w: torch.ops.mkldnn._linear_pointwise(
                        a, w, None, "none", [], "")))
            best = max(best, (rate_of(step, flops, seconds), name))
        peaks[library] = best
    return peaks


def clock_for(device: torch.device) -> Callable[[], float]:
    """The thread's CPU time on cpu at one torch thread (other processes on a loaded machine slow
    every contender alike); else wall time (cuda, synchronised by ``measure``; several threads,
    whose work one thread's clock does not see)."""
    return (time.thread_time if device.type == "cpu" and torch.get_num_threads() == 1
            else time.perf_counter)


def layer_times(seeds: int, seconds: float, device: torch.device
                ) -> list[tuple[str, int, int, float, float]]:
    """(network, batch, width, seed-by-seed ms, stacked ms) of forward + backward, per network
    and size, on ``device`` (timed by ``clock_for``)."""
    times = []
    generator = torch.Generator().manual_seed(0)
    for batch, width in ((BATCH_SIZE, 256), (32, 64)):
        for name, dims in (("critic", (OBS_DIM + ACT_DIM, width, width, 1)),
                           ("actor", (OBS_DIM, width, width, 2 * ACT_DIM))):
            layers = [tuple(t.detach().to(device).requires_grad_() for t in layer)
                      for layer in stacked_mlp(seeds, dims, generator)]
            x = torch.randn(seeds, batch, dims[0], generator=generator).to(device)
            contenders = [Contender((path.__name__,),
                                    lambda path=path, layers=layers, x=x:
                                    path(layers, x).square().sum().backward())
                          for path in (separate_forward, stacked_forward)]
            measure(contenders, device, seconds, 0.2, clock_for(device))
            separate, stacked = (1000 / c.rate for c in contenders)
            times.append((name, batch, width, separate, stacked))
    return times


def layer_table(seeds: int, seconds: float, device: torch.device) -> list[str]:
    """Markdown rows of ``layer_times``."""
    return ["| network | batch | width | separate ms | stacked ms | stacked / separate speed |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"] + [
        f"| {name} | {batch} | {width} | {separate:.3f} | {stacked:.3f} | "
        f"{separate / stacked:.2f}x |"
        for name, batch, width, separate, stacked in layer_times(seeds, seconds, device)]


def stacked_update_times(algos: list[str], seeds: int, kinds: list[str], seconds: float,
                         device: torch.device) -> list[tuple[str, str, int, int, float, float]]:
    """(algorithm, optimizer, batch, width, one-by-one ms, stacked ms) of one update of all
    ``seeds`` seeds, per stackable algorithm of ``algos``, optimizer and size, on ``device``
    (timed by ``clock_for``). Agents as ``bench_updates.prepared_agent`` builds them
    (SMAC with its score model); seed k updates on batch k of the prepared ones."""
    times = []
    for algo in (a for a in algos if a in STACKABLE):
        for batch, width in ((BATCH_SIZE, 256), (32, 64)):
            for kind in kinds:
                overrides = {"optimizer": kind, "batch_size": batch,
                             "actor_hidden": [width, width], "critic_hidden": [width, width]}
                prepared = [prepared_agent(algo, device, overrides) for _ in range(seeds)]
                alone, batches = [agent for agent, _ in prepared], prepared[0][1]
                stack = SeedStack([copy.deepcopy(agent) for agent in alone],
                                  [rng_state(device)] * seeds)
                done = [0, 0]

                def one_by_one(done: list[int] = done, batches: list[Batch] = batches,
                               alone: list[Agent] = alone) -> None:
                    for k, agent in enumerate(alone):
                        agent.update(batches[(done[0] + k) % PREPARED_BATCHES])
                    done[0] += 1

                def together(done: list[int] = done, batches: list[Batch] = batches,
                             stack: SeedStack = stack) -> None:
                    stack.update([batches[(done[1] + k) % PREPARED_BATCHES]
                                  for k in range(stack.seeds)])
                    done[1] += 1

                contenders = [Contender(("one by one",), one_by_one),
                              Contender(("stacked",), together)]
                for c in contenders:
                    for _ in range(WARMUP_UPDATES):
                        c.step()
                measure(contenders, device, seconds, 0.25, clock_for(device))
                separate, stacked = (1000 / c.rate for c in contenders)
                times.append((algo, kind, batch, width, separate, stacked))
    return times


def stacked_update_table(algos: list[str], seeds: int, kinds: list[str], seconds: float,
                         device: torch.device) -> list[str]:
    """Markdown rows of ``stacked_update_times`` with aggregate seed-updates/s."""
    return ["| algorithm | optimizer | batch | width | one by one ms | stacked ms | one by one "
            "seed-updates/s | stacked seed-updates/s | stacked / one by one |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"] + [
        f"| {algo} | {kind} | {batch} | {width} | {separate:.2f} | {stacked:.2f} | "
        f"{1000 * seeds / separate:.0f} | {1000 * seeds / stacked:.0f} | "
        f"{separate / stacked:.2f}x |"
        for algo, kind, batch, width, separate, stacked
        in stacked_update_times(algos, seeds, kinds, seconds, device)]


def roofline_table(algos: list[str], kinds: list[str], peaks: dict[str, float], seconds: float
                   ) -> list[str]:
    """Markdown rows: FLOPs, time and achieved rate per update, and the bound peak / achieved
    for each library's peak."""
    rows = ["| algorithm | optimizer | GEMM MFLOP/update | ms/update | achieved GFLOP/s | "
            + " | ".join(f"bound at the {library} peak" for library in peaks) + " |",
            "| --- | --- | ---: | ---: | ---: |" + " ---: |" * len(peaks)]
    device = torch.device("cpu")
    for algo in algos:
        for kind in kinds:
            agent, batches = prepared_agent(algo, device, {"optimizer": kind})
            flops = matmul_flops(lambda agent=agent, batches=batches: agent.update(batches[0]))
            timed = contender((algo, kind), algo, device, {"optimizer": kind})
            measure([timed], device, seconds, 0.25, time.thread_time)
            achieved = flops * timed.rate / 1e9
            bounds = " | ".join(f"{peak / achieved:.2f}x" for peak in peaks.values())
            rows.append(f"| {algo} | {kind} | {flops / 1e6:.0f} | {1000 / timed.rate:.2f} | "
                        f"{achieved:.1f} | {bounds} |")
    return rows


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_agent_flags(parser, "sac,smac")
    parser.add_argument("--seeds", type=int, default=5,
                        help="seeds stacked in the layer comparison (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="measuring time per contender (default: %(default)s)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="where the stacked-layer table runs (default: cpu); the roofline "
                             "of whole updates is a CPU measurement and runs on cpu only")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for the stacked-layer and whole-update tables, "
                             "timed by wall time when > 1 (default: %(default)s; the roofline "
                             "runs at one thread)")
    args = parser.parse_args(argv)
    algos, kinds = agents_and_optimizers(args)
    if args.seeds < 2 or args.seconds <= 0 or args.threads < 1:
        raise SmacError(f"--seeds must be >= 2, --seconds positive and --threads >= 1; got "
                        f"{args.seeds}, {args.seconds} and {args.threads}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SmacError("--device cuda but torch sees no CUDA device")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    clock = "thread CPU" if clock_for(device) is time.thread_time else "wall"
    print(f"Seed vectorisation ({machine_description([device])}), {args.seconds} s per "
          f"contender, {args.threads} torch thread(s)\n")
    print(f"Stacked layers on {device.type} ({clock} time): {args.seeds} seeds, forward + "
          "backward\n")
    print("\n".join(layer_table(args.seeds, args.seconds, device)) + "\n", flush=True)
    print(f"Whole updates of {args.seeds} seeds, seed-stacked (SeedStack, as --seeds trains) "
          f"against one by one, on {device.type}\n")
    print("\n".join(stacked_update_table(algos, args.seeds, kinds, args.seconds, device))
          + "\n", flush=True)
    if device.type != "cpu":
        return 0
    torch.set_num_threads(1)
    peaks = gemm_peaks(min(args.seconds, 1.0))
    for library, (peak, shape) in peaks.items():
        print(f"float32 GEMM peak of one thread, {library}: {peak:.1f} GFLOP/s ({shape})")
    print("\n" + "\n".join(roofline_table(algos, kinds,
                                         {k: v[0] for k, v in peaks.items()}, args.seconds)))
    print("\nbound = peak / achieved: the most any seed-vectorised run whose GEMMs run at that "
          "peak can gain per seed-update on this CPU at one thread (issue 12's target: 2x).",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
