"""Report section: each optimizer's best configuration per problem variant, with seeds, intervals and failures."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd
from tabulate import tabulate

from bench_core.analysis import Entry, leaderboard, more_than_one_evaluation_per_step
from bench_core.configuration import selection_metric
from bench_core.hookspecs import hookimpl
from bench_core.report import heading, interval_cell, seeds_cell, timing_note, value_cell
from bench_core.stats import distinguishable
from bench_core.trial import Status

if TYPE_CHECKING:
    from bench_core.report import ReportContext

OPTBENCH_CONTRACT = 1
TITLE = "Best configurations"


@hookimpl
def optbench_report_section(report: ReportContext) -> str | None:
    if not report.sweep:
        return None
    # timeouts are named only where there are some, so reports of sweeps without a time limit read as before
    timeouts = (report.trials["status"] == Status.TIMEOUT).any()
    failed = "diverged, errored and timed-out trials" if timeouts else "diverged and errored trials"
    warned = "some errored or timed out" if timeouts else "some errored"
    parts = [f"## {TITLE}", "",
             "Per problem, each optimizer's best configuration: the one with the lowest mean selection metric "
             "over seeds (a configuration with a failed seed loses to one that finished on all). *Seeds*: finished "
             "of run for that configuration (*identical*: the seeds agree to rounding, as on a deterministic "
             "problem). Values are mean ± std over finished seeds; the 95% interval is Student's t over seeds, cut "
             "to the metric's range (accuracies in [0, 1], losses ≥ their known minimum), which keeps its "
             "coverage. *Steps to target*: median over the seeds that reached the problem's target (how many "
             f"did). *Failed*: {failed} over all of the optimizer's trials on the problem (⚠: {warned}). ↑: some "
             "finished seed of the configuration ended above its initial loss.", ""]
    initial = report.initial_losses()
    for variant, trials in report.variants():
        parts += variant_table(report, variant, trials, initial)
    return "\n".join(parts)


def variant_table(report: ReportContext, variant: str, trials: pd.DataFrame, initial: pd.Series) -> list[str]:
    metric = selection_metric(trials)
    tests = [c for c in ("final.test_loss", "final.test_accuracy") if c in trials and trials[c].notna().any()]
    headline = tests[-1] if tests else metric
    bounds = report.metric_range(trials, headline)
    entries = report.analysed(leaderboard, variant)
    evaluations = more_than_one_evaluation_per_step(trials)
    rows = []
    for entry in entries:
        ok = entry.ok
        seconds = ok["seconds_to_target"].dropna()
        rows.append([entry.optimizer + _ended_above_mark(entry, initial), describe(entry, trials),
                     seeds_cell(entry.selected, len(entry.runs)), value_cell(entry.selected),
                     *[value_cell(ok[c]) for c in tests], interval_cell(ok[headline], bounds), _steps_cell(entry),
                     *([evaluations_cell(entry)] if evaluations else []),
                     f"{seconds.median():.3g}" if len(seconds) else "–", failed_cell(entry)])
    notes = "\n\n".join(note for note in (seed_noise_notes(entries, rows), grid_edge_note(entries),
                                           timing_note(trials, "seconds to target")) if note)
    headers = ["optimizer", "configuration", "seeds", f"{metric.removeprefix('final.')} (selection)",
               *[c.removeprefix("final.") for c in tests], f"95% interval of {headline.removeprefix('final.')}",
               "steps to target", *(["gradient evaluations to target"] if evaluations else []), "seconds to target",
               "failed"]
    return [heading(TITLE, variant), "", tabulate(rows, headers, tablefmt="github"), "",
            *([notes, ""] if notes else []), resolution_note(trials), "",
            *([EVALUATIONS_NOTE, ""] if evaluations else [])]


def grid_edge_note(entries: list[Entry]) -> str:
    """Say where an optimizer's best learning rate is the largest or smallest it was tried at: its optimum may lie
    beyond the grid, so its rank is a lower bound of what tuning would give it (empty where none is)."""
    edges: dict[str, list[str]] = {"largest": [], "smallest": []}
    for entry in entries:
        if "hp.lr" not in entry.all_runs or not math.isfinite(entry.score) or pd.isna(entry.setting.get("hp.lr")):
            continue
        tried = sorted(entry.all_runs["hp.lr"].dropna().astype(float).unique())
        chosen = float(entry.setting["hp.lr"])
        if len(tried) < 2:
            continue
        if math.isclose(chosen, tried[-1]):
            edges["largest"].append(f"{entry.optimizer} ({chosen:g})")
        elif math.isclose(chosen, tried[0]):
            edges["smallest"].append(f"{entry.optimizer} ({chosen:g})")
    parts = [f"the {edge} learning rate tried for {_and(names)}" for edge, names in edges.items() if names]
    if not parts:
        return ""
    return (f"**Grid edge:** the best configuration is at {'; at '.join(parts)}. A learning rate beyond the grid "
            "may do better: widen the grid of such an optimizer before taking its rank as final.")


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


#: Under a table with the gradient-evaluations column (only where some optimizer evaluated more than once a step).
EVALUATIONS_NOTE = (
    "*Gradient evaluations to target*: the forward/backward passes the configuration's training made until it "
    "reached the target, median over the seeds that did (one per step for trials stored before they were "
    "counted), and in brackets the median per step over its whole run. An optimizer that evaluates the gradient "
    "more than once a step (L-BFGS's line search, a closure) pays for each: compare speeds on this column, "
    "which the summary and findings use, not on steps.")


def evaluations_cell(entry: Entry) -> str:
    """Median gradient evaluations to target and, in brackets, per step; ``–`` without a finished seed."""
    if math.isnan(entry.evaluations_per_step):
        return "–"
    reached = entry.median_evaluations_to_target
    return f"{reached:g} ({entry.evaluations_per_step:.3g}/step)" if math.isfinite(reached) else \
        f"not reached ({entry.evaluations_per_step:.3g}/step)"


def describe(entry: Entry, trials: pd.DataFrame) -> str:
    """The learning rate, batch size and every setting the sweep varied for this optimizer, as chosen."""
    rows = trials[trials["optimizer"] == entry.optimizer]
    parts = []
    for column, value in entry.setting.items():
        if not (column.startswith(("hp.", "sched.")) or column in ("batch_size", "schedule")) or pd.isna(value):
            continue
        if column not in ("hp.lr", "batch_size") and rows[column].nunique(dropna=False) < 2:
            continue
        name = column.removeprefix("hp.").removeprefix("sched.")
        if column == "batch_size":
            value = int(value)
        parts.append(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}")
    return ", ".join(parts)


def failed_cell(entry: Entry) -> str:
    total = len(entry.all_runs)
    diverged, errored, timed_out = entry.count(Status.DIVERGED), entry.count(Status.ERROR), entry.count(Status.TIMEOUT)
    if not diverged and not errored and not timed_out:
        return f"0/{total}"
    parts = []
    if diverged:
        parts.append(f"diverged {diverged}/{total}")
    if errored:
        parts.append(f"⚠ error {errored}/{total}")
    if timed_out:
        parts.append(f"⚠ timeout {timed_out}/{total}")
    return ", ".join(parts)


def _steps_cell(entry: Entry) -> str:
    if not entry.reached:
        return f"– (0/{len(entry.runs)})"
    return f"{entry.median_reached:g} ({entry.reached}/{len(entry.runs)})"


def _ended_above_mark(entry: Entry, initial: pd.Series) -> str:
    if entry.ok.empty or "final.train_loss" not in entry.ok:
        return ""
    start = entry.ok["trial_id"].map(initial).astype(float)
    above = entry.ok["final.train_loss"].astype(float) > start
    return " ↑" if bool(above.any()) else ""


def seed_noise_notes(entries: list[Entry], rows: list[list[str]]) -> str:
    """Mark rows within seed noise of the leader (≈) and say, only where true, what could not be judged."""
    if len(entries) < 2 or entries[0].selected.empty:
        return ""
    leader = entries[0]
    marked, thin = False, []
    for entry, row in zip(entries[1:], rows[1:], strict=True):
        verdict = distinguishable(leader.selected, entry.selected)
        if verdict is False:
            row[0] += " ≈"
            marked = True
        elif verdict is None and len(entry.selected) == 1:
            thin.append(entry.optimizer)
    notes = []
    if marked:
        notes.append(f"**≈**: not distinguishable from the leader ({leader.optimizer}) across seeds on the selection "
                     "metric (Welch's t-test, p ≥ 0.05; seeds identical on both sides: equal values).")
        if min(len(entry.selected) for entry in entries if len(entry.selected)) <= 3:
            notes.append("With so few seeds the test rarely detects a difference: ≈ means not shown to differ, "
                         "not shown to be equal.")
    if len(leader.selected) == 1:
        notes.append(f"The leader ({leader.optimizer}) finished one seed, so seed noise cannot be judged here.")
    elif thin:
        notes.append("Seed noise cannot be judged for " + ", ".join(thin) + " (one finished seed).")
    return " ".join(notes)


def resolution_note(trials: pd.DataFrame) -> str:
    """At what resolution steps to target were measured on this variant."""
    if trials["steps_to_target"].notna().sum() == 0:
        return "No trial reached the target."
    every = trials["target_every"].dropna() if "target_every" in trials else pd.Series(dtype=float)
    if len(every) and (every == 1).all():
        return "Steps to target are exact: the target was checked after every step."
    if len(every):
        low, high = int(every.min()), int(every.max())
        gap = f"{low}" if low == high else f"{low}–{high}"
        return (f"Steps to target were checked at evaluations, every {gap} steps: each is the first evaluation "
                "at or after the target was met, so it may overstate the true step by up to that much.")
    steps, evals = trials["steps"].max(), trials["evals"].max()
    gap = math.ceil(steps / evals) if evals else steps
    return (f"Steps to target were checked at evaluations (about every {gap:g} steps): each may overstate the "
            "true step by up to that much.")
