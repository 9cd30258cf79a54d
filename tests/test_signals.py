"""Processes and signals: pool workers die with their driver, Ctrl-C stops a sweep promptly and keeps every
result that reached the driver, and a worker that dies takes only its own trial with it.

Every test that starts processes starts them in a session of their own and kills that process group in
``finally``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import psutil
import pytest

from bench_core.catalog import load_catalog
from bench_core.driver import run_sweep
from bench_core.executors import Executor, Group, ProcessPoolExecutorBackend
from bench_core.store import Store
from bench_core.suite import expand
from bench_core.trial import TrialResult

ENV = os.environ | {"OPTBENCH_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONUNBUFFERED": "1"}


def _command(results: Path, seconds: int, trials: int, workers: int = 2) -> list[str]:
    """A sweep of ``trials`` quadratic trials of ``seconds`` seconds each (a seconds budget: long trials that
    cost no memory)."""
    lrs = ",".join(f"0.00{i + 1}" for i in range(trials))
    return [sys.executable, "-m", "bench_core.cli", "run", "--problem", "quadratic", "--optimizer", "sgd",
            "--lr", lrs, "--seconds", str(seconds), "--evals", "2", "--no-report", "--no-progress",
            "--results", str(results), "--workers", str(workers)]


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)


def _ignores_sigint(pid: int) -> bool:
    with contextlib.suppress(OSError, StopIteration, ValueError):
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        mask = int(next(line.split()[1] for line in status if line.startswith("SigIgn:")), 16)
        return bool(mask & (1 << (signal.SIGINT - 1)))
    return False


def _started_workers(driver: int, count: int, timeout: float) -> list[psutil.Process]:
    """The driver's pool workers once ``count`` of them have run their initializer (which ignores Ctrl-C after
    it has tied the worker to its driver), with every other child of the driver (the resource tracker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(driver).children(recursive=True)
            workers = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
            if len(workers) >= count and all(_ignores_sigint(w.pid) for w in workers):
                return children
        time.sleep(0.1)
    pytest.fail(f"the pool of driver {driver} never had {count} initialised workers within {timeout} s")


def _alive(processes: Iterable[psutil.Process]) -> list[int]:
    alive = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process.pid)
    return alive


def _kill_driver(process: subprocess.Popen, children: list[psutil.Process]) -> list[int]:
    """``kill -9`` the driver alone (not its group); the pids of ``children`` still alive 10 s later."""
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _alive(children) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _alive(children)


def _clean_up(process: subprocess.Popen, children: list[psutil.Process]) -> None:
    """Kill what a test started: the children it saw (they may have left the group) and the group."""
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    _kill_group(process)


def _stored(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return dict(db.execute("SELECT trial_id, status FROM trials").fetchall())
        finally:
            db.close()
    except sqlite3.Error:
        return {}


@pytest.mark.slow
def test_kill_9_of_the_driver_takes_its_pool_workers_and_resource_tracker_with_it(tmp_path):
    """Before: the workers (~320 MB each) and multiprocessing's resource tracker ran on for ever."""
    process = subprocess.Popen(_command(tmp_path / "r.sqlite", seconds=120, trials=4), env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        children = _started_workers(process.pid, count=2, timeout=120)
        assert len(children) >= 3, [c.cmdline() for c in children]  # two workers and the resource tracker
        assert _kill_driver(process, children) == [], "processes outlive their kill -9'd driver"
    finally:
        _clean_up(process, locals().get("children", []))


@pytest.mark.slow
def test_a_worker_whose_parent_dies_before_it_is_tied_to_it_exits_at_once(tmp_path):
    """The portable check: a worker told of a parent that is not its parent (already gone) leaves."""
    code = "from bench_core.executors import _die_with_parent; _die_with_parent(1); import time; time.sleep(3600)"
    done = subprocess.run([sys.executable, "-c", code], env=ENV, timeout=300)  # it left, or sleeps: TimeoutExpired
    assert done.returncode == 1


TRIAL_SECONDS = 40
#: Two short trials (sgd, 1 s each) that finish first, then four long ones (momentum, TRIAL_SECONDS each): the
#: Ctrl-C comes with two finished trials to keep and two long ones in flight, without first waiting out two
#: long trials for something to keep.
CTRL_C_SUITE = f"""
name = "ctrl-c"
problems = ["quadratic"]
optimizers = ["sgd", "momentum"]
evals = 2

[optimizer.sgd]
lr = [0.001, 0.002]
seconds = 1

[optimizer.momentum]
lr = [0.001, 0.002, 0.003, 0.004]
seconds = {TRIAL_SECONDS}
"""


@pytest.mark.slow
def test_ctrl_c_on_a_pool_sweep_of_long_trials_exits_at_once_and_keeps_finished_trials(tmp_path):
    """Before: the driver waited for every in-flight trial (71-122 s with ~40 s trials). Trials in flight here
    last 40 s: waiting for the two in flight would take ~37 s more; the limit, 30 s, leaves a loaded machine ample
    time to stop promptly and still tells a prompt stop from a wait."""
    results = tmp_path / "r.sqlite"
    stderr = tmp_path / "stderr.txt"
    suite = tmp_path / "ctrl-c.toml"
    suite.write_text(CTRL_C_SUITE)
    command = [sys.executable, "-m", "bench_core.cli", "run", str(suite), "--no-report", "--no-progress",
               "--results", str(results), "--workers", "2"]
    with stderr.open("w") as err:
        process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        children = _started_workers(process.pid, count=2, timeout=120)
        deadline = time.monotonic() + 180
        while len(_stored(results)) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_stored(results)) >= 2, stderr.read_text()
        time.sleep(3)  # the next two trials are in flight, ~37 s from their end
        before = _stored(results)
        os.killpg(process.pid, signal.SIGINT)  # as a terminal sends it: driver and workers
        sent = time.monotonic()
        returncode = process.wait(timeout=60)
        took = time.monotonic() - sent
        message = stderr.read_text()
        assert returncode == 130, message
        assert took < TRIAL_SECONDS - 10, f"Ctrl-C took {took:.1f} s: it waited for the trials in flight"
        assert "interrupted; finished trials are stored" in message and "Traceback" not in message, message
        after = _stored(results)
        assert before.items() <= after.items() and set(after.values()) == {"ok"}
        assert len(after) < 6, "the sweep ran to its end: the Ctrl-C came too late to test anything"
        gone_by = time.monotonic() + 5  # a killed worker takes a moment to be gone
        while _alive(children) and time.monotonic() < gone_by:
            time.sleep(0.1)
        assert _alive(children) == [], "workers outlive the interrupted driver"
    finally:
        _kill_group(process)


class _InterruptedExecutor(Executor):
    """Yields one group, then Ctrl-C comes while it waits; two more groups had reached it meanwhile."""

    def __init__(self, results: dict[str, TrialResult]) -> None:
        self.results = results
        self.interrupted = False

    def run(self, groups: Iterable[Group]) -> Iterator[tuple[Group, list[TrialResult]]]:
        groups = list(groups)
        self.late = groups[1:3]
        yield groups[0], [self.results[c.trial_id] for c in groups[0]]
        raise KeyboardInterrupt

    def interrupt(self) -> list[tuple[Group, list[TrialResult]]]:
        self.interrupted = True
        return [(group, [self.results[c.trial_id] for c in group]) for group in self.late]


def test_ctrl_c_stores_the_results_the_executor_had_received_but_not_yet_handed_over(tmp_path, monkeypatch,
                                                                                    catalog):
    sweep = expand({"problems": ["quadratic"], "optimizers": ["sgd"], "lr": [0.01, 0.02, 0.03, 0.04],
                    "steps": 5, "evals": 2, "device": "cpu"}, catalog)
    results = {c.trial_id: TrialResult(c.trial_id, "ok", steps=5, device="cpu") for c in sweep.trials}
    executor = _InterruptedExecutor(results)
    monkeypatch.setattr("bench_core.driver.make_executor", lambda *args, **kwargs: executor)
    with Store(tmp_path / "r.sqlite") as store:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(sweep, catalog, store, workers=2, progress=False, vectorize=False)  # one trial per group
        stored = store.trials()
    assert executor.interrupted
    assert set(stored["trial_id"]) == {c.trial_id for c in sweep.trials[:3]}


SLOW_OR_DEADLY = """
    import os
    import time

    import torch

    from bench_core import OptimizerSpec, hookimpl

    OPTBENCH_CONTRACT = 1


    class SlowOrDeadly(torch.optim.SGD):
        \"\"\"lr 0.5 takes its worker down (as a segfault would) after a moment; other rates are slow.\"\"\"

        def step(self, closure=None):
            lr = self.param_groups[0]["lr"]
            if lr == 0.5:
                time.sleep(1)
                os._exit(0)
            time.sleep(0.3)
            return super().step(closure)


    @hookimpl
    def optbench_optimizers():
        return [OptimizerSpec("slow_or_deadly", SlowOrDeadly, lr=0.01)]
"""


@pytest.mark.slow
def test_a_dead_worker_costs_its_own_trial_only_not_its_neighbours_in_flight(write_plugin):
    """Before: every trial in flight when a worker died was stored as an error ("worker pool restarted")."""
    plugin = write_plugin("slow_or_deadly", SLOW_OR_DEADLY)
    catalog = load_catalog([str(plugin)])
    sweep = expand({"problems": ["quadratic"], "optimizers": ["slow_or_deadly"], "lr": [0.01, 0.5, 0.02, 0.03],
                    "steps": 8, "evals": 2, "device": "cpu"}, catalog)
    with ProcessPoolExecutorBackend(workers=2, plugin_paths=[str(plugin)], threads_per_worker=1) as pool:
        results = {g[0].hyperparams["lr"]: r[0] for g, r in pool.run([c] for c in sweep.trials)}
    assert results.keys() == {0.01, 0.5, 0.02, 0.03}
    assert results[0.5].status == "error" and "worker process died" in results[0.5].error
    innocent = {lr: r for lr, r in results.items() if lr != 0.5}
    assert all(r.status in ("ok", "diverged") for r in innocent.values()), {lr: r.error for lr, r in innocent.items()}


LEAKY = """
    import os

    import torch

    from bench_core import OptimizerSpec, hookimpl

    OPTBENCH_CONTRACT = 1
    LEAK = []


    class Leaky(torch.optim.SGD):
        \"\"\"Keeps 1 MB per step for ever and records which process ran it in the state it returns.\"\"\"

        def step(self, closure=None):
            LEAK.append(bytearray(1 << 20))
            return super().step(closure)


    @hookimpl
    def optbench_optimizers():
        return [OptimizerSpec("leaky", Leaky, lr=0.01)]
"""


@pytest.mark.slow
def test_pool_workers_are_replaced_after_max_tasks_per_child_trials(write_plugin, monkeypatch):
    from bench_core import executors

    monkeypatch.setattr(executors, "MAX_TASKS_PER_CHILD", 2)
    plugin = write_plugin("leaky", LEAKY)
    catalog = load_catalog([str(plugin)])
    # three trials, two a worker: the third needs a fresh worker (each spawn is seconds of starting Python and torch)
    sweep = expand({"problems": ["quadratic"], "optimizers": ["leaky"], "lr": [0.01, 0.02, 0.03],
                    "steps": 5, "evals": 2, "device": "cpu"}, catalog)
    with ProcessPoolExecutorBackend(workers=1, plugin_paths=[str(plugin)], threads_per_worker=1) as pool:
        seen = []
        for _ in pool.run([c] for c in sweep.trials):
            seen.append(frozenset(getattr(pool.pool, "_processes", {}) or {}))
    pids = set().union(*seen)
    assert len(pids) >= 2, f"one worker ran all three trials of a leaking plugin: {seen}"


QUITTER = """
    import sys

    import torch

    from bench_core import OptimizerSpec, hookimpl

    OPTBENCH_CONTRACT = 1


    class Quitter(torch.optim.SGD):
        \"\"\"lr 0.02 calls sys.exit(3) mid-trial, lr 0.03 raises KeyboardInterrupt, lr 0.04 raises SystemExit.\"\"\"

        def step(self, closure=None):
            lr = self.param_groups[0]["lr"]
            if self.state.get("steps", 0) == 3:
                if lr == 0.02:
                    sys.exit(3)
                if lr == 0.03:
                    raise KeyboardInterrupt
                if lr == 0.04:
                    raise SystemExit("bye")
            self.state["steps"] = self.state.get("steps", 0) + 1
            return super().step(closure)


    @hookimpl
    def optbench_optimizers():
        return [OptimizerSpec("quitter", Quitter, lr=0.01)]
"""


@pytest.mark.parametrize("workers", ["1", pytest.param("2", marks=pytest.mark.slow)])  # 2: a process pool
def test_sys_exit_or_keyboard_interrupt_in_a_plugin_costs_its_trial_not_the_sweep(write_plugin, tmp_path, capsys,
                                                                                 workers):
    from bench_core.cli import main

    plugin = write_plugin("quitter", QUITTER)
    results = tmp_path / "r.sqlite"
    code = main(["run", "--plugins", str(plugin), "--problem", "quadratic", "--optimizer", "quitter",
                 "--lr", "0.01,0.02,0.03,0.04,0.001", "--steps", "10", "--evals", "2", "--no-report",
                 "--no-progress", "--results", str(results), "--workers", workers])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    with Store(results) as store:
        trials = store.trials().set_index("hp.lr")
    assert len(trials) == 5
    assert trials.loc[0.02, "status"] == "error" and trials.loc[0.02, "error"].endswith("plugin raised SystemExit(3)")
    assert trials.loc[0.03, "status"] == "error" and "plugin raised KeyboardInterrupt()" in trials.loc[0.03, "error"]
    assert trials.loc[0.04, "status"] == "error" and "plugin raised SystemExit('bye')" in trials.loc[0.04, "error"]
    assert set(trials.loc[[0.01, 0.001], "status"]) <= {"ok", "diverged"}
    assert "plugin raised SystemExit(3)" in err


def test_sys_exit_at_plugin_import_skips_that_plugin_with_one_line(write_plugin, capsys):
    from bench_core.cli import main

    plugin = write_plugin("exits_at_import", "import sys\nsys.exit(3)\n")
    assert main(["list", "--plugins", str(plugin)]) == 0
    err = capsys.readouterr().err
    assert "exits_at_import" in err and "raised SystemExit(3)" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_a_real_ctrl_c_while_plugins_load_still_interrupts(write_plugin, capsys):
    from bench_core.cli import main

    plugin = write_plugin("slow_import", "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\n")
    assert main(["list", "--plugins", str(plugin)]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_more_evaluations_than_steps_means_every_step_and_finishes_at_once(tmp_path, capsys):
    """Before: ``--evals 1000000000`` never finished (a billion evaluation points computed per trial)."""
    from bench_core.cli import main
    from bench_core.runner import evaluation_steps

    for total, evals in [(10, 10), (10, 13), (7, 100), (100, 150), (0, 5)]:  # same points as the general formula
        assert evaluation_steps(total, evals) == sorted({round(i * total / evals) for i in range(evals + 1)})
    started = time.monotonic()
    assert evaluation_steps(100, 10**9) == list(range(101))
    # a budget in samples (20 steps of 32): the suite refuses more evaluations than an explicit step budget has
    code = main(["run", "--problem", "quadratic", "--optimizer", "sgd", "--samples", "640", "--evals", "1000000000",
                 "--no-report", "--no-progress", "--results", str(tmp_path / "r.sqlite"), "--workers", "1"])
    assert code == 0, capsys.readouterr().err
    assert time.monotonic() - started < 60


@pytest.mark.slow
def test_kill_9_of_the_driver_takes_its_local_dask_workers_with_it(tmp_path):
    """A local cluster started by optbench: its worker processes watch a pipe to the driver (Dask's own
    AsyncProcess guard) and leave when it closes."""
    pytest.importorskip("distributed")
    process = subprocess.Popen([*_command(tmp_path / "r.sqlite", seconds=120, trials=4), "--executor", "dask"],
                               env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        children: list[psutil.Process] = []
        while time.monotonic() < deadline and len(_alive(children)) < 2:
            with contextlib.suppress(psutil.Error):
                children = [c for c in psutil.Process(process.pid).children(recursive=True)
                            if "spawn_main" in " ".join(c.cmdline())]
            time.sleep(0.2)
        assert len(_alive(children)) >= 2, "the local cluster never started its workers"
        deadline = time.monotonic() + 120
        while not _stored(tmp_path / "r.sqlite") and time.monotonic() < deadline:  # the file exists once trials run
            if (tmp_path / "r.sqlite").exists():
                break
            time.sleep(0.2)
        time.sleep(5)  # the workers are up and running trials
        assert _kill_driver(process, children) == [], "Dask workers outlive their kill -9'd driver"
    finally:
        _clean_up(process, locals().get("children", []))
