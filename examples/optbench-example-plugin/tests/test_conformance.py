"""The example plugin checked with optbench's conformance kit, as a plugin author would.

One pytest test per check (``test_conforms[signum-respects_lr]``, ...,
``test_conforms[iris-target_reachable]``): ``pytest -k respects_lr`` runs one check, and a
failure names the check that failed. Iris's slow check (a reference Adam reaching the target
within the default budget) is included.
"""

from __future__ import annotations

from optbench_example.plugin import optbench_optimizers, optbench_problems

from bench_core.testing import parametrize_with_checks


@parametrize_with_checks([*optbench_optimizers(), *optbench_problems()])
def test_conforms(spec, check):
    check()
