"""``python -m smac_core.experiments {run,status,landscapes,export} SPEC``: a grid of offline ->
online runs from one spec file, run in resumable chunks, then the landscapes of the finished runs,
then a lean copy of what the notebooks read.

    python -m smac_core.experiments run notebooks/specs/reduced.yaml --jobs 4 --max-minutes 8
    python -m smac_core.experiments status notebooks/specs/reduced.yaml
    python -m smac_core.experiments landscapes notebooks/specs/reduced.yaml --max-minutes 8
    python -m smac_core.experiments export notebooks/specs/reduced.yaml --to results/reduced

SPEC (YAML or JSON; ``notebooks/specs/reduced.yaml`` documents every key) names the tasks, seeds,
offline algorithms (each with the online algorithms fine-tuned from it), the two phases' step
budgets and evaluation schedules, ``--set`` overrides and the landscape settings. Entries are
keyed by a *label* (a directory name) and run the algorithm ``algo`` (default: the label), so
one algorithm can appear twice, e.g. ``smac-adam: {algo: smac, optimizer: adam}``.

Layout under the spec's ``root`` (one ``smac_core.train`` run directory per run)::

    ROOT/<task>/<offline label>/seed<k>/offline
    ROOT/<task>/<offline label>/seed<k>/online-<online label>      (--from the offline run)
    ROOT/landscapes/interpolation/<task>/<offline label>/seed<k>/  (landscape.interpolate)
    ROOT/landscapes/planes/<task>/<offline label>/seed<k>/         (landscape.surface)
    ROOT/landscapes/trajectories/<task>/<offline label>/seed<k>/   (landscape.trajectory)
    ROOT/runner/spec-<sha256[:12]>.<ext>, ROOT/runner/invocations.jsonl

Training runs are ``python -m smac_core.train ... --resume`` processes started in ROOT (their
``--out`` and ``--from`` are relative to it, so ROOT can be moved), at most ``--jobs`` at a time,
an online run once its offline run has its final checkpoint. A run whose final checkpoint holds
the spec's step count is skipped; any other resumes from its latest checkpoint. Each run
directory also gets ``runner.log`` (the process's output) and ``runner.json`` (every attempt:
command, git commit, exit status). At ``--max-minutes`` the runner sends SIGTERM to its runs
(which then checkpoint), waits up to ``--grace-seconds`` and exits 0 with a summary; exit 1
means a run failed (its log is named). A stopped invocation is continued by running the same
command again.
"""

from __future__ import annotations

import argparse
import ctypes
import fnmatch
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import yaml

from smac_core.cli import MAX_SEED, add_device_flag, command_line, resolve_device
from smac_core.errors import SmacError, cli_entry
from smac_core.files import atomic_write_text, claim, output_directory
from smac_core.rundir import (
    METRICS_FILE,
    RUN_DIR_MARKERS,
    RUN_LOG,
    RUN_OWNER,
    RUN_RECORD,
    read_metrics,
)

RUNNER_DIR = "runner"
LANDSCAPE_RECORD = "command.json"
DEFAULT_GRACE_SECONDS = 60.0
POLL_SECONDS = 1.0
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
TRAIN_MODULE = "smac_core.train"
EXPORT_TOOL = "smac_core.experiments export"
PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent dies
MAX_SPEC_NODES = 100_000

# spec keys of each phase that become ``smac_core.train`` flags (key -> --key-with-dashes)
OFFLINE_FLAGS = ("eval_every", "eval_episodes", "checkpoint_every", "log_every")
ONLINE_FLAGS = (*OFFLINE_FLAGS, "early_eval_every", "early_eval_until", "start_steps")
ZERO_ALLOWED = ("early_eval_until", "start_steps")  # the other flags must be >= 1


# -------------------------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class AlgorithmEntry:
    """One labelled algorithm of a phase, with what it passes to ``smac_core.train``."""

    label: str
    algorithm: str
    tasks: tuple[str, ...]                      # tasks it runs on
    seeds: tuple[int, ...]                      # seeds it runs with (a subset of the spec's)
    overrides: dict[str, Any]                   # --set KEY=VALUE on every task
    task_overrides: dict[str, dict[str, Any]]   # --set on one task (wins over ``overrides``)
    optimizer: str | None = None                # offline only: --optimizer
    mix: float | None = None                    # online only: --mix (offline fraction of batches)
    online: tuple[str, ...] = ()                # offline only: labels of the online entries

    def overrides_for(self, task: str) -> dict[str, Any]:
        return {**self.overrides, **self.task_overrides.get(task, {})}


@dataclass(frozen=True)
class PhaseSettings:
    """Step budget and the other schedule flags shared by every run of a phase."""

    steps: int
    flags: dict[str, int | float]  # spec key -> value, e.g. {"eval_every": 5000}
    entries: dict[str, AlgorithmEntry]


@dataclass(frozen=True)
class InterpolationSettings:
    """Offline final -> ``online`` final, for every task, offline entry and seed."""

    online: str
    points: int
    range: tuple[float, float]
    episodes: int


@dataclass(frozen=True)
class PlaneSettings:
    """Planes through offline final, ``online[0]`` final and ``online[1]`` final on one task."""

    task: str
    methods: tuple[str, ...]
    online: tuple[str, str]
    points: int
    range: tuple[float, float]
    episodes: int


@dataclass(frozen=True)
class ExperimentSpec:
    """A validated spec file."""

    path: Path
    text: str
    root: Path
    datasets: dict[str, str]  # task -> what ``smac_core.train offline --dataset`` gets
    seeds: tuple[int, ...]
    offline: PhaseSettings
    online: PhaseSettings
    interpolation: InterpolationSettings | None
    planes: PlaneSettings | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


class _Reader:
    """Type-checked access to one mapping of the spec, with errors that say where."""

    def __init__(self, path: Path, where: str, value: Any, required: Sequence[str],
                 optional: Sequence[str]) -> None:
        self.path, self.where = path, where
        if not isinstance(value, dict):
            self.fail(f"must be a mapping, got {type(value).__name__}")
        unknown = sorted(str(k) for k in value if k not in (*required, *optional))
        if unknown:
            self.fail(f"unknown key(s) {unknown}; valid keys: {sorted([*required, *optional])}")
        missing = [k for k in required if k not in value]
        if missing:
            self.fail(f"missing key(s) {missing}")
        self.value: dict[str, Any] = value

    def fail(self, message: str, key: str | None = None) -> None:
        where = f"{self.where}.{key}" if key and self.where else (key or self.where or "top level")
        raise SmacError(f"{self.path}: {where}: {message}")

    def has(self, key: str) -> bool:
        return key in self.value

    def integer(self, key: str, minimum: int, default: int | None = None) -> int:
        value = self.value.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(f"must be an integer >= {minimum}, got {value!r}", key)
        return value

    def number(self, key: str, low: float, high: float) -> float:
        value = self.value.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not low <= value <= high:
            self.fail(f"must be a number in [{low}, {high}], got {value!r}", key)
        return float(value)

    def choice(self, key: str, choices: Sequence[str], default: str | None = None) -> str:
        value = self.value.get(key, default)
        if value not in choices:
            self.fail(f"'{value}' is not one of {sorted(choices)}", key)
        return value

    def names(self, key: str, choices: Sequence[Any], default: Sequence[Any] = ()) -> tuple:
        """A list of distinct names (or seeds) from ``choices`` (a single name is read as a list
        of one)."""
        value = self.value.get(key, list(default))
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or len(set(map(str, value))) != len(value):
            self.fail(f"must be a list of distinct values, got {value!r}", key)
        unknown = [v for v in value if v not in choices]
        if unknown:
            self.fail(f"unknown {unknown}; valid: {sorted(choices)}", key)
        return tuple(value)

    def interval(self, key: str, default: tuple[float, float]) -> tuple[float, float]:
        value = self.value.get(key, list(default))
        if not (isinstance(value, list) and len(value) == 2
                and all(isinstance(v, int | float) and not isinstance(v, bool)
                        and math.isfinite(v) for v in value)
                and value[0] < value[1]):
            self.fail(f"must be [LOW, HIGH], finite, with LOW < HIGH, got {value!r}", key)
        return float(value[0]), float(value[1])

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.value.get(key, {})
        if not isinstance(value, dict):
            self.fail(f"must be a mapping, got {type(value).__name__}", key)
        return value


def _read_spec_file(path: Path) -> tuple[str, Any]:
    if path.is_dir():
        raise SmacError(f"{path} is a directory, not a spec file")
    if not path.is_file():
        raise SmacError(f"no such spec file: {path}")
    if path.suffix not in (".json", ".yaml", ".yml"):
        raise SmacError(f"{path}: a spec must be a .yaml, .yml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SmacError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise SmacError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return text, json.loads(text) if path.suffix == ".json" else _load_yaml(text, path)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SmacError(f"{path} is not valid {path.suffix[1:].upper()}: {exc}") from exc
    except RecursionError:
        raise SmacError(f"{path} is nested too deeply to be a spec") from None


def _load_yaml(text: str, path: Path) -> Any:
    """``yaml.safe_load``, refusing documents whose aliases expand to more than
    ``MAX_SPEC_NODES`` nodes (a few lines of nested aliases can stand for billions)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_nodes(node, {}) > MAX_SPEC_NODES:
            raise SmacError(f"{path}: its aliases (*name) expand to more than {MAX_SPEC_NODES:,} "
                            "values; a spec is far smaller")
        return None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_nodes(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many nodes ``node`` stands for with every alias expanded (memoised by node, so
    linear in the document; a node that contains itself counts as infinitely many)."""
    if id(node) not in sizes:
        sizes[id(node)] = MAX_SPEC_NODES + 1  # while being counted: a cycle is too large
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        sizes[id(node)] = 1 + sum(_expanded_nodes(child, sizes) for child in children)
    return sizes[id(node)]


def _label(reader: _Reader, label: Any) -> str:
    if not isinstance(label, str) or not LABEL.match(label):
        reader.fail(f"'{label}' is not a valid label (letters, digits, _ . + -, used as a "
                    "directory name)")
    return label


def _check_overrides(reader: _Reader, algorithm: str, values: dict[str, Any]) -> None:
    """Reject ``set`` keys that are not fields of the algorithm's config class."""
    from smac_core.algos import ALGORITHMS

    try:
        ALGORITHMS[algorithm].config_class.from_dict(values)
    except (SmacError, TypeError, ValueError) as exc:
        reader.fail(f"invalid overrides {values}: {exc}")


def _read_entry(path: Path, phase: str, label: Any, value: Any, tasks: tuple[str, ...],
                seeds: tuple[int, ...], online_labels: Sequence[str]) -> AlgorithmEntry:
    from smac_core.algos import ALGORITHMS

    where = f"{phase}.algorithms.{label}"
    keys = ["algo", "tasks", "seeds", "set", "set_per_task"]
    keys += ["optimizer", "online"] if phase == "offline" else ["mix"]
    reader = _Reader(path, where, {} if value is None else value, [], keys)
    label = _label(reader, label)
    able = sorted(name for name, cls in ALGORITHMS.items() if phase in cls.phases)
    algorithm = reader.choice("algo", able, default=label)
    entry_tasks = reader.names("tasks", tasks, default=tasks)
    if not entry_tasks:
        reader.fail("must name at least one task", "tasks")
    entry_seeds = reader.names("seeds", seeds, default=seeds)
    if not entry_seeds:
        reader.fail("must name at least one seed", "seeds")
    overrides = reader.mapping("set")
    _check_overrides(reader, algorithm, overrides)
    task_overrides = reader.mapping("set_per_task")
    for task, values in task_overrides.items():
        if task not in entry_tasks:
            reader.fail(f"'{task}' is not one of this entry's tasks {list(entry_tasks)}",
                        "set_per_task")
        if not isinstance(values, dict):
            reader.fail("must map each task to a mapping of overrides", "set_per_task")
        _check_overrides(reader, algorithm, {**overrides, **values})
    if phase == "offline":
        optimizer = (reader.choice("optimizer", ("adam", "muon")) if reader.has("optimizer")
                     else None)
        return AlgorithmEntry(label, algorithm, entry_tasks, entry_seeds, overrides,
                              task_overrides, optimizer=optimizer,
                              online=reader.names("online", online_labels))
    return AlgorithmEntry(label, algorithm, entry_tasks, entry_seeds, overrides, task_overrides,
                          mix=reader.number("mix", 0.0, 1.0) if reader.has("mix") else None)


def _read_phase(path: Path, phase: str, value: Any, tasks: tuple[str, ...],
                seeds: tuple[int, ...], online_labels: Sequence[str]) -> PhaseSettings:
    flag_keys = OFFLINE_FLAGS if phase == "offline" else (*ONLINE_FLAGS, "mix")
    reader = _Reader(path, phase, value, ["steps", "algorithms"], flag_keys)
    flags: dict[str, int | float] = {}
    for key in flag_keys:
        if reader.has(key):
            flags[key] = (reader.number(key, 0.0, 1.0) if key == "mix"
                          else reader.integer(key, 0 if key in ZERO_ALLOWED else 1))
    algorithms = reader.mapping("algorithms")
    if not algorithms:
        reader.fail("must name at least one algorithm", "algorithms")
    entries = {str(label): _read_entry(path, phase, label, entry, tasks, seeds, online_labels)
               for label, entry in algorithms.items()}
    return PhaseSettings(reader.integer("steps", 1), flags, entries)


def _read_tasks(path: Path, value: Any) -> dict[str, str]:
    """``tasks``: a list of task names, or a mapping task -> {dataset: ...} -> task -> dataset."""
    from smac_core.tasks import TASKS

    if isinstance(value, list):
        value = {name: None for name in value}
    reader = _Reader(path, "tasks", value, [], list(TASKS))
    if not value:
        reader.fail("must name at least one task")
    datasets = {}
    for task, options in value.items():
        options = _Reader(path, f"tasks.{task}", options or {}, [], ["dataset"])
        dataset = str(options.value.get("dataset", task))
        if Path(dataset).suffix and Path(dataset).exists():  # a file: independent of cwd
            dataset = str(Path(dataset).resolve())
        datasets[task] = dataset
    return datasets


def _read_landscapes(path: Path, value: Any, tasks: tuple[str, ...], offline: PhaseSettings,
                     online: PhaseSettings) -> tuple[InterpolationSettings | None,
                                                     PlaneSettings | None]:
    reader = _Reader(path, "landscapes", value or {}, [], ["interpolation", "planes"])
    interpolation = planes = None
    if reader.has("interpolation"):
        r = _Reader(path, "landscapes.interpolation", reader.value["interpolation"], [],
                    ["online", "points", "range", "episodes"])
        interpolation = InterpolationSettings(r.choice("online", list(online.entries), "sac"),
                                              r.integer("points", 2, 21),
                                              r.interval("range", (-0.25, 1.25)),
                                              r.integer("episodes", 2, 10))
    if reader.has("planes"):
        r = _Reader(path, "landscapes.planes", reader.value["planes"], ["task", "online"],
                    ["methods", "points", "range", "episodes"])
        task = r.choice("task", tasks)
        methods = r.names("methods", [k for k, e in offline.entries.items() if task in e.tasks],
                          default=[k for k, e in offline.entries.items() if task in e.tasks])
        pair = r.names("online", list(online.entries))
        if len(pair) != 2:
            r.fail(f"must name two online labels (theta_1, theta_2), got {list(pair)}", "online")
        for method in methods:
            lacking = [o for o in pair if o not in offline.entries[method].online
                       or task not in online.entries[o].tasks]
            if lacking:
                r.fail(f"offline '{method}' has no {lacking} fine-tuning on {task} in this spec")
        planes = PlaneSettings(task, methods, (pair[0], pair[1]), r.integer("points", 2, 11),
                               r.interval("range", (-0.25, 1.25)), r.integer("episodes", 1, 10))
    return interpolation, planes


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate a spec file; ``SmacError`` naming the file and key on bad input."""
    path = Path(path)
    text, value = _read_spec_file(path)
    top = _Reader(path, "", value,
                  ["root", "tasks", "seeds", "offline"], ["online", "landscapes", "description"])
    datasets = _read_tasks(path, top.value["tasks"])
    tasks = tuple(datasets)
    seeds = top.value["seeds"]
    if not (isinstance(seeds, list) and seeds and len(set(seeds)) == len(seeds)
            and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED
                    for s in seeds)):
        top.fail(f"must be a list of distinct integers in [0, {MAX_SEED}], got {seeds!r}",
                 "seeds")
    online_value = top.value.get("online")
    online_labels = [str(label) for label in (online_value.get("algorithms") or {})] \
        if isinstance(online_value, dict) else []
    seeds = tuple(seeds)
    offline = _read_phase(path, "offline", top.value["offline"], tasks, seeds, online_labels)
    # no "online" key: an offline-only study
    online = (PhaseSettings(0, {}, {}) if online_value is None
              else _read_phase(path, "online", online_value, tasks, seeds, online_labels))
    if not isinstance(top.value["root"], str) or not top.value["root"]:
        top.fail("must be a directory path", "root")
    interpolation, planes = _read_landscapes(path, top.value.get("landscapes"), tasks, offline,
                                             online)
    return ExperimentSpec(path, text, Path(top.value["root"]), datasets, seeds, offline,
                          online, interpolation, planes)


# -------------------------------------------------------------------------------------------- grid
@dataclass(frozen=True)
class RunPlan:
    """One training run of the grid. ``run_id`` is its directory relative to the spec's root."""

    run_id: str
    phase: str
    algorithm: str
    task: str
    seed: int
    steps: int
    args: tuple[str, ...]     # arguments of ``python -m smac_core.train``, paths relative to root
    parent: str | None = None  # the offline run an online run starts from


def _flag_args(flags: dict[str, int | float]) -> list[str]:
    return [arg for key, value in flags.items() for arg in (f"--{key.replace('_', '-')}",
                                                           str(value))]


def _set_args(overrides: dict[str, Any]) -> list[str]:
    return [arg for key, value in overrides.items()
            for arg in ("--set", f"{key}={json.dumps(value)}")]


def expand_grid(spec: ExperimentSpec, device: str = "cpu") -> list[RunPlan]:
    """Every run of the spec, each offline run directly followed by its online runs."""
    plans = []
    for task, dataset in spec.datasets.items():
        for offline in spec.offline.entries.values():
            if task not in offline.tasks:
                continue
            for seed in offline.seeds:
                base = f"{task}/{offline.label}/seed{seed}"
                offline_id = f"{base}/offline"
                args = ["offline", "--algo", offline.algorithm, "--dataset", dataset,
                        "--steps", str(spec.offline.steps), "--out", offline_id,
                        "--seed", str(seed), *_flag_args(spec.offline.flags)]
                if offline.optimizer is not None:
                    args += ["--optimizer", offline.optimizer]
                args += [*_set_args(offline.overrides_for(task)), "--device", device,
                         "--resume"]
                plans.append(RunPlan(offline_id, "offline", offline.algorithm, task, seed,
                                     spec.offline.steps, tuple(args)))
                for label in offline.online:
                    online = spec.online.entries[label]
                    if task not in online.tasks or seed not in online.seeds:
                        continue
                    online_id = f"{base}/online-{label}"
                    flags = dict(spec.online.flags)
                    if online.mix is not None:
                        flags["mix"] = online.mix
                    args = ["online", "--from", offline_id, "--algo", online.algorithm,
                            "--steps", str(spec.online.steps), "--out", online_id,
                            "--seed", str(seed), *_flag_args(flags),
                            *_set_args(online.overrides_for(task)), "--device", device,
                            "--resume"]
                    plans.append(RunPlan(online_id, "online", online.algorithm, task, seed,
                                         spec.online.steps, tuple(args), parent=offline_id))
    return plans


def select(plans: Sequence[RunPlan], pattern: str | None) -> list[RunPlan]:
    """The plans whose run_id matches the glob ``pattern``, plus the offline runs they need."""
    if pattern is None:
        return list(plans)
    chosen = {p.run_id for p in plans if fnmatch.fnmatchcase(p.run_id, pattern)}
    if not chosen:
        raise SmacError(f"--only '{pattern}' matches no run; run ids look like "
                        f"{plans[0].run_id} (see the status command)")
    chosen |= {p.parent for p in plans if p.run_id in chosen and p.parent is not None}
    return [p for p in plans if p.run_id in chosen]


# ------------------------------------------------------------------------------------------- state
@dataclass(frozen=True)
class RunState:
    """What a run directory holds: ``state`` is done | partial | started | failed | new."""

    state: str
    step: int | None          # step of the latest checkpoint
    eval_step: int | None     # step of the latest evaluation
    eval_value: float | None  # its mean normalised score (return where the env has none)


def _last_evaluation(run_dir: Path) -> tuple[int | None, float | None]:
    if not (run_dir / METRICS_FILE).is_file():
        return None, None
    for row in reversed(read_metrics(run_dir)):
        if "eval_return" in row:
            value = row["eval_score"] if row.get("eval_score") is not None else row["eval_return"]
            return int(row["step"]), float(value)
    return None, None


def _attempts(run_dir: Path) -> list[dict[str, Any]]:
    """The runner's record of a run's attempts (``runner.json``), oldest first."""
    path = run_dir / RUN_RECORD
    if not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text())["attempts"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise SmacError(f"{path} is not a runner record ({type(exc).__name__}: {exc}); "
                        "delete it to start the record afresh") from exc


def _last_attempt(run_dir: Path) -> dict[str, Any] | None:
    attempts = _attempts(run_dir)
    return attempts[-1] if attempts else None


def run_state(root: Path, plan: RunPlan) -> RunState:
    from smac_core.checkpoint import METADATA_FILE, checkpoint_series, read_metadata

    run_dir = root / plan.run_id
    final = run_dir / "checkpoints" / "final"
    eval_step, eval_value = _last_evaluation(run_dir)
    if (final / METADATA_FILE).is_file():
        step = int(read_metadata(final)["step"])
        if step >= plan.steps:
            return RunState("done", step, eval_step, eval_value)
    else:
        series = checkpoint_series(run_dir)
        step = series[-1][0] if series else None
    attempt = _last_attempt(run_dir)
    if attempt is not None and attempt.get("outcome") == "failed":
        return RunState("failed", step, eval_step, eval_value)
    if step is not None:
        return RunState("partial", step, eval_step, eval_value)
    return RunState("started" if run_dir.exists() else "new", None, eval_step, eval_value)


# ----------------------------------------------------------------------------------------- records
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _git_dirty() -> bool | None:
    """Whether tracked files of the source tree differ from its commit (None outside git)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True, cwd=Path(__file__).parent,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip())


def _write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=1))


def command_record(module: str, argv: Sequence[str]) -> dict[str, Any]:
    """A command as the records hold it: the argument list and a line to paste into a shell."""
    command = [f"python -m {module}", *argv]
    return {"command": command, "command_line": command_line(command)}


def source_record() -> dict[str, Any]:
    """Where the code comes from: git commit and whether the tree had uncommitted changes."""
    from smac_core.checkpoint import git_commit

    return {"git_commit": git_commit(), "git_dirty": _git_dirty()}


def record_invocation(spec: ExperimentSpec, argv: Sequence[str], summary: dict[str, Any]) -> None:
    """Keep the spec text in ROOT/runner/ and append this invocation to invocations.jsonl."""
    runner_dir = spec.root / RUNNER_DIR
    copy = runner_dir / f"spec-{spec.sha256[:12]}{spec.path.suffix}"
    if not copy.is_file():
        atomic_write_text(copy, spec.text)
    row = {"time": _now(), **command_record("smac_core.experiments", argv),
           "cwd": str(Path.cwd()), "spec": str(spec.path), "spec_copy": copy.name,
           "spec_sha256": spec.sha256, **source_record(), **summary}
    with open(runner_dir / "invocations.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


# ------------------------------------------------------------------------------------------ runner
class Process(Protocol):
    """What the scheduler needs of a started run (``subprocess.Popen`` is one)."""

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


Launcher = Callable[[RunPlan, Path, dict[str, str]], Process]


def train_command(plan: RunPlan) -> list[str]:
    return [sys.executable, "-m", TRAIN_MODULE, *plan.args]


def _die_with_parent() -> None:
    """In a run's process, before it starts: have the kernel send it SIGTERM (it checkpoints
    and exits) when the runner dies, even by SIGKILL, so no run outlives its runner."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def launch_subprocess(plan: RunPlan, root: Path, env: dict[str, str]) -> Process:
    """Start ``python -m smac_core.train`` in ``root``, output appended to RUN/runner.log.

    The run directory is claimed for the training command first (``smac_core.files.claim``:
    a directory that is not a run's is refused). The process gets its own session: a Ctrl-C at
    the terminal reaches only the runner, which then sends each run exactly one SIGTERM (a
    second signal makes a run skip its checkpoint); on Linux it gets SIGTERM as well when the
    runner dies. A run directory is locked by its process, so a second runner's process for the
    same run is refused.
    """
    run_dir = root / plan.run_id
    claim(run_dir, RUN_OWNER, ["python -m smac_core.train", *plan.args],
          flag="run directory", legacy=RUN_DIR_MARKERS)
    with open(run_dir / RUN_LOG, "a") as log:
        log.write(f"\n=== {_now()} {shlex.join(train_command(plan))}\n")
        log.flush()
        return subprocess.Popen(train_command(plan), cwd=root, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)


def child_environment(jobs: int) -> dict[str, str]:
    """The runs' environment: this one, with the cores split among ``jobs`` parallel runs
    (OMP/MKL threads, unless already set) and unbuffered output for the logs."""
    env = dict(os.environ)
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, threads)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


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


class Runner:
    """Runs plans as processes: ``jobs`` at a time, offline before online, until ``deadline``.

    ``launcher``, ``clock`` and ``sleep`` are injectable so that tests drive the scheduling
    with fake processes and a fake clock.
    """

    def __init__(self, root: Path, plans: Sequence[RunPlan], jobs: int, env: dict[str, str],
                 deadline: float | None = None, grace_seconds: float = DEFAULT_GRACE_SECONDS,
                 launcher: Launcher = launch_subprocess,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if jobs < 1:
            raise SmacError(f"--jobs must be >= 1, got {jobs}")
        self.root, self.plans, self.jobs, self.env = root, list(plans), jobs, env
        self.deadline, self.grace_seconds = deadline, grace_seconds
        self.launcher, self.clock, self.sleep = launcher, clock, sleep
        self.running: dict[str, tuple[RunPlan, Process, dict[str, Any]]] = {}
        self.summary = RunnerSummary()
        self.stop_reason: str | None = None
        self._stop_time: float | None = None  # when the runs were sent SIGTERM
        self._killed = False

    def request_stop(self, reason: str) -> None:
        """Start no more runs and stop the running ones (safe to call from a signal handler:
        the loop sends the signals)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def _terminate(self, now: float) -> None:
        """SIGTERM every running run once, so that it checkpoints; SIGKILL after the grace."""
        if self._stop_time is None:
            self._stop_time = now
            print(f"stopping ({self.stop_reason}): SIGTERM to {len(self.running)} running "
                  f"run(s), waiting up to {self.grace_seconds:g} s for their checkpoints",
                  flush=True)
            for _, process, _ in self.running.values():
                process.send_signal(signal.SIGTERM)
        elif not self._killed and now - self._stop_time > self.grace_seconds:
            self._killed = True
            for _, process, _ in self.running.values():
                process.kill()

    def _start(self, plan: RunPlan) -> None:
        attempt = {"started": _now(), "cwd": str(self.root),
                   **command_record(TRAIN_MODULE, plan.args), **source_record()}
        try:
            process = self.launcher(plan, self.root, self.env)
        except (SmacError, OSError) as exc:  # e.g. a directory in the way that is not a run's
            self.summary.failed.append(plan.run_id)
            print(f"failed {plan.run_id} (not started: {exc})", flush=True)
            return
        self.running[plan.run_id] = (plan, process, attempt)
        print(f"start  {plan.run_id}", flush=True)

    def _finish(self, plan: RunPlan, exit_code: int, attempt: dict[str, Any]) -> None:
        state = run_state(self.root, plan)
        if state.state == "done":
            outcome = "done"
            self.summary.done.append(plan.run_id)
        elif self.stop_reason is not None:
            outcome = "stopped"
            self.summary.stopped.append(plan.run_id)
        else:
            outcome = "failed"
            self.summary.failed.append(plan.run_id)
        record_path = self.root / plan.run_id / RUN_RECORD
        attempts = _attempts(self.root / plan.run_id)
        _write_json(record_path, {"attempts": [*attempts, {**attempt, "ended": _now(),
                                                           "exit_code": exit_code,
                                                           "outcome": outcome}]})
        print(f"{outcome:6} {plan.run_id} (exit {exit_code}"
              + (f", step {state.step}" if state.step is not None else "") + ")", flush=True)
        if outcome == "failed":
            log = self.root / plan.run_id / RUN_LOG
            lines = [line for line in log.read_text().splitlines() if line.strip()] \
                if log.is_file() else []
            print(f"  {lines[-1] if lines else 'no output'} (see {log})", flush=True)

    def _reap(self) -> None:
        for run_id, (plan, process, attempt) in list(self.running.items()):
            exit_code = process.poll()
            if exit_code is not None:
                del self.running[run_id]
                self._finish(plan, exit_code, attempt)

    def run(self) -> RunnerSummary:
        """Run every plan that is not done; returns what happened to each."""
        waiting = []
        for plan in self.plans:
            if run_state(self.root, plan).state == "done":
                self.summary.done.append(plan.run_id)
            else:
                waiting.append(plan)
        while waiting or self.running:
            now = self.clock()
            if self.deadline is not None and now >= self.deadline:
                self.request_stop("--max-minutes reached")
            if self.stop_reason is not None:
                self._terminate(now)
            self._reap()
            if self.stop_reason is not None:
                if not self.running:
                    break
            else:
                waiting = self._start_ready(waiting)
                if not self.running:
                    break
            self.sleep(POLL_SECONDS)
        failed = set(self.summary.failed)
        for plan in waiting:
            (self.summary.blocked if plan.parent in failed else self.summary.remaining).append(
                plan.run_id)
        return self.summary

    def _start_ready(self, waiting: list[RunPlan]) -> list[RunPlan]:
        """Start the waiting plans whose offline run is done, while slots are free."""
        done = set(self.summary.done)
        still = []
        for plan in waiting:
            ready = plan.parent is None or plan.parent in done
            if ready and len(self.running) < self.jobs:
                self._start(plan)
            else:
                still.append(plan)
        return still


# -------------------------------------------------------------------------------------- landscapes
@dataclass(frozen=True)
class LandscapeJob:
    """One landscape command over finished runs, written to ``ROOT/<out>``."""

    out: str                  # relative to the root
    module: str               # "landscape.interpolate" | "landscape.surface" | "...trajectory"
    runs: tuple[str, ...]     # run ids (checkpoints in the order the command takes them)
    options: tuple[str, ...]  # the command's other arguments
    result_file: str          # what a finished job has written

    def argv(self, root: Path, device: str, workers: int | None) -> list[str]:
        return [*(str(root / r) for r in self.runs), *self.options, "--device", device,
                *([] if workers is None else ["--workers", str(workers)]),
                "--out", str(root / self.out)]


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
        if interp is not None and f"{base}/online-{interp.online}" in run_ids:
            jobs.append(LandscapeJob(
                f"landscapes/interpolation/{base}", "landscape.interpolate",
                (plan.run_id, f"{base}/online-{interp.online}"),
                ("--points", str(interp.points), "--range", *map(str, interp.range),
                 "--episodes", str(interp.episodes),
                 "--label", f"{label} → {interp.online} ({task}, {seed_dir})"),
                "interpolation.json"))
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
                "surface.json"))
            jobs.append(LandscapeJob(
                f"landscapes/trajectories/{base}", "landscape.trajectory",
                (plan.run_id, *online_runs), ("--episodes", str(planes.episodes)),
                "trajectory.json"))
    return jobs


def _landscape_main(module: str) -> Callable[[list[str]], int]:
    if module == "landscape.interpolate":
        from landscape.interpolate import main
    elif module == "landscape.surface":
        from landscape.surface import main
    else:
        from landscape.trajectory import main
    return main


@dataclass
class LandscapeSummary:
    done: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)   # its runs are not all finished
    failed: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)  # not reached before the deadline


class _Stop(BaseException):
    """Raised by the signal handlers of ``run_landscapes`` wherever the landscape code is (a
    BaseException, so no ``except Exception`` or ``except KeyboardInterrupt`` on the way turns
    it into an error; finished points are already on disk, written atomically)."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop("--max-minutes reached" if signum == signal.SIGALRM
                else signal.Signals(signum).name)


def run_landscapes(spec: ExperimentSpec, device: str, max_minutes: float | None,
                   workers: int | None = None, invocation: Sequence[str] = ()
                   ) -> LandscapeSummary:
    """Run every landscape job whose runs are finished and whose output is missing, in this
    process (the landscape modules spread rollouts over the cores); each job's command, git
    commit and times go to its ``command.json``. At ``max_minutes`` the job in progress is
    interrupted (its finished points are kept and resume on the next call), as on SIGINT and
    SIGTERM."""
    plans = {p.run_id: p for p in expand_grid(spec)}
    summary = LandscapeSummary()
    jobs = landscape_jobs(spec)
    previous = {s: signal.signal(s, _raise_stop)
                for s in (signal.SIGALRM, signal.SIGINT, signal.SIGTERM)}
    if max_minutes is not None:
        signal.setitimer(signal.ITIMER_REAL, max_minutes * 60.0)
    try:
        for job in jobs:
            out = spec.root / job.out
            if (out / job.result_file).is_file():
                summary.done.append(job.out)
                continue
            if any(run_state(spec.root, plans[r]).state != "done" for r in job.runs):
                summary.waiting.append(job.out)
                continue
            argv = job.argv(spec.root, device, workers)
            print(f"landscape {job.out}", flush=True)
            record = {**command_record(job.module, argv), "cwd": str(Path.cwd()),
                      "started": _now(), **source_record(), "spec_sha256": spec.sha256,
                      "via": ["python -m smac_core.experiments", *invocation]}
            exit_code = _landscape_main(job.module)(argv)
            _write_json(out / LANDSCAPE_RECORD, {**record, "ended": _now(),
                                                 "exit_code": exit_code})
            (summary.done if exit_code == 0 else summary.failed).append(job.out)
    except _Stop as stop:
        seen = {*summary.done, *summary.waiting, *summary.failed}
        summary.remaining = [j.out for j in jobs if j.out not in seen]
        print(f"stopped ({stop}); finished points are kept, rerun to continue", flush=True)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return summary


# ------------------------------------------------------------------------------------------ export
RUN_RECORD_FILES = ("config.json", "metrics.jsonl", "runner.json")
LANDSCAPE_RESULT_SUFFIXES = (".json", ".csv")  # not the .html (each embeds plotly.js), .png


@dataclass
class ExportSummary:
    runs: list[str] = field(default_factory=list)          # finished runs exported
    unfinished: list[str] = field(default_factory=list)    # left out
    landscapes: list[str] = field(default_factory=list)    # finished landscapes exported


def export_results(spec: ExperimentSpec, dest: Path, invocation: Sequence[str] = ()
                   ) -> ExportSummary:
    """Copy what the notebooks read from ``spec.root`` to ``dest``, keeping the layout: per
    finished run its config, metrics log, runner record (commands, commits) and a policy-only
    final checkpoint (``checkpoint.export_policy``); per finished landscape its JSON/CSV and
    command record; the runner's spec copies and invocation log. Left out, as recomputable or
    only needed to resume: checkpoint series, critics, optimizer states, replay buffers, score
    models, landscape point stores, HTML pages. ``dest`` must be new, empty or an earlier
    export (``smac_core.files``); the files it holds are replaced."""
    root, dest = spec.root.resolve(), dest.resolve()
    if dest == root or root in dest.parents or dest in root.parents:
        raise SmacError(f"the export destination {dest} must lie outside the runs' root {root} "
                        "(and not contain it)")
    with output_directory(dest, EXPORT_TOOL, ["python -m smac_core.experiments", *invocation],
                          flag="--to", legacy=("export.json",)):
        try:
            return _copy_results(spec, dest, invocation)
        except OSError as exc:
            raise SmacError(f"export to --to {dest} failed: {exc.strerror or exc}"
                            + (f": {exc.filename}" if exc.filename else "")) from exc


def _copy_results(spec: ExperimentSpec, dest: Path, invocation: Sequence[str]) -> ExportSummary:
    from smac_core.checkpoint import export_policy

    summary = ExportSummary()
    for plan in expand_grid(spec):
        run_dir = spec.root / plan.run_id
        if run_state(spec.root, plan).state != "done":
            summary.unfinished.append(plan.run_id)
            continue
        out = dest / plan.run_id
        out.mkdir(parents=True, exist_ok=True)
        for name in RUN_RECORD_FILES:
            shutil.copy2(run_dir / name, out / name)
        export_policy(run_dir / "checkpoints" / "final", out / "checkpoints" / "final")
        summary.runs.append(plan.run_id)
    for job in landscape_jobs(spec):
        source = spec.root / job.out
        if not (source / job.result_file).is_file():
            continue
        (dest / job.out).mkdir(parents=True, exist_ok=True)
        for file in source.iterdir():
            if file.is_file() and file.suffix in LANDSCAPE_RESULT_SUFFIXES:
                shutil.copy2(file, dest / job.out / file.name)
        summary.landscapes.append(job.out)
    shutil.copytree(spec.root / "runner", dest / "runner", dirs_exist_ok=True)
    _write_json(dest / "export.json", {"spec": str(spec.path), "spec_sha256": spec.sha256,
                                       "root": str(spec.root), "exported": _now(),
                                       **command_record("smac_core.experiments", invocation),
                                       **source_record(), "datasets": _dataset_summaries(spec),
                                       "summary": {k: len(v) for k, v in vars(summary).items()}})
    return summary


def _dataset_summaries(spec: ExperimentSpec) -> dict[str, dict[str, Any]]:
    """Dataset id -> size and return statistics of the spec's datasets that are readable here
    (the exported tree then describes its data without the Minari store)."""
    from smac_core.data import load_dataset

    summaries = {}
    for dataset in spec.datasets.values():
        try:
            loaded = load_dataset(dataset)
        except SmacError:
            continue
        summaries[str(loaded.dataset_id or dataset)] = loaded.summary()
    return summaries


# ------------------------------------------------------------------------------------------ status
def format_status(spec: ExperimentSpec) -> str:
    """A table of every run: state, saved step / target, latest evaluation; then counts."""
    rows = [(p.run_id, run_state(spec.root, p), p.steps) for p in expand_grid(spec)]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'run':<{width}}  {'state':<8} {'step':>17}  {'last eval (step)':>22}"]
    counts: dict[str, int] = {}
    for run_id, state, steps in rows:
        counts[state.state] = counts.get(state.state, 0) + 1
        step = f"{state.step if state.step is not None else '-'}/{steps}"
        evaluation = ("-" if state.eval_value is None
                      else f"{state.eval_value:.4g} ({state.eval_step})")
        lines.append(f"{run_id:<{width}}  {state.state:<8} {step:>17}  {evaluation:>22}")
    lines.append(f"{len(rows)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                 + f"  (root {spec.root}; eval = mean normalised score, else return)")
    jobs = landscape_jobs(spec)
    if jobs:
        done = sum((spec.root / j.out / j.result_file).is_file() for j in jobs)
        lines.append(f"landscapes: {done} of {len(jobs)} done")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- CLI
def _positive_minutes(text: str) -> float:
    try:
        minutes = float(text)
    except ValueError:
        minutes = float("nan")
    if not minutes > 0:
        raise argparse.ArgumentTypeError(f"must be a number of minutes > 0, got '{text}'")
    return minutes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m smac_core.experiments",
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
        add_device_flag(p, "where networks live (the runs share one GPU)")
    landscapes.add_argument("--workers", type=int,
                            help="env worker processes of the landscape evaluation (0: none; "
                                 "default: one per core)")
    export.add_argument("--to", type=Path, required=True, metavar="DIR",
                        help="destination, outside the spec's root, e.g. results/reduced")
    run.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                     help="runs at a time (default: the number of cores; on CUDA they share "
                          "the GPU)")
    run.add_argument("--only", metavar="PATTERN",
                     help="only runs whose id matches this glob, e.g. 'door-binary/*' or "
                          "'*/seed0/*' (plus the offline runs they start from)")
    run.add_argument("--grace-seconds", type=float, default=DEFAULT_GRACE_SECONDS,
                     help="after the SIGTERM at --max-minutes, wait this long for checkpoints "
                          "before killing (default: %(default)s)")
    return parser


def _print_summary(title: str, summary: dict[str, list[str]]) -> None:
    print(title + ": " + ", ".join(f"{len(v)} {k}" for k, v in summary.items()))
    for key in ("failed", "blocked"):
        for item in summary.get(key, []):
            print(f"  {key}: {item}")


def _stop_on_signal(runner: Runner) -> dict[int, Any]:
    def handler(signum: int, frame: Any) -> None:
        runner.request_stop(signal.Signals(signum).name)

    return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}


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
    device = resolve_device(args.device)
    plans = select(expand_grid(spec, device), args.only)
    check_datasets(spec, [plan for plan in plans if run_state(spec.root, plan).state != "done"])
    try:
        spec.root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SmacError(f"{spec.path}: cannot create its root {spec.root}: "
                        f"{exc.strerror or exc}") from exc
    deadline = None if args.max_minutes is None else time.monotonic() + 60 * args.max_minutes
    runner = Runner(spec.root, plans, args.jobs, child_environment(args.jobs), deadline,
                    args.grace_seconds)
    previous = _stop_on_signal(runner)
    try:
        summary = runner.run().to_dict()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        for _, process, _ in runner.running.values():  # only after an exception in the loop
            process.kill()
    record_invocation(spec, argv, {"device": device, "jobs": args.jobs, "summary": summary})
    _print_summary(f"{len(plans)} runs", summary)
    return 1 if summary["failed"] else 0


def command_landscapes(args: argparse.Namespace, argv: list[str]) -> int:
    spec = load_spec(args.spec)
    if spec.interpolation is None and spec.planes is None:
        raise SmacError(f"{spec.path} has no landscapes section (interpolation, planes)")
    device = resolve_device(args.device)
    summary = vars(run_landscapes(spec, device, args.max_minutes, args.workers, argv))
    record_invocation(spec, argv, {"device": device, "summary": summary})
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


if __name__ == "__main__":
    sys.exit(main())
