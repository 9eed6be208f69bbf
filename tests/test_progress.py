"""Progress in non-interactive output: one line every few seconds (step, rate, ETA, latest
value) and one at the end, timed by a fake clock."""

from __future__ import annotations

import io
import re

from smac_core.progress import Progress, duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_every_interval_with_rate_eta_and_the_latest_value():
    clock, out = FakeClock(), io.StringIO()
    with Progress(100, "offline smac", stream=out, clock=clock, interval=5.0) as progress:
        for _ in range(100):
            clock.now += 0.5  # 2 steps/s
            progress.update()
            if progress.position == 15:
                progress.note("eval return 12.3")
    lines = out.getvalue().splitlines()
    assert lines[0] == "[offline smac] step 10/100 (10%) | 2 step/s | ETA 45s"
    assert lines[1] == ("[offline smac] step 20/100 (20%) | 2 step/s | ETA 40s | "
                        "eval return 12.3")
    assert len(lines) == 10  # every 5 s of 50 s; the line at 100% is the last one
    assert lines[-1] == ("[offline smac] step 100/100 (100%) | 2 step/s | done in 50s | "
                         "eval return 12.3")


def test_a_resumed_phase_counts_its_rate_from_where_it_resumed():
    clock, out = FakeClock(), io.StringIO()
    progress = Progress(1000, "points", initial=400, unit="point", stream=out, clock=clock,
                        interval=5.0)
    clock.now = 6.0
    progress.set_position(430.5)  # part of a chunk
    progress.close()
    assert out.getvalue().splitlines() == [
        "[points] point 430/1000 (43%) | 5.08 point/s | ETA 1m52s"]


def test_an_event_is_a_line_of_its_own_and_the_latest_value_after():
    clock, out = FakeClock(), io.StringIO()
    with Progress(10, "offline smac", stream=out, clock=clock, interval=5.0) as progress:
        clock.now = 1.0
        progress.update(4)
        progress.event("eval return 3.5")
        clock.now = 6.0
        progress.update(6)
    assert out.getvalue().splitlines() == [
        "[offline smac] step 4/10 | eval return 3.5",
        "[offline smac] step 10/10 (100%) | 1.67 step/s | done in 6s | eval return 3.5"]


def test_nothing_is_printed_when_nothing_happened():
    out = io.StringIO()
    Progress(10, "x", stream=out, clock=FakeClock()).close()
    assert out.getvalue() == ""


def test_durations():
    assert [duration(s) for s in (0, 59.4, 95, 3600, 7260)] == \
        ["0s", "59s", "1m35s", "1h00m", "2h01m"]


# ------------------------------------------------------------------------ the long phases
LINE = re.compile(r"^\[(?P<desc>[^\]]+)\] (?P<unit>\w+) (?P<at>\d+)/(?P<total>\d+) "
                  r"\((?P<percent>\d+)%\) \| [\d.e+-]+ \w+/s \| (ETA|done in) \w+")


def test_a_training_run_logs_its_progress_and_evaluations(tmp_path, monkeypatch, capsys):
    from smac_core import train

    monkeypatch.setattr("smac_core.progress.LINE_SECONDS", 0.0)  # a line at every step
    assert train.main(["online", "--algo", "sac", "--env", "Pendulum-v1", "--steps", "20",
                       "--start-steps", "10", "--eval-every", "20", "--early-eval-until", "0",
                       "--eval-episodes", "1", "--set", "actor_hidden=[8]",
                       "--set", "critic_hidden=[8]", "--set", "batch_size=8",
                       "--out", str(tmp_path / "run")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[online sac] step 0/20 | eval return ")
    steps = [LINE.match(line) for line in lines[1:-1]]
    assert [(m["desc"], m["at"], m["percent"]) for m in steps] == \
        [("online sac", str(k), str(5 * k)) for k in range(1, 21)]
    assert all(line.endswith(lines[0].split(" | ")[-1]) for line in lines[1:-1])  # the latest
    assert " | ETA " in lines[-3] and " | done in " in lines[-2]
    assert lines[-1].startswith("[online sac] step 20/20 | eval return ")


def test_the_score_model_shows_its_progress(monkeypatch, capsys):
    import torch

    from smac_core.diffusion import DiffusionConfig, train_score_model

    monkeypatch.setattr("smac_core.progress.LINE_SECONDS", 0.0)  # a line at every step
    gen = torch.Generator().manual_seed(0)
    config = DiffusionConfig(hidden_dim=8, num_blocks=1, steps=4, batch_size=16, patience=0,
                             holdout_fraction=0.0)
    train_score_model(torch.rand(64, 2, generator=gen), torch.rand(64, 2, generator=gen) - 0.5,
                      torch.rand(64, generator=gen), config, "cpu", gen)
    lines = [LINE.match(line) for line in capsys.readouterr().out.splitlines()]
    assert [(m["desc"], m["at"]) for m in lines] == [("dataset score model", str(k))
                                                    for k in range(1, 5)]


def test_a_landscape_grid_advances_within_a_chunk(tmp_path, monkeypatch, capsys):
    from test_landscape_cli import FAST, write_checkpoint

    from landscape import interpolate

    monkeypatch.setattr("smac_core.progress.LINE_SECONDS", 0.0)
    a, b = (write_checkpoint(tmp_path / name, seed) for name, seed in (("a", 0), ("b", 1)))
    assert interpolate.main([str(a), str(b), "--points", "3", "--episodes", "2", "--out",
                             str(tmp_path / "out"), *FAST]) == 0  # 5 points, one chunk of 32
    percents = [int(m["percent"]) for line in capsys.readouterr().out.splitlines()
                if (m := LINE.match(line)) and m["unit"] == "point"]
    assert percents == sorted(percents) and percents[-1] == 100
    assert any(0 < p < 100 for p in percents)  # not a jump from 0% to 100%
