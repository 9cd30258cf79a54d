"""The noisy quadratic model against its definition and its exact SGD theory."""

from __future__ import annotations

import pytest
import torch

from bench_core.problems.nqm import NQM_TARGET_FRACTION, build_nqm, optbench_problems


def test_spectrum_value_gradient_start_and_target():
    problem = build_nqm(dim=6, power=2.0)
    expected = torch.tensor([1 / i**2 for i in range(1, 7)], dtype=torch.float32)
    torch.testing.assert_close(problem.eigenvalues, expected, rtol=1e-7, atol=0)
    x = torch.randn(6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert problem.f(x).item() == pytest.approx(0.5 * float((expected.double() * x**2).sum()), rel=1e-7)
    model = problem.init_model()
    assert torch.equal(model.x.detach(), torch.ones(6))
    problem.f(model.x).backward()
    torch.testing.assert_close(model.x.grad, expected)
    f0 = 0.5 * sum(1 / i**2 for i in range(1, 7))
    assert problem.target.metric == "train_loss"
    assert problem.target.value == pytest.approx(NQM_TARGET_FRACTION * f0, rel=1e-12)
    assert problem.evaluate(model)["train_loss"] == pytest.approx(f0, rel=1e-7)


def test_gradient_noise_has_covariance_noise2_h_over_b():
    problem = build_nqm(dim=4, noise=2.0)
    h = problem.eigenvalues.double()
    for batch_size in (1, 10):
        batches = problem.batches(batch_size, torch.Generator().manual_seed(batch_size))
        noise = torch.stack([next(batches) for _ in range(8000)]).double()
        assert (noise.mean(0).abs() <= 5 * (4 * h / batch_size / 8000).sqrt()).all()
        torch.testing.assert_close(noise.var(0), 4 * h / batch_size, rtol=0.1, atol=0)


@pytest.mark.slow
def test_sgd_runs_average_to_the_exact_expected_loss():
    # 300 seeds of plain SGD through the problem's own loss and batches; the mean loss must
    # follow the closed-form recursion within 4 standard errors at every checked step.
    problem = build_nqm(dim=40, noise=1.5)
    lr, batch_size, steps, seeds = 0.5, 2, 60, 300
    theory = problem.expected_sgd_loss(lr, batch_size, steps)
    runs = torch.empty(seeds, steps + 1, dtype=torch.float64)
    for seed in range(seeds):
        model = problem.init_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        batches = problem.batches(batch_size, torch.Generator().manual_seed(seed))
        runs[seed, 0] = problem.f(model.x.detach().double())
        for step in range(steps):
            optimizer.zero_grad()
            problem.loss(model, next(batches)).backward()
            optimizer.step()
            runs[seed, step + 1] = problem.f(model.x.detach().double())
    mean, stderr = runs.mean(0), runs.std(0) / seeds**0.5
    for step in (0, 1, 5, 20, 60):
        assert abs(mean[step].item() - theory[step]) <= 4 * stderr[step].item() + 1e-6 * theory[step], step  # float32 h
    assert theory[-1] < 0.5 * theory[0]


def test_noise_free_theory_is_gradient_descent():
    problem = build_nqm(dim=30, noise=0.0)
    h = problem.eigenvalues64
    lr, steps = 0.7, 25
    expected = 0.5 * float((h * (1 - lr * h) ** (2 * steps)).sum())
    assert problem.expected_sgd_loss(lr, 1, steps)[-1] == pytest.approx(expected, rel=1e-12)


@pytest.mark.slow
def test_default_model_shows_a_critical_batch_size():
    # At each batch size's best learning rate (the stable range is lr < 2 / h_max = 2):
    # steps to target fall almost in proportion to B at small batches, and barely at large ones.
    spec = next(iter(optbench_problems()))
    problem = spec.build(device="cpu", **spec.options)
    budget = spec.budget.amount
    target = problem.target.value

    def steps_to_target(batch_size: int) -> int | None:
        best = None
        for k in range(1, 12):
            lr = 2 ** (-k / 2)
            losses = problem.expected_sgd_loss(lr, batch_size, budget)
            hit = next((t for t, loss in enumerate(losses) if loss <= target), None)
            if hit is not None and (best is None or hit < best):
                best = hit
        return best

    steps = {b: steps_to_target(b) for b in (1, 4, 16, 64, 256)}
    assert steps[1] is None  # the smallest batch cannot reach the target within the budget
    assert steps[4] / steps[16] > 2.5  # near-perfect scaling: 4x the batch, ~3x fewer steps
    assert steps[64] / steps[256] < 1.2  # past the critical batch size, more data buys little


@pytest.mark.parametrize(("options", "message"), [
    ({"dim": 0}, "dim=0"), ({"power": -1.0}, "power=-1.0"), ({"noise": -0.5}, "noise=-0.5"),
])
def test_bad_options_name_themselves(options, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        build_nqm(**options)
