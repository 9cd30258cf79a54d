"""The optbench command end to end, in subprocesses, as a user runs it; what only sets a test up, counts or shows a
user error runs through ``main`` in this process, which gives the same output and exit status."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

ENV = os.environ | {"OPTBENCH_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONUNBUFFERED": "1"}


def optbench(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench_core.cli", *args], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=timeout)


def stored(path: Path) -> pd.DataFrame:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return pd.read_sql("SELECT trial_id, status, finished_at FROM trials", db)


def test_smoke_suite_runs_stores_reports_and_resumes(tmp_path, capsys):
    from bench_core.cli import main

    results, reports = tmp_path / "r.sqlite", tmp_path / "reports"
    first = optbench("run", "smoke", "--results", str(results), "--report-dir", str(reports), "--workers", "2")
    assert first.returncode == 0, first.stderr
    rows = stored(results)
    assert main(["run", "smoke", "--dry-run"]) == 0  # the count alone: in this process
    expected = capsys.readouterr().out
    assert f"{len(rows)} trials" in expected
    assert set(rows["status"]) <= {"ok", "diverged"}
    readme = (reports / "smoke" / "README.md").read_text()
    assert "### Best configurations: quadratic" in readme and "### Best configurations: digits_mlp" in readme
    for line in readme.splitlines():
        if line.startswith("!["):
            assert (reports / "smoke" / line.split("](")[1].rstrip(")")).stat().st_size > 0
    again = optbench("run", "smoke", "--results", str(results), "--no-report", "--workers", "1")
    assert again.returncode == 0
    assert f"{len(rows)} already stored, ran 0" in again.stderr
    assert stored(results).equals(rows)


def test_custom_sweep_from_flags_and_export(tmp_path):
    results = tmp_path / "r.sqlite"
    done = optbench("run", "--problem", "quadratic", "--optimizer", "sgd,momentum", "--lr", "0.01,0.02",
                    "--momentum", "0.5,0.9", "--batch-size", "4", "--steps", "20", "--seeds", "0,1",
                    "--results", str(results), "--no-report", "--workers", "1", "--name", "flags")
    assert done.returncode == 0, done.stderr
    # sgd: 2 lr; momentum: 2 lr x 2 momentum; each x 2 seeds
    assert len(stored(results)) == (2 + 4) * 2
    out = tmp_path / "trials.csv"
    exported = optbench("export", "--results", str(results), "--format", "csv", "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    frame = pd.read_csv(out)
    assert len(frame) == 12 and set(frame["optimizer"]) == {"sgd", "momentum"}


def test_list_shows_builtins_with_their_plugins(capsys):
    from bench_core.cli import main

    done = optbench("list", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    plugin_of = {row["name"]: row["plugin"] for row in rows["optimizers"]}
    assert plugin_of["adam"] == "torch_optimizers" and plugin_of["lion"] == "lion"
    assert {"rosenbrock", "quadratic", "digits_mlp", "digits_cnn"} <= {row["name"] for row in rows["problems"]}
    assert main(["list"]) == 0  # the text form of the same listing: in this process
    text = capsys.readouterr().out
    assert "Optimizers" in text and "Problems" in text and "Schedules" in text


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--problem", "quadratic", "--optimizer", "nope"], "unknown optimizer 'nope'"),
    (["run", "--problem", "quadratic", "--lr", "fast"], "--lr: 'fast' is not a valid float"),
    (["run", "no-such-suite"], "no built-in suite"),
    (["run", "--problem", "quadratic", "--hp", "beta2"], "expected NAME=VALUE"),
    (["report", "--results", "missing.sqlite"], "no such file"),
])
def test_user_errors_are_one_line_exit_2_and_leave_results_untouched(tmp_path, monkeypatch, capsys, args, message):
    """Through ``main`` in this process (the next test sees a user error from a real process): an exception that
    escaped as a traceback would fail the test by itself."""
    from bench_core.cli import main

    results = tmp_path / "r.sqlite"
    assert main(["run", "--problem", "quadratic", "--optimizer", "sgd", "--steps", "5", "--results", str(results),
                 "--no-report", "--workers", "1", "--no-progress"]) == 0
    before = hashlib.sha256(results.read_bytes()).hexdigest()
    if args[0] == "run":
        args = [*args, "--results", str(results)]
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(args) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("optbench: error: ") and message in stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert hashlib.sha256(results.read_bytes()).hexdigest() == before


def test_malformed_suite_file_is_reported_with_its_path(tmp_path):
    suite = tmp_path / "broken.toml"
    suite.write_text("problems = [quadratic]\n")
    done = optbench("run", str(suite), "--results", str(tmp_path / "r.sqlite"))
    assert done.returncode == 2
    assert f"{suite}: invalid TOML" in done.stderr and "Traceback" not in done.stderr


def test_a_failing_trial_exits_1_after_the_others_finish(tmp_path, write_plugin):
    plugin = write_plugin("flaky", """
        import torch
        from bench_core import Problem, ProblemSpec, hookimpl

        class Flaky(Problem):
            stochastic = False

            def __init__(self, device, explode):
                super().__init__(device)
                self.explode = explode

            def init_model(self):
                return torch.nn.Linear(1, 1)

            def batches(self, batch_size, generator):
                while True:
                    yield torch.ones(1, 1, device=self.device)

            def loss(self, model, batch):
                if self.explode:
                    raise RuntimeError("flaky plugin exploded")
                return model(batch).pow(2).sum()

            def evaluate(self, model):
                return {"train_loss": float(model(torch.ones(1, 1, device=self.device)).pow(2).sum())}

        @hookimpl
        def optbench_problems():
            return [ProblemSpec("flaky", Flaky, options={"explode": False})]
    """)
    suite = tmp_path / "flaky.toml"
    suite.write_text('problems = ["flaky"]\noptimizers = ["sgd"]\nlr = [0.01, 0.02]\nsteps = 5\n'
                     '[problem.flaky.options]\nexplode = [false, true]\n')
    results = tmp_path / "r.sqlite"
    done = optbench("run", str(suite), "--plugins", str(plugin), "--results", str(results),
                    "--report-dir", str(tmp_path / "reports"), "--workers", "2")
    assert done.returncode == 1, done.stderr
    assert "flaky plugin exploded" in done.stderr
    assert sorted(stored(results)["status"]) == ["error", "error", "ok", "ok"]
    assert (tmp_path / "reports" / "flaky" / "README.md").exists()


def test_rerun_runs_stored_trials_again_and_replaces_them(tmp_path, capsys):
    from bench_core.cli import main

    results = tmp_path / "r.sqlite"
    args = ["run", "--problem", "quadratic", "--optimizer", "sgd", "--lr", "log:0.001:0.1:3", "--steps", "10",
            "--results", str(results), "--no-report", "--workers", "1"]
    assert main(args) == 0  # the first run and the plain re-run in this process; the --rerun as a user runs it
    before = stored(results).set_index("trial_id")
    assert len(before) == 3
    capsys.readouterr()
    assert main(args) == 0
    assert "3 already stored, ran 0" in capsys.readouterr().err
    forced = optbench(*args, "--rerun")
    assert forced.returncode == 0 and "0 already stored, ran 3" in forced.stderr
    after = stored(results).set_index("trial_id")
    assert set(after.index) == set(before.index)  # replaced, not duplicated
    assert (after["finished_at"] > before.loc[after.index, "finished_at"]).all()


def test_random_search_from_flags(tmp_path, capsys):
    from bench_core.cli import main

    done = optbench("run", "--problem", "quadratic", "--optimizer", "adam,momentum", "--search", "random",
                    "--trials", "5", "--random-seed", "3", "--seeds", "0,1", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "20 trials" in done.stdout
    capsys.readouterr()
    assert main(["run", "--problem", "quadratic", "--search", "random", "--trials", "0", "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == "optbench: error: --trials=0 is invalid: expected an integer >= 1"
