"""Reward over a plane in parameter space, as an interactive 3-D surface and contour map.

    python -m landscape.surface THETA_0 THETA_1 THETA_2        # plane through three checkpoints
    python -m landscape.surface THETA_0 --random-directions --direction-seed 0

Three checkpoints give the paper's plane theta_0 + x (theta_1 - theta_0) + y (theta_2 - theta_0)
(raw differences, no normalisation: theta_1 sits at (1, 0) and theta_2 at (0, 1)). One checkpoint
and ``--random-directions`` give theta_0 + x d1 + y d2 with two random filter-normalised
directions (Li et al. 2018, ``landscape.directions``). ``--overlay RUN_DIR`` projects a run's
checkpoint series onto the plane by least squares, min_c ||(theta_k - theta_0) - [d1 d2] c||,
and marks offline and online checkpoints (with the fraction of theta_k - theta_0 that lies off
the plane in the hover text). Writes surface.json / .csv, surface.html (Plotly surface and
contours, data embedded) and surface.png to ``--out``; the grid resumes when rerun.
Observation normalisation and action bounds are theta_0's: three checkpoints that normalise
observations differently are refused (``landscape.params.check_compatible``). Every point plays
the same episodes, by default those of the evaluations of theta_0's run (its run seed; ``--seed``
overrides), so the point at theta_0 reproduces its evaluation in metrics.jsonl.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from landscape.grid import (
    EvalSettings,
    add_evaluation_args,
    checkpoint_sha256,
    evaluate_missing,
    json_floats,
    output_dir,
    periodic_checkpoints,
    plane_coordinates,
    result_unit,
    seed_results,
)
from landscape.parts import add_part_flag, landscape_target
from landscape.valley import ENDPOINT_ATOL, Curve, valley_verdict
from smac_core.errors import SmacError, cli_entry
from smac_core.files import atomic_write_text
from smac_core.metrics import mean_and_se
from smac_core.paper import display

if TYPE_CHECKING:  # torch-based modules are imported where used: --help answers at once
    import torch

    from landscape.plot import PlanePoint
    from smac_core.checkpoint import Checkpoint


@dataclass(frozen=True)
class Plane:
    """theta(x, y) = origin + x d1 + y d2, each (D,), and the checkpoint that sets its policy."""

    origin: torch.Tensor
    d1: torch.Tensor
    d2: torch.Tensor
    template: Checkpoint
    anchors: tuple[PlanePoint, ...]  # the checkpoints that lie on the plane
    identity: dict[str, Any]  # what defines the plane, for the result store's fingerprint


@dataclass(frozen=True)
class ProjectedCheckpoint:
    """A training checkpoint's least-squares coordinates on the plane."""

    run: str
    step: int
    phase: str
    x: float
    y: float
    off_plane: float  # ||residual|| / ||theta_k - theta_0||: 0 means on the plane


def checkpoint_plane(sources: Sequence[str | Path]) -> Plane:
    """The plane through three checkpoints: origin theta_0, d_i = theta_i - theta_0."""
    import torch

    from landscape.directions import difference_direction
    from landscape.params import check_compatible, policy_vector
    from landscape.plot import PlanePoint

    (theta0, ckpt0), (theta1, ckpt1), (theta2, ckpt2) = (policy_vector(s) for s in sources)
    check_compatible([ckpt0, ckpt1, ckpt2])
    anchors = tuple(PlanePoint(x, y, f"θ{k} {Path(source).name}", "anchor")
                    for k, (x, y, source) in enumerate(zip((0, 1, 0), (0, 0, 1), sources,
                                                           strict=True)))
    d1, d2 = difference_direction(theta0, theta1), difference_direction(theta0, theta2)
    cosine = torch.nn.functional.cosine_similarity(d1.double(), d2.double(), dim=0)
    if d1.norm() == 0 or d2.norm() == 0 or cosine.abs() > 1 - 1e-9:
        raise SmacError(f"the checkpoints {', '.join(map(str, sources))} span no plane: two of "
                        "them are equal or the three lie on one line")
    identity = {"plane": "checkpoints",
                "checkpoints": [checkpoint_sha256(c) for c in (ckpt0, ckpt1, ckpt2)]}
    return Plane(theta0, d1, d2, ckpt0, anchors, identity)


def random_plane(source: str | Path, seed: int, include_1d: bool) -> Plane:
    """The plane through a checkpoint along two random filter-normalised directions."""
    from landscape.directions import random_directions
    from landscape.params import param_spec, policy_vector
    from landscape.plot import PlanePoint

    theta0, ckpt0 = policy_vector(source)
    d1, d2 = random_directions(theta0, param_spec(ckpt0.policy), seed, 2, include_1d)
    identity = {"plane": "random", "checkpoints": [checkpoint_sha256(ckpt0)],
                "direction_seed": seed, "include_1d": include_1d}
    return Plane(theta0, d1, d2, ckpt0, (PlanePoint(0, 0, f"θ0 {Path(source).name}", "anchor"),),
                 identity)


def project_series(plane: Plane, run_dirs: Sequence[str | Path]) -> list[ProjectedCheckpoint]:
    """Least-squares coordinates of every ``checkpoints/step_<N>`` of the runs, in run order."""
    import torch

    from landscape.params import check_compatible, policy_vector

    basis = torch.stack([plane.d1, plane.d2], dim=1).double()  # (D, 2)
    projected = []
    for run in run_dirs:
        for step, path in periodic_checkpoints(run, "--overlay"):
            theta, ckpt = policy_vector(path)
            # only the architecture and env matter for a projection, not the normalisation
            check_compatible([plane.template, ckpt], same_normalisation=False)
            offset = (theta - plane.origin).double()  # theta_k - theta_0
            coords = torch.linalg.lstsq(basis, offset[:, None]).solution[:, 0]  # (2,)
            residual = (offset - basis @ coords).norm() / offset.norm().clamp_min(1e-30)
            projected.append(ProjectedCheckpoint(str(run), step,
                                                 str(ckpt.metadata.get("phase", "checkpoint")),
                                                 float(coords[0]), float(coords[1]),
                                                 float(residual)))
    return projected


def _axis(values: Sequence[float] | None, default: tuple[float, float], points: int,
          flag: str) -> np.ndarray:
    low, high = default if values is None else values
    if points < 2 or not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise SmacError(f"--{flag}-range needs finite LOW < HIGH and --{flag}-points >= 2, got "
                        f"[{low}, {high}] with {points} points")
    return np.linspace(low, high, points)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m landscape.surface",
        description="Reward over a plane in parameter space (three checkpoints, or one and two "
                    "random filter-normalised directions): Plotly surface + contours, PNG, "
                    "JSON/CSV; resumable.")
    parser.add_argument("checkpoints", nargs="+", metavar="CKPT",
                        help="theta_0 theta_1 theta_2 (checkpoints or run directories), or only "
                             "theta_0 with --random-directions")
    parser.add_argument("--random-directions", action="store_true",
                        help="plane through one checkpoint along two random filter-normalised "
                             "directions")
    parser.add_argument("--direction-seed", type=int, default=0,
                        help="seed of the random directions (default 0)")
    parser.add_argument("--include-1d", action="store_true",
                        help="give 1-D parameters (biases) a random direction too, normalised to "
                             "their norm (default: zero direction, as Li et al.)")
    parser.add_argument("--x-range", nargs=2, type=float, default=None, metavar=("LOW", "HIGH"),
                        help="x interval (default -0.25 1.25 for three checkpoints, -1 1 for "
                             "random directions)")
    parser.add_argument("--y-range", nargs=2, type=float, default=None, metavar=("LOW", "HIGH"),
                        help="y interval (same defaults as --x-range)")
    parser.add_argument("--x-points", type=int, default=31,
                        help="grid points along x (default 31: with the default range, a step of "
                             "0.05 that puts the checkpoints themselves on the grid)")
    parser.add_argument("--y-points", type=int, default=31,
                        help="grid points along y (default 31)")
    parser.add_argument("--overlay", action="append", default=[], metavar="RUN_DIR",
                        help="project this run's checkpoint series onto the plane; repeat for "
                             "an offline run then its online run")
    add_evaluation_args(parser)
    add_part_flag(parser)
    return parser


def _plane_from_args(args: argparse.Namespace) -> Plane:
    if args.random_directions:
        if len(args.checkpoints) != 1:
            raise SmacError(f"--random-directions takes one checkpoint, got "
                            f"{len(args.checkpoints)}")
        return random_plane(args.checkpoints[0], args.direction_seed, args.include_1d)
    if len(args.checkpoints) != 3:
        raise SmacError(f"give three checkpoints (theta_0 theta_1 theta_2), or one with "
                        f"--random-directions; got {len(args.checkpoints)}")
    return checkpoint_plane(args.checkpoints)


def results_csv(coords: np.ndarray, mean: np.ndarray, se: np.ndarray,
                success: np.ndarray) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["x", "y", "mean", "se", "success_rate"])
    for (x, y), m, s, rate in zip(coords, mean, se, success, strict=True):
        writer.writerow([repr(float(v)) for v in (x, y, m, s, rate)])
    return buffer.getvalue()


@dataclass(frozen=True)
class RewardPlane:
    """One seed's reward plane through offline, online[0] and online[1], read back from the
    ``surface.json`` the experiment runner wrote for it: ``mean`` (Y, X) over ``x`` (X,) and
    ``y`` (Y,)."""

    task: str
    label: str
    seed: int  # -1: a mean over seeds
    unit: str
    x: np.ndarray
    y: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    checkpoints: tuple[str, ...]

    def path_curve(self, axis: str) -> Curve | None:
        """The straight path pre-trained -> theta_1 (``axis`` "x", along y = 0) or -> theta_2
        ("y", along x = 0) read off the grid, with its valley verdict; None when the grid does
        not hold both checkpoints and a point between them."""
        along, across = (self.x, self.y) if axis == "x" else (self.y, self.x)
        row = np.flatnonzero(np.isclose(across, 0.0, atol=ENDPOINT_ATOL))
        inside = (along >= -ENDPOINT_ATOL) & (along <= 1 + ENDPOINT_ATOL)
        ts = along[inside]
        if row.size == 0 or not (np.isclose(ts, 0.0).any() and np.isclose(ts, 1.0).any()) \
                or ts.size < 3:
            return None
        grid_mean, grid_se = (self.mean, self.se) if axis == "y" else (self.mean.T, self.se.T)
        mean, se = grid_mean[inside, row[0]], grid_se[inside, row[0]]
        if not np.isfinite(se).all():
            return None
        target = "θ1" if axis == "x" else "θ2"
        return Curve(f"{display(self.label)}: θ -> {target}", ts, mean, se,
                     valley_verdict(ts, mean, se))


def load_planes(root: Path) -> list[RewardPlane]:
    """Every reward plane under an experiment root (``grid.seed_results``)."""
    result = []
    for task, label, seed, path in seed_results(root, "planes", "surface.json"):
        data = json.loads(path.read_text())
        se = np.asarray(data["se"], dtype=np.float64)  # json_floats' None (E = 1) -> NaN
        result.append(RewardPlane(task, label, seed, data["unit"], np.asarray(data["x"]),
                                  np.asarray(data["y"]), np.asarray(data["mean"]), se,
                                  tuple(data["checkpoints"])))
    return result


def plane_over_seeds(seeds: Sequence[RewardPlane]) -> RewardPlane:
    """Mean over seeds of each grid point, s.e. over seeds (one seed: the plane itself)."""
    first = seeds[0]
    if len(seeds) == 1:
        return first
    if any(not (np.array_equal(p.x, first.x) and np.array_equal(p.y, first.y)) for p in seeds):
        raise SmacError(f"{first.task}/{first.label}: the seeds' planes use different grids")
    mean, se = mean_and_se([p.mean for p in seeds])  # over seeds (S, Y, X)
    return RewardPlane(first.task, first.label, -1, first.unit, first.x, first.y, mean, se,
                       tuple(c for p in seeds for c in p.checkpoints))


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from landscape.paths import plane_points  # after parsing: --help needs no torch
    from landscape.plot import PlanePoint, save_surface_png, surface_figure, write_html

    default_range = (-1.0, 1.0) if args.random_directions else (-0.25, 1.25)
    xs = _axis(args.x_range, default_range, args.x_points, "x")
    ys = _axis(args.y_range, default_range, args.y_points, "y")
    plane = _plane_from_args(args)
    settings = EvalSettings.from_args(args).for_checkpoint(plane.template)
    overlay = project_series(plane, args.overlay)
    env = plane.template.env_name
    fingerprint = {"command": "surface", "env": env, **plane.identity, "xs": xs.tolist(),
                   "ys": ys.tolist(), **settings.fingerprint()}
    out = output_dir(args.out, "surface", fingerprint)
    with landscape_target(out, "surface", argv, args.part) as target:
        coords = plane_coordinates(xs, ys)
        store = target.store(out / "points", fingerprint, len(coords), settings.episodes)
        evaluate_missing(
            store, plane.template.policy,
            lambda idx: plane_points(plane.origin, plane.d1, plane.d2, coords[idx, 0],
                                     coords[idx, 1]),
            env, settings, desc="plane")
        if target.part is not None:
            return target.part_done("surface")
        result = store.result()
        unit = result_unit(result)
        mean, se = result.mean(), result.stderr()
        grid_shape = (len(ys), len(xs))
        best, worst = int(np.argmax(mean)), int(np.argmin(mean))
        print(f"{unit} over the plane ({len(ys)} x {len(xs)} points, {settings.episodes} "
              f"episodes): max {mean[best]:.4g} at (x={coords[best, 0]:.3g}, "
              f"y={coords[best, 1]:.3g}), min {mean[worst]:.4g} at (x={coords[worst, 0]:.3g}, "
              f"y={coords[worst, 1]:.3g})")
        for p in overlay:
            print(f"overlay {p.run} step {p.step} ({p.phase}): x={p.x:.3f} y={p.y:.3f} "
                  f"off-plane {p.off_plane:.1%}")

        marks = list(plane.anchors) + [
            PlanePoint(p.x, p.y, f"{p.run} step {p.step} ({p.phase}), off-plane {p.off_plane:.0%}",
                       p.phase) for p in overlay]
        axis_labels = (("x (θ1 − θ0)", "y (θ2 − θ0)") if plane.identity["plane"] == "checkpoints"
                       else ("x (direction 1)", "y (direction 2)"))
        title = f"{unit} on a plane through {plane.template.path} ({env})"
        summary = {"command": "surface", "unit": unit, "env": env, "plane": plane.identity,
                   "checkpoints": [str(c) for c in args.checkpoints], "x": xs.tolist(),
                   "y": ys.tolist(), "episodes": settings.episodes, "seed": settings.seed,
                   "mean": mean.reshape(grid_shape).tolist(),
                   "se": json_floats(se.reshape(grid_shape)),
                   "returns": result.returns.tolist(), "successes": result.successes.tolist(),
                   "scores": None if result.scores is None else result.scores.tolist(),
                   "overlay": [asdict(p) for p in overlay]}
        atomic_write_text(out / "surface.json", json.dumps(summary, indent=1))
        atomic_write_text(out / "surface.csv",
                          results_csv(coords, mean, se, result.successes.mean(axis=1)))
        write_html(surface_figure(xs, ys, mean.reshape(grid_shape), se.reshape(grid_shape), unit,
                                  marks, title, axis_labels), out / "surface.html")
        save_surface_png(xs, ys, mean.reshape(grid_shape), unit, marks, title, axis_labels,
                         out / "surface.png")
        print(f"wrote {out}/surface.{{json,csv,html,png}}")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
