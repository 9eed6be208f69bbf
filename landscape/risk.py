"""Transfer-risk probe: how does the return move under the first fine-tuning updates?

    python -m landscape.risk CKPT [--budget 32] [--steps 10] [--lr 3e-4] [--alpha 0.1]

Before any online fine-tuning, the probe plays out the noisy neighbourhood the fine-tuning will
start in (Rahn et al. 2023, "Policy optimization in a noisy neighborhood"): from theta_0 (the
checkpoint's actor) it runs ``--budget`` short independent update sequences, each ``--steps``
Adam steps (``--lr``) ascending the checkpoint critic's value of the deterministic policy,
J(theta) = E_s mean_i Q_i(s, pi_theta(s)) (the actor half of the fine-tuning update), on its own
minibatches of ``--batch-size`` states from a pool of ``--states`` dataset observations (A's
``dataset_id`` or ``--dataset``). As a control for plain sharpness, each post-update policy
gets a twin at the same distance from theta_0 along a random filter-normalised direction.
theta_0 and the 2 x budget neighbours are evaluated by rollouts with the engine of
``landscape.interpolate`` (the same episodes for every point, resumable under ``--out``), and
with R the mean over episodes (normalised score where the env has one), CVaR_a the mean of the
lowest ceil(a n) of n values (``--alpha``), the scores (higher: a larger predicted drop, in R's
unit) are

    update_cvar_drop = R(theta_0) - CVaR_a(R(post-update))     the left tail of the update
    update_mean_drop = R(theta_0) - mean R(post-update)
    random_cvar_drop = R(theta_0) - CVaR_a(R(random twins))    local sharpness

The update sequences are deterministic (minibatches drawn from the evaluation seed), saved in
updates.pt, and batched: the budget's sequences run as one (budget, D) tensor, Adam acting
elementwise, so each equals its sequence run alone. Writes risk.json / .csv, risk.html and
risk.png (the distribution of R over the neighbours against R(theta_0)).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from landscape.critic import checkpoint_critic, dataset_sample
from landscape.grid import (
    EvalSettings,
    PointStore,
    add_evaluation_args,
    checkpoint_sha256,
    evaluate_points,
    landscape_output,
    output_dir,
    result_unit,
)
from landscape.path import cached_training, policy_value
from smac_core.errors import SmacError, cli_entry
from smac_core.files import atomic_write_text

if TYPE_CHECKING:  # torch-based modules are imported where used: --help answers at once
    import plotly.graph_objects as go
    import torch

    from landscape.evaluate import EvaluationResult
    from smac_core.checkpoint import Checkpoint

    # (P, D) parameter vectors, (P, b) rows of the state pool -> (P,) objective to ascend
    Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

RISK_STREAM = 11  # SeedSequence stream of the update sequences' minibatches
UPDATES_FILE = "updates.pt"


@dataclass(frozen=True)
class ProbeSettings:
    """The update sequences: ``budget`` of them, ``steps`` Adam steps (``lr``) each on
    minibatches of ``batch_size`` rows of a pool of ``pool`` states; the CVaR level ``alpha``."""

    budget: int = 32
    steps: int = 10
    lr: float = 3e-4
    batch_size: int = 256
    pool: int = 10_000
    alpha: float = 0.1

    def __post_init__(self) -> None:
        if self.budget < 1 or self.steps < 1 or self.batch_size < 1 or self.pool < 1 \
                or not (math.isfinite(self.lr) and self.lr > 0) or not 0 < self.alpha <= 1:
            raise SmacError(f"need --budget, --steps, --batch-size, --states >= 1, a finite --lr "
                            f"> 0 and --alpha in (0, 1], got {self}")


def minibatch_rows(seed: int, budget: int, steps: int, batch_size: int, pool: int
                   ) -> torch.Tensor:
    """The rows of every sequence's minibatches, sequence k from its own seeded generator (so a
    sequence draws the same rows whatever the budget): (budget, steps, batch_size) int64."""
    import torch

    from smac_core.rollout import derived_seed

    return torch.stack([torch.randint(pool, (steps, batch_size), generator=torch.Generator()
                                      .manual_seed(derived_seed(seed, RISK_STREAM, k)))
                        for k in range(budget)])


def update_sequences(theta0: torch.Tensor, objective: Objective, rows: torch.Tensor, lr: float
                     ) -> tuple[torch.Tensor, np.ndarray]:
    """Run P independent Adam sequences from theta0 (D,) on the minibatch rows (P, steps, b):
    -> (post-update vectors (P, D), mean objective over the sequences before each step)."""
    import torch

    vectors = theta0.expand(rows.shape[0], -1).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([vectors], lr=lr)
    record = np.empty(rows.shape[1])
    for step in range(rows.shape[1]):
        value = objective(vectors, rows[:, step])
        optimizer.zero_grad(set_to_none=True)
        (-value.sum()).backward()  # row k's gradient is sequence k's own
        optimizer.step()
        record[step] = float(value.detach().mean())
    return vectors.detach(), record


def random_twins(theta0: torch.Tensor, updates: torch.Tensor, template: torch.nn.Module,
                 seed: int) -> torch.Tensor:
    """theta0 + ||u_k - theta0|| d_k / ||d_k|| for random filter-normalised directions d_k
    (``landscape.directions``): (P, D), each at its update's distance."""
    import torch

    from landscape.directions import random_directions
    from landscape.params import param_spec

    directions = torch.stack(random_directions(theta0, param_spec(template), seed,
                                               count=len(updates)))
    distance = (updates - theta0).norm(dim=1, keepdim=True)
    return theta0 + distance * directions / directions.norm(dim=1, keepdim=True)


def cvar(values: np.ndarray, alpha: float) -> float:
    """Mean of the lowest ceil(alpha n) of n values (the left tail)."""
    return float(np.sort(values)[:math.ceil(alpha * len(values))].mean())


def risk_scores(means: np.ndarray, budget: int, alpha: float) -> dict[str, float]:
    """The scores from the point means (1 + 2 budget,): theta_0, the updates, their twins."""
    r0, updates, twins = means[0], means[1:budget + 1], means[budget + 1:]
    return {"update_cvar_drop": float(r0 - cvar(updates, alpha)),
            "update_mean_drop": float(r0 - updates.mean()),
            "random_cvar_drop": float(r0 - cvar(twins, alpha))}


def probe(checkpoint: Checkpoint, objective: Objective, objective_id: dict[str, Any],
          probe_settings: ProbeSettings, settings: EvalSettings, out: Path
          ) -> tuple[dict[str, Any], EvaluationResult]:
    """Update sequences (saved in ``out``/updates.pt), their random twins and theta_0 evaluated
    resumably under ``out``/points: -> (the record of risk.json, the rollouts (1 + 2P, E)).
    ``objective_id`` identifies the objective (e.g. its states' sha256) in the fingerprints."""
    import torch

    from landscape.params import policy_vector

    theta0, _ = policy_vector(checkpoint)
    settings = settings.for_checkpoint(checkpoint)
    p = probe_settings
    fingerprint = {"checkpoint": checkpoint_sha256(checkpoint), "seed": settings.seed,
                   **vars(p), **objective_id}
    rows = minibatch_rows(settings.seed, p.budget, p.steps, p.batch_size, p.pool)
    updates, record = cached_training(out / UPDATES_FILE, fingerprint, lambda: update_sequences(
        theta0, objective, rows, p.lr))
    vectors = torch.cat([theta0[None], updates,
                         random_twins(theta0, updates, checkpoint.policy, settings.seed)])
    digest = hashlib.sha256(vectors.numpy().tobytes()).hexdigest()
    store = PointStore(out / "points", {"command": "risk", "env": checkpoint.env_name,
                                        "vectors": digest, **fingerprint,
                                        **settings.fingerprint()},
                       len(vectors), settings.episodes)
    result = evaluate_points(store, checkpoint.policy, lambda idx: vectors[idx],
                             checkpoint.env_name, settings, desc="risk")
    means, se = result.mean(), result.stderr()
    distance = (vectors - theta0).norm(dim=1).numpy()
    parts = {"update": slice(1, p.budget + 1), "random": slice(p.budget + 1, None)}
    results = {
        "command": "risk", "checkpoint": str(checkpoint.path),
        "sha256": checkpoint_sha256(checkpoint), "env": checkpoint.env_name,
        "unit": result_unit(result), "episodes": settings.episodes, "seed": settings.seed,
        "probe": vars(p), "objective": record.tolist(),
        "theta0": {"mean": float(means[0]), "se": float(se[0])},
        **{name: {"distance": distance[part].tolist(), "mean": means[part].tolist(),
                  "se": se[part].tolist()} for name, part in parts.items()},
        "scores": risk_scores(means, p.budget, p.alpha)}
    return results, result


def results_csv(results: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["kind", "index", "distance", "mean", "se"])
    writer.writerow(["theta0", 0, repr(0.0), repr(results["theta0"]["mean"]),
                     repr(results["theta0"]["se"])])
    for kind in ("update", "random"):
        for k, (d, m, s) in enumerate(zip(*(results[kind][f] for f in ("distance", "mean", "se")),
                                          strict=True)):
            writer.writerow([kind, k, repr(d), repr(m), repr(s)])
    return buffer.getvalue()


def risk_figure(results: dict[str, Any], title: str) -> go.Figure:
    """The neighbours' R against their distance from theta_0, R(theta_0) as a line."""
    import plotly.graph_objects as go

    from landscape.plot import COLORS

    figure = go.Figure()
    for k, kind in enumerate(("update", "random")):
        figure.add_trace(go.Scatter(x=results[kind]["distance"], y=results[kind]["mean"],
                                    mode="markers", name=f"{kind} neighbours",
                                    marker={"color": COLORS[k]},
                                    error_y={"type": "data", "array": results[kind]["se"]}))
    figure.add_hline(y=results["theta0"]["mean"], line={"dash": "dash", "color": "gray"},
                     annotation_text="θ₀")
    figure.update_layout(title=title, xaxis_title="distance from θ₀ (parameter norm)",
                         yaxis_title=f"{results['unit']} (mean ± s.e.)", template="plotly_white")
    return figure


def save_risk_png(results: dict[str, Any], title: str, path: Path) -> None:
    from matplotlib.figure import Figure

    from landscape.plot import COLORS, save_png

    figure = Figure(figsize=(7, 4))
    ax = figure.subplots()
    for k, kind in enumerate(("update", "random")):
        ax.errorbar(results[kind]["distance"], results[kind]["mean"], yerr=results[kind]["se"],
                    fmt="o", markersize=4, color=COLORS[k], label=f"{kind} neighbours")
    ax.axhline(results["theta0"]["mean"], color="gray", linestyle="--", label="θ₀")
    ax.set(xlabel="distance from θ₀", ylabel=f"{results['unit']} (mean ± s.e.)", title=title)
    ax.legend()
    save_png(figure, path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m landscape.risk",
        description="Predict a drop under online fine-tuning before it starts: the return after "
                    "many short independent actor updates on the checkpoint's critic, and at "
                    "random neighbours as far away (left tail, mean, sharpness scores).")
    parser.add_argument("checkpoint", metavar="CKPT", help="a checkpoint or run directory")
    add_probe_args(parser)
    add_evaluation_args(parser)
    return parser


def checkpoint_probe(checkpoint: Checkpoint, dataset: str | None, states: int,
                     probe_settings: ProbeSettings, settings: EvalSettings, out: Path
                     ) -> dict[str, Any]:
    """``probe`` with the checkpoint's critic on ``states`` observations of ``dataset`` (default
    its ``dataset_id``); ``probe_settings.pool`` is replaced by the number drawn."""
    import torch

    from landscape.params import refuse_flow_policies

    refuse_flow_policies([checkpoint], "risk")
    settings = settings.for_checkpoint(checkpoint)
    critic, _ = checkpoint_critic(checkpoint)
    pool = torch.as_tensor(dataset_sample(checkpoint, dataset, states,
                                          settings.seed)["observations"])

    def objective(vectors: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return policy_value(checkpoint.policy, critic, vectors, pool[rows])

    states_sha256 = hashlib.sha256(pool.numpy().tobytes()).hexdigest()
    results, _ = probe(checkpoint, objective, {"states_sha256": states_sha256},
                       replace(probe_settings, pool=len(pool)), settings, out)
    return results | {"dataset": dataset or checkpoint.metadata.get("dataset_id")}


def add_probe_args(parser: argparse.ArgumentParser) -> None:
    """The probe's flags (shared with ``landscape.risk_validation``)."""
    group = parser.add_argument_group("probe")
    group.add_argument("--budget", type=int, default=32,
                       help="independent update sequences (and as many random twins) (default 32)")
    group.add_argument("--steps", type=int, default=10, help="Adam steps per sequence (default 10)")
    group.add_argument("--lr", type=float, default=3e-4,
                       help="Adam step size (default 3e-4, SAC's actor rate)")
    group.add_argument("--batch-size", type=int, default=256,
                       help="states per minibatch (default 256)")
    group.add_argument("--states", type=int, default=10_000,
                       help="pool of dataset observations the minibatches are drawn from "
                            "(default 10000)")
    group.add_argument("--dataset", default=None,
                       help="a dataset id, task name or data file (default: the checkpoint's "
                            "dataset_id)")
    group.add_argument("--alpha", type=float, default=0.1,
                       help="CVaR level: the fraction of the worst neighbours (default 0.1)")


def probe_settings_of(args: argparse.Namespace) -> ProbeSettings:
    return ProbeSettings(args.budget, args.steps, args.lr, args.batch_size, args.states,
                         args.alpha)


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from landscape.plot import write_html
    from smac_core.checkpoint import load_checkpoint

    settings = EvalSettings.from_args(args)
    probe_settings = probe_settings_of(args)
    checkpoint = load_checkpoint(args.checkpoint)
    settings = settings.for_checkpoint(checkpoint)
    out = output_dir(args.out, "risk", {"checkpoint": checkpoint_sha256(checkpoint),
                                        "dataset": args.dataset, **vars(probe_settings),
                                        **settings.fingerprint()})
    with landscape_output(out, "risk", argv):
        results = checkpoint_probe(checkpoint, args.dataset, args.states, probe_settings,
                                   settings, out)
        unit = results["unit"]
        print(f"theta_0: {results['theta0']['mean']:.4g} ± {results['theta0']['se']:.3g} {unit}")
        for name, value in results["scores"].items():
            print(f"{name}: {value:.4g} {unit}")
        title = f"Risk probe of {checkpoint.path.name}"
        atomic_write_text(out / "risk.json", json.dumps(results, indent=1))
        atomic_write_text(out / "risk.csv", results_csv(results))
        write_html(risk_figure(results, title), out / "risk.html")
        save_risk_png(results, title, out / "risk.png")
        print(f"wrote {out}/risk.{{json,csv,html,png}}")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
