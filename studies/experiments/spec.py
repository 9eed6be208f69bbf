"""The spec file of a study: its dataclasses, a reader that names the file and key of every bad
value, and ``load_spec``. ``notebooks/specs/reduced.yaml`` documents every key.

SPEC (YAML or JSON) names the tasks, seeds, offline algorithms (each with the online algorithms
fine-tuned from it), the two phases' step budgets and evaluation schedules, ``--set`` overrides
and the landscape settings. Entries are keyed by a *label* (a directory name) and run the
algorithm ``algo`` (default: the label), so one algorithm can appear twice, e.g.
``smac-adam: {algo: smac, optimizer: adam}``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from smac_core.cli import MAX_SEED
from smac_core.errors import SmacError

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
MAX_SPEC_NODES = 100_000

# spec keys of each phase that become ``smac_core.train`` flags (key -> --key-with-dashes)
OFFLINE_FLAGS = ("eval_every", "eval_episodes", "checkpoint_every", "log_every", "tensorboard")
ONLINE_FLAGS = (*OFFLINE_FLAGS, "early_eval_every", "early_eval_until", "start_steps")
ZERO_ALLOWED = ("early_eval_until", "start_steps")  # the other flags must be >= 1
BOOLEAN_FLAGS = ("tensorboard",)  # true or false


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
    flags: dict[str, int | float | bool]  # spec key -> value, e.g. {"eval_every": 5000}
    entries: dict[str, AlgorithmEntry]


@dataclass(frozen=True)
class InterpolationSettings:
    """Offline final -> online final, for every task, offline entry and seed: the online run of
    the first label in ``online`` that the offline entry is fine-tuned with (one label, or a list
    when the entries hand over to different online algorithms, e.g. each flow agent to itself)."""

    online: tuple[str, ...]
    points: int
    range: tuple[float, float]
    episodes: int
    parts: int = 1  # jobs each interpolation's points are split over (``landscape.parts``)


@dataclass(frozen=True)
class PlaneSettings:
    """Planes through offline final, ``online[0]`` final and ``online[1]`` final on one task."""

    task: str
    methods: tuple[str, ...]
    online: tuple[str, str]
    points: int
    range: tuple[float, float]
    episodes: int
    parts: int = 1  # jobs each plane's grid is split over (``landscape.parts``)


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
    flags: dict[str, int | float | bool] = {}
    for key in flag_keys:
        if not reader.has(key):
            continue
        if key in BOOLEAN_FLAGS:
            if not isinstance(reader.value[key], bool):
                reader.fail(f"must be true or false, got {reader.value[key]!r}", key)
            flags[key] = reader.value[key]
        else:
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
                    ["online", "points", "range", "episodes", "parts"])
        targets = r.names("online", list(online.entries), ["sac"])
        if not targets:
            r.fail("must name at least one online label", "online")
        interpolation = InterpolationSettings(targets,
                                              r.integer("points", 2, 21),
                                              r.interval("range", (-0.25, 1.25)),
                                              r.integer("episodes", 2, 10),
                                              r.integer("parts", 1, 1))
    if reader.has("planes"):
        r = _Reader(path, "landscapes.planes", reader.value["planes"], ["task", "online"],
                    ["methods", "points", "range", "episodes", "parts"])
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
                               r.interval("range", (-0.25, 1.25)), r.integer("episodes", 1, 10),
                               r.integer("parts", 1, 1))
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
