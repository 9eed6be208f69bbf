"""Valley verdict on an interpolation curve: t, mean and standard error at each t.

Only the segment between the two checkpoints (0 <= t <= 1) is judged; points outside it are
extrapolation. With L the endpoint of lower mean and m the lowest interior point (0 < t < 1):

    depth    = mean(L) - mean(m)                      (> 0: the curve falls below both ends)
    depth_se = depth / sqrt(se(L)^2 + se(m)^2)        (combined standard error)

Verdicts, with ``z`` (default 2, about a 95% one-sided level):
- "valley":       depth_se > z: a significant dip below the lower endpoint;
- "monotone":     no significant reversal, i.e. no pair t_i < t_j on [0, 1] where the curve
                  moves against the direction from mean(0) to mean(1) by more than z combined
                  standard errors;
- "non-monotone": a significant reversal that does not go below the lower endpoint (e.g. a
                  bump above the higher endpoint, or a dip that stays above the lower one).

The combined standard error treats the two points as independent. The engine evaluates every
point on the same reset seeds (common random numbers), which correlates them positively, so
the true standard error of a difference is smaller and this rule is conservative. In the other
direction, m is the lowest of several noisy points, which biases the depth up on a flat curve
(more so the more interior points): z = 2 is a screening rule, raise it (``--z``) to be strict.
With zero standard errors (a deterministic env) any dip below the lower endpoint counts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
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
    depth_se: float  # depth in combined standard errors (+-inf when those are 0)
    t_min: float  # where the lowest interior point is
    lower_endpoint_t: float  # 0.0 or 1.0
    z: float

    def describe(self, unit: str) -> str:
        """One line for humans, e.g. "valley: falls 31.2 normalised score (6.3 s.e.) ..."."""
        where = (f"at t={self.t_min:.3g} below the lower endpoint (t={self.lower_endpoint_t:g})")
        if self.depth > 0:
            dip = f"falls {self.depth:.4g} {unit} ({self.depth_se:.2f} s.e.) {where}"
        else:
            dip = f"never falls below the lower endpoint (t={self.lower_endpoint_t:g})"
        rule = f"valley = depth > {self.z:g} combined s.e."
        return f"{self.verdict}: {dip}; {rule}"

    def to_dict(self) -> dict[str, Any]:
        """The fields, strict-JSON safe: an infinite ``depth_se`` (zero s.e.) becomes None."""
        values = asdict(self)
        if not math.isfinite(self.depth_se):
            values["depth_se"] = None
        return values


@dataclass(frozen=True)
class Curve:
    """One evaluated path: mean and s.e. (T,) of the reward at each t (T,), and its verdict."""

    label: str
    ts: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    verdict: ValleyVerdict


def _z_score(difference: float, se_a: float, se_b: float) -> float:
    combined = math.hypot(se_a, se_b)
    if combined > 0:
        return difference / combined
    return math.copysign(math.inf, difference) if difference != 0 else 0.0


def valley_verdict(ts: np.ndarray, mean: np.ndarray, se: np.ndarray,
                   z: float = DEFAULT_Z) -> ValleyVerdict:
    """Judge a curve (T,), (T,), (T,) that includes t = 0, t = 1 and at least one interior t."""
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
    lower = i0 if mean[i0] <= mean[i1] else i1
    lowest = inside[np.argmin(mean[inside])]
    depth = float(mean[lower] - mean[lowest])
    depth_se = _z_score(depth, se[lower], se[lowest])

    # monotone: no significant move against the overall direction between any i < j on [0, 1]
    segment = np.arange(i0, i1 + 1)
    sign = 1.0 if mean[i1] >= mean[i0] else -1.0
    monotone = not any(
        _z_score(sign * (mean[i] - mean[j]), se[i], se[j]) > z
        for a, i in enumerate(segment) for j in segment[a + 1:])

    if depth_se > z:
        verdict = "valley"
    elif monotone:
        verdict = "monotone"
    else:
        verdict = "non-monotone"
    return ValleyVerdict(verdict, monotone, depth, float(depth_se), float(ts[lowest]),
                         float(ts[lower]), z)
