"""``landscape.risk``: the post-update neighbourhood of a checkpoint, with known answers on the
analytic env (updates on the exact return improve it, on its negation they drop it), batched
sequences against one at a time, and the command end to end with interruption and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from analytic_env import HORIZON, OBSERVATIONS, TARGETS
from test_landscape_cli import FAST
from test_landscape_path import sac_checkpoint, write_demonstrations

import landscape.evaluate
import landscape.grid
import landscape.risk
from landscape.grid import EvalSettings
from landscape.params import param_spec, policy_vector, unflatten_params
from landscape.risk import (
    ProbeSettings,
    cvar,
    minibatch_rows,
    probe,
    risk_scores,
    update_sequences,
)
from smac_core.checkpoint import load_checkpoint
from smac_core.rollout import batched_policy

SETTINGS = EvalSettings(episodes=2, seed=0, max_episode_steps=HORIZON, workers=0)


def step_return(template, sign: float = 1.0):
    """Objective: sign x the analytic env's return restricted to the sampled steps (rows index
    the HORIZON observations), scaled to the whole episode: (P, D), (P, b) -> (P,)."""
    act, spec = batched_policy(template), param_spec(template)
    observations, targets = torch.as_tensor(OBSERVATIONS), torch.as_tensor(TARGETS).float()

    def objective(vectors: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        actions = act(unflatten_params(vectors, spec), observations[rows])          # (P, b, A)
        return -sign * HORIZON * ((actions - targets[rows]) ** 2).sum(-1).mean(-1)

    return objective


def test_cvar_and_scores():
    assert cvar(np.array([5.0, 1.0, 3.0, 2.0]), 0.5) == 1.5
    assert cvar(np.array([5.0, 1.0, 3.0]), 0.1) == 1.0  # at least one value
    scores = risk_scores(np.array([10.0, 9.0, 7.0, 4.0, 12.0]), budget=2, alpha=0.5)
    assert scores == {"update_cvar_drop": 3.0, "update_mean_drop": 2.0,
                      "random_cvar_drop": 6.0}
    # plain floats, so that the CSVs hold numbers (repr of np.float64 is "np.float64(...)")
    assert all(type(value) is float for value in scores.values())


def test_sequences_batched_equal_one_at_a_time(tmp_path):
    ckpt = load_checkpoint(sac_checkpoint(tmp_path / "a", seed=0))
    theta0, _ = policy_vector(ckpt)
    rows = minibatch_rows(seed=0, budget=3, steps=4, batch_size=2, pool=HORIZON)
    assert torch.equal(rows[1], minibatch_rows(0, 2, 4, 2, HORIZON)[1])  # budget-independent
    objective = step_return(ckpt.policy)
    together, record = update_sequences(theta0, objective, rows, lr=0.01)
    assert record.shape == (4,)
    for k in range(3):
        alone, _ = update_sequences(theta0, objective, rows[k:k + 1], lr=0.01)
        torch.testing.assert_close(alone[0], together[k], rtol=1e-6, atol=1e-7)
    assert (together - theta0).norm(dim=1).min() > 0


@pytest.mark.parametrize(("sign", "improves"), [(1.0, True), (-1.0, False)])
def test_probe_known_answer_on_the_analytic_env(tmp_path, sign, improves):
    ckpt = load_checkpoint(sac_checkpoint(tmp_path / "a", seed=0))
    settings = ProbeSettings(budget=4, steps=5, lr=0.01, batch_size=64, pool=HORIZON, alpha=0.5)
    results, result = probe(ckpt, step_return(ckpt.policy, sign), {"objective": sign},
                            settings, SETTINGS, tmp_path / "out")
    assert result.returns.shape == (9, 2)
    updates = np.array(results["update"]["mean"])
    if improves:  # ascending the exact return: every sequence gains, the scores are < 0
        assert (updates > results["theta0"]["mean"]).all()
        assert results["scores"]["update_cvar_drop"] < 0
    else:  # ascending its negation: every sequence drops
        assert (updates < results["theta0"]["mean"]).all()
        assert results["scores"]["update_cvar_drop"] > 0
    # random twins sit at their update's distance
    np.testing.assert_allclose(results["random"]["distance"], results["update"]["distance"],
                               rtol=1e-4)


def test_risk_command_end_to_end_interrupted_and_resumed(tmp_path, monkeypatch, capsys):
    ckpt = sac_checkpoint(tmp_path / "a", seed=0)
    data = write_demonstrations(tmp_path / "demos.npy")
    args = [str(ckpt), "--dataset", str(data), "--budget", "3", "--steps", "2",
            "--batch-size", "4", "--episodes", "2", "--chunk-size", "3", *FAST]
    assert landscape.risk.main([*args, "--out", str(tmp_path / "whole")]) == 0
    assert "update_cvar_drop:" in capsys.readouterr().out
    whole = json.loads((tmp_path / "whole" / "risk.json").read_text())
    assert set(whole["scores"]) == {"update_cvar_drop", "update_mean_drop", "random_cvar_drop"}
    assert whole["probe"]["pool"] == 2 * HORIZON and len(whole["update"]["mean"]) == 3
    rows = (tmp_path / "whole" / "risk.csv").read_text().splitlines()
    assert rows[0] == "kind,index,distance,mean,se" and len(rows) == 1 + 7
    assert (tmp_path / "whole" / "risk.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "whole" / "risk.html").stat().st_size > 0

    real = landscape.evaluate.evaluate_vectors
    calls = {"n": 0, "vectors": 0}

    def killed_at_the_second_chunk(template, vectors, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        calls["vectors"] += len(vectors)
        return real(template, vectors, *a, **kw)

    # grid.py binds evaluate_vectors at import or looks it up in landscape.evaluate per call
    monkeypatch.setattr(landscape.grid, "evaluate_vectors", killed_at_the_second_chunk,
                        raising=False)
    monkeypatch.setattr(landscape.evaluate, "evaluate_vectors", killed_at_the_second_chunk)
    cut = [*args, "--out", str(tmp_path / "cut")]
    assert landscape.risk.main(cut) == 2
    assert "interrupted: 3 of 7 points are saved" in capsys.readouterr().err
    calls["vectors"] = 0

    def no_training(*a, **kw):
        raise AssertionError("the saved updates are recomputed")

    monkeypatch.setattr(landscape.risk, "update_sequences", no_training)
    assert landscape.risk.main(cut) == 0
    assert calls["vectors"] == 4
    assert json.loads((tmp_path / "cut" / "risk.json").read_text()) == whole
