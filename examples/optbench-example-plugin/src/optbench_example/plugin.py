"""One optimizer and one problem, registered with optbench through the ``optbench`` entry point.

This module is what ``[project.entry-points.optbench] example = "optbench_example.plugin"``
in ``pyproject.toml`` points at: optbench imports it and calls the hooks marked
``@hookimpl``. It uses only optbench's public API, exactly like the built-in plugins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from bench_core import Budget, ClassificationProblem, OptimizerSpec, Param, ProblemSpec, Target, hookimpl

#: The optbench plugin contract this module is written for.
OPTBENCH_CONTRACT = 1


class Signum(torch.optim.Optimizer):
    """Signum (Bernstein et al. 2018, "signSGD"): step along the sign of a momentum average.

    ``m <- momentum * m + (1 - momentum) * g``, then ``p <- p - lr * sign(m)``. Every
    coordinate moves by exactly ``lr`` (or not at all), whatever the gradient's scale,
    which makes it robust to badly scaled problems and cheap to communicate.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.9) -> None:
        if lr < 0:
            raise ValueError(f"lr={lr} must be >= 0")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum={momentum} must lie in [0, 1)")
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buffer = state["momentum_buffer"]
                buffer.mul_(group["momentum"]).add_(p.grad, alpha=1 - group["momentum"])
                p.add_(buffer.sign(), alpha=-group["lr"])
        return loss


@hookimpl
def optbench_optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec(
            "signum", Signum,
            lr=Param(1e-3, 1e-5, 1e-1, log=True),
            hyperparams={"momentum": Param(0.9, 0.0, 0.99)},
            description="Signum: sign of a momentum average (Bernstein et al. 2018); example plugin package",
        )
    ]


def iris_splits() -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """scikit-learn's bundled Iris, split 88/30/31 by a fixed permutation, standardised with training statistics.

    Two of Iris's 150 flowers are exact duplicates; one copy is dropped first (149 remain),
    or the pair could land in training and test at once (the conformance kit caught this).
    """
    from sklearn.datasets import load_iris

    data = load_iris()
    _, first = np.unique(data.data, axis=0, return_index=True)
    keep = np.sort(first)
    X, y = data.data[keep], data.target[keep]
    order = np.random.RandomState(0).permutation(len(y))
    parts = order[:88], order[88:118], order[118:]
    mean, std = X[parts[0]].mean(0), X[parts[0]].std(0)
    return tuple((torch.tensor((X[idx] - mean) / std, dtype=torch.float32), torch.tensor(y[idx])) for idx in parts)


def build_iris(device: torch.device | str = "cpu", hidden: int = 0) -> ClassificationProblem:
    """Softmax regression (``hidden = 0``) or a one-hidden-layer MLP on Iris."""
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 0:
        raise ValueError(f"hidden={hidden!r} is invalid: expected an integer >= 0")

    def model() -> nn.Module:
        if hidden == 0:
            return nn.Linear(4, 3)
        return nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    problem = ClassificationProblem(*iris_splits(), device=device, model_factory=model)
    problem.target = Target("valid_accuracy", 0.9)
    return problem


@hookimpl
def optbench_problems() -> list[ProblemSpec]:
    return [
        ProblemSpec(
            "iris", build_iris, options={"hidden": 0},
            description="Softmax regression on scikit-learn's Iris (duplicate dropped, fixed 88/30/31 split); "
                        "target valid accuracy 0.9; example plugin package",
            batch_size=16, budget=Budget("epochs", 50),
        )
    ]
