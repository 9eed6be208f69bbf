"""The local Minari store: each file format round-trips through it unchanged, the CLI imports,
lists and shows, and bad input leaves the store exactly as it was."""

from __future__ import annotations

import pickle

import gymnasium as gym
import minari
import numpy as np
import pytest
from test_data_formats import synthetic_episodes, write_d4rl

from smac_core.binary_reward import BinaryReward
from smac_core.data import load_dataset
from smac_core.data.__main__ import main
from smac_core.data.dataset import TransitionDataset
from smac_core.data.formats import read_file
from smac_core.data.minari_store import read_minari, write_minari
from smac_core.errors import SmacError
from smac_core.files import LOCK_FILE

ENV_ID = "Pendulum-v1"  # observations (3,), actions (1,): the synthetic files' dimensions
ARRAYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
          "episode_ends")


def assert_same_arrays(a: TransitionDataset, b: TransitionDataset) -> None:
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def write_all_formats(tmp_path):
    """One synthetic file per format, same episodes."""
    episodes = synthetic_episodes([5, 3, 4])
    hdf5 = write_d4rl(tmp_path / "d4rl.hdf5", episodes, ["timeout", "terminal", "timeout"])
    dapg = tmp_path / "dapg.pickle"
    dapg.write_bytes(pickle.dumps([{"observations": e["observations"][:-1],
                                    "actions": e["actions"], "rewards": e["rewards"]}
                                   for e in episodes]))
    demos = np.empty(len(episodes), dtype=object)
    for i, e in enumerate(episodes):
        demos[i] = {"observations": e["observations"][:-1],
                    "next_observations": e["observations"][1:], "actions": e["actions"],
                    "rewards": e["rewards"], "terminals": np.zeros(len(e["actions"]), bool)}
    np.save(tmp_path / "awac.npy", demos, allow_pickle=True)
    return [hdf5, dapg, tmp_path / "awac.npy"]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["d4rl_hdf5", "dapg_pickle", "awac_npy"])
def test_round_trip_of_each_format(tmp_path, minari_root, index):
    path = write_all_formats(tmp_path)[index]
    original = read_file(path)
    write_minari(original, "test/synthetic-v0", gym.make(ENV_ID))
    stored = read_minari("test/synthetic-v0")
    assert_same_arrays(original, stored)
    assert stored.env_id == ENV_ID and stored.dataset_id == "test/synthetic-v0"
    assert stored.metadata["source"] == str(path)
    assert minari.load_dataset("test/synthetic-v0").recover_environment().spec.id == ENV_ID


@pytest.mark.parametrize(("env_args", "task", "dims", "max_steps"), [
    (["--env", "AdroitHandDoor-v1", "--reward", "binary"], "door-binary", (39, 28), 200),
    (["--env", "AdroitHandPen-v1", "--reward", "binary"], "pen-binary", (45, 24), 100),
    (["--env", "pen-binary"], "pen-binary", (45, 24), 100),
])
def test_binary_dataset_recovers_the_binary_task_env(tmp_path, minari_root, env_args, task, dims,
                                                     max_steps):
    rng = np.random.default_rng(0)
    episodes = [{"observations": rng.normal(size=(4, dims[0])),
                 "actions": rng.uniform(-1, 1, (4, dims[1])), "rewards": np.zeros(4)}]
    (tmp_path / "demos.pkl").write_bytes(pickle.dumps(episodes))
    assert main(["import", str(tmp_path / "demos.pkl"), "--id", "test/demos-v0", *env_args]) == 0
    dataset = load_dataset("test/demos-v0")
    assert dataset.env_id == task and set(dataset.rewards) == {-1.0}
    env = minari.load_dataset("test/demos-v0").recover_environment()
    assert isinstance(env, BinaryReward) and env.spec.max_episode_steps == max_steps


def test_conflicting_reward_for_a_task_is_refused(tmp_path, minari_root, capsys):
    assert main(["import", str(write_all_formats(tmp_path)[1]), "--id", "test/x-v0",
                 "--env", "door-binary", "--reward", "dense"]) == 2
    assert "task 'door-binary' has a binary reward" in capsys.readouterr().err


def test_cli_import_list_show(tmp_path, minari_root, capsys):
    path = write_all_formats(tmp_path)[0]
    assert main(["import", str(path), "--id", "test/synthetic-v0", "--env", ENV_ID]) == 0
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "test/synthetic-v0  env=Pendulum-v1  episodes=3  transitions=12" in listing
    assert main(["show", "test/synthetic-v0"]) == 0
    out = capsys.readouterr().out
    assert "episodes          3" in out and "observation_space Box([-1. -1. -8.]" in out


@pytest.mark.parametrize(("fraction", "episodes"), [(0.25, 1), (5 / 12, 1), (0.42, 2),
                                                  (8 / 12, 2), (0.67, 3), (1.0, 3)])
def test_subset_keeps_the_first_whole_episodes(tmp_path, minari_root, capsys, fraction, episodes):
    """Stored episodes of 5, 3 and 4 transitions (12): a fraction keeps the fewest first episodes
    that hold at least that share of the transitions (5/12 and 8/12 are the edges)."""
    path = write_all_formats(tmp_path)[0]
    assert main(["import", str(path), "--id", "test/synthetic-v0", "--env", ENV_ID]) == 0
    assert main(["subset", "test/synthetic-v0", "--fraction", str(fraction),
                 "--id", "test/first-v0"]) == 0
    full, subset = load_dataset("test/synthetic-v0"), load_dataset("test/first-v0")
    assert subset.num_episodes == episodes
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(subset, name),
                                      getattr(full, name)[:subset.size], err_msg=name)
    assert subset.env_id == ENV_ID and subset.metadata["subset_of"] == "test/synthetic-v0"
    assert f"{episodes} of 3 episodes" in capsys.readouterr().out


def test_subset_refuses_a_bad_fraction_and_writes_nothing(tmp_path, minari_root, capsys):
    path = write_all_formats(tmp_path)[0]
    assert main(["import", str(path), "--id", "test/synthetic-v0", "--env", ENV_ID]) == 0
    before = store_contents(minari_root)
    assert main(["subset", "test/synthetic-v0", "--fraction", "0", "--id", "test/x-v0"]) == 2
    assert "--fraction must be in (0, 1], got 0.0" in capsys.readouterr().err
    assert store_contents(minari_root) == before


def test_existing_id_is_refused_unless_overwrite(tmp_path, minari_root, capsys):
    hdf5, dapg, _ = write_all_formats(tmp_path)
    assert main(["import", str(hdf5), "--id", "test/synthetic-v0", "--env", ENV_ID]) == 0
    assert main(["import", str(dapg), "--id", "test/synthetic-v0", "--env", ENV_ID]) == 2
    assert "already exists" in capsys.readouterr().err
    assert read_minari("test/synthetic-v0").metadata["format"] == "d4rl_hdf5"
    assert main(["import", str(dapg), "--id", "test/synthetic-v0", "--env", ENV_ID,
                 "--overwrite"]) == 0
    assert read_minari("test/synthetic-v0").metadata["format"] == "dapg_pickle"
    # no staging or retired copies left (the store's lock file stays, smac_core.files)
    assert sorted(p.name for p in minari_root.iterdir() if p.name != LOCK_FILE) == ["test"]


def test_unknown_dataset_id_lists_local_ids_and_the_command(tmp_path, minari_root, capsys):
    write_minari(read_file(write_all_formats(tmp_path)[0]), "test/synthetic-v0",
                 gym.make(ENV_ID))
    with pytest.raises(SmacError, match=r"stored there: test/synthetic-v0.*\n.*"
                                        r"import .*door-v0_demos_clipped.hdf5 --id "
                                        r"local/door/human-binary-v0 --env AdroitHandDoor-v1 "
                                        r"--reward binary"):
        load_dataset("door-binary")
    with pytest.raises(SmacError, match=r"smac_core\.data generate hopper-medium-replay"):
        load_dataset("local/hopper/medium-replay-v0")
    with pytest.raises(SmacError, match=r"show D4RL/kitchen/partial-v2 --download"):
        load_dataset("kitchen-partial")
    assert main(["show", "nobody/nothing-v3"]) == 2
    assert "error: dataset 'nobody/nothing-v3' is not in the local Minari store" in (
        capsys.readouterr().err)


def store_contents(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_mismatched_spaces_name_both_shapes_and_write_nothing(tmp_path, minari_root, capsys):
    path = write_all_formats(tmp_path)[0]
    before = store_contents(minari_root)
    assert main(["import", str(path), "--id", "test/synthetic-v0", "--env", "Hopper-v5"]) == 2
    assert ("dataset observations have shape (3,) but Hopper-v5's observation space has shape "
            "(11,)") in capsys.readouterr().err
    assert store_contents(minari_root) == before


@pytest.mark.parametrize("bad", ["not_a_format", "nan", "lengths", "evil_pickle"])
def test_bad_files_exit_non_zero_and_write_nothing(tmp_path, minari_root, capsys, bad):
    episodes = synthetic_episodes([4, 3])
    path = tmp_path / "bad.hdf5"
    if bad == "not_a_format":
        path.write_text("observations,actions\n")
    elif bad == "nan":
        observations = np.concatenate([e["observations"][:-1] for e in episodes])
        observations[2, 0] = np.inf
        write_d4rl(path, episodes, ["timeout", "timeout"], observations=observations)
    elif bad == "lengths":
        write_d4rl(path, episodes, ["timeout", "timeout"], actions=np.zeros((5, 1)))
    else:
        path.write_bytes(pickle.dumps([{"observations": {1, 2}, "f": gym.make}]))
    before = store_contents(minari_root)
    assert main(["import", str(path), "--id", "test/bad-v0", "--env", ENV_ID]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert store_contents(minari_root) == before


def test_failure_while_writing_leaves_no_partial_dataset(tmp_path, minari_root, monkeypatch):
    dataset = read_file(write_all_formats(tmp_path)[0])
    write_minari(dataset, "test/synthetic-v0", gym.make(ENV_ID))
    before = store_contents(minari_root)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("minari.dataset._storages.hdf5_storage.HDF5Storage.update_episodes", fail)
    for dataset_id in ("test/synthetic-v0", "test/other-v0"):
        with pytest.raises(SmacError, match=r"cannot write dataset .*: disk full"):
            write_minari(dataset, dataset_id, gym.make(ENV_ID), overwrite=True)
        assert store_contents(minari_root) == before
    assert_same_arrays(read_minari("test/synthetic-v0"), dataset)


def test_malformed_id_is_refused(tmp_path, minari_root):
    dataset = read_file(write_all_formats(tmp_path)[0])
    with pytest.raises(SmacError, match="expected NAMESPACE/NAME-vN"):
        write_minari(dataset, "no-version", gym.make(ENV_ID))


def test_load_dataset_accepts_a_file_path(tmp_path, minari_root):
    path = write_all_formats(tmp_path)[2]
    assert_same_arrays(load_dataset(str(path)), read_file(path))
    with pytest.raises(SmacError, match="no such file"):
        load_dataset(str(tmp_path / "missing.hdf5"))
