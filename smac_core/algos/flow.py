"""Flow policies and the adjoint-matching machinery shared by QAM and TRQAM.

A flow policy maps Gaussian noise x_0 ~ N(0, I) to an action chunk x_1 by integrating a learned
velocity field v(s, x_t, t) from t = 0 to t = 1 (rectified flow / flow matching, Lipman et al.
2023; Liu et al. 2023). Chunks hold H consecutive actions flattened to H * act_dim (H = 1:
single actions); every function here works on the flattened chunk.

Conventions (QAM, arXiv 2601.14234, and its reference code): K Euler steps of size h = 1 / K at
times t_k = k h, k = 0 .. K-1 (K = 10 in both papers).

- Flow-matching BC: x_t = (1 - t) x_0 + t x_1, t ~ U[0, 1), target velocity x_1 - x_0.
- Memoryless noise schedule (Adjoint Matching, Domingo-Enrich et al. 2025, with QAM's +h shift
  that keeps t = 0 finite): g_k = sqrt(2 (1 - t_k + h) / (t_k + h)).
- The memoryless SDE of a velocity field v: dx = b dt + g dW with b(x, t) = 2 v(x, t) - x / (t + h):
  for the linear interpolant, v + (g^2 / 2) * score with the score of x_t written through v.
- Adjoint matching (the "lean adjoint"): the fine-tuned SDE is sampled, the last step by the
  base ODE; the adjoint starts at the terminal reward gradient and runs backwards through the
  base drift's vector-Jacobian products only; the fine-tuned field regresses onto
  v_base - sigma^2 adj / 2 through the loss sum_k ||2 (v_ft - v_base) / sigma_k + sigma_k adj_k||^2.
  Its fixed point tilts the base: p_ft(a|s) ~ p_base(a|s) exp(r(s, a)), r the terminal reward.

Tensor shapes: B batch, D = H * act_dim, K flow steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from smac_core.nets import MLP

FLOW_ALGORITHMS = ("qam", "trqam")  # agents whose checkpoints hold a flow policy (``actor.net.*``)
FLOW_STEPS = 10  # K: Euler steps of the flow, both papers (QAM Table 5, TRQAM: "10 flow steps")

# v(obs (B, obs_dim), x (B, D), t (B, 1)) -> (B, D)
Velocity = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class VelocityField(nn.Module):
    """v(s, x_t, t): the velocity of a flow policy over action chunks.

    An MLP on the concatenation [s, x_t, t] (as FQL/QAM's ``ActorVectorField``), output layer
    initialised near 0. ``forward(obs (B, obs_dim), x (B, D), t (B, 1)) -> (B, D)`` with
    D = ``horizon * act_dim``.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], horizon: int = 1,
                 activation: str = "gelu", layer_norm: bool = False) -> None:
        super().__init__()
        self.act_dim, self.horizon = act_dim, horizon
        self.chunk_dim = horizon * act_dim
        self.net = MLP(obs_dim + self.chunk_dim + 1, hidden, self.chunk_dim,
                       layer_norm=layer_norm, activation=activation)

    def forward(self, obs: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, x, t], dim=-1))


def flow_matching_noise(actions: torch.Tensor) -> dict[str, torch.Tensor]:
    """The draws of ``flow_matching_loss`` from torch's global generator: ``x0`` ~ N(0, I) shaped
    like ``actions`` (B, D), ``t`` ~ U[0, 1) (B, 1)."""
    return {"x0": torch.randn_like(actions),
            "t": torch.rand(actions.shape[0], 1, device=actions.device)}


def flow_matching_loss(field: Velocity, obs: torch.Tensor, actions: torch.Tensor,
                       x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Flow-matching behaviour cloning: E ||v(s, x_t, t) - (x_1 - x_0)||^2 / D, a scalar.

    ``actions`` (B, D): dataset chunks x_1; ``x0`` (B, D) and ``t`` (B, 1) as
    ``flow_matching_noise`` draws them; x_t = (1 - t) x_0 + t x_1. Mean over dims and batch
    (QAM's code).
    """
    x_t = (1.0 - t) * x0 + t * actions
    return ((field(obs, x_t, t) - (actions - x0)) ** 2).mean()


def euler_sample(field: Velocity, obs: torch.Tensor, noise: torch.Tensor,
                 steps: int = FLOW_STEPS) -> torch.Tensor:
    """x_1 of the flow ODE dx/dt = v(s, x, t) from x_0 = ``noise`` (B, D) by ``steps`` Euler
    steps x_{k+1} = x_k + h v(s, x_k, t_k); unclipped (callers clip actions to [-1, 1])."""
    h, x = 1.0 / steps, noise
    for k in range(steps):
        x = x + h * field(obs, x, torch.full_like(x[:, :1], k * h))
    return x


class FlowPolicy(nn.Module):
    """A flow policy as the evaluation kernel (``smac_core.rollout``) sees it: (raw observation,
    initial noise) -> env action.

    a_k = low + (clip(x_1, -1, 1)_k + 1) / 2 (high - low) for each of the chunk's H actions,
    x_1 the Euler flow of ``field`` (``steps`` steps) from x_0 = ``noise`` for the normalised
    observation: deterministic given the noise. Evaluations and landscapes pass the common random
    numbers of ``smac_core.rollout`` (``eval_action_noise``: one fixed N(0, I) draw per
    evaluation episode and step), so a checkpoint's returns are reproducible and checkpoints are
    compared on the same noise. ``noise_dim`` = the chunk size H * act_dim; ``horizon`` = H: the
    kernel asks for a chunk every H steps and plays its actions open-loop. Its parameters are the
    field's (``field.net.*``).
    ``(obs (B, obs_dim), noise (B, noise_dim)) -> (B, H * act_dim)`` (H = 1: one action).
    """

    def __init__(self, field: VelocityField, steps: int, obs_mean, obs_std, action_low,
                 action_high) -> None:
        super().__init__()
        self.field, self.steps = field, steps
        self.noise_dim, self.horizon = field.chunk_dim, field.horizon
        t = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
        self.register_buffer("obs_mean", t(obs_mean))
        self.register_buffer("obs_std", t(obs_std))
        self.register_buffer("action_low", t(action_low))
        self.register_buffer("action_high", t(action_high))

    def forward(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x = (obs - self.obs_mean) / self.obs_std
        chunk = euler_sample(self.field, x, noise, self.steps).clamp(-1.0, 1.0)
        low, high = (bound.repeat(self.horizon) for bound in (self.action_low, self.action_high))
        return low + (chunk + 1.0) * 0.5 * (high - low)


def memoryless_schedule(steps: int = FLOW_STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Times t_k = k / K and noise scales g_k = sqrt(2 (1 - t_k + h) / (t_k + h)), each (K,).

    The memoryless schedule of Adjoint Matching for the linear interpolant (g(t)^2 = 2 (1-t)/t),
    with QAM's shift by h (finite at t = 0).
    """
    h = 1.0 / steps
    t = torch.arange(steps, dtype=torch.float32) * h
    return t, torch.sqrt(2.0 * (1.0 - t + h) / (t + h))


@dataclass
class AdjointPath:
    """One batch of fine-tuned SDE paths and their lean adjoints, all without gradients.

    ``states`` (K, B, D): x_0 .. x_{K-1}; ``times`` (K,); ``noise_scales`` g_k (K,);
    ``base_velocities`` (K, B, D): v_base(s, x_k, t_k); ``adjoints`` (K, B, D): adj_k, the lean
    adjoint at x_k; ``terminal`` (B, D): x_K, the sampled chunk (unclipped).
    """

    states: torch.Tensor
    times: torch.Tensor
    noise_scales: torch.Tensor
    base_velocities: torch.Tensor
    adjoints: torch.Tensor
    terminal: torch.Tensor


def base_step(base: Velocity, obs: torch.Tensor, x: torch.Tensor, k: int,
              steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(h b_k(x), v_base(s, x, t_k)): the drift increment of step k of the *base* chain, the
    memoryless SDE drift h (2 v_base(x, t_k) - x / (t_k + h)) for k < K-1 and the ODE step
    h v_base(x, t_{K-1}) last, and the base velocity it uses."""
    h = 1.0 / steps
    v = base(obs, x, torch.full_like(x[:, :1], k * h))
    return (h * v if k == steps - 1 else h * (2.0 * v - x / (k * h + h))), v


def adjoint_path(fine_tuned: Velocity, base: Velocity, obs: torch.Tensor, noise: torch.Tensor,
                 terminal_adjoint: Callable[[torch.Tensor], torch.Tensor],
                 steps: int = FLOW_STEPS) -> AdjointPath:
    """Sample the fine-tuned memoryless SDE and integrate the lean adjoint backwards.

    Forward (QAM Alg. 1), from x_0 = ``noise`` (B, D), with eps_k ~ N(0, I):
      x_{k+1} = x_k + h (2 v_ft(s, x_k, t_k) - x_k / (t_k + h)) + sqrt(h) g_k eps_k,  k < K-1
      x_K     = x_{K-1} + h v_base(s, x_{K-1}, t_{K-1})      (last step: the base ODE)
    Terminal adjoint adj_K = ``terminal_adjoint(x_K)`` (B, D): -grad_a r(s, a) at a = x_K, e.g.
    -beta grad_a Q(s, clip(x_K)).
    Backward (lean adjoint): adj_k = adj_{k+1} + (d (h b_k) / d x_k)^T adj_{k+1}, b_k the base
    chain's step (``base_step``): the exact transpose of the base chain's step Jacobian, so with
    v_ft = v_base adj_k equals the autograd gradient d(-r(x_K))/dx_k through the chain with its
    noise held fixed (tested). (QAM's code evaluates the base field at t_k + h in the backward
    pass and uses the SDE drift at the last step too; we keep the backward pass the exact adjoint
    of the forward one.)
    """
    h = 1.0 / steps
    times, scales = memoryless_schedule(steps)
    times, scales = times.to(noise.device), scales.to(noise.device)
    states = [noise]
    with torch.no_grad():
        x = noise
        for k in range(steps - 1):
            t = torch.full_like(x[:, :1], k * h)
            drift = 2.0 * fine_tuned(obs, x, t) - x / (k * h + h)
            x = x + h * drift + math.sqrt(h) * scales[k] * torch.randn_like(x)
            states.append(x)
        terminal = x + base_step(base, obs, x, steps - 1, steps)[0]
    adjoint = terminal_adjoint(terminal).detach()
    adjoints, base_velocities = [], []
    for k in reversed(range(steps)):
        x_k = states[k].detach().requires_grad_(True)
        with torch.enable_grad():
            increment, velocity = base_step(base, obs, x_k, k, steps)
            (vjp,) = torch.autograd.grad(increment, x_k, adjoint)
        adjoint = adjoint + vjp
        adjoints.append(adjoint)
        base_velocities.append(velocity.detach())
    return AdjointPath(torch.stack(states), times, scales,
                       torch.stack(base_velocities[::-1]),
                       torch.stack(adjoints[::-1]).detach(), terminal)


def adjoint_matching_loss(fine_tuned: Velocity, obs: torch.Tensor, path: AdjointPath,
                          sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The adjoint-matching loss and the fine-tuned - base velocity gap along ``path``.

    loss = E_B sum_k ||2 (v_ft(s, x_k, t_k) - v_base(s, x_k, t_k)) / sigma_k + sigma_k adj_k||^2
    (QAM eq. (12); sigma_k = g_k for QAM, g_k / sqrt(3 lambda) for TRQAM), minimised by
    v_ft = v_base - sigma_k^2 adj_k / 2. ``sigmas`` (K,). Returns (loss, gap (K, B, D)), the gap
    with gradients (for the path KL).
    """
    steps, batch = path.states.shape[:2]
    obs_k = obs.unsqueeze(0).expand(steps, *obs.shape)
    t_k = path.times.view(steps, 1, 1).expand(steps, batch, 1)
    gap = fine_tuned(obs_k, path.states, t_k) - path.base_velocities
    sigma = sigmas.view(steps, 1, 1)
    residual = 2.0 * gap / sigma + sigma * path.adjoints
    return (residual ** 2).sum(dim=-1).sum(dim=0).mean(), gap


def path_kl(gap: torch.Tensor, noise_scales: torch.Tensor, horizon: int) -> torch.Tensor:
    """TRQAM's path-KL estimate per action: E_B sum_k (2 h / g_k^2) ||v_ft - v_base||^2 / H.

    Girsanov: the fine-tuned SDE's drift exceeds the base's by u_k = 2 (v_ft - v_base) under the
    common noise g_k, so KL(P_ft || P_base) = E sum_k h ||u_k||^2 / (2 g_k^2); divided by the
    chunk length H. ``gap`` (K, B, D), ``noise_scales`` (K,). A scalar.
    """
    steps = gap.shape[0]
    weight = (2.0 / steps) / noise_scales.view(steps, 1) ** 2
    return (weight * (gap ** 2).sum(dim=-1)).sum(dim=0).mean() / horizon


class TrustRegionDual(nn.Module):
    """TRQAM's trust-region parameter lambda and its projected dual update (a module, so that
    ``lam`` and the KL average are checkpointed as buffers and resume exactly).

    Per update, with the batch's path-KL estimate KL_hat:
      D      <- 0.9 D + 0.1 min(KL_hat, 2 epsilon)      (clip at 2 eps, EMA 0.9: TRQAM)
      lambda <- clip(lambda + 0.01 (D - epsilon), 0.01, 100)   (dual step 0.01, bounds: TRQAM)
    D starts at the first (clipped) estimate, so the average carries no bias towards 0. Larger
    lambda shrinks sigma_k = g_k / sqrt(3 lambda), hence the fine-tuned field's deviation.
    """

    KL_CLIP = 2.0            # KL_hat is clipped at 2 epsilon (TRQAM)
    EMA = 0.9                # EMA coefficient of the KL average (TRQAM)
    DUAL_LR = 0.01           # projected dual-ascent step size (TRQAM)
    BOUNDS = (0.01, 100.0)   # projection interval of lambda (TRQAM)

    def __init__(self, epsilon: float, initial_lambda: float) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.register_buffer("lam", torch.tensor(float(initial_lambda)))
        self.register_buffer("kl_average", torch.tensor(float("nan")))

    @torch.no_grad()
    def update(self, kl_estimate: torch.Tensor) -> None:
        """One dual step on ``kl_estimate`` (a scalar, or one per seed of a seed-stacked run:
        every operation is elementwise)."""
        clipped = kl_estimate.detach().clamp(max=self.KL_CLIP * self.epsilon)
        average = self.kl_average * self.EMA + (1.0 - self.EMA) * clipped
        self.kl_average.copy_(torch.where(torch.isnan(self.kl_average), clipped, average))
        self.lam.add_(self.DUAL_LR * (self.kl_average - self.epsilon)).clamp_(*self.BOUNDS)
