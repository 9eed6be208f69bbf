"""Online agents (SAC, TD3, TD3+BC, AWR): batched critics, updates, TD3 delays, the TD3+BC loss,
the tanh-Gaussian density, the offline -> online handoff and the registry's errors."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from smac_core.algos import ALGORITHMS, make_agent
from smac_core.algos.base import Agent, reduce_ensemble
from smac_core.algos.qam import FLOW_ALGORITHMS
from smac_core.checkpoint import network_tensors
from smac_core.data.buffers import Batch
from smac_core.errors import SmacError
from smac_core.nets import CriticEnsemble, TanhGaussianActor

OBS_DIM, ACT_DIM = 5, 2
SMALL = {"actor_hidden": (16, 16), "critic_hidden": (16, 16), "batch_size": 32}


def random_batch(size: int, obs_dim: int = OBS_DIM, act_dim: int = ACT_DIM) -> Batch:
    return Batch(observations=torch.randn(size, obs_dim),
                 actions=torch.rand(size, act_dim) * 2 - 1,
                 rewards=torch.randn(size),
                 next_observations=torch.randn(size, obs_dim),
                 dones=(torch.rand(size) < 0.1).float(),
                 returns_to_go=torch.full((size,), float("nan")))


def snapshot(agent: Agent) -> dict[str, dict[str, torch.Tensor]]:
    return {name: {k: v.clone() for k, v in m.state_dict().items()}
            for name, m in agent.networks.items()}


def changed(before: dict[str, torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


# ---------------------------------------------------------------------- critic ensemble
def separate_critics(ensemble: CriticEnsemble) -> list[nn.Sequential]:
    """N ordinary nn.Linear critics holding copies of the ensemble members' weights."""
    linears = [m for m in ensemble.layers if not isinstance(m, nn.ReLU)]
    critics = []
    for i in range(ensemble.ensemble_size):
        layers: list[nn.Module] = []
        for vec in linears:
            linear = nn.Linear(vec.weight.shape[1], vec.weight.shape[2])
            with torch.no_grad():
                linear.weight.copy_(vec.weight[i].T)
                linear.bias.copy_(vec.bias[i, 0])
            layers += [linear, nn.ReLU()]
        critics.append(nn.Sequential(*layers[:-1]))
    return critics


def test_batched_critic_ensemble_equals_separate_critics_forward_and_gradients():
    ensemble = CriticEnsemble(OBS_DIM, ACT_DIM, hidden=(32, 24), ensemble_size=3)
    critics = separate_critics(ensemble)
    obs, actions = torch.randn(64, OBS_DIM), torch.rand(64, ACT_DIM) * 2 - 1
    q = ensemble(obs, actions)
    reference = torch.stack([c(torch.cat([obs, actions], -1)).squeeze(-1) for c in critics])
    assert q.shape == (3, 64)
    torch.testing.assert_close(q, reference, rtol=1e-5, atol=1e-6)

    weights = torch.randn(3, 64)  # a loss that weights every member and sample differently
    (q * weights).sum().backward()
    (reference * weights).sum().backward()
    linears = [m for m in ensemble.layers if not isinstance(m, nn.ReLU)]
    for i, critic in enumerate(critics):
        for vec, linear in zip(linears, critic[::2], strict=True):
            torch.testing.assert_close(vec.weight.grad[i].T, linear.weight.grad,
                                       rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(vec.bias.grad[i, 0], linear.bias.grad,
                                       rtol=1e-5, atol=1e-6)


def test_critic_ensemble_accepts_one_input_per_member():
    ensemble = CriticEnsemble(OBS_DIM, ACT_DIM, hidden=(16,), ensemble_size=2)
    critics = separate_critics(ensemble)
    obs, actions = torch.randn(2, 10, OBS_DIM), torch.rand(2, 10, ACT_DIM)
    q = ensemble(obs, actions)
    for i, critic in enumerate(critics):
        torch.testing.assert_close(q[i], critic(torch.cat([obs[i], actions[i]], -1)).squeeze(-1))


def test_mean_minus_std_reduction_with_two_members_and_weight_1_over_sqrt2_is_the_min():
    q = torch.randn(2, 100)
    torch.testing.assert_close(reduce_ensemble(q, "mean_minus_std", 1 / math.sqrt(2)),
                               reduce_ensemble(q, "min"))


# ---------------------------------------------------------------------- updates
# networks each algorithm trains (the rest are targets, moved only by Polyak averaging)
TRAINED = {"sac": ("actor", "critic", "temperature"), "td3": ("actor", "critic"),
           "td3bc": ("actor", "critic"), "awr": ("actor", "critic")}
DELAY_ONE = {"td3": {"policy_delay": 1}, "td3bc": {"policy_delay": 1}}


@pytest.mark.parametrize("algo", sorted(TRAINED))
def test_update_trains_its_networks_and_moves_targets_by_exactly_tau(algo):
    agent = make_agent(algo, OBS_DIM, ACT_DIM, {**SMALL, **DELAY_ONE.get(algo, {})})
    tau = agent.config.tau
    before = snapshot(agent)
    metrics = agent.update(random_batch(agent.update_batch_size))

    assert metrics and all(math.isfinite(v) for v in metrics.values())
    assert agent.updates == 1
    for name in TRAINED[algo]:
        assert changed(before[name], agent.networks[name]), f"{algo}: {name} did not change"
    targets = [n for n in agent.networks if n.endswith("_target")]
    assert "critic_target" in targets
    for name in targets:
        source = agent.networks[name.removesuffix("_target")].state_dict()
        for key, value in agent.networks[name].state_dict().items():
            # theta_target' = (1 - tau) theta_target + tau theta (after the step)
            expected = torch.lerp(before[name][key], source[key], tau)
            torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
            assert not torch.equal(value, source[key])


def test_td3_actor_and_targets_update_only_every_policy_delay_calls():
    agent = make_agent("td3", OBS_DIM, ACT_DIM, {**SMALL, "policy_delay": 3})
    actor_steps, target_steps, critic_steps = [], [], []
    for _ in range(6):
        before = snapshot(agent)
        metrics = agent.update(random_batch(32))
        actor_steps.append(changed(before["actor"], agent.actor))
        target_steps.append(changed(before["actor_target"], agent.networks["actor_target"])
                            and changed(before["critic_target"], agent.networks["critic_target"]))
        critic_steps.append(changed(before["critic"], agent.critic))
        assert ("actor_loss" in metrics) == actor_steps[-1]
    assert actor_steps == [False, False, True, False, False, True]
    assert target_steps == actor_steps
    assert all(critic_steps)


def test_sac_utd_takes_utd_critic_steps_on_slices_and_one_actor_step():
    agent = make_agent("sac", OBS_DIM, ACT_DIM, {**SMALL, "utd": 4})
    assert agent.update_batch_size == 4 * 32
    agent.update(random_batch(agent.update_batch_size))
    adam_steps = {name: {int(s["step"]) for s in opt.state_dict()["state"].values()}
                  for name, opt in agent.optimizers.items()}
    assert adam_steps == {"critic": {4}, "actor": {1}, "temperature": {1}}


def test_td3_exploration_noise_is_gaussian_with_the_configured_scale_and_clipped():
    agent = make_agent("td3", OBS_DIM, ACT_DIM, {**SMALL, "exploration_noise": 0.1})
    obs = torch.randn(1, OBS_DIM).expand(20000, -1)
    mean_action = agent.act(obs, deterministic=True)
    noisy = agent.act(obs, deterministic=False)
    assert torch.equal(agent.act(obs, deterministic=True), mean_action)
    # 20000 samples: the std estimate's s.e. is 0.1 / sqrt(2 * 20000) = 5e-4; 0.003 is 6 s.e.
    assert abs((noisy - mean_action).std().item() - 0.1) < 3e-3
    big = make_agent("td3", OBS_DIM, ACT_DIM, {**SMALL, "exploration_noise": 5.0})
    assert big.act(obs, deterministic=False).abs().max().item() <= 1.0


def test_updates_draw_randomness_from_the_global_torch_generator():
    def run() -> dict[str, dict[str, torch.Tensor]]:
        torch.manual_seed(3)
        agent = make_agent("sac", OBS_DIM, ACT_DIM, SMALL)
        batch = random_batch(32)
        for _ in range(3):
            agent.update(batch)
        return snapshot(agent)

    first, second = run(), run()
    assert all(torch.equal(first[n][k], second[n][k]) for n in first for k in first[n])


# ---------------------------------------------------------------------- hand-set networks
def set_critic_linear_in_action(critic: CriticEnsemble, slopes: list[float],
                                dead_zone: float = 0.0) -> None:
    """1-D actions, hidden (2, 2): Q_i(s, a) = slopes[i] * (relu(a - z) - relu(-a - z))."""
    first, second, out = (m for m in critic.layers if not isinstance(m, nn.ReLU))
    with torch.no_grad():
        for p in critic.parameters():
            p.zero_()
        first.weight[:, 1, 0], first.weight[:, 1, 1] = 1.0, -1.0  # (s, a) -> (a - z, -a - z)
        first.bias.fill_(-dead_zone)
        second.weight[:, 0, 0], second.weight[:, 1, 1] = 1.0, 1.0  # identity on relu'd units
        for i, slope in enumerate(slopes):
            out.weight[i, :, 0] = torch.tensor([slope, -slope])


def test_td3bc_actor_loss_and_gradient_match_a_hand_computation():
    """Weights set by hand: pi(s) = tanh(b) = 0.5 for every s, Q_1(s, a) = 4a and Q_2 = -100a
    (Q_2 would change lambda if it were used).
    lambda = 2.5 / mean|Q_1(s, pi(s))| = 2.5 / 2 = 1.25 (detached);
    loss = -1.25 * 2 + mean((0.5 - a)^2) over a = (0.1, 0.9, -0.5):  -2.5 + 0.44 = -2.06;
    d loss / d b = (1 - 0.5^2) * (-1.25 * 4 + (2 / 3) * (0.4 - 0.4 + 1.0)) = 0.75 * (-5 + 2/3).
    A lambda that is not detached would give 0.75 * (2/3) instead (d(-2.5 * Q / |Q|) = 0)."""
    agent = make_agent("td3bc", 1, 1, {"actor_hidden": (2,), "critic_hidden": (2, 2)})
    with torch.no_grad():
        for p in agent.actor.parameters():
            p.zero_()
        agent.actor.mu.bias.fill_(math.atanh(0.5))
    set_critic_linear_in_action(agent.critic, [4.0, -100.0])
    batch = random_batch(3, obs_dim=1, act_dim=1)
    batch.actions = torch.tensor([[0.1], [0.9], [-0.5]])

    loss, metrics = agent.actor_loss(batch)
    assert metrics["lambda"].item() == pytest.approx(1.25)
    assert loss.item() == pytest.approx(-2.06, abs=1e-6)
    loss.backward()
    assert agent.actor.mu.bias.grad.item() == pytest.approx(0.75 * (-5.0 + 2.0 / 3.0), abs=1e-6)


@pytest.mark.parametrize(("temperature", "max_weight"), [(1.0, 10.0), (2.0, 100.0)])
def test_awr_weights_are_exp_advantage_over_lambda_clipped(temperature, max_weight):
    """Q_i(s, a) = 4 (relu(a - 0.1) - relu(-a - 0.1)) (frozen: critic lr 0) and a policy whose
    samples stay within 0.1 of 0 (mean 0, std e^-5), so Q(s, a') = 0 exactly and
    A = Q(s, a) = (-1.6, 0.6, 2.6) for batch actions (-0.5, 0.25, 0.75)."""
    agent = make_agent("awr", 1, 1, {"actor_hidden": (2,), "critic_hidden": (2, 2),
                                     "critic_lr": 0.0, "advantage_temperature": temperature,
                                     "max_weight": max_weight})
    with torch.no_grad():
        for p in agent.actor.parameters():
            p.zero_()
        agent.actor.log_std.bias.fill_(-5.0)
    set_critic_linear_in_action(agent.critic, [4.0, 4.0], dead_zone=0.1)
    batch = random_batch(3, obs_dim=1, act_dim=1)
    batch.actions = torch.tensor([[-0.5], [0.25], [0.75]])
    advantage = np.array([-1.6, 0.6, 2.6])

    metrics = agent.update(batch)
    assert metrics["advantage_mean"] == pytest.approx(advantage.mean(), abs=1e-5)
    expected = np.minimum(np.exp(advantage / temperature), max_weight).mean()
    assert metrics["weight_mean"] == pytest.approx(expected, rel=1e-5)


def test_awr_fits_the_log_density_of_the_tanh_gaussian_it_acts_with():
    # a batch of the actor's own samples (pre-tanh std 0.5, so none is near the clipped bounds):
    # AWR's log-likelihood of them is the log-density its sampling gave them
    agent = make_agent("awr", OBS_DIM, ACT_DIM, SMALL)
    with torch.no_grad():
        agent.actor.mu.bias.fill_(0.3)
        agent.actor.log_std.bias.fill_(math.log(0.5))
        batch = random_batch(32)
        batch.actions, sampled_log_prob = agent.actor(batch.observations)
    metrics = agent.update(batch)
    assert metrics["log_prob_mean"] == pytest.approx(sampled_log_prob.mean().item(), abs=1e-4)


# ---------------------------------------------------------------------- tanh-Gaussian
def fixed_gaussian_actor(mean: list[float], std: list[float]) -> TanhGaussianActor:
    """An actor whose pre-tanh Gaussian is N(mean, diag(std^2)) for every observation."""
    actor = TanhGaussianActor(1, len(mean), hidden=(4,))
    with torch.no_grad():
        for p in actor.parameters():
            p.zero_()
        actor.mu.bias.copy_(torch.tensor(mean))
        actor.log_std.bias.copy_(torch.tensor(std).log())
    return actor


def test_tanh_gaussian_log_prob_matches_the_change_of_variables_formula():
    mean, std = [0.3, -1.2], [0.5, 0.8]
    actor = fixed_gaussian_actor(mean, std)
    actions = torch.tensor([[0.0, 0.0], [0.5, -0.9], [-0.99, 0.7], [0.95, -0.2]])
    # p(a) = prod_j N(atanh(a_j); m_j, s_j) / (1 - a_j^2)
    u = np.arctanh(actions.double().numpy())
    m, s = np.array(mean), np.array(std)
    expected = (-0.5 * ((u - m) / s) ** 2 - np.log(s * np.sqrt(2 * np.pi))
                - np.log1p(-actions.double().numpy() ** 2)).sum(-1)
    log_prob = actor.log_prob(torch.zeros(4, 1), actions).detach()
    np.testing.assert_allclose(log_prob.numpy(), expected, rtol=1e-5)

    # the sampling path returns the density of the samples it draws
    samples, sample_log_prob = actor(torch.zeros(1000, 1))
    inside = samples.abs().max(-1).values < 0.999  # atanh is ill-conditioned at the box edge
    torch.testing.assert_close(sample_log_prob[inside],
                               actor.log_prob(torch.zeros(1000, 1), samples)[inside],
                               rtol=1e-3, atol=1e-3)


def test_regression_log_prob_is_the_gaussian_around_the_squashed_mean_finite_at_the_bounds():
    mean, std = [0.3, -1.2], [0.5, 0.8]
    actor = fixed_gaussian_actor(mean, std)
    # demonstrations often hold actions exactly at the bounds
    actions = torch.tensor([[1.0, -1.0], [0.0, 0.0], [0.29, -0.83]])
    # log N(a; tanh(m), s^2), summed over dims (CORL's IQL/AWAC likelihood)
    m, s, a = np.tanh(np.array(mean)), np.array(std), actions.double().numpy()
    expected = (-0.5 * ((a - m) / s) ** 2 - np.log(s * np.sqrt(2 * np.pi))).sum(-1)
    regression = actor.regression_log_prob(torch.zeros(3, 1), actions).detach()
    np.testing.assert_allclose(regression.numpy(), expected, rtol=1e-5)
    # the tanh-Gaussian density puts the bound actions tens of nats lower: the reason for it
    assert actor.log_prob(torch.zeros(3, 1), actions)[0] < regression[0] - 10


def test_tanh_gaussian_samples_follow_its_density_monte_carlo():
    """The fraction of 200k samples in each of 8 bins equals the integral of exp(log_prob) over
    the bin (midpoint rule on 400 points per bin): a binomial s.e. of at most 0.0011 per bin, so
    0.005 is over 4 s.e.; the quadrature error is far below that."""
    actor = fixed_gaussian_actor([0.4], [0.7])
    samples, _ = actor(torch.zeros(200_000, 1))
    edges = torch.linspace(-1.0, 1.0, 9, dtype=torch.float64)
    counts = torch.histc(samples.double().squeeze(-1), bins=8, min=-1.0, max=1.0)
    for i in range(8):
        width = (edges[i + 1] - edges[i]) / 400
        grid = edges[i] + width * (torch.arange(400, dtype=torch.float64) + 0.5)
        density = actor.log_prob(torch.zeros(400, 1), grid.float().unsqueeze(-1)).double().exp()
        assert abs(counts[i].item() / 200_000 - (density.sum() * width).item()) < 5e-3


# ---------------------------------------------------------------------- handoff
def test_load_pretrained_sac_to_td3_keeps_the_deterministic_action_and_the_critics():
    sac = make_agent("sac", OBS_DIM, ACT_DIM, SMALL)
    for _ in range(3):
        sac.update(random_batch(32))
    td3 = make_agent("td3", OBS_DIM, ACT_DIM, SMALL)
    td3.load_pretrained(network_tensors(sac.networks), {"algorithm": "sac"})

    obs = torch.randn(50, OBS_DIM)
    torch.testing.assert_close(td3.act(obs, deterministic=True), sac.act(obs, deterministic=True),
                               rtol=0, atol=0)
    torch.testing.assert_close(td3.networks["actor_target"](obs), sac.act(obs, True),
                               rtol=0, atol=0)  # no actor_target in SAC: re-synced
    actions = torch.rand(50, ACT_DIM) * 2 - 1
    for name in ("critic", "critic_target"):
        torch.testing.assert_close(td3.networks[name](obs, actions),
                                   sac.networks[name](obs, actions), rtol=0, atol=0)
    td3.update(random_batch(32))  # the optimizers still hold the (loaded) parameters
    assert not torch.equal(td3.critic(obs, actions), sac.critic(obs, actions))


# the Gaussian/deterministic-actor family; flow agents hand over among themselves only
# (QAM.load_pretrained, tests/test_flow_agents.py)
OFFLINE = sorted(n for n, cls in ALGORITHMS.items()
                 if "offline" in cls.phases and n not in FLOW_ALGORITHMS)
ONLINE = sorted(n for n, cls in ALGORITHMS.items()
                if "online" in cls.phases and n not in FLOW_ALGORITHMS)


@pytest.mark.parametrize("offline", OFFLINE)
def test_every_offline_agent_hands_over_to_every_online_agent(offline):
    source = make_agent(offline, OBS_DIM, ACT_DIM, SMALL)
    obs, actions = torch.randn(20, OBS_DIM), torch.rand(20, ACT_DIM) * 2 - 1
    for online in ONLINE:
        agent = make_agent(online, OBS_DIM, ACT_DIM, SMALL)
        agent.load_pretrained(network_tensors(source.networks), {"algorithm": offline})
        assert torch.equal(agent.act(obs, True), source.act(obs, True)), f"{offline}->{online}"
        assert torch.equal(agent.critic(obs, actions), source.networks["critic"](obs, actions))


@pytest.mark.parametrize("online", ONLINE)
def test_handoff_keeps_the_reward_units_the_critic_was_trained_in(online):
    # CalQL on binary Adroit learns from 10 r + 5; the online critic must go on doing so
    source = make_agent("calql", OBS_DIM, ACT_DIM, SMALL)
    source.reward_scale, source.reward_bias = 10.0, 5.0
    agent = make_agent(online, OBS_DIM, ACT_DIM, SMALL)
    batch = random_batch(32)
    torch.testing.assert_close(agent.learning_rewards(batch), batch.rewards)
    agent.load_pretrained(network_tensors(source.networks),
                          {"algorithm": "calql", "reward_scale": 10.0, "reward_bias": 5.0})
    torch.testing.assert_close(agent.learning_rewards(batch), 10.0 * batch.rewards + 5.0)
    assert torch.equal(agent.learning_rewards(batch), source.learning_rewards(batch))


def test_load_pretrained_td3_to_sac_keeps_fresh_log_std_and_temperature():
    td3 = make_agent("td3", OBS_DIM, ACT_DIM, SMALL)
    td3.update(random_batch(32))
    sac = make_agent("sac", OBS_DIM, ACT_DIM, {**SMALL, "initial_alpha": 0.2})
    fresh = snapshot(sac)
    sac.load_pretrained(network_tensors(td3.networks), {"algorithm": "td3"})
    obs = torch.randn(10, OBS_DIM)
    torch.testing.assert_close(sac.act(obs, True), td3.act(obs, True), rtol=0, atol=0)
    for key in ("log_std.weight", "log_std.bias"):
        assert torch.equal(sac.actor.state_dict()[key], fresh["actor"][key])
    assert sac.networks["temperature"]().item() == pytest.approx(0.2)


def test_load_pretrained_takes_the_temperature_from_a_sac_checkpoint():
    source = make_agent("sac", OBS_DIM, ACT_DIM, {**SMALL, "initial_alpha": 0.05})
    target = make_agent("sac", OBS_DIM, ACT_DIM, SMALL)
    target.load_pretrained(network_tensors(source.networks), {"algorithm": "sac"})
    assert target.networks["temperature"]().item() == pytest.approx(0.05)


@pytest.mark.parametrize(("change", "parameter"), [
    ({"num_critics": 3}, "'critic.layers.0.weight'"),
    ({"actor_hidden": (16, 8)}, "'actor.trunk.layers.2.weight'"),
])
def test_load_pretrained_with_mismatched_shapes_names_the_parameter(change, parameter):
    source = make_agent("sac", OBS_DIM, ACT_DIM, SMALL)
    target = make_agent("sac", OBS_DIM, ACT_DIM, {**SMALL, **change})
    with pytest.raises(SmacError, match=parameter):
        target.load_pretrained(network_tensors(source.networks), {"algorithm": "sac"})


def test_load_pretrained_without_an_actor_is_refused():
    source = make_agent("sac", OBS_DIM, ACT_DIM, SMALL)
    tensors = {k: v for k, v in network_tensors(source.networks).items()
               if not k.startswith("actor.")}
    with pytest.raises(SmacError, match="no 'actor' network"):
        make_agent("td3", OBS_DIM, ACT_DIM, SMALL).load_pretrained(tensors, {"algorithm": "x"})


# ---------------------------------------------------------------------- registry
def test_registry_holds_the_online_algorithms_with_their_phases():
    assert {"sac", "td3", "td3bc", "awr"} <= set(ALGORITHMS)
    assert ALGORITHMS["td3bc"].phases == {"offline", "online"}
    for name in ("sac", "td3", "awr"):
        assert ALGORITHMS[name].phases == {"online"}


def test_make_agent_rejects_unknown_names_options_and_values():
    with pytest.raises(SmacError, match=r"unknown algorithm 'ppo'; known: \[.*'sac'"):
        make_agent("ppo", OBS_DIM, ACT_DIM)
    with pytest.raises(SmacError, match=r"unknown SACConfig option.*'utdd'.*valid"):
        make_agent("sac", OBS_DIM, ACT_DIM, {"utdd": 2})
    with pytest.raises(SmacError, match="SACConfig: utd must be >= 1; got 0"):
        make_agent("sac", OBS_DIM, ACT_DIM, {"utd": 0})
    with pytest.raises(SmacError, match="target_reduction must be one of"):
        make_agent("sac", OBS_DIM, ACT_DIM, {"target_reduction": "max"})
    with pytest.raises(SmacError, match="'mean_minus_std' needs num_critics >= 2"):
        make_agent("sac", OBS_DIM, ACT_DIM, {"target_reduction": "mean_minus_std",
                                             "num_critics": 1})
    with pytest.raises(SmacError, match="TD3Config: policy_delay must be >= 1"):
        make_agent("td3", OBS_DIM, ACT_DIM, {"policy_delay": 0})
    with pytest.raises(SmacError, match="unknown optimizer kind 'sgd'"):
        make_agent("awr", OBS_DIM, ACT_DIM, {"optimizer": "sgd"})


@pytest.mark.parametrize("algo", ["sac", "td3", "awr"])
def test_online_agents_train_with_muon(algo):
    agent = make_agent(algo, OBS_DIM, ACT_DIM, {**SMALL, "optimizer": "muon"})
    assert {type(o).__name__ for o in agent.optimizers.values()} == {"Muon"}
    before = snapshot(agent)
    agent.update(random_batch(agent.update_batch_size))
    assert changed(before["critic"], agent.critic)


def test_state_dict_round_trip_restores_optimizers_and_counters():
    agent = make_agent("td3", OBS_DIM, ACT_DIM, SMALL)
    agent.update(random_batch(32))
    clone = make_agent("td3", OBS_DIM, ACT_DIM, SMALL)
    clone.load_networks(network_tensors(agent.networks))
    clone.load_state_dict(copy.deepcopy(agent.state_dict()))
    assert clone.updates == 1
    torch.manual_seed(7)
    batch = random_batch(32)
    torch.manual_seed(8)
    agent.update(batch)
    torch.manual_seed(8)
    clone.update(batch)
    for name, module in agent.networks.items():
        for key, value in module.state_dict().items():
            assert torch.equal(value, clone.networks[name].state_dict()[key]), f"{name}.{key}"
