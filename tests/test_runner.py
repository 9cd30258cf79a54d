"""The trial runner against theory and against a plain PyTorch loop."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench_core import runner
from bench_core.catalog import load_catalog
from bench_core.runner import (
    DIVERGENCE_CHECK_EVERY,
    DIVERGENCE_FACTOR,
    ENDED_ABOVE_FACTOR,
    ProblemCache,
    checks_every_step,
    evaluation_steps,
    run_trial,
    target_resolution,
)
from bench_core.specs import Budget, OptimizerSpec, Param, default_metric_range
from bench_core.trial import TrialConfig

FLAKY_PROBLEM = """
    import torch
    from bench_core import Problem, ProblemSpec, Target, hookimpl

    LOG = []  # "evaluate" for every evaluation, for the tests of when the runner evaluates

    class Line(Problem):
        '''f(w) = (w - 3)^2 + offset from w = 0; logs each evaluation. When set, its loss raises after
        `fail_after` steps and its `fail_eval`-th evaluation raises.'''
        target = Target("train_loss", 1e-2)

        def __init__(self, device, fail_after, offset, fail_eval):
            super().__init__(device)
            self.fail_after, self.offset, self.fail_eval = fail_after, offset, fail_eval
            self.calls = self.evaluations = 0

        def init_model(self):
            model = torch.nn.Module()
            model.w = torch.nn.Parameter(torch.zeros(1))
            return model

        def batches(self, batch_size, generator):
            while True:
                yield None

        def loss(self, model, batch):
            self.calls += 1
            if self.fail_after and self.calls > self.fail_after:
                raise RuntimeError("plugin bug at step %d" % self.calls)
            return ((model.w - 3) ** 2).sum() + self.offset

        def evaluate(self, model):
            LOG.append("evaluate")
            self.evaluations += 1
            if self.evaluations == self.fail_eval:
                raise RuntimeError("evaluate failed")
            return {"train_loss": float(((model.w - 3) ** 2).sum()) + self.offset}

    @hookimpl
    def optbench_problems():
        return [ProblemSpec("line", Line, options={"fail_after": 0, "offset": 0.0, "fail_eval": 0})]
"""


def trial(problem="quadratic", optimizer="sgd", steps=50, evals=10, batch_size=None, seed=0, options=None,
          schedule="constant", catalog=None, **hyperparams):
    spec = catalog.optimizers[optimizer]
    return TrialConfig(problem=problem, optimizer=optimizer, hyperparams=spec.defaults() | hyperparams,
                       budget=Budget("steps", steps), batch_size=batch_size, seed=seed,
                       problem_options=dict(catalog.problems[problem].options) | (options or {}),
                       schedule=schedule, evals=evals)


def test_evaluation_points_cover_both_ends():
    assert evaluation_steps(100, 4) == [0, 25, 50, 75, 100]
    assert evaluation_steps(3, 10) == [0, 1, 2, 3]


def test_gradient_descent_on_the_quadratic_contracts_at_the_predicted_rate(catalog):
    lr = 0.015
    config = trial(optimizer="sgd", steps=60, evals=6, options={"noise": 0.0, "dim": 8, "condition": 100.0},
                   catalog=catalog, lr=lr)
    problem = ProblemCache(catalog).get("quadratic", config.problem_options, "cpu")
    h = problem.eigenvalues.double()
    result = run_trial(config, ProblemCache(catalog))
    assert result.status == "ok", result.error
    for point in result.curve:
        # x_i(t) = (1 - lr h_i)^t x_i(0) with x(0) = 1, so f(t) = 1/2 sum h_i (1 - lr h_i)^(2t)
        theory = 0.5 * float((h * (1 - lr * h) ** (2 * point["step"])).sum())
        assert point["train_loss"] == pytest.approx(theory, rel=1e-4)


def test_a_too_large_learning_rate_diverges_early_and_is_a_result(catalog):
    config = trial(optimizer="sgd", steps=1000, options={"noise": 0.0}, catalog=catalog, lr=0.05)
    result = run_trial(config, ProblemCache(catalog))
    assert result.status == "diverged"
    assert result.steps < 200
    assert result.error is None
    # the reason names the loss read, the early-stop rule and the step it stopped at
    match = re.fullmatch(rf"loss (\S+) above {DIVERGENCE_FACTOR:g} x max\(1, \|initial loss\|\) at step (\d+)",
                         result.reason)
    assert match, result.reason
    assert float(match[1]) > DIVERGENCE_FACTOR * max(1.0, result.curve[0]["train_loss"])
    assert int(match[2]) == result.steps == result.curve[-1]["step"]


def test_an_overflowing_loss_is_diverged_as_non_finite_at_the_first_read(write_plugin):
    catalog = load_catalog([write_plugin("line", FLAKY_PROBLEM)])
    # gradient descent on (w - 3)^2 from 0: w_t - 3 = -3 (1 - 2 lr)^t, so the loss is 9 * 1999^(2t) at lr 1000,
    # beyond float32 (3.4e38) from t = 6 on; the first read of the loss comes after DIVERGENCE_CHECK_EVERY steps
    first_overflow = next(t for t in range(100) if 2 * t * math.log(1999) + math.log(9) > math.log(3.4e38))
    assert first_overflow < DIVERGENCE_CHECK_EVERY
    result = run_trial(trial(problem="line", steps=40, evals=4, catalog=catalog, lr=1000.0), ProblemCache(catalog))
    assert result.status == "diverged" and result.steps == DIVERGENCE_CHECK_EVERY
    assert result.reason == f"non-finite loss (inf) at step {DIVERGENCE_CHECK_EVERY}"


def quadratic_hessian_eigenvalues(catalog, options):
    """The Hessian's eigenvalues of the quadratic's objective at its start, by autograd (float64)."""
    problem = ProblemCache(catalog).get("quadratic", options, "cpu")
    hessian = torch.autograd.functional.hessian(problem.f, problem.start.double())
    return torch.linalg.eigvalsh(hessian)


@pytest.mark.parametrize("factor", [1.01, 0.99])
def test_gradient_descent_just_past_2_over_l_ends_diverged_and_just_below_ends_ok(catalog, factor):
    options = dict(catalog.problems["quadratic"].options) | {"noise": 0.0}
    h = quadratic_hessian_eigenvalues(catalog, options)
    lr = factor * 2 / float(h.max())
    steps = 200

    def theory(t: int) -> float:  # f(x_t) = 1/2 sum_i h_i (1 - lr h_i)^(2t) from x_0 = 1
        return 0.5 * float((h * (1 - lr * h) ** (2 * t)).sum())

    ratio = theory(steps) / theory(0)
    result = run_trial(trial(optimizer="sgd", steps=steps, evals=10, options={"noise": 0.0}, catalog=catalog, lr=lr),
                       ProblemCache(catalog))
    assert result.steps == steps, "the early stop must not fire: the loss never gets near 1e4 x its start"
    assert max(theory(t) for t in range(steps + 1)) < DIVERGENCE_FACTOR * max(1.0, theory(0))
    if factor > 1:
        assert ratio > ENDED_ABOVE_FACTOR
        assert result.status == "diverged"
        match = re.fullmatch(r"final loss (\S+)x its initial loss", result.reason)
        assert match, result.reason
        assert float(match[1]) == pytest.approx(ratio, rel=2e-3)
    else:
        assert ratio < 1
        assert result.status == "ok" and result.reason is None


@pytest.mark.parametrize(("lr", "status"), [(1.05, "diverged"), (0.95, "ok")])
def test_a_loss_that_starts_negative_diverges_when_it_ends_far_above_its_start(write_plugin, lr, status):
    catalog = load_catalog([write_plugin("line", FLAKY_PROBLEM)])
    offset, steps = -20.0, 20
    # GD on (w - 3)^2 + offset from 0: loss_t = 9 (1 - 2 lr)^(2t) + offset; the start, -11, is <= 0, so the rule is
    # final > initial + ENDED_ABOVE_FACTOR * max(1, |initial|)
    initial, final = 9 + offset, 9 * (1 - 2 * lr) ** (2 * steps) + offset
    threshold = initial + ENDED_ABOVE_FACTOR * max(1.0, abs(initial))
    assert (final > threshold) == (status == "diverged")
    result = run_trial(trial(problem="line", steps=steps, evals=4, options={"offset": offset}, catalog=catalog, lr=lr),
                       ProblemCache(catalog))
    assert result.final["train_loss"] == pytest.approx(final, rel=1e-4)
    assert (result.status, result.steps) == (status, steps)
    if status == "diverged":
        assert result.reason == (f"final loss {result.final['train_loss']:.4g} above initial loss {initial:.4g} + "
                                 f"{ENDED_ABOVE_FACTOR:g} x max(1, |initial loss|)")
    else:
        assert result.reason is None


def test_a_plugin_exception_becomes_an_error_result_with_its_traceback(write_plugin):
    catalog = load_catalog([write_plugin("line", FLAKY_PROBLEM)])
    config = trial(problem="line", options={"fail_after": 5}, catalog=catalog, lr=0.1)
    result = run_trial(config, ProblemCache(catalog))
    assert result.status == "error"
    assert "Traceback" in result.error and "plugin bug at step 6" in result.error


def test_steps_to_target_is_the_first_evaluation_that_meets_it(write_plugin):
    catalog = load_catalog([write_plugin("line", FLAKY_PROBLEM)])
    config = trial(problem="line", steps=40, evals=40, catalog=catalog, lr=0.1)
    result = run_trial(config, ProblemCache(catalog))
    # w_t = 3 (1 - 0.8^t), loss = 9 * 0.64^t <= 0.01  <=>  t >= log(0.01/9)/log(0.64)
    expected = math.ceil(math.log(0.01 / 9) / math.log(0.64))
    assert result.steps_to_target == expected
    assert result.best["train_loss"] == pytest.approx(9 * 0.64**40, rel=1e-3)
    assert result.seconds_to_target is not None and result.seconds_to_target <= result.train_seconds


def test_the_schedule_sets_the_learning_rate_of_every_step(catalog):
    config = trial(steps=40, evals=4, options={"noise": 0.0}, schedule="cosine", catalog=catalog, lr=0.01)
    result = run_trial(config, ProblemCache(catalog))
    multiplier = catalog.schedules["cosine"].multiplier
    options = dict(catalog.schedules["cosine"].options)
    for point in result.curve[1:]:
        # the lr recorded at an evaluation is the one used by the step just taken
        assert point["lr"] == pytest.approx(0.01 * multiplier(point["step"] - 1, 40, **options))


def test_same_seed_same_numbers_other_seed_other_numbers(catalog):
    cache = ProblemCache(catalog)
    first = run_trial(trial(batch_size=4, seed=1, catalog=catalog, lr=0.01), cache)
    again = run_trial(trial(batch_size=4, seed=1, catalog=catalog, lr=0.01), cache)
    other = run_trial(trial(batch_size=4, seed=2, catalog=catalog, lr=0.01), cache)
    losses = [[p["train_loss"] for p in r.curve] for r in (first, again, other)]
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]


def test_results_record_samples_and_throughput(catalog):
    result = run_trial(trial(batch_size=16, steps=30, catalog=catalog, lr=0.01), ProblemCache(catalog))
    assert result.steps == 30 and result.samples == 30 * 16
    assert result.samples_per_second == pytest.approx(result.samples / result.train_seconds)
    assert result.wall_seconds >= result.train_seconds > 0
    assert result.final == {k: v for k, v in result.curve[-1].items() if k not in ("step", "samples", "seconds",
                                                                                    "lr")}
    assert torch.device(result.device).type == "cpu"


@pytest.mark.slow
@pytest.mark.parametrize(("optimizer", "hyperparams", "make_torch_optimizer"), [
    ("momentum", {"lr": 0.05, "momentum": 0.9}, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    ("adam", {"lr": 2e-3}, lambda p: torch.optim.Adam(p, lr=2e-3)),
])
def test_the_harness_trains_the_digits_mlp_like_a_plain_pytorch_loop(catalog, optimizer, hyperparams,
                                                                     make_torch_optimizer):
    seed, batch_size, epochs, evals = 7, 32, 2, 4
    spec = catalog.optimizers[optimizer]
    config = TrialConfig(problem="digits_mlp", optimizer=optimizer, hyperparams=spec.defaults() | hyperparams,
                         budget=Budget("epochs", epochs), batch_size=batch_size, seed=seed, evals=evals,
                         problem_options=dict(catalog.problems["digits_mlp"].options))
    result = run_trial(config, ProblemCache(catalog))
    assert result.status == "ok", result.error

    # The plain loop: same data, same init (global seed), same order (randperm from a seeded generator).
    problem = catalog.problems["digits_mlp"].build(device="cpu")
    X, y = problem.splits["train"]
    torch.manual_seed(seed)
    model = problem.init_model()
    opt = make_torch_optimizer(model.parameters())
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = len(y) // batch_size
    total = epochs * steps_per_epoch
    eval_at = {round(i * total / evals) for i in range(evals + 1)}

    def full_train_loss() -> float:
        model.eval()
        with torch.no_grad():
            value = F.cross_entropy(model(X), y).item()
        model.train()
        return value

    plain = {0: full_train_loss()}
    step = 0
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for b in range(steps_per_epoch):
            idx = order[b * batch_size:(b + 1) * batch_size]
            opt.zero_grad()
            F.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
            step += 1
            if step in eval_at:
                plain[step] = full_train_loss()

    harness = {point["step"]: point["train_loss"] for point in result.curve}
    assert sorted(harness) == sorted(plain)
    for at, value in plain.items():
        assert harness[at] == pytest.approx(value, abs=1e-6), at
    assert plain[total] < 0.5 * plain[0], "the loop must actually train"


def test_a_seconds_budget_stops_on_time_with_evaluations_spread_over_it(catalog, fake_clock):
    # On the fake clock "just past" is exact whatever the machine's load: the trial stops at the first step whose
    # reading is past the budget, at most a step's few readings after it (and evaluates likewise).
    config = dataclasses.replace(trial(problem="logistic", batch_size=8, evals=4, catalog=catalog, lr=0.05),
                                 budget=Budget("seconds", 1))
    result = run_trial(config, ProblemCache(catalog))
    assert result.status == "ok"
    seconds = [point["seconds"] for point in result.curve]
    slack = 5 * fake_clock.tick  # a step reads the clock twice, and the evaluation once more
    assert seconds[0] == 0 and 1.0 <= seconds[-1] < 1.0 + slack, "training time stops just past the budget"
    assert result.train_seconds == seconds[-1]
    assert len(result.curve) == 5, "an evaluation every budget / evals seconds, plus the start"
    for k, at in enumerate(seconds[1:-1], start=1):
        assert k * 0.25 <= at < k * 0.25 + slack
    assert result.steps == result.curve[-1]["step"] > 10
    assert result.target_every is None, "evaluations fall by the clock: no resolution in steps"


def test_a_seconds_budget_runs_the_schedule_on_elapsed_time(catalog, fake_clock):
    config = dataclasses.replace(trial(problem="logistic", batch_size=8, evals=10, schedule="cosine",
                                       catalog=catalog, lr=0.05), budget=Budget("seconds", 1))
    result = run_trial(config, ProblemCache(catalog))

    def cosine(fraction: float) -> float:
        return 0.05 * 0.5 * (1 + math.cos(math.pi * min(max(fraction, 0.0), 1.0)))

    quantum = 1 / runner.SECONDS_SCHEDULE_STEPS
    assert len(result.curve) > 5
    for before, point in itertools.pairwise(result.curve):
        # the last step before an evaluation started after the previous evaluation and before this one, so its
        # lr is the cosine of an elapsed fraction between the two (however long a step took on a busy machine)
        assert cosine(point["seconds"]) - 1e-12 <= point["lr"] <= cosine(before["seconds"] - quantum) + 1e-12
    assert result.curve[-1]["lr"] < 0.05 * 0.1, "the schedule reached its end on the clock"


def _synchronisations(catalog, device: str, monkeypatch) -> tuple[list[torch.device], object]:
    """Run a short trial on ``device``; the devices ``torch.cuda.synchronize`` was called with, and the result."""
    calls = []
    real = torch.cuda.synchronize

    def recording(device=None):
        calls.append(torch.device(device))
        if torch.cuda.is_available():
            real(device)

    monkeypatch.setattr(torch.cuda, "synchronize", recording)
    config = dataclasses.replace(trial(steps=20, evals=4, catalog=catalog, lr=0.01), device=device)
    return calls, run_trial(config, ProblemCache(catalog))


def test_a_cpu_trial_never_synchronises_cuda(catalog, monkeypatch):
    calls, result = _synchronisations(catalog, "cpu", monkeypatch)
    assert result.status == "ok", result.error
    assert calls == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_trial_synchronises_its_device_to_time_its_training(catalog, monkeypatch):
    """Kernels run asynchronously: the clock is read after the device has finished them, at the start and around
    every evaluation (which is not training time), so at least once per point of the curve."""
    calls, result = _synchronisations(catalog, "cuda", monkeypatch)
    assert result.status == "ok", result.error
    assert {device.type for device in calls} == {"cuda"}
    assert len(calls) >= len(result.curve), calls
    assert result.train_seconds > 0


def test_stop_at_target_ends_the_trial_at_the_first_evaluation_that_meets_it(write_plugin):
    catalog = load_catalog([write_plugin("line", FLAKY_PROBLEM)])
    config = trial(problem="line", steps=40, evals=40, catalog=catalog, lr=0.1)
    stopping = dataclasses.replace(config, stop_at_target=True)
    full, stopped = (run_trial(c, ProblemCache(catalog)) for c in (config, stopping))
    expected = math.ceil(math.log(0.01 / 9) / math.log(0.64))  # as in the test above: 9 * 0.64^t <= 0.01
    assert full.steps == 40 and stopped.steps == stopped.steps_to_target == expected
    losses = [[point["train_loss"] for point in r.curve] for r in (full, stopped)]
    assert losses[1] == losses[0][:expected + 1]
    # the flag joins a trial's identity only when on, so trials stored before it existed keep their ids
    assert "stop_at_target" not in config.to_json() and stopping.trial_id != config.trial_id


def plain_adam_on_rosenbrock(steps: int, lr: float) -> list[float]:
    """f(x_k), k = 0..steps, of torch.optim.Adam from (-1.2, 1) on the Rosenbrock function, in float32."""
    x = torch.tensor([-1.2, 1.0], requires_grad=True)
    optimizer = torch.optim.Adam([x], lr=lr)
    losses = []
    for _ in range(steps + 1):
        optimizer.zero_grad()
        loss = (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    return losses


@pytest.mark.slow
def test_steps_to_target_is_exact_on_a_deterministic_problem_with_a_train_loss_target(catalog):
    steps, evals, lr = 3000, 20, 0.1
    losses = plain_adam_on_rosenbrock(steps, lr)
    k = next(t for t, value in enumerate(losses) if value <= 1e-3)  # the target of rosenbrock: f <= 1e-3
    assert k % (steps // evals) != 0, "the test needs a step between evaluation points"
    result = run_trial(trial(problem="rosenbrock", optimizer="adam", steps=steps, evals=evals, catalog=catalog, lr=lr),
                       ProblemCache(catalog))
    assert result.status == "ok"
    assert result.steps_to_target == k
    assert result.samples_to_target == k  # batch size None: one sample per step
    assert result.target_every == 1
    assert 0 < result.seconds_to_target <= result.train_seconds
    # the runner trained like the plain loop (same start, same optimizer): its curve is the loop's losses
    for point in result.curve:
        assert point["train_loss"] == pytest.approx(losses[point["step"]], rel=1e-4, abs=1e-7)


@pytest.mark.slow
def test_stop_at_target_stops_at_the_first_loss_read_after_the_step_that_met_it(catalog):
    steps, evals, lr = 3000, 20, 0.1
    losses = plain_adam_on_rosenbrock(steps, lr)
    k = next(t for t, value in enumerate(losses) if value <= 1e-3)
    config = trial(problem="rosenbrock", optimizer="adam", steps=steps, evals=evals, catalog=catalog, lr=lr)
    full = run_trial(config, ProblemCache(catalog))
    stopped = run_trial(dataclasses.replace(config, stop_at_target=True), ProblemCache(catalog))
    # f(x_k) is computed in the step after k updates; the host reads losses every DIVERGENCE_CHECK_EVERY steps and at
    # evaluations, so it sees the target after the first such step s >= k + 1, evaluates there and stops
    points = set(evaluation_steps(steps, evals))
    s = next(t for t in range(k + 1, steps + 1) if t % DIVERGENCE_CHECK_EVERY == 0 or t in points)
    assert stopped.status == "ok" and stopped.steps_to_target == k
    assert stopped.steps == stopped.curve[-1]["step"] == s
    assert stopped.final["train_loss"] == pytest.approx(losses[s], rel=1e-4)
    assert stopped.final == {name: value for name, value in stopped.curve[-1].items()
                             if name not in ("step", "samples", "seconds", "lr")}
    earlier = [point for point in full.curve if point["step"] < s]
    assert [p["train_loss"] for p in stopped.curve[:-1]] == [p["train_loss"] for p in earlier]


def test_target_every_is_the_widest_gap_between_evaluations_where_only_evaluations_check(catalog):
    cache = ProblemCache(catalog)
    noisy = trial(problem="quadratic", steps=50, evals=7, batch_size=8, catalog=catalog, lr=0.01)
    # evaluations at round(i * 50 / 7): 0, 7, 14, 21, 29, 36, 43, 50; the widest gap is 21 -> 29
    assert evaluation_steps(50, 7) == [0, 7, 14, 21, 29, 36, 43, 50]
    assert run_trial(noisy, cache).target_every == 8
    problem = cache.get("quadratic", noisy.problem_options, "cpu")
    assert target_resolution(noisy, problem, None, per_step=False) is None  # a seconds budget: by the clock
    deterministic = cache.get("quadratic", noisy.problem_options | {"noise": 0.0}, "cpu")
    assert checks_every_step(deterministic) and target_resolution(noisy, deterministic, None, per_step=True) == 1
    # a deterministic problem whose target is another metric is checked at evaluations only
    booth = trial(problem="booth", steps=50, evals=5, catalog=catalog, lr=0.01)
    assert run_trial(booth, cache).target_every == 10


def test_metric_ranges_by_name():
    assert default_metric_range("valid_accuracy") == (0.0, 1.0)
    for name in ("train_loss", "valid_excess_loss", "train_suboptimality", "distance_to_optimum"):
        assert default_metric_range(name) == (0.0, math.inf), name
    for name in ("point_x", "lossy_metric", "accuracy_gap"):
        assert default_metric_range(name) == (-math.inf, math.inf), name


@pytest.mark.slow
def test_the_result_records_the_range_of_every_bounded_metric(catalog):
    cache = ProblemCache(catalog)
    dim = 2
    tang = run_trial(trial(problem="styblinski_tang", optimizer="adam", steps=20, catalog=catalog, lr=0.1), cache)
    # f* = d * min_t (t^4 - 16 t^2 + 5 t) / 2, at the smallest root of 4t^3 - 32t + 5 (numpy's solver, not optbench's)
    root = min(r.real for r in np.roots([4, 0, -32, 5]) if abs(r.imag) < 1e-12)
    f_star = dim * (root**4 - 16 * root**2 + 5 * root) / 2
    assert f_star == pytest.approx(-39.16599 * dim, rel=1e-5)  # the often quoted value, good to 5 digits
    for name in ("train_loss", "test_loss"):
        low, high = tang.metric_ranges[name]
        assert low == pytest.approx(f_star, rel=1e-12) and high == math.inf
        assert all(point[name] >= low for point in tang.curve)
    assert tang.metric_ranges["train_suboptimality"] == [0.0, math.inf]
    assert tang.metric_ranges["distance_to_optimum"] == [0.0, math.inf]
    assert "point_x" not in tang.metric_ranges and "point_x" in tang.final  # unbounded: not recorded

    config = TrialConfig(problem="digits_mlp", optimizer="adam", hyperparams=catalog.optimizers["adam"].defaults(),
                         budget=Budget("steps", 5), batch_size=32, evals=1,
                         problem_options=dict(catalog.problems["digits_mlp"].options))
    digits = run_trial(config, cache)
    accuracies = [name for name in digits.final if name.endswith("_accuracy")]
    assert "valid_accuracy" in accuracies
    for name in accuracies:
        assert digits.metric_ranges[name] == [0.0, 1.0]
    assert digits.metric_ranges["train_loss"] == [0.0, math.inf]


# An optimizer with evaluation modes, like the schedule-free ones, that logs every call into the same log as
# the line problem's evaluations, in one plugin file.
MODAL_PLUGIN = FLAKY_PROBLEM + """
    from bench_core import OptimizerSpec

    class RecordingSGD(torch.optim.SGD):
        log = LOG

        def step(self, closure=None):
            self.log.append("step")
            return super().step(closure)

        def eval(self):
            self.log.append("eval")

        def train(self):
            self.log.append("train")

    @hookimpl
    def optbench_optimizers():
        return [OptimizerSpec("recording_sgd", RecordingSGD, lr=0.1)]
"""


def test_an_optimizer_with_evaluation_modes_is_switched_to_eval_around_every_evaluation(write_plugin):
    catalog = load_catalog([write_plugin("modal", MODAL_PLUGIN)])
    assert catalog.issues == []
    log = catalog.optimizers["recording_sgd"].optimizer.log
    steps, evals = 6, 3
    result = run_trial(trial(problem="line", optimizer="recording_sgd", steps=steps, evals=evals,
                             catalog=catalog), ProblemCache(catalog))
    assert result.status == "ok", result.error
    # train() before the first step; every evaluation (the one at step 0 and the final one too) inside eval()/train()
    expected, done = ["train"], 0
    for point in evaluation_steps(steps, evals):
        expected += ["step"] * (point - done) + ["eval", "evaluate", "train"]
        done = point
    assert log == expected
    assert [point["step"] for point in result.curve] == evaluation_steps(steps, evals)


def test_the_optimizer_is_switched_back_to_train_when_evaluate_raises(write_plugin):
    catalog = load_catalog([write_plugin("modal", MODAL_PLUGIN)])
    log = catalog.optimizers["recording_sgd"].optimizer.log
    result = run_trial(trial(problem="line", optimizer="recording_sgd", steps=6, evals=3,
                             options={"fail_eval": 2}, catalog=catalog), ProblemCache(catalog))
    assert result.status == "error" and "evaluate failed" in result.error
    assert log == ["train", "eval", "evaluate", "train", "step", "step", "eval", "evaluate", "train"]


def test_a_plain_torch_optimizer_has_no_evaluation_modes_and_trains_as_before(catalog):
    # the runner switches modes only where eval() and train() exist; torch.optim.Optimizer has neither
    plain = torch.optim.SGD([torch.zeros(1, requires_grad=True)])
    assert not hasattr(plain, "eval") and not hasattr(plain, "train")
    result = run_trial(trial(optimizer="sgd", steps=20, evals=2, options={"noise": 0.0}, catalog=catalog, lr=0.01),
                       ProblemCache(catalog))
    assert result.status == "ok" and result.final["train_loss"] < result.curve[0]["train_loss"]


SCHEDULE_FREE_PLUGIN = """
    import pytorch_optimizer
    from bench_core import OptimizerSpec, Param, hookimpl

    @hookimpl
    def optbench_optimizers():
        return [OptimizerSpec("sf_sgd", pytorch_optimizer.ScheduleFreeSGD, lr=0.01,
                              hyperparams={"momentum": Param(0.9, 0.0, 0.99)})]
"""


def test_a_schedule_free_optimizer_is_scored_at_its_evaluation_iterate(write_plugin):
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer", reason="needs pytorch-optimizer's ScheduleFreeSGD")
    if not hasattr(pytorch_optimizer, "ScheduleFreeSGD"):
        pytest.skip("this pytorch-optimizer has no ScheduleFreeSGD")
    catalog = load_catalog([write_plugin("schedule_free", SCHEDULE_FREE_PLUGIN)])
    assert catalog.issues == []
    steps, evals, lr, momentum, seed = 60, 6, 0.01, 0.9, 0
    config = trial(problem="quadratic", optimizer="sf_sgd", steps=steps, evals=evals, seed=seed,
                   options={"noise": 0.0, "dim": 8}, catalog=catalog, lr=lr, momentum=momentum)
    cache = ProblemCache(catalog)
    result = run_trial(config, cache)
    assert result.status == "ok", result.error
    # its per-step training loss is at the training iterate: the target is checked at evaluations only
    assert result.target_every == steps // evals

    # By hand: the same start, gradients at the training iterate, and the objective 1/2 sum h x^2 (float64) taken
    # at the evaluation iterate, switched to with eval() and back with train() around each evaluation point.
    problem = cache.get("quadratic", config.problem_options, "cpu")
    h = problem.eigenvalues.double()

    def objective(model) -> float:
        return float(0.5 * (h * model.x.detach().double() ** 2).sum())

    torch.manual_seed(seed)
    model = problem.init_model()
    optimizer = pytorch_optimizer.ScheduleFreeSGD(model.parameters(), lr=lr, momentum=momentum)
    optimizer.train()
    batches = problem.batches(1, torch.Generator().manual_seed(seed))
    points = set(evaluation_steps(steps, evals))
    at_eval, at_train = {}, {}
    for step in range(steps + 1):
        if step in points:
            at_train[step] = objective(model)
            optimizer.eval()
            at_eval[step] = objective(model)
            optimizer.train()
        if step == steps:
            break
        optimizer.zero_grad()
        problem.loss(model, next(batches)).backward()
        optimizer.step()

    assert [point["step"] for point in result.curve] == sorted(at_eval)
    for point in result.curve:
        assert point["train_loss"] == pytest.approx(at_eval[point["step"]], rel=1e-5), point["step"]
    # the two iterates really differ here, so scoring the training iterate would have been caught
    assert abs(at_train[steps] - at_eval[steps]) > 0.01 * at_eval[steps]


# --- optimizers that need a closure ---------------------------------------------------------------


@pytest.mark.slow
def test_lbfgs_on_logistic_trains_like_a_plain_torch_loop_and_counts_every_closure_call(catalog):
    seed, steps, evals = 3, 30, 15
    options = dict(catalog.problems["logistic"].options)
    cache = ProblemCache(catalog)
    problem = cache.get("logistic", options, "cpu")
    n = problem.train_size  # full batch: L-BFGS is a deterministic method
    config = TrialConfig(problem="logistic", optimizer="lbfgs", hyperparams={"lr": 1.0}, budget=Budget("steps", steps),
                         batch_size=n, seed=seed, evals=evals, problem_options=options)
    result = run_trial(config, cache)
    assert result.status == "ok", result.error

    # The plain loop: torch.optim.LBFGS as its documentation shows it, the loss written out, the full batch in the
    # documented order (the training rows as stored, every step: no shuffle).
    X, y, l2 = problem.X_train, problem.y_train, options["l2"]
    torch.manual_seed(seed)
    model = problem.init_model()
    lbfgs = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=1, max_eval=26, history_size=10,
                              line_search_fn="strong_wolfe")
    eval_at = set(evaluation_steps(steps, evals))
    calls = 0

    def closure(bx: torch.Tensor, by: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        lbfgs.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(bx).squeeze(-1), by) + 0.5 * l2 * model.weight.square().sum()
        loss.backward()
        return loss

    plain = {0: problem.evaluate(model)}
    calls_after = {0: 0}
    for step in range(1, steps + 1):
        lbfgs.step(functools.partial(closure, X, y))
        calls_after[step] = calls
        if step in eval_at:
            plain[step] = problem.evaluate(model)

    assert [point["step"] for point in result.curve] == sorted(plain)
    for point in result.curve:
        assert point["train_loss"] == pytest.approx(plain[point["step"]]["train_loss"], rel=1e-9), point["step"]
    assert result.final["train_loss"] == pytest.approx(plain[steps]["train_loss"], rel=1e-9)
    assert result.gradient_evaluations == calls
    assert calls > steps, "the line search evaluated more than once in some step"
    # reached at the first evaluation point where the plain loop's suboptimality meets the target
    target = problem.target.value
    reached = min(step for step, metrics in plain.items() if metrics["train_suboptimality"] <= target)
    assert result.steps_to_target == reached < steps
    assert result.gradient_evaluations_to_target == calls_after[reached] > reached
    assert result.target_every == steps // evals


def test_full_batch_sgd_on_logistic_trains_like_a_plain_loop_on_the_stored_rows_and_leaves_them_intact(catalog):
    """A full batch is the training set as stored, every step (no shuffle, no copy): a plain loop on X, y matches."""
    seed, steps, evals, lr = 2, 40, 4, 0.5
    options = dict(catalog.problems["logistic"].options)
    cache = ProblemCache(catalog)
    problem = cache.get("logistic", options, "cpu")
    X, y, l2 = problem.X_train, problem.y_train, options["l2"]
    stored = X.clone(), y.clone()
    config = TrialConfig(problem="logistic", optimizer="sgd", hyperparams={"lr": lr}, budget=Budget("steps", steps),
                         batch_size=problem.train_size, seed=seed, evals=evals, problem_options=options)
    result = run_trial(config, cache)
    assert result.status == "ok", result.error
    assert torch.equal(X, stored[0]) and torch.equal(y, stored[1]), "training must not modify the stored data"

    torch.manual_seed(seed)
    model = problem.init_model()
    sgd = torch.optim.SGD(model.parameters(), lr=lr)
    plain = {0: problem.evaluate(model)["train_loss"]}
    for step in range(1, steps + 1):
        sgd.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(X).squeeze(-1), y) + 0.5 * l2 * model.weight.square().sum()
        loss.backward()
        sgd.step()
        if step % (steps // evals) == 0:
            plain[step] = problem.evaluate(model)["train_loss"]
    assert {point["step"]: point["train_loss"] for point in result.curve} == pytest.approx(plain, rel=1e-9)
    assert plain[steps] < 0.5 * plain[0], "the loop must actually train"


def sam_catalog(catalog):
    from closure_optimizers import ToySAM

    sam = OptimizerSpec("sam", ToySAM, lr=0.05, hyperparams={"rho": Param(0.05, 0.0, 1.0)}, needs_closure=True)
    return dataclasses.replace(catalog, optimizers={**catalog.optimizers, "sam": sam})


def test_a_sam_like_optimizer_counts_two_evaluations_per_step_and_records_each_steps_starting_loss(catalog):
    """Per-step target on a deterministic problem, a schedule and stop-at-target, with a closure optimizer.

    The loss kept for step k is the closure's first evaluation, f(x_k) at the point the step starts from, so
    steps to target are exactly those of a plain loop that records f(x_k) before SAM's two evaluations.
    """
    from closure_optimizers import ToySAM

    catalog = sam_catalog(catalog)
    steps, evals, lr, rho, seed = 120, 6, 0.08, 0.05, 0
    options = {"noise": 0.0, "dim": 8, "condition": 10.0}
    config = trial(optimizer="sam", steps=steps, evals=evals, options=options, schedule="cosine", seed=seed,
                   catalog=catalog, lr=lr, rho=rho)
    cache = ProblemCache(catalog)
    result = run_trial(config, cache)
    assert result.status == "ok", result.error
    assert result.gradient_evaluations == 2 * steps

    problem = cache.get("quadratic", config.problem_options, "cpu")
    multiplier, schedule_options = catalog.schedules["cosine"].multiplier, dict(catalog.schedules["cosine"].options)
    torch.manual_seed(seed)
    model = problem.init_model()
    sam = ToySAM(model.parameters(), lr=lr, rho=rho)
    batches = problem.batches(1, torch.Generator().manual_seed(seed))
    starts = []  # f(x_k) for k = 0..steps-1

    def closure(batch):
        sam.zero_grad()
        loss = problem.loss(model, batch)
        loss.backward()
        return loss

    for step in range(steps):
        sam.param_groups[0]["lr"] = lr * multiplier(step, steps, **schedule_options)
        starts.append(sam.step(functools.partial(closure, next(batches))).item())  # SAM returns its first loss
    assert sam.calls == 2 * steps
    assert result.final["train_loss"] == pytest.approx(problem.evaluate(model)["train_loss"], rel=1e-9)
    k = next(step for step, value in enumerate(starts) if value <= problem.target.value)
    assert k % (steps // evals) != 0, "the test needs a target met between evaluation points"
    assert result.steps_to_target == k and result.target_every == 1
    assert result.gradient_evaluations_to_target == 2 * k  # the k steps that led to x_k, two evaluations each

    stopped = run_trial(dataclasses.replace(config, stop_at_target=True), cache)
    assert stopped.steps_to_target == k and k < stopped.steps < steps
    assert stopped.gradient_evaluations == 2 * stopped.steps


@pytest.mark.slow
def test_closure_optimizers_are_counted_when_they_diverge_or_run_on_the_clock_and_plain_ones_once_a_step(catalog):
    catalog = sam_catalog(catalog)
    cache = ProblemCache(catalog)
    blowup = run_trial(trial(optimizer="sam", steps=200, options={"noise": 0.0}, catalog=catalog, lr=5.0), cache)
    assert blowup.status == "diverged" and blowup.steps < 200
    assert blowup.gradient_evaluations == 2 * blowup.steps
    clocked = run_trial(dataclasses.replace(trial(optimizer="sam", batch_size=8, catalog=catalog, lr=0.01),
                                            budget=Budget("seconds", 1)), cache)
    assert clocked.status == "ok" and clocked.steps > 10
    assert clocked.gradient_evaluations == 2 * clocked.steps
    for optimizer in ("sgd", "adam"):
        plain = run_trial(trial(optimizer=optimizer, steps=37, batch_size=8, catalog=catalog, lr=0.01), cache)
        assert plain.status == "ok" and plain.gradient_evaluations == plain.steps == 37
