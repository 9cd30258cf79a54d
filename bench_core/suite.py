"""Suite expansion: settings (from a suite file, a dict or command-line flags) turned into trials.

A suite names problems and optimizers and gives sweep axes. An axis value is a scalar or
a list (a grid). Axes may be set at the top level, per problem (``[problem.NAME]``), per
optimizer (``[optimizer.NAME]``) and on the command line, each overriding the one
before. Anything not set falls back to the plugin's defaults: the optimizer's learning
rate and hyperparameters, the problem's batch size and budget. See
``bench_core/suites/default.toml`` for a commented example.

This module only expands: reading suite files is :mod:`bench_core.suite_files`, value and
grid syntax is :mod:`bench_core.values`, and search strategies and the follow-ups they need
are set up by :mod:`bench_core.search_setup`. The names those modules own are re-exported
here, so ``from bench_core.suite import read_suite`` and the like keep working.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from bench_core.catalog import Catalog
from bench_core.errors import UserError
from bench_core.followups import AdaptiveSearch, FollowUp, proposals
from bench_core.runner import ProblemCache
from bench_core.search_setup import (
    MakeTrials,
    Pick,
    adaptive_searches,
    batch_size_transfer,
    search_space,
    search_strategy,
)
from bench_core.specs import AXES, BUDGET_UNITS, SUITE_KEYS, Budget, OptimizerSpec, Problem, ProblemSpec
from bench_core.suite_files import SUITE_NAME_PATTERN, builtin_suites, check_keys, check_suite_name, read_suite
from bench_core.time_limits import AUTO, TimeLimit, parse_time_limit
from bench_core.trial import TrialConfig
from bench_core.values import (
    GRID_KINDS,
    MAX_INTEGER,
    MAX_SEARCH_POINTS,
    grid,
    hyperparameter_values,
    integers,
    like,
    parse_cli_hyperparameter,
    parse_cli_values,
    show,
    strings,
)

__all__ = [
    "AXES", "DEFAULT_EVALS", "GRID_KINDS", "LR_SCALING_RULES", "MAX_BATCH_SIZE", "MAX_INTEGER", "MAX_SEARCH_POINTS",
    "SUITE_KEYS", "SUITE_NAME_PATTERN", "Sweep", "accepted_points", "adhoc_settings", "builtin_suites",
    "check_suite_name", "expand", "grid", "parse_cli_hyperparameter", "parse_cli_values", "read_suite",
    "resolve_device",
]

LR_SCALING_RULES = ("none", "linear")
DEFAULT_EVALS = 20
#: Largest batch size: 16.7 million samples a step; an endless-stream problem has no training set to check it
#: against, and a larger batch is an allocation no machine this runs on can make.
MAX_BATCH_SIZE = 2**24


@dataclass
class Sweep:
    """An expanded suite: its name, where it came from, the resolved settings and the trials."""

    name: str
    description: str
    source: str
    settings: dict[str, Any]
    trials: list[TrialConfig] = field(default_factory=list)
    followups: list[FollowUp] = field(default_factory=list)
    device: str = "cpu"
    #: Each trial's time limit: seconds, ``"auto"`` (derived from its budget) or ``None`` (see
    #: :mod:`bench_core.time_limits`). A run condition, not part of any trial's identity.
    time_limit: TimeLimit = AUTO
    #: Whether trials that differ only in float hyperparameters and seed run as one vectorised computation
    #: (:mod:`bench_core.vectorized`; suite setting ``vectorize``, ``--no-vectorize``). A run condition too.
    vectorize: bool = True
    #: One line each about what the expansion left out and why (points an optimizer rejects).
    notices: list[str] = field(default_factory=list)
    #: Trials up front, counted but not built (``expand(..., count_only=True)``, for a dry run); else ``None``.
    counted: int | None = None

    @property
    def upfront(self) -> int:
        """Trials expanded up front (counted exactly without building them under ``count_only``)."""
        return len(self.trials) if self.counted is None else self.counted

    @property
    def planned(self) -> int:
        """Trials in all: those expanded up front and those follow-ups will name."""
        return self.upfront + sum(f.planned for f in self.followups)


def resolve_device(name: str) -> str:
    """Turn ``auto`` into ``cuda`` or ``cpu`` and check that a requested device exists."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device {name!r} is not a valid torch device (use auto, cpu or cuda)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r}: CUDA is not available on this machine (torch {torch.__version__})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type != "cpu":
        raise UserError(f"device {name!r} is not supported (use auto, cpu or cuda)")
    return str(device)


def expand(settings: Mapping[str, Any], catalog: Catalog, source: str = "suite",
           overrides: Mapping[str, Any] | None = None, problems_cache: ProblemCache | None = None,
           count_only: bool = False) -> Sweep:
    """Expand suite settings (plus command-line overrides, which win) into trial configs.

    With ``count_only`` (a dry run) every value is validated as for a run but no
    :class:`TrialConfig` is built: ``Sweep.counted`` holds the exact number of distinct
    trials (the product of the distinct values of each axis, less the points the optimizer
    rejects), so a ten-million-trial sweep is counted in seconds and little memory.

    Each problem variant is built once on the CPU to validate its options and learn its
    size; pass the ``problems_cache`` an in-process run will use, so it is built only once.

    :raises UserError: naming the source, the key and the value for anything invalid.
    """
    overrides = dict(overrides or {})
    settings = dict(settings)
    for key in overrides.keys() & {"problems", "optimizers", "device", "trial_timeout", "vectorize"}:
        settings[key] = overrides.pop(key)
    check_keys(settings, source)
    name = check_suite_name(settings.get("name", "custom"), source)
    problems = _names(settings, "problems", catalog, "problem", source)
    optimizers = _names(settings, "optimizers", catalog, "optimizer", source, default=sorted(catalog.optimizers))
    problem_tables = _tables(settings, "problem", problems, source)
    optimizer_tables = _tables(settings, "optimizer", optimizers, source)
    schedule_options = _schedule_options(settings, catalog, source)
    device = settings.get("device", "auto")
    if not isinstance(device, str):
        raise UserError(f"{source}: device: expected a name such as auto, cpu or cuda, got {show(device)}")
    device = resolve_device(device)
    try:
        time_limit = parse_time_limit(settings.get("trial_timeout", AUTO), f"{source}: trial_timeout")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    vectorize = settings.get("vectorize", True)
    if not isinstance(vectorize, bool):
        raise UserError(f"{source}: vectorize: expected true or false, got {show(vectorize)}")

    hyperparams = {hp for name in optimizers for hp in catalog.optimizers[name].hyperparams}
    top = {k: v for k, v in settings.items() if k not in SUITE_KEYS}
    for where, layer in ((source, top), ("command line", overrides)):
        for key in layer:
            if key not in AXES and key not in hyperparams:
                raise UserError(f"{where}: unknown key {key!r} (not a suite setting, sweep axis or "
                                f"hyperparameter of the selected optimizers)")

    sweep = Sweep(name, str(settings.get("description", "")), source,
                  dict(settings) | ({"overrides": overrides} if overrides else {}), device=device,
                  time_limit=time_limit, vectorize=vectorize)
    seen: set[str] = set()
    seen_options: set[str] = set()
    sweep.counted = 0 if count_only else None
    cache = problems_cache or ProblemCache(catalog)
    for problem_name in problems:
        pspec = catalog.problems[problem_name]
        ptable = dict(problem_tables.get(problem_name, {}))
        option_sets = _option_grid(pspec, ptable.pop("options", {}), f"{source}: [problem.{problem_name}]")
        for key in ptable:
            if key not in AXES and key not in hyperparams:
                raise UserError(f"{source}: [problem.{problem_name}] unknown key {key!r}")
        for options in option_sets:
            variant = json.dumps(options, sort_keys=True)
            if count_only and variant in seen_options:  # 1 and 1.0 name one variant: its trials are counted once
                continue
            seen_options.add(variant)
            probe = _probe(cache, pspec, options, source)
            for optimizer_name in optimizers:
                ospec = catalog.optimizers[optimizer_name]
                otable = optimizer_tables.get(optimizer_name, {})
                where = f"{source}: [optimizer.{optimizer_name}]"
                for key in otable:
                    if key not in AXES and key != "lr" and key not in ospec.hyperparams:
                        raise UserError(f"{where} unknown key {key!r} ({optimizer_name} hyperparameters: "
                                        f"{', '.join(['lr', *ospec.hyperparams])})")
                layers = [(source, top), (f"{source}: [problem.{problem_name}]", ptable), (where, otable),
                          ("command line", overrides)]
                configs, followups, notices, count = _trials(problem_name, pspec, probe, options, optimizer_name,
                                                             ospec, layers, schedule_options, catalog, device,
                                                             count_only)
                sweep.notices.extend(n for n in notices if n not in sweep.notices)
                if sweep.counted is not None:
                    sweep.counted += count
                for config in configs:
                    if config.trial_id not in seen:
                        seen.add(config.trial_id)
                        sweep.trials.append(config)
                sweep.followups.extend(followups)
    return sweep


def _trials(problem_name, pspec, probe, options, optimizer_name, ospec, layers, schedule_options,
            catalog, device, count_only: bool = False) -> tuple[list[TrialConfig], list[FollowUp], list[str], int]:
    """The trials of one optimizer on one problem variant, the follow-ups that will name more, notices, and the
    number of distinct trials up front (with ``count_only``, the trials themselves are not built)."""
    pick: Pick = functools.partial(_pick, layers)
    grids = _hyperparameter_grids(pick, ospec)
    batch_sizes, transfer_sizes = _batch_sizes(pick, pspec, probe, problem_name)
    where, value = pick("schedule", "constant")
    schedules = strings(value, f"{where} schedule")
    for name in schedules:
        catalog.get("schedule", name)
    where, value = pick("seeds", 0)
    seeds = integers(value, f"{where} seeds", minimum=0)
    budget = _budget(layers, pspec, problem_name, probe.train_size)
    evals = _evals(pick, budget)
    stop_at_target = _stop_at_target(pick)
    scale = _lr_scaling(pick, pspec.batch_size)
    strategy, count, search_seed = search_strategy(pick, catalog, problem_name, ospec.name)
    space = search_space(ospec, grids, given={hp for hp in grids if pick(hp, None)[1] is not None})

    def make(point: dict[str, float], batch_size: int | None, schedule: str) -> list[TrialConfig]:
        hyperparams = dict(point) | {"lr": scale(point["lr"], batch_size)}
        return [TrialConfig(problem=problem_name, optimizer=optimizer_name, hyperparams=hyperparams, budget=budget,
                            batch_size=batch_size, schedule=schedule,
                            schedule_options=dict(schedule_options.get(schedule, {})),
                            problem_options=dict(options), seed=seed, device=device, evals=evals,
                            stop_at_target=stop_at_target)
                for seed in seeds]

    if count == 0:
        _check_grid_size(optimizer_name, grids)
    configs: list[TrialConfig] = []
    followups: list[FollowUp] = []
    notices: list[str] = []
    searches: list[AdaptiveSearch] = []
    counted = 0
    if strategy.adaptive:
        searches = adaptive_searches(strategy, space, count, search_seed, make, batch_sizes, schedules, len(seeds))
        followups.extend(searches)
    else:
        points = _accepted(ospec, optimizer_name, proposals(strategy, space, count, search_seed, []), notices)
        if count_only:
            counted = _distinct_trials(points, batch_sizes, schedules, seeds, scale)
        else:
            configs = _grid_trials(points, batch_sizes, schedules, make)
    if transfer_sizes:
        followups.append(batch_size_transfer(list(configs), searches, transfer_sizes, len(seeds), make, scale.unscale))
    return configs, followups, notices, counted


def _pick(layers: list[tuple[str, Mapping[str, Any]]], key: str, default: Any) -> tuple[str, Any]:
    """A setting from the last layer that gives it, and where it came from (``"default"`` if none does)."""
    for where, layer in reversed(layers):
        if key in layer:
            return where, layer[key]
    return "default", default


def _hyperparameter_grids(pick: Pick, ospec: OptimizerSpec) -> dict[str, list[Any]]:
    """Each hyperparameter's values (the learning rate's first), as given or else the optimizer's default."""
    grids: dict[str, list[Any]] = {}
    params = {"lr": ospec.lr, **ospec.hyperparams}
    for hp, default in ospec.defaults().items():
        where, value = pick(hp, default)
        grids[hp] = hyperparameter_values(params[hp], value, f"{where} {hp}", positive=hp == "lr")
    return grids


def _batch_sizes(pick: Pick, pspec: ProblemSpec, probe: Problem,
                 problem_name: str) -> tuple[list[int | None], list[int]]:
    """The batch sizes to tune at and to transfer to; ``[None]`` and none for a deterministic problem."""
    where, value = pick("batch_size", pspec.batch_size)
    batch_sizes: list[int | None] = integers(value, f"{where} batch_size", minimum=1, maximum=MAX_BATCH_SIZE)
    where, value = pick("transfer_batch_sizes", [])
    transfer_sizes = integers(value, f"{where} transfer_batch_sizes", minimum=1,
                              maximum=MAX_BATCH_SIZE) if value != [] else []
    if transfer_sizes and len(batch_sizes) != 1:
        raise UserError(f"{where} transfer_batch_sizes: tune at one batch size, got batch_size {batch_sizes}")
    if probe.train_size is not None:
        for batch_size in [*batch_sizes, *transfer_sizes]:
            if batch_size > probe.train_size:
                raise UserError(f"batch_size {batch_size} exceeds the {probe.train_size} training "
                                f"samples of problem {problem_name!r}")
    if not probe.stochastic:
        return [None], []  # the gradient does not depend on the batch
    return batch_sizes, transfer_sizes


def _evals(pick: Pick, budget: Budget) -> int:
    """How many evaluations each trial makes; no more than the steps of a budget in steps, when given."""
    where, value = pick("evals", DEFAULT_EVALS)
    evals = integers(value, f"{where} evals", minimum=1, scalar=True)[0]
    if where != "default" and budget.unit == "steps" and evals > budget.amount:
        raise UserError(f"{where} evals {evals}: more evaluations than the {budget.amount} steps of the budget")
    return evals


def _stop_at_target(pick: Pick) -> bool:
    where, value = pick("stop_at_target", False)
    if not isinstance(value, bool):
        raise UserError(f"{where} stop_at_target: expected true or false, got {show(value)}")
    return value


def _check_grid_size(optimizer_name: str, grids: dict[str, list[Any]]) -> None:
    """Refuse a full grid of more than :data:`MAX_SEARCH_POINTS` hyperparameter points before building it."""
    if math.prod(len(values) for values in grids.values()) > MAX_SEARCH_POINTS:
        sizes = " x ".join(f"{len(values)} {hp}" for hp, values in grids.items() if len(values) > 1)
        raise UserError(f"optimizer {optimizer_name!r}: a grid of {sizes} values is more than {MAX_SEARCH_POINTS} "
                        f"hyperparameter points (use search = 'random' with trials = N)")


def _accepted(ospec: OptimizerSpec, optimizer_name: str, points: list[dict[str, Any]],
              notices: list[str]) -> list[dict[str, Any]]:
    """The points the optimizer accepts; a notice for any it rejects, an error if it rejects them all."""
    points, rejected = accepted_points(ospec, points)
    if rejected and not points:
        raise UserError(f"optimizer {optimizer_name!r} rejects every hyperparameter point given: {rejected[0]}")
    if rejected:
        notices.append(f"optimizer {optimizer_name!r}: skipped {len(rejected)} hyperparameter point(s) it "
                       f"rejects, e.g. {rejected[0]}")
    return points


def _grid_trials(points: list[dict[str, Any]], batch_sizes: list[int | None], schedules: list[str],
                 make: MakeTrials) -> list[TrialConfig]:
    """The trials of every point at every batch size and schedule."""
    return [config for point in points for batch_size, schedule in itertools.product(batch_sizes, schedules)
            for config in make(point, batch_size, schedule)]


def _distinct_trials(points: list[dict[str, Any]], batch_sizes: list[int | None], schedules: list[str],
                     seeds: list[int], scale: _LrScaling) -> int:
    """How many distinct trials ``make`` would build from these axes, without building them.

    Trials are told apart by their hyperparameters (the learning rate as scaled and rounded
    for each batch size, so two given rates that round alike are one trial, as their ids
    are), batch size, schedule and seed; every other field is the same for all of them.
    """
    per_schedule_and_seed = 0
    for batch_size in dict.fromkeys(batch_sizes):
        per_schedule_and_seed += len({json.dumps(dict(point) | {"lr": scale(point["lr"], batch_size)}, sort_keys=True)
                                      for point in points})
    return per_schedule_and_seed * len(set(schedules)) * len(set(seeds))


def accepted_points(ospec: OptimizerSpec, points: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The points the optimizer accepts, and one line for each it rejects (``momentum=-1: Invalid momentum ...``).

    Each point is checked by constructing the optimizer over one small tensor: a well-written
    optimizer validates its arguments there (``torch.optim`` rejects a negative momentum, a
    ``beta2`` of 1.5 or Nesterov without momentum), so every such trial is known bad before
    anything is stored, with no range declared twice. An optimizer that cannot even be built
    at its defaults this way (one that needs a real model) is not judged.
    """
    def rejection(point: dict[str, Any]) -> str | None:
        try:
            ospec.build([torch.nn.Parameter(torch.zeros(2, 2))], point)
        except Exception as exc:  # any refusal by the plugin's constructor is the answer
            lines = str(exc).strip().splitlines()
            return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        return None

    if rejection({}) is not None:
        return points, []
    kept, rejected, seen = [], [], {}
    for point in points:
        key = repr(sorted(point.items()))
        if key not in seen:
            seen[key] = rejection(point)
        if seen[key] is None:
            kept.append(point)
        else:
            values = ", ".join(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                               for name, value in point.items())
            rejected.append(f"{values}: {seen[key]}")
    return kept, rejected


class _LrScaling:
    """The learning-rate scaling rule: lr times ``batch_size / base`` under ``linear``, unchanged under ``none``."""

    def __init__(self, rule: str, base: int | None) -> None:
        self.rule, self.base = rule, base

    def factor(self, batch_size: int | None) -> float:
        if self.rule == "none" or batch_size is None or self.base is None:
            return 1.0
        return batch_size / self.base

    def __call__(self, lr: float, batch_size: int | None) -> float:
        return float(f"{lr * self.factor(batch_size):.12g}")

    def unscale(self, lr: float, batch_size: int | None) -> float:
        return float(f"{lr / self.factor(batch_size):.12g}")


def _lr_scaling(pick: Pick, default_base: int | None) -> _LrScaling:
    """The ``lr_scaling`` rule and its ``base_batch_size`` (by default the problem's batch size)."""
    where, rule = pick("lr_scaling", "none")
    if rule not in LR_SCALING_RULES:
        raise UserError(f"{where} lr_scaling: {rule!r} is not one of {', '.join(LR_SCALING_RULES)}")
    where, base = pick("base_batch_size", default_base)
    if base is not None:
        base = integers(base, f"{where} base_batch_size", minimum=1, scalar=True, maximum=MAX_BATCH_SIZE)[0]
    return _LrScaling(rule, base)


def _budget(layers, pspec: ProblemSpec, problem_name: str, train_size: int | None) -> Budget:
    budget = pspec.budget
    for where, layer in layers:
        given = [unit for unit in BUDGET_UNITS if unit in layer]
        if len(given) > 1:
            raise UserError(f"{where}: give one budget of steps, epochs, samples or seconds, not "
                            f"{' and '.join(given)}")
        if given:
            unit = given[0]
            budget = Budget(unit, integers(layer[unit], f"{where} {unit}", minimum=1, scalar=True)[0])
    if budget.unit == "epochs" and train_size is None:
        raise UserError(f"problem {problem_name!r} is an endless stream: give its budget in steps, not epochs")
    return budget


def _probe(cache: ProblemCache, pspec: ProblemSpec, options: dict[str, Any], source: str) -> Problem:
    """Build the problem on the CPU once, to validate options and learn its size."""
    try:
        return cache.get(pspec.name, options, "cpu")
    except (ValueError, TypeError) as exc:
        raise UserError(f"{source}: problem {pspec.name!r} options {options}: {exc}") from None


def _option_grid(pspec: ProblemSpec, given: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(given, Mapping):
        raise UserError(f"{where} options must be a table, got {show(given)}")
    for key in given:
        if key not in pspec.options:
            known = ", ".join(pspec.options) or "none"
            raise UserError(f"{where} problem {pspec.name!r} has no option {key!r} (options: {known})")
    grids = {}
    for key, default in pspec.options.items():
        values = given.get(key, default)
        values = values if isinstance(values, list) else [values]
        grids[key] = [like(default, value, f"{where} options.{key}") for value in values]
    return [dict(zip(grids, combo, strict=True)) for combo in itertools.product(*grids.values())]


def _names(settings, key, catalog, kind, source, default=None) -> list[str]:
    if key not in settings:
        if default is None:
            raise UserError(f"{source}: no {key} given (list them under {key!r}, or use --{kind})")
        return default
    names = strings(settings[key], f"{source}: {key}")
    for name in names:
        try:
            catalog.get(kind, name)
        except UserError as exc:
            raise UserError(f"{source}: {key}: {exc}") from None
    return list(dict.fromkeys(names))


def _tables(settings, key, selected, source) -> dict[str, dict[str, Any]]:
    tables = dict(settings.get(key, {}))
    for name, table in tables.items():
        if not isinstance(table, Mapping):
            raise UserError(f"{source}: [{key}.{name}] must be a table")
    return {name: dict(table) for name, table in tables.items() if name in selected}


def _schedule_options(settings, catalog, source) -> dict[str, dict[str, Any]]:
    tables = dict(settings.get("schedule_options", {}))
    for name, table in tables.items():
        spec = catalog.get("schedule", name)
        if not isinstance(table, Mapping):
            raise UserError(f"{source}: [schedule_options.{name}] must be a table")
        for key in table:
            if key not in spec.options:
                raise UserError(f"{source}: [schedule_options.{name}] schedule {name!r} has no option "
                                f"{key!r} (options: {', '.join(spec.options) or 'none'})")
        try:
            spec.multiplier(0, 100, **(dict(spec.options) | dict(table)))
        except (ValueError, TypeError) as exc:
            raise UserError(f"{source}: [schedule_options.{name}] {exc}") from None
    return tables


def adhoc_settings(problems: Sequence[str]) -> dict[str, Any]:
    """A suite built from flags alone: the named problems at their plugin defaults."""
    return {"name": "custom", "problems": list(problems)}
