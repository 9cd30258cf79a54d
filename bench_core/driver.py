"""Runs an expanded sweep: skips what is stored, runs the rest, stores each result as it lands."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

from bench_core.catalog import Catalog
from bench_core.configuration import trial_score
from bench_core.environment import environment
from bench_core.executors import make_executor
from bench_core.followups import FollowUp, Scores
from bench_core.runner import ProblemCache
from bench_core.store import DONE_STATUSES, Store
from bench_core.suite import Sweep
from bench_core.trial import TrialConfig

#: A sweep with at least this many trials to run prints its trial count and a time estimate first.
LARGE_SWEEP = 200


@dataclass
class SweepOutcome:
    """What a sweep did: trials skipped as already stored, and counts of the new ones by status."""

    total: int
    skipped: int
    counts: Counter = field(default_factory=Counter)
    errors: list[tuple[TrialConfig, str]] = field(default_factory=list)

    def summary(self) -> str:
        ran = ", ".join(f"{self.counts[s]} {s}" for s in ("ok", "diverged", "error"))
        return f"{self.total} trials: {self.skipped} already stored, ran {sum(self.counts.values())} ({ran})"


def run_sweep(sweep: Sweep, catalog: Catalog, store: Store, workers: int, progress: bool | None = None,
              autoload: bool | None = None, problems: ProblemCache | None = None,
              rerun: bool = False, executor: str = "auto", scheduler: str | None = None) -> SweepOutcome:
    """Run every trial of ``sweep`` not yet stored (every trial with ``rerun``), one transaction per trial.

    Trials expanded up front run first; then the sweep's follow-ups (adaptive searches,
    batch-size transfers) are asked for their next trials round after round until none
    has any left. Only this (driver) process writes the store, so a kill at any moment
    loses at most the trials in flight; a re-run picks up the rest. ``executor`` and
    ``scheduler`` choose where trials run (see :func:`bench_core.executors.make_executor`).
    """
    ids = [config.trial_id for config in sweep.trials]
    store.begin_run(sweep.name, sweep.settings, environment(catalog, sweep.device, workers))
    store.add_to_suite(sweep.name, ids)
    ran: dict[str, float] = {}  # score of every trial run by this call, errors included

    def scores(configs: Sequence[TrialConfig]) -> list[float | None]:
        stored = {} if rerun else store.finals(c.trial_id for c in configs if c.trial_id not in ran)
        values: list[float | None] = []
        for config in configs:
            if config.trial_id in ran:
                values.append(ran[config.trial_id])
            elif config.trial_id in stored and stored[config.trial_id][0] in DONE_STATUSES:
                values.append(trial_score(*stored[config.trial_id]))
            else:
                values.append(None)  # not stored, or an error to retry
        return values

    done = set() if rerun else store.done_ids(ids)
    todo = [config for config in sweep.trials if config.trial_id not in done]
    outcome = SweepOutcome(total=len(ids), skipped=len(ids) - len(todo))
    pending, left, named = _next_round(sweep.followups, scores)
    expected = len(todo) + left
    if not todo:
        todo = pending
    if todo:
        if expected >= LARGE_SWEEP:
            print(f"optbench: {estimate(todo, store, min(workers, expected), expected - len(todo))}",
                  file=sys.stderr)
        bar = tqdm(total=expected, unit="trial", desc=sweep.name, disable=None if progress is None else not progress,
                   file=sys.stderr, dynamic_ncols=True)
        with bar, make_executor(min(workers, expected), catalog, autoload, problems, executor, scheduler) as backend:
            while todo:
                store.add_to_suite(sweep.name, [config.trial_id for config in todo])
                for group, results in backend.run([config] for config in todo):
                    for config, result in zip(group, results, strict=True):
                        store.save(config, result)
                        ran[config.trial_id] = trial_score(result.status, result.final)
                        outcome.counts[result.status] += 1
                        if result.status == "error":
                            outcome.errors.append((config, _last_line(result.error)))
                        for failure in catalog.notify_trial_finished(config, result):
                            bar.write(f"optbench: warning: {failure}", file=sys.stderr)
                        bar.set_postfix(ok=outcome.counts["ok"], diverged=outcome.counts["diverged"],
                                        error=outcome.counts["error"], refresh=False)
                        bar.update(1)
                todo, left, named = _next_round(sweep.followups, scores)
                bar.total = bar.n + left
    store.add_to_suite(sweep.name, named)  # follow-up trials found stored join the suite too
    outcome.total = len(ids) + len(named)
    outcome.skipped = outcome.total - sum(outcome.counts.values())
    return outcome


def _next_round(followups: Sequence[FollowUp], scores: Scores) -> tuple[list[TrialConfig], int, list[str]]:
    """Replay every follow-up once: the trials to run next, how many trials they still have to run
    (those included), and the ids of the trials they have named and found scored so far."""
    todo: dict[str, TrialConfig] = {}
    left = 0
    named: list[str] = []
    for followup in followups:
        done, pending = followup.replay(scores)
        todo.update((config.trial_id, config) for config in pending)
        left += max(len(pending), followup.planned - len(done))
        named += [config.trial_id for config in done]
    return list(todo.values()), left, named


def estimate(todo: list[TrialConfig], store: Store, workers: int, later: int = 0) -> str:
    """The trial count and a time estimate from stored trials of the same problem, budget and batch size.

    A rough guide before a long sweep starts (the progress bar's ETA takes over once trials
    finish): trials with no stored look-alike are counted but not timed.
    """
    timings = store.mean_wall_seconds()
    known = [timings[key] for config in todo if (key := _timing_key(config)) in timings]
    text = f"{len(todo) + later} trials to run with {workers} worker(s)"
    if later:
        text += f" ({later} of them named in rounds as results come in)"
    if not known:
        return text + "; no stored trials like these to estimate the time from (the progress bar shows an ETA)"
    seconds = sum(known) * (len(todo) + later) / len(known) / workers
    untimed = f", {len(todo) - len(known)} of them with no stored look-alike" if len(known) < len(todo) else ""
    return text + f"; about {_duration(seconds)} judging by stored trials of the same problems{untimed}"


def _timing_key(config: TrialConfig) -> tuple:
    return config.problem, config.budget.unit, config.budget.amount, config.batch_size


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "unknown error"
