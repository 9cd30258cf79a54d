"""Benchmark d: the harness against the loop a practitioner writes, independent of optbench's batching.

The harness side is one trial of ``digits_mlp`` (default width 64, depth 1) with
``torch.optim.SGD`` (optbench's ``sgd``, constant schedule) through
:func:`bench_core.runner.run_trial`. The loop side is written out the way a practitioner
would: the training split as two tensors, each epoch a ``torch.randperm`` of the rows cut
into full batches gathered with ``X[idx]``, ``nn.Sequential(Linear(64, 64), ReLU(),
Linear(64, 10))`` built under the same ``torch.manual_seed``, ``torch.optim.SGD``,
``zero_grad`` / ``cross_entropy`` / ``backward`` / ``step``. It calls nothing of optbench's:
it only takes the data tensors from the problem the harness builds (the same fixed split).
The script checks that both do the same work: the loop's initial weights equal the
problem's, and its final training loss equals the harness's (it draws the same batches).

Evaluations are excluded. The harness runs with ``evals=1`` (one evaluation before training,
one after) and its time is the trial's ``train_seconds``, which leaves evaluations (and the
trial's setup) out; the loop is timed from its first step to its last. What remains on the
harness side is its per-step work: the schedule's learning rate, the time-limit clock check,
the bookkeeping, and a loss read every ``DIVERGENCE_CHECK_EVERY`` steps.

Timing. torch's intra-op thread count is set explicitly: 1 at every batch size, and 2 at
batch 512 for comparison. In one process, each round runs the harness and the loop twice
(loop A and loop B) in a rotating order; many short rounds, so a change in the machine's
load hits every side alike. Reported per case: the median per-step time of the harness and
of loop A, the overhead (harness / loop A - 1) from those medians, the median and the middle
half (interquartile range) of the per-round overhead, and the same for loop B against loop A:
the noise floor, what a zero overhead looks like on this machine under its present load. The
load average is printed before and after.

    python benchmarks/practitioner_loop.py [--rounds 41]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OPTBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")

import torch
import torch.nn.functional as F
from torch import nn

from bench_core.catalog import load_catalog
from bench_core.runner import ProblemCache, run_trial
from bench_core.specs import Budget
from bench_core.trial import TrialConfig

PROBLEM = "digits_mlp"
LR = 0.05
SEED = 0
#: (batch size, torch threads, steps): short runs (a fraction of a second each), so the sides
#: alternate often; every run starts from the same seed, so every run does the same work.
CASES = [(1, 1, 300), (32, 1, 200), (512, 1, 60), (512, 2, 60)]


def practitioner_loop(X: torch.Tensor, y: torch.Tensor, batch_size: int, steps: int,
                      seed: int) -> tuple[float, nn.Module]:
    """Train as a practitioner would; returns (seconds from the first step to the last, the model)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(seed)
    n = len(y)
    step = 0
    start = time.perf_counter()
    while step < steps:
        perm = torch.randperm(n, generator=generator)
        for k in range(min(n // batch_size, steps - step)):
            idx = perm[k * batch_size:(k + 1) * batch_size]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(X[idx]), y[idx])
            loss.backward()
            optimizer.step()
            step += 1
    return time.perf_counter() - start, model


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f} on {} CPUs".format(*os.getloadavg(), os.cpu_count())


def spread(ratios: list[float]) -> str:
    """Median and interquartile range of per-round ratios, as overheads."""
    low, _, high = statistics.quantiles(ratios, n=4)
    return f"{statistics.median(ratios) - 1:>+7.1%} [{low - 1:>+6.1%}, {high - 1:>+6.1%}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=41, help="rounds per case (each: harness, loop A, loop B)")
    args = parser.parse_args()
    catalog = load_catalog()
    cache = ProblemCache(catalog)
    options = dict(catalog.problems[PROBLEM].options)
    problem = cache.get(PROBLEM, options, "cpu")
    X, y = problem.splits["train"]

    torch.manual_seed(SEED)  # the loop's model is the problem's, written out: same architecture and init
    reference = problem.init_model()
    _, fresh = practitioner_loop(X, y, 1, 0, SEED)
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), fresh.state_dict().values(),
                                                 strict=True)), "the loop's model is not the problem's"

    print(f"{PROBLEM}, SGD lr {LR}, torch {torch.__version__}, {args.rounds} rounds per case; harness time = "
          "train_seconds of a trial with evals=1 (evaluations excluded)")
    print("torch threads, set explicitly with torch.set_num_threads: 1 at every batch size; 2 at batch 512 "
          "for comparison")
    print(f"before: {load()}")
    print(f"{'batch':>5} {'threads':>7} {'steps':>5} {'loop us/step':>12} {'harness us/step':>15} {'overhead':>8}  "
          f"{'per round: harness/loop [IQR]':>30}  {'noise: loop B/loop A [IQR]':>30}")
    previous_threads = torch.get_num_threads()
    try:
        for batch_size, threads, steps in CASES:
            torch.set_num_threads(threads)
            config = TrialConfig(problem=PROBLEM, optimizer="sgd",
                                 hyperparams=catalog.optimizers["sgd"].defaults() | {"lr": LR},
                                 budget=Budget("steps", steps), batch_size=batch_size, seed=SEED, evals=1,
                                 problem_options=options)
            run_trial(config, cache)  # warm-up: first-call costs belong to neither side
            practitioner_loop(X, y, batch_size, steps, SEED)
            times: dict[str, list[float]] = {"harness": [], "A": [], "B": []}  # us per step
            order = ["harness", "A", "B"]
            for round_ in range(args.rounds):
                for side in order[round_ % 3:] + order[:round_ % 3]:  # rotate who goes first
                    if side == "harness":
                        result = run_trial(config, cache)
                        assert result.status == "ok" and result.steps == steps, result.error
                        times[side].append(result.train_seconds / steps * 1e6)
                    else:
                        seconds, model = practitioner_loop(X, y, batch_size, steps, SEED)
                        times[side].append(seconds / steps * 1e6)
            with torch.no_grad():
                loop_loss = F.cross_entropy(model.eval()(X), y).item()
            # the same batches, model and updates: the loop ends where the harness does
            assert abs(loop_loss - result.final["train_loss"]) <= 1e-5, (loop_loss, result.final["train_loss"])
            loop, harness = statistics.median(times["A"]), statistics.median(times["harness"])
            overhead = [h / a for h, a in zip(times["harness"], times["A"], strict=True)]
            noise = [b / a for b, a in zip(times["B"], times["A"], strict=True)]
            print(f"{batch_size:>5} {threads:>7} {steps:>5} {loop:>12.1f} {harness:>15.1f} "
                  f"{harness / loop - 1:>+8.1%}  {spread(overhead):>30}  {spread(noise):>30}")
    finally:
        torch.set_num_threads(previous_threads)
    print(f"after:  {load()}")
    print("overhead: median harness / median loop A - 1; per round: median [interquartile range] of harness / loop A "
          "- 1 within a round; noise: the same for loop B, the same code as loop A.")


if __name__ == "__main__":
    main()
