"""Runs an expanded sweep: skips what is stored, runs the rest, stores each result as it lands."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field

from tqdm import tqdm

from bench_core.catalog import Catalog
from bench_core.environment import environment
from bench_core.executors import make_executor
from bench_core.runner import ProblemCache
from bench_core.store import Store
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

    Only this (driver) process writes the store, so a kill at any moment loses at most the
    trials in flight; a re-run picks up the rest. ``executor`` and ``scheduler`` choose
    where trials run (see :func:`bench_core.executors.make_executor`).
    """
    ids = [config.trial_id for config in sweep.trials]
    device = sweep.trials[0].device if sweep.trials else "cpu"
    store.begin_run(sweep.name, sweep.settings, environment(catalog, device, workers))
    store.add_to_suite(sweep.name, ids)
    done = set() if rerun else store.done_ids(ids)
    todo = [config for config in sweep.trials if config.trial_id not in done]
    outcome = SweepOutcome(total=len(ids), skipped=len(ids) - len(todo))
    if not todo:
        return outcome
    bar = tqdm(total=len(todo), unit="trial", desc=sweep.name, disable=None if progress is None else not progress,
               file=sys.stderr, dynamic_ncols=True)
    if len(todo) >= LARGE_SWEEP:
        print(f"optbench: {estimate(todo, store, min(workers, len(todo)))}", file=sys.stderr)
    backend = make_executor(min(workers, len(todo)), catalog, autoload, problems, executor, scheduler)
    with bar, backend:
        for group, results in backend.run([config] for config in todo):
            for config, result in zip(group, results, strict=True):
                store.save(config, result)
                outcome.counts[result.status] += 1
                if result.status == "error":
                    outcome.errors.append((config, _last_line(result.error)))
                for failure in catalog.notify_trial_finished(config, result):
                    bar.write(f"optbench: warning: {failure}", file=sys.stderr)
                bar.set_postfix(ok=outcome.counts["ok"], diverged=outcome.counts["diverged"],
                                error=outcome.counts["error"], refresh=False)
                bar.update(1)
    return outcome


def estimate(todo: list[TrialConfig], store: Store, workers: int) -> str:
    """The trial count and a time estimate from stored trials of the same problem, budget and batch size.

    A rough guide before a long sweep starts (the progress bar's ETA takes over once trials
    finish): trials with no stored look-alike are counted but not timed.
    """
    timings = store.mean_wall_seconds()
    known = [timings[key] for config in todo if (key := _timing_key(config)) in timings]
    text = f"{len(todo)} trials to run with {workers} worker(s)"
    if not known:
        return text + "; no stored trials like these to estimate the time from (the progress bar shows an ETA)"
    seconds = sum(known) * len(todo) / len(known) / workers
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
