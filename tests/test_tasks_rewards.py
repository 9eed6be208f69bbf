"""Task registry, Kitchen shim, the binary reward (same answer as the envs' own success test on
real rollouts) and the real door-human data."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import DOOR_HUMAN

from smac_core import tasks
from smac_core.binary_reward import SUCCESS_FUNCTIONS, BinaryReward
from smac_core.data.formats import read_file, restricted_load
from smac_core.data.rewards import relabel_binary
from smac_core.errors import SmacError

DOOR_HDF5 = DOOR_HUMAN / "door-v0_demos_clipped.hdf5"
DOOR_PICKLE = DOOR_HUMAN / "door-v0_demos.pickle"


def test_registry_has_the_six_tasks_and_the_ogbench_cube():
    assert sorted(tasks.TASKS) == sorted([
        "hopper-medium-replay", "walker2d-medium-replay", "door-binary", "pen-binary",
        "relocate-binary", "kitchen-partial", "cube-single-play", "cube-single-noisy"])
    assert tasks.get_task("door-binary").dataset_id == "local/door/human-binary-v0"
    with pytest.raises(SmacError, match="unknown task 'door'; known tasks: hopper-medium-replay"):
        tasks.get_task("door")
    with pytest.raises(SmacError, match="unknown env 'Nope-v0'"):
        tasks.make_env("Nope-v0")


def test_episode_score():
    # dense: D4RL normalisation, 0 at the random and 100 at the expert reference return
    assert tasks.episode_score("hopper-medium-replay", -20.272305, False) == pytest.approx(0.0)
    assert tasks.episode_score("hopper-medium-replay", 3234.3, False) == pytest.approx(100.0)
    assert tasks.episode_score("kitchen-partial", 3.0, False) == pytest.approx(75.0)
    # binary: success rate, whatever the return
    assert tasks.episode_score("door-binary", -150.0, True) == 100.0
    assert tasks.episode_score("door-binary", -150.0, False) == 0.0
    assert tasks.episode_score("Pendulum-v1", -150.0, False) is None
    # OGBench: success rate, as OGBench reports it
    assert tasks.episode_score("cube-single-play", -37.0, True) == 100.0
    assert tasks.episode_score("cube-single-noisy", -200.0, False) == 0.0


@pytest.mark.parametrize("name", list(tasks.TASKS))
def test_every_task_env_resets_and_steps(name):
    """Kitchen included: without the joint-type shim FrankaKitchen-v1 fails in its constructor."""
    task = tasks.get_task(name)
    if task.family == "ogbench":
        pytest.importorskip("ogbench", reason="the OGBench tasks need the optional ogbench "
                                              "package (extra 'ogbench')")
    env = tasks.make_env(name, seed=0)
    obs, _ = env.reset()
    assert env.spec.max_episode_steps == task.max_episode_steps
    assert env.observation_space.contains(obs.astype(env.observation_space.dtype))
    obs, reward, _, _, info = env.step(env.action_space.sample())
    assert obs.shape == env.observation_space.shape and np.isfinite(reward)
    if task.family != "mujoco":
        assert isinstance(info["success"], bool | np.bool_)
    assert isinstance(env, BinaryReward) == (task.reward == "binary")


def test_make_env_seed_fixes_the_first_reset():
    first, _ = tasks.make_env("door-binary", seed=3).reset()
    second, _ = tasks.make_env("door-binary", seed=3).reset()
    np.testing.assert_array_equal(first, second)


def rollout(env: gym.Env, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step ``env`` through ``actions``: next observations, rewards, info["success"]."""
    observations, rewards, successes = [], [], []
    for action in actions:
        obs, reward, _, _, info = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        successes.append(info["success"])
    return np.array(observations), np.array(rewards), np.array(successes)


def check_agreement(env: gym.Env, observations, rewards, successes) -> None:
    """The binary reward's success test == the env's own, and reward = 0 exactly on success."""
    np.testing.assert_array_equal(SUCCESS_FUNCTIONS[env.spec.id](observations), successes)
    np.testing.assert_array_equal(rewards, np.where(successes, 0.0, -1.0))


@pytest.mark.parametrize("name", ["door-binary", "pen-binary", "relocate-binary"])
def test_binary_reward_agrees_with_env_success_on_random_rollouts(name):
    env = tasks.make_env(name, seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (60, *env.action_space.shape))
    check_agreement(env, *rollout(env, actions))


def test_binary_reward_agrees_on_replayed_door_demonstrations():
    """Open-loop replay of the human demos from their recorded initial states opens the door,
    so both outcomes are compared (a test where success never happens could not fail)."""
    with open(DOOR_PICKLE, "rb") as f:
        demos = restricted_load(f, DOOR_PICKLE)
    env = tasks.make_env("door-binary", seed=0)
    all_successes = []
    for index in (11, 22, 24):  # demonstrations whose door passes 1.35 rad before step 200
        demo = demos[index]
        env.reset(options={"initial_state_dict": demo["init_state_dict"]})
        result = rollout(env, np.clip(demo["actions"][:200], -1.0, 1.0))
        check_agreement(env, *result)
        all_successes.append(result[2])
    successes = np.concatenate(all_successes)
    assert 0 < successes.sum() < len(successes)


def test_binary_reward_agrees_around_the_pen_and_relocate_thresholds():
    """States placed on both sides of the success thresholds (random actions rarely succeed)."""
    env = tasks.make_env("relocate-binary", seed=0)
    base = env.unwrapped
    state = base.get_env_state()
    results = []
    for offset in (0.0, 0.05, 0.095, 0.105, 0.2):
        env.reset(seed=0)
        base.set_env_state({"qpos": state["qpos"], "qvel": state["qvel"],
                            "target_pos": state["target_pos"],
                            "obj_pos": state["target_pos"] + np.array([offset, 0.0, 0.0])})
        results.append(rollout(env, np.zeros((1, 30))))
    check_agreement(env, *(np.concatenate(r) for r in zip(*results, strict=True)))
    assert [bool(r[2][0]) for r in results] == [True, True, True, False, False]

    env = tasks.make_env("pen-binary", seed=0)
    base = env.unwrapped
    pen_quaternion = base.model.body_quat[base.obj_body_id].copy()
    away = np.array([0.0, 1.0, 0.0, 0.0])
    results = []
    for weight in np.linspace(0.0, 0.6, 13):  # target orientation turned gradually away
        env.reset(seed=0)
        target = (1 - weight) * pen_quaternion + weight * away
        target /= np.linalg.norm(target)
        base.set_env_state({**base.get_env_state(), "desired_orien": target})
        results.append(rollout(env, np.zeros((1, 24))))
    successes = np.concatenate([r[2] for r in results])
    check_agreement(env, *(np.concatenate(r) for r in zip(*results, strict=True)))
    assert successes[0] and not successes[-1]


def test_real_door_data_both_files():
    """25 human demonstrations, 6,729 recorded steps, in both encodings.

    The hdf5's ``timeouts`` flag step 200 of demonstrations that run on to a ``terminals`` row
    (verified: the simulator state continues smoothly across the flag), hence ignore_timeouts.
    Neither file holds the observation after a demonstration's last action: every last
    transition is kept with a placeholder next observation.
    """
    hdf5 = read_file(DOOR_HDF5, ignore_timeouts=True)
    assert (hdf5.num_episodes, hdf5.size, hdf5.obs_dim, hdf5.act_dim) == (25, 6729, 39, 28)
    pickled = read_file(DOOR_PICKLE)
    assert (pickled.num_episodes, pickled.size) == (25, 6729)
    for dataset in (hdf5, pickled):
        assert dataset.metadata["placeholder_next_observations"] == 25
    np.testing.assert_array_equal(pickled.episode_lengths(), hdf5.episode_lengths())


def test_real_door_binary_relabel():
    dataset = relabel_binary(read_file(DOOR_HDF5, ignore_timeouts=True), "AdroitHandDoor-v1")
    assert set(np.unique(dataset.rewards)) == {-1.0, 0.0}
    success = dataset.rewards == 0.0
    episode_success = np.array([success[sl].any() for sl in dataset.episode_slices()])
    # Plausible for human door demos under the v1 test (hinge >= 1.35 rad): every demo swings
    # the door open (recorded max angle 1.06-1.59 rad), about a third past 1.35 rad, for the
    # last few dozen steps; far from none and far from all.
    assert 0.2 <= episode_success.mean() <= 0.6
    assert 0.02 <= success.mean() <= 0.15
    # successes come late in a demonstration: the door has to be unlatched and swung first
    first = [int(np.argmax(success[sl])) for sl, ok in
             zip(dataset.episode_slices(), episode_success, strict=True) if ok]
    assert min(first) > 100
