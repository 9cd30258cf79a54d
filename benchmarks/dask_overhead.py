"""Dask overhead: the per-trial cost of the Dask executor against the local process pool.

Runs the same sweep of many short trials (quadratic, 50 steps each, so per-trial
overhead dominates) through ``ProcessPoolExecutorBackend`` and ``DaskExecutor`` (a local
cluster), both with N worker processes of one torch thread, in the same session.
Start-up is excluded: each executor is started and warmed first (every worker process
has built its catalog and the problem), and the clock runs from the first submit to the
last result. Prints wall time per trial for both, and Dask's overhead per trial in
milliseconds and as a ratio (best of ``--repeats`` interleaved runs).

    python benchmarks/dask_overhead.py [--workers 2] [--trials 40] [--steps 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPTBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")

from bench_core.catalog import load_catalog
from bench_core.executors import Executor, ProcessPoolExecutorBackend, _run_in_worker
from bench_core.suite import expand
from bench_core.trial import TrialConfig


def _warm_pool_worker(group: list[TrialConfig]) -> int:
    _run_in_worker(group)
    time.sleep(0.05)  # leave the next warm-up task to another worker
    return os.getpid()


def warm(executor: Executor, group: list[TrialConfig], workers: int) -> None:
    """Make every worker process build its catalog and the problem before the clock starts."""
    from bench_core.dask_executor import DaskExecutor, _run_on_worker

    if isinstance(executor, DaskExecutor):
        executor.client.wait_for_workers(workers)
        executor.client.run(_run_on_worker, group, executor.plugin_paths, executor.autoload, executor.threads)
        return
    assert isinstance(executor, ProcessPoolExecutorBackend)
    seen: set[int] = set()
    while len(seen) < workers:  # a process runs its initializer before its first task
        seen.update(executor.pool.map(_warm_pool_worker, [group] * (2 * workers)))


def seconds_for(executor: Executor, groups: list[list[TrialConfig]]) -> float:
    start = time.perf_counter()  # run() submits on its first step
    finished = sum(len(results) for _, results in executor.run(groups))
    elapsed = time.perf_counter() - start
    assert finished == len(groups)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trials", type=int, default=40, help="trials in the sweep (multiple of 4)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per side")
    args = parser.parse_args()

    from bench_core.dask_executor import DaskExecutor

    catalog = load_catalog()
    settings = {"problems": ["quadratic"], "optimizers": ["sgd", "adam"], "lr": [0.01, 0.1],
                "seeds": list(range(max(1, args.trials // 4))), "steps": args.steps, "evals": 5, "device": "cpu"}
    trials = expand(settings, catalog, "dask_overhead").trials
    groups = [[trial] for trial in trials]

    executors: dict[str, Executor] = {
        "process pool": ProcessPoolExecutorBackend(args.workers, threads_per_worker=1),
        "dask (local cluster)": DaskExecutor(workers=args.workers, threads_per_worker=1),
    }
    try:
        for executor in executors.values():
            warm(executor, groups[0], args.workers)
        times: dict[str, list[float]] = {name: [] for name in executors}
        for _ in range(args.repeats):  # interleaved, so a slow spell of the machine hits both sides
            for name, executor in executors.items():
                times[name].append(seconds_for(executor, groups))
    finally:
        for executor in executors.values():
            executor.close()

    pool, dask = min(times["process pool"]), min(times["dask (local cluster)"])
    n = len(trials)
    print(f"{n} trials (quadratic, {args.steps} steps), {args.workers} workers x 1 thread, "
          f"{os.cpu_count()} CPU cores, best of {args.repeats}, start-up excluded")
    for name, best in (("process pool", pool), ("dask (local cluster)", dask)):
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"{name:21s} {best:6.2f} s  {1000 * best / n:7.1f} ms/trial  (runs: {runs} s)")
    print(f"dask overhead: {1000 * (dask - pool) / n:+.1f} ms/trial, ratio dask / pool: {dask / pool:.2f}x")


if __name__ == "__main__":
    main()
