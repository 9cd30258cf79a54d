"""Built-in search strategies: grid, random, and Optuna's TPE (with the ``tpe`` extra).

Each is a ``propose(space, count, seed, history)`` function behind a :class:`SearchSpec`,
registered through ``optbench_search_strategies`` like a third-party strategy would be.
Proposed values keep 6 significant digits: a trial's id hashes its hyperparameters, and
short numbers keep ids (and report tables) stable and readable.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from bench_core import Dimension, SearchSpec, hookimpl
from bench_core.errors import UserError
from bench_core.specs import History, SearchSpace

#: The plugin contract this module is written for (see bench_core.hookspecs).
OPTBENCH_CONTRACT = 1
#: Random draws TPE makes before it starts modelling (Optuna's ``n_startup_trials``).
TPE_STARTUP_POINTS = 8


def _tidy(value: float, dimension: Dimension) -> float:
    value = float(f"{value:.6g}")
    if dimension.has_range:  # rounding must not step outside the declared range
        value = min(max(value, dimension.low), dimension.high)
    return value


def grid(space: SearchSpace, count: int, seed: int, history: History) -> list[dict[str, float]]:
    """Every combination of the given values (the trial budget does not apply)."""
    names = list(space)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(space[n].choices for n in names))]


def random(space: SearchSpace, count: int, seed: int, history: History) -> list[dict[str, float]]:
    """``count`` independent draws: log-uniform or uniform over declared ranges, uniform over given values."""
    rng = np.random.default_rng(seed)
    points = []
    for _ in range(count):
        point = {}
        for name, dimension in space.items():
            if not dimension.has_range:
                value = dimension.choices[int(rng.integers(len(dimension.choices)))]
            elif dimension.log:
                value = math.exp(rng.uniform(math.log(dimension.low), math.log(dimension.high)))
            else:
                value = rng.uniform(dimension.low, dimension.high)
            point[name] = _tidy(value, dimension)
        points.append(point)
    return points


def tpe(space: SearchSpace, count: int, seed: int, history: History) -> list[dict[str, float]]:
    """The next ``count`` points of a Tree-structured Parzen Estimator fitted to ``history``.

    A fresh Optuna study is told the whole history each round, with a sampler seeded from
    ``seed`` and the history's length, so a resumed sweep replays the same proposals.
    Diverged points are told as failed trials, which TPE steers away from.
    """
    try:
        import optuna
    except ImportError:
        raise UserError("search strategy 'tpe' needs Optuna: pip install 'optbench[tpe]'") from None
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = {
        name: FloatDistribution(d.low, d.high, log=d.log) if d.has_range else CategoricalDistribution(d.choices)
        for name, d in space.items()
    }
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
