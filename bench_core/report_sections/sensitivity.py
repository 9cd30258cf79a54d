"""Report section: how the final loss and reaching the target depend on the learning rate."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd
from tabulate import tabulate

from bench_core.configuration import tuned_cost
from bench_core.hookspecs import hookimpl
from bench_core.report_sections import file_name
from bench_core.trial import Status

if TYPE_CHECKING:
    from bench_core.report import ReportContext

OPTBENCH_CONTRACT = 1
TITLE = "Learning-rate sensitivity"


@hookimpl
def optbench_report_section(report: ReportContext) -> str | None:
    if not report.sweep or "hp.lr" not in report.trials:
        return None
    parts = [f"## {TITLE}", "",
             "Final training loss against the learning rate (each point: the best over the other settings of the "
             "median over seeds; ×: every trial at that learning rate failed), and the learning rates at which each "
             "optimizer reaches the target (at its best other settings, median over seeds): the wider the range, "
             "the less tuning it needs.", ""]
    for variant, trials in report.variants():
        parts += [f"### {TITLE}: {variant}", ""]
        if trials["hp.lr"].nunique() < 2:
            parts += ["One learning rate in this sweep: sweep `--lr` over a grid to see how sensitive each "
                      "optimizer is to it.", ""]
            continue
        parts += [f"![final loss against learning rate on {variant}]({plot_loss(report, variant, trials)})", ""]
        table, ranges = tuneability(trials)
        parts += [tabulate(table, ["optimizer", "learning rates tried", "reaching the target", "diverged at",
                                   "errored or timed out at"], tablefmt="github"), "",
                  f"![tuneability on {variant}]({plot_ranges(report, variant, ranges)})", ""]
    return "\n".join(parts)


def _lrs(values) -> str:
    return ", ".join(f"{lr:g}" for lr in sorted(values)) or "–"


def tuneability(trials: pd.DataFrame) -> tuple[list[list[str]], dict[str, tuple[list[float], list[float]]]]:
    table, ranges = [], {}
    for optimizer, rows in trials.groupby("optimizer"):
        lrs = sorted(rows["hp.lr"].dropna().unique())
        reached = [lr for lr, group in rows.groupby("hp.lr") if math.isfinite(tuned_cost(group).iloc[0])]
        ranges[optimizer] = (lrs, reached)
        if len(reached) == 1:
            good = f"{reached[0]:g} only (1/{len(lrs)})"
        elif reached:
            decades = math.log10(max(reached) / min(reached))
            good = f"{min(reached):g} – {max(reached):g} ({len(reached)}/{len(lrs)}; {decades:.1f} decades)"
        else:
            good = f"none (0/{len(lrs)})"
        diverged = rows.loc[rows["status"] == Status.DIVERGED, "hp.lr"].unique()
        errored = rows.loc[rows["status"].isin([Status.ERROR, Status.TIMEOUT]), "hp.lr"].unique()
        table.append([optimizer, _lrs(lrs), good, _lrs(diverged), ("⚠ " + _lrs(errored)) if len(errored) else "–",
                      len(reached)])
    table.sort(key=lambda row: (-row[-1], row[0]))
    return [row[:-1] for row in table], ranges


def plot_loss(report: ReportContext, variant: str, trials: pd.DataFrame) -> str:
    """Final training loss against lr: colour and marker per optimizer, line style per batch size."""
    figure = report.figure()
    ax = figure.subplots()
    ok = trials[trials["status"] == Status.OK]
    finite = ok["final.train_loss"].dropna() if "final.train_loss" in ok else pd.Series(dtype=float)
    ceiling = finite.max() * 2 if len(finite) else 1.0
    sizes = sorted(trials["batch_size"].dropna().unique())
    line_styles = dict(zip(sizes, ["-", "--", ":", "-."] * (len(sizes) // 4 + 1), strict=False))
    for (optimizer, batch_size), rows in trials.groupby(["optimizer", trials["batch_size"].fillna(0)]):
        style = report.style(optimizer)
        finished = rows[rows["status"] == Status.OK]
        per_config = finished.groupby(["hp.lr", "config_id"])["final.train_loss"].median()
        curve = per_config.groupby(level=0).min()
        label = optimizer if len(sizes) < 2 else f"{optimizer}, batch {int(batch_size)}"
        ax.plot(curve.index, curve.values, label=label, **style.line(linestyle=line_styles.get(batch_size, "-")))
        failed = [lr for lr in rows["hp.lr"].unique() if lr not in curve.index]
        if failed:
            ax.scatter(failed, [ceiling] * len(failed), marker="x", color=style.color)
    ax.set_xscale("log")
    if len(finite) and (finite > 0).all():
        ax.set_yscale("log")
    ax.set(xlabel="learning rate", ylabel="final training loss (median over seeds)",
           title=f"{variant}: learning-rate sensitivity (×: every trial failed)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return report.save(figure, file_name(variant, "lr"))


def plot_ranges(report: ReportContext, variant: str, ranges: dict[str, tuple[list[float], list[float]]]) -> str:
    """One row per optimizer: the learning rates tried (open) and those reaching the target (filled, joined)."""
    figure = report.figure(7, 0.6 * len(ranges) + 1.6)
    ax = figure.subplots()
    for row, (optimizer, (tried, reached)) in enumerate(sorted(ranges.items())):
        style = report.style(optimizer)
        ax.scatter(tried, [row] * len(tried), facecolors="none", edgecolors="grey", marker=style.marker, zorder=2)
        if reached:
            ax.plot([min(reached), max(reached)], [row, row], lw=6, alpha=0.35, color=style.color, zorder=1)
            ax.scatter(reached, [row] * len(reached), color=style.color, marker=style.marker, zorder=3)
    ax.set_yticks(range(len(ranges)), sorted(ranges))
    ax.set_xscale("log")
    ax.set(xlabel="learning rate", title=f"{variant}: learning rates reaching the target (filled)")
    ax.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    return report.save(figure, file_name(variant, "tuneability"))
