"""The trial runner against theory and against a plain PyTorch loop."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from bench_core.catalog import load_catalog
from bench_core.runner import ProblemCache, evaluation_steps, run_trial
from bench_core.specs import Budget
from bench_core.trial import TrialConfig

FLAKY_PROBLEM = """
    import torch
    from bench_core import Problem, ProblemSpec, Target, hookimpl

    class Line(Problem):
        '''f(w) = (w - 3)^2; its loss raises after `fail_after` steps when that option is set.'''
        target = Target("train_loss", 1e-2)

        def __init__(self, device, fail_after):
            super().__init__(device)
            self.fail_after = fail_after
            self.calls = 0

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
            return ((model.w - 3) ** 2).sum()

        def evaluate(self, model):
            return {"train_loss": float(((model.w - 3) ** 2).sum())}

    @hookimpl
    def optbench_problems():
        return [ProblemSpec("line", Line, options={"fail_after": 0})]
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


def test_a_seconds_budget_stops_on_time_with_evaluations_spread_over_it(catalog):
    config = dataclasses.replace(trial(problem="logistic", batch_size=8, evals=4, catalog=catalog, lr=0.05),
                                 budget=Budget("seconds", 1))
    result = run_trial(config, ProblemCache(catalog))
    assert result.status == "ok"
    seconds = [point["seconds"] for point in result.curve]
    assert seconds[0] == 0 and 1.0 <= seconds[-1] < 1.5, "training time stops just past the budget"
    assert len(result.curve) == 5, "an evaluation every budget / evals seconds, plus the start"
    for k, at in enumerate(seconds[1:-1], start=1):
        assert k * 0.25 <= at < k * 0.25 + 0.2
    assert result.steps == result.curve[-1]["step"] > 10


def test_a_seconds_budget_runs_the_schedule_on_elapsed_time(catalog):
    config = dataclasses.replace(trial(problem="logistic", batch_size=8, evals=10, schedule="cosine",
                                       catalog=catalog, lr=0.05), budget=Budget("seconds", 1))
    result = run_trial(config, ProblemCache(catalog))
    for point in result.curve[1:]:
        # the lr used by the last step follows the cosine of the elapsed fraction (within one step's time)
        fraction = min(point["seconds"], 1.0)
        assert point["lr"] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * fraction)), abs=0.05 * 0.02)


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
