"""Report section: what momentum, schedules and every other varied setting buy, each at its own best learning rate."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tabulate import tabulate

from bench_core.analysis import setting_effects, varied_settings
from bench_core.configuration import selection_metric
from bench_core.hookspecs import hookimpl
from bench_core.report import heading, value_cell
from bench_core.stats import distinguishable

if TYPE_CHECKING:
    from bench_core.report import ReportContext

OPTBENCH_CONTRACT = 1
TITLE = "Momentum, schedules and other settings"


def setting_name(column: str) -> str:
    """A setting's column as readers know it: ``hp.momentum`` -> ``momentum``."""
    return column.removeprefix("hp.").removeprefix("sched.")


def verdict(best, other) -> str:
    """How a value compares with the optimizer's best value of the setting, judged against seed noise."""
    different = distinguishable(best, other)
    if different is None:
        return "seed noise not judged"
    return "worse beyond seed noise" if different else "within seed noise"


@hookimpl
def optbench_report_section(report: ReportContext) -> str | None:
    if not report.sweep:
        return None
    parts = []
    for variant, trials in report.variants():
        metric = selection_metric(trials).removeprefix("final.")
        for column in varied_settings(trials):
            effects = report.analysed(setting_effects, variant, column)
            table = []
            for optimizer, rows in effects.groupby("optimizer", sort=True):
                best = rows.loc[rows["score"].idxmin()] if math.isfinite(rows["score"].min()) else None
                for row in rows.itertuples():
                    if best is None:
                        against = "–"
                    elif row.config_id == best["config_id"]:
                        against = "best"
                    else:
                        against = verdict(best["selected"], row.selected)
                    value = f"{row.value:g}" if isinstance(row.value, float) else str(row.value)
                    table.append([optimizer, value, value_cell(row.selected),
                                  f"{row.steps:g}" if math.isfinite(row.steps) else "not reached",
                                  f"{row.lr:g}" if isinstance(row.lr, float) and math.isfinite(row.lr) else "–",
                                  against])
            name = setting_name(column)
            parts += [heading(setting_name(column), variant), "",
                      tabulate(table, ["optimizer", name, metric, "steps to target", "at lr", "against the best value"],
                               tablefmt="github"), ""]
    if not parts:
        return None
    return "\n".join([f"## {TITLE}", "",
                      "For each value of a setting the sweep varied: the optimizer's best configuration with that "
                      "value (over every other setting, the learning rate included, so each value is judged at its "
                      "own best learning rate), its selection metric (mean ± std over finished seeds), its steps to "
                      "target, and whether it is worse than the best value beyond seed noise (Welch's t-test over "
                      "seeds, p < 0.05).", "", *parts])
