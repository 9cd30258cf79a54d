"""The Python API: what the ``optbench`` command does, as functions for scripts and notebooks.

The command line is a thin layer over these functions (it parses flags into the same
arguments), so a sweep run here and the same sweep run with ``optbench run`` store identical
results. User errors raise :class:`~bench_core.errors.UserError` with the one-line message the
command line prints.

    import bench_core

    outcome = bench_core.run("smoke", results="runs.sqlite", report_dir=None)
    trials = bench_core.load_trials("runs.sqlite", suite="smoke")
    curves = bench_core.load_curves("runs.sqlite", suite="smoke")
    bench_core.write_reports("runs.sqlite", out="reports")
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench_core.context import RunContext
from bench_core.driver import SweepOutcome
from bench_core.errors import UserError
from bench_core.options import check_integer
from bench_core.suite import Sweep

#: Where results and reports go unless told otherwise (relative to the working folder).
DEFAULT_RESULTS = "results/optbench.sqlite"
DEFAULT_REPORTS = "reports"
#: The most worker processes or torch threads a run accepts.
MAX_WORKERS = 1024

PathLike = str | os.PathLike[str]


@dataclass
class RunOutcome:
    """What :func:`run` did: the sweep, the counts by status, the results file and the report written."""

    sweep: Sweep
    outcome: SweepOutcome
    results: Path
    workers: int
    report: Path | None = None
    #: One line each about what the expansion left out, or about stored trials of changed code.
    notices: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every trial has a result: none ended in ``error`` or ``timeout``."""
        return not self.outcome.errors and not self.outcome.timeouts

    def summary(self) -> str:
        return self.outcome.summary()


def plan(suite: str | PathLike | Mapping[str, Any] = "default", *, overrides: Mapping[str, Any] | None = None,
         context: RunContext | None = None, count_only: bool = False, source: str | None = None) -> Sweep:
    """Expand a suite (a built-in name, a TOML file, or a dict of settings) into its trials, without running them.

    ``overrides`` win over the suite's settings, as command-line flags do (same keys as a suite file's
    top level, e.g. ``{"lr": [0.01, 0.1], "seeds": [0, 1]}``). ``count_only`` counts the trials
    without building them (:attr:`Sweep.counted`), for sweeps too large to list. ``source`` names where a
    dict of settings came from, in messages (default: ``"settings"``).
    """
    from bench_core.suite import expand

    context = context or RunContext.create()
    settings, source = _settings(suite, source)
    return expand(settings, context.catalog, source, dict(overrides or {}), context.problems, count_only=count_only)


def run(suite: str | PathLike | Mapping[str, Any] = "default", *, overrides: Mapping[str, Any] | None = None,
        results: PathLike = DEFAULT_RESULTS, report_dir: PathLike | None = DEFAULT_REPORTS,
        workers: int | None = None, executor: str = "auto", scheduler: str | None = None,
        device: str | None = None, threads: int | None = None, trial_timeout: float | str | None = "suite",
        data_dir: PathLike | None = None, plugins: Sequence[PathLike] = (), autoload: bool | None = None,
        rerun: bool = False, progress: bool | None = False, context: RunContext | None = None,
        echo: bool = False, source: str | None = None, vectorize: bool | None = None) -> RunOutcome:
    """Run a suite, store every trial in ``results`` and write its report into ``report_dir`` (``None``: none).

    :param suite: a built-in suite name (``"default"``, ``"smoke"``, ...), a TOML file, or a dict of settings.
    :param overrides: settings that win over the suite's, as command-line flags do.
    :param workers: worker processes (default: one per CPU core, 1 on CUDA); 1 runs in-process.
    :param executor: ``auto``, ``inprocess``, ``pool`` or ``dask`` (with ``scheduler``, a Dask address).
    :param device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (default: the suite's).
    :param threads: torch threads per trial (default 1, whatever the executor).
    :param trial_timeout: seconds, ``"auto"`` or ``None`` (see :mod:`bench_core.time_limits`); ``"suite"``:
        the suite's ``trial_timeout``, else ``"auto"``.
    :param data_dir: where data sets lie (default: ``$OPTBENCH_DATA_DIR``, ``./data``, the system's folder).
    :param plugins: local plugin files or folders; ``autoload`` loads installed third-party plugins.
    :param rerun: run every trial again, stored or not.
    :param progress: a progress bar on stderr (``None``: when stderr is a terminal).
    :param context: a :class:`RunContext` to reuse (its catalog, data folder and built problems);
        ``data_dir``, ``plugins`` and ``autoload`` are then ignored.
    :param echo: print the command line's one-line messages on stderr.
    :param source: where a dict of settings came from, in messages (default: ``"settings"``).
    :param vectorize: run trials that differ only in float hyperparameters and seed as vectorised groups
        (:mod:`bench_core.vectorized`); ``False``: each on its own; ``None``: the suite's ``vectorize`` (default on).
    :raises UserError: bad input (unknown names, bad values, an unwritable output), before anything is stored.
    """
    from bench_core.driver import run_sweep
    from bench_core.executors import check_executor, default_workers
    from bench_core.store import Store
    from bench_core.time_limits import parse_time_limit

    check_executor(executor, scheduler)
    context = context or RunContext.create(plugins, autoload, data_dir)
    overrides = dict(overrides or {})
    if device is not None:
        overrides["device"] = device
    if vectorize is not None:
        overrides["vectorize"] = bool(vectorize)
    if trial_timeout != "suite":
        try:
            overrides["trial_timeout"] = parse_time_limit(trial_timeout, "--trial-timeout")
        except ValueError as exc:
            raise UserError(str(exc)) from None
    sweep = plan(suite, overrides=overrides, context=context, source=source)
    say = _echo if echo else _silent
    for notice in sweep.notices:
        say(notice)
    if not sweep.planned:
        raise UserError(f"{sweep.source}: the sweep has no trials")
    workers = workers if workers is not None else default_workers(sweep.device, sweep.planned)
    setting_integer("--workers", workers, 1, MAX_WORKERS)
    if threads is not None:
        setting_integer("--threads", threads, 1, MAX_WORKERS)
    if report_dir is not None:
        check_output_folder(Path(report_dir), "--report-dir")
    if executor == "dask" and scheduler is not None:
        from bench_core.dask_executor import check_scheduler

        check_scheduler(scheduler)  # before the results file is created: a wrong address writes nothing
    with Store(results) as store:
        say(f"suite {sweep.name!r} ({sweep.source}): {trial_count(sweep)} on {sweep.device} with {workers} "
            f"worker(s); results in {results}")
        outcome = run_sweep(sweep, context, store, workers, progress=progress, rerun=rerun, executor=executor,
                            scheduler=scheduler, threads=threads)
        done = RunOutcome(sweep, outcome, Path(results), workers, notices=list(sweep.notices))
        say(outcome.summary())
        for config, message in outcome.errors[:10]:
            say(f"error in trial {config.trial_id} ({config.problem}/{config.optimizer}): {message}")
        for config, message in outcome.timeouts[:10]:
            say(f"timeout of trial {config.trial_id} ({config.problem}/{config.optimizer}): {message}")
        if report_dir is not None:
            from bench_core.report import write_report

            done.report = write_report(store, sweep.name, Path(report_dir), context.catalog)
            say(f"report written to {done.report}")
    return done


def load_trials(results: PathLike = DEFAULT_RESULTS, suite: str | None = None) -> pd.DataFrame:
    """One row per stored trial (of ``suite``, or all): settings, status, final and best metrics.

    The columns are those of :meth:`bench_core.store.Store.trials` (``hp.<name>``, ``final.<metric>``, ...).
    """
    from bench_core.store import Store

    with Store(results, create=False) as store:
        _check_suite(store, suite, results)
        return store.trials(suite)


def load_curves(results: PathLike = DEFAULT_RESULTS, suite: str | None = None) -> pd.DataFrame:
    """One row per evaluation point of every stored trial (of ``suite``, or all): the learning curves."""
    from bench_core.store import Store

    with Store(results, create=False) as store:
        _check_suite(store, suite, results)
        return store.curves(suite)


def write_reports(results: PathLike = DEFAULT_RESULTS, suites: Sequence[str] | None = None,
                  out: PathLike = DEFAULT_REPORTS, context: RunContext | None = None) -> list[Path]:
    """Write ``out/<suite>/README.md`` for each of ``suites`` (default: every stored suite); return their paths."""
    from bench_core.report import write_report
    from bench_core.store import Store

    check_output_folder(Path(out), "--report-dir")
    context = context or RunContext.create()
    with Store(results, create=False) as store:
        names = list(suites or store.suites())
        if not names:
            raise UserError(f"{results}: no suites stored yet (run one with 'optbench run')")
        for name in names:
            _check_suite(store, name, results)
        return [write_report(store, name, Path(out), context.catalog) for name in names]


def compare_files(before: PathLike, after: PathLike, out: PathLike = DEFAULT_REPORTS) -> Path:
    """Write ``out/compare/README.md``: what changed from one results file to another, beyond seed noise."""
    from bench_core.compare import write_comparison

    return write_comparison(_existing(before, "--compare"), _existing(after, "--compare"), Path(out))


def check_output_folder(folder: Path, flag: str) -> None:
    """Refuse, before any work, an output folder that is a file or that we may not create or write.

    A sweep of hours must not end in a traceback because its report has nowhere to go; the
    nearest existing folder above a missing one is what must be writable.
    """
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag} {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {folder}: cannot write to {existing} (permission denied)")


def setting_integer(flag: str, value: int, minimum: int, maximum: int | None = None) -> int:
    """A run setting's integer (``--workers``, ``--steps``, ...), checked like every other number
    (:func:`bench_core.options.check_integer`), a bad one a :class:`UserError`."""
    try:
        return check_integer(flag, value, minimum, maximum)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def trial_count(sweep: Sweep) -> str:
    """``"N trials"``, saying how many follow-up rounds will name, where some will."""
    if not sweep.followups:
        return f"{sweep.upfront} trials"
    return f"{sweep.planned} trials ({sweep.upfront} up front, {sweep.planned - sweep.upfront} named in rounds)"


def _settings(suite: str | PathLike | Mapping[str, Any], source: str | None) -> tuple[dict[str, Any], str]:
    from bench_core.suite_files import read_suite

    if isinstance(suite, Mapping):
        return dict(suite), source or "settings"
    return read_suite(os.fspath(suite))


def _existing(path: PathLike, flag: str = "--results") -> Path:
    if not Path(path).is_file():
        raise UserError(f"{flag} {path}: no such file (run a suite first, or pass --results PATH)")
    return Path(path)


def _check_suite(store: Any, suite: str | None, results: PathLike) -> None:
    if suite is not None and suite not in store.suites():
        raise UserError(f"{results}: no suite {suite!r} (stored: {', '.join(store.suites())})")


def _echo(line: str) -> None:
    print(f"optbench: {line}", file=sys.stderr)


def _silent(line: str) -> None:
    return None
