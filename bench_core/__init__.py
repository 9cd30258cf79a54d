"""optbench: a plugin-based benchmark suite for gradient-descent optimizers.

The names exported here are the public API: for plugin authors (specs, ``hookimpl``; see
``bench_core.hookspecs`` for the hooks a plugin implements) and for scripts and notebooks
(``run``, ``plan``, ``load_trials``, ``load_curves``, ``write_reports``, ``compare_files``,
``RunContext``; see :mod:`bench_core.api`), the latter imported on first use.
"""

from typing import Any

from bench_core.batched import BatchedOptimizer, per_trial
from bench_core.batching import shuffled_batches, stacked_shuffled_batches
from bench_core.classification import ClassificationProblem
from bench_core.hookspecs import hookimpl
from bench_core.options import MAX_ELEMENTS, check_elements, check_integer, check_number
from bench_core.specs import (
    Budget,
    Choice,
    Dimension,
    OptimizerSpec,
    Param,
    Problem,
    ProblemSpec,
    ScheduleSpec,
    SearchSpec,
    Target,
    betas_to_kwargs,
)
from bench_core.trial import TrialConfig, TrialResult

__version__ = "0.1.0"

#: The run API, imported when first used (it pulls in the driver, the store and pandas).
_API = {"run": "bench_core.api", "plan": "bench_core.api", "load_trials": "bench_core.api",
        "load_curves": "bench_core.api", "write_reports": "bench_core.api", "compare_files": "bench_core.api",
        "RunOutcome": "bench_core.api", "RunContext": "bench_core.context"}


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'bench_core' has no attribute {name!r}")

__all__ = [
    "MAX_ELEMENTS",
    "BatchedOptimizer",
    "Budget",
    "Choice",
    "ClassificationProblem",
    "Dimension",
    "OptimizerSpec",
    "Param",
    "Problem",
    "ProblemSpec",
    "RunContext",
    "RunOutcome",
    "ScheduleSpec",
    "SearchSpec",
    "Target",
    "TrialConfig",
    "TrialResult",
    "__version__",
    "betas_to_kwargs",
    "check_elements",
    "check_integer",
    "check_number",
    "compare_files",
    "hookimpl",
    "load_curves",
    "load_trials",
    "per_trial",
    "plan",
    "run",
    "shuffled_batches",
    "stacked_shuffled_batches",
    "write_reports",
]
