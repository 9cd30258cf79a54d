"""Runner overhead: one trial through the runner vs a bare loop over the same problem object.

Both train the same problem with the same optimizer, seed, batches and number of steps and
evaluate once at the start and once at the end. The bare loop is NOT independent of optbench:
it draws the problem's own batches (``problem.batches``), calls ``problem.loss`` and builds
the optimizer from its spec, so whatever those cost (the data order and the gathering of
batches in particular) is on both sides and does not show here. The ratio isolates the
runner's own per-step work (schedule, time-limit clock check, bookkeeping, divergence reads)
and says nothing about the data path; ``benchmarks/practitioner_loop.py`` compares the
harness with a loop written independently of optbench's batching.

Measured in one process, the two sides interleaved, best of several repeats: machine speed
cancels in the ratio, load from other processes only partly (it can hit one side's repeat
and not the other's), so on a shared machine expect a few percent of noise and repeat it.

    python benchmarks/runner_overhead.py [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPTBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")

import torch

from bench_core.catalog import load_catalog
from bench_core.runner import ProblemCache, run_trial
from bench_core.specs import Budget
from bench_core.trial import TrialConfig

CASES = [  # (problem, optimizer, hyperparameters, batch size, steps)
    ("quadratic", "sgd", {"lr": 0.01}, 32, 2000),
    ("digits_mlp", "momentum", {"lr": 0.05, "momentum": 0.9}, 32, 1000),
    ("digits_cnn", "adam", {"lr": 1e-3}, 32, 300),
]


def plain_loop(problem, spec, hyperparams: dict, batch_size: int, steps: int, seed: int) -> float:
    """The runner's training calls without the runner (the problem's batches and loss); returns training seconds."""
    torch.manual_seed(seed)
    model = problem.init_model().to(problem.device)
    generator = torch.Generator(device=problem.device).manual_seed(seed)
    optimizer = spec.build(model.parameters(), hyperparams)
    batches = problem.batches(batch_size, generator)
    with torch.no_grad():
        problem.evaluate(model)
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        problem.loss(model, next(batches)).backward()
        optimizer.step()
    if problem.device.type == "cuda":
        torch.cuda.synchronize(problem.device)
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        problem.evaluate(model)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    catalog = load_catalog()
    cache = ProblemCache(catalog)
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"best of {args.repeats}")
    print(f"{'problem':<12} {'optimizer':<10} {'steps':>6} {'plain s':>9} {'harness s':>10} {'ratio':>6}")
    for problem_name, optimizer, hyperparams, batch_size, steps in CASES:
        spec = catalog.optimizers[optimizer]
        options = dict(catalog.problems[problem_name].options)
        problem = cache.get(problem_name, options, args.device)
        config = TrialConfig(problem=problem_name, optimizer=optimizer, hyperparams=spec.defaults() | hyperparams,
                             budget=Budget("steps", steps), batch_size=batch_size if problem.stochastic else None,
                             problem_options=options, device=args.device, evals=1)
        run_trial(config, cache)  # warm-up: first-call costs belong to neither side
        plain_times, harness_times = [], []
        for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both sides alike
            plain_times.append(plain_loop(problem, spec, hyperparams, batch_size, steps, 0))
            harness_times.append(run_trial(config, cache).train_seconds)
        plain, harness = min(plain_times), min(harness_times)
        print(f"{problem_name:<12} {optimizer:<10} {steps:>6} {plain:>9.3f} {harness:>10.3f} {harness / plain:>6.2f}")


if __name__ == "__main__":
    main()
