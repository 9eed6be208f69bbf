"""benchmarks/bench_seed_vectorisation.py's measuring parts (behaviour only, no timing): the
stacked path computes what the seed-by-seed path computes, values and gradients, and the FLOP
count of a known computation is its analytic value (so the roofline bound rests on true counts)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_seed_vectorisation

    return bench_seed_vectorisation


def test_stacked_layers_equal_seed_by_seed_layers_values_and_gradients(bench):
    generator = torch.Generator().manual_seed(0)
    layers = bench.stacked_mlp(3, (14, 32, 32, 1), generator)
    for _weight, bias in layers:  # non-zero biases, so a bias mix-up would show
        bias.data.normal_(generator=generator)
    x = torch.randn(3, 16, 14, generator=generator)
    grads = []
    for path in (bench.separate_forward, bench.stacked_forward):
        out = path(layers, x)
        out.square().sum().backward()
        grads.append([p.grad.clone() for layer in layers for p in layer])
        for layer in layers:
            for p in layer:
                p.grad = None
        assert out.shape == (3, 16, 1)
    separate, stacked = bench.separate_forward(layers, x), bench.stacked_forward(layers, x)
    torch.testing.assert_close(stacked, separate, rtol=1e-5, atol=1e-5)
    for g_separate, g_stacked in zip(*grads, strict=True):
        torch.testing.assert_close(g_stacked, g_separate, rtol=1e-4, atol=1e-5)
    # seed 1's output depends on seed 1's weights only
    with torch.no_grad():
        layers[0][0][2].add_(1.0)
    torch.testing.assert_close(bench.stacked_forward(layers, x)[:2], stacked[:2])


def test_matmul_flops_of_a_linear_layer_forward_and_backward_is_the_analytic_count(bench):
    batch, fan_in, fan_out = 8, 5, 7
    layer = torch.nn.Linear(fan_in, fan_out)
    x = torch.randn(batch, fan_in, requires_grad=True)
    # forward, gradient of the input, gradient of the weight: 3 GEMMs of 2 * B * in * out
    flops = bench.matmul_flops(lambda: layer(x).sum().backward())
    assert flops == 3 * 2 * batch * fan_in * fan_out
    assert torch.backends.mkldnn.enabled  # restored after counting


def test_several_threads_are_timed_by_wall_time_one_by_the_threads_cpu_time(bench):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert bench.clock_for(torch.device("cpu")) is time.thread_time
        assert bench.clock_for(torch.device("cuda")) is time.perf_counter
        torch.set_num_threads(2)  # a thread's CPU time misses the other thread's work
        assert bench.clock_for(torch.device("cpu")) is time.perf_counter
    finally:
        torch.set_num_threads(threads)


def test_no_threads_is_refused_by_name(bench, capsys):
    assert bench.main(["--threads", "0"]) == 2
    assert "--threads >= 1; got 5, 3.0 and 0" in capsys.readouterr().err
