"""Networks shared by every algorithm: MLPs, batched critic ensembles and actors (and the pieces
of SMAC's diffusion score network, ``smac_core.diffusion``).

Every actor has the same deterministic part, ``tanh(mu(trunk(obs)))``, with the same parameter
names (``trunk.*``, ``mu.*``). That is what makes a SAC actor, a TD3 actor and an IQL actor
comparable as points of one parameter space, and what ``DeterministicPolicy`` (the module that
``landscape`` interpolates) holds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from smac_core.errors import SmacError

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}


def inference_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     silu: bool = False) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` (then SiLU if ``silu``) for inference only (no autograd):
    x (B, in), weight (out, in), bias (out,) -> (B, out). On CPU in float32 through oneDNN
    (fused with the SiLU): same float32 arithmetic, about 2x faster than torch's MKL sgemm on the
    AMD EPYC development VM (README, Benchmarks)."""
    if _onednn_available(x):
        # a strided input or weight (a column slice) would make oneDNN reorder it on every call
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight.contiguous(), bias,
                                                  "swish" if silu else "none", [], "")
    y = F.linear(x, weight, bias)
    return F.silu(y) if silu else y


def sinusoidal_embedding(values: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer position embedding of (B,) numbers -> (B, dim) (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=values.device) / half)
    angles = values.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def _onednn_available(x: torch.Tensor) -> bool:
    """Whether ``x`` is a float32 CPU tensor outside a CPU autocast region (there ``F.linear``
    runs in the autocast dtype) and torch has oneDNN, not switched off
    (``torch.backends.mkldnn``), and no ``torch.compile`` is tracing (its compiler cannot lower
    oneDNN's private linear op)."""
    return (x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


def _onednn_mm(a: torch.Tensor, b_transposed: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b_transposed.T (+ bias) by oneDNN: (M, K), (N, K) -> (M, N), float32 on CPU."""
    return torch.ops.mkldnn._linear_pointwise(a.contiguous(), b_transposed.contiguous(), bias,
                                              "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """``F.linear`` with its forward and backward GEMMs by oneDNN (``train_linear``)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
                ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return _onednn_mm(x, weight, bias)

    @staticmethod
    @once_differentiable  # a gradient of this gradient raises rather than being wrong
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad_x = _onednn_mm(grad, weight.T) if ctx.needs_input_grad[0] else None    # (B, in)
        grad_w = _onednn_mm(grad.T, x.T) if ctx.needs_input_grad[1] else None      # (out, in)
        return grad_x, grad_w, grad.sum(0) if ctx.needs_input_grad[2] else None


def train_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """``F.linear(x, weight, bias)``: x (B, in), weight (out, in), bias (out,) -> (B, out),
    differentiable (once). On CPU in float32 its three GEMMs (forward, input and weight
    gradients) run through oneDNN: the same float32 arithmetic in another summation order, about
    2x faster than MKL's sgemm on the AMD development VM."""
    if _onednn_available(x) and x.dim() == 2:
        return _OneDNNLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b, (M, K) @ (K, N) -> (M, N), by oneDNN where ``_onednn_available``."""
    return _onednn_mm(a, b.T) if _onednn_available(a) else a @ b


class _ReluActionGradient(torch.autograd.Function):
    """``CriticEnsemble.action_gradient``'s chain rule with a hand-written backward.

    forward(masks, act_dim, *weights): ``masks[i][l]`` (B, H_l) bool of member i, ``weights`` the
    ensemble's linear weights (N, in_l, out_l), the last (N, H_L, 1) -> (N, B, act_dim). Member
    i: g = w_out^T; for l = L..1: p_l = g * m_l, g = p_l W_l^T (W_1: the action rows).

    backward: dW_l = d_l^T p_l and d_{l+1} = (d_l W_l) * m_l going up, d_1 the incoming
    gradient; at the top p_L = m_L * w_out^T, so dW_L = M * w_out^T and dw_out = sum_rows(W_L *
    M) from the one product M = d_L^T m_L (one GEMM fewer than autograd's graph).
    """

    @staticmethod
    def forward(ctx: Any, masks: list[list[torch.Tensor]], act_dim: int,
                *weights: torch.Tensor) -> torch.Tensor:
        members, products = [], []
        for i, masks_i in enumerate(masks):
            grad, products_i = weights[-1][i].T, []                            # (1, H_L)
            for level in reversed(range(len(masks_i))):
                weight = weights[level][i][-act_dim:] if level == 0 else weights[level][i]
                products_i.insert(0, grad * masks_i[level])                    # (B, H_l)
                grad = _mm(products_i[0], weight.T)                            # (B, in_l)
            members.append(grad)
            products.append(products_i)
        ctx.masks, ctx.products, ctx.act_dim = masks, products, act_dim
        ctx.save_for_backward(*weights)
        return torch.stack(members)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weights, act_dim = ctx.saved_tensors, ctx.act_dim
        grads = [torch.zeros_like(weight) for weight in weights]  # W_1's observation rows: 0
        for i, (masks_i, products_i) in enumerate(zip(ctx.masks, ctx.products, strict=True)):
            d, top = grad[i], len(masks_i) - 1                                 # (B, act_dim)
            for level, (mask, product) in enumerate(zip(masks_i, products_i, strict=True)):
                rows = slice(-act_dim, None) if level == 0 else slice(None)
                weight = weights[level][i][rows]                               # (in_l, out_l)
                if level < top:
                    grads[level][i][rows] = _mm(d.T, product)
                    d = _mm(d, weight) * mask                                  # (B, H_l)
                else:
                    m = _mm(d.T, mask.to(d.dtype))                             # (in_L, H_L)
                    grads[level][i][rows] = m * weights[-1][i].T
                    grads[-1][i] = (weight * m).sum(0)[:, None]
        return None, None, *grads


def dropout_16bit(x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout in training mode: x * m / (1 - p16), m = 0 with probability p16 = round(65536 p) /
    65536 and 1 otherwise, independently per element; same shape and dtype as x.

    On CPU each element's decision reads 16 random bits, four elements per 64-bit draw of torch's
    generator, where ``F.dropout`` draws a float per element by ``bernoulli_``, and the mask is
    made by float ops, which torch vectorises (its int16 and bool ops it does not): forward and
    backward at 256 x 256 in 104 instead of 326 us (one thread, 2026-12-07). On other devices
    ``F.dropout`` (already fast there).
    """
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    drop_below = round(65536 * p)  # dropped: the 16 bits as an int16 v, v + 2^15 < drop_below
    if drop_below == 0:
        return x
    if drop_below == 65536:
        return torch.zeros_like(x)
    words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_(-2**63, None)
    bits = words.view(torch.int16)[:x.numel()].view(x.shape).float()  # integers in [-2^15, 2^15)
    # the bits are integers, so the clamp is 1 where bits >= drop_below - 2^15 and 0 below
    keep = (bits - (drop_below - 32769)).clamp_(0, 1).mul_(65536 / (65536 - drop_below))
    return x * keep.to(x.dtype)


class Dropout16Bit(nn.Module):
    """``nn.Dropout(p)`` by ``dropout_16bit`` (p rounded to a multiple of 2^-16)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout_16bit(x, self.p) if self.training and self.p > 0 else x


class ResidualBlock(nn.Module):
    """x + W2 silu(W1 LayerNorm(dropout(x))), W1: h -> 4h, W2: 4h -> h (IDQL's MLPResNetBlock;
    dropout by ``Dropout16Bit``)."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.dropout = Dropout16Bit(dropout)
        self.norm = nn.LayerNorm(width)
        self.expand = nn.Linear(width, 4 * width)
        self.contract = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expanded = F.silu(train_linear(self.norm(self.dropout(x)), self.expand.weight,
                                       self.expand.bias))
        return x + train_linear(expanded, self.contract.weight, self.contract.bias)


def orthogonal_init_(layer: nn.Linear, gain: float = math.sqrt(2)) -> nn.Linear:
    """Orthogonal weights and zero bias, as in the CleanRL/CORL reference implementations."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class MLP(nn.Module):
    """``in_dim -> hidden... -> out_dim`` with ReLU (or ``activation="gelu"``; optionally
    LayerNorm) between layers.

    Parameters are named ``layers.<k>.weight``/``bias``; ``out_dim=None`` leaves the output at
    the last hidden width (a trunk).
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int | None = None,
                 layer_norm: bool = False, activation: str = "relu") -> None:
        super().__init__()
        dims = [in_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            layers.append(orthogonal_init_(nn.Linear(a, b)))
            if layer_norm:
                layers.append(nn.LayerNorm(b))
            layers.append(ACTIVATIONS[activation]())
        if out_dim is not None:
            layers.append(orthogonal_init_(nn.Linear(dims[-1], out_dim), gain=1e-2))
        self.layers = nn.Sequential(*layers)
        self.out_dim = out_dim if out_dim is not None else dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class VectorizedLinear(nn.Module):
    """N independent linear layers applied as one batched matmul.

    weight (N, in, out), bias (N, 1, out); input (N, B, in) -> output (N, B, out).
    """

    def __init__(self, in_features: int, out_features: int, ensemble_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # the default nn.Linear init, applied to each member (kaiming-uniform with a=sqrt(5))
        with torch.no_grad():
            for i in range(self.weight.shape[0]):
                nn.init.kaiming_uniform_(self.weight[i].T, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.shape[-1] == 1:
            # a width-1 output (a Q-value): multiply and sum over ``in``, the same products as
            # the matmul summed in another order (float32 rounding), without a batched matmul's
            # overhead for one output column (about 1.6x faster forward + backward on CPU)
            return (x * self.weight.transpose(1, 2)).sum(dim=-1, keepdim=True) + self.bias
        return torch.baddbmm(self.bias, x, self.weight)

    def member(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Member ``i`` alone: (B, in) -> (B, out), one ordinary matmul."""
        return torch.addmm(self.bias[i], x, self.weight[i])


class CriticEnsemble(nn.Module):
    """N Q-functions Q_i(s, a) evaluated in one batched pass.

    ``forward(obs (B, obs_dim), actions (B, act_dim)) -> (N, B)``. Also accepts inputs with a
    leading ensemble dimension (N, B, .), e.g. a different action per member. ``activation``:
    "relu" or "gelu" (QAM/TRQAM's critics: GELU with LayerNorm).

    Shared inputs of at least ``MEMBER_LOOP_ROWS`` rows (CalQL's 7,680 sampled actions) run each
    member as its own matmul chain instead of one (N, B, .) batched call: same values, but the
    (N, B, 256) activations of the batched call cost page faults and slower kernels on CPU.
    """

    MEMBER_LOOP_ROWS = 2048

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256),
                 ensemble_size: int = 2, layer_norm: bool = False,
                 activation: str = "relu") -> None:
        super().__init__()
        dims = [obs_dim + act_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            layers.append(VectorizedLinear(a, b, ensemble_size))
            if layer_norm:
                layers.append(nn.LayerNorm(b))
            layers.append(ACTIVATIONS[activation]())
        layers.append(VectorizedLinear(dims[-1], 1, ensemble_size))
        self.layers = nn.Sequential(*layers)
        self.ensemble_size = ensemble_size

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, actions], dim=-1)
        if x.dim() == 2 and x.shape[0] >= self.MEMBER_LOOP_ROWS:
            return torch.stack([self._member(i, x) for i in range(self.ensemble_size)])
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.ensemble_size, -1, -1)
        return self.layers(x).squeeze(-1)

    def action_gradient(self, obs: torch.Tensor, actions: torch.Tensor, fused: bool = True
                        ) -> torch.Tensor:
        """grad_a Q_i(s, a) of every member, (N, B, act_dim), differentiable in the weights (to
        train on a loss of it); ``obs`` (B, obs_dim) or (N, B, obs_dim), ``actions`` likewise.

        The chain rule written out for a ReLU network: grad_a Q_i = W_1a^T D_1 W_2^T D_2 ...
        W_L^T, D_l = diag(1[pre-activation_l > 0]) from a forward pass without gradient, W_1a
        the input weights' action rows. The masks are piecewise constant (ReLU's second
        derivative is 0), so this is the value and weight-gradient that autograd's
        gradient-of-a-gradient computes, without the forward graph and the double backward.
        Only ReLU critics without LayerNorm. ``fused``: by ``_ReluActionGradient``, member by
        member with a hand-written backward (faster); else the same products as batched torch
        ops under autograd (what ``torch.func.vmap`` can batch: seed-stacked training).
        """
        if not all(isinstance(layer, VectorizedLinear | nn.ReLU) for layer in self.layers):
            raise SmacError("action_gradient needs a ReLU critic without LayerNorm")
        linears = [layer for layer in self.layers if isinstance(layer, VectorizedLinear)]
        x = torch.cat([obs, actions], dim=-1)
        if not fused:
            return _relu_action_gradient(linears, x, actions.shape[-1], self.ensemble_size)
        masks = []  # per member, per hidden layer: 1[pre-activation > 0] (B, H_l)
        with torch.no_grad():
            for i in range(self.ensemble_size):
                hidden, masks_i = x if x.dim() == 2 else x[i], []
                for linear in linears[:-1]:
                    hidden = inference_linear(hidden, linear.weight[i].T, linear.bias[i, 0]
                                              ).clamp_min_(0.0)
                    masks_i.append(hidden > 0)
                masks.append(masks_i)
        return _ReluActionGradient.apply(masks, actions.shape[-1],
                                         *[linear.weight for linear in linears])

    def member(self, i: int, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q_i(s, a) of member ``i`` alone, (B,): TD3's actor step needs Q_1 only."""
        return self._member(i, torch.cat([obs, actions], dim=-1))

    def _member(self, i: int, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer.member(i, x) if isinstance(layer, VectorizedLinear) else layer(x)
        return x.squeeze(-1)


def _relu_action_gradient(linears: list[VectorizedLinear], x: torch.Tensor, act_dim: int,
                          members: int) -> torch.Tensor:
    """``CriticEnsemble.action_gradient`` by batched torch ops: x (B, in) or (N, B, in) ->
    (N, B, act_dim); masks D_l from a forward pass without gradient, then g = w_out^T and
    g <- (g * D_l) W_l^T down the layers (W_1: its action rows)."""
    masks, hidden = [], x if x.dim() == 3 else x.unsqueeze(0).expand(members, -1, -1)
    with torch.no_grad():
        for linear in linears[:-1]:
            hidden = torch.baddbmm(linear.bias, hidden, linear.weight).clamp_min(0.0)
            masks.append(hidden > 0)                                           # (N, B, H_l)
    grad = linears[-1].weight.transpose(1, 2)                                  # (N, 1, H_L)
    for level in reversed(range(len(masks))):
        weight = linears[level].weight                                         # (N, in, out)
        weight = weight[:, -act_dim:] if level == 0 else weight
        grad = torch.bmm(grad * masks[level], weight.transpose(1, 2))          # (N, B, in)
    return grad


class ValueNetwork(nn.Module):
    """State value V(s): ``(B, obs_dim) -> (B,)`` (IQL, AWR)."""

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (256, 256),
                 layer_norm: bool = False) -> None:
        super().__init__()
        self.net = MLP(obs_dim, hidden, 1, layer_norm=layer_norm)
        orthogonal_init_(self.net.layers[-1], gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


class DeterministicActor(nn.Module):
    """a = tanh(mu(trunk(s))) in [-1, 1]^act_dim (TD3, TD3+BC). ``(B, obs_dim) -> (B, act_dim)``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.trunk = MLP(obs_dim, hidden)
        self.mu = orthogonal_init_(nn.Linear(self.trunk.out_dim, act_dim), gain=1e-2)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mu(self.trunk(obs)))

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs)


class TanhGaussianActor(nn.Module):
    """pi(a|s) = tanh(N(mu(h), exp(log_std(h))^2)), h = trunk(s) (SAC, CalQL, SMAC, IQL, AWR).

    ``forward(obs (B, obs_dim)) -> (actions (B, act_dim), log_prob (B,))`` with a
    reparameterised sample; ``deterministic(obs)`` is tanh(mu).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.trunk = MLP(obs_dim, hidden)
        self.mu = orthogonal_init_(nn.Linear(self.trunk.out_dim, act_dim), gain=1e-2)
        self.log_std = orthogonal_init_(nn.Linear(self.trunk.out_dim, act_dim), gain=1e-2)

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of the pre-tanh Gaussian, each (B, act_dim)."""
        h = self.trunk(obs)
        log_std = self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return self.mu(h), log_std.exp()

    def forward(self, obs: torch.Tensor, noise: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised sample u = mean + std * noise, a = tanh(u), and log pi(a|s);
        ``noise`` (B, act_dim) standard normal, drawn here when None."""
        mean, std = self.distribution(obs)
        u = mean + std * (torch.randn_like(mean) if noise is None else noise)
        return torch.tanh(u), tanh_gaussian_log_prob(u, mean, std)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mu(self.trunk(obs)))

    def regression_log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log N(a; tanh(mu(h)), std(h)^2) summed over action dims, (B,): the likelihood that
        IQL's advantage-weighted regression fits dataset actions with (CORL's iql.py). Unlike
        ``log_prob`` it has no tanh change of variables, so actions at the bounds (+-1, common
        in demonstrations) stay finite-cost instead of dominating the loss."""
        h = self.trunk(obs)
        std = self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        return torch.distributions.Normal(torch.tanh(self.mu(h)), std, validate_args=False
                                          ).log_prob(actions).sum(-1)

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) of given actions in (-1, 1), shape (B,) (clamped away from +-1)."""
        mean, std = self.distribution(obs)
        u = torch.atanh(actions.clamp(-1 + 1e-6, 1 - 1e-6))
        return tanh_gaussian_log_prob(u, mean, std)


def tanh_gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log density of a = tanh(u), u ~ N(mean, std^2), summed over action dims: (B,).

    log pi(a) = log N(u) - sum log(1 - tanh(u)^2), with the stable form
    log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)).
    """
    # no argument validation: its data-dependent check cannot run under vmap (seed-stacked
    # updates) with torch 2.4
    log_normal = torch.distributions.Normal(mean, std, validate_args=False).log_prob(u)
    log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
    return (log_normal - log_det).sum(-1)


class DeterministicPolicy(nn.Module):
    """The policy as ``landscape`` sees it: raw observation -> action in the env's units.

    action = low + (tanh(mu(trunk((obs - obs_mean) / obs_std))) + 1) / 2 * (high - low)

    Its parameters are exactly the actor's ``trunk.*`` and ``mu.*`` (shared, not copied);
    normalisation and action bounds are buffers, not parameters. ``(B, obs_dim) -> (B, act_dim)``.
    """

    def __init__(self, trunk: MLP, mu: nn.Linear, obs_mean: torch.Tensor, obs_std: torch.Tensor,
                 action_low: torch.Tensor, action_high: torch.Tensor) -> None:
        super().__init__()
        self.trunk, self.mu = trunk, mu
        self.register_buffer("obs_mean", obs_mean.float())
        self.register_buffer("obs_std", obs_std.float())
        self.register_buffer("action_low", action_low.float())
        self.register_buffer("action_high", action_high.float())

    @classmethod
    def from_actor(cls, actor: DeterministicActor | TanhGaussianActor, obs_mean, obs_std,
                   action_low, action_high) -> DeterministicPolicy:
        t = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
        return cls(actor.trunk, actor.mu, t(obs_mean), t(obs_std), t(action_low), t(action_high))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = (obs - self.obs_mean) / self.obs_std
        squashed = torch.tanh(self.mu(self.trunk(x)))
        return self.action_low + (squashed + 1.0) * 0.5 * (self.action_high - self.action_low)
