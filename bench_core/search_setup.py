"""Follow-up set-up: the search strategy of one optimizer on one problem, and the follow-ups it needs.

Expansion (:mod:`bench_core.suite`) lays out the trials known up front; what a sweep can only
name once scores come in (an adaptive search's next points, the trials that carry a tuned
configuration to other batch sizes) is a :class:`~bench_core.followups.FollowUp`. This module
resolves the ``search``, ``trials`` and ``random_seed`` settings into a strategy, a budget and a
seed, builds the search space, and constructs those follow-ups from a function that makes trials.
"""

from __future__ import annotations

import functools
import itertools
import zlib
from collections.abc import Callable
from typing import Any

from bench_core.catalog import Catalog
from bench_core.errors import UserError
from bench_core.followups import AdaptiveSearch, BatchSizeTransfer, Scores
from bench_core.specs import Choice, Dimension, OptimizerSpec, SearchSpec
from bench_core.trial import TrialConfig
from bench_core.values import MAX_SEARCH_POINTS, integers, strings

#: Looks a setting up through the suite's layers: ``pick(key, default) -> (where, value)``.
Pick = Callable[[str, Any], tuple[str, Any]]
#: Makes the trials (one per seed) of a hyperparameter point at a batch size and schedule.
MakeTrials = Callable[[dict[str, Any], int | None, str], list[TrialConfig]]


def search_strategy(pick: Pick, catalog: Catalog, problem_name: str,
                    optimizer_name: str) -> tuple[SearchSpec, int, int]:
    """The search strategy, its per-optimizer trial budget and its seed for one optimizer on one problem."""
    where_search, name = pick("search", "grid")
    where_count, count = pick("trials", None)
    try:
        spec = catalog.get("search strategy", strings(name, f"{where_search} search")[0])
    except UserError as exc:
        raise UserError(f"{where_search} search: {exc}") from None
    if count is None:
        if spec.name != "grid":
            raise UserError(f"{where_search} search = {spec.name!r} needs a trial budget: trials = N")
        count = 0
    else:
        count = integers(count, f"{where_count} trials", minimum=1, scalar=True, maximum=MAX_SEARCH_POINTS)[0]
    where, value = pick("random_seed", 0)
    random_seed = integers(value, f"{where} random_seed", minimum=0, scalar=True)[0]
    return spec, count, zlib.crc32(f"{random_seed}/{problem_name}/{optimizer_name}".encode())


def search_space(ospec: OptimizerSpec, grids: dict[str, list[Any]], given: set[str]) -> dict[str, Dimension]:
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


def adaptive_searches(strategy: SearchSpec, space: dict[str, Dimension], count: int, seed: int, make: MakeTrials,
                      batch_sizes: list[int | None], schedules: list[str], seeds: int) -> list[AdaptiveSearch]:
    """One adaptive search for each batch size and schedule, each proposing points as scores come in."""
    return [AdaptiveSearch(strategy, space, count, seed,
                           functools.partial(make, batch_size=batch_size, schedule=schedule), seeds)
            for batch_size, schedule in itertools.product(batch_sizes, schedules)]


def batch_size_transfer(tuned: list[TrialConfig], searches: list[AdaptiveSearch], sizes: list[int], seeds: int,
                        make: MakeTrials, unscale: Callable[[float, int | None], float]) -> BatchSizeTransfer:
    """The follow-up that runs the best tuned configuration at each of ``sizes``.

    The tuned trials are ``tuned`` (a grid or random search) or, with adaptive ``searches``,
    theirs once every one is complete. The best one's learning rate is unscaled from its
    batch size, and scaled again for each transfer size by ``make``.
    """
    def source(scores: Scores) -> list[TrialConfig] | None:
        if not searches:
            return tuned
        found = [adaptive.complete(scores) for adaptive in searches]
        return None if any(f is None for f in found) else [c for f in found for c in f]

    def transfer(best: TrialConfig) -> list[TrialConfig]:
        point = dict(best.hyperparams) | {"lr": unscale(best.hyperparams["lr"], best.batch_size)}
        return [c for size in sizes for c in make(point, size, best.schedule)]

    return BatchSizeTransfer(source, transfer, len(sizes) * seeds)
