"""Reports at their edges: variants never pooled, honest seed labels, bounded intervals, marked failures,
distinct styles, sections as plugins, findings backed by their tables."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from bench_core.configuration import with_identity
from bench_core.report import slug, write_report
from bench_core.specs import Budget
from bench_core.store import Store
from bench_core.styles import STYLES_DISTINCT, optimizer_styles
from bench_core.trial import TrialConfig, TrialResult


def save(store, suite="s", problem="p", optimizer="a", lr=0.1, seed=0, status="ok", final=None, options=None,
         budget=None, batch_size=8, reached=None, curve=None, error=None, schedule="constant", **hyperparams):
    config = TrialConfig(problem=problem, optimizer=optimizer, hyperparams={"lr": lr, **hyperparams},
                         budget=budget or Budget("steps", 10), batch_size=batch_size, seed=seed,
                         problem_options=options or {}, schedule=schedule)
    final = final if final is not None else {}
    points = curve if curve is not None else ([{"step": 0, "samples": 0, "seconds": 0.0, "lr": lr, **final}]
                                              if final else [])
    result = TrialResult(config.trial_id, status, steps=10, samples=80, final=final, best=final, curve=points,
                         steps_to_target=reached, error=error)
    store.save(config, result)
    store.add_to_suite(suite, [config.trial_id])
    return config


def table_rows(text: str, heading: str) -> list[str]:
    """The table rows (not header or rule) under ``heading``."""
    start = text.index(heading)
    block = next(b for b in text[start:].split("\n\n")[1:] if b.startswith("|"))
    return [line for line in block.splitlines()[2:] if line.startswith("|")]


@pytest.mark.slow
def test_variants_of_a_problem_option_get_separate_rows_never_pooled(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("s", {}, {})
        for noise, base in ((0.5, 1.0), (3.0, 5.0)):
            for seed in (0, 1):
                loss = base + 0.1 * seed
                save(store, options={"noise": noise}, seed=seed, final={"train_loss": loss, "valid_loss": loss})
        path = write_report(store, "s", tmp_path / "out")
    text = path.read_text()
    low = table_rows(text, "### Best configurations: p (noise=0.5)")
    high = table_rows(text, "### Best configurations: p (noise=3)")
    assert len(low) == len(high) == 1
    assert "1.05 ± 0.071" in low[0] and "5.05 ± 0.071" in high[0]  # each variant's own seeds
    assert "3.05" not in text  # the pooled mean of the two variants appears nowhere
    trials = with_identity(store_trials(tmp_path / "r.sqlite"))
    assert trials.groupby("variant")["config_id"].nunique().to_dict() == {"p (noise=0.5)": 1, "p (noise=3)": 1}


def store_trials(path):
    with Store(path) as store:
        return store.trials("s")


@pytest.mark.slow
def test_a_budget_variant_is_its_own_row_and_the_seed_is_the_only_thing_averaged(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("s", {}, {})
        for steps, loss in ((10, 2.0), (1000, 0.5)):
            for seed in (0, 1):
                save(store, budget=Budget("steps", steps), seed=seed,
                     final={"train_loss": loss + seed / 10, "valid_loss": loss + seed / 10})
        text = write_report(store, "s", tmp_path / "out").read_text()
    assert len(table_rows(text, "### Best configurations: p (steps=10)")) == 1
    assert len(table_rows(text, "### Best configurations: p (steps=1000)")) == 1


def test_accuracy_intervals_stay_in_the_unit_interval_with_two_seeds(tmp_path):
    from scipy import stats

    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("s", {}, {})
        for seed, accuracy in enumerate((0.99, 0.90)):
            save(store, seed=seed, final={"train_loss": 0.1, "valid_loss": 0.1 + seed / 100,
                                          "test_accuracy": accuracy})
        text = write_report(store, "s", tmp_path / "out").read_text()
    half = stats.t.ppf(0.975, 1) * pd.Series([0.99, 0.90]).std(ddof=1) / math.sqrt(2)
    assert 0.945 + half > 1  # the unbounded Student-t interval would leave [0, 1]
    row = table_rows(text, "### Best configurations: p")[0]
    assert f"[{0.945 - half:.4g}, 1]" in row
    for low, high in re.findall(r"\[(-?[\d.e-]+), (-?[\d.e-]+)\]", row):
        assert 0 <= float(low) <= float(high) <= 1


@pytest.mark.slow
def test_a_deterministic_problem_with_two_seeds_never_says_one_seed(tmp_path, catalog):
    from bench_core.runner import ProblemCache, run_trial

    cache = ProblemCache(catalog)
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("s", {}, {})
        for optimizer, lr in (("sgd", 0.05), ("adam", 0.1)):
            for seed in (0, 1, 2):
                config = TrialConfig(problem="booth", optimizer=optimizer, hyperparams={"lr": lr},
                                     budget=Budget("steps", 60), problem_options={"noise": 0.0}, seed=seed, evals=6)
                result = run_trial(config, cache)
                store.save(config, result)
                store.add_to_suite("s", [config.trial_id])
        text = write_report(store, "s", tmp_path / "out", catalog).read_text()
    rows = table_rows(text, "### Best configurations: booth")
    assert len(rows) == 2
    assert "one seed" not in text
    for row in rows:
        assert "3/3, identical" in row and "(seeds identical)" in row
        assert "±" not in row  # no rounding noise shown as spread
    assert re.search(r"\*\*booth:\*\* \w+ has the lowest train_loss \([^)]*\), exactly \(the seeds agree\)", text)
    assert "beyond seed noise" not in text.split("## Trials")[0].split("**booth:**")[1].split("\n")[0]


@pytest.mark.slow
def test_the_seed_note_appears_only_when_true(tmp_path):
    # b diverged on every seed: that is not "fewer than two seeds", and no note about seeds belongs here
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("s", {}, {})
        for seed in (0, 1):
            loss = 0.1 + seed / 10
            save(store, optimizer="a", seed=seed, final={"train_loss": loss, "valid_loss": loss})
            save(store, optimizer="b", seed=seed, status="diverged", final={"train_loss": math.nan})
        save(store, optimizer="c", seed=0, final={"train_loss": 0.5, "valid_loss": 0.5})
        text = write_report(store, "s", tmp_path / "out").read_text()
    assert "Seed noise cannot be judged for c (one finished seed)." in text
    assert "for b" not in text and "fewer than two seeds" not in text
    with Store(tmp_path / "one.sqlite") as store:
        store.begin_run("s", {}, {})
        for optimizer in ("a", "b"):
            save(store, optimizer=optimizer, final={"train_loss": 0.1, "valid_loss": 0.1})
        text = write_report(store, "s", tmp_path / "out1").read_text()
    assert "The leader (a) finished one seed, so seed noise cannot be judged here." in text
    assert "– (one seed)" in text and "No findings are stated: every configuration ran one seed" in text


@pytest.mark.slow
def test_errored_trials_are_marked_in_every_table_that_counts_failures(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("s", {}, {})
        for seed in (0, 1):
            save(store, optimizer="a", seed=seed, final={"train_loss": 0.2, "valid_loss": 0.2 + seed / 10})
            save(store, optimizer="a", lr=1.0, seed=seed, status="diverged", final={"train_loss": math.nan})
            save(store, optimizer="b", seed=seed, status="error", error="Traceback...\nRuntimeError: boom")
        text = write_report(store, "s", tmp_path / "out").read_text()
    rows = {row.split("|")[1].strip(): row for row in table_rows(text, "### Best configurations: p")}
    assert rows["b"].rstrip(" |").endswith("⚠ error 2/2") and "– (0/2)" in rows["b"]
    assert "diverged 2/4" in rows["a"] and "⚠" not in rows["a"]
    sensitivity = {row.split("|")[1].strip(): row for row in table_rows(text, "### Learning-rate sensitivity: p")}
    assert "⚠ 0.1" in sensitivity["b"] and "⚠" not in sensitivity["a"]
    assert "- ⚠ `b` on p: 2 trial(s): `RuntimeError: boom`" in text


@pytest.mark.slow
def test_twenty_optimizers_get_twenty_distinct_styles_the_same_in_every_figure(tmp_path, monkeypatch):
    names = [f"opt{i:02d}" for i in range(20)]
    styles = optimizer_styles(names)
    assert len({(s.color, s.marker, s.linestyle) for s in styles.values()}) == 20
    assert len({(s.color, s.marker) for s in styles.values()}) == 20  # still distinct where line style means batch
    assert STYLES_DISTINCT >= 20
    assert optimizer_styles(reversed(names)) == styles  # the order names come in does not matter

    from matplotlib.axes import Axes

    drawn: dict[str, set] = {}
    original = Axes.plot

    def recording_plot(self, *args, **kwargs):
        if kwargs.get("label") in styles:
            drawn.setdefault(kwargs["label"], set()).add((kwargs.get("color"), kwargs.get("marker")))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", recording_plot)
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("s", {}, {})
        for name in names:
            for lr in (0.1, 1.0):
                loss = 1.0 + names.index(name) / 10 + lr
                save(store, optimizer=name, lr=lr, final={"train_loss": loss, "valid_loss": loss},
                     curve=[{"step": s, "samples": 8 * s, "seconds": 0.0, "lr": lr, "train_loss": loss + 1 / (1 + s)}
                            for s in (0, 5, 10)])
        write_report(store, "s", tmp_path / "out")
    assert set(drawn) == set(names)  # curves and loss-vs-lr figures drew every optimizer
    for name, seen in drawn.items():
        assert seen == {(styles[name].color, styles[name].marker)}, name


PATH_PROBLEM = """
    import torch
    from bench_core import Problem, ProblemSpec, hookimpl

    class Bowl(Problem):
        '''A 2-D bowl that reports its point but offers no surface for contours.'''
        stochastic = False

        def init_model(self):
            model = torch.nn.Module()
            model.x = torch.nn.Parameter(torch.tensor([2.0, -1.0]))
            return model

        def batches(self, batch_size, generator):
            while True:
                yield None

        def loss(self, model, batch):
            return (model.x ** 2).sum()

        def evaluate(self, model):
            x, y = model.x.tolist()
            return {"train_loss": x * x + y * y, "point_x": x, "point_y": y}

    @hookimpl
    def optbench_problems():
        return [ProblemSpec("bowl", Bowl)]
"""


@pytest.mark.slow
def test_a_plugin_problem_with_points_but_no_surface_gets_a_note_not_a_crash(tmp_path, write_plugin):
    from bench_core.catalog import load_catalog
    from bench_core.runner import ProblemCache, run_trial

    catalog = load_catalog([write_plugin("bowl", PATH_PROBLEM)])
    cache = ProblemCache(catalog)
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("s", {}, {})
        config = TrialConfig(problem="bowl", optimizer="sgd", hyperparams={"lr": 0.1}, budget=Budget("steps", 20),
                             evals=5)
        store.save(config, run_trial(config, cache))
        store.add_to_suite("s", [config.trial_id])
        path = write_report(store, "s", tmp_path / "out", catalog)
    text = path.read_text()
    assert "![trajectories on bowl](bowl_trajectories.png)" in text
    assert "No contours: problem `bowl` does not provide the `surface` capability." in text
    assert "failed" not in text.split("## Trajectories")[1]


FIRST_SECTION = """
    from bench_core import hookimpl

    @hookimpl(tryfirst=True)
    def optbench_report_section(report):
        return "## Read me first\\n\\n" + str(len(report.variants())) + " variant(s)"
"""

LAST_SECTION = """
    from bench_core import hookimpl

    @hookimpl(trylast=True)
    def optbench_report_section(suite):
        return "## Appendix of " + suite
"""

BROKEN_SECTION = """
    from bench_core import hookimpl

    @hookimpl
    def optbench_report_section(trials):
        return 1 / 0
"""


@pytest.mark.slow
def test_plugin_sections_take_their_place_through_pluggy_and_a_broken_one_is_a_note(tmp_path, write_plugin):
    from bench_core.catalog import load_catalog

    catalog = load_catalog([write_plugin("first", FIRST_SECTION), write_plugin("last", LAST_SECTION),
                            write_plugin("broken", BROKEN_SECTION)])
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("s", {}, {"torch": "x"})
        for seed in (0, 1):
            save(store, seed=seed, final={"train_loss": 0.3, "valid_loss": 0.3 + seed})
        text = write_report(store, "s", tmp_path / "out", catalog).read_text()
    order = [text.index(marker) for marker in ("## Read me first", "## Findings", "## Best configurations",
                                               "failed: ZeroDivisionError", "## Appendix of s", "## Environment")]
    assert order == sorted(order)
    assert "## Read me first\n\n1 variant(s)" in text


def test_a_built_in_section_that_raises_becomes_a_note_and_the_rest_is_written(tmp_path, monkeypatch):
    from bench_core.report_sections import curves

    def broken(*args):
        raise ValueError("no curves today")

    monkeypatch.setattr(curves, "plot", broken)
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("s", {}, {"torch": "x"})
        save(store, final={"train_loss": 0.3, "valid_loss": 0.3})
        text = write_report(store, "s", tmp_path / "out").read_text()
    assert "> Report section `optbench.report.curves` failed: ValueError: no curves today" in text
    assert "## Best configurations" in text and "## Environment" in text


def _findings_store(path, seeds):
    store = Store(path)
    store.begin_run("s", {}, {})
    # adam beats sgd clearly on p; on q they tie within noise. Batch sizes 8 and 32 with steps to target.
    values = {("p", "adam"): 0.10, ("p", "sgd"): 0.50, ("q", "adam"): 0.30, ("q", "sgd"): 0.30}
    for (problem, optimizer), base in values.items():
        for batch_size, steps in ((8, 40), (32, 20)):
            for seed in seeds:
                loss = base + 0.01 * seed + (0.001 if batch_size == 32 else 0)
                save(store, problem=problem, optimizer=optimizer, seed=seed, batch_size=batch_size,
                     final={"train_loss": loss, "valid_loss": loss},
                     reached=steps if optimizer == "adam" or problem == "q" else None)
    return store


@pytest.mark.slow
def test_findings_match_the_tables_they_cite(tmp_path):
    from markdown_it import MarkdownIt

    with _findings_store(tmp_path / "r.sqlite", seeds=(0, 1, 2)) as store:
        path = write_report(store, "s", tmp_path / "out")
    text = path.read_text()
    findings = text[text.index("## Findings"):text.index("## Trials")]
    assert ("**p:** adam has the lowest valid_loss (0.11 against 0.51 for sgd, the next best), beyond seed noise; "
            "1 of 2 optimizers reached the target on every seed ([table](#best-configurations-p))") in findings
    assert "**q:** adam has the lowest valid_loss (0.31), within seed noise of sgd; 2 of 2 optimizers" in findings
    leader_row = table_rows(text, "### Best configurations: p")[0]
    assert leader_row.startswith("| adam ") and "0.11 ± 0.01" in leader_row
    assert "it reached the target on 2 of 2 problem(s)" in findings and "within 2x" in findings
    assert "from batch 8 to 32 (perfect scaling: 4x fewer steps) steps to target fell by adam 2x" in findings
    # every link of the findings lands on a heading of the report
    headings = {slug(token.content) for token in MarkdownIt().parse(text) if token.type == "inline"
                and token.map and text.splitlines()[token.map[0]].startswith("#")}
    for target in re.findall(r"\]\(#([^)]+)\)", findings):
        assert target in headings, target


@pytest.mark.slow
def test_findings_are_absent_when_the_data_cannot_support_them(tmp_path):
    with _findings_store(tmp_path / "r.sqlite", seeds=(0,)) as store:
        text = write_report(store, "s", tmp_path / "out").read_text()
    findings = text[text.index("## Findings"):text.index("## Trials")]
    assert "No findings are stated: every configuration ran one seed" in findings
    assert "adam has the lowest" not in findings and "Batch size on" not in findings


@pytest.mark.slow
def test_a_run_that_ended_above_its_start_is_marked(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("s", {}, {})
        for seed in (0, 1):
            curve = [{"step": 0, "samples": 0, "seconds": 0.0, "lr": 0.1, "train_loss": 1.0},
                     {"step": 10, "samples": 80, "seconds": 0.0, "lr": 0.1, "train_loss": 3.0 + seed}]
            save(store, optimizer="up", seed=seed, final={"train_loss": 3.0 + seed}, curve=curve)
            save(store, optimizer="down", seed=seed, final={"train_loss": 0.5 + seed})
        text = write_report(store, "s", tmp_path / "out").read_text()
    rows = {row.split("|")[1].strip(): row for row in table_rows(text, "### Best configurations: p")}
    assert [name.split(" ≈")[0] for name in rows] == ["down", "up ↑"]
    assert "ends above 10 × its initial loss" in text  # the divergence rule is stated


@pytest.mark.slow
def test_reports_leave_the_users_matplotlib_backend_alone(tmp_path):
    import subprocess
    import sys

    script = (
        "import matplotlib; matplotlib.use('svg'); import bench_core.compare, bench_core.lr_range; "
        "from bench_core.report import write_report; from bench_core.store import Store; "
        f"store = Store({str(tmp_path / 'r.sqlite')!r}); store.begin_run('s', {{}}, {{}}); "
        f"write_report(store, 's', {str(tmp_path / 'out')!r}); print(matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "svg"


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [(0,), (0, 1)])
def test_a_range_test_report_carries_plugin_sections_and_the_environment(tmp_path, write_plugin, catalog, seeds):
    from bench_core.catalog import load_catalog
    from bench_core.driver import run_sweep
    from bench_core.lr_range import range_settings
    from bench_core.suite import expand

    plugin_catalog = load_catalog([write_plugin("last", LAST_SECTION)])
    settings = range_settings(["quadratic"], ["sgd"], 1e-4, 1.0, 30, name="rt") | {"seeds": list(seeds),
                                                                                  "device": "cpu"}
    with Store(tmp_path / "r.sqlite") as store:
        run_sweep(expand(settings, plugin_catalog), plugin_catalog, store, workers=1, progress=False)
        text = write_report(store, "rt", tmp_path / "out", plugin_catalog).read_text()
    assert text.startswith("# optbench learning-rate range test: rt")
    assert "## Appendix of rt" in text and "## Environment" in text
    assert "## Best configurations" not in text and "## Findings" not in text


@pytest.mark.slow
def test_a_suite_varying_a_problem_option_reports_each_variant_from_its_own_trials(tmp_path, catalog):
    from bench_core.driver import run_sweep
    from bench_core.suite import expand

    settings = {"name": "s", "problems": ["quadratic"], "optimizers": ["sgd"], "lr": [0.01], "seeds": [0, 1],
                "steps": 30, "evals": 3, "batch_size": 8, "device": "cpu",
                "problem": {"quadratic": {"options": {"noise": [0.5, 3.0]}}}}
    with Store(tmp_path / "r.sqlite") as store:
        run_sweep(expand(settings, catalog), catalog, store, workers=1, progress=False)
        trials = store.trials("s")
        text = write_report(store, "s", tmp_path / "out", catalog).read_text()
    assert len(trials) == 4 and trials["opt.noise"].nunique() == 2
    for noise in (0.5, 3.0):
        own = trials.loc[trials["opt.noise"] == noise, "final.train_loss"]
        rows = table_rows(text, f"### Best configurations: quadratic (noise={noise:g})")
        assert len(rows) == 1 and f"{own.mean():.4g} ± {own.std(ddof=1):.2g}" in rows[0]
    pooled = trials["final.train_loss"]
    assert f"{pooled.mean():.4g} ± {pooled.std(ddof=1):.2g}" not in text


@pytest.mark.slow
def test_the_critical_batch_size_is_where_scaling_falls_below_half_of_perfect(tmp_path):
    from bench_core.analysis import critical_batch_size

    # 4 -> 16: 4x fewer steps (perfect); 16 -> 64: 2x (half of perfect, still paying); 64 -> 256: 50/45 = 1.1x
    rows = pd.DataFrame({"batch_size": [4, 16, 64, 256], "steps": [400.0, 100.0, 50.0, 45.0]})
    assert critical_batch_size(rows) == 64
    assert critical_batch_size(rows.assign(steps=[400.0, 100.0, 25.0, 6.25])) == 256  # perfect all the way
    assert critical_batch_size(rows.assign(steps=[400.0, math.inf, math.inf, math.inf])) is None
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("s", {}, {})
        for batch_size, steps in zip([4, 16, 64, 256], [400, 100, 50, 45], strict=True):
            for seed in (0, 1):
                save(store, optimizer="adam", batch_size=batch_size, seed=seed, reached=steps,
                     final={"train_loss": 0.1 + seed / 100, "valid_loss": 0.1 + seed / 100})
        text = write_report(store, "s", tmp_path / "out").read_text()
    assert ("from batch 4 to 256 (perfect scaling: 64x fewer steps) steps to target fell by adam 8.9x; more batch "
            "stopped paying (less than half of perfect scaling) between batch 64 and 256 for adam") in text
    row = next(r for r in table_rows(text, "### Batch size: p") if re.search(r"\| +256 \|", r))
    assert row.rstrip(" |").endswith("64")


@pytest.mark.slow
def test_a_schedule_finding_sums_up_each_optimizer_against_a_constant_rate(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("s", {}, {})
        # a: cosine clearly better (0.1 vs 0.5); b: the same within noise; each at its best of two lrs
        values = {("a", "constant"): 0.5, ("a", "cosine"): 0.1, ("b", "constant"): 0.3, ("b", "cosine"): 0.3}
        for (optimizer, schedule), base in values.items():
            for lr, penalty in ((0.1, 0.0), (1.0, 0.2)):
                for seed in (0, 1, 2):
                    loss = base + penalty + 0.01 * seed
                    save(store, optimizer=optimizer, schedule=schedule, lr=lr, seed=seed,
                         final={"train_loss": loss, "valid_loss": loss})
        text = write_report(store, "s", tmp_path / "out").read_text()
    assert ("**Schedules on p** (the best schedule against a constant learning rate, each at its best learning "
            "rate): better for a (cosine); within seed noise for b (cosine) ([table](#schedule-p)).") in text
    rows = {row.split("|")[1].strip() + row.split("|")[2].strip(): row for row in table_rows(text, "### schedule: p")}
    assert "0.11 ± 0.01" in rows["acosine"] and re.search(r"\| +0\.1 \| best", rows["acosine"])
    assert "worse beyond seed noise" in rows["aconstant"]


def test_the_report_command_survives_a_broken_section_with_exit_0(tmp_path, write_plugin, capsys):
    from bench_core.cli import main

    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("s", {}, {})
        save(store, final={"train_loss": 0.3, "valid_loss": 0.3})
    plugin = write_plugin("broken", BROKEN_SECTION)
    status = main(["report", "--results", str(tmp_path / "r.sqlite"), "--report-dir", str(tmp_path / "out"),
                   "--plugins", str(plugin)])
    assert status == 0
    text = (tmp_path / "out" / "s" / "README.md").read_text()
    assert re.search(r"^> Report section `.*broken\.py` failed: ZeroDivisionError: division by zero$", text, re.M)
    assert "## Best configurations" in text and "Traceback" not in capsys.readouterr().err


def test_optbench_list_shows_the_report_sections_in_report_order(write_plugin):
    from bench_core.catalog import load_catalog
    from bench_core.listing import catalog_rows, render_listing
    from bench_core.report_sections import DEFAULT_SECTIONS

    plugin = write_plugin("first", FIRST_SECTION)
    rows = catalog_rows(load_catalog([plugin]))
    names = [row["name"] for row in rows["report_sections"]]
    assert names == [f"optbench.report.{name}" for name in DEFAULT_SECTIONS] + [str(plugin)]
    assert "Report sections" in render_listing(rows) and "optbench.report.leaderboard" in render_listing(rows)


def test_variants_whose_options_print_alike_still_get_distinct_labels(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("s", {}, {})
        for noise in (1, 1.0):  # different canonical configs, the same text
            for seed in (0, 1):
                save(store, options={"noise": noise}, seed=seed, final={"train_loss": noise + seed})
        trials = with_identity(store.trials("s"))
    assert trials["variant_id"].nunique() == 2
    assert trials.groupby("variant")["variant_id"].nunique().max() == 1  # never two variants under one label


@pytest.mark.slow
def test_a_best_learning_rate_at_the_edge_of_the_grid_is_flagged_and_only_then(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.begin_run("s", {}, {})
        for seed in (0, 1):
            for lr, loss in ((0.01, 0.9), (0.1, 0.5), (1.0, 0.2)):  # a: best at the largest
                save(store, optimizer="a", lr=lr, seed=seed, final={"train_loss": loss + seed / 100})
            for lr, loss in ((0.01, 0.9), (0.1, 0.1), (1.0, 0.4)):  # b: best inside the grid
                save(store, optimizer="b", lr=lr, seed=seed, final={"train_loss": loss + seed / 100})
            for lr, loss in ((0.001, 0.3), (0.01, 0.6)):  # c: best at the smallest
                save(store, optimizer="c", lr=lr, seed=seed, final={"train_loss": loss + seed / 100})
            save(store, optimizer="d", lr=0.1, seed=seed, final={"train_loss": 0.7 + seed / 100})  # one rate: no grid
            for lr in (0.1, 1.0):  # e: nothing finished, nothing chosen
                save(store, optimizer="e", lr=lr, seed=seed, status="diverged", final={"train_loss": math.nan})
        text = write_report(store, "s", tmp_path / "out").read_text()
    notes = [line for line in text.splitlines() if line.startswith("**Grid edge:**")]
    assert notes == ["**Grid edge:** the best configuration is at the largest learning rate tried for a (1); at the "
                     "smallest learning rate tried for c (0.001). A learning rate beyond the grid may do better: "
                     "widen the grid of such an optimizer before taking its rank as final."]
    with Store(tmp_path / "inside.sqlite") as store:
        store.begin_run("s", {}, {})
        for lr, loss in ((0.01, 0.9), (0.1, 0.1), (1.0, 0.4)):
            save(store, optimizer="b", lr=lr, final={"train_loss": loss})
        assert "Grid edge" not in write_report(store, "s", tmp_path / "out2").read_text()
