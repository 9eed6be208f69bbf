"""``python -m studies.experiments {run,status,landscapes,export} SPEC``: a grid of offline ->
online runs from one spec file, run in resumable chunks, locally or on a Slurm cluster, then the
landscapes of the finished runs, then a lean copy of what the notebooks read.

    python -m studies.experiments run notebooks/specs/reduced.yaml --jobs 4 --max-minutes 8
    python -m studies.experiments status notebooks/specs/reduced.yaml
    python -m studies.experiments landscapes notebooks/specs/reduced.yaml --max-minutes 8
    python -m studies.experiments export notebooks/specs/reduced.yaml --to results/reduced
    python -m studies.experiments run notebooks/specs/reduced.yaml --backend slurm \\
        --slurm-partition gpu --slurm-gpus 1 --slurm-cpus 4 --slurm-minutes 240

SPEC (YAML or JSON; ``notebooks/specs/reduced.yaml`` documents every key; ``spec``) names the
tasks, seeds, offline algorithms (each with the online algorithms fine-tuned from it), the two
phases' step budgets and evaluation schedules, ``--set`` overrides and the landscape settings.

Layout under the spec's ``root`` (one ``smac_core.train`` run directory per run)::

    ROOT/<task>/<offline label>/seed<k>/offline
    ROOT/<task>/<offline label>/seed<k>/online-<online label>      (--from the offline run)
    ROOT/landscapes/interpolation/<task>/<offline label>/seed<k>/  (landscape.interpolate)
    ROOT/landscapes/planes/<task>/<offline label>/seed<k>/         (landscape.surface)
    ROOT/landscapes/trajectories/<task>/<offline label>/seed<k>/   (landscape.trajectory)
    ROOT/runner/spec-<sha256[:12]>.<ext>, ROOT/runner/invocations.jsonl
    ROOT/runner/slurm/                                  (submitit's files, --backend slurm)

Training runs are ``python -m smac_core.train ... --resume`` commands run in ROOT (their
``--out`` and ``--from`` are relative to it, so ROOT can be moved), at most ``--jobs`` at a
time, an online run once its offline run has its final checkpoint. A run whose final checkpoint
holds the spec's step count is skipped; any other resumes from its latest checkpoint. Each run
directory also gets ``runner.log`` (the command's output) and ``runner.json`` (every attempt:
command, git commit, exit status). At ``--max-minutes`` the runner sends SIGTERM to its runs
(which then checkpoint), waits up to ``--grace-seconds`` and exits 0 with a summary; exit 1
means a run failed (its log is named). A stopped invocation is continued by running the same
command again.

Where the commands run (``--backend``): ``local`` processes of this machine
(``backends.LocalBackend``), or ``slurm``, one Slurm job per command through submitit
(``slurm.SlurmBackend``), with the same commands, records and skip/resume semantics.

Modules: ``spec`` (the spec file), ``grid`` (its runs), ``state`` (run state and records),
``backends`` and ``slurm`` (where commands run), ``runner`` (the scheduler loop),
``landscapes``, ``export`` (export and status), ``cli``.
"""

from smac_core.rundir import RUN_RECORD
from studies.experiments.backends import Backend, Handle, Job, LocalBackend, child_environment
from studies.experiments.cli import build_parser, check_datasets, main
from studies.experiments.export import ExportSummary, export_results, format_status
from studies.experiments.grid import RunPlan, SeedGroup, expand_grid, seed_groups, select
from studies.experiments.landscapes import (
           LandscapeJob,
           LandscapeSummary,
           landscape_jobs,
           run_landscapes,
)
from studies.experiments.runner import Runner, RunnerSummary, Scheduler, train_job
from studies.experiments.slurm import SlurmBackend
from studies.experiments.spec import ExperimentSpec, load_spec
from studies.experiments.state import (
           RunState,
           command_record,
           record_invocation,
           run_state,
           source_record,
)

__all__ = ["RUN_RECORD", "Backend", "ExperimentSpec", "ExportSummary", "Handle", "Job",
           "LandscapeJob", "LandscapeSummary", "LocalBackend", "RunPlan", "RunState", "Runner",
           "RunnerSummary", "Scheduler", "SeedGroup", "SlurmBackend", "build_parser",
           "check_datasets", "child_environment", "command_record", "expand_grid",
           "export_results", "format_status", "landscape_jobs", "load_spec", "main",
           "record_invocation", "run_landscapes", "run_state", "seed_groups", "select",
           "source_record", "train_job"]
