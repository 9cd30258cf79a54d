"""Per-trial time limits: a trial that runs too long is stopped, stored as ``timeout``, and the sweep goes on.

The planted optimizer ``stalls`` sleeps inside ``step()`` at learning rates above 0.05 (a plugin
stuck in one step: only the ``SIGALRM`` timer can stop it) and is plain SGD below. ``crawls``
sleeps a little in every step (the per-step check stops it, also off the main thread, where
no timer can fire). Limits are a few seconds against sleeps of an hour, so a loaded machine
cannot flip an outcome.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bench_core.catalog import load_catalog
from bench_core.cli import main
from bench_core.errors import UserError
from bench_core.runner import ProblemCache, run_trial
from bench_core.specs import Budget
from bench_core.store import Store
from bench_core.suite import expand
from bench_core.time_limits import AUTO, derived_limit, parse_time_limit
from bench_core.trial import TrialConfig

PLUGIN = """
import time

import torch

from bench_core.hookspecs import hookimpl
from bench_core.specs import OptimizerSpec


class Stalls(torch.optim.SGD):
    def step(self, closure=None):
        if self.param_groups[0]["lr"] > 0.05:
            try:
                time.sleep(3600)
            except Exception:  # what a careless plugin does: it must not swallow the time limit
                pass
        return super().step(closure)


class Crawls(torch.optim.SGD):
    def step(self, closure=None):
        time.sleep(0.02)
        return super().step(closure)


@hookimpl
def optbench_optimizers():
    return [OptimizerSpec("stalls", lambda params, lr: Stalls(params, lr=lr), lr=0.01),
            OptimizerSpec("crawls", lambda params, lr: Crawls(params, lr=lr), lr=0.01)]
"""


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    path = tmp_path / "slow_plugin.py"
    path.write_text(PLUGIN)
    return path


def run_cli(tmp_path: Path, plugin: Path, *args: str) -> int:
    return main(["run", "--plugins", str(plugin), "--problem", "quadratic", "--steps", "30", "--no-progress",
                 "--results", str(tmp_path / "r.sqlite"), "--report-dir", str(tmp_path / "reports"), "--name", "t",
                 *args])


def stored(tmp_path: Path):
    with Store(tmp_path / "r.sqlite", create=False) as store:
        return store.trials().set_index(["hp.lr", "seed"]).sort_index()


@pytest.mark.parametrize(("value", "expected"), [
    ("auto", AUTO), ("AUTO", AUTO), ("none", None), ("off", None), (0, None), ("0", None), (None, None),
    (30, 30.0), ("2.5", 2.5), (86400, 86400.0),
])
def test_time_limit_values_parse(value, expected):
    assert parse_time_limit(value, "--trial-timeout") == expected


@pytest.mark.parametrize("value", ["abc", -1, "-0.5", "nan", "inf", float("inf"), True, 10**9, [3], ""])
def test_bad_time_limits_are_refused_naming_the_value(value):
    with pytest.raises(ValueError, match=r"--trial-timeout .*expected"):
        parse_time_limit(value, "--trial-timeout")


def test_the_auto_limit_follows_the_documented_formula():
    # 60 s + 2 s per step + 60 s per evaluation point; a seconds budget: 60 s + 3 x the budget
    assert derived_limit(100, 21, None) == 60 + 200 + 21 * 60
    assert derived_limit(None, 11, 30.0) == 60 + 90


@pytest.mark.slow
def test_a_stalled_step_is_stopped_stored_as_timeout_and_the_sweep_goes_on(tmp_path, plugin, capsys):
    code = run_cli(tmp_path, plugin, "--optimizer", "stalls", "--lr", "0.01,0.1", "--seeds", "0",
                   "--workers", "1", "--trial-timeout", "3")
    err = capsys.readouterr().err
    assert code == 1, err
    assert "1 ok, 0 diverged, 0 error, 1 timeout" in err and "Traceback" not in err
    assert "timeout of trial" in err and "stopped at the trial time limit (3 s) after 0 steps" in err
    trials = stored(tmp_path)
    timed_out, finished = trials.loc[(0.1, 0)], trials.loc[(0.01, 0)]
    assert timed_out["status"] == "timeout" and timed_out["time_limit"] == 3.0
    assert timed_out["steps"] == 0 and 3.0 <= timed_out["wall_seconds"] < 60
    assert math.isnan(timed_out["final.train_loss"]), "a stopped trial has no final metrics"
    assert "stopped at the trial time limit" in timed_out["reason"]
    assert finished["status"] == "ok" and finished["steps"] == 30
    report = (tmp_path / "reports" / "t" / "README.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| problem") and "error" in line)
    assert header.split("|")[-2].strip() == "timeout", header
    assert "**Timed-out trials**" in report and "⚠ timeout 1/2" in report  # of the optimizer's 2 trials


def test_a_finished_trial_is_the_same_with_or_without_a_limit(tmp_path, plugin):
    cache = ProblemCache(load_catalog([str(plugin)], autoload=False))
    config = TrialConfig("quadratic", "stalls", {"lr": 0.01}, Budget("steps", 40), batch_size=8)
    unlimited, limited = run_trial(config, cache, None), run_trial(config, cache, 600.0)
    assert unlimited.status == limited.status == "ok"
    untimed = [[{k: v for k, v in point.items() if k != "seconds"} for point in r.curve] for r in (unlimited, limited)]
    assert unlimited.final == limited.final and untimed[0] == untimed[1]
    assert limited.time_limit == 600.0 and unlimited.time_limit is None
    auto = run_trial(config, cache, AUTO)
    assert auto.time_limit == derived_limit(40, len(auto.curve), None) and auto.final == unlimited.final


@pytest.mark.slow
def test_off_the_main_thread_the_per_step_check_stops_a_slow_trial_keeping_its_curve(tmp_path, plugin):
    cache = ProblemCache(load_catalog([str(plugin)], autoload=False))
    config = TrialConfig("quadratic", "crawls", {"lr": 0.01}, Budget("steps", 100_000), batch_size=8, evals=100_000)
    results = []
    worker = threading.Thread(target=lambda: results.append(run_trial(config, cache, 1.0)))  # as on a Dask worker
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive()
    (result,) = results
    assert result.status == "timeout", result.error
    assert 1 <= result.steps < 100_000 and result.samples == result.steps * 8
    assert result.curve and result.curve[-1]["step"] <= result.steps, "the curve up to the stop is kept"
    assert result.final == {} and f"after {result.steps} steps" in result.reason


@pytest.mark.slow
def test_a_stored_timeout_is_served_under_the_same_limit_and_retried_under_a_longer_one(tmp_path, plugin, capsys):
    run_cli(tmp_path, plugin, "--optimizer", "stalls", "--lr", "0.1", "--seeds", "0", "--workers", "1",
            "--trial-timeout", "2")
    capsys.readouterr()
    code = run_cli(tmp_path, plugin, "--optimizer", "stalls", "--lr", "0.1", "--seeds", "0", "--workers", "1",
                   "--trial-timeout", "1.5")
    err = capsys.readouterr().err
    assert code == 1 and "1 already stored, ran 0" in err, err
    assert "stored as timeout under a limit at least as long as this one" in err
    code = run_cli(tmp_path, plugin, "--optimizer", "stalls", "--lr", "0.1", "--seeds", "0", "--workers", "1",
                   "--trial-timeout", "3")
    err = capsys.readouterr().err
    assert code == 1 and "0 already stored, ran 1" in err and "(3 s)" in err, err
    assert stored(tmp_path).loc[(0.1, 0), "time_limit"] == 3.0, "the re-run replaced the stored row"


@pytest.mark.slow
def test_a_suite_file_sets_the_limit_and_a_bad_one_is_one_line(tmp_path, plugin, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text('name = "t"\nproblems = ["quadratic"]\noptimizers = ["stalls"]\nlr = [0.1]\nsteps = 30\n'
                     'trial_timeout = 2\n')
    catalog = load_catalog([str(plugin)], autoload=False)
    assert expand({"trial_timeout": 2, "problems": ["quadratic"]}, catalog).time_limit == 2.0
    assert expand({"problems": ["quadratic"]}, catalog).time_limit == AUTO
    assert expand({"trial_timeout": "none", "problems": ["quadratic"]}, catalog).time_limit is None
    with pytest.raises(UserError, match=r"s.toml: trial_timeout 'soon': expected"):
        expand({"trial_timeout": "soon", "problems": ["quadratic"]}, catalog, str(suite))
    code = main(["run", str(suite), "--plugins", str(plugin), "--workers", "1", "--no-progress", "--results",
                 str(tmp_path / "r.sqlite"), "--report-dir", str(tmp_path / "reports")])
    err = capsys.readouterr().err
    assert code == 1 and "(2 s)" in err, err
    code = main(["run", str(suite), "--plugins", str(plugin), "--trial-timeout", "-3", "--results",
                 str(tmp_path / "other.sqlite")])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "optbench: error: --trial-timeout '-3': expected from 0 (no limit) to " \
                                        "3.1536e+07 seconds", err
    assert not (tmp_path / "other.sqlite").exists()


@pytest.mark.slow
def test_the_pool_stops_a_stalled_trial_and_finishes_the_others(tmp_path, plugin):
    env = dict(os.environ, OPTBENCH_DISABLE_PLUGIN_AUTOLOAD="1")
    command = [sys.executable, "-m", "bench_core.cli", "run", "--plugins", str(plugin), "--problem", "quadratic",
               "--optimizer", "stalls", "--lr", "0.01,0.1", "--seeds", "0,1", "--steps", "30", "--workers", "2",
               "--executor", "pool", "--trial-timeout", "8", "--no-progress", "--no-report",
               "--results", str(tmp_path / "r.sqlite")]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        _, err = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 1, err
    assert "2 ok, 0 diverged, 0 error, 2 timeout" in err and "Traceback" not in err
    trials = stored(tmp_path)
    assert list(trials["status"]) == ["ok", "ok", "timeout", "timeout"]
