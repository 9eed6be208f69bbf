"""The paper's six tasks: env construction (wrappers, time limits), dataset ids, reference scores.

``make_env`` also accepts any registered gymnasium id. Reference returns are D4RL's (random and
expert policy returns) and define the normalised score, 100 = expert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import farama_notifications
import gymnasium as gym
import mujoco
import numpy as np

# gymnasium-robotics prints, on every import, a notice that the *dense* Adroit rewards changed in
# 1.2.1. The binary tasks here use only the env's success test, so the notice is dropped.
farama_notifications.notifications.pop("gymnasium_robotics", None)
import gymnasium_robotics  # noqa: E402
from gymnasium_robotics.utils import mujoco_utils  # noqa: E402

from smac_core.data.rewards import BinaryReward  # noqa: E402
from smac_core.errors import SmacError  # noqa: E402

gym.register_envs(gymnasium_robotics)


@dataclass(frozen=True)
class Task:
    """One benchmark task. ``reward`` is "dense" (the env's own) or "binary" (``BinaryReward``)."""

    name: str
    env_id: str
    dataset_id: str
    max_episode_steps: int
    reward: str
    family: str
    ref_min_score: float
    ref_max_score: float

    def make_env(self, seed: int | None = None, **kwargs: Any) -> gym.Env:
        """The task's env: time limit, binary reward where the task has one, Kitchen shim."""
        env = _make_registered(self.env_id, max_episode_steps=self.max_episode_steps, **kwargs)
        if self.reward == "binary":
            env = BinaryReward(env)
        return _seeded(env, seed)

    def episode_score(self, episode_return: float, success: bool) -> float:
        """Normalised score of one episode, 100 = expert.

        Dense tasks: 100 * (R - ref_min) / (ref_max - ref_min) (D4RL). Binary tasks: 100 * success,
        the success rate metric CalQL reports for the Adroit binary tasks (a binary return mostly
        counts steps until success, which D4RL's dense reference returns do not describe).
        """
        if self.reward == "binary":
            return 100.0 * float(success)
        return 100.0 * (episode_return - self.ref_min_score) / (
            self.ref_max_score - self.ref_min_score)


KITCHEN_PARTIAL_TASKS = ["microwave", "kettle", "light switch", "slide cabinet"]

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("hopper-medium-replay", "Hopper-v5", "local/hopper/medium-replay-v0", 1000,
             "dense", "mujoco", -20.272305, 3234.3),
        Task("walker2d-medium-replay", "Walker2d-v5", "local/walker2d/medium-replay-v0", 1000,
             "dense", "mujoco", 1.629008, 4592.3),
        Task("door-binary", "AdroitHandDoor-v1", "local/door/human-binary-v0", 200,
             "binary", "adroit", -56.512833, 2880.569),
        Task("pen-binary", "AdroitHandPen-v1", "local/pen/human-binary-v0", 100,
             "binary", "adroit", 96.262799, 3076.833),
        Task("relocate-binary", "AdroitHandRelocate-v1", "local/relocate/human-binary-v0", 200,
             "binary", "adroit", -6.425911, 4233.877),
        Task("kitchen-partial", "FrankaKitchen-v1", "D4RL/kitchen/partial-v2", 280,
             "dense", "kitchen", 0.0, 4.0),
    )
}


NEVER_TERMINATING_ENV_PREFIXES = ("AdroitHand",)
"""Env ids whose episodes never terminate, they only truncate at the time limit: the Adroit hand
envs of gymnasium-robotics (door, hammer, pen, relocate) return ``terminated=False`` on every
step, success included."""


def never_terminates(name: str) -> bool:
    """Whether episodes of task or env id ``name`` can only end by truncation, so that the end of
    a recorded episode (a demonstration that stopped) is a truncation, never a terminal state."""
    env_id = TASKS[name].env_id if name in TASKS else name
    return env_id.startswith(NEVER_TERMINATING_ENV_PREFIXES)


def get_task(name: str) -> Task:
    """The task called ``name``; ``SmacError`` listing the known names otherwise."""
    if name not in TASKS:
        raise SmacError(f"unknown task '{name}'; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


def task_of_dataset(dataset_id: str | None) -> Task | None:
    """The task whose own dataset ``dataset_id`` is; None for any other dataset."""
    return next((task for task in TASKS.values() if task.dataset_id == dataset_id), None)


def dataset_label(dataset_id: str | None, env: str) -> str:
    """What results on ``dataset_id``, evaluated in ``env``, are labelled with: the task's name
    for the task's own dataset, any other dataset by its id (a random hopper dataset evaluated in
    the hopper-medium-replay task's env is not hopper-medium-replay); ``env`` without a dataset."""
    if dataset_id is None:
        return env
    task = task_of_dataset(dataset_id)
    return dataset_id if task is None else task.name


def describe_env(name: str | None) -> str:
    """An env as ``data show`` prints it: a task's env (the key datasets record it by) as its
    env id, reward, time limit and score, without the task's name, which labels only the task's
    own dataset; any other env id as is."""
    if name not in TASKS:
        return str(name)
    task = TASKS[name]
    score = ("the success rate" if task.reward == "binary" else
             f"D4RL's reference returns {task.ref_min_score:g} (0) and {task.ref_max_score:g} "
             "(100)")
    return (f"{task.env_id} ({task.reward} reward, {task.max_episode_steps} steps, scored by "
            f"{score})")


def make_env(name: str, seed: int | None = None, **kwargs: Any) -> gym.Env:
    """A task's env (see ``Task.make_env``) or any registered gymnasium id, made and seeded."""
    if name in TASKS:
        return TASKS[name].make_env(seed, **kwargs)
    return _seeded(_make_registered(name, **kwargs), seed)


def episode_score(name: str, episode_return: float, success: bool) -> float | None:
    """Normalised score of one episode of task ``name``; None for envs without reference returns."""
    if name not in TASKS:
        return None
    return TASKS[name].episode_score(episode_return, success)


# ---------------------------------------------------------------------------------- helpers
def _make_registered(env_id: str, **kwargs: Any) -> gym.Env:
    if env_id not in gym.registry:
        raise SmacError(f"unknown env '{env_id}': neither a task ({', '.join(TASKS)}) nor a "
                        f"registered gymnasium id")
    if env_id.startswith("FrankaKitchen"):
        _patch_kitchen_joint_type_check()
        kwargs.setdefault("tasks_to_complete", KITCHEN_PARTIAL_TASKS)
        return FrankaKitchenAdapter(gym.make(env_id, **kwargs))
    return gym.make(env_id, **kwargs)


def _seeded(env: gym.Env, seed: int | None) -> gym.Env:
    """Seed the env's and the action space's generators; later ``reset()`` calls continue them."""
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


class FrankaKitchenAdapter(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """FrankaKitchen as the algorithms see it: a flat observation, ``info["success"]``.

    The observation is the env's 59-dim ``"observation"`` entry (robot and object state), the
    array ``read_minari`` takes from Minari's kitchen datasets; the goal entries are constant
    for a fixed task list. ``success``: every task of the episode has been completed.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self.observation_space = env.observation_space["observation"]

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return obs["observation"], info

    def step(self, action: Any) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs["observation"], reward, terminated, truncated, {
            **info, "success": len(info["tasks_to_complete"]) == 0}


# qpos / qvel entries per MuJoCo joint type, as in gymnasium_robotics.utils.mujoco_utils.
_JOINT_QPOS_SIZE = {int(mujoco.mjtJoint.mjJNT_FREE): 7, int(mujoco.mjtJoint.mjJNT_BALL): 4,
                    int(mujoco.mjtJoint.mjJNT_SLIDE): 1, int(mujoco.mjtJoint.mjJNT_HINGE): 1}
_JOINT_QVEL_SIZE = {int(mujoco.mjtJoint.mjJNT_FREE): 6, int(mujoco.mjtJoint.mjJNT_BALL): 4,
                    int(mujoco.mjtJoint.mjJNT_SLIDE): 1, int(mujoco.mjtJoint.mjJNT_HINGE): 1}


def _joint_qpos(model: mujoco.MjModel, data: mujoco.MjData, name: str) -> np.ndarray:
    joint = model.joint(name)
    start = int(model.jnt_qposadr[joint.id])
    return data.qpos[start:start + _JOINT_QPOS_SIZE[int(model.jnt_type[joint.id])]].copy()


def _joint_qvel(model: mujoco.MjModel, data: mujoco.MjData, name: str) -> np.ndarray:
    joint = model.joint(name)
    start = int(model.jnt_dofadr[joint.id])
    return data.qvel[start:start + _JOINT_QVEL_SIZE[int(model.jnt_type[joint.id])]].copy()


def _patch_kitchen_joint_type_check() -> None:
    """Kitchen compatibility shim (gymnasium-robotics 1.4.2 with mujoco 3.x and numpy 2).

    ``mujoco_utils.get_joint_qpos/qvel`` assert ``model.jnt_type[i] in (mjJNT_HINGE,
    mjJNT_SLIDE)``; ``jnt_type[i]`` is now a ``numpy.int32`` that this tuple membership test no
    longer matches against the ``mjtJoint`` enum members, so ``FrankaKitchen-v1`` fails an
    ``AssertionError`` in its constructor. The shim replaces both module functions (process-wide,
    applied when a Kitchen env is made) with equivalents that compare joint types as ints and
    return the same slices with the same sizes as the originals.
    """
    mujoco_utils.get_joint_qpos = _joint_qpos
    mujoco_utils.get_joint_qvel = _joint_qvel
