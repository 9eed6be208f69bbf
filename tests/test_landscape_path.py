"""``landscape.path``: learned curves with fixed ends, against known answers.

- a 2-D toy whose reward has a valley on the straight line and a monotone detour (a ring): the
  learned curve must find the detour;
- the analytic env with its exact, differentiable return as the surrogate: the learned curve's
  rollouts earn more than the line's, batched and one point at a time alike;
- the command end to end on tiny SAC checkpoints (critic surrogate, dataset file): outputs, the
  ends of the curve are the checkpoints, and an interrupted run resumes to identical results.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from analytic_env import ACT_DIM, HORIZON, OBS_DIM, OBSERVATIONS, TARGETS, register_analytic_env
from test_landscape_cli import FAST, analytic_at

import landscape.evaluate
import landscape.grid
import landscape.path
from landscape.critic import checkpoint_critic
from landscape.grid import EvalSettings
from landscape.interpolate import evaluate_pair
from landscape.params import param_spec, policy_vector, unflatten_params
from landscape.path import (
    critic_surrogate,
    curve_points,
    evaluate_curve,
    initial_bends,
    learn_curve,
)
from landscape.paths import interpolate_linear
from landscape.valley import valley_verdict
from smac_core.algos import make_agent
from smac_core.checkpoint import load_checkpoint, save_checkpoint
from smac_core.errors import SmacError
from smac_core.rollout import batched_policy

TS = np.linspace(0.0, 1.0, 21)
# the ring toy: A and B on the unit circle at 150 and 30 degrees; the reward is the progress of
# the polar angle towards B (flat beyond it) minus a penalty for leaving the band 0.85 <= r <= 1.15
ANGLE_A, ANGLE_B = 5 * math.pi / 6, math.pi / 6
RING_A = torch.tensor([math.cos(ANGLE_A), math.sin(ANGLE_A)])
RING_B = torch.tensor([math.cos(ANGLE_B), math.sin(ANGLE_B)])


def ring_reward(theta: torch.Tensor) -> torch.Tensor:
    """(P, 2) -> (P,): -(phi - 30 deg)_+ - 20 (| r - 1 | - 0.15)_+^2."""
    radius, angle = theta.norm(dim=1), torch.atan2(theta[:, 1], theta[:, 0])
    return -(angle - ANGLE_B).clamp(min=0) - 20 * ((radius - 1).abs() - 0.15).clamp(min=0) ** 2


@pytest.mark.parametrize(("kind", "bends"), [("bezier", 2), ("polychain", 3)])
def test_learned_curve_finds_the_monotone_detour_around_the_valley(kind, bends):
    se = np.full(len(TS), 0.01)  # a small noise level, so that rounding cannot decide a verdict
    with torch.no_grad():
        line = ring_reward(interpolate_linear(RING_A, RING_B, TS)).numpy()
    line_verdict = valley_verdict(TS, line, se)
    assert line_verdict.verdict == "valley" and line_verdict.depth > 1.0  # the chord cuts r = 0.5

    start = initial_bends(RING_A, RING_B, bends)  # the untrained curve is the straight line
    torch.testing.assert_close(curve_points(kind, RING_A, RING_B, start, TS),
                               interpolate_linear(RING_A, RING_B, TS))
    learned, objective = learn_curve(RING_A, RING_B, ring_reward, kind, bends, steps=100,
                                     lr=0.02, t_samples=8, seed=0)
    with torch.no_grad():
        points = curve_points(kind, RING_A, RING_B, learned, TS)
        reward = ring_reward(points).numpy()
    torch.testing.assert_close(points[[0, -1]], torch.stack([RING_A, RING_B]))  # fixed ends
    assert valley_verdict(TS, reward, se).verdict == "monotone"
    assert reward.min() >= reward[0] - 0.05  # never below A, where the line fell 1.5 below
    assert reward.mean() > line.mean() + 1.0
    assert objective[-10:].mean() > objective[:10].mean() + 1.0
    assert points.norm(dim=1).min() > 0.7  # away from the centre; the line passes r = 0.5


def analytic_surrogate(template):
    """The analytic env's exact return R(theta) = -sum_t ||pi_theta(o_t) - target_t||^2,
    differentiable: (P, D) -> (P,)."""
    act, spec = batched_policy(template), param_spec(template)
    observations, targets = torch.as_tensor(OBSERVATIONS), torch.as_tensor(TARGETS).float()

    def surrogate(vectors: torch.Tensor) -> torch.Tensor:
        actions = act(unflatten_params(vectors, spec), observations.expand(len(vectors), -1, -1))
        return -((actions - targets) ** 2).sum(dim=(1, 2))

    return surrogate


def sac_checkpoint(path, seed: int, dataset_id: str | None = None):
    """A SAC checkpoint (actor and critic, 8x8 layers) on the analytic env."""
    env = register_analytic_env()
    torch.manual_seed(seed)
    config = {"actor_hidden": [8, 8], "critic_hidden": [8, 8]}
    agent = make_agent("sac", OBS_DIM, ACT_DIM, config)
    with torch.no_grad():  # larger weights than the init, so returns vary between points
        for p in agent.networks["actor"].parameters():
            p.mul_(3.0)
    metadata = {"algorithm": "sac", "phase": "offline", "config": config, "step": 0, "env": env,
                "dataset_id": dataset_id, "obs_dim": OBS_DIM, "act_dim": ACT_DIM,
                "actor_hidden": [8, 8], "obs_mean": [0.0] * OBS_DIM, "obs_std": [1.0] * OBS_DIM,
                "action_low": [-1.0] * ACT_DIM, "action_high": [1.0] * ACT_DIM, "seed": seed}
    return save_checkpoint(path, {"actor": agent.networks["actor"],
                                  "critic": agent.networks["critic"]}, metadata)


def test_exact_surrogate_curve_beats_the_line_in_rollouts_batched_or_not(tmp_path):
    a = load_checkpoint(sac_checkpoint(tmp_path / "a", seed=0))
    b = load_checkpoint(sac_checkpoint(tmp_path / "b", seed=1))
    (theta_a, _), (theta_b, _) = policy_vector(a), policy_vector(b)
    surrogate = analytic_surrogate(a.policy)
    bends, _ = learn_curve(theta_a, theta_b, surrogate, "bezier", 1, steps=60, lr=0.02,
                           t_samples=4, seed=0)
    ts = np.linspace(0.0, 1.0, 6)
    points = curve_points("bezier", theta_a, theta_b, bends, ts)
    for k, t in enumerate(ts):  # a point is the same vector whatever chunk it is built in
        assert torch.equal(curve_points("bezier", theta_a, theta_b, bends, [t])[0], points[k])
    settings = EvalSettings(episodes=2, seed=0, max_episode_steps=HORIZON, workers=0,
                            chunk_size=6)
    line = evaluate_pair(a, b, ts, "line", settings, tmp_path / "line")
    curve = evaluate_curve((a, b), "bezier", bends, ts, "curve", settings, tmp_path / "curve")
    # rollouts give the analytic return: at the ends the checkpoints', inside the curve's own
    expected = [analytic_at(a.path, point) for point in points]
    np.testing.assert_allclose(curve.curve.mean, expected, rtol=1e-5)
    np.testing.assert_array_equal(curve.curve.mean[[0, -1]], line.curve.mean[[0, -1]])
    assert curve.curve.mean[1:-1].mean() > line.curve.mean[1:-1].mean() + 0.1
    with torch.no_grad():
        np.testing.assert_allclose(surrogate(points).numpy(), expected, rtol=1e-4)

    one_at_a_time = evaluate_curve((a, b), "bezier", bends, ts, "curve",
                                   EvalSettings(episodes=2, seed=0, max_episode_steps=HORIZON,
                                                workers=0, chunk_size=1), tmp_path / "single")
    np.testing.assert_array_equal(one_at_a_time.result.returns, curve.result.returns)


def test_critic_surrogate_is_the_mean_q_of_the_policy_actions_batched_or_not(tmp_path):
    a = load_checkpoint(sac_checkpoint(tmp_path / "a", seed=0))
    critic, _ = checkpoint_critic(a)
    states = torch.randn(7, OBS_DIM)
    theta_a, _ = policy_vector(a)
    vectors = theta_a + 0.1 * torch.randn(5, theta_a.numel())
    surrogate = critic_surrogate(a.policy, critic, states)
    batched = surrogate(vectors)
    single = torch.cat([surrogate(v[None]) for v in vectors])
    torch.testing.assert_close(batched, single)
    with torch.no_grad():  # by hand, for the checkpoint's own policy (actions already in [-1, 1])
        expected = critic(states, a.policy(states)).mean()
    torch.testing.assert_close(surrogate(theta_a[None])[0], expected)
    vectors.requires_grad_(True)
    surrogate(vectors).sum().backward()
    assert vectors.grad.abs().sum() > 0


def write_demonstrations(path):
    """An AWAC-style .npy file of two episodes of the analytic env's observations."""
    episode = {"observations": OBSERVATIONS, "next_observations": np.roll(OBSERVATIONS, -1, 0),
               "actions": np.zeros((HORIZON, ACT_DIM), np.float32),
               "rewards": np.zeros(HORIZON, np.float32), "terminals": np.zeros(HORIZON, bool)}
    np.save(path, np.array([episode, episode], dtype=object), allow_pickle=True)
    return path


def test_path_command_end_to_end_interrupted_and_resumed(tmp_path, monkeypatch, capsys):
    a, b = sac_checkpoint(tmp_path / "a", seed=0), sac_checkpoint(tmp_path / "b", seed=1)
    data = write_demonstrations(tmp_path / "demos.npy")
    args = [str(a), str(b), "--dataset", str(data), "--steps", "20", "--lr", "0.01",
            "--t-samples", "2", "--points", "5", "--episodes", "2", "--chunk-size", "2", *FAST]
    assert landscape.path.main([*args, "--out", str(tmp_path / "whole")]) == 0
    printed = capsys.readouterr().out
    assert "== straight line:" in printed and "== learned bezier:" in printed
    whole = json.loads((tmp_path / "whole" / "path.json").read_text())
    assert whole["command"] == "path" and whole["training"]["critic"] == "b"
    assert whole["training"]["states"] == 2 * HORIZON and len(whole["training"]["objective"]) == 20
    line, curve = whole["curves"]
    assert line["t"] == curve["t"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve["mean"][0] == line["mean"][0] and curve["mean"][-1] == line["mean"][-1]
    assert curve["verdict"]["verdict"] in {"valley", "monotone", "non-monotone"}
    assert curve["surrogate"][0] == pytest.approx(line["surrogate"][0], rel=1e-5)
    for name in ("path.csv", "path.html", "curve.pt"):
        assert (tmp_path / "whole" / name).stat().st_size > 0
    assert (tmp_path / "whole" / "path.png").read_bytes()[:4] == b"\x89PNG"

    # interrupted during the curve's rollouts; the rerun neither retrains nor re-evaluates
    real = landscape.evaluate.evaluate_vectors
    calls = {"n": 0, "vectors": 0}

    def killed_at_the_fourth_chunk(template, vectors, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 4:  # chunks 1-3 the line's (5 points), 4 the curve's first
            raise KeyboardInterrupt
        calls["vectors"] += len(vectors)
        return real(template, vectors, *a, **kw)

    # grid.py binds evaluate_vectors at import or looks it up in landscape.evaluate per call
    monkeypatch.setattr(landscape.grid, "evaluate_vectors", killed_at_the_fourth_chunk,
                        raising=False)
    monkeypatch.setattr(landscape.evaluate, "evaluate_vectors", killed_at_the_fourth_chunk)
    cut = [*args, "--out", str(tmp_path / "cut")]
    assert landscape.path.main(cut) == 2
    assert "interrupted: 0 of 5 points are saved" in capsys.readouterr().err
    calls["vectors"] = 0

    def no_training(*a, **kw):
        raise AssertionError("the saved curve is retrained")

    monkeypatch.setattr(landscape.path, "learn_curve", no_training)
    assert landscape.path.main(cut) == 0
    assert calls["vectors"] == 5  # the curve's points only
    resumed = json.loads((tmp_path / "cut" / "path.json").read_text())
    assert resumed == whole

    # other training settings in the same directory are refused, not mixed
    assert landscape.path.main([*cut, "--bends", "2"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_path_refuses_bad_settings_and_a_checkpoint_without_dataset(tmp_path, capsys):
    a, b = sac_checkpoint(tmp_path / "a", seed=0), sac_checkpoint(tmp_path / "b", seed=1)
    for extra in (["--bends", "0"], ["--lr", "nan"], ["--t-samples", "0"], ["--points", "2"]):
        assert landscape.path.main([str(a), str(b), *extra, "--out", str(tmp_path / "o")]) == 2
    assert landscape.path.main([str(a), str(b), "--out", str(tmp_path / "o")]) == 2
    assert "records no dataset_id; pass --dataset" in capsys.readouterr().err
    with pytest.raises(SmacError, match="must be one of"):
        learn_curve(RING_A, RING_B, ring_reward, "spline", 1, 1, 0.1, 1, 0)
