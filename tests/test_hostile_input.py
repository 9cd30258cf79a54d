"""Hostile input: absurd values, names that would become paths or TeX, duplicate plugin names, huge dry runs.

Every user error is one line on stderr and exit status 2, with nothing written: no results
file, no run record, no report folder. The CLI runs in-process here, so any exception other
than a :class:`UserError` propagates and fails the test (that is what a traceback would be).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench_core.catalog import load_catalog
from bench_core.cli import main
from bench_core.errors import UserError
from bench_core.report import ReportContext, write_report
from bench_core.suite import expand

BASE = ("run", "--problem", "quadratic", "--optimizer", "sgd,adam", "--workers", "1", "--no-progress")


def run_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``optbench *args`` with its results and reports in ``tmp_path``; returns (status, stdout, stderr)."""
    code = main([*args, "--results", str(tmp_path / "r.sqlite"), "--report-dir", str(tmp_path / "reports")])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error_nothing_written(tmp_path: Path, code: int, err: str, *needles: str) -> None:
    """Exit 2, exactly one line on stderr (the error), naming what it is about; no results, no report."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("optbench: error: "), err
    assert len(lines[0]) < 400, lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "r.sqlite").exists(), "a results file was created for a refused run"
    assert not (tmp_path / "reports").exists(), "a report folder was created for a refused run"


@pytest.mark.parametrize(("flags", "needles"), [
    (["--seeds", str(2**63)], ["seeds", str(2**63)]),
    (["--seeds", "-1"], ["seeds", "-1"]),
    (["--seeds", "0,1," + str(2**64)], ["seeds"]),
    (["--batch-size", str(2**62)], ["batch_size", str(2**62)]),   # quadratic: an endless stream, no train_size
    (["--transfer-batch-sizes", str(2**30), "--batch-size", "8"], ["transfer_batch_sizes"]),
    (["--base-batch-size", str(2**62), "--lr-scaling", "linear"], ["base_batch_size"]),
    (["--samples", str(2**70)], ["samples", str(2**70)]),
    (["--steps", str(2**70)], ["steps", str(2**70)]),
    (["--seconds", str(2**64)], ["seconds"]),
    (["--evals", str(2**70)], ["evals"]),
    (["--steps", "5", "--evals", "50"], ["evals 50", "5 steps"]),
    (["--search", "random", "--trials", str(2**62)], ["trials"]),
    (["--search", "random", "--trials", str(10**7)], ["trials"]),
    (["--search", "random", "--trials", "3", "--random-seed", str(2**64)], ["random_seed"]),
    (["--lr", "inf"], ["lr", "inf"]),
    (["--lr=--"], ["--lr=--", "not a value"]),  # argparse turns it into a list: found by the property test
    (["--data-dir=--"], ["--data-dir=--"]),
    (["--lr", "nan"], ["lr", "nan"]),
    (["--lr", "0.1,-inf"], ["lr"]),
    (["--lr", "log:1e-3:inf:5"], ["grid bounds"]),
    (["--lr", "log:1e-3:1:100000000"], ["num"]),
    (["--lr", "1e999"], ["lr"]),
    (["--hp", "beta2=nan"], ["beta2", "nan"]),
    (["--hp", "beta2=inf"], ["beta2", "inf"]),
    (["--hp", f"beta2={2**1100}"], ["beta2"]),
    (["--optimizer", "momentum", "--momentum=-inf"], ["momentum"]),
    (["--name", "a" * 300], ["suite name"]),
    (["--name", "../../x"], ["suite name", "../../x"]),
    (["--name", "/tmp/optbench-escape"], ["suite name"]),
    (["--name", "x$\\frac{$"], ["suite name"]),
    (["--workers", str(2**40)], ["--workers"]),
])
def test_absurd_flag_values_are_one_line_errors_and_nothing_is_written(tmp_path, capsys, flags, needles):
    code, _, err = run_cli(tmp_path, capsys, *BASE, *flags)
    assert_one_line_error_nothing_written(tmp_path, code, err, *needles)


def test_the_same_values_pass_within_bounds(tmp_path, capsys):
    """The bounds are not too tight: the largest allowed values of each setting are accepted by a dry run."""
    code, out, err = run_cli(tmp_path, capsys, *BASE, "--seeds", f"0,{2**63 - 1}", "--batch-size", str(2**24),
                             "--random-seed", str(2**63 - 1), "--search", "random", "--trials", "2",
                             "--dry-run")
    assert code == 0, err
    assert "8 trials" in out  # 2 optimizers x 2 draws x 2 seeds


SUITES = {
    "deep_array": ("lr = " + "[" * 500 + "0.1" + "]" * 500, ["nested too deep"]),
    "nested_values": ("lr = " + "[" * 40 + "0.1" + "]" * 40, ["lr", "expected a finite number"]),
    "nested_seeds": ("seeds = [0, [1, [2]]]", ["seeds"]),
    "table_in_list": ("lr = [0.1, {a = 1}]", ["lr"]),
    "nested_problems": ('problems = [["quadratic"]]', ["problems"]),
    "device_list": ('device = [["cpu"]]', ["device"]),
    "nan_lr": ("lr = nan", ["lr", "nan"]),
    "inf_grid": ("lr = {log = [1e-3, inf], num = 4}", ["grid bounds"]),
    "huge_grid": ("lr = {log = [1e-3, 1.0], num = 100000000}", ["num"]),
    "huge_grid_product": ('optimizers = ["momentum"]\nlr = {log = [1e-4, 1.0], num = 2000}\n'
                          "momentum = {linear = [0.0, 0.99], num = 2000}",
                          ["more than", "points"]),
    "huge_seed": (f"seeds = [{2**63 - 1}, 0]\nrandom_seed = -1", ["random_seed"]),
    "huge_samples": ("samples = 9223372036854775807\nbatch_size = 16777217", ["batch_size"]),
    "long_name": ('name = "' + "n" * 300 + '"', ["suite name"]),
    "path_name": ('name = "../../escape"', ["suite name"]),
    "absolute_name": ('name = "/tmp/escape"', ["suite name"]),
    "nan_option": ("[problem.quadratic.options]\nnoise = nan", ["noise"]),
    "huge_int_option": ("[problem.quadratic.options]\ndim = 100000000000000000000000", ["dim"]),
    "huge_dim_option": ("[problem.quadratic.options]\ndim = 100000000000", ["dim"]),
    "nested_option": ("[problem.quadratic.options]\ndim = [[2]]", ["dim"]),
    "huge_nqm": ('problems = ["nqm"]\n[problem.nqm.options]\ndim = 23000000000', ["dim"]),
    "huge_least_squares": ('problems = ["least_squares"]\n[problem.least_squares.options]\nn = 1000000\ndim = 100000',
                           ["n=1000000, dim=100000"]),
    "huge_teacher": ('problems = ["teacher_student"]\n[problem.teacher_student.options]\nwidth = 1000000',
                     ["width"]),
    "huge_mlp": ('problems = ["digits_mlp"]\n[problem.digits_mlp.options]\nwidth = 100000\ndepth = 100', ["width"]),
}


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
@pytest.mark.parametrize("case", sorted(SUITES))
def test_absurd_suite_files_are_one_line_errors_and_nothing_is_written(tmp_path, capsys, case, dry_run):
    text, needles = SUITES[case]
    head = 'problems = ["quadratic"]\noptimizers = ["sgd"]\nsteps = 5\nevals = 1\n'
    for key in ("problems", "optimizers"):
        if text.startswith(key) or f"\n{key} =" in text:
            head = "\n".join(line for line in head.splitlines() if not line.startswith(key)) + "\n"
    suite = tmp_path / "hostile.toml"
    body, _, tables = text.partition("[problem.")
    suite.write_text(head + body + ("\n[problem." + tables if tables else "") + "\n")
    code, _, err = run_cli(tmp_path, capsys, "run", str(suite), "--workers", "1", "--no-progress",
                           *(["--dry-run"] if dry_run else []))
    assert_one_line_error_nothing_written(tmp_path, code, err, *needles)


def test_a_dry_run_does_not_build_huge_problems(tmp_path, capsys):
    """``dim = 23e9`` asked a dry run for 89 GiB; it is refused while validating (the message names the option),
    in well under a second: the bound is only "refused, not allocated", which a loaded machine cannot break."""
    suite = tmp_path / "big.toml"
    suite.write_text('problems = ["nqm"]\noptimizers = ["sgd"]\n[problem.nqm.options]\ndim = 23000000000\n')
    start = time.perf_counter()
    code, _, err = run_cli(tmp_path, capsys, "run", str(suite), "--dry-run")
    assert time.perf_counter() - start < 60
    assert_one_line_error_nothing_written(tmp_path, code, err, "dim=23000000000")


def test_a_ten_million_trial_dry_run_answers_in_seconds_with_the_exact_count(tmp_path, capsys):
    seeds = ",".join(str(seed) for seed in range(10_000))
    start = time.perf_counter()
    code, out, err = run_cli(tmp_path, capsys, "run", "--problem", "quadratic", "--optimizer", "sgd",
                             "--lr", "log:1e-4:1:1000", "--seeds", seeds, "--dry-run")
    elapsed = time.perf_counter() - start
    assert code == 0, err
    assert "10000000 trials" in out
    assert elapsed < 60, f"dry run took {elapsed:.1f} s"  # 10**5 trials took 48 s before; most now is torch import
    assert not (tmp_path / "r.sqlite").exists()


@pytest.mark.parametrize("settings", [
    # duplicated values, values that name one trial (1 and 1.0; lrs equal to 12 digits), rejected points
    {"problems": ["quadratic", "rosenbrock"], "optimizers": ["sgd", "momentum"],
     "lr": [0.1, 0.1, 0.01, 0.1000000000001],
     "momentum": [0.0, -1.0, 0.9], "seeds": [0, 0, 1, 2], "batch_size": [8, 8, 16],
     "schedule": ["constant", "cosine", "constant"],
     "problem": {"quadratic": {"options": {"noise": [0.5, 0.5, 1, 1.0]}}}},
    # linear lr scaling: the same given lr scales differently per batch size
    {"problems": ["quadratic"], "optimizers": ["sgd"], "lr": [0.05, 0.1], "batch_size": [8, 16, 32],
     "lr_scaling": "linear", "base_batch_size": 16, "seeds": [3, 4]},
    # a deterministic problem: every batch size is one trial
    {"problems": ["least_squares"], "optimizers": ["adam", "sgd"], "batch_size": [8, 16], "seeds": [0, 1],
     "stop_at_target": True},
    # random search and a categorical hyperparameter
    {"problems": ["sphere"], "optimizers": ["momentum", "adam"], "search": "random", "trials": 7,
     "momentum": [0.5, 0.9], "beta1": [0.0, 0.5], "seeds": [0, 1]},
])
def test_the_dry_run_count_equals_the_number_of_expanded_trials(catalog, settings):
    counted = expand(settings, catalog, "count.toml", count_only=True)
    built = expand(settings, catalog, "count.toml")
    assert counted.trials == []
    assert counted.counted == len(built.trials) == len({config.trial_id for config in built.trials})
    assert counted.planned == built.planned


def test_a_report_folder_never_leaves_the_output_folder(tmp_path):
    """Names stored before suite names were checked cannot write outside ``--report-dir`` either."""
    out = tmp_path / "out"
    for name in ("../escape", "/tmp/optbench-escape", "..", "a/../../b", "."):
        with pytest.raises(UserError, match="not a folder name inside"):
            write_report(None, name, out)  # refused before the store is read
    assert not out.exists() and not (tmp_path / "escape").exists()


def test_a_figure_name_never_leaves_the_report_folder(tmp_path):
    import pandas as pd

    context = ReportContext(suite="s", trials=pd.DataFrame(), curves=pd.DataFrame(), runs=pd.DataFrame(),
                            folder=tmp_path / "s")
    (tmp_path / "s").mkdir()
    figure = context.figure()
    for name in ("../x.png", "/tmp/x.png", "sub/../../x.png"):
        with pytest.raises(ValueError, match="not a file name inside"):
            context.save(figure, name)
    assert context.save(figure, "fine.png") == "fine.png" and (tmp_path / "s" / "fine.png").exists()
    assert not (tmp_path / "x.png").exists()


TEX_PROBLEM = """
    from bench_core import ProblemSpec, hookimpl
    from bench_core.problems.analytic import build_quadratic

    def build(device="cpu", label="plain"):
        return build_quadratic(device=device, dim=2)

    @hookimpl
    def optbench_problems():
        return [ProblemSpec("texed", build, options={"label": "plain"})]
"""


@pytest.mark.slow
def test_dollar_signs_in_names_drawn_in_figures_do_not_break_the_report(tmp_path, capsys, write_plugin):
    """A problem option value ``x$\\frac{$`` labels the variant in figure titles: drawn as typed, not as TeX."""
    plugin = write_plugin("texed", TEX_PROBLEM)
    suite = tmp_path / "tex.toml"
    suite.write_text('problems = ["texed"]\noptimizers = ["sgd", "adam"]\nlr = [0.01, 0.1]\nsteps = 6\nevals = 2\n'
                     '[problem.texed.options]\nlabel = ["x$\\\\frac{$", "$_^$ \\\\sqrt{"]\n')
    code, _, err = run_cli(tmp_path, capsys, "run", str(suite), "--plugins", str(plugin), "--workers", "1",
                           "--no-progress")
    assert code == 0, err
    readme = (tmp_path / "reports" / "tex" / "README.md").read_text()
    assert "x$\\frac{$" in readme
    assert "> Report section" not in readme, [line for line in readme.splitlines() if "Report section" in line]
    figures = list((tmp_path / "reports" / "tex").glob("*.png"))
    assert figures and all(path.parent == tmp_path / "reports" / "tex" for path in figures)



def test_figure_texts_are_drawn_as_typed_while_log_ticks_keep_their_mathtext(tmp_path):
    """User text with ``$`` is literal; the log axis's tick labels (written in mathtext by matplotlib) still render."""
    import matplotlib
    import pandas as pd

    context = ReportContext("s", pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), tmp_path)
    with matplotlib.rc_context({"text.parse_math": False}):  # as write_report builds its sections
        figure = context.figure()
        axes = figure.add_subplot()
        axes.loglog([1e-4, 1e-2, 1.0], [3.0, 0.5, 0.2], label="x$\\frac{$")
        axes.set_title("p (label=$_^$)")
        axes.set_xlabel("learning rate $")
        axes.legend()
        figure.tight_layout()  # lays the ticks out before the save, as sections do
        context.save(figure, "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0
    literal = [axes.title, axes.xaxis.label, *axes.get_legend().get_texts()]
    assert all(not text.get_parse_math() for text in literal)
    ticks = [label for label in axes.xaxis.get_ticklabels() if label.get_text()]
    assert ticks and all(label.get_parse_math() for label in ticks)
    assert any("\\mathdefault" in label.get_text() for label in ticks), "matplotlib's log ticks are mathtext"


OPTIMIZER_X = """
    import torch
    from bench_core import OptimizerSpec, hookimpl

    @hookimpl
    def optbench_optimizers():
        return [OptimizerSpec("x", torch.optim.{cls}, lr=0.01)]
"""


@pytest.mark.parametrize("order", ["sgd_first", "adam_first"])
def test_two_plugins_offering_one_name_are_refused_in_either_order(tmp_path, capsys, write_plugin, order):
    """The trial id names an optimizer by name alone: whichever plugin won, the other's stored result would be
    served for it. Refused with one line naming both plugins, before anything is stored."""
    sgd = write_plugin("x_sgd", OPTIMIZER_X.replace("{cls}", "SGD"))
    adam = write_plugin("x_adam", OPTIMIZER_X.replace("{cls}", "Adam"))
    first, second = (sgd, adam) if order == "sgd_first" else (adam, sgd)
    code, _, err = run_cli(tmp_path, capsys, "run", "--plugins", str(first), "--plugins", str(second),
                           "--problem", "quadratic", "--optimizer", "x", "--steps", "5", "--workers", "1")
    assert_one_line_error_nothing_written(tmp_path, code, err, "optimizer 'x'", str(sgd), str(adam))


def test_one_of_the_two_plugins_alone_runs(tmp_path, capsys, write_plugin):
    """The refusal is about the clash, not the plugin: each file alone is fine."""
    sgd = write_plugin("x_sgd", OPTIMIZER_X.replace("{cls}", "SGD"))
    code, out, err = run_cli(tmp_path, capsys, "run", "--plugins", str(sgd), "--problem", "quadratic",
                             "--optimizer", "x", "--steps", "5", "--dry-run")
    assert code == 0, err
    assert "1 trials" in out


def test_a_plugin_reusing_a_built_in_name_is_still_only_a_warning(write_plugin):
    """Built-ins keep their names whatever the order (a third party cannot take ``sgd``), so no clash to refuse."""
    path = write_plugin("shadow", OPTIMIZER_X.replace("{cls}", "Adam").replace('"x"', '"sgd"'))
    catalog = load_catalog([path])
    assert not catalog.conflicts
    assert any("'sgd' is already provided" in issue for issue in catalog.issues)


@pytest.mark.parametrize("label", ["../../x", "/etc/passwd", "x$\\frac{$", "..", "p (label=" + "y" * 5000 + ")",
                                   "p (label=" + "/.." * 2000 + ")", "", "\\\\server\\share"])
def test_figure_file_names_are_short_plain_names_whatever_the_label(label):
    """Variant labels carry option values from a suite file; figure names from them stay plain and short."""
    import re

    from bench_core.report_sections import file_name

    name = file_name(label, "curves")
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*_curves\.png", name), name
    assert len(name) <= 140 and Path(name).name == name
    assert file_name(label + "z", "curves") != name or len(label) < 100
