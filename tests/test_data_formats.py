"""Readers of D4RL hdf5, DAPG pickles and AWAC .npy files, on small synthetic files, and the
restricted unpickler; every bad input gets a SmacError that names the problem."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import pytest

from smac_core.data import TransitionDataset
from smac_core.data.formats import detect_format, read_file, write_d4rl_hdf5
from smac_core.errors import SmacError

OBS_DIM, ACT_DIM = 3, 1


def synthetic_episodes(lengths: list[int], seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Episodes with T+1 observations for T actions; observations count up so that an
    observation taken from the wrong episode is easy to spot."""
    rng = np.random.default_rng(seed)
    episodes, counter = [], 0.0
    for index, length in enumerate(lengths):
        obs = counter + np.arange(length + 1, dtype=np.float64)[:, None] + np.zeros(OBS_DIM)
        obs[:, 1] = index
        counter += 1000.0
        episodes.append({"observations": obs,
                         "actions": rng.uniform(-1, 1, (length, ACT_DIM)),
                         "rewards": rng.normal(size=length)})
    return episodes


def write_d4rl(path: Path, episodes: list[dict], ends: list[str],
               with_next_observations: bool = False, **overrides: np.ndarray) -> Path:
    """D4RL layout: one row per transition; ``ends[i]`` is "terminal" or "timeout"."""
    arrays: dict[str, list] = {k: [] for k in ("observations", "next_observations", "actions",
                                               "rewards", "terminals", "timeouts")}
    for episode, end in zip(episodes, ends, strict=True):
        length = len(episode["actions"])
        arrays["observations"].append(episode["observations"][:-1])
        arrays["next_observations"].append(episode["observations"][1:])
        arrays["actions"].append(episode["actions"])
        arrays["rewards"].append(episode["rewards"])
        flags = np.zeros(length, bool)
        flags[-1] = True
        arrays["terminals"].append(flags if end == "terminal" else np.zeros(length, bool))
        arrays["timeouts"].append(flags if end == "timeout" else np.zeros(length, bool))
    with h5py.File(path, "w") as file:
        for key, parts in arrays.items():
            if key != "next_observations" or with_next_observations:
                file[key] = overrides.get(key, np.concatenate(parts))
        file["infos/qpos"] = np.zeros((len(file["actions"]), 2))
    return path


def test_d4rl_next_observations_stay_inside_episodes(tmp_path):
    episodes = synthetic_episodes([4, 3, 5])
    path = write_d4rl(tmp_path / "data.bin", episodes, ["timeout", "terminal", "timeout"])
    dataset = read_file(path)

    assert dataset.metadata["format"] == "d4rl_hdf5"
    assert dataset.num_episodes == 3
    # every episode keeps its last transition; its next observation is not in the file, so it
    # is a placeholder, its own observation (never read at the terminal end, bootstrapped from
    # at the timeouts)
    assert dataset.episode_lengths().tolist() == [4, 3, 5]
    assert dataset.metadata["placeholder_next_observations"] == 3
    for sl, episode in zip(dataset.episode_slices(), episodes, strict=True):
        np.testing.assert_array_equal(dataset.observations[sl], episode["observations"][:-1])
        np.testing.assert_array_equal(dataset.next_observations[sl][:-1],
                                      episode["observations"][1:-1])
        np.testing.assert_array_equal(dataset.next_observations[sl][-1],
                                      dataset.observations[sl][-1])
    first, _, third = dataset.episode_slices()
    # never a next observation from another episode: column 1 holds the episode index
    assert np.all(dataset.next_observations[:, 1] == dataset.observations[:, 1])
    assert dataset.terminals.tolist() == [False] * 6 + [True] + [False] * 5
    assert dataset.timeouts[[first.stop - 1, third.stop - 1]].all()


def test_d4rl_with_next_observations_keeps_every_transition(tmp_path):
    episodes = synthetic_episodes([4, 3])
    path = write_d4rl(tmp_path / "data.hdf5", episodes, ["timeout", "timeout"],
                      with_next_observations=True)
    dataset = read_file(path)
    assert dataset.size == 7 and dataset.metadata["placeholder_next_observations"] == 0
    np.testing.assert_array_equal(dataset.next_observations[3], episodes[0]["observations"][4])


def ended_dataset(lengths: list[int], terminal: list[bool]) -> TransitionDataset:
    """Synthetic episodes ending terminal or truncated, as a ``TransitionDataset``."""
    episodes = [{**episode, "terminals": np.arange(length) == length - 1 if ends else
                 np.zeros(length, bool), "truncations": np.zeros(length, bool) if ends else
                 np.arange(length) == length - 1}
                for episode, length, ends in zip(synthetic_episodes(lengths), lengths, terminal,
                                                 strict=True)]
    return TransitionDataset.from_episodes(episodes, env_id="Hopper-v5")


@pytest.mark.parametrize("next_observations", [True, False])
def test_written_d4rl_file_reads_back_as_the_dataset(tmp_path, next_observations):
    dataset = ended_dataset([4, 3, 5], terminal=[False, True, False])
    path = write_d4rl_hdf5(dataset, tmp_path / "out.hdf5", next_observations=next_observations)
    back = read_file(path)

    for key in ("observations", "actions", "rewards", "terminals", "timeouts", "episode_ends"):
        np.testing.assert_array_equal(getattr(back, key), getattr(dataset, key), err_msg=key)
    inside = ~dataset.episode_ends
    np.testing.assert_array_equal(back.next_observations[inside],
                                  dataset.next_observations[inside])
    # without the next observations, each episode's last transition reads back with a
    # placeholder (read only at the two truncated ends: no bootstrap at the terminal one)
    expected = dataset.next_observations if next_observations else dataset.observations
    np.testing.assert_array_equal(back.next_observations[~inside], expected[~inside])
    assert back.metadata["placeholder_next_observations"] == (0 if next_observations else 3)
    assert not list(tmp_path.glob(".*partial"))


def test_export_refuses_to_replace_a_file(tmp_path, capsys):
    from smac_core.data.__main__ import main

    target = tmp_path / "kept.hdf5"
    target.write_bytes(b"already here")
    assert main(["export", "door-binary", str(target)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert target.read_bytes() == b"already here"


def test_d4rl_ignore_timeouts_keeps_episodes_whole(tmp_path):
    episodes = synthetic_episodes([6])
    timeouts = np.zeros(6, bool)
    timeouts[2] = True  # a time-limit mark inside the episode, as in the clipped door-human file
    terminals = np.zeros(6, bool)
    terminals[-1] = True
    path = write_d4rl(tmp_path / "data.hdf5", episodes, ["terminal"], timeouts=timeouts,
                      terminals=terminals)
    assert read_file(path).num_episodes == 2
    whole = read_file(path, ignore_timeouts=True)
    assert whole.num_episodes == 1 and whole.size == 6


def test_dapg_pickle_keeps_the_transition_without_next_observation(tmp_path):
    episodes = synthetic_episodes([5, 4])
    demos = [{"observations": e["observations"][:-1], "actions": e["actions"],
              "rewards": e["rewards"], "init_state_dict": {"qpos": np.zeros(2)}}
             for e in episodes]
    path = tmp_path / "demos.pickle"
    path.write_bytes(pickle.dumps(demos, protocol=2))
    dataset = read_file(path)
    assert dataset.metadata["format"] == "dapg_pickle"
    assert dataset.episode_lengths().tolist() == [5, 4]
    assert dataset.metadata["placeholder_next_observations"] == 2
    assert not dataset.terminals.any() and dataset.timeouts.sum() == 2
    np.testing.assert_allclose(dataset.rewards[:5], episodes[0]["rewards"], rtol=1e-6)


def test_awac_npy_with_observation_dicts_and_extra_reward(tmp_path):
    episodes = synthetic_episodes([5, 3])
    demos = np.empty(len(episodes), dtype=object)
    for i, e in enumerate(episodes):
        demos[i] = {
            "observations": [{"state_observation": o} for o in e["observations"][:-1]],
            "next_observations": [{"state_observation": o} for o in e["observations"][1:]],
            "actions": e["actions"],
            "rewards": np.append(e["rewards"], 99.0),  # T+1 rewards for T actions
            "terminals": np.zeros(len(e["actions"]), bool),
            "env_infos": [{"success": np.bool_(False)}] * len(e["actions"]),
        }
    path = tmp_path / "demos.dat"
    np.save(path, demos, allow_pickle=True)
    dataset = read_file(tmp_path / "demos.dat.npy")
    assert dataset.metadata["format"] == "awac_npy"
    assert dataset.episode_lengths().tolist() == [5, 3]
    assert 99.0 not in dataset.rewards
    np.testing.assert_array_equal(dataset.next_observations[4], episodes[0]["observations"][5])


def test_format_is_detected_by_content(tmp_path):
    path = write_d4rl(tmp_path / "looks_like.npy", synthetic_episodes([3]), ["timeout"])
    assert detect_format(path) == "d4rl_hdf5"


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_asking_for_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps([{"observations": _RunsCode(marker)}]))
    with pytest.raises(SmacError, match=r"refused to unpickle '(posix|os)\.system'"):
        read_file(path)
    assert not marker.exists()


def test_pickle_with_non_numpy_class_is_refused(tmp_path):
    path = tmp_path / "ordered.pickle"
    path.write_bytes(pickle.dumps([OrderedDict(observations=np.zeros((2, 3)))]))
    with pytest.raises(SmacError, match=r"refused to unpickle 'collections\.OrderedDict'"):
        read_file(path)


class _ForgedObjectDtype:
    """Pickles as an object dtype whose flags say it holds no references: numpy would then read
    raw file bytes as object pointers (a crash, or worse) when an array of it is used."""

    def __reduce__(self):
        return (np.dtype, ("O", False, True), (3, "|", None, None, None, -1, -1, 0))


def test_pickle_forging_a_dtype_is_refused_although_it_uses_allowed_globals_only(tmp_path):
    path = tmp_path / "forged.pickle"
    path.write_bytes(pickle.dumps([{"observations": _ForgedObjectDtype()}], protocol=2))
    with pytest.raises(SmacError, match=r"numpy dtype object whose flags \(0\) differ"):
        read_file(path)


def test_npy_object_array_goes_through_the_restricted_unpickler(tmp_path):
    demos = np.empty(1, dtype=object)
    demos[0] = {"observations": OrderedDict()}
    np.save(tmp_path / "demos.npy", demos, allow_pickle=True)
    with pytest.raises(SmacError, match=r"collections\.OrderedDict"):
        read_file(tmp_path / "demos.npy")


@pytest.mark.parametrize("content", [b"episode,reward\n0,1.0\n", b"", b"\x80\x05garbage"])
def test_file_in_none_of_the_formats(tmp_path, content):
    path = tmp_path / "data.hdf5"
    path.write_bytes(content)
    with pytest.raises(SmacError, match=r"not a D4RL hdf5 file, a \.npy file or a pickle"):
        read_file(path)


def test_hdf5_without_d4rl_keys_and_numeric_npy_are_rejected(tmp_path):
    with h5py.File(tmp_path / "other.hdf5", "w") as file:
        file["episode_0/obs"] = np.zeros(3)
    with pytest.raises(SmacError, match=r"without the D4RL keys .*'observations'"):
        read_file(tmp_path / "other.hdf5")
    np.save(tmp_path / "plain.npy", np.zeros((4, 3)))
    with pytest.raises(SmacError, match="object array of episode dicts"):
        read_file(tmp_path / "plain.npy")


def test_missing_file(tmp_path):
    with pytest.raises(SmacError, match="no such file"):
        read_file(tmp_path / "absent.hdf5")


def test_inconsistent_lengths(tmp_path):
    episodes = synthetic_episodes([4, 3])
    path = write_d4rl(tmp_path / "data.hdf5", episodes, ["timeout", "timeout"],
                      rewards=np.zeros(6))
    with pytest.raises(SmacError, match=r"inconsistent lengths: .*rewards=6"):
        read_file(path)
    demos = [{"observations": e["observations"][:-1], "actions": e["actions"][:2],
              "rewards": e["rewards"]} for e in episodes]
    (tmp_path / "demos.pkl").write_bytes(pickle.dumps(demos))
    with pytest.raises(SmacError, match=r"episode 0: arrays of inconsistent lengths: "
                                        r"observations=4, actions=2"):
        read_file(tmp_path / "demos.pkl")


def test_nan_and_inf_are_located(tmp_path):
    episodes = synthetic_episodes([4, 3])
    observations = np.concatenate([e["observations"][:-1] for e in episodes])
    observations[5, 2] = np.nan
    path = write_d4rl(tmp_path / "data.hdf5", episodes, ["timeout", "timeout"],
                      observations=observations)
    with pytest.raises(SmacError, match=r"'observations' has 1 NaN/Inf values.*first: row 5"):
        read_file(path)
    demos = [{"observations": e["observations"][:-1], "actions": e["actions"],
              "rewards": e["rewards"]} for e in episodes]
    demos[1]["actions"] = demos[1]["actions"].copy()
    demos[1]["actions"][2, 0] = np.inf
    (tmp_path / "demos.pkl").write_bytes(pickle.dumps(demos))
    with pytest.raises(SmacError, match=r"episode 1 'actions' has 1 NaN/Inf.*first: step 2"):
        read_file(tmp_path / "demos.pkl")


def test_next_observations_that_contradict_observations_are_rejected(tmp_path):
    episodes = synthetic_episodes([4])
    next_observations = episodes[0]["observations"][1:].copy()
    next_observations[1] += 0.5
    path = write_d4rl(tmp_path / "data.hdf5", episodes, ["timeout"],
                      with_next_observations=True, next_observations=next_observations)
    with pytest.raises(SmacError, match="next observation of step 1 differs"):
        read_file(path)
