"""Transfer metrics on hand-made curves with known answers, and the CLI on synthetic run dirs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from smac_core.errors import SmacError
from smac_core.metrics import (
    PAPER_REGRET_TABLE,
    EvalCurve,
    cumulative_regret,
    format_table,
    load_run,
    main,
    normalized_regret_table,
    read_evaluations,
    transfer_drop,
    transfer_drop_over_seeds,
)
from smac_core.tasks import TASKS

# Ten episodes per evaluation with a fixed spread: mean exactly m, sample std ~3.36 * spread.
# The same offsets at every evaluation: paired episode by episode, every episode moves by the
# same amount, so paired differences are exact (s.e. 0).
OFFSETS = np.linspace(-1.0, 1.0, 10) * 5.0


def make_curve(steps: list[int], means: list[float], spread: float = 1.0) -> EvalCurve:
    return EvalCurve(np.array(steps), tuple(m + spread * OFFSETS for m in means))


def test_rising_curve_and_constant_curve_have_no_drop():
    steps = [0, 500, 1000, 2000, 5000, 10000]
    rising = make_curve(steps, [50, 52, 55, 60, 70, 90])
    drop = transfer_drop(rising, window=1000)
    assert drop.verdict == "smooth"
    assert drop.drop == pytest.approx(-2.0)  # the lowest window evaluation is above the baseline
    assert drop.step == 500

    constant = make_curve(steps, [70.0] * len(steps))
    assert transfer_drop(constant, window=1000).verdict == "smooth"


def test_deep_early_dip_is_a_drop_of_the_right_depth():
    curve = make_curve([0, 250, 500, 1000, 2000, 4000, 20000], [80, 60, 20, 35, 70, 85, 90])
    drop = transfer_drop(curve, window=2000)
    assert drop.verdict == "drop"
    assert drop.drop == pytest.approx(60.0)
    assert drop.step == 500
    assert drop.se == pytest.approx(0.0, abs=1e-12)  # every episode fell by exactly 60
    # default window: 10% of the last evaluated step (2000): same deepest point
    assert transfer_drop(curve).window == 2000


def test_shallow_dip_within_noise_is_smooth():
    # Dip of 2 points against independent per-episode noise of std 17: far inside the noise.
    rng = np.random.default_rng(3)
    noise = rng.normal(0.0, 17.0, size=(5, 10))
    means = np.array([80.0, 78.0, 79.0, 80.0, 85.0])
    curve = EvalCurve(np.array([0, 100, 200, 300, 4000]),
                      tuple(means[:, None] + noise - noise.mean(axis=1, keepdims=True)))
    drop = transfer_drop(curve, window=300)
    assert drop.drop == pytest.approx(2.0)
    assert drop.verdict == "smooth"


def test_drop_p_value_is_paired_t_test_times_number_of_window_evaluations():
    rng = np.random.default_rng(1)
    episodes = tuple(rng.normal(mean, 10.0, size=8) for mean in (70, 60, 52, 65, 75))
    curve = EvalCurve(np.array([0, 100, 200, 400, 3000]), episodes)
    drop = transfer_drop(curve, window=400)
    reference = stats.ttest_rel(episodes[0], episodes[2], alternative="greater")
    differences = episodes[0] - episodes[2]
    assert drop.step == 200
    assert drop.p_value == pytest.approx(min(1.0, 3 * reference.pvalue), rel=1e-9)
    assert drop.drop == pytest.approx(differences.mean())
    assert drop.se == pytest.approx(differences.std(ddof=1) / np.sqrt(8))
    assert drop.p_raw == pytest.approx(reference.pvalue, rel=1e-9) and drop.evaluations == 3


def test_paired_drop_across_very_different_episodes_is_a_drop_not_smooth():
    # Issue 10: episode i resets with the same seed at every evaluation, so episodes are paired.
    # Ten episodes spread over tens of points, each falling by about 8.45 (noise 0.5): the
    # paired test sees the drop; Welch, treating the episodes as independent, calls it smooth.
    rng = np.random.default_rng(10)
    baseline = rng.uniform(10.0, 90.0, size=10)
    episodes = (baseline, baseline - 8.45 + rng.normal(0.0, 0.5, size=10),
                baseline - 2.0 + rng.normal(0.0, 0.5, size=10), baseline + 5.0)
    curve = EvalCurve(np.array([0, 100, 200, 5000]), episodes)
    drop = transfer_drop(curve, window=200)
    welch = stats.ttest_ind(baseline, episodes[1], equal_var=False, alternative="greater")
    assert 2 * welch.pvalue > 0.05  # Welch with the same correction: "smooth"
    assert drop.step == 100 and drop.drop == pytest.approx(8.45, abs=0.5)
    assert drop.verdict == "drop"
    assert drop.p_value < 1e-6


def test_drop_refuses_to_pair_evaluations_of_different_sizes():
    curve = EvalCurve(np.array([0, 100]), (np.arange(10.0), np.arange(8.0)))
    with pytest.raises(SmacError, match="cannot pair evaluation episodes: the baseline has 10 "
                                        "episodes, the evaluation at step 100 has 8"):
        transfer_drop(curve, window=100)


def test_drop_false_alarm_rate_under_no_drop_stays_at_alpha():
    # 400 runs whose every evaluation draws from the same distribution: the minimum of 10 window
    # evaluations falls below the baseline by chance; the Bonferroni correction must keep false
    # "drop" verdicts at or below alpha = 0.05 (0.08 is 2 binomial s.d. above 0.05 at n = 400),
    # whereas an uncorrected test of the minimum flags about a quarter of them.
    rng = np.random.default_rng(0)
    steps = np.arange(0, 11_000, 100)
    verdicts, uncorrected = [], []
    for _ in range(400):
        curve = EvalCurve(steps, tuple(rng.normal(50.0, 20.0, size=10) for _ in steps))
        drop = transfer_drop(curve, window=1000)
        verdicts.append(drop.verdict == "drop")
        uncorrected.append(drop.p_value / 10 < 0.05)
    assert np.mean(verdicts) < 0.08
    assert np.mean(uncorrected) > 0.15


def test_drop_over_seeds_is_paired_t_test_on_per_seed_dips():
    steps = [0, 100, 200, 5000]
    seed_means = [[80, 50, 60, 90], [70, 45, 40, 85], [90, 55, 70, 95]]
    curves = [make_curve(steps, means) for means in seed_means]
    drop = transfer_drop_over_seeds(curves, window=200)
    dips_at_100 = np.array([30.0, 25.0, 35.0])  # mean dips: 30 at step 100, 23.3 at 200
    assert drop.step == 100
    assert drop.drop == pytest.approx(30.0)
    assert drop.se == pytest.approx(dips_at_100.std(ddof=1) / np.sqrt(3))
    reference = stats.ttest_1samp(dips_at_100, 0.0, alternative="greater")
    assert drop.p_value == pytest.approx(2 * reference.pvalue, rel=1e-9)
    assert drop.verdict == "drop"

    shifted = make_curve([0, 150, 200, 5000], seed_means[0])
    with pytest.raises(SmacError, match="share the schedule"):
        transfer_drop_over_seeds([curves[0], shifted], window=200)


def test_regret_is_shortfall_from_100_not_from_the_runs_best():
    steps = [0, 100, 200, 1000]
    assert cumulative_regret(make_curve(steps, [20.0] * 4)) == pytest.approx(80.0)
    assert cumulative_regret(make_curve(steps, [100.0] * 4)) == pytest.approx(0.0)


def test_regret_of_step_function_by_hand_and_independent_of_evaluation_density():
    # Score 0 until step 100, linear to 10 at step 200, 10 until 1000. Shortfall from 100:
    # 100 * 100 (0..100) + 95 * 100 (100..200) + 90 * 800 (200..1000) = 91500 / 1000 -> 91.5.
    curve = make_curve([0, 100, 200, 1000], [0, 0, 10, 10])
    assert cumulative_regret(curve) == pytest.approx(91.5)
    dense_early = make_curve([0, 20, 40, 60, 100, 200, 1000], [0, 0, 0, 0, 0, 10, 10])
    assert cumulative_regret(dense_early) == pytest.approx(91.5)


def test_regret_table_ranks_a_uniformly_lower_curve_worse():
    steps = [0, 100, 200, 1000]
    high = make_curve(steps, [40, 50, 70, 80])
    low = make_curve(steps, [20, 30, 50, 60])  # the same shape, 20 points lower everywhere
    assert cumulative_regret(low) == pytest.approx(cumulative_regret(high) + 20.0)
    table = normalized_regret_table({("smac", "sac", "A"): [cumulative_regret(high)],
                                     ("iql", "sac", "A"): [cumulative_regret(low)]})
    assert table == {"smac": {"sac": 0.0}, "iql": {"sac": 1.0}}


def test_regret_of_raw_returns_is_refused():
    returns = EvalCurve(np.array([0, 100]), (np.ones(3), np.ones(3)), metric="return")
    with pytest.raises(SmacError, match="regret is defined on normalised scores"):
        cumulative_regret(returns)


def test_min_max_normalised_regret_table_by_hand():
    regrets = {
        # task A: cell means 2, 6, 3 -> 0, 1, 0.25
        ("smac", "sac", "A"): [1.0, 3.0],
        ("calql", "sac", "A"): [6.0],
        ("smac", "td3", "A"): [3.0, 3.0],
        # task B: cell means 20, 10, 50 -> 0.25, 0, 1; (smac, td3) only in A, (smac, awr) only in B
        ("smac", "sac", "B"): [20.0],
        ("calql", "sac", "B"): [5.0, 15.0],
        ("smac", "awr", "B"): [50.0],
    }
    table = normalized_regret_table(regrets)
    assert table == {"smac": {"sac": pytest.approx(0.125), "td3": pytest.approx(0.25),
                              "awr": pytest.approx(1.0)},
                     "calql": {"sac": pytest.approx(0.5)}}
    assert normalized_regret_table({("smac", "sac", "A"): [3.0]}) == {"smac": {"sac": 0.0}}
    text = format_table(table)
    assert text.splitlines()[0] == "| offline \\ online | AWR | SAC | TD3 |"
    assert "| SMAC | 1.000 | 0.125 | 0.250 |" in text
    assert "| CalQL | - | 0.500 | - |" in text


def test_paper_table_constant_prints_in_paper_order():
    assert PAPER_REGRET_TABLE["smac"]["sac"] == 0.031
    lines = format_table(PAPER_REGRET_TABLE).splitlines()
    assert lines[0] == "| offline \\ online | AWR | SAC | TD3 | TD3+BC |"
    assert lines[2] == "| SMAC | 0.380 | 0.031 | 0.090 | 0.226 |"
    assert lines[-1] == "| TD3+BC | 0.654 | 0.962 | 0.545 | 0.562 |"


# ---- run directories (format: README, "Run directory") ----

def eval_row(step: int, phase: str, scores: list[float] | None,
             returns: list[float]) -> dict:
    return {"step": step, "phase": phase, "wall_time": 0.1 * step,
            "eval_returns": returns, "eval_successes": [r > 0 for r in returns],
            "eval_scores": scores, "eval_return": float(np.mean(returns)),
            "eval_score": None if scores is None else float(np.mean(scores)),
            "eval_score_se": None if scores is None
            else float(np.std(scores, ddof=1) / np.sqrt(len(scores)))}


def write_run(path: Path, config: dict, rows: list[dict]) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    (path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_online_run(path: Path, means: list[float], steps: list[int], offline: str = "smac",
                     online: str = "sac", task: str = "door-binary", seed: int = 0,
                     from_dir: Path | None = None, scores: bool = True,
                     noise: np.ndarray | None = None) -> Path:
    """Evaluations ``mean + OFFSETS`` (+ ``noise[k]`` (10,) at evaluation k when given)."""
    # the keys smac_core.runs.RunSpec.to_json writes
    config = {"phase": "online", "algorithm": online, "env": task, "seed": seed,
              "steps": steps[-1], "command": [],
              "dataset_id": TASKS[task].dataset_id if task in TASKS else f"test/{task}-v0",
              "from": str(from_dir or path.parent / "offline" / "checkpoints" / "final"),
              "from_algorithm": offline}
    rows = [{"step": 0, "phase": "online", "wall_time": 0.0, "train/critic_loss": 1.0}]
    for k, (step, mean) in enumerate(zip(steps, means, strict=True)):
        values = (mean + OFFSETS + (0.0 if noise is None else noise[k])).tolist()
        returns = [v * 2.0 for v in values]
        rows.append(eval_row(step, "online", values if scores else None, returns))
        rows.append({"step": step, "phase": "online", "wall_time": 1.0, "train/actor_loss": 0.5})
    return write_run(path, config, rows)


def test_read_evaluations_uses_returns_when_no_reference(tmp_path):
    run = write_online_run(tmp_path / "pendulum", [10, 20], [0, 100], task="Pendulum-v1",
                           scores=False)
    curve = read_evaluations(run)
    assert curve.metric == "return"
    np.testing.assert_allclose(curve.mean, [20.0, 40.0])
    assert curve.steps.tolist() == [0, 100]


def test_run_without_step_zero_uses_offline_final_evaluation(tmp_path):
    offline_dir = write_run(tmp_path / "offline", {"phase": "offline", "algorithm": "iql"},
                            [eval_row(s, "offline", (m + OFFSETS).tolist(), [1.0] * 10)
                             for s, m in [(1000, 40.0), (2000, 75.0)]])
    run = load_run(write_online_run(tmp_path / "online", [30, 70, 80], [100, 500, 5000],
                                    offline="iql", from_dir=offline_dir / "checkpoints" / "final"))
    assert run.baseline_source == "offline final (step 2000)"
    assert transfer_drop(run.curve, run.baseline, window=500).drop == pytest.approx(45.0)


def test_cli_prints_drop_regret_and_table(tmp_path, capsys):
    steps = [0, 100, 200, 1000]
    runs = [write_online_run(tmp_path / "smac-sac-0", [80, 80, 80, 80], steps, seed=0),
            write_online_run(tmp_path / "smac-sac-1", [80, 79, 80, 80], steps, seed=1),
            write_online_run(tmp_path / "calql-sac-0", [80, 10, 40, 80], steps, offline="calql"),
            write_online_run(tmp_path / "calql-sac-1", [80, 15, 50, 80], steps, offline="calql",
                             seed=1)]
    assert main([*map(str, runs), "--window", "200", "--table"]) == 0
    out = capsys.readouterr().out
    lines = {line.split(" | ")[0].lstrip("| "): line for line in out.splitlines()}
    assert "| smac | sac | door-binary | 0 | score | online step 0 | 0.00 ± " in lines[str(runs[0])]
    assert "| smooth (p=1" in lines[str(runs[0])]
    # paired: every episode falls by exactly 70
    assert "| 70.00 ± 0.00 @ 100 | drop" in lines[str(runs[2])]
    # regret: calql seed 0 shortfall from 100 [20, 90, 60, 20] -> (5500 + 7500 + 32000) / 1000
    assert lines[str(runs[2])].endswith("| 45.000 |")
    # seed-1 smac: shortfall [20, 21, 20, 20] -> (2050 + 2050 + 16000) / 1000 = 20.1;
    # cells: smac 20.05, calql 42.5
    assert lines[str(runs[1])].endswith("| 20.100 |")
    assert "| calql | sac | door-binary | 2 | 67.50 ± 2.50 @ 100 | drop" in out
    assert "| SMAC | 0.000 |" in out
    assert "| CalQL | 1.000 |" in out


def test_cli_json_per_run_drop_p_values_and_regret_recomputable_from_metrics(tmp_path, capsys):
    steps = [0, 100, 200, 1000]
    noise = np.random.default_rng(4).normal(0.0, 2.0, size=(2, 4, 10))
    runs = [write_online_run(tmp_path / f"smac-sac-{seed}", [60, 50, 55, 90], steps, seed=seed,
                             noise=noise[seed]) for seed in (0, 1)]
    pendulum = write_online_run(tmp_path / "pendulum", [10, 5, 20, 30], steps,
                                task="Pendulum-v1", scores=False)
    assert main([*map(str, runs), str(pendulum), "--window", "200", "--table", "--json"]) == 0
    report = json.loads(capsys.readouterr().out,
                        parse_constant=lambda name: pytest.fail(f"not strict JSON: {name}"))
    first, _, raw = report["runs"]
    assert first["run"] == str(runs[0]) and (first["step"], first["window"]) == (100, 200)
    # recompute from metrics.jsonl: paired t-test of step 0 against step 100, K = 2
    rows = [json.loads(line) for line in (runs[0] / "metrics.jsonl").read_text().splitlines()]
    scores = {row["step"]: np.array(row["eval_scores"]) for row in rows if "eval_scores" in row}
    differences = scores[0] - scores[100]
    reference = stats.ttest_rel(scores[0], scores[100], alternative="greater")
    assert first["drop"] == pytest.approx(differences.mean())
    assert first["se"] == pytest.approx(differences.std(ddof=1) / np.sqrt(10))
    assert first["evaluations"] == 2
    assert first["p_raw"] == pytest.approx(reference.pvalue, rel=1e-9)
    assert first["p_value"] == pytest.approx(min(1.0, 2 * reference.pvalue), rel=1e-9)
    assert first["verdict"] == "drop"
    mean = np.array([scores[step].mean() for step in steps])
    area = np.sum((200.0 - mean[1:] - mean[:-1]) / 2 * np.diff(steps))  # (100 - s) trapezoid
    assert first["regret"] == pytest.approx(area / 1000)
    # raw returns: no reference score, so no regret (null), and out of the table
    assert raw["metric"] == "return" and raw["regret"] is None
    assert report["regret_left_out"] == [str(pendulum)]
    assert report["regret_table"] == {"smac": {"sac": 0.0}}
    (group,) = report["over_seeds"]
    assert (group["task"], group["seeds"], group["verdict"]) == ("door-binary", 2, "drop")


def test_cli_markdown_says_regret_is_undefined_for_raw_returns(tmp_path, capsys):
    pendulum = write_online_run(tmp_path / "pendulum", [10, 5, 20], [0, 100, 1000],
                                task="Pendulum-v1", scores=False)
    assert main([str(pendulum), "--window", "100"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("| n/a (raw returns) |")


def test_cli_rejects_bad_input_with_clear_message(tmp_path, capsys):
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    assert main([str(not_a_run)]) == 2
    assert "is not a run directory (no config.json)" in capsys.readouterr().err

    no_evals = write_run(tmp_path / "no-evals", {"algorithm": "sac", "from": "x",
                                                 "from_algorithm": "smac", "env": "door-binary"},
                         [{"step": 10, "phase": "online", "wall_time": 1.0, "train/q": 1.0}])
    assert main([str(no_evals)]) == 2
    assert "has no online evaluation rows" in capsys.readouterr().err

    offline = write_run(tmp_path / "offline-run", {"algorithm": "iql", "env": "door-binary"},
                        [eval_row(0, "offline", [1.0, 2.0], [1.0, 2.0])])
    assert main([str(offline)]) == 2
    assert "is not an online run" in capsys.readouterr().err

    broken = write_online_run(tmp_path / "broken", [1, 2], [0, 100])
    with open(broken / "metrics.jsonl", "a") as f:
        f.write('{"step": 200, "pha\n')
    assert main([str(broken)]) == 2
    assert "metrics.jsonl:6 is not valid JSON" in capsys.readouterr().err

    short = write_online_run(tmp_path / "short", [1, 2], [0, 100])
    assert main([str(short), "--window", "50"]) == 2
    assert "no evaluation after step 0 within the window of 50 steps" in capsys.readouterr().err


def test_module_entry_point_exits_non_zero(tmp_path):
    result = subprocess.run([sys.executable, "-m", "smac_core.metrics", str(tmp_path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")


def test_run_source_finds_a_from_recorded_relative_to_the_study_root(tmp_path, monkeypatch):
    """The experiment runner records --from relative to the study's root: an online run's source
    is found from any working directory, and from an export of the study (moved root)."""
    from smac_core.rundir import run_source

    for root in (tmp_path / "runs" / "study", tmp_path / "results" / "study"):
        offline = root / "hopper" / "smac" / "seed0" / "offline"
        (offline / "checkpoints" / "final").mkdir(parents=True)
        online = root / "hopper" / "smac" / "seed0" / "online-sac"
        online.mkdir()
        (online / "config.json").write_text(json.dumps(
            {"from": "hopper/smac/seed0/offline/checkpoints/final"}))
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(exist_ok=True)
        monkeypatch.chdir(elsewhere)
        assert run_source(online).resolve() == (offline / "checkpoints" / "final").resolve()
    (online / "config.json").write_text(json.dumps({"phase": "offline"}))
    with pytest.raises(SmacError, match="not an online run started from a checkpoint"):
        run_source(online)
