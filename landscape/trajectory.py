"""Training trajectories in parameter space, embedded in 2-D and coloured by reward.

    python -m landscape.trajectory runs/calql runs/calql-sac runs/calql-td3bc

Takes each run's checkpoint series (``checkpoints/step_<N>``, in step order; give the offline
run first, then the online runs started from it), evaluates every checkpoint with the engine,
and embeds the policy parameter vectors in 2-D by PCA and by t-SNE (scikit-learn; t-SNE is run
on the vectors themselves, initialised by PCA, with ``--embedding-seed``). Each run is evaluated
with its own observation normalisation, i.e. every checkpoint as it was trained (a run whose
checkpoints normalise differently is refused), on the episodes of its own evaluations (its run
seed, unless ``--seed`` is given), so every point reproduces that checkpoint's evaluation in
metrics.jsonl. Points are coloured by evaluated reward and grouped by run (with its phase,
offline or online), as the paper's trajectory figure. Writes trajectory.json / .csv,
trajectory.html and trajectory.png to ``--out``; evaluations resume when rerun.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from landscape.grid import (
    EvalSettings,
    PointStore,
    add_evaluation_args,
    checkpoint_sha256,
    evaluate_missing,
    json_floats,
    output_dir,
    periodic_checkpoints,
    result_unit,
    seed_results,
)
from landscape.parts import add_part_flag, landscape_target
from smac_core.errors import SmacError, cli_entry
from smac_core.files import atomic_write_text

if TYPE_CHECKING:  # torch-based modules are imported where used: --help answers at once
    import torch

    from smac_core.checkpoint import Checkpoint

MIN_CHECKPOINTS = 3  # fewer points than this have no meaningful 2-D embedding


@dataclass
class RunSeries:
    """One run's checkpoints in step order, and their policy parameter vectors (N, D)."""

    run: Path
    steps: list[int]
    checkpoints: list[Checkpoint]
    vectors: torch.Tensor

    @property
    def group(self) -> str:
        phases = sorted({str(c.metadata.get("phase", "?")) for c in self.checkpoints})
        return f"{self.run.name} ({'/'.join(phases)})"


def load_series(run: str | Path) -> RunSeries:
    """The ``checkpoints/step_<N>`` of a run directory as parameter vectors."""
    import torch

    from landscape.params import check_compatible, policy_vector

    series = periodic_checkpoints(run, "run")
    loaded = [policy_vector(path) for _, path in series]
    checkpoints = [ckpt for _, ckpt in loaded]
    check_compatible(checkpoints)
    return RunSeries(Path(run), [step for step, _ in series], checkpoints,
                     torch.stack([vector for vector, _ in loaded]))


def evaluate_run(series: RunSeries, store: PointStore, settings: EvalSettings) -> None:
    """Evaluate the store's missing checkpoints of a run (with the run's first checkpoint's
    normalisation; ``settings`` with a resolved seed)."""
    evaluate_missing(store, series.checkpoints[0].policy, lambda idx: series.vectors[idx],
                     series.checkpoints[0].env_name, settings, desc=series.run.name)


def embed(vectors: np.ndarray, perplexity: float, seed: int) -> dict[str, np.ndarray]:
    """2-D PCA and t-SNE embeddings of (N, D) vectors -> name -> (N, 2).

    t-SNE needs perplexity < N, so it is capped at N - 1 for short series.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    pca = PCA(n_components=2, random_state=seed)
    pca_points = pca.fit_transform(vectors)
    explained = ", ".join(f"{r:.0%}" for r in pca.explained_variance_ratio_)
    tsne = TSNE(n_components=2, perplexity=min(perplexity, len(vectors) - 1), init="pca",
                random_state=seed)
    return {f"PCA (explained {explained})": pca_points, "t-SNE": tsne.fit_transform(vectors)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m landscape.trajectory",
        description="Checkpoint series of training runs embedded in 2-D (PCA, t-SNE) and "
                    "coloured by evaluated reward: Plotly page, PNG, JSON/CSV; resumable.")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run directories with checkpoints/step_<N>, offline run first")
    parser.add_argument("--perplexity", type=float, default=30.0,
                        help="t-SNE perplexity, capped at the number of checkpoints - 1 "
                             "(default 30)")
    parser.add_argument("--embedding-seed", type=int, default=0,
                        help="random state of PCA and t-SNE (default 0)")
    add_evaluation_args(parser)
    add_part_flag(parser)
    return parser


def results_csv(series: Sequence[RunSeries], embeddings: dict[str, np.ndarray],
                mean: np.ndarray, se: np.ndarray) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    pca, tsne = embeddings.values()
    writer.writerow(["run", "step", "phase", "mean", "se", "pca_1", "pca_2", "tsne_1", "tsne_2"])
    rows = [(s.run, step, c.metadata.get("phase", "")) for s in series
            for step, c in zip(s.steps, s.checkpoints, strict=True)]
    for k, (run, step, phase) in enumerate(rows):
        writer.writerow([run, step, phase, repr(float(mean[k])), repr(float(se[k])),
                         *(repr(float(v)) for v in (*pca[k], *tsne[k]))])
    return buffer.getvalue()


@dataclass(frozen=True)
class Trajectory:
    """One ``trajectory.json`` the experiment runner wrote for an offline run and its online
    runs: per checkpoint its run, step and reward (N,), and the 2-D embeddings name -> (N, 2)."""

    task: str
    label: str
    seed: int
    unit: str
    runs: list[str]
    steps: list[int]
    reward: np.ndarray
    embeddings: dict[str, np.ndarray]

    def online_dip(self, run_name: str) -> float:
        """Reward of the last offline checkpoint minus the lowest checkpoint of the online run
        ``run_name`` (> 0: fine-tuning passed below where it started)."""
        names = [Path(run).name for run in self.runs]
        start = self.reward[[k for k, n in enumerate(names) if n == "offline"][-1]]
        online = self.reward[[n == run_name for n in names]]
        return float(start - online.min())


@dataclass(frozen=True)
class TrajectoryJob:
    """The runs of one trajectory figure (an offline run and its two online runs) and the
    directory the command writes it to."""

    task: str
    label: str
    seed: int
    runs: tuple[Path, Path, Path]
    out: Path

    def argv(self, episodes: int) -> list[str]:
        """Arguments of ``python -m landscape.trajectory`` that write ``out``."""
        return [*map(str, self.runs), "--episodes", str(episodes), "--out", str(self.out)]

    def command(self, episodes: int) -> str:
        return shlex.join(["python", "-m", "landscape.trajectory", *self.argv(episodes)])


def load_trajectories(root: Path) -> list[Trajectory]:
    """Every trajectory under an experiment root (``grid.seed_results``)."""
    result = []
    for task, label, seed, path in seed_results(root, "trajectories", "trajectory.json"):
        data = json.loads(path.read_text())
        result.append(Trajectory(task, label, seed, data["unit"],
                                 [c["run"] for c in data["checkpoints"]],
                                 [c["step"] for c in data["checkpoints"]],
                                 np.asarray(data["mean"]),
                                 {k: np.asarray(v) for k, v in data["embeddings"].items()}))
    return result


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch  # after parsing: --help needs no torch

    from landscape.params import check_compatible
    from landscape.plot import save_trajectory_png, trajectory_figure, write_html

    if not (math.isfinite(args.perplexity) and args.perplexity > 0):
        raise SmacError(f"--perplexity must be a finite number > 0, got {args.perplexity}")
    settings = EvalSettings.from_args(args)
    series = [load_series(run) for run in args.runs]
    # each run is evaluated with its own normalisation: only architecture and env must agree
    check_compatible([s.checkpoints[0] for s in series], same_normalisation=False)
    run_settings = [settings.for_checkpoint(s.checkpoints[0]) for s in series]
    total = sum(len(s.steps) for s in series)
    if total < MIN_CHECKPOINTS:
        raise SmacError(f"the runs hold {total} checkpoints; an embedding needs at least "
                        f"{MIN_CHECKPOINTS}: train them with a smaller --checkpoint-every")
    fingerprints = [{"command": "trajectory", "env": s.checkpoints[0].env_name,
                     "checkpoints": [checkpoint_sha256(c) for c in s.checkpoints],
                     **run_settings[k].fingerprint()} for k, s in enumerate(series)]
    out = output_dir(args.out, "trajectory", {"runs": fingerprints})
    with landscape_target(out, "trajectory", argv, args.part) as target:
        stores = [target.store(out / "points" / f"run_{k}", fingerprint, len(s.steps),
                               settings.episodes)
                  for k, (s, fingerprint) in enumerate(zip(series, fingerprints, strict=True))]
        for s, store, s_settings in zip(series, stores, run_settings, strict=True):
            evaluate_run(s, store, s_settings)
        if target.part is not None:
            return target.part_done("trajectory")
        results = [store.result() for store in stores]
        units = {result_unit(r) for r in results}
        if len(units) > 1:
            raise SmacError("the runs mix envs with and without normalised scores")
        unit = units.pop()
        mean = np.concatenate([r.mean() for r in results])
        se = np.concatenate([r.stderr() for r in results])
        vectors = torch.cat([s.vectors for s in series]).double().numpy()
        embeddings = embed(vectors, args.perplexity, args.embedding_seed)

        labels = [f"{s.run.name} step {step}" for s in series for step in s.steps]
        groups = [s.group for s in series for _ in s.steps]
        print(f"{'checkpoint':<40} {unit:>18} {'s.e.':>10}")
        for label, m, e in zip(labels, mean, se, strict=True):
            print(f"{label:<40} {m:18.4g} {e:10.3g}")
        title = f"Training trajectories coloured by {unit}"
        summary = {"command": "trajectory", "unit": unit, "episodes": settings.episodes,
                   "seed": settings.seed, "run_seeds": [r.seed for r in run_settings],
                   "runs": [str(s.run) for s in series],
                   "checkpoints": [{"run": str(s.run), "step": step, "path": str(c.path),
                                    "phase": c.metadata.get("phase"),
                                    "sha256": checkpoint_sha256(c)}
                                   for s in series for step, c in zip(s.steps, s.checkpoints,
                                                                      strict=True)],
                   "mean": mean.tolist(), "se": json_floats(se),
                   "embeddings": {name: points.tolist() for name, points in embeddings.items()}}
        atomic_write_text(out / "trajectory.json", json.dumps(summary, indent=1))
        atomic_write_text(out / "trajectory.csv", results_csv(series, embeddings, mean, se))
        write_html(trajectory_figure(embeddings, mean, labels, groups, unit, title),
                   out / "trajectory.html")
        save_trajectory_png(embeddings, mean, groups, unit, title, out / "trajectory.png")
        print(f"wrote {out}/trajectory.{{json,csv,html,png}}")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
