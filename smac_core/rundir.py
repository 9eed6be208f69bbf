"""The files of a run directory (``python -m smac_core.train --out``) and reading its metrics
log. Light (no torch), so that command lines and the experiment runner read runs at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from smac_core.errors import SmacError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
RUN_LOG, RUN_RECORD = "runner.log", "runner.json"  # the experiment runner's files of a run
RUN_OWNER = "smac_core.train"  # the owner of run directories (smac_core.files)
# files that mark a run directory written before owner records existed
RUN_DIR_MARKERS = (CONFIG_FILE, RUN_LOG, RUN_RECORD)


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
