"""The paper's six tasks: env construction (wrappers, time limits), dataset ids, reference scores.

``make_env`` also accepts any registered gymnasium id. Reference returns are D4RL's (random and
expert policy returns) and define the normalised score, 100 = expert. The table is light (no
simulator is imported until an env is made, ``smac_core.envs``), so command lines read it.
``find_task`` is the one lookup of a task, by name, dataset id or env id and reward.

The task layer: this table, ``smac_core.envs`` (making envs, which knows no task) and
``smac_core.binary_reward`` (the success tests and the binary reward wrapper).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from smac_core.errors import SmacError

if TYPE_CHECKING:
    import gymnasium as gym


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
        from smac_core.binary_reward import BinaryReward
        from smac_core.envs import make_registered, seeded

        env = make_registered(self.env_id, max_episode_steps=self.max_episode_steps, **kwargs)
        if self.reward == "binary":
            env = BinaryReward(env)
        return seeded(env, seed)

    @property
    def scored_by_success(self) -> bool:
        """Binary (Adroit) and OGBench tasks are scored by the success rate, not the return."""
        return self.reward == "binary" or self.family == "ogbench"

    def episode_score(self, episode_return: float, success: bool) -> float:
        """Normalised score of one episode, 100 = expert.

        Dense tasks: 100 * (R - ref_min) / (ref_max - ref_min) (D4RL). Binary tasks: 100 * success,
        the success rate metric CalQL reports for the Adroit binary tasks (a binary return mostly
        counts steps until success, which D4RL's dense reference returns do not describe).
        OGBench tasks: 100 * success (``info["success"]``), as OGBench reports them.
        """
        if self.scored_by_success:
            return 100.0 * float(success)
        return 100.0 * (episode_return - self.ref_min_score) / (
            self.ref_max_score - self.ref_min_score)


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
        # OGBench single-task cube (default task 2, reward success - 1, terminates at success,
        # scored by the success rate); data made by smac_core.ogbench_data. Reference returns:
        # never succeeding in 200 steps (-200) and succeeding at once (0), unused for the score.
        Task("cube-single-play", "cube-single-singletask-v0", "local/ogbench/cube-single-play-v0",
             200, "dense", "ogbench", -200.0, 0.0),
        Task("cube-single-noisy", "cube-single-singletask-v0",
             "local/ogbench/cube-single-noisy-v0", 200, "dense", "ogbench", -200.0, 0.0),
    )
}


NEVER_TERMINATING_ENV_PREFIXES = ("AdroitHand",)
"""Env ids whose episodes never terminate, they only truncate at the time limit: the Adroit hand
envs of gymnasium-robotics (door, hammer, pen, relocate) return ``terminated=False`` on every
step, success included."""


def find_task(name: str | None = None, *, dataset_id: str | None = None,
              env_id: str | None = None, reward: str | None = None) -> Task | None:
    """The task whose fields equal every key given (``name``, ``dataset_id``, ``env_id``,
    ``reward``; None = any), the first in table order; None when no task matches or no key is
    given. The one lookup of the task table: ``find_task("door-binary")``,
    ``find_task(dataset_id=...)``, ``find_task(env_id="AdroitHandPen-v1", reward="binary")``."""
    keys = {"name": name, "dataset_id": dataset_id, "env_id": env_id, "reward": reward}
    given = {key: value for key, value in keys.items() if value is not None}
    if not given:
        return None
    return next((task for task in TASKS.values()
                 if all(getattr(task, key) == value for key, value in given.items())), None)


def get_task(name: str) -> Task:
    """The task called ``name``; ``SmacError`` listing the known names otherwise."""
    task = find_task(name)
    if task is None:
        raise SmacError(f"unknown task '{name}'; known tasks: {', '.join(TASKS)}")
    return task


def never_terminates(name: str) -> bool:
    """Whether episodes of task or env id ``name`` can only end by truncation, so that the end of
    a recorded episode (a demonstration that stopped) is a truncation, never a terminal state."""
    task = find_task(name)
    env_id = name if task is None else task.env_id
    return env_id.startswith(NEVER_TERMINATING_ENV_PREFIXES)


def dataset_label(dataset_id: str | None, env: str) -> str:
    """What results on ``dataset_id``, evaluated in ``env``, are labelled with: the task's name
    for the task's own dataset, any other dataset by its id (a random hopper dataset evaluated in
    the hopper-medium-replay task's env is not hopper-medium-replay); ``env`` without a dataset."""
    if dataset_id is None:
        return env
    task = find_task(dataset_id=dataset_id)
    return dataset_id if task is None else task.name


def describe_env(name: str | None) -> str:
    """An env as ``data show`` prints it: a task's env (the key datasets record it by) as its
    env id, reward, time limit and score, without the task's name, which labels only the task's
    own dataset; any other env id as is."""
    task = find_task(name)
    if task is None:
        return str(name)
    score = ("the success rate" if task.scored_by_success else
             f"D4RL's reference returns {task.ref_min_score:g} (0) and {task.ref_max_score:g} "
             "(100)")
    return (f"{task.env_id} ({task.reward} reward, {task.max_episode_steps} steps, scored by "
            f"{score})")


def make_env(name: str, seed: int | None = None, **kwargs: Any) -> gym.Env:
    """A task's env (see ``Task.make_env``) or any registered gymnasium id, made and seeded."""
    task = find_task(name)
    if task is not None:
        return task.make_env(seed, **kwargs)
    from smac_core.envs import make_registered, seeded

    unknown = f"neither a task ({', '.join(TASKS)}) nor a registered gymnasium id"
    return seeded(make_registered(name, unknown, **kwargs), seed)


def episode_score(name: str, episode_return: float, success: bool) -> float | None:
    """Normalised score of one episode of task ``name``; None for envs without reference returns."""
    task = find_task(name)
    return None if task is None else task.episode_score(episode_return, success)
