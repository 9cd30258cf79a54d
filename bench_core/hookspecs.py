"""The optbench hook contract: every hook a plugin may implement, in one place.

A plugin is a module (or any object) with functions marked ``@bench_core.hookimpl``
whose names match the hooks below. optbench finds plugins through the ``optbench``
entry-point group of installed distributions and through ``--plugins PATH`` files; the
built-in optimizers and problems are registered the same way.

Argument names matter, order does not: an implementation may accept any subset of a
hook's arguments. Every hook is called through pluggy, one implementation at a time so that
a failure is attributed to its plugin: ``tryfirst``/``trylast`` order implementations as
pluggy documents (otherwise the last registered answers first) and a ``wrapper=True``
implementation wraps each call. Set ``OPTBENCH_TRACE_HOOKS=1`` to print every hook call with
the plugin that answered it (pluggy's call monitoring).

The contract is versioned. A plugin module declares the version it was written for with
a module-level ``OPTBENCH_CONTRACT = 1``; optbench refuses, with a one-line message naming
the plugin, a plugin written for a contract it does not support (newer: upgrade optbench;
older and retired: upgrade the plugin). A plugin without the declaration is taken to be
written for the current version. The version changes only when a hook or spec changes
incompatibly; additions keep it.

Catalog hooks (``optbench_optimizers``, ``optbench_problems``, ``optbench_schedules``,
``optbench_search_strategies``) are
called once per process when the catalog is built. Each plugin's answer is checked on its
own: a plugin that raises or returns something other than a list of specs is reported by
name and skipped, an invalid spec is reported (plugin, spec, setting) and skipped alone, and
a name already taken by an earlier registered plugin (built-ins register first) is reported
and ignored, whatever order pluggy calls them in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from bench_core.report import ReportContext
    from bench_core.specs import OptimizerSpec, ProblemSpec, ScheduleSpec, SearchSpec
    from bench_core.trial import TrialConfig, TrialResult

PROJECT_NAME = "optbench"
#: The contract version this optbench implements (see the module docstring).
CONTRACT_VERSION = 1
#: Every contract version a plugin may declare and still load.
SUPPORTED_CONTRACTS = frozenset({1})
#: The module attribute a plugin declares its contract version in.
CONTRACT_ATTRIBUTE = "OPTBENCH_CONTRACT"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def optbench_optimizers() -> list[OptimizerSpec]:
    """Return the optimizers this plugin provides.

    :returns: a list of :class:`bench_core.OptimizerSpec`, each with a name unique across
        all plugins. Called once when the catalog is built, in the driver and in every
        worker process.
    """


@hookspec
def optbench_problems() -> list[ProblemSpec]:
    """Return the test problems this plugin provides.

    :returns: a list of :class:`bench_core.ProblemSpec`. Building a problem may be costly
        (loading data), so do the work in ``ProblemSpec.build``, not in this hook, which
        is called once when the catalog is built.
    """


@hookspec
def optbench_schedules() -> list[ScheduleSpec]:
    """Return the learning-rate schedules this plugin provides.

    :returns: a list of :class:`bench_core.ScheduleSpec`, usable with any optimizer.
    """


@hookspec
def optbench_search_strategies() -> list[SearchSpec]:
    """Return the search strategies this plugin provides (``search = "NAME"`` in a suite).

    :returns: a list of :class:`bench_core.SearchSpec`. Grid and random search are built
        in; TPE (with the ``tpe`` extra installed) shows how an adaptive strategy plugs in.
    """


@hookspec
def optbench_report_section(suite: str, trials: pd.DataFrame, curves: pd.DataFrame, folder: Path,
                            report: ReportContext) -> str | None:
    """Add a section to a suite's report (``optbench report`` and the report after ``optbench run``).

    :param suite: the suite's name.
    :param trials: one row per stored trial of the suite, as ``Store.trials`` returns it
        (configuration columns, ``status``, ``final.*`` and ``best.*`` metrics, timings), plus
        ``config_id`` (the configuration: everything but the seed), ``variant_id`` and
        ``variant`` (the problem variant: problem, options, budget, evaluations, device, with a
        readable label). Average over seeds within a ``config_id``; compare optimizers within
        a ``variant``.
    :param curves: the learning curves, one row per evaluation, as ``Store.curves`` returns it.
    :param folder: the report's folder; save figures here and link them by file name.
    :param report: the :class:`bench_core.report.ReportContext` the built-in sections use:
        ``variants()``, ``style(optimizer)`` (the optimizer's colour, marker and line style in
        every figure of the report), ``figure()``/``save()`` (matplotlib's object-oriented
        API), ``metric_range(trials, metric)``, ``build_problem(trials)``, ``range_test``.
    :returns: GitHub-flavoured Markdown starting with a ``## `` heading, or ``None`` to add
        nothing (e.g. when the suite has no data the section is about).

    The built-in sections (:mod:`bench_core.report_sections`) are implementations of this
    hook too, and every section is called through pluggy in its order: ``tryfirst`` sections
    first (a plugin's before the built-in ones), then the built-in sections, then plugin
    sections without a marker (the last registered first), then ``trylast`` ones, the
    built-in environment section last of all. A section that raises is replaced by a
    one-line note naming it and the error; the rest of the report is written. Range-test
    reports call every section too (``report.range_test`` is then true).
    """


@hookspec
def optbench_trial_finished(config: TrialConfig, result: TrialResult) -> None:
    """Observe a finished trial (loggers, trackers, notifications).

    :param config: the trial's configuration.
    :param result: its result, already committed to the store.

    Called in the driver process once per trial, after the result is stored, whatever its
    status. An exception raised here is reported with the plugin's name and does not
    stop the sweep. The return value is ignored.
    """
