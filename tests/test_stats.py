"""Report statistics against hand computations."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench_core.configuration import tuned_cost, with_identity
from bench_core.stats import distinguishable, identical, mean_interval, performance_profile, profile_summary

INF = math.inf


def test_mean_interval_is_the_student_t_interval():
    mean, low, high = mean_interval(pd.Series([1.0, 2.0, 3.0, None]))
    # t_{0.975, 2} = 4.30265273 (tables give 4.303); s = 1; n = 3
    half = 4.30265273 / math.sqrt(3)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half), rel=1e-8)
    assert mean_interval(pd.Series([5.0])) == (5.0, 5.0, 5.0)
    assert all(math.isnan(v) for v in mean_interval(pd.Series([], dtype=float)))


def test_distinguishable_follows_welch():
    assert distinguishable([1.0, 1.1, 0.9], [5.0, 5.1, 4.9]) is True
    assert distinguishable([1.0, 2.0, 3.0], [1.5, 2.5, 3.5]) is False
    assert distinguishable([1.0], [2.0, 3.0]) is None
    assert distinguishable([1.0, 1.0], [1.0, 1.0]) is False
    assert distinguishable([1.0, 1.0], [2.0, 2.0]) is True
    # rounding noise is not seed noise: equal up to 1e-16 is equal, a real gap is a difference
    assert distinguishable([3.283, 3.283 + 4e-16], [3.283, 3.283]) is False
    assert distinguishable([3.283, 3.283 + 4e-16], [3.3, 3.3]) is True


def test_identical_means_equal_up_to_rounding_only():
    assert identical([3.283, 3.283 + 5e-16, 3.283 - 4e-16])
    assert identical([0.0, 0.0])
    assert not identical([3.283, 3.284])
    assert not identical([1e-12, 2e-12])  # tiny values that differ by 2x are different
    assert not identical([5.0])  # one value is one seed, not agreement


def test_intervals_stay_inside_the_metric_range_and_keep_the_t_interval_otherwise():
    from scipy import stats

    accuracies = [0.99, 0.90]  # mean 0.945; t half-width with 2 seeds is 0.572: [0.373, 1.517] unbounded
    half = stats.t.ppf(0.975, 1) * pd.Series(accuracies).std(ddof=1) / math.sqrt(2)
    mean, low, high = mean_interval(accuracies, bounds=(0.0, 1.0))
    assert (mean, low, high) == pytest.approx((0.945, 0.945 - half, 1.0))
    assert mean_interval([0.01, 0.30], bounds=(0.0, math.inf))[1] == 0.0  # a loss interval never goes negative
    # where the range does not bind, the interval is Student's t unchanged
    assert mean_interval([1.0, 2.0, 3.0], bounds=(-10.0, 10.0)) == pytest.approx(mean_interval([1.0, 2.0, 3.0]))
    # seeds that agree up to rounding give the value itself, not a spread of 1e-16
    assert mean_interval([3.283, 3.283 + 4e-16, 3.283]) == pytest.approx((3.283, 3.283, 3.283), abs=0)


def test_performance_profile_of_a_hand_made_example():
    # Three problems, three optimizers. Ratios to the best per problem:
    #   p1: a 10 (1), b 20 (2), c 40 (4)
    #   p2: a inf,    b 30 (1), c 45 (1.5)
    #   p3: nobody solves it
    costs = pd.DataFrame({"a": [10, INF, INF], "b": [20, 30, INF], "c": [40, 45, math.nan]},
                         index=["p1", "p2", "p3"])
    profile = performance_profile(costs, [1.0, 1.5, 2.0, 4.0, 100.0])
    expected = pd.DataFrame({"a": [1 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 3],
                             "b": [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3],
                             "c": [0.0, 1 / 3, 1 / 3, 2 / 3, 2 / 3]},
                            index=pd.Index([1.0, 1.5, 2.0, 4.0, 100.0], name="tau"))
    pd.testing.assert_frame_equal(profile, expected)
    summary = profile_summary(costs)
    assert list(summary.index) == ["b", "a", "c"]
    assert summary.loc["b"].tolist() == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    assert summary.loc["c"].tolist() == pytest.approx([0.0, 1 / 3, 2 / 3])


def test_tuned_cost_takes_the_median_over_seeds_then_the_best_configuration():
    rows = [  # problem, optimizer, lr, seed, status, steps_to_target
        ("p", "a", 0.1, 0, "ok", 10), ("p", "a", 0.1, 1, "ok", 30), ("p", "a", 0.1, 2, "ok", None),
        ("p", "a", 1.0, 0, "ok", 5), ("p", "a", 1.0, 1, "diverged", 1), ("p", "a", 1.0, 2, "ok", None),
        ("p", "b", 0.1, 0, "error", 1), ("p", "b", 0.1, 1, "ok", None), ("p", "b", 0.1, 2, "ok", None),
    ]
    trials = with_identity(pd.DataFrame(rows, columns=["problem", "optimizer", "hp.lr", "seed", "status",
                                                       "steps_to_target"]))
    costs = tuned_cost(trials).unstack("optimizer")
    assert costs.loc["p", "a"] == 30  # lr 0.1: median of (10, 30, inf); lr 1.0: median of (5, inf, inf) = inf
    assert costs.loc["p", "b"] == INF
