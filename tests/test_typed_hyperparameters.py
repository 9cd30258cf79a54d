"""Integer and categorical hyperparameters: declared, swept, searched, stored, exported and reported in their type."""

from __future__ import annotations

import csv
import re

import pytest

from bench_core import Choice, OptimizerSpec, Param
from bench_core.catalog import load_catalog
from bench_core.cli import main
from bench_core.driver import run_sweep
from bench_core.errors import UserError
from bench_core.store import Store
from bench_core.suite import expand

# An optimizer whose constructor refuses any value of the wrong Python type: a trial that got a float
# where an int belongs (or a string that is not an option) is stored as an error, not silently run.
TYPED_PLUGIN = """
import torch
from bench_core import Choice, OptimizerSpec, Param, hookimpl


class Typed(torch.optim.SGD):
    def __init__(self, params, lr, k, update, damped):
        if type(k) is not int or type(update) is not str or type(damped) is not bool:
            raise TypeError(f"wrong types: k={k!r} update={update!r} damped={damped!r}")
        if update not in ("plain", "halved"):
            raise ValueError(f"unknown update {update!r}")
        scale = (0.5 if update == "halved" else 1.0) * (0.9 if damped else 1.0) * k / (k + 1)
        super().__init__(params, lr=lr * scale)


@hookimpl
def optbench_optimizers():
    return [OptimizerSpec("typed", Typed, lr=Param(0.05, 1e-3, 0.5, log=True),
                          hyperparams={"k": Param(4, 1, 20, integer=True, log=True),
                                       "update": Choice(["plain", "halved"]),
                                       "damped": Choice([False, True])})]
"""


@pytest.fixture
def typed_catalog(write_plugin):
    return load_catalog([write_plugin("typed_plugin", TYPED_PLUGIN)])


def hyperparams(sweep, name):
    return [trial.hyperparams[name] for trial in sweep.trials]


@pytest.mark.parametrize(("param", "message"), [
    (Param(5.5, 1, 20, integer=True), "default 5.5 is not a whole number"),
    (Param(5, 1.5, 20, integer=True), "low 1.5 is not a whole number"),
    (Param(float("nan")), "default nan is not a finite number"),
    (Param("5"), "default '5' is not a finite number"),
    (Choice([]), "non-empty list"),
    (Choice(["a", "a"]), "repeat a value"),
    (Choice([1, 1.0]), "repeat a value"),
    (Choice(["a", None]), "option None is not a string"),
    (Choice(["a", "b"], default="c"), "default 'c' is not one of the options"),
])
def test_a_bad_typed_hyperparameter_names_what_is_wrong(param, message):
    assert message in param.problem
    spec = OptimizerSpec("bad", lambda params, **kw: None, hyperparams={"h": param})
    with pytest.raises(ValueError, match=rf"optimizer 'bad': hyperparameter 'h': .*{message[:10]}"):
        spec.validate()


def test_the_learning_rate_must_stay_a_float():
    with pytest.raises(ValueError, match="lr must be a float Param"):
        OptimizerSpec("bad", lambda params, **kw: None, lr=Param(1, 1, 10, integer=True)).validate()
    with pytest.raises(ValueError, match="lr must be a float Param"):
        OptimizerSpec("bad", lambda params, **kw: None, lr=Choice([0.1, 0.01])).validate()


def test_defaults_and_coercion_keep_each_type():
    spec = OptimizerSpec("o", lambda params, **kw: None, hyperparams={
        "k": Param(4, 1, 20, integer=True), "beta": Param(0.9, 0.0, 1.0), "bare": 3, "mode": Choice([1, "two", True])})
    defaults = spec.defaults()
    assert [type(defaults[n]) for n in ("lr", "k", "beta", "bare", "mode")] == [float, int, float, float, int]
    mode = spec.hyperparams["mode"]
    assert mode.coerce("1") == 1 and type(mode.coerce("1")) is int  # as a command line spells it
    assert mode.coerce("true") is True and mode.coerce(True) is True and mode.coerce(1.0) == 1
    with pytest.raises(ValueError, match="expected one of 1, two, true, got 'three'"):
        mode.coerce("three")
    assert spec.hyperparams["k"].coerce(6.0) == 6 and type(spec.hyperparams["k"].coerce(6.0)) is int
    with pytest.raises(ValueError, match="whole number"):
        spec.hyperparams["k"].coerce(6.5)


def test_a_grid_gives_the_constructor_ints_and_options(typed_catalog):
    base = {"problems": ["quadratic"], "optimizers": ["typed"], "steps": 5}
    sweep = expand(base, typed_catalog, overrides={"k": [5, 6], "update": ["plain", "halved"], "damped": [True]})
    assert sorted(set(hyperparams(sweep, "k"))) == [5, 6]
    assert all(type(k) is int for k in hyperparams(sweep, "k"))
    assert set(hyperparams(sweep, "update")) == {"plain", "halved"} and set(hyperparams(sweep, "damped")) == {True}
    rounded = expand({**base, "k": {"log": [1, 64], "num": 7}}, typed_catalog)  # a grid over whole numbers
    assert hyperparams(rounded, "k") == [1, 2, 4, 8, 16, 32, 64]
    linear = expand({**base, "k": {"linear": [1, 4], "num": 7}}, typed_catalog)  # rounded; duplicates are one trial
    assert hyperparams(linear, "k") == [1, 2, 3, 4]
    for settings, message in (({"k": 5.5}, "k: expected a whole number, got 5.5"),
                              ({"k": "five"}, "k='five' is invalid: expected a finite number"),
                              ({"update": "fast"}, "update: expected one of plain, halved, got 'fast'"),
                              ({"update": {"log": [1, 2], "num": 2}}, "not a grid")):
        with pytest.raises(UserError, match=message):
            expand({**base, **settings}, typed_catalog)


def test_random_search_draws_whole_numbers_and_options(typed_catalog):
    sweep = expand({"problems": ["quadratic"], "optimizers": ["typed"], "steps": 5, "search": "random",
                    "trials": 40}, typed_catalog)
    ks, updates = hyperparams(sweep, "k"), hyperparams(sweep, "update")
    assert all(type(k) is int and 1 <= k <= 20 for k in ks) and len(set(ks)) > 5
    assert set(updates) == {"plain", "halved"} and set(hyperparams(sweep, "damped")) == {False, True}
    assert sum(k <= 4 for k in ks) > sum(k > 14 for k in ks), "log=True draws small values more often"


def test_grid_random_and_tpe_sweeps_run_with_the_right_types_and_store_them(typed_catalog, tmp_path):
    pytest.importorskip("optuna")
    base = {"problems": ["quadratic"], "optimizers": ["typed"], "steps": 10, "evals": 2, "device": "cpu"}
    suites = {"grid": {**base, "k": [2, 7], "update": ["plain", "halved"]},
              "random": {**base, "search": "random", "trials": 5},
              "tpe": {**base, "search": "tpe", "trials": 10}}
    with Store(tmp_path / "r.sqlite") as store:
        for name, settings in suites.items():
            outcome = run_sweep(expand({"name": name, **settings}, typed_catalog), typed_catalog, store, workers=1,
                                progress=False)
            assert outcome.counts.get("error", 0) == 0, store.trials(name)["error"].dropna().tolist()
            stored = store.trials(name)
            assert str(stored["hp.k"].dtype) == "Int64" and stored["hp.update"].isin(["plain", "halved"]).all()
            assert stored["hp.damped"].map(type).eq(bool).all()
        tpe = store.trials("tpe")
        assert len(tpe) == 10 and tpe["hp.k"].between(1, 20).all()
        store.export(tmp_path / "all.csv")
    rows = list(csv.DictReader((tmp_path / "all.csv").open()))
    assert {row["hp.k"] for row in rows} >= {"2", "7"} and all("." not in row["hp.k"] for row in rows)
    assert {row["hp.update"] for row in rows} == {"plain", "halved"}


@pytest.mark.slow
def test_the_command_line_takes_typed_values_and_the_report_names_them(typed_catalog, write_plugin, tmp_path,
                                                                        capsys):
    plugin = tmp_path / "typed_plugin.py"
    results, reports = tmp_path / "r.sqlite", tmp_path / "reports"
    argv = ["run", "--plugins", str(plugin), "--problem", "quadratic", "--optimizer", "typed", "--steps", "10",
            "--evals", "2", "--results", str(results), "--workers", "1", "--name", "typed"]
    assert main([*argv, "--hp", "k=1,8", "--hp", "update=halved", "--report-dir", str(reports)]) == 0
    with Store(results) as store:
        assert sorted(store.trials()["hp.k"]) == [1, 8]
    text = (reports / "typed" / "README.md").read_text()
    settings_table = text.split("## Momentum, schedules and other settings")[1]
    assert re.search(r"\| typed +\| +1 \|", settings_table) and re.search(r"\| typed +\| +8 \|", settings_table)
    assert re.search(r"\| typed +\| lr=0\.05, k=(1|8), ", text)
    capsys.readouterr()
    assert main([*argv, "--hp", "k=2.5"]) == 2
    assert "k: expected a whole number, got 2.5" in capsys.readouterr().err
