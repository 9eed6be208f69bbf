"""The local Minari store (root ``$MINARI_DATASETS_PATH``): read, write, list, download.

Writes are atomic: a dataset is built in a hidden temporary directory inside the store (Minari's
listing skips hidden directories) and renamed into place, so an interrupted or failed import
leaves the store as it was.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import minari
import numpy as np
from minari.data_collector import EpisodeBuffer
from minari.dataset.minari_storage import MinariStorage
from minari.namespace import create_namespace, list_local_namespaces
from minari.storage import get_dataset_path

from smac_core import tasks
from smac_core.binary_reward import BinaryReward
from smac_core.cli import module_command
from smac_core.data.dataset import TransitionDataset
from smac_core.errors import SmacError
from smac_core.files import locked, sweep_stale_temporaries

DATASET_ID_RE = re.compile(r"^[-\w]+(/[-\w]+)*/[-\w]+-v\d+$")
EMBEDDED_DOOR_HUMAN = Path(__file__).resolve().parent / "embedded" / "door-v0_demos_clipped.hdf5"
"""The 25 real door-human demonstrations shipped with the package (see embedded/PROVENANCE.md)."""


# ---------------------------------------------------------------------------------- listing
def store_root() -> Path:
    """The Minari store's root directory (created if missing)."""
    return get_dataset_path()


def local_dataset_ids() -> list[str]:
    """Ids of the datasets in the local store, sorted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari warns about each misconfigured directory
        return list(minari.list_local_datasets())


def creation_command(dataset_id: str) -> str:
    """The command that puts ``dataset_id`` into the local store, quoted so that it can be
    pasted into a shell (PATH and ENV_ID stand for what the user supplies)."""
    task = tasks.find_task(dataset_id=dataset_id)
    if task is None:
        return (f"{data_command('import', 'PATH', '--id', dataset_id, '--env', 'ENV_ID')}, or "
                "for a dataset published on Minari's servers: "
                f"{data_command('show', dataset_id, '--download')}")
    if task.family in ("mujoco", "ogbench"):
        return data_command("generate", task.name)
    if task.family == "kitchen":
        return data_command("show", dataset_id, "--download")
    if task.name == "door-binary":
        return data_command("import", str(EMBEDDED_DOOR_HUMAN), "--id", dataset_id, "--env",
                            task.env_id, "--reward", "binary", "--ignore-timeouts")
    demos = task.name.split("-")[0]
    return (data_command("import", f"PATH/TO/{demos}-human.hdf5", "--id", dataset_id,
                         "--env", task.env_id, "--reward", "binary")
            + f"  (a D4RL hdf5, DAPG pickle or AWAC .npy file of {demos} demonstrations)")


def data_command(*argv: str) -> str:
    return module_command("smac_core.data", argv)


def missing_dataset_message(dataset_id: str) -> str:
    stored = local_dataset_ids()
    return (f"dataset '{dataset_id}' is not in the local Minari store {store_root()}; stored "
            f"there: {', '.join(stored) if stored else 'nothing'}. Create it with:\n  "
            f"{creation_command(dataset_id)}")


# ---------------------------------------------------------------------------------- reading
def read_minari(dataset_id: str, download: bool = False) -> TransitionDataset:
    """A dataset of the local store; downloaded from Minari's servers first only if ``download``.

    Dict observations (Kitchen) are read as their ``"observation"`` entry. ``env_id`` is the task
    name when the dataset's env and reward are a task's (so ``make_env`` and ``episode_score``
    apply that task's wrappers and reference returns), else the gymnasium id.
    """
    if dataset_id not in local_dataset_ids():
        if not download:
            raise SmacError(missing_dataset_message(dataset_id))
        try:
            minari.download_dataset(dataset_id)
        except Exception as exc:  # network and server errors of any kind
            raise SmacError(f"downloading '{dataset_id}' failed: {exc}") from None
    source = minari.load_dataset(dataset_id)
    episodes = [{"observations": _flat_observations(episode.observations, dataset_id),
                 "actions": episode.actions, "rewards": episode.rewards,
                 "terminals": episode.terminations, "truncations": episode.truncations}
                for episode in source.iterate_episodes()]
    env_spec = source.spec.env_spec
    metadata = {"observation_space": str(source.observation_space),
                "action_space": str(source.action_space),
                **source.storage.metadata.get("smac_import", {})}
    return TransitionDataset.from_episodes(
        episodes, env_id=None if env_spec is None else _env_name(env_spec),
        dataset_id=dataset_id, metadata=metadata)


def _flat_observations(observations: Any, dataset_id: str) -> np.ndarray:
    if isinstance(observations, dict):
        if "observation" not in observations:
            raise SmacError(f"dataset '{dataset_id}' has dict observations without an "
                            f"'observation' entry (keys: {sorted(observations)})")
        return observations["observation"]
    return observations


def _env_name(env_spec: gym.envs.registration.EnvSpec) -> str:
    wrappers = {wrapper.name for wrapper in env_spec.additional_wrappers}
    reward = "binary" if BinaryReward.__name__ in wrappers else "dense"
    task = tasks.find_task(env_id=env_spec.id, reward=reward)
    return env_spec.id if task is None else task.name


# ---------------------------------------------------------------------------------- writing
def check_spaces(dataset: TransitionDataset, env: gym.Env) -> None:
    """``SmacError`` naming both shapes if the dataset's observations or actions do not fit."""
    env_name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    for what, data_shape, space in (
            ("observations", dataset.observations.shape[1:], env.observation_space),
            ("actions", dataset.actions.shape[1:], env.action_space)):
        if data_shape != space.shape:
            raise SmacError(f"dataset {what} have shape {data_shape} but {env_name}'s "
                            f"{what[:-1]} space has shape {space.shape}")


def write_minari(dataset: TransitionDataset, dataset_id: str, env: gym.Env,
                 overwrite: bool = False) -> Path:
    """Store ``dataset`` as Minari dataset ``dataset_id`` recorded with ``env``'s spec (so that
    ``recover_environment`` rebuilds it, wrappers included); returns the dataset's directory.

    Refuses an existing id unless ``overwrite``; the replacement is swapped in by renames,
    with the store locked (``smac_core.files``): the staging and retired copies a killed import
    left behind are removed by the next one.
    """
    if not DATASET_ID_RE.fullmatch(dataset_id):
        raise SmacError(f"malformed dataset id '{dataset_id}': expected NAMESPACE/NAME-vN, "
                        f"e.g. local/door/human-binary-v0")
    check_spaces(dataset, env)
    try:
        root = store_root()
        with locked(root, flag="dataset store"):
            sweep_stale_temporaries(root, recursive=False)
            return _write_locked(dataset, dataset_id, env, root, overwrite)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise SmacError(f"cannot write dataset '{dataset_id}' to the store: "
                        f"{exc.strerror or exc}{where}; is $MINARI_DATASETS_PATH a writable "
                        "directory?") from exc


def _write_locked(dataset: TransitionDataset, dataset_id: str, env: gym.Env, root: Path,
                  overwrite: bool) -> Path:
    target = root / dataset_id
    if target.exists() and not overwrite:
        raise SmacError(f"dataset '{dataset_id}' already exists in {root}; pass --overwrite to "
                        f"replace it")
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        storage = MinariStorage.new(staging / "data", observation_space=env.observation_space,
                                    action_space=env.action_space, env_spec=env.spec,
                                    data_format="hdf5", jpeg_encoding=False)
        storage.update_metadata({
            "dataset_id": dataset_id, "minari_version": minari.__version__,
            "description": _description(dataset),
            "smac_import": {k: v for k, v in dataset.metadata.items()
                            if isinstance(v, str | int | float | bool)}})
        storage.update_episodes(
            EpisodeBuffer(id=index, observations=episode["observations"],
                          actions=episode["actions"], rewards=episode["rewards"],
                          terminations=episode["terminals"], truncations=episode["truncations"])
            for index, episode in enumerate(dataset.episodes()))
        namespace = dataset_id.rsplit("/", 1)[0]
        if namespace not in list_local_namespaces():
            create_namespace(namespace)
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=".retired-", dir=root))
            target.rename(retired / "dataset")
            staging.rename(target)
            shutil.rmtree(retired)
        else:
            staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def _description(dataset: TransitionDataset) -> str:
    source = dataset.metadata.get("source", "a TransitionDataset")
    reward = dataset.metadata.get("reward", "as recorded")
    return f"Imported by smac_core.data from {source}; reward: {reward}."
