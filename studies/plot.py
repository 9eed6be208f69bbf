"""``python -m studies.plot RUN... [--out DIR]``: learning curves without writing code.

An interactive Plotly page (learning_curves.html) and a PNG (learning_curves.png) of the runs'
evaluation scores (normalised scores; raw returns for envs without reference returns).

Runs that share a label (by default the algorithm, or offline -> online pair, and the data: a
task's name, or the id of any other dataset; --label sets it) are one curve: the mean over the
runs (seeds) at the evaluation steps they all have, with a band of +- one standard error over
the runs; a single run is its evaluation mean. An online run plotted together with the offline
run it started from continues that run's curve: the x axis counts the offline run's gradient
updates, then online env steps, and a dotted vertical line marks the offline -> online switch.

    python -m studies.plot runs/smac runs/smac-sac runs/calql runs/calql-sac --out plots
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from smac_core.errors import SmacError, cli_entry
from smac_core.rundir import CONFIG_FILE, read_config

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from matplotlib.axes import Axes

PLOT_MODULE = "studies.plot"
# the owner (smac_core.files) of the output directories; the directories written when this was
# smac_core.plot, owned by that name, are its own too (updated in place)
PLOT_TOOL = PLOT_MODULE
PLOT_TOOL_ALIASES = ("smac_core.plot",)
PAGE, PNG = "learning_curves.html", "learning_curves.png"


@dataclass(frozen=True)
class RunCurve:
    """One run's evaluation means (``values`` at ``steps``), and where it sits on the x axis:
    ``offset`` steps before its own (its offline run's, when that is plotted too)."""

    path: Path
    label: str
    data: str            # what the run trained on (tasks.dataset_label)
    phase: str           # "offline" | "online"
    source: Path | None  # online runs started --from a checkpoint: that run directory
    source_step: int | None  # the source checkpoint's step when its name says it (step_<N>)
    steps: np.ndarray    # (E,) int
    values: np.ndarray   # (E,) mean over the evaluation's episodes
    metric: str          # "score" | "return"
    offset: int = 0

    @property
    def x(self) -> np.ndarray:
        return self.steps + self.offset


@dataclass(frozen=True)
class GroupCurve:
    """The curve of the runs sharing one label: mean and standard error over them (``se`` None
    for a single run) at the x values all of them have."""

    label: str
    x: np.ndarray
    mean: np.ndarray
    se: np.ndarray | None
    runs: int


def _config(run_dir: Path) -> dict[str, Any]:
    config = read_config(run_dir)
    if not {"phase", "algorithm", "env"} <= set(config):
        raise SmacError(f"{run_dir / CONFIG_FILE} is not a run's config (phase, algorithm and "
                        "env are needed)")
    return config


def default_label(config: dict[str, Any]) -> str:
    """``smac`` for an offline run, ``smac → sac`` for one fine-tuned from it, ``sac`` for an
    online run from scratch."""
    source = config.get("from_algorithm")
    return f"{source} → {config['algorithm']}" if source else str(config["algorithm"])


def _source(config: dict[str, Any]) -> tuple[Path | None, int | None]:
    """The run directory and step of an online run's ``from`` (a run or one of its
    checkpoints)."""
    source = config.get("from")
    if not source:
        return None, None
    path = Path(source)
    if path.parent.name != "checkpoints":
        return path, None
    step = path.name.removeprefix("step_")
    return path.parent.parent, int(step) if step.isdigit() else None


def read_run(run_dir: str | Path, label: str | None = None) -> RunCurve:
    """A run directory's evaluation curve (its own phase's evaluations) and labels."""
    from smac_core.metrics import read_evaluations
    from smac_core.tasks import dataset_label

    run_dir = Path(run_dir)
    config = _config(run_dir)
    curve = read_evaluations(run_dir, phase=config["phase"])
    data = config.get("task") or dataset_label(config.get("dataset_id"), config["env"])
    source, source_step = _source(config)
    return RunCurve(run_dir, label or default_label(config), str(data), config["phase"], source,
                    source_step, curve.steps, curve.mean, curve.metric)


def _same_run(path: Path, recorded: Path) -> bool:
    """Whether run directory ``path`` is the one an online run recorded as ``recorded`` (relative
    to the directory that run was started in, which may be another one)."""
    if path.resolve() == recorded.resolve():
        return True
    parts = [p for p in recorded.parts if p not in (".", "")]
    return not recorded.is_absolute() and list(path.resolve().parts[-len(parts):]) == parts


def link_offline(runs: Sequence[RunCurve]) -> tuple[list[RunCurve], list[int]]:
    """Each online run whose offline run is plotted too, shifted to start where the offline run
    handed over (its last evaluated step, or the step of the checkpoint it started from); the
    switch steps, sorted."""
    offline = [run for run in runs if run.phase == "offline"]
    linked, switches = [], set()
    for run in runs:
        source = run.source and next((o for o in offline if _same_run(o.path, run.source)), None)
        if source is None:
            linked.append(run)
            continue
        switch = int(source.steps[-1]) if run.source_step is None else run.source_step
        linked.append(replace(run, offset=switch))
        switches.add(switch)
    return linked, sorted(switches)


def group_runs(runs: Sequence[RunCurve]) -> list[GroupCurve]:
    """One curve per (label, data), in order of first appearance: mean +- s.e. over its runs
    at the x values every one of them has."""
    from smac_core import metrics

    several_data = len({run.data for run in runs}) > 1
    groups: dict[tuple[str, str], list[RunCurve]] = {}
    for run in runs:
        groups.setdefault((run.label, run.data), []).append(run)
    curves = []
    for (label, data), members in groups.items():
        x = members[0].x
        for run in members[1:]:
            x = np.intersect1d(x, run.x)
        if x.size == 0:
            raise SmacError(f"the runs labelled {label!r} share no evaluation step: "
                            + ", ".join(str(run.path) for run in members))
        values = np.stack([run.values[np.isin(run.x, x)] for run in members])
        se = metrics.standard_error(values) if len(members) > 1 else None
        curves.append(GroupCurve(f"{label} ({data})" if several_data else label, x,
                                 values.mean(axis=0), se, len(members)))
    return curves


@dataclass(frozen=True)
class LearningCurves:
    """What the page and the PNG show."""

    curves: list[GroupCurve]
    switches: list[int]   # x of the offline -> online switches
    title: str
    x_title: str
    y_title: str


def learning_curves(run_dirs: Sequence[str | Path], labels: Sequence[str] = ()
                    ) -> LearningCurves:
    """Read ``run_dirs`` (``labels``: one per run, default ``default_label``) into curves."""
    if labels and len(labels) != len(run_dirs):
        raise SmacError(f"--label: give one label per RUN ({len(run_dirs)}), got {len(labels)}")
    runs, switches = link_offline([read_run(run, label) for run, label in
                                   zip(run_dirs, labels or [None] * len(run_dirs), strict=True)])
    metrics = {run.metric for run in runs}
    if len(metrics) > 1:
        raise SmacError("some runs log normalised scores and others raw returns: plot them "
                        "separately")
    curves = group_runs(runs)
    phases = {run.phase for run in runs}
    x_title = ("offline gradient updates, then online env steps" if switches
               else "gradient updates" if phases == {"offline"}
               else "env steps" if phases == {"online"} else "step")
    y_title = ("normalised score" if metrics == {"score"} else "return") + (
        " (mean ± s.e. over seeds)" if any(curve.runs > 1 for curve in curves) else "")
    title = f"Evaluation during training: {', '.join(sorted({run.data for run in runs}))}"
    return LearningCurves(curves, switches, title, x_title, y_title)


def learning_curve_figure(plot: LearningCurves, colors: Sequence[str] = ()) -> go.Figure:
    """One line per curve (hover: mean, s.e.), its +- s.e. band, dotted switch lines;
    ``colors``: one per curve (default: the palette in order)."""
    import plotly.graph_objects as go

    from landscape.plot import rgba

    figure = go.Figure()
    for curve, color in zip(plot.curves, curve_colors(plot, colors), strict=True):
        if curve.se is not None:
            figure.add_trace(go.Scatter(
                x=np.concatenate([curve.x, curve.x[::-1]]).tolist(),
                y=np.concatenate([curve.mean + curve.se, (curve.mean - curve.se)[::-1]]).tolist(),
                fill="toself", fillcolor=rgba(color, 0.2), line={"width": 0}, hoverinfo="skip",
                showlegend=False, legendgroup=curve.label, name=f"{curve.label} ± s.e."))
        se = curve.se if curve.se is not None else np.full(len(curve.x), np.nan)
        figure.add_trace(go.Scatter(
            x=curve.x.tolist(), y=curve.mean.tolist(), mode="lines+markers",
            line={"color": color}, name=f"{curve.label} ({curve.runs} run"
                                         f"{'s' if curve.runs > 1 else ''})",
            legendgroup=curve.label, customdata=se.tolist(),
            hovertemplate=f"{curve.label}<br>step %{{x}}<br>%{{y:.4g}} ± %{{customdata:.3g}}"
                          "<extra></extra>"))
    for switch in plot.switches:
        figure.add_vline(x=switch, line={"dash": "dot", "color": "gray"},
                         annotation_text="offline → online")
    figure.update_layout(title=plot.title, xaxis_title=plot.x_title, yaxis_title=plot.y_title,
                         template="plotly_white")
    return figure


def curve_colors(plot: LearningCurves, colors: Sequence[str] = ()) -> list[str]:
    """``colors`` (one per curve), or the palette in order."""
    from landscape.plot import COLORS

    if colors and len(colors) != len(plot.curves):
        raise SmacError(f"{len(colors)} colors for {len(plot.curves)} curves")
    return list(colors) or [COLORS[k % len(COLORS)] for k in range(len(plot.curves))]


def draw_learning_curves(ax: Axes, plot: LearningCurves, colors: Sequence[str] = ()) -> None:
    """Every curve with its +- s.e. band and the dotted switch lines, on ``ax``; ``colors`` as
    in ``learning_curve_figure``."""
    from landscape.plot import draw_band

    for curve, color in zip(plot.curves, curve_colors(plot, colors), strict=True):
        se = curve.se if curve.se is not None else np.full(len(curve.x), np.nan)
        draw_band(ax, curve.x, curve.mean, se, color, curve.label, "o-", 3)
    for switch in plot.switches:
        ax.axvline(switch, color="gray", linestyle=":", linewidth=1.2)
    ax.set(xlabel=plot.x_title, ylabel=plot.y_title)


def save_learning_curve_png(plot: LearningCurves, path: Path) -> None:
    from matplotlib.figure import Figure

    from landscape.plot import save_png

    figure = Figure(figsize=(8, 4.5))
    ax = figure.subplots()
    draw_learning_curves(ax, plot)
    ax.set(title=plot.title)
    ax.legend()
    save_png(figure, path)


def write_learning_curves(plot: LearningCurves, out: Path) -> list[Path]:
    """``out/learning_curves.html`` and ``.png``; their paths."""
    from landscape.plot import write_html

    write_html(learning_curve_figure(plot), out / PAGE)
    save_learning_curve_png(plot, out / PNG)
    return [out / PAGE, out / PNG]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {PLOT_MODULE}",
                                     description="Learning curves of training runs, without "
                                                 "writing code.\n\n"
                                                 + __doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="run directories (python -m smac_core.train --out), offline or "
                             "online, several seeds each")
    parser.add_argument("--out", type=Path, default=Path("learning_curves"), metavar="DIR",
                        help=f"where {PAGE} and {PNG} go (default: learning_curves)")
    parser.add_argument("--label", action="append", default=[],
                        help="the curve label of each RUN, in order (runs with the same label "
                             "are averaged; default: the algorithm or offline → online pair)")
    return parser


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    from smac_core.files import output_directory

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    plot = learning_curves(args.runs, args.label)
    with output_directory(args.out, PLOT_TOOL, [f"python -m {PLOT_MODULE}", *argv],
                          aliases=PLOT_TOOL_ALIASES):
        written = write_learning_curves(plot, args.out)
    print("wrote " + " and ".join(str(path) for path in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
