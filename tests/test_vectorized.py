"""Vectorised groups of trials against the same trials run one by one (bench_core/vectorized.py).

The reference is the one-by-one runner (`run_trial`), itself checked against plain PyTorch loops in
test_runner.py. Analytic problems must agree bit for bit (elementwise arithmetic on a stack of points);
networks within a relative 1e-5 on losses over 50 steps (batched matrix products round differently).
"""

from __future__ import annotations

import math
import sqlite3

import pytest
import torch

from bench_core.batching import shuffled_batches, stacked_shuffled_batches
from bench_core.catalog import load_catalog
from bench_core.runner import ProblemCache, run_trial, run_trials
from bench_core.specs import Budget
from bench_core.trial import Status, TrialConfig
from bench_core.vectorized import form_groups, run_group

#: Networks: the relative tolerance on losses over NETWORK_STEPS steps (documented in bench_core/vectorized.py).
NETWORK_RTOL = 1e-5
NETWORK_STEPS = 50
#: Result fields that must match exactly, whatever the problem (timings are shares of a group's time).
EXACT_FIELDS = ("status", "reason", "steps", "samples", "gradient_evaluations", "steps_to_target",
                "samples_to_target", "gradient_evaluations_to_target", "target_every", "metric_ranges", "device")
TIMING = ("seconds",)
NOISELESS = {"dim": 10, "condition": 100.0, "noise": 0.0}


@pytest.fixture(scope="module")
def problems(catalog) -> ProblemCache:
    return ProblemCache(catalog)


def batched_optimizers(catalog) -> list[str]:
    return sorted(name for name, spec in catalog.optimizers.items() if spec.batched is not None)


def test_every_first_order_builtin_has_a_batched_form(catalog):
    assert batched_optimizers(catalog) == ["adagrad", "adam", "adamw", "lion", "momentum", "nesterov", "rmsprop",
                                           "sgd"]
    assert catalog.optimizers["lbfgs"].batched is None  # needs a closure: runs one by one


def configs(problem: str, optimizer: str, lrs, seeds=(0, 1), steps: int = 60, batch_size: int | None = None,
            schedule: str = "constant", evals: int = 6, **extra) -> list[TrialConfig]:
    return [TrialConfig(problem, optimizer, {"lr": lr}, Budget("steps", steps), batch_size=batch_size,
                        schedule=schedule, seed=seed, evals=evals, **extra) for lr in lrs for seed in seeds]


def full_hyperparams(catalog, config: TrialConfig) -> TrialConfig:
    """The config with every hyperparameter filled in, as the suite expansion makes it."""
    values = catalog.optimizers[config.optimizer].defaults() | config.hyperparams
    return TrialConfig(**{**config.__dict__, "hyperparams": values})


def assert_agree(alone, together, rtol: float = 0.0) -> None:
    """Each trial's result run alone equals its result from the group: exactly, or losses within ``rtol``."""
    assert len(alone) == len(together)
    for a, b in zip(alone, together, strict=True):
        assert a.trial_id == b.trial_id
        for name in EXACT_FIELDS:
            assert getattr(a, name) == getattr(b, name), (name, getattr(a, name), getattr(b, name), a.error, b.error)
        assert len(a.curve) == len(b.curve)
        for point_a, point_b in zip(a.curve, b.curve, strict=True):
            assert point_a.keys() == point_b.keys()
            for key in point_a.keys() - set(TIMING):
                close(point_a[key], point_b[key], rtol, key)
        for key in a.final:
            close(a.final[key], b.final[key], rtol, key)
            close(a.best[key], b.best[key], rtol, key)


def close(x: float, y: float, rtol: float, what: str) -> None:
    if rtol == 0.0 or what.endswith("accuracy"):
        assert x == y or (math.isnan(x) and math.isnan(y)), (what, x, y)
    else:
        assert math.isclose(x, y, rel_tol=rtol, abs_tol=1e-12), (what, x, y)


# --- agreement: analytic problems exactly -------------------------------------------------------------


@pytest.mark.parametrize("problem,batch_size", [("rosenbrock", None), ("quadratic", 8)])
def test_analytic_groups_equal_one_by_one_for_every_batched_optimizer(catalog, problems, problem, batch_size):
    for optimizer in batched_optimizers(catalog):
        lrs = (1e-3, 1e-2, 0.3)  # the largest blows up for most optimizers: a member that leaves the group early
        group = [full_hyperparams(catalog, c) for c in configs(problem, optimizer, lrs, batch_size=batch_size)]
        alone = [run_trial(c, problems) for c in group]
        together = run_group(group, problems)
        assert all(r.group_size == len(group) for r in together)
        assert_agree(alone, together)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "exponential", "lr_range", "one_cycle", "step",
                                      "warmup_cosine"])
def test_analytic_groups_equal_one_by_one_under_every_schedule(catalog, problems, schedule):
    assert schedule in catalog.schedules
    for optimizer in ("sgd", "adam", "lion"):
        group = [full_hyperparams(catalog, c)
                 for c in configs("quadratic", optimizer, (3e-3, 3e-2), batch_size=16, schedule=schedule)]
        assert_agree([run_trial(c, problems) for c in group], run_group(group, problems))


def test_hyperparameters_other_than_the_learning_rate_vary_within_a_group(catalog, problems):
    group = [full_hyperparams(catalog, TrialConfig("rosenbrock", "momentum", {"lr": 1e-3, "momentum": m},
                                                   Budget("steps", 80), evals=4))
             for m in (0.0, 0.5, 0.9, 0.99)]
    assert len(form_groups(group, catalog, lambda c: problems.get(c.problem, c.problem_options, "cpu"))) == 1
    assert_agree([run_trial(c, problems) for c in group], run_group(group, problems))


# --- agreement: networks within a stated tolerance -------------------------------------------------------


@pytest.mark.parametrize("problem,batch_size", [("digits_mlp", 32), ("teacher_student", 64), ("logistic", None)])
def test_network_groups_agree_with_one_by_one_within_tolerance(catalog, problems, problem, batch_size):
    for optimizer in batched_optimizers(catalog):
        spec = catalog.optimizers[optimizer]
        lrs = (spec.lr.default, spec.lr.default / 3)
        group = [full_hyperparams(catalog, c) for c in configs(problem, optimizer, lrs, steps=NETWORK_STEPS,
                                                                batch_size=batch_size, evals=5)]
        assert_agree([run_trial(c, problems) for c in group], run_group(group, problems), NETWORK_RTOL)


@pytest.mark.parametrize("schedule", ["cosine", "one_cycle", "step", "warmup_cosine"])
def test_network_groups_agree_under_schedules(catalog, problems, schedule):
    group = [full_hyperparams(catalog, c) for c in configs("digits_mlp", "adam", (1e-3, 1e-2), steps=NETWORK_STEPS,
                                                            batch_size=32, schedule=schedule, evals=5)]
    assert_agree([run_trial(c, problems) for c in group], run_group(group, problems), NETWORK_RTOL)


def test_a_cnn_group_agrees_with_one_by_one_within_tolerance(catalog, problems):
    group = [full_hyperparams(catalog, c) for c in configs("digits_cnn", "momentum", (0.01, 0.03), steps=20,
                                                            batch_size=16, evals=2)]
    assert_agree([run_trial(c, problems) for c in group], run_group(group, problems), NETWORK_RTOL)


# --- per-trial behaviour inside a group ---------------------------------------------------------------------


def test_a_diverging_member_leaves_at_its_own_step_and_does_not_disturb_the_others(catalog, problems):
    # gradient descent on a quadratic of curvature up to 100: lr 0.0205 grows its stiffest mode slowly, 0.03 fast
    group = [full_hyperparams(catalog, c) for c in configs("quadratic", "sgd", (1e-3, 0.0205, 0.03), seeds=(0,),
                                                            steps=300, evals=10, problem_options=NOISELESS)]
    together = run_group(group, problems)
    assert [r.status for r in together] == [Status.OK, Status.DIVERGED, Status.DIVERGED]
    # each diverged at its own step, recorded as one by one records it, and the survivor ran to the end
    early, late = together[2], together[1]
    assert early.steps < late.steps < 300 == together[0].steps
    assert early.curve[-1]["step"] == early.steps
    assert_agree([run_trial(c, problems) for c in group], together)


def test_members_stop_at_their_own_target(catalog, problems):
    group = [full_hyperparams(catalog, c) for c in configs("sphere", "sgd", (0.02, 0.05, 0.2), seeds=(0,), steps=200,
                                                            evals=20, stop_at_target=True)]
    together = run_group(group, problems)
    steps = [r.steps for r in together]
    assert len(set(steps)) == 3 and max(steps) < 200, steps
    assert all(r.steps_to_target is not None for r in together)
    assert_agree([run_trial(c, problems) for c in group], together)


def test_seeds_in_a_group_see_their_own_data_order():
    data = (torch.arange(20.0).reshape(10, 2), torch.arange(10))
    seeds = (0, 1, 2)
    own = [shuffled_batches(data, 3, torch.Generator().manual_seed(s)) for s in seeds]
    stacked = stacked_shuffled_batches(data, 3, [torch.Generator().manual_seed(s) for s in seeds])
    orders = []
    for _ in range(7):  # over two epochs (3 batches each) and into the third
        X, y = next(stacked)
        assert X.shape == (3, 3, 2) and y.shape == (3, 3)
        for row, stream in enumerate(own):
            X_own, y_own = next(stream)
            assert torch.equal(X[row], X_own) and torch.equal(y[row], y_own)
        orders.append(y)
    labels = torch.cat(orders, dim=1)
    assert not torch.equal(labels[0], labels[1]) and not torch.equal(labels[1], labels[2])


def test_noise_of_a_stochastic_analytic_problem_is_drawn_per_seed(problems):
    quadratic = problems.get("quadratic", {"dim": 10, "condition": 100.0, "noise": 1.5}, "cpu")
    seeds = (3, 4)
    own = [quadratic.batches(8, torch.Generator().manual_seed(s)) for s in seeds]
    stacked = quadratic.stacked_batches(8, [torch.Generator().manual_seed(s) for s in seeds])
    for _ in range(5):
        noise = next(stacked)
        assert all(torch.equal(noise[row], next(stream)) for row, stream in enumerate(own))
        assert not torch.equal(noise[0], noise[1])


# --- what cannot be vectorised runs one by one --------------------------------------------------------------

NO_BATCHED_FORM = """
import torch
from bench_core import OptimizerSpec, Param, hookimpl

@hookimpl
def optbench_optimizers():
    return [OptimizerSpec("plain_sgd", torch.optim.SGD, Param(0.01, 1e-4, 1.0, log=True))]
"""

NOT_BATCHABLE = """
import torch
from bench_core import Budget, Problem, ProblemSpec, hookimpl
from bench_core.problems.analytic import Sphere

class ReadsAFloat(Sphere):
    # declares vectorizable (inherited), but its loss reads a Python float: vmap cannot batch it
    def stacked_loss(self, model, params, batch):
        return Problem.stacked_loss(self, model, params, batch)  # the default: loss() under vmap
    def loss(self, model, batch):
        return super().loss(model, batch) * float(model.x.detach().sum())

@hookimpl
def optbench_problems():
    return [ProblemSpec("reads_a_float", lambda device="cpu": ReadsAFloat(dim=3, device=device),
                        budget=Budget("steps", 30))]
"""


def test_an_optimizer_without_a_batched_form_runs_one_by_one_with_the_same_results(write_plugin, catalog):
    plugged = load_catalog([write_plugin("plain_sgd_plugin", NO_BATCHED_FORM)])
    cache = ProblemCache(plugged)
    plain = [full_hyperparams(plugged, c) for c in configs("rosenbrock", "plain_sgd", (1e-4, 1e-3))]
    units = form_groups(plain, plugged, lambda c: cache.get(c.problem, c.problem_options, "cpu"))
    assert units == [[c] for c in plain]
    results = run_trials(plain, cache)  # even handed a group, the runner runs it one by one
    assert all(r.group_size == 1 for r in results)
    # ... and gives what the built-in sgd (torch.optim.SGD too) gives alone
    twins = [full_hyperparams(catalog, TrialConfig(**{**c.__dict__, "optimizer": "sgd", "hyperparams": {"lr": c.lr}}))
             for c in plain]
    reference = [run_trial(c, ProblemCache(catalog)) for c in twins]
    for mine, theirs in zip(results, reference, strict=True):
        assert mine.final == theirs.final and mine.status == theirs.status


def test_a_group_whose_vectorised_form_fails_falls_back_to_one_by_one(write_plugin):
    plugged = load_catalog([write_plugin("reads_a_float_plugin", NOT_BATCHABLE)])
    cache = ProblemCache(plugged)
    group = [full_hyperparams(plugged, c) for c in configs("reads_a_float", "sgd", (1e-3, 1e-2), steps=30)]
    with pytest.raises(Exception):  # noqa: B017 - whatever vmap raises; the runner must not let it through
        run_group(group, cache)
    results = run_trials(group, cache)
    assert [r.group_size for r in results] == [1] * len(group)
    assert_agree([run_trial(c, cache) for c in group], results)


def test_a_plugin_error_in_a_group_is_reported_per_trial(catalog, problems):
    bad = [full_hyperparams(catalog, c) for c in configs("rosenbrock", "sgd", (1e-3,), seeds=(0,))]
    bad.append(full_hyperparams(catalog, TrialConfig("rosenbrock", "sgd", {"lr": -1.0}, Budget("steps", 60),
                                                     evals=6)))  # torch.optim.SGD refuses a negative lr
    results = run_trials(bad, problems)
    assert [r.status for r in results] == [Status.OK, Status.ERROR]
    assert "Invalid learning rate" in results[1].error


# --- forming groups ------------------------------------------------------------------------------------------


def test_groups_share_everything_but_float_hyperparameters_and_seed(catalog, problems):
    def problem_of(config):
        return problems.get(config.problem, config.problem_options, "cpu")

    sweep = (configs("quadratic", "adam", (1e-3, 1e-2), batch_size=8) + configs("quadratic", "adam", (1e-3,),
                                                                                  batch_size=32)
             + configs("quadratic", "sgd", (1e-3,), batch_size=8) + configs("quadratic", "lbfgs", (1.0,), seeds=(0,)))
    units = form_groups(sweep, catalog, problem_of)
    assert [len(unit) for unit in units] == [4, 2, 2, 1]
    assert {(c.optimizer, c.batch_size) for c in units[0]} == {("adam", 8)}
    assert form_groups(sweep, catalog, problem_of, vectorize=False) == [[c] for c in sweep]
    # fewer units than workers: the largest groups are halved until each worker has one
    halves = form_groups(configs("quadratic", "adam", (1e-3, 1e-2, 0.1), batch_size=8), catalog, problem_of,
                         workers=2)
    assert [len(unit) for unit in halves] == [3, 3]
    assert sorted(c.trial_id for unit in halves for c in unit) == sorted(
        c.trial_id for c in configs("quadratic", "adam", (1e-3, 1e-2, 0.1), batch_size=8))


def test_a_group_is_bounded_by_its_parameters(catalog, problems, monkeypatch):
    import bench_core.vectorized as vectorized

    mlp = problems.get("digits_mlp", catalog.problems["digits_mlp"].options, "cpu")
    monkeypatch.setattr(vectorized, "MAX_GROUP_ELEMENTS", 3 * vectorized.parameter_count(mlp))
    units = form_groups(configs("digits_mlp", "sgd", (0.1, 0.2, 0.3, 0.4), batch_size=32), catalog,
                        lambda c: problems.get(c.problem, c.problem_options, "cpu"))
    assert sorted(len(unit) for unit in units) == [2, 3, 3]  # 8 trials, at most 3 a group, in near-equal parts


# --- from the command line ----------------------------------------------------------------------------------


def test_no_vectorize_runs_each_trial_alone_with_the_same_results(tmp_path, capsys):
    from bench_core.cli import main

    sweep = ["run", "--problem", "quadratic,rosenbrock", "--optimizer", "adam,sgd", "--lr", "0.001,0.1",
             "--seeds", "0,1", "--steps", "40", "--workers", "1", "--no-report", "--no-progress"]
    assert main([*sweep, "--results", str(tmp_path / "grouped.sqlite")]) == 0
    assert "in 4 vectorised group(s)" in capsys.readouterr().err
    assert main([*sweep, "--results", str(tmp_path / "alone.sqlite"), "--no-vectorize"]) == 0
    assert "16 trials one by one, in this process" in capsys.readouterr().err

    def stored(name):
        with sqlite3.connect(tmp_path / name) as conn:
            return {row[0]: row[1:] for row in conn.execute("SELECT trial_id, status, final, curve, group_size "
                                                            "FROM trials")}

    grouped, alone = stored("grouped.sqlite"), stored("alone.sqlite")
    assert grouped.keys() == alone.keys() and len(grouped) == 16
    assert {row[3] for row in grouped.values()} == {4} and {row[3] for row in alone.values()} == {1}
    for trial_id, (status, final, curve, _) in alone.items():
        assert grouped[trial_id][:2] == (status, final)  # analytic: bit-identical finals
        assert _without_seconds(grouped[trial_id][2]) == _without_seconds(curve)


def _without_seconds(curve_json: str) -> list:
    import json

    return [{k: v for k, v in point.items() if k != "seconds"} for point in json.loads(curve_json)]


def test_the_vectorize_suite_setting_must_be_a_boolean(tmp_path, capsys):
    from bench_core.cli import main

    suite = tmp_path / "suite.toml"
    suite.write_text('problems = ["rosenbrock"]\noptimizers = ["sgd"]\nvectorize = "no"\nsteps = 5\n')
    assert main(["run", str(suite), "--results", str(tmp_path / "r.sqlite"), "--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"optbench: error: {suite}: vectorize: expected true or false, got 'no'"]
    assert not (tmp_path / "r.sqlite").exists()


SLOW_BATCHED = """
import time
import torch
from bench_core import BatchedOptimizer, OptimizerSpec, Param, hookimpl, per_trial

class SlowSGD(BatchedOptimizer):
    def step(self, lr):
        time.sleep(0.05)
        for p in self.params:
            p.data.addcmul_(p.grad, per_trial(-lr, p))

@hookimpl
def optbench_optimizers():
    return [OptimizerSpec("slow_sgd", torch.optim.SGD, Param(0.01, 1e-4, 1.0, log=True), batched=SlowSGD)]
"""


def test_a_group_past_its_time_limit_stores_each_trial_as_timeout_with_its_progress(write_plugin):
    plugged = load_catalog([write_plugin("slow_sgd_plugin", SLOW_BATCHED)])
    cache = ProblemCache(plugged)
    group = [full_hyperparams(plugged, c) for c in configs("sphere", "slow_sgd", (1e-3, 1e-2), seeds=(0,),
                                                            steps=1000, evals=100)]
    torch.optim.SGD([torch.zeros(1, requires_grad=True)])  # torch imports its compiler on a first optimizer: not here
    results = run_trials(group, cache, time_limit=0.5)  # the group's limit: 2 x 0.5 s, ~20 of 1000 steps
    assert [r.status for r in results] == [Status.TIMEOUT, Status.TIMEOUT]
    assert all(r.group_size == 2 and r.time_limit == 0.5 and 0 < r.steps < 1000 for r in results)
    assert all(r.curve and r.final == {} and "time limit" in r.reason for r in results)


def test_reports_say_which_timings_are_shares_of_a_group(tmp_path):
    from bench_core.api import run

    settings = {"name": "timings", "problems": ["quadratic"], "optimizers": ["adam", "lbfgs"], "lr": [0.01, 0.1],
                "seeds": [0, 1], "batch_size": [8, 32], "steps": 30}
    grouped = run(settings, results=tmp_path / "grouped.sqlite", report_dir=tmp_path / "grouped", workers=1)
    alone = run(settings, results=tmp_path / "alone.sqlite", report_dir=tmp_path / "alone", workers=1,
                vectorize=False)
    text = grouped.report.read_text()
    note = ("**Timings of vectorised trials:** adam (groups of 4) ran in vectorised groups of trials; their seconds "
            "to target are each trial's share of its group's time")
    assert note in text and "(lbfgs ran alone)" in text
    assert "their samples/s are each trial's share" in text  # under the batch-size table too
    assert "Timings of vectorised trials" not in alone.report.read_text()
