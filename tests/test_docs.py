"""docs/plugins.md stays true: its plugin examples load and work, its test examples pass, its hook reference matches."""

from __future__ import annotations

import inspect
import itertools
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench_core import hookspecs
from bench_core.catalog import load_catalog
from bench_core.report import write_report
from bench_core.runner import ProblemCache, run_trial
from bench_core.specs import Budget
from bench_core.store import Store
from bench_core.trial import TrialConfig

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
TEXT = GUIDE.read_text(encoding="utf-8")
EXAMPLES = dict(re.findall(r"```python\n# plugin: (\S+)\n(.*?)```", TEXT, re.S))
#: Files of a plugin author's test folder (``# test: NAME``), run by pytest beside the plugin examples.
TEST_FILES = dict(re.findall(r"```python\n# test: (\S+)\n(.*?)```", TEXT, re.S))
HOOKS = sorted(name for name, value in vars(hookspecs).items()
               if name.startswith("optbench_") and inspect.isfunction(value))


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    folder = tmp_path_factory.mktemp("doc_plugins")
    for name, source in EXAMPLES.items():
        (folder / name).write_text(source)
    return load_catalog([folder])


def test_every_example_plugin_loads_cleanly(catalog):
    assert len(EXAMPLES) >= 6
    assert catalog.issues == []
    origins = {Path(plugin).name for plugin in catalog.origin.values()}
    assert set(EXAMPLES) - {"fastest_plugin.py", "csv_log_plugin.py"} <= origins
    assert {"radam", "nadam", "sam"} <= set(catalog.optimizers)
    assert "wine_mlp" in catalog.problems and "inverse_sqrt" in catalog.schedules


@pytest.mark.slow
def test_the_documented_optimizers_and_problem_train(catalog):
    cache = ProblemCache(catalog)
    for optimizer, lr in (("radam", 1e-2), ("nadam", 1e-2)):
        config = TrialConfig(problem="wine_mlp", optimizer=optimizer, hyperparams={"lr": lr},
                             budget=Budget("epochs", 40), batch_size=16, problem_options={"hidden": 32}, evals=4)
        result = run_trial(config, cache)
        assert result.status == "ok", result.error
        assert result.steps_to_target is not None  # the documented target is reachable in the documented budget
    assert catalog.optimizers["nadam"].build([torch.nn.Parameter(torch.zeros(1))]).defaults["betas"] == (0.9, 0.999)


@pytest.mark.slow
def test_the_documented_closure_optimizer_conforms_and_is_counted_twice_a_step(catalog):
    from bench_core.testing import assert_optimizer_conforms

    spec = catalog.optimizers["sam"]
    assert spec.needs_closure
    assert_optimizer_conforms(spec, devices=["cpu"])
    config = TrialConfig(problem="quadratic", optimizer="sam", hyperparams=spec.defaults(), budget=Budget("steps", 30),
                         batch_size=8, problem_options=dict(catalog.problems["quadratic"].options), evals=3)
    result = run_trial(config, ProblemCache(catalog))
    assert result.status == "ok", result.error
    assert result.gradient_evaluations == 2 * result.steps == 60
    assert result.final["train_loss"] < result.curve[0]["train_loss"]


def test_the_documented_schedule_warms_up_then_decays(catalog):
    multiplier = catalog.schedules["inverse_sqrt"].multiplier
    values = [multiplier(step, 100) for step in range(100)]
    assert values[0] == pytest.approx(0.2) and values[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(values[4:]))
    with pytest.raises(ValueError, match="warmup"):
        multiplier(0, 100, warmup=2.0)


def test_the_documented_search_strategy_covers_the_declared_range_reproducibly(catalog):
    from bench_core.suite import expand

    settings = {"problems": ["quadratic"], "optimizers": ["nadam"], "search": "sobol", "trials": 16,
                "steps": 5, "device": "cpu"}
    trials = expand(settings, catalog).trials
    assert len(trials) == 16 and [t.trial_id for t in trials] == [t.trial_id for t in expand(settings, catalog).trials]
    lrs = sorted(t.hyperparams["lr"] for t in trials)
    assert lrs[0] >= 1e-5 and lrs[-1] <= 1.0
    # Sobol points fill the log range evenly: one lr in each of the 16 equal slices of log10(lr) in [-5, 0].
    slices = sorted(int((math.log10(lr) + 5) / 5 * 16) for lr in lrs)
    assert slices == list(range(16))


@pytest.mark.slow
def test_the_documented_report_section_and_observer_work(catalog, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the CSV observer writes next to the working directory
    cache = ProblemCache(catalog)
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("doc", {}, {})
        for lr in (0.01, 0.1):
            config = TrialConfig(problem="sphere", optimizer="sgd", hyperparams={"lr": lr},
                                 budget=Budget("steps", 100), problem_options={"dim": 10, "noise": 0.0}, evals=10)
            result = run_trial(config, cache)
            store.save(config, result)
            store.add_to_suite("doc", [config.trial_id])
            assert catalog.notify_trial_finished(config, result) == []
        text = write_report(store, "doc", tmp_path / "reports", catalog).read_text()
        best = store.trials("doc")["steps_to_target"].min()
    assert f"## Fastest to target\n\n| problem | optimizer | steps |\n|---|---|---|\n| sphere | sgd | {int(best)} |" \
        in text
    log = (tmp_path / "optbench-curves.csv").read_text().splitlines()
    assert log[0] == "trial_id,problem,optimizer,status,step,train_loss" and len(log) == 1 + 2 * 11


def test_the_hook_reference_matches_hookspecs():
    reference = TEXT[TEXT.index("## Hook reference"):]
    documented = sorted(set(re.findall(r"`(optbench_\w+)\(", reference)))
    assert documented == HOOKS
    for name in HOOKS:
        parameters = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"`{name}({parameters})`" in reference, f"{name}: the reference shows the wrong arguments"


def test_every_public_name_is_in_the_reference():
    import bench_core

    reference = TEXT[TEXT.index("## Hook reference"):]
    for name in bench_core.__all__:
        if name != "__version__":
            assert f"`{name}" in reference, f"bench_core.{name} is public but not in the guide's reference"


@pytest.mark.slow
def test_the_documented_typed_hyperparameters_reach_the_optimizer_and_pass_the_kit(catalog):
    from bench_core.suite import expand
    from bench_core.testing import check_optimizer

    spec = catalog.optimizers["lookahead_sgd"]
    assert [r for r in check_optimizer(spec) if not r.passed] == []
    trials = expand({"problems": ["quadratic"], "optimizers": ["lookahead_sgd"], "steps": 20, "device": "cpu"},
                    catalog, overrides={"k": [2, 5, 10], "mode": ["plain", "nesterov"], "lr": 0.01}).trials
    assert len(trials) == 6 and {type(t.hyperparams["k"]) for t in trials} == {int}
    for config in trials:
        result = run_trial(config, ProblemCache(catalog))
        assert result.status == "ok", result.error
    sobol = expand({"problems": ["quadratic"], "optimizers": ["lookahead_sgd"], "search": "sobol", "trials": 16,
                    "steps": 5, "device": "cpu"}, catalog).trials
    assert {t.hyperparams["mode"] for t in sobol} == {"plain", "momentum", "nesterov"}
    assert all(type(t.hyperparams["k"]) is int and 1 <= t.hyperparams["k"] <= 50 for t in sobol)


@pytest.mark.slow
def test_the_documented_conformance_tests_pass_one_test_per_check(tmp_path):
    assert set(TEST_FILES) == {"test_conformance.py", "conftest.py", "test_fixtures.py"}
    for name, source in {**EXAMPLES, **TEST_FILES}.items():
        (tmp_path / name).write_text(source)
    done = subprocess.run([sys.executable, "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    outcomes = dict(re.findall(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR)", done.stdout, re.M))
    optimizer_checks = ["steps", "respects_lr", "param_groups", "state_dict_roundtrip", "deterministic", "zero_grad",
                        "no_grad_params", "device_cpu", "device_cuda"]
    problem_checks = ["builds", "batches", "deterministic_data", "finite_loss_at_init", "metrics", "disjoint_splits",
                      "target_reachable"]
    expected = {f"test_conformance.py::test_conforms[nadam-{c}]" for c in optimizer_checks} | \
        {f"test_conformance.py::test_conforms[wine_mlp-{c}]" for c in problem_checks} | \
        {"test_fixtures.py::test_my_optimizers_conform", "test_fixtures.py::test_the_installed_quadratic_conforms"}
    assert set(outcomes) == expected
    cuda = "test_conformance.py::test_conforms[nadam-device_cuda]"
    assert {test for test, outcome in outcomes.items() if outcome != "PASSED"} <= {cuda}
    assert outcomes["test_conformance.py::test_conforms[wine_mlp-disjoint_splits]"] == "PASSED"  # checked, not skipped
    assert outcomes["test_conformance.py::test_conforms[wine_mlp-target_reachable]"] == "PASSED"
