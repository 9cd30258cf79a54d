"""Report section: each optimizer's path over the contours of a 2-D problem.

Paths come from the ``point_x``/``point_y`` metrics a problem's ``evaluate`` reports; the
contours and the starred minimisers from the problem's optional ``surface`` and
``known_minimisers`` capabilities (see :class:`bench_core.Problem`). A problem without them
gets its paths drawn on a blank plane, with a note saying so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bench_core.analysis import leaderboard
from bench_core.hookspecs import hookimpl
from bench_core.report_sections import file_name

if TYPE_CHECKING:
    from bench_core.report import ReportContext

OPTBENCH_CONTRACT = 1
TITLE = "Trajectories"


@hookimpl
def optbench_report_section(report: ReportContext) -> str | None:
    curves = report.curves
    if report.range_test or curves.empty or "point_x" not in curves or "point_y" not in curves:
        return None
    parts = []
    for variant, trials in report.variants():
        points = curves[curves["trial_id"].isin(trials["trial_id"])].dropna(subset=["point_x", "point_y"])
        if points.empty:
            continue
        paths = {}
        for entry in report.analysed(leaderboard, variant):
            first = entry.runs.sort_values("seed").iloc[0]
            path = points[points["trial_id"] == first["trial_id"]].sort_values("step")
            if len(path):
                paths[entry.optimizer] = path[["point_x", "point_y"]].to_numpy(dtype=float)
        if not paths:
            continue
        name, note = plot(report, variant, trials, paths)
        parts += [f"### {TITLE}: {variant}", "", f"![trajectories on {variant}]({name})", ""]
        if note:
            parts += [note, ""]
    if not parts:
        return None
    return "\n".join([f"## {TITLE}", "", "The path of each optimizer's best configuration (first seed) over the "
                      "contours of the function (log scale); ★: known minimisers; ■: the start.", "", *parts])


def _surface(problem, gx: np.ndarray, gy: np.ndarray) -> np.ndarray | None:
    import torch

    capability = getattr(problem, "surface", None)
    if capability is None:
        return None
    with torch.no_grad():
        values = capability(torch.tensor(np.stack([gx, gy], -1), dtype=torch.float64))
    return None if values is None else np.asarray(values, dtype=float).reshape(gx.shape)


def plot(report: ReportContext, variant: str, trials: pd.DataFrame,
         paths: dict[str, np.ndarray]) -> tuple[str, str]:
    problem = report.build_problem(trials)
    minimisers = getattr(problem, "known_minimisers", lambda: None)() if problem is not None else None
    minimisers = np.empty((0, 2)) if minimisers is None else np.asarray(minimisers, dtype=float).reshape(-1, 2)
    starts = np.array([path[0] for path in paths.values()])
    anchors = np.vstack([starts, minimisers])
    low, high = anchors.min(0), anchors.max(0)
    span = np.maximum(high - low, 1.0)
    # show where the paths went, but not a diverged one's trip to infinity
    visited = np.vstack([path[np.isfinite(path).all(1)] for path in paths.values()])
    low = np.maximum(np.minimum(low, visited.min(0)), low - 2 * span) - 0.1 * span
    high = np.minimum(np.maximum(high, visited.max(0)), high + 2 * span) + 0.1 * span
    figure = report.figure(6.5, 5.5)
    ax = figure.subplots()
    gx, gy = np.meshgrid(np.linspace(low[0], high[0], 241), np.linspace(low[1], high[1], 241))
    grid = _surface(problem, gx, gy) if problem is not None else None
    note = ""
    if grid is not None and np.isfinite(grid).any():
        ax.contour(gx, gy, np.log10(grid - np.nanmin(grid) + 1e-3), levels=25, cmap="Greys", linewidths=0.6)
    else:
        first = trials.iloc[0]["problem"]
        note = (f"No contours: problem `{first}` does not provide the `surface` capability"
                + (" (or could not be built here)." if problem is None else "."))
    if len(minimisers):
        ax.scatter(minimisers[:, 0], minimisers[:, 1], marker="*", s=160, color="gold", edgecolor="black",
                   zorder=5, label="minimum")
    for optimizer, path in paths.items():
        style = report.style(optimizer)
        ax.plot(path[:, 0], path[:, 1], label=optimizer, **style.line(lw=1.2, markersize=3))
        ax.scatter(path[-1:, 0], path[-1:, 1], marker=style.marker, s=50, color=style.color, zorder=4)
    ax.scatter(starts[:1, 0], starts[:1, 1], marker="s", s=50, color="black", zorder=4, label="start")
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set(xlabel="x", ylabel="y", title=f"{variant}: path of each best configuration (first seed)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return report.save(figure, file_name(variant, "trajectories")), note
