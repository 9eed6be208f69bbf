"""Reward along the straight line between two checkpoints, with a valley verdict.

    python -m landscape.interpolate CKPT_A CKPT_B [--points 21] [--range -0.25 1.25]
    python -m landscape.interpolate --pair runs/smac runs/smac-sac --pair runs/calql \
        runs/calql-sac --label SMAC --label CalQL

Evaluates theta(t) = (1 - t) theta_A + t theta_B (the paper's interpolation figure: A the
pre-trained, B the fine-tuned policy) at ``--points`` evenly spaced t in ``--range`` plus t = 0
and t = 1 (the checkpoints themselves, which the verdict compares against). Prints a table
(t, mean, s.e.) and the verdict of ``landscape.valley`` for each pair, and writes to ``--out``:
interpolation.json / .csv (results), interpolation.html (interactive Plotly page with the data)
and interpolation.png. Evaluated points are kept under ``--out``/points/, so an interrupted run
continues where it stopped when rerun. Observation normalisation and action bounds are those of
A; a pair whose B normalises observations differently is refused before anything is evaluated
(``landscape.params.check_compatible``). Every point plays the same episodes, by default those
of the evaluations of A's run (its run seed; ``--seed`` overrides), so t = 0 reproduces A's
evaluation in its metrics.jsonl and t = 1 B's when B's run has the same seed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from landscape.grid import (
    EvalSettings,
    PointStore,
    add_evaluation_args,
    checkpoint_sha256,
    evaluate_missing,
    output_dir,
    result_unit,
    seed_results,
)
from landscape.parts import Target, add_part_flag, landscape_target
from landscape.valley import DEFAULT_Z, ENDPOINT_ATOL, Curve, valley_verdict
from smac_core.errors import SmacError, cli_entry
from smac_core.files import atomic_write_text
from smac_core.metrics import mean_and_se
from smac_core.paper import display

if TYPE_CHECKING:  # torch-based modules are imported where used: --help answers at once
    from landscape.evaluate import EvaluationResult
    from smac_core.checkpoint import Checkpoint


@dataclass
class PairResult:
    """One evaluated pair: the curve with its verdict, and what produced it."""

    curve: Curve
    checkpoints: tuple[Checkpoint, Checkpoint]
    result: EvaluationResult  # (T, E) per-episode arrays
    seed: int  # of the evaluation episodes


def interpolation_ts(points: int, low: float, high: float) -> np.ndarray:
    """``points`` evenly spaced t in [low, high], plus 0 and 1, sorted and unique: (T,), with
    at least one t strictly between 0 and 1 (the verdict compares it with the checkpoints)."""
    if points < 2 or not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise SmacError(f"need --points >= 2 and a finite --range LOW HIGH with LOW < HIGH, got "
                        f"{points} points in [{low}, {high}]")
    if low > 0 or high < 1:
        raise SmacError(f"--range [{low}, {high}] must contain [0, 1], the two checkpoints")
    ts = np.linspace(low, high, points)
    for checkpoint_t in (0.0, 1.0):  # snap rounding errors such as 1.0000000000000002
        ts[np.isclose(ts, checkpoint_t, rtol=0.0, atol=ENDPOINT_ATOL)] = checkpoint_t
    ts = np.unique(np.concatenate([ts, [0.0, 1.0]]))
    if not ((ts > 0) & (ts < 1)).any():
        raise SmacError(f"--points {points} in --range [{low}, {high}] puts no t between 0 and "
                        "1, where the valley verdict looks: use more points")
    return ts


def evaluate_pair(source_a: str | Path | Checkpoint, source_b: str | Path | Checkpoint,
                  ts: np.ndarray, label: str, settings: EvalSettings, store_root: Path,
                  z: float = DEFAULT_Z) -> PairResult:
    """Evaluate theta(t) between two checkpoints (or run directories) at every t, resumably."""
    pair = PairPoints.evaluate(source_a, source_b, ts, label, settings, store_root)
    return pair.result(label, z)


@dataclass
class PairPoints:
    """The evaluated points of one pair, in its store (``settings`` with the resolved seed)."""

    checkpoints: tuple[Checkpoint, Checkpoint]
    ts: np.ndarray
    settings: EvalSettings
    store: PointStore

    @classmethod
    def evaluate(cls, source_a: str | Path | Checkpoint, source_b: str | Path | Checkpoint,
                 ts: np.ndarray, label: str, settings: EvalSettings, store_root: Path,
                 target: Target | None = None) -> PairPoints:
        """Evaluate the store's missing points (``target``: the store of a part run or of an
        assembling one, ``landscape.parts``; None: the store at ``store_root``)."""
        from landscape.params import check_compatible, policy_vector
        from landscape.paths import interpolate_linear

        theta_a, ckpt_a = policy_vector(source_a)
        theta_b, ckpt_b = policy_vector(source_b)
        check_compatible([ckpt_a, ckpt_b])
        settings = settings.for_checkpoint(ckpt_a)
        fingerprint = {"command": "interpolate", "env": ckpt_a.env_name,
                       "checkpoints": [checkpoint_sha256(ckpt_a), checkpoint_sha256(ckpt_b)],
                       "ts": ts.tolist(), **settings.fingerprint()}
        open_store = PointStore if target is None else target.store
        store = open_store(store_root, fingerprint, len(ts), settings.episodes)
        evaluate_missing(store, ckpt_a.policy,
                         lambda idx: interpolate_linear(theta_a, theta_b, ts[idx]),
                         ckpt_a.env_name, settings, desc=label)
        return cls((ckpt_a, ckpt_b), ts, settings, store)

    def result(self, label: str, z: float = DEFAULT_Z) -> PairResult:
        """The curve of every point with its valley verdict (the store must be complete)."""
        result, ts = self.store.result(), self.ts
        mean, se = result.mean(), result.stderr()
        curve = Curve(label, ts, mean, se, valley_verdict(ts, mean, se, z))
        return PairResult(curve, self.checkpoints, result, self.settings.seed)


def format_table(pair: PairResult, unit: str) -> str:
    """The table of one pair (t, mean, s.e., success rate) followed by its verdict."""
    a, b = (ckpt.path for ckpt in pair.checkpoints)
    lines = [f"== {pair.curve.label}: A = {a}, B = {b} ({unit})",
             f"{'t':>8} {'mean':>12} {'s.e.':>10} {'success':>8}"]
    for t, mean, se, success in zip(pair.curve.ts, pair.curve.mean, pair.curve.se,
                                    pair.result.successes.mean(axis=1), strict=True):
        lines.append(f"{t:8.3f} {mean:12.4g} {se:10.3g} {success:8.2f}")
    lines.append(f"verdict: {pair.curve.verdict.describe(unit)}")
    return "\n".join(lines)


def results_json(pairs: Sequence[PairResult], unit: str, settings: EvalSettings) -> dict[str, Any]:
    return {
        "command": "interpolate", "unit": unit, "episodes": settings.episodes,
        "seed": settings.seed, "max_episode_steps": settings.max_episode_steps,
        "curves": [{
            "label": p.curve.label,
            "checkpoint_a": str(p.checkpoints[0].path), "checkpoint_b": str(p.checkpoints[1].path),
            "sha256": [checkpoint_sha256(c) for c in p.checkpoints],
            "env": p.checkpoints[0].env_name, "seed": p.seed,
            "t": p.curve.ts.tolist(), "mean": p.curve.mean.tolist(), "se": p.curve.se.tolist(),
            "returns": p.result.returns.tolist(), "successes": p.result.successes.tolist(),
            "scores": None if p.result.scores is None else p.result.scores.tolist(),
            "verdict": p.curve.verdict.to_dict()} for p in pairs]}


def results_csv(pairs: Sequence[PairResult]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["label", "t", "mean", "se", "success_rate"])
    for p in pairs:
        for t, mean, se, success in zip(p.curve.ts, p.curve.mean, p.curve.se,
                                        p.result.successes.mean(axis=1), strict=True):
            writer.writerow([p.curve.label, repr(float(t)), repr(float(mean)), repr(float(se)),
                             repr(float(success))])
    return buffer.getvalue()


@dataclass(frozen=True)
class Interpolation:
    """One seed's interpolation offline final -> online final, read back from the first curve
    of the ``interpolation.json`` (``results_json``) the experiment runner wrote for it."""

    task: str
    label: str
    seed: int
    unit: str
    ts: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    verdict: str


def load_interpolations(root: Path) -> list[Interpolation]:
    """Every interpolation under an experiment root (``grid.seed_results``)."""
    result = []
    for task, label, seed, path in seed_results(root, "interpolation", "interpolation.json"):
        data = json.loads(path.read_text())
        curve = data["curves"][0]
        result.append(Interpolation(task, label, seed, data["unit"], np.asarray(curve["t"]),
                                    np.asarray(curve["mean"]), np.asarray(curve["se"]),
                                    curve["verdict"]["verdict"]))
    return result


def interpolation_over_seeds(seeds: Sequence[Interpolation]) -> tuple[Curve, str]:
    """Mean +- s.e. over seeds at each t with the valley verdict of that curve, and what the
    s.e. is over. One seed: its own curve (s.e. over episodes) and verdict."""
    first = seeds[0]
    if any(not np.array_equal(s.ts, first.ts) for s in seeds):
        raise SmacError(f"{first.task}/{first.label}: the seeds' interpolations use different t")
    label = f"{display(first.label)}, {len(seeds)} seed{'s' * (len(seeds) > 1)}"
    if len(seeds) == 1:
        verdict = valley_verdict(first.ts, first.mean, first.se)
        return Curve(label, first.ts, first.mean, first.se, verdict), "episodes of 1 seed"
    mean, se = mean_and_se([s.mean for s in seeds])  # over seeds (S, T)
    return Curve(label, first.ts, mean, se, valley_verdict(first.ts, mean, se)), "seeds"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m landscape.interpolate",
        description="Reward along theta(t) = (1-t) theta_A + t theta_B between checkpoints, "
                    "with a valley verdict, a results table, JSON/CSV, a Plotly page and a PNG.")
    parser.add_argument("checkpoints", nargs="*", metavar="CKPT",
                        help="two checkpoints (or run directories, which use their final "
                             "checkpoint): A (t=0) and B (t=1)")
    parser.add_argument("--pair", nargs=2, action="append", default=[], metavar=("A", "B"),
                        help="a pair of checkpoints to interpolate; repeat for several pairs "
                             "drawn in one figure")
    parser.add_argument("--label", action="append", default=[],
                        help="legend label of each pair, in order (default: A's name -> B's name)")
    parser.add_argument("--points", type=int, default=21,
                        help="evenly spaced t values in --range; t=0 and t=1 are always added "
                             "(default 21)")
    parser.add_argument("--range", nargs=2, type=float, default=(-0.25, 1.25),
                        metavar=("LOW", "HIGH"), help="t interval, must contain [0, 1] "
                                                      "(default -0.25 1.25)")
    parser.add_argument("--z", type=float, default=DEFAULT_Z,
                        help="family-wise level of the valley and monotonicity tests, as that of "
                             "a one-sided z-sigma test: 1 - Phi(z); the thresholds are "
                             "Bonferroni-corrected for the interior points (valley) and the pairs "
                             f"of points (monotone) (default {DEFAULT_Z:g}: 2.3%%)")
    add_evaluation_args(parser)
    add_part_flag(parser)
    return parser


def _pairs_and_labels(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    if len(args.checkpoints) not in (0, 2):
        raise SmacError(f"give two checkpoints A B (or --pair A B), got {len(args.checkpoints)}")
    pairs = ([tuple(args.checkpoints)] if args.checkpoints else []) + \
        [tuple(p) for p in args.pair]
    if not pairs:
        raise SmacError("nothing to interpolate: give two checkpoints A B, or --pair A B")
    if args.label and len(args.label) != len(pairs):
        raise SmacError(f"{len(args.label)} --label for {len(pairs)} pairs: give one per pair")
    labels = args.label or [f"{Path(a).name} → {Path(b).name}" for a, b in pairs]
    return [(a, b, label) for (a, b), label in zip(pairs, labels, strict=True)]


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from landscape.params import check_compatible  # after parsing: --help needs no torch
    from smac_core.checkpoint import load_checkpoint

    settings = EvalSettings.from_args(args)
    if settings.episodes < 2:
        raise SmacError("the valley verdict needs standard errors: use --episodes 2 or more")
    if not (math.isfinite(args.z) and args.z > 0):
        raise SmacError(f"--z must be a finite number > 0, got {args.z}")
    ts = interpolation_ts(args.points, *args.range)
    pairs = _pairs_and_labels(args)
    out = output_dir(args.out, "interpolate",
                     {"pairs": [[str(Path(a).resolve()), str(Path(b).resolve())]
                                for a, b, _ in pairs], "ts": ts.tolist(),
                      **settings.fingerprint()})
    loaded = [(load_checkpoint(a), load_checkpoint(b), label) for a, b, label in pairs]
    for ckpt_a, ckpt_b, _ in loaded:  # every pair is checked before anything is written
        check_compatible([ckpt_a, ckpt_b])
    with landscape_target(out, "interpolate", argv, args.part) as target:
        return _evaluate_and_write(loaded, ts, settings, target, args.z)


def _evaluate_and_write(loaded: Sequence[tuple[Checkpoint, Checkpoint, str]], ts: np.ndarray,
                        settings: EvalSettings, target: Target, z: float) -> int:
    from landscape.plot import interpolation_figure, save_interpolation_png, write_html

    out = target.out
    pairs = [PairPoints.evaluate(a, b, ts, label, settings, out / "points" / f"pair_{k}", target)
             for k, (a, b, label) in enumerate(loaded)]
    if target.part is not None:
        return target.part_done("interpolate")
    results = [pair.result(label, z) for pair, (_, _, label) in zip(pairs, loaded, strict=True)]
    units = {result_unit(r.result) for r in results}
    if len(units) > 1:
        raise SmacError("the pairs mix envs with and without normalised scores; interpolate "
                        "them in separate commands")
    unit = units.pop()
    for result in results:
        print(format_table(result, unit))
    title = "Linear interpolation between checkpoints"
    atomic_write_text(out / "interpolation.json",
                      json.dumps(results_json(results, unit, settings), indent=1))
    atomic_write_text(out / "interpolation.csv", results_csv(results))
    curves = [r.curve for r in results]
    write_html(interpolation_figure(curves, unit, title), out / "interpolation.html")
    save_interpolation_png(curves, unit, title, out / "interpolation.png")
    print(f"wrote {out}/interpolation.{{json,csv,html,png}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
