"""How well does the risk probe predict a drop at transfer? AUROC over offline -> online runs.

    python -m landscape.risk_validation ONLINE_RUN [ONLINE_RUN ...] [--bootstrap 2000]
        [probe flags of landscape.risk] [--out DIR]

For every online run: the drop verdict of ``smac_core.metrics`` (``transfer_drop`` against the
run's offline baseline, level ``--drop-alpha``) and the probe of ``landscape.risk`` on the
checkpoint the run started from (its config's ``from``; each checkpoint probed once, resumably
under ``--out``/probes/). For each score, the AUROC for "drop" (the probability that a run that
dropped scores higher than one that did not, ties counted half: the Mann-Whitney U statistic
over n_drop n_smooth) with a percentile bootstrap interval (``--level``) over runs resampled
with replacement (resamples with one class only are drawn again). Runs that share a checkpoint
share its scores. Writes validation.json / .csv and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Sequence

import numpy as np

from landscape.grid import EvalSettings, add_evaluation_args, landscape_output, output_dir
from landscape.risk import add_probe_args, checkpoint_probe, probe_settings_of
from smac_core.errors import SmacError, cli_entry
from smac_core.files import atomic_write_text
from smac_core.metrics import DEFAULT_ALPHA, load_run, transfer_drop
from smac_core.rundir import run_source


def auroc(scores: np.ndarray, drops: np.ndarray) -> float:
    """P(score of a drop > score of a non-drop) + P(tie) / 2: (n,), (n,) bool -> [0, 1]."""
    from scipy.stats import rankdata

    positives, negatives = int(drops.sum()), int((~drops).sum())
    if positives == 0 or negatives == 0:
        raise SmacError(f"the AUROC needs runs of both verdicts, got {positives} drops and "
                        f"{negatives} smooth runs")
    ranks = rankdata(scores)  # average ranks: ties count half
    return float((ranks[drops].sum() - positives * (positives + 1) / 2)
                 / (positives * negatives))


def bootstrap_interval(scores: np.ndarray, drops: np.ndarray, resamples: int, level: float,
                       seed: int) -> tuple[float, float]:
    """Percentile interval of the AUROC over ``resamples`` resamples of the runs."""
    rng = np.random.default_rng(seed)
    values = []
    while len(values) < resamples:
        rows = rng.integers(len(scores), size=len(scores))
        if 0 < drops[rows].sum() < len(rows):
            values.append(auroc(scores[rows], drops[rows]))
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m landscape.risk_validation",
        description="AUROC of the risk probe's scores for the drop verdict of online runs, with "
                    "bootstrap intervals.")
    parser.add_argument("runs", nargs="+", metavar="ONLINE_RUN", help="online run directories")
    parser.add_argument("--drop-alpha", type=float, default=DEFAULT_ALPHA,
                        help=f"level of the drop verdict (default {DEFAULT_ALPHA})")
    parser.add_argument("--bootstrap", type=int, default=2000,
                        help="bootstrap resamples (default 2000)")
    parser.add_argument("--level", type=float, default=0.95,
                        help="level of the bootstrap interval (default 0.95)")
    add_probe_args(parser)
    add_evaluation_args(parser)
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from smac_core.checkpoint import load_checkpoint, resolve_checkpoint

    if args.bootstrap < 1 or not 0 < args.level < 1:
        raise SmacError(f"need --bootstrap >= 1 and --level in (0, 1), got {args.bootstrap}, "
                        f"{args.level}")
    settings, probe_settings = EvalSettings.from_args(args), probe_settings_of(args)
    runs = [load_run(run) for run in args.runs]
    sources = []
    for run in runs:
        source = run_source(run.path)
        sources.append(resolve_checkpoint(source))
    drops = [transfer_drop(run.curve, run.baseline, alpha=args.drop_alpha) for run in runs]
    out = output_dir(args.out, "risk_validation", {
        "runs": [str(run.path.resolve()) for run in runs], **vars(probe_settings),
        "dataset": args.dataset, **settings.fingerprint()})
    with landscape_output(out, "risk_validation", argv):
        probes = {}
        for source in dict.fromkeys(sources):
            probes[source] = checkpoint_probe(
                load_checkpoint(source), args.dataset, args.states, probe_settings, settings,
                out / "probes" / f"probe_{len(probes)}")
        labels = np.array([drop.verdict == "drop" for drop in drops])
        names = list(probes[sources[0]]["scores"])
        table = {}
        for name in names:
            scores = np.array([probes[source]["scores"][name] for source in sources])
            value = auroc(scores, labels)
            low, high = bootstrap_interval(scores, labels, args.bootstrap, args.level,
                                           settings.seed or 0)
            table[name] = {"auroc": value, "low": low, "high": high}
        results = {
            "command": "risk_validation", "level": args.level, "bootstrap": args.bootstrap,
            "drops": int(labels.sum()), "smooth": int((~labels).sum()), "scores": table,
            "runs": [{"run": str(run.path), "checkpoint": str(source),
                      "offline": run.offline_algorithm, "online": run.online_algorithm,
                      "task": run.task, "seed": run.seed, "drop": drop.to_dict(),
                      "scores": probes[source]["scores"]}
                     for run, source, drop in zip(runs, sources, drops, strict=True)]}
        print(f"{results['drops']} runs dropped, {results['smooth']} did not")
        for name, row in table.items():
            print(f"{name:>18}: AUROC {row['auroc']:.3f} [{row['low']:.3f}, {row['high']:.3f}] "
                  f"({args.level:.0%} bootstrap)")
        atomic_write_text(out / "validation.json", json.dumps(results, indent=1))
        atomic_write_text(out / "validation.csv", results_csv(results))
        print(f"wrote {out}/validation.{{json,csv}}")
    return 0


def results_csv(results: dict) -> str:
    """One row per run: its verdict, drop and every score."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = list(results["scores"])
    writer.writerow(["run", "offline", "online", "task", "seed", "verdict", "drop", *names])
    for run in results["runs"]:
        writer.writerow([run["run"], run["offline"], run["online"], run["task"], run["seed"],
                         run["drop"]["verdict"], repr(run["drop"]["drop"]),
                         *(repr(run["scores"][name]) for name in names)])
    return buffer.getvalue()


if __name__ == "__main__":
    raise SystemExit(main())
