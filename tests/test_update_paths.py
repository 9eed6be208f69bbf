"""Faster update paths compute what the paths they replace computed: TD3's actor step on Q_1
alone, the critic ensemble's member-by-member evaluation of many shared rows, the actor step
through a frozen critic (no critic weight gradients), the Q-value layer's multiply-and-sum."""

from __future__ import annotations

import contextlib

import pytest
import torch

from smac_core.algos import Agent, make_agent, sac, td3
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


@pytest.mark.parametrize("algo", ["sac", "td3", "td3bc", "calql"])
@pytest.mark.parametrize("optimizer", ["adam", "muon"])
def test_actor_step_through_a_frozen_critic_changes_nothing(algo, optimizer, monkeypatch):
    """Updates with the critic frozen during the actor's loss leave every network, optimizer
    state and metric bitwise equal to updates that also computed (and then discarded) the
    critic's weight gradients in the actor step; the critic is trainable again afterwards."""
    config = {"actor_hidden": [16, 16], "critic_hidden": [16, 16], "optimizer": optimizer}
    batches = [_batch(32) for _ in range(4)]

    def run() -> tuple[Agent, list[dict[str, float]]]:
        torch.manual_seed(0)
        agent = make_agent(algo, OBS_DIM, ACT_DIM, config)
        return agent, [agent.update(b) for b in batches]  # 4 updates: 2 TD3 actor steps

    new_agent, new_metrics = run()
    assert all(p.requires_grad for p in new_agent.critic.parameters())
    unfrozen = lambda module: contextlib.nullcontext()  # noqa: E731
    monkeypatch.setattr(td3, "frozen", unfrozen)
    monkeypatch.setattr(sac, "frozen", unfrozen)
    old_agent, old_metrics = run()
    assert new_metrics == old_metrics
    for name, module in new_agent.networks.items():
        old = old_agent.networks[name].state_dict()
        for key, value in module.state_dict().items():
            assert torch.equal(value, old[key]), f"{name}.{key}"
    for name, opt in new_agent.optimizers.items():
        new_state = opt.state_dict()["state"]
        old_state = old_agent.optimizers[name].state_dict()["state"]
        for index, entries in new_state.items():
            for key, value in entries.items():
                assert torch.equal(torch.as_tensor(value),
                                   torch.as_tensor(old_state[index][key])), f"{name} {key}"


def test_width_one_output_layer_equals_the_batched_matmul():
    """The ensemble's Q-value layer (out = 1) multiplies and sums instead of a batched matmul:
    the same values and gradients to float32 rounding."""
    from smac_core.nets import VectorizedLinear

    torch.manual_seed(0)
    layer = VectorizedLinear(256, 1, 3)
    x = torch.randn(3, 64, 256, requires_grad=True)
    out = layer(x)
    reference = torch.baddbmm(layer.bias, x, layer.weight)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), (x, layer.weight, layer.bias))
    expected = torch.autograd.grad(reference.square().sum(), (x, layer.weight, layer.bias))
    for grad, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(grad, want, rtol=1e-4, atol=1e-4)
    assert VectorizedLinear(8, 4, 3)(torch.randn(3, 5, 8)).shape == (3, 5, 4)  # matmul path
