"""Muon (orthogonalised momentum) for hidden weight matrices, AdamW for everything else.

One optimizer object holds both kinds of parameter group (``use_muon`` True/False), as in Keller
Jordan's ``MuonWithAuxAdam``, so a single ``state_dict()`` resumes a run exactly.

Muon, per matrix parameter W with gradient G_t (identical to ``torch.optim.Muon``, whose
source is the reference; https://kellerjordan.github.io/posts/muon/):

    B_t = mu B_{t-1} + (1 - mu) G_t                     momentum (an EMA of gradients)
    U_t = (1 - mu) G_t + mu B_t                         Nesterov (U_t = B_t without)
    O_t = NS_5(U_t)                                     quintic Newton-Schulz orthogonalisation
    W  <- W (1 - lr * weight_decay)                     decoupled weight decay
    W  <- W - lr * sqrt(max(1, rows / cols)) * O_t

Orientation: rows/cols are those of the matrix in ``nn.Linear`` layout (out_features,
in_features), the layout ``torch.optim.Muon`` sees. A 2-D parameter is read as one such matrix;
a 3-D parameter as a stack of N matrices in ``nets.VectorizedLinear`` layout (N, in, out), i.e.
each member transposed, so it gets the same update as N separate ``nn.Linear`` weights would.
In a group with ``seed_axis`` (seed-stacked training, ``smac_core.seeds``) the first dimension of
every parameter is a seed axis: (S, out, in) is S ``nn.Linear`` weights, (S, N, in, out) S stacks.
All same-shape matrices of a parameter group (the members of stacks and 2-D weights alike) are
orthogonalised together, in one batched Newton-Schulz iteration per shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim.adamw import adamw

from smac_core.errors import SmacError

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
NS_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def newton_schulz(matrices: Tensor, coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                  steps: int = NS_STEPS, eps: float = 1e-7,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """Approximate orthogonalisation U S' V^T (S'_ii roughly in [0.5, 1.5]) of G = U S V^T.

    ``matrices`` (N, rows, cols) -> (N, rows, cols) in ``dtype``; every matrix is normalised by
    its own Frobenius norm (so its spectral norm is <= 1) and iterated as the wide matrix
    (rows <= cols, transposing tall ones), exactly as ``torch.optim.Muon`` does for one matrix.
    """
    a, b, c = coefficients
    tall = matrices.size(-2) > matrices.size(-1)
    x = matrices.to(dtype)
    if tall:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT                                          # A = X X^T
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b A + c A^2
        x = torch.baddbmm(x, poly, x, beta=a)                    # X <- a X + (b A + c A^2) X
    return x.mT if tall else x


def _as_linear_stack(tensor: Tensor, seed_axis: bool = False) -> Tensor:
    """A parameter-shaped tensor as a (N, out, in) stack of nn.Linear-layout matrices (a view;
    with ``seed_axis`` the first dimension is the seeds')."""
    matrix_dims = tensor.dim() - seed_axis
    if matrix_dims == 2:
        return tensor if seed_axis else tensor.unsqueeze(0)
    return (tensor.flatten(0, 1) if seed_axis else tensor).mT


def _from_linear_stack(stack: Tensor, like: Tensor, seed_axis: bool = False) -> Tensor:
    """Inverse of ``_as_linear_stack``."""
    if like.dim() - seed_axis == 2:
        return stack if seed_axis else stack.squeeze(0)
    return stack.mT.reshape(like.shape)


class Muon(torch.optim.Optimizer):
    """Muon on groups with ``use_muon=True`` (default), AdamW on groups with ``use_muon=False``.

    Muon options: ``lr``, ``weight_decay`` (decoupled, ``W *= 1 - lr * weight_decay``),
    ``momentum``, ``nesterov``, ``ns_coefficients``, ``ns_steps``, ``eps`` (floor of the norm
    before Newton-Schulz), ``ns_dtype`` ("bfloat16", "float32", or None: bfloat16 on CUDA,
    float32 elsewhere), ``seed_axis`` (see the module docstring). Muon parameters must be 2-D
    (nn.Linear layout) or 3-D
    (VectorizedLinear layout); see the module docstring.

    AdamW options (``use_muon=False`` groups): ``lr``, ``weight_decay``, ``betas``,
    ``adam_eps``; the same update and state as ``torch.optim.AdamW``.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 0.02,
                 weight_decay: float = 0.0, momentum: float = 0.95, nesterov: bool = True,
                 ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                 ns_steps: int = NS_STEPS, eps: float = 1e-7, ns_dtype: str | None = None,
                 betas: tuple[float, float] = (0.9, 0.999), adam_eps: float = 1e-8) -> None:
        defaults = {"lr": lr, "weight_decay": weight_decay, "use_muon": True,
                    "momentum": momentum, "nesterov": nesterov,
                    "ns_coefficients": tuple(ns_coefficients), "ns_steps": ns_steps, "eps": eps,
                    "ns_dtype": ns_dtype, "betas": tuple(betas), "adam_eps": adam_eps,
                    "seed_axis": False}
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        _check_group(self.param_groups[-1])

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["use_muon"]:
                self._muon_step(group)
            else:
                self._adamw_step(group)
        return loss

    def _muon_step(self, group: dict[str, Any]) -> None:
        """Momentum per parameter, then one batched Newton-Schulz per (rows, cols) shape: every
        same-shape matrix of the group (2-D weights and members of 3-D stacks) in one bmm chain."""
        lr, momentum = group["lr"], group["momentum"]
        seed_axis = group.get("seed_axis", False)
        by_shape: dict[tuple[int, int, torch.device, torch.dtype],
                       list[tuple[Tensor, Tensor]]] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"]
            buf.lerp_(p.grad, 1 - momentum)                          # B = mu B + (1 - mu) G
            update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf  # (1-mu) G + mu B
            stack = _as_linear_stack(update, seed_axis)              # (N, out, in)
            key = (*stack.shape[-2:], p.device, p.dtype)
            by_shape.setdefault(key, []).append((p, stack))
        for (rows, cols, device, _), members in by_shape.items():
            stacks = [stack for _, stack in members]
            ortho = newton_schulz(torch.cat(stacks) if len(stacks) > 1 else stacks[0],
                                  group["ns_coefficients"], group["ns_steps"], group["eps"],
                                  _ns_dtype(group["ns_dtype"], device))
            pieces = ortho.split([stack.shape[0] for stack in stacks])
            for (p, _), piece in zip(members, pieces, strict=True):
                p.mul_(1 - lr * group["weight_decay"])               # decoupled weight decay
                p.add_(_from_linear_stack(piece, p, seed_axis).to(p.dtype),
                       alpha=-lr * math.sqrt(max(1.0, rows / cols)))

    def _adamw_step(self, group: dict[str, Any]) -> None:
        params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "step" not in state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if params:
            beta1, beta2 = group["betas"]
            adamw(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, beta1=beta1,
                  beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"],
                  eps=group["adam_eps"], maximize=False)


def _ns_dtype(name: str | None, device: torch.device) -> torch.dtype:
    if name is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return NS_DTYPES[name]


def _check_group(group: dict[str, Any]) -> None:
    for key in ("lr", "weight_decay"):
        if not group[key] >= 0.0:
            raise SmacError(f"Muon: {key} must be >= 0, got {group[key]}")
    if group["use_muon"]:
        if not 0.0 <= group["momentum"] < 1.0:
            raise SmacError(f"Muon: momentum must be in [0, 1), got {group['momentum']}")
        if group["ns_dtype"] not in (None, *NS_DTYPES):
            raise SmacError(f"Muon: ns_dtype {group['ns_dtype']!r} is not one of "
                            f"{[None, *NS_DTYPES]}")
        seed_axis = group.get("seed_axis", False)
        for p in group["params"]:
            if p.dim() - seed_axis not in (2, 3):
                raise SmacError(f"Muon: a use_muon parameter must be a 2-D matrix or a 3-D "
                                f"stack of matrices{' after its seed axis' if seed_axis else ''}"
                                f", got shape {tuple(p.shape)}; put it in a use_muon=False "
                                "(AdamW) group")
