"""Report section: the environment of the suite's latest run (versions, device, commit, plugins)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tabulate import tabulate

from bench_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from bench_core.report import ReportContext

OPTBENCH_CONTRACT = 1


@hookimpl(trylast=True)
def optbench_report_section(report: ReportContext) -> str | None:
    runs = report.runs
    if runs.empty:
        return None
    env = runs.iloc[-1].get("environment")
    if isinstance(env, str):
        env = json.loads(env)
    env = dict(env or {})
    plugins = env.pop("plugins", {})
    rows = [[key, value] for key, value in env.items()]
    rows.append(["plugins", ", ".join(f"{k} {v}" for k, v in plugins.items())])
    return "\n".join(["## Environment", "", "Of the latest run of this suite.", "",
                      tabulate(rows, ["", "value"], tablefmt="github")])
