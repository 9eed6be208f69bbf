"""Muon: equal to torch.optim.Muon on matrices (where torch has it, >= 2.9), batched stacks equal
to per-matrix updates, the Muon/AdamW parameter split, and an exact resume through state_dict."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from smac_core.errors import SmacError
from smac_core.nets import CriticEnsemble, TanhGaussianActor
from smac_core.optim import MUON_LR_PER_ADAM_LR, Muon, hidden_matrices, make_optimizer

STEPS = 5


def _regression_loss(weights: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """A loss whose gradients depend on the current weights, so trajectories must agree."""
    h = x
    for w in weights:
        h = torch.tanh(h @ w.T)
    return (h - 0.5).pow(2).mean()


def _run(optimizer_factory, weights0: list[torch.Tensor]) -> list[torch.Tensor]:
    params = [nn.Parameter(w.clone()) for w in weights0]
    opt = optimizer_factory(params)
    x = torch.randn(32, weights0[0].shape[1], generator=torch.Generator().manual_seed(1))
    for _ in range(STEPS):
        opt.zero_grad()
        _regression_loss(params, x).backward()
        opt.step()
    return [p.detach() for p in params]


# a wide, a tall and a square matrix: Newton-Schulz transposes tall ones, and the
# sqrt(max(1, rows/cols)) scale differs between them
CHAIN = [torch.randn(40, 24), torch.randn(64, 40), torch.randn(64, 64) / 8, torch.randn(8, 64)]
TORCH_HAS_MUON = hasattr(torch.optim, "Muon")  # the reference, torch >= 2.9
needs_torch_muon = pytest.mark.skipif(not TORCH_HAS_MUON,
                                      reason="torch.optim.Muon (torch >= 2.9) is the reference")


@needs_torch_muon
def test_bfloat16_path_equals_torch_muon():
    # torch.optim.Muon always iterates in bfloat16; with the same dtype we must be bit-exact
    kwargs = {"lr": 0.02, "weight_decay": 0.1}
    ours = _run(lambda p: Muon(p, ns_dtype="bfloat16", **kwargs), CHAIN)
    reference = _run(lambda p: torch.optim.Muon(p, **kwargs), CHAIN)
    for w0, a, b in zip(CHAIN, ours, reference, strict=True):
        assert (b - w0).abs().max() > 1e-3  # the parameters did move
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@needs_torch_muon
def test_float32_path_matches_torch_muon_to_bfloat16_precision():
    # Our CPU default iterates in float32; torch rounds every Newton-Schulz product to bfloat16
    # (relative 2^-8 = 0.4% per operation), which the iteration amplifies on near-square
    # matrices with small singular values: 0.6%-5.6% relative (Frobenius) difference in the
    # parameter change over 5 steps here. 10% bounds that; dropping Nesterov or weight decay
    # is 13%-65% off (the exact comparison is the bfloat16 test above).
    kwargs = {"lr": 0.02, "weight_decay": 0.1}
    ours = _run(lambda p: Muon(p, **kwargs), CHAIN)
    reference = _run(lambda p: torch.optim.Muon(p, **kwargs), CHAIN)
    for w0, a, b in zip(CHAIN, ours, reference, strict=True):
        assert (a - b).norm() <= 0.1 * (b - w0).norm()


@pytest.mark.parametrize("ns_dtype", ["float32", "bfloat16"])
def test_stacked_parameter_equals_per_matrix_updates(ns_dtype):
    # A VectorizedLinear weight (N, in, out) must get exactly the update of N nn.Linear weights
    # (out, in) = member.T; in=16, out=48 makes the layout matter (scale sqrt(3) vs 1).
    n, d_in, d_out = 4, 16, 48
    gen = torch.Generator().manual_seed(2)
    stacked0 = torch.randn(n, d_in, d_out, generator=gen)
    grads = [torch.randn(n, d_in, d_out, generator=gen) for _ in range(STEPS)]
    stacked = nn.Parameter(stacked0.clone())
    members = [nn.Parameter(stacked0[i].T.clone()) for i in range(n)]
    opt_stacked = Muon([stacked], lr=0.05, weight_decay=0.1, ns_dtype=ns_dtype)
    opt_members = Muon(members, lr=0.05, weight_decay=0.1, ns_dtype=ns_dtype)
    # and torch's Muon of the members where torch has it (bfloat16 compared below)
    torch_members = [nn.Parameter(stacked0[i].T.clone()) for i in range(n)] if TORCH_HAS_MUON \
        else []
    optimizers = [opt_stacked, opt_members] + (
        [torch.optim.Muon(torch_members, lr=0.05, weight_decay=0.1)] if TORCH_HAS_MUON else [])
    for g in grads:
        stacked.grad = g.clone()
        for i in range(n):
            members[i].grad = g[i].T.clone()
        for i, member in enumerate(torch_members):
            member.grad = g[i].T.clone()
        for optimizer in optimizers:
            optimizer.step()
    for i in range(n):
        torch.testing.assert_close(stacked.detach()[i].T, members[i].detach(),
                                   rtol=1e-5, atol=1e-6)
        if ns_dtype == "bfloat16" and TORCH_HAS_MUON:
            torch.testing.assert_close(stacked.detach()[i].T, torch_members[i].detach(),
                                       rtol=1e-5, atol=1e-6)


def _names(module: nn.Module, params) -> set[str]:
    ids = {id(p) for p in params}
    return {name for name, p in module.named_parameters() if id(p) in ids}


def test_hidden_matrix_rule():
    actor = TanhGaussianActor(5, 3, hidden=(32, 32, 32))
    # trunk.layers.{0,2,4} are Linear (ReLU between); mu and log_std are sibling heads
    assert _names(actor, hidden_matrices(actor)) == {"trunk.layers.2.weight",
                                                     "trunk.layers.4.weight"}
    critic = CriticEnsemble(5, 3, hidden=(32, 32), ensemble_size=3, layer_norm=True)
    assert _names(critic, hidden_matrices(critic)) == {"layers.3.weight"}  # Linear, LN, ReLU
    assert hidden_matrices(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))) == []


def test_make_optimizer_muon_groups():
    actor = TanhGaussianActor(5, 3, hidden=(32, 32))
    critic = CriticEnsemble(5, 3, hidden=(32, 32), ensemble_size=2)
    opt = make_optimizer([actor, critic, actor], lr=3e-4, kind="muon", weight_decay=0.01)
    assert isinstance(opt, Muon)
    muon_group, adam_group = opt.param_groups
    assert muon_group["use_muon"] and not adam_group["use_muon"]
    assert muon_group["lr"] == pytest.approx(3e-4 * MUON_LR_PER_ADAM_LR)
    assert adam_group["lr"] == 3e-4
    assert _names(actor, muon_group["params"]) == {"trunk.layers.2.weight"}
    assert _names(critic, muon_group["params"]) == {"layers.2.weight"}
    every = [*actor.parameters(), *critic.parameters()]
    grouped = muon_group["params"] + adam_group["params"]
    assert len(grouped) == len(every) and {id(p) for p in grouped} == {id(p) for p in every}
    assert make_optimizer(actor, lr=1e-4, kind="muon", muon_lr=0.01).param_groups[0]["lr"] == 0.01


def test_adamw_group_equals_torch_adamw():
    w0 = [torch.randn(40, 24), torch.randn(8, 40)]
    kwargs = {"lr": 1e-2, "weight_decay": 0.1}
    ours = _run(lambda p: Muon([{"params": p, "use_muon": False}], **kwargs), w0)
    reference = _run(lambda p: torch.optim.AdamW(p, **kwargs), w0)
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_make_optimizer_adam_and_bad_input():
    actor = TanhGaussianActor(5, 3, hidden=(32, 32))
    opt = make_optimizer(actor, lr=3e-4, kind="adam", weight_decay=0.01)
    assert type(opt) is torch.optim.AdamW and opt.param_groups[0]["weight_decay"] == 0.01
    with pytest.raises(SmacError, match=r"unknown optimizer kind 'sgd'; valid: \['adam', 'muon'\]"):
        make_optimizer(actor, lr=3e-4, kind="sgd")
    with pytest.raises(SmacError, match="no trainable parameters"):
        make_optimizer(nn.ReLU(), lr=3e-4, kind="adam")
    with pytest.raises(SmacError, match="2-D matrix or a 3-D stack"):
        Muon([nn.Parameter(torch.zeros(4))])
    with pytest.raises(SmacError, match="2-D matrix or a 3-D stack"):
        Muon([nn.Parameter(torch.zeros(4, 4))]).add_param_group({"params": [torch.zeros(3)]})
    with pytest.raises(SmacError, match="ns_dtype"):
        Muon([nn.Parameter(torch.zeros(4, 4))], ns_dtype="float16")


def _critic_loss(critic: CriticEnsemble, step: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(step)
    obs, act = torch.randn(16, 5, generator=gen), torch.randn(16, 3, generator=gen)
    return (critic(obs, act) - 1.0).pow(2).mean()


def test_state_dict_round_trip_resumes_exactly():
    critic = CriticEnsemble(5, 3, hidden=(32, 32), ensemble_size=2, layer_norm=True)
    opt = make_optimizer(critic, lr=1e-3, kind="muon", weight_decay=0.01)
    for step in range(3):
        opt.zero_grad()
        _critic_loss(critic, step).backward()
        opt.step()
    # through bytes with weights_only=True, as a checkpoint's train_state.pt is read
    buffer = io.BytesIO()
    torch.save({"net": critic.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = CriticEnsemble(5, 3, hidden=(32, 32), ensemble_size=2, layer_norm=True)
    resumed.load_state_dict(saved["net"])
    resumed_opt = make_optimizer(resumed, lr=1e-3, kind="muon", weight_decay=0.01)
    resumed_opt.load_state_dict(saved["opt"])
    for step in range(3, 6):
        for net, o in ((critic, opt), (resumed, resumed_opt)):
            o.zero_grad()
            _critic_loss(net, step).backward()
            o.step()
    for a, b in zip(critic.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("ns_dtype", ["float32", "bfloat16"])
def test_same_shape_matrices_batched_equal_one_optimizer_each(ns_dtype):
    # two 2-D (48, 16) weights and a (3, 16, 48) stack (members (48, 16) in nn.Linear layout)
    # share one Newton-Schulz call; a (16, 48) weight and a (24, 24) one get their own
    gen = torch.Generator().manual_seed(5)
    shapes = [(48, 16), (3, 16, 48), (48, 16), (16, 48), (24, 24)]
    weights0 = [torch.randn(*shape, generator=gen) for shape in shapes]
    grads = [[torch.randn(*shape, generator=gen) for shape in shapes] for _ in range(STEPS)]
    together = [nn.Parameter(w.clone()) for w in weights0]
    alone = [nn.Parameter(w.clone()) for w in weights0]
    opt_together = Muon(together, lr=0.05, weight_decay=0.1, ns_dtype=ns_dtype)
    opts_alone = [Muon([p], lr=0.05, weight_decay=0.1, ns_dtype=ns_dtype) for p in alone]
    for step_grads in grads:
        for a, b, g in zip(together, alone, step_grads, strict=True):
            a.grad, b.grad = g.clone(), g.clone()
        opt_together.step()
        for opt in opts_alone:
            opt.step()
    for w0, a, b in zip(weights0, together, alone, strict=True):
        assert (b.detach() - w0).abs().max() > 1e-3
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)
