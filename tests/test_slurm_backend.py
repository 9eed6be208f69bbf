"""The Slurm backend (``studies.experiments.slurm``) on submitit's local executor, which runs
each job through the same worker as a Slurm node: the smoke spec's runs and a landscape as
cluster jobs with the local backend's commands, records and skip/resume semantics; a stop
request reaching the command once; a job at its time limit checkpointing, requeued, resuming."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import DOOR_HUMAN
from test_experiments import smoke_dict, write_spec

from smac_core.checkpoint import METADATA_FILE
from studies.experiments import Job, SlurmBackend, main
from studies.experiments import slurm as slurm_module

pytest.importorskip("submitit")


@pytest.fixture
def local_cluster(monkeypatch):
    """``--backend slurm`` submits to submitit's local executor."""
    monkeypatch.setattr(slurm_module, "EXECUTOR", "local")


def wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_stop_request_reaches_the_command_once(tmp_path):
    """What the runner does at --max-minutes: the command gets its stop signal exactly once (a
    second SIGTERM makes the trainer skip its checkpoint) and its exit status is the job's."""
    script = ("import signal, sys, time\n"
              "seen = []\n"
              "signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))\n"
              "print('ready', flush=True)\n"
              "start = time.time()\n"
              "while not seen and time.time() - start < 60: time.sleep(0.05)\n"
              "time.sleep(1)\n"
              "print('signals', len(seen), flush=True)\n"
              "sys.exit(143 if seen else 0)\n")
    log = tmp_path / "job.log"
    backend = SlurmBackend(tmp_path / "slurm", minutes=5, cpus=1, cluster="local")
    handle = backend.submit(Job("stop/me", (sys.executable, "-c", script), tmp_path, log))
    wait_for(lambda: log.is_file() and "ready" in log.read_text().splitlines(), 30)
    assert handle.poll() is None
    handle.send_signal(signal.SIGTERM)
    wait_for(lambda: handle.poll() is not None, 30)
    assert handle.poll() == 143
    text = log.read_text()
    assert "signals 1" in text and f"(cluster job {handle.job_id})" in text


def test_a_job_at_its_time_limit_checkpoints_and_is_requeued(tmp_path):
    """submitit's USR2 before the time limit: the command is stopped (it saves its progress),
    the job is requeued with the same command, which resumes and finishes."""
    script = ("import pathlib, signal, sys, time\n"
              "mark = pathlib.Path('progress')\n"
              "if mark.exists():\n"
              "    print('resumed from', mark.read_text(), flush=True); sys.exit(0)\n"
              "def save(signum, frame):\n"
              "    mark.write_text('checkpoint'); print('saved', flush=True); sys.exit(143)\n"
              "signal.signal(signal.SIGTERM, save)\n"
              "time.sleep(60)\n")
    log = tmp_path / "job.log"
    backend = SlurmBackend(tmp_path / "slurm", minutes=5, cpus=1, cluster="local")
    # a 33 s limit: the local executor sends USR2 30 s ahead of it, i.e. after 3 s
    backend.executor.update_parameters(local_timeout_min=0.55)
    handle = backend.submit(Job("time/out", (sys.executable, "-c", script), tmp_path, log))
    wait_for(lambda: handle.poll() is not None, 30)
    assert handle.poll() == 0
    text = log.read_text()
    assert text.count("=== ") == 2  # two attempts of the command within one job
    assert text.index("saved") < text.index("resumed from checkpoint")


@pytest.mark.slow
def test_smoke_runs_and_a_landscape_as_cluster_jobs(tmp_path, minari_root, local_cluster,
                                                      capsys):
    from smac_core.data.__main__ import main as data_main

    assert data_main(["import", str(DOOR_HUMAN / "door-v0_demos_clipped.hdf5"),
                      "--id", "local/door/human-binary-v0", "--env", "door-binary",
                      "--ignore-timeouts"]) == 0
    spec = str(write_spec(tmp_path, smoke_dict(tmp_path / "out")))
    root = tmp_path / "out"
    slurm = ["--backend", "slurm", "--slurm-cpus", "1", "--device", "cpu"]
    capsys.readouterr()

    assert main(["run", spec, "--only", "*/online-sac", *slurm]) == 0
    out = capsys.readouterr().out
    assert "2 runs: 2 done, 0 stopped, 0 failed" in out and "(cluster job " in out
    for run, steps in (("offline", 60), ("online-sac", 40)):
        run_dir = root / "door-binary/td3bc/seed0" / run
        meta = json.loads((run_dir / "checkpoints/final" / METADATA_FILE).read_text())
        assert meta["step"] == steps
        (attempt,) = json.loads((run_dir / "runner.json").read_text())["attempts"]
        assert attempt["command"][:2] == ["python -m smac_core.train", run.split("-")[0]]
        assert attempt["cwd"] == str(root) and attempt["command"][-1] == "--resume"
        assert attempt["outcome"] == "done" and attempt["exit_code"] == 0
        assert attempt["cluster_job"] in (run_dir / "runner.log").read_text()
    assert list((root / "runner/slurm").glob("*_log.out"))

    assert main(["run", spec, "--only", "*/online-sac", *slurm]) == 0  # finished: skipped
    rerun = capsys.readouterr().out
    assert "start" not in rerun and "2 runs: 2 done" in rerun

    assert main(["landscapes", spec, "--workers", "0", *slurm]) == 0
    assert "landscapes: 1 done, 2 waiting, 0 failed, 0 remaining" in capsys.readouterr().out
    interpolation = root / "landscapes/interpolation/door-binary/td3bc/seed0"
    assert json.loads((interpolation / "interpolation.json").read_text())["curves"][0]["t"] == \
        [0.0, 0.5, 1.0]
    record = json.loads((interpolation / "command.json").read_text())
    assert record["exit_code"] == 0 and record["cluster_job"]
    assert record["command"][0] == "python -m landscape.interpolate"
    invocations = [json.loads(line) for line in
                   (root / "runner/invocations.jsonl").read_text().splitlines()]
    assert [(row["command"][1], row["backend"]) for row in invocations] == \
        [("run", "slurm"), ("run", "slurm"), ("landscapes", "slurm")]

    assert main(["export", spec, "--to", str(tmp_path / "results")]) == 0
    assert (tmp_path / "results/runner/invocations.jsonl").is_file()
    assert not (tmp_path / "results/runner/slurm").exists()


def test_slurm_options_are_checked_before_anything_runs(tmp_path, capsys, local_cluster):
    spec = str(write_spec(tmp_path, smoke_dict(tmp_path / "out")))
    assert main(["run", spec, "--slurm-gpus", "1"]) == 2
    assert "--slurm-gpus need --backend slurm" in capsys.readouterr().err
    assert main(["run", spec, "--backend", "slurm", "--device", "cuda"]) == 2
    assert "--device cuda with --backend slurm needs --slurm-gpus 1" in capsys.readouterr().err
    assert not Path(tmp_path / "out").exists()
