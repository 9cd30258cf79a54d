"""The first report: selection on validation, mean ± std over seeds, diverged configurations never win."""

from __future__ import annotations

import math
import re

import pytest

from bench_core.report import best_configurations, write_report
from bench_core.specs import Budget
from bench_core.store import Store
from bench_core.trial import TrialConfig, TrialResult


def _save(store, optimizer, lr, seed, valid, test, status="ok"):
    config = TrialConfig(problem="p", optimizer=optimizer, hyperparams={"lr": lr}, budget=Budget("steps", 10),
                         batch_size=8, seed=seed)
    final = {"train_loss": valid, "valid_loss": valid, "test_loss": test}
    curve = [{"step": 0, "samples": 0, "seconds": 0.0, "lr": lr, **final}]
    result = TrialResult(config.trial_id, status, steps=10, samples=80, final=final, best=final, curve=curve,
                         steps_to_target=5 if valid < 0.5 else None)
    store.save(config, result)
    store.add_to_suite("s", [config.trial_id])


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("s", {"description": "a hand-made suite"}, {"torch": "x"})
        # a: lr 0.1 is best on validation (0.2, 0.4 -> mean 0.3); lr 1.0 scores better but diverged once
        _save(store, "a", 0.1, 0, valid=0.2, test=1.0)
        _save(store, "a", 0.1, 1, valid=0.4, test=2.0)
        _save(store, "a", 1.0, 0, valid=0.01, test=0.0)
        _save(store, "a", 1.0, 1, valid=math.nan, test=math.nan, status="diverged")
        _save(store, "b", 0.1, 0, valid=0.9, test=3.0)
        _save(store, "b", 0.1, 1, valid=0.7, test=5.0)
        yield store


def test_selection_skips_configurations_with_a_diverged_seed(store):
    best = best_configurations(store.trials("s")).set_index("optimizer")
    assert best.loc["a", "hp.lr"] == 0.1 and best.loc["b", "hp.lr"] == 0.1


def test_the_table_shows_mean_and_std_over_seeds(store, tmp_path):
    text = write_report(store, "s", tmp_path / "out").read_text()
    trials = store.trials("s")
    chosen = trials[(trials["optimizer"] == "a") & (trials["hp.lr"] == 0.1)]["final.test_loss"]
    expected = f"{chosen.mean():.4g} ± {chosen.std(ddof=1):.2g}"
    row = next(line for line in text.splitlines() if line.startswith("| a "))
    assert expected == "1.5 ± 0.71" and expected in row
    assert "1/4" in row, "a diverged in one of its four trials"
    assert "5 (2/2)" in row
    assert text.index("| a ") < text.index("| b "), "rows sorted by the selection metric"
    assert "a hand-made suite" in text
    statuses = trials["status"].value_counts()
    assert re.search(rf"\| \*\*all\*\* +\| +{statuses['ok']} \| +{statuses['diverged']} \| +0 \|", text)


REPORT_PLUGIN = """
    from bench_core import hookimpl

    @hookimpl
    def optbench_report_section(suite, trials, folder):
        (folder / "extra.txt").write_text("written by the plugin")
        best = trials.groupby("optimizer")["final.test_loss"].min()
        rows = "\\n".join(f"| {name} | {value:g} |" for name, value in best.items())
        return f"## Lowest test loss ({suite})\\n\\n| optimizer | test loss |\\n|---|---|\\n{rows}"
"""

BROKEN_REPORT_PLUGIN = """
    from bench_core import hookimpl

    @hookimpl
    def optbench_report_section(trials):
        raise RuntimeError("no figure for you")
"""


def test_plugins_add_report_sections_and_a_broken_one_is_a_note(store, tmp_path, write_plugin):
    from bench_core.catalog import load_catalog

    catalog = load_catalog([write_plugin("lowest", REPORT_PLUGIN), write_plugin("broken", BROKEN_REPORT_PLUGIN)])
    path = write_report(store, "s", tmp_path / "reports", catalog)
    text = path.read_text()
    expected = store.trials("s").groupby("optimizer")["final.test_loss"].min()
    assert "## Lowest test loss (s)" in text
    for name, value in expected.items():
        assert f"| {name} | {value:g} |" in text
    assert (path.parent / "extra.txt").read_text() == "written by the plugin"
    assert re.search(r"> Report section of plugin `.*broken\.py` failed: RuntimeError: no figure for you", text)
    assert text.index("## Lowest test loss") < text.index("Report section of plugin")  # registration order
