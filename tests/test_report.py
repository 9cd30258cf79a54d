"""The first report: selection on validation, mean ± std over seeds, diverged configurations never win."""

from __future__ import annotations

import math
import re

import pytest

from bench_core.configuration import best_configurations, with_identity
from bench_core.report import write_report
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
    best = best_configurations(with_identity(store.trials("s"))).set_index("optimizer")
    assert best.loc["a", "hp.lr"] == 0.1 and best.loc["b", "hp.lr"] == 0.1


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert re.search(r"> Report section `.*broken\.py` failed: RuntimeError: no figure for you", text)
    # pluggy's order: unmarked plugin sections after the built-in ones, the last registered first
    assert text.index("## Best configurations") < text.index("Report section `") < text.index("## Lowest test loss")
    assert text.index("## Lowest test loss") < text.index("## Environment")


@pytest.mark.slow
def test_interval_and_seed_noise_mark_match_scipy(store, tmp_path):
    from scipy import stats

    text = write_report(store, "s", tmp_path / "out").read_text()
    trials = store.trials("s")
    chosen = trials[(trials["optimizer"] == "a") & (trials["hp.lr"] == 0.1)]
    test = chosen["final.test_loss"]
    half = stats.t.ppf(0.975, 1) * test.std(ddof=1) / 2**0.5
    row_a = next(line for line in text.splitlines() if line.startswith("| a "))
    # the t-interval, cut at 0: a loss cannot be negative (test.mean() - half < 0 here)
    assert test.mean() - half < 0
    assert f"[0, {test.mean() + half:.4g}]" in row_a
    other = trials[trials["optimizer"] == "b"]["final.valid_loss"]
    p_value = stats.ttest_ind(chosen["final.valid_loss"], other, equal_var=False).pvalue
    row_b = next(line for line in text.splitlines() if line.startswith("| b"))
    assert row_b.startswith("| b ≈") == (p_value >= 0.05)
    assert p_value >= 0.05  # this hand-made pair is within seed noise


def _two_problem_store(path):
    """Problems p and q, optimizers a and b, two batch sizes; steps to target set by hand."""
    store = Store(path)
    store.begin_run("t", {}, {})
    steps = {("p", "a", 8): [10, 20], ("p", "b", 8): [40, 40], ("p", "a", 32): [5, 15], ("p", "b", 32): [20, 20],
             ("q", "a", 8): [None, None], ("q", "b", 8): [30, 50], ("q", "a", 32): [None, 7], ("q", "b", 32): [25, 25]}
    for (problem, optimizer, batch_size), values in steps.items():
        for seed, reached in enumerate(values):
            config = TrialConfig(problem=problem, optimizer=optimizer, hyperparams={"lr": 0.1},
                                 budget=Budget("steps", 100), batch_size=batch_size, seed=seed)
            final = {"train_loss": 1.0 / batch_size + seed, "valid_loss": 1.0 / batch_size + seed}
            result = TrialResult(config.trial_id, "ok", steps=100, samples=100 * batch_size, final=final, best=final,
                                 curve=[{"step": 0, "samples": 0, "seconds": 0.0, "lr": 0.1, **final}],
                                 steps_to_target=reached, samples_per_second=1000.0 * batch_size)
            store.save(config, result)
            store.add_to_suite("t", [config.trial_id])
    return store


@pytest.mark.slow
def test_summary_profile_and_batch_size_tables_match_hand_computation(tmp_path):
    from markdown_it import MarkdownIt

    with _two_problem_store(tmp_path / "r.sqlite") as store:
        path = write_report(store, "t", tmp_path / "out")
    text = path.read_text()
    # Tuned costs (median over seeds, min over batch sizes): p: a 10, b 20; q: a inf (8: never; 32: median of
    # (inf, 7) = inf), b 25. Wins: a on p, b on q -> 50% each; within 2x: a 50%, b 100%; solved: a 50%, b 100%.
    assert re.search(r"\| b +\| 50% +\| 100% +\| 100% +\|", text)
    assert re.search(r"\| a +\| 50% +\| 50% +\| 50% +\|", text)
    assert text.index("| b ") < text.index("| a ")
    # batch-size table of p: a at 8 -> median(10, 20) = 15, at 32 -> 10; throughput 8000 and 32000
    section = text[text.index("### Batch size: p"):text.index("### Batch size: q")]
    assert re.search(r"\| a +\| +8 \| +15 \| +0.1 \| +8000 \|", section)
    assert re.search(r"\| a +\| +32 \| +10 \| +0.1 \| +32000 \|", section)
    q_section = text[text.index("### Batch size: q"):]
    assert re.search(r"\| a +\| +8 \| not reached", q_section)
    images = [token.attrGet("src") for block in MarkdownIt().parse(text) if block.children
              for token in block.children if token.type == "image"]
    assert {"performance_profile.png", "p_batch_size.png", "q_batch_size.png"} <= set(images)
    for image in images:
        assert (path.parent / image).stat().st_size > 0


@pytest.mark.slow
def test_two_dimensional_problems_get_trajectories_over_contours(tmp_path, catalog):
    from bench_core.runner import ProblemCache, run_trial

    cache = ProblemCache(catalog)
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("2d", {}, {})
        for optimizer, lr in (("sgd", 0.01), ("adam", 0.1)):
            config = TrialConfig(problem="himmelblau", optimizer=optimizer, hyperparams={"lr": lr},
                                 budget=Budget("steps", 60), problem_options={"noise": 0.0}, evals=30)
            result = run_trial(config, cache)
            assert (result.curve[0]["point_x"], result.curve[0]["point_y"]) == (0.0, 0.0)  # the documented start
            store.save(config, result)
            store.add_to_suite("2d", [config.trial_id])
        path = write_report(store, "2d", tmp_path / "out", catalog)
    text = path.read_text()
    assert "![trajectories on himmelblau](himmelblau_trajectories.png)" in text
    assert (path.parent / "himmelblau_trajectories.png").stat().st_size > 10_000


@pytest.mark.slow
def test_sensitivity_settings_and_heatmap_match_hand_computation(tmp_path):
    # optimizer m: momentum 0.5 / 0.9 x lr 0.1 / 1.0 x batch 8 / 16 x seeds 0, 1. Hand-set outcomes:
    #   momentum 0.9 reaches the target at lr 0.1 in 20 and 40 steps (median 30), diverges at lr 1.0;
    #   momentum 0.5 reaches it only at lr 1.0, in 50 steps; its lr 0.1 runs never do.
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("h", {}, {})
        for momentum in (0.5, 0.9):
            for lr in (0.1, 1.0):
                for batch_size in (8, 16):
                    for seed in (0, 1):
                        diverged = momentum == 0.9 and lr == 1.0
                        reached = {(0.9, 0.1): 20 + 20 * seed, (0.5, 1.0): 50}.get((momentum, lr))
                        loss = math.nan if diverged else (0.1 if reached else 1.0) + 0.01 * seed + momentum / 100
                        config = TrialConfig(problem="p", optimizer="m", hyperparams={"lr": lr, "momentum": momentum},
                                             budget=Budget("steps", 100), batch_size=batch_size, seed=seed)
                        final = {"train_loss": loss, "valid_loss": loss}
                        result = TrialResult(config.trial_id, "diverged" if diverged else "ok", steps=100,
                                             samples=800, final=final, best=final, steps_to_target=reached,
                                             curve=[{"step": 0, "samples": 0, "seconds": 0.0, "lr": lr, **final}])
                        store.save(config, result)
                        store.add_to_suite("h", [config.trial_id])
        path = write_report(store, "h", tmp_path / "out")
    text = path.read_text()
    assert re.search(r"\| m +\| 0\.1, 1 +\| 0\.1 – 1 \(2/2; 1\.0 decades\) +\| +1 \|", text)
    # best valid loss per momentum value: 0.5 -> lr 1.0, mean of (0.105, 0.115); 0.9 -> lr 0.1, (0.109, 0.119)
    assert re.search(r"\| m +\| +0\.5 \| 0\.11 ± 0\.0071 +\| +50 \| +1 +\|", text)
    assert re.search(r"\| m +\| +0\.9 \| 0\.114 ± 0\.0071 +\| +30 \| +0\.1 +\|", text)
    assert (path.parent / "p_heatmap.png").stat().st_size > 0


def test_errored_trials_are_counted_and_thin_sections_say_so(tmp_path):
    from markdown_it import MarkdownIt

    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("e", {}, {})
        for seed, status in enumerate(["ok", "diverged", "error"]):
            config = TrialConfig(problem="p", optimizer="a", hyperparams={"lr": 0.1}, budget=Budget("steps", 10),
                                 batch_size=8, seed=seed)
            final = {"train_loss": 0.5, "valid_loss": 0.5} if status == "ok" else {}
            result = TrialResult(config.trial_id, status, steps=10, samples=80, final=final, best=final,
                                 curve=[{"step": 0, "samples": 0, "seconds": 0.0, "lr": 0.1, **final}] if final else [],
                                 error="Traceback: boom" if status == "error" else None)
            store.save(config, result)
            store.add_to_suite("e", [config.trial_id])
        path = write_report(store, "e", tmp_path / "out")
    text = path.read_text()
    assert re.search(r"\| \*\*all\*\* +\| +1 \| +1 \| +1 \|", text)
    assert "One learning rate in this sweep" in text and "One batch size (8) in this sweep" in text
    assert "Performance profiles need at least two problems and two optimizers" in text
    for block in MarkdownIt().parse(text):
        for token in block.children or []:
            if token.type == "image":
                assert (path.parent / token.attrGet("src")).stat().st_size > 0


def _save_counted(store, problem, optimizer, seed, steps, evaluations, reached=None, evaluations_to_target=None):
    config = TrialConfig(problem=problem, optimizer=optimizer, hyperparams={"lr": 0.1}, budget=Budget("steps", steps),
                         seed=seed)
    final = {"train_loss": 0.1 + seed, "valid_loss": 0.1 + seed}
    result = TrialResult(config.trial_id, "ok", steps=steps, samples=steps, final=final, best=final,
                         curve=[{"step": 0, "samples": 0, "seconds": 0.0, "lr": 0.1, **final}],
                         steps_to_target=reached, gradient_evaluations=evaluations,
                         gradient_evaluations_to_target=evaluations_to_target)
    store.save(config, result)
    store.add_to_suite("g", [config.trial_id])


@pytest.mark.slow
def test_gradient_evaluations_are_shown_where_some_optimizer_evaluates_more_than_once_a_step(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("g", {}, {})
        # p: a closure optimizer (three seeds: 25, 31 and 40 evaluations in 10 steps -> 3.1 per step; the target
        # after 4 steps, at 11, 13 and 17 evaluations -> 13) beside an optimizer stored before evaluations were
        # counted (None: one per step) and one counted once a step: fewer steps, but more evaluations, than adam
        for seed, (evaluations, to_target) in enumerate([(25, 11), (31, 13), (40, 17)]):
            _save_counted(store, "p", "lbfgs", seed, 10, evaluations, reached=4, evaluations_to_target=to_target)
        for seed, (evaluations, to_target) in enumerate([(None, None), (10, 8)]):
            _save_counted(store, "p", "adam", seed, 10, evaluations, reached=8, evaluations_to_target=to_target)
        # q: every optimizer once a step: no column, no note
        for seed in (0, 1):
            _save_counted(store, "q", "adam", seed, 10, 10)
            _save_counted(store, "q", "sgd", seed, 10, None)
        text = write_report(store, "g", tmp_path / "out").read_text()
    p = text[text.index("### Best configurations: p"):text.index("### Best configurations: q")]
    q = text[text.index("### Best configurations: q"):]
    q = q[:q.index("\n## ")]
    assert "gradient evaluations" in p and "gradient evaluations" not in q
    assert re.search(r"\| lbfgs .*\| 4 \(3/3\) +\| 13 \(3.1/step\) +\|", p)
    assert re.search(r"\| adam .*\| 8 \(2/2\) +\| 8 \(1/step\) +\|", p)
    assert "compare speeds on this column" in p and "compare speeds" not in q
    # the summary races on evaluations: adam (8) beats lbfgs (13) on p although lbfgs took fewer steps (4 < 8)
    summary = text[text.index("## Summary across problems"):]
    assert "Cost of an optimizer on a problem: gradient evaluations to target" in summary
    assert re.search(r"\| adam +\| 50% +\|", summary) and re.search(r"\| lbfgs +\| 0% +\|", summary)


@pytest.mark.slow
def test_a_sweep_with_lbfgs_and_adam_reports_their_gradient_evaluations(tmp_path):
    from bench_core.cli import main

    results, reports = tmp_path / "r.sqlite", tmp_path / "reports"
    assert main(["run", "--problem", "logistic", "--optimizer", "lbfgs,adam", "--lr", "1.0,0.03", "--steps", "20",
                 "--batch-size", "341", "--evals", "4", "--name", "closure", "--results", str(results),
                 "--report-dir", str(reports), "--workers", "1", "--no-progress"]) == 0
    with Store(results) as store:
        trials = store.trials("closure")
    text = (reports / "closure" / "README.md").read_text()
    table = text[text.index("### Best configurations: logistic"):]
    header = next(line for line in table.splitlines() if line.startswith("| optimizer"))
    assert re.search(r"\| steps to target +\| gradient evaluations to target +\|", header)
    chosen = {line.split("|")[1].strip().split()[0]: line for line in table.splitlines()[4:6]}
    lbfgs = trials[trials["optimizer"] == "lbfgs"].iloc[0]
    assert set(chosen) == {"lbfgs", "adam"}
    assert re.search(r"\| (not reached|\d+) \(1/step\) +\|", chosen["adam"])
    assert lbfgs["gradient_evaluations"] > lbfgs["steps"] == 20
    per_step = float(re.search(r"\(([\d.]+)/step\)", chosen["lbfgs"]).group(1))
    assert per_step == pytest.approx(lbfgs["gradient_evaluations"] / 20, rel=1e-2)
    if not math.isnan(lbfgs["steps_to_target"]):
        assert lbfgs["steps_to_target"] <= lbfgs["gradient_evaluations_to_target"] <= lbfgs["gradient_evaluations"]
        assert f"| {int(lbfgs['gradient_evaluations_to_target'])} (" in chosen["lbfgs"]
    assert "compare speeds on this column" in table
