"""Sweep throughput: the local process pool against in-process execution, on the same trials.

Expands one suite, runs every trial in-process (one worker, all threads) and then through
the process pool with N workers (threads split between them), and prints trials per
second for both and their ratio. Both sides run the same trials in the same session, so
machine speed cancels out; the pool's start-up (spawning workers, importing torch,
building problems) is included, as a user pays it.

    python benchmarks/sweep_throughput.py [--workers 2] [--suite SUITE] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OPTBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")

from bench_core.catalog import load_catalog
from bench_core.executors import make_executor
from bench_core.suite import expand, read_suite


def seconds_for(trials: list, workers: int, catalog) -> float:
    start = time.perf_counter()
    with make_executor(workers, catalog) as executor:
        finished = sum(len(results) for _, results in executor.run([trial] for trial in trials))
    elapsed = time.perf_counter() - start
    assert finished == len(trials)
    return elapsed


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
    sides = {1: [], args.workers: []}
    for _ in range(args.repeats):  # interleaved, so a slow spell of the machine hits both sides
        for workers in sides:
            sides[workers].append(seconds_for(trials, workers, catalog))
    in_process, pool = min(sides[1]), min(sides[args.workers])
    print(f"suite {args.suite!r}: {len(trials)} trials, {os.cpu_count()} CPU cores")
    print(f"in-process:            {in_process:7.2f} s  {len(trials) / in_process:7.2f} trials/s")
    print(f"process pool ({args.workers} workers): {pool:7.2f} s  {len(trials) / pool:7.2f} trials/s")
    print(f"throughput ratio pool / in-process: {in_process / pool:.2f}x")


if __name__ == "__main__":
    main()
