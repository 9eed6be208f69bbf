"""The run directory format (``python -m smac_core.train --out``), owned here: what each file
holds, writing and checking ``config.json`` (the resolved ``RunSpec``), appending to and reading
``metrics.jsonl``. Light (no torch; the checkpoint format is imported only to find the checkpoint
a run resumes from), so that command lines and the experiment runner read runs at once.

A run directory::

    RUN/config.json        the resolved ``RunSpec`` (command, algorithm, agent config, env, ...)
    RUN/metrics.jsonl      one JSON object per line: evaluation rows and training rows
    RUN/checkpoints/step_<N>/, RUN/checkpoints/final/   (``smac_core.checkpoint`` format)
    RUN/tensorboard/       with ``--tensorboard``: the metrics rows as TensorBoard scalars

Evaluation schedule (``eval_steps``): offline runs evaluate every ``eval_every`` steps; online
runs at step 0 (the handed-over policy), then every ``early_eval_every`` steps up to
``early_eval_until`` (the transfer drop happens in the first thousands of steps), then every
``eval_every`` steps; every run also evaluates at its last step.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from smac_core.errors import SmacError
from smac_core.files import atomic_write_text, output_directory

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
RUN_LOG, RUN_RECORD = "runner.log", "runner.json"  # the experiment runner's files of a run
RUN_OWNER = "smac_core.train"  # the owner of run directories (smac_core.files)
# files that mark a run directory written before owner records existed
RUN_DIR_MARKERS = (CONFIG_FILE, RUN_LOG, RUN_RECORD)
# config fields that must agree between a run directory and the command that resumes it
RESUME_MUST_MATCH = ("phase", "algorithm", "env", "dataset_id", "seed", "agent_config", "from")


# ---------------------------------------------------------------------------------------- spec
@dataclass
class RunSpec:
    """The resolved configuration of a run, written to ``config.json``."""

    phase: str                    # "offline" | "online"
    algorithm: str
    agent_config: dict[str, Any]
    env: str                      # task name or gymnasium id used for evaluation / interaction
    dataset_id: str | None
    seed: int
    steps: int                    # loop steps: env steps (online) or updates (offline)
    device: str = "cpu"
    eval_every: int = 10_000
    eval_episodes: int = 10
    early_eval_every: int = 500   # online only
    early_eval_until: int = 5_000  # online only
    checkpoint_every: int = 50_000
    log_every: int = 1_000
    start_steps: int = 0          # online only: uniform random actions, no updates
    mix: float | None = None      # online fine-tuning: offline fraction of each batch
    from_checkpoint: str | None = None
    from_algorithm: str | None = None
    handoff: dict[str, Any] | None = None  # online --from: rule and step-0 values (handoff.py)
    obs_normalization: bool = False
    task: str | None = None       # what it is labelled with: the task or dataset id (train.py)
    tensorboard: bool = False     # metrics rows also written to RUN/tensorboard/
    command: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["from"] = out.pop("from_checkpoint")
        out["schedule"] = describe_schedule(self)
        return out


def eval_steps(spec: RunSpec) -> set[int]:
    """The steps at which a run evaluates its policy (see the module docstring)."""
    steps = set(range(spec.eval_every, spec.steps + 1, spec.eval_every)) | {spec.steps}
    if spec.phase == "online":
        early_end = min(spec.early_eval_until, spec.steps)
        steps |= {0, *range(spec.early_eval_every, early_end + 1, spec.early_eval_every)}
    return steps


def describe_schedule(spec: RunSpec) -> str:
    text = f"evaluate every {spec.eval_every} steps and at step {spec.steps}"
    if spec.phase == "online":
        text = (f"evaluate at step 0, every {spec.early_eval_every} steps up to step "
                f"{spec.early_eval_until}, then {text}")
    return (f"{text} ({spec.eval_episodes} episodes); checkpoint every {spec.checkpoint_every} "
            f"steps, at SIGINT/SIGTERM and at the end (final)")


def _difference(stored: Any, wanted: Any) -> str:
    """'X, this command asks for Y', naming only the differing entries of two dicts."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        keys = sorted(k for k in stored.keys() | wanted.keys() if stored.get(k) != wanted.get(k))
        stored, wanted = ({k: d.get(k) for k in keys} for d in (stored, wanted))
    return f"{stored!r}, this command asks for {wanted!r}"


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """A run directory's config.json as a dict; ``SmacError`` when the directory has none or it
    is not a JSON object."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise SmacError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SmacError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise SmacError(f"{path} is not a run's config (a JSON object)")
    return config


def run_source(run_dir: str | Path, config: dict[str, Any] | None = None) -> Path:
    """Where the online run ``run_dir`` started from (its config's "from": an offline run
    directory or checkpoint). A relative "from" is read from the working directory, else from
    the nearest ancestor of ``run_dir`` that holds it: the experiment runner records --from
    relative to the study's root, so that a study (or its export) can be moved."""
    run_dir = Path(run_dir)
    config = read_config(run_dir) if config is None else config
    if "from" not in config or config["from"] is None:
        raise SmacError(f"{run_dir} is not an online run started from a checkpoint ({CONFIG_FILE}"
                        " has no 'from')")
    source = Path(config["from"])
    if source.is_absolute() or source.exists():
        return source
    for ancestor in run_dir.resolve().parents:
        if (ancestor / source).exists():
            return ancestor / source
    return source


def write_config(run_dir: Path, spec: RunSpec) -> None:
    atomic_write_text(run_dir / CONFIG_FILE, json.dumps(spec.to_json(), indent=2))


def prepare_run_dir(run_dir: Path, spec: RunSpec, resume: bool) -> Path | None:
    """Check ``run_dir`` (owned and locked by the caller) and write its config.json if it has
    none; the checkpoint to resume from (None: start afresh).

    Without ``resume`` the directory must not hold a run already. With ``resume`` the stored
    config must agree with ``spec`` on ``RESUME_MUST_MATCH`` (it is rewritten with ``spec``
    once the run has resumed, ``runs.Trainer.run``); the latest ``step_<N>`` checkpoint is
    returned (None when the run never wrote one).
    """
    config_path = run_dir / CONFIG_FILE
    if config_path.exists() and not resume:
        raise SmacError(f"{run_dir} already holds a run; pass --resume to continue it or choose "
                        "another --out")
    if resume and config_path.exists():
        stored = read_config(run_dir)
        wanted = json.loads(json.dumps(spec.to_json()))  # tuples -> lists, as stored
        for key in RESUME_MUST_MATCH:
            if stored.get(key) != wanted[key]:
                raise SmacError(f"cannot resume {run_dir}: its {key} is "
                                f"{_difference(stored.get(key), wanted[key])}")
    else:
        write_config(run_dir, spec)
    if not resume:
        return None
    from smac_core.checkpoint import METADATA_FILE, checkpoint_series, read_metadata

    final = run_dir / "checkpoints" / "final"
    series = checkpoint_series(run_dir)
    if (final / METADATA_FILE).is_file():
        latest = final  # a finished run: resuming re-saves it, or extends it to more --steps
    elif series:
        latest = series[-1][1]
    else:
        return None
    meta = read_metadata(latest)
    for key in ("algorithm", "env"):
        expected = getattr(spec, key)
        if meta.get(key) != expected:
            raise SmacError(f"cannot resume from {latest}: it was written by {key} "
                            f"{meta.get(key)!r}, this run uses {expected!r}")
    return latest


# ---------------------------------------------------------------------------------------- metrics


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All rows of a run's metrics.jsonl, without a partial last line (a process killed while
    writing it); ``SmacError`` naming the line when another line is not a JSON row."""
    path = Path(run_dir) / METRICS_FILE
    try:
        lines = path.read_text().split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise SmacError(f"cannot read {path}: {exc}") from exc
    rows = []
    for number, line in enumerate(lines[:-1], start=1):  # lines[-1] follows the last newline
        try:
            row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            row = {}
        if row is not None and not (isinstance(row, dict) and isinstance(row.get("step"), int)):
            raise SmacError(f"{path}, line {number}, is not a metrics row with a step; the log "
                            "is corrupted")
        if row is not None:
            rows.append(row)
    return rows


def require_tensorboard(flag: str = "--tensorboard") -> None:
    """``SmacError`` naming ``flag`` and the install command when the ``tensorboard`` package
    (an optional dependency) is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise SmacError(f"{flag} needs the tensorboard package: pip install tensorboard (or pip "
                        "install -e '.[tensorboard]')") from None


class TensorBoardLog:
    """The metrics rows as TensorBoard scalars in ``RUN/tensorboard/``: every number of a row
    (not ``step``, ``wall_time``, lists, strings or None) under its metrics.jsonl key as tag
    (``train/critic_loss``, ``eval_return``, ...), at the row's step.

    Event files cannot be truncated as metrics.jsonl is on resume: each session writes a new
    event file that starts with ``purge_step`` (the first step this session logs), and
    TensorBoard hides the points of earlier files at that step and after, so a resumed run
    shows each step once.
    """

    SKIPPED = ("step", "wall_time")

    def __init__(self, log_dir: Path, purge_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def append(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key in self.SKIPPED or isinstance(value, bool) or not isinstance(value,
                                                                                (int, float)):
                continue
            self.writer.add_scalar(key, value, row["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MetricsLog:
    """Appends one JSON object per line to ``RUN/metrics.jsonl`` (flushed at every row), and to
    ``tensorboard`` (a ``TensorBoardLog``) when it is set."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tensorboard: TensorBoardLog | None = None

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.append(row)

    def open_tensorboard(self, log_dir: Path, last_kept: int) -> None:
        """Write the rows from here on to a ``TensorBoardLog`` in ``log_dir`` too, purging its
        steps after ``last_kept`` (call after ``truncate_after(last_kept)``); a run without
        one yet (``--tensorboard`` first given at a resume) gets the rows kept so far first."""
        backfill = not log_dir.is_dir()
        self.tensorboard = TensorBoardLog(log_dir, last_kept + 1)
        if backfill and self.path.exists():
            for row in read_metrics(self.path.parent):
                self.tensorboard.append(row)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None

    def truncate_after(self, step: int) -> None:
        """Keep only the rows of steps <= ``step`` (what the checkpoint a run resumes from had
        logged; -1: none); a partial last line, from a process killed while writing it, goes."""
        if self.path.exists():
            kept = [row for row in read_metrics(self.path.parent) if row["step"] <= step]
            atomic_write_text(self.path, "".join(json.dumps(row) + "\n" for row in kept))


def run_directory(out: Path, command: list[str]) -> AbstractContextManager[Path]:
    """``--out`` owned by this command (a run directory, or a new or empty one), locked for
    the run (``smac_core.files.output_directory``); a run directory from before owner records
    is recognised by its config.json or the experiment runner's files."""
    return output_directory(out, RUN_OWNER, command, legacy=RUN_DIR_MARKERS)
