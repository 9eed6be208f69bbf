"""Making gymnasium envs: the registered ids (gymnasium-robotics included), seeding, and the
Kitchen adapter. Imported by ``smac_core.tasks`` only when an env is made, so that reading the
task table (command lines, labels) needs no simulator; it knows no task (the task table passes
what it needs, ``make_registered``'s ``unknown``).
"""

from __future__ import annotations

import warnings
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

from smac_core.errors import SmacError  # noqa: E402

gym.register_envs(gymnasium_robotics)

KITCHEN_PARTIAL_TASKS = ["microwave", "kettle", "light switch", "slide cabinet"]


def make_registered(env_id: str, unknown: str = "not a registered gymnasium id",
                    **kwargs: Any) -> gym.Env:
    """``gym.make(env_id)``, with the Kitchen shim and adapter for FrankaKitchen; ``SmacError``
    "unknown env '<env_id>': <unknown>" for an id the registry lacks."""
    if env_id not in gym.registry and env_id.startswith(OGBENCH_ENV_PREFIXES):
        import_ogbench(f"env '{env_id}' is an OGBench env")
    if env_id not in gym.registry:
        raise SmacError(f"unknown env '{env_id}': {unknown}")
    if env_id.startswith("FrankaKitchen"):
        _patch_kitchen_joint_type_check()
        kwargs.setdefault("tasks_to_complete", KITCHEN_PARTIAL_TASKS)
        return FrankaKitchenAdapter(gym.make(env_id, **kwargs))
    return gym.make(env_id, **kwargs)


OGBENCH_ENV_PREFIXES = ("cube-", "scene-", "puzzle-")
"""Env ids that the optional ``ogbench`` package registers (its manipulation envs) on import."""


def import_ogbench(what: str = "the OGBench tasks") -> Any:
    """The optional ``ogbench`` package (importing it registers its envs with gymnasium);
    ``SmacError`` saying how to install it. Its viewer's GLFW import warns without a display,
    which nothing here uses (no rendering), so that warning is dropped."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*DISPLAY")
            import ogbench
    except ImportError:
        raise SmacError(f"{what} needs the ogbench package: pip install "
                        "'smac-landscape[ogbench]' (or pip install ogbench)") from None
    return ogbench


def seeded(env: gym.Env, seed: int | None) -> gym.Env:
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
