"""Suites: TOML files (or command-line flags) that describe a sweep, expanded into trials.

A suite names problems and optimizers and gives sweep axes. An axis value is a scalar or
a list (a grid). Axes may be set at the top level, per problem (``[problem.NAME]``), per
optimizer (``[optimizer.NAME]``) and on the command line, each overriding the one
before. Anything not set falls back to the plugin's defaults: the optimizer's learning
rate and hyperparameters, the problem's batch size and budget. See
``bench_core/suites/default.toml`` for a commented example.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
import tomllib
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from bench_core.catalog import Catalog
from bench_core.errors import UserError
from bench_core.followups import AdaptiveSearch, BatchSizeTransfer, FollowUp, Scores, proposals
from bench_core.options import check_integer, check_number
from bench_core.runner import ProblemCache
from bench_core.specs import (
    AXES,
    BUDGET_UNITS,
    SUITE_KEYS,
    Budget,
    Choice,
    Dimension,
    OptimizerSpec,
    Param,
    Problem,
    ProblemSpec,
    SearchSpec,
)
from bench_core.time_limits import AUTO, TimeLimit, parse_time_limit
from bench_core.trial import TrialConfig

LR_SCALING_RULES = ("none", "linear")
DEFAULT_EVALS = 20
#: Largest integer setting (seeds, budgets, evals): SQLite INTEGER and torch's int64 hold no more.
MAX_INTEGER = 2**63 - 1
#: Largest batch size: 16.7 million samples a step; an endless-stream problem has no training set to check it
#: against, and a larger batch is an allocation no machine this runs on can make.
MAX_BATCH_SIZE = 2**24
#: Largest trial budget of a search (``trials``) and largest ``num`` of a grid: the draws and
#: points are materialised, so a bound keeps a typo from hanging the expansion (a dry run included).
MAX_SEARCH_POINTS = 10**6
#: A suite name becomes a report folder and a stored key: letters, digits, ``_``, ``-``, ``.``, at most 100,
#: starting with a letter or digit, so no name can climb out of ``--report-dir`` (``../x``, ``/etc``).
SUITE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


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


def builtin_suites() -> dict[str, Path]:
    """Built-in suite names and their files."""
    folder = resources.files("bench_core") / "suites"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".toml")}


def read_suite(name_or_path: str) -> tuple[dict[str, Any], str]:
    """Parse a built-in suite by name or a TOML file by path; return (settings, source)."""
    path = Path(name_or_path)
    if not path.is_file():
        suites = builtin_suites()
        if name_or_path not in suites:
            known = ", ".join(sorted(suites))
            raise UserError(f"suite {name_or_path!r}: no such file and no built-in suite of that name "
                            f"(built-in: {known})")
        path = suites[name_or_path]
    try:
        settings = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise UserError(f"{path}: arrays or tables nested too deep to read") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    settings.setdefault("name", path.stem)
    return settings, str(path)


def check_suite_name(name: object, source: str = "suite") -> str:
    """``name`` if it is usable as a report folder and stored key, else a one-line :class:`UserError`.

    Checked before anything runs or is stored: a name such as ``../../x`` or ``/tmp/x`` would
    otherwise put the report outside ``--report-dir``, after the whole sweep had run.
    """
    if not isinstance(name, str) or not SUITE_NAME_PATTERN.match(name):
        raise UserError(f"{source}: suite name {_show(name)} is invalid: use at most 100 letters, digits, '_', "
                        "'-' or '.', starting with a letter or digit (set name = \"...\" or --name)")
    return name


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
    for key in overrides.keys() & {"problems", "optimizers", "device", "trial_timeout"}:
        settings[key] = overrides.pop(key)
    _check_keys(settings, source)
    name = check_suite_name(settings.get("name", "custom"), source)
    problems = _names(settings, "problems", catalog, "problem", source)
    optimizers = _names(settings, "optimizers", catalog, "optimizer", source, default=sorted(catalog.optimizers))
    problem_tables = _tables(settings, "problem", problems, source)
    optimizer_tables = _tables(settings, "optimizer", optimizers, source)
    schedule_options = _schedule_options(settings, catalog, source)
    device = settings.get("device", "auto")
    if not isinstance(device, str):
        raise UserError(f"{source}: device: expected a name such as auto, cpu or cuda, got {_show(device)}")
    device = resolve_device(device)
    try:
        time_limit = parse_time_limit(settings.get("trial_timeout", AUTO), f"{source}: trial_timeout")
    except ValueError as exc:
        raise UserError(str(exc)) from None

    hyperparams = {hp for name in optimizers for hp in catalog.optimizers[name].hyperparams}
    top = {k: v for k, v in settings.items() if k not in SUITE_KEYS}
    for where, layer in ((source, top), ("command line", overrides)):
        for key in layer:
            if key not in AXES and key not in hyperparams:
                raise UserError(f"{where}: unknown key {key!r} (not a suite setting, sweep axis or "
                                f"hyperparameter of the selected optimizers)")

    sweep = Sweep(name, str(settings.get("description", "")), source,
                  dict(settings) | ({"overrides": overrides} if overrides else {}), device=device,
                  time_limit=time_limit)
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
    def pick(key: str, default: Any) -> tuple[str, Any]:
        for where, layer in reversed(layers):
            if key in layer:
                return where, layer[key]
        return "default", default

    grids: dict[str, list[Any]] = {}
    params = {"lr": ospec.lr, **ospec.hyperparams}
    for hp, default in ospec.defaults().items():
        where, value = pick(hp, default)
        grids[hp] = _hyperparameter_values(params[hp], value, f"{where} {hp}", positive=hp == "lr")
    where, value = pick("batch_size", pspec.batch_size)
    batch_sizes: list[int | None] = _integers(value, f"{where} batch_size", minimum=1, maximum=MAX_BATCH_SIZE)
    where, value = pick("transfer_batch_sizes", [])
    transfer_sizes = _integers(value, f"{where} transfer_batch_sizes", minimum=1,
                               maximum=MAX_BATCH_SIZE) if value != [] else []
    if transfer_sizes and len(batch_sizes) != 1:
        raise UserError(f"{where} transfer_batch_sizes: tune at one batch size, got batch_size {batch_sizes}")
    if probe.train_size is not None:
        for batch_size in [*batch_sizes, *transfer_sizes]:
            if batch_size > probe.train_size:
                raise UserError(f"batch_size {batch_size} exceeds the {probe.train_size} training "
                                f"samples of problem {problem_name!r}")
    if not probe.stochastic:
        batch_sizes, transfer_sizes = [None], []  # the gradient does not depend on the batch
    where, value = pick("schedule", "constant")
    schedules = _strings(value, f"{where} schedule")
    for name in schedules:
        catalog.get("schedule", name)
    where, value = pick("seeds", 0)
    seeds = _integers(value, f"{where} seeds", minimum=0)
    budget = _budget(layers, pspec, problem_name, probe.train_size)
    where, value = pick("evals", DEFAULT_EVALS)
    evals = _integers(value, f"{where} evals", minimum=1, scalar=True)[0]
    if where != "default" and budget.unit == "steps" and evals > budget.amount:
        raise UserError(f"{where} evals {evals}: more evaluations than the {budget.amount} steps of the budget")
    where, value = pick("stop_at_target", False)
    if not isinstance(value, bool):
        raise UserError(f"{where} stop_at_target: expected true or false, got {_show(value)}")
    stop_at_target = value
    scale = _lr_scaling(pick, pspec.batch_size)
    strategy, count, search_seed = _search(pick, catalog, problem_name, ospec.name)
    space = _space(ospec, grids, given={hp for hp in grids if pick(hp, None)[1] is not None})

    def make(point: dict[str, float], batch_size: int | None, schedule: str) -> list[TrialConfig]:
        hyperparams = dict(point) | {"lr": scale(point["lr"], batch_size)}
        return [TrialConfig(problem=problem_name, optimizer=optimizer_name, hyperparams=hyperparams, budget=budget,
                            batch_size=batch_size, schedule=schedule,
                            schedule_options=dict(schedule_options.get(schedule, {})),
                            problem_options=dict(options), seed=seed, device=device, evals=evals,
                            stop_at_target=stop_at_target)
                for seed in seeds]

    if count == 0 and math.prod(len(values) for values in grids.values()) > MAX_SEARCH_POINTS:
        sizes = " x ".join(f"{len(values)} {hp}" for hp, values in grids.items() if len(values) > 1)
        raise UserError(f"optimizer {optimizer_name!r}: a grid of {sizes} values is more than {MAX_SEARCH_POINTS} "
                        f"hyperparameter points (use search = 'random' with trials = N)")
    configs: list[TrialConfig] = []
    followups: list[FollowUp] = []
    notices: list[str] = []
    searches: list[AdaptiveSearch] = []
    counted = 0
    if strategy.adaptive:
        for batch_size, schedule in itertools.product(batch_sizes, schedules):
            searches.append(AdaptiveSearch(strategy, space, count, search_seed,
                                           functools.partial(make, batch_size=batch_size, schedule=schedule),
                                           len(seeds)))
        followups.extend(searches)
    else:
        points, rejected = accepted_points(ospec, proposals(strategy, space, count, search_seed, []))
        if rejected and not points:
            raise UserError(f"optimizer {optimizer_name!r} rejects every hyperparameter point given: {rejected[0]}")
        if rejected:
            notices.append(f"optimizer {optimizer_name!r}: skipped {len(rejected)} hyperparameter point(s) it "
                           f"rejects, e.g. {rejected[0]}")
        if count_only:
            counted = _distinct_trials(points, batch_sizes, schedules, seeds, scale)
        else:
            for point in points:
                for batch_size, schedule in itertools.product(batch_sizes, schedules):
                    configs.extend(make(point, batch_size, schedule))
    if transfer_sizes:
        tuned = list(configs)

        def source(scores: Scores) -> list[TrialConfig] | None:
            if not searches:
                return tuned
            found = [adaptive.complete(scores) for adaptive in searches]
            return None if any(f is None for f in found) else [c for f in found for c in f]

        def transfer(best: TrialConfig) -> list[TrialConfig]:
            point = dict(best.hyperparams) | {"lr": scale.unscale(best.hyperparams["lr"], best.batch_size)}
            return [c for size in transfer_sizes for c in make(point, size, best.schedule)]

        followups.append(BatchSizeTransfer(source, transfer, len(transfer_sizes) * len(seeds)))
    return configs, followups, notices, counted


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


def _lr_scaling(pick, default_base: int | None) -> _LrScaling:
    where, rule = pick("lr_scaling", "none")
    if rule not in LR_SCALING_RULES:
        raise UserError(f"{where} lr_scaling: {rule!r} is not one of {', '.join(LR_SCALING_RULES)}")
    where, base = pick("base_batch_size", default_base)
    if base is not None:
        base = _integers(base, f"{where} base_batch_size", minimum=1, scalar=True, maximum=MAX_BATCH_SIZE)[0]
    return _LrScaling(rule, base)


def _search(pick, catalog: Catalog, problem_name: str, optimizer_name: str) -> tuple[SearchSpec, int, int]:
    """The search strategy, its per-optimizer trial budget and its seed for one optimizer on one problem."""
    where_search, name = pick("search", "grid")
    where_count, count = pick("trials", None)
    try:
        spec = catalog.get("search strategy", _strings(name, f"{where_search} search")[0])
    except UserError as exc:
        raise UserError(f"{where_search} search: {exc}") from None
    if count is None:
        if spec.name != "grid":
            raise UserError(f"{where_search} search = {spec.name!r} needs a trial budget: trials = N")
        count = 0
    else:
        count = _integers(count, f"{where_count} trials", minimum=1, scalar=True, maximum=MAX_SEARCH_POINTS)[0]
    where, value = pick("random_seed", 0)
    random_seed = _integers(value, f"{where} random_seed", minimum=0, scalar=True)[0]
    return spec, count, zlib.crc32(f"{random_seed}/{problem_name}/{optimizer_name}".encode())


def _space(ospec: Any, grids: dict[str, list[Any]], given: set[str]) -> dict[str, Dimension]:
    """The search space: the given values of each hyperparameter, and the declared range of those not given."""
    params = {"lr": ospec.lr, **ospec.hyperparams}
    space = {}
    for hp, values in grids.items():
        param = params[hp]
        if isinstance(param, Choice):
            options = None if hp in given else param.options
            space[hp] = Dimension(hp, tuple(values), kind="choice", options=options)
            continue
        kind = "int" if param.integer else "float"
        if hp in given or param.low is None:
            space[hp] = Dimension(hp, tuple(values), kind=kind)
        else:
            space[hp] = Dimension(hp, tuple(values), param.low, param.high, param.log, kind=kind)
    return space


def _hyperparameter_values(param: Param | Choice, value: Any, where: str, positive: bool = False) -> list[Any]:
    """A hyperparameter's values from a suite or the command line, each as the optimizer takes it.

    Numbers become ``float``, or ``int`` for an integer :class:`Param` (a grid table over
    one is rounded to whole numbers; a listed 5.5 is an error); a :class:`Choice` takes
    its options by value or by how a command line spells them.
    """
    if isinstance(param, Choice):
        if isinstance(value, dict):
            raise UserError(f"{where}: a categorical hyperparameter takes a list of its options, not a grid")
        values = _as_list(value)
        if not values:
            raise UserError(f"{where}: empty list")
        for item in values:
            if not _scalar(item):
                raise UserError(f"{where}: expected one of its options, got {_show(item)}")
    else:
        values = _numbers(value, where, positive)
        if param.integer and isinstance(value, dict):
            values = [round(v) for v in values]
        if param.integer and any(abs(v) > MAX_INTEGER for v in values):
            raise UserError(f"{where}: expected whole numbers within +-{MAX_INTEGER}, got {_show(value)}")
    try:
        return [param.coerce(v) for v in values]
    except ValueError as exc:
        raise UserError(f"{where}: {exc}") from None


def _budget(layers, pspec: ProblemSpec, problem_name: str, train_size: int | None) -> Budget:
    budget = pspec.budget
    for where, layer in layers:
        given = [unit for unit in BUDGET_UNITS if unit in layer]
        if len(given) > 1:
            raise UserError(f"{where}: give one budget of steps, epochs, samples or seconds, not "
                            f"{' and '.join(given)}")
        if given:
            unit = given[0]
            budget = Budget(unit, _integers(layer[unit], f"{where} {unit}", minimum=1, scalar=True)[0])
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
        raise UserError(f"{where} options must be a table, got {_show(given)}")
    for key in given:
        if key not in pspec.options:
            known = ", ".join(pspec.options) or "none"
            raise UserError(f"{where} problem {pspec.name!r} has no option {key!r} (options: {known})")
    grids = {}
    for key, default in pspec.options.items():
        values = given.get(key, default)
        values = values if isinstance(values, list) else [values]
        grids[key] = [_like(default, value, f"{where} options.{key}") for value in values]
    return [dict(zip(grids, combo, strict=True)) for combo in itertools.product(*grids.values())]


def _like(default: Any, value: Any, where: str) -> Any:
    """Coerce an option value to its default's type, so ``10`` and ``10.0`` name one trial."""
    if isinstance(default, bool) or default is None or isinstance(default, str):
        if default is not None and type(value) is not type(default):
            raise UserError(f"{where}: expected {type(default).__name__}, got {_show(value)}")
        if default is None and not _scalar(value):
            raise UserError(f"{where}: expected one value, got {_show(value)}")
        return value
    number = _finite(value)
    if number is None:
        raise UserError(f"{where}: expected a finite number, got {_show(value)}")
    if isinstance(default, int):
        if number != int(number):
            raise UserError(f"{where}: expected an integer, got {_show(value)}")
        if not -MAX_INTEGER <= int(value) <= MAX_INTEGER:
            raise UserError(f"{where}: expected an integer within +-{MAX_INTEGER}, got {_show(value)}")
        return int(value)
    return number


def _scalar(value: Any) -> bool:
    """Whether ``value`` is one TOML scalar (string, number, boolean, date), not an array or a table."""
    return not isinstance(value, list | tuple | Mapping)


def _check_keys(settings: Mapping[str, Any], source: str) -> None:
    for key in ("problem", "optimizer", "schedule_options"):
        if key in settings and not isinstance(settings[key], Mapping):
            raise UserError(f"{source}: {key!r} must be a table ([{key}.NAME])")


def _names(settings, key, catalog, kind, source, default=None) -> list[str]:
    if key not in settings:
        if default is None:
            raise UserError(f"{source}: no {key} given (list them under {key!r}, or use --{kind})")
        return default
    names = _strings(settings[key], f"{source}: {key}")
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


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


GRID_KINDS = ("log", "linear")


def grid(kind: str, low: float, high: float, num: int, where: str) -> list[float]:
    """``num`` values from ``low`` to ``high`` (both included), evenly spaced in log or linear scale.

    Values are rounded to 12 significant digits so that the same grid always gives the same
    numbers, and so the same trial ids, whatever the floating-point path that computed them.
    """
    if kind not in GRID_KINDS:
        raise UserError(f"{where}: unknown grid {kind!r} (use {' or '.join(GRID_KINDS)})")
    if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= MAX_SEARCH_POINTS:
        raise UserError(f"{where}: num must be an integer from 1 to {MAX_SEARCH_POINTS}, got {_show(num)}")
    for bound in (low, high):
        if _finite(bound) is None:
            raise UserError(f"{where}: grid bounds must be finite numbers, got {_show(bound)}")
    if kind == "log" and (low <= 0 or high <= 0):
        raise UserError(f"{where}: a log grid needs positive bounds, got [{low!r}, {high!r}]")
    if num == 1:
        return [float(low)]
    if kind == "log":
        values = [low * (high / low) ** (k / (num - 1)) for k in range(num)]
    else:
        values = [low + (high - low) * k / (num - 1) for k in range(num)]
    return [float(f"{v:.12g}") for v in values]


def _grid_table(value: dict, where: str) -> list[float]:
    """``{log = [low, high], num = n}`` or ``{linear = [low, high], num = n}`` as a list of values."""
    kinds = [k for k in GRID_KINDS if k in value]
    unknown = set(value) - {*GRID_KINDS, "num"}
    if len(kinds) != 1 or unknown or "num" not in value:
        raise UserError(f"{where}: a grid is {{log = [low, high], num = N}} or {{linear = [low, high], num = N}}, "
                        f"got {_show(value)}")
    bounds = value[kinds[0]]
    if not isinstance(bounds, list | tuple) or len(bounds) != 2:
        raise UserError(f"{where}: {kinds[0]} needs [low, high], got {_show(bounds)}")
    return grid(kinds[0], bounds[0], bounds[1], value["num"], where)


def _numbers(value: Any, where: str, positive: bool = False) -> list[float]:
    """Finite numbers (``> 0`` with ``positive``), one or a list or a grid table, checked by
    :func:`bench_core.options.check_number` so every number error reads the same."""
    if isinstance(value, dict):
        value = _grid_table(value, where)
    values = _as_list(value)
    if not values:
        raise UserError(f"{where}: empty list")
    try:
        return [check_number(where, item, 0.0 if positive else -math.inf, strict=positive) for item in values]
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _finite(item: Any) -> float | None:
    """``item`` as a finite float, or ``None`` for anything else (nan, inf, an int past float range, a non-number)."""
    if isinstance(item, bool) or not isinstance(item, int | float):
        return None
    try:
        number = float(item)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _integers(value: Any, where: str, minimum: int, scalar: bool = False, maximum: int = MAX_INTEGER) -> list[int]:
    """Whole numbers from ``minimum`` to ``maximum``: by default what SQLite INTEGER and torch's int64 hold,
    so a seed of 2**63 or a budget of 2**70 is a one-line error here, not an OverflowError mid-run. Checked by
    :func:`bench_core.options.check_integer`; a float, even a whole one, is refused."""
    if scalar and isinstance(value, list | tuple):
        raise UserError(f"{where}: expected one integer, got a list {_show(value)}")
    values = _as_list(value)
    if not values:
        raise UserError(f"{where}: empty list")
    try:
        for item in values:
            check_integer(where, item, minimum, maximum, exact=True)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return values


def _show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, so an error about a 500-deep array or a huge string stays one
    short line (and a repr that recurses too deep cannot replace the error with a RecursionError)."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<{type(value).__name__} nested too deep>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _strings(value: Any, where: str) -> list[str]:
    values = _as_list(value)
    if not values or not all(isinstance(item, str) and item for item in values):
        raise UserError(f"{where}: expected a name or a list of names, got {_show(value)}")
    return values


def parse_cli_values(flag: str, text: str, kind: type) -> list[Any]:
    """Parse a comma-separated flag value (``--lr 0.01,0.1``) into a list of ``kind``."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if kind is float and part.split(":")[0] in ("log", "lin", "linear"):
            out.extend(_cli_grid(flag, part))
            continue
        try:
            out.append(kind(part))
        except ValueError:
            raise UserError(f"{flag}: {part!r} is not a valid {kind.__name__}") from None
    return out


def parse_cli_hyperparameter(flag: str, text: str) -> Any:
    """Parse ``--hp NAME=VALUES`` values without knowing the hyperparameter's type.

    Each comma-separated part becomes a bool (``true``/``false``), an int, a float or
    else a string, for the suite to check against the declared type. A value that is one
    grid (``log:1:64:7``) stays a grid table, so an integer hyperparameter can round it.
    """
    parts = [part.strip() for part in text.split(",")]
    if len(parts) == 1 and parts[0].split(":")[0] in ("log", "lin", "linear"):
        kind, *rest = parts[0].split(":")
        values = _cli_grid(flag, parts[0])
        return {"log" if kind == "log" else "linear": [values[0], values[-1]], "num": int(rest[-1])}
    out: list[Any] = []
    for part in parts:
        if part.split(":")[0] in ("log", "lin", "linear"):
            out.extend(_cli_grid(flag, part))
        elif part.lower() in ("true", "false"):
            out.append(part.lower() == "true")
        else:
            out.append(_number_or_text(part))
    return out


def _number_or_text(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _cli_grid(flag: str, text: str) -> list[float]:
    """``log:LOW:HIGH:NUM`` or ``lin:LOW:HIGH:NUM`` from the command line."""
    parts = text.split(":")
    try:
        if len(parts) != 4:
            raise ValueError
        low, high, num = float(parts[1]), float(parts[2]), int(parts[3])
    except ValueError:
        raise UserError(f"{flag}: {text!r} is not a grid (use log:LOW:HIGH:NUM or lin:LOW:HIGH:NUM)") from None
    return grid("log" if parts[0] == "log" else "linear", low, high, num, flag)


def adhoc_settings(problems: Sequence[str]) -> dict[str, Any]:
    """A suite built from flags alone: the named problems at their plugin defaults."""
    return {"name": "custom", "problems": list(problems)}
