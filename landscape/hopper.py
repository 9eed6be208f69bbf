"""Plain Hopper envs stepped together (``HopperBatch``), for the landscape engine's env slices
(``landscape.evaluate``): the same values as gymnasium's ``HopperEnv.step`` (v5), to the last bit,
at a fraction of its Python cost per step."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

# the wrappers gym.make puts around a MuJoCo env: they check and count, and change no value
_PLAIN_WRAPPERS = (gym.wrappers.TimeLimit, gym.wrappers.OrderEnforcing,
                   gym.wrappers.PassiveEnvChecker)


class HopperBatch:
    """gymnasium's ``HopperEnv.step`` (v5) for many envs at once, with the same observations,
    rewards, terminations and truncations to the last bit: the physics env by env (``mj_step``
    with the frame skip, then ``mj_rnePostConstraint``, as gymnasium's ``do_simulation``), then
    the observation, health check, reward and termination of every env in one numpy expression
    each (the same arithmetic, term by term, in gymnasium's order of operations). Truncation is
    the ``TimeLimit`` wrapper's: at the env spec's step limit.

    The engine uses it for envs that are plain Hopper (``applies_to``: a ``HopperEnv`` inside
    only gym.make's checking and counting wrappers), whose step then costs the physics plus
    about 3 us of Python instead of about 15 us through gymnasium's step and wrappers.
    """

    def __init__(self, envs: Sequence[gym.Env]) -> None:
        base = envs[0].unwrapped
        self.model, self.frame_skip, self.dt = base.model, base.frame_skip, base.dt
        self.datas = [env.unwrapped.data for env in envs]
        (self.state_low, self.state_high), (self.z_low, self.z_high) = (
            base._healthy_state_range, base._healthy_z_range)
        self.angle_low, self.angle_high = base._healthy_angle_range
        self.forward_weight, self.healthy_reward = base._forward_reward_weight, base._healthy_reward
        self.ctrl_cost_weight = base._ctrl_cost_weight
        self.terminate_when_unhealthy = base._terminate_when_unhealthy
        self.first = 1 if base._exclude_current_positions_from_observation else 0
        self.max_steps = envs[0].spec.max_episode_steps if envs[0].spec else None
        self.elapsed = np.zeros(len(envs), int)

    @staticmethod
    def applies_to(envs: Sequence[gym.Env]) -> bool:
        for env in envs:
            while isinstance(env, _PLAIN_WRAPPERS):
                env = env.env
            if type(env) is not HopperEnv:
                return False
        return True

    def reset(self) -> None:
        """The envs were just reset (by gymnasium's ``reset``): restart the step counts."""
        self.elapsed[:] = 0

    def step(self, actions: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, ...]:
        """Step envs ``index`` (m,) with ``actions`` (m, act_dim) -> obs (m, obs_dim), rewards
        (m,), terminated (m,), truncated (m,)."""
        x_before = np.empty(len(index))
        qpos = np.empty((len(index), self.model.nq))
        qvel = np.empty((len(index), self.model.nv))
        for row, i in enumerate(index):
            data = self.datas[i]
            x_before[row] = data.qpos[0]
            data.ctrl[:] = actions[row]
            mujoco.mj_step(self.model, data, nstep=self.frame_skip)
            mujoco.mj_rnePostConstraint(self.model, data)
            qpos[row], qvel[row] = data.qpos, data.qvel
        x_velocity = (qpos[:, 0] - x_before) / self.dt
        # is_healthy: state_vector()[2:] = (qpos[2:], qvel) inside the state range, z and angle
        state = np.concatenate((qpos[:, 2:], qvel), axis=1)
        healthy = (((self.state_low < state) & (state < self.state_high)).all(axis=1)
                   & (self.z_low < qpos[:, 1]) & (qpos[:, 1] < self.z_high)
                   & (self.angle_low < qpos[:, 2]) & (qpos[:, 2] < self.angle_high))
        # reward = forward + healthy - control cost, in gymnasium's order of operations
        reward = ((self.forward_weight * x_velocity + healthy * self.healthy_reward)
                  - self.ctrl_cost_weight * np.sum(np.square(actions), axis=1))
        obs = np.concatenate((qpos[:, self.first:], np.clip(qvel, -10, 10)), axis=1)  # _get_obs
        self.elapsed[index] += 1
        truncated = (np.zeros(len(index), bool) if self.max_steps is None
                     else self.elapsed[index] >= self.max_steps)
        return obs, reward, ~healthy & self.terminate_when_unhealthy, truncated
