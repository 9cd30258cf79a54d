"""Existing optimizer collections drop in: pytorch-optimizer's Lion and AdaBelief through the public API.

Skipped when the ``pytorch-optimizer`` package is absent; CI installs it.
"""

from __future__ import annotations

import pytest

pytest.importorskip("pytorch_optimizer")

from bench_core.catalog import load_catalog
from bench_core.runner import ProblemCache, run_trial
from bench_core.specs import Budget
from bench_core.trial import TrialConfig

# What a user writes to benchmark a third-party collection: a few lines per optimizer.
PLUGIN = """
    import pytorch_optimizer
    from bench_core import OptimizerSpec, Param, betas_to_kwargs, hookimpl

    OPTBENCH_CONTRACT = 1
    BETAS = {"beta1": Param(0.9, 0.5, 0.999), "beta2": Param(0.999, 0.9, 0.9999)}

    @hookimpl
    def optbench_optimizers():
        return [
            OptimizerSpec("po_lion", pytorch_optimizer.Lion, lr=1e-4, hyperparams=BETAS, to_kwargs=betas_to_kwargs),
            OptimizerSpec("po_adabelief", pytorch_optimizer.AdaBelief, lr=1e-3, hyperparams=BETAS,
                          to_kwargs=betas_to_kwargs),
        ]
"""


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugins") / "pytorch_optimizer_plugin.py"
    path.write_text(PLUGIN.replace("\n    ", "\n"))
    loaded = load_catalog([path])
    assert loaded.issues == []
    return loaded


@pytest.mark.parametrize(("name", "lr"), [("po_lion", 1e-3), ("po_adabelief", 1e-2)])
def test_collection_optimizers_train_through_the_harness(catalog, name, lr):
    assert catalog.origin[("optimizer", name)].endswith("pytorch_optimizer_plugin.py")
    cache = ProblemCache(catalog)
    config = TrialConfig(problem="digits_mlp", optimizer=name, hyperparams={"lr": lr}, budget=Budget("epochs", 5),
                         batch_size=32, problem_options={"width": 64, "depth": 1}, evals=5)
    result = run_trial(config, cache)
    assert result.status == "ok", result.error
    assert result.final["valid_accuracy"] > 0.85
    assert result.final["train_loss"] < 0.5 * result.curve[0]["train_loss"]


def test_collection_optimizers_pass_the_conformance_kit(catalog):
    from bench_core.testing import check_optimizer

    for name in ("po_lion", "po_adabelief"):
        failed = [r for r in check_optimizer(catalog.optimizers[name]) if not r.passed and not r.skipped]
        assert failed == [], f"{name}: {failed}"
