"""Landscape grids split over jobs (``--part K/N``, ``landscape.parts``) and assembled: equal to
an unsplit run episode by episode, parts of other settings refused, the experiment runner's
``parts: N`` as N part jobs and one assembling job after them."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from analytic_env import ACT_DIM, HORIZON, OBS_DIM, register_analytic_env

import landscape.evaluate
from landscape import interpolate, surface, trajectory
from landscape.parts import Part
from smac_core.checkpoint import save_checkpoint
from smac_core.errors import SmacError
from smac_core.files import locked
from smac_core.nets import TanhGaussianActor
from studies import experiments
from studies.experiments import expand_grid, load_spec

REPO = Path(__file__).resolve().parents[1]
FAST = ["--max-episode-steps", str(HORIZON), "--workers", "0"]
NOISE = 0.2  # the reset seed perturbs the observations: every episode of a point differs


def write_checkpoint(path: Path, seed: int, phase: str = "offline", step: int = 0) -> Path:
    """A checkpoint on the noisy analytic env (the run-directory contract's metadata)."""
    env = register_analytic_env(obs_noise=NOISE)
    torch.manual_seed(seed)
    actor = TanhGaussianActor(OBS_DIM, ACT_DIM, (8, 8))
    with torch.no_grad():
        for p in actor.parameters():
            p.mul_(3.0)
    metadata = {"algorithm": "sac", "phase": phase, "config": {"actor_hidden": [8, 8]},
                "step": step, "env": env, "dataset_id": None, "obs_dim": OBS_DIM,
                "act_dim": ACT_DIM, "actor_hidden": [8, 8], "obs_mean": [0.0] * OBS_DIM,
                "obs_std": [1.0] * OBS_DIM, "action_low": [-1.0] * ACT_DIM,
                "action_high": [1.0] * ACT_DIM, "seed": seed}
    return save_checkpoint(path, {"actor": actor}, metadata)


def write_run(run: Path, seed: int, phase: str, steps: int = 3) -> Path:
    for k in range(steps):
        write_checkpoint(run / "checkpoints" / f"step_{k * 100}", seed + k, phase, k * 100)
    write_checkpoint(run / "checkpoints" / "final", seed + steps - 1, phase, (steps - 1) * 100)
    return run


@pytest.fixture
def counted(monkeypatch):
    """Counts the parameter vectors the engine evaluates."""
    real, calls = landscape.evaluate.evaluate_vectors, {"vectors": 0}

    def counting(template, vectors, *args, **kwargs):
        calls["vectors"] += len(vectors)
        return real(template, vectors, *args, **kwargs)

    monkeypatch.setattr(landscape.evaluate, "evaluate_vectors", counting)
    return calls


def test_part_shares_are_contiguous_blocks_that_cover_every_point():
    shares = [Part(k, 3).share(10) for k in (1, 2, 3)]
    assert [s.tolist() for s in shares] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert Part(3, 3).share(2).tolist() == []  # more parts than points: an empty share


def test_surface_in_three_parts_equals_the_unsplit_surface(tmp_path, counted, capsys):
    thetas = [str(write_checkpoint(tmp_path / f"theta{k}", seed=k)) for k in range(3)]
    args = [*thetas, "--x-points", "4", "--y-points", "3", "--episodes", "3",
            "--chunk-size", "5", *FAST]  # chunks of 5 straddle the parts' blocks of 4
    assert surface.main([*args, "--out", str(tmp_path / "whole")]) == 0
    whole = json.loads((tmp_path / "whole" / "surface.json").read_text())
    assert len(np.unique(np.asarray(whole["returns"])[0])) == 3  # episodes differ

    split = tmp_path / "split"
    for k in (1, 2, 3):
        counted["vectors"] = 0
        capsys.readouterr()
        assert surface.main([*args, "--out", str(split), "--part", f"{k}/3"]) == 0
        assert counted["vectors"] == 4  # its block of the 12 points
        printed = capsys.readouterr().out
        assert f"part {k}/3 done" in printed and "without --part" in printed
        assert (split / "parts" / f"{k}-of-3" / "points" / "store.json").is_file()
    assert not (split / "surface.json").exists() and not (split / "points").exists()
    counted["vectors"] = 0
    assert surface.main([*args, "--out", str(split)]) == 0
    assert counted["vectors"] == 0  # every point came from the parts
    assembled = json.loads((split / "surface.json").read_text())
    for key in ("returns", "successes", "mean", "se", "x", "y"):
        assert assembled[key] == whole[key], key  # point by point, episode by episode

    # two of three parts: the assembling run evaluates the missing block itself
    partial = tmp_path / "partial"
    for k in (1, 3):
        assert surface.main([*args, "--out", str(partial), "--part", f"{k}/3"]) == 0
    counted["vectors"] = 0
    assert surface.main([*args, "--out", str(partial)]) == 0
    assert counted["vectors"] == 4
    result = json.loads((partial / "surface.json").read_text())
    assert result["returns"] == whole["returns"] and result["mean"] == whole["mean"]


def test_interpolate_and_trajectory_in_parts_equal_unsplit_runs(tmp_path, counted):
    a, b, c = (str(write_checkpoint(tmp_path / n, seed=k)) for k, n in enumerate("abc"))
    args = ["--pair", a, b, "--pair", a, c, "--points", "5", "--episodes", "2", *FAST]
    assert interpolate.main([*args, "--out", str(tmp_path / "whole")]) == 0
    for k in (1, 2):
        assert interpolate.main([*args, "--out", str(tmp_path / "split"), "--part",
                                 f"{k}/2"]) == 0
    counted["vectors"] = 0
    assert interpolate.main([*args, "--out", str(tmp_path / "split")]) == 0
    assert counted["vectors"] == 0
    whole, split = (json.loads((tmp_path / d / "interpolation.json").read_text())["curves"]
                    for d in ("whole", "split"))
    assert [(w["returns"], w["mean"], w["verdict"]) for w in whole] == \
        [(s["returns"], s["mean"], s["verdict"]) for s in split]

    runs = [str(write_run(tmp_path / "offline", 0, "offline")),
            str(write_run(tmp_path / "online", 10, "online"))]
    args = [*runs, "--episodes", "2", *FAST]
    assert trajectory.main([*args, "--out", str(tmp_path / "t-whole")]) == 0
    for k in (1, 2):
        assert trajectory.main([*args, "--out", str(tmp_path / "t-split"), "--part",
                                f"{k}/2"]) == 0
    counted["vectors"] = 0
    assert trajectory.main([*args, "--out", str(tmp_path / "t-split")]) == 0
    assert counted["vectors"] == 0
    whole, split = (json.loads((tmp_path / d / "trajectory.json").read_text())
                    for d in ("t-whole", "t-split"))
    assert whole["mean"] == split["mean"] and whole["se"] == split["se"]


def test_a_part_of_other_settings_is_refused_at_assembly(tmp_path, capsys):
    thetas = [str(write_checkpoint(tmp_path / f"theta{k}", seed=k)) for k in range(3)]
    args = [*thetas, "--x-points", "2", "--y-points", "2", *FAST, "--out", str(tmp_path / "o")]
    assert surface.main([*args, "--episodes", "2", "--part", "1/2"]) == 0
    assert surface.main([*args, "--episodes", "3", "--part", "2/2"]) == 0
    capsys.readouterr()
    assert surface.main([*args, "--episodes", "3"]) == 2
    error = capsys.readouterr().err
    assert f"{tmp_path / 'o' / 'parts' / '1-of-2' / 'points'} holds a part evaluated with " \
           "other settings (differing: episodes)" in error
    assert not (tmp_path / "o" / "surface.json").exists()

    # a part still running (its directory locked) is not read half way
    with locked(tmp_path / "o" / "parts" / "2-of-2"):
        assert surface.main([*args, "--episodes", "2"]) == 2
        assert "part " + str(tmp_path / "o" / "parts" / "2-of-2") + " is in use by another " \
            "process" in capsys.readouterr().err
    assert surface.main([*args, "--episodes", "2"]) == 2  # 2-of-2 holds episodes 3 too
    assert "parts/2-of-2/points holds a part" in capsys.readouterr().err


@pytest.mark.parametrize("command", [surface, interpolate, trajectory])
@pytest.mark.parametrize("value", ["0/2", "3/2", "x", "1/0"])
def test_bad_part_values_are_refused_naming_the_flag(command, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        command.main(["ckpt", "--part", value])
    assert exit_.value.code == 2
    assert "argument --part: --part" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the study runner
class InProcess:
    """A backend that runs each landscape command in this process (where the analytic env is
    registered), to completion at submit; ``names``: the jobs in the order they were started."""

    name = "in-process"

    def __init__(self) -> None:
        self.names: list[str] = []
        self.argvs: list[list[str]] = []

    def submit(self, job: experiments.Job) -> InProcess.Done:
        self.names.append(job.name)
        self.argvs.append(list(job.argv[3:]))
        return self.Done(importlib.import_module(job.argv[2]).main(list(job.argv[3:])))

    class Done:
        def __init__(self, code: int) -> None:
            self.code = code

        def poll(self) -> int:
            return self.code

        def send_signal(self, sig: int) -> None: ...

        def kill(self) -> None: ...


def test_runner_splits_a_plane_into_part_jobs_and_an_assembly(tmp_path):
    spec_dict = yaml.safe_load((REPO / "notebooks/specs/smoke.yaml").read_text())
    spec_dict["root"] = str(tmp_path / "root")
    spec_dict["landscapes"] = {"planes": {"task": "door-binary", "online": ["sac", "td3bc"],
                                          "points": 3, "range": [0, 1], "episodes": 2,
                                          "parts": 2}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec_dict))
    spec = load_spec(tmp_path / "spec.yaml")
    assert spec.planes.parts == 2
    for k, plan in enumerate(expand_grid(spec)):  # finished runs on the analytic env
        write_checkpoint(spec.root / plan.run_id / "checkpoints" / "final", seed=k,
                         phase=plan.phase, step=plan.steps)
    base = "landscapes/{}/door-binary/td3bc/seed0"
    plane, trajectories = base.format("planes"), base.format("trajectories")
    (spec.root / trajectories).mkdir(parents=True)  # done: its result file exists
    (spec.root / trajectories / "trajectory.json").write_text("{}")

    backend = InProcess()
    summary = experiments.run_landscapes(spec, "cpu", None, workers=0, backend=backend)
    assert backend.names == [f"{plane}/parts/1-of-2", f"{plane}/parts/2-of-2", plane]
    assert [argv[-2:] for argv in backend.argvs] == [["--part", "1/2"], ["--part", "2/2"],
                                                     ["--out", str(spec.root / plane)]]
    assert sorted(summary.done) == [plane, trajectories] and not summary.failed
    assert json.loads((spec.root / plane / "parts/1-of-2/command.json").read_text())[
        "exit_code"] == 0

    # the same plane unsplit, by hand
    unsplit = tmp_path / "unsplit"
    assert surface.main([*backend.argvs[-1][:-1], str(unsplit)]) == 0
    split_result, whole = (json.loads((d / "surface.json").read_text())
                           for d in (spec.root / plane, unsplit))
    for key in ("returns", "successes", "mean", "se"):
        assert split_result[key] == whole[key], key

    again = InProcess()  # a finished landscape: neither it nor its parts run again
    assert sorted(experiments.run_landscapes(spec, "cpu", None, workers=0,
                                             backend=again).done) == [plane, trajectories]
    assert again.names == []
    (spec.root / plane / "surface.json").unlink()  # outputs lost: the parts stay done
    again = InProcess()
    experiments.run_landscapes(spec, "cpu", None, workers=0, backend=again)
    assert again.names == [plane]
    assert json.loads((spec.root / plane / "surface.json").read_text())["mean"] == whole["mean"]


def test_parts_key_is_validated_and_defaults_to_one(tmp_path):
    spec_dict = yaml.safe_load((REPO / "notebooks/specs/smoke.yaml").read_text())
    spec_dict["root"] = str(tmp_path / "root")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec_dict))
    spec = load_spec(path)
    assert spec.planes.parts == 1 and spec.interpolation.parts == 1
    assert [job.steps()[-1].part for job in experiments.landscape_jobs(spec)] == [None] * 3
    assert all(len(job.steps()) == 1 for job in experiments.landscape_jobs(spec))
    spec_dict["landscapes"]["interpolation"]["parts"] = 0
    path.write_text(yaml.safe_dump(spec_dict))
    with pytest.raises(SmacError, match=r"landscapes.interpolation.parts: must be an integer "
                                        ">= 1, got 0"):
        load_spec(path)
    spec_dict["landscapes"]["interpolation"]["parts"] = 3
    path.write_text(yaml.safe_dump(spec_dict))
    job = experiments.landscape_jobs(load_spec(path))[0]
    assert [step.name for step in job.steps()] == [
        f"{job.out}/parts/{k}-of-3" for k in (1, 2, 3)] + [job.out]
    assert job.steps()[-1].needs() == tuple(step.name for step in job.steps()[:3])
