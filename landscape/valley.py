"""Valley verdict on an interpolation curve: t, mean and standard error at each t.

Only the segment between the two checkpoints (0 <= t <= 1) is judged; points outside it are
extrapolation. With E = {t = 0, t = 1} the endpoints, L the endpoint of lower mean, m the lowest
interior point (0 < t < 1) and M the number of interior points:

    depth    = mean(L) - mean(m)                  (> 0: the curve falls below both ends)
    z(a, b)  = (mean(a) - mean(b)) / sqrt(se(a)^2 + se(b)^2)     (combined standard errors)
    depth_se = min over e in E of z(e, m)         (= z(L, m) when the ends have equal s.e.)

Verdicts at the family-wise level alpha = 1 - Phi(z) of a one-sided z-sigma test (``z``,
``--z``; default 2: alpha = 2.3%), Bonferroni-corrected, with q(p) = Phi^-1(1 - p) the one-sided
standard normal quantile (so q(alpha) = z):
- "valley":       depth_se > z_valley = q(alpha / M): the dip is significantly below both
                  endpoints, corrected for the M interior points it was picked from;
- "monotone":     no significant reversal, i.e. no pair t_i < t_j on [0, 1] where the curve
                  moves against the direction from mean(0) to mean(1) by more than
                  z_monotone = q(alpha / P) combined standard errors, P the number of pairs;
- "non-monotone": a significant reversal that is not a valley (e.g. a bump above the higher
                  endpoint, or a dip that stays above the lower one).

Why the correction: m is the lowest of M noisy points. On 13 points with 11 interior and known
per-point s.e. (``tests/test_landscape_analysis.py``), the uncorrected rule (depth_se > 2,
nominally 2.3%) called 4.7% of flat curves valleys, and 13% of curves whose interior lies at the
level of one endpoint with the other far above; the corrected rule calls 0.3% and 1.7%. The
valley test's null hypothesis is that no interior point's true mean lies below the lower
endpoint's; under it, for that endpoint e and each interior point j, P(z(e, j) > q(alpha / M))
<= alpha / M, so a valley is declared falsely with probability at most alpha (the minimum over
both endpoints keeps this when their s.e. differ). The combined standard error treats two
points as independent. The engine evaluates every point on the same reset seeds (common random
numbers), which correlates them positively, so the true standard error of a difference is
smaller and both tests are conservative. With zero standard errors (a deterministic env) any
dip below both endpoints counts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

DEFAULT_Z = 2.0
ENDPOINT_ATOL = 1e-9  # t values within this of 0 or 1 are the checkpoints themselves


@dataclass(frozen=True)
class ValleyVerdict:
    """Valley analysis of one curve; ``depth`` is in the curve's unit (score or return)."""

    verdict: str  # "valley" | "monotone" | "non-monotone"
    monotone: bool
    depth: float  # mean of the lower endpoint minus the lowest interior mean
    depth_se: float  # min over both endpoints of the dip in combined s.e. (+-inf when those are 0)
    t_min: float  # where the lowest interior point is
    lower_endpoint_t: float  # 0.0 or 1.0
    z: float  # the family-wise level of both tests as a one-sided quantile: 1 - Phi(z)
    interior_points: int  # M, the Bonferroni factor of the valley test
    z_valley: float  # q(alpha / M): a valley when depth_se exceeds it
    z_monotone: float  # q(alpha / P), P pairs of points on [0, 1]: a significant reversal

    def describe(self, unit: str) -> str:
        """One line for humans, e.g. "valley: falls 31.2 normalised score (6.3 s.e.) ..."."""
        where = (f"at t={self.t_min:.3g} below the lower endpoint (t={self.lower_endpoint_t:g})")
        if self.depth > 0:
            dip = f"falls {self.depth:.4g} {unit} ({self.depth_se:.2f} s.e.) {where}"
        else:
            dip = f"never falls below the lower endpoint (t={self.lower_endpoint_t:g})"
        rule = (f"valley = depth > {self.z_valley:.3g} s.e. (level 1 - Phi({self.z:g}) = "
                f"{NormalDist().cdf(-self.z):.2%}, Bonferroni over {self.interior_points} "
                f"interior points)")
        return f"{self.verdict}: {dip}; {rule}"

    def to_dict(self) -> dict[str, Any]:
        """The fields, strict-JSON safe: an infinite ``depth_se`` (zero s.e.) becomes None."""
        values = asdict(self)
        if not math.isfinite(self.depth_se):
            values["depth_se"] = None
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ValleyVerdict:
        """The verdict ``to_dict`` wrote (a None ``depth_se`` back to infinity)."""
        depth_se = values["depth_se"]
        return cls(**{**values, "depth_se": math.inf if depth_se is None else depth_se})


@dataclass(frozen=True)
class Curve:
    """One evaluated path: mean and s.e. (T,) of the reward at each t (T,), and its verdict."""

    label: str
    ts: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    verdict: ValleyVerdict


def _z_scores(difference: np.ndarray, se_a: np.ndarray, se_b: np.ndarray) -> np.ndarray:
    """difference / sqrt(se_a^2 + se_b^2), elementwise; +-inf (or 0) where both s.e. are 0."""
    combined = np.hypot(se_a, se_b)
    exact = np.where(difference != 0, np.copysign(np.inf, difference), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(combined > 0, difference / combined, exact)


def _one_sided_quantile(p: float) -> float:
    """q(p) = Phi^-1(1 - p): the standard normal value exceeded with probability p."""
    return -NormalDist().inv_cdf(p)


def valley_verdict(ts: np.ndarray, mean: np.ndarray, se: np.ndarray,
                   z: float = DEFAULT_Z) -> ValleyVerdict:
    """Judge a curve (T,), (T,), (T,) that includes t = 0, t = 1 and at least one interior t, at
    the family-wise level 1 - Phi(z) (definitions in the module docstring)."""
    alpha = NormalDist().cdf(-z)                                    # 1 - Phi(z)
    if not (z > 0 and alpha > 0):
        raise ValueError(f"z must be positive and finite, got {z}")
    ts, mean, se = (np.asarray(a, dtype=np.float64) for a in (ts, mean, se))
    if not ts.shape == mean.shape == se.shape or ts.ndim != 1:
        raise ValueError(f"ts, mean and se must be 1-D of one length, got shapes "
                         f"{ts.shape}, {mean.shape}, {se.shape}")
    order = np.argsort(ts)
    ts, mean, se = ts[order], mean[order], se[order]
    start = np.flatnonzero(np.abs(ts) <= ENDPOINT_ATOL)
    end = np.flatnonzero(np.abs(ts - 1.0) <= ENDPOINT_ATOL)
    inside = np.flatnonzero((ts > ENDPOINT_ATOL) & (ts < 1.0 - ENDPOINT_ATOL))
    if start.size == 0 or end.size == 0 or inside.size == 0:
        raise ValueError("the curve must contain t = 0, t = 1 and at least one t in between")
    if not np.isfinite(se).all():
        raise ValueError("standard errors must be finite (a single episode has none)")
    i0, i1 = start[0], end[0]
    ends = np.array([i0, i1])
    lower = i0 if mean[i0] <= mean[i1] else i1
    lowest = inside[np.argmin(mean[inside])]
    depth = float(mean[lower] - mean[lowest])
    depth_se = float(np.min(_z_scores(mean[ends] - mean[lowest], se[ends], se[lowest])))
    z_valley = _one_sided_quantile(alpha / inside.size)            # q(alpha / M)

    # monotone: no significant move against the overall direction between any i < j on [0, 1]
    segment = np.arange(i0, i1 + 1)
    sign = 1.0 if mean[i1] >= mean[i0] else -1.0
    i, j = np.triu_indices(segment.size, k=1)                       # the P pairs i < j
    i, j = segment[i], segment[j]
    z_monotone = _one_sided_quantile(alpha / i.size)                # q(alpha / P)
    monotone = not np.any(_z_scores(sign * (mean[i] - mean[j]), se[i], se[j]) > z_monotone)

    if depth_se > z_valley:
        verdict = "valley"
    elif monotone:
        verdict = "monotone"
    else:
        verdict = "non-monotone"
    return ValleyVerdict(verdict, monotone, depth, depth_se, float(ts[lowest]),
                         float(ts[lower]), z, int(inside.size), z_valley, z_monotone)
