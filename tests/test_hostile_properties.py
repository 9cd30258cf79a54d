"""Property-based tests (hypothesis): random suite files and flags are a sweep or one user error, never a crash.

Suite dicts mix real keys (sweep axes, suite settings, hyperparameters) with junk, and
values of every TOML type: nested arrays and tables, integers far beyond int64, floats
including nan and infinity, strings with path separators and ``$``. ``expand`` must return
a sweep or raise :class:`UserError`; the CLI must exit 0 or 2 with one error line and no
traceback. A third property checks the dry-run count against a full expansion.
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench_core.catalog import Catalog
from bench_core.cli import _overrides, build_parser, main
from bench_core.errors import UserError
from bench_core.specs import AXES, SUITE_KEYS
from bench_core.suite import MAX_BATCH_SIZE, MAX_INTEGER, Sweep, adhoc_settings, expand

pytestmark = pytest.mark.slow  # hundreds of generated examples per test

#: Problems cheap to build (their options validated by building them once), and names that must be refused.
CHEAP_PROBLEMS = ["quadratic", "sphere", "rosenbrock", "least_squares", "nqm"]
OPTIMIZERS = ["sgd", "adam", "momentum"]
NAMES = [*CHEAP_PROBLEMS, *OPTIMIZERS, "constant", "cosine", "step", "grid", "random", "linear", "none", "cpu",
         "auto", "../x", "/tmp/x", "x$\\frac{$", "a/b", "..", "", "n" * 150]
KEYS = [*AXES, *SUITE_KEYS, "beta1", "beta2", "eps", "momentum", "options", "junk", "lr ", "$", "../k"]
OPTION_KEYS = ["dim", "noise", "condition", "n", "power", "data_seed", "junk"]

HOSTILE_TEXT = st.text(alphabet=st.sampled_from("ab01./\\$_-{}^ ,:\n"), max_size=12)
INTEGERS = st.one_of(st.integers(-3, 40), st.integers(-(2**80), 2**80),
                     st.sampled_from([2**63 - 1, 2**63, 2**64, 2**1100]))
SCALARS = st.one_of(INTEGERS, st.floats(allow_nan=True, allow_infinity=True), st.booleans(), HOSTILE_TEXT,
                    st.sampled_from(NAMES))
#: A grid table: small ``num`` (a huge valid one would build a million optimizers) or one past the bound.
GRIDS = st.one_of(*(st.fixed_dictionaries({kind: st.lists(SCALARS, min_size=2, max_size=2),
                                            "num": st.one_of(st.integers(-2, 6), st.integers(10**6 + 1, 2**70))})
                      for kind in ("log", "linear")))
VALUES = st.recursive(st.one_of(SCALARS, GRIDS),
                      lambda inner: st.one_of(st.lists(inner, max_size=4),
                                              st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
                      max_leaves=10)
#: Problem options: moderate sizes or ones far past any bound (a valid 10**8 would build a 400 MB problem).
OPTION_VALUES = st.one_of(st.integers(-3, 50), st.integers(10**9, 2**80), st.floats(allow_nan=True),
                          st.lists(st.integers(1, 20), max_size=3), st.booleans(), HOSTILE_TEXT,
                          st.recursive(st.integers(1, 5), lambda inner: st.lists(inner, max_size=2), max_leaves=4))


@st.composite
def suites(draw: st.DrawFn) -> dict[str, Any]:
    """A TOML-able suite dict: mostly-valid problems and optimizers so expansion gets far, and hostile values."""
    suite: dict[str, Any] = {
        "problems": draw(st.one_of(*[st.lists(st.sampled_from(CHEAP_PROBLEMS), min_size=1, max_size=2)] * 4, VALUES)),
        "optimizers": draw(st.one_of(*[st.lists(st.sampled_from(OPTIMIZERS), min_size=1, max_size=2)] * 4, VALUES)),
        "steps": draw(st.one_of(st.integers(1, 50), INTEGERS)),
    }
    suite |= draw(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=2))
    if draw(st.booleans()):
        suite["name"] = draw(st.one_of(HOSTILE_TEXT, st.sampled_from(NAMES)))
    if draw(st.booleans()):
        suite["lr"] = draw(st.one_of(SCALARS, st.lists(SCALARS, min_size=1, max_size=3)))
    if draw(st.booleans()):
        problem = draw(st.sampled_from(CHEAP_PROBLEMS))
        suite["problem"] = {problem: {"options": draw(st.dictionaries(st.sampled_from(OPTION_KEYS), OPTION_VALUES,
                                                                      max_size=2))}}
    if draw(st.booleans()):
        suite["optimizer"] = {draw(st.sampled_from(OPTIMIZERS)): draw(st.dictionaries(st.sampled_from(KEYS), VALUES,
                                                                                       max_size=2))}
    return suite


#: Suites that got past the checks before (each crashed, hung or wrote outside the report folder): always tried.
BASE_SUITE = {"problems": ["quadratic"], "optimizers": ["sgd"], "steps": 5}
KNOWN_SUITES = [BASE_SUITE | {"name": "../../x"}, BASE_SUITE | {"name": "/tmp/x"}, BASE_SUITE | {"name": "n" * 300},
                BASE_SUITE | {"lr": float("inf")}, BASE_SUITE | {"lr": [[[[0.1]]]]}, BASE_SUITE | {"seeds": 2**63},
                {"problems": ["quadratic"], "optimizers": ["sgd"], "samples": 2**70},
                BASE_SUITE | {"batch_size": 2**62},
                BASE_SUITE | {"problem": {"quadratic": {"options": {"dim": 2**80}}}},
                BASE_SUITE | {"problem": {"quadratic": {"options": {"noise": float("nan")}}}},
                BASE_SUITE | {"device": [["cpu"]]}, BASE_SUITE | {"lr": 2**1100}]
#: Flags that got past the checks before: always tried.
KNOWN_FLAGS = [["--lr=inf"], ["--hp=beta2=nan"], [f"--seeds={2**63}"], [f"--samples={2**70}"], ["--name=../../x"],
               ["--name=" + "a" * 300], ["--name=x$\\frac{$"], [f"--batch-size={2**62}"], ["--evals=50"],
               ["--lr=log:1e-3:1:99999999"], ["--seeds=-1"]]


def with_examples(name: str, cases: list[Any], **fixed: Any) -> Any:
    """One ``@example`` per known case, so each is tried on every run, not only when the draw finds it."""
    def decorate(test: Any) -> Any:
        for case in cases:
            test = example(**{name: case}, **fixed)(test)
        return test
    return decorate


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(suite=suites(), count_only=st.booleans())
@with_examples("suite", KNOWN_SUITES, count_only=False)
def test_expand_returns_a_sweep_or_raises_a_user_error(catalog, suite, count_only):
    try:
        sweep = expand(suite, catalog, "hostile.toml", count_only=count_only)
    except UserError as exc:
        assert "\n" not in str(exc), str(exc)
        return
    assert_storable(sweep)


def assert_storable(sweep: Sweep) -> None:
    """What a sweep accepted can be stored and run: a safe name, finite numbers, integers int64 holds."""
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}", sweep.name), sweep.name
    assert sweep.planned >= 0
    for config in sweep.trials:
        assert 1 <= (config.batch_size or 1) <= MAX_BATCH_SIZE
        for value in _leaves(config.canonical()):
            if isinstance(value, float):
                assert math.isfinite(value), config
            elif isinstance(value, int):
                assert -MAX_INTEGER <= value <= MAX_INTEGER, config


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


#: Values known to have got past the checks once, drawn more often than random text and numbers.
KNOWN_HOSTILE = st.sampled_from(["nan", "inf", "-inf", "1e999", "-1", "0", str(2**62), str(2**63), str(2**70),
                                 f"0,{2**64}", "log:1e-3:1:5", "lin:0:inf:3", "log:1e-3:1:99999999", "0.1,0.1",
                                 "", ",", "../../x", "/tmp/x", "x$\\frac{$", "a" * 300, "2", "3"])
FLAG_VALUES = st.one_of(KNOWN_HOSTILE, KNOWN_HOSTILE, KNOWN_HOSTILE, INTEGERS.map(str),
                        st.floats(allow_nan=True, allow_infinity=True).map(repr), HOSTILE_TEXT, st.sampled_from(NAMES))
FLAGS = ["--lr", "--momentum", "--seeds", "--batch-size", "--steps", "--samples", "--evals", "--trials",
         "--random-seed", "--name", "--schedule", "--search", "--base-batch-size",
         "--transfer-batch-sizes", "--workers", "--lr-scaling", "--device", "--optimizer"]


@st.composite
def flag_lists(draw: st.DrawFn) -> list[str]:
    """Random ``optbench run`` flags, each written ``--flag=value`` (so a value may start with ``-``)."""
    flags = [f"{flag}={draw(FLAG_VALUES)}" for flag in draw(st.lists(st.sampled_from(FLAGS), max_size=2,
                                                                      unique=True))]
    for _ in range(draw(st.integers(0, 1))):
        flags.append(f"--hp={draw(st.sampled_from(['beta2', 'momentum', 'eps', 'junk', '$x']))}={draw(FLAG_VALUES)}")
    return flags


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(flags=flag_lists())
@with_examples("flags", KNOWN_FLAGS)
def test_the_cli_on_random_flags_exits_0_or_2_with_one_error_line(catalog, capsys, flags):
    with tempfile.TemporaryDirectory() as folder:
        results = Path(folder) / "r.sqlite"
        args = ["run", "--problem", "quadratic", "--optimizer", "adam,momentum", "--steps", "20", *flags,
                "--dry-run", "--results", str(results), "--report-dir", str(Path(folder) / "reports")]
        try:
            code = main(args)
        except SystemExit as exc:  # argparse's own refusal (a malformed flag): usage and one error line
            code = exc.code
        err = capsys.readouterr().err
        assert code in (0, 2), (args, err)
        assert "Traceback" not in err
        if code == 2 and "usage:" not in err:
            assert err.strip().splitlines()[-1].startswith("optbench: error: "), err
        assert not results.exists() and not (Path(folder) / "reports").exists()
        if code == 0:  # what the dry run accepted, a run would store: check every trial it would run
            assert_storable(_sweep_of(args, catalog))


def _sweep_of(args: list[str], catalog: Catalog) -> Sweep:
    """The full sweep ``optbench run`` would expand from ``args`` (as ``cmd_run`` does for a flag-only sweep)."""
    namespace = build_parser().parse_args(args)
    overrides = _overrides(namespace)
    settings = adhoc_settings(overrides["problems"]) | {"name": namespace.name or "custom"}
    return expand(settings, catalog, "command line", overrides)


SMALL = st.lists(st.sampled_from([0.001, 0.01, 0.1, 0.1000000000001, 1, 1.0]), min_size=1, max_size=4)


@st.composite
def small_sweeps(draw: st.DrawFn) -> dict[str, Any]:
    """Valid small sweeps with repeated values, values that name one trial (``1``/``1.0``) and rejected points."""
    sweep: dict[str, Any] = {
        "problems": draw(st.lists(st.sampled_from(["quadratic", "least_squares"]), min_size=1, max_size=2,
                                  unique=True)),
        "optimizers": draw(st.lists(st.sampled_from(OPTIMIZERS), min_size=1, max_size=3, unique=True)),
        "lr": draw(SMALL),
        "seeds": draw(st.lists(st.integers(0, 3), min_size=1, max_size=4)),
        "batch_size": draw(st.lists(st.sampled_from([4, 8, 16]), min_size=1, max_size=3)),
        "schedule": draw(st.lists(st.sampled_from(["constant", "cosine"]), min_size=1, max_size=3)),
        "steps": 10,
    }
    if "momentum" in sweep["optimizers"] and draw(st.booleans()):
        sweep["momentum"] = draw(st.lists(st.sampled_from([-1.0, 0.0, 0.5, 0.9]), min_size=1, max_size=3))
    if draw(st.booleans()):
        sweep["lr_scaling"], sweep["base_batch_size"] = "linear", draw(st.sampled_from([4, 8, 32]))
    if "quadratic" in sweep["problems"] and draw(st.booleans()):
        sweep["problem"] = {"quadratic": {"options": {"noise": draw(st.lists(st.sampled_from([0.5, 1, 1.0]),
                                                                             min_size=1, max_size=3))}}}
    return sweep


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sweep=small_sweeps())
def test_the_dry_run_count_is_the_number_of_distinct_trials(catalog, sweep):
    try:
        built = expand(sweep, catalog, "small.toml")
    except UserError:  # every momentum point rejected: the dry run must refuse it too
        with pytest.raises(UserError):
            expand(sweep, catalog, "small.toml", count_only=True)
        return
    counted = expand(sweep, catalog, "small.toml", count_only=True)
    assert counted.counted == len(built.trials) == len({config.trial_id for config in built.trials})
