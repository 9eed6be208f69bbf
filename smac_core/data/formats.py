"""Readers of offline RL files into a ``TransitionDataset``: D4RL hdf5, DAPG pickles, AWAC ``.npy``.

The format is detected from the file's content (HDF5 and ``.npy`` magic bytes, else a pickle),
not from its extension. Pickled content (DAPG pickles, ``.npy`` object arrays) goes through
``RestrictedUnpickler``, which admits numpy arrays, dtypes and scalars and builtin containers
only, so a file can never run code while it is read.

Episode ends. ``episode_ends="terminal"`` keeps the file's ``terminals`` as terminal states (no
bootstrap); every other episode end is a truncation. ``episode_ends="truncation"`` makes every
episode end a truncation: the right reading of data from an env that never terminates (the
Adroit hand envs only truncate at their time limit, so a demonstration that stopped was cut, not
finished; ``python -m smac_core.data import`` chooses by env, ``tasks.never_terminates``).

Every transition of the file is kept. The last transition of an episode needs the observation
that followed it; where a file does not hold that observation (D4RL hdf5 without
``next_observations``; DAPG pickles, which have one observation per action), its next
observation is stored as a copy of its own observation (a placeholder). At a terminal end the
placeholder is never read (``dones`` = 1). At a truncated end (``dones`` = 0) the TD target
bootstraps from it, i.e. approximates V(s_T) by V(s_{T-1}) at that one transition per episode;
files with next observations (AWAC ``.npy``, D4RL hdf5 with ``next_observations``) bootstrap
from the real one. ``metadata["placeholder_next_observations"]`` counts the placeholders.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np

from smac_core.data.dataset import TransitionDataset
from smac_core.errors import SmacError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"
FORMATS = ("d4rl_hdf5", "awac_npy", "dapg_pickle")
EPISODE_ENDS = ("terminal", "truncation")
D4RL_KEYS = ("observations", "actions", "rewards", "terminals")
FLAT_KEYS = ("rewards", "terminals", "timeouts")  # one value per row: (N,) or (N, 1)
OBSERVATION_DICT_KEYS = ("observation", "state_observation")


# ---------------------------------------------------------------------------------- pickles
class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that builds numpy arrays, dtypes, scalars, bytes and builtin containers only.

    Any other global a pickle asks for (a class, a function) raises ``SmacError`` naming it.
    Python 2 pickles load too (byte strings are decoded as latin-1, as numpy does).

    It is the pure-Python unpickler so that BUILD can be checked: ``np.dtype.__setstate__``
    takes the dtype's flags from the file, and an object dtype whose flags are forged (its
    "holds references" flag cleared) makes numpy read raw file bytes as object pointers. A
    dtype whose flags differ from those numpy gives the same dtype is refused.
    """

    dispatch: ClassVar[dict] = dict(pickle._Unpickler.dispatch)

    ALLOWED_GLOBALS = frozenset({
        ("numpy", "ndarray"), ("numpy", "dtype"),
        *((module, name)
          for module in ("numpy.core.multiarray", "numpy._core.multiarray")
          for name in ("_reconstruct", "scalar")),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # how protocol-2 pickles spell the bytes inside numpy arrays
        *((module, name)
          for module in ("builtins", "__builtin__")
          for name in ("list", "dict", "tuple", "set", "frozenset", "bytearray")),
    })

    def __init__(self, file: io.BufferedIOBase) -> None:
        super().__init__(file, encoding="latin1")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED_GLOBALS:
            raise SmacError(f"refused to unpickle '{module}.{name}': only numpy arrays and plain "
                            f"containers are allowed in data files")
        return super().find_class(module, name)

    def load_build(self) -> None:
        target = self.stack[-2]  # BUILD pops the state, then sets it on the object below it
        pickle._Unpickler.load_build(self)
        if isinstance(target, np.dtype):
            canonical = np.dtype(target.descr if target.fields else target.str)
            if target.flags != canonical.flags:
                raise SmacError(f"refused a numpy dtype {target} whose flags ({target.flags}) "
                                f"differ from numpy's own ({canonical.flags}): the file is "
                                "crafted or corrupted")

    dispatch[pickle.BUILD[0]] = load_build


def restricted_load(file: io.BufferedIOBase, path: Path) -> Any:
    """Unpickle ``file`` with ``RestrictedUnpickler``; not a pickle stream -> ``SmacError``."""
    try:
        return RestrictedUnpickler(file).load()
    except SmacError:
        raise
    except Exception as exc:  # arbitrary bytes make the unpickler fail in arbitrary ways
        raise SmacError(f"{path} is not a D4RL hdf5 file, a .npy file or a pickle "
                        f"(reading it as a pickle failed: {type(exc).__name__}: {exc}); "
                        f"supported formats: {', '.join(FORMATS)}") from None


# ---------------------------------------------------------------------------------- entry
def detect_format(path: Path) -> str:
    """One of ``FORMATS``, from the first bytes of the file (a pickle when neither magic matches).
    """
    with open(path, "rb") as file:
        head = file.read(8)
    if head.startswith(HDF5_MAGIC):
        return "d4rl_hdf5"
    if head.startswith(NPY_MAGIC):
        return "awac_npy"
    return "dapg_pickle"


def read_file(path: str | Path, ignore_timeouts: bool = False,
              episode_ends: str = "terminal") -> TransitionDataset:
    """Read a D4RL hdf5, DAPG pickle or AWAC ``.npy`` file (detected by content).

    ``ignore_timeouts`` (hdf5 only): ``timeouts`` mark time limits *inside* episodes, not episode
    ends, as in the clipped door-human hdf5 whose demonstrations run on past the 200-step flag
    to a ``terminals`` row. ``episode_ends``: one of ``EPISODE_ENDS`` (module docstring).
    """
    path = Path(path)
    if path.is_dir():
        raise SmacError(f"{path} is a directory, not a data file")
    if not path.is_file():
        raise SmacError(f"no such file: {path}")
    if episode_ends not in EPISODE_ENDS:
        raise SmacError(f"episode_ends must be one of {EPISODE_ENDS}, got {episode_ends!r}")
    file_format = detect_format(path)
    if file_format == "d4rl_hdf5":
        episodes = read_d4rl_hdf5(path, ignore_timeouts)
    elif file_format == "awac_npy":
        episodes = read_awac_npy(path)
    else:
        episodes = read_dapg_pickle(path)
    if episode_ends == "truncation":
        episodes = [{**episode, "terminals": np.zeros_like(episode["terminals"])}
                    for episode in episodes]
    dataset = _dataset_from_episodes(episodes, path)
    dataset.metadata.update(source=str(path), format=file_format, episode_ends=episode_ends)
    return dataset


# ---------------------------------------------------------------------------------- D4RL
def read_d4rl_hdf5(path: Path, ignore_timeouts: bool = False) -> list[dict[str, np.ndarray]]:
    """The episodes of a D4RL hdf5 file: flat (N, ...) arrays ``observations``, ``actions``,
    ``rewards``, ``terminals``, optional ``timeouts`` and ``next_observations``.

    Episodes end at ``terminals`` or ``timeouts`` rows and at the last row. Next observations are
    ``next_observations`` when present, else the following row within the same episode (never
    the first row of the next episode). ``infos/*`` (simulator states) are not read.
    """
    try:
        with h5py.File(path, "r") as file:
            missing = [key for key in D4RL_KEYS if key not in file]
            if missing:
                raise SmacError(f"{path}: an HDF5 file without the D4RL keys {missing} "
                                f"(top-level keys: {sorted(file.keys())})")
            keys = [key for key in (*D4RL_KEYS, "timeouts", "next_observations") if key in file]
            _check_hdf5_layout(path, {key: file[key] for key in keys})
            arrays = {key: file[key][()] for key in keys}
    except OSError as exc:  # h5py's error for truncated or corrupted files
        raise SmacError(f"{path}: cannot read it as HDF5 ({exc}); the file is truncated or "
                        "corrupted") from None
    for key in ("observations", "actions", "rewards", "next_observations"):
        if key in arrays:
            _check_finite(arrays[key], f"{path}: '{key}'", "row")

    terminals = arrays["terminals"].astype(bool).reshape(-1)
    ends = terminals.copy()
    if "timeouts" in arrays and not ignore_timeouts:
        ends |= arrays["timeouts"].astype(bool).reshape(-1)
    ends[-1] = True
    starts = np.concatenate([[0], np.flatnonzero(ends)[:-1] + 1])

    episodes = []
    for start, stop in zip(starts, np.flatnonzero(ends) + 1, strict=True):
        rows = slice(int(start), int(stop))
        observations = arrays["observations"][rows]
        if "next_observations" in arrays:
            observations = _with_next_observations(
                observations, arrays["next_observations"][rows], f"{path}: rows {rows}")
        episodes.append({"observations": observations, "actions": arrays["actions"][rows],
                         "rewards": arrays["rewards"].reshape(-1)[rows],
                         "terminals": terminals[rows]})
    return episodes


def write_d4rl_hdf5(dataset: TransitionDataset, path: str | Path,
                    next_observations: bool = True) -> Path:
    """Write ``dataset`` as a D4RL hdf5 file that ``read_d4rl_hdf5`` reads back: flat (N, ...)
    ``observations``, ``actions``, ``rewards`` (float32), ``terminals`` (bool) and ``timeouts``
    (bool: every episode end that is not terminal, so the episodes read back as they were), and,
    with ``next_observations``, the (N, obs_dim) next observations (without them a
    truncated episode's last transition reads back with a placeholder, module docstring; they
    add about 70% to the file). gzip level 9 with byte shuffling; written to a temporary name
    and renamed, so an interrupted write leaves no partial file at ``path``."""
    path = Path(path)
    if path.is_dir():
        raise SmacError(f"{path} is a directory; give the path of the file to write")
    arrays: dict[str, np.ndarray] = {
        "observations": dataset.observations, "actions": dataset.actions,
        "rewards": dataset.rewards, "terminals": dataset.terminals,
        "timeouts": dataset.episode_ends & ~dataset.terminals}
    if next_observations:
        arrays["next_observations"] = dataset.next_observations
    partial = path.with_name(f".{path.name}.partial")
    try:
        with h5py.File(partial, "w") as file:
            for key, values in arrays.items():
                file.create_dataset(key, data=values, compression="gzip", compression_opts=9,
                                    shuffle=True)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise SmacError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def _check_hdf5_layout(path: Path, items: dict[str, Any]) -> None:
    """``SmacError`` unless every D4RL item is a numeric dataset of the same N > 0 rows,
    (N, dim) for observations and actions, (N,) or (N, 1) for rewards, terminals and timeouts,
    that fits in memory: checked from the file's header, before any data is read."""
    rows = {}
    for key, item in items.items():
        where = f"{path}: '{key}'"
        if not isinstance(item, h5py.Dataset):
            raise SmacError(f"{where} is an HDF5 {type(item).__name__.lower()}, not a dataset")
        if item.dtype.kind not in "biuf":
            raise SmacError(f"{where} holds {item.dtype} data, not numbers")
        flat = key in FLAT_KEYS
        if item.ndim == 0 or (flat and item.shape[1:] not in ((), (1,))) \
                or (not flat and (item.ndim != 2 or item.shape[1] == 0)):
            wanted = "(N,) or (N, 1)" if flat else "(N, dim)"
            raise SmacError(f"{where} has shape {item.shape}; D4RL files have {wanted}")
        rows[key] = item.shape[0]
    if len(set(rows.values())) != 1:
        raise SmacError(f"{path}: arrays of inconsistent lengths: "
                        + ", ".join(f"{k}={v}" for k, v in rows.items()))
    if rows["observations"] == 0:
        raise SmacError(f"{path}: the D4RL arrays hold no rows")
    claimed = sum(item.size * item.dtype.itemsize for item in items.values())
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    if claimed > available:
        raise SmacError(f"{path}: its arrays claim {rows['observations']} rows "
                        f"({claimed / 2**30:.1f} GiB), more than the {available / 2**30:.1f} GiB "
                        "of memory available")


# ---------------------------------------------------------------------------------- DAPG / AWAC
def read_dapg_pickle(path: Path) -> list[dict[str, np.ndarray]]:
    """The episodes of a DAPG demonstration pickle: a list of per-episode dicts with
    ``observations`` (T, obs_dim), ``actions`` (T, act_dim), ``rewards`` (T,) and, ignored,
    ``init_state_dict``."""
    with open(path, "rb") as file:
        episodes = restricted_load(file, path)
    return _episodes_from_dicts(episodes, path)


def read_awac_npy(path: Path) -> list[dict[str, np.ndarray]]:
    """The episodes of an AWAC/CalQL ``.npy`` demonstration file: an object array of episode
    dicts with ``observations`` and ``next_observations`` (arrays, or lists of dicts holding the
    array under ``observation`` or ``state_observation``), ``actions``, ``rewards`` (T, or T+1 of
    which the first T are kept, as CalQL does) and ``terminals``.

    ``np.load(allow_pickle=True)`` would unpickle without restriction; the pickled payload after
    the ``.npy`` header is read with ``RestrictedUnpickler`` instead.
    """
    with open(path, "rb") as file:
        try:
            version = np.lib.format.read_magic(file)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(file)
        except (ValueError, EOFError, SyntaxError) as exc:
            raise SmacError(f"{path}: unreadable .npy header ({exc})") from None
        if dtype != np.dtype(object):
            raise SmacError(f"{path}: a .npy file of {dtype} with shape {shape}; a demonstration "
                            f"file is an object array of episode dicts")
        episodes = restricted_load(file, path)
    return _episodes_from_dicts(episodes, path)


def _episodes_from_dicts(episodes: Any, path: Path) -> list[dict[str, np.ndarray]]:
    """Checked episodes (float64 arrays, bool ``terminals``) from a list of episode dicts."""
    if isinstance(episodes, np.ndarray):
        episodes = episodes.reshape(-1).tolist()
    if not isinstance(episodes, list | tuple) or not all(isinstance(e, Mapping) for e in episodes):
        raise SmacError(f"{path}: expected a list of per-episode dicts; got "
                        f"{type(episodes).__name__}")
    normalised = []
    for index, episode in enumerate(episodes):
        where = f"{path}: episode {index}"
        missing = [k for k in ("observations", "actions", "rewards") if k not in episode]
        if missing:
            raise SmacError(f"{where} lacks {missing} (it has {sorted(episode)})")
        actions = _float_array(episode["actions"], f"{where} 'actions'")
        num_actions = len(actions)
        rewards = _float_array(episode["rewards"], f"{where} 'rewards'").reshape(-1)
        if len(rewards) == num_actions + 1:
            rewards = rewards[:num_actions]
        terminals = np.asarray(episode.get("terminals", np.zeros(num_actions)),
                               dtype=bool).reshape(-1)
        observations = _observation_array(episode["observations"], f"{where} 'observations'")
        if "next_observations" in episode:
            next_observations = _observation_array(episode["next_observations"],
                                                   f"{where} 'next_observations'")
            lengths = {"observations": len(observations), "actions": num_actions,
                       "next_observations": len(next_observations)}
        else:
            next_observations = None
            lengths = {"observations": len(observations), "actions": num_actions}
        lengths.update(rewards=len(rewards), terminals=len(terminals))
        if set(lengths.values()) != {num_actions} or num_actions == 0:
            raise SmacError(f"{where}: arrays of inconsistent lengths: "
                            + ", ".join(f"{k}={v}" for k, v in lengths.items()))
        for key, value in (("observations", observations), ("actions", actions),
                           ("rewards", rewards), ("next_observations", next_observations)):
            if value is not None:
                _check_finite(value, f"{where} '{key}'", "step")
        if next_observations is not None:
            observations = _with_next_observations(observations, next_observations, where)
        normalised.append({"observations": observations, "actions": actions,
                           "rewards": rewards, "terminals": terminals})
    return normalised


def _observation_array(value: Any, where: str) -> np.ndarray:
    """(T, obs_dim) float64 from an array or from a list of dicts holding the observation."""
    if isinstance(value, list | tuple | np.ndarray) and len(value) > 0 and isinstance(
            value[0], Mapping):
        key = next((k for k in OBSERVATION_DICT_KEYS if k in value[0]), None)
        if key is None:
            raise SmacError(f"{where}: observation dicts need one of {OBSERVATION_DICT_KEYS}; "
                            f"got keys {sorted(value[0])}")
        value = [step[key] for step in value]
    array = _float_array(value, where)
    if array.ndim != 2:
        raise SmacError(f"{where}: expected shape (T, obs_dim); got {array.shape}")
    return array


def _float_array(value: Any, where: str) -> np.ndarray:
    """``value`` as a float64 array; ragged or non-numeric content -> ``SmacError``."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SmacError(f"{where}: not a numeric array ({exc})") from None


# ---------------------------------------------------------------------------------- shared
def _with_next_observations(observations: np.ndarray, next_observations: np.ndarray,
                            where: str) -> np.ndarray:
    """(T+1, obs_dim): ``observations`` plus the last next observation, after checking that
    every other next observation is the following observation (one sequence per episode)."""
    mismatch = np.flatnonzero(np.any(next_observations[:-1] != observations[1:], axis=-1))
    if len(mismatch):
        raise SmacError(f"{where}: next observation of step {int(mismatch[0])} differs from the "
                        f"observation of step {int(mismatch[0]) + 1} in the same episode")
    return np.concatenate([observations, next_observations[-1:]])


def _check_finite(values: np.ndarray, what: str, unit: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))
        raise SmacError(f"{what} has {int(bad.sum())} NaN/Inf values, in {len(rows)} {unit}s "
                        f"(first: {unit} {int(rows[0])})")


def _dataset_from_episodes(episodes: list[dict[str, np.ndarray]],
                           path: Path) -> TransitionDataset:
    """Episodes with ``observations`` of T+1 rows (complete) or T rows (the observation after the
    last action is unknown: a placeholder, see the module docstring) -> ``TransitionDataset``."""
    complete, placeholders = [], 0
    for episode in episodes:
        observations, num_actions = episode["observations"], len(episode["actions"])
        if len(observations) == num_actions:
            observations = np.concatenate([observations, observations[-1:]])
            placeholders += 1
        complete.append({**episode, "observations": observations,
                         "truncations": ~episode["terminals"] & _last(num_actions)})
    try:
        dataset = TransitionDataset.from_episodes(complete)
    except SmacError as exc:
        raise SmacError(f"{path}: {exc}") from None
    dataset.metadata["placeholder_next_observations"] = placeholders
    return dataset


def _last(length: int) -> np.ndarray:
    """(length,) bool, True at the last position."""
    flags = np.zeros(length, dtype=bool)
    flags[-1] = True
    return flags
