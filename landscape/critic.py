"""The critic's landscape along the line between two checkpoints, beside the reward, or on a plane.

    python -m landscape.critic CKPT_A CKPT_B [--points 21] [--range -0.25 1.25] [--batch 1024]
    python -m landscape.critic T0 T1 T2 [--x-range -0.25 1.25] [--x-points 11] [--y-...]

At every t both networks move together: the actor theta(t) = (1 - t) theta_A + t theta_B and the
critic ensemble c(t) = (1 - t) c_A + t c_B. On one fixed batch of ``--batch`` dataset
transitions (s, a, r, s', d) (A's ``dataset_id`` or ``--dataset``; observations normalised,
actions in [-1, 1], rewards in the critic's units scale * r + bias, as in training), with
Q_i the members of c(t), pi = pi_theta(t) and B the batch:

    q_pi     = E_B mean_i Q_i(s, pi(s))                        the critic's value of the policy
    td_error = E_B mean_i (Q_i(s, a) - y)^2,  y = r + gamma (1 - d) mean_j Q_j(s', pi(s'))
    score_cosine = E_B mean_i cos(grad_a Q_i(s, a), score_D(s, a)) at a = pi(s)   (SMAC only)

td_error is a plain TD error with the point's own critic as its target (no target network, no
entropy bonus): one definition for every algorithm, comparable along the line, not any
algorithm's loss. score_D is the run's frozen dataset score model (``--score-model``, default
``<A's run>/score_model`` when A is a SMAC checkpoint), as in SMAC's ``train/score_cosine``.
Each value comes with its standard error over the batch's states; q_pi gets a valley verdict
(``landscape.valley``) as the reward does, and ``agree`` says whether the two verdicts agree on
a valley. No rollouts are needed: every point is computed in one batched pass (``vmap`` over
the stacked parameters, ``--chunk-size`` points at a time). The reward at the same t is
evaluated by ``landscape.interpolate``'s resumable engine unless ``--no-rollouts``.

Writes critic.json / .csv, critic.html (reward and critic panels over t) and critic.png.

With three checkpoints the points are those of ``landscape.surface``'s plane,
T0 + x (T1 - T0) + y (T2 - T0) for actor and critic alike, and the command writes critic.json
/ .csv and per metric critic_<metric>.html / .png (surface and contours); the reward on the same
grid is ``python -m landscape.surface T0 T1 T2`` with the same ranges (no rollouts here).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from landscape.grid import (
    EvalSettings,
    add_evaluation_args,
    checkpoint_sha256,
    landscape_output,
    output_dir,
    plane_coordinates,
    result_unit,
)
from landscape.interpolate import PairResult, evaluate_pair, interpolation_ts
from landscape.valley import DEFAULT_Z, valley_verdict
from smac_core.data import load_dataset
from smac_core.errors import SmacError, cli_entry
from smac_core.files import atomic_write_text
from smac_core.metrics import mean_and_se

if TYPE_CHECKING:  # torch-based modules are imported where used: --help answers at once
    import plotly.graph_objects as go
    import torch

    from landscape.params import ParamSpec
    from smac_core.checkpoint import Checkpoint
    from smac_core.diffusion import DatasetScore
    from smac_core.nets import CriticEnsemble, DeterministicPolicy

    Combine = Callable[[Sequence[torch.Tensor], np.ndarray], torch.Tensor]

LABELS = {"q_pi": "mean Q(s, π(s))", "td_error": "TD error (squared)",
          "score_cosine": "cos(∇ₐQ, score_D)"}


def checkpoint_critic(checkpoint: Checkpoint) -> tuple[CriticEnsemble, float]:
    """The checkpoint's Q ensemble (normalised obs, actions in [-1, 1]), frozen, and its
    discount gamma."""
    from smac_core.algos import make_agent
    from smac_core.checkpoint import sub_state_dict
    from smac_core.nets import CriticEnsemble

    meta = checkpoint.metadata
    agent = make_agent(meta["algorithm"], meta["obs_dim"], meta["act_dim"], meta["config"])
    critic = agent.networks.get("critic")
    tensors = sub_state_dict(checkpoint.tensors, "critic")
    if not isinstance(critic, CriticEnsemble) or not tensors:
        raise SmacError(f"checkpoint {checkpoint.path} ({meta['algorithm']}) has no Q(s, a) "
                        "critic ensemble saved under 'critic.*'")
    critic.load_state_dict(tensors)
    return critic.requires_grad_(False).eval(), agent.config.gamma


def dataset_sample(checkpoint: Checkpoint, dataset: str | None, count: int, seed: int
                   ) -> dict[str, np.ndarray]:
    """``count`` transitions drawn without replacement (all, if fewer) from ``dataset``, else the
    checkpoint's ``dataset_id``, raw, in dataset order: observations, next_observations (B,
    obs_dim), actions (B, act_dim), rewards (B,), terminals (B,)."""
    name = dataset or checkpoint.metadata.get("dataset_id")
    if not name:
        raise SmacError(f"checkpoint {checkpoint.path} records no dataset_id; pass --dataset")
    if count < 1:
        raise SmacError(f"need at least one dataset row, got {count}")
    data = load_dataset(name)
    if (data.obs_dim, data.act_dim) != (checkpoint.metadata["obs_dim"],
                                        checkpoint.metadata["act_dim"]):
        raise SmacError(f"dataset {name} has obs_dim {data.obs_dim} and act_dim {data.act_dim}, "
                        f"the checkpoint {checkpoint.metadata['obs_dim']} and "
                        f"{checkpoint.metadata['act_dim']}")
    rows = np.sort(np.random.default_rng(seed).choice(len(data.observations),
                                                      min(count, len(data.observations)),
                                                      replace=False))
    return {name: getattr(data, name)[rows] for name in (
        "observations", "next_observations", "actions", "rewards", "terminals")}


def agent_batch(policy: DeterministicPolicy, sample: dict[str, np.ndarray],
                metadata: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The sample as the critic saw it in training: observations normalised with ``policy``'s
    statistics, actions in [-1, 1], rewards scale * r + bias, ``dones`` = terminals (float)."""
    import torch

    t = lambda x: torch.as_tensor(np.asarray(x, np.float32))  # noqa: E731
    low, high = policy.action_low, policy.action_high
    return {"observations": (t(sample["observations"]) - policy.obs_mean) / policy.obs_std,
            "next_observations": (t(sample["next_observations"]) - policy.obs_mean)
            / policy.obs_std,
            "actions": (2.0 * (t(sample["actions"]) - low) / (high - low) - 1.0).clamp(-1, 1),
            "rewards": metadata.get("reward_scale", 1.0) * t(sample["rewards"])
            + metadata.get("reward_bias", 0.0),
            "dones": t(sample["terminals"])}


def critic_values(template: DeterministicPolicy, critic: CriticEnsemble,
                  actor_vectors: torch.Tensor, critic_vectors: torch.Tensor,
                  critic_spec: ParamSpec, batch: dict[str, torch.Tensor], gamma: float,
                  score: DatasetScore | None = None) -> dict[str, torch.Tensor]:
    """Per-state metrics of P points, actors (P, Da) with critics (P, Dc) laid out by
    ``critic_spec`` (``critic_vector``), in one batched pass: name -> (P, B) (module
    docstring; score_cosine only with a ``score``)."""
    import torch
    from torch.func import functional_call, jacrev

    from landscape.params import param_spec, unflatten_params
    from smac_core.rollout import batched_policy

    act, actor_spec = batched_policy(template), param_spec(template)
    low, high = template.action_low, template.action_high
    obs, next_obs = batch["observations"], batch["next_observations"]
    raw = lambda o: o * template.obs_std + template.obs_mean  # noqa: E731  the policy's input
    p = actor_vectors.shape[0]

    def unit(params: dict[str, torch.Tensor], o: torch.Tensor) -> torch.Tensor:
        actions = act(params, raw(o).expand(p, -1, -1))                              # (P, B, A)
        return 2.0 * (actions - low) / (high - low) - 1.0

    actor_params = unflatten_params(actor_vectors, actor_spec)
    pi, next_pi = unit(actor_params, obs), unit(actor_params, next_obs)

    def one(params: dict[str, torch.Tensor], a_pi: torch.Tensor, a_next: torch.Tensor
            ) -> tuple[torch.Tensor, ...]:
        q = lambda o, a: functional_call(critic, params, (o, a))  # noqa: E731  (N, B)
        target = batch["rewards"] + gamma * (1.0 - batch["dones"]) * q(next_obs, a_next).mean(0)
        td = ((q(obs, batch["actions"]) - target) ** 2).mean(0)
        grad = jacrev(lambda a: q(obs, a).sum(1))(a_pi)  # (N, B, A): rows are independent
        return q(obs, a_pi).mean(0), td, grad

    q_pi, td, grad_q = torch.vmap(one)(unflatten_params(critic_vectors, critic_spec), pi, next_pi)
    values = {"q_pi": q_pi, "td_error": td}
    if score is not None:
        score_d = score(obs.expand(p, -1, -1), pi)                                 # (P, B, A)
        values["score_cosine"] = torch.nn.functional.cosine_similarity(
            grad_q, score_d[:, None], dim=-1).mean(1)
    return values



def default_score_model(checkpoint: Checkpoint) -> Path | None:
    """``<run>/score_model`` of a SMAC checkpoint ``<run>/checkpoints/<name>``, if it exists."""
    from smac_core.algos.smac import SCORE_MODEL_DIR

    directory = checkpoint.path.parent.parent / SCORE_MODEL_DIR
    return directory if checkpoint.metadata["algorithm"] == "smac" and directory.is_dir() \
        else None


def point_values(checkpoints: Sequence[Checkpoint], combine: Combine, n_points: int,
                 batch: dict[str, torch.Tensor], chunk_size: int,
                 score: DatasetScore | None = None) -> dict[str, np.ndarray]:
    """Per-state metrics of ``n_points`` points, the actor and the critic of point p both
    ``combine(anchors, indices)`` of the checkpoints' vectors (the same coefficients):
    name -> (n_points, B), ``chunk_size`` points per batched pass."""
    import torch

    from landscape.params import critic_vector, param_spec, policy_vector

    actors = [policy_vector(c)[0] for c in checkpoints]
    critics = [critic_vector(c) for c in checkpoints]
    critic, gamma = checkpoint_critic(checkpoints[0])
    spec = critics[0][1]
    if any(other != spec for _, other in critics) or \
            set(spec.names) != set(param_spec(critic).names):
        raise SmacError(f"checkpoints {', '.join(str(c.path) for c in checkpoints)} have "
                        "different critic architectures")
    chunks = []
    with torch.no_grad():  # (torch.func's jacrev still differentiates inside)
        for start in range(0, n_points, chunk_size):
            indices = np.arange(start, min(start + chunk_size, n_points))
            chunks.append(critic_values(checkpoints[0].policy, critic, combine(actors, indices),
                                        combine([v for v, _ in critics], indices), spec, batch,
                                        gamma, score))
    return {name: torch.cat([c[name] for c in chunks]).numpy() for name in chunks[0]}


def line_values(checkpoints: tuple[Checkpoint, Checkpoint], ts: np.ndarray,
                batch: dict[str, torch.Tensor], chunk_size: int,
                score: DatasetScore | None = None) -> dict[str, np.ndarray]:
    """``point_values`` at every t (T,) of the line: name -> (T, B)."""
    from landscape.paths import interpolate_linear

    return point_values(checkpoints, lambda v, idx: interpolate_linear(v[0], v[1], ts[idx]),
                        len(ts), batch, chunk_size, score)


def plane_values(checkpoints: Sequence[Checkpoint], coords: np.ndarray,
                 batch: dict[str, torch.Tensor], chunk_size: int,
                 score: DatasetScore | None = None) -> dict[str, np.ndarray]:
    """``point_values`` at every (x, y) (P, 2) of the plane origin + x (T1 - T0) + y (T2 - T0)
    (``landscape.surface``'s): name -> (P, B)."""
    from landscape.paths import plane_points

    def combine(v: Sequence[torch.Tensor], idx: np.ndarray) -> torch.Tensor:
        return plane_points(v[0], v[1] - v[0], v[2] - v[0], coords[idx, 0], coords[idx, 1])

    return point_values(checkpoints, combine, len(coords), batch, chunk_size, score)


def summary(values: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (mean (T,), standard error over the batch's states (T,))."""
    return {name: mean_and_se(v, axis=1) for name, v in values.items()}


def results_json(ts: np.ndarray, stats: dict[str, tuple[np.ndarray, np.ndarray]],
                 reward: PairResult | None, checkpoints: tuple[Checkpoint, Checkpoint],
                 info: dict[str, Any], z: float) -> dict[str, Any]:
    q_verdict = valley_verdict(ts, *stats["q_pi"], z)
    record: dict[str, Any] = {
        "command": "critic", "t": ts.tolist(),
        "checkpoint_a": str(checkpoints[0].path), "checkpoint_b": str(checkpoints[1].path),
        "sha256": [checkpoint_sha256(c) for c in checkpoints], **info,
        "critic": {name: {"mean": m.tolist(), "se": se.tolist()} for name, (m, se) in
                   stats.items()},
        "q_pi_verdict": q_verdict.to_dict(), "reward": None, "agree": None}
    if reward is not None:
        curve = reward.curve
        record["reward"] = {"unit": result_unit(reward.result), "mean": curve.mean.tolist(),
                            "se": curve.se.tolist(), "seed": reward.seed,
                            "verdict": curve.verdict.to_dict()}
        record["agree"] = (curve.verdict.verdict == "valley") == (q_verdict.verdict == "valley")
    return record


def results_csv(results: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    series = ([("reward", results["reward"])] if results["reward"] else []) + \
        list(results["critic"].items())
    writer.writerow(["t", *(f"{name}{part}" for name, _ in series for part in ("", "_se"))])
    for k, t in enumerate(results["t"]):
        writer.writerow([repr(t), *(repr(s[part][k]) for _, s in series
                                    for part in ("mean", "se"))])
    return buffer.getvalue()


def _panels(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    reward = results["reward"]
    return ([(f"reward ({reward['unit']})", reward)] if reward else []) + \
        [(LABELS[name], s) for name, s in results["critic"].items()]


def critic_figure(results: dict[str, Any], title: str) -> go.Figure:
    """One panel per series (reward first) over t, mean with +- s.e. error bars."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from landscape.plot import COLORS

    panels = _panels(results)
    figure = make_subplots(rows=len(panels), cols=1, shared_xaxes=True,
                           subplot_titles=[label for label, _ in panels])
    for row, (label, series) in enumerate(panels, start=1):
        figure.add_trace(go.Scatter(x=results["t"], y=series["mean"], mode="lines+markers",
                                    name=label, line={"color": COLORS[row - 1]},
                                    error_y={"type": "data", "array": series["se"]}),
                         row=row, col=1)
        for t in (0.0, 1.0):
            figure.add_vline(x=t, line={"dash": "dash", "color": "gray"}, row=row, col=1)
    figure.update_xaxes(title_text="t  (actor and critic (1−t) A + t B)", row=len(panels))
    figure.update_layout(title=title, template="plotly_white", height=250 * len(panels))
    return figure


def save_critic_png(results: dict[str, Any], title: str, path: Path) -> None:
    from matplotlib.figure import Figure

    from landscape.plot import COLORS, save_png

    panels = _panels(results)
    figure = Figure(figsize=(7, 2.4 * len(panels)))
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for k, (ax, (label, series)) in enumerate(zip(axes, panels, strict=True)):
        ax.errorbar(results["t"], series["mean"], yerr=series["se"], marker="o", markersize=3,
                    color=COLORS[k])
        for t in (0.0, 1.0):
            ax.axvline(t, color="gray", linestyle="--", linewidth=1)
        ax.set(ylabel=label)
    axes[0].set_title(title)
    axes[-1].set(xlabel="t")
    save_png(figure, path)


def format_table(results: dict[str, Any]) -> str:
    """t and every series' mean, then the verdicts and whether they agree on a valley."""
    panels = _panels(results)
    lines = [" ".join([f"{'t':>8}", *(f"{label[:22]:>23}" for label, _ in panels)])]
    for k, t in enumerate(results["t"]):
        lines.append(" ".join([f"{t:8.3f}", *(f"{s['mean'][k]:23.5g}" for _, s in panels)]))
    lines.append(f"mean Q verdict: {results['q_pi_verdict']['verdict']}")
    if results["reward"]:
        lines.append(f"reward verdict: {results['reward']['verdict']['verdict']}; the critic "
                     f"{'agrees' if results['agree'] else 'disagrees'} on a valley")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m landscape.critic",
        description="The critic's landscape (mean Q of the policy, TD error, SMAC's score "
                    "cosine) on a fixed dataset batch along the line between two checkpoints "
                    "(beside the reward) or on the plane of three, actor and critic moving "
                    "together.")
    parser.add_argument("checkpoints", nargs="+", metavar="CKPT",
                        help="A (t=0) and B (t=1) for the line, or T0 T1 T2 for the plane "
                             "T0 + x (T1 - T0) + y (T2 - T0): checkpoints or run directories")
    parser.add_argument("--points", type=int, default=21,
                        help="evenly spaced t in --range; t=0 and 1 are added (default 21)")
    parser.add_argument("--range", nargs=2, type=float, default=(-0.25, 1.25),
                        metavar=("LOW", "HIGH"), help="t interval containing [0, 1] "
                                                      "(default -0.25 1.25)")
    for axis in ("x", "y"):
        parser.add_argument(f"--{axis}-range", nargs=2, type=float, default=(-0.25, 1.25),
                            metavar=("LOW", "HIGH"), help=f"plane: {axis} interval (default "
                                                          "-0.25 1.25)")
        parser.add_argument(f"--{axis}-points", type=int, default=11,
                            help=f"plane: grid points along {axis} (default 11)")
    parser.add_argument("--batch", type=int, default=1024,
                        help="dataset transitions of the fixed batch (default 1024)")
    parser.add_argument("--dataset", default=None,
                        help="a dataset id, task name or data file (default: A's dataset_id)")
    parser.add_argument("--score-model", type=Path, default=None,
                        help="a saved dataset score model for score_cosine (default: "
                             "<A's run>/score_model when A is a SMAC checkpoint)")
    parser.add_argument("--no-rollouts", action="store_true",
                        help="only the critic: do not evaluate the reward")
    parser.add_argument("--z", type=float, default=DEFAULT_Z,
                        help=f"level of the valley verdicts, as interpolate's (default "
                             f"{DEFAULT_Z:g})")
    add_evaluation_args(parser)
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from landscape.params import check_compatible, refuse_flow_policies
    from landscape.plot import write_html
    from smac_core.checkpoint import CheckpointArtifact, load_checkpoint
    from smac_core.diffusion import DatasetScore

    settings = EvalSettings.from_args(args)
    plane = len(args.checkpoints) == 3
    if len(args.checkpoints) not in (2, 3):
        raise SmacError(f"give two checkpoints (a line) or three (a plane), got "
                        f"{len(args.checkpoints)}")
    if not plane and not args.no_rollouts and settings.episodes < 2:
        raise SmacError("the reward's valley verdict needs standard errors: use --episodes 2 "
                        "or more (or --no-rollouts)")
    if args.batch < 2 or not (math.isfinite(args.z) and args.z > 0):
        raise SmacError(f"need --batch >= 2 (standard errors) and a finite --z > 0, got "
                        f"{args.batch}, {args.z}")
    if plane:
        xs, ys = (_axis(getattr(args, f"{a}_range"), getattr(args, f"{a}_points"), a)
                  for a in ("x", "y"))
        points = {"x": xs.tolist(), "y": ys.tolist()}
    else:
        ts = interpolation_ts(args.points, *args.range)
        points = {"ts": ts.tolist()}
    checkpoints = [load_checkpoint(c) for c in args.checkpoints]
    refuse_flow_policies(checkpoints, "critic")
    check_compatible(checkpoints)
    settings = settings.for_checkpoint(checkpoints[0])
    sample = dataset_sample(checkpoints[0], args.dataset, args.batch, settings.seed)
    batch = agent_batch(checkpoints[0].policy, sample, checkpoints[0].metadata)
    score_dir = args.score_model or default_score_model(checkpoints[0])
    score = None if score_dir is None else DatasetScore.load(CheckpointArtifact(score_dir))
    info = {"batch": len(sample["rewards"]), "dataset": args.dataset or
            checkpoints[0].metadata.get("dataset_id"), "seed": settings.seed,
            "score_model": None if score_dir is None else str(score_dir)}
    out = output_dir(args.out, "critic", {
        "checkpoints": [checkpoint_sha256(c) for c in checkpoints], **points, **info,
        "rollouts": not (plane or args.no_rollouts), **settings.fingerprint()})
    with landscape_output(out, "critic", argv):
        if plane:
            _write_plane(checkpoints, xs, ys, batch, settings.chunk_size, score, info, out)
            return 0
        stats = summary(line_values((checkpoints[0], checkpoints[1]), ts, batch,
                                    settings.chunk_size, score))
        reward = None if args.no_rollouts else evaluate_pair(
            *checkpoints, ts, "reward", settings, out / "points", args.z)
        results = results_json(ts, stats, reward, (checkpoints[0], checkpoints[1]), info, args.z)
        print(format_table(results))
        title = "Critic along the line between checkpoints"
        atomic_write_text(out / "critic.json", json.dumps(results, indent=1))
        atomic_write_text(out / "critic.csv", results_csv(results))
        write_html(critic_figure(results, title), out / "critic.html")
        save_critic_png(results, title, out / "critic.png")
        print(f"wrote {out}/critic.{{json,csv,html,png}}")
    return 0


def _axis(bounds: Sequence[float], points: int, axis: str) -> np.ndarray:
    low, high = bounds
    if points < 2 or not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise SmacError(f"--{axis}-range needs finite LOW < HIGH and --{axis}-points >= 2, got "
                        f"[{low}, {high}] with {points} points")
    return np.linspace(low, high, points)


def _write_plane(checkpoints: Sequence[Checkpoint], xs: np.ndarray, ys: np.ndarray,
                 batch: dict[str, torch.Tensor], chunk_size: int, score: DatasetScore | None,
                 info: dict[str, Any], out: Path) -> None:
    """The metrics on the grid xs (X,) by ys (Y,): critic.json / .csv, and per metric a Plotly
    surface page and a contour PNG (``landscape.plot``'s, as ``surface``'s reward)."""
    from landscape.plot import PlanePoint, save_surface_png, surface_figure, write_html

    coords = plane_coordinates(xs, ys)
    stats = summary(plane_values(checkpoints, coords, batch, chunk_size, score))
    shape = (len(ys), len(xs))
    results = {"command": "critic", "x": xs.tolist(), "y": ys.tolist(),
               "checkpoints": [str(c.path) for c in checkpoints],
               "sha256": [checkpoint_sha256(c) for c in checkpoints], **info,
               "critic": {name: {"mean": m.reshape(shape).tolist(),
                                 "se": se.reshape(shape).tolist()}
                          for name, (m, se) in stats.items()}}
    atomic_write_text(out / "critic.json", json.dumps(results, indent=1))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["x", "y", *(f"{name}{part}" for name in stats for part in ("", "_se"))])
    for k, (x, y) in enumerate(coords):
        writer.writerow([repr(float(x)), repr(float(y)),
                         *(repr(float(v[k])) for pair in stats.values() for v in pair)])
    atomic_write_text(out / "critic.csv", buffer.getvalue())
    marks = [PlanePoint(x, y, f"T{k}: {c.path.name}", "anchor")
             for k, ((x, y), c) in enumerate(zip([(0, 0), (1, 0), (0, 1)], checkpoints,
                                                  strict=True))]
    labels = ("x  (T1 − T0)", "y  (T2 − T0)")
    for name, (mean, se) in stats.items():
        title = f"{LABELS[name]} on the plane of three checkpoints"
        write_html(surface_figure(xs, ys, mean.reshape(shape), se.reshape(shape), LABELS[name],
                                  marks, title, labels), out / f"critic_{name}.html")
        save_surface_png(xs, ys, mean.reshape(shape), LABELS[name], marks, title, labels,
                         out / f"critic_{name}.png")
        print(f"{name}: min {mean.min():.5g}, max {mean.max():.5g}")
    print(f"wrote {out}/critic.{{json,csv}} and {out}/critic_<metric>.{{html,png}}")

if __name__ == "__main__":
    raise SystemExit(main())
