"""The analytic problems against closed forms: values, gradients, and the statistics of their noise."""

from __future__ import annotations

import math

import pytest
import torch

from bench_core import Problem, ProblemSpec, Target
from bench_core.problems.analytic import (
    QUADRATIC_TARGET_FRACTION,
    build_quadratic,
    build_rosenbrock,
    optbench_problems,
)


def at(problem: Problem, point) -> torch.nn.Module:
    """The problem's model moved to ``point``."""
    model = problem.init_model()
    with torch.no_grad():
        model.x.copy_(torch.as_tensor(point, dtype=torch.float32))
    return model


def gradient(problem: Problem, model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    problem.loss(model, batch).backward()
    return model.x.grad.detach().clone()


def noisy_gradients(problem: Problem, batch_size: int, draws: int, seed: int = 0) -> torch.Tensor:
    """``draws`` stochastic gradients at the start point, through the public loop (loss + backward)."""
    model = problem.init_model()
    batches = problem.batches(batch_size, torch.Generator().manual_seed(seed))
    return torch.stack([gradient(problem, model, next(batches)) for _ in range(draws)]).double()


def rosenbrock64(x: torch.Tensor) -> torch.Tensor:
    return (1 - x[..., 0]) ** 2 + 100 * (x[..., 1] - x[..., 0] ** 2) ** 2


# --- Rosenbrock --------------------------------------------------------------------------------


def test_rosenbrock_minimum_is_zero_with_zero_gradient():
    problem = build_rosenbrock()
    model = at(problem, [1.0, 1.0])
    batch = next(problem.batches(1, torch.Generator()))
    assert problem.loss(model, batch).item() == 0.0
    assert torch.equal(gradient(problem, model, batch), torch.zeros(2))
    assert problem.evaluate(model) == {"train_loss": 0.0, "test_loss": 0.0, "train_suboptimality": 0.0,
                                       "distance_to_optimum": 0.0, "point_x": 1.0, "point_y": 1.0}


def test_rosenbrock_is_positive_around_its_minimum_and_matches_the_formula():
    problem = build_rosenbrock()
    points = 1.0 + 0.1 * torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    values = problem.f(points)
    assert values.shape == (200,)
    assert (values > 0).all()
    torch.testing.assert_close(values.double(), rosenbrock64(points.double()), rtol=1e-5, atol=1e-7)


def test_rosenbrock_gradient_matches_the_hand_derivative():
    problem = build_rosenbrock()
    batch = next(problem.batches(1, torch.Generator()))
    for point in torch.randn(20, 2, generator=torch.Generator().manual_seed(1)).tolist():
        x, y = point
        expected = torch.tensor([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)])
        torch.testing.assert_close(gradient(problem, at(problem, point), batch), expected, rtol=1e-4, atol=1e-4)


def test_rosenbrock_starts_at_the_classic_point():
    problem = build_rosenbrock()
    torch.manual_seed(0)
    first = problem.init_model()
    torch.manual_seed(1)
    second = problem.init_model()
    assert torch.equal(first.x, second.x)  # the start does not depend on the seed
    assert first.x.dtype == torch.float32 and first.x.tolist() == pytest.approx([-1.2, 1.0])
    metrics = problem.evaluate(first)
    assert metrics["train_loss"] == pytest.approx(24.2, rel=1e-6)
    assert metrics["test_loss"] == metrics["train_loss"]
    assert metrics["distance_to_optimum"] == pytest.approx(2.2, rel=1e-6)
    assert problem.target == Target("train_loss", 1e-3)
    assert not problem.stochastic and problem.train_size is None


def test_f_accepts_leading_batch_dimensions():
    for problem in (build_rosenbrock(), build_quadratic(dim=3)):
        points = torch.randn(4, 5, problem.dim, generator=torch.Generator().manual_seed(2))
        values = problem.f(points)
        assert values.shape == (4, 5)
        one_by_one = torch.stack([torch.stack([problem.f(p) for p in row]) for row in points])
        torch.testing.assert_close(values, one_by_one)
        assert problem.distance_to_optimum(points).shape == (4, 5)


# --- the noisy quadratic -----------------------------------------------------------------------


def test_quadratic_eigenvalues_are_log_spaced_with_exact_endpoints():
    h = build_quadratic(dim=7, condition=1000.0).eigenvalues
    assert h.dtype == torch.float32 and h.shape == (7,)
    assert h[0].item() == 1.0 and h[-1].item() == 1000.0
    steps = torch.diff(torch.log10(h.double()))
    torch.testing.assert_close(steps, torch.full((6,), 0.5, dtype=torch.float64), rtol=1e-5, atol=0)
    assert build_quadratic(dim=1, condition=50.0).eigenvalues.tolist() == [1.0]
    assert build_quadratic(dim=4, condition=1.0).eigenvalues.tolist() == [1.0] * 4


def test_quadratic_value_gradient_minimum_and_target():
    problem = build_quadratic(noise=0.0)
    h = problem.eigenvalues
    batch = next(problem.batches(8, torch.Generator()))
    origin = at(problem, torch.zeros(10))
    assert problem.loss(origin, batch).item() == 0.0
    assert problem.evaluate(origin)["distance_to_optimum"] == 0.0
    x = torch.randn(10, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(gradient(problem, at(problem, x), batch), h * x, rtol=1e-6, atol=0)
    start = problem.init_model()
    assert torch.equal(start.x, torch.ones(10))
    f0 = 0.5 * h.double().sum().item()
    assert problem.evaluate(start)["train_loss"] == pytest.approx(f0, rel=1e-6)
    assert problem.evaluate(start)["distance_to_optimum"] == pytest.approx(math.sqrt(10), rel=1e-6)
    assert problem.target.metric == "train_loss"
    assert problem.target.value == pytest.approx(QUADRATIC_TARGET_FRACTION * f0, rel=1e-6)


def test_deterministic_mode_gives_exactly_grad_f_and_draws_nothing():
    for problem in (build_quadratic(noise=0.0), build_rosenbrock()):
        assert not problem.stochastic
        generator = torch.Generator().manual_seed(4)
        state = generator.get_state()
        batches = problem.batches(16, generator)
        model = at(problem, torch.randn(problem.dim, generator=torch.Generator().manual_seed(5)))
        problem.f(model.x).backward()
        exact = model.x.grad.clone()
        for _ in range(3):
            assert torch.equal(gradient(problem, model, next(batches)), exact)
        assert torch.equal(generator.get_state(), state)


@pytest.mark.slow
@pytest.mark.parametrize("build", [build_quadratic, lambda: build_rosenbrock(noise=0.7)])
def test_stochastic_gradients_are_unbiased_with_variance_sigma2_c_over_b(build):
    problem = build()
    assert problem.stochastic
    start = problem.init_model()
    problem.f(start.x).backward()
    true_grad = start.x.grad.double()
    # the per-sample covariance C: diag(h) for the quadratic, the identity for Rosenbrock
    c = problem.eigenvalues.double() if hasattr(problem, "eigenvalues") else torch.ones(problem.dim).double()
    draws = 4000
    variances = {}
    for batch_size in (1, 16):
        grads = noisy_gradients(problem, batch_size, draws)
        theory = problem.noise**2 * c / batch_size
        # unbiased: every coordinate's mean within 5 standard errors of the true gradient
        assert ((grads.mean(0) - true_grad).abs() <= 5 * (theory / draws).sqrt()).all()
        # the sample variance has relative standard error sqrt(2 / draws) = 2.2%
        torch.testing.assert_close(grads.var(0), theory, rtol=0.12, atol=0)
        variances[batch_size] = grads.var(0).sum().item()
    assert variances[1] / variances[16] == pytest.approx(16, rel=0.08)


def test_same_seed_same_batches_other_seed_other_batches():
    problem = build_quadratic()

    def draw(seed: int) -> torch.Tensor:
        batches = problem.batches(8, torch.Generator().manual_seed(seed))
        return torch.stack([next(batches) for _ in range(5)])

    torch.manual_seed(0)
    first = draw(1)
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(first, draw(1))
    assert not torch.equal(first, draw(2))
    assert not torch.equal(first[0], first[1])
    assert first.dtype == torch.float32


def test_batches_leave_the_global_rng_alone():
    problem = build_quadratic()
    state = torch.get_rng_state()
    batches = problem.batches(4, torch.Generator().manual_seed(0))
    for _ in range(10):
        next(batches)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.slow
def test_sgd_settles_at_the_predicted_noise_floor():
    # SGD on 1/2 h x^2 with gradient noise of variance s2 = sigma^2 h / B settles at
    # E[x^2] = lr s2 / (h (2 - lr h)), so E[f] = sum_i lr sigma^2 h_i / (2 B (2 - lr h_i)).
    problem = build_quadratic(dim=5, condition=10.0, noise=1.0)
    lr, batch_size, burn_in, steps = 0.05, 4, 300, 6000
    h = problem.eigenvalues.double()
    theory = (lr * h / (2 * batch_size * (2 - lr * h))).sum().item()
    model = problem.init_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    batches = problem.batches(batch_size, torch.Generator().manual_seed(0))
    losses = []
    for step in range(burn_in + steps):
        optimizer.zero_grad()
        problem.loss(model, next(batches)).backward()
        optimizer.step()
        if step >= burn_in:
            losses.append(problem.f(model.x.detach()).item())
    assert sum(losses) / len(losses) == pytest.approx(theory, rel=0.15)


def test_default_quadratic_makes_batch_size_matter():
    # With the defaults, SGD's noise floor at a good learning rate lies above the target at
    # B = 8 and well below it at B = 128 (exact recursion for E[x_i^2], 300 steps).
    problem = build_quadratic()
    h = problem.eigenvalues.double()
    target = problem.target.value

    def expected_loss(lr: float, batch_size: int, steps: int = 300) -> float:
        m = torch.ones_like(h)
        for _ in range(steps):
            m = (1 - lr * h) ** 2 * m + lr**2 * problem.noise**2 * h / batch_size
        return 0.5 * (h * m).sum().item()

    lrs = [0.001 * k for k in range(1, 20)]
    assert min(expected_loss(lr, 8) for lr in lrs) > 2 * target
    assert min(expected_loss(lr, 128) for lr in lrs) < 0.5 * target


# --- specs and options -------------------------------------------------------------------------


def test_specs_document_their_defaults_and_build_from_them():
    specs = {spec.name: spec for spec in optbench_problems()}
    assert {"rosenbrock", "quadratic"} <= set(specs)
    assert dict(specs["rosenbrock"].options) == {"noise": 0.0}
    assert dict(specs["quadratic"].options) == {"dim": 10, "condition": 100.0, "noise": 1.5}
    for spec in (specs["rosenbrock"], specs["quadratic"]):
        assert isinstance(spec, ProblemSpec) and spec.description and spec.budget.unit == "steps"
        problem = spec.build(device=torch.device("cpu"), **spec.options)
        assert isinstance(problem, Problem) and problem.train_size is None
        assert problem.device == torch.device("cpu")
        expected = {"train_loss", "test_loss", "train_suboptimality", "distance_to_optimum"}
        if problem.dim == 2:
            expected |= {"point_x", "point_y"}
        assert set(problem.evaluate(problem.init_model())) == expected
    assert specs["quadratic"].build(device="cpu").stochastic


@pytest.mark.parametrize(("build", "options", "message"), [
    (build_quadratic, {"dim": 0}, "dim=0"),
    (build_quadratic, {"dim": 2.5}, "dim=2.5"),
    (build_quadratic, {"dim": "10"}, "dim='10'"),
    (build_quadratic, {"condition": 0.5}, "condition=0.5"),
    (build_quadratic, {"condition": float("inf")}, "condition=inf"),
    (build_quadratic, {"noise": -0.1}, "noise=-0.1"),
    (build_rosenbrock, {"noise": float("nan")}, "noise=nan"),
    (build_rosenbrock, {"noise": True}, "noise=True"),
])
def test_bad_options_raise_a_value_error_naming_them(build, options, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        build(**options)


def test_unknown_options_and_bad_batch_sizes_are_rejected():
    with pytest.raises(TypeError):
        build_quadratic(dimension=3)
    with pytest.raises(ValueError, match="batch_size=0"):
        build_quadratic().batches(0, torch.Generator())


def test_losses_of_the_quadratics_and_rosenbrock_are_declared_nonnegative():
    from bench_core.problems.nqm import build_nqm

    for problem in (build_rosenbrock(), build_quadratic(noise=0.0), build_nqm(dim=5)):
        for metric in ("train_loss", "test_loss"):
            assert problem.metric_range(metric) == (0.0, math.inf)
        at_minimum = problem.evaluate(at(problem, problem.minimisers[0]))
        assert at_minimum["train_loss"] == pytest.approx(0.0, abs=1e-12)  # the lower bound is attained
