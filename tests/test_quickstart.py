"""The README's main job: the quick start, end to end on both embedded datasets (tiny budgets)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
from conftest import DOOR_HUMAN

from smac_core.metrics import TransferDrop
from studies.quickstart import SPEC_FILE, Finding, embedded_door_file, embedded_file, main

EMBEDDED_SHA256 = "9df6345e28fcec8f44c0af4d6dacc6ef996958b39b568f53df85cf41dd03412b"
HOPPER_SHA256 = "56c4304e26ccf4e728714cbb7de4d86482bfd5e7bbef3b6c36a17518f5cf6212"


def test_embedded_door_data_is_the_real_file_it_claims_to_be():
    embedded = embedded_door_file().read_bytes()
    assert hashlib.sha256(embedded).hexdigest() == EMBEDDED_SHA256
    assert embedded == (DOOR_HUMAN / "door-v0_demos_clipped.hdf5").read_bytes()


def test_embedded_hopper_data_is_the_generated_dataset_it_claims_to_be():
    """PROVENANCE.md: the export of hopper-medium-replay made by smac_core.generate, seed 0."""
    from smac_core.data.formats import read_file

    path = embedded_file("hopper-medium-replay-seed0.hdf5")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == HOPPER_SHA256
    dataset = read_file(path)
    assert (dataset.size, dataset.num_episodes) == (90000, 773)
    assert (int(dataset.terminals.sum()), int(dataset.timeouts.sum())) == (771, 2)
    assert dataset.summary()["return"]["mean"] == pytest.approx(311.9, abs=0.05)


@pytest.mark.slow
def test_quickstart_runs_every_step_and_writes_the_page(minari_root, tmp_path, capsys):
    out = tmp_path / "qs"
    argv = ["--out", str(out), "--offline-steps", "12", "--online-steps", "20",
            "--episodes", "2", "--points", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "local/hopper/medium-replay-seed0-v0" in printed and "90000" in printed
    runs = out / "hopper-medium-replay"
    for method in ("td3bc", "smac"):
        config = json.loads((runs / method / "seed0" / "online-sac" / "config.json").read_text())
        assert config["from_algorithm"] == method and config["steps"] == 20
    assert (runs / "smac" / "seed0" / "offline" / "score_model").is_dir()
    result = json.loads((out / "interpolation" / "interpolation.json").read_text())
    assert [c["label"] for c in result["curves"]] == ["TD3+BC → SAC", "SMAC → SAC"]
    found = printed.split("== what this run found")[1]
    assert "TD3+BC -> SAC: offline final" in found and "SMAC -> SAC: offline final" in found
    page = (out / "quickstart.html").read_text()
    assert page.count("plotly-graph-div") == 2 and "SMAC -&gt; SAC: offline final" in page
    assert (out / "quickstart.png").stat().st_size > 0
    # rerunning continues the finished study instead of starting afresh or failing
    assert main(argv) == 0
    assert "4 runs: 4 done" in capsys.readouterr().out
    # other settings in the same --out are refused; nothing there is touched
    spec = (out / "quickstart.yaml").read_text()
    assert main([*argv, "--online-steps", "30"]) == 2
    assert "holds a quick start with other settings" in capsys.readouterr().err
    assert (out / "quickstart.yaml").read_text() == spec


@pytest.mark.slow
def test_quickstart_on_the_door_demonstrations(minari_root, tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["--task", "door", "--out", str(out), "--offline-steps", "6",
                 "--online-steps", "6", "--episodes", "2", "--points", "3"]) == 0
    printed = capsys.readouterr().out
    assert "local/door/human-binary-v0" in printed
    assert "CalQL -> SAC: offline final" in printed and "% success" in printed  # a success rate
    assert (out / "door-binary" / "calql" / "seed0" / "online-sac" / "checkpoints" / "final"
            ).is_dir()


def finding(drop: float, p_value: float, verdict: str, line: str = "valley") -> Finding:
    transfer = TransferDrop(drop, 0.5, 500, 500, p_value, verdict, p_value / 10, 1)
    return Finding("smac", 12.5, transfer, 88.0, {"verdict": line, "depth": 0.57, "t_min": 0.25},
                   "points")


def test_findings_say_drop_dip_or_none_as_the_test_decided():
    assert "drops 2.00 ± 0.50 points by step 500 (paired over episodes, p = 0.01)" in \
        finding(2.0, 0.01, "drop").describe()
    assert "dips 0.50 ± 0.50 points by step 500, not significant (p = 0.3)" in \
        finding(0.5, 0.3, "smooth").describe()
    text = finding(-1.0, 1.0, "smooth").describe()
    assert "does not dip within the first 500 steps" in text
    assert text.startswith("SMAC -> SAC: offline final 12.50 points")
    assert text.endswith("a valley, 0.57 points below its lower end at t = 0.25.")
    assert finding(1.0, 0.01, "drop", "monotone").line_text() == "no valley, monotone"
    assert "no valley, but not monotone" in finding(1.0, 0.01, "drop", "non-monotone").line_text()


@pytest.mark.parametrize(("flags", "message"), [
    (["--episodes", "1"], "--episodes must be 2 or more, got 1"),
    (["--offline-steps", "0"], "--offline-steps must be a positive integer, got 0"),
    (["--score-model-steps", "-5"], "--score-model-steps must be a positive integer, got -5"),
    (["--online-steps", "0"], "--online-steps must be a positive integer, got 0"),
    (["--jobs", "0"], "--jobs must be a positive integer, got 0"),
    (["--points", "2"], "--points 2 in --range [-0.25, 1.25] puts no t between 0 and 1"),
    (["--seed", "-1"], "--seed must be in [0, 4294967295], got -1"),
    (["--device", "gpu"], "--device 'gpu' is not a torch device"),
])
def test_bad_flags_are_refused_before_anything_runs(minari_root, tmp_path, capsys, flags,
                                                    message):
    assert main(["--out", str(tmp_path / "qs"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "qs").exists() and not list(minari_root.iterdir())


def test_an_out_holding_another_quick_start_is_refused_before_anything_runs(minari_root,
                                                                           tmp_path, capsys):
    out = tmp_path / "qs"
    out.mkdir()
    (out / SPEC_FILE).write_text("# a study of other settings\n")
    assert main(["--out", str(out)]) == 2
    assert "holds a quick start with other settings" in capsys.readouterr().err
    assert not list(minari_root.iterdir())  # the dataset was not imported either
    assert [p.name for p in out.iterdir()] == [SPEC_FILE]
    assert (out / SPEC_FILE).read_text() == "# a study of other settings\n"


def test_episodes_1_exits_2_at_once_naming_the_flag(minari_root, tmp_path):
    """The issue's case: it used to train for minutes, then fail in the metrics step."""
    done = subprocess.run([sys.executable, "-m", "studies.quickstart", "--episodes", "1",
                           "--out", str(tmp_path / "qs")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --episodes must be 2 or more") and not done.stdout
