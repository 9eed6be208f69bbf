"""Landscape analysis on flat parameter vectors: paths, planes, directions, valley verdicts and
the resumable point store, checked against exact answers (the analytic env of analytic_env.py).
"""

from __future__ import annotations

import json
from statistics import NormalDist

import numpy as np
import pytest
import torch
from analytic_env import HORIZON, analytic_return, register_analytic_env
from torch.nn.utils import vector_to_parameters

from landscape.directions import difference_direction, random_directions
from landscape.grid import EvalSettings, PointStore, evaluate_points, plane_coordinates
from landscape.interpolate import interpolation_ts
from landscape.params import flatten_params, param_spec
from landscape.paths import bezier_curve, interpolate_linear, plane_points, polygonal_chain
from landscape.surface import build_parser as surface_parser
from landscape.valley import valley_verdict
from smac_core.errors import SmacError
from smac_core.nets import CriticEnsemble, DeterministicPolicy, TanhGaussianActor

# the analytic env has no time limit of its own; one episode suffices where it is noise-free
SETTINGS = EvalSettings(episodes=1, seed=0, max_episode_steps=HORIZON, workers=0,
                        chunk_size=4)


def tiny_policy(seed: int, hidden: tuple[int, ...] = (8, 8)) -> DeterministicPolicy:
    torch.manual_seed(seed)
    actor = TanhGaussianActor(3, 2, hidden)
    with torch.no_grad():  # larger weights than the init, so the return varies over a plane
        for p in actor.parameters():
            p.mul_(3.0)
    return DeterministicPolicy.from_actor(actor, np.zeros(3), np.ones(3), -np.ones(2),
                                          np.ones(2))


def analytic_returns(template: DeterministicPolicy, vectors: torch.Tensor) -> np.ndarray:
    """R(theta) of each row of ``vectors`` (P, D), computed directly (no env, no batching)."""
    values = []
    for vector in vectors:
        vector_to_parameters(vector, template.parameters())
        values.append(analytic_return(template))
    return np.array(values)


# ---------------------------------------------------------------------------- paths and planes
def test_interpolate_linear_is_the_convex_combination():
    a, b = torch.randn(7), torch.randn(7)
    points = interpolate_linear(a, b, [0.0, 0.25, 1.0, 1.5])
    torch.testing.assert_close(points[0], a)
    torch.testing.assert_close(points[1], 0.75 * a + 0.25 * b)
    torch.testing.assert_close(points[2], b)
    torch.testing.assert_close(points[3], -0.5 * a + 1.5 * b)


def test_plane_points_pair_coordinates_and_grid_is_row_major():
    origin, d1, d2 = torch.randn(5), torch.randn(5), torch.randn(5)
    xs, ys = np.array([-1.0, 0.0, 2.0]), np.array([0.5, 1.0])
    coords = plane_coordinates(xs, ys)
    assert coords.shape == (6, 2)
    assert coords[1 * 3 + 2].tolist() == [2.0, 1.0]  # point p = iy * X + ix
    points = plane_points(origin, d1, d2, coords[:, 0], coords[:, 1])
    torch.testing.assert_close(points[4], origin + 0.0 * d1 + 1.0 * d2)
    with pytest.raises(ValueError, match="pair up"):
        plane_points(origin, d1, d2, [0.0, 1.0], [0.0])


def test_mode_connectivity_curves_keep_their_ends_and_follow_garipov():
    w0, bend, w1 = torch.randn(4), torch.randn(4), torch.randn(4)
    ts = [0.0, 0.25, 0.5, 0.75, 1.0]
    bezier = bezier_curve([w0, bend, w1], ts)
    torch.testing.assert_close(bezier[0], w0)
    torch.testing.assert_close(bezier[4], w1)
    torch.testing.assert_close(bezier[2], 0.25 * w0 + 0.5 * bend + 0.25 * w1)
    chain = polygonal_chain([w0, bend, w1], ts)
    torch.testing.assert_close(chain[0], w0)
    torch.testing.assert_close(chain[1], 0.5 * (w0 + bend))
    torch.testing.assert_close(chain[2], bend)
    torch.testing.assert_close(chain[3], 0.5 * (bend + w1))
    torch.testing.assert_close(chain[4], w1)
    # two control points: both curves are the straight line
    torch.testing.assert_close(bezier_curve([w0, w1], ts), interpolate_linear(w0, w1, ts))
    torch.testing.assert_close(polygonal_chain([w0, w1], ts), interpolate_linear(w0, w1, ts))


def test_interpolation_ts_always_hold_the_checkpoints_exactly_once():
    ts = interpolation_ts(13, -0.1, 1.1)  # linspace gives 1.39e-17 and 1.0000000000000002
    assert ts.tolist().count(0.0) == 1 and ts.tolist().count(1.0) == 1
    assert len(ts) == 13 and ts[0] == -0.1 and ts[-1] == 1.1
    assert interpolation_ts(5, -0.25, 1.25).tolist() == [-0.25, 0.0, 0.125, 0.5, 0.875, 1.0,
                                                           1.25]
    with pytest.raises(SmacError, match="must contain"):
        interpolation_ts(5, 0.2, 1.0)


# --------------------------------------------------------------------------------- directions
def test_filter_normalised_rows_have_the_norm_of_their_weight_rows():
    policy = tiny_policy(0)
    theta, spec = flatten_params(policy), param_spec(policy)
    d1, d2 = random_directions(theta, spec, seed=3)
    d1_with_1d, _ = random_directions(theta, spec, seed=3, include_1d=True)
    assert not torch.equal(d1, d2)
    torch.testing.assert_close(random_directions(theta, spec, seed=3)[0], d1)  # reproducible
    offset = 0
    for shape, numel in zip(spec.shapes, spec.numels, strict=True):
        w, d, d_1d = (v[offset:offset + numel] for v in (theta, d1, d1_with_1d))
        if len(shape) >= 2:
            torch.testing.assert_close(d.view(shape[0], -1).norm(dim=1),
                                       w.view(shape[0], -1).norm(dim=1))
            torch.testing.assert_close(d_1d, d)  # the flag changes only 1-D parameters
        else:
            assert torch.count_nonzero(d) == 0  # biases get a zero direction by default
            torch.testing.assert_close(d_1d.norm(), w.norm())
        offset += numel
    assert offset == spec.size


def test_filter_normalisation_refuses_stacked_ensemble_weights():
    critic = CriticEnsemble(3, 2, (4,), ensemble_size=2)
    theta, spec = flatten_params(critic), param_spec(critic)
    with pytest.raises(SmacError, match=r"filter normalisation of 3-D parameters"):
        random_directions(theta, spec, seed=0)


def test_default_surface_grid_holds_the_three_checkpoints():
    args = surface_parser().parse_args(["a", "b", "c"])
    low, high = args.x_range or (-0.25, 1.25)
    xs = np.linspace(low, high, args.x_points)
    assert np.isclose(xs, 0.0).any() and np.isclose(xs, 1.0).any()


def test_difference_direction_reaches_the_target():
    a, b = torch.randn(6), torch.randn(6)
    torch.testing.assert_close(a + difference_direction(a, b), b)


# ------------------------------------------------------------------------------------ verdicts
TS = np.array([-0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25])


def test_monotone_curve_is_monotone():
    mean = np.array([0.0, 10.0, 30.0, 50.0, 70.0, 90.0, 95.0])
    verdict = valley_verdict(TS, mean, np.full(7, 2.0))
    assert verdict.verdict == "monotone" and verdict.monotone
    assert verdict.lower_endpoint_t == 0.0
    assert verdict.depth == -20.0  # the lowest interior point is 20 above the lower end


def test_shallow_dip_within_noise_is_not_a_valley():
    # falls 1.0 below the lower endpoint with s.e. 1 at both: 1 / sqrt(2) = 0.71 s.e. < 2
    mean = np.array([50.0, 40.0, 39.0, 60.0, 80.0, 90.0, 90.0])
    verdict = valley_verdict(TS, mean, np.full(7, 1.0))
    assert verdict.verdict == "monotone"
    assert verdict.depth == pytest.approx(1.0)
    assert verdict.depth_se == pytest.approx(1.0 / np.sqrt(2.0))
    assert verdict.t_min == 0.25


def test_deep_valley_is_a_valley_with_its_depth_and_place():
    mean = np.array([80.0, 60.0, 40.0, 30.0, 50.0, 90.0, 95.0])
    verdict = valley_verdict(TS, mean, np.full(7, 2.0))
    assert verdict.verdict == "valley" and not verdict.monotone
    assert verdict.depth == pytest.approx(30.0)
    assert verdict.depth_se == pytest.approx(30.0 / np.hypot(2.0, 2.0))
    assert verdict.t_min == 0.5 and verdict.lower_endpoint_t == 0.0
    assert "valley: falls 30" in verdict.describe("normalised score")


def test_valley_below_a_lower_end_at_t_one_and_extrapolation_is_ignored():
    # decreasing curve (lower end at t=1) dipping below it; the deep point at t=-0.25 is
    # outside [0, 1] and must not count
    mean = np.array([-500.0, 90.0, 40.0, 10.0, 20.0, 30.0, 35.0])
    verdict = valley_verdict(TS, mean, np.full(7, 1.0))
    assert verdict.verdict == "valley"
    assert verdict.lower_endpoint_t == 1.0 and verdict.t_min == 0.5
    assert verdict.depth == pytest.approx(20.0)


def test_bump_above_the_higher_end_is_non_monotone_not_a_valley():
    mean = np.array([0.0, 10.0, 80.0, 60.0, 50.0, 40.0, 40.0])
    verdict = valley_verdict(TS, mean, np.full(7, 1.0))
    assert verdict.verdict == "non-monotone" and not verdict.monotone


def test_zero_standard_errors_count_any_dip_and_bad_curves_are_refused():
    mean = np.array([0.0, 10.0, 9.99, 20.0, 30.0, 40.0, 50.0])
    assert valley_verdict(TS, mean, np.zeros(7)).verdict == "valley"
    with pytest.raises(ValueError, match="t = 0, t = 1"):
        valley_verdict(np.array([0.0, 0.5]), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="finite"):
        valley_verdict(TS, mean, np.full(7, np.nan))


def test_valley_threshold_is_bonferroni_corrected_for_the_interior_points():
    # TS has 3 interior points: at z = 2 (level 1 - Phi(2) = 2.28%) a valley needs
    # depth_se > Phi^-1(1 - 0.0228 / 3) = 2.43, so a dip of 2.2 s.e. is not one
    threshold = -NormalDist().inv_cdf(NormalDist().cdf(-2.0) / 3)
    for depth_se, expected in ((2.2, "monotone"), (2.6, "valley")):
        mean = np.array([0.0, 50.0, 50.0 - depth_se * np.sqrt(2.0), 60.0, 80.0, 90.0, 95.0])
        verdict = valley_verdict(TS, mean, np.full(7, 1.0))
        assert verdict.depth_se == pytest.approx(depth_se)
        assert verdict.verdict == expected
    assert verdict.interior_points == 3
    assert verdict.z_valley == pytest.approx(threshold)
    assert json.loads(json.dumps(verdict.to_dict(), allow_nan=False))["z_valley"] == threshold


def test_valley_false_alarm_rate_at_most_nominal_and_a_real_dip_is_found():
    # 4000 noisy curves of 13 points on [0, 1] (11 interior), per-point noise N(0, se^2) with a
    # known se in [0.5, 2]. Nominal family-wise level of the default z = 2: 1 - Phi(2) = 2.28%;
    # the margin 0.5% is 2 binomial s.d. at n = 4000. Picking the lowest of 11 points without
    # correction flags 4.7% of the flat curves and 13% of the second case.
    rng = np.random.default_rng(0)
    ts = np.linspace(0.0, 1.0, 13)
    n = 4000
    se = rng.uniform(0.5, 2.0, size=(n, ts.size))
    noise = rng.standard_normal((n, ts.size)) * se
    nominal, margin = NormalDist().cdf(-2.0), 0.005

    def valley_rate(truth: np.ndarray) -> float:
        return float(np.mean([valley_verdict(ts, truth + e, s).verdict == "valley"
                              for e, s in zip(noise, se, strict=True)]))

    assert valley_rate(np.zeros(ts.size)) <= nominal + margin
    # the null at its least favourable: the interior at t = 0's level, t = 1 far above
    assert valley_rate(np.where(ts == 1.0, 100.0, 0.0)) <= nominal + margin
    # power: a dip of 15 at t = 0.5 (at least 5.3 combined s.e.) is found almost always
    assert valley_rate(-15.0 * np.sin(np.pi * ts)) > 0.95


# ------------------------------------------------------ evaluation against the analytic answer
def test_interpolation_and_plane_values_equal_the_analytic_return(tmp_path):
    env = register_analytic_env()
    policies = [tiny_policy(seed) for seed in range(3)]
    thetas = [flatten_params(p) for p in policies]
    template = policies[0]

    ts = np.linspace(-0.5, 1.5, 9)
    line = interpolate_linear(thetas[0], thetas[1], ts)
    store = PointStore(tmp_path / "line", {"kind": "line"}, len(ts), SETTINGS.episodes)
    result = evaluate_points(store, template, lambda idx: line[idx], env, SETTINGS)
    expected = analytic_returns(tiny_policy(0), line)
    np.testing.assert_allclose(result.mean(), expected, rtol=1e-5)
    assert np.ptp(expected) > 0.1  # the line is not flat: the comparison has teeth

    xs, ys = np.linspace(-1.0, 2.0, 4), np.linspace(-1.0, 1.0, 3)
    coords = plane_coordinates(xs, ys)
    d1, d2 = (difference_direction(thetas[0], t) for t in thetas[1:])
    store = PointStore(tmp_path / "plane", {"kind": "plane"}, len(coords), SETTINGS.episodes)
    result = evaluate_points(store, template, lambda idx: plane_points(
        thetas[0], d1, d2, coords[idx, 0], coords[idx, 1]), env, SETTINGS)
    for p, (x, y) in enumerate(coords):
        theta = thetas[0] + x * d1 + y * d2
        assert result.mean()[p] == pytest.approx(
            analytic_returns(tiny_policy(0), theta[None])[0], rel=1e-5)
    # the plane passes through the three checkpoints at (0, 0), (1, 0) and (0, 1)
    for k, (x, y) in enumerate([(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]):
        p = int(np.flatnonzero((coords[:, 0] == x) & (coords[:, 1] == y))[0])
        assert result.mean()[p] == pytest.approx(analytic_return(policies[k]), rel=1e-5)


# ------------------------------------------------------------------------ resumable point store
class CountingEvaluator:
    """Stands in for ``landscape.evaluate.evaluate_vectors`` (grid.py looks it up per call):
    counts the vectors it is given and raises KeyboardInterrupt (a kill) on call number
    ``fail_on_call``."""

    def __init__(self, real, fail_on_call: int | None = None) -> None:
        self.real, self.fail_on_call = real, fail_on_call
        self.calls, self.vectors = 0, 0

    def __call__(self, template, vectors, *args, **kwargs):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt
        self.vectors += len(vectors)
        return self.real(template, vectors, *args, **kwargs)


def test_store_interrupted_midway_resumes_with_identical_values(tmp_path, monkeypatch):
    import landscape.evaluate

    env = register_analytic_env(obs_noise=0.1)  # episodes differ: per-episode values matter
    settings = EvalSettings(episodes=3, seed=0, max_episode_steps=HORIZON, workers=0,
                            chunk_size=4)
    template = tiny_policy(0)
    vectors = interpolate_linear(flatten_params(template), flatten_params(tiny_policy(1)),
                                 np.linspace(0, 1, 10))
    fingerprint = {"kind": "test", "points": 10}

    reference = evaluate_points(PointStore(tmp_path / "whole", fingerprint, 10, 3), template,
                                lambda idx: vectors[idx], env, settings)

    first = CountingEvaluator(landscape.evaluate.evaluate_vectors, fail_on_call=3)
    monkeypatch.setattr(landscape.evaluate, "evaluate_vectors", first)
    with pytest.raises(SmacError, match="interrupted: 8 of 10 points are saved"):
        evaluate_points(PointStore(tmp_path / "cut", fingerprint, 10, 3), template,
                        lambda idx: vectors[idx], env, settings)
    second = CountingEvaluator(first.real)
    monkeypatch.setattr(landscape.evaluate, "evaluate_vectors", second)
    store = PointStore(tmp_path / "cut", fingerprint, 10, 3)
    assert store.missing().tolist() == [8, 9]
    resumed = evaluate_points(store, template, lambda idx: vectors[idx], env, settings)
    assert second.vectors == 2  # only the missing points were evaluated
    np.testing.assert_array_equal(resumed.returns, reference.returns)
    np.testing.assert_array_equal(resumed.lengths, reference.lengths)
    assert np.ptp(reference.returns[0]) > 0  # the episodes really differ

    # a finished store is read back without evaluating anything
    third = CountingEvaluator(first.real)
    monkeypatch.setattr(landscape.evaluate, "evaluate_vectors", third)
    again = evaluate_points(PointStore(tmp_path / "cut", fingerprint, 10, 3), template,
                            lambda idx: vectors[idx], env, settings)
    assert third.calls == 0
    np.testing.assert_array_equal(again.returns, reference.returns)


def test_store_refuses_other_settings_and_bad_chunks(tmp_path):
    env = register_analytic_env()
    template = tiny_policy(0)
    vectors = flatten_params(template)[None].repeat(3, 1)
    evaluate_points(PointStore(tmp_path, {"seed": 0}, 3, 1), template, lambda idx: vectors[idx],
                    env, SETTINGS)
    with pytest.raises(SmacError, match=r"different settings \(differing: seed\)"):
        PointStore(tmp_path, {"seed": 1}, 3, 1)
    with pytest.raises(SmacError, match="differing: episodes"):
        PointStore(tmp_path, {"seed": 0}, 3, 2)
    chunk = next((tmp_path / "chunks").glob("chunk_*.json"))
    chunk.write_text(json.dumps({"indices": [0], "returns": [[1.0, 2.0]]}))
    with pytest.raises(SmacError, match=r"unreadable.*delete it and rerun"):
        PointStore(tmp_path, {"seed": 0}, 3, 1)
