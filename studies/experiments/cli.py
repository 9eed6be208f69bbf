"""The command line of a study: ``python -m studies.experiments {run,status,landscapes,export}
SPEC`` (the package docstring describes it), with ``--backend local|slurm`` and the Slurm options
for ``run`` and ``landscapes``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from smac_core.cli import DEVICE_FORMAT, add_device_flag, resolve_device
from smac_core.errors import SmacError, cli_entry
from smac_core.rundir import require_tensorboard
from studies.experiments.backends import Backend, LocalBackend, child_environment
from studies.experiments.export import export_results, format_status
from studies.experiments.grid import RunPlan, expand_grid, select
from studies.experiments.landscapes import run_landscapes
from studies.experiments.runner import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_PROGRESS_SECONDS,
    Runner,
    stop_on_signals,
)
from studies.experiments.slurm import DEFAULT_CPUS, DEFAULT_MINUTES, SLURM_DIR, SlurmBackend
from studies.experiments.spec import ExperimentSpec, load_spec
from studies.experiments.state import RUNNER_DIR, STUDY_MODULE, record_invocation, run_state

SLURM_OPTIONS = ("slurm_partition", "slurm_minutes", "slurm_gpus", "slurm_cpus", "slurm_folder")


def _positive_minutes(text: str) -> float:
    try:
        minutes = float(text)
    except ValueError:
        minutes = float("nan")
    if not minutes > 0:
        raise argparse.ArgumentTypeError(f"must be a number of minutes > 0, got '{text}'")
    return minutes


def _add_backend_flags(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_argument_group(
        "backend", "where the jobs run: processes on this machine, or one Slurm job each "
                   "(submitit; the nodes must share this filesystem)")
    group.add_argument("--backend", choices=("local", "slurm"), default="local",
                       help="local processes (default) or Slurm jobs")
    group.add_argument("--slurm-partition", metavar="NAME",
                       help="partition of the jobs (default: the cluster's default)")
    group.add_argument("--slurm-minutes", type=int, metavar="MINUTES",
                       help=f"time limit of each job (default {DEFAULT_MINUTES}); a job still "
                            f"running near it saves its {what} and is requeued, resuming "
                            "(up to 3 times)")
    group.add_argument("--slurm-gpus", type=int, metavar="N", help="GPUs per job (default 0)")
    group.add_argument("--slurm-cpus", type=int, metavar="N",
                       help=f"CPU cores per job, also its OMP/MKL threads (default {DEFAULT_CPUS})")
    group.add_argument("--slurm-folder", type=Path, metavar="DIR",
                       help=f"submitit's job files and logs (default ROOT/{RUNNER_DIR}/"
                            f"{SLURM_DIR})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {STUDY_MODULE}",
                                     description="Run a grid of offline -> online training "
                                                 "runs from one spec file, in resumable\n"
                                                 "chunks; then the landscapes of the finished "
                                                 "runs, and a lean copy of what the\nnotebooks "
                                                 "read.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the spec's grid of training runs (resumable)")
    status = sub.add_parser("status", help="print every run's state and step")
    landscapes = sub.add_parser("landscapes", help="interpolations, planes and trajectories of "
                                                   "finished runs")
    export = sub.add_parser("export", help="copy the finished runs' logs, policy-only final "
                                           "checkpoints and landscape results to a lean tree "
                                           "(what results/ holds)")
    for p in (run, status, landscapes, export):
        p.add_argument("spec", type=Path, help="spec file (.yaml/.yml/.json)")
    for p in (run, landscapes):
        p.add_argument("--max-minutes", type=_positive_minutes,
                       help="stop cleanly after this many minutes (runs checkpoint), exit 0")
        add_device_flag(p, "where networks live (the runs share one GPU; with --backend slurm "
                           "it is resolved on each job's node)")
    landscapes.add_argument("--workers", type=int,
                            help="worker processes of the landscape evaluation (0: none; "
                                 "default: one per core for chunks of at least 30,000 env "
                                 "steps; landscape.evaluate.default_workers)")
    landscapes.add_argument("--jobs", type=int,
                            help="landscapes at a time (default: 1 locally, each using every "
                                 "core; with --backend slurm: all at once)")
    export.add_argument("--to", type=Path, required=True, metavar="DIR",
                        help="destination, outside the spec's root, e.g. results/reduced")
    run.add_argument("--jobs", type=int,
                     help="runs at a time (default: the number of cores, on CUDA they share "
                          "the GPU; with --backend slurm: all at once)")
    run.add_argument("--only", metavar="PATTERN",
                     help="only runs whose id matches this glob, e.g. 'door-binary/*' or "
                          "'*/seed0/*' (plus the offline runs they start from)")
    run.add_argument("--stack-seeds", action="store_true",
                     help="train the seeds of each run in one process, smac_core.train --seeds "
                          "(every algorithm): worth it on a GPU, not on a CPU "
                          "at 256-wide networks (README, Benchmarks); each seed still writes its "
                          "own run directory")
    run.add_argument("--grace-seconds", type=float, default=DEFAULT_GRACE_SECONDS,
                     help="after the SIGTERM at --max-minutes, wait this long for checkpoints "
                          "before killing (default: %(default)s)")
    run.add_argument("--progress-seconds", type=float, default=DEFAULT_PROGRESS_SECONDS,
                     metavar="SECONDS",
                     help="print each running run's latest log line (step, rate, ETA, score) "
                          "this often (default: %(default)s; 0: never)")
    _add_backend_flags(run, "checkpoint")
    _add_backend_flags(landscapes, "finished points")
    return parser


def job_device(args: argparse.Namespace) -> str:
    """``--device`` for the jobs: resolved here for local jobs; for Slurm jobs checked here and
    resolved on each node (``auto`` is CUDA there when the job has a GPU). Checks the backend's
    flags first."""
    check_backend_flags(args)
    if args.backend == "local" or not DEVICE_FORMAT.fullmatch(args.device):
        return resolve_device(args.device)
    if args.device.startswith("cuda") and not args.slurm_gpus:
        raise SmacError(f"--device {args.device} with --backend slurm needs --slurm-gpus 1 or "
                        "more")
    return args.device


def check_backend_flags(args: argparse.Namespace) -> None:
    """``SmacError`` for ``--slurm-*`` flags without ``--backend slurm``, or out of range."""
    given = [f"--{name.replace('_', '-')}" for name in SLURM_OPTIONS
             if getattr(args, name) is not None]
    if args.backend == "local" and given:
        raise SmacError(f"{', '.join(given)} need --backend slurm")
    for flag, value, low in (("--slurm-minutes", args.slurm_minutes, 1),
                             ("--slurm-gpus", args.slurm_gpus, 0),
                             ("--slurm-cpus", args.slurm_cpus, 1)):
        if value is not None and value < low:
            raise SmacError(f"{flag} must be >= {low}, got {value}")
    if args.jobs is not None and args.jobs < 1:
        raise SmacError(f"--jobs must be >= 1, got {args.jobs}")


def make_backend(args: argparse.Namespace, spec: ExperimentSpec, local: LocalBackend
                 ) -> Backend:
    """``local`` for ``--backend local``, else a ``SlurmBackend`` from the ``--slurm-*`` flags
    (``check_backend_flags`` has checked them)."""
    if args.backend == "local":
        return local
    return SlurmBackend(args.slurm_folder or spec.root / RUNNER_DIR / SLURM_DIR,
                        args.slurm_partition, args.slurm_minutes or DEFAULT_MINUTES,
                        args.slurm_gpus or 0, args.slurm_cpus or DEFAULT_CPUS)


def _print_summary(title: str, summary: dict[str, list[str]]) -> None:
    print(title + ": " + ", ".join(f"{len(v)} {k}" for k, v in summary.items()))
    for key in ("failed", "blocked"):
        for item in summary.get(key, []):
            print(f"  {key}: {item}")


def check_datasets(spec: ExperimentSpec, plans: Sequence[RunPlan]) -> None:
    """``SmacError`` listing every dataset that ``plans`` train on and that is missing, with the
    command that makes each, so that no run starts only to fail on it."""
    from smac_core.data import missing_dataset
    from smac_core.data.minari_store import store_root

    tasks = dict.fromkeys(plan.task for plan in plans)
    missing = {task: problem for task in tasks
               if (problem := missing_dataset(spec.datasets[task])) is not None}
    if missing:
        raise SmacError(f"{spec.path}: {len(missing)} of its datasets are missing, no run was "
                        f"started (Minari store: {store_root()}, $MINARI_DATASETS_PATH):\n"
                        + "\n".join(f"  {task}: {problem}" for task, problem in missing.items()))


def command_run(args: argparse.Namespace, argv: list[str]) -> int:
    spec = load_spec(args.spec)
    device = job_device(args)
    plans = select(expand_grid(spec, device), args.only)
    check_datasets(spec, [plan for plan in plans if run_state(spec.root, plan).state != "done"])
    if any(phase.flags.get("tensorboard") for phase in (spec.offline, spec.online)):
        require_tensorboard(f"{spec.path}: tensorboard: true")
    try:
        spec.root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SmacError(f"{spec.path}: cannot create its root {spec.root}: "
                        f"{exc.strerror or exc}") from exc
    jobs = args.jobs if args.jobs is not None or args.backend != "local" else os.cpu_count() or 1
    backend = make_backend(args, spec, LocalBackend(child_environment(jobs or 1)))
    deadline = None if args.max_minutes is None else time.monotonic() + 60 * args.max_minutes
    runner = Runner(spec.root, plans, jobs, deadline, args.grace_seconds, backend,
                    progress_seconds=args.progress_seconds or None,
                    stack_seeds=args.stack_seeds)
    with stop_on_signals(runner):
        summary = runner.run().to_dict()
    record_invocation(spec, argv, {"device": device, "jobs": jobs, "backend": args.backend,
                                   "summary": summary})
    _print_summary(f"{len(plans)} runs", summary)
    return 1 if summary["failed"] else 0


def command_landscapes(args: argparse.Namespace, argv: list[str]) -> int:
    spec = load_spec(args.spec)
    if spec.interpolation is None and spec.planes is None:
        raise SmacError(f"{spec.path} has no landscapes section (interpolation, planes)")
    device = job_device(args)
    jobs = args.jobs if args.jobs is not None or args.backend != "local" else 1
    local = LocalBackend(dict(os.environ) if jobs == 1 else child_environment(jobs or 1))
    summary = vars(run_landscapes(spec, device, args.max_minutes, args.workers, argv,
                                  make_backend(args, spec, local), jobs))
    record_invocation(spec, argv, {"device": device, "jobs": jobs, "backend": args.backend,
                                   "summary": summary})
    _print_summary("landscapes", summary)
    return 1 if summary["failed"] else 0


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command == "status":
        print(format_status(load_spec(args.spec)))
        return 0
    if args.command == "run":
        return command_run(args, argv)
    if args.command == "export":
        summary = export_results(load_spec(args.spec), args.to, argv)
        _print_summary(f"exported to {args.to}", vars(summary))
        return 0
    return command_landscapes(args, argv)
