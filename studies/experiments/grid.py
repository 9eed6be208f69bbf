"""The grid of a study: every training run of a spec (``RunPlan``: its run id, which is its
directory under the root, and the arguments of ``python -m smac_core.train``), and ``--only``.

Layout under the spec's ``root`` (one ``smac_core.train`` run directory per run)::

    ROOT/<task>/<offline label>/seed<k>/offline
    ROOT/<task>/<offline label>/seed<k>/online-<online label>      (--from the offline run)
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from smac_core.errors import SmacError
from studies.experiments.spec import ExperimentSpec

TRAIN_MODULE = "smac_core.train"


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
