"""The landscapes of a study's finished runs: ``landscape_jobs`` (what the spec asks for) and
``run_landscapes`` (each one command, ``python -m landscape.interpolate|surface|trajectory``,
scheduled through a backend like the training runs).

Layout under the spec's ``root``::

    ROOT/landscapes/interpolation/<task>/<offline label>/seed<k>/  (landscape.interpolate)
    ROOT/landscapes/planes/<task>/<offline label>/seed<k>/         (landscape.surface)
    ROOT/landscapes/trajectories/<task>/<offline label>/seed<k>/   (landscape.trajectory)

A landscape whose result file exists is done; one whose runs are not all finished waits; any
other runs, resuming from the points it has already written. A landscape whose spec entry has
``parts: N`` (N > 1) runs as N part jobs (``--part K/N``, ``landscape.parts``: each evaluates
its block of the points into ``OUT/parts/K-of-N/``) and an assembling job (the command without
``--part``) that starts once all of them are done; a part whose ``command.json`` records a
success of the same command is not rerun, nor are the parts of a finished landscape. Each
landscape's (and part's) command, git commit, times and exit status go to its ``command.json``
when it ends (not when it was stopped).
Locally the landscapes run one at a time (each spreads its rollouts over the cores,
``--workers``), in the directory the study was started from, their output on the terminal. A
landscape is stopped with SIGINT: it keeps its finished points, and the next call continues it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studies.experiments.backends import Backend, Job, LocalBackend, child_environment, python_job
from studies.experiments.grid import expand_grid
from studies.experiments.runner import DEFAULT_GRACE_SECONDS, Scheduler, stop_on_signals
from studies.experiments.spec import ExperimentSpec
from studies.experiments.state import (
    STUDY_MODULE,
    command_record,
    now,
    run_state,
    source_record,
    write_json,
)

LANDSCAPE_RECORD = "command.json"


@dataclass(frozen=True)
class LandscapeJob:
    """One landscape command over finished runs, written to ``ROOT/<out>``."""

    out: str                  # relative to the root
    module: str               # "landscape.interpolate" | "landscape.surface" | "...trajectory"
    runs: tuple[str, ...]     # run ids (checkpoints in the order the command takes them)
    options: tuple[str, ...]  # the command's other arguments
    result_file: str          # what a finished job has written
    parts: int = 1            # jobs its points are split over (then one more assembles them)

    def argv(self, root: Path, device: str, workers: int | None) -> list[str]:
        return [*(str(root / r) for r in self.runs), *self.options, "--device", device,
                *([] if workers is None else ["--workers", str(workers)]),
                "--out", str(root / self.out)]

    def steps(self) -> list[LandscapeStep]:
        """Its jobs: the parts (none when ``parts`` is 1), then the one that writes the
        outputs."""
        parts = range(1, self.parts + 1) if self.parts > 1 else ()
        return [*(LandscapeStep(self, k) for k in parts), LandscapeStep(self, None)]


@dataclass(frozen=True)
class LandscapeStep:
    """One job of a landscape: part ``part`` of ``landscape.parts`` (``--part K/N``), or (None)
    the command that writes the outputs (assembling the parts, if any)."""

    landscape: LandscapeJob
    part: int | None

    @property
    def name(self) -> str:
        """The directory it writes, relative to the root (unique: the scheduler's job name)."""
        job = self.landscape
        return job.out if self.part is None else f"{job.out}/parts/{self.part}-of-{job.parts}"

    def needs(self) -> tuple[str, ...]:
        job = self.landscape
        return tuple(s.name for s in job.steps() if s.part is not None) \
            if self.part is None else ()

    def argv(self, root: Path, device: str, workers: int | None) -> list[str]:
        argv = self.landscape.argv(root, device, workers)
        return argv if self.part is None else [*argv, "--part",
                                                f"{self.part}/{self.landscape.parts}"]


def landscape_jobs(spec: ExperimentSpec) -> list[LandscapeJob]:
    """The interpolations (offline -> online final), planes and training trajectories of the
    spec, in grid order; a job exists where the spec has all of its runs."""
    plans = expand_grid(spec)
    run_ids = {p.run_id for p in plans}
    jobs = []
    for plan in plans:
        if plan.phase != "offline":
            continue
        task, label, seed_dir, _ = plan.run_id.split("/")
        base = plan.run_id.removesuffix("/offline")
        interp = spec.interpolation
        target = None if interp is None else next(
            (o for o in interp.online if f"{base}/online-{o}" in run_ids), None)
        if interp is not None and target is not None:
            jobs.append(LandscapeJob(
                f"landscapes/interpolation/{base}", "landscape.interpolate",
                (plan.run_id, f"{base}/online-{target}"),
                ("--points", str(interp.points), "--range", *map(str, interp.range),
                 "--episodes", str(interp.episodes),
                 "--label", f"{label} → {target} ({task}, {seed_dir})"),
                "interpolation.json", interp.parts))
        planes = spec.planes
        online_runs = tuple(f"{base}/online-{o}" for o in planes.online) if planes else ()
        if planes is not None and task == planes.task and label in planes.methods \
                and all(r in run_ids for r in online_runs):
            low, high = map(str, planes.range)
            jobs.append(LandscapeJob(
                f"landscapes/planes/{base}", "landscape.surface", (plan.run_id, *online_runs),
                ("--x-points", str(planes.points), "--y-points", str(planes.points),
                 "--x-range", low, high, "--y-range", low, high,
                 "--episodes", str(planes.episodes)),
                "surface.json", planes.parts))
            jobs.append(LandscapeJob(
                f"landscapes/trajectories/{base}", "landscape.trajectory",
                (plan.run_id, *online_runs), ("--episodes", str(planes.episodes)),
                "trajectory.json"))
    return jobs



def _read_record(path: Path) -> Any:
    """A ``command.json`` as written, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


@dataclass
class LandscapeSummary:
    done: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)   # its runs are not all finished
    failed: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)  # not reached before the deadline


class LandscapeRunner(Scheduler):
    """Runs the landscape jobs of a spec (see the module docstring)."""

    what, saving, start_word = "landscape(s)", "their finished points", "landscape"

    def __init__(self, spec: ExperimentSpec, device: str, workers: int | None,
                 invocation: Sequence[str], backend: Backend, jobs: int | None,
                 deadline: float | None, grace_seconds: float = DEFAULT_GRACE_SECONDS,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(backend, jobs, deadline, grace_seconds, clock, sleep)
        self.spec, self.device, self.workers = spec, device, workers
        self.invocation = list(invocation)
        self.plans = {p.run_id: p for p in expand_grid(spec)}
        self.summary = LandscapeSummary()

    def run(self) -> LandscapeSummary:
        jobs = landscape_jobs(self.spec)
        self.schedule([step for job in jobs for step in job.steps()])
        if self.stop_reason is not None:
            seen = {*self.summary.done, *self.summary.waiting, *self.summary.failed}
            self.summary.remaining = [j.out for j in jobs if j.out not in seen]
            print(f"stopped ({self.stop_reason}); finished points are kept, rerun to continue",
                  flush=True)
        return self.summary

    def needs(self, step: LandscapeStep) -> tuple[str, ...]:
        return step.needs()

    def prepare(self, step: LandscapeStep) -> bool:
        landscape, assembles = step.landscape, step.part is None
        if (self.spec.root / landscape.out / landscape.result_file).is_file():
            if assembles:
                self.summary.done.append(landscape.out)
            return False  # and its parts are not rerun
        if any(run_state(self.spec.root, self.plans[r]).state != "done" for r in landscape.runs):
            if assembles:
                self.summary.waiting.append(landscape.out)
            return False
        if not assembles:  # a part that succeeded with the same command is done
            done = _read_record(self.spec.root / step.name / LANDSCAPE_RECORD)
            if isinstance(done, dict) and done.get("exit_code") == 0 and done.get("command") \
                    == command_record(landscape.module, self._argv(step))["command"]:
                self.completed.add(step.name)
                return False
        return True

    def _argv(self, step: LandscapeStep) -> list[str]:
        return step.argv(self.spec.root, self.device, self.workers)

    def job(self, step: LandscapeStep) -> Job:
        return python_job(step.name, step.landscape.module, self._argv(step), Path.cwd(),
                          stop_signal=signal.SIGINT)

    def record(self, step: LandscapeStep, job: Job) -> dict[str, Any]:
        return {**command_record(step.landscape.module, job.argv[3:]), "cwd": str(job.cwd),
                "started": now(), **source_record(), "spec_sha256": self.spec.sha256,
                "via": [f"python -m {STUDY_MODULE}", *self.invocation]}

    def not_started(self, step: LandscapeStep, error: Exception) -> None:
        self.summary.failed.append(step.name)
        print(f"failed {step.name} (not started: {error})", flush=True)

    def finish(self, step: LandscapeStep, exit_code: int, record: dict[str, Any]) -> None:
        if exit_code != 0 and self.stop_reason is not None:
            return  # stopped: its finished points are kept, it is among the remaining
        directory = self.spec.root / step.name
        if directory.is_dir():  # never into a directory the command did not create: its
            # rerun would refuse a non-empty directory that it does not own
            write_json(directory / LANDSCAPE_RECORD,
                       {**record, "ended": now(), "exit_code": exit_code})
        if exit_code == 0:
            self.completed.add(step.name)
            if step.part is None:
                self.summary.done.append(step.name)
        else:
            self.summary.failed.append(step.name)
            print(f"failed {step.name} (exit {exit_code})", flush=True)

    def left(self, waiting: list[LandscapeStep]) -> None:
        """An assembly never started because a part failed has failed too."""
        failed = set(self.summary.failed)
        for step in waiting:
            if step.part is None and failed.intersection(step.needs()):
                self.summary.failed.append(step.name)
                print(f"failed {step.name} (a part of it failed)", flush=True)


def run_landscapes(spec: ExperimentSpec, device: str, max_minutes: float | None,
                   workers: int | None = None, invocation: Sequence[str] = (),
                   backend: Backend | None = None, jobs: int | None = 1,
                   clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> LandscapeSummary:
    """Run every landscape job whose runs are finished and whose output is missing, ``jobs`` at
    a time (None: all at once) through ``backend`` (default: local processes). At
    ``max_minutes`` the jobs in progress are stopped (their finished points are kept and resume
    on the next call) and are reported as remaining with those not started, as on SIGINT,
    SIGTERM and SIGHUP."""
    if backend is None:
        backend = LocalBackend(dict(os.environ) if jobs == 1 else child_environment(jobs or 1))
    deadline = None if max_minutes is None else clock() + 60.0 * max_minutes
    runner = LandscapeRunner(spec, device, workers, invocation, backend, jobs, deadline,
                             clock=clock, sleep=sleep)
    with stop_on_signals(runner):
        return runner.run()
