"""The classic test functions against independent NumPy formulas and their published minima."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench_core import Target
from bench_core.problems.analytic import CLASSIC_FUNCTIONS, GAP_TARGET, Ackley, StyblinskiTang

NAMES = sorted(CLASSIC_FUNCTIONS)


def build(name: str, **overrides):
    cls, options, _, _ = CLASSIC_FUNCTIONS[name]
    return cls(**{**options, **overrides})


# Independent NumPy versions of each formula, written from the published definitions.
def np_sphere(x):
    return np.sum(x**2)


def np_rosenbrock_nd(x):
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


def np_rastrigin(x):
    return 10 * len(x) + sum(xi**2 - 10 * math.cos(2 * math.pi * xi) for xi in x)


def np_ackley(x):
    d = len(x)
    return (-20 * math.exp(-0.2 * math.sqrt(sum(xi**2 for xi in x) / d))
            - math.exp(sum(math.cos(2 * math.pi * xi) for xi in x) / d) + 20 + math.e)


def np_beale(x):
    u, v = x
    return (1.5 - u + u * v) ** 2 + (2.25 - u + u * v**2) ** 2 + (2.625 - u + u * v**3) ** 2


def np_booth(x):
    u, v = x
    return (u + 2 * v - 7) ** 2 + (2 * u + v - 5) ** 2


def np_himmelblau(x):
    u, v = x
    return (u**2 + v - 11) ** 2 + (u + v**2 - 7) ** 2


def np_styblinski_tang(x):
    return sum(xi**4 - 16 * xi**2 + 5 * xi for xi in x) / 2


def np_goldstein_price(x):
    u, v = x
    a = 1 + (u + v + 1) ** 2 * (19 - 14 * u + 3 * u**2 - 14 * v + 6 * u * v + 3 * v**2)
    b = 30 + (2 * u - 3 * v) ** 2 * (18 - 32 * u + 12 * u**2 + 48 * v - 36 * u * v + 27 * v**2)
    return a * b


def np_levy(x):
    w = [1 + (xi - 1) / 4 for xi in x]
    total = math.sin(math.pi * w[0]) ** 2
    for wi in w[:-1]:
        total += (wi - 1) ** 2 * (1 + 10 * math.sin(math.pi * wi + 1) ** 2)
    return total + (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2)


REFERENCE = {name: globals()[f"np_{name}"] for name in NAMES}

# Published minimisers and minima (Surjanovic & Bingham's Virtual Library; Himmelblau 1972),
# to the digits they are published with. Styblinski-Tang's is the root of 4t^3 - 32t + 5
# from numpy.roots, an independent solver.
ST_ROOT = min(r.real for r in np.roots([4, 0, -32, 5]) if abs(r.imag) < 1e-12)
PUBLISHED = {
    "sphere": ([np.zeros(10)], 0.0),
    "rosenbrock_nd": ([np.ones(10)], 0.0),
    "rastrigin": ([np.zeros(2)], 0.0),
    "ackley": ([np.zeros(2)], 0.0),
    "beale": ([np.array([3.0, 0.5])], 0.0),
    "booth": ([np.array([1.0, 3.0])], 0.0),
    "himmelblau": ([np.array(p) for p in ([3.0, 2.0], [-2.805118, 3.131312], [-3.779310, -3.283186],
                                          [3.584428, -1.848126])], 0.0),
    "styblinski_tang": ([np.full(2, ST_ROOT)], 2 * np_styblinski_tang([ST_ROOT])),
    "goldstein_price": ([np.array([0.0, -1.0])], 3.0),
    "levy": ([np.ones(2)], 0.0),
}


def value_and_grad(problem, point) -> tuple[float, torch.Tensor]:
    x = torch.tensor(np.asarray(point), dtype=torch.float64, requires_grad=True)
    value = problem.f(x)
    value.backward()
    return value.item(), x.grad


@pytest.mark.parametrize("name", NAMES)
def test_formula_matches_an_independent_implementation(name):
    problem = build(name)
    rng = np.random.default_rng(0)
    for point in rng.uniform(-3, 3, size=(25, problem.dim)):
        expected = REFERENCE[name](point)
        assert problem.f(torch.tensor(point)).item() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    start = problem.start.double().numpy()
    assert problem.f(problem.start.double()).item() == pytest.approx(REFERENCE[name](start), rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_published_minimisers_give_the_published_minimum(name):
    problem = build(name)
    points, f_star = PUBLISHED[name]
    assert problem.f_star == pytest.approx(f_star, abs=1e-12)
    assert len(problem.minimisers) == len(points)
    for point in points:
        stored = problem.minimisers.cpu().numpy()
        assert np.abs(stored - point).max(axis=1).min() < 1e-6  # the stored minimiser is the published one
    for stored in problem.minimisers:
        value, grad = value_and_grad(problem, stored.cpu().numpy())
        assert value == pytest.approx(f_star, abs=1e-12)
        assert torch.isfinite(grad).all()
        assert grad.abs().max().item() < 1e-9


@pytest.mark.parametrize("name", NAMES)
def test_every_nearby_point_is_higher(name):
    problem = build(name)
    rng = np.random.default_rng(1)
    for minimiser in problem.minimisers.cpu().numpy():
        for radius in (1e-3, 1e-2):
            offsets = rng.normal(size=(50, problem.dim))
            offsets *= radius / np.linalg.norm(offsets, axis=1, keepdims=True)
            values = problem.f(torch.tensor(minimiser + offsets))
            assert (values > problem.f_star).all()


@pytest.mark.parametrize("name", NAMES)
def test_evaluate_reports_the_gap_and_the_target_names_it(name):
    problem = build(name)
    assert problem.target == Target("train_suboptimality", GAP_TARGET)
    metrics = problem.evaluate(problem.init_model())
    start = problem.start.double().numpy()
    assert metrics["train_loss"] == pytest.approx(REFERENCE[name](start), rel=1e-12)
    assert metrics["train_suboptimality"] == pytest.approx(REFERENCE[name](start) - PUBLISHED[name][1], rel=1e-12)
    assert metrics["train_suboptimality"] > GAP_TARGET  # nobody starts solved
    model = problem.init_model()
    with torch.no_grad():
        model.x.copy_(problem.minimisers[0].float())
    at_minimum = problem.evaluate(model)
    assert abs(at_minimum["train_suboptimality"]) < 1e-4  # only the float32 rounding of the minimiser
    assert at_minimum["distance_to_optimum"] < 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_losses_are_declared_to_lie_above_the_published_minimum(name):
    problem = build(name)
    f_star = PUBLISHED[name][1]  # negative for Styblinski-Tang: the default range of a loss, [0, inf), is wrong there
    for metric in ("train_loss", "test_loss"):
        low, high = problem.metric_range(metric)
        assert low == pytest.approx(f_star, abs=1e-12) and high == math.inf
    assert problem.metric_range("train_suboptimality") == (0.0, math.inf)
    assert problem.metric_range("distance_to_optimum") == (0.0, math.inf)
    assert problem.metric_range("point_x") == (-math.inf, math.inf)
    rng = np.random.default_rng(2)
    points = rng.uniform(-4, 4, size=(200, problem.dim))
    values = [REFERENCE[name](point) for point in points]
    assert min(values) >= problem.metric_range("train_loss")[0] - 1e-12


def test_ackley_gradient_at_the_minimum_is_the_zero_subgradient_not_nan():
    problem = Ackley()
    for dtype in (torch.float32, torch.float64):
        x = torch.zeros(2, dtype=dtype, requires_grad=True)
        problem.f(x).backward()
        assert torch.equal(x.grad, torch.zeros(2, dtype=dtype))
    # a float32 optimizer step from the minimum stays there
    model = problem.init_model()
    with torch.no_grad():
        model.x.zero_()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    problem.loss(model, next(problem.batches(1, torch.Generator()))).backward()
    optimizer.step()
    assert torch.equal(model.x.detach(), torch.zeros(2))


def test_styblinski_tang_minimum_scales_with_dimension_and_beats_the_other_well():
    for dim in (1, 2, 5):
        problem = StyblinskiTang(dim=dim)
        assert problem.f_star == pytest.approx(dim * -39.16616570377, rel=1e-11)
    problem = StyblinskiTang(dim=1)
    other_well = max(r.real for r in np.roots([4, 0, -32, 5]) if abs(r.imag) < 1e-12)
    assert np_styblinski_tang([other_well]) > problem.f_star + 10  # the right well is only local


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_stochastic_mode_is_unbiased_with_variance_falling_as_one_over_b(name):
    problem = build(name, noise=0.5)
    assert problem.stochastic
    model = problem.init_model()
    problem.f(model.x).backward()
    exact = model.x.grad.double().clone()
    draws, totals = 2000, {}
    for batch_size in (1, 8):
        batches = problem.batches(batch_size, torch.Generator().manual_seed(batch_size))
        grads = []
        for _ in range(draws):
            model.zero_grad()
            problem.loss(model, next(batches)).backward()
            grads.append(model.x.grad.double().clone())
        grads = torch.stack(grads)
        per_coordinate = 0.25 / batch_size
        # mean within 5 standard errors of the exact gradient, in every coordinate
        assert ((grads.mean(0) - exact).abs() <= 5 * math.sqrt(per_coordinate / draws)).all()
        totals[batch_size] = grads.var(0).mean().item()
        assert totals[batch_size] == pytest.approx(per_coordinate, rel=0.2)
    assert totals[1] / totals[8] == pytest.approx(8, rel=0.2)


@pytest.mark.parametrize(("name", "options", "message"), [
    ("sphere", {"dim": 0}, "dim=0"),
    ("rosenbrock_nd", {"dim": 1}, "dim=1"),
    ("rastrigin", {"dim": 1.5}, "dim=1.5"),
    ("levy", {"noise": -1.0}, "noise=-1.0"),
])
def test_bad_options_name_themselves(name, options, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        build(name, **options)
