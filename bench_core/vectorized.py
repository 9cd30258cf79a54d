"""Vectorised trials: a group of trials that differ only in hyperparameters and seed, run as one computation.

Most of a small trial's time is Python and kernel-launch overhead per step, the same whether a
step moves one point or a thousand. So the driver groups trials that share everything but their
float hyperparameters (learning rate included) and seed (:func:`form_groups`), and a worker runs
each group here (:func:`run_group`): every model parameter gets a leading *trial dimension* (row k
is trial k), one forward and backward pass per step gives every row its gradient
(:meth:`bench_core.specs.Problem.stacked_loss`), and the optimizer's batched form
(:class:`bench_core.batched.BatchedOptimizer`) updates all rows at once.

What stays per trial, exactly as when trials run one by one (:mod:`bench_core.runner`):

* initialisation and data: each trial's model is built after ``torch.manual_seed(seed)`` and its
  batches come from its own generator seeded with its seed
  (:meth:`~bench_core.specs.Problem.stacked_batches`), so seeds see their own data order and noise;
* hyperparameters and learning rates (a ``(K,)`` tensor; the schedule's factor is shared, since
  the group shares schedule and budget);
* evaluation points, divergence (a member whose loss blows up is evaluated at that step, stored as
  ``diverged`` with its reason and leaves the group; the others carry on), steps to target and
  stop-at-target (a member that stops leaves the group);
* results: one :class:`~bench_core.trial.TrialResult` per trial, with the same fields. Timing
  fields are the trial's share of the group's time: each stretch of training time is divided
  evenly among the members still training in it, so ``train_seconds`` is what the trial cost, not
  how long the group took. ``group_size`` records how many trials ran together (1: alone).

Agreement with one-by-one runs: an analytic problem (elementwise arithmetic on a point) gives
bit-identical numbers; a network's batched matrix products may round differently from one trial's,
so curves agree to a relative 1e-5 over 50 steps (``tests/test_vectorized.py`` checks both, for
every built-in optimizer and schedule), and may drift further apart over long runs as any two
floating-point orders do.

What cannot be vectorised runs one by one, automatically (:func:`why_not_vectorized` says why):
an optimizer without a batched form, or one that needs a closure or has evaluation modes; a
problem that does not declare ``vectorizable`` or whose model has buffers; a budget in seconds.
A group that fails in its vectorised form (any exception: a model ``vmap`` cannot batch, say) is
run again one by one, so a plugin's failure is reported by trial, as before.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.func import functional_call, vmap

from bench_core.catalog import Catalog
from bench_core.specs import Param, Problem
from bench_core.time_limits import AUTO, TimeLimit, TrialTimeout, alarm
from bench_core.trial import Status, TrialConfig, TrialResult

if TYPE_CHECKING:
    from bench_core.runner import ProblemCache

#: The most trials one group holds, whatever their size.
MAX_GROUP = 1024
#: A group holds at most this many parameter elements in all (K x the model's parameter count): with
#: gradients, optimizer state and activations a group then stays within a few hundred MB.
MAX_GROUP_ELEMENTS = 2**24


# --- which trials can share a computation --------------------------------------------------------


def group_key(config: TrialConfig, catalog: Catalog) -> str:
    """What the trials of one group share: everything but float hyperparameters (lr included) and seed."""
    spec = catalog.get("optimizer", config.optimizer)
    shared = {name: value for name, value in config.hyperparams.items()
              if name != "lr" and not _is_float_param(spec.hyperparams.get(name))}
    canonical = config.canonical()
    for name in ("hyperparams", "seed"):
        canonical.pop(name)
    return json.dumps(canonical | {"shared_hyperparams": shared}, sort_keys=True)


def _is_float_param(param: Any) -> bool:
    return isinstance(param, Param) and not param.integer


def why_not_vectorized(config: TrialConfig, catalog: Catalog, problem: Problem) -> str | None:
    """Why trials like ``config`` run one by one (one line), or ``None`` when they can run as a group."""
    spec = catalog.get("optimizer", config.optimizer)
    if spec.batched is None:
        return f"optimizer {config.optimizer!r} has no batched form"
    if spec.needs_closure:
        return f"optimizer {config.optimizer!r} needs a closure"
    if config.budget.unit == "seconds":
        return "a budget in seconds is measured per trial"
    if not getattr(problem, "vectorizable", False):
        return f"problem {config.problem!r} does not declare vectorizable"
    return None


def form_groups(configs: Sequence[TrialConfig], catalog: Catalog, problem_of: Callable[[TrialConfig], Problem],
                workers: int = 1, vectorize: bool = True) -> list[list[TrialConfig]]:
    """Split ``configs`` into units of work: groups of trials to run as one, and single trials.

    Trials group by :func:`group_key` when :func:`why_not_vectorized` allows. A group holds at most
    :data:`MAX_GROUP` trials and :data:`MAX_GROUP_ELEMENTS` parameter elements; when there are fewer
    units than ``workers``, the largest groups are halved until every worker has one. Order is kept:
    groups come in the order of their first trial. ``vectorize=False``: every trial alone.
    """
    if not vectorize:
        return [[config] for config in configs]
    groups: dict[str, list[TrialConfig]] = {}
    singles: list[tuple[int, list[TrialConfig]]] = []
    order: dict[str, int] = {}
    limits: dict[str, int] = {}
    for index, config in enumerate(configs):
        problem = problem_of(config)
        if why_not_vectorized(config, catalog, problem) is not None:
            singles.append((index, [config]))
            continue
        key = group_key(config, catalog)
        if key not in groups:
            groups[key], order[key] = [], index
            limits[key] = max(1, min(MAX_GROUP, MAX_GROUP_ELEMENTS // max(1, parameter_count(problem))))
        groups[key].append(config)
    units = singles + [(order[key] + offset, chunk) for key, members in groups.items()
                       for offset, chunk in enumerate(_chunks(members, limits[key]))]
    while len(units) < workers:
        index, largest = max(units, key=lambda unit: len(unit[1]), default=(0, []))
        if len(largest) < 2:
            break
        units.remove((index, largest))
        half = math.ceil(len(largest) / 2)
        units += [(index, largest[:half]), (index, largest[half:])]
    return [unit for _, unit in sorted(units, key=lambda unit: unit[0])]


def _chunks(items: list[TrialConfig], size: int) -> Iterator[list[TrialConfig]]:
    """``items`` in nearly equal chunks of at most ``size``."""
    count = math.ceil(len(items) / size)
    step = math.ceil(len(items) / count)
    for start in range(0, len(items), step):
        yield items[start:start + step]


_parameter_counts: dict[int, int] = {}


def parameter_count(problem: Problem) -> int:
    """Elements in one model of ``problem`` (built once per problem object)."""
    if id(problem) not in _parameter_counts:
        with torch.random.fork_rng(devices=[]):
            _parameter_counts[id(problem)] = sum(p.numel() for p in problem.init_model().parameters())
    return _parameter_counts[id(problem)]


# --- the problem side: stacked losses, batches and evaluations --------------------------------------


class _LossOf(torch.nn.Module):
    """``problem.loss(model, batch)`` as a module, so ``functional_call`` can swap the model's parameters."""

    def __init__(self, problem: Problem, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.problem = problem

    def forward(self, batch: Any) -> torch.Tensor:
        return self.problem.loss(self.model, batch)


def vmapped_loss(problem: Problem, model: torch.nn.Module, params: Mapping[str, torch.Tensor],
                 batch: Any) -> torch.Tensor:
    """Each trial's loss, shape ``(K,)``: ``problem.loss`` mapped over the trial dimension with ``torch.func.vmap``.

    Works for any loss ``vmap`` can batch (no in-place updates of buffers, no random draws, no ``.item()``).
    """
    wrapper = _LossOf(problem, model)
    names = {f"model.{name}": value for name, value in params.items()}

    def one(row: dict[str, torch.Tensor], rows_batch: Any) -> torch.Tensor:
        return functional_call(wrapper, row, (rows_batch,))

    return vmap(one)(names, batch)


def evaluate_rows(problem: Problem, model: torch.nn.Module,
                  params: Mapping[str, torch.Tensor]) -> list[dict[str, float]]:
    """``problem.evaluate`` of each trial in turn, its row of ``params`` copied into ``model``."""
    own = dict(model.named_parameters())
    metrics = []
    with torch.no_grad():
        for row in range(len(next(iter(params.values())))):
            for name, value in params.items():
                own[name].copy_(value[row])
            metrics.append(problem.evaluate(model))
    return metrics


def stacked_batches_of(problem: Problem, batch_size: int, generators: Sequence[torch.Generator]) -> Iterator[Any]:
    """Each trial's own batches (``problem.batches`` with its generator), stacked along a new first dimension."""
    streams = [problem.batches(batch_size, generator) for generator in generators]
    while True:
        yield _stack([next(stream) for stream in streams])


def _stack(items: list[Any]) -> Any:
    first = items[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(items)
    if isinstance(first, tuple | list):
        return type(first)(_stack([item[i] for item in items]) for i in range(len(first)))
    if isinstance(first, Mapping):
        return {key: _stack([item[key] for item in items]) for key in first}
    raise TypeError(f"cannot stack batches of type {type(first).__name__}")


def _rows(batch: Any, rows: torch.Tensor) -> Any:
    """The members ``rows`` of a stacked batch."""
    if isinstance(batch, torch.Tensor):
        return batch.index_select(0, rows)
    if isinstance(batch, tuple | list):
        return type(batch)(_rows(item, rows) for item in batch)
    if isinstance(batch, Mapping):
        return {key: _rows(value, rows) for key, value in batch.items()}
    return batch


# --- running a group ----------------------------------------------------------------------------------


@dataclass
class _Member:
    """One trial of a running group: its config, its result so far and its per-trial bookkeeping."""

    config: TrialConfig
    result: TrialResult
    limit: float | None
    blowup: float = math.inf
    initial_loss: float = math.nan
    train_seconds: float = 0.0
    stop: bool = False


def run_group(configs: Sequence[TrialConfig], problems: ProblemCache,
              time_limit: TimeLimit = AUTO) -> list[TrialResult]:
    """Train ``configs`` (trials of one :func:`group_key`) as one computation; one result per trial, in order.

    Raises whatever the vectorised form raises (the caller then runs the trials one by one), except a
    time limit: every trial still training when the group's limit (the sum of its trials' limits)
    passes is returned as ``timeout``, with how far it got.
    """
    from bench_core import runner

    started = time.perf_counter()
    first = configs[0]
    problem = problems.get(first.problem, first.problem_options, first.device)
    members = [_Member(c, TrialResult(c.trial_id, Status.OK, device=c.device),
                       runner.trial_limit(c, problem, time_limit)) for c in configs]
    limits = [m.limit for m in members]
    group_limit = None if any(limit is None for limit in limits) else float(sum(limits))
    try:
        with alarm(group_limit):
            _train_group(members, problems, None if group_limit is None else time.perf_counter() + group_limit)
    except TrialTimeout:
        for member in members:
            if not member.stop:
                member.result = runner._timed_out(member.result, member.limit)
    wall = time.perf_counter() - started
    for member in members:
        member.result.time_limit = member.limit
        member.result.wall_seconds = wall / len(members)
        member.result.group_size = len(members)
    return [member.result for member in members]


def _train_group(members: list[_Member], problems: ProblemCache, deadline: float | None) -> None:
    """The group's training loop: :func:`bench_core.runner._train` for K trials at once (see the module docstring)."""
    from bench_core import runner

    catalog = problems.catalog
    first = members[0].config
    optimizer_spec = catalog.get("optimizer", first.optimizer)
    schedule_spec = catalog.get("schedule", first.schedule)
    problem = problems.get(first.problem, first.problem_options, first.device)
    device = problem.device
    steps = runner.total_steps(first, problem)
    if steps is None:
        raise ValueError("a budget in seconds is not vectorised")
    eval_at = set(runner.evaluation_steps(steps, first.evals))
    schedule_options = dict(schedule_spec.options) | first.schedule_options
    samples_per_step = first.batch_size or 1

    models = []
    for member in members:
        runner.seed_global_rng(member.config.seed, device)
        model = problem.init_model().to(device)
        if any(True for _ in model.buffers()):
            raise ValueError("a model with buffers is not vectorised")
        # the optimizer's own constructor checks the trial's hyperparameters, as a one-by-one run would
        optimizer_spec.build(model.parameters(), member.config.hyperparams)
        models.append(model)
    template = models[0]
    template.train()
    names = [name for name, _ in template.named_parameters()]
    params = {name: torch.stack([dict(m.named_parameters())[name].detach() for m in models]).requires_grad_()
              for name in names}
    del models
    generators = [torch.Generator(device=device).manual_seed(m.config.seed) for m in members]
    values = optimizer_spec.defaults()
    hyperparams: dict[str, Any] = {}
    for name in values:
        if name == "lr":
            continue
        if _is_float_param(optimizer_spec.hyperparams.get(name)):
            hyperparams[name] = torch.tensor([float(m.config.hyperparams.get(name, values[name])) for m in members],
                                             dtype=torch.float64, device=device)
        else:
            hyperparams[name] = first.hyperparams.get(name, values[name])
    optimizer = optimizer_spec.batched(list(params.values()), hyperparams)
    base_lrs = torch.tensor([float(m.config.hyperparams["lr"]) for m in members], dtype=torch.float64, device=device)
    per_step = runner.checks_every_step(problem)
    batches = problem.stacked_batches(first.batch_size or 1, generators)

    active = list(range(len(members)))  # member index of each row of params
    rows_all = None  # row selection for batches once members have left; None: all rows
    for member in members:
        member.result.device = str(device)
        member.result.target_every = runner.target_resolution(member.config, problem, steps, per_step)
    factor = 1.0  # the schedule's factor at the current step

    def reached(member: _Member, step: int, seconds_so_far: float) -> None:
        member.result.steps_to_target = step
        member.result.gradient_evaluations_to_target = step
        member.result.samples_to_target = step * samples_per_step
        member.result.seconds_to_target = seconds_so_far

    def evaluate(rows: list[int], step: int) -> None:
        """Evaluate the members at ``rows`` of params (positions in ``active``)."""
        index = torch.tensor(rows, device=device)
        subset = {name: value.detach().index_select(0, index) for name, value in params.items()}
        all_metrics = problem.stacked_evaluate(template, subset)
        for row, raw in zip(rows, all_metrics, strict=True):
            member = members[active[row]]
            metrics = runner._checked_metrics(member.config.problem, raw)
            point = {"step": step, "samples": step * samples_per_step, "seconds": member.train_seconds,
                     "lr": float(member.config.hyperparams["lr"]) * factor}
            member.result.curve.append(point | metrics)
            runner._update_best(member.result.best, metrics, problem.maximize)
            if member.result.steps_to_target is None and runner._target_met(problem, metrics):
                reached(member, step, member.train_seconds)
            if step > 0:  # as one by one: the initial evaluation is not checked for divergence
                diverge(member, runner._blown_up(metrics["train_loss"], member.blowup, step))
            if step > 0 and (member.result.status == Status.DIVERGED or (
                    member.config.stop_at_target and member.result.steps_to_target is not None)):
                member.stop = True  # it leaves the group after this step
                leaving.append(row)
                member.result.steps, member.result.samples = step, step * samples_per_step

    def diverge(member: _Member, why: str | None) -> None:
        if why is not None and member.result.status != Status.DIVERGED:
            member.result.status, member.result.reason = Status.DIVERGED, why

    leaving: list[int] = []  # rows (positions in ``active``) of members that stop after this step
    with torch.no_grad():
        evaluate(list(range(len(active))), 0)
    for member in members:
        member.initial_loss = member.result.curve[0]["train_loss"]
        member.blowup = runner.DIVERGENCE_FACTOR * max(1.0, abs(member.initial_loss))
    blowups = torch.tensor([m.blowup for m in members], dtype=torch.float64, device=device)
    searching = torch.tensor([m.result.steps_to_target is None for m in members], device=device)
    maximizing = problem.target is not None and problem.target.metric in problem.maximize
    step = 0
    pending: list[torch.Tensor] = []
    tick = runner._now(device)
    try:
        while active:
            factor = float(schedule_spec.multiplier(step, steps, **schedule_options))
            lr = base_lrs * factor
            batch = next(batches)
            if rows_all is not None:
                batch = _rows(batch, rows_all)
            for value in params.values():
                value.grad = None
            losses = problem.stacked_loss(template, params, batch)
            losses.sum().backward()
            optimizer.step(lr)
            if per_step:
                pending.append(losses.detach())
            step += 1
            if deadline is not None and time.perf_counter() > deadline:
                raise TrialTimeout
            finished = step >= steps
            evaluating = step in eval_at
            to_evaluate: set[int] = set(range(len(active))) if evaluating else set()
            if evaluating or step % runner.DIVERGENCE_CHECK_EVERY == 0:
                # as one by one: every pending per-step loss (or the last loss) of every member, read at once
                if per_step:
                    read = torch.stack(pending).double()  # (steps since the last read, members)
                    start = step - len(pending)
                    pending.clear()
                else:
                    read = losses.detach().double().unsqueeze(0)
                last = read[-1]
                events = ~torch.isfinite(last) | (last > blowups)
                if per_step and problem.target is not None:
                    meets = (read >= problem.target.value) if maximizing else (read <= problem.target.value)
                    meets &= searching
                    first_met = meets.int().argmax(0)
                    events |= meets.any(0)
                rows = events.nonzero().flatten().tolist()  # the host read (synchronises the device)
                elapsed = runner._now(device) - tick
                for row in rows:
                    member = members[active[row]]
                    if per_step and member.result.steps_to_target is None and bool(meets[:, row].any()):
                        reached(member, start + int(first_met[row]), member.train_seconds + elapsed / len(active))
                        searching[row] = False
                        if member.config.stop_at_target:
                            to_evaluate.add(row)
                    diverge(member, runner._blown_up(float(last[row]), member.blowup, step))
                    if member.result.status == Status.DIVERGED:
                        to_evaluate.add(row)
            if to_evaluate:
                share = (runner._now(device) - tick) / len(active)
                for index in active:
                    members[index].train_seconds += share
                with torch.no_grad():
                    evaluate(sorted(to_evaluate), step)
                tick = runner._now(device)
            if finished:
                for index in active:
                    members[index].result.steps, members[index].result.samples = step, step * samples_per_step
                break
            if leaving:
                keep = [row for row in range(len(active)) if row not in set(leaving)]
                leaving.clear()
                active = [active[row] for row in keep]
                if not active:
                    break
                kept = torch.tensor(keep, device=device)
                params = {name: value.detach().index_select(0, kept).requires_grad_() for name, value in params.items()}
                optimizer.keep(kept, list(params.values()))
                base_lrs = base_lrs.index_select(0, kept)
                blowups, searching = blowups.index_select(0, kept), searching.index_select(0, kept)
                pending = [values.index_select(0, kept) for values in pending]
                selection = torch.tensor(active, device=device)
                rows_all = selection
    except TrialTimeout:
        for index in active:  # how far each trial still training got
            members[index].result.steps, members[index].result.samples = step, step * samples_per_step
        raise
    for member in members:
        member.stop = True
        result = member.result
        result.gradient_evaluations = result.steps
        result.final = {k: v for k, v in result.curve[-1].items() if k not in ("step", "samples", "seconds", "lr")}
        diverge(member, runner._ended_above(member.initial_loss, result.final["train_loss"]))
        result.train_seconds = member.train_seconds
        result.samples_per_second = result.samples / member.train_seconds if member.train_seconds > 0 else None
        result.metric_ranges = runner._recorded_ranges(problem, result.final)
