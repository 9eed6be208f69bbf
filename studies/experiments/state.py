"""What a study knows about its runs and what it writes down: the state of a run directory
(``run_state``) and the records (``ROOT/<run>/runner.json``: every attempt with its command, git
commit, exit status and outcome; ``ROOT/runner/spec-<sha256[:12]>.<ext>`` and
``ROOT/runner/invocations.jsonl``: the spec and every invocation of the study command).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from smac_core.cli import command_line
from smac_core.errors import SmacError
from smac_core.files import atomic_write_text
from smac_core.rundir import METRICS_FILE, RUN_RECORD, read_metrics
from studies.experiments.grid import RunPlan
from studies.experiments.spec import ExperimentSpec

STUDY_MODULE = "studies.experiments"  # python -m STUDY_MODULE, as the records name it
RUNNER_DIR = "runner"


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


def run_attempts(run_dir: Path) -> list[dict[str, Any]]:
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
    attempts = run_attempts(run_dir)
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
def now() -> str:
    """The time as the records hold it (UTC, ISO 8601, seconds)."""
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


def write_json(path: Path, value: Any) -> None:
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
    row = {"time": now(), **command_record(STUDY_MODULE, argv),
           "cwd": str(Path.cwd()), "spec": str(spec.path), "spec_copy": copy.name,
           "spec_sha256": spec.sha256, **source_record(), **summary}
    with open(runner_dir / "invocations.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")

