"""A learned curve between two checkpoints, against the straight line, with valley verdicts.

    python -m landscape.path CKPT_A CKPT_B [--curve bezier|polychain] [--bends 1] [--steps 500]

Mode connectivity (Garipov et al. 2018) for policies: the curve phi(t), t in [0, 1], has its
ends fixed at theta_A (t = 0) and theta_B (t = 1) and K free bends w_1..w_K (``--bends``), the
control points of a Bezier curve of degree K + 1 or the inner nodes of a polygonal chain
(``landscape.paths``). The bends start evenly spaced on the straight line, where both curves
*are* the straight line, and are trained by Adam (``--lr``, in parameter units) for ``--steps``
steps, each on ``--t-samples`` fresh t ~ U(0, 1), to maximise a differentiable surrogate of
the return along the curve,

    J(w) = E_t E_s [ mean_i Q_i(s, pi_phi(t)(s)) ],

Q_i the critic ensemble of B (``--critic b``, the default: the fine-tuned critic, the better
estimate of what the online policy earns) or of A (``--critic a``), held fixed for every t: one
objective of the actor parameters, so a gain of J is a move of the actor, never of an
interpolated critic. s runs over ``--states`` observations drawn once from A's dataset (its
metadata's ``dataset_id``, or ``--dataset``); the critic sees them normalised and the actions
in [-1, 1], as in training. A flow policy (QAM, TRQAM) acts at each of these states from one
initial noise x_0 ~ N(0, I) drawn once from the evaluation seed and shared by every theta and t
(common random numbers, as in its rollouts): pi_theta(s) is then its deterministic chunk of H
actions, differentiable through the K Euler steps, which its critic (on chunks) scores. The
learned curve and the straight line are then evaluated by
rollouts at ``--points`` evenly spaced t in [0, 1] with the engine of ``landscape.interpolate``
(the same episodes for every point) and both get a valley verdict (``landscape.valley``).

Writes to ``--out``: curve.pt (the bends and the objective per step), path.json / .csv
(``interpolate``'s layout, two curves, plus the surrogate at each t and the training record),
path.html and path.png. The bends are saved once trained and the evaluated points kept under
points/, so rerunning the same command resumes: an interrupted training restarts and, being
deterministic (t and the states are drawn from the evaluation seed), gives the same bends.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
from collections.abc import Callable, Sequence
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
from landscape.interpolate import PairResult, evaluate_pair, format_table, results_csv, results_json
from landscape.valley import DEFAULT_Z, Curve, valley_verdict
from smac_core.errors import SmacError, cli_entry
from smac_core.files import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:  # torch-based modules are imported where used: --help answers at once
    import torch

    from smac_core.checkpoint import Checkpoint
    from smac_core.nets import CriticEnsemble, DeterministicPolicy

    Surrogate = Callable[[torch.Tensor], torch.Tensor]  # (P, D) parameter vectors -> (P,)

CURVES = ("bezier", "polychain")  # landscape.paths' bezier_curve, polygonal_chain
CURVE_FILE = "curve.pt"
SURROGATE_NOISE_STREAM = 0x5A7E  # a flow policy's noise at the surrogate's states: its own stream


def initial_bends(theta_a: torch.Tensor, theta_b: torch.Tensor, bends: int) -> torch.Tensor:
    """K bends evenly spaced on the straight line, k / (K + 1): (D,), (D,) -> (K, D). With
    them both curve kinds are exactly the straight line."""
    import torch

    s = torch.arange(1, bends + 1, dtype=theta_a.dtype, device=theta_a.device)[:, None]
    return (1.0 - s / (bends + 1)) * theta_a + s / (bends + 1) * theta_b


def curve_points(kind: str, theta_a: torch.Tensor, theta_b: torch.Tensor, bends: torch.Tensor,
                 ts: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """phi(t) of the curve with ends theta_a, theta_b (D,) and bends (K, D) at each t: (T, D);
    differentiable in ``bends``."""
    from landscape.paths import bezier_curve, polygonal_chain

    curve = {"bezier": bezier_curve, "polychain": polygonal_chain}[kind]
    return curve([theta_a, *bends, theta_b], ts)


def check_training(kind: str, bends: int, steps: int, lr: float, t_samples: int) -> None:
    """SmacError unless the training settings make sense."""
    if kind not in CURVES:
        raise SmacError(f"--curve must be one of {sorted(CURVES)}, got {kind!r}")
    if bends < 1 or steps < 0 or t_samples < 1 or not (math.isfinite(lr) and lr > 0):
        raise SmacError(f"need --bends >= 1, --steps >= 0, --t-samples >= 1 and a finite --lr "
                        f"> 0, got {bends}, {steps}, {t_samples} and {lr}")


def learn_curve(theta_a: torch.Tensor, theta_b: torch.Tensor, surrogate: Surrogate, kind: str,
                bends: int, steps: int, lr: float, t_samples: int, seed: int
                ) -> tuple[torch.Tensor, np.ndarray]:
    """Maximise E_t surrogate(phi(t)) over the bends by Adam, ``t_samples`` t ~ U(0, 1) per
    step (Garipov et al. 2018): -> (bends (K, D), the batch's mean surrogate per step (steps,))."""
    import torch

    check_training(kind, bends, steps, lr, t_samples)
    weights = initial_bends(theta_a, theta_b, bends).requires_grad_(True)
    optimizer = torch.optim.Adam([weights], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    objective = np.empty(steps)
    for step in range(steps):
        ts = torch.rand(t_samples, generator=generator, dtype=torch.float64).to(theta_a)
        value = surrogate(curve_points(kind, theta_a, theta_b, weights, ts)).mean()
        optimizer.zero_grad(set_to_none=True)
        (-value).backward()
        optimizer.step()
        objective[step] = float(value.detach())
    return weights.detach(), objective


def policy_value(template: DeterministicPolicy, critic: CriticEnsemble, vectors: torch.Tensor,
                 observations: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """E_s [mean_i Q_i(s, pi_theta(s))] of each theta (P, D) over its own raw observations
    (P, B, obs_dim): -> (P,), differentiable in theta; the template gives the normalisation and
    action bounds, the critic sees normalised observations and actions in [-1, 1]. A flow
    policy acts from ``noise`` (P, B, noise_dim) as well: its chunk of H actions (P, B, H *
    act_dim), differentiable through the Euler steps, is what its critic scores."""
    from landscape.params import param_spec, unflatten_params
    from smac_core.rollout import batched_policy

    p, b = observations.shape[:2]
    inputs = (observations,) if noise is None else (observations, noise)
    actions = batched_policy(template)(unflatten_params(vectors, param_spec(template)), *inputs)
    repeats = actions.shape[-1] // template.action_low.shape[-1]  # H actions in a flow's chunk
    low, high = template.action_low.repeat(repeats), template.action_high.repeat(repeats)
    unit_actions = 2.0 * (actions - low) / (high - low) - 1.0                         # (P, B, A)
    normalised = (observations - template.obs_mean) / template.obs_std
    q = critic(normalised.reshape(p * b, -1), unit_actions.reshape(p * b, -1))        # (N, P*B)
    return q.mean(dim=0).reshape(p, b).mean(dim=1)


def surrogate_noise(template: DeterministicPolicy, states: int, seed: int) -> torch.Tensor | None:
    """The initial noise x_0 ~ N(0, I) of a flow policy at each surrogate state (states,
    noise_dim), drawn once from ``seed`` and shared by every theta and t (common random numbers,
    as in the rollouts); None for a policy that takes no noise."""
    import torch

    from smac_core.rollout import noise_dim

    dim = noise_dim(template)
    if dim == 0:
        return None
    rng = np.random.default_rng([seed, SURROGATE_NOISE_STREAM])
    return torch.as_tensor(rng.standard_normal((states, dim)), dtype=torch.float32)


def critic_surrogate(template: DeterministicPolicy, critic: CriticEnsemble,
                     observations: torch.Tensor, noise: torch.Tensor | None = None) -> Surrogate:
    """theta (P, D) -> (P,) ``policy_value`` over the same raw ``observations`` (B, obs_dim)
    and, for a flow policy, the same ``noise`` (B, noise_dim)."""
    def surrogate(vectors: torch.Tensor) -> torch.Tensor:
        expand = lambda x: x.expand(len(vectors), -1, -1)  # noqa: E731
        return policy_value(template, critic, vectors, expand(observations),
                            None if noise is None else expand(noise))

    return surrogate


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def cached_training(path: Path, fingerprint: dict[str, Any], train: Callable[[], tuple[
        torch.Tensor, np.ndarray]]) -> tuple[torch.Tensor, np.ndarray]:
    """The (tensor, record) that ``train()`` returned for ``fingerprint``, saved at ``path``:
    loaded when saved, else trained and saved."""
    import torch

    canonical = json.dumps(fingerprint, sort_keys=True)
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        if saved["fingerprint"] != canonical:
            raise SmacError(f"{path} holds a training with other settings; rerun with the same "
                            "settings to resume, or choose another --out")
        return saved["tensor"], saved["record"].numpy()
    tensor, record = train()
    buffer = io.BytesIO()
    torch.save({"fingerprint": canonical, "tensor": tensor.cpu(),
                "record": torch.from_numpy(record)}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return tensor.cpu(), record


def evaluate_curve(checkpoints: tuple[Checkpoint, Checkpoint], kind: str, bends: torch.Tensor,
                   ts: np.ndarray, label: str, settings: EvalSettings, store_root: Path,
                   z: float = DEFAULT_Z) -> PairResult:
    """Rollouts of the curve at every t (T,), resumably, with its valley verdict."""
    from landscape.params import policy_vector

    (theta_a, ckpt_a), (theta_b, ckpt_b) = (policy_vector(c) for c in checkpoints)
    settings = settings.for_checkpoint(ckpt_a)
    fingerprint = {"command": "path", "env": ckpt_a.env_name, "curve": kind,
                   "checkpoints": [checkpoint_sha256(ckpt_a), checkpoint_sha256(ckpt_b)],
                   "bends": _sha256(bends.numpy()), "ts": ts.tolist(), **settings.fingerprint()}
    store = PointStore(store_root, fingerprint, len(ts), settings.episodes)
    result = evaluate_points(store, ckpt_a.policy,
                             lambda idx: curve_points(kind, theta_a, theta_b, bends, ts[idx]),
                             ckpt_a.env_name, settings, desc=label)
    mean, se = result.mean(), result.stderr()
    curve = Curve(label, ts, mean, se, valley_verdict(ts, mean, se, z))
    return PairResult(curve, checkpoints, result, settings.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m landscape.path",
        description="Learn a curve with fixed ends between two checkpoints by maximising the "
                    "critic's value of the policies along it, then evaluate it and the straight "
                    "line by rollouts, with valley verdicts, JSON/CSV, a Plotly page and a PNG.")
    parser.add_argument("checkpoints", nargs=2, metavar="CKPT",
                        help="A (t=0) and B (t=1): checkpoints or run directories (final "
                             "checkpoint)")
    parser.add_argument("--curve", choices=CURVES, default="bezier",
                        help="Bezier curve (K bends = inner control points) or polygonal chain "
                             "(K bends = inner nodes) (default bezier)")
    parser.add_argument("--bends", type=int, default=1,
                        help="K, trainable bends (default 1: Garipov et al.'s quadratic curve)")
    parser.add_argument("--steps", type=int, default=500, help="Adam steps (default 500)")
    parser.add_argument("--lr", type=float, default=1e-4,
                        help="Adam step size, in parameter units (default 1e-4)")
    parser.add_argument("--t-samples", type=int, default=8,
                        help="t ~ U(0, 1) drawn per step (default 8)")
    parser.add_argument("--critic", choices=("a", "b"), default="b",
                        help="whose critic is the surrogate, fixed along the curve (default b)")
    parser.add_argument("--states", type=int, default=1024,
                        help="dataset observations the surrogate averages over (default 1024)")
    parser.add_argument("--dataset", default=None,
                        help="dataset of the states: a dataset id, task name or data file "
                             "(default: A's dataset_id)")
    parser.add_argument("--points", type=int, default=21,
                        help="evenly spaced t in [0, 1] evaluated by rollouts (default 21)")
    parser.add_argument("--z", type=float, default=DEFAULT_Z,
                        help=f"level of the valley verdicts, as interpolate's (default "
                             f"{DEFAULT_Z:g})")
    add_evaluation_args(parser)
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from landscape.params import check_compatible
    from smac_core.checkpoint import load_checkpoint

    settings = EvalSettings.from_args(args)
    if settings.episodes < 2:
        raise SmacError("the valley verdict needs standard errors: use --episodes 2 or more")
    if args.points < 3 or not (math.isfinite(args.z) and args.z > 0):
        raise SmacError(f"need --points >= 3 and a finite --z > 0, got {args.points}, {args.z}")
    check_training(args.curve, args.bends, args.steps, args.lr, args.t_samples)
    ckpt_a, ckpt_b = (load_checkpoint(c) for c in args.checkpoints)
    check_compatible([ckpt_a, ckpt_b])
    settings = settings.for_checkpoint(ckpt_a)
    critic, _ = checkpoint_critic(ckpt_b if args.critic == "b" else ckpt_a)
    states = torch.as_tensor(dataset_sample(ckpt_a, args.dataset, args.states,
                                            settings.seed)["observations"])
    training = {"curve": args.curve, "bends": args.bends, "steps": args.steps, "lr": args.lr,
                "t_samples": args.t_samples, "critic": args.critic, "states": len(states),
                "states_sha256": _sha256(states.numpy()), "seed": settings.seed,
                "checkpoints": [checkpoint_sha256(ckpt_a), checkpoint_sha256(ckpt_b)]}
    out = output_dir(args.out, "path", {**training, "points": args.points,
                                        **settings.fingerprint()})
    with landscape_output(out, "path", argv):
        return _learn_evaluate_and_write((ckpt_a, ckpt_b), critic, states, training, args,
                                         settings, out)


def _learn_evaluate_and_write(checkpoints: tuple[Checkpoint, Checkpoint], critic: CriticEnsemble,
                              states: torch.Tensor, training: dict[str, Any],
                              args: argparse.Namespace, settings: EvalSettings, out: Path) -> int:
    import torch

    from landscape.params import policy_vector
    from landscape.paths import interpolate_linear
    from landscape.plot import interpolation_figure, save_interpolation_png, write_html

    (theta_a, ckpt_a), (theta_b, _) = (policy_vector(c) for c in checkpoints)
    noise = surrogate_noise(ckpt_a.policy, len(states), settings.seed)
    surrogate = critic_surrogate(ckpt_a.policy, critic, states, noise)
    bends, objective = cached_training(out / CURVE_FILE, training, lambda: learn_curve(
        theta_a, theta_b, surrogate, args.curve, args.bends, args.steps, args.lr,
        args.t_samples, settings.seed))
    ts = np.linspace(0.0, 1.0, args.points)
    line = evaluate_pair(*checkpoints, ts, "straight line", settings, out / "points" / "line",
                         args.z)
    learned = evaluate_curve(checkpoints, args.curve, bends, ts, f"learned {args.curve}",
                             settings, out / "points" / "curve", args.z)
    unit = result_unit(line.result)
    for pair in (line, learned):
        print(format_table(pair, unit))
    with torch.no_grad():
        values = [surrogate(points).numpy() for points in (
            interpolate_linear(theta_a, theta_b, ts),
            curve_points(args.curve, theta_a, theta_b, bends, ts))]
    results = results_json([line, learned], unit, settings)
    results |= {"command": "path", "training": training | {"objective": objective.tolist()}}
    for record, value in zip(results["curves"], values, strict=True):
        record["surrogate"] = value.tolist()
    atomic_write_text(out / "path.json", json.dumps(results, indent=1))
    atomic_write_text(out / "path.csv", results_csv([line, learned]))
    curves = [line.curve, learned.curve]
    title = f"Straight line and learned {args.curve} ({args.bends} bends) between checkpoints"
    figure = interpolation_figure(curves, unit, title)
    figure.update_layout(xaxis_title="t  (θ_A at t = 0, θ_B at t = 1)")
    write_html(figure, out / "path.html")
    save_interpolation_png(curves, unit, title, out / "path.png")
    print(f"wrote {out}/path.{{json,csv,html,png}} and {out}/{CURVE_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
