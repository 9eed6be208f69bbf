"""GPU check: every CUDA path of the project, run once, with a table of what it measured.

    python benchmarks/gpu_check.py [--seconds 3]

Rows, in this order: Muon's Newton-Schulz in bfloat16 against the float32 reference (relative
Frobenius error, time per orthogonalisation of a (10, 256, 256) stack); updates/s of SAC and
SMAC (Adam and Muon) on CUDA against one CPU thread (``bench_updates``' interleaved measurement:
the target is >= 5x); five seeds' networks stacked (one batched matmul per layer) against seed
by seed on CUDA, and five SAC and SMAC seeds' updates seed-stacked as ``--seeds`` trains them
(``SeedStack``) against one by one, with the aggregate seed-updates/s
(``bench_seed_vectorisation.py``; the target is >= 5,000 for SMAC); an offline SMAC run, an
online SAC run and a seed-stacked online run (``--seeds 0,1``) through ``smac_core.train`` with
``--device cuda`` (a synthetic Pendulum dataset, a few hundred steps); landscape evaluation
(``evaluate_vectors``) on CUDA against CPU (env steps/s, largest return difference: CUDA's
matmuls round differently, so returns may differ slightly); SMAC's score-model training steps/s
in float32 and in bfloat16 (``DiffusionConfig.precision``); SAC's and SMAC's updates with their
loss functions compiled by ``torch.compile`` (modes "default" and "reduce-overhead", which
replays CUDA graphs) against eager, and the largest parameter difference that compiling makes
after one update (the trainer does not compile: these rows say whether it should on a GPU; on
the 2-core CPU compiling made SAC's update slower). On a machine without CUDA it says so and
exits with status 0.

Each row is printed as soon as it is measured, with the seconds it took, so that a command cut
off by a time limit still shows the rows before it. A row that raises shows the error and the
others still run; the exit status is then 1 (also when a CLI run fails or Newton-Schulz's bf16
error is above its bound).

    python benchmarks/gpu_check.py --device cpu [--seconds 0.05]

is a dry run on the CPU: every row, the CPU standing in for the GPU (its ratios are then about
1x and mean nothing). It checks the script itself before a GPU session spends its limited time
on it (tests/test_gpu_check.py runs it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch
from bench_seed_vectorisation import layer_times, stacked_update_times
from bench_updates import compile_losses, contender, measure, prepared_agent

from landscape.evaluate import evaluate_vectors
from landscape.params import flatten_params
from smac_core.diffusion import DiffusionConfig, train_score_model
from smac_core.nets import DeterministicActor, DeterministicPolicy
from smac_core.optim import newton_schulz
from smac_core.tasks import make_env
from smac_core.train import main as train_main

NS_BOUND = 0.05  # bfloat16 rounds each product to 2^-8 relative: a few % after 5 iterations


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def muon_row(device: torch.device) -> list[str]:
    """Newton-Schulz of a (10, 256, 256) gradient stack, bfloat16 vs float32."""
    grads = torch.randn(10, 256, 256, generator=torch.Generator().manual_seed(0)).to(device)
    timings, outputs = {}, {}
    for dtype in (torch.float32, torch.bfloat16):
        newton_schulz(grads, dtype=dtype)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(20):
            outputs[dtype] = newton_schulz(grads, dtype=dtype)
        synchronize(device)
        timings[dtype] = (time.perf_counter() - start) / 20 * 1e3
    reference = outputs[torch.float32]
    error = float((outputs[torch.bfloat16].float() - reference).norm() / reference.norm())
    verdict = "ok" if error < NS_BOUND else f"FAILED: above the {NS_BOUND} bound"
    return ["Muon Newton-Schulz, bf16 vs fp32", f"relative error {error:.4f} ({verdict})",
            f"{timings[torch.bfloat16]:.2f} ms bf16, {timings[torch.float32]:.2f} ms fp32"]


def update_row(algo: str, kind: str, device: torch.device, seconds: float) -> list[str]:
    """updates/s of ``algo`` with optimizer ``kind`` on ``device`` and on one CPU thread."""
    torch.set_num_threads(1)
    rates = []
    for dev in (device, torch.device("cpu")):
        c = contender((algo, kind), algo, dev, {"optimizer": kind})
        clock = time.thread_time if dev.type == "cpu" else time.perf_counter
        measure([c], dev, seconds, 0.25, clock)
        rates.append(c.rate)
    ratio = rates[0] / rates[1]
    return [f"{algo} update ({kind})",
            f"{ratio:.1f}x one CPU thread ({'ok' if ratio >= 5 else 'below 5x'})",
            f"{rates[0]:.0f} updates/s {device.type}, {rates[1]:.0f} cpu"]


def compile_row(algo: str, device: torch.device, seconds: float) -> list[str]:
    """``algo``'s Adam update with its loss functions compiled (``bench_updates.compile_losses``;
    modes "default" and, on CUDA, "reduce-overhead": CUDA graphs) against eager: updates/s, and
    the largest parameter difference after one update from the same state and random draws."""
    modes = ["default", "reduce-overhead"] if device.type == "cuda" else ["default"]
    prepared, weights = {}, {}
    for mode in ["eager", *modes]:
        agent, batches = prepared_agent(algo, device, {"optimizer": "adam"})
        if mode != "eager":
            compile_losses(agent, mode)
        torch.manual_seed(1)
        agent.update(batches[0])
        prepared[mode] = agent, batches
        weights[mode] = torch.cat([p.detach().flatten() for network in agent.networks.values()
                                   for p in network.parameters()])
    contenders = [contender((mode,), algo, device, {}, agent_and_batches=prepared[mode])
                  for mode in prepared]
    clock = time.thread_time if device.type == "cpu" else time.perf_counter
    measure(contenders, device, seconds, 0.25, clock)
    eager = contenders[0].rate
    speeds = ", ".join(f"{c.label[0]} {c.rate / eager:.2f}x" for c in contenders[1:])
    difference = max(float((weights[mode] - weights["eager"]).abs().max()) for mode in modes)
    return [f"torch.compile of the {algo} update (adam)",
            f"{speeds} eager; largest parameter difference after one update {difference:.2g}",
            f"{eager:.0f} updates/s eager on {device.type}"]


def pendulum_dataset(path: Path) -> Path:
    """A synthetic D4RL file for Pendulum-v1: 20 episodes of 50 random transitions."""
    rng = np.random.default_rng(0)
    n = 20 * 50
    timeouts = np.zeros(n, bool)
    timeouts[49::50] = True
    with h5py.File(path, "w") as file:
        file["observations"] = rng.standard_normal((n, 3)).astype(np.float32)
        file["actions"] = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
        file["rewards"] = rng.standard_normal(n).astype(np.float32)
        file["terminals"] = np.zeros(n, bool)
        file["timeouts"] = timeouts
    return path


def run_rows(workdir: Path, device: torch.device) -> list[list[str]]:
    """An offline SMAC run, an online SAC run and a seed-stacked one with --device ``device``
    (result "ok", or "FAILED" with the exit status)."""
    common = ["--device", device.type, "--eval-every", "200", "--eval-episodes", "1",
              "--checkpoint-every", "200", "--log-every", "100"]
    runs = {
        "offline smac run (CLI)": ["offline", "--algo", "smac", "--dataset",
                                   str(pendulum_dataset(workdir / "pendulum.hdf5")), "--env",
                                   "Pendulum-v1", "--steps", "200", "--set",
                                   'score_model={"steps": 200}', "--out",
                                   str(workdir / "offline"), *common],
        "online sac run (CLI)": ["online", "--algo", "sac", "--env", "Pendulum-v1", "--steps",
                                 "400", "--start-steps", "100", "--out", str(workdir / "online"),
                                 *common],
        "online sac run, seeds 0,1 stacked (CLI)": [
            "online", "--algo", "sac", "--env", "Pendulum-v1", "--steps", "400",
            "--start-steps", "100", "--seeds", "0,1", "--out", str(workdir / "seeds"), *common],
    }
    rows = []
    for name, argv in runs.items():
        start = time.perf_counter()
        status = train_main(argv)
        rows.append([name, "ok" if status == 0 else f"FAILED (exit status {status})",
                     f"{time.perf_counter() - start:.1f} s"])
    return rows


def landscape_row(device: torch.device) -> list[str]:
    """16 Hopper policies x 2 episodes of at most 200 steps, on CUDA and on CPU."""
    torch.manual_seed(0)
    env = make_env("Hopper-v5")
    actor = DeterministicActor(env.observation_space.shape[0], env.action_space.shape[0])
    policy = DeterministicPolicy.from_actor(actor, np.zeros(11), np.ones(11),
                                            env.action_space.low, env.action_space.high)
    base = flatten_params(policy)
    vectors = base + 0.05 * base.abs().mean() * torch.randn(16, base.numel())
    results, rates = {}, {}
    for dev in ("cpu", device.type):
        start = time.perf_counter()
        results[dev] = evaluate_vectors(policy, vectors, "Hopper-v5", 2, device=dev,
                                        max_episode_steps=200, workers=0)
        rates[dev] = results[dev].lengths.sum() / (time.perf_counter() - start)
    difference = float(np.abs(results[device.type].returns - results["cpu"].returns).max())
    return ["landscape evaluate_vectors", f"largest return difference {difference:.3g}",
            f"{rates[device.type]:.0f} env steps/s {device.type}, {rates['cpu']:.0f} cpu"]


def score_model_row(device: torch.device) -> list[str]:
    """Score-model training steps/s (Hopper-sized data, default network) in both precisions."""
    generator = torch.Generator().manual_seed(0)
    obs, actions = torch.randn(20_000, 11, generator=generator), torch.rand(20_000, 3) * 2 - 1
    condition, rates = torch.rand(20_000, generator=generator), {}
    for precision in ("float32", "bfloat16"):
        config = DiffusionConfig(steps=300, eval_every=10**6, patience=0, precision=precision)
        synchronize(device)
        start = time.perf_counter()
        train_score_model(obs, actions, condition, config, device, torch.Generator().manual_seed(1),
                          progress=False)
        synchronize(device)
        rates[precision] = config.steps / (time.perf_counter() - start)
    return ["score-model training (300 steps, batch 256)",
            f"bfloat16 / float32 {rates['bfloat16'] / rates['float32']:.2f}x",
            f"{rates['float32']:.0f} steps/s fp32, {rates['bfloat16']:.0f} bf16"]


def stacked_seeds_row(device: torch.device, seconds: float) -> list[str]:
    """Five seeds' networks stacked vs seed by seed on ``device``: its speed-up per network."""
    speeds = ", ".join(f"{name} batch {batch} width {width} {separate / stacked:.2f}x"
                       for name, batch, width, separate, stacked
                       in layer_times(5, seconds, device))
    updates = ", ".join(f"{algo} {kind} batch {batch} width {width}: {5000 / stacked:.0f} "
                        f"seed-updates/s ({separate / stacked:.2f}x one by one)"
                        for algo, kind, batch, width, separate, stacked
                        in stacked_update_times(["sac", "smac"], 5, ["adam", "muon"], seconds,
                                                device))
    return ["5 seeds stacked vs seed by seed: layers (forward + backward); whole SAC and SMAC "
            "updates (SeedStack)", f"{speeds}; {updates}",
            "target: >= 5,000 seed-updates/s for SMAC"]


def checks(device: torch.device, seconds: float, workdir: Path
           ) -> list[tuple[str, Callable[[], list[list[str]]]]]:
    """The rows of the table: (name, function returning the row or rows), in running order:
    the issue's two GPU targets (updates, stacked seeds) first."""
    return [
        ("Muon Newton-Schulz", lambda: [muon_row(device)]),
        *((f"{algo} update ({kind})", lambda algo=algo, kind=kind:
           [update_row(algo, kind, device, seconds)])
          for algo in ("sac", "smac") for kind in ("adam", "muon")),
        ("5 seeds stacked", lambda: [stacked_seeds_row(device, seconds)]),
        ("CLI runs", lambda: run_rows(workdir, device)),
        ("landscape evaluate_vectors", lambda: [landscape_row(device)]),
        ("score-model training", lambda: [score_model_row(device)]),
        *((f"torch.compile of the {algo} update",
           lambda algo=algo: [compile_row(algo, device, seconds)]) for algo in ("sac", "smac")),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="measuring time per update rate (default 3)")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                        help="cuda (default), or cpu: a dry run of every row on the CPU")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: torch {torch.__version__} sees no CUDA device "
              f"(built with CUDA {torch.version.cuda}); nothing to check on this machine "
              "(--device cpu: a dry run on the CPU).")
        return 0
    device = torch.device(args.device)
    print(f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU dry run'}, "
          f"torch {torch.__version__}, CUDA {torch.version.cuda}\n")
    print("| check | result | measured | s |")
    print("| --- | --- | --- | ---: |", flush=True)
    failed = 0
    with tempfile.TemporaryDirectory() as workdir:
        for name, check in checks(device, args.seconds, Path(workdir)):
            start = time.perf_counter()
            try:
                rows = check()
            except Exception as exc:  # the other rows still run
                message = " ".join(str(exc).split()).replace("|", "/")[:300]  # one table cell
                rows = [[name, f"ERROR {type(exc).__name__}: {message}", "-"]]
            seconds = f"{time.perf_counter() - start:.1f}"
            for row in rows:
                failed += row[1].startswith("ERROR") or "FAILED" in row[1]
                print("| " + " | ".join([*row, seconds]) + " |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
