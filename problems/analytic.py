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
from collections.abc import Iterator, Mapping, Sequence

import torch

from bench_core import Budget, Problem, ProblemSpec, Target, hookimpl
from bench_core.options import MAX_ELEMENTS, check_integer, check_number

#: The plugin contract this module is written for (see bench_core.hookspecs).
OPTBENCH_CONTRACT = 1

__all__ = [
    "Ackley",
    "AnalyticProblem",
    "Beale",
    "Booth",
    "ClassicFunction",
    "GoldsteinPrice",
    "Himmelblau",
    "Levy",
    "NoisyQuadratic",
    "Rastrigin",
    "Rosenbrock",
    "RosenbrockND",
    "Sphere",
    "StyblinskiTang",
    "optbench_problems",
]

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
    #: Trials run as groups on a stack of points: ``f`` takes ``(..., d)``, so a group's loss is one call.
    vectorizable = True
    #: The global minimum value f* (at every row of ``minimisers``).
    f_star: float = 0.0

    @property
    def metric_ranges(self) -> Mapping[str, tuple[float, float]]:  # type: ignore[override]
        """``train_loss`` and ``test_loss`` (both f) lie in ``[f*, inf)``: f* may be negative (Styblinski-Tang)."""
        return {"train_loss": (self.f_star, math.inf), "test_loss": (self.f_star, math.inf)}

    def __init__(self, start: torch.Tensor, minimisers: torch.Tensor, noise: float = 0.0,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(device)
        check_number("noise", noise, minimum=0.0)
        self.noise = float(noise)
        self.stochastic = self.noise > 0
        self.start = start.detach().to(torch.float32).cpu()
        minimisers = minimisers.detach().to(dtype=torch.float64, device=self.device)
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

    def surface(self, points: torch.Tensor) -> torch.Tensor | None:
        """``f`` itself, for the contours behind the report's trajectory plots (2-D functions only)."""
        return self.f(points) if self.dim == 2 else None

    def known_minimisers(self) -> torch.Tensor | None:
        return self.minimisers.cpu() if self.dim == 2 else None

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

    def stacked_batches(self, batch_size: int, generators: Sequence[torch.Generator]) -> Iterator[torch.Tensor]:
        """K trials' noise vectors, shape ``(K, d)``: row k is trial k's :meth:`batches` draw (one zero stack
        in deterministic mode)."""
        check_integer("batch_size", batch_size, minimum=1)
        return self._stacked_noise(batch_size, list(generators))

    def _stacked_noise(self, batch_size: int, generators: list[torch.Generator]) -> Iterator[torch.Tensor]:
        if not self.stochastic:
            zeros = self._zeros.expand(len(generators), self.dim)
            while True:
                yield zeros
        std = self._scale * (self.noise / math.sqrt(batch_size))
        while True:
            yield torch.stack([torch.randn(self.dim, generator=g, device=self.device) for g in generators]) * std

    def stacked_loss(self, model: torch.nn.Module, params: Mapping[str, torch.Tensor],
                     batch: torch.Tensor) -> torch.Tensor:
        """:meth:`loss` of a stack of points ``params["x"]`` (shape ``(K, d)``): the same arithmetic, row by row."""
        x = params["x"]
        return self.f(x) + (batch * x).sum(-1)

    def stacked_evaluate(self, model: torch.nn.Module, params: Mapping[str, torch.Tensor]) -> list[dict[str, float]]:
        """:meth:`evaluate` of a stack of points at once (float64, one host read)."""
        with torch.no_grad():
            x = params["x"].detach().double()
            values, distances = torch.stack([self.f(x), self.distance_to_optimum(x)]).tolist()
            points = x.tolist() if self.dim == 2 else None
        metrics = []
        for row, (value, distance) in enumerate(zip(values, distances, strict=True)):
            entry = {"train_loss": value, "test_loss": value, "train_suboptimality": value - self.f_star,
                     "distance_to_optimum": distance}
            if points is not None:
                entry["point_x"], entry["point_y"] = points[row]
            metrics.append(entry)
        return metrics

    def distance_to_optimum(self, x: torch.Tensor) -> torch.Tensor:
        """Euclidean distance from ``x`` (shape ``(..., d)``) to the nearest known minimiser."""
        return torch.linalg.vector_norm(x.unsqueeze(-2) - self.minimisers, dim=-1).amin(-1)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """The noise-free objective, its gap to the known minimum and the distance still to go.

        There is no held-out data, so test equals train. Evaluated in float64 so that the
        gap ``f - f*`` keeps its digits even where f* is large (Styblinski-Tang's is -39 d).
        A 2-D problem also reports where the point is (``point_x``, ``point_y``), so reports
        can draw each optimizer's path over the contours of ``f``.
        """
        with torch.no_grad():
            x = model.x.detach().double()
            value, distance = torch.stack([self.f(x), self.distance_to_optimum(x)]).tolist()
            metrics = {"train_loss": value, "test_loss": value, "train_suboptimality": value - self.f_star,
                       "distance_to_optimum": distance}
            if self.dim == 2:  # the path of the ball, for the report's trajectory plots
                metrics["point_x"], metrics["point_y"] = x.tolist()
        return metrics


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

    A small, fast cousin of the noisy quadratic model of Zhang et al. (2019, "Which
    algorithmic choices matter at which batch sizes?"; the paper's own spectrum is the
    ``nqm`` problem): the per-sample gradient noise has covariance ``sigma^2 H`` (aligned
    with curvature, as the Fisher is near an optimum), so a batch of B has covariance
    ``sigma^2 diag(h) / B``. Start at
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
        check_integer("dim", dim, minimum=1, maximum=MAX_ELEMENTS)
        check_number("condition", condition, minimum=1.0)
        self.eigenvalues = log_spaced(1.0, float(condition), int(dim)).to(device)
        super().__init__(torch.ones(int(dim)), torch.zeros(1, int(dim)), noise, device)
        self.target = Target("train_loss", QUADRATIC_TARGET_FRACTION * float(self.f(self.start.to(self.device))))

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.eigenvalues * x**2).sum(-1)

    def noise_scale(self) -> torch.Tensor:
        return self.eigenvalues.sqrt()


#: Target of the classic test functions: f within this much of the known minimum f*.
GAP_TARGET = 1e-3


class ClassicFunction(AnalyticProblem):
    """A classic optimization test function: known minimisers and minimum f*, a fixed start.

    Target: ``train_suboptimality = f - f* <= 1e-3``. Formulas and minima follow Surjanovic &
    Bingham's Virtual Library of Simulation Experiments (sfu.ca/~ssurjano) unless a class says
    otherwise; start points are stated per class. Every class takes ``noise`` (gradient noise
    of standard deviation ``noise / sqrt(B)`` per coordinate, see :class:`AnalyticProblem`).
    """

    target = Target("train_suboptimality", GAP_TARGET)


def tiled(pattern: list[float], dim: int) -> torch.Tensor:
    """``pattern`` repeated to length ``dim``: the start of an n-dimensional function."""
    return torch.tensor(pattern * (dim // len(pattern) + 1), dtype=torch.float32)[:dim]


class Sphere(ClassicFunction):
    """f(x) = sum_i x_i^2: a perfectly conditioned bowl, minimum 0 at the origin; start (1, ..., 1).

    The baseline: every sensible optimizer solves it, so it isolates step-size behaviour
    (gradient descent at lr 0.5 lands on the minimum in one step).
    """

    def __init__(self, dim: int = 10, noise: float = 0.0, device: torch.device | str = "cpu") -> None:
        check_integer("dim", dim, minimum=1, maximum=MAX_ELEMENTS)
        super().__init__(torch.ones(int(dim)), torch.zeros(1, int(dim)), noise, device)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return (x**2).sum(-1)


class RosenbrockND(ClassicFunction):
    """f(x) = sum_{i<d} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2: the chained Rosenbrock valley.

    Minimum 0 at (1, ..., 1). Start (-1.2, 1, -1.2, 1, ...), the extended-Rosenbrock start of
    Moré, Garbow & Hillstrom (1981). For d >= 4 there is also a local minimum near
    (-1, 1, ..., 1) (Kok & Sandrock 2009), so a solver can end on the wrong floor.
    """

    def __init__(self, dim: int = 10, noise: float = 0.0, device: torch.device | str = "cpu") -> None:
        check_integer("dim", dim, minimum=2, maximum=MAX_ELEMENTS)
        super().__init__(tiled([-1.2, 1.0], int(dim)), torch.ones(1, int(dim)), noise, device)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        head, tail = x[..., :-1], x[..., 1:]
        return (100 * (tail - head**2) ** 2 + (1 - head) ** 2).sum(-1)


class Rastrigin(ClassicFunction):
    """f(x) = 10 d + sum_i (x_i^2 - 10 cos(2 pi x_i)): a bowl covered in a grid of local minima.

    Minimum 0 at the origin; a local minimum sits near every integer point. Start
    (-2, 3.5, -2, 3.5, ...), as in pytorch-optimizer's optimizer visualisations: plain
    gradient descent stops in the nearest local minimum, so reaching the target takes a
    large step, momentum or noise. Measured over 1000 steps and lr 1e-3 to 1, no run of SGD,
    heavy-ball momentum or Adam reaches the target from there: a deliberately hard problem.
    """

    def __init__(self, dim: int = 2, noise: float = 0.0, device: torch.device | str = "cpu") -> None:
        check_integer("dim", dim, minimum=1, maximum=MAX_ELEMENTS)
        super().__init__(tiled([-2.0, 3.5], int(dim)), torch.zeros(1, int(dim)), noise, device)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return 10 * x.shape[-1] + (x**2 - 10 * torch.cos(2 * math.pi * x)).sum(-1)


class Ackley(ClassicFunction):
    """f(x) = -20 exp(-0.2 sqrt(mean x^2)) - exp(mean cos(2 pi x)) + 20 + e: a funnel with ripples.

    Minimum 0 at the origin, where the square root makes f a cone: its gradient there is
    undefined, and the naive formula gives NaN. We return the subgradient 0 at the origin
    (the square root is only taken of positive values), so an optimizer that lands exactly
    on the minimum stays there. Start (2.3, -1.7, 2.3, -1.7, ...) in the ripples off the funnel.

    The cone is why this function is here: near the minimum the gradient keeps its size, so
    a constant step size circles the minimum instead of settling. Measured over 1000 steps
    and lr 1e-3 to 1: no constant-lr run of SGD, heavy-ball momentum or Adam reaches the
    target, while SGD at lr 0.1 or 1 with cosine decay does (step 969 and 991).
    """

    def __init__(self, dim: int = 2, noise: float = 0.0, device: torch.device | str = "cpu") -> None:
        check_integer("dim", dim, minimum=1, maximum=MAX_ELEMENTS)
        super().__init__(tiled([2.3, -1.7], int(dim)), torch.zeros(1, int(dim)), noise, device)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        mean_square = (x**2).mean(-1)
        positive = mean_square > 0
        radius = torch.where(positive, torch.where(positive, mean_square, 1.0).sqrt(), 0.0)
        ripples = torch.cos(2 * math.pi * x).mean(-1)
        return -20 * torch.exp(-0.2 * radius) - torch.exp(ripples) + 20 + math.e


class Beale(ClassicFunction):
    """f(x, y) = (1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2; minimum 0 at (3, 0.5).

    Flat plateaus and steep ridges (the y^3 term); start (1, 1) as in Moré, Garbow & Hillstrom.
    """

    def __init__(self, noise: float = 0.0, device: torch.device | str = "cpu") -> None:
        super().__init__(torch.tensor([1.0, 1.0]), torch.tensor([[3.0, 0.5]]), noise, device)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        u, v = x[..., 0], x[..., 1]
        return (1.5 - u + u * v) ** 2 + (2.25 - u + u * v**2) ** 2 + (2.625 - u + u * v**3) ** 2


class Booth(ClassicFunction):
    """f(x, y) = (x + 2y - 7)^2 + (2x + y - 5)^2: a tilted quadratic (condition number 9); minimum 0 at (1, 3).

    Start (0, 0).
    """

    def __init__(self, noise: float = 0.0, device: torch.device | str = "cpu") -> None:
        super().__init__(torch.tensor([0.0, 0.0]), torch.tensor([[1.0, 3.0]]), noise, device)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        u, v = x[..., 0], x[..., 1]
        return (u + 2 * v - 7) ** 2 + (2 * u + v - 5) ** 2


class Himmelblau(ClassicFunction):
    """f(x, y) = (x^2 + y - 11)^2 + (x + y^2 - 7)^2: four global minima, all with f = 0.

    At (3, 2) and near (-2.805118, 3.131313), (-3.779310, -3.283186), (3.584428, -1.848127);
    the three irrational ones are solved to float64 precision by Newton's method on import.
    Start (0, 0): which minimum an optimizer finds depends on its path.
    """

    def __init__(self, noise: float = 0.0, device: torch.device | str = "cpu") -> None:
        super().__init__(torch.tensor([0.0, 0.0]), himmelblau_minimisers(), noise, device)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        u, v = x[..., 0], x[..., 1]
        return (u**2 + v - 11) ** 2 + (u + v**2 - 7) ** 2


class StyblinskiTang(ClassicFunction):
    """f(x) = 1/2 sum_i (x_i^4 - 16 x_i^2 + 5 x_i): a double well per coordinate.

    The global minimiser has every coordinate at the smallest root of 4t^3 - 32t + 5 = 0,
    t* = -2.903534027771..., computed here to float64 precision, so f* = -39.16616570377... d
    (the often quoted -39.16599 d is off in its fifth digit). The other well, near
    t = 2.7468, is a local minimum. Start at the origin, on the ridge between the wells,
    where the gradient (2.5 per coordinate) points to the global one.
    """

    def __init__(self, dim: int = 2, noise: float = 0.0, device: torch.device | str = "cpu") -> None:
        check_integer("dim", dim, minimum=1, maximum=MAX_ELEMENTS)
        root = styblinski_tang_root()
        super().__init__(torch.zeros(int(dim)), torch.full((1, int(dim)), root, dtype=torch.float64), noise, device)
        self.f_star = int(dim) * 0.5 * (root**4 - 16 * root**2 + 5 * root)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x**4 - 16 * x**2 + 5 * x).sum(-1)


class GoldsteinPrice(ClassicFunction):
    """Goldstein-Price: f = [1 + (x+y+1)^2 (19 - 14x + 3x^2 - 14y + 6xy + 3y^2)]
    [30 + (2x-3y)^2 (18 - 32x + 12x^2 + 48y - 36xy + 27y^2)].

    Minimum 3 at (0, -1); values span orders of magnitude (f(0, 0) = 600), and there are
    local minima at (-0.6, -0.4) (f = 30), (1.8, 0.2) (f = 84) and (1.2, 0.8) (f = 840).
    Start (-0.5, 0.25).
    """

    f_star = 3.0

    def __init__(self, noise: float = 0.0, device: torch.device | str = "cpu") -> None:
        super().__init__(torch.tensor([-0.5, 0.25]), torch.tensor([[0.0, -1.0]]), noise, device)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        u, v = x[..., 0], x[..., 1]
        first = 1 + (u + v + 1) ** 2 * (19 - 14 * u + 3 * u**2 - 14 * v + 6 * u * v + 3 * v**2)
        second = 30 + (2 * u - 3 * v) ** 2 * (18 - 32 * u + 12 * u**2 + 48 * v - 36 * u * v + 27 * v**2)
        return first * second


class Levy(ClassicFunction):
    """Lévy function, the form of Laguna & Martí (2005) as given by Surjanovic & Bingham: with
    w_i = 1 + (x_i - 1) / 4,

        f = sin^2(pi w_1) + sum_{i<d} (w_i - 1)^2 [1 + 10 sin^2(pi w_i + 1)]
            + (w_d - 1)^2 [1 + sin^2(2 pi w_d)].

    Minimum 0 at (1, ..., 1), among many local minima. Start (4, -2, 4, -2, ...), two ridges
    away: measured over 1000 steps and lr 1e-3 to 1, SGD and heavy-ball momentum stop in a
    local minimum while Adam at lr 1 reaches the target in 33 steps (its sign-like steps
    hop over the ridges).
    """

    def __init__(self, dim: int = 2, noise: float = 0.0, device: torch.device | str = "cpu") -> None:
        check_integer("dim", dim, minimum=1, maximum=MAX_ELEMENTS)
        super().__init__(tiled([4.0, -2.0], int(dim)), torch.ones(1, int(dim)), noise, device)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        w = 1 + (x - 1) / 4
        head, last = w[..., :-1], w[..., -1]
        inner = ((head - 1) ** 2 * (1 + 10 * torch.sin(math.pi * head + 1) ** 2)).sum(-1)
        return (torch.sin(math.pi * w[..., 0]) ** 2 + inner
                + (last - 1) ** 2 * (1 + torch.sin(2 * math.pi * last) ** 2))


def styblinski_tang_root() -> float:
    """The smallest root of 4t^3 - 32t + 5 (the Styblinski-Tang minimiser), to float64 precision."""
    t = -2.9035
    for _ in range(50):
        step = (4 * t**3 - 32 * t + 5) / (12 * t**2 - 32)
        t -= step
        if abs(step) < 1e-17:
            break
    return t


def himmelblau_minimisers() -> torch.Tensor:
    """Himmelblau's four minimisers, Newton-polished in float64 from their published 6-digit values."""
    approximate = [[3.0, 2.0], [-2.805118, 3.131312], [-3.779310, -3.283186], [3.584428, -1.848126]]
    roots = []
    for point in approximate:
        u, v = point
        for _ in range(20):  # Newton on the two residuals r1 = u^2 + v - 11, r2 = u + v^2 - 7 (both 0 at a minimum)
            r1, r2 = u**2 + v - 11, u + v**2 - 7
            det = (2 * u) * (2 * v) - 1
            u, v = u - (2 * v * r1 - r2) / det, v - (2 * u * r2 - r1) / det
        roots.append([u, v])
    return torch.tensor(roots, dtype=torch.float64)


def log_spaced(low: float, high: float, n: int) -> torch.Tensor:
    """``n`` float32 values spaced evenly in log from ``low`` to ``high``, both ends exact."""
    if n == 1:
        return torch.tensor([low], dtype=torch.float32)
    values = low * (high / low) ** (torch.arange(n, dtype=torch.float64) / (n - 1))
    values[0], values[-1] = low, high
    return values.to(torch.float32)


def build_rosenbrock(device: torch.device | str = "cpu", noise: float = 0.0) -> Rosenbrock:
    """The ``rosenbrock`` spec's builder: options are validated, a bad one raises ValueError."""
    return Rosenbrock(noise=noise, device=device)


def build_quadratic(device: torch.device | str = "cpu", dim: int = 10, condition: float = 100.0,
                    noise: float = 1.5) -> NoisyQuadratic:
    """The ``quadratic`` spec's builder: options are validated, a bad one raises ValueError."""
    return NoisyQuadratic(dim=dim, condition=condition, noise=noise, device=device)


#: name -> (class, options, steps budget, description) of the classic functions; targets are f - f* <= 1e-3.
CLASSIC_FUNCTIONS: dict[str, tuple[type[ClassicFunction], dict[str, float], int, str]] = {
    "sphere": (Sphere, {"dim": 10, "noise": 0.0}, 200, "Sphere sum x^2 in 10-D from (1, ..., 1)"),
    "rosenbrock_nd": (RosenbrockND, {"dim": 10, "noise": 0.0}, 2000,
                      "Chained Rosenbrock valley in 10-D from (-1.2, 1, ...)"),
    "rastrigin": (Rastrigin, {"dim": 2, "noise": 0.0}, 1000, "Rastrigin: a grid of local minima, from (-2, 3.5)"),
    "ackley": (Ackley, {"dim": 2, "noise": 0.0}, 1000, "Ackley: a cone-shaped funnel under ripples, from (2.3, -1.7)"),
    "beale": (Beale, {"noise": 0.0}, 1000, "Beale: plateaus and steep ridges, from (1, 1)"),
    "booth": (Booth, {"noise": 0.0}, 200, "Booth: a tilted quadratic, from (0, 0)"),
    "himmelblau": (Himmelblau, {"noise": 0.0}, 200, "Himmelblau: four global minima, from (0, 0)"),
    "styblinski_tang": (StyblinskiTang, {"dim": 2, "noise": 0.0}, 200,
                        "Styblinski-Tang double wells, from the origin; f* = -39.166166 d"),
    "goldstein_price": (GoldsteinPrice, {"noise": 0.0}, 500,
                        "Goldstein-Price: values over orders of magnitude, f* = 3, from (-0.5, 0.25)"),
    "levy": (Levy, {"dim": 2, "noise": 0.0}, 500, "Levy (Laguna & Marti form): many local minima, from (4, -2)"),
}


@hookimpl
def optbench_problems() -> list[ProblemSpec]:
    specs = [
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
    for name, (cls, options, steps, description) in CLASSIC_FUNCTIONS.items():
        specs.append(ProblemSpec(name, cls, options=options, description=f"{description}; target f - f* <= 1e-3",
                                 batch_size=32, budget=Budget("steps", steps)))
    return specs
