"""Faster update paths compute what the paths they replace computed: TD3's actor step on Q_1
alone, the critic ensemble's member-by-member evaluation of many shared rows."""

from __future__ import annotations

import pytest
import torch

from smac_core.algos import make_agent
from smac_core.data.buffers import Batch
from smac_core.nets import CriticEnsemble

OBS_DIM, ACT_DIM = 5, 2


def _batch(n: int) -> Batch:
    gen = torch.Generator().manual_seed(3)
    return Batch(torch.randn(n, OBS_DIM, generator=gen),
                 torch.rand(n, ACT_DIM, generator=gen) * 2 - 1, torch.randn(n, generator=gen),
                 torch.randn(n, OBS_DIM, generator=gen), torch.zeros(n),
                 torch.randn(n, generator=gen))


@pytest.mark.parametrize("algo", ["td3", "td3bc"])
def test_td3_actor_gradient_equals_the_whole_ensemble_then_first(algo):
    torch.manual_seed(0)
    agent = make_agent(algo, OBS_DIM, ACT_DIM, {"actor_hidden": [16, 16],
                                                "critic_hidden": [16, 16], "optimizer": "adam"})
    batch = _batch(32)
    loss, _ = agent.actor_loss(batch)
    new = torch.autograd.grad(loss, list(agent.actor.parameters()))
    # the replaced computation: every member evaluated, the first kept
    actions = agent.actor(batch.observations)
    q = agent.critic(batch.observations, actions)[0]
    if algo == "td3":
        old_loss = -q.mean()
    else:
        old_loss = (-agent.config.alpha / q.abs().mean().detach() * q.mean()
                    + ((actions - batch.actions) ** 2).mean())
    old = torch.autograd.grad(old_loss, list(agent.actor.parameters()))
    assert loss.item() == pytest.approx(old_loss.item(), rel=1e-6)
    for a, b in zip(new, old, strict=True):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_member_loop_equals_batched_ensemble_call(layer_norm, monkeypatch):
    torch.manual_seed(1)
    critic = CriticEnsemble(OBS_DIM, ACT_DIM, (32, 32), ensemble_size=3, layer_norm=layer_norm)
    rows = CriticEnsemble.MEMBER_LOOP_ROWS
    obs, actions = torch.randn(rows, OBS_DIM), torch.rand(rows, ACT_DIM) * 2 - 1
    looped = critic(obs, actions)                                         # (N, rows), per member
    grads_looped = torch.autograd.grad(looped.square().sum(), list(critic.parameters()))
    monkeypatch.setattr(CriticEnsemble, "MEMBER_LOOP_ROWS", rows + 1)
    batched = critic(obs, actions)                                        # one (N, rows, .) call
    grads_batched = torch.autograd.grad(batched.square().sum(), list(critic.parameters()))
    assert looped.shape == (3, rows)
    torch.testing.assert_close(looped, batched, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads_looped, grads_batched, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for i in range(3):
        torch.testing.assert_close(critic.member(i, obs[:7], actions[:7]),
                                   critic(obs[:7], actions[:7])[i], rtol=1e-5, atol=1e-6)


def test_calql_critic_loss_unchanged_by_the_member_loop(monkeypatch):
    # 10 sampled actions x 3 proposals x batch 128 = 3,840 rows: above the loop threshold
    agent = make_agent("calql", OBS_DIM, ACT_DIM, {"actor_hidden": [16, 16],
                                                   "critic_hidden": [16, 16], "optimizer": "adam"})
    batch = _batch(128)
    torch.manual_seed(4)
    looped, _ = agent.critic_loss(batch)
    monkeypatch.setattr(CriticEnsemble, "MEMBER_LOOP_ROWS", 10**9)
    torch.manual_seed(4)
    batched, _ = agent.critic_loss(batch)
    assert looped.item() == pytest.approx(batched.item(), rel=1e-5)
