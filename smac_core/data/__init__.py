"""Offline datasets: one in-memory form (``TransitionDataset``), one on-disk store (Minari).

``load_dataset`` is the one entry point the trainer uses; ``python -m smac_core.data`` imports
files into the store and shows what it holds. The readers (h5py, Minari) are imported when a
dataset is read, so that the command line answers ``--help`` at once.
"""

from __future__ import annotations

from pathlib import Path

from smac_core import tasks
from smac_core.data.dataset import TransitionDataset
from smac_core.errors import SmacError

FILE_SUFFIXES = (".hdf5", ".h5", ".pickle", ".pkl", ".npy")

__all__ = ["TransitionDataset", "load_dataset", "missing_dataset"]


def _dataset_id(name: str) -> str:
    """A task's dataset id (``hopper-medium-replay`` -> its Minari id), else ``name`` itself."""
    task = tasks.find_task(name)
    return name if task is None else task.dataset_id


def load_dataset(name: str, download: bool = False) -> TransitionDataset:
    """A Minari id in the local store, a task name (its ``dataset_id``) or a file path (D4RL
    hdf5, DAPG pickle, AWAC ``.npy``). Minari downloads only when ``download`` is True."""
    from smac_core.data.formats import read_file
    from smac_core.data.minari_store import read_minari

    path = Path(name)
    if path.is_file():
        return read_file(path)
    if path.suffix in FILE_SUFFIXES:
        raise SmacError(f"{path} is a directory, not a data file" if path.is_dir()
                        else f"no such file: {path}")
    return read_minari(_dataset_id(name), download)


def missing_dataset(name: str) -> str | None:
    """Why ``load_dataset(name)`` would find no data, with the command that makes it (None when
    the file, or the id in the local store, is there)."""
    from smac_core.data.minari_store import creation_command, local_dataset_ids

    path = Path(name)
    if path.is_file():
        return None
    if path.suffix in FILE_SUFFIXES:
        return f"no such file: {path}"
    dataset_id = _dataset_id(name)
    if dataset_id in local_dataset_ids():
        return None
    return f"{dataset_id} is not in the local store; make it with: {creation_command(dataset_id)}"
