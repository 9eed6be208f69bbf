"""What the paper (de Lara & Shkurti 2026) names, reports and claims, and whether measured
results support it: the methods' names and the order of its tables, its regret table, its
transfer, regret and valley claims (README, "Results": the claims and what this repository
measured), and which runs form its main grid. No I/O and no torch: the notebooks
(``notebooks/results.py``) and ``smac_core.metrics`` read it at once."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

DISPLAY_NAMES = {"smac": "SMAC", "calql": "CalQL", "cql": "CQL", "iql": "IQL", "td3bc": "TD3+BC",
                 "sac": "SAC", "td3": "TD3", "awr": "AWR"}
OFFLINE_ORDER = ("smac", "calql", "cql", "iql", "td3bc")  # the rows of its tables
ONLINE_ORDER = ("awr", "sac", "td3", "td3bc")  # the columns

# The paper's Table: regret min-max normalised per task, averaged over its six tasks; offline
# algorithm -> online algorithm -> value. Its "CalQL/CQL" row is "calql" (``paper_row``).
PAPER_REGRET_TABLE: dict[str, dict[str, float]] = {
    "smac": {"awr": 0.380, "sac": 0.031, "td3": 0.090, "td3bc": 0.226},
    "calql": {"awr": 0.482, "sac": 0.448, "td3": 0.442, "td3bc": 0.614},
    "iql": {"awr": 0.508, "sac": 0.471, "td3": 0.653, "td3bc": 0.494},
    "td3bc": {"awr": 0.654, "sac": 0.962, "td3": 0.545, "td3bc": 0.562},
}

# The headline transfer claims: offline algorithm -> (tasks with a drop at transfer to SAC,
# tasks run); SMAC transfers smoothly to these online algorithms in 6/6 tasks; SMAC's regret
# lies this much below the best baseline's in 4/6 tasks.
PAPER_DROPS = {"calql": (3, 4), "iql": (4, 6), "td3bc": (5, 6)}
PAPER_SMAC_SMOOTH = ("sac", "td3")
PAPER_REGRET_REDUCTION = (0.34, 0.58)

# The main grid trains every offline algorithm with its default optimizer, the ``optimizer``
# default of its config in ``smac_core.algos`` (SMAC's Muon, the baselines' Adam); runs with
# another optimizer are the Muon/Adam ablation. Kept here so that reading results does not load
# the algorithms; tests/test_notebooks.py checks it against the configs.
DEFAULT_OPTIMIZERS = {"smac": "muon"}
DEFAULT_OPTIMIZER = "adam"  # every other algorithm


def default_optimizer(algorithm: str) -> str:
    """The optimizer ``algorithm`` trains with unless told otherwise (the main grid's)."""
    return DEFAULT_OPTIMIZERS.get(algorithm, DEFAULT_OPTIMIZER)


def paper_row(offline_algorithm: str) -> str:
    """The row of the paper's tables: its "CalQL/CQL" row holds CQL where CalQL's floor is
    meaningless, as in the reduced spec."""
    return "calql" if offline_algorithm == "cql" else offline_algorithm


def display(name: str) -> str:
    """The paper's name of an algorithm (its own name if the paper has none)."""
    return DISPLAY_NAMES.get(name, name)


# ------------------------------------------------------------------------------------ the claims
def transfer_claims(verdicts: Sequence[tuple[str, str, str, str]]) -> list[str]:
    """The transfer claims against drop verdicts found, each (task, offline algorithm, online
    algorithm, "drop" | "smooth"); a claim without such verdicts makes no statement."""
    claims = []
    for online in PAPER_SMAC_SMOOTH:
        smac = [(task, verdict) for task, offline, o, verdict in verdicts
                if offline == "smac" and o == online]
        if smac:
            smooth = [task for task, verdict in smac if verdict == "smooth"]
            verdict = "SUPPORTED" if len(smooth) == len(smac) else "CONTRADICTED"
            claims.append(f"{verdict}: SMAC -> {display(online)} transfers smoothly on "
                          f"{len(smooth)}/{len(smac)} tasks (paper: 6/6); drops on "
                          f"{sorted({task for task, _ in smac} - set(smooth)) or 'none'}")
    for algorithm, (paper_drops, paper_tasks) in PAPER_DROPS.items():
        baseline = [verdict for _, offline, online, verdict in verdicts
                    if paper_row(offline) == algorithm and online == "sac"]
        if baseline:
            dropped = baseline.count("drop")
            # the paper's claim is that the baseline drops on most tasks
            verdict = "SUPPORTED" if dropped > len(baseline) / 2 else "CONTRADICTED"
            claims.append(f"{verdict}: {display(algorithm)}{'/CQL' * (algorithm == 'calql')} "
                          f"-> SAC drops on {dropped}/{len(baseline)} tasks (paper: "
                          f"{paper_drops}/{paper_tasks})")
    return claims


def regret_comparison(table: Mapping[str, Mapping[str, float]]) -> str:
    """A regret table (``smac_core.metrics.normalized_regret_table``) next to the paper's, cell
    by cell: "ours (paper)"."""
    columns = list(PAPER_REGRET_TABLE["smac"])
    lines = ["| offline \\ online | " + " | ".join(display(c) for c in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for row, paper in PAPER_REGRET_TABLE.items():
        cells = [f"{table[row][c]:.3f} ({value:.3f})" if c in table.get(row, {})
                 else f"- ({value:.3f})" for c, value in paper.items()]
        name = "CalQL/CQL" if row == "calql" else display(row)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def regret_claims(cell_regrets: Mapping[tuple[str, str, str], Sequence[float]]) -> list[str]:
    """SMAC's mean regret against the best baseline's, per task and online algorithm, from
    per-seed regrets keyed (paper row, online algorithm, task)."""
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


def valley_claims(verdicts: Mapping[tuple[str, str], str],
                  between: str = "pre-trained and SAC fine-tuned") -> list[str]:
    """The paper: every method but SMAC dips ``between`` its two checkpoints; ``verdicts``:
    (task, offline label) -> valley verdict ("valley", "monotone", ...)."""
    claims = []
    for is_smac in (True, False):
        rows = [(task, label, verdict) for (task, label), verdict in verdicts.items()
                if (label == "smac") == is_smac]
        if not rows:
            continue
        valleys = [f"{display(label)} on {task}" for task, label, verdict in rows
                   if verdict == "valley"]
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
