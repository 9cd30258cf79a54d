"""Lion, written by hand: the model to copy when you add your own optimizer to optbench.

Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms") keeps one
momentum buffer ``m`` and moves every coordinate by exactly ``lr`` in the direction of the
sign of an interpolation between ``m`` and the gradient ``g``::

    c = beta1 * m + (1 - beta1) * g
    p = p * (1 - lr * weight_decay) - lr * sign(c)
    m = beta2 * m + (1 - beta2) * g

Adding an optimizer takes three steps, all shown in this file:

1. **Write a** ``torch.optim.Optimizer`` **subclass.** Pass the hyperparameters to the base
   class as ``defaults``; it builds the param groups (so per-group settings and learning-
   rate schedules work) and saves and loads ``self.state`` in ``state_dict``, as long as
   per-parameter state lives there. Create that state lazily on the first step, skip
   parameters whose ``grad`` is ``None``, and reject bad hyperparameters with
   ``ValueError`` up front rather than producing NaNs a thousand steps later.

2. **Describe it with an** :class:`bench_core.OptimizerSpec`: a name, the class, the
   learning rate as a :class:`bench_core.Param` (default and search range), and every other
   tunable value. Sweeps and the command line use flat names (``--beta1 0.95``);
   ``to_kwargs`` maps them onto the constructor, here ``beta1``/``beta2`` to ``betas``.

3. **Return the spec from a** ``@hookimpl`` **function named** ``optbench_optimizers`` and
   make the module known to optbench, either for one run with
   ``optbench run --plugins path/to/my_optimizer.py ...`` or, in a package, with an entry
   point in its ``pyproject.toml``::

       [project.entry-points.optbench]
       my_optimizer = "my_package.my_optimizer"

   ``optbench list`` then shows the optimizer and the plugin it came from.

Import only from ``bench_core`` itself (``hookimpl``, ``OptimizerSpec``, ``Param``,
``betas_to_kwargs``): that is the public API, the same one the built-in plugins use.

Optionally, give the spec a ``batched=`` factory: a :class:`bench_core.BatchedOptimizer` that
steps a whole group of trials (differing in hyperparameters) in one call, matching the
optimizer row by row, so that sweeps can run the group as one computation. Lion's,
``BatchedLion``, sits with the built-in torch ones in ``bench_core.plugins.batched_optimizers``,
written against the same public API (``BatchedOptimizer``, ``per_trial``); a plugin of your own
would define its batched class next to its optimizer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from bench_core import OptimizerSpec, Param, betas_to_kwargs, hookimpl
from bench_core.plugins.batched_optimizers import BatchedLion

#: The plugin contract this module is written for (see bench_core.hookspecs).
OPTBENCH_CONTRACT = 1


class Lion(torch.optim.Optimizer):
    """EvoLved Sign Momentum: a sign update of an interpolated momentum, with decoupled weight decay.

    Because every coordinate moves by ``lr``, Lion wants a learning rate 3-10x smaller than
    AdamW's and a weight decay 3-10x larger, for the same effective decay ``lr * weight_decay``.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Check a group's hyperparameters (its own or the defaults) before adding it.

        The base class routes the constructor's groups through here as well, so one check
        covers ``Lion(params, lr=-1)`` and ``Lion([{"params": ..., "lr": -1}])`` alike.
        """
        settings = self.defaults | param_group
        _check_hyperparameters(settings["lr"], settings["betas"], settings["weight_decay"])
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Take one optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, weight_decay = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if grad.is_sparse:
                    raise RuntimeError("Lion does not support sparse gradients")
                state = self.state[param]
                if not state:
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                exp_avg = state["exp_avg"]
                if weight_decay != 0:  # decoupled: shrink the weights, leave the gradient alone
                    param.mul_(1 - lr * weight_decay)
                update = exp_avg.mul(beta1).add_(grad, alpha=1 - beta1).sign_()  # sign(c)
                param.add_(update, alpha=-lr)
                exp_avg.mul_(beta2).add_(grad, alpha=1 - beta2)  # m, updated in place: it is the state
        return loss


def _check_hyperparameters(lr: float, betas: tuple[float, float], weight_decay: float) -> None:
    # Written as "not x >= 0" so that NaN fails too.
    if not lr >= 0.0:
        raise ValueError(f"Lion: invalid learning rate lr={lr} (must be >= 0)")
    if len(betas) != 2:
        raise ValueError(f"Lion: betas must be a pair (beta1, beta2), got {betas!r}")
    for index, beta in enumerate(betas, start=1):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Lion: invalid beta{index}={beta} (must be in [0, 1))")
    if not weight_decay >= 0.0:
        raise ValueError(f"Lion: invalid weight_decay={weight_decay} (must be >= 0)")


@hookimpl
def optbench_optimizers() -> list[OptimizerSpec]:
    """Register Lion with the search ranges a sweep draws from."""
    return [
        OptimizerSpec(
            "lion",
            Lion,
            lr=Param(1e-4, 1e-6, 1e-1, log=True),
            hyperparams={
                "beta1": Param(0.9, 0.0, 0.99),
                "beta2": Param(0.99, 0.9, 0.9999),
                "weight_decay": Param(0.0, 0.0, 1.0),
            },
            to_kwargs=betas_to_kwargs,
            batched=BatchedLion,
            description="Lion: sign of interpolated momentum, decoupled weight decay (Chen et al. 2023).",
        )
    ]
