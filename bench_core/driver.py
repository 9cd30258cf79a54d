"""Runs an expanded sweep: skips what is stored, runs the rest, stores each result as it lands.

"Stored" means stored by the same code: a trial's id hashes its configuration only, so each
result is stored with the fingerprint of the code behind its optimizer and problem
(:mod:`bench_core.fingerprint`), and a stored trial whose code has changed since is run
again, its row replaced, after one line per changed name says so. Serving it would pass
old numbers off as the current code's; a refusal would block every sweep that shares the
trial. Trials stored before fingerprints existed (``{}``) are served as before, with a note.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

from bench_core.catalog import Catalog
from bench_core.configuration import trial_score
from bench_core.context import RunContext
from bench_core.environment import environment
from bench_core.executors import TRIAL_THREADS, choose_executor, make_executor
from bench_core.fingerprint import Fingerprints, describe_change
from bench_core.followups import FollowUp, Scores
from bench_core.runner import ProblemCache, trial_limit
from bench_core.specs import Problem
from bench_core.store import Store
from bench_core.suite import Sweep
from bench_core.time_limits import AUTO, TimeLimit
from bench_core.trial import DONE_STATUSES, STATUSES, Status, TrialConfig, TrialResult
from bench_core.vectorized import form_groups

#: A sweep with at least this many trials to run prints its trial count and a time estimate first.
LARGE_SWEEP = 200


@dataclass
class SweepOutcome:
    """What a sweep did: trials skipped as already stored, and counts of the new ones by status."""

    total: int
    skipped: int
    counts: Counter = field(default_factory=Counter)
    errors: list[tuple[TrialConfig, str]] = field(default_factory=list)
    #: Trials stopped at their time limit, with the reason stored for each.
    timeouts: list[tuple[TrialConfig, str]] = field(default_factory=list)

    def summary(self) -> str:
        shown = STATUSES if self.counts[Status.TIMEOUT] else (Status.OK, Status.DIVERGED, Status.ERROR)
        ran = ", ".join(f"{self.counts[s]} {s}" for s in shown)
        return f"{self.total} trials: {self.skipped} already stored, ran {sum(self.counts.values())} ({ran})"


def run_sweep(sweep: Sweep, context: RunContext | Catalog, store: Store, workers: int, progress: bool | None = None,
              rerun: bool = False, executor: str = "auto", scheduler: str | None = None,
              threads: int | None = None, vectorize: bool | None = None) -> SweepOutcome:
    """Run every trial of ``sweep`` not yet stored (every trial with ``rerun``), one transaction per trial.

    Trials expanded up front run first; then the sweep's follow-ups (adaptive searches,
    batch-size transfers) are asked for their next trials round after round until none
    has any left. Only this (driver) process writes the store, so a kill at any moment
    loses at most the trials in flight; a re-run picks up the rest. ``executor`` and
    ``scheduler`` choose where trials run (see :func:`bench_core.executors.make_executor`), ``threads`` the
    torch threads of each trial (default :data:`bench_core.executors.TRIAL_THREADS`, whatever the executor).
    ``context``: the run's (:class:`~bench_core.context.RunContext`); a bare catalog means the default one.
    ``vectorize`` (default: the sweep's setting): run trials that differ only in float hyperparameters and seed
    as groups (:func:`bench_core.vectorized.form_groups`); ``False``: every trial on its own.
    """
    context = context if isinstance(context, RunContext) else RunContext(context)
    catalog = context.catalog
    ids = [config.trial_id for config in sweep.trials]
    threads = threads or TRIAL_THREADS
    vectorize = sweep.vectorize if vectorize is None else vectorize
    store.begin_run(sweep.name, sweep.settings, environment(catalog, sweep.device, workers, threads))
    store.add_to_suite(sweep.name, ids)
    ran: dict[str, float] = {}  # score of every trial run by this call, errors included
    fingerprints = Fingerprints(catalog)
    changes = CodeChanges(fingerprints)

    def served(configs: Sequence[TrialConfig], status: Mapping[str, str]) -> list[TrialConfig]:
        """The stored trials among ``configs`` not to run again: results, and timeouts at a limit not below today's."""
        timeouts = [c for c in configs if status.get(c.trial_id) == Status.TIMEOUT]
        kept = timeouts_to_keep(timeouts, store, limits) if timeouts else set()
        return [c for c in configs if status.get(c.trial_id) in DONE_STATUSES or c.trial_id in kept]

    def scores(configs: Sequence[TrialConfig]) -> list[float | None]:
        stored = {} if rerun else store.finals(c.trial_id for c in configs if c.trial_id not in ran)
        done = served(configs, {trial_id: value[0] for trial_id, value in stored.items()})
        done_ids = {c.trial_id for c in done}
        stale = changes.stale(done, store.fingerprints(c.trial_id for c in done)) if done else set()
        values: list[float | None] = []
        for config in configs:
            if config.trial_id in ran:
                values.append(ran[config.trial_id])
            elif config.trial_id in done_ids and config.trial_id not in stale:
                values.append(trial_score(*stored[config.trial_id]))
            else:
                values.append(None)  # not stored, an error to retry, or a result of other code: to run
        return values

    def save(config: TrialConfig, result: TrialResult) -> None:
        result.fingerprint = fingerprints.of(config)
        store.save(config, result)
        ran[config.trial_id] = trial_score(result.status, result.final)
        outcome.counts[result.status] += 1
        if result.status == Status.ERROR:
            outcome.errors.append((config, _last_line(result.error)))
        elif result.status == Status.TIMEOUT:
            outcome.timeouts.append((config, result.reason or "stopped at its time limit"))

    limits = TrialLimits(context.problems, sweep.time_limit)

    def problem_of(config: TrialConfig) -> Problem:
        return context.problems.get(config.problem, config.problem_options, config.device)

    done = set() if rerun else store.done_ids(ids)
    kept_timeouts = set() if rerun else timeouts_to_keep(sweep.trials, store, limits)
    done |= kept_timeouts
    done -= changes.stale([config for config in sweep.trials if config.trial_id in done], store.fingerprints(done))
    todo = [config for config in sweep.trials if config.trial_id not in done]
    outcome = SweepOutcome(total=len(ids), skipped=len(ids) - len(todo))
    outcome.timeouts += [(config, "stored as timeout under a limit at least as long as this one; raise "
                                  "--trial-timeout to run it again") for config in sweep.trials
                         if config.trial_id in kept_timeouts and config.trial_id in done]
    pending, left, named = _next_round(sweep.followups, scores)
    for line in changes.notices():
        print(f"optbench: {line}", file=sys.stderr)
    expected = len(todo) + left
    if not todo:
        todo = pending
    if todo:
        if expected >= LARGE_SWEEP:
            print(f"optbench: {estimate(todo, store, min(workers, expected), expected - len(todo))}",
                  file=sys.stderr)
        bar = tqdm(total=expected, unit="trial", desc=sweep.name, disable=None if progress is None else not progress,
                   file=sys.stderr, dynamic_ncols=True)
        workers = min(workers, expected)
        units = form_groups(todo, catalog, problem_of, workers, vectorize)
        kind = choose_executor(executor, workers, units)
        bar.write(f"optbench: {_plan_line(units, kind, workers)}", file=sys.stderr)
        with bar, make_executor(workers, context, kind, scheduler, threads, sweep.time_limit) as backend:
            while todo:
                store.add_to_suite(sweep.name, [config.trial_id for config in todo])
                unsaved: list[tuple[TrialConfig, TrialResult]] = []
                try:
                    for group, results in backend.run(units):
                        unsaved += zip(group, results, strict=True)
                        while unsaved:
                            config, result = unsaved[0]
                            save(config, result)
                            unsaved.pop(0)
                            for failure in catalog.notify_trial_finished(config, result):
                                bar.write(f"optbench: warning: {failure}", file=sys.stderr)
                            bar.set_postfix({s: outcome.counts[s] for s in STATUSES
                                             if s != Status.TIMEOUT or outcome.counts[s]}, refresh=False)
                            bar.update(1)
                except KeyboardInterrupt:
                    # Ctrl-C: stop the workers now rather than wait for their trials, and store every result that
                    # reached this process (one being stored when the Ctrl-C came is stored again: a row is
                    # written in one transaction, so it is either complete or absent).
                    for group, results in backend.interrupt():
                        unsaved += zip(group, results, strict=True)
                    for config, result in unsaved:
                        save(config, result)
                    raise
                todo, left, named = _next_round(sweep.followups, scores)
                units = form_groups(todo, catalog, problem_of, workers, vectorize)
                for line in changes.notices():  # follow-up trials named only now
                    bar.write(f"optbench: {line}", file=sys.stderr)
                bar.total = bar.n + left
    store.add_to_suite(sweep.name, named)  # follow-up trials found stored join the suite too
    outcome.total = len(ids) + len(named)
    outcome.skipped = outcome.total - sum(outcome.counts.values())
    return outcome


class CodeChanges:
    """The stored trials of a sweep that other code produced, gathered as the sweep meets them.

    Up-front trials are checked before the sweep starts, follow-up trials (adaptive rounds,
    batch-size transfers) whenever their scores are read, so a stale score never steers a
    follow-up. :meth:`notices` announces each changed name once.
    """

    def __init__(self, fingerprints: Fingerprints) -> None:
        self.fingerprints = fingerprints
        #: (kind, name) -> {trial id: the fingerprint it was stored with}
        self.changed: dict[tuple[str, str], dict[str, str]] = {}
        #: ids of stored trials without a fingerprint (stored before fingerprints existed): served
        self.unknown: set[str] = set()
        self._announced: set[tuple[str, str]] = set()

    def stale(self, configs: Sequence[TrialConfig], stored: Mapping[str, dict[str, str]]) -> set[str]:
        """The ids among ``configs`` (stored, with fingerprints ``stored``) that code other than today's produced."""
        out = set()
        for config in configs:
            fingerprint = stored.get(config.trial_id)
            if fingerprint is None:
                continue
            if not fingerprint:
                self.unknown.add(config.trial_id)
            for kind in self.fingerprints.changed(config, fingerprint):
                self.changed.setdefault((kind, getattr(config, kind)), {})[config.trial_id] = fingerprint[kind]
                out.add(config.trial_id)
        return out

    def notices(self) -> list[str]:
        """One line per changed name not announced yet, and one about trials that predate fingerprints."""
        lines = []
        for (kind, name), stored in sorted(self.changed.items()):
            if (kind, name) in self._announced:
                continue
            self._announced.add((kind, name))
            versions = Counter(stored.values())
            detail = describe_change(versions.most_common(1)[0][0], self.fingerprints.get(kind, name))
            if len(versions) > 1:
                detail += f"; and {len(versions) - 1} other stored version(s)"
            lines.append(f"{kind} {name!r} changed since {_trials(len(stored), 'stored trial')} "
                         f"{'was' if len(stored) == 1 else 'were'} run ({detail}); re-running "
                         f"{'it' if len(stored) == 1 else 'them'}")
        if self.unknown and ("", "unknown") not in self._announced:
            self._announced.add(("", "unknown"))
            lines.append(f"{_trials(len(self.unknown), 'stored trial')} predate code fingerprints: served as "
                         "stored, whatever code ran them (--rerun runs every trial again)")
        return lines


class TrialLimits:
    """Each trial's time limit in seconds under a sweep's setting (``auto`` derives it from the budget)."""

    def __init__(self, problems: ProblemCache, time_limit: TimeLimit) -> None:
        self.problems = problems
        self.time_limit = time_limit

    def of(self, config: TrialConfig) -> float | None:
        problem = self.problems.get(config.problem, config.problem_options, config.device) \
            if self.time_limit == AUTO else None
        return trial_limit(config, problem, self.time_limit)


def timeouts_to_keep(configs: Sequence[TrialConfig], store: Store, limits: TrialLimits) -> set[str]:
    """Ids of the stored ``timeout`` trials among ``configs`` that a re-run serves as stored.

    A trial stopped at a limit at least as long as today's would only be stopped again; one stopped
    at a shorter limit (or run now without a limit) runs again, so raising ``--trial-timeout``
    retries exactly the trials it may now let finish.
    """
    stored = store.timeouts(config.trial_id for config in configs)
    kept = set()
    for config in configs:
        if config.trial_id not in stored or stored[config.trial_id] is None:
            continue
        try:
            now = limits.of(config)
        except Exception:  # a problem that no longer builds: run the trial, which records why
            continue
        if now is not None and stored[config.trial_id] >= now:
            kept.add(config.trial_id)
    return kept


def _plan_line(units: Sequence[Sequence[TrialConfig]], kind: str, workers: int) -> str:
    """One line on how the trials will run: how many vectorised groups, and where."""
    grouped = [unit for unit in units if len(unit) > 1]
    trials = sum(len(unit) for unit in units)
    how = (f"{_trials(sum(len(unit) for unit in grouped), 'trial')} in {len(grouped)} vectorised group(s), "
           f"{_trials(trials - sum(len(unit) for unit in grouped), 'trial')} alone" if grouped
           else f"{_trials(trials, 'trial')} one by one")
    where = {"inprocess": "in this process", "pool": f"on {workers} worker processes",
             "dask": "on a Dask cluster"}[kind]
    return f"running {how}, {where}"


def _trials(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


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
