"""The noisy quadratic model (NQM) of Zhang et al. (2019), the standard model for batch-size effects.

Zhang, Li, Nado, Martens, Sachdeva, Dahl, Shallue & Grosse, "Which algorithmic choices
matter at which batch sizes? Insights from a noisy quadratic model" (NeurIPS 2019) show
that a quadratic with a power-law spectrum and curvature-aligned gradient noise predicts
what large real networks do as the batch grows: steps to a target fall in proportion to
the batch size up to a *critical batch size*, then flatten, and momentum, Adam-style
preconditioning and schedules move that critical batch size. Here that model is a
problem like any other, so the effect shows up in real runs and reports:

    L(x) = 1/2 sum_i h_i x_i^2,   h_i = i^(-power),   i = 1..dim,

with the stochastic gradient ``H x + xi``, ``xi ~ N(0, noise^2 H / B)`` (the paper's
``C = H``, scaled by ``noise^2``). Start ``x0 = (1, ..., 1)``; minimum 0 at the origin.

For plain SGD the expected loss has an exact recursion per coordinate,
``E[x_i^2]_{t+1} = (1 - lr h_i)^2 E[x_i^2]_t + lr^2 noise^2 h_i / B``, which
:meth:`NQM.expected_sgd_loss` evaluates: runs can be checked against theory.

Defaults (dim 1000, power 1, noise 1, target L <= 0.1 L(x0), 1000 steps) are sized from
that recursion, at each batch size's best learning rate: B = 1 needs about 3340 steps
(over budget), B = 4 about 890, B = 16 about 280, B = 64 about 210, B = 256 about 190,
so steps fall nearly in proportion to B up to B ~ 16 and barely move past B ~ 64.
"""

from __future__ import annotations

import torch

from bench_core import Budget, ProblemSpec, Target, hookimpl
from bench_core.options import MAX_ELEMENTS, check_integer, check_number
from bench_core.problems.analytic import AnalyticProblem

#: The plugin contract this module is written for (see bench_core.hookspecs).
OPTBENCH_CONTRACT = 1

__all__ = ["NQM", "NQM_TARGET_FRACTION", "build_nqm", "optbench_problems"]

#: The target: the loss falls to this fraction of its starting value.
NQM_TARGET_FRACTION = 0.1


class NQM(AnalyticProblem):
    """The noisy quadratic model; ``eigenvalues`` holds ``h`` (float32, on the device). See the module docstring."""

    def __init__(self, dim: int = 1000, power: float = 1.0, noise: float = 1.0,
                 device: torch.device | str = "cpu") -> None:
        check_integer("dim", dim, minimum=1, maximum=MAX_ELEMENTS)
        check_number("power", power, minimum=0.0)
        self.power = float(power)
        self.eigenvalues64 = torch.arange(1, int(dim) + 1, dtype=torch.float64) ** -self.power
        self.eigenvalues = self.eigenvalues64.to(device=device, dtype=torch.float32)
        super().__init__(torch.ones(int(dim)), torch.zeros(1, int(dim)), noise, device)
        self.initial_loss = 0.5 * float(self.eigenvalues64.sum())
        self.target = Target("train_loss", NQM_TARGET_FRACTION * self.initial_loss)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.eigenvalues * x**2).sum(-1)

    def noise_scale(self) -> torch.Tensor:
        return self.eigenvalues.sqrt()

    def expected_sgd_loss(self, lr: float, batch_size: int, steps: int) -> list[float]:
        """``E[L(x_t)]`` for t = 0..steps under plain SGD at ``lr`` and ``batch_size``, exactly (float64).

        Each coordinate evolves independently, ``x <- (1 - lr h) x - lr xi``, so its second
        moment follows ``m <- (1 - lr h)^2 m + lr^2 noise^2 h / B`` from ``m_0 = 1``.
        """
        h = self.eigenvalues64
        second_moment = torch.ones_like(h)
        losses = [0.5 * float((h * second_moment).sum())]
        for _ in range(steps):
            second_moment = (1 - lr * h) ** 2 * second_moment + lr**2 * self.noise**2 * h / batch_size
            losses.append(0.5 * float((h * second_moment).sum()))
        return losses


def build_nqm(device: torch.device | str = "cpu", dim: int = 1000, power: float = 1.0, noise: float = 1.0) -> NQM:
    """The ``nqm`` spec's builder: options are validated, a bad one raises ValueError."""
    return NQM(dim=dim, power=power, noise=noise, device=device)


@hookimpl
def optbench_problems() -> list[ProblemSpec]:
    return [
        ProblemSpec(
            "nqm", build_nqm, options={"dim": 1000, "power": 1.0, "noise": 1.0},
            description="Noisy quadratic model (Zhang et al. 2019): h_i = i^-power, noise covariance noise^2 H / B; "
                        "target L <= 0.1 L(x0)",
            batch_size=16, budget=Budget("steps", 1000),
        ),
    ]
