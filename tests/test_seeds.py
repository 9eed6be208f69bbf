"""Seed-stacked training (``smac_core.seeds``, ``--seeds``): every seed of a stacked run computes
what its single-seed run computes.

The tolerance: in float64 a stacked update equals the seed's own update to rounding (1e-10
relative after 20 updates). In float32 the batched and single GEMMs round differently, and
AdamW turns a rounding-level difference of a near-zero gradient into a difference of up to
``lr`` in that weight, so two runs drift apart slowly: after 200 updates of a whole training run
every weight agrees within 1e-5 and every evaluation return within 1e-4 relative.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from smac_core.algos import ALGORITHMS, make_agent
from smac_core.algos.base import Agent, AgentConfig
from smac_core.checkpoint import checkpoint_series, load_tensors
from smac_core.data.buffers import Batch, ChunkBatch
from smac_core.errors import SmacError
from smac_core.runconfig import RunConfig
from smac_core.rundir import read_metrics
from smac_core.runs import Trainer
from smac_core.seeds import STACKABLE, SeedStack
from smac_core.train import main

OBS_DIM, ACT_DIM = 11, 3
SMALL_NETS = {"actor_hidden": [64, 64], "critic_hidden": [64, 64], "batch_size": 64}
SMALL = ["--set", "actor_hidden=[32,32]", "--set", "critic_hidden=[32,32]",
         "--set", "batch_size=32"]


def _batch(generator: torch.Generator, size: int, horizon: int = 1) -> Batch | ChunkBatch:
    """Random transitions, or chunks of ``horizon`` > 1 transitions."""
    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    kind = Batch if horizon == 1 else ChunkBatch
    rewards = randn(size) if horizon == 1 else randn(size, horizon)
    return kind(randn(size, OBS_DIM),
                torch.rand(size, ACT_DIM * horizon, generator=generator) * 2 - 1, rewards,
                randn(size, OBS_DIM), (torch.rand(size, generator=generator) < 0.1).float(),
                randn(size))


def _analytic_score(obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """A stand-in for SMAC's dataset score: (B, obs_dim), (B, act_dim) -> (B, act_dim)."""
    return -actions * obs[:, :ACT_DIM].tanh()


@pytest.mark.parametrize(("algo", "overrides"), [
    ("sac", {}), ("sac", {"utd": 2}), ("sac", {"optimizer": "muon"}),
    ("smac", {}), ("smac", {"optimizer": "adam", "alpha_psi_mode": "learned"}),
    ("calql", {"num_sampled_actions": 4}),
    ("cql", {"num_sampled_actions": 4, "max_target_backup": False}),
    ("iql", {"actor_lr_cosine_steps": 12}), ("td3", {}), ("td3bc", {"optimizer": "muon"}),
    ("awr", {}), ("qam", {"grad_clip": 0.05}), ("trqam", {"horizon": 2, "epsilon": 0.01})],
    ids=["sac-adam", "sac-utd2", "sac-muon", "smac-muon", "smac-learned-adam", "calql", "cql",
         "iql-annealed", "td3", "td3bc-muon", "awr", "qam-clipped", "trqam-chunks"])
def test_stacked_updates_equal_each_seeds_own_updates(algo, overrides):
    """Three seeds stacked and the same three seeds alone, on the same batches and random
    streams, in float64: after 20 updates every weight, optimizer state entry and metric
    agrees to rounding. (SMAC's stacked critic loss takes the critic's action-gradient by
    batched torch ops, the seeds alone by the fused kernel: the test covers both.)"""
    torch.set_default_dtype(torch.float64)
    try:
        stacked_agents, alone, rng_stacked, rng_alone = [], [], [], []
        for seed in range(3):
            for agents, states in ((stacked_agents, rng_stacked), (alone, rng_alone)):
                torch.manual_seed(seed)
                agents.append(make_agent(algo, OBS_DIM, ACT_DIM, {**SMALL_NETS, **overrides},
                                         "cpu"))
                if algo == "smac":
                    agents[-1].dataset_score = _analytic_score
                states.append(torch.get_rng_state())
        stack = SeedStack(stacked_agents, rng_stacked)
        generators = [torch.Generator().manual_seed(10 + seed) for seed in range(3)]
        for _ in range(20):
            batches = [_batch(g, alone[0].update_batch_size, overrides.get("horizon", 1))
                       for g in generators]
            stacked_metrics = stack.update(batches)
            for seed, agent in enumerate(alone):
                torch.set_rng_state(rng_alone[seed])
                metrics = agent.update(batches[seed])
                rng_alone[seed] = torch.get_rng_state()
                assert stacked_metrics[seed] == pytest.approx(metrics, rel=1e-10, abs=1e-12)
        for seed, agent in enumerate(alone):
            for name, module in agent.networks.items():
                mine = dict(stacked_agents[seed].networks[name].named_parameters())
                for key, value in module.named_parameters():
                    torch.testing.assert_close(mine[key], value, rtol=1e-10, atol=1e-12)
            stack.export_state(seed)
            for name, optimizer in agent.optimizers.items():
                exported = stacked_agents[seed].optimizers[name].state_dict()["state"]
                for i, entries in optimizer.state_dict()["state"].items():
                    for key, value in entries.items():
                        torch.testing.assert_close(exported[i][key], value, rtol=1e-10,
                                                   atol=1e-12)
    finally:
        torch.set_default_dtype(torch.float32)


class _ToyAgent(Agent):
    """An agent whose update is not written for seed-stacking (no gradient_step)."""

    name = "toy"
    phases = frozenset({"offline"})

    def update(self, batch: Batch) -> dict[str, float]:
        return {}


def test_the_stack_refuses_what_it_cannot_stack():
    torch.manual_seed(0)
    toys = [_ToyAgent(OBS_DIM, ACT_DIM, AgentConfig()) for _ in range(2)]
    with pytest.raises(SmacError, match=r"toy cannot be trained seed-stacked.*sac"):
        SeedStack(toys, [torch.get_rng_state()] * 2)
    sacs = [make_agent("sac", OBS_DIM, ACT_DIM, {"utd": utd}, "cpu") for utd in (1, 2)]
    with pytest.raises(SmacError, match="share the algorithm and its config"):
        SeedStack(sacs, [torch.get_rng_state()] * 2)
    same = [make_agent("sac", OBS_DIM, ACT_DIM, {}, "cpu") for _ in range(2)]
    same[1].reward_scale = 10.0
    with pytest.raises(SmacError, match="share reward_scale"):
        SeedStack(same, [torch.get_rng_state()] * 2)
    assert set(STACKABLE) == set(ALGORITHMS)  # every registered algorithm can be stacked


def _sigterm_after(patch: pytest.MonkeyPatch, step: int, seed: int) -> None:
    """A SIGTERM as seed ``seed``'s trainer ends loop step ``step`` (the group stops all its
    seeds at the next step, each with a checkpoint)."""
    end_step = Trainer.end_step

    def end_step_then_signal(self: Trainer, metrics: dict[str, float] | None) -> None:
        end_step(self, metrics)
        if self.step == step and self.spec.seed == seed:
            signal.raise_signal(signal.SIGTERM)

    patch.setattr(Trainer, "end_step", end_step_then_signal)


def _online(out: Path, *extra: str, algo: str = "sac") -> list[str]:
    return ["online", "--algo", algo, "--env", "Pendulum-v1", "--steps", "300",
            "--start-steps", "100", "--eval-every", "150", "--early-eval-every", "1000",
            "--eval-episodes", "2", "--checkpoint-every", "1000", "--log-every", "100",
            "--out", str(out), *SMALL, *extra]


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_a_seeds_run_writes_each_seeds_single_run_directory(tmp_path, algo):
    """``--seeds 0,1`` against ``--seed 0`` and ``--seed 1`` run alone (200 updates each; TD3
    explores with its own noise, drawn on each seed's stream): the same files, the single runs'
    commands, and weights and evaluations within the float32 tolerance of the module
    docstring."""
    assert main(_online(tmp_path / "stacked", "--seeds", "0,1", algo=algo)) == 0
    for seed in (0, 1):
        alone = tmp_path / f"alone{seed}"
        assert main(_online(alone, "--seed", str(seed), algo=algo)) == 0
        stacked = tmp_path / "stacked" / f"seed{seed}"
        config = json.loads((stacked / "config.json").read_text())
        alone_command = json.loads((alone / "config.json").read_text())["command"]
        assert config["command"] == [str(stacked) if word == str(alone) else word
                                     for word in alone_command]
        assert config["seed"] == seed
        expected, expected_meta = load_tensors(alone)
        got, meta = load_tensors(stacked)
        assert expected.keys() == got.keys() and meta["seed"] == seed == expected_meta["seed"]
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-5)
        evals = [[row["eval_return"] for row in read_metrics(run) if "eval_return" in row]
                 for run in (stacked, alone)]
        assert len(evals[0]) == 3 and evals[0] == pytest.approx(evals[1], rel=1e-4)


def test_a_stopped_seeds_run_resumes_exactly(tmp_path, monkeypatch):
    """A SIGTERM arriving during the bookkeeping of step 233 stops every seed at the next step,
    each with a checkpoint; --resume then ends with weights bit-identical to an uninterrupted
    --seeds run."""
    assert main(_online(tmp_path / "straight", "--seeds", "0,1")) == 0
    interrupted = tmp_path / "interrupted"
    with monkeypatch.context() as patch:
        _sigterm_after(patch, step=233, seed=0)
        assert main(_online(interrupted, "--seeds", "0,1")) == 128 + signal.SIGTERM
    for seed in (0, 1):
        assert [s for s, _ in checkpoint_series(interrupted / f"seed{seed}")] == [234]
    assert main([*_online(interrupted, "--seeds", "0,1"), "--resume"]) == 0
    for seed in (0, 1):
        expected, _ = load_tensors(tmp_path / "straight" / f"seed{seed}")
        resumed, meta = load_tensors(interrupted / f"seed{seed}")
        assert meta["step"] == 300
        for name in expected:
            assert torch.equal(expected[name], resumed[name]), (seed, name)


def test_a_seed_of_a_stopped_seeds_run_resumes_alone(tmp_path, monkeypatch):
    """Each seed's run directory is an ordinary one: after a stacked run was stopped, seed 1
    alone continues with the single-seed command (``--seed 1 --out OUT/seed1 --resume``)."""
    with monkeypatch.context() as patch:
        _sigterm_after(patch, step=150, seed=0)
        assert main(_online(tmp_path, "--seeds", "0,1")) == 128 + signal.SIGTERM
    assert main([*_online(tmp_path / "seed1", "--seed", "1"), "--resume"]) == 0
    _, meta = load_tensors(tmp_path / "seed1")
    assert (meta["step"], meta["seed"]) == (300, 1)
    assert not (tmp_path / "seed0" / "checkpoints" / "final").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--seeds", "0,0"], "--seeds lists a seed twice"),
    (["--seeds", "0,-1"], "--seeds must be in"),
])
def test_bad_seed_lists_are_refused_before_anything_is_written(tmp_path, extra, message):
    with pytest.raises(SmacError, match=message):
        main.__wrapped__(_online(tmp_path / "out", *extra))
    assert not (tmp_path / "out").exists()


def test_seeds_needs_a_list_of_numbers(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["online", "--algo", "sac", "--env", "Pendulum-v1", "--out", str(tmp_path / "o"),
              "--seeds", "0,one"])
    assert "--seeds: invalid seed_list value: '0,one'" in capsys.readouterr().err


def test_each_seed_starts_from_its_own_checkpoint_into_its_own_directory():
    config = RunConfig("online", "sac", "runs/sac", from_checkpoint="runs/smac/seed{seed}",
                       seeds=(3, 4))
    assert [(c.seed, str(c.out), c.from_checkpoint, c.seeds)
            for c in map(config.for_seed, (3, 4))] == [
        (3, "runs/sac/seed3", "runs/smac/seed3", None),
        (4, "runs/sac/seed4", "runs/smac/seed4", None)]
    shared = RunConfig("online", "sac", "out", from_checkpoint="runs/smac", seeds=(0, 1))
    assert {shared.for_seed(k).from_checkpoint for k in (0, 1)} == {"runs/smac"}
    nested = RunConfig("online", "sac", "study/seed{seed}/online-sac", seeds=(2,))
    assert nested.for_seed(2).out.as_posix() == "study/seed2/online-sac"


def test_an_offline_smac_seeds_run_agrees_with_its_single_seed_runs(tmp_path, pendulum_dataset):
    """``offline --algo smac --seeds 0,1``: each seed trains its own score model as its single
    run does (same file), then 60 stacked updates agree with the single runs' in every weight."""
    def offline(out: Path, *extra: str) -> list[str]:
        return ["offline", "--algo", "smac", "--dataset", pendulum_dataset, "--steps", "60",
                "--eval-every", "60", "--eval-episodes", "1", "--out", str(out), *SMALL,
                "--set", 'score_model={"steps": 40, "hidden_dim": 32, "num_blocks": 1, '
                         '"eval_every": 20}', *extra]

    assert main(offline(tmp_path / "stacked", "--seeds", "0,1")) == 0
    for seed in (0, 1):
        alone = tmp_path / f"alone{seed}"
        assert main(offline(alone, "--seed", str(seed))) == 0
        stacked = tmp_path / "stacked" / f"seed{seed}"
        for name in ("model.safetensors",):
            assert (stacked / "score_model" / name).read_bytes() == \
                (alone / "score_model" / name).read_bytes()
        expected, _ = load_tensors(alone)
        got, meta = load_tensors(stacked)
        assert meta["seed"] == seed and meta["algorithm"] == "smac"
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-5)


def test_a_bad_seed_writes_no_seed_directory(tmp_path):
    """A seed's missing --from checkpoint, or an earlier run in seed 1's directory, is refused
    before any seed's run directory (seed 0's) is written."""
    with pytest.raises(SmacError, match=r"no such checkpoint or run directory: .*missing/seed1"):
        main.__wrapped__(["online", "--algo", "sac", "--from", str(tmp_path / "missing/seed{seed}"),
                          "--seeds", "1", "--out", str(tmp_path / "a")])
    assert not (tmp_path / "a").exists()
    (tmp_path / "b" / "seed1").mkdir(parents=True)
    (tmp_path / "b" / "seed1" / "config.json").write_text("{}")
    with pytest.raises(SmacError, match=r"seed1 \(seed 1\) already holds a run; pass --resume"):
        main.__wrapped__(_online(tmp_path / "b", "--seeds", "0,1"))
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["seed1"]


@pytest.mark.parametrize("algo", ["iql", "smac"])
def test_a_stopped_offline_seeds_run_resumes_exactly(tmp_path, pendulum_dataset, monkeypatch,
                                                     algo):
    """A stacked run stopped at step 30 of 60 ends bit-identical to an uninterrupted one: IQL
    with the actor learning rate annealed so far, SMAC with Muon's momenta (its score models
    read back from the run directories)."""
    score_model = ["--set", 'score_model={"steps": 40, "hidden_dim": 32, "num_blocks": 1, '
                   '"eval_every": 20}'] if algo == "smac" else []
    args = ["offline", "--algo", algo, "--dataset", pendulum_dataset, "--steps", "60",
            "--eval-every", "60", "--eval-episodes", "1", *SMALL, *score_model,
            "--seeds", "0,1"]
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0
    with monkeypatch.context() as patch:
        _sigterm_after(patch, step=29, seed=1)
        assert main([*args, "--out", str(tmp_path / "resumed")]) == 128 + signal.SIGTERM
    assert main([*args, "--out", str(tmp_path / "resumed"), "--resume"]) == 0
    for seed in (0, 1):
        expected, _ = load_tensors(tmp_path / "straight" / f"seed{seed}")
        resumed, _ = load_tensors(tmp_path / "resumed" / f"seed{seed}")
        for name in expected:
            assert torch.equal(expected[name], resumed[name]), (seed, name)
