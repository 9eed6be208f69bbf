"""Paths and planes in parameter space, on flat parameter vectors of shape (D,).

- the straight line theta(t) = (1 - t) theta_a + t theta_b (Goodfellow et al. 2015; the paper's
  interpolation figure: t = 0 pre-trained, t = 1 fine-tuned);
- the plane theta(x, y) = origin + x d1 + y d2 (Li et al. 2018; the paper's plane uses raw
  differences d_i = theta_i - theta_0);
- mode-connectivity curves with fixed ends (Garipov et al. 2018): a Bezier curve and a polygonal
  chain through given bend points, evaluated at given t (``landscape.path`` trains the bends).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

Coordinates = Sequence[float] | torch.Tensor


def _as_coordinates(values: Coordinates, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=like.dtype, device=like.device).reshape(-1)


def interpolate_linear(theta_a: torch.Tensor, theta_b: torch.Tensor,
                       ts: Coordinates) -> torch.Tensor:
    """theta(t) = (1 - t) theta_a + t theta_b for each t: (D,), (D,), (T,) -> (T, D)."""
    t = _as_coordinates(ts, theta_a)[:, None]
    return (1.0 - t) * theta_a + t * theta_b


def plane_points(origin: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor, xs: Coordinates,
                 ys: Coordinates) -> torch.Tensor:
    """theta = origin + x d1 + y d2 for P paired coordinates (xs[p], ys[p]): -> (P, D).

    Pairs, not axes, so a grid can be built chunk by chunk without materialising all of it
    (see ``landscape.grid.plane_coordinates`` for the pairs of a full grid).
    """
    x = _as_coordinates(xs, origin)[:, None]
    y = _as_coordinates(ys, origin)[:, None]
    if x.shape != y.shape:
        raise ValueError(f"xs and ys must pair up, got {x.shape[0]} and {y.shape[0]} values")
    # in float64, then rounded once: fewer float32 roundings between the grid's anchor points
    # (x, y) = (1, 0), (0, 1) and the checkpoints they stand for
    wide = origin.double() + x.double() * d1.double() + y.double() * d2.double()
    return wide.to(origin.dtype)


def bezier_curve(control_points: Sequence[torch.Tensor], ts: Coordinates) -> torch.Tensor:
    """Bezier curve through K+1 control points (ends = the two checkpoints): -> (T, D).

    phi(t) = sum_k C(K, k) t^k (1 - t)^(K-k) w_k; with K = 2 this is Garipov et al.'s quadratic
    curve phi(t) = (1 - t)^2 w_0 + 2 t (1 - t) theta + t^2 w_1.
    """
    if len(control_points) < 2:
        raise ValueError("a Bezier curve needs at least its two end points")
    points = torch.stack(list(control_points))
    t = _as_coordinates(ts, points)[:, None]
    degree = len(control_points) - 1
    # a sum of scaled rows, not a matmul: each row's value does not depend on the other t's
    # (a (T, K+1) @ (K+1, D) product may round differently for other T), so a point is the same
    # vector whichever chunk of points it is built in
    curve = torch.zeros(t.shape[0], points.shape[1], dtype=points.dtype, device=points.device)
    for k in range(degree + 1):
        curve = curve + math.comb(degree, k) * t**k * (1.0 - t) ** (degree - k) * points[k]
    return curve


def polygonal_chain(points: Sequence[torch.Tensor], ts: Coordinates) -> torch.Tensor:
    """Piecewise-linear path through the points, segment k covering t in [k/S, (k+1)/S]: (T, D).

    With one bend theta this is Garipov et al.'s chain: phi(t) = 2 (t theta + (0.5 - t) w_0) on
    [0, 0.5] and 2 ((t - 0.5) w_1 + (1 - t) theta) on [0.5, 1]. t outside [0, 1] extends the
    first or last segment.
    """
    if len(points) < 2:
        raise ValueError("a polygonal chain needs at least its two end points")
    nodes = torch.stack(list(points))
    t = _as_coordinates(ts, nodes)
    segments = len(points) - 1
    position = t * segments
    k = position.floor().clamp(0, segments - 1).long()
    local = (position - k)[:, None]
    return (1.0 - local) * nodes[k] + local * nodes[k + 1]
