"""The statistics behind reports: seed intervals, seed-noise tests, costs and performance profiles.

Pure functions of pandas objects, kept apart from the Markdown and the figures so that
each number a report prints can be tested against a hand computation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["distinguishable", "mean_interval", "performance_profile", "profile_summary", "tuned_cost"]


def mean_interval(values: pd.Series, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two ends of its Student-t confidence interval over seeds (NaNs dropped).

    With one value the interval is that value; with none, all three are NaN.
    """
    values = pd.Series(values, dtype=float).dropna()
    if values.empty:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) == 1:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def distinguishable(a: pd.Series, b: pd.Series, alpha: float = 0.05) -> bool | None:
    """Whether two sets of per-seed values differ beyond seed noise (Welch's t-test at ``alpha``).

    ``None`` when either side has fewer than two values: seed noise cannot be judged.
    Two constant, equal sides are not distinguishable; two constant, different ones are.
    """
    a, b = pd.Series(a, dtype=float).dropna(), pd.Series(b, dtype=float).dropna()
    if len(a) < 2 or len(b) < 2:
        return None
    if a.std(ddof=1) == 0 and b.std(ddof=1) == 0:
        return bool(a.iloc[0] != b.iloc[0])
    return bool(stats.ttest_ind(a, b, equal_var=False).pvalue < alpha)


def tuned_cost(trials: pd.DataFrame, cost: str = "steps_to_target",
               config_columns: Sequence[str] = ()) -> pd.DataFrame:
    """The cost of each (problem, optimizer) at its best configuration: problems x optimizers.

    For every configuration, the median over seeds of ``cost``, where a seed that failed
    (did not reach the target, diverged, errored) counts as infinite; then the minimum over
    configurations. ``inf`` means no configuration reached the target on most seeds.
    """
    values = trials[cost].where(trials["status"] == "ok").fillna(math.inf)
    keys = ["problem", "optimizer", *config_columns]
    medians = trials.assign(_cost=values).groupby(keys, dropna=False)["_cost"].median()
    return medians.groupby(level=["problem", "optimizer"]).min().unstack("optimizer")


def performance_profile(costs: pd.DataFrame, taus: Sequence[float]) -> pd.DataFrame:
    """Dolan & Moré (2002) performance profiles: taus x optimizers.

    ``costs`` is problems x optimizers (``inf`` or NaN: failed). The ratio of optimizer s
    on problem p is ``cost[p, s] / min_s cost[p, s]``; the profile ``rho_s(tau)`` is the
    fraction of problems with ratio <= tau. A problem no optimizer solved counts in the
    denominator and is solved by none, so a profile tops out at the fraction solved.
    """
    costs = costs.astype(float).fillna(math.inf)
    best = costs.min(axis=1)
    ratios = costs.div(best.where(np.isfinite(best)), axis=0).fillna(math.inf)
    solved = np.isfinite(ratios)
    profile = {name: [((ratios[name] <= tau) & solved[name]).mean() for tau in taus] for name in costs.columns}
    return pd.DataFrame(profile, index=pd.Index(list(taus), name="tau"))


def profile_summary(costs: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer: wins (ratio 1), within 2x of the best, solved at all, and a rank by those.

    Sorted best first: most wins, then most within 2x, then most solved.
    """
    profile = performance_profile(costs, [1.0, 2.0, math.inf]).T
    profile.columns = ["wins", "within_2x", "solved"]
    return profile.sort_values(["wins", "within_2x", "solved"], ascending=False)
