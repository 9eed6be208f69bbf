"""The health of SMAC's score-matching regulariser over training, per run: a table of the logged
training metrics and the offline evaluation score at a few steps (README, "SMAC's score scale").

    python notebooks/alpha_psi_report.py runs/alpha-psi [--steps 1000 5000 10000 20000] [--json]

Reads every ``*/offline/metrics.jsonl`` below the given root whose run is a SMAC run. Columns:
alpha (SAC temperature), alpha_psi (the score's scale), |grad_a Q|, cos(grad_a Q, score_D), the
cost a flat critic would pay (``sm_loss_flat_critic``) next to the TD loss, and the evaluation
(mean normalised score over the evaluation's episodes) at that step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from smac_core.rundir import read_config, read_metrics

COLUMNS = ("alpha", "alpha_psi", "grad_q_norm", "score_cosine", "sm_loss_flat_critic", "td_loss")


def health_table(run_dir: Path, steps: list[int]) -> list[dict[str, float | int | None]]:
    """One row per step in ``steps``: the training metrics logged at that step and the
    evaluation at that step (None where the run has no such row)."""
    rows = read_metrics(run_dir)
    training = {r["step"]: r for r in rows if "train/td_loss" in r}
    evaluation = {r["step"]: r for r in rows if "eval_returns" in r}
    table = []
    for step in steps:
        train, ev = training.get(step, {}), evaluation.get(step)
        scores = None if ev is None else (ev.get("eval_scores") or ev["eval_returns"])
        table.append({"step": step, **{c: train.get(f"train/{c}") for c in COLUMNS},
                      "eval": None if scores is None else sum(scores) / len(scores)})
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a directory holding SMAC run directories")
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 2000, 5000, 10000, 20000])
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args()
    runs = sorted(p.parent for p in args.root.rglob("metrics.jsonl")
                  if read_config(p.parent).get("algorithm") == "smac")
    report = {str(run.relative_to(args.root)): health_table(run, args.steps) for run in runs}
    if args.json:
        print(json.dumps(report, indent=1))
        return
    header = ["step", *COLUMNS, "eval"]
    for name, table in report.items():
        print(f"\n{name}")
        print(" | ".join(f"{h:>12}" for h in header))
        for row in table:
            print(" | ".join(f"{'-':>12}" if row[h] is None else f"{row[h]:>12.4g}"
                             for h in header))


if __name__ == "__main__":
    main()
