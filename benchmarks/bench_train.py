"""Env steps per second of a short online training run, per algorithm (Hopper-v5).

Runs ``python -m smac_core.train online`` in-process (``smac_core.train.run`` of a
``RunConfig``) for each algorithm and reads the rates off its metrics.jsonl: the
random-exploration phase (env steps only) and the learning phase (one env step + one agent
update per step, default agent configs: batch 256, 256x256 nets).
Rates are wall-clock: on a shared machine they depend on the load (printed at the end).

    python benchmarks/bench_train.py [--algos sac td3 td3bc awr] [--steps 3000]
        [--start-steps 1000] [--device auto|cpu|cuda[:N]] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
from pathlib import Path

from smac_core.cli import add_device_flag, resolve_device
from smac_core.errors import SmacError
from smac_core.runconfig import RunConfig
from smac_core.rundir import read_metrics
from smac_core.train import run


def measure(algo: str, env: str, steps: int, start_steps: int, device: str, threads: int,
            out: Path) -> tuple[float, float]:
    """(exploration env-steps/s, learning env-steps/s) of one run."""
    config = RunConfig("online", algo, out, env=env, steps=steps, start_steps=start_steps,
                       log_every=start_steps, eval_every=steps, early_eval_until=0,
                       eval_episodes=1, checkpoint_every=steps, device=device, threads=threads)
    with contextlib.redirect_stdout(io.StringIO()):  # the run's own log lines
        status = run(config)
    if status != 0:
        raise SystemExit(f"the {algo} run failed with status {status}")
    rows = read_metrics(out)
    first_eval_end = next(r["wall_time"] for r in rows if r["step"] == 0)
    training = {r["step"]: r["wall_time"] for r in rows if "eval_returns" not in r}
    explore = start_steps / (training[start_steps] - first_eval_end)
    learn = (steps - start_steps) / (training[steps] - training[start_steps])
    return explore, learn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algos", nargs="+", default=["sac", "td3", "td3bc", "awr"])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--steps", type=int, default=3000,
                        help="a multiple of --start-steps")
    parser.add_argument("--start-steps", type=int, default=1000)
    add_device_flag(parser, "where the agents run")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    if args.steps % args.start_steps or args.steps <= args.start_steps:
        parser.error("--steps must be a multiple of --start-steps and larger than it")
    try:
        args.device = resolve_device(args.device)
    except SmacError as exc:
        parser.error(str(exc))

    print(f"{args.env}, {args.steps} steps ({args.start_steps} random), device {args.device}, "
          f"{args.threads} torch threads\n")
    print("| algorithm | exploring env-steps/s | learning env-steps/s (1 update/step) |")
    print("|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for algo in args.algos:
            explore, learn = measure(algo, args.env, args.steps, args.start_steps, args.device,
                                     args.threads, Path(tmp) / algo)
            print(f"| {algo} | {explore:,.0f} | {learn:,.1f} |", flush=True)
    print(f"\nload average (1 min) {os.getloadavg()[0]:.1f}: rates are wall-clock, so run "
          "this on an otherwise idle machine")


if __name__ == "__main__":
    main()
