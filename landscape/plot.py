"""Figures of the landscape commands: interactive Plotly pages and static matplotlib PNGs.

Each analysis has a ``*_figure`` (Plotly; the data is embedded in the page as plain JSON
numbers, together with plotly.js, so the page works offline and its numbers are readable) and a
``save_*_png`` (matplotlib, object-oriented API: no global pyplot state, no display needed).
The ``draw_*`` functions draw on a matplotlib axes or figure the caller lays out: the PNGs here
and the notebooks' figures (``notebooks/results.py``) are both drawn with them. Files are
written atomically.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from landscape.valley import Curve
from smac_core.files import atomic_write_bytes, atomic_write_text

COLORS = qualitative.Plotly
PNG_DPI = 120
MARKERS = "oDs^v<>"  # matplotlib marker per trajectory group


@dataclass(frozen=True)
class PlanePoint:
    """A marked point of a plane: a checkpoint (anchor) or a projected training checkpoint."""

    x: float
    y: float
    label: str  # hover text
    group: str  # legend group, e.g. "anchor", "offline", "online"


def write_html(figure: go.Figure, path: Path) -> None:
    """A self-contained HTML page (plotly.js and the data embedded)."""
    atomic_write_text(path, figure.to_html(include_plotlyjs=True, full_html=True))


def save_png(figure: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PNG_DPI, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def draw_band(ax: Axes, x: np.ndarray, mean: np.ndarray, se: np.ndarray, color: str,
              label: str | None = None, fmt: str = "-", markersize: float | None = None) -> None:
    """``mean`` against ``x`` in a band of +- ``se`` (no band where the s.e. is NaN, e.g. of a
    single seed)."""
    ax.plot(x, mean, fmt, color=color, markersize=markersize, label=label)
    if np.isfinite(se).any():
        ax.fill_between(x, mean - se, mean + se, color=color, alpha=0.2)


def interpolation_figure(curves: Sequence[Curve], unit: str, title: str) -> go.Figure:
    """Mean +- s.e. bands of every curve against t, dashed lines at the checkpoints t = 0, 1."""
    figure = go.Figure()
    for k, curve in enumerate(curves):
        color = COLORS[k % len(COLORS)]
        band_t = np.concatenate([curve.ts, curve.ts[::-1]])
        band = np.concatenate([curve.mean + curve.se, (curve.mean - curve.se)[::-1]])
        figure.add_trace(go.Scatter(x=band_t.tolist(), y=band.tolist(), fill="toself",
                                    fillcolor=rgba(color, 0.2), line={"width": 0},
                                    hoverinfo="skip", showlegend=False,
                                    legendgroup=curve.label))
        figure.add_trace(go.Scatter(
            x=curve.ts.tolist(), y=curve.mean.tolist(), mode="lines+markers",
            line={"color": color},
            name=f"{curve.label} ({curve.verdict.verdict})", legendgroup=curve.label,
            customdata=curve.se.tolist(),
            hovertemplate=(f"{curve.label}<br>t=%{{x:.3f}}<br>{unit}=%{{y:.4g}}"
                           " ± %{customdata:.3g}<extra></extra>")))
    for t in (0.0, 1.0):
        figure.add_vline(x=t, line={"dash": "dash", "color": "gray"})
    figure.update_layout(title=title, xaxis_title="t  (θ(t) = (1−t) θ_A + t θ_B)",
                         yaxis_title=f"{unit} (mean ± s.e.)", template="plotly_white")
    return figure


def draw_interpolations(ax: Axes, curves: Sequence[Curve], unit: str) -> None:
    """Mean +- s.e. of every curve against t, labelled with its verdict, dashed lines at the
    checkpoints t = 0, 1."""
    for k, curve in enumerate(curves):
        draw_band(ax, curve.ts, curve.mean, curve.se, COLORS[k % len(COLORS)],
                  f"{curve.label} ({curve.verdict.verdict})", "o-", 3)
    for t in (0.0, 1.0):
        ax.axvline(t, color="gray", linestyle="--", linewidth=1)
    ax.set(xlabel="t", ylabel=f"{unit} (mean ± s.e.)")


def save_interpolation_png(curves: Sequence[Curve], unit: str, title: str, path: Path) -> None:
    figure = Figure(figsize=(7, 4.5))
    ax = figure.subplots()
    draw_interpolations(ax, curves, unit)
    ax.set(title=title)
    ax.legend()
    save_png(figure, path)


def surface_figure(xs: np.ndarray, ys: np.ndarray, mean: np.ndarray, se: np.ndarray, unit: str,
                   marks: Sequence[PlanePoint], title: str, axis_labels: tuple[str, str]
                   ) -> go.Figure:
    """3-D surface and contour map of ``mean`` (Y, X) over the plane, hover shows mean and s.e.

    ``marks`` (checkpoints, projected training checkpoints) are drawn on the contour map.
    """
    hover = (f"x=%{{x:.3f}}<br>y=%{{y:.3f}}<br>{unit}=%{{z:.4g}} ± %{{customdata:.3g}}"
             "<extra></extra>")
    figure = make_subplots(rows=1, cols=2, specs=[[{"type": "surface"}, {"type": "xy"}]],
                           subplot_titles=("surface", "contours"), horizontal_spacing=0.08)
    data = {"x": xs.tolist(), "y": ys.tolist(), "z": mean.tolist(), "customdata": se.tolist()}
    figure.add_trace(go.Surface(**data, hovertemplate=hover,
                                colorscale="Viridis", colorbar={"title": unit, "x": 0.45}),
                     row=1, col=1)
    figure.add_trace(go.Contour(**data, hovertemplate=hover,
                                colorscale="Viridis", showscale=False,
                                contours={"showlabels": True}), row=1, col=2)
    for k, group in enumerate(dict.fromkeys(mark.group for mark in marks)):
        members = [mark for mark in marks if mark.group == group]
        figure.add_trace(go.Scatter(
            x=[m.x for m in members], y=[m.y for m in members], text=[m.label for m in members],
            mode="markers+text" if group == "anchor" else "lines+markers", name=group,
            textposition="top center", marker={"size": 9, "color": COLORS[k % len(COLORS)],
                                               "line": {"width": 1, "color": "white"}},
            hovertemplate="%{text}<br>x=%{x:.3f}<br>y=%{y:.3f}<extra></extra>"), row=1, col=2)
    figure.update_layout(title=title, template="plotly_white",
                         scene={"xaxis_title": axis_labels[0], "yaxis_title": axis_labels[1],
                                "zaxis_title": unit})
    figure.update_xaxes(title_text=axis_labels[0], row=1, col=2)
    figure.update_yaxes(title_text=axis_labels[1], row=1, col=2)
    return figure


def draw_surface(figure: Figure, ax: Axes, xs: np.ndarray, ys: np.ndarray, mean: np.ndarray,
                 unit: str, marks: Sequence[PlanePoint], axis_labels: tuple[str, str]) -> None:
    """Filled contours of ``mean`` (Y, X) with a colour bar, the ``marks`` on top (checkpoints
    annotated, other groups joined in order; a legend when there are several groups)."""
    filled = ax.contourf(xs, ys, mean, levels=20, cmap="viridis")
    ax.contour(xs, ys, mean, levels=10, colors="k", linewidths=0.4)
    figure.colorbar(filled, ax=ax, label=unit)
    for k, group in enumerate(dict.fromkeys(mark.group for mark in marks)):
        members = [mark for mark in marks if mark.group == group]
        style = "o" if group == "anchor" else "o-"
        ax.plot([m.x for m in members], [m.y for m in members], style, markersize=5,
                color=COLORS[(k + 1) % len(COLORS)], label=group)
        if group == "anchor":
            for m in members:
                ax.annotate(m.label, (m.x, m.y), textcoords="offset points", xytext=(4, 4))
    ax.set(xlabel=axis_labels[0], ylabel=axis_labels[1])
    if len({mark.group for mark in marks}) > 1:
        ax.legend(loc="best")


def save_surface_png(xs: np.ndarray, ys: np.ndarray, mean: np.ndarray, unit: str,
                     marks: Sequence[PlanePoint], title: str, axis_labels: tuple[str, str],
                     path: Path) -> None:
    figure = Figure(figsize=(7, 5.5))
    ax = figure.subplots()
    draw_surface(figure, ax, xs, ys, mean, unit, marks, axis_labels)
    ax.set(title=title)
    save_png(figure, path)


def trajectory_figure(embeddings: dict[str, np.ndarray], reward: np.ndarray, labels: Sequence[str],
                      groups: Sequence[str], unit: str, title: str) -> go.Figure:
    """One panel per embedding (name -> (N, 2)), points coloured by ``reward`` (N,), the
    checkpoints of a group (e.g. one run) joined in order, one marker symbol per group."""
    figure = make_subplots(rows=1, cols=len(embeddings), subplot_titles=list(embeddings))
    group_array, label_array = np.asarray(groups), np.asarray(labels)
    symbols = ("circle", "diamond", "square", "triangle-up", "cross", "x")
    for col, points in enumerate(embeddings.values(), start=1):
        for k, group in enumerate(dict.fromkeys(groups)):
            member = group_array == group
            figure.add_trace(go.Scatter(
                x=points[member, 0].tolist(), y=points[member, 1].tolist(),
                mode="lines+markers", name=group, legendgroup=group, showlegend=col == 1,
                text=label_array[member].tolist(), customdata=reward[member].tolist(),
                line={"color": "lightgray"},
                marker={"color": reward[member].tolist(), "colorscale": "Viridis", "size": 10,
                        "cmin": reward.min(), "cmax": reward.max(),
                        "symbol": symbols[k % len(symbols)], "line": {"width": 1, "color": "black"},
                        "showscale": col == 1 and k == 0,
                        "colorbar": {"title": unit, "x": 1.08}},
                hovertemplate=f"%{{text}}<br>{unit}=%{{customdata:.4g}}<extra></extra>"),
                row=1, col=col)
    figure.update_layout(title=title, template="plotly_white")
    return figure


def draw_trajectory(figure: Figure, embeddings: dict[str, np.ndarray], reward: np.ndarray,
                    groups: Sequence[str], unit: str) -> None:
    """One panel per embedding (name -> (N, 2)) across ``figure``: points coloured by ``reward``
    (N,), the checkpoints of a group (e.g. one run) joined in order, one marker per group."""
    axes = figure.subplots(1, len(embeddings), squeeze=False)[0]
    group_array = np.asarray(groups)
    for ax, (name, points) in zip(axes, embeddings.items(), strict=True):
        for k, group in enumerate(dict.fromkeys(groups)):
            member, marker = group_array == group, MARKERS[k % len(MARKERS)]
            ax.plot(points[member, 0], points[member, 1], color="lightgray", zorder=1)
            scatter = ax.scatter(points[member, 0], points[member, 1], c=reward[member],
                                 cmap="viridis", vmin=reward.min(), vmax=reward.max(),
                                 marker=marker, edgecolors="black", zorder=2, label=group)
        figure.colorbar(scatter, ax=ax, label=unit)
        ax.set(title=name)
        ax.legend(loc="best", fontsize="small")


def save_trajectory_png(embeddings: dict[str, np.ndarray], reward: np.ndarray,
                        groups: Sequence[str], unit: str, title: str, path: Path) -> None:
    figure = Figure(figsize=(6 * len(embeddings), 5))
    draw_trajectory(figure, embeddings, reward, groups, unit)
    figure.suptitle(title)
    save_png(figure, path)
