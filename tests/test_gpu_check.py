"""benchmarks/gpu_check.py, the script a GPU session runs, checked on the CPU so that a session's
limited device time is not spent finding its bugs: the dry run (``--device cpu``) computes every
row without an error (and the update with its loss functions compiled equals the eager one), and
a failing row is reported while the others still run."""

from __future__ import annotations

from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def gpu_check(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_check

    return gpu_check


def table_rows(output: str) -> list[list[str]]:
    """The cells of the markdown table's body rows in ``output`` (progress lines skipped)."""
    rows = [line.strip("|").split(" | ") for line in output.splitlines()
            if line.startswith("| ") and not line.startswith(("| check ", "| --- "))]
    return [[cell.strip() for cell in row] for row in rows]


@pytest.mark.slow
def test_dry_run_on_the_cpu_runs_every_row_without_an_error(gpu_check, capsys):
    status = gpu_check.main(["--device", "cpu", "--seconds", "0.02"])
    rows = table_rows(capsys.readouterr().out)
    names = [row[0] for row in rows]
    assert status == 0
    assert all(len(row) == 4 for row in rows), rows  # no cell broken by a stray "|"
    assert [name for name in names if name.startswith(("sac update", "smac update"))] == [
        "sac update (adam)", "sac update (muon)", "smac update (adam)", "smac update (muon)"]
    for name in ("Muon Newton-Schulz, bf16 vs fp32", "offline smac run (CLI)",
                 "online sac run (CLI)", "online sac run, seeds 0,1 stacked (CLI)",
                 "landscape evaluate_vectors", "score-model training (300 steps, batch 256)"):
        assert name in names
    assert not [row for row in rows if "ERROR" in row[1] or "FAILED" in row[1]]
    assert next(row for row in rows if row[0].startswith("5 seeds stacked"))[1].count(
        "seed-updates/s") == 8  # SAC and SMAC, Adam and Muon, two sizes
    for algo in ("sac", "smac"):  # a compiled update computes the eager one's parameters
        result = next(row for row in rows if row[0] == f"torch.compile of the {algo} update (adam)")
        difference = float(result[1].rpartition("after one update ")[2])
        assert difference < 1e-5, result


def test_a_failing_row_is_reported_in_its_cell_and_the_others_still_run(gpu_check, capsys,
                                                                        monkeypatch):
    def broken(_device):
        raise RuntimeError("CUDA error: an illegal memory access\n| was encountered")

    monkeypatch.setattr(gpu_check, "muon_row", broken)
    monkeypatch.setattr(gpu_check, "checks", lambda device, seconds, workdir: [
        ("Muon Newton-Schulz", lambda: [gpu_check.muon_row(device)]),
        ("after it", lambda: [["after it", "ok", "1 thing"]])])
    status = gpu_check.main(["--device", "cpu"])
    rows = table_rows(capsys.readouterr().out)
    assert status == 1
    assert rows[0][:2] == ["Muon Newton-Schulz",
                           "ERROR RuntimeError: CUDA error: an illegal memory access / was "
                           "encountered"]
    assert rows[1][:3] == ["after it", "ok", "1 thing"]


def test_without_cuda_it_says_so_and_exits_0(gpu_check, capsys, monkeypatch):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    assert "sees no CUDA device" in capsys.readouterr().out
