"""``landscape.risk_validation``: the AUROC and its bootstrap interval against hand-computed
values, and the command end to end on tiny online runs started from two checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_landscape_cli import FAST
from test_landscape_path import sac_checkpoint, write_demonstrations
from test_metrics import write_online_run

from landscape.risk_validation import auroc, bootstrap_interval, main
from smac_core.errors import SmacError


def test_auroc_known_answers():
    drops = np.array([False, True, False, True])
    assert auroc(np.array([1.0, 2.0, 3.0, 4.0]), drops) == 0.75  # 3 of 4 pairs ordered
    assert auroc(np.array([0.0, 1.0, 0.0, 1.0]), drops) == 1.0
    assert auroc(np.array([1.0, 0.0, 1.0, 0.0]), drops) == 0.0
    assert auroc(np.ones(4), drops) == 0.5  # ties count half
    with pytest.raises(SmacError, match="both verdicts"):
        auroc(np.ones(3), np.ones(3, dtype=bool))


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(0)
    drops = np.arange(40) % 2 == 0
    scores = drops + rng.normal(size=40)
    low, high = bootstrap_interval(scores, drops, 500, 0.95, seed=1)
    assert 0 <= low < auroc(scores, drops) < high <= 1
    assert bootstrap_interval(drops.astype(float), drops, 50, 0.95, seed=1) == (1.0, 1.0)


def test_validation_end_to_end_on_tiny_runs(tmp_path, capsys):
    data = write_demonstrations(tmp_path / "demos.npy")
    risky, safe = (sac_checkpoint(tmp_path / name, seed=k)
                   for k, name in enumerate(("risky", "safe")))
    steps = [0, 100, 1000]
    runs = [write_online_run(tmp_path / f"run_{k}", means, steps, seed=k, from_dir=source)
            for k, (means, source) in enumerate([([50, 5, 60], risky), ([50, 2, 70], risky),
                                                 ([50, 55, 60], safe), ([50, 52, 70], safe)])]
    out = tmp_path / "out"
    assert main([*map(str, runs), "--dataset", str(data), "--budget", "2", "--steps", "2",
                 "--batch-size", "4", "--episodes", "2", "--bootstrap", "50", "--out", str(out),
                 *FAST]) == 0
    assert "2 runs dropped, 2 did not" in capsys.readouterr().out
    results = json.loads((out / "validation.json").read_text())
    assert [r["drop"]["verdict"] for r in results["runs"]] == ["drop", "drop", "smooth", "smooth"]
    assert sorted(p.name for p in (out / "probes").iterdir()) == ["probe_0", "probe_1"]
    for name, row in results["scores"].items():  # all drops share one checkpoint's score
        risky_score, safe_score = (results["runs"][k]["scores"][name] for k in (0, 2))
        expected = 1.0 if risky_score > safe_score else 0.0 if risky_score < safe_score else 0.5
        assert row["auroc"] == expected and row["low"] <= expected <= row["high"]
    assert (out / "validation.csv").read_text().startswith("run,offline,online,task,seed,")
