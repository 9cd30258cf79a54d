"""Suite files and flags expand into exactly the trials they describe, and bad input names where it is."""

from __future__ import annotations

import math

import pytest
import torch

from bench_core.errors import UserError
from bench_core.suite import builtin_suites, expand, read_suite, resolve_device


def ids(sweep):
    return [t.trial_id for t in sweep.trials]


def test_grid_size_is_the_product_of_the_axes(catalog):
    settings = {"problems": ["quadratic"], "optimizers": ["momentum", "adam"], "lr": [0.01, 0.1, 1.0],
                "momentum": [0.0, 0.9], "batch_size": [8, 64], "seeds": [0, 1, 2]}
    sweep = expand(settings, catalog)
    # momentum: 3 lr x 2 momentum; adam has no momentum: 3 lr; each x 2 batch sizes x 3 seeds
    assert len(sweep.trials) == (3 * 2 + 3) * 2 * 3
    assert len(set(ids(sweep))) == len(sweep.trials)
    adam = [t for t in sweep.trials if t.optimizer == "adam"]
    assert {t.hyperparams["beta1"] for t in adam} == {0.9}
    assert all("momentum" not in t.hyperparams for t in adam)


def test_deterministic_problems_ignore_batch_size(catalog):
    sweep = expand({"problems": ["rosenbrock"], "optimizers": ["sgd"], "batch_size": [8, 64, 512]}, catalog)
    assert [t.batch_size for t in sweep.trials] == [None]


def test_precedence_top_problem_optimizer_command_line(catalog):
    settings = {"problems": ["quadratic", "digits_mlp"], "optimizers": ["sgd", "adam"], "lr": 0.5,
                "steps": 7, "problem": {"digits_mlp": {"lr": 0.2, "epochs": 1}},
                "optimizer": {"adam": {"lr": [0.001, 0.002]}}}
    sweep = expand(settings, catalog)
    lrs: dict[tuple[str, str], set[float]] = {}
    for t in sweep.trials:
        lrs.setdefault((t.problem, t.optimizer), set()).add(t.lr)
    assert lrs == {("quadratic", "sgd"): {0.5}, ("digits_mlp", "sgd"): {0.2},
                   ("quadratic", "adam"): {0.001, 0.002}, ("digits_mlp", "adam"): {0.001, 0.002}}
    budgets = {t.problem: (t.budget.unit, t.budget.amount) for t in sweep.trials}
    assert budgets == {"quadratic": ("steps", 7), "digits_mlp": ("epochs", 1)}
    overridden = expand(settings, catalog, overrides={"lr": [0.3], "steps": 3})
    assert {t.lr for t in overridden.trials} == {0.3}
    assert {(t.budget.unit, t.budget.amount) for t in overridden.trials} == {("steps", 3)}


def test_defaults_come_from_the_plugins(catalog):
    sweep = expand({"problems": ["quadratic"], "optimizers": ["adam"]}, catalog)
    (trial,) = sweep.trials
    spec = catalog.problems["quadratic"]
    assert trial.hyperparams == catalog.optimizers["adam"].defaults()
    assert trial.batch_size == spec.batch_size and trial.budget == spec.budget
    assert trial.problem_options == dict(spec.options)


def test_explicit_defaults_and_int_float_spellings_name_the_same_trial(catalog):
    implicit = expand({"problems": ["quadratic"], "optimizers": ["adam"], "lr": 1}, catalog)
    explicit = expand({"problems": ["quadratic"], "optimizers": ["adam"], "lr": 1.0, "beta1": 0.9,
                       "problem": {"quadratic": {"options": {"dim": 10.0}}}}, catalog)
    assert ids(implicit) == ids(explicit)


def test_schedule_options_reach_the_trials_of_that_schedule(catalog):
    sweep = expand({"problems": ["quadratic"], "optimizers": ["sgd"], "schedule": ["constant", "step"],
                    "schedule_options": {"step": {"gamma": 0.5}}}, catalog)
    options = {t.schedule: t.schedule_options for t in sweep.trials}
    assert options == {"constant": {}, "step": {"gamma": 0.5}}


def test_problem_option_lists_make_a_grid(catalog):
    sweep = expand({"problems": ["quadratic"], "optimizers": ["sgd"],
                    "problem": {"quadratic": {"options": {"condition": [10, 1000]}}}}, catalog)
    assert sorted(t.problem_options["condition"] for t in sweep.trials) == [10.0, 1000.0]


@pytest.mark.parametrize("name", sorted(builtin_suites()))
def test_every_builtin_suite_expands(catalog, name):
    settings, source = read_suite(name)
    for problem in settings["problems"]:
        locate = catalog.problems[problem].data
        if locate is not None:
            try:
                locate()
            except ValueError as missing:
                pytest.skip(f"suite {name} needs data this machine lacks: {missing}")
    assert expand(settings, catalog, source).trials, name


@pytest.mark.parametrize(("settings", "message"), [
    ({"problems": ["quadratic"], "optimizers": ["sgd"], "lrr": 0.1}, "unknown key 'lrr'"),
    ({"problems": ["quadratic"], "optimizers": ["sgdd"]}, "unknown optimizer 'sgdd'"),
    ({"problems": ["quadratic"], "optimizers": ["sgd"], "lr": "fast"},
     "lr='fast' is invalid: expected a finite number"),
    ({"problems": ["quadratic"], "optimizers": ["sgd"], "lr": -1}, "lr=-1 is invalid: expected a finite number > 0"),
    ({"problems": ["quadratic"], "optimizers": ["sgd"], "batch_size": 0},
     "batch_size=0 is invalid: expected an integer >= 1"),
    ({"problems": ["digits_mlp"], "optimizers": ["sgd"], "batch_size": 100000}, "exceeds the"),
    ({"problems": ["rosenbrock"], "optimizers": ["sgd"], "epochs": 2}, "endless stream"),
    ({"problems": ["quadratic"], "optimizers": ["sgd"], "steps": 2, "epochs": 2}, "not steps and epochs"),
    ({"problems": ["quadratic"], "optimizers": ["adam"], "momentum": 0.9}, "unknown key 'momentum'"),
    ({"problems": ["quadratic"], "optimizers": ["sgd"], "optimizer": {"sgd": {"beta1": 0.9}}},
     "[optimizer.sgd] unknown key 'beta1'"),
    ({"problems": ["quadratic"], "optimizers": ["sgd"], "problem": {"quadratic": {"options": {"dimm": 3}}}},
     "has no option 'dimm'"),
    ({"problems": ["quadratic"], "optimizers": ["sgd"], "problem": {"quadratic": {"options": {"dim": 0}}}},
     "problem 'quadratic' options"),
    ({"problems": ["quadratic"], "optimizers": ["sgd"], "schedule": "warp"}, "unknown schedule 'warp'"),
    ({"problems": ["quadratic"], "optimizers": ["sgd"], "device": "tpu"}, "device 'tpu'"),
    ({"optimizers": ["sgd"]}, "no problems given"),
    ({"problems": ["quadratic"], "optimizers": ["sgd"], "schedule_options": {"step": {"gamma": -1}}},
     "[schedule_options.step]"),
    ({"problems": ["quadratic"], "optimizers": ["sgd"], "schedule_options": {"step": {"gama": 0.5}}},
     "schedule 'step' has no option 'gama'"),
])
def test_bad_settings_name_the_source_key_and_value(catalog, settings, message):
    with pytest.raises(UserError) as info:
        expand(settings, catalog, "my.toml")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_malformed_toml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('problems = ["quadratic"]\nlr = = 0.1\nseeds = [0]\n')
    with pytest.raises(UserError, match=r"bad.toml: invalid TOML: .*line"):
        read_suite(str(path))


def test_unknown_suite_lists_builtins():
    with pytest.raises(UserError, match=r"no built-in suite .*default"):
        read_suite("nonexistent-suite")


def test_device_resolution_on_a_machine_without_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(UserError, match="only 1 CUDA device"):
        resolve_device("cuda:3")


def test_log_and_linear_grids_expand_to_their_closed_forms(catalog):
    settings = {"problems": ["quadratic"], "optimizers": ["momentum"], "lr": {"log": [1e-4, 1.0], "num": 5},
                "momentum": {"linear": [0.0, 0.9], "num": 4}}
    sweep = expand(settings, catalog)
    assert sorted({t.lr for t in sweep.trials}) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0], rel=1e-12)
    assert sorted({t.hyperparams["momentum"] for t in sweep.trials}) == pytest.approx([0.0, 0.3, 0.6, 0.9])
    assert len(sweep.trials) == 5 * 4
    # the same grid spelt as a list names the same trials
    listed = expand({**settings, "lr": [1e-4, 1e-3, 1e-2, 1e-1, 1.0], "momentum": [0.0, 0.3, 0.6, 0.9]}, catalog)
    assert sorted(ids(sweep)) == sorted(ids(listed))


def test_command_line_grids_and_their_errors():
    from bench_core.suite import parse_cli_values

    assert parse_cli_values("--lr", "log:0.01:1:3", float) == pytest.approx([0.01, 0.1, 1.0], rel=1e-12)
    assert parse_cli_values("--lr", "0.5,lin:1:2:3", float) == [0.5, 1.0, 1.5, 2.0]
    for text, message in [("log:0:1:3", "positive bounds"), ("log:1:2", "not a grid"), ("lin:1:2:0", "num must")]:
        with pytest.raises(UserError, match=message):
            parse_cli_values("--lr", text, float)


@pytest.mark.parametrize(("value", "message"), [
    ({"log": [1e-3, 1.0]}, "a grid is"),
    ({"log": [1e-3], "num": 3}, "needs \\[low, high\\]"),
    ({"cube": [1, 2], "num": 3}, "a grid is"),
])
def test_malformed_grid_tables_name_the_key(catalog, value, message):
    with pytest.raises(UserError, match=message) as raised:
        expand({"problems": ["quadratic"], "optimizers": ["sgd"], "lr": value}, catalog)
    assert "lr" in str(raised.value)


@pytest.mark.slow
def test_random_search_draws_within_the_declared_ranges_reproducibly(catalog):
    settings = {"problems": ["quadratic"], "optimizers": ["adam", "momentum"], "search": "random", "trials": 300,
                "batch_size": [8, 32], "seeds": [0]}
    sweep = expand(settings, catalog)
    assert len(sweep.trials) == 2 * 300 * 2  # optimizers x draws x batch sizes
    assert ids(sweep) == ids(expand(settings, catalog))  # the same seed draws the same trials
    other = expand({**settings, "random_seed": 1}, catalog)
    assert not set(ids(sweep)) & set(ids(other))
    adam = [t.hyperparams for t in sweep.trials if t.optimizer == "adam" and t.batch_size == 8]
    spec = catalog.optimizers["adam"]
    for name in ("lr", "beta1", "beta2", "eps"):
        param = spec.lr if name == "lr" else spec.hyperparams[name]
        values = [hp[name] for hp in adam]
        assert min(values) >= param.low * (1 - 1e-6) and max(values) <= param.high * (1 + 1e-6)
    # log-uniform lr over [low, high]: log10 is uniform, mean at the midpoint, sd range / sqrt(12)
    logs = torch.log10(torch.tensor([hp["lr"] for hp in adam], dtype=torch.float64))
    low, high = math.log10(spec.lr.low), math.log10(spec.lr.high)
    assert abs(logs.mean().item() - (low + high) / 2) < 4 * (high - low) / math.sqrt(12 * 300)
    assert logs.std().item() == pytest.approx((high - low) / math.sqrt(12), rel=0.15)
    # widening the search keeps the trials already drawn
    wider = expand({**settings, "trials": 310}, catalog)
    assert set(ids(sweep)) <= set(ids(wider))


def test_random_search_samples_given_axes_and_takes_a_budget_per_optimizer(catalog):
    settings = {"problems": ["quadratic"], "optimizers": ["adam", "momentum"], "search": "random", "trials": 50,
                "momentum": [0.5, 0.9], "optimizer": {"adam": {"trials": 7}}}
    sweep = expand(settings, catalog)
    momentum = [t for t in sweep.trials if t.optimizer == "momentum"]
    assert len(momentum) == 50 and len([t for t in sweep.trials if t.optimizer == "adam"]) == 7
    assert {t.hyperparams["momentum"] for t in momentum} == {0.5, 0.9}  # drawn from the given values
    with pytest.raises(UserError, match="trials=0 is invalid"):
        expand({**settings, "trials": 0}, catalog)


def test_a_samples_budget_gives_every_batch_size_the_same_data(catalog):
    from bench_core.runner import ProblemCache, run_trial

    sweep = expand({"problems": ["quadratic"], "optimizers": ["sgd"], "lr": 0.01, "batch_size": [8, 30],
                    "samples": 240}, catalog)
    cache = ProblemCache(catalog)
    results = {t.batch_size: run_trial(t, cache) for t in sweep.trials}
    assert {b: (r.steps, r.samples) for b, r in results.items()} == {8: (30, 240), 30: (8, 240)}
    with pytest.raises(UserError, match="not steps and samples"):
        expand({"problems": ["quadratic"], "optimizers": ["sgd"], "steps": 5, "samples": 100}, catalog)
