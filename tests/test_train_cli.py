"""``python -m smac_core.train``: flags, bad input, offline -> online end to end."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from smac_core.checkpoint import load_tensors, load_train_state
from smac_core.rundir import read_metrics
from smac_core.runs import Trainer
from smac_core.train import build_parser, main

SMALL = ["--set", "actor_hidden=[32,32]", "--set", "critic_hidden=[32,32]",
         "--set", "batch_size=32"]
ONLINE = ["online", "--algo", "sac", "--env", "Pendulum-v1", "--steps", "50",
          "--start-steps", "10", "--eval-episodes", "1", *SMALL]


def test_help_documents_every_flag_and_show_config_lists_the_defaults(capsys):
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "phase").choices
    for phase, sub in subparsers.items():
        with pytest.raises(SystemExit):
            main([phase, "--help"])
        text = capsys.readouterr().out
        for action in sub._actions:
            assert action.help, (phase, action.dest)
            for flag in action.option_strings:
                assert flag in text, (phase, flag)
        assert f"python -m smac_core.train {phase} --algo" in " ".join(text.split())
    # no --out, no --env: --show-config needs only --algo, and trains nothing
    assert main(["online", "--algo", "sac", "--show-config"]) == 0
    text = capsys.readouterr().out
    assert "  actor_hidden=[256,256]\n" in text and "  utd=1\n" in text
    assert main(["offline", "--algo", "smac", "--dataset", "door-binary", "--show-config",
                 "--set", "utd=4", "--set", 'score_model={"steps": 2000}']) == 0
    text = capsys.readouterr().out
    assert "with the --set values" in text and "  utd=4\n" in text
    assert "    steps=2000\n" in text and "    eval_every=1000\n" in text  # score model
    assert main(["offline", "--algo", "smac", "--show-config", "--set", "nope=1"]) == 2
    assert "unknown SMACConfig option(s) ['nope']" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--steps", "-5"], "--steps must be a positive integer; got -5"),
    (["--eval-every", "0"], "--eval-every must be a positive integer"),
    (["--threads", "0"], "--threads must be a positive integer"),
    (["--start-steps", "-1"], "--start-steps must be >= 0"),
    (["--mix", "1.5"], "--mix must be in [0, 1]; got 1.5"),
    (["--set", "utd"], "--set expects KEY=VALUE; got 'utd'"),
    (["--set", "learning_rate=3"], "unknown SACConfig option(s) ['learning_rate']"),
    (["--set", "utd=0"], "utd must be >= 1"),
    (["--env", "NoSuchEnv-v0"], "unknown env 'NoSuchEnv-v0'"),
    (["--from", "/no/such/run"], "no such checkpoint or run directory"),
])
def test_bad_input_is_a_clear_error(tmp_path, capsys, args, message):
    assert main([*ONLINE, "--out", str(tmp_path / "run"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_algorithm_and_missing_env_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["online", "--algo", "ppo", "--env", "Pendulum-v1", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "invalid choice: 'ppo'" in capsys.readouterr().err
    assert main(["online", "--algo", "sac", "--out", str(tmp_path / "run")]) == 2
    assert "online runs need --env" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a CPU-only machine")
def test_cuda_without_a_gpu_is_refused(tmp_path, capsys):
    assert main([*ONLINE, "--out", str(tmp_path / "run"), "--device", "cuda"]) == 2
    assert "no CUDA device is available" in capsys.readouterr().err


def test_offline_then_online_end_to_end(tmp_path, pendulum_dataset):
    offline = tmp_path / "offline"
    assert main(["offline", "--algo", "td3bc", "--dataset", pendulum_dataset, "--steps", "200",
                 "--eval-every", "100", "--eval-episodes", "2", "--out", str(offline),
                 *SMALL]) == 0
    config = json.loads((offline / "config.json").read_text())
    assert (config["env"], config["dataset_id"], config["obs_normalization"]) == (
        "Pendulum-v1", pendulum_dataset, True)
    offline_evals = [r for r in read_metrics(offline) if "eval_returns" in r]
    assert [r["step"] for r in offline_evals] == [100, 200]
    assert all(r["phase"] == "offline" for r in offline_evals)
    _, offline_meta = load_tensors(offline)
    assert offline_meta["obs_std"] != [1.0, 1.0, 1.0]  # normalised by the dataset

    online = tmp_path / "online"
    assert main(["online", "--algo", "sac", "--from", str(offline), "--steps", "100",
                 "--mix", "0.5", "--eval-every", "100", "--early-eval-every", "50",
                 "--eval-episodes", "2", "--out", str(online), *SMALL]) == 0
    config = json.loads((online / "config.json").read_text())
    assert (config["from"], config["from_algorithm"], config["mix"]) == (str(offline), "td3bc",
                                                                        0.5)
    assert config["start_steps"] == 0
    online_evals = [r for r in read_metrics(online) if "eval_returns" in r]
    assert [r["step"] for r in online_evals] == [0, 50, 100]
    # step 0 evaluates the handed-over policy: the same episodes as the offline final evaluation
    assert online_evals[0]["eval_returns"] == offline_evals[-1]["eval_returns"]
    _, meta = load_tensors(online)
    assert (meta["from_checkpoint"], meta["from_algorithm"]) == (str(offline), "td3bc")
    assert (meta["obs_mean"], meta["obs_std"], meta["dataset_id"]) == (
        offline_meta["obs_mean"], offline_meta["obs_std"], pendulum_dataset)


def run_stopped_and_resumed(args: list[str], out: Path, stop_step: int,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``args`` into ``out``, interrupted by SIGINT after ``stop_step`` steps, then resume."""
    one_step = Trainer._one_step

    def one_step_then_signal(self: Trainer) -> None:
        one_step(self)
        if self.step == stop_step:
            signal.raise_signal(signal.SIGINT)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_one_step", one_step_then_signal)
        assert main([*args, "--out", str(out)]) == 128 + signal.SIGINT
    assert main([*args, "--out", str(out), "--resume"]) == 0


def test_offline_resume_is_bit_identical(tmp_path, pendulum_dataset, monkeypatch):
    args = ["offline", "--algo", "td3bc", "--dataset", pendulum_dataset, "--steps", "120",
            "--eval-every", "60", "--eval-episodes", "1", *SMALL]
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0
    run_stopped_and_resumed(args, tmp_path / "resumed", 45, monkeypatch)
    expected, _ = load_tensors(tmp_path / "straight")
    resumed, _ = load_tensors(tmp_path / "resumed")
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name


def test_iql_actor_lr_anneals_over_the_run_and_resumes_exactly(tmp_path, pendulum_dataset,
                                                                monkeypatch):
    args = ["offline", "--algo", "iql", "--dataset", pendulum_dataset, "--steps", "8",
            "--eval-every", "8", "--eval-episodes", "1", "--checkpoint-every", "4", *SMALL]
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0

    def actor_lr(checkpoint: Path) -> float:
        return load_train_state(checkpoint)["agent"]["optimizers"]["actor"]["param_groups"][0]["lr"]

    # after k of the run's 8 updates the actor lr is 3e-4 (1 + cos(pi k / 8)) / 2 (CORL's
    # CosineAnnealingLR over the run): half way at k = 4, 0 at the end
    checkpoints = tmp_path / "straight" / "checkpoints"
    assert actor_lr(checkpoints / "step_4") == pytest.approx(1.5e-4)
    assert actor_lr(checkpoints / "final") == pytest.approx(0.0, abs=1e-12)
    run_stopped_and_resumed(args, tmp_path / "resumed", 3, monkeypatch)
    expected, _ = load_tensors(tmp_path / "straight")
    resumed, _ = load_tensors(tmp_path / "resumed")
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name
    assert actor_lr(tmp_path / "resumed" / "checkpoints" / "final") == pytest.approx(0.0, abs=1e-12)


OFFLINE_ALGOS = ("smac", "calql", "cql", "iql", "td3bc")
ONLINE_ALGOS = ("sac", "td3", "td3bc", "awr")


@pytest.mark.slow
def test_every_offline_algorithm_runs_and_hands_over_to_every_online_algorithm(
        tmp_path, pendulum_dataset):
    for offline_algo in OFFLINE_ALGOS:
        offline = tmp_path / offline_algo
        tiny_score_model = (["--set", 'score_model={"steps": 5, "hidden_dim": 16}']
                            if offline_algo == "smac" else [])
        assert main(["offline", "--algo", offline_algo, "--dataset", pendulum_dataset,
                     "--steps", "6", "--eval-every", "6", "--eval-episodes", "1",
                     "--out", str(offline), *SMALL, *tiny_score_model]) == 0, offline_algo
        offline_final = [r for r in read_metrics(offline) if "eval_returns" in r][-1]
        for online_algo in ONLINE_ALGOS:
            online = tmp_path / f"{offline_algo}-{online_algo}"
            assert main(["online", "--algo", online_algo, "--from", str(offline), "--steps", "4",
                         "--eval-every", "4", "--early-eval-every", "4", "--eval-episodes", "1",
                         "--out", str(online), *SMALL]) == 0, (offline_algo, online_algo)
            evals = [r for r in read_metrics(online) if "eval_returns" in r]
            # step 0 is the handed-over policy: the same episode as the offline final evaluation
            assert evals[0]["step"] == 0
            assert evals[0]["eval_returns"] == offline_final["eval_returns"], \
                (offline_algo, online_algo)
            assert (online / "checkpoints" / "final" / "model.safetensors").is_file()
