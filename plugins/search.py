"""Built-in search strategies: grid, random, and Optuna's TPE (with the ``tpe`` extra).

Each is a ``propose(space, count, seed, history)`` function behind a :class:`SearchSpec`,
registered through ``optbench_search_strategies`` like a third-party strategy would be.
Proposed values keep 6 significant digits: a trial's id hashes its hyperparameters, and
short numbers keep ids (and report tables) stable and readable. Integer hyperparameters
are proposed as whole numbers and categorical ones as their options.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from bench_core import Dimension, SearchSpec, hookimpl
from bench_core.errors import UserError
from bench_core.specs import History, SearchSpace

#: The plugin contract this module is written for (see bench_core.hookspecs).
OPTBENCH_CONTRACT = 1
#: Random draws TPE makes before it starts modelling (Optuna's ``n_startup_trials``).
TPE_STARTUP_POINTS = 8


def _tidy(value: Any, dimension: Dimension) -> Any:
    if dimension.kind == "choice":
        return value
    value = round(value) if dimension.kind == "int" else float(f"{value:.6g}")
    if dimension.has_range:  # rounding must not step outside the declared range
        value = min(max(value, dimension.low), dimension.high)
    return int(value) if dimension.kind == "int" else value


def _draw(dimension: Dimension, rng: np.random.Generator) -> Any:
    """One value of ``dimension``: from its options or range when it has them, else from its choices."""
    if dimension.options is not None:
        return dimension.options[int(rng.integers(len(dimension.options)))]
    if not dimension.has_range:
        return dimension.choices[int(rng.integers(len(dimension.choices)))]
    if dimension.kind == "int":  # every whole number in range equally likely (log: log-uniform over [low, high + 1))
        if dimension.log:
            return math.floor(math.exp(rng.uniform(math.log(dimension.low), math.log(dimension.high + 1))))
        return int(rng.integers(dimension.low, dimension.high + 1))
    if dimension.log:
        return math.exp(rng.uniform(math.log(dimension.low), math.log(dimension.high)))
    return rng.uniform(dimension.low, dimension.high)


def grid(space: SearchSpace, count: int, seed: int, history: History) -> list[dict[str, Any]]:
    """Every combination of the given values (the trial budget does not apply)."""
    names = list(space)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(space[n].choices for n in names))]


def random(space: SearchSpace, count: int, seed: int, history: History) -> list[dict[str, Any]]:
    """``count`` independent draws: log-uniform or uniform over declared ranges (whole numbers for integer
    hyperparameters), uniform over a categorical one's options and over given values."""
    rng = np.random.default_rng(seed)
    return [{name: _tidy(_draw(dimension, rng), dimension) for name, dimension in space.items()}
            for _ in range(count)]


def tpe(space: SearchSpace, count: int, seed: int, history: History) -> list[dict[str, Any]]:
    """The next ``count`` points of a Tree-structured Parzen Estimator fitted to ``history``.

    A fresh Optuna study is told the whole history each round, with a sampler seeded from
    ``seed`` and the history's length, so a resumed sweep replays the same proposals.
    Diverged points are told as failed trials, which TPE steers away from.
    """
    try:
        import optuna
    except ImportError:
        raise UserError("search strategy 'tpe' needs Optuna: pip install 'optbench[tpe]'") from None
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def distribution(d: Dimension) -> Any:
        if d.options is not None:
            return CategoricalDistribution(d.options)
        if not d.has_range:
            return CategoricalDistribution(d.choices)
        if d.kind == "int":
            return IntDistribution(int(d.low), int(d.high), log=d.log)
        return FloatDistribution(d.low, d.high, log=d.log)

    distributions = {name: distribution(d) for name, d in space.items()}
    sampler = optuna.samplers.TPESampler(seed=(seed + 7919 * len(history)) % 2**32,
                                         n_startup_trials=TPE_STARTUP_POINTS)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    for point, score in history:
        if math.isfinite(score):
            study.add_trial(create_trial(params=point, distributions=distributions, value=score))
        else:
            study.add_trial(create_trial(params=point, distributions=distributions, state=TrialState.FAIL))
    points = []
    for _ in range(count):
        trial = study.ask(distributions)
        points.append({name: _tidy(value, space[name]) for name, value in trial.params.items()})
    return points


@hookimpl
def optbench_search_strategies() -> list[SearchSpec]:
    """Grid and random search, and TPE as the adaptive example."""
    return [
        SearchSpec("grid", grid, "Every combination of the given values."),
        SearchSpec("random", random, "Independent draws from the optimizers' declared ranges (log-uniform "
                   "where declared log) and from given values."),
        SearchSpec("tpe", tpe, "Optuna's Tree-structured Parzen Estimator, in rounds (needs the 'tpe' extra).",
                   adaptive=True),
    ]
