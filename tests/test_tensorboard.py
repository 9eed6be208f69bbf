"""``--tensorboard``: the metrics.jsonl rows as TensorBoard scalars, each step once after a
resume, and a clear message when the package is missing."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import pytest

from smac_core.rundir import read_metrics
from smac_core.runs import Trainer
from smac_core.train import main

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

SMALL_NETS = ["--set", "actor_hidden=[32,32]", "--set", "critic_hidden=[32,32]",
              "--set", "batch_size=32"]


def online_args(out: Path, *extra: str) -> list[str]:
    return ["online", "--algo", "sac", "--env", "Pendulum-v1", "--steps", "300",
            "--start-steps", "100", "--eval-every", "150", "--early-eval-every", "150",
            "--eval-episodes", "2", "--checkpoint-every", "100", "--log-every", "50",
            "--tensorboard", "--out", str(out), *SMALL_NETS, *extra]


def jsonl_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every number of every metrics.jsonl row, by key: [(step, value), ...]."""
    scalars = defaultdict(list)
    for row in read_metrics(run):
        for key, value in row.items():
            if key not in ("step", "wall_time") and isinstance(value, (int, float)) \
                    and not isinstance(value, bool):
                scalars[key].append((row["step"], float(value)))
    return dict(scalars)


def tensorboard_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    accumulator = event_accumulator.EventAccumulator(str(run / "tensorboard"),
                                                     size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def assert_same_scalars(run: Path) -> None:
    expected, written = jsonl_scalars(run), tensorboard_scalars(run)
    assert {"train/critic_loss", "train/alpha", "eval_return"} <= set(expected)
    assert written.keys() == expected.keys()
    for tag, points in expected.items():
        assert [step for step, _ in written[tag]] == [step for step, _ in points], tag
        assert [value for _, value in written[tag]] == pytest.approx(
            [value for _, value in points], rel=1e-6), tag  # TensorBoard stores float32


def test_tensorboard_scalars_equal_the_metrics_and_resume_writes_each_step_once(
        tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    assert main(online_args(straight)) == 0
    assert_same_scalars(straight)

    # killed at step 260 without a checkpoint: rows of steps 250 were logged after the
    # latest checkpoint (step 200); the resumed run logs them again
    crashed = tmp_path / "crashed"
    one_step = Trainer._one_step

    def crash_at_260(self: Trainer) -> None:
        one_step(self)
        if self.step == 260:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_one_step", crash_at_260)
        assert main(online_args(crashed)) != 0
    assert max(step for step, _ in tensorboard_scalars(crashed)["train/critic_loss"]) == 250
    assert main([*online_args(crashed), "--resume"]) == 0
    assert len(list((crashed / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert_same_scalars(crashed)
    assert tensorboard_scalars(crashed) == tensorboard_scalars(straight)  # exact resume

    # --tensorboard first given at the resume: the rows kept from before are written too
    late = tmp_path / "late"
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_one_step", crash_at_260)
        assert main([*online_args(late), "--no-tensorboard"]) != 0
    assert not (late / "tensorboard").exists()
    assert main([*online_args(late), "--resume"]) == 0
    assert_same_scalars(late)
    assert tensorboard_scalars(late) == tensorboard_scalars(straight)


def test_tensorboard_without_the_package_fails_before_anything_runs(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard: ImportError
    assert main(online_args(tmp_path / "run")) == 2
    assert "--tensorboard needs the tensorboard package: pip install tensorboard" in (
        capsys.readouterr().err)
    assert not (tmp_path / "run").exists()
