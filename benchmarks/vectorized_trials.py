"""Vectorised groups vs the same trials one by one, through optbench's runner (benchmarks a and b).

a. K = 1, 10, 100, 1000 Rosenbrock trials (Adam, 1000 steps, 20 evaluations), each with its own
   learning rate (log-spaced 1e-4 .. 1e-1): one group of K vs K trials one after another.
b. K = 1, 8, 32, 128 digits-MLP trials (SGD with momentum, batch 32, 500 steps, 10 evaluations),
   learning rates log-spaced 1e-3 .. 0.3 and seeds 0..K-1: one group of K vs K trials one by one.

Both sides run in this process with the same number of torch threads (default 1, ``--threads``),
interleaved round by round, so load from other processes slows both alike; each side's time is
the median of ``--rounds`` rounds. "vectorised" is :func:`bench_core.runner.run_trials` on the
group (what a worker does), "one by one" is :func:`bench_core.runner.run_trial` per trial; both
include building each trial's model and every evaluation. ``--sample N`` times one-by-one runs on
N trials of a group and scales the time up to K (said so in the output); by default all K run.

    python benchmarks/vectorized_trials.py [--which a,b] [--threads 1] [--rounds 3] [--sample N] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OPTBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")

import torch

from bench_core.catalog import load_catalog
from bench_core.runner import ProblemCache, run_trial, run_trials
from bench_core.specs import Budget
from bench_core.trial import TrialConfig

CASES = {
    "a": dict(problem="rosenbrock", optimizer="adam", batch_size=None, steps=1000, evals=20, lrs=(1e-4, 1e-1),
              sizes=(1, 10, 100, 1000), vary_seed=False),
    "b": dict(problem="digits_mlp", optimizer="momentum", batch_size=32, steps=500, evals=10, lrs=(1e-3, 0.3),
              sizes=(1, 8, 32, 128), vary_seed=True),
}


def group(case: dict, size: int, catalog, device: str) -> list[TrialConfig]:
    low, high = case["lrs"]
    spec = catalog.optimizers[case["optimizer"]]
    configs = []
    for k in range(size):
        lr = low * (high / low) ** (k / max(1, size - 1))
        configs.append(TrialConfig(case["problem"], case["optimizer"], spec.defaults() | {"lr": lr},
                                   Budget("steps", case["steps"]), batch_size=case["batch_size"],
                                   seed=k if case["vary_seed"] else 0, evals=case["evals"], device=device))
    return configs


def timed(work) -> float:
    start = time.perf_counter()
    results = work()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    assert all(r.status != "error" for r in results), [r.error for r in results if r.status == "error"][:1]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--which", default="a,b")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sample", type=int, default=0, help="time one by one on this many trials, scaled to K")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    catalog = load_catalog()
    problems = ProblemCache(catalog)
    print(f"torch {torch.__version__}, device {args.device}, {args.threads} torch thread(s), "
          f"{args.rounds} round(s), load average {os.getloadavg()[0]:.2f}")
    for name in args.which.split(","):
        case = CASES[name]
        print(f"\n{name}. {case['problem']}, {case['optimizer']}, {case['steps']} steps, {case['evals']} evaluations"
              f"{'' if case['batch_size'] is None else ', batch ' + str(case['batch_size'])}")
        print(f"{'K':>6} {'one by one (s)':>15} {'vectorised (s)':>15} {'speed-up':>9}")
        for size in case["sizes"]:
            configs = group(case, size, catalog, args.device)
            problems.get(case["problem"], {}, args.device)  # data loaded before any clock starts
            run_trials(configs[:2], problems, args.threads)  # and torch's lazy imports done
            sample = configs if not args.sample or args.sample >= size else configs[:: max(1, size // args.sample)]
            scale = size / len(sample)
            alone, together = [], []
            for _ in range(args.rounds):
                alone.append(scale * timed(lambda s=sample: [run_trial(c, problems) for c in s]))
                together.append(timed(lambda c=configs: run_trials(c, problems, args.threads)))
            one, vec = statistics.median(alone), statistics.median(together)
            note = "" if scale == 1 else f"  (one by one: {len(sample)} trials timed, scaled x{scale:g})"
            print(f"{size:>6} {one:>15.3f} {vec:>15.3f} {one / vec:>8.1f}x{note}", flush=True)


if __name__ == "__main__":
    main()
