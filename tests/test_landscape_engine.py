"""The landscape engine: parameter vectors of checkpoints and batched rollout evaluation."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from analytic_env import (
    HORIZON,
    SUCCESS_RADIUS_SQ,
    TARGETS,
    AnalyticTargetEnv,
    analytic_return,
    analytic_rewards,
    register_analytic_env,
)
from test_flow_evaluation import make_flow

import landscape.evaluate
from landscape.evaluate import (
    EnvPool,
    EvaluationResult,
    _EnvSlice,
    default_workers,
    evaluate_vector_reference,
    evaluate_vectors,
)
from landscape.hopper import HopperBatch
from landscape.params import (
    check_compatible,
    critic_vector,
    flatten_params,
    param_spec,
    policy_vector,
    unflatten_params,
)
from smac_core.checkpoint import load_checkpoint, save_checkpoint
from smac_core.errors import SmacError
from smac_core.nets import CriticEnsemble, DeterministicActor, DeterministicPolicy
from smac_core.rollout import batched_policy
from smac_core.tasks import episode_score, make_env


def make_policy(obs_dim: int = 3, act_dim: int = 2, hidden: tuple[int, ...] = (8, 8),
                low: float | np.ndarray = -1.0, high: float | np.ndarray = 1.0
                ) -> DeterministicPolicy:
    """A policy with a visible action spread (the default 1e-2 output gain keeps a ~ 0)."""
    actor = DeterministicActor(obs_dim, act_dim, hidden)
    with torch.no_grad():
        actor.mu.weight.mul_(100)
    return DeterministicPolicy.from_actor(actor, np.zeros(obs_dim), np.ones(obs_dim),
                                          np.full(act_dim, low), np.full(act_dim, high))


def module_with(template: DeterministicPolicy, vector: torch.Tensor) -> DeterministicPolicy:
    """A plain copy of the template whose parameters are ``vector``."""
    module = make_policy(template.obs_mean.shape[0], template.action_low.shape[0],
                         tuple(layer.out_features for layer in template.trunk.layers
                               if isinstance(layer, torch.nn.Linear)))
    module.load_state_dict({**template.state_dict(),
                            **unflatten_params(vector, param_spec(template))})
    return module


def write_checkpoint(path, hidden=(8, 8), env="AnalyticTarget-v0", obs_mean=(0.0, 0.0, 0.0),
                     critic: bool = True):
    actor = DeterministicActor(3, 2, hidden)
    networks = {"actor": actor}
    if critic:
        networks["critic"] = CriticEnsemble(3, 2, (8,), ensemble_size=2)
    metadata = {"algorithm": "td3", "step": 0, "env": env, "obs_dim": 3, "act_dim": 2,
                "actor_hidden": list(hidden), "obs_mean": list(obs_mean), "obs_std": [1.0] * 3,
                "action_low": [-1.0, -1.0], "action_high": [1.0, 1.0]}
    return save_checkpoint(path, networks, metadata)


# ------------------------------------------------------------------------- parameter vectors
def test_flatten_unflatten_round_trip():
    policy = make_policy()
    spec = param_spec(policy)
    assert spec.names == ("trunk.layers.0.weight", "trunk.layers.0.bias",
                          "trunk.layers.2.weight", "trunk.layers.2.bias", "mu.weight", "mu.bias")
    vector = flatten_params(policy)
    assert vector.shape == (spec.size,) == (3 * 8 + 8 + 8 * 8 + 8 + 8 * 2 + 2,)
    for name, tensor in unflatten_params(vector, spec).items():
        assert torch.equal(tensor, policy.get_parameter(name))
    stacked = unflatten_params(torch.stack([vector, 2 * vector]), spec)
    assert stacked["mu.weight"].shape == (2, 2, 8)
    assert torch.equal(stacked["mu.weight"][1], 2 * policy.mu.weight)
    with pytest.raises(SmacError, match=f"D = {spec.size}"):
        unflatten_params(vector[:-1], spec)


def test_policy_and_critic_vectors_of_a_run_directory(tmp_path):
    write_checkpoint(tmp_path / "run" / "checkpoints" / "final")
    vector, checkpoint = policy_vector(tmp_path / "run")
    actor = checkpoint.tensors
    expected = torch.cat([actor[f"actor.{name}"].reshape(-1)
                          for name in param_spec(checkpoint.policy).names])
    assert torch.equal(vector, expected)

    critic, spec = critic_vector(checkpoint)
    critic_module = CriticEnsemble(3, 2, (8,), ensemble_size=2)
    assert set(spec.names) == set(critic_module.state_dict())  # the module's own names
    critic_module.load_state_dict(unflatten_params(critic, spec))
    assert torch.equal(critic_module.layers[0].bias, checkpoint.tensors["critic.layers.0.bias"])
    write_checkpoint(tmp_path / "actor_only", critic=False)
    with pytest.raises(SmacError, match=r"no critic.*networks are: actor"):
        critic_vector(tmp_path / "actor_only")


def test_check_compatible_names_the_first_differing_parameter(tmp_path):
    a = load_checkpoint(write_checkpoint(tmp_path / "a", hidden=(8, 8)))
    b = load_checkpoint(write_checkpoint(tmp_path / "b", hidden=(8, 6)))
    check_compatible([a, a])
    # trunk.layers.0.* are (8, 3)/(8,) in both; the second hidden layer is the first to differ
    with pytest.raises(SmacError, match=r"'trunk.layers.2.weight' has shape \(8, 8\) vs \(6, 8\)"):
        check_compatible([a, b])
    other_env = load_checkpoint(write_checkpoint(tmp_path / "c", env="AnalyticTargetNoise0.1-v0"))
    with pytest.raises(SmacError, match="different envs"):
        check_compatible([a, other_env])
    shifted = load_checkpoint(write_checkpoint(tmp_path / "d", obs_mean=(0.5, 0.0, 0.0)))
    with pytest.raises(SmacError, match=r"normalise observations differently \(max \|obs_mean "
                                        r"difference\| = 0.5 \(dimension 0\)"):
        check_compatible([a, shifted])
    check_compatible([a, shifted], same_normalisation=False)  # e.g. for a projection


def test_nan_weights_are_refused():
    policy = make_policy()
    vectors = flatten_params(policy).repeat(3, 1)
    vectors[2, -1] = float("nan")  # the last entry: mu.bias
    with pytest.raises(SmacError, match=r"vector 2, parameter 'mu\.bias' contains NaN/Inf"):
        evaluate_vectors(policy, vectors, register_analytic_env(), episodes=1)


# ------------------------------------------------------------------------ batched evaluation
def dyadic_vectors(count: int, size: int) -> torch.Tensor:
    """Weights on a grid of 1/8 in [-1/2, 1/2]: with the env's 1/8-grid observations every
    matmul of the (8, 8) policy is exact in float32 (at most 18 significant bits), so any
    summation order, the plain module's included, gives the same actions bit for bit."""
    return torch.randint(-4, 5, (count, size)).float() / 8


def test_returns_equal_the_analytic_answer_exactly():
    policy = make_policy()
    vectors = dyadic_vectors(6, param_spec(policy).size)
    # zero weights and mu.bias = atanh(target_0): a = target_0 at every step, a success at t = 0
    vectors[5] = 0.0
    vectors[5, -2:] = torch.atanh(torch.tensor(TARGETS[0], dtype=torch.float32))
    result = evaluate_vectors(policy, vectors, register_analytic_env(), episodes=3, seed=7)
    for p, vector in enumerate(vectors):
        module = module_with(policy, vector)
        assert (result.returns[p] == analytic_return(module)).all()
        hit = (-analytic_rewards(module) < SUCCESS_RADIUS_SQ).any()
        assert (result.successes[p] == hit).all()
    assert result.successes[5].all()  # the success path is exercised
    assert (result.lengths == HORIZON).all() and result.scores is None
    assert len(np.unique(result.returns[:, 0])) == 6  # the vectors do differ


def test_batched_equals_one_at_a_time_with_common_random_numbers():
    policy = make_policy(hidden=(16, 16))
    base = flatten_params(policy)
    vectors = torch.stack([base, base, base + 0.1 * torch.randn_like(base), 1.5 * base])
    env_id = register_analytic_env(obs_noise=0.2)
    batched = evaluate_vectors(policy, vectors, env_id, episodes=3, seed=11, workers=0)
    reference = evaluate_vector_reference(policy, vectors, env_id, episodes=3, seed=11)
    # two worker processes with two vectors each (an env registered at run time, in the parent)
    groups = evaluate_vectors(policy, vectors, env_id, episodes=3, seed=11, workers=2)
    for result in (batched, groups):
        np.testing.assert_array_equal(result.returns, reference.returns)
        np.testing.assert_array_equal(result.successes, reference.successes)
        np.testing.assert_array_equal(result.lengths, reference.lengths)
    # common random numbers: equal vectors see equal episodes; the seeds do change episodes
    np.testing.assert_array_equal(batched.returns[0], batched.returns[1])
    assert len(np.unique(batched.returns[0])) == 3


def test_plain_kernel_equals_vmap_of_the_forward_to_the_last_bit():
    # the evaluation kernel before issue 12 (vmap of the module's forward) against the plain
    # batched ops, for Hopper-sized networks: contiguous stacks (the engine's) and views of the
    # flat vectors, padded blocks with zero rows, several P
    torch.manual_seed(0)
    env = gym.make("Hopper-v5")
    policy = make_policy(11, 3, (256, 256), env.action_space.low, env.action_space.high)
    buffers = dict(policy.named_buffers())
    vmapped = torch.vmap(lambda params, obs: torch.func.functional_call(policy, (params, buffers),
                                                                        (obs,)))
    base = flatten_params(policy)
    for count, rows in ((1, 16), (4, 16), (16, 32), (64, 16)):
        vectors = base + 0.05 * base.abs().mean() * torch.randn(count, base.numel())
        obs = torch.zeros(count, rows, 11)
        obs[:, : rows - 5] = 3 * torch.randn(count, rows - 5, 11)
        views = unflatten_params(vectors, param_spec(policy))
        for params in (views, {name: value.contiguous() for name, value in views.items()}):
            assert torch.equal(batched_policy(policy)(params, obs), vmapped(params, obs))


def test_more_workers_than_environments_are_capped():
    policy = make_policy()
    env_id = register_analytic_env(obs_noise=0.2)
    vectors = flatten_params(policy)[None]
    # one vector x one episode (e.g. the last small chunk of a grid) with 3 requested workers
    capped = evaluate_vectors(policy, vectors, env_id, episodes=1, seed=2, workers=3)
    reference = evaluate_vector_reference(policy, vectors, env_id, episodes=1, seed=2)
    np.testing.assert_array_equal(capped.returns, reference.returns)


@pytest.mark.parametrize(("count", "workers"), [(3, 4), (5, 2), (9, 2)])
def test_vector_groups_of_unequal_sizes(count, workers):
    # P < W (3 groups of one vector for 3 of the 4 workers), 5 groups of one vector and 6 groups
    # of 1 or 2 vectors (GROUPS_PER_WORKER = 3) for 2 workers, each group to the first one free
    policy = make_policy(hidden=(16, 16))
    vectors = flatten_params(policy) * torch.linspace(0.5, 1.5, count)[:, None]
    env_id = register_analytic_env(obs_noise=0.2)
    groups = evaluate_vectors(policy, vectors, env_id, episodes=2, seed=6, workers=workers)
    reference = evaluate_vector_reference(policy, vectors, env_id, episodes=2, seed=6)
    np.testing.assert_array_equal(groups.returns, reference.returns)
    np.testing.assert_array_equal(groups.successes, reference.successes)
    np.testing.assert_array_equal(groups.lengths, reference.lengths)
    assert len(np.unique(groups.returns)) == 2 * count


def test_batched_equals_one_at_a_time_on_hopper():
    env = gym.make("Hopper-v5")
    policy = make_policy(11, 3, (32, 32), env.action_space.low, env.action_space.high)
    base = flatten_params(policy)
    # the scales make episodes end at different steps (lengths 60, 20, 41, 60): vectors 1 and 2
    # leave the batched network while 0 and 3 keep running
    vectors = torch.stack([scale * base + 0.05 * torch.randn_like(base)
                           for scale in (0.3, 1.0, 0.1, 0.03)])
    kwargs = {"episodes": 2, "seed": 3, "max_episode_steps": 60}
    reference = evaluate_vector_reference(policy, vectors, "Hopper-v5", **kwargs)
    in_process = evaluate_vectors(policy, vectors, "Hopper-v5", workers=0, **kwargs)
    fractions: list[float] = []
    groups = evaluate_vectors(policy, vectors, "Hopper-v5", workers=2, progress=fractions.append,
                              **kwargs)
    for batched in (in_process, groups):
        # bit-identical: MuJoCo would turn a one-ulp action difference into a different return
        np.testing.assert_array_equal(batched.returns, reference.returns)
        np.testing.assert_array_equal(batched.lengths, reference.lengths)
    # the episode masks were exercised: hoppers fell at different steps, others hit the cap
    assert len(np.unique(reference.lengths)) >= 3 and (reference.lengths == 60).any()
    assert len(np.unique(reference.returns)) == 8
    # the groups' progress: reported as the rollouts advance, monotone, ending at 1.0
    assert len(set(fractions)) > 10 and (np.diff(fractions) >= 0).all() and fractions[-1] == 1.0


def test_flow_vectors_in_groups_equal_each_alone():
    # a flow policy (noise at every step, common random numbers) in 2 worker processes
    env = gym.make("Hopper-v5")
    policy = make_flow(11, 3, low=env.action_space.low, high=env.action_space.high)
    base = flatten_params(policy)
    vectors = torch.stack([base, base + 0.05 * torch.randn_like(base), 0.5 * base])
    kwargs = {"episodes": 2, "seed": 11, "max_episode_steps": 40}
    reference = evaluate_vector_reference(policy, vectors, "Hopper-v5", **kwargs)
    for workers in (0, 2):
        batched = evaluate_vectors(policy, vectors, "Hopper-v5", workers=workers, **kwargs)
        np.testing.assert_array_equal(batched.returns, reference.returns)
        np.testing.assert_array_equal(batched.lengths, reference.lengths)
    assert len(np.unique(reference.returns)) == 6


def test_env_slices_step_like_one_process():
    # the env slices of the cuda path (worker processes holding contiguous slices of the envs),
    # here on cpu: the same observations, rewards and ends as the envs stepped in this process
    seeds = list(range(5))
    rng = np.random.default_rng(0)
    here, slices = _EnvSlice("Hopper-v5", seeds), EnvPool("Hopper-v5", seeds, workers=2)
    for _ in range(2):  # the second time with the workers' kept envs
        np.testing.assert_array_equal(slices.reset(), here.reset())
        active = np.ones(5, bool)
        for _ in range(30):
            actions = rng.uniform(-1, 1, (5, 3)).astype(np.float32)
            expected = here.step(actions, active)
            for got, want in zip(slices.step(actions, active), expected, strict=True):
                np.testing.assert_array_equal(got, want)
            active &= ~expected[2] & (rng.uniform(size=5) < 0.95)


class FailingEnv(AnalyticTargetEnv):
    """Fails at its first step: raises with ``fail="raise"``, ends its process with "exit"."""

    def __init__(self, fail: str) -> None:
        super().__init__()
        self.fail = fail

    def step(self, action):
        if self.fail == "exit":
            os._exit(3)
        raise ValueError("this env cannot step")


def test_a_failing_worker_is_reported_and_the_workers_are_replaced():
    policy = make_policy()
    vectors = flatten_params(policy)[None] * torch.tensor([[0.5], [1.0]])
    for fail, message in (("raise", r"(?s)landscape worker \d \(vectors (\d)\.\.\1\) failed: "
                                    r"Traceback.*ValueError: this env cannot step"),
                          ("exit", r"landscape worker \d \(vectors (\d)\.\.\1\) died: exit "
                                   r"code 3")):
        env_id = f"FailingEnv{fail.title()}-v0"
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=FailingEnv, max_episode_steps=HORIZON,
                         kwargs={"fail": fail})
        with pytest.raises(RuntimeError, match=message):
            evaluate_vectors(policy, vectors, env_id, episodes=1, workers=2)
        assert landscape.evaluate._WORKERS == []  # ended: the next call starts new ones
    env_id = register_analytic_env()
    groups = evaluate_vectors(policy, vectors, env_id, episodes=1, workers=2)
    reference = evaluate_vector_reference(policy, vectors, env_id, episodes=1)
    np.testing.assert_array_equal(groups.returns, reference.returns)


def test_default_workers_split_large_cpu_jobs_only(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    large = landscape.evaluate.MIN_STEPS_FOR_VECTOR_WORKERS
    horizon = -(-large // 160)  # P x E x horizon = 16 x 10 x horizon >= large
    assert default_workers(16, 10, horizon) == 2  # vector groups: one per core
    assert default_workers(16, 10, horizon - 1) == 0  # small: in this process
    assert default_workers(1, 10, large) == 0  # one vector: nothing to split
    assert default_workers(16, 10, large, "cuda") == 0  # env slices need 4 cores
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert default_workers(3, 10, large) == 3  # at most one per vector
    assert default_workers(16, 10, landscape.evaluate.MIN_STEPS_FOR_WORKERS, "cuda") == 8


def test_hopper_batch_steps_equal_gymnasiums_steps_to_the_last_bit():
    # 4 envs stepped together (some idle at times) against 4 stepped by gymnasium one by one,
    # with the engine's float32 actions, over falls (terminations), the time limit
    # (truncations, a 40-step limit) and resets
    plain = [gym.make("Hopper-v5", max_episode_steps=40) for _ in range(4)]
    batched = [gym.make("Hopper-v5", max_episode_steps=40) for _ in range(4)]
    hopper = HopperBatch(batched)
    rng = np.random.default_rng(0)
    terminations = truncations = 0
    for episode in range(4):
        for i in range(4):
            obs, _ = plain[i].reset(seed=10 * episode + i)
            np.testing.assert_array_equal(batched[i].reset(seed=10 * episode + i)[0], obs)
        hopper.reset()
        running = np.ones(4, bool)
        for t in range(60):
            scale = np.array([0.0, 0.5, 1.0, 2.0])[:, None] * (episode % 2 + 1) / 2
            actions = (rng.uniform(-1, 1, (4, 3)) * scale).astype(np.float32)
            stepping = running & (rng.uniform(size=4) < 0.8 if t % 7 else running)
            index = np.flatnonzero(stepping)
            if len(index) == 0:
                continue
            obs, rewards, terminated, truncated = hopper.step(actions[index], index)
            for row, i in enumerate(index):
                expected = plain[i].step(actions[i])
                np.testing.assert_array_equal(obs[row], expected[0])
                assert (rewards[row], terminated[row], truncated[row]) == expected[1:4]
                if expected[2] or expected[3]:
                    running[i] = False
                    terminations += expected[2]
                    truncations += expected[3]
    assert terminations >= 3 and truncations >= 3


def test_hopper_batch_only_for_plain_hopper_envs():
    assert HopperBatch.applies_to([gym.make("Hopper-v5"), make_env("hopper-medium-replay")])
    assert not HopperBatch.applies_to([gym.make("Hopper-v5"),
                                       gym.wrappers.ClipReward(gym.make("Hopper-v5"), 0, 1)])
    assert not HopperBatch.applies_to([gym.make("Walker2d-v5")])


def test_envs_reused_by_a_later_call_give_the_same_returns():
    env = gym.make("Hopper-v5")
    policy = make_policy(11, 3, (32, 32), env.action_space.low, env.action_space.high)
    vectors = flatten_params(policy)[None] * torch.tensor([[0.3], [1.0]])
    first, second = (evaluate_vectors(policy, vectors, "Hopper-v5", episodes=3, seed=4,
                                      max_episode_steps=100, workers=0) for _ in range(2))
    np.testing.assert_array_equal(first.returns, second.returns)
    reference = evaluate_vector_reference(policy, vectors, "Hopper-v5", episodes=3, seed=4,
                                          max_episode_steps=100)
    np.testing.assert_array_equal(second.returns, reference.returns)


def test_scores_of_a_task_with_reference_returns():
    env = gym.make("Hopper-v5")
    policy = make_policy(11, 3, (8,), env.action_space.low, env.action_space.high)
    result = evaluate_vectors(policy, flatten_params(policy)[None], "hopper-medium-replay",
                              episodes=2, max_episode_steps=5)
    expected = [episode_score("hopper-medium-replay", r, False) for r in result.returns[0]]
    np.testing.assert_allclose(result.scores[0], expected, rtol=0, atol=0)
    np.testing.assert_allclose(result.mean(), np.mean(expected))


def test_evaluation_result_summaries():
    returns = np.array([[1.0, 3.0], [2.0, 2.0]])
    plain = EvaluationResult(returns, np.zeros((2, 2), bool), None, np.ones((2, 2), int))
    np.testing.assert_allclose(plain.mean(), [2.0, 2.0])
    np.testing.assert_allclose(plain.stderr(), [np.sqrt(2.0) / np.sqrt(2.0), 0.0])
    scored = EvaluationResult(returns, np.zeros((2, 2), bool), 10 * returns, np.ones((2, 2), int))
    np.testing.assert_allclose(scored.mean(), [20.0, 20.0])  # scores win over returns
    single = EvaluationResult(returns[:, :1], np.zeros((2, 1), bool), None, np.ones((2, 1), int))
    assert np.isnan(single.stderr()).all()


def test_bad_inputs_are_reported():
    policy = make_policy()
    vectors = flatten_params(policy)[None]
    env_id = register_analytic_env()
    with pytest.raises(SmacError, match=rf"shape \(P, {vectors.shape[1]}\)"):
        evaluate_vectors(policy, vectors[:, :-1], env_id, episodes=1)
    with pytest.raises(SmacError, match="episodes must be at least 1"):
        evaluate_vectors(policy, vectors, env_id, episodes=0)
    with pytest.raises(SmacError, match=r"the policy expects \(3,\)"):
        evaluate_vectors(policy, vectors, "Hopper-v5", episodes=1)
    with pytest.raises(SmacError, match="unknown env 'NoSuchEnv-v0'"):
        evaluate_vectors(policy, vectors, "NoSuchEnv-v0", episodes=1)
