"""What every command line shares: pasteable echoed commands, described flags, a light --help."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

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
    from studies import quickstart

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
    from studies.experiments import command_record

    record = command_record("smac_core.train", ["offline", "--set", SCORE_MODEL])
    assert record["command"] == ["python -m smac_core.train", "offline", "--set", SCORE_MODEL]
    assert shlex.split(record["command_line"]) == ["python", "-m", "smac_core.train", "offline",
                                                   "--set", SCORE_MODEL]


# ------------------------------------------------------------------------------ --device, --help
def test_device_auto_is_cuda_when_present_and_bad_values_name_the_flag(monkeypatch):
    import torch

    from smac_core.cli import resolve_device
    from smac_core.errors import SmacError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(SmacError, match="--device cuda:1 was requested but no CUDA device"):
        resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [resolve_device(d) for d in ("auto", "cuda", "cuda:1")] == ["cuda", "cuda", "cuda:1"]
    with pytest.raises(SmacError, match="--device cuda:2 was requested but only 2 CUDA"):
        resolve_device("cuda:2")
    with pytest.raises(SmacError, match="--device 'gpu' is not a torch device: use auto, cpu"):
        resolve_device("gpu")


def _parsers(parser):
    """A parser and its subcommands' parsers, recursively."""
    yield parser
    for action in parser._actions:
        for sub in (action.choices or {}).values() if action.nargs == "A..." else ():
            yield from _parsers(sub)


@pytest.mark.parametrize("module", ["smac_core.train", "smac_core.data.__main__",
                                    "smac_core.metrics", "studies.experiments",
                                    "studies.quickstart", "studies.plot",
                                    "landscape.interpolate", "landscape.surface",
                                    "landscape.trajectory", "landscape.path", "landscape.critic",
                                    "landscape.risk", "landscape.risk_validation",
                                    "smac_core.generate"])
def test_every_flag_of_every_command_is_described_and_device_defaults_to_auto(module):
    import importlib

    parsers = list(_parsers(importlib.import_module(module).build_parser()))
    for parser in parsers:
        undocumented = [a.dest for a in parser._actions
                        if a.dest != "help" and not a.help and not a.nargs == "A..."]
        undocumented += [a.dest for a in parser._actions if a.nargs == "A..."
                         for choice in a._choices_actions if not choice.help]
        assert not undocumented, (parser.prog, undocumented)
        text = parser.format_help()
        assert "``" not in text.split("options:")[0], parser.prog  # no docstring markup
    devices = [a for p in parsers for a in p._actions if a.dest == "device"]
    assert all(a.default == "auto" and "auto" in a.help for a in devices)


# every command line and subcommand: `python -m MODULE ARGS... --help`
HELP_COMMANDS = [
    ("smac_core.train", []), ("smac_core.train", ["offline"]), ("smac_core.train", ["online"]),
    ("smac_core.data", []), *[("smac_core.data", [sub]) for sub in
                               ("import", "list", "show", "generate", "subset")],
    ("smac_core.generate", []), ("smac_core.metrics", []),
    ("studies.experiments", []), *[("studies.experiments", [sub]) for sub in
                                    ("run", "status", "landscapes", "export")],
    ("studies.quickstart", []), ("studies.plot", []),
    *[(f"landscape.{name}", []) for name in ("interpolate", "surface", "trajectory", "path",
                                             "critic", "risk", "risk_validation")],
]
HEAVY = ("torch", "gymnasium", "mujoco")  # what --help must not wait for


def test_help_of_every_command_imports_neither_torch_nor_the_simulators():
    """Each command's --help, one after the other in one fresh interpreter (as ``python -m``
    runs it): the first that loads a heavy module is named (not a timing test)."""
    script = f"""
import json, runpy, sys
first = {{}}
for module, args in {HELP_COMMANDS!r}:
    sys.argv = [module, *args, "--help"]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        assert exc.code in (0, None), (module, args, exc.code)
    for heavy in {HEAVY!r}:
        if heavy in sys.modules and heavy not in first:
            first[heavy] = " ".join([module, *args, "--help"])
print(json.dumps(first))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, check=True)
    assert json.loads(result.stdout.splitlines()[-1]) == {}
