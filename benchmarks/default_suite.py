"""The default suite end to end from the command line, vectorised vs ``--no-vectorize`` (benchmark c).

Runs ``optbench run`` (the default suite: 560 trials, its report included) twice into fresh
folders, once as shipped and once with ``--no-vectorize``, and prints both wall times and their
ratio. Everything else is the command's defaults (workers: one per core; torch threads: 1 per
trial). The two runs follow one another, so a change in machine load between them skews the
ratio: the load average is printed before each; ``--rounds 2`` alternates the order.

    python benchmarks/default_suite.py [--suite default] [--rounds 1] [--extra "--workers 2"]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(suite: str, extra: list[str], folder: Path) -> float:
    command = [sys.executable, "-m", "bench_core.cli", "run", suite, "--results", str(folder / "results.sqlite"),
               "--report-dir", str(folder / "reports"), "--no-progress", *extra]
    env = os.environ | {"OPTBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{shlex.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    plan = next((line for line in done.stderr.splitlines() if "running" in line), "")
    print(f"    {plan.removeprefix('optbench: ')}")
    with sqlite3.connect(folder / "results.sqlite") as db:  # where the time went: each trial's (share of) wall time
        rows = db.execute("SELECT problem, count(*), sum(wall_seconds), max(group_size) FROM trials GROUP BY problem "
                          "ORDER BY problem").fetchall()
    print("    " + "; ".join(f"{problem}: {count} trials, {seconds:.0f} s of worker time (largest group {size})"
                              for problem, count, seconds, size in rows))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="default")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--extra", default="", help="more flags for both runs, e.g. '--workers 2'")
    args = parser.parse_args()
    extra = shlex.split(args.extra)
    times: dict[str, list[float]] = {"vectorised": [], "--no-vectorize": []}
    for round_ in range(args.rounds):
        order = ["vectorised", "--no-vectorize"] if round_ % 2 == 0 else ["--no-vectorize", "vectorised"]
        for name in order:
            with tempfile.TemporaryDirectory() as folder:
                print(f"{name}: load average {os.getloadavg()[0]:.2f}", flush=True)
                flags = extra + ([] if name == "vectorised" else ["--no-vectorize"])
                times[name].append(run(args.suite, flags, Path(folder)))
                print(f"    {times[name][-1]:.1f} s", flush=True)
    vectorised, alone = min(times["vectorised"]), min(times["--no-vectorize"])
    print(f"\nsuite {args.suite!r}, end to end (best of {args.rounds}): vectorised {vectorised:.1f} s, "
          f"--no-vectorize {alone:.1f} s, speed-up {alone / vectorised:.2f}x")


if __name__ == "__main__":
    main()
