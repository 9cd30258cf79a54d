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
              rerun: bool = False) -> SweepOutcome:
    """Run every trial of ``sweep`` not yet stored (every trial with ``rerun``), one transaction per trial.

    Only this (driver) process writes the store, so a kill at any moment loses at most the
    trials in flight; a re-run picks up the rest.
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
    with bar, make_executor(min(workers, len(todo)), catalog, autoload, problems) as executor:
        for group, results in executor.run([config] for config in todo):
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


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "unknown error"
