"""Executors: a process pool stores the same numbers as running in-process."""

from __future__ import annotations

import pytest
import torch

from bench_core.executors import InProcessExecutor, ProcessPoolExecutorBackend, default_workers
from bench_core.suite import expand


@pytest.mark.slow
def test_process_pool_and_in_process_give_identical_results(catalog):
    sweep = expand({"problems": ["quadratic", "digits_mlp"], "optimizers": ["sgd", "adam"], "lr": 0.01,
                    "batch_size": 16, "seeds": [0, 1], "steps": 25, "evals": 5, "device": "cpu"}, catalog)
    groups = [[config] for config in sweep.trials]
    # Bit-for-bit equality needs the same intra-op thread count (reduction order) on both sides.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = {g[0].trial_id: r[0] for g, r in InProcessExecutor(catalog).run(groups)}
    finally:
        torch.set_num_threads(threads)
    with ProcessPoolExecutorBackend(workers=2, threads_per_worker=1) as pool:
        remote = {g[0].trial_id: r[0] for g, r in pool.run(groups)}
    assert local.keys() == remote.keys() == {c.trial_id for c in sweep.trials}
    for trial_id, result in local.items():
        assert result.status == remote[trial_id].status == "ok"
        for ours, theirs in zip(result.curve, remote[trial_id].curve, strict=True):
            assert ours["train_loss"] == theirs["train_loss"]


def test_default_workers_one_per_core_on_cpu_one_on_cuda(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert default_workers("cpu", trials=100) == 8
    assert default_workers("cpu", trials=3) == 3
    assert default_workers("cuda", trials=100) == 1
    assert default_workers("cuda:1", trials=100) == 1


@pytest.mark.slow
def test_ctrl_c_is_blocked_only_while_a_submit_may_spawn_a_worker(catalog, monkeypatch):
    """Workers inherit the driver's signal mask: the submits that start them block Ctrl-C, the others leave it."""
    import contextlib
    import signal

    from bench_core import executors

    handlers_at_submit = []
    real_submit = executors.ProcessPoolExecutor.submit

    def recording_submit(self, *args, **kwargs):
        handlers_at_submit.append(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))
        return real_submit(self, *args, **kwargs)

    monkeypatch.setattr(executors.ProcessPoolExecutor, "submit", recording_submit)
    sweep = expand({"problems": ["rosenbrock"], "optimizers": ["sgd"], "lr": [1e-4, 1e-3], "seeds": [0, 1, 2, 3],
                    "steps": 5, "evals": 1, "device": "cpu"}, catalog)
    with contextlib.closing(ProcessPoolExecutorBackend(workers=2, threads_per_worker=1)) as pool:
        results = list(pool.run([[config] for config in sweep.trials]))
    assert len(results) == 8 and all(trial.status == "ok" for _, done in results for trial in done)
    assert handlers_at_submit == [True, True] + [False] * 6  # the two workers start on the first two submits
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


@pytest.mark.slow
def test_a_ctrl_c_while_a_worker_spawns_is_delivered_afterwards_not_lost(catalog, monkeypatch):
    """Ctrl-C pressed during the submit that spawns the first worker: the spawn finishes undisturbed, then the
    run raises KeyboardInterrupt before submitting anything more."""
    import signal

    from bench_core import executors

    events = []
    real_submit = executors.ProcessPoolExecutor.submit

    def pressed_while_spawning(self, *args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        future = real_submit(self, *args, **kwargs)  # starts a worker: the first submit of the pool
        events.append("the spawn finished undisturbed")
        return future

    monkeypatch.setattr(executors.ProcessPoolExecutor, "submit", pressed_while_spawning)
    sweep = expand({"problems": ["rosenbrock"], "optimizers": ["sgd"], "lr": [1e-4, 1e-3], "steps": 5, "evals": 1,
                    "device": "cpu"}, catalog)
    pool = ProcessPoolExecutorBackend(workers=2, threads_per_worker=1)
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in pool.run([[config] for config in sweep.trials]):
                events.append("a trial finished")
    finally:
        pool.interrupt()  # kills the worker, as the driver does on Ctrl-C
    assert events == ["the spawn finished undisturbed"], "the Ctrl-C came at once, or was lost"
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


@pytest.mark.slow
def test_in_process_and_pool_give_bit_identical_cnn_curves_with_their_default_threads(catalog):
    """The thread count is the trial's (TRIAL_THREADS), not the executor's: before, in-process kept torch's
    default (all cores) while the pool gave each worker its share, and ``digits_cnn`` curves differed by ~1e-7."""
    sweep = expand({"problems": ["digits_cnn"], "optimizers": ["sgd", "adam"], "lr": 0.01, "batch_size": 32,
                    "seeds": [0], "steps": 15, "evals": 3, "device": "cpu"}, catalog)
    groups = [[config] for config in sweep.trials]
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))  # as on any multi-core machine, whatever the test runner set
    try:
        local = {g[0].trial_id: r[0] for g, r in InProcessExecutor(catalog).run(groups)}
        assert torch.get_num_threads() == max(2, threads), "a trial's thread count leaked into the process"
    finally:
        torch.set_num_threads(threads)
    with ProcessPoolExecutorBackend(workers=2) as pool:
        remote = {g[0].trial_id: r[0] for g, r in pool.run(groups)}
    assert local.keys() == remote.keys() == {c.trial_id for c in sweep.trials}
    for trial_id, result in local.items():
        assert result.status == remote[trial_id].status == "ok", result.error
        timeless = [[{k: v for k, v in point.items() if k != "seconds"} for point in r.curve]
                    for r in (result, remote[trial_id])]
        assert timeless[0] == timeless[1]


def test_threads_per_trial_is_recorded_and_checked(tmp_path, capsys):
    import json
    import sqlite3

    from bench_core.cli import main

    results = tmp_path / "r.sqlite"
    base = ["run", "--problem", "quadratic", "--optimizer", "sgd", "--steps", "5", "--no-report", "--no-progress",
            "--workers", "1", "--results", str(results)]
    assert main([*base, "--threads", "0"]) == 2
    assert "--threads=0 is invalid: expected an integer >= 1" in capsys.readouterr().err and not results.exists()
    assert main([*base, "--threads", "3"]) == 0
    assert main(base) == 0
    db = sqlite3.connect(results)
    try:
        recorded = [json.loads(row[0])["threads_per_trial"] for row in db.execute("SELECT environment FROM runs")]
    finally:
        db.close()
    assert recorded == [3, 1]
