"""optbench: a plugin-based benchmark suite for gradient-descent optimizers.

The names exported here are the public API for plugin authors; see ``bench_core.hookspecs``
for the hooks a plugin implements.
"""

from bench_core.batching import shuffled_batches
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

__all__ = [
    "MAX_ELEMENTS",
    "Budget",
    "Choice",
    "ClassificationProblem",
    "Dimension",
    "OptimizerSpec",
    "Param",
    "Problem",
    "ProblemSpec",
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
    "hookimpl",
    "shuffled_batches",
]
