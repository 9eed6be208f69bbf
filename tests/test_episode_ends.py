"""Episode ends of imported demonstrations: the Adroit envs never terminate, so the end of a door
demonstration is a truncation (the TD target bootstraps there), not a terminal state; every
demonstration keeps its last transition; ``--episode-ends terminal`` restores terminal ends."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DOOR_HUMAN
from test_data_formats import synthetic_episodes, write_d4rl

from smac_core import tasks
from smac_core.data import load_dataset
from smac_core.data.__main__ import main
from smac_core.data.buffers import ReplayBuffer

DOOR_HDF5 = DOOR_HUMAN / "door-v0_demos_clipped.hdf5"
DOOR_PICKLE = DOOR_HUMAN / "door-v0_demos.pickle"
DOOR_ID = "local/door/human-binary-v0"
README_IMPORT = ["import", str(DOOR_HDF5), "--id", DOOR_ID, "--env", "AdroitHandDoor-v1",
                 "--reward", "binary", "--ignore-timeouts"]


def test_never_terminates_is_the_adroit_hand_family():
    for name in ("door-binary", "pen-binary", "relocate-binary", "AdroitHandHammer-v1"):
        assert tasks.never_terminates(name)
    for name in ("hopper-medium-replay", "Walker2d-v5", "kitchen-partial", "Pendulum-v1"):
        assert not tasks.never_terminates(name)


def test_door_hdf5_imported_as_in_the_readme_ends_in_truncations(minari_root, capsys):
    assert main(README_IMPORT) == 0
    imported = capsys.readouterr().out
    assert main(["show", DOOR_ID]) == 0
    shown = capsys.readouterr().out
    assert "terminals         0\n" in shown and "timeouts          25\n" in shown
    assert "0 terminal ends (episode ends: truncation)" in imported

    dataset = load_dataset(DOOR_ID)
    assert (dataset.num_episodes, dataset.size) == (25, 6729)  # every last transition is kept
    assert not dataset.terminals.any()
    np.testing.assert_array_equal(dataset.timeouts, dataset.episode_ends)
    # the file has no observation after a demonstration's last action: the last transition
    # bootstraps from its own observation, a placeholder
    ends = dataset.episode_ends
    np.testing.assert_array_equal(dataset.next_observations[ends], dataset.observations[ends])
    buffer = ReplayBuffer.from_dataset(dataset, "cpu")
    assert torch.equal(buffer.storage["dones"], torch.zeros(6729))


def test_door_pickle_keeps_every_transition_and_ends_in_truncations(minari_root):
    assert main(["import", str(DOOR_PICKLE), "--id", "test/door-pickle-v0",
                 "--env", "door-binary"]) == 0
    pickled = load_dataset("test/door-pickle-v0")
    assert (pickled.num_episodes, pickled.size) == (25, 6729)
    assert not pickled.terminals.any() and pickled.timeouts.sum() == 25
    np.testing.assert_array_equal(pickled.timeouts, pickled.episode_ends)
    assert ReplayBuffer.from_dataset(pickled, "cpu").storage["dones"].sum() == 0
    assert main(README_IMPORT) == 0
    np.testing.assert_array_equal(pickled.episode_lengths(),
                                  load_dataset(DOOR_ID).episode_lengths())


def test_episode_ends_terminal_restores_the_files_terminals(minari_root, capsys):
    assert main([*README_IMPORT, "--episode-ends", "terminal"]) == 0
    assert "25 terminal ends (episode ends: terminal)" in capsys.readouterr().out
    dataset = load_dataset(DOOR_ID)
    assert dataset.size == 6729 and not dataset.timeouts.any()
    np.testing.assert_array_equal(dataset.terminals, dataset.episode_ends)
    dones = ReplayBuffer.from_dataset(dataset, "cpu").storage["dones"].numpy()
    np.testing.assert_array_equal(dones, dataset.episode_ends.astype(np.float32))


@pytest.mark.parametrize(("flag", "terminals"), [([], [False, True]),
                                                 (["--episode-ends", "truncation"], [False] * 2)])
def test_auto_keeps_the_files_terminals_for_envs_that_terminate(tmp_path, minari_root, flag,
                                                                terminals):
    path = write_d4rl(tmp_path / "data.hdf5", synthetic_episodes([3, 2]), ["timeout", "terminal"])
    assert main(["import", str(path), "--id", "test/synthetic-v0", "--env", "Pendulum-v1",
                 *flag]) == 0
    dataset = load_dataset("test/synthetic-v0")
    assert dataset.size == 5  # the timeout episode keeps its last transition too
    assert dataset.terminals[dataset.episode_ends].tolist() == terminals
    assert (dataset.terminals | dataset.timeouts)[dataset.episode_ends].all()
