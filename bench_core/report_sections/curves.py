"""Report section: learning curves of each optimizer's best configuration, with a band over seeds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench_core.analysis import leaderboard
from bench_core.hookspecs import hookimpl
from bench_core.report_sections import file_name

if TYPE_CHECKING:
    from bench_core.report import ReportContext

OPTBENCH_CONTRACT = 1


@hookimpl
def optbench_report_section(report: ReportContext) -> str | None:
    if report.range_test or report.curves.empty or "train_loss" not in report.curves:
        return None
    parts = ["## Learning curves", "",
             "Training loss of each optimizer's best configuration (mean over seeds; band: lowest to highest seed).",
             ""]
    for variant, trials in report.variants():
        name = plot(report, variant, trials)
        if name:
            parts += [f"### Learning curves: {variant}", "", f"![learning curves on {variant}]({name})", ""]
    return "\n".join(parts) if len(parts) > 4 else None


def plot(report: ReportContext, variant: str, trials) -> str | None:
    curves = report.curves[report.curves["trial_id"].isin(trials["trial_id"])]
    figure = report.figure()
    ax = figure.subplots()
    drawn = False
    for entry in report.analysed(leaderboard, variant):
        points = curves[curves["trial_id"].isin(entry.runs["trial_id"])]
        if points.empty:
            continue
        by_step = points.groupby("step")["train_loss"]
        mean, low, high = by_step.mean(), by_step.min(), by_step.max()
        style = report.style(entry.optimizer)
        ax.plot(mean.index, mean.values, label=entry.optimizer,
                **style.line(markevery=max(1, len(mean) // 8), markersize=4))
        ax.fill_between(mean.index, low.values, high.values, alpha=0.15, color=style.color)
        drawn = True
    if not drawn:
        return None
    values = curves["train_loss"].dropna()
    if len(values) and (values > 0).all():
        ax.set_yscale("log")
    ax.set(xlabel="optimizer step", ylabel="training loss", title=f"{variant}: best configuration per optimizer")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return report.save(figure, file_name(variant, "curves"))
