"""Every registered problem honours the contract the harness relies on."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny_data import write_tiny_datasets

from bench_core.runner import ProblemCache, run_trial
from bench_core.specs import Budget
from bench_core.trial import TrialConfig

#: Every built-in problem, listed here so that collecting these tests builds no catalog; the first test below
#: fails when a built-in is added or removed without this list following.
BUILTIN_PROBLEMS = [
    "ackley", "beale", "booth", "cifar10_3c3d", "digits_cnn", "digits_mlp", "fmnist_2c2d", "fmnist_logreg",
    "fmnist_mlp", "goldstein_price", "himmelblau", "least_squares", "levy", "logistic", "mnist_2c2d", "mnist_logreg",
    "mnist_mlp", "nqm", "quadratic", "rastrigin", "rosenbrock", "rosenbrock_nd", "sphere", "styblinski_tang",
    "teacher_student",
]
#: Problems reading local data sets get tiny ones: hold out fewer validation images than the defaults.
TINY_DATA_OPTIONS = {"valid_size": 10}


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory) -> Iterator[Path]:
    """Tiny copies of every local data set the built-ins read, in their official formats."""
    root = tmp_path_factory.mktemp("data")
    write_tiny_datasets(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPTBENCH_DATA_DIR", str(root))
        yield root


def _build_or_skip(cache: ProblemCache, name: str, options: dict):
    try:
        return cache.get(name, options, "cpu")
    except ValueError as exc:
        if "not found" in str(exc):  # a third-party problem whose data this test cannot write
            pytest.skip(f"{name}: local data set absent ({exc})")
        raise


def test_the_list_of_problems_tested_here_is_every_built_in(catalog):
    assert sorted(catalog.problems) == BUILTIN_PROBLEMS


#: Convolutional and wider networks on image data: seconds each, run with the slow tests.
SLOW_PROBLEMS = {"cifar10_3c3d", "fmnist_2c2d", "fmnist_mlp", "mnist_2c2d", "mnist_mlp"}


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_PROBLEMS else name
                                  for name in BUILTIN_PROBLEMS])
def test_problem_runs_and_reports_the_metric_its_target_names(name, tiny_data_dir, catalog):
    spec = catalog.problems[name]
    assert spec.description, "every problem needs a one-line description for optbench list"
    cache = ProblemCache(catalog)
    options = dict(spec.options) | {key: value for key, value in TINY_DATA_OPTIONS.items() if key in spec.options}
    problem = _build_or_skip(cache, name, options)
    batch_size = min(spec.batch_size, problem.train_size or spec.batch_size) if problem.stochastic else None
    config = TrialConfig(problem=name, optimizer="sgd", hyperparams={"lr": 1e-4}, budget=Budget("steps", 3),
                         batch_size=batch_size, problem_options=options, evals=1)
    result = run_trial(config, cache)
    assert result.status == "ok", result.error
    assert result.steps == 3 and len(result.curve) == 2
    metrics = result.final
    assert "train_loss" in metrics and all(math.isfinite(v) for v in metrics.values())
    if problem.target is not None:
        assert problem.target.metric in metrics, f"target metric {problem.target.metric!r} is never reported"
    assert problem.maximize <= set(metrics), "maximized metrics must be reported metrics"
    if spec.budget.unit == "epochs":
        assert problem.train_size, "an epoch budget needs a finite training set"
