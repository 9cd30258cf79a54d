"""The torch.optim optimizers, wrapped as optbench specs.

Each entry names a torch class, its default learning rate with a log-scaled search range,
and the hyperparameters a sweep may vary. Values that define the method rather than tune
it (``nesterov=True``) are ``fixed``, so ``momentum`` and ``nesterov`` are two optimizers,
not one optimizer with a boolean axis. Learning-rate defaults follow common practice per
family; the momentum methods default to 0.01 so that their effective step size
``lr / (1 - momentum)`` equals plain SGD's 0.1.
"""

from __future__ import annotations

import torch

from bench_core import OptimizerSpec, Param, betas_to_kwargs, hookimpl

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


def _lr(default: float, low: float, high: float) -> Param:
    return Param(default, low, high, log=True)


@hookimpl
def optbench_optimizers() -> list[OptimizerSpec]:
    """The seven torch.optim baselines every sweep compares against."""
    adam = {"beta1": BETA1, "beta2": BETA2, "eps": EPS}
    return [
        OptimizerSpec("sgd", torch.optim.SGD, _lr(0.1, 1e-4, 10.0), fixed={"momentum": 0.0},
                      description="Plain stochastic gradient descent: p -= lr * g."),
        OptimizerSpec("momentum", torch.optim.SGD, _lr(0.01, 1e-5, 1.0), {"momentum": MOMENTUM},
                      description="SGD with heavy-ball momentum (Polyak)."),
        OptimizerSpec("nesterov", torch.optim.SGD, _lr(0.01, 1e-5, 1.0), {"momentum": NESTEROV_MOMENTUM},
                      fixed={"nesterov": True}, description="SGD with Nesterov momentum (look-ahead gradient)."),
        OptimizerSpec("adam", torch.optim.Adam, _lr(1e-3, 1e-5, 1e-1), adam, to_kwargs=betas_to_kwargs,
                      description="Adam: momentum plus per-coordinate scaling by the RMS of past gradients."),
        OptimizerSpec("adamw", torch.optim.AdamW, _lr(1e-3, 1e-5, 1e-1),
                      adam | {"weight_decay": Param(0.01, 1e-4, 1.0, log=True)}, to_kwargs=betas_to_kwargs,
                      description="AdamW: Adam with decoupled weight decay."),
        OptimizerSpec("rmsprop", torch.optim.RMSprop, _lr(1e-3, 1e-5, 1e-1),
                      {"alpha": Param(0.99, 0.9, 0.999), "eps": EPS, "momentum": Param(0.0, 0.0, 0.99)},
                      description="RMSprop: gradient divided by a running RMS of its recent values."),
        OptimizerSpec("adagrad", torch.optim.Adagrad, _lr(1e-2, 1e-4, 1.0),
                      {"eps": Param(1e-10, 1e-12, 1e-4, log=True)},
                      description="Adagrad: per-coordinate steps shrinking with the sum of squared gradients."),
    ]
