"""Report section: how many trials finished, diverged, errored or timed out, per problem variant, and why."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tabulate import tabulate

from bench_core.hookspecs import hookimpl
from bench_core.trial import STATUSES, Status

if TYPE_CHECKING:
    from bench_core.report import ReportContext

OPTBENCH_CONTRACT = 1


def divergence_rule() -> str:
    """The rule that makes a trial ``diverged``, in words, with the runner's own constants."""
    from bench_core.runner import DIVERGENCE_FACTOR, ENDED_ABOVE_FACTOR

    return (f"A trial is *diverged* when its training loss becomes non-finite or exceeds {DIVERGENCE_FACTOR:g} × "
            f"max(1, |initial loss|) (it stops there), or when it ends above {ENDED_ABOVE_FACTOR:g} × its initial "
            f"loss (a non-positive initial loss: more than {ENDED_ABOVE_FACTOR:g} × max(1, |initial loss|) above "
            "it); the stored `reason` says which.")


@hookimpl
def optbench_report_section(report: ReportContext) -> str | None:
    trials = report.trials
    if not report.sweep:
        return None
    counts = trials.pivot_table(index="variant", columns="status", values="trial_id", aggfunc="count", fill_value=0)
    shown = [s for s in STATUSES if s != Status.TIMEOUT or (trials["status"] == Status.TIMEOUT).any()]
    counts = counts.reindex(columns=shown, fill_value=0)
    counts.loc["**all**"] = counts.sum()
    text = (f"{divergence_rule()} An *error* is a failure of a plugin or of optbench, not a result about the "
            "optimizer: its traceback is stored (`optbench export`) and a re-run tries it again.")
    if Status.TIMEOUT in shown:
        text += (" A *timeout* was stopped at the trial time limit (`--trial-timeout`) before its budget ran out: "
                 "it has no final metrics, and a re-run tries it again only under a longer limit.")
    lines = ["## Trials", "", text, "",
             tabulate(counts.reset_index().values.tolist(), ["problem", *shown], tablefmt="github"), ""]
    errors = trials[trials["status"] == Status.ERROR]
    if len(errors):
        lines += ["**Errored trials**, by optimizer and problem (last line of the first traceback):", ""]
        for (optimizer, variant), rows in errors.groupby(["optimizer", "variant"]):
            text = str(rows["error"].dropna().iloc[0] if rows["error"].notna().any() else "no traceback stored")
            last = next((line.strip() for line in reversed(text.strip().splitlines()) if line.strip()), text)
            lines.append(f"- ⚠ `{optimizer}` on {variant}: {len(rows)} trial(s): `{last[:200]}`")
        lines.append("")
    timeouts = trials[trials["status"] == Status.TIMEOUT]
    if len(timeouts):
        lines += ["**Timed-out trials**, by optimizer and problem:", ""]
        for (optimizer, variant), rows in timeouts.groupby(["optimizer", "variant"]):
            lines.append(f"- ⚠ `{optimizer}` on {variant}: {len(rows)} trial(s): {rows['reason'].iloc[0]}")
        lines.append("")
    return "\n".join(lines)
