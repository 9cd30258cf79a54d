"""Report section: steps to target, best learning rate and throughput against batch size; the lr x batch heatmap."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench_core.analysis import batch_scaling, critical_batch_size
from bench_core.configuration import selection_metric, trial_scores
from bench_core.hookspecs import hookimpl
from bench_core.report import heading, number, timing_note
from bench_core.report_sections import file_name

if TYPE_CHECKING:
    from bench_core.report import ReportContext

OPTBENCH_CONTRACT = 1
TITLE = "Batch size"


@hookimpl
def optbench_report_section(report: ReportContext) -> str | None:
    if not report.sweep:
        return None
    parts = []
    for variant, trials in report.variants():
        sizes = sorted(trials["batch_size"].dropna().unique())
        if len(sizes) == 1:
            parts += [heading(TITLE, variant), "", f"One batch size ({int(sizes[0])}) in this sweep: sweep "
                      "`--batch-size` to see how it trades steps against samples.", ""]
        elif len(sizes) > 1:
            parts += variant_part(report, variant, trials)
    if not parts:
        return None
    return "\n".join([f"## {TITLE}", "",
                      "At each batch size, each optimizer's best configuration: *steps to target* is the lowest, "
                      "over the other settings, median over seeds (a seed that missed counts as never); *best lr* is "
                      "selected on the selection metric. Perfect scaling halves the steps when the batch doubles "
                      "(Shallue et al. 2018) up to a critical batch size, here the largest batch size reached with "
                      "at least half of perfect scaling at every doubling; the linear scaling rule doubles the "
                      "learning rate with the batch (Goyal et al. 2017); throughput is training samples per second.",
                      "", *parts])


def variant_part(report: ReportContext, variant: str, trials: pd.DataFrame) -> list[str]:
    data = report.analysed(batch_scaling, variant)
    critical = {optimizer: critical_batch_size(rows) for optimizer, rows in data.groupby("optimizer")}
    table = [[r.optimizer, r.batch_size, f"{r.steps:g}" if math.isfinite(r.steps) else "not reached", number(r.lr),
              number(r.throughput), critical[r.optimizer] if critical[r.optimizer] is not None else "–"]
             for r in data.itertuples()]
    parts = [heading(TITLE, variant), "",
             tabulate(table, ["optimizer", "batch size", "steps to target", "best lr", "samples/s",
                              "critical batch size"], tablefmt="github"), "",
             *([note, ""] if (note := timing_note(trials, "samples/s")) else []),
             f"![batch size on {variant}]({plot(report, variant, data)})", ""]
    if "hp.lr" in trials and trials["hp.lr"].nunique() >= 2:
        parts += [f"![learning rate x batch size on {variant}]({heatmap(report, variant, trials)})", ""]
    return parts


def plot(report: ReportContext, variant: str, data: pd.DataFrame) -> str:
    figure = report.figure(13, 3.8)
    axes = figure.subplots(1, 3)
    for optimizer, rows in data.groupby("optimizer"):
        style = report.style(optimizer)
        rows = rows.sort_values("batch_size")
        reached = rows[np.isfinite(rows["steps"])]
        axes[0].plot(reached["batch_size"], reached["steps"], label=optimizer, **style.line())
        reference = {"color": style.color, "lw": 0.8, "alpha": 0.6, "ls": (0, (1, 3))}
        if len(reached):
            first = reached.iloc[0]
            axes[0].plot(rows["batch_size"], first["steps"] * first["batch_size"] / rows["batch_size"], **reference)
        lrs = rows.dropna(subset=["lr"])
        axes[1].plot(lrs["batch_size"], lrs["lr"], label=optimizer, **style.line())
        if len(lrs):
            first = lrs.iloc[0]
            axes[1].plot(rows["batch_size"], first["lr"] * rows["batch_size"] / first["batch_size"], **reference)
        measured = rows.dropna(subset=["throughput"])
        axes[2].plot(measured["batch_size"], measured["throughput"], label=optimizer, **style.line())
    titles = [("steps to target (dotted: perfect scaling)", "steps"),
              ("best learning rate (dotted: linear scaling)", "learning rate"),
              ("throughput", "samples / second")]
    for ax, (title, ylabel) in zip(axes, titles, strict=True):
        ax.set(xlabel="batch size", ylabel=ylabel, title=title)
        if any(len(line.get_xdata()) for line in ax.get_lines()):
            ax.set(xscale="log", yscale="log")
        else:
            ax.text(0.5, 0.5, "no data: no configuration got there", ha="center", va="center",
                    transform=ax.transAxes)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    figure.suptitle(f"{variant}: batch size")
    figure.tight_layout()
    return report.save(figure, file_name(variant, "batch_size"))


def heatmap(report: ReportContext, variant: str, trials: pd.DataFrame) -> str:
    """Final selection metric over the learning rate x batch size grid, one panel per optimizer."""
    from matplotlib.colors import LogNorm, Normalize

    metric = selection_metric(trials)
    scores = trial_scores(trials)
    scored = trials.assign(_score=scores.where(np.isfinite(scores)))
    optimizers = sorted(trials["optimizer"].unique())
    figure = report.figure(3.4 * len(optimizers), 3.4)
    axes = figure.subplots(1, len(optimizers), squeeze=False)
    finite = scored["_score"].dropna()
    vmin, vmax = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    norm = LogNorm(vmin, vmax) if vmin > 0 and vmax > 10 * vmin else Normalize(vmin, vmax)
    image = None
    for ax, optimizer in zip(axes[0], optimizers, strict=True):
        rows = scored[scored["optimizer"] == optimizer]
        per_config = rows.groupby(["batch_size", "hp.lr", "config_id"])["_score"].median()
        grid = per_config.groupby(level=["batch_size", "hp.lr"]).min().unstack("hp.lr")
        image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis_r", norm=norm, aspect="auto")
        ax.set_xticks(range(grid.shape[1]), [f"{lr:g}" for lr in grid.columns], rotation=45, fontsize="small")
        ax.set_yticks(range(grid.shape[0]), [f"{int(b)}" for b in grid.index], fontsize="small")
        for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
            dark = not math.isnan(value) and norm(value) > 0.5
            ax.text(j, i, "×" if math.isnan(value) else f"{value:.2g}", ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
        ax.set(title=optimizer, xlabel="learning rate")
    axes[0][0].set_ylabel("batch size")
    if image is not None:
        figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label=metric.removeprefix("final."))
    figure.suptitle(f"{variant}: final {metric.removeprefix('final.')} over learning rate × batch size "
                    "(median over seeds; ×: failed)", y=1.04)
    return report.save(figure, file_name(variant, "heatmap"), bbox_inches="tight")
