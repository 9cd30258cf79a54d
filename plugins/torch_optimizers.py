"""The torch.optim optimizers, wrapped as optbench specs.

Each entry names a torch class, its default learning rate with a log-scaled search range,
and the hyperparameters a sweep may vary. Values that define the method rather than tune
it (``nesterov=True``) are ``fixed``, so ``momentum`` and ``nesterov`` are two optimizers,
not one optimizer with a boolean axis. Learning-rate defaults follow common practice per
family; the momentum methods default to 0.01 so that their effective step size
``lr / (1 - momentum)`` equals plain SGD's 0.1.

L-BFGS is the one second-order baseline. One optbench step is one L-BFGS iteration
(``max_iter=1``): a direction from the last ``history_size`` curvature pairs and a
strong-Wolfe line search along it, which evaluates the loss and gradient through the
closure as often as the search needs (``needs_closure=True``; the runner counts every
evaluation). With a line search the learning rate is the first trial step, so 1.0 (the
natural quasi-Newton step) is its default. It is a deterministic method: on mini-batches
each step searches along one batch's loss, so it belongs on full-batch problems.

Every first-order entry also names its batched form (``batched=``, from
:mod:`bench_core.plugins.batched_optimizers`), which steps a group of trials that differ in
hyperparameters in one call and matches torch.optim row by row, bit for bit on the CPU.
L-BFGS has none: its line search makes each trial's number of evaluations its own.
"""

from __future__ import annotations

from functools import partial

import torch

from bench_core import OptimizerSpec, Param, betas_to_kwargs, hookimpl
from bench_core.plugins.batched_optimizers import (
    BatchedAdagrad,
    BatchedAdam,
    BatchedAdamW,
    BatchedRMSprop,
    BatchedSGD,
)

#: The plugin contract this module is written for (see bench_core.hookspecs).
OPTBENCH_CONTRACT = 1

# Shared search spaces. beta2 and alpha stay linear: a log scale is for values spread over
# decades, and these live just below 1.
BETA1 = Param(0.9, 0.0, 0.99)
BETA2 = Param(0.999, 0.9, 0.9999)
EPS = Param(1e-8, 1e-10, 1e-4, log=True)
MOMENTUM = Param(0.9, 0.0, 0.99)
# torch refuses nesterov=True with zero momentum, so its range stays away from 0.
NESTEROV_MOMENTUM = Param(0.9, 0.1, 0.99)
# L-BFGS evaluations per step: the one it starts from plus up to 25 for the line search (the cap torch's
# strong-Wolfe search has on its own). torch caps the search at max_eval minus the evaluations made, and its
# default max_eval (max_iter * 5 // 4) is 1 at max_iter=1: the search could then never shorten a failed first
# trial, would return a zero step, and L-BFGS would repeat that zero step for good.
LBFGS_MAX_EVAL = 26
# Conformance checks that do not apply to L-BFGS, with the reason (shown by the kit and check-plugin).
LBFGS_EXEMPT = {
    "param_groups": "torch.optim.LBFGS supports a single parameter group (it raises on per-group options)",
    "respects_lr": "with a strong-Wolfe line search lr is only each search's first trial step; the search picks the "
                   "step length (extrapolating up to 10x a trial), so a 10x smaller lr need not halve the distance",
}


def _lr(default: float, low: float, high: float) -> Param:
    return Param(default, low, high, log=True)


@hookimpl
def optbench_optimizers() -> list[OptimizerSpec]:
    """The torch.optim baselines every sweep compares against: seven first-order methods and L-BFGS."""
    adam = {"beta1": BETA1, "beta2": BETA2, "eps": EPS}
    return [
        OptimizerSpec("sgd", torch.optim.SGD, _lr(0.1, 1e-4, 10.0), fixed={"momentum": 0.0},
                      batched=partial(BatchedSGD, momentum=0.0),
                      description="Plain stochastic gradient descent: p -= lr * g."),
        OptimizerSpec("momentum", torch.optim.SGD, _lr(0.01, 1e-5, 1.0), {"momentum": MOMENTUM}, batched=BatchedSGD,
                      description="SGD with heavy-ball momentum (Polyak)."),
        OptimizerSpec("nesterov", torch.optim.SGD, _lr(0.01, 1e-5, 1.0), {"momentum": NESTEROV_MOMENTUM},
                      fixed={"nesterov": True}, batched=partial(BatchedSGD, nesterov=True),
                      description="SGD with Nesterov momentum (look-ahead gradient)."),
        OptimizerSpec("adam", torch.optim.Adam, _lr(1e-3, 1e-5, 1e-1), adam, to_kwargs=betas_to_kwargs,
                      batched=BatchedAdam,
                      description="Adam: momentum plus per-coordinate scaling by the RMS of past gradients."),
        OptimizerSpec("adamw", torch.optim.AdamW, _lr(1e-3, 1e-5, 1e-1),
                      adam | {"weight_decay": Param(0.01, 1e-4, 1.0, log=True)}, to_kwargs=betas_to_kwargs,
                      batched=BatchedAdamW,
                      description="AdamW: Adam with decoupled weight decay."),
        OptimizerSpec("rmsprop", torch.optim.RMSprop, _lr(1e-3, 1e-5, 1e-1),
                      {"alpha": Param(0.99, 0.9, 0.999), "eps": EPS, "momentum": Param(0.0, 0.0, 0.99)},
                      batched=BatchedRMSprop,
                      description="RMSprop: gradient divided by a running RMS of its recent values."),
        OptimizerSpec("adagrad", torch.optim.Adagrad, _lr(1e-2, 1e-4, 1.0),
                      {"eps": Param(1e-10, 1e-12, 1e-4, log=True)}, batched=BatchedAdagrad,
                      description="Adagrad: per-coordinate steps shrinking with the sum of squared gradients."),
        OptimizerSpec("lbfgs", torch.optim.LBFGS, _lr(1.0, 1e-2, 10.0),
                      fixed={"max_iter": 1, "max_eval": LBFGS_MAX_EVAL, "history_size": 10,
                             "line_search_fn": "strong_wolfe"},
                      needs_closure=True, exempt=LBFGS_EXEMPT,
                      description="L-BFGS with a strong-Wolfe line search, one iteration per step: a deterministic "
                                  "(full-batch) method; each step may evaluate the gradient several times."),
    ]
