"""The landscape commands end to end on tiny real checkpoints (written by smac_core's
``save_checkpoint`` from a ``TanhGaussianActor`` on the analytic env, whose returns are known
exactly): printed tables, the files they write, resuming, and clear errors on bad input."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from analytic_env import ACT_DIM, HORIZON, OBS_DIM, analytic_return, register_analytic_env
from torch.nn.utils import vector_to_parameters

import landscape.evaluate
from landscape import interpolate, surface, trajectory
from landscape.directions import random_directions
from landscape.grid import plane_coordinates
from landscape.params import param_spec, policy_vector
from smac_core.checkpoint import load_checkpoint, save_checkpoint
from smac_core.nets import TanhGaussianActor

# the analytic env has no time limit of its own; in-process env stepping keeps tests fast
FAST = ["--max-episode-steps", str(HORIZON), "--workers", "0"]


def write_checkpoint(path: Path, seed: int, phase: str = "offline", step: int = 0,
                     hidden: tuple[int, ...] = (8, 8)) -> Path:
    """A checkpoint with the complete metadata of the run-directory contract."""
    env = register_analytic_env()
    torch.manual_seed(seed)
    actor = TanhGaussianActor(OBS_DIM, ACT_DIM, hidden)
    with torch.no_grad():  # larger weights than the init, so returns vary between points
        for p in actor.parameters():
            p.mul_(3.0)
    metadata = {"algorithm": "sac", "phase": phase, "config": {"actor_hidden": list(hidden)},
                "step": step, "env": env, "dataset_id": None, "obs_dim": OBS_DIM,
                "act_dim": ACT_DIM, "actor_hidden": list(hidden), "obs_mean": [0.0] * OBS_DIM,
                "obs_std": [1.0] * OBS_DIM, "action_low": [-1.0] * ACT_DIM,
                "action_high": [1.0] * ACT_DIM, "seed": seed}
    if phase == "online":
        metadata |= {"from_checkpoint": "offline/checkpoints/final", "from_algorithm": "sac"}
    return save_checkpoint(path, {"actor": actor}, metadata)


def write_run(run: Path, seed: int, phase: str, steps: int = 3) -> Path:
    """A run directory with checkpoints/step_<N> and checkpoints/final (= the last step)."""
    for k in range(steps):
        write_checkpoint(run / "checkpoints" / f"step_{k * 100}", seed + k, phase, k * 100)
    write_checkpoint(run / "checkpoints" / "final", seed + steps - 1, phase, (steps - 1) * 100)
    return run


def analytic_at(template_source: Path, vector: torch.Tensor) -> float:
    policy = load_checkpoint(template_source).policy
    vector_to_parameters(vector, policy.parameters())
    return analytic_return(policy)


def test_interpolate_end_to_end_on_run_directories(tmp_path, capsys):
    offline = write_run(tmp_path / "offline", seed=0, phase="offline")
    online = write_run(tmp_path / "online", seed=10, phase="online")
    other = write_checkpoint(tmp_path / "other", seed=20)
    out = tmp_path / "out"
    code = interpolate.main([str(offline), str(online), "--pair", str(offline), str(other),
                             "--label", "smac", "--label", "calql", "--points", "5",
                             "--episodes", "2", "--out", str(out), *FAST])
    assert code == 0
    printed = capsys.readouterr().out
    assert "== smac:" in printed and "== calql:" in printed and "verdict:" in printed

    results = json.loads((out / "interpolation.json").read_text())
    assert results["unit"] == "return"  # the analytic env has no reference scores
    smac, calql = results["curves"]
    assert smac["t"] == [-0.25, 0.0, 0.125, 0.5, 0.875, 1.0, 1.25]  # t = 0 and 1 added
    theta_a, _ = policy_vector(offline)  # a run directory means its final checkpoint
    theta_b, _ = policy_vector(online)
    for t, mean, se in zip(smac["t"], smac["mean"], smac["se"], strict=True):
        theta = (1 - t) * theta_a + t * theta_b
        assert mean == pytest.approx(analytic_at(offline, theta), rel=1e-5)
        assert se == 0.0  # the noise-free env: both episodes are the same
    assert smac["verdict"]["verdict"] in {"valley", "monotone", "non-monotone"}
    assert f"verdict: {smac['verdict']['verdict']}" in printed

    with open(out / "interpolation.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 14 and {r["label"] for r in rows} == {"smac", "calql"}
    assert float(rows[8]["mean"]) == calql["mean"][1]
    html = (out / "interpolation.html").read_text()
    for value in smac["mean"] + calql["mean"]:
        assert repr(value) in html  # the data is in the page
    assert (out / "interpolation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_surface_random_directions_interrupted_and_rerun_matches_uninterrupted(
        tmp_path, monkeypatch, capsys):
    ckpt = write_checkpoint(tmp_path / "theta0", seed=0)
    args = [str(ckpt), "--random-directions", "--direction-seed", "7", "--x-points", "4",
            "--y-points", "3", "--episodes", "1", "--chunk-size", "3", *FAST]
    assert surface.main([*args, "--out", str(tmp_path / "whole")]) == 0
    whole = json.loads((tmp_path / "whole" / "surface.json").read_text())

    # values against the analytic answer: mean[iy][ix] at theta0 + x d1 + y d2
    theta0, checkpoint = policy_vector(ckpt)
    d1, d2 = random_directions(theta0, param_spec(checkpoint.policy), seed=7)
    mean = np.array(whole["mean"])
    assert mean.shape == (3, 4)
    for iy, y in enumerate(whole["y"]):
        for ix, x in enumerate(whole["x"]):
            expected = analytic_at(ckpt, theta0 + x * d1 + y * d2)
            assert mean[iy, ix] == pytest.approx(expected, rel=1e-5)
    assert np.ptp(mean) > 0.1  # a surface with relief

    # kill after two chunks (of 4 in all); the rerun evaluates only the 6 missing points
    real = landscape.evaluate.evaluate_vectors
    calls = {"n": 0, "vectors": 0}

    def killed_after_two_chunks(template, vectors, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        calls["vectors"] += len(vectors)
        return real(template, vectors, *a, **kw)

    monkeypatch.setattr(landscape.evaluate, "evaluate_vectors", killed_after_two_chunks)
    capsys.readouterr()
    assert surface.main([*args, "--out", str(tmp_path / "cut")]) == 2
    assert "interrupted: 6 of 12 points are saved" in capsys.readouterr().err
    assert not (tmp_path / "cut" / "surface.json").exists()
    calls["vectors"] = 0
    assert surface.main([*args, "--out", str(tmp_path / "cut")]) == 0
    assert calls["vectors"] == 6
    resumed = json.loads((tmp_path / "cut" / "surface.json").read_text())
    assert resumed["mean"] == whole["mean"] and resumed["returns"] == whole["returns"]

    html = (tmp_path / "whole" / "surface.html").read_text()
    assert repr(whole["mean"][1][2]) in html and "theta0" in html
    with open(tmp_path / "whole" / "surface.csv") as f:
        rows = list(csv.DictReader(f))
    coords = plane_coordinates(np.array(whole["x"]), np.array(whole["y"]))
    assert [(float(r["x"]), float(r["y"])) for r in rows] == [tuple(c) for c in coords]


def test_surface_three_checkpoints_with_overlay(tmp_path):
    anchors = [write_checkpoint(tmp_path / f"theta{k}", seed=k) for k in range(3)]
    offline = write_run(tmp_path / "offline", seed=0, phase="offline", steps=2)
    out = tmp_path / "out"
    assert surface.main([*map(str, anchors), "--x-range", "0", "1", "--y-range", "0", "1",
                         "--x-points", "2", "--y-points", "2", "--episodes", "1",
                         "--overlay", str(offline), "--out", str(out), *FAST]) == 0
    result = json.loads((out / "surface.json").read_text())
    # grid corners (0,0), (1,0), (0,1) are the checkpoints themselves
    for (iy, ix), anchor in zip([(0, 0), (0, 1), (1, 0)], anchors, strict=True):
        expected = analytic_return(load_checkpoint(anchor).policy)
        assert result["mean"][iy][ix] == pytest.approx(expected, rel=1e-5)
    # the offline run's step_0 is theta0 itself (same seed): it projects onto the origin
    step0 = result["overlay"][0]
    assert step0["phase"] == "offline" and step0["step"] == 0
    assert (step0["x"], step0["y"], step0["off_plane"]) == pytest.approx((0, 0, 0), abs=1e-6)
    assert result["overlay"][1]["step"] == 100  # step_100 is theta1: (1, 0) on the plane
    assert (result["overlay"][1]["x"], result["overlay"][1]["y"]) == pytest.approx((1, 0),
                                                                                abs=1e-5)
    assert (out / "surface.png").stat().st_size > 0


def test_trajectory_embeds_offline_then_online_series(tmp_path, capsys):
    offline = write_run(tmp_path / "offline", seed=0, phase="offline")
    online = write_run(tmp_path / "online", seed=10, phase="online")
    out = tmp_path / "out"
    assert trajectory.main([str(offline), str(online), "--episodes", "1", "--out", str(out),
                            *FAST]) == 0
    result = json.loads((out / "trajectory.json").read_text())
    assert [c["phase"] for c in result["checkpoints"]] == ["offline"] * 3 + ["online"] * 3
    for entry, mean in zip(result["checkpoints"], result["mean"], strict=True):
        assert mean == pytest.approx(analytic_return(load_checkpoint(entry["path"]).policy),
                                     rel=1e-5)
    assert all(np.array(points).shape == (6, 2) for points in result["embeddings"].values())
    assert any(name.startswith("PCA") for name in result["embeddings"])
    assert "t-SNE" in result["embeddings"]
    html = (out / "trajectory.html").read_text()
    assert repr(result["mean"][4]) in html and "online (online)" in html
    assert "offline step 200" in capsys.readouterr().out


def test_mismatched_checkpoints_and_changed_settings_give_clear_errors(tmp_path, capsys):
    small = write_checkpoint(tmp_path / "small", seed=0, hidden=(8, 8))
    wide = write_checkpoint(tmp_path / "wide", seed=1, hidden=(16, 8))
    assert interpolate.main([str(small), str(wide), "--out", str(tmp_path / "o"), *FAST]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "trunk.layers.0.weight" in error
    assert "(8, 3) vs (16, 3)" in error

    other = write_checkpoint(tmp_path / "other", seed=2)
    common = [str(small), str(other), "--points", "3", "--out", str(tmp_path / "o"), *FAST]
    assert interpolate.main([*common, "--episodes", "2"]) == 0
    capsys.readouterr()
    assert interpolate.main([*common, "--episodes", "3"]) == 2
    assert "different settings (differing: episodes)" in capsys.readouterr().err
    assert interpolate.main([str(small), "--out", str(tmp_path / "o"), *FAST]) == 2
    assert "give two checkpoints" in capsys.readouterr().err
    assert surface.main([str(small), str(other), "--out", str(tmp_path / "s"), *FAST]) == 2
    assert "three checkpoints" in capsys.readouterr().err
    assert surface.main([str(small), str(other), str(small), *FAST]) == 2
    assert "span no plane" in capsys.readouterr().err
    assert interpolate.main([str(tmp_path / "missing"), str(small), *FAST]) == 2
    assert "no such checkpoint or run directory" in capsys.readouterr().err


def test_runs_without_periodic_checkpoints_are_refused_with_the_flag_that_makes_them(
        tmp_path, capsys):
    """A run trained with --checkpoint-every at or above its --steps has only checkpoints/final:
    trajectory and surface --overlay say how to train one they can use."""
    run = tmp_path / "final-only"
    write_checkpoint(run / "checkpoints" / "final", seed=0)
    thetas = [str(write_checkpoint(tmp_path / f"theta{k}", seed=k)) for k in range(3)]
    for main, argv in ((trajectory.main, [str(run)]),
                       (surface.main, [*thetas, "--overlay", str(run)])):
        assert main([*argv, "--out", str(tmp_path / "out"), *FAST]) == 2
        error = capsys.readouterr().err
        assert f"{run} has no periodic checkpoints (checkpoints/step_<N>)" in error
        assert "train the run with --checkpoint-every N" in error
        assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_surface_killed_with_sigkill_resumes_to_the_same_values(tmp_path):
    """A real kill (no Python unwinding): whatever the moment, the store holds only whole
    chunks and the rerun completes to the values of an uninterrupted run."""
    ckpt = write_checkpoint(tmp_path / "theta0", seed=0)
    runner = ("import sys; sys.path.insert(0, sys.argv[1]); "
              "from analytic_env import register_analytic_env; register_analytic_env(); "
              "from landscape.surface import main; raise SystemExit(main(sys.argv[2:]))")
    flags = [str(ckpt), "--random-directions", "--x-points", "10", "--y-points", "10",
             "--episodes", "2", "--chunk-size", "5", *FAST]
    args = [sys.executable, "-c", runner, str(Path(__file__).parent), *flags]
    chunks = tmp_path / "cut" / "points" / "chunks"
    process = subprocess.Popen([*args, "--out", str(tmp_path / "cut")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while len(list(chunks.glob("chunk_*.json"))) < 2:
            assert process.poll() is None, "the command ended before it could be killed"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert len(list(chunks.glob("chunk_*.json"))) < 100 // 5  # killed midway
    subprocess.run([*args, "--out", str(tmp_path / "cut")], check=True, capture_output=True)
    assert surface.main([*flags, "--out", str(tmp_path / "whole")]) == 0
    cut, whole = (json.loads((tmp_path / d / "surface.json").read_text())
                  for d in ("cut", "whole"))
    assert cut["returns"] == whole["returns"] and cut["mean"] == whole["mean"]


@pytest.mark.parametrize("module", [interpolate, surface, trajectory])
def test_help_documents_every_flag(module):
    parser = module.build_parser()
    undocumented = [action.dest for action in parser._actions
                    if action.dest != "help" and not action.help]
    assert not undocumented
    text = parser.format_help()
    for flag in ("--episodes", "--seed", "--device", "--out", "--chunk-size"):
        assert flag in text


@pytest.mark.slow
def test_commands_on_two_short_real_training_runs(tmp_path, capsys):
    """Two python -m smac_core.train runs (SAC on Pendulum-v1 from two seeds; tiny networks so
    that they take seconds) fed to the commands as a user would."""
    from smac_core import train

    runs = [tmp_path / "sac-seed0", tmp_path / "sac-seed1"]
    for seed, run in enumerate(runs):
        assert train.main(["online", "--algo", "sac", "--env", "Pendulum-v1", "--steps", "40",
                           "--start-steps", "20", "--eval-every", "40", "--eval-episodes", "1",
                           "--checkpoint-every", "20", "--early-eval-until", "0",
                           "--set", "actor_hidden=[8,8]", "--set", "critic_hidden=[8,8]",
                           "--set", "batch_size=16", "--seed", str(seed),
                           "--out", str(run)]) == 0
    first, second = runs
    capsys.readouterr()

    short = ["--episodes", "2", "--max-episode-steps", "20", "--workers", "0"]
    out = tmp_path / "interpolation"
    assert interpolate.main([str(first), str(second), "--points", "3", "--out", str(out),
                             *short]) == 0
    curve = json.loads((out / "interpolation.json").read_text())["curves"][0]
    assert curve["env"] == "Pendulum-v1" and len(curve["mean"]) == 5
    assert all(-20 * 16.3 <= m <= 0 for m in curve["mean"])  # Pendulum: r in [-16.3, 0]
    assert repr(curve["mean"][0]) in (out / "interpolation.html").read_text()

    out = tmp_path / "trajectory"
    assert trajectory.main([str(first), str(second), "--out", str(out), *short]) == 0
    result = json.loads((out / "trajectory.json").read_text())
    assert [c["step"] for c in result["checkpoints"]] == [20, 40, 20, 40]
