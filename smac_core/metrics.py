"""Transfer metrics of offline-to-online runs: normalised score, drop at transfer, regret, and the
paper's min-max normalised regret table. CLI: ``python -m smac_core.metrics RUN_DIR ... [--json]``.

Definitions (in the curve's units: per-episode normalised scores s, 100 = expert, when the run
logged them, i.e. D4RL's ``100 (R - R_random) / (R_expert - R_random)`` on dense tasks and the
success rate in % on binary ones; raw episode returns when the env has no reference returns):

- **Evaluation curve**: the evaluation rows of a run's ``metrics.jsonl`` (steps, per-episode values,
  their mean and standard error per evaluation). Episode i of every evaluation of a run resets
  with the same seed (``smac_core.runs.evaluate``), so evaluations are *paired* episode by episode.
- **Offline final score** (the baseline of the drop): the online run's step-0 evaluation, which
  evaluates exactly the handed-over policy with the online run's own protocol. A run without a
  step-0 evaluation falls back on the last evaluation of the offline run its config names in
  ``"from"``.
- **Drop at transfer**: baseline mean minus the mean of the lowest evaluation in the early window
  ``0 < step <= window`` (default: the first 10% of the evaluated fine-tuning steps), with its
  standard error and a one-sided paired t-test that it is above zero:
  - one run: over evaluation episodes, on the per-episode differences
    ``d_i = baseline_i - window_evaluation_i`` (episode i paired with episode i, n episodes):
    ``drop = mean(d)``, ``se = std(d, ddof=1) / sqrt(n)``, t with n - 1 degrees of freedom. Both
    evaluations must have the same number of episodes. (Pairing also stays valid when the
    baseline comes from an offline run evaluated on other seeds: differences of independent
    episodes are still independent across i, the test only loses power.)
  - a group of seeds: over seeds, on each seed's dip ``baseline mean - evaluation mean`` (each
    seed paired with its own baseline), t with seeds - 1 degrees of freedom.
  Verdict: the deepest dip's one-sided p-value ``p_raw`` is Bonferroni-corrected for the K window
  evaluations it was picked from, ``p_value = min(1, K p_raw)``: "drop" when ``p_value < alpha``
  (0.05), else "smooth". A t-test rather than a z-test because evaluations use few episodes
  (often 10) and groups few seeds (3-5); the correction because the minimum of K noisy
  evaluations lies below the baseline by chance even when nothing dropped.
- **Regret** (Cal-QL's cumulative regret, in normalised points): the mean shortfall of the curve
  from the fixed reference score 100 over the online phase,
  ``(1 / (T - T0)) * integral_{T0}^{T} (100 - s(t)) dt``, s(t) the mean score of the evaluation at
  step t, the integral a trapezoid over the evaluation steps from the first (T0) to the last (T),
  so a schedule that evaluates densely early on weighs each part of fine-tuning by its duration,
  not by its number of evaluations. 100 for a curve at 0, 0 for a curve at 100 (negative above
  expert). Undefined for raw returns (no reference): ``cumulative_regret`` refuses them.
- **Regret table** (the paper's): per task, the mean regret over seeds of every (offline, online)
  cell, min-max normalised across that task's cells (0 = the task's best cell, 1 = its worst; all
  cells 0 when they tie), then averaged over the tasks each cell has. The paper's own numbers are
  in ``smac_core.paper``.
- **Mean +- standard error** and **t-tests**, one implementation each for the metrics, the
  landscapes and the notebooks: ``standard_error`` (std with ddof=1 / sqrt(n),
  ``scipy.stats.sem``; NaN for one value) and ``one_sided_t_test`` (Student's t, ``scipy.stats``).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smac_core.errors import SmacError, cli_entry
from smac_core.files import read_jsonl
from smac_core.paper import (
    OFFLINE_ORDER,
    ONLINE_ORDER,
    PAPER_REGRET_TABLE,  # noqa: F401  (its former home; tests import it)
    display,
)
from smac_core.rundir import CONFIG_FILE, METRICS_FILE, read_config, run_source
from smac_core.tasks import dataset_label

DEFAULT_WINDOW_FRACTION = 0.1
DEFAULT_ALPHA = 0.05
REGRET_REFERENCE = 100.0  # the normalised score regret is measured from (expert = 100)



def standard_error(values: np.ndarray | Sequence[float], axis: int = 0) -> Any:
    """Standard error of the mean along ``axis``: std (ddof=1) / sqrt(n), ``scipy.stats.sem``;
    NaN where there is a single value (no spread to estimate it from)."""
    from scipy import stats  # here: the command lines parse their flags without scipy

    values = np.asarray(values, dtype=np.float64)
    if values.shape[axis] < 2:
        return np.full(np.delete(values.shape, axis), math.nan)[()]
    return stats.sem(values, axis=axis)


def mean_and_se(values: np.ndarray | Sequence[float], axis: int = 0) -> tuple[Any, Any]:
    """Mean along ``axis`` and its ``standard_error``."""
    values = np.asarray(values, dtype=np.float64)
    return values.mean(axis=axis), standard_error(values, axis)


def one_sided_t_test(samples: np.ndarray) -> float:
    """p-value of the one-sample t-test that the mean of ``samples`` (n,) is above 0: t = mean /
    ``standard_error`` against Student's t with n - 1 degrees of freedom (``scipy.stats.t``;
    ``scipy.stats.ttest_1samp(samples, 0, alternative="greater")`` without its warnings on the
    nearly equal episodes of near-deterministic envs). Samples without spread (all equal) make
    the mean exact: 0 when it is above 0, else 1."""
    from scipy import stats

    mean, se = mean_and_se(samples)
    if not se > 0:
        return 0.0 if mean > 0 else 1.0
    return float(stats.t.sf(mean / se, len(samples) - 1))


@dataclass(frozen=True)
class EvalCurve:
    """A policy's evaluations over training: ``steps`` (E,) env steps, strictly increasing;
    ``episodes[e]`` the per-episode values (n_e,) of evaluation e; ``metric`` "score" (normalised)
    or "return"."""

    steps: np.ndarray
    episodes: tuple[np.ndarray, ...]
    metric: str = "score"

    def __post_init__(self) -> None:
        if len(self.steps) != len(self.episodes) or len(self.steps) == 0:
            raise SmacError(f"an evaluation curve needs one episode array per step, got "
                            f"{len(self.steps)} steps and {len(self.episodes)} evaluations")
        if np.any(np.diff(self.steps) <= 0):
            raise SmacError(f"evaluation steps must increase strictly, got {list(self.steps)}")
        for step, values in zip(self.steps, self.episodes, strict=True):
            if values.size == 0 or not np.all(np.isfinite(values)):
                raise SmacError(f"evaluation at step {step} has no episodes or non-finite "
                                f"values: {values.tolist()}")

    @property
    def mean(self) -> np.ndarray:
        """(E,) mean over episodes of each evaluation."""
        return np.array([values.mean() for values in self.episodes])

    @property
    def se(self) -> np.ndarray:
        """(E,) standard error of each evaluation's mean; NaN for a single episode."""
        return np.array([standard_error(values) for values in self.episodes])


def _is_metrics_row(row: Any) -> bool:
    return isinstance(row, dict) and isinstance(row.get("step"), int)


def read_evaluations(run_dir: str | Path, phase: str | None = None) -> EvalCurve:
    """The evaluation curve in ``run_dir/metrics.jsonl`` (rows with "eval_returns"), optionally
    only one ``phase``. Per-episode "eval_scores" when every row has them, else "eval_returns".
    A step logged twice (a resumed run re-evaluating) keeps its later row."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise SmacError(f"{run_dir} has no {METRICS_FILE}: not a run directory")
    rows = read_jsonl(path, _is_metrics_row, "a metrics row with an integer 'step'")
    by_step = {row["step"]: row for row in rows
               if "eval_returns" in row and (phase is None or row.get("phase") == phase)}
    if not by_step:
        which = f"{phase} evaluation" if phase else "evaluation"
        raise SmacError(f"{path} has no {which} rows (rows with 'eval_returns')")
    steps = sorted(by_step)
    rows = [by_step[step] for step in steps]
    metric = "score" if all(row.get("eval_scores") is not None for row in rows) else "return"
    key = f"eval_{metric}s"
    try:
        episodes = tuple(np.asarray(row[key], dtype=np.float64).reshape(-1) for row in rows)
    except (TypeError, ValueError):
        raise SmacError(f"{path}: '{key}' must be lists of numbers") from None
    return EvalCurve(np.asarray(steps, dtype=np.int64), episodes, metric)


@dataclass(frozen=True)
class Run:
    """An online fine-tuning run: its evaluation curve and the offline score it started from.

    ``baseline``: per-episode values of the offline final score (see the module docstring),
    ``baseline_source`` says which evaluation they are."""

    path: Path
    offline_algorithm: str
    online_algorithm: str
    task: str  # the task's name on its own dataset, else the dataset id (tasks.dataset_label)
    seed: int | None
    curve: EvalCurve
    baseline: np.ndarray
    baseline_source: str


def _offline_run_dir(source: Path) -> Path:
    """The run directory of an online run's "from": a run directory or one of its checkpoints."""
    return source.parent.parent if source.parent.name == "checkpoints" else source


def load_run(run_dir: str | Path) -> Run:
    """Read an online run directory (config.json + metrics.jsonl, the format of README,
    "Run directory")."""
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    config = read_config(run_dir)
    if "from" not in config:
        raise SmacError(f"{run_dir} is not an online run ({CONFIG_FILE} has no 'from'); the "
                        f"transfer metrics need online runs started from an offline checkpoint")
    missing = [key for key in ("algorithm", "from_algorithm") if key not in config]
    task = config.get("task")
    if task is None and "env" in config:  # runs from before config.json recorded the label
        task = dataset_label(config.get("dataset_id"), config["env"])
    if task is None:
        missing.append("task (or env)")
    if missing:
        raise SmacError(f"{config_path} lacks {', '.join(missing)}")
    curve = read_evaluations(run_dir, phase="online")
    if curve.steps[0] == 0:
        baseline, source = curve.episodes[0], "online step 0"
    else:
        offline_dir = _offline_run_dir(run_source(run_dir, config))
        if not (offline_dir / METRICS_FILE).is_file():
            raise SmacError(f"{run_dir} has no step-0 evaluation and its offline run "
                            f"{offline_dir} (from 'from') has no {METRICS_FILE}")
        offline = read_evaluations(offline_dir, phase="offline")
        if offline.metric != curve.metric:
            raise SmacError(f"{run_dir} logs {curve.metric}s but its offline run {offline_dir} "
                            f"logs {offline.metric}s")
        baseline, source = offline.episodes[-1], f"offline final (step {offline.steps[-1]})"
    return Run(run_dir, str(config["from_algorithm"]), str(config["algorithm"]), str(task),
               config.get("seed"), curve, baseline, source)


@dataclass(frozen=True)
class TransferDrop:
    """Offline final score minus the lowest online evaluation of the early window (curve units;
    negative when the curve only rose), its standard error, and the verdict."""

    drop: float
    se: float
    step: int           # step of the lowest evaluation in the window
    window: int         # the window: evaluations with 0 < step <= window
    p_value: float      # min(1, evaluations * p_raw): Bonferroni-corrected
    verdict: str        # "drop" | "smooth"
    p_raw: float        # one-sided p-value of the deepest dip alone
    evaluations: int    # K, the window's evaluations the deepest dip was picked from

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (all finite)."""
        return asdict(self)


def default_window(steps: np.ndarray) -> int:
    """10% of the last evaluated step, and at least the first evaluation after step 0 (so that
    a short run still has a window)."""
    after_zero = steps[steps > 0]
    first = int(after_zero[0]) if after_zero.size else 0
    return max(int(DEFAULT_WINDOW_FRACTION * steps[-1]), first)


def _window_indices(steps: np.ndarray, window: int | None) -> tuple[np.ndarray, int]:
    window = default_window(steps) if window is None else window
    indices = np.flatnonzero((steps > 0) & (steps <= window))
    if indices.size == 0:
        raise SmacError(f"no evaluation after step 0 within the window of {window} steps "
                        f"(evaluation steps {steps.tolist()[:8]}...); pass a larger --window")
    return indices, window


def _deepest_dip(samples: np.ndarray, steps: np.ndarray, window: int,
                 alpha: float) -> TransferDrop:
    """Test the largest of K mean dips, each over its samples (K, n), with a one-sided t-test,
    Bonferroni-corrected by K."""
    dips, ses = mean_and_se(samples, axis=1)
    k = int(np.argmax(dips))
    dip, se = float(dips[k]), float(ses[k])
    p_one_sided = one_sided_t_test(samples[k])
    p_value = min(1.0, dips.size * p_one_sided)  # Bonferroni: K * p
    return TransferDrop(dip, se, int(steps[k]), window, p_value,
                        "drop" if p_value < alpha else "smooth", p_one_sided, dips.size)


def transfer_drop(curve: EvalCurve, baseline: np.ndarray | None = None, window: int | None = None,
                  alpha: float = DEFAULT_ALPHA) -> TransferDrop:
    """Drop at transfer of one run: paired t-test over evaluation episodes.

    ``baseline``: per-episode values (n,) of the offline final score; default the step-0
    evaluation. Every window evaluation must also have n episodes: episode i is paired with the
    baseline's episode i (same reset seed). ``window``: env steps of fine-tuning searched;
    default 10% of the last evaluated step."""
    if baseline is None:
        if curve.steps[0] != 0:
            raise SmacError(f"the curve has no step-0 evaluation (first step {curve.steps[0]}): "
                            f"pass the offline final evaluation as baseline")
        baseline = curve.episodes[0]
    indices, window = _window_indices(curve.steps, window)
    for i in indices:
        if curve.episodes[i].size != baseline.size:
            raise SmacError(f"cannot pair evaluation episodes: the baseline has {baseline.size} "
                            f"episodes, the evaluation at step {curve.steps[i]} has "
                            f"{curve.episodes[i].size}; the paired test needs the same "
                            f"episodes in every evaluation")
    n = baseline.size
    if n < 2:
        raise SmacError(f"a drop's standard error over episodes needs at least 2 evaluation "
                        f"episodes per evaluation, these have {n}: train with --eval-episodes 2 "
                        f"or more (with one, only a drop over several seeds can be tested)")
    differences = baseline - np.stack([curve.episodes[i] for i in indices])  # d_ki, (K, n)
    return _deepest_dip(differences, curve.steps[indices], window, alpha)


def transfer_drop_over_seeds(curves: Sequence[EvalCurve],
                             baselines: Sequence[np.ndarray] | None = None,
                             window: int | None = None,
                             alpha: float = DEFAULT_ALPHA) -> TransferDrop:
    """Drop at transfer of a group of seeds (same evaluation steps in the window), s.e. over seeds.

    Each seed's dip d_i(t) = baseline_i - mean_i(t) is paired with its own baseline (default its
    step-0 evaluation); the drop is the largest mean dip over the window; default window 10% of
    the shortest curve's last step."""
    if len(curves) < 2:
        raise SmacError(f"a standard error over seeds needs at least 2 runs, got {len(curves)}")
    if baselines is None:
        if any(curve.steps[0] != 0 for curve in curves):
            raise SmacError("every curve needs a step-0 evaluation, or pass baselines")
        baselines = [curve.episodes[0] for curve in curves]
    if len({curve.metric for curve in curves}) > 1:
        raise SmacError("the seeds' curves mix normalised scores and raw returns")
    if window is None:
        window = min(default_window(curve.steps) for curve in curves)
    indices, window = _window_indices(curves[0].steps, window)
    steps = curves[0].steps[indices]
    per_seed_dips = []
    for seed_index, (curve, baseline) in enumerate(zip(curves, baselines, strict=True)):
        seed_indices, _ = _window_indices(curve.steps, window)
        if not np.array_equal(curve.steps[seed_indices], steps):
            raise SmacError(f"run {seed_index} evaluates at steps {curve.steps[seed_indices]} "
                            f"in the window, run 0 at {steps}: seeds must share the schedule")
        per_seed_dips.append(baseline.mean() - curve.mean[seed_indices])
    per_seed_dips = np.stack(per_seed_dips)                              # (seeds, K)
    return _deepest_dip(per_seed_dips.T, steps, window, alpha)


def cumulative_regret(curve: EvalCurve) -> float:
    """Mean shortfall (normalised points) from the reference score 100 over the curve's steps:
    (1 / (T - T0)) * integral_{T0}^{T} (100 - s(t)) dt, trapezoid over the evaluation steps."""
    if curve.metric != "score":
        raise SmacError(f"regret is defined on normalised scores (reference 100 = expert), but "
                        f"this curve holds raw {curve.metric}s: the env has no reference "
                        f"returns (or the run did not log eval_scores)")
    if curve.steps.size < 2:
        raise SmacError("regret needs at least two evaluations")
    shortfall = REGRET_REFERENCE - curve.mean                                # 100 - s(t)
    area = np.sum(0.5 * (shortfall[1:] + shortfall[:-1]) * np.diff(curve.steps))
    return float(area / (curve.steps[-1] - curve.steps[0]))


def normalized_regret_table(
        regrets: Mapping[tuple[str, str, str], Sequence[float]]) -> dict[str, dict[str, float]]:
    """The paper's table from per-seed regrets keyed by (offline algo, online algo, task).

    Per task, each cell's mean over seeds is min-max normalised across the task's cells; the
    table averages that over the tasks a cell has. Returns offline -> online -> value."""
    cell_means: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    for (offline, online, task), values in regrets.items():
        if len(values) == 0:
            raise SmacError(f"no regrets for ({offline}, {online}, {task})")
        cell_means[task][offline, online] = float(np.mean(values))
    normalized: dict[tuple[str, str], list[float]] = defaultdict(list)
    for means in cell_means.values():
        low, high = min(means.values()), max(means.values())
        for cell, value in means.items():
            normalized[cell].append((value - low) / (high - low) if high > low else 0.0)
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for (offline, online), values in normalized.items():
        table[offline][online] = float(np.mean(values))
    return dict(table)


def _ordered(names: Sequence[str], order: Sequence[str]) -> list[str]:
    return [name for name in order if name in names] + sorted(set(names) - set(order))


def format_table(table: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown table: offline algorithms as rows, online algorithms as columns, 3 decimals."""
    rows = _ordered(list(table), OFFLINE_ORDER)
    columns = _ordered(sorted({online for cells in table.values() for online in cells}),
                       ONLINE_ORDER)
    lines = ["| offline \\ online | " + " | ".join(display(c) for c in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for row in rows:
        cells = [f"{table[row][c]:.3f}" if c in table[row] else "-" for c in columns]
        lines.append(f"| {display(row)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _drop_text(drop: TransferDrop) -> str:
    return (f"{drop.drop:.2f} ± {drop.se:.2f} @ {drop.step} | {drop.verdict} "
            f"(p={drop.p_value:.3g}, window {drop.window})")


def run_regret(run: Run) -> float | None:
    """The run's regret, None when it logged raw returns (no reference score: undefined)."""
    return cumulative_regret(run.curve) if run.curve.metric == "score" else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m smac_core.metrics",
        description="Drop at transfer and regret of online fine-tuning runs (definitions: "
                    "pydoc smac_core.metrics).")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="online run directories (config.json + metrics.jsonl)")
    parser.add_argument("--window", type=int, default=None,
                        help="early window in env steps searched for the drop "
                             "(default: 10%% of each run's last evaluated step)")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                        help="significance level of the drop verdict (default 0.05)")
    parser.add_argument("--table", action="store_true",
                        help="also give the drop over seeds per (offline, online, task) and the "
                             "paper's min-max normalised regret table")
    parser.add_argument("--json", action="store_true",
                        help="print strict JSON instead of markdown: per run the drop, its s.e., "
                             "step, window, K, p_raw, p_value (Bonferroni), verdict and regret "
                             "(null when undefined); with --table also over_seeds and "
                             "regret_table")
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.window is not None and args.window <= 0:
        raise SmacError(f"--window must be a positive number of steps, got {args.window}")
    if not 0 < args.alpha < 1:
        raise SmacError(f"--alpha must be in (0, 1), got {args.alpha}")

    runs = [load_run(path) for path in args.runs]
    drops = [transfer_drop(run.curve, run.baseline, args.window, args.alpha) for run in runs]
    regrets = [run_regret(run) for run in runs]
    groups: dict[tuple[str, str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.offline_algorithm, run.online_algorithm, run.task].append(run)
    seed_drops = {cell: transfer_drop_over_seeds([run.curve for run in group],
                                                 [run.baseline for run in group], args.window,
                                                 args.alpha)
                  for cell, group in sorted(groups.items()) if args.table and len(group) >= 2}
    cell_regrets: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for run, regret in zip(runs, regrets, strict=True):
        if regret is not None:
            cell_regrets[run.offline_algorithm, run.online_algorithm, run.task].append(regret)
    left_out = [str(run.path) for run, regret in zip(runs, regrets, strict=True) if regret is None]
    table = normalized_regret_table(cell_regrets) if args.table else {}

    if args.json:
        per_run = [{"run": str(run.path), "offline_algorithm": run.offline_algorithm,
                    "online_algorithm": run.online_algorithm, "task": run.task, "seed": run.seed,
                    "metric": run.curve.metric, "baseline": run.baseline_source,
                    **drop.to_dict(), "regret": regret}
                   for run, drop, regret in zip(runs, drops, regrets, strict=True)]
        report: dict[str, Any] = {"alpha": args.alpha, "regret_reference": REGRET_REFERENCE,
                                  "runs": per_run}
        if args.table:
            report["over_seeds"] = [
                {"offline_algorithm": offline, "online_algorithm": online, "task": task,
                 "seeds": len(groups[offline, online, task]), **drop.to_dict()}
                for (offline, online, task), drop in seed_drops.items()]
            report["regret_table"] = table
            report["regret_left_out"] = left_out
        print(json.dumps(report, indent=1, allow_nan=False))
        return 0

    print("| run | offline | online | task | seed | metric | baseline | drop ± s.e. @ step "
          "| verdict | regret |")
    print("|---" * 10 + "|")
    for run, drop, regret in zip(runs, drops, regrets, strict=True):
        regret_text = "n/a (raw returns)" if regret is None else f"{regret:.3f}"
        print(f"| {run.path} | {run.offline_algorithm} | {run.online_algorithm} | {run.task} "
              f"| {run.seed} | {run.curve.metric} | {run.baseline_source} | {_drop_text(drop)} "
              f"| {regret_text} |")
    if not args.table:
        return 0
    print("\nDrop over seeds (cells with at least 2 seeds):\n")
    print("| offline | online | task | seeds | drop ± s.e. @ step | verdict |")
    print("|---" * 6 + "|")
    for (offline, online, task), drop in seed_drops.items():
        print(f"| {offline} | {online} | {task} | {len(groups[offline, online, task])} "
              f"| {_drop_text(drop)} |")
    print("\nRegret, min-max normalised per task, averaged over tasks:\n")
    print(format_table(table))
    if left_out:
        print(f"\nLeft out of the regret table (raw returns, regret undefined): "
              f"{', '.join(left_out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
