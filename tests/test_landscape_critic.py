"""``landscape.critic``: the critic's metrics along the line, actor and critic interpolated
together, checked against a point-by-point computation written out with plain modules and
autograd; batched chunks against one point at a time; the command end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from analytic_env import ACT_DIM, OBS_DIM
from test_landscape_cli import FAST
from test_landscape_path import sac_checkpoint, write_demonstrations
from torch.nn.utils import vector_to_parameters

from landscape import critic as critic_cli
from landscape.critic import (
    agent_batch,
    checkpoint_critic,
    dataset_sample,
    line_values,
    plane_values,
)
from landscape.params import critic_vector, policy_vector, unflatten_params
from smac_core.checkpoint import load_checkpoint

TS = np.array([-0.25, 0.0, 0.4, 1.0])


def analytic_score(obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """A stand-in for score_D: the score of N(0.2, 1) actions, -(a - 0.2)."""
    return -(actions - 0.2)


def by_hand(a, b, t: float, batch, gamma: float) -> dict[str, float]:
    """The metrics at one t with the checkpoint's own modules, parameters set in place."""
    (theta_a, _), (theta_b, _) = policy_vector(a), policy_vector(b)
    (c_a, spec), (c_b, _) = critic_vector(a), critic_vector(b)
    policy = load_checkpoint(a.path).policy
    vector_to_parameters((1 - t) * theta_a + t * theta_b, policy.parameters())
    critic, _ = checkpoint_critic(a)
    critic.load_state_dict(unflatten_params((1 - t) * c_a + t * c_b, spec))
    raw = lambda o: o * policy.obs_std + policy.obs_mean  # noqa: E731
    with torch.no_grad():
        pi, next_pi = policy(raw(batch["observations"])), policy(raw(batch["next_observations"]))
        y = batch["rewards"] + gamma * (1 - batch["dones"]) * critic(
            batch["next_observations"], next_pi).mean(0)
        td = ((critic(batch["observations"], batch["actions"]) - y) ** 2).mean()
    actions = pi.clone().requires_grad_(True)
    q = critic(batch["observations"], actions)                                        # (N, B)
    grads = torch.stack([torch.autograd.grad(q[i].sum(), actions, retain_graph=True)[0]
                         for i in range(q.shape[0])])
    cosine = torch.nn.functional.cosine_similarity(
        grads, analytic_score(batch["observations"], pi)[None], dim=-1).mean()
    return {"q_pi": float(q.detach().mean()), "td_error": float(td), "score_cosine": float(cosine)}


def test_line_values_match_the_point_by_point_computation_in_any_chunking(tmp_path):
    a = load_checkpoint(sac_checkpoint(tmp_path / "a", seed=0))
    b = load_checkpoint(sac_checkpoint(tmp_path / "b", seed=1))
    torch.manual_seed(3)
    batch = {"observations": torch.randn(6, OBS_DIM), "next_observations": torch.randn(6, OBS_DIM),
             "actions": torch.rand(6, ACT_DIM) * 2 - 1, "rewards": torch.randn(6),
             "dones": torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0])}
    _, gamma = checkpoint_critic(a)
    values = line_values((a, b), TS, batch, chunk_size=3, score=analytic_score)
    assert {name: v.shape for name, v in values.items()} == \
        {"q_pi": (4, 6), "td_error": (4, 6), "score_cosine": (4, 6)}
    for k, t in enumerate(TS):
        expected = by_hand(a, b, float(t), batch, gamma)
        for name, value in expected.items():
            assert values[name][k].mean() == pytest.approx(value, rel=1e-5, abs=1e-6), (name, t)
    single = line_values((a, b), TS, batch, chunk_size=1, score=analytic_score)
    for name in values:
        np.testing.assert_allclose(single[name], values[name], rtol=1e-6, atol=1e-7)


def test_agent_batch_is_what_the_critic_saw_in_training(tmp_path):
    a = load_checkpoint(sac_checkpoint(tmp_path / "a", seed=0))
    sample = dataset_sample(a, str(write_demonstrations(tmp_path / "d.npy")), 4, seed=0)
    assert len(sample["rewards"]) == 4
    a.policy.obs_mean.fill_(0.5)
    a.policy.obs_std.fill_(2.0)
    batch = agent_batch(a.policy, sample, {"reward_scale": 3.0, "reward_bias": -1.0})
    torch.testing.assert_close(batch["observations"],
                               torch.as_tensor((sample["observations"] - 0.5) / 2.0))
    torch.testing.assert_close(batch["rewards"], torch.as_tensor(3.0 * sample["rewards"] - 1.0))


def test_critic_command_end_to_end_with_the_reward_beside(tmp_path, capsys):
    a, b = sac_checkpoint(tmp_path / "a", seed=0), sac_checkpoint(tmp_path / "b", seed=1)
    data = write_demonstrations(tmp_path / "demos.npy")
    args = [str(a), str(b), "--dataset", str(data), "--points", "3", "--episodes", "2", *FAST]
    assert critic_cli.main([*args, "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "mean Q verdict:" in printed and "reward verdict:" in printed
    results = json.loads((tmp_path / "out" / "critic.json").read_text())
    assert results["t"] == [-0.25, 0.0, 0.5, 1.0, 1.25] and results["batch"] == 10
    assert set(results["critic"]) == {"q_pi", "td_error"}  # SAC: no score model
    assert results["reward"]["verdict"]["verdict"] in {"valley", "monotone", "non-monotone"}
    assert isinstance(results["agree"], bool)
    assert results["q_pi_verdict"]["verdict"] in {"valley", "monotone", "non-monotone"}
    header = (tmp_path / "out" / "critic.csv").read_text().splitlines()[0]
    assert header == "t,reward,reward_se,q_pi,q_pi_se,td_error,td_error_se"
    assert (tmp_path / "out" / "critic.png").read_bytes()[:4] == b"\x89PNG"
    assert repr(results["critic"]["q_pi"]["mean"][2]) in (tmp_path / "out" / "critic.html") \
        .read_text()

    assert critic_cli.main([*args, "--no-rollouts", "--chunk-size", "1",
                            "--out", str(tmp_path / "fast")]) == 0
    alone = json.loads((tmp_path / "fast" / "critic.json").read_text())
    assert alone["reward"] is None and alone["agree"] is None
    np.testing.assert_allclose(alone["critic"]["q_pi"]["mean"], results["critic"]["q_pi"]["mean"],
                               rtol=1e-6)


def test_plane_values_on_its_axes_are_the_lines_and_the_plane_command(tmp_path, capsys):
    t0, t1, t2 = (load_checkpoint(sac_checkpoint(tmp_path / f"t{k}", seed=k)) for k in range(3))
    torch.manual_seed(3)
    sample = dataset_sample(t0, str(write_demonstrations(tmp_path / "d.npy")), 10, seed=0)
    batch = agent_batch(t0.policy, sample, t0.metadata)
    coords = np.array([[0.0, 0.0], [0.5, 0.0], [1.25, 0.0], [0.0, 0.5], [0.0, -0.25]])
    plane = plane_values((t0, t1, t2), coords, batch, chunk_size=2)
    along_x = line_values((t0, t1), np.array([0.0, 0.5, 1.25]), batch, chunk_size=4)
    along_y = line_values((t0, t2), np.array([0.5, -0.25]), batch, chunk_size=4)
    for name in plane:
        np.testing.assert_allclose(plane[name][:3], along_x[name], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(plane[name][3:], along_y[name], rtol=1e-5, atol=1e-6)

    out = tmp_path / "out"
    assert critic_cli.main([str(tmp_path / f"t{k}") for k in range(3)] + [
        "--dataset", str(tmp_path / "d.npy"), "--x-points", "3", "--y-points", "2",
        "--out", str(out)]) == 0
    results = json.loads((out / "critic.json").read_text())
    assert np.array(results["critic"]["q_pi"]["mean"]).shape == (2, 3)
    for name in ("q_pi", "td_error"):
        assert (out / f"critic_{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / f"critic_{name}.html").stat().st_size > 0
    assert len((out / "critic.csv").read_text().splitlines()) == 1 + 6
