"""Report section: performance profiles of steps to target across every problem variant, and a ranking."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench_core.analysis import speed_label, target_costs
from bench_core.hookspecs import hookimpl
from bench_core.stats import performance_profile, profile_summary

if TYPE_CHECKING:
    from bench_core.report import ReportContext

OPTBENCH_CONTRACT = 1
TITLE = "Summary across problems"


def costs(trials: pd.DataFrame) -> pd.DataFrame:
    """Variants x optimizers: the cost to target at each optimizer's best configuration (``inf``: not reached).

    Steps to target, or gradient evaluations to target where some optimizer evaluates more
    than once a step (:func:`bench_core.analysis.target_costs`).
    """
    return target_costs(trials).unstack("optimizer")


@hookimpl
def optbench_report_section(report: ReportContext) -> str | None:
    trials = report.trials
    if not report.sweep:
        return None
    parts = [f"## {TITLE}", ""]
    variants, optimizers = trials["variant"].nunique(), trials["optimizer"].nunique()
    if variants < 2 or optimizers < 2:
        return "\n".join([*parts, "Performance profiles need at least two problems and two optimizers; this suite "
                          f"has {variants} and {optimizers}."])
    table_costs = report.analysed(costs, None)
    solved_any = int(np.isfinite(table_costs.to_numpy(dtype=float)).any(axis=1).sum())
    summary = profile_summary(table_costs)
    table = [[name, f"{row.wins:.0%}", f"{row.within_2x:.0%}", f"{row.solved:.0%}"]
             for name, row in summary.iterrows()]
    label = speed_label(trials)
    counted = ("" if label == "steps to target" else
               " (steps for optimizers that evaluate the gradient once a step; L-BFGS and other closure optimizers "
               "pay for every evaluation)")
    parts += [f"Cost of an optimizer on a problem: {label}{counted} at its best configuration (median over seeds; a "
              "seed that missed counts as never), at the resolution each problem's table states. The performance "
              "profile (Dolan & Moré 2002) of an optimizer is the fraction of problems it solves within a factor τ "
              f"of the fastest optimizer on each; at τ = 1 it counts wins (ties count for each). {len(table_costs)} "
              f"problems, {solved_any} of which some optimizer solved.", "",
              tabulate(table, ["optimizer", "wins (τ = 1)", "within 2x (τ = 2)", "solved"], tablefmt="github"), ""]
    ratios = table_costs.div(table_costs.min(axis=1), axis=0).to_numpy(dtype=float).ravel()
    finite = ratios[np.isfinite(ratios)]
    if len(finite):
        top = max(2.0, float(finite.max()) * 1.2)
        taus = np.exp(np.linspace(0, math.log(top), 200))
        profile = performance_profile(table_costs, taus)
        figure = report.figure()
        ax = figure.subplots()
        for name in summary.index:
            ax.step(profile.index, profile[name], where="post", label=name,
                    **report.style(name).line(markevery=20, markersize=4))
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.02, 1.02)
        ax.set(xlabel="τ (ratio to the fastest)", ylabel="fraction of problems solved",
               title=f"Performance profiles: {label}")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
        figure.tight_layout()
        parts += [f"![performance profiles]({report.save(figure, 'performance_profile.png')})", ""]
    return "\n".join(parts)
