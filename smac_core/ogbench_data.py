"""OGBench single-task manipulation datasets made locally with the package's scripted oracles:
``python -m smac_core.generate cube-single-play [--episodes N] [--noise X] [--seed S]`` (also
``python -m smac_core.data generate cube-single-play``), or the official files with
``--download`` (needs internet).

OGBench's own procedure (``data_gen_scripts/generate_manipspace.py`` of seohongpark/ogbench, with
the flags of its ``commands.sh``), reproduced here for the single cube:

- the goal-conditioned env ``cube-single-v0`` in ``mode="data_collection"`` (random initial
  arm pose and cube pose, then random targets) with ``terminate_at_goal=False``; episodes of
  1000 transitions (OGBench records 1001 steps and drops the last action, so the same 1000);
  1000 episodes, i.e. 1M transitions (OGBench's validation split of 100 more episodes is not
  made here);
- the oracle follows a target until it says it is done, then the env draws a new target
  (``set_new_target``, no stacking for one cube) and the oracle plans again: "play" data;
- "play": ``CubePlanOracle`` (non-Markovian: keyframes pick / clearance / place / final pose,
  interpolated, plus Gaussian noise of std ``noise`` * (0.05, 0.05, 0.05, 0.3, 1.0) on the
  planned (x, y, z, yaw, gripper) waypoints, smoothed in time by a Gaussian filter of sigma
  ``noise_smoothing``; defaults 0.1 and 0.5);
- "noisy": ``CubeMarkovOracle`` (closed loop, ``min_norm`` 0.4) plus Gaussian action noise
  N(0, xi * (1, 1, 1, 3, 10)) with xi ~ U(0, ``noise``) drawn per episode, and with probability
  ``p_random_action`` (OGBench: 0.1 for cube) a uniform random action instead;
  actions are clipped to [-1, 1] in both.

The single-task rewards are OGBench's own relabelling (``ogbench.relabel_utils``) with the
single-task env ``cube-single-singletask-v0`` (its default task, task 2): reward
success(s) - 1 and mask 1 - success(s), success = cube within 4 cm of the task's target,
evaluated on the state *before* the action (the env's ``success_timing="pre"``). A transition
from a success state is therefore terminal (reward 0, no bootstrap), as in the env, which ends
the episode there. Our datasets allow a terminal only at an episode's end, so a play episode is
stored as segments cut after each such transition (``play_episodes`` in the metadata counts the
rollouts; the stored episode count is larger). Evaluation runs the single-task env (200 steps);
its score is the success rate (``info["success"]``).

Determinism: the oracles draw from numpy's global generator, seeded here with
``derived_seed(seed, 31, 0)`` (and restored after); episode ``k`` resets the env with
``derived_seed(seed, 32, k)``; OGBench's ``env.action_space.sample()`` random action is a
uniform draw from the same global generator, so a dataset is a function of the seed and flags.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from smac_core import tasks
from smac_core.cli import ArgumentParser, check_seed
from smac_core.data.dataset import TransitionDataset
from smac_core.errors import SmacError, cli_entry

DATA_ENV = {"cube-single": "cube-single-v0"}
"""OGBench scene -> its goal-conditioned env, in which the data is collected."""
DATASET_TYPES = ("play", "noisy")
P_RANDOM_ACTION = {"play": 0.0, "noisy": 0.1}  # OGBench's commands.sh for cube
NOISE_SCALE = np.array([1.0, 1.0, 1.0, 3.0, 10.0])  # noisy: per-dim action noise, x xi
ORACLE_STREAM, EPISODE_STREAM = 31, 32


def ogbench_tasks() -> dict[str, tasks.Task]:
    return {t.name: t for t in tasks.TASKS.values() if t.family == "ogbench"}


def parse_target(name: str) -> tuple[tasks.Task, str, str]:
    """"cube-single-play" -> (its task, "cube-single", "play")."""
    task = ogbench_tasks().get(name)
    if task is None:
        raise SmacError(f"cannot generate '{name}'; OGBench tasks: {', '.join(ogbench_tasks())}")
    scene, _, dataset_type = name.rpartition("-")
    return task, scene, dataset_type


def require_ogbench() -> Any:
    from smac_core.envs import import_ogbench

    return import_ogbench()


@contextmanager
def global_numpy_seed(seed: int) -> Iterator[None]:
    """numpy's global generator seeded (OGBench's oracles draw from it), restored afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def make_data_env(scene: str, episode_steps: int) -> Any:
    from smac_core.envs import make_registered

    return make_registered(DATA_ENV[scene], terminate_at_goal=False, mode="data_collection",
                           max_episode_steps=episode_steps + 1)


def make_oracle(env: Any, dataset_type: str, noise: float, noise_smoothing: float,
                min_norm: float) -> Any:
    if dataset_type == "play":
        from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle

        return CubePlanOracle(env=env, noise=noise, noise_smoothing=noise_smoothing)
    from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle

    return CubeMarkovOracle(env=env, min_norm=min_norm)


# ---------------------------------------------------------------------------------- collection
def collect(task: tasks.Task, scene: str, dataset_type: str, episodes: int, seed: int, *,
            episode_steps: int = 1000, noise: float = 0.1, noise_smoothing: float = 0.5,
            min_norm: float = 0.4, p_random_action: float | None = None) -> TransitionDataset:
    """``episodes`` play episodes of ``episode_steps`` transitions each, relabelled for
    ``task`` (see the module docstring), as a dataset of segments."""
    from ogbench.relabel_utils import relabel_dataset

    from smac_core.rollout import derived_seed

    p_random = P_RANDOM_ACTION[dataset_type] if p_random_action is None else p_random_action
    env = make_data_env(scene, episode_steps)
    single = tasks.make_env(task.name)
    oracle = make_oracle(env, dataset_type, noise, noise_smoothing, min_norm)
    segments: list[dict[str, np.ndarray]] = []
    subtasks = subtask_successes = 0
    with global_numpy_seed(derived_seed(seed, ORACLE_STREAM, 0)):
        for k in range(episodes):
            ob, info = env.reset(seed=derived_seed(seed, EPISODE_STREAM, k))
            xi = np.random.uniform(0, noise) if dataset_type == "noisy" else 0.0
            oracle.reset(ob, info)
            obs, actions, qpos = [ob], [], []
            for _ in range(episode_steps):
                if p_random > 0 and np.random.rand() < p_random:
                    action = np.random.uniform(-1.0, 1.0, 5)
                else:
                    action = np.asarray(oracle.select_action(ob, info), dtype=np.float64)
                    if dataset_type == "noisy":
                        action = action + np.random.normal(0, xi * NOISE_SCALE, action.shape)
                action = np.clip(action, -1, 1)
                ob, _, _, _, info = env.step(action)
                if oracle.done:
                    subtasks += 1
                    subtask_successes += bool(info["success"])
                    ob_new, info_new = env.unwrapped.set_new_target(p_stack=0.0)
                    oracle.reset(ob_new, info_new)
                obs.append(ob)
                actions.append(action)
                qpos.append(info["prev_qpos"])
            labels: dict[str, Any] = {"qpos": np.asarray(qpos)}
            relabel_dataset(task.env_id, single, labels)
            segments += split_at_terminals(np.asarray(obs, np.float32),
                                           np.asarray(actions, np.float32),
                                           labels["rewards"], labels["masks"] == 0)
    env.close()
    single.close()
    metadata = {"play_episodes": episodes, "episode_steps": episode_steps,
                "dataset_type": dataset_type, "noise": noise, "seed": seed,
                "p_random_action": p_random, "oracle_subtasks": subtasks,
                "oracle_subtask_successes": subtask_successes}
    if dataset_type == "play":
        metadata["noise_smoothing"] = noise_smoothing
    else:
        metadata["min_norm"] = min_norm
    return TransitionDataset.from_episodes(segments, env_id=task.name, metadata=metadata)


def split_at_terminals(obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                       terminals: np.ndarray) -> list[dict[str, np.ndarray]]:
    """One rollout (T+1 observations, T actions) cut after each terminal transition; the last
    segment, unless it ends on a terminal, is a truncation."""
    ends = [*(np.flatnonzero(terminals) + 1).tolist(), len(actions)]
    segments, start = [], 0
    for end in ends:
        if end <= start:
            continue
        n = end - start
        truncations = np.zeros(n, bool)
        truncations[-1] = not terminals[end - 1]
        segments.append({"observations": obs[start:end + 1], "actions": actions[start:end],
                         "rewards": rewards[start:end].astype(np.float32),
                         "terminals": terminals[start:end].astype(bool),
                         "truncations": truncations})
        start = end
    return segments


def oracle_success_rate(scene: str, dataset_type: str, episodes: int, seed: int,
                        noise: float = 0.0, max_steps: int = 500) -> float:
    """Fraction of ``episodes`` single pick-and-place tasks (a fresh reset of the data env, its
    random target) that the oracle completes: the env's ``info["success"]`` when the oracle says
    it is done (or after ``max_steps``). Noiseless by default: a property of the oracle."""
    from smac_core.rollout import derived_seed

    env = make_data_env(scene, max_steps)
    oracle = make_oracle(env, dataset_type, noise, 0.5, 0.4)
    successes = 0
    with global_numpy_seed(derived_seed(seed, ORACLE_STREAM, 1)):
        for k in range(episodes):
            ob, info = env.reset(seed=derived_seed(seed, EPISODE_STREAM, 10**6 + k))
            oracle.reset(ob, info)
            for _ in range(max_steps):
                ob, _, _, _, info = env.step(np.clip(oracle.select_action(ob, info), -1, 1))
                if oracle.done:
                    break
            successes += bool(info["success"])
    env.close()
    return successes / episodes


# ---------------------------------------------------------------------------------- download
def download(task: tasks.Task, scene: str, dataset_type: str, directory: Path) -> TransitionDataset:
    """The official OGBench dataset of ``task`` (ogbench's own download and single-task
    relabelling), as a dataset; ``SmacError`` when the download fails (no internet)."""
    ogbench = require_ogbench()
    official = f"{scene}-{dataset_type}-singletask-v0"
    try:
        _, data, _ = ogbench.make_env_and_datasets(official, dataset_dir=str(directory))
    except Exception as exc:  # network and server errors of any kind
        raise SmacError(f"downloading the official OGBench dataset '{official}' into "
                        f"{directory} failed ({type(exc).__name__}: {exc}); it needs internet "
                        "access. Without it, generate the data locally: drop --download") from None
    terminals = data["masks"] == 0
    ends = data["terminals"].astype(bool) | terminals
    return TransitionDataset(
        observations=data["observations"], actions=data["actions"], rewards=data["rewards"],
        next_observations=data["next_observations"], terminals=terminals,
        timeouts=ends & ~terminals, episode_ends=ends, env_id=task.name,
        metadata={"source": f"OGBench official dataset {official} (downloaded)"})


# ---------------------------------------------------------------------------------- command
def generate(args: argparse.Namespace) -> Path:
    from smac_core.data.minari_store import store_root, write_minari

    task, scene, dataset_type = parse_target(args.task)
    require_ogbench()
    check_seed(args.seed)
    for flag in ("episodes", "episode_steps"):
        if getattr(args, flag) < 1:
            raise SmacError(f"--{flag.replace('_', '-')} must be a positive integer")
    if args.noise < 0:
        raise SmacError("--noise must be >= 0")
    started = time.perf_counter()
    if args.download:
        data = download(task, scene, dataset_type, store_root().parent / "ogbench_downloads")
    else:
        data = collect(task, scene, dataset_type, args.episodes, args.seed,
                       episode_steps=args.episode_steps, noise=args.noise,
                       noise_smoothing=args.noise_smoothing, min_norm=args.min_norm,
                       p_random_action=args.p_random_action)
        data.metadata["source"] = (f"smac_core.ogbench_data: OGBench's {dataset_type} procedure "
                                   f"with ogbench's oracle, relabelled for {task.env_id}")
    seconds = time.perf_counter() - started
    data.metadata["generation_seconds"] = round(seconds, 1)
    env = tasks.make_env(task.name)
    path = write_minari(data, task.dataset_id, env, overwrite=args.overwrite)
    env.close()
    subtasks = data.metadata.get("oracle_subtasks")
    oracle = (f"; oracle sub-tasks {data.metadata['oracle_subtask_successes']}/{subtasks} "
              "succeeded" if subtasks else "")
    print(f"{task.dataset_id}: {data.metadata.get('play_episodes', data.num_episodes)} play "
          f"episodes, {data.size} transitions ({data.num_episodes} stored episodes, "
          f"{int(data.terminals.sum())} terminal success transitions){oracle}, "
          f"{seconds:.0f} s")
    return path


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m smac_core.generate",
                       description=__doc__.replace("``", ""),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", help=f"an OGBench task: {', '.join(ogbench_tasks())}")
    p.add_argument("--episodes", type=int, default=1000,
                   help="play episodes (default: 1000, OGBench's; 1M transitions)")
    p.add_argument("--episode-steps", type=int, default=1000,
                   help="transitions per play episode (default: 1000, OGBench's)")
    p.add_argument("--noise", type=float, default=0.1,
                   help="play: waypoint noise level; noisy: the maximum action noise xi "
                        "(default: 0.1, OGBench's)")
    p.add_argument("--noise-smoothing", type=float, default=0.5,
                   help="play: Gaussian smoothing sigma of the waypoint noise (default: 0.5)")
    p.add_argument("--min-norm", type=float, default=0.4,
                   help="noisy: the Markov oracle's minimum action norm (default: 0.4)")
    p.add_argument("--p-random-action", type=float,
                   help="probability of a uniform random action (default: 0 for play, 0.1 for "
                        "noisy, as OGBench)")
    p.add_argument("--seed", type=int, default=0, help="seeds oracle and resets (default: 0)")
    p.add_argument("--download", action="store_true",
                   help="fetch the official OGBench dataset instead (needs internet)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    return p


def is_target(argv: Sequence[str]) -> bool:
    """Whether a ``generate`` command line names an OGBench task (its first positional)."""
    positional = [a for a in argv if not a.startswith("-")]
    return bool(positional) and positional[0] in ogbench_tasks()


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    generate(build_parser().parse_args(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
