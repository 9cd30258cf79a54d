"""Report section: the answers the suite exists to give, one sentence each, generated from the stored numbers.

Each finding links to the table or figure that backs it and is hedged by seed noise
(Welch's t-test over seeds). A finding the data cannot support is left out: none when
every configuration ran a single seed, no batch-size finding with one batch size, no
schedule finding without a constant-rate baseline. Naming the built-in ``adam``, ``sgd``
and momentum optimizers is this section's one concession to the catalog: they are the
baselines the questions are about, and a suite without them gets no such sentence.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bench_core.analysis import batch_scaling, critical_batch_size, leaderboard, setting_effects, speed_label
from bench_core.configuration import selection_metric
from bench_core.hookspecs import hookimpl
from bench_core.report import anchor, slug
from bench_core.report_sections import batch_size, summary
from bench_core.report_sections import leaderboard as leaderboard_section
from bench_core.stats import distinguishable, identical

if TYPE_CHECKING:
    from bench_core.report import ReportContext

OPTBENCH_CONTRACT = 1
#: The optimizer the "all-round default" question is about.
DEFAULT_OPTIMIZER = "adam"
#: (with momentum, without): pairs of built-in optimizers that differ in momentum only.
MOMENTUM_PAIRS = (("momentum", "sgd"), ("nesterov", "sgd"))


@hookimpl
def optbench_report_section(report: ReportContext) -> str | None:
    trials = report.trials
    if not report.sweep:
        return None
    seeds = trials.groupby("config_id")["seed"].nunique().max()
    lines = ["## Findings", ""]
    if seeds < 2:
        return "\n".join([*lines, "No findings are stated: every configuration ran one seed, so no difference "
                          "can be told from seed noise. Run two or more seeds (`--seeds 0,1,2`)."])
    found = [*default_optimizer(report), *winners(report), *momentum(report), *batch_sizes(report),
             *schedules(report)]
    if not found:
        return "\n".join([*lines, "No findings: the suite needs two or more optimizers (or a varied setting) "
                          "for a comparison."])
    return "\n".join([*lines, *[f"- {sentence}" for sentence in found]])


def _metric(trials: pd.DataFrame) -> str:
    return selection_metric(trials).removeprefix("final.")


def default_optimizer(report: ReportContext) -> list[str]:
    trials = report.trials
    if DEFAULT_OPTIMIZER not in set(trials["optimizer"]) or trials["optimizer"].nunique() < 2:
        return []
    costs = report.analysed(summary.costs, None)
    costs = costs[np.isfinite(costs.to_numpy(dtype=float)).any(axis=1)]  # problems some optimizer solved
    if costs.empty:
        return []
    mine = costs[DEFAULT_OPTIMIZER]
    fastest = costs.min(axis=1)
    solved = int(np.isfinite(mine).sum())
    within = [v for v in costs.index if math.isfinite(mine[v]) and mine[v] <= 2 * fastest[v]]
    slow = [v for v in costs.index if v not in within]
    one = trials["variant"].nunique() == 1
    link = anchor(leaderboard_section.TITLE, costs.index[0]) if one else "#" + slug(summary.TITLE)
    text = (f"**{DEFAULT_OPTIMIZER} as the all-round default:** it reached the target on {solved} of {len(costs)} "
            f"problem(s) that some optimizer solved, and was within 2x of the fastest optimizer's "
            f"{speed_label(trials)} on {len(within)} of them ([table]({link})).")
    if slow:
        others = "; ".join(f"{v} (fastest: {costs.loc[v].idxmin()})" for v in slow)
        text += f" It was slower than 2x the fastest, or did not get there, on {others}."
    return [text]


def winners(report: ReportContext) -> list[str]:
    out = []
    for variant, trials in report.variants():
        ranked = report.analysed(leaderboard, variant)
        entries = [e for e in ranked if len(e.selected) >= 2]
        if len(entries) < 2 or entries[0].optimizer != ranked[0].optimizer:
            continue  # the leader has too few finished seeds to judge
        leader, metric = entries[0], _metric(trials)
        exact = all(identical(e.selected) for e in entries)  # a deterministic problem: no seed noise at all
        tied = [e.optimizer for e in entries[1:] if distinguishable(leader.selected, e.selected) is False]
        link = anchor(leaderboard_section.TITLE, variant)
        if tied:
            text = (f"**{variant}:** {leader.optimizer} has the lowest {metric} ({leader.selected.mean():.4g}), "
                    + ("equal (the seeds agree exactly) for " if exact else "within seed noise of ") + ", ".join(tied))
        else:
            runner = entries[1]
            text = (f"**{variant}:** {leader.optimizer} has the lowest {metric} ({leader.selected.mean():.4g} "
                    f"against {runner.selected.mean():.4g} for {runner.optimizer}, the next best), "
                    + ("exactly (the seeds agree)" if exact else "beyond seed noise"))
        solved = sum(e.reached == len(e.runs) for e in ranked)
        if trials["steps_to_target"].notna().any():
            text += f"; {solved} of {len(ranked)} optimizers reached the target on every seed"
        out.append(f"{text} ([table]({link})).")
    return out


def _compare(a: pd.Series, b: pd.Series) -> str | None:
    """``better``/``worse``/``same`` for a against b (lower is better), or None when seed noise cannot be judged."""
    different = distinguishable(a, b)
    if different is None:
        return None
    if not different:
        return "same"
    return "better" if a.mean() < b.mean() else "worse"


def momentum(report: ReportContext) -> list[str]:
    out = []
    names = set(report.trials["optimizer"])
    for with_momentum, without in MOMENTUM_PAIRS:
        if not {with_momentum, without} <= names:
            continue
        verdicts: dict[str, list[str]] = {"better": [], "same": [], "worse": []}
        for variant, _ in report.variants():
            entries = {e.optimizer: e for e in report.analysed(leaderboard, variant)}
            if with_momentum in entries and without in entries:
                verdict = _compare(entries[with_momentum].selected, entries[without].selected)
                if verdict:
                    verdicts[verdict].append(f"[{variant}]({anchor(leaderboard_section.TITLE, variant)})")
        if any(verdicts.values()):
            out.append(f"**Momentum ({with_momentum} against {without}, each at its best learning rate):** "
                       + "; ".join(f"{label} on {', '.join(v)}" for label, v in
                                   (("better beyond seed noise", verdicts["better"]),
                                    ("within seed noise", verdicts["same"]),
                                    ("worse beyond seed noise", verdicts["worse"])) if v) + ".")
    for variant, trials in report.variants():
        if "hp.momentum" not in trials:
            continue
        effects = report.analysed(setting_effects, variant, "hp.momentum")
        for optimizer, rows in effects.groupby("optimizer"):
            zero, rest = rows[rows["value"] == 0], rows[rows["value"] > 0]
            if zero.empty or rest.empty or not math.isfinite(rest["score"].min()):
                continue
            best = rest.loc[rest["score"].idxmin()]
            verdict = _compare(best["selected"], zero.iloc[0]["selected"])
            if verdict:
                words = {"better": "helps beyond seed noise", "same": "makes no difference beyond seed noise",
                         "worse": "hurts beyond seed noise"}[verdict]
                out.append(f"**Momentum for {optimizer} on {variant}:** momentum {best['value']:g} {words} against "
                           f"none, each at its best learning rate "
                           f"([table]({anchor('momentum', variant)})).")
    return out


def batch_sizes(report: ReportContext) -> list[str]:
    out = []
    for variant, trials in report.variants():
        sizes = sorted(trials["batch_size"].dropna().unique())
        if len(sizes) < 2:
            continue
        data = report.analysed(batch_scaling, variant)
        small, large = int(sizes[0]), int(sizes[-1])
        parts, stalls = [], {}
        for optimizer, rows in data.groupby("optimizer"):
            steps = rows.set_index("batch_size")["steps"]
            if math.isfinite(steps.get(small, math.inf)) and math.isfinite(steps.get(large, math.inf)):
                parts.append(f"{optimizer} {steps[small] / steps[large]:.2g}x")
            size = critical_batch_size(rows)
            later = [b for b in steps.index if b > (size or math.inf) and math.isfinite(steps[b])]
            if size is not None and later:
                stalls.setdefault((size, min(later)), []).append(optimizer)
        if not parts:
            continue
        text = (f"**Batch size on {variant}:** from batch {small} to {large} (perfect scaling: {large / small:g}x "
                f"fewer steps) steps to target fell by {', '.join(parts)}")
        if stalls:
            text += "; more batch stopped paying (less than half of perfect scaling) " + "; ".join(
                f"between batch {size} and {after} for {', '.join(names)}"
                for (size, after), names in sorted(stalls.items()))
        lrs = data.dropna(subset=["lr"]).groupby("optimizer")
        grew = sum(1 for _, rows in lrs if rows.sort_values("batch_size")["lr"].iloc[-1]
                   > rows.sort_values("batch_size")["lr"].iloc[0])
        text += (f". The best learning rate grew with the batch for {grew} of {lrs.ngroups} optimizer(s) "
                 f"([table]({anchor(batch_size.TITLE, variant)})).")
        out.append(text)
    return out


def schedules(report: ReportContext) -> list[str]:
    out = []
    words = {"better": "better", "same": "within seed noise", "worse": "worse"}
    for variant, trials in report.variants():
        if trials.groupby("optimizer")["schedule"].nunique().max() < 2:
            continue
        verdicts: dict[str, list[str]] = {}
        for optimizer, rows in report.analysed(setting_effects, variant, "schedule").groupby("optimizer"):
            constant, others = rows[rows["value"] == "constant"], rows[rows["value"] != "constant"]
            if constant.empty or others.empty or not math.isfinite(others["score"].min()):
                continue
            best = others.loc[others["score"].idxmin()]
            verdict = _compare(best["selected"], constant.iloc[0]["selected"])
            if verdict:
                verdicts.setdefault(words[verdict], []).append(f"{optimizer} ({best['value']})")
        if verdicts:
            out.append(f"**Schedules on {variant}** (the best schedule against a constant learning rate, each at its "
                       "best learning rate): " + "; ".join(f"{label} for {', '.join(names)}" for label, names in
                                                          sorted(verdicts.items()))
                       + f" ([table]({anchor('schedule', variant)})).")
    return out
