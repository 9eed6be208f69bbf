"""The Slurm backend: each command of a study is one Slurm job, submitted with submitit
(``pip install 'smac-landscape[slurm]'``), from a login node whose filesystem (the repository,
its Python environment, the spec's root, the Minari store) the compute nodes share.

A job runs ``ClusterCommand``: the same command line the local backend runs (a training run's
``python -m smac_core.train ... --resume`` in the spec's root, its output appended to
``RUN/runner.log``; a landscape command in the directory the study was started from), as a child
process of submitit's worker, so that the skip/resume semantics are the local ones.

Stopping and time limits:

- the runner stops a job (``--max-minutes``, Ctrl-C) by cancelling it while it is queued, else
  with ``scancel --signal=USR1``, which the worker turns into one SIGTERM to the trainer (one
  SIGINT to a landscape command): the trainer checkpoints and exits, and the attempt is recorded
  as stopped; after ``--grace-seconds`` a job still running is cancelled;
- before a job's time limit (``--slurm-minutes``) and at a preemption, Slurm sends USR2 (90 s
  ahead, submitit's default): the worker stops the command the same way, waits for its
  checkpoint and requeues the job (submitit's checkpoint protocol, up to 3 time-outs), which
  then resumes with ``--resume``. So a run longer than the time limit finishes over several
  allocations, within one attempt of the runner.

A job the cluster ends otherwise (preempted without the warning, cancelled by hand, a node
failure) is a failed attempt; the next ``run`` resumes it from its latest checkpoint.

The command itself ignores USR1 and USR2 (they are the worker's), and dies with the worker.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smac_core.errors import SmacError
from studies.experiments.backends import Job, die_with_parent, log_header
from studies.experiments.state import now

SLURM_DIR = "slurm"  # submitit's folder (job pickles and logs), by default ROOT/runner/slurm
STOP_REQUEST = signal.SIGUSR1  # runner -> worker: stop the command cleanly
PREEMPT_SIGNAL = signal.SIGUSR2  # Slurm -> worker, before the time limit (submitit's default)
CHECKPOINT_WAIT_S = 60  # how long the worker waits for the command's checkpoint (of the 90 s)
POLL_SECONDS = 0.2
DEFAULT_MINUTES = 240
DEFAULT_CPUS = 4
EXECUTOR = "slurm"  # submitit's executor; the tests use "local" (submitit's local executor)


def _job_id() -> str:
    """The id of the cluster job this process runs in."""
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID") or "?"


def _command_setup(stop_signal: int) -> None:
    """In the command's process, before it starts: die with the worker; leave the worker's
    signals to the worker."""
    die_with_parent(stop_signal)
    for sig in (STOP_REQUEST, PREEMPT_SIGNAL):
        signal.signal(sig, signal.SIG_IGN)


@dataclass
class ClusterCommand:
    """What a cluster job runs (pickled by submitit, called on the node): ``argv`` in ``cwd`` as a
    child process, output appended to ``log`` (None: the job's submitit log); its exit status is
    the job's result. ``threads``: OMP/MKL threads unless the environment sets them."""

    argv: tuple[str, ...]
    cwd: str
    log: str | None
    stop_signal: int
    threads: int | None = None
    _child: subprocess.Popen | None = field(default=None, init=False, repr=False, compare=False)
    _status: int | None = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_child": None, "_status": None}

    def __call__(self) -> int:
        env = dict(os.environ)
        if self.threads:
            for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                env.setdefault(name, str(self.threads))
        env.setdefault("PYTHONUNBUFFERED", "1")
        signal.signal(STOP_REQUEST, self._forward)
        if os.environ.get("SUBMITIT_EXECUTOR") != "slurm":
            # submitit's local executor forwards its SIGTERM to the worker only; under Slurm
            # every process of the job gets it directly, so forwarding it would send it twice
            signal.signal(signal.SIGTERM, self._forward)
        setup = functools.partial(_command_setup, self.stop_signal)
        if self.log is None:
            self._child = subprocess.Popen(self.argv, cwd=self.cwd, env=env,
                                           stdin=subprocess.DEVNULL, preexec_fn=setup)
            return self._wait()
        with open(self.log, "a") as log:
            log.write(log_header(Job("", self.argv, Path(self.cwd))).rstrip("\n")
                      + f" (cluster job {_job_id()})\n")
            log.flush()
            self._child = subprocess.Popen(self.argv, cwd=self.cwd, env=env, stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           preexec_fn=setup)
            return self._wait()

    def _wait(self) -> int:
        """The command's exit status. Polls rather than blocking in ``Popen.wait``, whose lock
        the signal handlers (which run in this thread) could then never take."""
        assert self._child is not None
        while True:
            code = self._child.poll()
            if self._status is not None:  # reaped by ``checkpoint``
                return self._status
            if code is not None:
                return code
            time.sleep(POLL_SECONDS)

    def _forward(self, signum: int, frame: Any) -> None:
        child = self._child
        if child is not None and child.returncode is None and self._status is None:
            child.send_signal(self.stop_signal)

    def checkpoint(self) -> Any:
        """submitit's checkpoint hook, called on the node at USR2 (time limit ahead, or
        preemption): stop the command (a training run checkpoints), then requeue the same
        command, which resumes. None (no requeue) when the command has already ended."""
        import submitit

        child = self._child
        if child is None or child.returncode is not None or self._status is not None:
            return None
        child.send_signal(self.stop_signal)
        deadline = time.monotonic() + CHECKPOINT_WAIT_S
        while self._status is None:
            try:
                pid, status = os.waitpid(child.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by Popen.poll
                break
            if pid:
                self._status = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > deadline:
                child.kill()
            time.sleep(POLL_SECONDS)
        return submitit.helpers.DelayedSubmission(
            ClusterCommand(self.argv, self.cwd, self.log, self.stop_signal, self.threads))


class ClusterHandle:
    """A submitted job, as the scheduler sees it (``backends.Handle``)."""

    def __init__(self, job: Any, spec: Job) -> None:
        self.job, self.spec = job, spec
        self.job_id = str(job.job_id)

    def poll(self) -> int | None:
        if not self.job.done():
            return None
        try:
            return int(self.job.result())
        except Exception as exc:  # submitit's: ended without a result (cancelled, node failure)
            reason = str(exc).strip().splitlines()
            line = (f"=== {now()} cluster job {self.job_id} ended without an exit status: "
                    f"{reason[0] if reason else type(exc).__name__} (submitit log: "
                    f"{self.job.paths.stdout})\n")
            if self.spec.log is not None:
                with open(self.spec.log, "a") as log:
                    log.write(line)
            return 1

    def send_signal(self, sig: int) -> None:
        """Stop cleanly (``sig`` is the job's stop signal, which its worker sends): a queued job is
        cancelled, a running one gets ``STOP_REQUEST``."""
        if hasattr(self.job, "_process"):  # submitit's local executor: its controller forwards
            if self.job._process is not None and self.job._process.poll() is None:  # SIGTERM
                self.job._process.send_signal(signal.SIGTERM)
            return
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        subprocess.call(["scancel", "--state=PENDING", self.job_id], **quiet)
        subprocess.call(["scancel", f"--signal={STOP_REQUEST.name.removeprefix('SIG')}",
                         self.job_id], **quiet)

    def kill(self) -> None:
        self.job.cancel(check=False)


class SlurmBackend:
    """One Slurm job per command: ``partition`` (None: the cluster's default), a time limit of
    ``minutes`` per job (longer runs are requeued and resume), ``gpus`` and ``cpus`` per job;
    submitit's pickles and logs go to ``folder``."""

    name = "slurm"

    def __init__(self, folder: Path, partition: str | None = None,
                 minutes: int = DEFAULT_MINUTES, gpus: int = 0, cpus: int = DEFAULT_CPUS,
                 cluster: str | None = None) -> None:
        try:
            import submitit
        except ImportError:
            raise SmacError("--backend slurm needs submitit: pip install 'smac-landscape[slurm]' "
                            "(or pip install submitit)") from None
        cluster = cluster or EXECUTOR
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise SmacError("--backend slurm: sbatch is not on PATH; run the study on a Slurm "
                            "login node")
        self.folder, self.cpus = Path(folder), cpus
        try:
            self.executor = submitit.AutoExecutor(folder=self.folder, cluster=cluster)
        except RuntimeError as exc:  # e.g. no srun
            raise SmacError(f"--backend slurm: {exc}") from None
        parameters: dict[str, Any] = {"timeout_min": minutes, "gpus_per_node": gpus,
                                      "cpus_per_task": cpus, "nodes": 1, "tasks_per_node": 1,
                                      "stderr_to_stdout": True}
        if partition:
            parameters["slurm_partition"] = partition
        self.executor.update_parameters(**parameters)

    def submit(self, job: Job) -> ClusterHandle:
        self.executor.update_parameters(name=job.name)
        command = ClusterCommand(job.argv, str(job.cwd.resolve()),
                                 None if job.log is None else str(job.log.resolve()),
                                 job.stop_signal, self.cpus)
        return ClusterHandle(self.executor.submit(command), job)
