"""Where a study's commands run: the ``Backend`` interface and the local one.

Every piece of work of a study is one command line (``Job``): a training run is
``python -m smac_core.train ... --resume`` started in the spec's root, a landscape is
``python -m landscape.interpolate|surface|trajectory ...``. A backend starts a job and hands back
a ``Handle`` with the three calls the scheduler (``studies.experiments.runner``) makes:

- ``poll()``: None while the job runs, then its exit status;
- ``send_signal(job.stop_signal)``: stop cleanly (the trainer checkpoints on SIGTERM and exits;
  a landscape command keeps its finished points on SIGINT);
- ``kill()``: stop now (after the grace period).

``subprocess.Popen`` is such a handle. Two backends: ``LocalBackend`` (processes on this machine,
below) and ``studies.experiments.slurm.SlurmBackend`` (one Slurm job per command, through
submitit).
"""

from __future__ import annotations

import ctypes
import functools
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from studies.experiments.state import now

PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent dies


@dataclass(frozen=True)
class Job:
    """One command of a study, as every backend runs it."""

    name: str                  # run id or landscape directory (relative to the root): unique
    argv: tuple[str, ...]      # the command, from the interpreter on (sys.executable, "-m", ...)
    cwd: Path                  # where it runs; relative paths in ``argv`` are relative to it
    log: Path | None = None    # output appended here (None: the runner's own output, or the
    #                            cluster's log folder)
    stop_signal: int = signal.SIGTERM  # asks it to stop cleanly


def python_job(name: str, module: str, args: tuple[str, ...] | list[str], cwd: Path,
               log: Path | None = None, stop_signal: int = signal.SIGTERM) -> Job:
    """``python -m MODULE ARGS`` with this interpreter (a cluster node runs the same path)."""
    return Job(name, (sys.executable, "-m", module, *args), cwd, log, stop_signal)


class Handle(Protocol):
    """A started job (``subprocess.Popen`` is one)."""

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


class Backend(Protocol):
    """Starts jobs: ``submit`` raises ``SmacError`` or ``OSError`` when a job cannot start."""

    name: str

    def submit(self, job: Job) -> Handle: ...


def child_environment(jobs: int) -> dict[str, str]:
    """The environment of local jobs: this one, with the cores split among ``jobs`` parallel
    jobs (OMP/MKL threads, unless already set) and unbuffered output for the logs."""
    env = dict(os.environ)
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, threads)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In a job's process, before it starts: have the kernel send it ``sig`` (the trainer then
    checkpoints and exits) when the process that started it dies, even by SIGKILL, so that no
    job outlives its runner. Linux only."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def log_header(job: Job) -> str:
    """The line that opens each attempt's output in the job's log."""
    return f"\n=== {now()} {shlex.join(job.argv)}\n"


class LocalBackend:
    """Jobs as child processes of the runner, output appended to ``job.log``.

    Each process gets its own session: a Ctrl-C at the terminal reaches only the runner, which
    then sends each job exactly one stop signal (a second signal makes a training run skip its
    checkpoint); on Linux it gets its stop signal as well when the runner dies. A run directory
    is locked by its process, so a second runner's process for the same run is refused.
    """

    name = "local"

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = dict(os.environ) if env is None else env

    def submit(self, job: Job) -> subprocess.Popen:
        preexec = (functools.partial(die_with_parent, job.stop_signal)
                   if sys.platform == "linux" else None)
        if job.log is None:
            return subprocess.Popen(job.argv, cwd=job.cwd, env=self.env,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=preexec)
        with open(job.log, "a") as log:
            log.write(log_header(job))
            log.flush()
            return subprocess.Popen(job.argv, cwd=job.cwd, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, preexec_fn=preexec)
