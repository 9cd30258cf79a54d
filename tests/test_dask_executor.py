"""The Dask executor stores the same numbers as running in-process, and survives a dying worker."""

from __future__ import annotations

import time

import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.slow  # every test starts a Dask cluster or waits on a connection

import dask  # noqa: E402
import torch  # noqa: E402

from bench_core import dask_executor  # noqa: E402
from bench_core.catalog import load_catalog  # noqa: E402
from bench_core.dask_executor import DaskExecutor  # noqa: E402
from bench_core.errors import UserError  # noqa: E402
from bench_core.executors import InProcessExecutor  # noqa: E402
from bench_core.suite import expand  # noqa: E402

KILLER_PLUGIN = """
    import os

    import torch

    from bench_core import OptimizerSpec, hookimpl

    OPTBENCH_CONTRACT = 1


    class Killer(torch.optim.SGD):
        \"\"\"Takes its whole process down on the first step, as a segfaulting extension would.\"\"\"

        def step(self, closure=None):
            os._exit(1)


    @hookimpl
    def optbench_optimizers():
        return [OptimizerSpec("killer", Killer, lr=0.01)]
"""


def _sweep(catalog, **settings):
    base = {"problems": ["quadratic", "digits_mlp"], "optimizers": ["sgd", "adam"], "lr": 0.01, "batch_size": 16,
            "seeds": [0, 1], "steps": 25, "evals": 5, "device": "cpu"}
    return expand(base | settings, catalog)


def _in_process(catalog, groups):
    """The reference: in-process, with one torch thread like each worker (thread count changes float sums)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _by_id(InProcessExecutor(catalog).run(groups))
    finally:
        torch.set_num_threads(threads)


def _by_id(pairs):
    results = {}
    for group, group_results in pairs:
        assert [c.trial_id for c in group] == [r.trial_id for r in group_results]
        results.update({r.trial_id: r for r in group_results})
    return results


def _assert_same(local, remote):
    assert local.keys() == remote.keys()
    for trial_id, result in local.items():
        assert result.status == remote[trial_id].status == "ok", remote[trial_id].error
        assert len(result.curve) == len(remote[trial_id].curve)
        for ours, theirs in zip(result.curve, remote[trial_id].curve, strict=True):
            assert ours["train_loss"] == theirs["train_loss"]


def test_local_cluster_and_in_process_give_identical_results(catalog):
    sweep = _sweep(catalog, seeds=[0])
    groups = [[config] for config in sweep.trials]
    local = _in_process(catalog, groups)
    # one worker process (each is seconds of starting Python and torch): the sweep test below runs two
    with DaskExecutor(workers=1, threads_per_worker=1) as executor:
        assert executor.cluster is not None
        assert all(address.startswith("tcp://127.0.0.1:") for address in executor.client.nthreads())
        remote = _by_id(executor.run(groups))
    assert executor.client is None and executor.cluster is None
    assert remote.keys() == {c.trial_id for c in sweep.trials}
    _assert_same(local, remote)
    executor.close()  # idempotent


def test_connects_to_a_running_scheduler(catalog):
    sweep = _sweep(catalog, problems=["quadratic"], optimizers=["sgd"], seeds=[0, 1])
    groups = [[config] for config in sweep.trials]
    local = _in_process(catalog, groups)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        with DaskExecutor(scheduler=cluster.scheduler_address) as executor:
            assert executor.cluster is None  # not ours: left running
            assert executor.threads == 1
            remote = _by_id(executor.run(groups))
        assert cluster.scheduler.status.name == "running"
    _assert_same(local, remote)


def test_unreachable_scheduler_is_a_user_error(monkeypatch):
    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT", "1s")
    started = time.perf_counter()
    with pytest.raises(UserError, match=r"--scheduler tcp://127\.0\.0\.1:1: cannot connect"):
        DaskExecutor(scheduler="tcp://127.0.0.1:1")
    assert time.perf_counter() - started < 60, "it gave up at its connect timeout, it did not hang"


def test_a_trial_that_kills_its_worker_is_an_error_and_the_executor_goes_on(write_plugin):
    plugin = write_plugin("killer_plugin", KILLER_PLUGIN)
    catalog = load_catalog([str(plugin)])
    sweep = _sweep(catalog, problems=["quadratic"], optimizers=["killer", "sgd"], seeds=[0, 1])
    killers = [[c] for c in sweep.trials if c.optimizer == "killer"][:1]
    others = [[c] for c in sweep.trials if c.optimizer != "killer"]
    assert len(killers) == 1 and len(others) == 2
    # No retries: Dask would otherwise restart the worker and rerun the killer three more times.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        executor = DaskExecutor(plugin_paths=[str(plugin)], workers=1, threads_per_worker=1)
    with executor:
        # The killer runs on its own: a dying worker also takes down the tasks queued behind it.
        [(group, [result])] = list(executor.run(killers))
        assert group == killers[0]
        assert result.trial_id == killers[0][0].trial_id
        assert result.status == "error"
        assert "worker process died" in result.error and "KilledWorker" in result.error
        # The nanny replaced the dead worker; the rest of the sweep runs.
        results = _by_id(executor.run(others))
    assert results.keys() == {g[0].trial_id for g in others}
    assert all(r.status == "ok" for r in results.values()), [r.error for r in results.values()]


def test_missing_distributed_is_a_user_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_distributed(name, *args, **kwargs):
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_distributed)
    with pytest.raises(UserError, match=r"optbench\[dask\]"):
        DaskExecutor()


def test_in_process_pool_and_dask_sweeps_store_the_same_results(catalog, tmp_path):
    """The issue's promise at the level users see: the same suite, three executors, one set of stored numbers."""
    from bench_core.cli import main
    from bench_core.driver import run_sweep
    from bench_core.store import Store

    settings = {"name": "same", "problems": ["quadratic", "digits_mlp"], "optimizers": ["sgd", "adam"],
                "lr": [0.01, 0.1], "batch_size": 16, "steps": 20, "evals": 4, "device": "cpu"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count: float sums then agree to the last bit
    try:
        with Store(tmp_path / "inprocess.sqlite") as store:
            run_sweep(expand(settings, catalog), catalog, store, workers=1, progress=False)
    finally:
        torch.set_num_threads(threads)
    with Store(tmp_path / "pool.sqlite") as store:
        run_sweep(expand(settings, catalog), catalog, store, workers=2, progress=False, executor="pool")
    assert main(["run", "--problem", "quadratic,digits_mlp", "--optimizer", "sgd,adam", "--lr", "0.01,0.1",
                 "--batch-size", "16", "--steps", "20", "--evals", "4", "--device", "cpu", "--name", "same",
                 "--executor", "dask", "--workers", "2", "--results", str(tmp_path / "dask.sqlite"),
                 "--no-report", "--no-progress"]) == 0
    frames = {}
    for name in ("inprocess", "pool", "dask"):
        with Store(tmp_path / f"{name}.sqlite") as store:
            trials = store.trials("same").set_index("trial_id").sort_index()
            curves = store.curves("same").sort_values(["trial_id", "step"]).reset_index(drop=True)
        frames[name] = (trials, curves)
    reference, reference_curves = frames["inprocess"]
    assert len(reference) == 8 and (reference["status"] == "ok").sum() == 7  # sgd at lr 0.1 > 2/L diverges
    finals = [c for c in reference.columns if c.startswith(("final.", "best."))] + ["status", "steps", "samples"]
    for name in ("pool", "dask"):
        trials, curves = frames[name]
        pd.testing.assert_frame_equal(trials[finals], reference[finals])
        pd.testing.assert_frame_equal(curves.drop(columns="seconds"), reference_curves.drop(columns="seconds"))


def test_unreachable_scheduler_on_the_command_line_is_one_line_and_writes_nothing(monkeypatch, tmp_path, capsys):
    from bench_core.cli import main

    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT", "1s")
    results = tmp_path / "r.sqlite"
    code = main(["run", "--problem", "quadratic", "--optimizer", "sgd", "--steps", "5", "--no-report",
                 "--no-progress", "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1", "--results", str(results)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "cannot connect" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not results.exists() and list(tmp_path.iterdir()) == []


def run_disrupted(sweep, after: float, disrupt, hang: str) -> tuple[list, list[BaseException]]:
    """Run ``sweep`` on a one-worker local cluster reached by address, call ``disrupt(cluster)`` after ``after``
    seconds, and return the results seen and what the run raised. A run still going after 90 s fails with ``hang``
    (it runs in a daemon thread, so a hang fails the test instead of hanging it)."""
    import threading

    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)
    executor = DaskExecutor(scheduler=cluster.scheduler_address)
    timer = threading.Timer(after, disrupt, args=(cluster,))
    timer.start()
    seen: list = []
    raised: list[BaseException] = []

    def consume() -> None:
        try:
            for _, results in executor.run([c] for c in sweep.trials):
                seen.extend(results)
        except BaseException as exc:
            raised.append(exc)

    consumer = threading.Thread(target=consume, daemon=True)
    try:
        consumer.start()
        consumer.join(timeout=90)
        assert not consumer.is_alive(), hang
    finally:
        timer.cancel()
        executor.close()
        cluster.close()
    return seen, raised


def test_a_scheduler_killed_mid_sweep_ends_it_with_one_error_line_not_a_hang(catalog):
    """Before: once the client gave up reconnecting, the next submit never completed and the sweep waited for
    ever. Now the trials it held are errors and the sweep ends with a UserError (one line on the command line)."""
    sweep = expand({"problems": ["quadratic"], "optimizers": ["sgd"], "lr": [0.001, 0.002, 0.003, 0.004, 0.005, 0.006],
                    "seconds": 3, "evals": 2, "device": "cpu"}, catalog)
    seen, raised = run_disrupted(sweep, after=5, disrupt=lambda cluster: cluster.close(),
                                 hang="the sweep still waits 90 s after its scheduler died")
    assert len(raised) == 1 and isinstance(raised[0], UserError) and "is gone" in str(raised[0]), raised
    assert len(seen) < len(sweep.trials) and any(r.status == "error" for r in seen)


def test_a_cluster_left_without_workers_ends_the_sweep_with_one_error_line_not_a_wait(catalog, monkeypatch):
    """Before: with every worker gone (the scheduler alive), tasks waited for workers and the sweep waited with
    them, silently, for ever. Now, after NO_WORKERS_PATIENCE seconds without a worker, one UserError."""
    monkeypatch.setattr(dask_executor, "NO_WORKERS_PATIENCE", 3.0)
    sweep = expand({"problems": ["quadratic"], "optimizers": ["sgd"], "lr": [0.001, 0.002, 0.003, 0.004],
                    "seconds": 4, "evals": 2, "device": "cpu"}, catalog)
    seen, raised = run_disrupted(sweep, after=6, disrupt=lambda cluster: cluster.scale(0),  # the scheduler lives on
                                 hang="the sweep still waits 90 s after its last worker left")
    assert len(raised) == 1 and isinstance(raised[0], UserError), raised
    assert "has had no workers for 3 s" in str(raised[0]) and "run the same command again" in str(raised[0])
    assert len(seen) < len(sweep.trials)
