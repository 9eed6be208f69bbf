"""The offline -> online handoff rule (``smac_core.handoff``), through ``train online --from``:
every offline method's policy acts at step 0 as it did offline, and SAC's temperature and target
entropy follow one rule, whichever method the checkpoint comes from."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from smac_core import tasks
from smac_core.algos import make_agent
from smac_core.algos.base import Agent
from smac_core.checkpoint import load_tensors, save_checkpoint
from smac_core.data.dataset import TransitionDataset
from smac_core.data.minari_store import write_minari
from smac_core.nets import CriticEnsemble, tanh_gaussian_log_prob
from smac_core.train import parse_config
from smac_core.trainers import build_online

OBS_DIM, ACT_DIM = 3, 1  # Pendulum-v1
HIDDEN = [16, 16]
CONFIG = {"actor_hidden": HIDDEN, "critic_hidden": HIDDEN}
OFFLINE = ("smac", "calql", "cql", "iql", "td3bc")
STOCHASTIC = ("smac", "calql", "cql", "iql")
DATASET = "local/pendulum/handoff-v0"


@pytest.fixture
def dataset(minari_root) -> np.ndarray:
    """Two random 100-step episodes stored as a Pendulum-v1 dataset; returns its states."""
    rng = np.random.default_rng(0)
    episodes = [{"observations": rng.normal(size=(101, OBS_DIM)).astype(np.float32),
                 "actions": rng.uniform(-2, 2, (100, ACT_DIM)).astype(np.float32),
                 "rewards": rng.normal(size=100), "terminals": np.zeros(100, bool),
                 "truncations": np.arange(100) == 99} for _ in range(2)]
    data = TransitionDataset.from_episodes(episodes)
    write_minari(data, DATASET, tasks.make_env("Pendulum-v1"))
    return data.observations


def concave_critic(curvature: float) -> dict[str, torch.Tensor]:
    """Critic weights with Q_i(s, a) = -curvature * |a| + g_i(s), g_i a random function of s."""
    critic = CriticEnsemble(OBS_DIM, ACT_DIM, HIDDEN, 2)
    first, middle, last = critic.layers[0], critic.layers[2], critic.layers[4]
    with torch.no_grad():
        first.weight[:, OBS_DIM:, :] = 0.0                   # only units 0, 1 see the action:
        first.weight[:, :, :2] = 0.0
        first.weight[:, OBS_DIM, 0], first.weight[:, OBS_DIM, 1] = 1.0, -1.0  # relu(a), relu(-a)
        first.bias[:, :, :2] = 0.0
        middle.weight[:, :2, :] = 0.0                        # passed through unchanged
        middle.weight[:, :, :2] = 0.0
        middle.weight[:, 0, 0], middle.weight[:, 1, 1] = 1.0, 1.0
        middle.bias[:, :, :2] = 0.0
        last.weight[:, :2, 0] = -curvature                   # -curvature (relu(a) + relu(-a))
    return critic.state_dict()


def offline_checkpoint(root: Path, algo: str, log_std_bias: float | None = None,
                       curvature: float = 5.0) -> Path:
    """An offline checkpoint of ``algo`` whose actor and critics are the same for every
    algorithm (a random actor with a state-dependent std, or the constant std
    exp(log_std_bias)), trained-looking temperature 0.5 where the algorithm has one."""
    generator = torch.Generator().manual_seed(1)
    agent = make_agent(algo, OBS_DIM, ACT_DIM, CONFIG)
    actor = agent.networks["actor"]
    with torch.no_grad():
        for name, p in actor.named_parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * (0.5 if "trunk" in name else 0.1))
        if hasattr(actor, "log_std"):
            actor.log_std.bias.fill_(-0.5)
            if log_std_bias is not None:
                actor.log_std.weight.zero_()
                actor.log_std.bias.fill_(log_std_bias)
        for name in ("critic", "critic_target"):
            agent.networks[name].load_state_dict(concave_critic(curvature))
        if "temperature" in agent.networks:
            agent.networks["temperature"].log_alpha.fill_(math.log(0.5))
    metadata = {"algorithm": algo, "phase": "offline", "step": 100, "env": "Pendulum-v1",
                "dataset_id": DATASET, "obs_dim": OBS_DIM, "act_dim": ACT_DIM,
                "actor_hidden": HIDDEN, "obs_mean": [0.0] * OBS_DIM, "obs_std": [1.0] * OBS_DIM,
                "action_low": [-2.0], "action_high": [2.0], "reward_scale": 1.0,
                "reward_bias": 0.0, "config": agent.config.to_dict()}
    return save_checkpoint(root / f"{algo}-offline", agent.networks, metadata)


def offline_agent(checkpoint: Path, algo: str) -> Agent:
    agent = make_agent(algo, OBS_DIM, ACT_DIM, CONFIG)
    agent.load_networks(load_tensors(checkpoint)[0])
    return agent


def online_agent(checkpoint: Path, out: Path, algo: str, *extra: str) -> Agent:
    """The agent ``train online --algo ALGO --from CHECKPOINT`` starts with (no step taken)."""
    argv = ["online", "--algo", algo, "--from", str(checkpoint), "--out", str(out),
            "--steps", "10", "--set", f"actor_hidden={HIDDEN}", "--set",
            f"critic_hidden={HIDDEN}", *extra]
    trainer, _ = build_online(parse_config(argv).checked())
    return trainer.agent


def actor_objective_slopes(agent: Agent, obs: torch.Tensor, step: float = 1e-2
                           ) -> tuple[float, float]:
    """Finite differences of E[log pi] and E[min_i Q_i] in a common shift delta of every log-std
    (antithetic noise, 20k pairs): (d E[log pi] / d delta, d E[Q] / d delta)."""
    eps = torch.randn(20_000, ACT_DIM, generator=torch.Generator().manual_seed(2))
    eps, states = torch.cat([eps, -eps]), obs[torch.arange(40_000) % len(obs)]
    with torch.no_grad():
        mean, std = agent.actor.distribution(states)

        def values(delta: float) -> tuple[float, float]:
            u = mean + std * math.exp(delta) * eps
            log_prob = tanh_gaussian_log_prob(u, mean, std * math.exp(delta)).mean()
            q = agent.critic(states, torch.tanh(u)).min(dim=0).values.mean()
            return log_prob.item(), q.item()

        (lp_up, q_up), (lp_down, q_down) = values(step), values(-step)
    return (lp_up - lp_down) / (2 * step), (q_up - q_down) / (2 * step)


@pytest.mark.parametrize("algo", OFFLINE)
def test_the_handed_over_policy_acts_as_the_offline_one_and_sac_starts_at_the_fixed_point(
        tmp_path, dataset, algo):
    checkpoint = offline_checkpoint(tmp_path, algo)
    offline = offline_agent(checkpoint, algo)
    obs = torch.randn(64, OBS_DIM)
    actions = torch.rand(64, ACT_DIM) * 1.8 - 0.9
    for online_algo in ("sac", "awr", "td3"):
        agent = online_agent(checkpoint, tmp_path / online_algo, online_algo)
        # (a) the same deterministic actions, exactly
        assert torch.equal(agent.act(obs, True), offline.act(obs, True)), online_algo
        if online_algo == "td3":
            continue  # acts tanh(mu) plus its own exploration noise
        mean, std = agent.actor.distribution(obs)
        if algo in STOCHASTIC:
            # (b) the same action distribution, exactly
            offline_mean, offline_std = offline.actor.distribution(obs)
            assert torch.equal(mean, offline_mean) and torch.equal(std, offline_std)
            assert torch.equal(agent.actor.log_prob(obs, actions),
                               offline.actor.log_prob(obs, actions))
        else:
            # (c) a deterministic actor explores with TD3's noise scale, 0.1, in every state
            assert torch.equal(mean, offline.actor.mu(offline.actor.trunk(obs)))
            torch.testing.assert_close(std, torch.full_like(std, 0.1), rtol=0, atol=1e-6)

    # (d) SAC's target entropy is the handed-over policy's entropy on the dataset's states...
    sac = online_agent(checkpoint, tmp_path / "sac-again", "sac")
    states = torch.as_tensor(dataset).repeat(100, 1)
    with torch.no_grad():
        entropy = -sac.actor(states)[1].mean().item()
    assert sac.target_entropy == pytest.approx(entropy, abs=0.05)
    # ... and its temperature makes the actor's loss E[alpha log pi - Q] flat in the log-std
    d_log_prob, d_q = actor_objective_slopes(sac, torch.as_tensor(dataset))
    alpha = sac.networks["temperature"]().item()
    assert d_q < 0 and abs(alpha * d_log_prob - d_q) < 0.05 * abs(d_q)
    # the values are logged in the run's config
    handoff = json.loads((tmp_path / "sac-again" / "config.json").read_text())["handoff"]
    assert handoff["rule"] == "matched"
    assert handoff["target_entropy"] == handoff["entropy"] == sac.target_entropy
    assert handoff["initial_alpha"] == pytest.approx(alpha, rel=1e-6)


def test_sac_temperature_follows_one_rule_whatever_the_offline_method(tmp_path, dataset):
    # every source hands over the same policy (a stochastic actor with TD3's std 0.1, or TD3+BC's
    # deterministic one, given that std) and critic; SMAC, CalQL and CQL also a temperature 0.5
    checkpoints = {algo: offline_checkpoint(tmp_path, algo, log_std_bias=math.log(0.1))
                   for algo in OFFLINE}

    def temperature_and_target(algo: str, *rule: str) -> tuple[float, float]:
        sac = online_agent(checkpoints[algo], tmp_path / f"{algo}{rule}", "sac", *rule)
        return sac.networks["temperature"]().item(), sac.target_entropy

    matched = {algo: temperature_and_target(algo) for algo in OFFLINE}  # the default rule
    assert len(set(matched.values())) == 1, matched
    inherited = {algo: temperature_and_target(algo, "--handoff", "inherit") for algo in OFFLINE}
    # inherit is the former behaviour: a trained temperature is kept, others restart at 1.0
    assert {algo: alpha for algo, (alpha, _) in inherited.items()} == pytest.approx(
        {"smac": 0.5, "calql": 0.5, "cql": 0.5, "iql": 1.0, "td3bc": 1.0})
    assert {target for _, target in inherited.values()} == {-float(ACT_DIM)}


def test_a_critic_that_rewards_wider_policies_gets_the_smallest_temperature(tmp_path, dataset):
    checkpoint = offline_checkpoint(tmp_path, "iql", curvature=-5.0)  # Q = 5 |a|: convex
    sac = online_agent(checkpoint, tmp_path / "sac", "sac")
    assert sac.networks["temperature"]().item() == pytest.approx(1e-4)


def test_sac_resume_state_keeps_the_handed_over_target_entropy():
    agent = make_agent("sac", OBS_DIM, ACT_DIM, CONFIG)
    agent.target_entropy = 0.37
    clone = make_agent("sac", OBS_DIM, ACT_DIM, CONFIG)
    clone.load_state_dict(agent.state_dict())
    assert clone.target_entropy == 0.37
