"""Offline algorithms: CalQL/CQL's conservative term and floor, IQL, SMAC's score-matching
critic regulariser (double backward against finite differences, alignment on a toy problem)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from smac_core.algos import make_agent
from smac_core.algos.calql import CalQL, conservative_gap
from smac_core.algos.sac import SAC
from smac_core.algos.smac import ScoreScale, score_matching_loss, trajectory_return_condition
from smac_core.checkpoint import RunArtifacts
from smac_core.data.buffers import Batch, ReplayBuffer
from smac_core.data.dataset import TransitionDataset
from smac_core.errors import SmacError
from smac_core.nets import CriticEnsemble

TINY = {"actor_hidden": [16, 16], "critic_hidden": [16, 16], "batch_size": 8,
        "optimizer": "adam"}


def random_batch(n: int, obs_dim: int, act_dim: int, returns_to_go: torch.Tensor | None = None
                 ) -> Batch:
    return Batch(torch.randn(n, obs_dim), torch.rand(n, act_dim) * 2 - 1, torch.randn(n),
                 torch.randn(n, obs_dim), torch.zeros(n),
                 torch.randn(n) if returns_to_go is None else returns_to_go)


# ------------------------------------------------------------------------------- CQL / CalQL
def test_conservative_gap_matches_hand_computation():
    # one critic, two states, two samples per proposal, act_dim 3
    q_data = torch.tensor([[0.5, -1.0]])
    q_random = torch.tensor([[[0.1, 0.2], [0.3, -0.4]]])
    q_current = torch.tensor([[[1.0, 0.0], [-2.0, 0.5]]])
    q_next = torch.tensor([[[0.7, -0.3], [0.0, 1.5]]])
    log_pi_current = torch.tensor([[-1.0, -2.0], [0.5, -0.5]])
    log_pi_next = torch.tensor([[-0.2, 0.3], [-1.5, 0.0]])
    gap = conservative_gap(q_data, q_random, q_current, q_next, log_pi_current, log_pi_next,
                           act_dim=3, floor=None, temperature=1.0)
    log_uniform = 3 * math.log(0.5)
    for b in range(2):
        terms = ([q_random[0, b, j].item() - log_uniform for j in range(2)]
                 + [q_current[0, b, j].item() - log_pi_current[b, j].item() for j in range(2)]
                 + [q_next[0, b, j].item() - log_pi_next[b, j].item() for j in range(2)])
        expected = math.log(sum(math.exp(t) for t in terms)) - q_data[0, b].item()
        assert gap[0, b].item() == pytest.approx(expected, rel=1e-6)


def test_calql_floor_lifts_exactly_the_policy_values_below_the_return():
    q_data = torch.zeros(1, 2)
    q_random = torch.zeros(1, 2, 2)
    q_current = torch.tensor([[[1.0, -3.0], [2.0, 4.0]]], requires_grad=True)
    q_next = torch.tensor([[[-5.0, 0.5], [3.0, 3.5]]], requires_grad=True)
    log_pi = torch.zeros(2, 2)
    # state 0: floor 0 lifts q_current[0, 1] (-3) and q_next[0, 0] (-5); state 1: NaN = no floor
    floor = torch.tensor([0.0, float("nan")])
    gap = conservative_gap(q_data, q_random, q_current, q_next, log_pi, log_pi, act_dim=2,
                           floor=floor)
    log_uniform = 2 * math.log(0.5)
    lifted = [-log_uniform] * 2 + [1.0, 0.0] + [0.0, 0.5]  # floored values replace -3 and -5
    assert gap[0, 0].item() == pytest.approx(math.log(sum(math.exp(t) for t in lifted)), rel=1e-6)
    unfloored = conservative_gap(q_data, q_random, q_current, q_next, log_pi, log_pi, act_dim=2,
                                 floor=None)
    assert gap[0, 1].item() == pytest.approx(unfloored[0, 1].item(), rel=1e-7)
    # a lifted value no longer moves the loss: zero gradient exactly where floored
    gap.sum().backward()
    assert (q_current.grad == 0).tolist() == [[[False, True], [False, False]]]
    assert (q_next.grad == 0).tolist() == [[[True, False], [False, False]]]


def test_calql_agent_floors_where_returns_exceed_q_and_equals_cql_where_none_do():
    batch = random_batch(8, 3, 2)
    # returns far below any Q of fresh networks: no floor is active, CalQL's loss == CQL's
    batch.returns_to_go = torch.full((8,), -1e3)
    losses = {}
    for name in ("calql", "cql"):
        torch.manual_seed(1)
        agent = make_agent(name, 3, 2, TINY)
        torch.manual_seed(2)
        losses[name] = agent.critic_loss(batch)
    assert losses["calql"][0].item() == losses["cql"][0].item()
    assert losses["calql"][1]["below_return_rate"].item() == 0.0
    # returns far above any Q on half the states: exactly those states' policy values are lifted
    batch.returns_to_go = torch.tensor([1e3, -1e3] * 4)
    torch.manual_seed(1)
    agent = make_agent("calql", 3, 2, TINY)
    torch.manual_seed(2)
    metrics = agent.critic_loss(batch)[1]
    assert metrics["below_return_rate"].item() == 0.5
    # the lifted states' log-sum-exp is ~1e3 (the floor dominates), so the gap averages ~500
    assert metrics["cql_gap"].item() == pytest.approx(500.0, rel=0.05)


def test_calql_critic_loss_is_the_td_loss_plus_the_conservative_term():
    # SAC's contract: CalQL keeps SAC's update and critic loss, J = J_Q(y) + R, and overrides the
    # target y (max backup, no entropy) and R (the conservative term); both recomputed here
    assert CalQL.update is SAC.update and CalQL.critic_loss is SAC.critic_loss
    obs_dim, act_dim, n, size, gamma, cql_alpha = 3, 2, 4, 8, 0.9, 2.0
    torch.manual_seed(0)
    agent = make_agent("calql", obs_dim, act_dim, {**TINY, "num_sampled_actions": n,
                                                   "cql_alpha": cql_alpha, "gamma": gamma})
    agent.reward_scale, agent.reward_bias = 10.0, 5.0
    batch = random_batch(size, obs_dim, act_dim, returns_to_go=torch.linspace(-2.0, 2.0, size))
    batch.dones = torch.tensor([0.0, 1.0] * (size // 2))
    torch.manual_seed(3)
    loss, metrics = agent.critic_loss(batch)

    torch.manual_seed(3)  # the same draws, in the same order: a' for y, then U, pi(.|s), pi(.|s')
    actor, critic = agent.actor, agent.critic
    with torch.no_grad():
        # y = 10 r + 5 + gamma (1 - d) max_j min_i Q_target_i(s', a'_j)
        next_obs = batch.next_observations.repeat_interleave(n, dim=0)
        next_q = agent.critic_target(next_obs, actor(next_obs)[0]).min(dim=0).values
        y = (10.0 * batch.rewards + 5.0
             + gamma * (1.0 - batch.dones) * next_q.view(size, n).max(dim=1).values)
        # J_Q = sum_i mean_b (Q_i(s_b, a_b) - y_b)^2
        q_data = critic(batch.observations, batch.actions)
        td = ((q_data - y) ** 2).mean(dim=1).sum()
        # R = alpha_cql sum_i mean_b max(logsumexp_j x_ibj - Q_i(s_b, a_b), -200), x over the
        # uniform (minus log 0.5^d) and the policy proposals (floored at G(s), minus log pi)
        obs = batch.observations.repeat_interleave(n, dim=0)
        uniform = torch.empty(size * n, act_dim).uniform_(-1, 1)
        current, log_pi_current = actor(obs)
        following, log_pi_next = actor(next_obs)
        floor = batch.returns_to_go.repeat_interleave(n)
        x = torch.cat([critic(obs, uniform) - act_dim * math.log(0.5),
                       torch.maximum(critic(obs, current), floor) - log_pi_current,
                       torch.maximum(critic(obs, following), floor) - log_pi_next], dim=1)
        # (N, 3 proposals x B states x n samples) -> per state: (N, B, 3 n)
        lse = torch.logsumexp(x.view(-1, 3, size, n).transpose(1, 2).reshape(-1, size, 3 * n),
                              dim=-1)
        conservative = cql_alpha * (lse - q_data).clamp(min=-200.0).mean(dim=1).sum()
    assert metrics["td_loss"].item() == pytest.approx(td.item(), rel=1e-5)
    assert metrics["cql_loss"].item() == pytest.approx(conservative.item(), rel=1e-5)
    assert loss.item() == pytest.approx(td.item() + conservative.item(), rel=1e-5)
    assert loss.item() == (metrics["td_loss"] + metrics["cql_loss"]).item()
    # SAC's own R is 0: its critic loss is its TD loss
    sac = make_agent("sac", obs_dim, act_dim, TINY)
    sac_loss, sac_metrics = sac.critic_loss(batch)
    assert sac_loss.item() == sac_metrics["td_loss"].item()


def door_like_dataset() -> TransitionDataset:
    """Two episodes of binary rewards: one ends in success, one in failure."""
    rewards = [[-1.0, -1.0, 0.0], [-1.0, 0.0, -1.0]]
    episodes = [{"observations": np.zeros((4, 3)), "actions": np.zeros((3, 2)),
                 "rewards": np.array(r), "terminals": np.zeros(3),
                 "truncations": np.array([0, 0, 1])} for r in rewards]
    return TransitionDataset.from_episodes(episodes, env_id="AdroitHandDoor-v1",
                                           dataset_id="local/door/human-binary-v0")


def test_calql_prepare_offline_uses_adroit_defaults_and_the_sparse_return_rule(tmp_path):
    dataset = door_like_dataset()
    buffer = ReplayBuffer.from_dataset(dataset, "cpu", gamma=0.9)
    agent = make_agent("calql", 3, 2, {**TINY, "gamma": 0.9})
    agent.prepare_offline(dataset, buffer, RunArtifacts(tmp_path))
    assert (agent.cql_alpha, agent.reward_scale, agent.reward_bias) == (1.0, 10.0, 5.0)
    # scaled rewards: -1 -> -5, 0 -> +5. Success episode: plain discounted sums; the episode
    # whose last reward is a failure: every return is -5 / (1 - 0.9) = -50 (CORL's rule)
    g = 0.9
    expected = [-5 + g * (-5 + g * 5), -5 + g * 5, 5.0, -50.0, -50.0, -50.0]
    np.testing.assert_allclose(buffer.storage["returns_to_go"].numpy(), expected, rtol=1e-6)


def test_iql_prepare_offline_sets_family_expectile_and_mujoco_reward_scale(tmp_path):
    agent = make_agent("iql", 3, 2, TINY)
    agent.prepare_offline(door_like_dataset(), None, RunArtifacts(tmp_path))
    assert (agent.expectile, agent.reward_scale) == (0.8, 1.0)
    hopper_like = TransitionDataset.from_episodes(
        [{"observations": np.zeros((3, 3)), "actions": np.zeros((2, 2)), "rewards": np.array(r),
          "terminals": np.zeros(2), "truncations": np.array([0, 1])} for r in ([1, 2], [5, 5])],
        env_id="Hopper-v5")
    agent = make_agent("iql", 3, 2, TINY)
    agent.prepare_offline(hopper_like, None, RunArtifacts(tmp_path))
    # CORL: rewards * 1000 / (max return - min return) = 1000 / (10 - 3)
    assert (agent.expectile, agent.reward_scale) == (0.7, pytest.approx(1000 / 7))


@pytest.mark.parametrize(("config", "annealed"), [
    ({"actor_lr_cosine_steps": 4}, True), ({}, True), ({"actor_lr_cosine_steps": 0}, False)])
def test_iql_cosine_actor_schedule_halves_at_midpoint_and_ends_at_zero(config, annealed):
    agent = make_agent("iql", 3, 2, {**TINY, **config})
    agent.plan_updates(4)  # the trainer's hook: the run's updates (the default horizon)
    lrs = []
    for _ in range(6):
        lrs.append(agent.optimizers["actor"].param_groups[0]["lr"])
        agent.update(random_batch(8, 3, 2))
    # the lr of update t: lr_t = lr_0 (1 + cos(pi min(t, T) / T)) / 2, T = 4; lr_0 when off
    expected = [3e-4 * (0.5 * (1 + math.cos(math.pi * min(t, 4) / 4)) if annealed else 1.0)
                for t in range(6)]
    assert lrs == pytest.approx(expected)


@pytest.mark.parametrize(("name", "option", "message"), [
    ("iql", {"expectile": 1.5}, "expectile must be in"),
    ("calql", {"num_sampled_actions": 0}, "num_sampled_actions"),
    ("cql", {"cql_alpha": -1.0}, "cql_alpha"),
    ("smac", {"alpha_psi_min": -0.1}, "alpha_psi_min"),
    ("smac", {"score_model": {"stepz": 3}}, "stepz"),
])
def test_offline_configs_reject_bad_values_by_name(name, option, message):
    with pytest.raises(SmacError, match=message):
        make_agent(name, 3, 2, option)


# ------------------------------------------------------------------------------ every update
def analytic_score(obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    return -(actions - 0.3 * torch.tanh(obs[:, :2])) / 0.1**2


@pytest.mark.parametrize("name", ["calql", "cql", "iql", "smac"])
@pytest.mark.parametrize("optimizer", ["adam", "muon"])
def test_offline_update_changes_actor_and_critic_and_moves_targets_by_tau(name, optimizer):
    agent = make_agent(name, 3, 2, {**TINY, "optimizer": optimizer})
    if name == "smac":
        agent.dataset_score = analytic_score
    before = {k: {p: t.clone() for p, t in net.state_dict().items()}
              for k, net in agent.networks.items()}
    metrics = agent.update(random_batch(8, 3, 2))
    assert all(math.isfinite(v) for v in metrics.values())
    for key in ("actor", "critic"):
        after = agent.networks[key].state_dict()
        assert any(not torch.equal(before[key][p], after[p]) for p in after), key
    # polyak after the critic step: target <- target + tau (critic - target)
    tau, critic = agent.config.tau, agent.networks["critic"].state_dict()
    for p, target in agent.networks["critic_target"].state_dict().items():
        old = before["critic_target"][p]
        torch.testing.assert_close(target, old + tau * (critic[p] - old))
    if name == "smac":
        assert "score_cosine" in metrics


# ---------------------------------------------------------------------------------------- SMAC
def test_score_matching_gradient_of_a_gradient_matches_finite_differences():
    torch.manual_seed(0)
    critic = CriticEnsemble(2, 2, (5,), ensemble_size=2).double()
    scale_net = ScoreScale(2, 4, minimum=0.01).double()
    obs, actions = torch.randn(6, 2, dtype=torch.float64), torch.rand(6, 2).double() * 2 - 1
    score = torch.randn(6, 2, dtype=torch.float64)
    params = [*critic.parameters(), *scale_net.parameters()]

    def loss() -> torch.Tensor:
        return score_matching_loss(critic, obs, actions, score, scale_net(obs))[0]

    # the critic's output bias does not move grad_a Q: its gradient is None (FD: 0)
    analytic = [torch.zeros_like(p) if g is None else g
                for p, g in zip(params, torch.autograd.grad(loss(), params, allow_unused=True),
                                strict=True)]
    eps = 1e-6
    for param, grad in zip(params, analytic, strict=True):
        flat, flat_grad = param.data.view(-1), grad.reshape(-1)
        for i in range(flat.numel()):
            original = flat[i].item()
            flat[i] = original + eps
            up = loss().item()
            flat[i] = original - eps
            down = loss().item()
            flat[i] = original
            # central differences are exact to O(eps^2) on these piecewise-polynomial functions
            # (no ReLU kink lies within 1e-6 of a random input here)
            assert flat_grad[i].item() == pytest.approx((up - down) / (2 * eps),
                                                        rel=1e-5, abs=1e-8)


def autograd_score_matching_loss(critic: CriticEnsemble, obs: torch.Tensor,
                                 actions: torch.Tensor, score: torch.Tensor, scale: torch.Tensor
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """L_SM by autograd's gradient of a gradient (the path before issue 12): (), (N, B, d)."""
    member_actions = actions.unsqueeze(0).repeat(critic.ensemble_size, 1, 1).requires_grad_(True)
    q = critic(obs.unsqueeze(0).expand(critic.ensemble_size, -1, -1), member_actions)
    grad_q = torch.autograd.grad(q.sum(), member_actions, create_graph=True)[0]
    residual = grad_q - scale[None, :, None] * score.unsqueeze(0)
    return residual.pow(2).sum(-1).mean(1).sum(), grad_q


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "batched-ops"])
def test_written_out_action_gradient_equals_autograds_double_backward(fused):
    # Hopper-sized critic and batch, as SMAC trains it: the same loss, grad_a Q and gradients of
    # every critic and scale weight as autograd's gradient of a gradient, to float32 rounding,
    # by the fused kernel and by the batched torch ops that seed-stacked training vmaps
    torch.manual_seed(0)
    critic, scale_net = CriticEnsemble(11, 3), ScoreScale(11, 64, minimum=0.01)
    obs, actions = torch.randn(256, 11), torch.rand(256, 3) * 2 - 1
    score = torch.randn(256, 3) * 10
    params = [*critic.parameters(), *scale_net.parameters()]
    results = []
    for loss_fn in (functools.partial(score_matching_loss, fused=fused),
                    autograd_score_matching_loss):
        loss, grad_q = loss_fn(critic, obs, actions, score, scale_net(obs))
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        results.append((loss, grad_q, [torch.zeros_like(p) if g is None else g
                                       for p, g in zip(params, grads, strict=True)]))
    (loss, grad_q, grads), (ref_loss, ref_grad_q, ref_grads) = results
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(grad_q, ref_grad_q)
    for grad, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref, rtol=1e-5, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in grads[:-4])  # the critic's weights do move


def test_action_gradient_needs_a_relu_critic_without_layer_norm():
    obs, actions = torch.randn(4, 3), torch.rand(4, 2)
    for critic in (CriticEnsemble(3, 2, (8,), activation="gelu"),
                   CriticEnsemble(3, 2, (8,), layer_norm=True)):
        with pytest.raises(SmacError, match="ReLU critic"):
            critic.action_gradient(obs, actions)


def test_score_matching_uses_each_members_own_action_gradient():
    critic = CriticEnsemble(3, 2, (8,), ensemble_size=3)
    obs, actions = torch.randn(5, 3), torch.rand(5, 2)
    _, grad_q = score_matching_loss(critic, obs, actions, torch.zeros(5, 2), torch.zeros(5))
    for i in range(3):
        a = actions.clone().requires_grad_(True)
        expected = torch.autograd.grad(critic(obs, a)[i].sum(), a)[0]
        torch.testing.assert_close(grad_q[i], expected)


# Toy problem: states s ~ U([-1, 1]^2), behaviour actions a ~ N(f(s), 0.1^2 I) (clipped, but
# |f| <= 0.5 keeps them far inside [-1, 1]), so score_D(s, a) = -(a - f(s)) / 0.1^2 exactly. The
# reward cos(pi s_1) depends on the state only and next states are fresh draws: TD learning fixes
# how Q depends on s and leaves grad_a Q to the function class, so plain SAC's action-gradients
# have no reason to follow the score, and SMAC's must, through L_SM alone.
TOY_SIGMA = 0.1


def toy_mean(obs: torch.Tensor) -> torch.Tensor:
    return torch.stack([0.5 * torch.sin(math.pi * obs[:, 0]),
                        0.5 * torch.cos(math.pi * obs[:, 1])], dim=-1)


def toy_score(obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    return -(actions - toy_mean(obs)) / TOY_SIGMA**2


def toy_batch(n: int, generator: torch.Generator) -> Batch:
    obs = torch.rand(n, 2, generator=generator) * 2 - 1
    actions = (toy_mean(obs) + TOY_SIGMA * torch.randn(n, 2, generator=generator)).clamp(-1, 1)
    return Batch(obs, actions, torch.cos(math.pi * obs[:, 0]),
                 torch.rand(n, 2, generator=generator) * 2 - 1, torch.zeros(n),
                 torch.full((n,), float("nan")))


def toy_alignment(agent, generator: torch.Generator) -> dict[str, float]:
    """Cosine of grad_a Q (ensemble sum) with the score at dataset states, with behaviour actions
    and with uniform actions (the two halves of SMAC's sampling distribution, the policy half
    replaced by the behaviour so both agents are measured at the same points)."""
    batch = toy_batch(512, generator)
    uniform = torch.rand(512, 2, generator=generator) * 2 - 1
    result = {}
    for where, actions in (("behaviour", batch.actions), ("uniform", uniform)):
        actions = actions.clone().requires_grad_(True)
        grad_q = torch.autograd.grad(agent.critic(batch.observations, actions).sum(), actions)[0]
        score = toy_score(batch.observations, actions.detach())
        result[where] = F.cosine_similarity(grad_q, score, dim=-1).mean().item()
        result[f"{where}_grad_norm"] = grad_q.norm(dim=-1).mean().item()
        result[f"{where}_score_norm"] = score.norm(dim=-1).mean().item()
    return result


@pytest.mark.slow
def test_smac_aligns_critic_gradients_with_the_score_far_better_than_sac():
    config = {"actor_hidden": [64, 64], "critic_hidden": [64, 64], "batch_size": 128,
              "gamma": 0.9, "optimizer": "adam"}
    alignment = {}
    for name in ("sac", "smac"):
        torch.manual_seed(0)
        agent = make_agent(name, 2, 2, config)
        if name == "smac":
            agent.dataset_score = toy_score
        data = torch.Generator().manual_seed(0)
        for _ in range(500):
            agent.update(toy_batch(128, data))
        alignment[name] = toy_alignment(agent, torch.Generator().manual_seed(1))
    sac, smac = alignment["sac"], alignment["smac"]
    # Measured (500 updates, seeds 0-2, Adam; seed 0 with Muon alike): SAC cos -0.09..0.01 at
    # behaviour actions, -0.51..-0.03 at uniform ones; SMAC 0.17..0.24 and 0.83..0.89. A ReLU
    # critic's grad_a Q is piecewise constant in a, so it follows the linear score field
    # coarsely near the data, where the score is small (|score| ~13), and closely over the box,
    # where it is large (~87) and dominates L_SM. Thresholds sit between the two ranges.
    assert smac["uniform"] > 0.6 > sac["uniform"]
    assert smac["behaviour"] > 0.12 > sac["behaviour"]
    # not the degenerate solution (a flat critic): measured |grad_a Q| 23.5 at uniform actions
    # (alpha_psi |score| ~ 77 and still growing at 500 updates), SAC's ~1
    assert smac["uniform_grad_norm"] > 10 * sac["uniform_grad_norm"]


def test_smac_prepare_offline_trains_then_reuses_the_cached_score_model(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [{"observations": rng.normal(size=(6, 3)), "actions": rng.uniform(-1, 1, (5, 2)),
                 "rewards": rng.normal(size=5), "terminals": np.zeros(5),
                 "truncations": np.array([0, 0, 0, 0, 1])} for _ in range(3)]
    dataset = TransitionDataset.from_episodes(episodes, env_id="Pendulum-v1")
    config = {**TINY, "score_model": {"steps": 3, "hidden_dim": 8, "num_blocks": 1,
                                      "embed_dim": 4, "batch_size": 4}}
    agent = make_agent("smac", 3, 2, config)
    agent.prepare_offline(dataset, None, RunArtifacts(tmp_path))
    assert (tmp_path / "score_model").is_dir()
    obs, actions = torch.randn(4, 3), torch.rand(4, 2)
    trained = agent.dataset_score(obs, actions)
    again = make_agent("smac", 3, 2, config)
    again.prepare_offline(dataset, None, RunArtifacts(tmp_path))
    torch.testing.assert_close(again.dataset_score(obs, actions), trained, rtol=0, atol=0)
    other = make_agent("smac", 4, 2, config)
    with pytest.raises(SmacError, match="obs_dim 3"):
        other.prepare_offline(dataset, None, RunArtifacts(tmp_path))


def test_smac_update_without_a_score_model_says_what_to_do():
    agent = make_agent("smac", 3, 2, TINY)
    with pytest.raises(SmacError, match="prepare_offline"):
        agent.update(random_batch(8, 3, 2))


@pytest.mark.parametrize("mode", ["temperature", "temperature_floor", "learned", "fixed"])
def test_alpha_psi_modes_are_what_their_names_say(mode):
    torch.manual_seed(0)
    agent = make_agent("smac", 2, 2, {**TINY, "alpha_psi_mode": mode, "optimizer": "adam"})
    agent.dataset_score = toy_score
    data = torch.Generator().manual_seed(0)
    for _ in range(20):
        agent.update(toy_batch(32, data))
    obs = toy_batch(64, data).observations
    alpha = agent.temperature().detach()
    scale = agent.alpha_psi(obs)
    if mode == "temperature":
        # alpha_psi(s) = alpha, no learned network, and L_SM does not move the temperature
        torch.testing.assert_close(scale, alpha.expand(64))
        assert "score_scale" not in agent.networks
        critic_params = {id(p) for group in agent.optimizers["critic"].param_groups
                         for p in group["params"]}
        assert id(agent.temperature.log_alpha) not in critic_params
    elif mode == "temperature_floor":
        assert torch.all(scale >= alpha) and torch.any(scale > alpha)
    elif mode == "fixed":
        torch.testing.assert_close(scale, torch.full((64,), 0.2))
        assert "score_scale" not in agent.networks
    else:
        assert torch.all(scale >= agent.config.alpha_psi_min)


@pytest.mark.slow
def test_default_score_scale_does_not_fade_to_a_flat_critic():
    # The reviewed failure: a learned alpha_psi drifts to its floor (L_SM is smallest there for a
    # flat critic) and the regulariser fades: on this toy the learned scale falls from 0.70 to
    # 0.088 in 2000 updates. The default ("fixed") holds the scale, so a flat critic keeps
    # paying, and grad_a Q stays at the score's scale and aligned with it.
    config = {"actor_hidden": [64, 64], "critic_hidden": [64, 64], "batch_size": 128,
              "gamma": 0.9, "optimizer": "adam"}
    torch.manual_seed(0)
    agent = make_agent("smac", 2, 2, config)
    agent.dataset_score = toy_score
    data = torch.Generator().manual_seed(0)
    first = agent.update(toy_batch(128, data))
    for _ in range(1999):
        last = agent.update(toy_batch(128, data))
    assert last["alpha_psi"] == pytest.approx(first["alpha_psi"], rel=1e-6)
    # measured: the flat critic's cost 702 -> 426, |grad_a Q| 0.62 of alpha_psi |score|, cos 0.67
    assert last["sm_loss_flat_critic"] > 0.5 * first["sm_loss_flat_critic"]
    assert last["grad_q_norm"] > 0.3 * last["alpha_psi"] * math.sqrt(
        last["sm_loss_flat_critic"] / (2 * last["alpha_psi"] ** 2))
    assert last["score_cosine"] > 0.5


def test_score_condition_is_the_trajectory_return_and_favours_the_better_trajectory(tmp_path):
    # Two kinds of trajectories over the same states (the state is the phase t / T of the
    # episode): good ones act +0.5 and earn 1 per step for 15 steps (return 15), bad ones act
    # -0.5 and earn 0.5 per step only in the last 5 (return 2.5). Conditioned on the trajectory's
    # return, every state of a good trajectory is seen with w = 1. On return-to-go, late states
    # see the bad actions with the higher w (0.5 per remaining step against 0), and a score
    # queried at a high w* there points to the bad action.
    rng = np.random.default_rng(0)
    horizon, episodes = 20, []
    steps = np.arange(horizon)
    for j in range(60):
        good = j % 2 == 0
        phase = np.arange(horizon + 1, dtype=np.float64)[:, None] / horizon
        actions = (0.5 if good else -0.5) + 0.1 * rng.standard_normal((horizon, 1))
        rewards = np.where(steps < 15, 1.0, 0.0) if good else np.where(steps >= 15, 0.5, 0.0)
        episodes.append({"observations": phase, "actions": actions.clip(-1, 1),
                         "rewards": rewards, "terminals": np.zeros(horizon),
                         "truncations": np.eye(horizon)[-1]})
    dataset = TransitionDataset.from_episodes(episodes, env_id="Pendulum-v1")
    condition, per_trajectory = trajectory_return_condition(dataset)
    np.testing.assert_array_equal(per_trajectory, np.tile([1.0, 0.0], 30))
    np.testing.assert_array_equal(condition, np.repeat(np.tile([1.0, 0.0], 30), horizon))

    torch.manual_seed(0)
    config = {**TINY, "score_model": {"steps": 1500, "hidden_dim": 64, "num_blocks": 2,
                                      "dropout": 0.0, "lr": 1e-3, "ema_decay": 0.99}}
    agent = make_agent("smac", 1, 1, config)
    agent.prepare_offline(dataset, None, RunArtifacts(tmp_path))
    assert agent.dataset_score.condition_value == 1.0
    late = torch.linspace(0.75, 0.95, 16)[:, None]
    # at a = 0, between the two behaviours, the score at w* points to the good action +0.5, at
    # early and at late states alike; the condition is what moves it: at w = 0 it points to -0.5
    for phase in (late - 0.7, late):
        score = agent.dataset_score(phase, torch.zeros_like(phase))
        assert torch.all(score > 0), score.squeeze(-1)
        assert torch.all(agent.dataset_score(phase, torch.zeros_like(phase), condition=0.0) < 0)
