"""The scheduler loop of a study, over a backend (``studies.experiments.backends``).

``Scheduler`` starts jobs through the backend, at most ``jobs`` at a time, each once the jobs it
needs are done, and polls them. At ``deadline`` (``--max-minutes``), or on ``request_stop`` (the
command's SIGINT/SIGTERM/SIGHUP handler), it starts no more jobs and sends each running job its
stop signal once; after ``grace_seconds`` it kills what still runs. Every ``progress_seconds``
it prints, for each running job with a log, the last line of that log (the trainer's and the
landscapes' own progress lines: step, rate, ETA, latest score), so that a study shows progress
in its own output and not only in the jobs' logs.

``Runner`` schedules the training runs of a grid: a run whose final checkpoint holds the spec's
step count is skipped; any other is started as ``python -m smac_core.train ... --resume`` in the
spec's root (its ``--out`` and ``--from`` are relative to it, so the root can be moved), output
appended to ``RUN/runner.log``, and each attempt (command, git commit, exit status, outcome) is
appended to ``RUN/runner.json``. An online run starts once its offline run is done; the online
runs of a failed offline run are reported as blocked. With ``stack_seeds`` (``run
--stack-seeds``) the seeds of an online run that are at the same step are started as one
``--seeds`` command once all their offline runs are done (``grid.seed_groups``); its output goes
to the first member's runner.log, and every member's runner.json records the attempt.
"""

from __future__ import annotations

import math
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smac_core.errors import SmacError
from smac_core.files import claim
from smac_core.runconfig import TRAIN_COMMAND, TRAIN_MODULE
from smac_core.rundir import RUN_DIR_MARKERS, RUN_LOG, RUN_OWNER, RUN_RECORD
from studies.experiments.backends import (
    Backend,
    Handle,
    Job,
    LocalBackend,
    child_environment,
    python_job,
)
from studies.experiments.grid import RunPlan, SeedGroup, seed_groups
from studies.experiments.state import (
    command_record,
    now,
    run_attempts,
    run_state,
    source_record,
    write_json,
)

DEFAULT_GRACE_SECONDS = 60.0
POLL_SECONDS = 1.0
DEFAULT_PROGRESS_SECONDS = 30.0  # a line per running job this often (None: never)


@dataclass
class Started:
    """A running job: what it is for, the command, its handle and its record so far."""

    item: Any
    job: Job
    handle: Handle
    record: dict[str, Any]


class Scheduler(ABC):
    """Runs items (training runs, landscapes) as jobs of ``backend``: ``jobs`` at a time (None:
    no limit), until ``deadline`` (on ``clock``). Subclasses say what an item's job and record
    are (``job``, ``record``), which items it needs done first (``needs``), which are skipped
    (``prepare``), and what an ended job means (``finish``). ``clock`` and ``sleep`` are
    injectable, so that tests drive the scheduling with fake jobs and a fake clock."""

    what, saving = "job(s)", "their work"  # for the stop message
    start_word = "start "  # the line printed when a job starts: "start  NAME"

    def __init__(self, backend: Backend, jobs: int | None, deadline: float | None = None,
                 grace_seconds: float = DEFAULT_GRACE_SECONDS,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 progress_seconds: float | None = DEFAULT_PROGRESS_SECONDS) -> None:
        if jobs is not None and jobs < 1:
            raise SmacError(f"--jobs must be >= 1, got {jobs}")
        self.backend, self.jobs = backend, math.inf if jobs is None else jobs
        self.deadline, self.grace_seconds = deadline, grace_seconds
        self.clock, self.sleep = clock, sleep
        self.progress_seconds = progress_seconds
        self._last_progress = clock()
        self.running: dict[str, Started] = {}
        self.completed: set[str] = set()  # names done, now or before: what later items may need
        self.stop_reason: str | None = None
        self._stop_time: float | None = None  # when the jobs were sent their stop signal
        self._killed = False

    # ------------------------------------------------------------------------ what subclasses say
    def needs(self, item: Any) -> tuple[str, ...]:
        return ()

    def prepare(self, item: Any) -> bool:
        """Whether ``item`` is to run (False: it was accounted for, e.g. done before)."""
        return True

    @abstractmethod
    def job(self, item: Any) -> Job:
        """The command of ``item`` (its ``name`` names the item in the loop and the output)."""

    def record(self, item: Any, job: Job) -> dict[str, Any]:
        """What the records hold of an attempt before it ends; may refuse with ``SmacError``."""
        return {}

    @abstractmethod
    def not_started(self, item: Any, error: Exception) -> None:
        """``item``'s job could not be submitted (``error``): account for it."""

    @abstractmethod
    def finish(self, item: Any, exit_code: int, record: dict[str, Any]) -> None:
        """``item``'s job ended with ``exit_code``; ``record`` is what ``record`` gave."""

    def regroup(self, waiting: list[Any]) -> list[Any]:
        """The waiting items, changed by what has happened (an item that can no longer start
        as it is split); by default as they are."""
        return waiting

    def left(self, waiting: list[Any]) -> None:
        """The items never started (the deadline came, or what they need failed); by default
        nothing is done with them."""
        return None

    # -------------------------------------------------------------------------------- the loop
    def request_stop(self, reason: str) -> None:
        """Start no more jobs and stop the running ones (safe to call from a signal handler: the
        loop sends the signals)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def _terminate(self, now_: float) -> None:
        """The stop signal to every running job once; a kill after the grace."""
        if self._stop_time is None:
            self._stop_time = now_
            signals = sorted({signal.Signals(s.job.stop_signal).name
                              for s in self.running.values()})
            print(f"stopping ({self.stop_reason}): {'/'.join(signals) or 'a stop signal'} to "
                  f"{len(self.running)} running {self.what}, waiting up to "
                  f"{self.grace_seconds:g} s for {self.saving}", flush=True)
            for started in self.running.values():
                started.handle.send_signal(started.job.stop_signal)
        elif not self._killed and now_ - self._stop_time > self.grace_seconds:
            self._killed = True
            for started in self.running.values():
                started.handle.kill()

    def _start(self, item: Any) -> None:
        job = self.job(item)
        try:
            record = self.record(item, job)
            handle = self.backend.submit(job)
        except (SmacError, OSError) as exc:  # e.g. a directory in the way that is not a run's
            self.not_started(item, exc)
            return
        cluster_job = getattr(handle, "job_id", None)
        if cluster_job is not None:
            record["cluster_job"] = cluster_job
        self.running[job.name] = Started(item, job, handle, record)
        print(f"{self.start_word} {job.name}"
              + (f" (cluster job {cluster_job})" if cluster_job else ""), flush=True)

    def _print_progress(self, now_: float) -> None:
        """Each running job's latest log line, every ``progress_seconds``."""
        if self.progress_seconds is None or now_ - self._last_progress < self.progress_seconds:
            return
        self._last_progress = now_
        for name, started in self.running.items():
            if started.job.log is not None:
                line = last_line(started.job.log)
                print(f"  {name}: {line or 'no output yet'}", flush=True)

    def _reap(self) -> None:
        for name, started in list(self.running.items()):
            exit_code = started.handle.poll()
            if exit_code is not None:
                del self.running[name]
                self.finish(started.item, exit_code, started.record)

    def _start_ready(self, waiting: list[Any]) -> list[Any]:
        """Start the waiting items whose needs are done, while slots are free."""
        still = []
        for item in waiting:
            ready = all(name in self.completed for name in self.needs(item))
            if ready and len(self.running) < self.jobs:
                self._start(item)
            else:
                still.append(item)
        return still

    def schedule(self, items: Sequence[Any]) -> None:
        """Run every item that ``prepare`` keeps; kills what runs if the loop itself fails."""
        waiting = [item for item in items if self.prepare(item)]
        try:
            while waiting or self.running:
                now_ = self.clock()
                if self.deadline is not None and now_ >= self.deadline:
                    self.request_stop("--max-minutes reached")
                if self.stop_reason is not None:
                    self._terminate(now_)
                self._reap()
                self._print_progress(now_)
                if self.stop_reason is not None:
                    if not self.running:
                        break
                else:
                    waiting = self._start_ready(self.regroup(waiting))
                    if not self.running:
                        break
                self.sleep(POLL_SECONDS)
        finally:
            for started in self.running.values():  # only after an exception in the loop
                started.handle.kill()
        self.left(waiting)


def last_line(log: Path, tail_bytes: int = 4096) -> str:
    """The last non-empty line of ``log`` (read from its last ``tail_bytes``; a progress bar's
    carriage-return updates count as lines); "" when there is none or it cannot be read."""
    try:
        with open(log, "rb") as file:
            file.seek(0, 2)
            file.seek(max(0, file.tell() - tail_bytes))
            tail = file.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.replace("\r", "\n").split("\n")]
    return next((line for line in reversed(lines) if line), "")


@contextmanager
def stop_on_signals(scheduler: Scheduler) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP ask ``scheduler`` to stop (its jobs save their work) for the
    block, instead of ending this process."""

    def handler(signum: int, frame: Any) -> None:
        scheduler.request_stop(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM,
                                                       signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# ------------------------------------------------------------------------------- training runs
@dataclass
class RunnerSummary:
    """Run ids by outcome of one ``run`` invocation."""

    done: list[str] = field(default_factory=list)      # finished (now or before)
    stopped: list[str] = field(default_factory=list)   # checkpointed at the deadline
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)   # waiting on a failed offline run
    remaining: list[str] = field(default_factory=list)  # not started (deadline)

    def to_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in vars(self).items()}


def train_job(root: Path, plan: RunPlan) -> Job:
    """``python -m smac_core.train ARGS`` in ``root``, output appended to RUN/runner.log."""
    return python_job(plan.run_id, TRAIN_MODULE, plan.args, root, root / plan.run_id / RUN_LOG)


class Runner(Scheduler):
    """Runs the training plans of a grid, offline before online (see the module docstring);
    ``backend`` default: local processes, with the cores split among ``jobs``."""

    what, saving = "run(s)", "their checkpoints"

    def __init__(self, root: Path, plans: Sequence[RunPlan], jobs: int | None = None,
                 deadline: float | None = None, grace_seconds: float = DEFAULT_GRACE_SECONDS,
                 backend: Backend | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 progress_seconds: float | None = DEFAULT_PROGRESS_SECONDS,
                 stack_seeds: bool = False) -> None:
        if backend is None:
            backend = LocalBackend(child_environment(jobs or 1))
        super().__init__(backend, jobs, deadline, grace_seconds, clock, sleep, progress_seconds)
        self.root, self.plans, self.stack_seeds = root, list(plans), stack_seeds
        self.summary = RunnerSummary()

    def run(self) -> RunnerSummary:
        """Run every plan that is not done; returns what happened to each."""
        todo = [plan for plan in self.plans if self.prepare(plan)]
        self.schedule(seed_groups(todo, lambda plan: run_state(self.root, plan).step)
                      if self.stack_seeds else todo)
        return self.summary

    def needs(self, item: RunPlan | SeedGroup) -> tuple[str, ...]:
        return tuple(plan.parent for plan in _members(item) if plan.parent is not None)

    def prepare(self, item: RunPlan | SeedGroup) -> bool:
        if isinstance(item, SeedGroup):
            return True  # made of plans prepared before grouping
        if run_state(self.root, item).state == "done":
            self._done(item)
            return False
        return True

    def job(self, item: RunPlan | SeedGroup) -> Job:
        if isinstance(item, SeedGroup):
            return python_job(item.run_id, TRAIN_MODULE, item.args, self.root,
                              self.root / item.members[0].run_id / RUN_LOG)
        return train_job(self.root, item)

    def record(self, item: RunPlan | SeedGroup, job: Job) -> dict[str, Any]:
        """Claims the run directories for the trainer (``smac_core.files.claim``: a directory
        that is not a run's is refused), so that its log can be written there."""
        for plan in _members(item):
            claim(self.root / plan.run_id, RUN_OWNER, [TRAIN_COMMAND, *item.args],
                  flag="run directory", legacy=RUN_DIR_MARKERS)
        together = ({"seeds_together": [plan.run_id for plan in item.members],
                     "log": str(job.log)} if isinstance(item, SeedGroup) else {})
        return {"started": now(), "cwd": str(self.root), **command_record(TRAIN_MODULE, item.args),
                **source_record(), **together}

    def not_started(self, item: RunPlan | SeedGroup, error: Exception) -> None:
        for plan in _members(item):
            self.summary.failed.append(plan.run_id)
            print(f"failed {plan.run_id} (not started: {error})", flush=True)

    def _done(self, plan: RunPlan) -> None:
        self.summary.done.append(plan.run_id)
        self.completed.add(plan.run_id)

    def finish(self, item: RunPlan | SeedGroup, exit_code: int, attempt: dict[str, Any]) -> None:
        log = self.root / _members(item)[0].run_id / RUN_LOG
        for plan in _members(item):
            self._finish_run(plan, exit_code, attempt, log)

    def _finish_run(self, plan: RunPlan, exit_code: int, attempt: dict[str, Any],
                    log: Path) -> None:
        state = run_state(self.root, plan)
        if state.state == "done":
            outcome = "done"
            self._done(plan)
        elif self.stop_reason is not None:
            outcome = "stopped"
            self.summary.stopped.append(plan.run_id)
        else:
            outcome = "failed"
            self.summary.failed.append(plan.run_id)
        run_dir = self.root / plan.run_id
        write_json(run_dir / RUN_RECORD, {"attempts": [*run_attempts(run_dir),
                                                       {**attempt, "ended": now(),
                                                        "exit_code": exit_code,
                                                        "outcome": outcome}]})
        print(f"{outcome:6} {plan.run_id} (exit {exit_code}"
              + (f", step {state.step}" if state.step is not None else "") + ")", flush=True)
        if outcome == "failed":
            lines = [line for line in log.read_text().splitlines() if line.strip()] \
                if log.is_file() else []
            print(f"  {lines[-1] if lines else 'no output'} (see {log})", flush=True)

    def regroup(self, waiting: list[RunPlan | SeedGroup]) -> list[RunPlan | SeedGroup]:
        """A seed group one of whose offline runs failed is split into its members, so that
        the others start on their own (the failed one's is reported as blocked)."""
        failed = set(self.summary.failed)
        return [plan for item in waiting
                for plan in (_members(item) if isinstance(item, SeedGroup) and any(
                    member.parent in failed for member in item.members) else (item,))]

    def left(self, waiting: list[RunPlan | SeedGroup]) -> None:
        failed = set(self.summary.failed)
        for plan in (plan for item in waiting for plan in _members(item)):
            (self.summary.blocked if plan.parent in failed else self.summary.remaining).append(
                plan.run_id)


def _members(item: RunPlan | SeedGroup) -> tuple[RunPlan, ...]:
    """The training runs of a scheduled item: a plan itself, or a seed group's members."""
    return item.members if isinstance(item, SeedGroup) else (item,)
