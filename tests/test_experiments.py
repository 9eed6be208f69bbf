"""The experiment runner: spec validation, grid layout, skip/resume/deadline scheduling with fake
processes, and one end-to-end run of notebooks/specs/smoke.yaml through smac_core.train."""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import DOOR_HUMAN

from smac_core.checkpoint import FORMAT_VERSION, METADATA_FILE, load_checkpoint
from smac_core.errors import SmacError
from studies import experiments
from studies.experiments import (
    RUN_RECORD,
    Runner,
    RunPlan,
    SeedGroup,
    expand_grid,
    format_status,
    landscape_jobs,
    load_spec,
    main,
    run_state,
    seed_groups,
    select,
)

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "notebooks" / "specs" / "smoke.yaml"
REDUCED = REPO / "notebooks" / "specs" / "reduced.yaml"
REDUCED_100K = REPO / "notebooks" / "specs" / "reduced-100k.yaml"


def smoke_dict(root: Path) -> dict:
    spec = yaml.safe_load(SMOKE.read_text())
    spec["root"] = str(root)
    return spec


def write_spec(tmp_path: Path, spec: dict, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# ------------------------------------------------------------------------------ spec validation
def _edit(spec: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        spec = spec[key]
    spec[last] = value


@pytest.mark.parametrize(("key", "value", "message"), [
    ("colour", "blue", "top level: unknown key(s) ['colour']"),
    ("tasks", ["door-binary", "cheetah-run"], "tasks: unknown key(s) ['cheetah-run']"),
    ("seeds", [0, 0], "seeds: must be a list of distinct integers"),
    ("offline.steps", 0, "offline.steps: must be an integer >= 1"),
    ("offline.eval_every", "often", "offline.eval_every: must be an integer >= 1"),
    ("offline.algorithms.td3bc.algo", "sac", "offline.algorithms.td3bc.algo: 'sac' is not one"),
    ("offline.algorithms.td3bc.online", ["sac", "dqn"],
     "offline.algorithms.td3bc.online: unknown ['dqn']; valid: ['sac', 'td3bc']"),
    ("offline.algorithms.td3bc.set", {"learning_rate": 1},
     "unknown TD3BCConfig option(s) ['learning_rate']"),
    ("offline.algorithms.td3bc.optimizer", "sgd", "optimizer: 'sgd' is not one of"),
    ("offline.algorithms.td3bc.tasks", [], "offline.algorithms.td3bc.tasks: must name at least"),
    ("online.algorithms.sac.mix", 1.5, "online.algorithms.sac.mix: must be a number in [0.0, 1.0]"),
    ("online.algorithms.sac.algo", "iql", "online.algorithms.sac.algo: 'iql' is not one"),
    ("online.lr", 1, "online: unknown key(s) ['lr']"),
    ("online.tensorboard", 1, "online.tensorboard: must be true or false, got 1"),
    ("landscapes.planes.online", ["sac"], "must name two online labels"),
    ("landscapes.interpolation.points", 1, "landscapes.interpolation.points: must be an integer"),
])
def test_spec_errors_name_the_key(tmp_path, key, value, message):
    spec = smoke_dict(tmp_path / "out")
    _edit(spec, key, value)
    with pytest.raises(SmacError, match=r"spec\.yaml: ") as info:
        load_spec(write_spec(tmp_path, spec))
    assert message in str(info.value)


def test_spec_errors_for_files_and_labels(tmp_path):
    with pytest.raises(SmacError, match="no such spec file"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("root: [unclosed\n")
    with pytest.raises(SmacError, match=r"bad\.yaml is not valid YAML"):
        load_spec(bad)
    toml = tmp_path / "spec.toml"
    toml.write_text("")
    with pytest.raises(SmacError, match=r"must be a \.yaml, \.yml or \.json file"):
        load_spec(toml)
    spec = smoke_dict(tmp_path / "out")
    spec["offline"]["algorithms"]["td3bc/../x"] = {"algo": "td3bc"}
    with pytest.raises(SmacError, match="is not a valid label"):
        load_spec(write_spec(tmp_path, spec))


def test_plane_methods_need_both_fine_tunings(tmp_path):
    spec = smoke_dict(tmp_path / "out")
    spec["offline"]["algorithms"]["td3bc"]["online"] = ["sac"]
    with pytest.raises(SmacError, match=r"offline 'td3bc' has no \['td3bc'\] fine-tuning"):
        load_spec(write_spec(tmp_path, spec))


def test_json_spec_equals_yaml_spec(tmp_path):
    spec = smoke_dict(tmp_path / "out")
    from_yaml = load_spec(write_spec(tmp_path, spec))
    json_path = tmp_path / "spec.json"
    json_path.write_text(json.dumps(spec))
    from_json = load_spec(json_path)
    assert expand_grid(from_json) == expand_grid(from_yaml)


# ------------------------------------------------------------------------------ grid and layout
def test_smoke_grid_layout_and_commands(tmp_path):
    spec = load_spec(write_spec(tmp_path, smoke_dict(tmp_path / "out")))
    plans = expand_grid(spec, device="cpu")
    assert [p.run_id for p in plans] == ["door-binary/td3bc/seed0/offline",
                                         "door-binary/td3bc/seed0/online-sac",
                                         "door-binary/td3bc/seed0/online-td3bc"]
    offline, online, _ = plans
    assert offline.parent is None and online.parent == offline.run_id
    assert offline.args[:9] == ("offline", "--algo", "td3bc", "--out", offline.run_id,
                                "--dataset", "door-binary", "--steps", "60")
    assert "--set" in offline.args and "actor_hidden=[16,16]" in offline.args
    assert online.args[0] == "online"
    assert ("--from", offline.run_id) == online.args[online.args.index("--from"):][:2]
    assert ("--device", "cpu") == online.args[online.args.index("--device"):][:2]
    assert online.args[-1] == "--resume"
    assert ("--mix", "0.5") == online.args[online.args.index("--mix"):][:2]


def test_tensorboard_key_becomes_the_flag(tmp_path):
    spec = smoke_dict(tmp_path / "out")
    spec["offline"]["tensorboard"] = True
    offline, online, _ = expand_grid(load_spec(write_spec(tmp_path, spec)), device="cpu")
    assert "--tensorboard" in offline.args and "tensorboard" not in " ".join(online.args)
    spec["online"]["tensorboard"] = False  # spelled, as the spec's other values
    _, online, _ = expand_grid(load_spec(write_spec(tmp_path, spec)), device="cpu")
    assert "--no-tensorboard" in online.args


def test_reduced_100k_grid():
    spec = load_spec(REDUCED_100K)
    plans = expand_grid(spec)
    by_id = {p.run_id: p for p in plans}
    assert len(by_id) == len(plans)
    offline = [p for p in plans if p.phase == "offline"]
    # 3 tasks x 4 methods (CalQL on door, CQL on the MuJoCo tasks) x 3 seeds
    assert len(offline) == 36
    assert {p.algorithm for p in offline if p.task == "door-binary"} == \
        {"smac", "calql", "iql", "td3bc"}
    assert {p.algorithm for p in offline if p.task == "hopper-medium-replay"} == \
        {"smac", "cql", "iql", "td3bc"}
    online = [p for p in plans if p.phase == "online"]
    assert all(p.parent in by_id and by_id[p.parent].phase == "offline" for p in online)
    # every offline run gets SAC; SMAC and CalQL/CQL also TD3; TD3+BC fine-tuning on hopper only
    assert sum(p.algorithm == "sac" for p in online) == 36
    assert sum(p.algorithm == "td3" for p in online) == 2 * 3 * 3
    assert {p.task for p in online if p.algorithm == "td3bc"} == {"hopper-medium-replay"}
    # offline before its online runs
    assert all(plans.index(by_id[p.parent]) < plans.index(p) for p in online)
    jobs = landscape_jobs(spec)
    assert sum(j.module == "landscape.interpolate" for j in jobs) == 36
    assert sum(j.module == "landscape.surface" for j in jobs) == 4 * 3
    assert sum(j.module == "landscape.trajectory" for j in jobs) == 4 * 3
    assert "landscapes/planes/hopper-medium-replay/cql/seed2" in {j.out for j in jobs}


def test_reduced_grid_with_per_entry_seeds():
    """The committed study: entries restricted to seed 0 make only seed-0 runs, and the planes
    and trajectories exist only where both of their online runs do."""
    spec = load_spec(REDUCED)
    plans = expand_grid(spec)
    offline = [p for p in plans if p.phase == "offline"]
    online = [p for p in plans if p.phase == "online"]
    # {cql, smac, iql, td3bc, smac-adam} x 3 seeds + cql-muon on seed 0
    assert len(offline) == 5 * 3 + 1
    assert [p.seed for p in offline if "/cql-muon/" in p.run_id] == [0]
    assert sorted(p.seed for p in online if p.algorithm == "td3bc") == [0] * 4
    assert sum(p.algorithm == "sac" for p in online) == 16
    assert sum(p.algorithm == "td3" for p in online) == 2 * 3
    jobs = landscape_jobs(spec)
    assert sum(j.module == "landscape.interpolate" for j in jobs) == 16
    planes = {j.out for j in jobs if j.module == "landscape.surface"}
    assert planes == {f"landscapes/planes/hopper-medium-replay/{m}/seed0"
                      for m in ("smac", "cql", "iql", "td3bc")}
    trajectory = next(j for j in jobs if j.module == "landscape.trajectory")
    assert trajectory.runs == tuple(f"hopper-medium-replay/cql/seed0/{r}"
                                    for r in ("offline", "online-sac", "online-td3bc"))


def test_flow_grid_interpolates_each_method_to_its_own_fine_tuning():
    """notebooks/specs/flow.yaml: bc-flow (QAM with beta = 0), QAM and TRQAM, each fine-tuned by
    itself; the interpolation's list of online labels picks each offline run's own one."""
    spec = load_spec(REPO / "notebooks" / "specs" / "flow.yaml")
    plans = expand_grid(spec)
    by_id = {p.run_id: p for p in plans}
    assert len(plans) == 2 * 3 * 3 * 2
    assert by_id["door-binary/bc-flow/seed1/online-bc-flow"].algorithm == "qam"
    assert by_id["door-binary/bc-flow/seed1/online-bc-flow"].parent == \
        "door-binary/bc-flow/seed1/offline"
    assert by_id["cube-single-play/trqam/seed2/online-trqam"].algorithm == "trqam"
    jobs = [j for j in landscape_jobs(spec) if j.module == "landscape.interpolate"]
    assert len(jobs) == 18
    pairs = {j.out: j.runs for j in jobs}
    for method in ("bc-flow", "qam", "trqam"):
        base = f"cube-single-play/{method}/seed0"
        assert pairs[f"landscapes/interpolation/{base}"] == (f"{base}/offline",
                                                             f"{base}/online-{method}")


def test_interpolation_online_labels(tmp_path):
    spec = smoke_dict(tmp_path / "out")
    spec["landscapes"]["interpolation"]["online"] = []
    with pytest.raises(SmacError, match=r"interpolation\.online: must name at least one"):
        load_spec(write_spec(tmp_path, spec))
    spec["landscapes"]["interpolation"]["online"] = ["td3bc", "sac"]  # td3bc first where it exists
    jobs = {j.out: j.runs for j in landscape_jobs(load_spec(write_spec(tmp_path, spec)))
            if j.module == "landscape.interpolate"}
    assert jobs["landscapes/interpolation/door-binary/td3bc/seed0"][1] == \
        "door-binary/td3bc/seed0/online-td3bc"


def test_entry_seeds_must_be_spec_seeds(tmp_path):
    spec = smoke_dict(tmp_path / "out")
    spec["online"]["algorithms"]["sac"]["seeds"] = [3]
    with pytest.raises(SmacError, match=r"online\.algorithms\.sac\.seeds: unknown \[3\]"):
        load_spec(write_spec(tmp_path, spec))
    spec["online"]["algorithms"]["sac"]["seeds"] = []
    with pytest.raises(SmacError, match="must name at least one seed"):
        load_spec(write_spec(tmp_path, spec))


def test_only_selects_runs_and_their_offline_parents(tmp_path):
    plans = expand_grid(load_spec(write_spec(tmp_path, smoke_dict(tmp_path / "out"))))
    assert [p.run_id for p in select(plans, "*/online-sac")] == \
        ["door-binary/td3bc/seed0/offline", "door-binary/td3bc/seed0/online-sac"]
    with pytest.raises(SmacError, match="matches no run"):
        select(plans, "hopper*")


def test_export_updates_exports_of_its_former_name_and_refuses_others(tmp_path, minari_root,
                                                                      capsys):
    """An export made when the runner was smac_core.experiments (owned by that name) is
    updated in place; a directory of another command is refused."""
    from smac_core.files import OWNER_FILE
    from studies.experiments.export import EXPORT_TOOL, export_results

    spec = load_spec(write_spec(tmp_path, smoke_dict(tmp_path / "out")))
    (spec.root / "runner").mkdir(parents=True)
    assert EXPORT_TOOL == "studies.experiments export"
    for tool in ("smac_core.experiments export", "studies.plot"):
        dest = tmp_path / tool.replace(" ", "-")
        dest.mkdir()
        (dest / "export.json").write_text("{}")
        (dest / OWNER_FILE).write_text(json.dumps({"tool": tool, "command": ["python"]}))
    export_results(spec, tmp_path / "smac_core.experiments-export")
    exported = json.loads((tmp_path / "smac_core.experiments-export/export.json").read_text())
    assert exported["summary"]["unfinished"] == 3
    with pytest.raises(SmacError, match="belongs to another command"):
        export_results(spec, tmp_path / "studies.plot")
    assert (tmp_path / "studies.plot/export.json").read_text() == "{}"


# ------------------------------------------------------------------------------ fake processes
def write_checkpoint(run_dir: Path, name: str, step: int) -> None:
    path = run_dir / "checkpoints" / name
    path.mkdir(parents=True, exist_ok=True)
    (path / METADATA_FILE).write_text(json.dumps({"format_version": FORMAT_VERSION,
                                                  "step": step}))


class FakeTraining:
    """A stand-in for ``python -m smac_core.train``: finishes after ``polls`` polls (writing the
    final checkpoint), or on SIGTERM writes a step checkpoint and exits 143, as the trainer does."""

    def __init__(self, plan: RunPlan, run_dir: Path, polls: int, exit_code: int = 0,
                 ignores_sigterm: bool = False) -> None:
        self.plan, self.run_dir, self.polls_left = plan, run_dir, polls
        self.exit_code, self.ignores_sigterm = exit_code, ignores_sigterm
        self.returncode: int | None = None
        self.signals: list[int] = []
        run_dir.mkdir(parents=True, exist_ok=True)

    def poll(self) -> int | None:
        if self.returncode is None:
            self.polls_left -= 1
            if self.polls_left <= 0:
                if self.exit_code == 0:
                    write_checkpoint(self.run_dir, "final", self.plan.steps)
                self.returncode = self.exit_code
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        if sig == signal.SIGTERM and not self.ignores_sigterm and self.returncode is None:
            write_checkpoint(self.run_dir, f"step_{self.plan.steps // 2}", self.plan.steps // 2)
            self.returncode = 128 + signal.SIGTERM

    def kill(self) -> None:
        if self.returncode is None:
            self.returncode = -signal.SIGKILL


class FakeLauncher:
    """A backend that records launches and how many runs were alive at once; ``behaviour``:
    FakeTraining options per run id, spelled with "_" for "/" and "-"; ``plans``: the runner's
    plans by run id (set by ``make_runner``)."""

    name = "fake"

    def __init__(self, polls: int = 2, **behaviour: dict) -> None:
        self.polls, self.behaviour = polls, behaviour
        self.launched: list[str] = []
        self.processes: dict[str, FakeTraining] = {}
        self.most_alive = 0
        self.plans: dict[str, RunPlan] = {}

    def submit(self, job: experiments.Job) -> FakeTraining:
        plan, root = self.plans[job.name], job.cwd
        for run_id, process in self.processes.items():
            assert process.returncode is not None or run_id != plan.run_id
        if plan.parent is not None:  # an online run starts only from a finished offline run
            assert (root / plan.parent / "checkpoints" / "final" / METADATA_FILE).is_file()
        options = {"polls": self.polls, **self.behaviour.get(re.sub(r"[/-]", "_", plan.run_id), {})}
        process = FakeTraining(plan, root / plan.run_id, **options)
        self.launched.append(plan.run_id)
        self.processes[plan.run_id] = process
        alive = sum(p.returncode is None for p in self.processes.values())
        self.most_alive = max(self.most_alive, alive)
        return process


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def make_runner(tmp_path: Path, launcher: FakeLauncher, jobs: int = 2,
                deadline: float | None = None, clock: FakeClock | None = None,
                seeds: tuple[int, ...] = (0, 1)) -> Runner:
    spec_dict = smoke_dict(tmp_path / "out")
    spec_dict["seeds"] = list(seeds)
    spec = load_spec(write_spec(tmp_path, spec_dict))
    clock = clock or FakeClock()
    plans = expand_grid(spec)
    launcher.plans = {plan.run_id: plan for plan in plans}
    return Runner(spec.root, plans, jobs, deadline, grace_seconds=5.0, backend=launcher,
                  clock=clock, sleep=clock.sleep)


def test_runs_everything_offline_first_then_skips_finished_runs(tmp_path):
    launcher = FakeLauncher()
    summary = make_runner(tmp_path, launcher, jobs=2).run()
    assert len(summary.done) == 6 and not (summary.failed or summary.remaining)
    assert sorted(launcher.launched) == sorted(summary.done)
    assert launcher.most_alive == 2
    root = tmp_path / "out"
    record = json.loads((root / "door-binary/td3bc/seed1/online-sac" / RUN_RECORD).read_text())
    assert record["attempts"][-1]["outcome"] == "done"
    command = record["attempts"][-1]["command"]
    assert command[:2] == ["python -m smac_core.train", "online"]
    assert command[command.index("--from"):][:2] == ["--from", "door-binary/td3bc/seed1/offline"]

    again = FakeLauncher()
    summary = make_runner(tmp_path, again).run()
    assert again.launched == [] and len(summary.done) == 6


def test_resumes_unfinished_and_extended_runs_only(tmp_path):
    root = tmp_path / "out"
    make_runner(tmp_path, FakeLauncher(), seeds=(0,)).run()
    # an interrupted online run (a step checkpoint, no final) and a finished offline run whose
    # final checkpoint has fewer steps than the spec asks for (a raised budget)
    shutil.rmtree(root / "door-binary/td3bc/seed0/online-sac/checkpoints/final")
    write_checkpoint(root / "door-binary/td3bc/seed0/online-sac", "step_20", 20)
    state = run_state(root, expand_grid(load_spec(tmp_path / "spec.yaml"))[1])
    assert (state.state, state.step) == ("partial", 20)
    launcher = FakeLauncher()
    make_runner(tmp_path, launcher, seeds=(0,)).run()
    assert launcher.launched == ["door-binary/td3bc/seed0/online-sac"]

    write_checkpoint(root / "door-binary/td3bc/seed0/offline", "final", 30)
    launcher = FakeLauncher()
    make_runner(tmp_path, launcher, seeds=(0,)).run()
    assert launcher.launched == ["door-binary/td3bc/seed0/offline"]


def test_failed_offline_run_blocks_its_online_runs_only(tmp_path):
    launcher = FakeLauncher(door_binary_td3bc_seed0_offline={"exit_code": 1})
    summary = make_runner(tmp_path, launcher).run()
    assert summary.failed == ["door-binary/td3bc/seed0/offline"]
    assert sorted(summary.blocked) == ["door-binary/td3bc/seed0/online-sac",
                                       "door-binary/td3bc/seed0/online-td3bc"]
    assert len(summary.done) == 3  # seed 1
    root = tmp_path / "out"
    assert run_state(root, expand_grid(load_spec(tmp_path / "spec.yaml"))[0]).state == "failed"
    table = format_status(load_spec(tmp_path / "spec.yaml"))
    assert "door-binary/td3bc/seed0/offline" in table and "1 failed" in table
    assert table.endswith("landscapes: 0 of 6 done")  # interpolation, plane, trajectory per seed


def test_deadline_sends_one_sigterm_and_leaves_resumable_runs(tmp_path):
    clock = FakeClock()
    launcher = FakeLauncher(polls=10**9)  # runs that would never finish on their own
    summary = make_runner(tmp_path, launcher, jobs=2, deadline=30.0, clock=clock).run()
    assert sorted(summary.stopped) == ["door-binary/td3bc/seed0/offline",
                                       "door-binary/td3bc/seed1/offline"]
    assert len(summary.remaining) == 4 and not summary.done and not summary.failed
    assert all(p.signals == [signal.SIGTERM] for p in launcher.processes.values())
    assert clock.now < 30.0 + 2  # stopped right after the deadline, not after the grace
    plan = expand_grid(load_spec(tmp_path / "spec.yaml"))[0]
    assert run_state(tmp_path / "out", plan).state == "partial"


def test_runs_ignoring_sigterm_are_killed_after_the_grace(tmp_path):
    clock = FakeClock()
    launcher = FakeLauncher(polls=10**9, door_binary_td3bc_seed0_offline={
        "polls": 10**9, "ignores_sigterm": True})
    summary = make_runner(tmp_path, launcher, jobs=1, deadline=10.0, clock=clock).run()
    process = launcher.processes["door-binary/td3bc/seed0/offline"]
    assert process.returncode == -signal.SIGKILL and summary.stopped == [process.plan.run_id]
    assert 10.0 + 5.0 < clock.now < 10.0 + 5.0 + 2  # grace_seconds = 5


class LoggingLauncher(FakeLauncher):
    """A FakeLauncher whose runs write a progress bar's output to their log when they start."""

    def submit(self, job: experiments.Job) -> FakeTraining:
        process = super().submit(job)
        job.log.write_text(f"{job.name} step 10/30 (33%)\r{job.name} step 20/30 (66%)\n\n")
        return process


@pytest.mark.parametrize("progress_seconds", [10.0, None])
def test_running_runs_show_their_latest_log_line(tmp_path, capsys, progress_seconds):
    spec_dict = {**smoke_dict(tmp_path / "out"), "seeds": [0, 1]}
    spec = load_spec(write_spec(tmp_path, spec_dict))
    plans = [plan for plan in expand_grid(spec) if plan.parent is None]  # the 2 offline runs
    launcher, clock = LoggingLauncher(polls=25), FakeClock()
    launcher.plans = {plan.run_id: plan for plan in plans}
    summary = Runner(spec.root, plans, 2, backend=launcher, clock=clock, sleep=clock.sleep,
                     progress_seconds=progress_seconds).run()
    assert len(summary.done) == 2
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    if progress_seconds is None:
        assert lines == []
    else:  # about 25 s of runs: a line per run at 10 s and at 20 s
        assert lines == [f"  {plan.run_id}: {plan.run_id} step 20/30 (66%)"
                         for plan in plans] * 2


def test_last_line_of_a_log(tmp_path):
    log = tmp_path / "runner.log"
    assert experiments.runner.last_line(log) == ""  # not written yet
    log.write_text("first\nsecond\r third \n\n")
    assert experiments.runner.last_line(log) == "third"
    log.write_text("x" * 5000 + "\nlast")
    assert experiments.runner.last_line(log, tail_bytes=100) == "last"


class NeverEndingLandscapes:
    """A backend whose commands run until they are signalled (by the --max-minutes deadline);
    ``calls``: the arguments of each command after ``python -m MODULE``."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def submit(self, job: experiments.Job) -> NeverEndingLandscapes:
        self.calls.append(list(job.argv[3:]))
        self.returncode = None
        return self

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.returncode = 128 + sig

    def kill(self) -> None:
        self.returncode = -signal.SIGKILL


def test_landscapes_wait_for_runs_and_stop_at_the_deadline(tmp_path):
    spec = load_spec(write_spec(tmp_path, smoke_dict(tmp_path / "out")))
    backend = NeverEndingLandscapes()
    calls = backend.calls
    summary = experiments.run_landscapes(spec, "cpu", max_minutes=0.01, backend=backend)
    assert calls == [] and len(summary.waiting) == 3  # no run is finished yet

    for plan in expand_grid(spec):
        write_checkpoint(spec.root / plan.run_id, "final", plan.steps)
    started = time.monotonic()
    summary = experiments.run_landscapes(spec, "cpu", max_minutes=0.01, workers=0,
                                         backend=backend)
    assert time.monotonic() - started < 5  # stopped after 0.6 s, not left running
    assert summary.remaining == ["landscapes/interpolation/door-binary/td3bc/seed0",
                                 "landscapes/planes/door-binary/td3bc/seed0",
                                 "landscapes/trajectories/door-binary/td3bc/seed0"]
    root = str(spec.root)
    assert calls == [[f"{root}/door-binary/td3bc/seed0/offline",
                      f"{root}/door-binary/td3bc/seed0/online-sac", "--points", "3",
                      "--range", "0.0", "1.0", "--episodes", "2",
                      "--label", "td3bc → sac (door-binary, seed0)", "--device", "cpu",
                      "--workers", "0", "--out",
                      f"{root}/landscapes/interpolation/door-binary/td3bc/seed0"]]
    assert not (spec.root / summary.remaining[0] / "command.json").exists()


class FailingLandscapes(NeverEndingLandscapes):
    """A backend whose commands fail at once, before they create their output directory (a
    landscape command refusing a bad input exits 2 without writing anything)."""

    def submit(self, job: experiments.Job) -> FailingLandscapes:
        super().submit(job)
        self.returncode = 2
        return self


def test_a_landscape_that_failed_before_writing_leaves_no_directory_behind(tmp_path):
    spec = load_spec(write_spec(tmp_path, smoke_dict(tmp_path / "out")))
    for plan in expand_grid(spec):
        write_checkpoint(spec.root / plan.run_id, "final", plan.steps)
    summary = experiments.run_landscapes(spec, "cpu", max_minutes=None, workers=0,
                                         backend=FailingLandscapes())
    assert len(summary.failed) == 3
    # no command.json in a directory the command never created: the rerun's command would
    # refuse a non-empty directory it does not own
    assert not (spec.root / "landscapes").exists() or \
        not any((spec.root / "landscapes").rglob("command.json"))


# ------------------------------------------------------------------------------ end to end
def test_cli_reports_spec_errors(tmp_path, capsys):
    spec = smoke_dict(tmp_path / "out")
    spec["tasks"] = ["door"]
    assert main(["status", str(write_spec(tmp_path, spec))]) == 2
    assert "error: " in capsys.readouterr().err


@pytest.mark.slow
def test_smoke_spec_end_to_end(tmp_path, minari_root, capsys):
    """notebooks/specs/smoke.yaml through the real trainer (subprocesses, which inherit the private
    Minari store) and the landscape modules."""
    from smac_core.data.__main__ import main as data_main

    assert data_main(["import", str(DOOR_HUMAN / "door-v0_demos_clipped.hdf5"),
                      "--id", "local/door/human-binary-v0", "--env", "door-binary",
                      "--ignore-timeouts"]) == 0
    spec = str(write_spec(tmp_path, smoke_dict(tmp_path / "out")))
    root = tmp_path / "out"
    capsys.readouterr()

    assert main(["run", spec, "--jobs", "2", "--device", "cpu"]) == 0
    assert "3 runs: 3 done, 0 stopped, 0 failed" in capsys.readouterr().out
    for run in ("offline", "online-sac", "online-td3bc"):
        meta = json.loads((root / "door-binary/td3bc/seed0" / run / "checkpoints/final"
                           / METADATA_FILE).read_text())
        assert meta["step"] == (60 if run == "offline" else 40)
    config = json.loads((root / "door-binary/td3bc/seed0/online-sac/config.json").read_text())
    assert config["from"] == "door-binary/td3bc/seed0/offline"
    assert config["from_algorithm"] == "td3bc" and config["mix"] == 0.5

    assert main(["status", spec]) == 0
    assert "3 runs: 3 done" in capsys.readouterr().out
    assert main(["run", spec, "--device", "cpu"]) == 0
    rerun = capsys.readouterr().out
    assert "start" not in rerun and "3 runs: 3 done" in rerun

    assert main(["landscapes", spec, "--device", "cpu", "--workers", "0"]) == 0
    interpolation = json.loads((root / "landscapes/interpolation/door-binary/td3bc/seed0"
                                / "interpolation.json").read_text())
    assert interpolation["curves"][0]["t"] == [0.0, 0.5, 1.0]
    surface = root / "landscapes/planes/door-binary/td3bc/seed0"
    assert json.loads((surface / "surface.json").read_text())["x"] == [0.0, 1.0]
    assert json.loads((surface / "command.json").read_text())["exit_code"] == 0
    trajectory = json.loads((root / "landscapes/trajectories/door-binary/td3bc/seed0"
                             / "trajectory.json").read_text())
    # checkpoints at offline 30, 60 and online 20, 40 of both fine-tunings, each embedded
    assert all(len(points) == len(trajectory["mean"]) >= 6
               for points in trajectory["embeddings"].values())
    invocations = (root / "runner/invocations.jsonl").read_text().splitlines()
    assert [json.loads(line)["command"][1] for line in invocations] == \
        ["run", "run", "landscapes"]
    assert list((root / "runner").glob("spec-*.yaml"))

    # export: the lean tree results/ holds
    dest = tmp_path / "results"
    assert main(["export", spec, "--to", str(dest / "smoke")]) == 0
    exported = dest / "smoke/door-binary/td3bc/seed0/online-sac"
    assert sorted(p.name for p in exported.iterdir()) == \
        ["checkpoints", "config.json", "metrics.jsonl", "runner.json"]
    assert sorted(p.name for p in (exported / "checkpoints/final").iterdir()) == \
        [METADATA_FILE, "model.safetensors"]
    full, policy_only = load_checkpoint(root / "door-binary/td3bc/seed0/online-sac"), \
        load_checkpoint(exported)
    assert policy_only.tensors and all(name.startswith("actor.") for name in policy_only.tensors)
    assert len(policy_only.tensors) < len(full.tensors)
    obs = torch.randn(7, full.metadata["obs_dim"], generator=torch.Generator().manual_seed(0))
    assert torch.equal(full.policy(obs), policy_only.policy(obs))
    assert policy_only.metadata["git_commit"] == full.metadata["git_commit"]
    for landscape in ("interpolation/door-binary/td3bc/seed0/interpolation.json",
                      "planes/door-binary/td3bc/seed0/surface.json",
                      "trajectories/door-binary/td3bc/seed0/trajectory.json"):
        assert (dest / "smoke/landscapes" / landscape).is_file()
    assert not [p for p in dest.rglob("*") if p.suffix in (".html", ".pt", ".png")]
    export = json.loads((dest / "smoke/export.json").read_text())
    assert export["summary"]["runs"] == 3
    from smac_core.data import load_dataset
    assert export["datasets"]["local/door/human-binary-v0"] == \
        json.loads(json.dumps(load_dataset("local/door/human-binary-v0").summary()))
    capsys.readouterr()
    assert main(["export", spec, "--to", str(root / "results")]) == 2
    assert "must lie outside the runs' root" in capsys.readouterr().err

    # a policy-only export cannot be fine-tuned from (it has no critic)
    from smac_core.train import main as train_main
    assert train_main(["online", "--from", str(exported), "--algo", "sac", "--steps", "10",
                       "--out", str(tmp_path / "from-export")]) == 2
    assert "policy-only export" in capsys.readouterr().err
    assert not (tmp_path / "from-export").exists()


def test_missing_datasets_are_listed_before_any_run_starts(tmp_path, minari_root, capsys):
    spec_dict = smoke_dict(tmp_path / "out")
    spec_dict["tasks"] = ["door-binary", "hopper-medium-replay"]
    spec = write_spec(tmp_path, spec_dict)
    assert main(["run", str(spec), "--max-minutes", "1"]) == 2
    error = capsys.readouterr().err
    assert "2 of its datasets are missing, no run was started" in error
    assert ("  door-binary: local/door/human-binary-v0 is not in the local store; make it with: "
            "python -m smac_core.data import ") in error
    assert ("  hopper-medium-replay: local/hopper/medium-replay-v0 is not in the local store; "
            "make it with: python -m smac_core.data generate hopper-medium-replay") in error
    assert not (tmp_path / "out").exists()


def test_offline_only_spec_plans_offline_runs_only():
    """notebooks/specs/alpha-psi.yaml has no online phase: four SMAC score-scale modes on two
    tasks, each with its mode in --set."""
    plans = expand_grid(load_spec(REDUCED.parent / "alpha-psi.yaml"))
    assert {p.phase for p in plans} == {"offline"}
    assert len(plans) == 4 * 2
    modes = sorted(next(a for a in p.args if a.startswith("alpha_psi_mode=")) for p in plans
                   if p.task == "door-binary")
    assert modes == [f"alpha_psi_mode={m}" for m in ("fixed", "learned", "temperature",
                                                       "temperature_floor")]


# ------------------------------------------------------------------------- seed-stacked runs
def test_seed_groups_give_one_seeds_command_that_trains_exactly_its_members(tmp_path):
    from smac_core.train import parse_config

    spec = smoke_dict(tmp_path / "out")
    spec["seeds"] = [0, 1]
    spec["online"]["algorithms"]["td3bc"]["seeds"] = [0]  # one seed: no group
    plans = expand_grid(load_spec(write_spec(tmp_path, spec)))
    items = seed_groups(plans, lambda plan: None)
    groups = [item for item in items if isinstance(item, SeedGroup)]
    assert [group.run_id for group in groups] == [
        "door-binary/td3bc/seed{0,1}/offline", "door-binary/td3bc/seed{0,1}/online-sac"]
    for group in groups:
        assert [member.seed for member in group.members] == [0, 1]
        assert "--seed" not in group.args and group.args[-2:] == ("--seeds", "0,1")
        stacked = parse_config(group.args)
        for member in group.members:  # seed k of the group is the member's own run, flag by flag
            assert stacked.for_seed(member.seed) == parse_config(member.args)
    # a run of one seed stays a plan, in its place after its offline group
    assert [item.run_id for item in items] == [
        "door-binary/td3bc/seed{0,1}/offline", "door-binary/td3bc/seed{0,1}/online-sac",
        "door-binary/td3bc/seed0/online-td3bc"]
    # seeds at different resume steps cannot be one --seeds run
    apart = seed_groups(plans, lambda plan: plan.seed)
    assert not any(isinstance(item, SeedGroup) for item in apart)


class FakeSeedsTraining:
    """``smac_core.train --seeds`` as FakeTraining: one FakeTraining per member."""

    def __init__(self, group: SeedGroup, root: Path, polls: int, exit_code: int = 0) -> None:
        self.parts = [FakeTraining(plan, root / plan.run_id, polls, exit_code)
                      for plan in group.members]

    def poll(self) -> int | None:
        codes = [part.poll() for part in self.parts]
        return codes[0]

    def send_signal(self, sig: int) -> None:
        for part in self.parts:
            part.send_signal(sig)

    def kill(self) -> None:
        for part in self.parts:
            part.kill()


class FakeSeedsLauncher(FakeLauncher):
    """FakeLauncher that also runs seed groups (``groups``: by job name)."""

    def __init__(self, **behaviour: dict) -> None:
        super().__init__(**behaviour)
        self.groups: dict[str, SeedGroup] = {}

    def submit(self, job: experiments.Job) -> FakeTraining | FakeSeedsTraining:
        if job.name not in self.groups:
            return super().submit(job)
        group = self.groups[job.name]
        for member in group.members:
            assert member.parent is None or (job.cwd / member.parent / "checkpoints/final"
                                             / METADATA_FILE).is_file()
        self.launched.append(job.name)
        return FakeSeedsTraining(group, job.cwd, self.polls)


def _stacked_runner(tmp_path: Path, launcher: FakeSeedsLauncher) -> Runner:
    runner = make_runner(tmp_path, launcher, jobs=2)
    runner.stack_seeds = True
    steps = {plan.run_id: run_state(runner.root, plan).step for plan in runner.plans}
    launcher.groups = {item.run_id: item
                       for item in seed_groups(runner.plans, lambda plan: steps[plan.run_id])
                       if isinstance(item, SeedGroup)}
    return runner


def test_stack_seeds_trains_the_seeds_of_each_run_as_one_job(tmp_path):
    launcher = FakeSeedsLauncher()
    summary = _stacked_runner(tmp_path, launcher).run()
    assert len(summary.done) == 6 and not (summary.failed or summary.blocked)
    assert launcher.launched[0] == "door-binary/td3bc/seed{0,1}/offline"
    assert sorted(launcher.launched[1:]) == ["door-binary/td3bc/seed{0,1}/online-sac",
                                             "door-binary/td3bc/seed{0,1}/online-td3bc"]
    root = tmp_path / "out"
    for seed in (0, 1):
        attempt = json.loads((root / f"door-binary/td3bc/seed{seed}/online-sac" / RUN_RECORD)
                             .read_text())["attempts"][-1]
        assert attempt["outcome"] == "done" and "--seeds" in attempt["command"]
        assert attempt["seeds_together"] == ["door-binary/td3bc/seed0/online-sac",
                                             "door-binary/td3bc/seed1/online-sac"]
    again = FakeSeedsLauncher()
    assert _stacked_runner(tmp_path, again).run().done and again.launched == []


def test_seeds_at_different_steps_run_apart_and_a_failed_seed_splits_its_group(tmp_path):
    # seed 1's offline run was stopped at step 30 before: the offline seeds run apart, and
    # seed 0's fails; the online group of both seeds is split, so that seed 1's runs alone
    stopped = tmp_path / "out" / "door-binary/td3bc/seed1/offline"
    write_checkpoint(stopped, "step_30", 30)
    (stopped / "config.json").write_text("{}")  # a run directory
    launcher = FakeSeedsLauncher(door_binary_td3bc_seed0_offline={"exit_code": 1})
    summary = _stacked_runner(tmp_path, launcher).run()
    assert summary.failed == ["door-binary/td3bc/seed0/offline"]
    assert sorted(summary.blocked) == ["door-binary/td3bc/seed0/online-sac",
                                       "door-binary/td3bc/seed0/online-td3bc"]
    assert sorted(launcher.launched) == [
        "door-binary/td3bc/seed0/offline", "door-binary/td3bc/seed1/offline",
        "door-binary/td3bc/seed1/online-sac", "door-binary/td3bc/seed1/online-td3bc"]
    assert len(summary.done) == 3
