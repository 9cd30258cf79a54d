"""Analytic test functions as problems: a point in R^d rolling on a known surface.

They are the cheapest problems in the suite and the only ones with exact answers: the
minimiser and the minimum are known, so the distance still to go is a metric, and an
optimizer's behaviour can be checked against theory (the contraction rate of gradient
descent on a quadratic, the noise floor of SGD at a given batch size).

Stochastic mode models mini-batch noise without data: a "batch" of size B is a noise
vector xi ~ N(0, sigma^2 C / B) drawn from the trial's generator, and the training loss
is ``f(x) + xi . x``, whose gradient ``grad f(x) + xi`` is unbiased with a variance that
falls as 1/B, exactly as averaging B independent per-sample gradients would.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from bench_core import Budget, Problem, ProblemSpec, Target, hookimpl

__all__ = ["AnalyticProblem", "NoisyQuadratic", "Rosenbrock", "optbench_problems"]

#: The quadratic's target as a fraction of f(x0); see :class:`NoisyQuadratic`.
QUADRATIC_TARGET_FRACTION = 3e-4


class Point(torch.nn.Module):
    """The "model" of an analytic problem: one trainable point ``x`` in R^d."""

    def __init__(self, start: torch.Tensor) -> None:
        super().__init__()
        self.x = torch.nn.Parameter(start.detach().clone().float())

    def forward(self) -> torch.Tensor:
        return self.x


class AnalyticProblem(Problem):
    """Base class: minimise a closed-form ``f`` over one point, optionally with gradient noise.

    Subclasses pass ``start`` (a deterministic start point: every seed starts from the same
    place, so seeds differ only in their noise) and ``minimisers`` (one known global
    minimiser per row) to ``__init__`` and implement :meth:`f`. They may override
    :meth:`noise_scale` to shape the noise covariance, ``C = diag(noise_scale()**2)``, the
    identity by default; ``__init__`` calls it once, so set what it needs before that.

    With ``noise == 0`` the problem is deterministic (:attr:`stochastic` is ``False``): the
    batches are zero vectors and the gradient is exactly ``grad f``. The stream is endless
    (:attr:`train_size` is ``None``), so budgets are in steps.
    """

    train_size = None

    def __init__(self, start: torch.Tensor, minimisers: torch.Tensor, noise: float = 0.0,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(device)
        check_number("noise", noise, minimum=0.0)
        self.noise = float(noise)
        self.stochastic = self.noise > 0
        self.start = start.detach().to(torch.float32).cpu()
        minimisers = minimisers.detach().to(dtype=torch.float32, device=self.device)
        self.minimisers = minimisers.reshape(-1, self.start.numel())
        self.dim = self.start.numel()
        scale = self.noise_scale().to(dtype=torch.float32, device=self.device)
        if scale.shape != (self.dim,):
            raise ValueError(f"noise_scale() must have shape ({self.dim},), got {tuple(scale.shape)}")
        self._scale = scale  # per-coordinate standard deviation of one sample's noise, over sigma
        self._zeros = torch.zeros(self.dim, device=self.device)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        """The objective at ``x`` of shape ``(..., d)``, returning shape ``(...)``.

        Written with ``x[..., i]`` indexing so that a stack of points (several trials run
        as one vectorised trial) evaluates in one call.
        """
        raise NotImplementedError

    def noise_scale(self) -> torch.Tensor:
        """Per-coordinate standard deviation of one sample's gradient noise, in units of sigma."""
        return torch.ones(self.start.numel())

    def init_model(self) -> torch.nn.Module:
        return Point(self.start)

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """Endless noise vectors ``xi ~ N(0, sigma^2 C / batch_size)``, one ``randn(d)`` draw each.

        In deterministic mode nothing is drawn and every batch is the same zero vector
        (treat it as read-only).
        """
        check_integer("batch_size", batch_size, minimum=1)
        return self._noise(batch_size, generator)

    def _noise(self, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        if not self.stochastic:
            while True:
                yield self._zeros
        std = self._scale * (self.noise / math.sqrt(batch_size))
        while True:
            yield torch.randn(self.dim, generator=generator, device=self.device) * std

    def loss(self, model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        """``f(x) + xi . x``: its gradient is ``grad f(x) + xi`` and its Hessian that of ``f``."""
        x = model.x
        return self.f(x) + (batch * x).sum(-1)

    def distance_to_optimum(self, x: torch.Tensor) -> torch.Tensor:
        """Euclidean distance from ``x`` (shape ``(..., d)``) to the nearest known minimiser."""
        return torch.linalg.vector_norm(x.unsqueeze(-2) - self.minimisers, dim=-1).amin(-1)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """The noise-free objective (there is no held-out data: test equals train) and the distance to go."""
        with torch.no_grad():
            x = model.x.detach()
            values = torch.stack([self.f(x), self.distance_to_optimum(x)]).tolist()
        return {"train_loss": values[0], "test_loss": values[0], "distance_to_optimum": values[1]}


class Rosenbrock(AnalyticProblem):
    """f(x, y) = (1 - x)^2 + 100 (y - x^2)^2: a curved, narrow valley; minimum 0 at (1, 1).

    The classic start (-1.2, 1) lies on the far side of the valley (f = 24.2), so an
    optimizer must first drop into the valley, then follow its banana-shaped floor.
    """

    target = Target("train_loss", 1e-3)

    def __init__(self, noise: float = 0.0, device: torch.device | str = "cpu") -> None:
        super().__init__(torch.tensor([-1.2, 1.0]), torch.tensor([[1.0, 1.0]]), noise, device)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return (1 - x[..., 0]) ** 2 + 100 * (x[..., 1] - x[..., 0] ** 2) ** 2


class NoisyQuadratic(AnalyticProblem):
    """f(x) = 1/2 sum_i h_i x_i^2 with h log-spaced from 1 to ``condition``: the noisy quadratic model.

    This is the model Zhang et al. (2019, "Which algorithmic choices matter at which batch
    sizes?") use to predict how batch size interacts with optimizers: the per-sample
    gradient noise has covariance ``sigma^2 H`` (aligned with curvature, as the Fisher is
    near an optimum), so a batch of B has covariance ``sigma^2 diag(h) / B``. Start at
    ``x0 = (1, ..., 1)``, minimum 0 at the origin; ``eigenvalues`` holds h (on the device).

    Defaults and target. The target is ``f <= 3e-4 * f(x0)`` (0.0372 at the default dim 10
    and condition 100): the slowest mode (h = 1) must shrink, so noise-free gradient descent
    needs 74 steps at its best learning rate (141 at lr 0.01). SGD at learning rate lr
    hovers above a floor of about ``lr sigma^2 f(x0) / B``, so small batches force a small
    lr and slow progress. ``sigma = 1.5`` puts the target between the floors of B = 8 and
    B = 128; measured over 50 seeds with SGD, checking every 15 steps as the runner's 20
    evaluations do: B = 128 reaches it in all 50 runs for every lr from 0.0075 to 0.0175
    (median 120 steps at lr 0.0175, 165 at lr 0.01), B = 32 in a median of about 200 steps,
    B = 16 in at most 22 of 50 runs and B = 8 in at most 5 of 50, whatever the lr, within
    the default 300 steps. Batch size matters, which is what the problem is for.
    """

    def __init__(self, dim: int = 10, condition: float = 100.0, noise: float = 1.5,
                 device: torch.device | str = "cpu") -> None:
        check_integer("dim", dim, minimum=1)
        check_number("condition", condition, minimum=1.0)
        self.eigenvalues = log_spaced(1.0, float(condition), int(dim)).to(device)
        super().__init__(torch.ones(int(dim)), torch.zeros(1, int(dim)), noise, device)
        self.target = Target("train_loss", QUADRATIC_TARGET_FRACTION * float(self.f(self.start.to(self.device))))

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.eigenvalues * x**2).sum(-1)

    def noise_scale(self) -> torch.Tensor:
        return self.eigenvalues.sqrt()


def log_spaced(low: float, high: float, n: int) -> torch.Tensor:
    """``n`` float32 values spaced evenly in log from ``low`` to ``high``, both ends exact."""
    if n == 1:
        return torch.tensor([low], dtype=torch.float32)
    values = low * (high / low) ** (torch.arange(n, dtype=torch.float64) / (n - 1))
    values[0], values[-1] = low, high
    return values.to(torch.float32)


def check_number(name: str, value: object, minimum: float) -> None:
    """Raise a ValueError naming the option unless ``value`` is a finite number >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid: expected a finite number >= {minimum:g}")


def check_integer(name: str, value: object, minimum: int) -> None:
    """Raise a ValueError naming the option unless ``value`` is a whole number >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value != int(value) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid: expected an integer >= {minimum}")


def build_rosenbrock(device: torch.device | str = "cpu", noise: float = 0.0) -> Rosenbrock:
    """The ``rosenbrock`` spec's builder: options are validated, a bad one raises ValueError."""
    return Rosenbrock(noise=noise, device=device)


def build_quadratic(device: torch.device | str = "cpu", dim: int = 10, condition: float = 100.0,
                    noise: float = 1.5) -> NoisyQuadratic:
    """The ``quadratic`` spec's builder: options are validated, a bad one raises ValueError."""
    return NoisyQuadratic(dim=dim, condition=condition, noise=noise, device=device)


@hookimpl
def optbench_problems() -> list[ProblemSpec]:
    return [
        ProblemSpec(
            "rosenbrock", build_rosenbrock, options={"noise": 0.0},
            description="2-D Rosenbrock valley from (-1.2, 1); target f <= 1e-3",
            batch_size=32, budget=Budget("steps", 500),
        ),
        ProblemSpec(
            "quadratic", build_quadratic, options={"dim": 10, "condition": 100.0, "noise": 1.5},
            description="Ill-conditioned quadratic, gradient noise covariance noise^2 H / B; target f <= 3e-4 f(x0)",
            batch_size=32, budget=Budget("steps", 300),
        ),
    ]
