"""The Python API: the same sweep through ``bench_core.run`` and through ``optbench run`` stores the same results,
the frames it hands back are the store's, and one run context carries the data folder to every worker."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from tiny_data import write_tiny_datasets

import bench_core
from bench_core.cli import main
from bench_core.errors import UserError
from bench_core.store import Store

SETTINGS = {"name": "api", "problems": ["quadratic", "rosenbrock"], "optimizers": ["sgd", "adam"],
            "lr": [0.01, 0.1], "seeds": [0, 1], "steps": 30, "evals": 3}
#: What a trial stored by two runs must agree on: everything but timings and when it finished.
TIMING = ("train_seconds", "wall_seconds", "samples_per_second", "seconds_to_target", "finished_at")


def comparable(trials: pd.DataFrame) -> pd.DataFrame:
    return trials.drop(columns=[c for c in TIMING if c in trials]).sort_values("trial_id").reset_index(drop=True)


@pytest.mark.slow
def test_the_same_sweep_through_the_api_and_the_cli_stores_identical_results(tmp_path, capsys):
    done = bench_core.run(SETTINGS, results=tmp_path / "api.sqlite", report_dir=tmp_path / "reports", workers=1)
    assert done.complete and done.outcome.counts["ok"] + done.outcome.counts["diverged"] == 16
    assert done.report == tmp_path / "reports" / "api" / "README.md" and done.report.is_file()
    assert main(["run", "--problem", "quadratic,rosenbrock", "--optimizer", "sgd,adam", "--lr", "0.01,0.1",
                 "--seeds", "0,1", "--steps", "30", "--evals", "3", "--name", "api", "--workers", "1",
                 "--no-progress", "--results", str(tmp_path / "cli.sqlite"),
                 "--report-dir", str(tmp_path / "cli-reports")]) == 0
    capsys.readouterr()
    api_trials = bench_core.load_trials(tmp_path / "api.sqlite", suite="api")
    cli_trials = bench_core.load_trials(tmp_path / "cli.sqlite", suite="api")
    assert len(api_trials) == 16
    pd.testing.assert_frame_equal(comparable(api_trials), comparable(cli_trials))
    api_curves = bench_core.load_curves(tmp_path / "api.sqlite").drop(columns="seconds")
    cli_curves = bench_core.load_curves(tmp_path / "cli.sqlite").drop(columns="seconds")
    pd.testing.assert_frame_equal(api_curves.sort_values(["trial_id", "step"]).reset_index(drop=True),
                                  cli_curves.sort_values(["trial_id", "step"]).reset_index(drop=True))


@pytest.mark.slow
def test_loaded_frames_are_the_stores_and_a_second_run_skips_everything(tmp_path):
    results = tmp_path / "r.sqlite"
    bench_core.run(SETTINGS, results=results, report_dir=None, workers=1)
    with Store(results, create=False) as store:
        pd.testing.assert_frame_equal(bench_core.load_trials(results), store.trials())
        pd.testing.assert_frame_equal(bench_core.load_curves(results, "api"), store.curves("api"))
        assert len(store.curves()) == sum(len(group) for _, group in store.curves().groupby("trial_id"))
    again = bench_core.run(SETTINGS, results=results, report_dir=None, workers=1)
    assert again.outcome.skipped == 16 and sum(again.outcome.counts.values()) == 0
    assert not (tmp_path / "reports").exists(), "report_dir=None writes no report"
    paths = bench_core.write_reports(results, out=tmp_path / "out")
    assert paths == [tmp_path / "out" / "api" / "README.md"] and paths[0].is_file()


def test_plan_counts_without_running_and_overrides_win(tmp_path):
    sweep = bench_core.plan(SETTINGS, overrides={"seeds": [0, 1, 2]})
    assert len(sweep.trials) == 2 * 2 * 2 * 3 and sweep.name == "api"
    assert bench_core.plan("smoke", count_only=True).counted == len(bench_core.plan("smoke").trials)
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(("call", "needle"), [
    (lambda tmp: bench_core.run({**SETTINGS, "lr": "fast"}, results=tmp / "r.sqlite"), "lr"),
    (lambda tmp: bench_core.run(SETTINGS, results=tmp / "r.sqlite", workers=0), "--workers=0 is invalid"),
    (lambda tmp: bench_core.run(SETTINGS, results=tmp / "r.sqlite", trial_timeout=-1), "--trial-timeout"),
    (lambda tmp: bench_core.run(SETTINGS, results=tmp / "r.sqlite", data_dir=tmp / "nowhere"), "no such folder"),
    (lambda tmp: bench_core.run("no-such-suite", results=tmp / "r.sqlite"), "no-such-suite"),
    (lambda tmp: bench_core.load_trials(tmp / "absent.sqlite"), "no such file"),
])
def test_bad_input_raises_a_user_error_and_stores_nothing(tmp_path, call, needle):
    with pytest.raises(UserError, match=needle):
        call(tmp_path)
    assert not (tmp_path / "r.sqlite").exists()


@pytest.mark.slow
def test_the_run_context_carries_the_data_folder_to_pool_workers_without_touching_the_environment(
        tmp_path, monkeypatch):
    monkeypatch.delenv("OPTBENCH_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./data here
    write_tiny_datasets(tmp_path / "mine")
    environment = dict(os.environ)
    settings = {"name": "data", "problems": ["mnist_logreg"], "optimizers": ["sgd"], "lr": [0.1, 0.2],
                "steps": 3, "evals": 1, "batch_size": 8, "problem": {"mnist_logreg": {"options": {"valid_size": 10}}}}
    done = bench_core.run(settings, results=tmp_path / "r.sqlite", report_dir=None, workers=2, executor="pool",
                          data_dir=tmp_path / "mine")
    assert done.complete and done.outcome.counts["ok"] == 2, done.outcome.errors
    assert dict(os.environ) == environment, "the data folder travelled through the environment"
    with pytest.raises(UserError, match="MNIST not found"):  # and without it, the same run finds nothing
        bench_core.run({**settings, "name": "nodata"}, results=tmp_path / "r2.sqlite", report_dir=None, workers=1)
    assert Path(tmp_path / "mine").is_dir()


@pytest.mark.slow
def test_the_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### From Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    claimed = re.search(r"# (\d+) trials: 0 already stored, ran (\d+)", code)
    assert capsys.readouterr().out.startswith(f"{claimed.group(1)} trials: 0 already stored, ran {claimed.group(2)}")
    assert len(namespace["trials"]) == int(claimed.group(1)) and not namespace["curves"].empty
    assert set(namespace["best"].index.get_level_values("optimizer")) <= {"sgd", "momentum", "adam"}
    assert (tmp_path / "reports" / "noisy-quadratic" / "README.md").is_file()
