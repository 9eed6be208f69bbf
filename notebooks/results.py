"""Shared loader of the notebooks: the finished runs and landscapes under a results root, curves
as mean and standard error over seeds, drop verdicts, regret tables and the paper's claims.

The root is ``$SMAC_RESULTS`` (default ``results/reduced``; a relative path is taken from the
repository root) as written by ``python -m smac_core.experiments`` (layout in
``smac_core.experiments``)::

    ROOT/<task>/<offline label>/seed<k>/offline, .../online-<online label>
    ROOT/landscapes/interpolation/<task>/<offline label>/seed<k>/interpolation.json
    ROOT/landscapes/planes/<task>/<offline label>/seed<k>/surface.json
    ROOT/landscapes/trajectories/<task>/<offline label>/seed<k>/trajectory.json

Runs are found at any depth under the root (so a directory holding several spec roots works).
Only finished runs (final checkpoint at the run's step budget) enter the figures; unfinished ones
are counted. Curve units are those of ``smac_core.metrics``: normalised score (100 = expert) or
raw return where the env has no reference returns. With one seed the standard error over seeds
does not exist: drops then fall back on the standard error over evaluation episodes of the one
run, and interpolation verdicts on the one run's verdict; the notebooks say so.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from landscape.valley import ENDPOINT_ATOL, Curve, valley_verdict
from smac_core.algos import ALGORITHMS
from smac_core.checkpoint import read_metadata
from smac_core.errors import SmacError
from smac_core.metrics import (
    DISPLAY_NAMES,
    PAPER_REGRET_TABLE,
    EvalCurve,
    Run,
    TransferDrop,
    cumulative_regret,
    load_run,
    read_evaluations,
    transfer_drop,
    transfer_drop_over_seeds,
)

RESULTS_ENV = "SMAC_RESULTS"
DEFAULT_ROOT = "results/reduced"
REPO = Path(__file__).resolve().parents[1]
REDUCED_SPEC = "notebooks/specs/reduced.yaml"
PLOTLY_RENDERER = "plotly_mimetype+notebook_connected"  # keeps plotly.js out of the outputs
COLORS = ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7")

# The paper's headline transfer claims (DESIGN.md section 2): tasks with a drop / tasks run.
PAPER_DROPS = {"calql": (3, 4), "iql": (4, 6), "td3bc": (5, 6)}
PAPER_SMAC_SMOOTH = ("sac", "td3")  # smooth transfer to these in 6/6 tasks
PAPER_REGRET_REDUCTION = (0.34, 0.58)  # SMAC's regret below the best baseline's, in 4/6 tasks


def display(name: str) -> str:
    return DISPLAY_NAMES.get(name, name)


def paper_row(offline_algorithm: str) -> str:
    """The row of the paper's tables: its "CalQL/CQL" row holds CQL where CalQL's floor is
    meaningless, as in the reduced spec."""
    return "calql" if offline_algorithm == "cql" else offline_algorithm


# ------------------------------------------------------------------------------------------ runs
@dataclass(frozen=True)
class RunRecord:
    """One training run directory of a results root."""

    path: Path
    task: str
    label: str                # offline label (a directory name of the spec)
    seed: int
    phase: str                # "offline" | "online"
    algorithm: str            # this run's algorithm
    online_label: str | None  # online runs: the spec's online label
    offline_algorithm: str    # the algorithm of the offline run (itself for offline runs)
    optimizer: str            # optimizer of the offline run ("adam" | "muon")
    dataset_id: str | None
    steps: int                # step budget (offline: gradient updates, online: env steps)
    finished: bool

    @property
    def default_optimizer(self) -> bool:
        """Whether the offline run used its algorithm's default optimizer (the main grid)."""
        default = ALGORITHMS[self.offline_algorithm].config_class().optimizer
        return self.optimizer == default


def _read_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as exc:
        raise SmacError(f"{path / 'config.json'} is not valid JSON ({exc.msg})") from None


def _finished(run_dir: Path, steps: int) -> bool:
    final = run_dir / "checkpoints" / "final"
    if not final.is_dir():
        return False
    return int(read_metadata(final)["step"]) >= steps


def _record(run_dir: Path) -> RunRecord:
    config = _read_config(run_dir)
    seed_dir = run_dir.parent
    offline_dir = seed_dir / "offline"
    offline = config if run_dir == offline_dir else _read_config(offline_dir)
    online = run_dir.name.startswith("online-")
    return RunRecord(run_dir, str(config["env"]), seed_dir.parent.name, int(config["seed"]),
                     str(config["phase"]), str(config["algorithm"]),
                     run_dir.name.removeprefix("online-") if online else None,
                     str(offline["algorithm"]), str(offline["agent_config"]["optimizer"]),
                     offline.get("dataset_id"), int(config["steps"]),
                     _finished(run_dir, int(config["steps"])))


def find_runs(root: Path) -> list[RunRecord]:
    """Every ``.../<task>/<label>/seed<k>/{offline,online-<label>}`` run under ``root``."""
    runs = []
    for config in sorted(root.rglob("config.json")):
        run_dir = config.parent
        is_run = run_dir.name == "offline" or run_dir.name.startswith("online-")
        if is_run and run_dir.parent.name.startswith("seed") \
                and (run_dir.parent / "offline" / "config.json").is_file():
            runs.append(_record(run_dir))
    return runs


@dataclass
class Study:
    """The finished runs of a results root (``runs``) and how many are not finished."""

    root: Path
    runs: list[RunRecord]
    unfinished: int

    def select(self, phase: str | None = None, task: str | None = None,
               label: str | None = None, online_label: str | None = None,
               main_grid: bool = False) -> list[RunRecord]:
        """Finished runs matching every given field; ``main_grid``: default optimizers only."""
        return [r for r in self.runs if (phase is None or r.phase == phase)
                and (task is None or r.task == task) and (label is None or r.label == label)
                and (online_label is None or r.online_label == online_label)
                and (not main_grid or r.default_optimizer)]

    def tasks(self) -> list[str]:
        return sorted({r.task for r in self.runs})

    def labels(self, task: str | None = None, main_grid: bool = False) -> list[str]:
        return sorted({r.label for r in self.select(task=task, main_grid=main_grid)})

    def scale(self) -> str:
        """One line: tasks, seeds and step budgets of the finished runs."""
        if not self.runs:
            return "no finished runs"
        budgets = {phase: sorted({r.steps for r in self.select(phase=phase)})
                   for phase in ("offline", "online")}
        seeds = sorted({r.seed for r in self.runs})
        return (f"{len(self.runs)} finished runs ({self.unfinished} unfinished) on "
                f"{', '.join(self.tasks())}; seeds {seeds}; offline "
                f"{budgets['offline']} gradient updates, online {budgets['online']} env steps")


def results_root(default: str = DEFAULT_ROOT) -> Path:
    """``$SMAC_RESULTS`` (else ``default``), relative paths from the repository root."""
    root = Path(os.environ.get(RESULTS_ENV, default))
    return root if root.is_absolute() else REPO / root


def load_study(root: Path | None = None) -> Study:
    """The runs under ``root`` (default ``results_root()``); prints where, and how to produce
    the results when there are none."""
    root = results_root() if root is None else root
    runs = find_runs(root) if root.is_dir() else []
    study = Study(root, [r for r in runs if r.finished], sum(not r.finished for r in runs))
    if not root.is_dir():
        print(f"The results root {root} does not exist: there are no results to show yet.\n"
              f"Produce them with (repeat until status shows every run done):\n"
              f"  python -m smac_core.experiments run {REDUCED_SPEC} --max-minutes 8\n"
              f"  python -m smac_core.experiments status {REDUCED_SPEC}\n"
              f"  python -m smac_core.experiments landscapes {REDUCED_SPEC} --max-minutes 8\n"
              f"  python -m smac_core.experiments export {REDUCED_SPEC} --to {DEFAULT_ROOT}\n"
              f"or point ${RESULTS_ENV} at another spec's root.")
    else:
        shown = root.relative_to(REPO) if root.is_relative_to(REPO) else root
        print(f"results root {shown}: {study.scale()}")
    return study


# ---------------------------------------------------------------------------------------- curves
@dataclass(frozen=True)
class SeedCurve:
    """Mean and standard error over seeds (S,) of evaluation curves at their shared steps (E,);
    ``se`` is NaN with one seed."""

    steps: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    seeds: int
    metric: str


def seed_mean(curves: Sequence[EvalCurve]) -> SeedCurve:
    """Mean over seeds of each seed's per-evaluation mean, at the steps every seed evaluated."""
    if not curves:
        raise SmacError("no curves to average")
    steps = curves[0].steps
    for curve in curves[1:]:
        steps = np.intersect1d(steps, curve.steps)
    per_seed = np.stack([curve.mean[np.isin(curve.steps, steps)] for curve in curves])  # (S, E)
    se = (per_seed.std(axis=0, ddof=1) / math.sqrt(len(curves)) if len(curves) > 1
          else np.full(steps.size, math.nan))
    return SeedCurve(steps, per_seed.mean(axis=0), se, len(curves), curves[0].metric)


def learning_curves(study: Study, task: str, label: str, online_label: str
                    ) -> tuple[SeedCurve, SeedCurve] | None:
    """Offline and online evaluation curves over the seeds that have both runs finished."""
    online = study.select("online", task, label, online_label)
    if not online:
        return None
    offline_dirs = [r.path.parent / "offline" for r in online]
    return (seed_mean([read_evaluations(d, "offline") for d in offline_dirs]),
            seed_mean([read_evaluations(r.path, "online") for r in online]))


def _band(ax: Any, x: np.ndarray, curve: SeedCurve, color: str, label: str | None) -> None:
    ax.plot(x, curve.mean, "-", color=color, label=label)
    if curve.seeds > 1:
        ax.fill_between(x, curve.mean - curve.se, curve.mean + curve.se, color=color, alpha=0.2)


def plot_learning_curves(study: Study, online_label: str) -> Figure | None:
    """One panel per task: every offline method of the main grid (default optimizers), its
    offline curve then its ``online_label`` fine-tuning, mean +- s.e. over seeds, a dotted line
    at the switch. The x axis is offline gradient updates followed by online env steps."""
    panels = [(task, [(label, curves) for label in study.labels(task, main_grid=True)
                      if (curves := learning_curves(study, task, label, online_label))])
              for task in study.tasks()]
    panels = [(task, rows) for task, rows in panels if rows]
    if not panels:
        return None
    figure = Figure(figsize=(5.5 * len(panels), 4))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (task, rows) in zip(axes, panels, strict=True):
        switch = max(offline.steps[-1] for _, (offline, _) in rows)
        for k, (label, (offline, online)) in enumerate(rows):
            color = COLORS[k % len(COLORS)]
            _band(ax, offline.steps, offline, color, f"{display(label)} ({online.seeds} seeds)")
            _band(ax, switch + online.steps, online, color, None)
        ax.axvline(switch, color="gray", linestyle=":", label="offline → online")
        ax.set(title=f"{task}: fine-tuned with {display(online_label)}",
               xlabel="offline updates, then online env steps",
               ylabel=f"{rows[0][1][1].metric} (mean ± s.e. over seeds)")
        ax.legend(fontsize="small")
    return figure


# ----------------------------------------------------------------------------------------- drops
@dataclass(frozen=True)
class CellKey:
    """A cell of the grid: runs that differ only in their seed."""

    task: str
    label: str
    online_label: str
    dataset_id: str | None
    optimizer: str


@dataclass(frozen=True)
class RecordRun:
    """A finished online run with its evaluation curve and baseline."""

    record: RunRecord
    run: Run


@dataclass(frozen=True)
class DropRow:
    """Drop at transfer of one cell."""

    cell: CellKey
    offline_algorithm: str
    online_algorithm: str
    seeds: int
    drop: TransferDrop
    over: str  # what the s.e. is over: "seeds" or "episodes of 1 seed"
    regret: float  # mean over seeds of ``smac_core.metrics.cumulative_regret``
    start: float   # mean over seeds of the baseline (offline final score, online step 0)
    end: float     # mean over seeds of the last online evaluation


def _cells(study: Study, main_grid: bool) -> dict[CellKey, list[RecordRun]]:
    cells: dict[CellKey, list[RecordRun]] = defaultdict(list)
    for record in study.select("online", main_grid=main_grid):
        key = CellKey(record.task, record.label, str(record.online_label), record.dataset_id,
                      record.optimizer)
        cells[key].append(RecordRun(record, load_run(record.path)))
    return dict(sorted(cells.items(), key=lambda item: str(item[0])))


def drop_rows(study: Study, main_grid: bool = True) -> list[DropRow]:
    """The drop verdict of every cell: over seeds (paired t-test) with two seeds or more, else
    over the evaluation episodes of the single run (paired episode by episode)."""
    rows = []
    for cell, group in _cells(study, main_grid).items():
        runs = [member.run for member in group]
        if len(runs) > 1:
            drop = transfer_drop_over_seeds([r.curve for r in runs], [r.baseline for r in runs])
            over = "seeds"
        else:
            drop, over = transfer_drop(runs[0].curve, runs[0].baseline), "episodes of 1 seed"
        first = group[0].record
        regret = float(np.mean([cumulative_regret(r.curve) for r in runs]))
        start = float(np.mean([r.baseline.mean() for r in runs]))
        end = float(np.mean([r.curve.mean[-1] for r in runs]))
        rows.append(DropRow(cell, first.offline_algorithm, first.algorithm, len(runs), drop,
                            over, regret, start, end))
    return rows


def format_drops(rows: Iterable[DropRow]) -> str:
    lines = ["| task | offline | online | seeds | offline final | online final "
             "| drop ± s.e. (s.e. over) | at step | p | verdict | regret |", "|---" * 11 + "|"]
    for r in rows:
        lines.append(f"| {r.cell.task} | {display(r.cell.label)} | {display(r.cell.online_label)} "
                     f"| {r.seeds} | {r.start:.2f} | {r.end:.2f} "
                     f"| {r.drop.drop:.2f} ± {r.drop.se:.2f} ({r.over}) | {r.drop.step} "
                     f"| {r.drop.p_value:.3g} | {r.drop.verdict} | {r.regret:.3g} |")
    return "\n".join(lines)


def drop_claims(rows: Sequence[DropRow]) -> list[str]:
    """The paper's transfer claims against the verdicts found (no row: no statement)."""
    claims = []
    for online in PAPER_SMAC_SMOOTH:
        smac = [r for r in rows if r.offline_algorithm == "smac" and r.online_algorithm == online]
        if smac:
            smooth = [r.cell.task for r in smac if r.drop.verdict == "smooth"]
            verdict = "SUPPORTED" if len(smooth) == len(smac) else "CONTRADICTED"
            claims.append(f"{verdict}: SMAC -> {display(online)} transfers smoothly on "
                          f"{len(smooth)}/{len(smac)} tasks (paper: 6/6); drops on "
                          f"{sorted({r.cell.task for r in smac} - set(smooth)) or 'none'}")
    for algorithm, (paper_drops, paper_tasks) in PAPER_DROPS.items():
        baseline = [r for r in rows if paper_row(r.offline_algorithm) == algorithm
                    and r.online_algorithm == "sac"]
        if baseline:
            dropped = sum(r.drop.verdict == "drop" for r in baseline)
            # the paper's claim is that the baseline drops on most tasks
            verdict = "SUPPORTED" if dropped > len(baseline) / 2 else "CONTRADICTED"
            claims.append(f"{verdict}: {display(algorithm)}{'/CQL' * (algorithm == 'calql')} "
                          f"-> SAC drops on {dropped}/{len(baseline)} tasks (paper: "
                          f"{paper_drops}/{paper_tasks})")
    return claims


# ---------------------------------------------------------------------------------------- regret
def regrets(study: Study, main_grid: bool = True) -> dict[tuple[str, str, str], list[float]]:
    """Per-seed regrets keyed (paper row, online algorithm, task), as
    ``smac_core.metrics.normalized_regret_table`` takes them."""
    cells: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for group in _cells(study, main_grid).values():
        for member in group:
            record = member.record
            cells[paper_row(record.offline_algorithm), record.algorithm, record.task].append(
                cumulative_regret(member.run.curve))
    return dict(cells)


def regret_comparison(table: dict[str, dict[str, float]]) -> str:
    """Ours next to the paper's, cell by cell: "ours (paper)"."""
    both = {row: {column: math.nan for column in PAPER_REGRET_TABLE[row]}
            for row in PAPER_REGRET_TABLE}
    lines = ["| offline \\ online | " + " | ".join(display(c) for c in both["smac"]) + " |",
             "|---" * (len(both["smac"]) + 1) + "|"]
    for row, paper in PAPER_REGRET_TABLE.items():
        cells = [f"{table[row][c]:.3f} ({value:.3f})" if c in table.get(row, {})
                 else f"- ({value:.3f})" for c, value in paper.items()]
        name = "CalQL/CQL" if row == "calql" else display(row)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def regret_claims(cell_regrets: dict[tuple[str, str, str], list[float]]) -> list[str]:
    """SMAC's mean regret against the best baseline's, per task and online algorithm."""
    claims = []
    keys = sorted({(online, task) for _, online, task in cell_regrets})
    by_online: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for online, task in keys:
        means = {row: float(np.mean(v)) for (row, o, t), v in cell_regrets.items()
                 if o == online and t == task}
        baselines = {row: value for row, value in means.items() if row != "smac"}
        if "smac" in means and baselines:
            best = min(baselines.values())
            reduction = 1.0 - means["smac"] / best if best > 0 else math.nan
            by_online[online].append((task, reduction))
    low, high = PAPER_REGRET_REDUCTION
    for online, rows in by_online.items():
        lower = [task for task, reduction in rows if reduction > 0]
        text = ", ".join(f"{task} {reduction:+.0%}" for task, reduction in rows)
        verdict = "SUPPORTED" if len(lower) >= 2 * len(rows) / 3 else "CONTRADICTED"
        claims.append(f"{verdict}: SMAC -> {display(online)} has lower regret than the best "
                      f"baseline on {len(lower)}/{len(rows)} tasks (reduction: {text}; paper: "
                      f"{low:.0%}-{high:.0%} lower on 4/6)")
    return claims


# ------------------------------------------------------------------------------- interpolations
@dataclass(frozen=True)
class Interpolation:
    """One seed's interpolation offline final -> online final (``interpolation.json``)."""

    task: str
    label: str
    seed: int
    unit: str
    ts: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    verdict: str


def _landscape_files(root: Path, kind: str, name: str) -> list[tuple[str, str, int, Path]]:
    """(task, label, seed, file) of ``ROOT/landscapes/<kind>/<task>/<label>/seed<k>/<name>``."""
    found = []
    for path in sorted((root / "landscapes" / kind).glob(f"*/*/seed*/{name}")):
        seed_dir = path.parent
        found.append((seed_dir.parent.parent.name, seed_dir.parent.name,
                      int(seed_dir.name.removeprefix("seed")), path))
    return found


def load_interpolations(root: Path) -> list[Interpolation]:
    result = []
    for task, label, seed, path in _landscape_files(root, "interpolation", "interpolation.json"):
        data = json.loads(path.read_text())
        curve = data["curves"][0]
        result.append(Interpolation(task, label, seed, data["unit"], np.asarray(curve["t"]),
                                    np.asarray(curve["mean"]), np.asarray(curve["se"]),
                                    curve["verdict"]["verdict"]))
    return result


def interpolation_over_seeds(seeds: Sequence[Interpolation]) -> tuple[Curve, str]:
    """Mean +- s.e. over seeds at each t with the valley verdict of that curve, and what the
    s.e. is over. One seed: its own curve (s.e. over episodes) and verdict."""
    first = seeds[0]
    if any(not np.array_equal(s.ts, first.ts) for s in seeds):
        raise SmacError(f"{first.task}/{first.label}: the seeds' interpolations use different t")
    label = f"{display(first.label)} ({len(seeds)} seed{'s' * (len(seeds) > 1)})"
    if len(seeds) == 1:
        verdict = valley_verdict(first.ts, first.mean, first.se)
        return Curve(label, first.ts, first.mean, first.se, verdict), "episodes of 1 seed"
    means = np.stack([s.mean for s in seeds])  # (S, T)
    mean, se = means.mean(axis=0), means.std(axis=0, ddof=1) / math.sqrt(len(seeds))
    return Curve(label, first.ts, mean, se, valley_verdict(first.ts, mean, se)), "seeds"


def plot_interpolations(curves: dict[tuple[str, str], tuple[Curve, str]], unit: str
                        ) -> Figure:
    """One panel per task: every method's curve, mean +- s.e., the checkpoints dashed."""
    tasks = sorted({task for task, _ in curves})
    figure = Figure(figsize=(5.5 * len(tasks), 4))
    axes = figure.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks, strict=True):
        rows = [curve for (t, _), (curve, _) in curves.items() if t == task]
        for k, curve in enumerate(rows):
            color = COLORS[k % len(COLORS)]
            ax.plot(curve.ts, curve.mean, "o-", color=color, markersize=3,
                    label=f"{curve.label}: {curve.verdict.verdict}")
            ax.fill_between(curve.ts, curve.mean - curve.se, curve.mean + curve.se,
                            color=color, alpha=0.2)
        for t in (0.0, 1.0):
            ax.axvline(t, color="gray", linestyle="--", linewidth=1)
        ax.set(title=f"{task}: pre-trained (t=0) -> SAC fine-tuned (t=1)", xlabel="t",
               ylabel=f"{unit} (mean ± s.e.)")
        ax.legend(fontsize="small")
    return figure


def grouped(items: Iterable[Any]) -> dict[tuple[str, str], list[Any]]:
    """Items with ``task`` and ``label`` grouped by (task, label), sorted."""
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for item in items:
        groups[item.task, item.label].append(item)
    return dict(sorted(groups.items()))


def valley_claims(curves: dict[tuple[str, str], tuple[Curve, str]],
                  between: str = "pre-trained and SAC fine-tuned") -> list[str]:
    """The paper: every method but SMAC dips ``between`` its two checkpoints."""
    claims = []
    for is_smac in (True, False):
        rows = [(task, label, curve) for (task, label), (curve, _) in curves.items()
                if (label == "smac") == is_smac]
        if not rows:
            continue
        valleys = [f"{display(label)} on {task}" for task, label, curve in rows
                   if curve.verdict.verdict == "valley"]
        if is_smac:
            verdict = "SUPPORTED" if not valleys else "CONTRADICTED"
            claim = f"SMAC crosses no valley between {between}"
        else:
            verdict = "SUPPORTED" if len(valleys) == len(rows) else (
                "PARTLY SUPPORTED" if valleys else "CONTRADICTED")
            claim = f"every baseline dips between {between}"
        claims.append(f"{verdict}: {claim}: valley in {len(valleys)}/{len(rows)} "
                      f"(task, method) pairs {valleys or ''}".rstrip())
    return claims


# ---------------------------------------------------------------------------------------- planes
@dataclass(frozen=True)
class Plane:
    """One seed's reward plane through offline, online[0] and online[1] (``surface.json``):
    ``mean`` (Y, X) over ``x`` (X,) and ``y`` (Y,)."""

    task: str
    label: str
    seed: int  # -1: a mean over seeds
    unit: str
    x: np.ndarray
    y: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    checkpoints: tuple[str, ...]

    def path_curve(self, axis: str) -> Curve | None:
        """The straight path pre-trained -> theta_1 (``axis`` "x", along y = 0) or -> theta_2
        ("y", along x = 0) read off the grid, with its valley verdict; None when the grid does
        not hold both checkpoints and a point between them."""
        along, across = (self.x, self.y) if axis == "x" else (self.y, self.x)
        row = np.flatnonzero(np.isclose(across, 0.0, atol=ENDPOINT_ATOL))
        inside = (along >= -ENDPOINT_ATOL) & (along <= 1 + ENDPOINT_ATOL)
        ts = along[inside]
        if row.size == 0 or not (np.isclose(ts, 0.0).any() and np.isclose(ts, 1.0).any()) \
                or ts.size < 3:
            return None
        grid_mean, grid_se = (self.mean, self.se) if axis == "y" else (self.mean.T, self.se.T)
        mean, se = grid_mean[inside, row[0]], grid_se[inside, row[0]]
        if not np.isfinite(se).all():
            return None
        target = "θ1" if axis == "x" else "θ2"
        return Curve(f"{display(self.label)}: θ -> {target}", ts, mean, se,
                     valley_verdict(ts, mean, se))


def load_planes(root: Path) -> list[Plane]:
    result = []
    for task, label, seed, path in _landscape_files(root, "planes", "surface.json"):
        data = json.loads(path.read_text())
        se = np.array([[math.nan if v is None else v for v in row] for row in data["se"]])
        result.append(Plane(task, label, seed, data["unit"], np.asarray(data["x"]),
                            np.asarray(data["y"]), np.asarray(data["mean"]), se,
                            tuple(data["checkpoints"])))
    return result


def plane_over_seeds(seeds: Sequence[Plane]) -> Plane:
    """Mean over seeds of each grid point, s.e. over seeds (one seed: the plane itself)."""
    first = seeds[0]
    if len(seeds) == 1:
        return first
    if any(not (np.array_equal(p.x, first.x) and np.array_equal(p.y, first.y)) for p in seeds):
        raise SmacError(f"{first.task}/{first.label}: the seeds' planes use different grids")
    means = np.stack([p.mean for p in seeds])  # (S, Y, X)
    return Plane(first.task, first.label, -1, first.unit, first.x, first.y, means.mean(axis=0),
                 means.std(axis=0, ddof=1) / math.sqrt(len(seeds)),
                 tuple(c for p in seeds for c in p.checkpoints))


def plot_plane(plane: Plane) -> Figure:
    """Filled contours of a plane with its three checkpoints marked."""
    figure = Figure(figsize=(5, 4))
    ax = figure.subplots()
    filled = ax.contourf(plane.x, plane.y, plane.mean, levels=20, cmap="viridis")
    figure.colorbar(filled, ax=ax, label=plane.unit)
    for (x, y), name in zip(((0, 0), (1, 0), (0, 1)), ("θ pre-trained", "θ1", "θ2"),
                            strict=True):
        ax.plot(x, y, "o", color="white", markeredgecolor="black")
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4))
    seeds = "mean over seeds" if plane.seed < 0 else f"seed {plane.seed}"
    ax.set(title=f"{display(plane.label)}, {plane.task}, {seeds}",
           xlabel="x (θ1 − θ)", ylabel="y (θ2 − θ)")
    return figure


# ---------------------------------------------------------------------------------- trajectories
TRAJECTORY_DIR = "landscapes/trajectories"


@dataclass(frozen=True)
class TrajectoryJob:
    """The runs of one trajectory figure: an offline run and its two online runs."""

    task: str
    label: str
    seed: int
    runs: tuple[Path, Path, Path]
    out: Path

    def argv(self, episodes: int) -> list[str]:
        """Arguments of ``python -m landscape.trajectory`` that write ``out``."""
        return [*map(str, self.runs), "--episodes", str(episodes), "--out", str(self.out)]

    def command(self, episodes: int) -> str:
        return shlex.join(["python", "-m", "landscape.trajectory", *self.argv(episodes)])


def trajectory_jobs(study: Study, online: tuple[str, str] = ("sac", "td3bc")
                    ) -> list[TrajectoryJob]:
    """One job per (task, label, seed) with both online runs finished."""
    jobs = []
    for offline in study.select("offline"):
        seed_dir = offline.path.parent
        members = [study.select("online", offline.task, offline.label, label) for label in online]
        if all(any(r.path.parent == seed_dir for r in member) for member in members):
            out = study.root / TRAJECTORY_DIR / offline.task / offline.label / seed_dir.name
            jobs.append(TrajectoryJob(offline.task, offline.label, offline.seed,
                                      (offline.path, *(seed_dir / f"online-{o}" for o in online)),
                                      out))
    return jobs


@dataclass(frozen=True)
class Trajectory:
    """One ``trajectory.json``: per checkpoint its run, step, phase and reward (N,), and the
    2-D embeddings name -> (N, 2)."""

    task: str
    label: str
    seed: int
    unit: str
    runs: list[str]
    steps: list[int]
    reward: np.ndarray
    embeddings: dict[str, np.ndarray]

    def online_dip(self, run_name: str) -> float:
        """Reward of the last offline checkpoint minus the lowest checkpoint of the online run
        ``run_name`` (> 0: fine-tuning passed below where it started)."""
        names = [Path(run).name for run in self.runs]
        start = self.reward[[k for k, n in enumerate(names) if n == "offline"][-1]]
        online = self.reward[[n == run_name for n in names]]
        return float(start - online.min())


def load_trajectories(root: Path) -> list[Trajectory]:
    result = []
    for task, label, seed, path in _landscape_files(root, "trajectories", "trajectory.json"):
        data = json.loads(path.read_text())
        result.append(Trajectory(task, label, seed, data["unit"],
                                 [c["run"] for c in data["checkpoints"]],
                                 [c["step"] for c in data["checkpoints"]],
                                 np.asarray(data["mean"]),
                                 {k: np.asarray(v) for k, v in data["embeddings"].items()}))
    return result


def plot_trajectory(trajectory: Trajectory) -> Figure:
    """One panel per embedding, checkpoints coloured by reward, each run joined in order."""
    figure = Figure(figsize=(5.5 * len(trajectory.embeddings), 4.5))
    axes = figure.subplots(1, len(trajectory.embeddings), squeeze=False)[0]
    names = np.array([Path(run).name for run in trajectory.runs])
    low, high = trajectory.reward.min(), trajectory.reward.max()
    for ax, (name, points) in zip(axes, trajectory.embeddings.items(), strict=True):
        for k, run in enumerate(dict.fromkeys(names)):
            member = names == run
            ax.plot(points[member, 0], points[member, 1], color="lightgray", zorder=1)
            scatter = ax.scatter(points[member, 0], points[member, 1],
                                 c=trajectory.reward[member], cmap="viridis", vmin=low,
                                 vmax=high, marker="oDs^v"[k % 5], edgecolors="black",
                                 label=run, zorder=2)
        figure.colorbar(scatter, ax=ax, label=trajectory.unit)
        ax.set(title=f"{name}: {display(trajectory.label)}, {trajectory.task}, "
                     f"seed {trajectory.seed}")
        ax.legend(fontsize="small")
    return figure


# ---------------------------------------------------------------------------------------- compute
def compute_seconds(root: Path) -> dict[str, float]:
    """Process wall time (s) under ``root``, from the records the experiment runner writes:
    training runs by "<phase> <algorithm>" (every attempt in ``runner.json``) and "landscapes"
    (every ``command.json``). Each process uses one thread (``--threads 1``): with no more
    processes than cores these are core-seconds; with more, they overstate core time."""
    from datetime import datetime

    def seconds(record: dict[str, Any]) -> float:
        if "ended" not in record:
            return 0.0
        return (datetime.fromisoformat(record["ended"])
                - datetime.fromisoformat(record["started"])).total_seconds()

    totals: dict[str, float] = defaultdict(float)
    for record in find_runs(root):
        runner = record.path / "runner.json"
        if runner.is_file():
            attempts = json.loads(runner.read_text())["attempts"]
            totals[f"{record.phase} {record.algorithm}"] += sum(map(seconds, attempts))
    for command in (root.rglob("command.json") if root.is_dir() else []):
        totals["landscapes"] += seconds(json.loads(command.read_text()))
    return dict(sorted(totals.items()))


# ------------------------------------------------------------------------- datasets, optimizers
def dataset_sizes(root: Path) -> dict[str, int]:
    """Transitions of each dataset, from the ``export.json`` files under ``root`` (written by
    ``python -m smac_core.experiments export``), else from the local Minari store."""
    import minari  # here, not at the top: only notebook 6 needs it, and it is slow to import

    sizes = {dataset_id: int(meta["total_steps"])
             for dataset_id, meta in minari.list_local_datasets().items()}
    for export in sorted(root.rglob("export.json")):
        for dataset_id, summary in json.loads(export.read_text()).get("datasets", {}).items():
            sizes[dataset_id] = int(summary["transitions"])
    return sizes


def drops_by(rows: Sequence[DropRow], key: str) -> dict[tuple[str, str, str],
                                                       dict[str, DropRow]]:
    """Drop rows grouped by (task, offline algorithm, online label), then by the cell's ``key``
    ("dataset_id" or "optimizer")."""
    groups: dict[tuple[str, str, str], dict[str, DropRow]] = defaultdict(dict)
    for row in rows:
        groups[row.cell.task, row.offline_algorithm, row.cell.online_label][
            str(getattr(row.cell, key))] = row
    return dict(sorted(groups.items()))


def print_claims(claims: Sequence[str], study: Study) -> None:
    """The claims section every notebook ends with."""
    print("## Claims checked against the stored results")
    print(f"scale: {study.scale()}")
    for claim in claims or ["no claim can be checked: the results lack the runs it needs "
                            "(see above)"]:
        print(f"- {claim}")
