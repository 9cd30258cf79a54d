"""The trial runner: trains one trial and measures it.

A trial is reproducible from its configuration alone: torch's global RNG is seeded with
the trial seed right before the model is built, and every random draw of training (data
order, gradient noise) goes through one generator seeded with the same seed on the
trial's device. Data stays on the device; the host only reads the loss every
:data:`DIVERGENCE_CHECK_EVERY` steps (and at evaluations) to catch divergence early, and
synchronises the device before it reads the clock.

Steps to target. The problem's target is checked at every evaluation. Where it can be
checked for free at every step, it is: on a deterministic problem (``stochastic`` is
``False``) whose target metric is ``train_loss``, the loss of a batch *is* the training
objective, so the runner keeps each step's loss on the device and reads the pending ones
all at once when it reads the loss anyway (one synchronisation per read, none extra). The
loss computed in the iteration that starts with ``k`` updates done is ``f(x_k)``: meeting
the target there counts as "at step k"; ``seconds_to_target`` is then the training time up
to the read that saw it (an upper bound, by at most DIVERGENCE_CHECK_EVERY steps). Elsewhere
the target is seen at evaluations only. ``TrialResult.target_every`` records the resolution
(1, or the widest gap between evaluation points). The earliest detection wins. With
``stop_at_target`` the trial evaluates where it sees the target met and stops there.

Divergence. Two rules make a trial ``diverged``, each with a one-line ``reason``: the
early stop (a loss read is NaN/inf or above :data:`DIVERGENCE_FACTOR` x max(1, |initial
loss|): the trial stops there), and the end-of-training rule (a trial that ran to its end
with a final training loss above :data:`ENDED_ABOVE_FACTOR` x its initial loss).

Under a budget in seconds the clock is read after every step (a synchronisation per step
on a GPU: the price of stopping on time), evaluations fall every ``budget / evals``
seconds of training, and schedules run on the elapsed fraction of the budget.

Evaluation modes. An optimizer with callable ``eval()`` and ``train()`` (schedule-free
ones) is switched with ``train()`` before the first step and bracketed by ``eval()`` /
``train()`` around every evaluation, so it is scored at its evaluation iterate.

Time limits. Each trial runs under a limit in seconds (:mod:`bench_core.time_limits`): the loop
checks the clock after every step, and a ``SIGALRM`` timer covers a step that never returns;
either way the trial ends as ``timeout`` with the steps and curve it had reached.

Closures. An optimizer whose spec says ``needs_closure`` (L-BFGS, sharpness-aware
minimisation) is stepped with ``step(closure)`` (:func:`bench_core.closure.closure_step`): the
closure zeroes the gradients, recomputes the loss on the step's batch, backpropagates and
returns it, as often as the optimizer calls it. The step's loss, for the divergence check and
the per-step target, is the closure's first evaluation: ``f(x_k)`` at the point the step
starts from, as for an ordinary step. ``TrialResult.gradient_evaluations`` counts the
closure's calls (on the host, no synchronisation), or the steps for an ordinary optimizer.
"""

from __future__ import annotations

import json
import math
import os
import time
import traceback
from collections.abc import Iterable, Mapping
from functools import partial
from itertools import pairwise
from typing import Any

import torch

from bench_core.catalog import Catalog
from bench_core.closure import closure_step
from bench_core.data import reading_data_from
from bench_core.interrupts import raised_by_code
from bench_core.specs import Problem
from bench_core.time_limits import AUTO, TimeLimit, TrialTimeout, alarm, derived_limit, describe
from bench_core.trial import Status, TrialConfig, TrialResult

#: The host reads the training loss every this many steps (and at every evaluation); one
#: synchronisation per read. On a deterministic problem with a ``train_loss`` target the read
#: also takes every step's loss since the last read, for the per-step target check.
DIVERGENCE_CHECK_EVERY = 10
#: Early stop: a training loss read (every DIVERGENCE_CHECK_EVERY steps and at every evaluation)
#: that is NaN or infinite, or above this many times max(1, |initial training loss|), ends the
#: trial at once as ``diverged``.
DIVERGENCE_FACTOR = 1e4
#: End of training: a trial whose final training loss is above this many times its initial
#: training loss is ``diverged`` even though it never tripped the early stop (for an initial loss
#: <= 0: above initial + ENDED_ABOVE_FACTOR x max(1, |initial loss|)). Optimizers that blow up
#: slowly (gradient descent just past lr = 2/L) end here.
ENDED_ABOVE_FACTOR = 10
#: Under a budget in seconds, schedules see the elapsed fraction of the budget as a step of this many.
SECONDS_SCHEDULE_STEPS = 10_000


class ProblemCache:
    """Built problems by (name, options, device), so a process loads each data set once.

    ``data_dir``: the run's data folder, made current while a problem is built (see :mod:`bench_core.data`);
    ``None`` leaves the user's default (``$OPTBENCH_DATA_DIR``, then ``./data`` and the system's folder).
    """

    def __init__(self, catalog: Catalog, data_dir: str | os.PathLike[str] | None = None) -> None:
        self.catalog = catalog
        self.data_dir = None if data_dir is None else str(data_dir)
        self._built: dict[tuple[str, str, str], Problem] = {}

    def get(self, name: str, options: Mapping[str, Any], device: str) -> Problem:
        key = (name, json.dumps(dict(options), sort_keys=True), str(device))
        if key not in self._built:
            spec = self.catalog.get("problem", name)
            with reading_data_from(self.data_dir):
                problem = spec.build(device=torch.device(device), **dict(options))
            if not isinstance(problem, Problem):
                raise TypeError(f"problem {name!r}: build() returned {type(problem).__name__}, not a Problem")
            self._built[key] = problem
        return self._built[key]


def total_steps(config: TrialConfig, problem: Problem) -> int | None:
    """The trial's budget in optimizer steps; ``None`` for a budget in seconds."""
    if config.budget.unit == "seconds":
        return None
    if config.budget.unit == "steps":
        return config.budget.amount
    if config.budget.unit == "samples":
        return max(1, math.ceil(config.budget.amount / (config.batch_size or 1)))
    if problem.train_size is None:
        raise ValueError(f"problem {config.problem!r} is an endless stream: give its budget in steps, not epochs")
    return config.budget.amount * steps_per_epoch(problem.train_size, config.batch_size)


def steps_per_epoch(train_size: int, batch_size: int | None) -> int:
    """Full batches per epoch (the last partial batch is dropped)."""
    return max(1, train_size // (batch_size or train_size))


def evaluation_steps(total: int, evals: int) -> list[int]:
    """``evals + 1`` evaluation points spread evenly over ``0..total``, both ends included.

    With ``evals >= total`` that is every step, computed as such: ``--evals 1000000000`` must not
    iterate a billion times to find the few steps there are (the points are the same either way).
    """
    if evals >= total:
        return list(range(total + 1))
    return sorted({round(i * total / evals) for i in range(evals + 1)})


def run_trial(config: TrialConfig, problems: ProblemCache, time_limit: TimeLimit = AUTO) -> TrialResult:
    """Train one trial; never raises for a failure inside a plugin (status ``error``).

    ``time_limit``: seconds, :data:`~bench_core.time_limits.AUTO` (derived from the budget) or
    ``None``; a trial still running when it passes is stopped and returned as ``timeout``, with
    the steps and the learning curve it had reached (see :mod:`bench_core.time_limits`).
    """
    started = time.perf_counter()
    progress = TrialResult(config.trial_id, Status.OK, device=config.device)
    limit = None
    try:
        # built before the clock starts: a data set loads once per process, not once per trial
        limit = trial_limit(config, problems.get(config.problem, config.problem_options, config.device), time_limit)
        with alarm(limit):
            result = _train(config, problems, progress, None if limit is None else time.perf_counter() + limit)
    except TrialTimeout:
        result = _timed_out(progress, limit)
    except Exception:
        result = TrialResult(config.trial_id, Status.ERROR, error=traceback.format_exc(), device=config.device)
    except (SystemExit, KeyboardInterrupt) as exc:  # sys.exit() in a plugin costs its trial, not the sweep
        if not raised_by_code(exc):
            raise  # the user's Ctrl-C
        result = TrialResult(config.trial_id, Status.ERROR, error=f"{traceback.format_exc()}plugin raised {exc!r}",
                             device=config.device)
    result.time_limit = limit
    result.wall_seconds = time.perf_counter() - started
    return result


def trial_limit(config: TrialConfig, problem: Problem | None, time_limit: TimeLimit) -> float | None:
    """The time limit in seconds (``None``: none) of one trial of ``problem``; ``AUTO`` is derived from its budget
    (and needs the problem, for the steps an epoch takes)."""
    if time_limit != AUTO:
        return None if time_limit is None else float(time_limit)
    if problem is None:
        raise ValueError("an 'auto' time limit is derived from the problem: pass it")
    steps = total_steps(config, problem)
    points = config.evals + 1 if steps is None else len(evaluation_steps(steps, config.evals))
    return derived_limit(steps, points, float(config.budget.amount) if steps is None else None)


def _timed_out(progress: TrialResult, limit: float | None) -> TrialResult:
    """The result of a trial stopped at its time limit: how far it got, no final metrics (it did not finish)."""
    return TrialResult(progress.trial_id, Status.TIMEOUT, steps=progress.steps, samples=progress.samples,
                       curve=progress.curve, device=progress.device, train_seconds=math.nan,
                       reason=f"stopped at the trial time limit ({describe(limit)}) after {progress.steps} steps")


def run_trials(configs: Iterable[TrialConfig], problems: ProblemCache, threads: int | None = None,
               time_limit: TimeLimit = AUTO) -> list[TrialResult]:
    """Run a group of trials; the unit of work an executor ships to a worker.

    A group of more than one trial (formed by :func:`bench_core.vectorized.form_groups`: trials that
    differ only in float hyperparameters and seed) runs as one vectorised computation
    (:func:`bench_core.vectorized.run_group`); if that fails in any way, or for a single trial, the
    trials run one after another, each on its own.

    ``threads``: torch's intra-op thread count for the duration of the group, restored after.
    The thread count changes the order of floating-point reductions, so results are bit-identical
    across executors only where every executor runs a trial with the same count; ``None`` leaves
    the process's setting as it is. ``time_limit``: each trial's, as for :func:`run_trial`.
    """
    configs = list(configs)
    if threads is None:
        return _run_group_or_each(configs, problems, time_limit)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run_group_or_each(configs, problems, time_limit)
    finally:
        torch.set_num_threads(previous)


def _run_group_or_each(configs: list[TrialConfig], problems: ProblemCache, time_limit: TimeLimit) -> list[TrialResult]:
    if len(configs) > 1:
        from bench_core.vectorized import run_group

        try:
            return run_group(configs, problems, time_limit)
        except Exception:
            pass  # one by one below: each trial then succeeds, or fails with its own error
        except (SystemExit, KeyboardInterrupt) as exc:
            if not raised_by_code(exc):
                raise  # the user's Ctrl-C
    return [run_trial(config, problems, time_limit) for config in configs]


def target_resolution(config: TrialConfig, problem: Problem, steps: int | None, per_step: bool) -> int | None:
    """Steps between two checks of the target: 1 where it is checked every step (``per_step``).

    Otherwise the widest gap between consecutive evaluation points; ``None`` under a budget in
    seconds (evaluations fall by the clock, not by step) and for a problem without a target.
    """
    if problem.target is None:
        return None
    if per_step:
        return 1
    if steps is None:
        return None
    points = evaluation_steps(steps, config.evals)
    return max(b - a for a, b in pairwise(points))


def checks_every_step(problem: Problem, optimizer: torch.optim.Optimizer | None = None) -> bool:
    """Whether the target is checked at every step: a deterministic problem whose target metric is ``train_loss``.

    There the loss of any batch is the training objective itself, so the loss the runner
    computes anyway is the target metric at the step's starting point. Not for an optimizer
    with evaluation modes: its training loss is taken at the training iterate, while it is
    judged at the evaluation one, so its target is checked at evaluations only.
    """
    return (problem.target is not None and problem.target.metric == "train_loss" and not problem.stochastic
            and not _has_modes(optimizer))


def _train(config: TrialConfig, problems: ProblemCache, result: TrialResult, deadline: float | None) -> TrialResult:
    """Train one trial, filling in ``result`` as it goes (so a timeout keeps how far it got); ``deadline``:
    the ``time.perf_counter()`` reading past which the next step raises :class:`TrialTimeout`."""
    catalog = problems.catalog
    optimizer_spec = catalog.get("optimizer", config.optimizer)
    schedule_spec = catalog.get("schedule", config.schedule)
    problem = problems.get(config.problem, config.problem_options, config.device)
    device = problem.device
    steps = total_steps(config, problem)
    seconds = None if steps is not None else float(config.budget.amount)
    eval_at = set(evaluation_steps(steps, config.evals)) if steps is not None else set()
    eval_every = seconds / config.evals if seconds is not None else math.inf
    schedule_options = dict(schedule_spec.options) | config.schedule_options
    samples_per_step = config.batch_size or 1

    seed_global_rng(config.seed, device)
    model = problem.init_model().to(device)
    model.train()
    generator = torch.Generator(device=device).manual_seed(config.seed)
    optimizer = optimizer_spec.build(model.parameters(), config.hyperparams)
    _set_optimizer_mode(optimizer, "train")
    per_step = checks_every_step(problem, optimizer)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    batches = problem.batches(config.batch_size or 1, generator)

    result.device = str(device)
    result.target_every = target_resolution(config, problem, steps, per_step)
    train_seconds = 0.0
    lr_now = base_lrs[0]

    # needs_closure only: evaluations_after[k] = gradient evaluations made by the first k steps (host ints)
    evaluations_after = [0]

    def reached(step: int, seconds_so_far: float) -> None:
        result.steps_to_target = step
        result.gradient_evaluations_to_target = evaluations_after[step] if optimizer_spec.needs_closure else step
        result.samples_to_target = step * samples_per_step
        result.seconds_to_target = seconds_so_far

    def evaluate(step: int) -> dict[str, float]:
        _set_optimizer_mode(optimizer, "eval")
        try:
            raw = problem.evaluate(model)
        finally:
            _set_optimizer_mode(optimizer, "train")
        metrics = _checked_metrics(config.problem, raw)
        point = {"step": step, "samples": step * samples_per_step, "seconds": train_seconds, "lr": lr_now}
        result.curve.append(point | metrics)
        _update_best(result.best, metrics, problem.maximize)
        if result.steps_to_target is None and _target_met(problem, metrics):
            reached(step, train_seconds)
        return metrics

    def diverge(why: str | None) -> None:
        if why is not None and result.status != Status.DIVERGED:
            result.status, result.reason = Status.DIVERGED, why

    with torch.no_grad():
        initial = evaluate(0)
    blowup = DIVERGENCE_FACTOR * max(1.0, abs(initial["train_loss"]))
    step = 0
    elapsed = 0.0  # training seconds so far; read every step only under a seconds budget
    next_eval = eval_every
    pending: list[torch.Tensor] = []  # per_step only: f(x_k) for the steps k since the last read, on the device
    closure_evaluations = 0  # needs_closure only: every forward/backward pass the closure made, counted on the host
    tick = _now(device)
    while True:
        if seconds is None:
            factor = float(schedule_spec.multiplier(step, steps, **schedule_options))
        else:  # the schedule runs on training time: its "step" is the elapsed fraction of the budget
            at = min(int(elapsed / seconds * SECONDS_SCHEDULE_STEPS), SECONDS_SCHEDULE_STEPS - 1)
            factor = float(schedule_spec.multiplier(at, SECONDS_SCHEDULE_STEPS, **schedule_options))
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * factor
        lr_now = base_lrs[0] * factor
        batch = next(batches)
        if optimizer_spec.needs_closure:  # f(x_step) is the closure's first evaluation; the step may make more
            loss, evaluations = closure_step(optimizer, partial(problem.loss, model, batch))
            closure_evaluations += evaluations
            evaluations_after.append(closure_evaluations)
        else:
            optimizer.zero_grad(set_to_none=True)
            loss = problem.loss(model, batch)
            loss.backward()
            optimizer.step()
        if per_step:
            pending.append(loss.detach())  # computed with `step` updates done: f(x_step)
        step += 1
        result.steps, result.samples = step, step * samples_per_step
        if deadline is not None and time.perf_counter() > deadline:
            raise TrialTimeout
        if seconds is None:
            finished = step >= steps
            evaluating = step in eval_at
        else:
            elapsed = train_seconds + _now(device) - tick
            finished = elapsed >= seconds
            evaluating = finished or elapsed >= next_eval
            if evaluating:
                next_eval = (math.floor(elapsed / eval_every) + 1) * eval_every
        if evaluating or step % DIVERGENCE_CHECK_EVERY == 0:
            if per_step:
                values = torch.stack(pending).tolist()  # one read (synchronises the device) for all of them
                first = step - len(pending)
                pending.clear()
                if result.steps_to_target is None:
                    hit = next((first + i for i, v in enumerate(values) if _value_meets(problem, v)), None)
                    if hit is not None:  # seconds: training time up to this read
                        reached(hit, train_seconds + time.perf_counter() - tick)
                        evaluating = evaluating or config.stop_at_target
                value = values[-1]
            else:
                value = loss.item()  # synchronises the device
            diverge(_blown_up(value, blowup, step))
            if result.status == Status.DIVERGED:
                evaluating = True
        if evaluating:
            train_seconds += _now(device) - tick
            with torch.no_grad():
                metrics = evaluate(step)
            diverge(_blown_up(metrics["train_loss"], blowup, step))
            if result.status == Status.DIVERGED or (config.stop_at_target and result.steps_to_target is not None):
                break
            tick = _now(device)
        if finished:
            break

    result.steps = step
    result.gradient_evaluations = closure_evaluations if optimizer_spec.needs_closure else step
    result.samples = step * samples_per_step
    result.final = {k: v for k, v in result.curve[-1].items() if k not in ("step", "samples", "seconds", "lr")}
    diverge(_ended_above(initial["train_loss"], result.final["train_loss"]))
    result.train_seconds = train_seconds
    result.samples_per_second = result.samples / train_seconds if train_seconds > 0 else None
    result.metric_ranges = _recorded_ranges(problem, result.final)
    return result


def seed_global_rng(seed: int, device: torch.device) -> None:
    """Seed torch's global RNG for a trial's model initialisation: ``torch.manual_seed``, minus its cost on the CPU.

    ``torch.manual_seed`` also queues the seeding of every accelerator's generators, and where CUDA is not
    initialised each call formats a stack trace for that queue (about a millisecond: a second for a group of a
    thousand trials). A trial on the CPU of a process that has not touched CUDA draws from the CPU generator
    alone, so that is the one seeded there.
    """
    if device.type == "cpu" and not torch.cuda.is_initialized():
        torch.random.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)


def _set_optimizer_mode(optimizer: torch.optim.Optimizer, mode: str) -> None:
    """Call the optimizer's ``eval()`` or ``train()`` (``mode``) where it has both, callable; else nothing.

    Schedule-free optimizers (``ScheduleFreeAdamW``, ``ScheduleFreeSGD``, ...) keep two iterates:
    they take gradients at one and are meant to be judged at another, and the parameters hold
    whichever of the two ``eval()``/``train()`` last switched to. Without ``eval()`` before an
    evaluation such an optimizer is scored at the wrong iterate, and without ``train()``
    afterwards (and before the first step) it trains from the wrong one. ``torch.optim.Optimizer``
    has neither method, so plain optimizers are left alone. The model's own train/eval mode is
    not touched here: problems switch it inside ``evaluate()``.
    """
    if _has_modes(optimizer):
        with torch.no_grad():  # the switch rewrites the parameters in place
            getattr(optimizer, mode)()


def _has_modes(optimizer: torch.optim.Optimizer | None) -> bool:
    """Whether an optimizer has evaluation modes: callable ``eval()`` and ``train()`` (schedule-free ones)."""
    return callable(getattr(optimizer, "eval", None)) and callable(getattr(optimizer, "train", None))


def _blown_up(value: float, blowup: float, step: int) -> str | None:
    """The early-stop rule: why a loss read after ``step`` steps counts as blown up, or ``None``."""
    if not math.isfinite(value):
        return f"non-finite loss ({value}) at step {step}"
    if value > blowup:
        return f"loss {value:.3g} above {DIVERGENCE_FACTOR:g} x max(1, |initial loss|) at step {step}"
    return None


def _ended_above(initial: float, final: float) -> str | None:
    """The end-of-training rule: why a final training loss counts as diverged, or ``None``."""
    if initial > 0:
        if final > ENDED_ABOVE_FACTOR * initial:
            return f"final loss {final / initial:.4g}x its initial loss"
    elif final > initial + ENDED_ABOVE_FACTOR * max(1.0, abs(initial)):
        return (f"final loss {final:.4g} above initial loss {initial:.4g} + "
                f"{ENDED_ABOVE_FACTOR:g} x max(1, |initial loss|)")
    return None


def _recorded_ranges(problem: Problem, final: Mapping[str, float]) -> dict[str, list[float]]:
    """The known range ``[low, high]`` of every final metric that has one (not (-inf, inf))."""
    ranges = {}
    for name in final:
        low, high = (float(bound) for bound in problem.metric_range(name))
        if (low, high) != (-math.inf, math.inf):
            ranges[name] = [low, high]
    return ranges


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _checked_metrics(problem_name: str, metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, Mapping) or "train_loss" not in metrics:
        raise TypeError(f"problem {problem_name!r}: evaluate() must return a dict with 'train_loss'")
    return {str(k): float(v) for k, v in metrics.items()}


def _update_best(best: dict[str, float], metrics: Mapping[str, float], maximize: frozenset[str]) -> None:
    for name, value in metrics.items():
        if math.isnan(value):
            continue
        pick = max if name in maximize else min
        best[name] = pick(best.get(name, value), value)


def _target_met(problem: Problem, metrics: Mapping[str, float]) -> bool:
    target = problem.target
    if target is None or target.metric not in metrics:
        return False
    return _value_meets(problem, metrics[target.metric])


def _value_meets(problem: Problem, value: float) -> bool:
    """Whether ``value`` of the target metric meets the target (NaN never does)."""
    target = problem.target
    if target is None:
        return False
    return value >= target.value if target.metric in problem.maximize else value <= target.value
