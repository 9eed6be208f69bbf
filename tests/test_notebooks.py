"""The notebooks in smoke mode (CI): every notebook executes on the results of
notebooks/specs/smoke.yaml and ends with its claims section; the shared loader notebooks/results.py
on synthetic runs with known answers; the committed notebooks hold no outputs."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml
from conftest import DOOR_HUMAN
from nbclient import NotebookClient

from smac_core.checkpoint import FORMAT_VERSION, METADATA_FILE

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
CLAIMS_HEADER = "## Claims checked against the stored results"
CELL_TIMEOUT_S = 300

sys.path.insert(0, str(NOTEBOOK_DIR))
import results  # noqa: E402  (notebooks/results.py, imported by the notebooks the same way)


def execute(notebook: nbformat.NotebookNode) -> str:
    """Run a notebook in a fresh python3 kernel started in notebooks/; its stdout."""
    NotebookClient(notebook, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                   resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
    return "".join(output["text"] for cell in notebook.cells for output in cell.get("outputs", [])
                   if output.get("name") == "stdout")


# ------------------------------------------------------------------------------ smoke mode
@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory) -> Path:
    """notebooks/specs/smoke.yaml run once into a private root and Minari store, with its
    landscapes (interpolation, plane and the trajectories notebook 5 draws), then exported."""
    from smac_core.data.__main__ import main as data_main
    from studies.experiments import main as experiments_main

    tmp = tmp_path_factory.mktemp("notebooks")
    spec = yaml.safe_load((NOTEBOOK_DIR / "specs" / "smoke.yaml").read_text())
    spec["root"] = str(tmp / "smoke")
    spec_path = tmp / "smoke.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(tmp / "minari"))  # kernels inherit it
        assert data_main(["import", str(DOOR_HUMAN / "door-v0_demos_clipped.hdf5"),
                          "--id", "local/door/human-binary-v0", "--env", "door-binary",
                          "--ignore-timeouts"]) == 0
        assert experiments_main(["run", str(spec_path), "--jobs", "1", "--device", "cpu"]) == 0
        assert experiments_main(["landscapes", str(spec_path), "--device", "cpu",
                                 "--workers", "0"]) == 0
        assert experiments_main(["export", str(spec_path), "--to", str(tmp / "results")]) == 0
        yield tmp / "results"  # the notebooks read the exported tree, as they read results/


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_smoke_results(path, smoke_root, monkeypatch):
    monkeypatch.setenv(results.RESULTS_ENV, str(smoke_root))
    stdout = execute(nbformat.read(path, as_version=4))
    assert f"results root {smoke_root}: 3 finished runs (0 unfinished) on door-binary" in stdout
    claims = stdout[stdout.index(CLAIMS_HEADER):]
    assert "scale: 3 finished runs" in claims and "\n- " in claims


@pytest.mark.slow
def test_notebooks_explain_a_missing_root(tmp_path, monkeypatch):
    """Every notebook's code, run in one kernel (reset between notebooks) on a root that does
    not exist: it says so, names the command, and still ends with its claims section."""
    monkeypatch.setenv(results.RESULTS_ENV, str(tmp_path / "nothing"))
    combined = nbformat.v4.new_notebook()
    for path in NOTEBOOKS:
        combined.cells.append(nbformat.v4.new_code_cell("%reset -f"))
        combined.cells += [cell for cell in nbformat.read(path, as_version=4).cells
                           if cell.cell_type == "code"]
    stdout = execute(combined)
    assert stdout.count("does not exist: there are no results to show yet") == len(NOTEBOOKS)
    assert stdout.count(CLAIMS_HEADER) == len(NOTEBOOKS)
    assert "python -m studies.experiments run notebooks/specs/reduced.yaml" in stdout


def test_committed_notebooks_show_the_committed_results():
    """The notebooks are committed executed on results/ (notebooks 6 and 8 on all of it, 9 on
    results/flow, the others on results/reduced), without errors, and small (plotly.js is not
    embedded)."""
    assert len(NOTEBOOKS) == 9
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        assert "Reproduces the paper's" in notebook.cells[0].source, path.name
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), path.name
        outputs = [output for cell in code for output in cell.outputs]
        assert not [o for o in outputs if o.output_type == "error"], path.name
        stdout = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
        root = ("results" if path.stem in ("06_dataset_coverage", "08_landscape_beyond")
                else "results/flow" if path.stem == "09_flow_agents" else "results/reduced")
        assert f"results root {root}: " in stdout, path.name
        assert CLAIMS_HEADER in stdout, path.name
        assert path.stat().st_size < 3_000_000, path.name


# ------------------------------------------------------------------------------ results.py
def write_run(root: Path, run_id: str, config: dict, evaluations: dict[int, list[float]],
              final_step: int | None) -> Path:
    """A run directory as smac_core.train writes it: config.json, metrics.jsonl (evaluation
    rows with per-episode scores) and, when finished, checkpoints/final metadata."""
    run = root / run_id
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config))
    rows = [{"step": step, "phase": config["phase"], "eval_returns": scores,
             "eval_scores": scores} for step, scores in evaluations.items()]
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    if final_step is not None:
        final = run / "checkpoints" / "final"
        final.mkdir(parents=True)
        (final / METADATA_FILE).write_text(json.dumps({"format_version": FORMAT_VERSION,
                                                       "step": final_step}))
    return run


def write_cell(root: Path, task: str, label: str, algorithm: str, seed: int,
               online: dict[int, list[float]], online_algorithm: str = "sac",
               optimizer: str = "adam", finished: bool = True) -> None:
    """One offline run (100 updates) and its SAC fine-tuning (evaluations ``online``)."""
    base = f"{task}/{label}/seed{seed}"
    offline = {"phase": "offline", "algorithm": algorithm, "env": task, "seed": seed,
               "steps": 100, "dataset_id": f"local/{task}", "agent_config": {"optimizer":
                                                                            optimizer}}
    write_run(root, f"{base}/offline", offline, {50: [1.0, 1.0], 100: [2.0, 2.0]}, 100)
    config = {"phase": "online", "algorithm": online_algorithm, "env": task, "seed": seed,
              "steps": max(online), "from": f"{base}/offline", "from_algorithm": algorithm,
              "agent_config": {"optimizer": "adam"}}
    write_run(root, f"{base}/online-{online_algorithm}", config, online,
              max(online) if finished else None)


# per-episode scores of a fine-tuning that falls from 100 to 10 at step 10 and recovers: a drop
# of 90 +- ~1.5, far beyond any test level; and one that stays at 100 +- 1 (no drop)
DROPPING = {0: [99.0, 100.0, 101.0], 10: [9.0, 10.0, 11.0], 100: [99.0, 100.0, 101.0]}
FLAT = {0: [99.0, 100.0, 101.0], 10: [101.0, 100.0, 99.0], 100: [99.0, 100.0, 101.0]}


def test_study_finds_finished_runs_at_any_depth(tmp_path, capsys):
    root = tmp_path / "results"
    write_cell(root / "coverage" / "a", "hopper-medium-replay", "iql", "iql", 0, DROPPING)
    write_cell(root, "door-binary", "iql", "iql", 1, DROPPING, finished=False)
    study = results.load_study(root)
    assert [(r.task, r.phase, r.seed) for r in study.runs] == [
        ("hopper-medium-replay", "offline", 0), ("hopper-medium-replay", "online", 0),
        ("door-binary", "offline", 1)]
    assert study.unfinished == 1
    online = study.select("online")[0]
    assert (online.label, online.online_label, online.offline_algorithm) == ("iql", "sac", "iql")
    assert online.dataset_id == "local/hopper-medium-replay" and online.default_optimizer
    assert "3 finished runs (1 unfinished)" in capsys.readouterr().out

    results.load_study(tmp_path / "missing")
    out = capsys.readouterr().out
    assert "does not exist" in out and "python -m studies.experiments landscapes" in out


def test_compute_seconds_sum_the_runner_records(tmp_path):
    root = tmp_path / "results"
    write_cell(root, "hopper-medium-replay", "iql", "iql", 0, DROPPING)
    run = root / "hopper-medium-replay/iql/seed0"
    attempts = [{"started": "2026-01-01T00:00:00+00:00", "ended": "2026-01-01T00:01:30+00:00"},
                {"started": "2026-01-01T01:00:00+00:00", "ended": "2026-01-01T01:00:10+00:00"},
                {"started": "2026-01-01T02:00:00+00:00"}]  # still running: not counted
    (run / "offline/runner.json").write_text(json.dumps({"attempts": attempts}))
    landscape = root / "landscapes/interpolation/hopper-medium-replay/iql/seed0"
    landscape.mkdir(parents=True)
    (landscape / "command.json").write_text(json.dumps(
        {"started": "2026-01-01T03:00:00+00:00", "ended": "2026-01-01T03:00:30+00:00"}))
    # the online run has no runner.json (run by hand): it adds nothing
    assert results.compute_seconds(root) == {"landscapes": 30.0, "offline iql": 100.0}


@pytest.mark.slow
def test_compute_seconds_of_the_smoke_results(smoke_root):
    seconds = results.compute_seconds(smoke_root)
    assert set(seconds) == {"offline td3bc", "online sac", "online td3bc", "landscapes"}
    assert all(value > 0 for value in seconds.values())


def test_results_root_is_relative_to_the_repository(monkeypatch, tmp_path):
    monkeypatch.delenv(results.RESULTS_ENV, raising=False)
    assert results.results_root() == REPO / "results" / "reduced"
    monkeypatch.setenv(results.RESULTS_ENV, "results/other")
    assert results.results_root() == REPO / "results" / "other"
    monkeypatch.setenv(results.RESULTS_ENV, str(tmp_path))
    assert results.results_root() == tmp_path


def test_seed_mean_uses_shared_steps_and_standard_error_over_seeds():
    from smac_core.metrics import EvalCurve

    one = EvalCurve(np.array([0, 10, 20]), (np.array([0.0]), np.array([2.0]), np.array([4.0])))
    two = EvalCurve(np.array([0, 20]), (np.array([2.0]), np.array([8.0])))
    curve = results.seed_mean([one, two])
    assert curve.steps.tolist() == [0, 20] and curve.seeds == 2
    np.testing.assert_allclose(curve.mean, [1.0, 6.0])
    # two values a, b: s.e. = |a - b| / sqrt(2) / sqrt(2) = |a - b| / 2
    np.testing.assert_allclose(curve.se, [1.0, 2.0])
    assert math.isnan(results.seed_mean([one]).se[0])


def test_drop_rows_verdicts_regrets_and_claims(tmp_path):
    root = tmp_path / "results"
    for seed in (0, 1):
        write_cell(root, "hopper-medium-replay", "smac", "smac", seed, FLAT, optimizer="muon")
        write_cell(root, "hopper-medium-replay", "cql", "cql", seed, DROPPING)
    write_cell(root, "door-binary", "smac", "smac", 0, DROPPING, optimizer="muon")
    # an ablation run (non-default optimizer) is not in the main grid
    write_cell(root, "door-binary", "smac-adam", "smac", 0, FLAT, optimizer="adam")
    study = results.load_study(root)
    rows = {(r.cell.task, r.cell.label): r for r in results.drop_rows(study)}
    assert set(rows) == {("hopper-medium-replay", "smac"), ("hopper-medium-replay", "cql"),
                         ("door-binary", "smac")}
    cql = rows["hopper-medium-replay", "cql"]
    assert (cql.seeds, cql.over, cql.drop.verdict, cql.drop.step) == (2, "seeds", "drop", 10)
    assert cql.drop.drop == pytest.approx(90.0)
    assert (cql.start, cql.end) == (pytest.approx(100.0), pytest.approx(100.0))
    assert "| 2 | 100.00 | 100.00 | 90.00 ± 0.00 (seeds) | 10 |" in results.format_drops([cql])
    assert rows["hopper-medium-replay", "smac"].drop.verdict == "smooth"
    door = rows["door-binary", "smac"]
    assert (door.over, door.drop.verdict) == ("episodes of 1 seed", "drop")
    claims = results.drop_claims(list(rows.values()))
    assert "CONTRADICTED: SMAC -> SAC transfers smoothly on 1/2 tasks" in claims[0]
    assert claims[1].startswith("SUPPORTED: CalQL/CQL -> SAC drops on 1/1 tasks")

    by_optimizer = results.drops_by(results.drop_rows(study, main_grid=False), "optimizer")
    assert set(by_optimizer["door-binary", "smac", "sac"]) == {"adam", "muon"}

    regrets = results.regrets(study)
    # CQL counts in the paper's CalQL/CQL row; the dropping curve's regret (trapezoid):
    # shortfall 0, 90, 0 at steps 0, 10, 100 -> (10 * 45 + 90 * 45) / 100 = 45
    assert regrets["calql", "sac", "hopper-medium-replay"] == pytest.approx([45.0, 45.0])
    assert regrets["smac", "sac", "hopper-medium-replay"] == [0.0, 0.0]
    (claim,) = results.regret_claims(regrets)
    assert claim.startswith("SUPPORTED: SMAC -> SAC has lower regret than the best baseline on "
                            "1/1 tasks (reduction: hopper-medium-replay +100%")


def _interpolation(seed: int, mean: list[float]) -> results.Interpolation:
    ts = np.array([0.0, 0.5, 1.0])
    return results.Interpolation("hopper-medium-replay", "cql", seed, "normalised score", ts,
                                 np.array(mean), np.full(3, 1.0), "unused")


def test_interpolation_over_seeds_judges_the_seed_mean():
    curve, over = results.interpolation_over_seeds([_interpolation(0, [50.0, 10.0, 60.0]),
                                                    _interpolation(1, [52.0, 14.0, 62.0])])
    assert over == "seeds"
    np.testing.assert_allclose(curve.mean, [51.0, 12.0, 61.0])
    np.testing.assert_allclose(curve.se, [1.0, 2.0, 1.0])
    assert curve.verdict.verdict == "valley" and curve.verdict.depth == pytest.approx(39.0)
    claims = results.valley_claims({("hopper-medium-replay", "cql"): (curve, over)})
    assert claims == ["SUPPORTED: every baseline dips between pre-trained and SAC fine-tuned: "
                      "valley in 1/1 (task, method) pairs ['CQL on hopper-medium-replay']"]


def test_plane_paths_read_off_the_grid():
    axis = np.array([-0.5, 0.0, 0.5, 1.0])
    mean = np.full((4, 4), 50.0)
    mean[1, 2] = 0.0   # (x=0.5, y=0): a hole on the path to theta_1
    plane = results.Plane("hopper-medium-replay", "iql", 0, "normalised score", axis, axis,
                          mean, np.full((4, 4), 1.0), ())
    to_sac, to_td3bc = plane.path_curve("x"), plane.path_curve("y")
    assert to_sac.ts.tolist() == [0.0, 0.5, 1.0] and to_sac.verdict.verdict == "valley"
    assert to_td3bc.verdict.verdict == "monotone"
    coarse = results.Plane("t", "iql", 0, "score", np.array([0.0, 1.0]), np.array([0.0, 1.0]),
                           np.zeros((2, 2)), np.ones((2, 2)), ())
    assert coarse.path_curve("x") is None

    averaged = results.plane_over_seeds([plane, plane])
    np.testing.assert_allclose(averaged.mean, mean)
    np.testing.assert_allclose(averaged.se, 0.0)


def test_default_optimizers_mirror_the_algorithm_configs():
    """The main grid's optimizers (``smac_core.paper``, read without loading the algorithms)
    are the defaults of the algorithms' configs."""
    from smac_core.algos import ALGORITHMS
    from smac_core.paper import default_optimizer

    for name, algorithm in ALGORITHMS.items():
        assert default_optimizer(name) == algorithm.config_class().optimizer, name
