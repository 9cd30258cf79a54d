"""The statistics behind reports: seed intervals, seed-noise tests and performance profiles.

Pure functions of pandas objects, kept apart from the Markdown and the figures so that
each number a report prints can be tested against a hand computation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["IDENTICAL_TOLERANCE", "distinguishable", "identical", "mean_interval", "performance_profile",
           "profile_summary"]

#: Values whose spread is at most this fraction of their magnitude count as identical: seeds of a
#: deterministic problem agree up to floating-point rounding (a spread of 1e-16 is not seed noise).
IDENTICAL_TOLERANCE = 1e-9


def identical(values: Sequence[float] | pd.Series) -> bool:
    """Whether all (non-NaN) values agree up to rounding; ``False`` for fewer than two values."""
    values = pd.Series(values, dtype=float).dropna()
    if len(values) < 2:
        return False
    scale = float(values.abs().max())
    return float(values.max() - values.min()) <= IDENTICAL_TOLERANCE * scale


def mean_interval(values: Sequence[float] | pd.Series, confidence: float = 0.95,
                  bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float, float]:
    """Mean and the two ends of its confidence interval over seeds (NaNs dropped).

    The interval is Student's t over seeds, intersected with ``bounds``, the range the
    metric can take (an accuracy lies in [0, 1], a cross-entropy is non-negative). The
    intersection keeps the interval's coverage: the true mean lies inside the range, so
    whenever the t-interval covers it, the intersection does too. With one value, or
    values identical up to rounding, the interval is the mean itself; with none, all three
    are NaN.
    """
    values = pd.Series(values, dtype=float).dropna()
    if values.empty:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) == 1 or identical(values):
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    low, high = bounds
    return mean, max(mean - half, low), min(mean + half, high)


def distinguishable(a: Sequence[float] | pd.Series, b: Sequence[float] | pd.Series, alpha: float = 0.05) -> bool | None:
    """Whether two sets of per-seed values differ beyond seed noise (Welch's t-test at ``alpha``).

    ``None`` when either side has fewer than two values: seed noise cannot be judged.
    Two sides each identical across seeds (up to rounding) are distinguishable exactly
    when their values differ.
    """
    a, b = pd.Series(a, dtype=float).dropna(), pd.Series(b, dtype=float).dropna()
    if len(a) < 2 or len(b) < 2:
        return None
    if identical(a) and identical(b):
        return not identical([a.mean(), b.mean()])
    return bool(stats.ttest_ind(a, b, equal_var=False).pvalue < alpha)


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
