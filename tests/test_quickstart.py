"""The README's main job: the quick start, end to end on the embedded door data (tiny budgets)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
from conftest import DOOR_HUMAN

from studies.quickstart import embedded_door_file, main

EMBEDDED_SHA256 = "9df6345e28fcec8f44c0af4d6dacc6ef996958b39b568f53df85cf41dd03412b"


def test_embedded_door_data_is_the_real_file_it_claims_to_be():
    embedded = embedded_door_file().read_bytes()
    assert hashlib.sha256(embedded).hexdigest() == EMBEDDED_SHA256
    assert embedded == (DOOR_HUMAN / "door-v0_demos_clipped.hdf5").read_bytes()


@pytest.mark.slow
def test_quickstart_runs_every_step_and_writes_the_landscape(minari_root, tmp_path, capsys):
    out = tmp_path / "qs"
    argv = ["--out", str(out), "--offline-steps", "8", "--score-model-steps", "8",
            "--online-steps", "6", "--episodes", "2", "--points", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "local/door/human-binary-v0" in printed and "6729" in printed  # the dataset summary
    assert (out / "smac" / "checkpoints" / "final" / "model.safetensors").is_file()
    assert (out / "smac" / "score_model").is_dir()
    online_config = json.loads((out / "smac-sac" / "config.json").read_text())
    assert online_config["from_algorithm"] == "smac"
    result = json.loads((out / "interpolation" / "interpolation.json").read_text())
    assert json.dumps(result).count("verdict") >= 1
    assert (out / "interpolation" / "interpolation.html").stat().st_size > 0
    # rerunning continues the finished runs instead of starting afresh or failing
    assert main(argv) == 0


@pytest.mark.parametrize(("flags", "message"), [
    (["--episodes", "1"], "--episodes must be 2 or more, got 1"),
    (["--offline-steps", "0"], "--offline-steps must be a positive integer, got 0"),
    (["--score-model-steps", "-5"], "--score-model-steps must be a positive integer, got -5"),
    (["--online-steps", "0"], "--online-steps must be a positive integer, got 0"),
    (["--points", "2"], "--points 2 in --range [-0.25, 1.25] puts no t between 0 and 1"),
    (["--seed", "-1"], "--seed must be in [0, 4294967295], got -1"),
    (["--device", "gpu"], "--device 'gpu' is not a torch device"),
])
def test_bad_flags_are_refused_before_anything_runs(minari_root, tmp_path, capsys, flags,
                                                    message):
    assert main(["--out", str(tmp_path / "qs"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "qs").exists() and not list(minari_root.iterdir())


def test_episodes_1_exits_2_at_once_naming_the_flag(minari_root, tmp_path):
    """The issue's case: it used to train for minutes, then fail in the metrics step."""
    done = subprocess.run([sys.executable, "-m", "studies.quickstart", "--episodes", "1",
                           "--out", str(tmp_path / "qs")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --episodes must be 2 or more") and not done.stdout
