"""The shared training loop: learning on Pendulum, exact resume, signals, checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from smac_core.checkpoint import (
    TRAIN_STATE_FILE,
    WEIGHTS_FILE,
    checkpoint_series,
    load_checkpoint,
    load_tensors,
    load_train_state,
)
from smac_core.data.normalization import ActionScaler
from smac_core.rundir import RunSpec, eval_steps, read_metrics
from smac_core.runs import Trainer
from smac_core.train import main

SMALL_NETS = ["--set", "actor_hidden=[32,32]", "--set", "critic_hidden=[32,32]",
              "--set", "batch_size=32"]


def online_args(out: Path, algo: str = "sac", steps: int = 400, *extra: str) -> list[str]:
    return ["online", "--algo", algo, "--env", "Pendulum-v1", "--steps", str(steps),
            "--start-steps", "100", "--eval-every", "200", "--early-eval-every", "200",
            "--eval-episodes", "2", "--checkpoint-every", "10000", "--log-every", "100",
            "--out", str(out), *SMALL_NETS, *extra]


def stop_at(monkeypatch: pytest.MonkeyPatch, stop_step: int) -> None:
    """Make the loop receive a SIGTERM right after step ``stop_step``."""
    one_step = Trainer._one_step

    def one_step_then_signal(self: Trainer) -> None:
        one_step(self)
        if self.step == stop_step:
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(Trainer, "_one_step", one_step_then_signal)


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_stopped_and_resumed_run_is_bit_identical(tmp_path, monkeypatch, algo):
    assert main(online_args(tmp_path / "straight", algo)) == 0

    interrupted = tmp_path / "interrupted"
    with monkeypatch.context() as patch:
        # step 233: mid-episode (Pendulum episodes are 200 steps), after learning started
        stop_at(patch, 233)
        assert main(online_args(interrupted, algo)) == 128 + signal.SIGTERM
    assert [step for step, _ in checkpoint_series(interrupted)] == [233]
    assert not (interrupted / "checkpoints" / "final").exists()
    assert main([*online_args(interrupted, algo), "--resume"]) == 0

    expected, _ = load_tensors(tmp_path / "straight")
    resumed, meta = load_tensors(interrupted)
    assert meta["step"] == 400
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name
    straight_state = load_train_state(tmp_path / "straight")
    resumed_state = load_train_state(interrupted)
    for key in ("observations", "actions", "rewards"):
        assert torch.equal(straight_state["online_buffer"][key],
                           resumed_state["online_buffer"][key])
    evals = [[r["eval_returns"] for r in read_metrics(d) if "eval_returns" in r]
             for d in (tmp_path / "straight", interrupted)]
    assert evals[0] == evals[1] and len(evals[0]) == 3  # steps 0, 200, 400


def test_sigterm_leaves_a_valid_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "smac_core.train",
                             *online_args(out, "sac", 1_000_000)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists() or len(read_metrics(out)) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run did not start logging within 2 minutes"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "--resume" in stderr
    [(step, path)] = checkpoint_series(out)
    assert step >= 100  # the training row of step 100 was logged before the signal
    ckpt = load_checkpoint(out)
    assert ckpt.path == path and ckpt.metadata["step"] == step
    state = load_train_state(out)
    assert state["step"] == step and state["online_buffer"]["size"] == step


def test_checkpoint_round_trip_gives_the_trained_policy(tmp_path):
    out = tmp_path / "run"
    assert main(online_args(out, "sac", 300)) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.path == out / "checkpoints" / "final"
    meta = ckpt.metadata
    for key in ("algorithm", "phase", "config", "step", "env", "dataset_id", "obs_dim",
                "act_dim", "actor_hidden", "obs_mean", "obs_std", "action_low", "action_high",
                "seed", "from_checkpoint", "from_algorithm"):
        assert key in meta, key
    assert (meta["algorithm"], meta["env"], meta["step"]) == ("sac", "Pendulum-v1", 300)
    # the policy module acts like the checkpointed actor: mean action, mapped to [-2, 2]
    from smac_core.algos import make_agent

    agent = make_agent("sac", 3, 1, meta["config"])
    agent.load_networks(ckpt.tensors)
    obs = torch.randn(16, 3)
    expected = 2.0 * agent.act(obs, deterministic=True)
    torch.testing.assert_close(ckpt.policy(obs), expected, rtol=0, atol=1e-6)
    # the last evaluation in metrics.jsonl is reproduced by rolling out the loaded policy
    env = ckpt.make_env()
    from smac_core.rollout import eval_episode_seed

    obs_np, _ = env.reset(seed=eval_episode_seed(0, 0))
    total, done = 0.0, False
    while not done:
        with torch.no_grad():
            action = ckpt.policy(torch.as_tensor(obs_np[None], dtype=torch.float32))[0]
        obs_np, reward, terminated, truncated, _ = env.step(action.numpy())
        total += float(reward)
        done = terminated or truncated
    last_eval = [r for r in read_metrics(out) if "eval_returns" in r][-1]
    assert last_eval["step"] == 300
    assert total == pytest.approx(last_eval["eval_returns"][0], rel=1e-4)


def test_resume_refuses_a_corrupted_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        stop_at(patch, 150)
        main(online_args(out))
    [(_, ckpt)] = checkpoint_series(out)
    weights = ckpt / WEIGHTS_FILE
    original = weights.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0xFF
    weights.write_bytes(bytes(flipped))
    capsys.readouterr()
    assert main([*online_args(out), "--resume"]) == 2
    assert "corrupted" in capsys.readouterr().err

    weights.write_bytes(original)
    state = ckpt / TRAIN_STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    assert main([*online_args(out), "--resume"]) == 2
    assert "train_state.pt" in capsys.readouterr().err


def test_resume_refuses_another_algorithm_or_env(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        stop_at(patch, 150)
        main(online_args(out))
    capsys.readouterr()
    assert main([*online_args(out, "td3"), "--resume"]) == 2
    assert "algorithm is 'sac'" in capsys.readouterr().err
    args = online_args(out)
    args[args.index("Pendulum-v1")] = "MountainCarContinuous-v0"
    assert main([*args, "--resume"]) == 2
    assert "env is 'Pendulum-v1'" in capsys.readouterr().err
    # without --resume an existing run is never overwritten
    assert main(online_args(out)) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_online_evaluation_schedule_is_dense_early():
    spec = RunSpec(phase="online", algorithm="sac", agent_config={}, env="Pendulum-v1",
                   dataset_id=None, seed=0, steps=20_000, eval_every=5_000,
                   early_eval_every=1_000, early_eval_until=3_000)
    assert sorted(eval_steps(spec)) == [0, 1000, 2000, 3000, 5000, 10000, 15000, 20000]
    offline = RunSpec(phase="offline", algorithm="iql", agent_config={}, env="Pendulum-v1",
                      dataset_id="d", seed=0, steps=2_500, eval_every=1_000)
    assert sorted(eval_steps(offline)) == [1000, 2000, 2500]


def test_action_scaler_maps_the_box_onto_minus_one_one():
    scaler = ActionScaler(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
    np.testing.assert_allclose(scaler.to_env(np.array([-1.0, 1.0])), [-2.0, 1.0])
    np.testing.assert_allclose(scaler.to_agent(np.array([1.0, 0.5])), [0.5, 0.0])
    np.testing.assert_allclose(scaler.to_agent(np.array([3.0, -1.0])), [1.0, -1.0])  # clipped


# ---------------------------------------------------------------------------------------- learning
# env steps per algorithm: 1,000 uniform random steps, then one update per step
LEARNING_STEPS = {"sac": 5_000, "td3": 8_000}


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_learns_pendulum(tmp_path, algo):
    """SAC and TD3 swing Pendulum-v1 up: the final 10-episode mean return exceeds -300.

    Random actions score about -1200 per episode and a solved policy about -150; a policy that
    does not swing the pendulum up stays below about -700. Nets 64x64, batch 128, learning
    rates 1e-3 (CleanRL's critic rate; with 3e-4 SAC was still at -480 after 5,000 steps).
    Scratch runs of exactly this configuration (seeds 0, 1, 2) ended at SAC -174, -167, -110
    and TD3 -192, -161, -118, so -300 leaves a margin of over 100 to the worst seed, while a
    policy that has not learnt the swing-up cannot pass. About 40 s (SAC) and 25 s (TD3) on
    one core.
    """
    out = tmp_path / "run"
    steps = LEARNING_STEPS[algo]
    assert main(["online", "--algo", algo, "--env", "Pendulum-v1", "--steps", str(steps),
                 "--start-steps", "1000", "--eval-every", str(steps), "--early-eval-until", "0",
                 "--eval-episodes", "10", "--out", str(out),
                 "--set", "actor_hidden=[64,64]", "--set", "critic_hidden=[64,64]",
                 "--set", "batch_size=128", "--set", "actor_lr=1e-3",
                 "--set", "critic_lr=1e-3"]) == 0
    final = [r for r in read_metrics(out) if "eval_return" in r][-1]
    assert final["step"] == steps
    assert final["eval_return"] > -300, json.dumps(final)
