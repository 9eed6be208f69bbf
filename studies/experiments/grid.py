"""The grid of a study: every training run of a spec (``RunPlan``: its run id, which is its
directory under the root, and the arguments of ``python -m smac_core.train``), ``--only``, and
``seed_groups`` (``run --stack-seeds``: the seeds of an online run as one ``--seeds`` command).

Layout under the spec's ``root`` (one ``smac_core.train`` run directory per run)::

    ROOT/<task>/<offline label>/seed<k>/offline
    ROOT/<task>/<offline label>/seed<k>/online-<online label>      (--from the offline run)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from smac_core.errors import SmacError
from smac_core.runconfig import SEED_PLACEHOLDER, RunConfig
from studies.experiments.spec import ExperimentSpec


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


def _plan(config: RunConfig, task: str, spelled: Sequence[str],
          parent: str | None = None) -> RunPlan:
    """The plan of ``config``: its arguments are ``config.to_argv()``, spelling the values the
    spec gives even where they are the trainer's defaults, then ``--resume`` (a run the runner
    starts again continues from its latest checkpoint)."""
    args = (*config.to_argv(spell=("steps", "seed", "device", *spelled)), "--resume")
    return RunPlan(config.out.as_posix(), config.phase, config.algo, task, config.seed,
                   config.steps, args, parent)  # steps: the phase's, given by the spec


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
                offline_config = RunConfig(
                    "offline", offline.algorithm, offline_id, dataset=dataset,
                    steps=spec.offline.steps, seed=seed, device=device,
                    optimizer=offline.optimizer, overrides=offline.overrides_for(task),
                    **spec.offline.flags)
                plans.append(_plan(offline_config, task, list(spec.offline.flags)))
                for label in offline.online:
                    online = spec.online.entries[label]
                    if task not in online.tasks or seed not in online.seeds:
                        continue
                    flags = dict(spec.online.flags)
                    if online.mix is not None:
                        flags["mix"] = online.mix
                    online_config = RunConfig(
                        "online", online.algorithm, f"{base}/online-{label}",
                        from_checkpoint=offline_id, steps=spec.online.steps, seed=seed,
                        device=device, overrides=online.overrides_for(task), **flags)
                    plans.append(_plan(online_config, task, list(flags), parent=offline_id))
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


@dataclass(frozen=True)
class SeedGroup:
    """Runs that differ only in their seed, trained by one ``smac_core.train --seeds`` command
    (seed-stacked, ``smac_core.seeds``); each member still writes its own run directory.
    ``run_id`` names the group: the members' run id with ``seed{a,b,...}`` for the seed, e.g.
    ``door-binary/smac/seed{0,1,2}/online-sac``."""

    run_id: str
    members: tuple[RunPlan, ...]
    args: tuple[str, ...]  # the members' arguments with {seed} in --out and --from, and --seeds


def _with_seed_placeholder(path: str, seed: int) -> str:
    """``a/seed3/b`` -> ``a/seed{seed}/b`` for seed 3 (the layout's seed directory)."""
    return "/".join(f"seed{SEED_PLACEHOLDER}" if part == f"seed{seed}" else part
                    for part in path.split("/"))


def _seedless_args(plan: RunPlan) -> tuple[str, ...]:
    """``plan.args`` without ``--seed K``, with ``{seed}`` for the seed in ``--out``/``--from``:
    the same for every seed of one run of the grid."""
    args, words = [], iter(plan.args)
    for word in words:
        if word == "--seed":
            next(words)
        elif word in ("--out", "--from"):
            args += [word, _with_seed_placeholder(next(words), plan.seed)]
        else:
            args.append(word)
    return tuple(args)


def seed_groups(plans: Sequence[RunPlan], resume_step: Callable[[RunPlan], int | None]
                ) -> list[RunPlan | SeedGroup]:
    """``plans`` with the runs that differ only in their seed (and are at the same resume step
    ``resume_step(plan)``: a ``--seeds`` run resumes all its seeds from one step) merged into
    ``SeedGroup``s of two or more, each where its first member was."""
    members: dict[tuple[tuple[str, ...], int | None], list[RunPlan]] = {}
    for plan in plans:
        members.setdefault((_seedless_args(plan), resume_step(plan)), []).append(plan)
    grouped: list[RunPlan | SeedGroup] = []
    for plan in plans:
        key = (_seedless_args(plan), resume_step(plan))
        group = members[key]
        if len(group) < 2:
            grouped.append(plan)
        elif plan is group[0]:
            seeds = ",".join(str(member.seed) for member in group)
            run_id = _with_seed_placeholder(plan.run_id, plan.seed).replace(
                SEED_PLACEHOLDER, "{" + seeds + "}")
            grouped.append(SeedGroup(run_id, tuple(group), (*key[0], "--seeds", seeds)))
    return grouped
