"""Datasets are labelled by what they are: a random hopper dataset, evaluated in the
hopper-medium-replay task's env, is not called hopper-medium-replay by ``data show``, a run's
config.json, the metrics table or the learning-curve titles (tests/test_plot.py)."""

from __future__ import annotations

import json

import pytest

from smac_core import metrics, train
from smac_core.data.__main__ import main as data_main
from smac_core.tasks import dataset_label

RANDOM = "local/hopper/random-v0"
TINY = ["--eval-episodes", "2", "--checkpoint-every", "4", "--log-every", "4",
        "--set", "actor_hidden=[8,8]", "--set", "critic_hidden=[8,8]", "--set", "batch_size=8"]


@pytest.mark.parametrize(("dataset_id", "env", "label"), [
    ("local/hopper/medium-replay-v0", "hopper-medium-replay", "hopper-medium-replay"),
    (RANDOM, "hopper-medium-replay", RANDOM),
    ("local/door/human-binary-v0", "door-binary", "door-binary"),
    ("/data/my demos.hdf5", "door-binary", "/data/my demos.hdf5"),
    (None, "Pendulum-v1", "Pendulum-v1"),
])
def test_the_task_name_labels_only_the_tasks_own_dataset(dataset_id, env, label):
    assert dataset_label(dataset_id, env) == label


def test_a_random_hopper_dataset_is_labelled_by_its_id(minari_root, tmp_path, capsys):
    assert data_main(["generate", "hopper-random", "--samples", "300"]) == 0
    capsys.readouterr()
    assert data_main(["show", RANDOM]) == 0
    shown = capsys.readouterr().out
    assert f"label             {RANDOM} (its id: not the dataset of a task)" in shown
    assert "env_id            Hopper-v5 (dense reward, 1000 steps" in shown
    assert "hopper-medium-replay" not in shown

    offline, online = tmp_path / "offline", tmp_path / "online"
    assert train.main(["offline", "--algo", "td3bc", "--dataset", RANDOM, "--steps", "4",
                       "--eval-every", "4", "--out", str(offline), *TINY]) == 0
    assert train.main(["online", "--algo", "sac", "--from", str(offline), "--steps", "4",
                       "--early-eval-every", "4", "--out", str(online), *TINY]) == 0
    for run in (offline, online):
        config = json.loads((run / "config.json").read_text())
        # evaluated in the task's env (its time limit and reference returns), labelled as itself
        assert (config["task"], config["env"]) == (RANDOM, "hopper-medium-replay")
    capsys.readouterr()
    assert metrics.main([str(online), "--table"]) == 0
    table = capsys.readouterr().out
    assert f"| td3bc | sac | {RANDOM} |" in table and "hopper-medium-replay" not in table

    # a run written before config.json had the label is labelled from its dataset id
    config = json.loads((online / "config.json").read_text())
    del config["task"]
    (online / "config.json").write_text(json.dumps(config))
    assert metrics.load_run(online).task == RANDOM
