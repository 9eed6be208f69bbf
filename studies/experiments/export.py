"""What a study shows: ``export`` (a lean copy of what the notebooks read) and ``status`` (a
table of every run's state).

``export SPEC --to DIR`` copies, keeping the layout: per finished run its config, metrics log,
runner record and a policy-only final checkpoint; per finished landscape its JSON/CSV and
command record; the runner's spec copies and invocation log (not the cluster backend's folder);
and ``export.json`` (spec hash, commit, dataset sizes).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smac_core.errors import SmacError
from smac_core.files import output_directory
from studies.experiments.grid import expand_grid
from studies.experiments.landscapes import landscape_jobs
from studies.experiments.slurm import SLURM_DIR
from studies.experiments.spec import ExperimentSpec
from studies.experiments.state import (
    RUNNER_DIR,
    STUDY_MODULE,
    command_record,
    now,
    run_state,
    source_record,
    write_json,
)

# the owner (smac_core.files) of export directories; the exports made when the runner was
# smac_core.experiments, owned by that name, are its own too (updated in place)
EXPORT_TOOL = f"{STUDY_MODULE} export"
EXPORT_TOOL_ALIASES = ("smac_core.experiments export",)
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
    with output_directory(dest, EXPORT_TOOL, [f"python -m {STUDY_MODULE}", *invocation],
                          flag="--to", legacy=("export.json",), aliases=EXPORT_TOOL_ALIASES):
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
    runner_dir = spec.root / RUNNER_DIR
    shutil.copytree(runner_dir, dest / RUNNER_DIR, dirs_exist_ok=True,  # not submitit's folder
                    ignore=lambda folder, names: [SLURM_DIR] * (Path(folder) == runner_dir))
    write_json(dest / "export.json", {"spec": str(spec.path), "spec_sha256": spec.sha256,
                                      "root": str(spec.root), "exported": now(),
                                      **command_record(STUDY_MODULE, invocation),
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

