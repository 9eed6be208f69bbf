"""``python -m studies.plot``: learning curves of tiny hand-made run directories; the page and
the PNG are written and the curves' data are the metrics' (mean +- s.e. over seeds, the online
runs after their offline run, a dotted line at the switch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from smac_core.files import OWNER_FILE
from studies.plot import PAGE, PLOT_TOOL, PNG, learning_curve_figure, learning_curves, main

RANDOM_HOPPER = {"env": "hopper-medium-replay", "dataset_id": "local/hopper/random-v0"}


def write_run(path: Path, config: dict, evaluations: dict[int, list[float]]) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({**RANDOM_HOPPER, **config}))
    rows = [{"step": step, "phase": config["phase"], "eval_return": 0.0,
             "eval_returns": [0.0] * len(scores), "eval_scores": scores}
            for step, scores in evaluations.items()]
    rows.insert(1, {"step": 3, "phase": config["phase"], "train/loss": 1.0})
    (path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def two_seeds(tmp_path: Path) -> list[Path]:
    """smac offline (10 updates) and smac -> sac online (10 env steps from its final), seeds 0
    and 1; evaluation scores over 2 episodes."""
    runs = []
    for seed, shift in ((0, 0.0), (1, 2.0)):
        offline = write_run(tmp_path / f"smac-{seed}", {"phase": "offline", "algorithm": "smac",
                                                        "seed": seed},
                            {5: [1.0 + shift, 3.0 + shift], 10: [4.0 + shift, 4.0 + shift]})
        online = write_run(tmp_path / f"smac-sac-{seed}",
                           {"phase": "online", "algorithm": "sac", "from_algorithm": "smac",
                            "from": str(offline), "seed": seed},
                           {0: [4.0 + shift, 4.0 + shift], 5: [2.0 + 2 * shift, 2.0],
                            10: [6.0, 8.0 + shift]})
        runs += [offline, online]
    return runs


def traces(figure) -> dict[str, tuple[list, list]]:
    return {trace.name: (list(trace.x), list(trace.y)) for trace in figure.data}


def test_seeds_are_averaged_and_online_runs_continue_their_offline_run(tmp_path):
    plot = learning_curves(two_seeds(tmp_path))
    figure = learning_curve_figure(plot)
    lines = traces(figure)
    # offline: means over episodes 2, 4 (seed 0) and 4, 6 (seed 1): mean 3, 5; s.e. 1, 1
    assert lines["smac (2 runs)"] == ([5, 10], [3.0, 5.0])
    assert lines["smac ± s.e."] == ([5, 10, 10, 5], [4.0, 6.0, 4.0, 2.0])
    # online, after the offline run's 10 updates: seed means 4, 2, 7 and 6, 4, 8
    x, y = lines["smac → sac (2 runs)"]
    assert x == [10, 15, 20]
    np.testing.assert_allclose(y, [5.0, 3.0, 7.5])
    band_x, band_y = lines["smac → sac ± s.e."]
    assert band_x == [10, 15, 20, 20, 15, 10]
    np.testing.assert_allclose(band_y, [6.0, 4.0, 8.0, 7.0, 2.0, 4.0])
    (switch,) = figure.layout.shapes
    assert (switch.x0, switch.x1, switch.line.dash) == (10, 10, "dot")
    # a random hopper dataset is not the hopper-medium-replay task
    assert figure.layout.title.text == "Evaluation during training: local/hopper/random-v0"
    assert plot.y_title == "normalised score (mean ± s.e. over seeds)"


def test_a_single_online_run_is_its_evaluation_mean_from_step_0(tmp_path):
    online = two_seeds(tmp_path)[1]
    plot = learning_curves([online], labels=["mine"])
    assert traces(learning_curve_figure(plot)) == {"mine (1 run)": ([0, 5, 10], [4.0, 2.0, 7.0])}
    assert not plot.switches and plot.x_title == "env steps"


def test_cli_writes_the_page_and_the_png(tmp_path, capsys):
    out = tmp_path / "plots"
    assert main([*map(str, two_seeds(tmp_path)), "--out", str(out)]) == 0
    assert (out / PAGE).stat().st_size > 10_000 and (out / PNG).read_bytes()[:4] == b"\x89PNG"
    page = (out / PAGE).read_text()
    assert "(2 runs)" in page and "random-v0" in page
    assert str(out / PAGE) in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["nowhere"], "is not a run directory (no config.json)"),
    (["RUN", "--label", "a", "--label", "b"], "give one label per RUN (1), got 2"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, capsys, argv, message):
    run = two_seeds(tmp_path)[0]
    out = tmp_path / "plots"
    argv = [str(run) if a == "RUN" else str(tmp_path / a) if a == "nowhere" else a
            for a in argv]
    assert main([*argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def owned_by(path: Path, tool: str) -> Path:
    """A directory with a file in it, owned (``smac_core.files``) by ``tool``."""
    path.mkdir(parents=True)
    (path / "old.txt").write_text("kept")
    (path / OWNER_FILE).write_text(json.dumps({"tool": tool, "command": [f"python -m {tool}"]}))
    return path


def test_directories_of_the_former_name_are_its_own_and_others_are_refused(tmp_path, capsys):
    """Written when this command was smac_core.plot: still updated in place; a directory of
    another command is still refused."""
    runs = [*map(str, two_seeds(tmp_path))]
    assert PLOT_TOOL == "studies.plot"
    old = owned_by(tmp_path / "old-plots", "smac_core.plot")
    assert main([*runs, "--out", str(old)]) == 0
    assert (old / PAGE).is_file() and (old / "old.txt").read_text() == "kept"
    other = owned_by(tmp_path / "other", "landscape.interpolate")
    capsys.readouterr()
    assert main([*runs, "--out", str(other)]) == 2
    assert "belongs to another command" in capsys.readouterr().err
    assert not (other / PAGE).exists()
