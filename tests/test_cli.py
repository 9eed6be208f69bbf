"""What every command line shares: pasteable echoed commands."""

from __future__ import annotations

import shlex

import pytest

from smac_core.cli import command_line, module_command
from smac_core.data.minari_store import creation_command

SCORE_MODEL = 'score_model={"steps": 2000}'


@pytest.mark.parametrize("command", [
    ["python", "-m", "smac_core.train", "offline", "--set", SCORE_MODEL, "--out", "runs/a b"],
    ["python -m smac_core.train", "offline", "--set", SCORE_MODEL, "--out", "it's here"],
])
def test_an_echoed_command_splits_back_into_the_same_argv(command):
    line = command_line(command)
    assert shlex.split(line) == [*command[0].split(), *command[1:]]


def test_the_quickstart_echo_is_pasteable(monkeypatch, capsys):
    from smac_core import quickstart

    seen = []
    argv = ["python", "-m", "smac_core.train", "offline", "--set", SCORE_MODEL]
    quickstart.run_step("a step", lambda args: seen.append(args) or 0, argv)
    echoed = capsys.readouterr().out.splitlines()[-1]
    assert echoed.startswith("$ ") and shlex.split(echoed[2:]) == argv
    assert seen == [argv[3:]]


def test_missing_dataset_commands_are_pasteable(tmp_path, monkeypatch):
    from smac_core.data import minari_store

    embedded = tmp_path / "a dir" / "door.hdf5"
    monkeypatch.setattr(minari_store, "EMBEDDED_DOOR_HUMAN", embedded)
    argv = shlex.split(creation_command("local/door/human-binary-v0"))
    assert argv[:5] == ["python", "-m", "smac_core.data", "import", str(embedded)]
    assert shlex.split(module_command("smac_core.data", ["show", "a b"]))[-1] == "a b"


def test_runner_records_hold_a_pasteable_line():
    from smac_core.experiments import command_record

    record = command_record("smac_core.train", ["offline", "--set", SCORE_MODEL])
    assert record["command"] == ["python -m smac_core.train", "offline", "--set", SCORE_MODEL]
    assert shlex.split(record["command_line"]) == ["python", "-m", "smac_core.train", "offline",
                                                   "--set", SCORE_MODEL]
