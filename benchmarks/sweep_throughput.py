"""Sweep throughput: the local process pool against in-process execution, on the same trials.

Expands one suite, runs every trial in-process (one worker, all threads) and then through
the process pool with N workers (threads split between them), and prints trials per
second for both and their ratio. Both sides run the same trials in the same session, so
machine speed cancels out; the pool's start-up (spawning workers, importing torch,
building problems) is included, as a user pays it.

A third side measures the machine rather than optbench: N plain processes, started the
same way, each running its share of the trials with no pool, no queue and no results
sent back. Its ratio to in-process is the most any N-process executor could reach here
(on a shared or throttled VM it is well below N), and the pool's ratio is also shown as a
fraction of it.

    python benchmarks/sweep_throughput.py [--workers 2] [--suite SUITE] [--repeats 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from pathlib import Path

os.environ.setdefault("OPTBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")

import torch

from bench_core.catalog import load_catalog
from bench_core.executors import make_executor
from bench_core.runner import ProblemCache, run_trials
from bench_core.suite import expand, read_suite


def seconds_for(trials: list, workers: int, catalog) -> float:
    start = time.perf_counter()
    with make_executor(workers, catalog) as executor:
        finished = sum(len(results) for _, results in executor.run([trial] for trial in trials))
    elapsed = time.perf_counter() - start
    assert finished == len(trials)
    return elapsed


def _run_share(trials: list, threads: int) -> None:
    torch.set_num_threads(threads)
    run_trials(trials, ProblemCache(load_catalog()))


def seconds_for_plain_processes(trials: list, workers: int) -> float:
    """N independent processes, each running every N-th trial: the machine's ceiling for N workers."""
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // workers)
    start = time.perf_counter()
    processes = [context.Process(target=_run_share, args=(trials[k::workers], threads)) for k in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
        assert process.exitcode == 0
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--suite", default=str(Path(__file__).with_name("throughput.toml")),
                        help="built-in suite name or TOML file (default: benchmarks/throughput.toml)")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs per side")
    args = parser.parse_args()

    catalog = load_catalog()
    settings, source = read_suite(args.suite)
    trials = expand(settings, catalog, source).trials
    sides: dict[str, list[float]] = {"in-process": [], "pool": [], "plain": []}
    for _ in range(args.repeats):  # interleaved, so a slow spell of the machine hits every side
        sides["in-process"].append(seconds_for(trials, 1, catalog))
        sides["pool"].append(seconds_for(trials, args.workers, catalog))
        sides["plain"].append(seconds_for_plain_processes(trials, args.workers))
    in_process, pool, plain = (min(sides[k]) for k in ("in-process", "pool", "plain"))
    print(f"suite {args.suite!r}: {len(trials)} trials, {os.cpu_count()} CPU cores, best of {args.repeats}")
    for label, seconds in (("in-process", in_process), (f"process pool ({args.workers} workers)", pool),
                           (f"{args.workers} plain processes (ceiling)", plain)):
        print(f"{label + ':':34} {seconds:7.2f} s  {len(trials) / seconds:7.2f} trials/s")
    print(f"throughput ratio pool / in-process: {in_process / pool:.2f}x "
          f"(machine ceiling {in_process / plain:.2f}x; pool reaches {plain / pool:.0%} of it)")


if __name__ == "__main__":
    main()
