"""Shared loader of the notebooks: the finished runs and landscapes under a results root, curves
as mean and standard error over seeds, drop verdicts, regret tables and the paper's claims.

The root is ``$SMAC_RESULTS`` (default ``results/reduced``; a relative path is taken from the
repository root) as the experiment runner writes it (README, "Experiments")::

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

The landscape files are read by their commands' modules (``landscape.interpolate``,
``landscape.surface``, ``landscape.trajectory``), the figures drawn by ``landscape.plot``, the
paper's numbers are ``smac_core.paper``'s and the statistics ``smac_core.metrics``'s.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from landscape.interpolate import Interpolation, interpolation_over_seeds, load_interpolations
from landscape.plot import (
    COLORS,
    PlanePoint,
    draw_band,
    draw_interpolations,
    draw_surface,
    draw_trajectory,
)
from landscape.surface import RewardPlane, load_planes, plane_over_seeds
from landscape.trajectory import Trajectory, TrajectoryJob, load_trajectories
from landscape.valley import Curve
from smac_core import paper
from smac_core.checkpoint import read_metadata
from smac_core.errors import SmacError
from smac_core.metrics import (
    EvalCurve,
    Run,
    TransferDrop,
    cumulative_regret,
    load_run,
    read_evaluations,
    standard_error,
    transfer_drop,
    transfer_drop_over_seeds,
)
from smac_core.paper import default_optimizer, display, paper_row, regret_claims, regret_comparison
from smac_core.rundir import read_config

# read by the notebooks from here: landscape results and their means over seeds, the paper's
# names, rows and regret checks
__all__ = ["Interpolation", "Plane", "Trajectory", "display", "interpolation_over_seeds",
           "load_interpolations", "load_planes", "load_trajectories", "paper_row",
           "plane_over_seeds", "regret_claims", "regret_comparison"]
Plane = RewardPlane

RESULTS_ENV = "SMAC_RESULTS"
DEFAULT_ROOT = "results/reduced"
REPO = Path(__file__).resolve().parents[1]
REDUCED_SPEC = "notebooks/specs/reduced.yaml"
PLOTLY_RENDERER = "plotly_mimetype+notebook_connected"  # keeps plotly.js out of the outputs


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
        return self.optimizer == default_optimizer(self.offline_algorithm)


def _finished(run_dir: Path, steps: int) -> bool:
    final = run_dir / "checkpoints" / "final"
    if not final.is_dir():
        return False
    return int(read_metadata(final)["step"]) >= steps


def _record(run_dir: Path) -> RunRecord:
    config = read_config(run_dir)
    seed_dir = run_dir.parent
    offline_dir = seed_dir / "offline"
    offline = config if run_dir == offline_dir else read_config(offline_dir)
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
              f"  python -m studies.experiments run {REDUCED_SPEC} --max-minutes 8\n"
              f"  python -m studies.experiments status {REDUCED_SPEC}\n"
              f"  python -m studies.experiments landscapes {REDUCED_SPEC} --max-minutes 8\n"
              f"  python -m studies.experiments export {REDUCED_SPEC} --to {DEFAULT_ROOT}\n"
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
    return SeedCurve(steps, per_seed.mean(axis=0), standard_error(per_seed), len(curves),
                     curves[0].metric)


def learning_curves(study: Study, task: str, label: str, online_label: str
                    ) -> tuple[SeedCurve, SeedCurve] | None:
    """Offline and online evaluation curves over the seeds that have both runs finished."""
    online = study.select("online", task, label, online_label)
    if not online:
        return None
    offline_dirs = [r.path.parent / "offline" for r in online]
    return (seed_mean([read_evaluations(d, "offline") for d in offline_dirs]),
            seed_mean([read_evaluations(r.path, "online") for r in online]))


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
            draw_band(ax, offline.steps, offline.mean, offline.se, color,
                      f"{display(label)} ({online.seeds} seeds)")
            draw_band(ax, switch + online.steps, online.mean, online.se, color)
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
    return paper.transfer_claims([(r.cell.task, r.offline_algorithm, r.online_algorithm,
                                   r.drop.verdict) for r in rows])


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


# ------------------------------------------------------------------------------- interpolations
def plot_interpolations(curves: dict[tuple[str, str], tuple[Curve, str]], unit: str
                        ) -> Figure:
    """One panel per task: every method's curve, mean +- s.e., the checkpoints dashed."""
    tasks = sorted({task for task, _ in curves})
    figure = Figure(figsize=(5.5 * len(tasks), 4))
    axes = figure.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks, strict=True):
        draw_interpolations(ax, [curve for (t, _), (curve, _) in curves.items() if t == task],
                            unit)
        ax.set(title=f"{task}: pre-trained (t=0) -> SAC fine-tuned (t=1)")
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
    return paper.valley_claims({key: curve.verdict.verdict for key, (curve, _) in curves.items()},
                               between)


# ---------------------------------------------------------------------------------------- planes
PLANE_ANCHORS = (PlanePoint(0, 0, "θ pre-trained", "anchor"), PlanePoint(1, 0, "θ1", "anchor"),
                 PlanePoint(0, 1, "θ2", "anchor"))


def plot_plane(plane: RewardPlane) -> Figure:
    """Filled contours of a plane with its three checkpoints marked."""
    figure = Figure(figsize=(5, 4))
    ax = figure.subplots()
    draw_surface(figure, ax, plane.x, plane.y, plane.mean, plane.unit, PLANE_ANCHORS,
                 ("x (θ1 − θ)", "y (θ2 − θ)"))
    seeds = "mean over seeds" if plane.seed < 0 else f"seed {plane.seed}"
    ax.set(title=f"{display(plane.label)}, {plane.task}, {seeds}")
    return figure


# ---------------------------------------------------------------------------------- trajectories
def trajectory_jobs(study: Study, online: tuple[str, str] = ("sac", "td3bc")
                    ) -> list[TrajectoryJob]:
    """One job per (task, label, seed) with both online runs finished."""
    jobs = []
    for offline in study.select("offline"):
        seed_dir = offline.path.parent
        members = [study.select("online", offline.task, offline.label, label) for label in online]
        if all(any(r.path.parent == seed_dir for r in member) for member in members):
            out = study.root / "landscapes/trajectories" / offline.task / offline.label \
                / seed_dir.name
            jobs.append(TrajectoryJob(offline.task, offline.label, offline.seed,
                                      (offline.path, *(seed_dir / f"online-{o}" for o in online)),
                                      out))
    return jobs


def plot_trajectory(trajectory: Trajectory) -> Figure:
    """One panel per embedding, checkpoints coloured by reward, each run joined in order."""
    figure = Figure(figsize=(5.5 * len(trajectory.embeddings), 4.5))
    draw_trajectory(figure, trajectory.embeddings, trajectory.reward,
                    [Path(run).name for run in trajectory.runs], trajectory.unit)
    figure.suptitle(f"{display(trajectory.label)}, {trajectory.task}, seed {trajectory.seed}")
    return figure


# ---------------------------------------------------------------------------------------- compute
def compute_seconds(root: Path) -> dict[str, float]:
    """Process wall time (s) under ``root``, from the records the experiment runner writes:
    training runs by "<phase> <algorithm>" (every attempt in ``runner.json``) and "landscapes"
    (every ``command.json``). Each process uses one thread (``--threads 1``): with no more
    processes than cores these are core-seconds; with more, they overstate core time."""
    from datetime import datetime

    from studies.experiments.landscapes import LANDSCAPE_RECORD
    from studies.experiments.state import run_attempts

    def seconds(record: dict[str, Any]) -> float:
        if "ended" not in record:
            return 0.0
        return (datetime.fromisoformat(record["ended"])
                - datetime.fromisoformat(record["started"])).total_seconds()

    totals: dict[str, float] = defaultdict(float)
    for record in find_runs(root):
        if attempts := run_attempts(record.path):  # none: run by hand, not by the runner
            totals[f"{record.phase} {record.algorithm}"] += sum(map(seconds, attempts))
    for command in (root.rglob(LANDSCAPE_RECORD) if root.is_dir() else []):
        totals["landscapes"] += seconds(json.loads(command.read_text()))
    return dict(sorted(totals.items()))


# ------------------------------------------------------------------------- datasets, optimizers
def dataset_sizes(root: Path) -> dict[str, int]:
    """Transitions of each dataset, from the ``export.json`` files under ``root`` (written by
    ``python -m studies.experiments export``), else from the local Minari store."""
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
