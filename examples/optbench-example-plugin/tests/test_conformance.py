"""The example plugin checked with optbench's conformance kit, as a plugin author would."""

from __future__ import annotations

from optbench_example.plugin import optbench_optimizers, optbench_problems

from bench_core.testing import assert_optimizer_conforms, assert_problem_conforms


def test_signum_conforms():
    (spec,) = optbench_optimizers()
    assert_optimizer_conforms(spec)


def test_iris_conforms_and_its_target_is_reachable():
    (spec,) = optbench_problems()
    assert_problem_conforms(spec)
