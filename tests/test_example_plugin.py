"""The example plugin package in examples/: found through its entry point only once it is installed.

CI runs this file twice: once before installing the package (the "not installed" test
runs, the others skip) and once after (the reverse), so both sides are exercised.
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

from bench_core.catalog import load_catalog
from bench_core.runner import ProblemCache, run_trial
from bench_core.specs import Budget
from bench_core.trial import TrialConfig

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "optbench-example-plugin"
DISTRIBUTION = "optbench-example-plugin"


def installed() -> bool:
    try:
        importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_install = pytest.mark.skipif(not installed(), reason=f"{DISTRIBUTION} is not installed "
                                   "(pip install -e examples/optbench-example-plugin)")


@pytest.mark.skipif(installed(), reason=f"{DISTRIBUTION} is installed in this environment")
def test_the_source_alone_is_not_discovered(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))  # importable, but no distribution metadata
    __import__("optbench_example.plugin")
    catalog = load_catalog(autoload=True)
    assert "signum" not in catalog.optimizers and "iris" not in catalog.problems
    assert "example" not in catalog.plugins


@needs_install
def test_the_installed_package_is_discovered_through_its_entry_point():
    catalog = load_catalog(autoload=True)
    assert catalog.issues == []
    assert catalog.origin[("optimizer", "signum")] == "example"
    assert catalog.origin[("problem", "iris")] == "example"
    info = catalog.plugins["example"]
    assert info.distribution == DISTRIBUTION and info.contract == 1
    assert info.source.startswith("entry point optbench_example.plugin")
    isolated = load_catalog(autoload=False)  # the test suite's own isolation keeps it out
    assert "signum" not in isolated.optimizers


@needs_install
def test_a_sweep_uses_the_installed_plugin():
    catalog = load_catalog(autoload=True)
    cache = ProblemCache(catalog)
    results = {}
    for optimizer, lr in (("signum", 0.01), ("sgd", 0.1)):
        config = TrialConfig(problem="iris", optimizer=optimizer, hyperparams={"lr": lr}, budget=Budget("epochs", 20),
                             batch_size=16, problem_options={"hidden": 0}, evals=4)
        results[optimizer] = run_trial(config, cache)
    for result in results.values():
        assert result.status == "ok", result.error
        assert result.final["valid_accuracy"] >= 0.8
        assert result.final["train_loss"] < result.curve[0]["train_loss"]


def test_the_example_declares_its_entry_point_and_contract():
    pyproject = (EXAMPLE / "pyproject.toml").read_text()
    assert '[project.entry-points.optbench]\nexample = "optbench_example.plugin"' in pyproject
    sys.path.insert(0, str(EXAMPLE / "src"))
    try:
        from optbench_example import plugin
    finally:
        sys.path.remove(str(EXAMPLE / "src"))
    from bench_core.hookspecs import SUPPORTED_CONTRACTS

    assert plugin.OPTBENCH_CONTRACT in SUPPORTED_CONTRACTS
