"""The binary reward of the Adroit tasks: success tests, the reward, and the env wrapper.

The AWAC/CalQL convention: reward 0 on a step where the task is achieved, -1 otherwise. Success
is the test that gymnasium-robotics 1.4 itself applies in ``AdroitHand{Door,Pen,Relocate}Env.step``
(``info["success"]``), written here as a function of the observation *after* the step, so that
the same function rewards an online step (``BinaryReward``) and relabels a dataset (from its
``next_observations``, ``smac_core.data.rewards``). Observation layouts (from each env's
``_get_obs``):

- door (39): ``qpos[1:-2]`` (27), latch (1), door hinge angle at index 28, ...;
  success: hinge angle >= 1.35 rad.
- pen (45): ``qpos[:-6]`` (24), pen position 24:27, pen velocity 27:33, pen orientation 33:36
  (unit vector), target orientation 36:39 (unit vector), pen - target position 39:42, ...;
  success: distance < 0.075 and orientation dot product > 0.95.
- relocate (39): ``qpos[:-6]`` (30), palm - object 30:33, palm - target 33:36,
  object - target 36:39; success: distance < 0.1.

Part of the task layer with ``smac_core.tasks`` and ``smac_core.envs``; it needs gymnasium but no
simulator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from smac_core.errors import SmacError

SuccessFn = Callable[[np.ndarray], np.ndarray]
"""Maps next observations (..., obs_dim) to a bool array (...): was the task achieved."""


def door_success(next_obs: np.ndarray) -> np.ndarray:
    """Door is open: hinge angle ``next_obs[..., 28]`` >= 1.35 rad."""
    return next_obs[..., 28] >= 1.35


def pen_success(next_obs: np.ndarray) -> np.ndarray:
    """Pen within 0.075 of the target position and oriented within dot product 0.95 of it."""
    distance = np.linalg.norm(next_obs[..., 39:42], axis=-1)
    orientation_similarity = np.sum(next_obs[..., 33:36] * next_obs[..., 36:39], axis=-1)
    return (distance < 0.075) & (orientation_similarity > 0.95)


def relocate_success(next_obs: np.ndarray) -> np.ndarray:
    """Object within 0.1 of the target position."""
    return np.linalg.norm(next_obs[..., 36:39], axis=-1) < 0.1


SUCCESS_FUNCTIONS: dict[str, SuccessFn] = {
    "AdroitHandDoor-v1": door_success,
    "AdroitHandPen-v1": pen_success,
    "AdroitHandRelocate-v1": relocate_success,
}


def success_function(env_id: str) -> SuccessFn:
    """The success test of an Adroit env id; ``SmacError`` for envs without a binary reward."""
    if env_id not in SUCCESS_FUNCTIONS:
        raise SmacError(f"no binary reward is defined for env '{env_id}'; binary rewards exist "
                        f"for {sorted(SUCCESS_FUNCTIONS)}")
    return SUCCESS_FUNCTIONS[env_id]


def binary_reward(success: np.ndarray) -> np.ndarray:
    """0 where the task is achieved, -1 elsewhere (float32, same shape as ``success``)."""
    return np.where(success, 0.0, -1.0).astype(np.float32)


class BinaryReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Replaces an Adroit env's dense reward by the binary reward of the same success test.

    The env's own ``info["success"]`` is left as is; the dense reward moves to
    ``info["dense_reward"]``. Being a ``RecordConstructorArgs`` wrapper, it is part of
    ``env.spec``, so a Minari dataset recorded with it recovers the binary env.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        if env.spec is None:
            raise SmacError("BinaryReward needs an env made by gymnasium.make (it has no spec)")
        self.success_fn = success_function(env.spec.id)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, dense_reward, terminated, truncated, info = self.env.step(action)
        reward = float(binary_reward(self.success_fn(np.asarray(obs))))
        return obs, reward, terminated, truncated, {**info, "dense_reward": dense_reward}
