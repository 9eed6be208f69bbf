"""The reliability contract (issue 11), one row per case: bad input ends in exit 2 and a message
that names the file or flag and the problem (never a traceback, never exit 0 with a wrong
result), and nothing already on disk is lost or changed; interrupted and killed work resumes
exactly; output directories are owned and locked.

``ROWS`` run a command in-process on a copy of a small world (a finished SAC run, a dataset
store, landscape checkpoints, a landscape output) and check its exit code, a phrase of its
message and the bytes of what must not change. The faults that need signals, kills or two runs
to compare are the functions after the table.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from test_data_formats import synthetic_episodes, write_d4rl
from test_experiments import smoke_dict
from test_landscape_cli import FAST, write_checkpoint
from test_runs import stop_at

import landscape.evaluate
import smac_core.checkpoint
import smac_core.diffusion
from landscape import interpolate, surface, trajectory
from smac_core.checkpoint import (
    METADATA_DIGEST,
    METADATA_FILE,
    TRAIN_STATE_FILE,
    load_tensors,
    load_train_state,
    metadata_digest,
)
from smac_core.data.__main__ import main as data_main
from smac_core.files import LOCK_FILE, OWNER_FILE, locked
from smac_core.rundir import METRICS_FILE, read_metrics
from smac_core.runs import Trainer
from smac_core.train import main as train_main
from studies import experiments

SMALL = ["--set", "actor_hidden=[16,16]", "--set", "critic_hidden=[16,16]",
         "--set", "batch_size=16"]
RUN = ["online", "--algo", "sac", "--env", "Pendulum-v1", "--steps", "40", "--start-steps", "10",
       "--eval-every", "20", "--early-eval-every", "20", "--eval-episodes", "1",
       "--checkpoint-every", "20", "--log-every", "10", *SMALL]
TINY_SCORE = {"steps": 40, "hidden_dim": 16, "num_blocks": 1, "embed_dim": 8, "batch_size": 16}
SMAC = ["offline", "--algo", "smac", "--dataset", "test/pendulum-v0", "--steps", "30",
        "--eval-every", "30", "--eval-episodes", "1", "--checkpoint-every", "20",
        "--log-every", "10", "--set", f"score_model={json.dumps(TINY_SCORE)}", *SMALL]


# ------------------------------------------------------------------------------------ the world
@pytest.fixture(scope="module")
def world_template(tmp_path_factory) -> Path:
    """Built once: store/ (a Pendulum dataset test/pendulum-v0), run/ (a finished SAC run with
    checkpoints step_20, step_40, final), ckpt_a/ ckpt_b/ (landscape checkpoints), interp/ (an
    interpolation between them), foreign/ (files no command of ours wrote), spec.yaml."""
    root = tmp_path_factory.mktemp("world")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(root / "store"))
        hdf5 = write_d4rl(root / "pendulum.hdf5", synthetic_episodes([6, 5, 7]),
                          ["timeout", "terminal", "timeout"])
        assert data_main(["import", str(hdf5), "--id", "test/pendulum-v0",
                          "--env", "Pendulum-v1"]) == 0
        assert train_main([*RUN, "--out", str(root / "run")]) == 0
        write_checkpoint(root / "ckpt_a", seed=0)
        write_checkpoint(root / "ckpt_b", seed=1)
        assert interpolate.main([str(root / "ckpt_a"), str(root / "ckpt_b"), "--points", "3",
                                 "--episodes", "2", "--out", str(root / "interp"), *FAST]) == 0
    foreign = root / "foreign"
    foreign.mkdir()
    for name in ("metrics.jsonl", "interpolation.json", "notes.txt"):
        (foreign / name).write_text('{"step": 0, "mine": true}\n')
    spec = smoke_dict(root / "runs")
    (root / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


@pytest.fixture
def world(world_template, tmp_path, monkeypatch) -> Path:
    """A private copy of the world, with its dataset store as the Minari store."""
    root = tmp_path / "world"
    shutil.copytree(world_template, root)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root / "store"))
    return root


def snapshot(root: Path, paths: tuple[str, ...]) -> dict[str, str]:
    """sha256 of every file under ``paths`` (lock files aside: holding a lock is no change)."""
    digests = {}
    for name in paths:
        top = root / name
        for file in [top] if top.is_file() else sorted(top.rglob("*")):
            if file.is_file() and file.name != LOCK_FILE:
                digests[str(file.relative_to(root))] = hashlib.sha256(
                    file.read_bytes()).hexdigest()
    return digests


# ------------------------------------------------------------------------------ fixture edits
def edit_json(path: Path, change: Callable[[dict], None], digest: bool = True) -> None:
    """Edit a JSON file in place; for checkpoint metadata ``digest`` recomputes its own sha256
    (an edit that still passes the hash: what the content checks must catch)."""
    value = json.loads(path.read_text())
    change(value)
    if digest and METADATA_DIGEST in value:
        value[METADATA_DIGEST] = metadata_digest(value)
    path.write_text(json.dumps(value))


def edit_metadata(change: Callable[[dict], None], digest: bool = True) -> Callable[[Path], None]:
    return lambda w: edit_json(w / "run/checkpoints/final" / METADATA_FILE, change, digest)


def replace_train_state(w: Path, payload: bytes) -> None:
    """Overwrite run/checkpoints/step_40/train_state.pt and record its new sha256."""
    ckpt = w / "run/checkpoints/step_40"
    (ckpt / TRAIN_STATE_FILE).write_bytes(payload)
    shutil.rmtree(w / "run/checkpoints/final")  # so that --resume picks step_40
    edit_json(ckpt / METADATA_FILE, lambda m: m["sha256"].__setitem__(
        TRAIN_STATE_FILE, hashlib.sha256(payload).hexdigest()))


def code_carrying_state() -> bytes:
    path = Path(os.devnull)
    buffer = __import__("io").BytesIO()
    torch.save({"agent": path, "hook": os.system}, buffer)  # globals a weights-only load refuses
    return buffer.getvalue()


def hdf5_file(name: str, **overrides: np.ndarray) -> Callable[[Path], None]:
    """A D4RL file for Pendulum (18 rows) with some arrays replaced."""
    return lambda w: write_d4rl(w / name, synthetic_episodes([6, 5, 7]),
                                ["timeout", "terminal", "timeout"], **overrides)


def hdf5_edit(name: str, change: Callable[[h5py.File], None]) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        hdf5_file(name)(w)
        with h5py.File(w / name, "a") as file:
            change(file)
    return setup


def claim_huge_rows(file: h5py.File) -> None:
    """Every D4RL array claims 1e11 rows (chunked, nothing stored: the file stays small)."""
    for key, width in (("observations", 3), ("actions", 1), ("rewards", None),
                       ("terminals", None), ("timeouts", None)):
        del file[key]
        shape = (10**11,) if width is None else (10**11, width)
        file.create_dataset(key, shape=shape, dtype="f4", chunks=(1024, *shape[1:]))


def as_group(key: str) -> Callable[[h5py.File], None]:
    def change(file: h5py.File) -> None:
        del file[key]
        file.create_group(key)
    return change


def as_array(key: str, value: np.ndarray) -> Callable[[h5py.File], None]:
    def change(file: h5py.File) -> None:
        del file[key]
        file[key] = value
    return change


def truncate(name: str, keep: int) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        hdf5_file(name)(w)
        (w / name).write_bytes((w / name).read_bytes()[:keep])
    return setup


def write(name: str, data: bytes | str) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        (w / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            (w / name).write_text(data)
        else:
            (w / name).write_bytes(data)
    return setup


def spec_with(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        spec = yaml.safe_load((w / "spec.yaml").read_text())
        change(spec)
        (w / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return setup


ALIAS_BOMB = "root: out\n" + "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 10)}]\n" for k in range(1, 8)) + "seeds: *a7\n"


def stale_temporaries(w: Path) -> None:
    """What a process killed in a checkpoint swap or an atomic write leaves behind."""
    checkpoints = w / "run/checkpoints"
    for name in (".step_60.tmp-abc123", ".final.old-4242", ".step_40.tmp-zz"):
        (checkpoints / name).mkdir()
        (checkpoints / name / "model.safetensors").write_bytes(b"partial")
    (w / "run" / ".config.json.999.tmp").write_text("{")
    (w / "store" / ".retired-xyz").mkdir()
    (w / "store" / ".staging-abc").mkdir()


def partial_metrics_line(w: Path) -> None:
    with open(w / "run" / METRICS_FILE, "a") as f:
        f.write('{"step": 40, "phase": "onl')


# ------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Row:
    """A command on the world: ``argv`` with ``{w}`` standing for the world's directory."""

    name: str
    main: Callable[[list[str]], int]
    argv: tuple[str, ...]
    code: int
    phrase: str
    unchanged: tuple[str, ...] = ()  # paths under the world whose bytes must not change
    absent: tuple[str, ...] = ()     # paths that must not exist afterwards
    setup: Callable[[Path], None] | None = None


def at(world: Path, *texts: str) -> list[str]:
    """``texts`` with ``{w}`` replaced by the world's directory."""
    return [text.replace("{w}", str(world)) for text in texts]


def train(*argv: str) -> tuple[str, ...]:
    return (*RUN, *argv)


RESUME = ("--out", "{w}/run", "--resume", "--steps", "60")
FROM = ("online", "--algo", "sac", "--from", "{w}/run", "--steps", "20", "--out", "{w}/new",
        *SMALL)
INTERP = ("{w}/ckpt_a", "{w}/ckpt_b", "--episodes", "2", *FAST)
IMPORT = ("import", "--id", "test/bad-v0", "--env", "Pendulum-v1")


def data_import(path: str) -> tuple[str, ...]:
    return (IMPORT[0], path, *IMPORT[1:])


ROWS = [
    # --- hdf5 import: rewards, terminals and timeouts are one value per row
    Row("hdf5 rewards (N, 2)", data_main, data_import("{w}/bad.hdf5"), 2,
        "'rewards' has shape (18, 2)", ("store",), setup=hdf5_file(
            "bad.hdf5", rewards=np.zeros((18, 2)))),
    Row("hdf5 terminals (N, 2)", data_main, data_import("{w}/bad.hdf5"), 2,
        "'terminals' has shape (18, 2)", ("store",), setup=hdf5_file(
            "bad.hdf5", terminals=np.zeros((18, 2), bool))),
    Row("hdf5 timeouts (N, 2)", data_main, data_import("{w}/bad.hdf5"), 2,
        "'timeouts' has shape (18, 2)", ("store",), setup=hdf5_file(
            "bad.hdf5", timeouts=np.zeros((18, 2), bool))),
    Row("hdf5 rewards (N, 1) are fine", data_main, data_import("{w}/ok.hdf5"), 0, "",
        ("store/test/pendulum-v0",), setup=hdf5_file("ok.hdf5", rewards=np.ones((18, 1)))),
    # --- agent configs: type- and range-checked before anything is written
    Row("--set batch_size=0", train_main, train("--out", "{w}/new", "--set", "batch_size=0"), 2,
        "SACConfig: batch_size must be >= 1; got 0", absent=("new",)),
    Row("--set batch_size=abc", train_main, train("--out", "{w}/new", "--set", "batch_size=abc"),
        2, "SACConfig.batch_size must be an integer, got 'abc'", absent=("new",)),
    Row("--set actor_hidden=5", train_main, train("--out", "{w}/new", "--set", "actor_hidden=5"),
        2, "SACConfig.actor_hidden must be a list of integers", absent=("new",)),
    Row("--set gamma=NaN", train_main, train("--out", "{w}/new", "--set", "gamma=NaN"), 2,
        "SACConfig.gamma must be a finite number, got nan", absent=("new",)),
    Row("--set critic_lr=-1", train_main, train("--out", "{w}/new", "--set", "critic_lr=-1"),
        2, "critic_lr must be >= 0", absent=("new",)),
    Row("--set optimizer=sgd", train_main, train("--out", "{w}/new", "--set", "optimizer=sgd"),
        2, "unknown optimizer kind 'sgd'", absent=("new",)),
    Row("--set score_model steps=x", train_main,
        ("offline", "--algo", "smac", "--dataset", "test/pendulum-v0", "--out", "{w}/new",
         "--set", 'score_model={"steps": "x"}'), 2,
        "DiffusionConfig.steps must be an integer, got 'x'", absent=("new",)),
    Row("refused --set on an existing run", train_main,
        train(*RESUME, "--set", "batch_size=-3"), 2, "batch_size must be >= 1", ("run",)),
    Row("--seed -1", train_main, train("--out", "{w}/new", "--seed", "-1"), 2,
        "--seed must be in [0, 4294967295]", absent=("new",)),
    Row("spec set: batch_size 0", experiments.main, ("status", "{w}/spec.yaml"), 2,
        "offline.algorithms.td3bc: invalid overrides {'batch_size': 0}", setup=spec_with(
            lambda s: s["offline"]["algorithms"]["td3bc"].update(set={"batch_size": 0}))),
    Row("spec set: actor_hidden 5", experiments.main, ("status", "{w}/spec.yaml"), 2,
        "TD3BCConfig.actor_hidden must be a list of integers", setup=spec_with(
            lambda s: s["offline"]["algorithms"]["td3bc"].update(set={"actor_hidden": 5}))),
    # --- landscape flags
    Row("interpolate --z nan", interpolate.main, (*INTERP, "--z", "nan", "--out", "{w}/new"), 2,
        "--z must be a finite number > 0, got nan", absent=("new",)),
    Row("interpolate --range 0 inf", interpolate.main,
        (*INTERP, "--range", "0", "inf", "--out", "{w}/new"), 2, "a finite --range",
        absent=("new",)),
    Row("interpolate --device bogus", interpolate.main,
        (*INTERP, "--device", "bogus", "--out", "{w}/new"), 2,
        "--device 'bogus' is not a torch device", absent=("new",)),
    Row("interpolate --points 2 --range 0 1", interpolate.main,
        (*INTERP, "--points", "2", "--range", "0", "1", "--out", "{w}/new"), 2,
        "puts no t between 0 and 1", absent=("new",)),
    Row("interpolate --seed -5", interpolate.main, (*INTERP, "--seed", "-5", "--out", "{w}/new"),
        2, "--seed must be in [0, 4294967295], got -5", absent=("new",)),
    Row("surface --x-range 0 inf", surface.main,
        ("{w}/ckpt_a", "--random-directions", "--x-range", "0", "inf", "--out", "{w}/new",
         *FAST), 2, "--x-range needs finite LOW < HIGH", absent=("new",)),
    Row("trajectory --perplexity nan", trajectory.main,
        ("{w}/run", "--perplexity", "nan", "--out", "{w}/new", *FAST), 2,
        "--perplexity must be a finite number > 0", absent=("new",)),
    # --- output directories: owned by the command that created them
    Row("train --out a foreign directory", train_main, train("--out", "{w}/foreign"), 2,
        "--out {w}/foreign is not empty (interpolation.json, metrics.jsonl, notes.txt) and was "
        "not created by smac_core.train", ("foreign",), absent=(f"foreign/{OWNER_FILE}",)),
    Row("interpolate --out a foreign directory", interpolate.main,
        (*INTERP, "--points", "3", "--out", "{w}/foreign"), 2,
        "was not created by landscape.interpolate", ("foreign",)),
    Row("surface --out an interpolation", surface.main,
        ("{w}/ckpt_a", "--random-directions", "--x-points", "2", "--y-points", "2",
         "--out", "{w}/interp", *FAST), 2,
        "--out {w}/interp belongs to another command (python -m landscape.interpolate",
        ("interp",)),
    Row("train --out an interpolation", train_main, train("--out", "{w}/interp"), 2,
        "belongs to another command", ("interp",)),
    Row("interpolate --out a run directory", interpolate.main,
        (*INTERP, "--points", "3", "--out", "{w}/run"), 2,
        "--out {w}/run belongs to another command (python -m smac_core.train online", ("run",)),
    Row("train --out a file", train_main, train("--out", "{w}/run/config.json"), 2,
        "--out {w}/run/config.json is a file, not a directory", ("run",)),
    Row("train --out under a file", train_main, train("--out", "{w}/run/config.json/sub"), 2,
        "cannot write --out {w}/run/config.json/sub", ("run",)),
    Row("export --to a foreign directory", experiments.main,
        ("export", "{w}/spec.yaml", "--to", "{w}/foreign"), 2,
        "--to {w}/foreign is not empty", ("foreign",)),
    Row("export --to under a file", experiments.main,
        ("export", "{w}/spec.yaml", "--to", "{w}/foreign/notes.txt/x"), 2,
        "cannot write --to {w}/foreign/notes.txt/x", ("foreign",)),
    Row("dataset store under a file", data_main, ("import", "{w}/pendulum.hdf5", "--id",
                                                  "test/other-v0", "--env", "Pendulum-v1"), 2,
        "cannot write dataset 'test/other-v0' to the store", ("store",),
        setup=lambda w: os.environ.__setitem__("MINARI_DATASETS_PATH", str(w / "spec.yaml/x"))),
    # --- checkpoint metadata: covered by its sha256, checked on load
    Row("edited algorithm", train_main, FROM, 2,
        "metadata.json does not match the sha256 recorded in it", ("run",), ("new",),
        setup=edit_metadata(lambda m: m.update(algorithm="iql"), digest=False)),
    Row("wrong obs_dim", train_main, FROM, 2, "obs_mean has 3 entries, obs_dim is 4", ("run",),
        ("new",), setup=edit_metadata(lambda m: m.update(obs_dim=4))),
    Row("obs_mean of the wrong length", train_main, FROM, 2,
        "obs_mean has 2 entries, obs_dim is 3", ("run",), ("new",),
        setup=edit_metadata(lambda m: m.update(obs_mean=[0.0, 0.0]))),
    Row("NaN obs_std", interpolate.main, ("{w}/run", "{w}/run", "--out", "{w}/new"), 2,
        "obs_std must be a list of finite numbers", ("run",), ("new",),
        setup=edit_metadata(lambda m: m.update(obs_std=[1.0, float("nan"), 1.0]))),
    Row("zero obs_std", train_main, FROM, 2, "obs_std must be > 0 everywhere", ("run",),
        ("new",), setup=edit_metadata(lambda m: m.update(obs_std=[1.0, 0.0, 1.0]))),
    Row("missing env", train_main, FROM, 2, "lacks ['env']", ("run",), ("new",),
        setup=edit_metadata(lambda m: m.pop("env"))),
    Row("metadata without its own sha256, wrong action bounds", train_main, FROM, 2,
        "action_low must be below action_high", ("run",), ("new",),
        setup=edit_metadata(lambda m: m.update(action_low=[3.0]) or m.pop(METADATA_DIGEST),
                            digest=False)),
    # --- data files: clear errors, never tracebacks
    Row(".npy with an unreadable header", data_main, data_import("{w}/bad.npy"), 2,
        "bad.npy: unreadable .npy header", ("store",),
        setup=write("bad.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': <f8'} \n")),
    Row("hdf5 zero-length arrays", data_main, data_import("{w}/bad.hdf5"), 2,
        "the D4RL arrays hold no rows", ("store",), setup=hdf5_file(
            "bad.hdf5", observations=np.zeros((0, 3)), actions=np.zeros((0, 1)),
            rewards=np.zeros(0), terminals=np.zeros(0, bool), timeouts=np.zeros(0, bool))),
    Row("hdf5 scalar dataset", data_main, data_import("{w}/bad.hdf5"), 2,
        "'rewards' has shape ()", ("store",),
        setup=hdf5_edit("bad.hdf5", as_array("rewards", np.float64(1.0)))),
    Row("hdf5 group for a dataset", data_main, data_import("{w}/bad.hdf5"), 2,
        "'actions' is an HDF5 group, not a dataset", ("store",),
        setup=hdf5_edit("bad.hdf5", as_group("actions"))),
    Row("hdf5 string data", data_main, data_import("{w}/bad.hdf5"), 2,
        "'rewards' holds |S3 data, not numbers", ("store",),
        setup=hdf5_edit("bad.hdf5", as_array("rewards", np.array([b"abc"] * 18)))),
    Row("hdf5 truncated", data_main, data_import("{w}/bad.hdf5"), 2,
        "cannot read it as HDF5", ("store",), setup=truncate("bad.hdf5", 3000)),
    Row("hdf5 claiming 1e11 rows", data_main, data_import("{w}/bad.hdf5"), 2,
        "claim 100000000000 rows", ("store",), setup=hdf5_edit("bad.hdf5", claim_huge_rows)),
    Row("import PATH is a directory", data_main, data_import("{w}/run"), 2,
        "{w}/run is a directory, not a data file", ("store",)),
    Row("--dataset DIR.hdf5 is a directory", train_main,
        ("offline", "--algo", "td3bc", "--dataset", "{w}/dir.hdf5", "--out", "{w}/new"), 2,
        "{w}/dir.hdf5 is a directory", absent=("new",),
        setup=lambda w: (w / "dir.hdf5").mkdir()),
    Row("spec is a directory", experiments.main, ("status", "{w}/run"), 2,
        "{w}/run is a directory, not a spec file"),
    # --- resume state and logs
    Row("truncated train_state.pt, hash recomputed", train_main, train(*RESUME), 2,
        "cannot read {w}/run/checkpoints/step_40/train_state.pt", ("run/checkpoints",),
        setup=lambda w: replace_train_state(
            w, (w / "run/checkpoints/step_40" / TRAIN_STATE_FILE).read_bytes()[:500])),
    Row("code-carrying train_state.pt, hash recomputed", train_main, train(*RESUME), 2,
        "holds objects other than tensors", ("run/checkpoints",),
        setup=lambda w: replace_train_state(w, code_carrying_state())),
    Row("partial last metrics line at --resume", train_main, train(*RESUME), 0, "",
        ("run/checkpoints/step_20", "run/checkpoints/step_40"), setup=partial_metrics_line),
    Row("corrupted metrics line at --resume", train_main, train(*RESUME), 2,
        "metrics.jsonl, line 2, is not a metrics row", ("run",),
        setup=lambda w: (w / "run" / METRICS_FILE).write_text('{"step": 0}\n{"ste\n{}\n')),
    Row("stale temporaries are swept at the next start", train_main, train(*RESUME), 0, "",
        ("run/checkpoints/step_20",), absent=(
            "run/checkpoints/.step_60.tmp-abc123", "run/checkpoints/.final.old-4242",
            "run/checkpoints/.step_40.tmp-zz", "run/.config.json.999.tmp"),
        setup=stale_temporaries),
    Row("stale dataset copies are swept by the next import", data_main,
        data_import("{w}/pendulum.hdf5"), 0, "", ("store/test/pendulum-v0",),
        absent=("store/.retired-xyz", "store/.staging-abc"), setup=stale_temporaries),
    # --- spec files
    Row("non-UTF-8 spec", experiments.main, ("status", "{w}/latin.yaml"), 2,
        "latin.yaml is not UTF-8 text", setup=write("latin.yaml", "root: caf\xe9\n".encode(
            "latin-1"))),
    Row("alias bomb spec", experiments.main, ("status", "{w}/bomb.yaml"), 2,
        "its aliases (*name) expand to more than 100,000 values",
        setup=write("bomb.yaml", ALIAS_BOMB)),
    Row("recursive alias spec", experiments.main, ("status", "{w}/loop.yaml"), 2,
        "expand to more than", setup=write("loop.yaml", "root: &a [*a]\n")),
    Row("spec range [0, inf]", experiments.main, ("status", "{w}/spec.yaml"), 2,
        "landscapes.interpolation.range: must be [LOW, HIGH], finite", setup=spec_with(
            lambda s: s["landscapes"]["interpolation"].update(range=[0, float("inf")]))),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_contract(row: Row, world: Path, capsys):
    if row.setup is not None:
        row.setup(world)
    before = snapshot(world, row.unchanged)
    code = row.main(at(world, *row.argv))
    err = capsys.readouterr().err
    assert code == row.code, err
    assert at(world, row.phrase)[0] in err
    assert "Traceback" not in err and "weights_only" not in err
    assert snapshot(world, row.unchanged) == before
    for path in row.absent:
        assert not (world / path).exists(), path


# ------------------------------------------------------------------------------ locks, owners
def test_a_locked_run_is_refused_and_left_alone(world, capsys):
    """A second ``--resume`` while one holds the run directory's lock (the lock of a killed
    process is released by the kernel)."""
    before = snapshot(world, ("run",))
    with locked(world / "run"):
        assert train_main([*RUN, *at(world, *RESUME)]) == 2
    assert f"--out {world}/run is in use by another process (pid {os.getpid()})" in \
        capsys.readouterr().err
    assert snapshot(world, ("run",)) == before


def test_output_directories_record_their_command(world):
    owner = json.loads((world / "run" / OWNER_FILE).read_text())
    assert owner["tool"] == "smac_core.train"
    assert owner["command"][:3] == ["python -m smac_core.train", "online", "--algo"]
    assert json.loads((world / "interp" / OWNER_FILE).read_text())["tool"] == \
        "landscape.interpolate"


def test_runs_die_with_a_killed_runner(tmp_path):
    """SIGKILL to the runner: its run processes get SIGTERM from the kernel (and checkpoint)."""
    script = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from studies.experiments import Job, LocalBackend\n"
        "job = Job('r/offline', (sys.executable, '-c', 'import time; time.sleep(120)'), "
        "Path(sys.argv[1]), Path(sys.argv[1]) / 'runner.log')\n"
        "child = LocalBackend(dict(os.environ)).submit(job)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n")
    runner = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    child = int(runner.stdout.readline())
    runner.kill()
    runner.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_full_disk_during_training_is_a_clean_error_and_keeps_the_checkpoints(world, capsys,
                                                                             monkeypatch):
    def full_disk(self, row):
        raise OSError(28, "No space left on device", str(self.path))

    before = snapshot(world, ("run/checkpoints",))
    monkeypatch.setattr("smac_core.runs.MetricsLog.append", full_disk)
    assert train_main([*RUN, *at(world, *RESUME)]) == 2
    err = capsys.readouterr().err
    assert f"error: No space left on device: {world}/run/metrics.jsonl" in err
    assert "Traceback" not in err
    assert snapshot(world, ("run/checkpoints",)) == before


# ------------------------------------------------------------------- exact resume after faults
def assert_same_run(a: Path, b: Path) -> None:
    """Same final tensors, bit for bit, and the same metrics rows (wall times aside)."""
    expected, _ = load_tensors(a)
    resumed, _ = load_tensors(b)
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]  # noqa: E731
    assert strip(read_metrics(a)) == strip(read_metrics(b))


def kill_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """The process dies right after loop step ``step`` (nothing saved, like kill -9)."""
    one_step = Trainer._one_step

    def one_step_then_die(self: Trainer) -> None:
        one_step(self)
        if self.step == step:
            raise SystemExit(137)

    monkeypatch.setattr(Trainer, "_one_step", one_step_then_die)


def test_killed_after_the_step0_evaluation_resumes_without_duplicate_rows(world, monkeypatch):
    with monkeypatch.context() as patch:
        kill_at(patch, 5)  # after the step-0 evaluation, before the first checkpoint (20)
        with pytest.raises(SystemExit):
            train_main([*RUN, "--out", str(world / "killed")])
    assert [r["step"] for r in read_metrics(world / "killed")] == [0]
    assert train_main([*RUN, "--out", str(world / "killed"), "--resume"]) == 0
    assert_same_run(world / "run", world / "killed")


def test_smac_killed_after_caching_its_score_model_resumes_exactly(world, monkeypatch):
    assert train_main([*SMAC, "--out", str(world / "straight")]) == 0
    with monkeypatch.context() as patch:
        kill_at(patch, 10)  # score model cached, no checkpoint yet
        with pytest.raises(SystemExit):
            train_main([*SMAC, "--out", str(world / "killed")])
    assert (world / "killed/score_model").is_dir()
    assert not (world / "killed/checkpoints").exists()
    assert train_main([*SMAC, "--out", str(world / "killed"), "--resume"]) == 0
    assert_same_run(world / "straight", world / "killed")


def test_sigterm_during_score_model_training_saves_it_and_resumes_exactly(world, monkeypatch,
                                                                          capsys):
    assert train_main([*SMAC, "--out", str(world / "straight")]) == 0
    forward, calls = smac_core.diffusion.NoisePredictor.forward, []

    def forward_then_signal(self, *args):
        calls.append(1)
        if len(calls) == 15:
            signal.raise_signal(signal.SIGTERM)
        return forward(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(smac_core.diffusion.NoisePredictor, "forward", forward_then_signal)
        assert train_main([*SMAC, "--out", str(world / "stopped")]) == 128 + signal.SIGTERM
    assert "stopped by SIGTERM at step 15 of 40 of the dataset score model" in \
        capsys.readouterr().err
    assert (world / "stopped/score_model_training").is_dir()
    assert train_main([*SMAC, "--out", str(world / "stopped"), "--resume"]) == 0
    assert not (world / "stopped/score_model_training").exists()
    assert_same_run(world / "straight", world / "stopped")


def test_second_ctrl_c_during_a_checkpoint_write_finishes_it_and_exits(world, monkeypatch,
                                                                       capsys):
    write = smac_core.checkpoint._write_checkpoint_files

    def write_with_a_second_ctrl_c(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # arrives while the checkpoint is being written
        return write(*args, **kwargs)

    out = world / "stopped"
    with monkeypatch.context() as patch:
        stop_at(patch, 15)  # the first signal: SIGTERM after step 15
        patch.setattr(smac_core.checkpoint, "_write_checkpoint_files", write_with_a_second_ctrl_c)
        assert train_main([*RUN, "--out", str(out)]) == 128 + signal.SIGINT
    err = capsys.readouterr().err
    assert "stopped by a second signal (SIGINT) at step 15" in err and "Traceback" not in err
    assert load_train_state(out / "checkpoints/step_15")["step"] == 15  # complete
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    assert train_main([*RUN, "--out", str(out), "--resume"]) == 0
    assert_same_run(world / "run", out)


# --------------------------------------------------------------------------- landscape chunking
def test_landscape_results_do_not_depend_on_chunk_size_or_interruption(world, monkeypatch):
    def run(out: str, chunk: int) -> list:
        assert interpolate.main([*at(world, *INTERP), "--points", "7",
                                 "--chunk-size", str(chunk), "--out", str(world / out)]) == 0
        return json.loads((world / out / "interpolation.json").read_text())["curves"][0]

    one = run("chunk1", 1)
    assert run("chunk4", 4)["returns"] == one["returns"]
    real, calls = landscape.evaluate.evaluate_vectors, []

    def evaluate_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(landscape.evaluate, "evaluate_vectors", evaluate_then_die)
        interpolate.main([*at(world, *INTERP), "--points", "7",
                          "--chunk-size", "2", "--out", str(world / "resumed")])
    assert run("resumed", 3)["returns"] == one["returns"]  # resumed with another chunk size
