"""optbench report --compare: two result sets, each side selected on its own, changes judged against seed noise."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from scipy import stats

from bench_core.compare import compare_results, write_comparison
from bench_core.specs import Budget
from bench_core.store import Store
from bench_core.trial import TrialConfig, TrialResult


def _fill(path, losses: dict[tuple[str, str, float], list[float]]) -> None:
    with Store(path) as store:
        store.begin_run("s", {}, {})
        for (problem, optimizer, lr), values in losses.items():
            for seed, value in enumerate(values):
                config = TrialConfig(problem=problem, optimizer=optimizer, hyperparams={"lr": lr},
                                     budget=Budget("steps", 10), batch_size=8, seed=seed)
                final = {"train_loss": value, "valid_loss": value}
                result = TrialResult(config.trial_id, "ok", steps=10, samples=80, final=final, best=final,
                                     curve=[{"step": 0, "samples": 0, "seconds": 0.0, "lr": lr, **final}],
                                     steps_to_target=int(100 * value))
                store.save(config, result)
                store.add_to_suite("s", [config.trial_id])


A = {("p", "fast", 0.1): [0.50, 0.52, 0.51], ("p", "fast", 1.0): [0.9, 0.9, 0.9],
     ("p", "same", 0.1): [0.3, 0.4, 0.5], ("p", "lonely", 0.1): [0.2], ("q", "fast", 0.1): [0.1, 0.1, 0.1]}
B = {("p", "fast", 0.1): [0.80, 0.81, 0.82], ("p", "fast", 0.01): [0.20, 0.21, 0.22],
     ("p", "same", 0.1): [0.35, 0.45, 0.55], ("p", "lonely", 0.1): [0.1, 0.1]}


def test_each_side_is_selected_on_its_own_and_judged_by_welch(tmp_path):
    _fill(tmp_path / "a.sqlite", A)
    _fill(tmp_path / "b.sqlite", B)
    with Store(tmp_path / "a.sqlite") as a, Store(tmp_path / "b.sqlite") as b:
        table = compare_results(a.trials(), b.trials()).set_index("optimizer")
    assert set(table.index) == {"fast", "same", "lonely"}  # q exists only in A
    # fast: A's best is lr 0.1 (mean 0.51), B's best is lr 0.01 (mean 0.21): clearly better
    assert table.loc["fast", "a_mean"] == sum(A[("p", "fast", 0.1)]) / 3
    assert table.loc["fast", "b_mean"] == sum(B[("p", "fast", 0.01)]) / 3
    assert table.loc["fast", "verdict"] == "better"
    p_same = stats.ttest_ind(A[("p", "same", 0.1)], B[("p", "same", 0.1)], equal_var=False).pvalue
    assert p_same >= 0.05 and table.loc["same", "verdict"] == "same"
    assert table.loc["lonely", "verdict"] == "unknown"  # one seed in A
    assert table.loc["fast", "steps_a"] == 51 and table.loc["fast", "steps_b"] == 21


@pytest.mark.slow
def test_the_comparison_report_and_command(tmp_path):
    _fill(tmp_path / "a.sqlite", A)
    _fill(tmp_path / "b.sqlite", B)
    text = write_comparison(tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "out").read_text()
    row = r"\| p +\| fast +\| valid_loss \| 0\.51 ± 0\.01 +\| 0\.21 ± 0\.01 +\| +51 \| +21 +\| \*\*better\*\*"
    assert re.search(row, text)
    assert "1 better, 0 worse, 1 no significant change, 1 too few seeds to judge." in text
    done = subprocess.run([sys.executable, "-m", "bench_core.cli", "report", "--compare", str(tmp_path / "a.sqlite"),
                           str(tmp_path / "missing.sqlite")], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"optbench: error: --compare {tmp_path / 'missing.sqlite'}: no such "
                                                "file (run a suite first, or pass --results PATH)"]


def test_a_changed_budget_is_another_problem_variant_never_compared_as_the_same(tmp_path):
    for name, steps in (("a", 10), ("b", 1000)):
        with Store(tmp_path / f"{name}.sqlite") as store:
            store.begin_run("s", {}, {})
            for seed in (0, 1):
                config = TrialConfig(problem="p", optimizer="sgd", hyperparams={"lr": 0.1},
                                     budget=Budget("steps", steps), batch_size=8, seed=seed)
                final = {"train_loss": 1.0 / steps + seed, "valid_loss": 1.0 / steps + seed}
                store.save(config, TrialResult(config.trial_id, "ok", steps=steps, samples=8 * steps, final=final,
                                               best=final))
                store.add_to_suite("s", [config.trial_id])
    with Store(tmp_path / "a.sqlite") as a, Store(tmp_path / "b.sqlite") as b:
        assert compare_results(a.trials(), b.trials()).empty
    text = write_comparison(tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "out").read_text()
    assert "share no problem" in text
