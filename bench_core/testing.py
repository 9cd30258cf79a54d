"""The conformance kit: checks a plugin author runs on an optimizer or a problem before publishing it.

Call it from your own test suite, one pytest test per check (the form scikit-learn's
``parametrize_with_checks`` made familiar)::

    from bench_core.testing import parametrize_with_checks

    @parametrize_with_checks([*optbench_optimizers(), *optbench_problems()])
    def test_conforms(spec, check):
        check()

or one test per spec (:func:`assert_optimizer_conforms`, :func:`assert_problem_conforms`),
or from the command line: ``optbench check-plugin NAME``. The checks are one named, ordered
list per spec (:func:`optimizer_checks`, :func:`problem_checks`) that every form runs, so
the forms cannot drift apart. Each check run whole-spec gives a :class:`CheckResult` with a
one-line reason when it fails, so a report can say exactly what is wrong. The checks are
what the harness relies on: an optimizer that ignores its learning rate or loses state in
``state_dict`` makes sweeps and resumed runs meaningless; a problem whose splits overlap
makes its test metric a training metric.

Optimizer checks (:func:`check_optimizer`), on a fixed least-squares task on the CPU:

``steps``
    200 steps at the default hyperparameters keep the loss finite at every step (a NaN that
    appears late is caught), move the parameters and lower the loss.
``respects_lr``
    the first ``LR_STEPS`` steps at ``lr / 10`` must move the parameters less than half as
    far as the same steps at ``lr``. Several steps, not one, so an optimizer whose first step
    is zero by design (a warm-up or preconditioner that starts at zero) passes, while one
    that ignores its learning rate moves the same distance and fails. (Not ``lr = 0``: some
    optimizers rightly reject it.)
``param_groups``
    two groups (the second at a 10x smaller lr) are both kept, and over ``LR_STEPS`` steps
    the slow group moves less than half as far as the fast one on identical data.
``state_dict_roundtrip``
    k steps, ``state_dict()`` saved, m more steps; versus a fresh optimizer that loads the
    saved state into the saved parameters and takes the same m steps: bit-identical
    parameters (``torch.equal``). Catches a state dict that drops momentum buffers.
``deterministic``
    two runs under the same seed give bit-identical parameters (NaN equal to NaN: a run that
    blows up the same way twice is deterministic, and ``steps`` reports the blow-up).
``zero_grad``
    all-zero gradients leave the parameters finite (no 0 / 0).
``no_grad_params``
    a parameter whose ``.grad`` is ``None`` is skipped without error and left unchanged.
``device_cpu``, ``device_cuda``
    20 steps on each device; ``device_cuda`` is skipped where CUDA is not available.

An optimizer declared with ``needs_closure`` is stepped through a closure in every check
(:func:`bench_core.closure.closure_step`, as the runner steps it): the closure zeroes the
gradients, recomputes the loss, backpropagates and returns it, and a step's loss is the
closure's first evaluation. In ``zero_grad`` its closure backpropagates ``0 * loss``.

Problem checks (:func:`check_problem`): ``builds``, ``batches`` (two batches of the spec's
batch size, with one leading dimension when the problem has a finite ``train_size``, a
float tensor, on the problem's device), ``deterministic_data`` (the same generator seed
gives the same batches; for a stochastic problem another seed gives other batches),
``finite_loss_at_init``, ``metrics`` (finite floats, ``train_loss``, the target metric and
every ``maximize`` name), ``disjoint_splits`` (no two of the splits that
:meth:`Problem.split_inputs` declares share a sample, compared by hashing each sample's row;
skipped as not applicable when the problem declares none) and, unless ``reach_target=False``,
the slow ``target_reachable``:
the real harness (:func:`bench_core.runner.run_trial`) trains a reference optimizer (Adam)
for the spec's default budget and batch size, seed 0, at each of :data:`REFERENCE_LRS` in
turn, and one of them must reach the target.

Every check runs under :func:`torch.random.fork_rng`, so the kit leaves the caller's
global CPU random state as it found it.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import math
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tabulate import tabulate

from bench_core.closure import closure_step
from bench_core.specs import OptimizerSpec, Problem, ProblemSpec
from bench_core.trial import Status

if TYPE_CHECKING:
    import pytest

__all__ = [
    "Check",
    "CheckFunction",
    "CheckResult",
    "assert_optimizer_conforms",
    "assert_problem_conforms",
    "check_optimizer",
    "check_problem",
    "declared_split_inputs",
    "format_table",
    "optimizer_checks",
    "parametrize_with_checks",
    "problem_checks",
    "spec_checks",
]

#: Learning rates the slow check tries with the reference optimizer, until one reaches the target.
REFERENCE_LRS = (1e-3, 1e-2, 1e-1)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: passed, failed (with the reason), or skipped (with why)."""

    name: str
    passed: bool
    reason: str = ""
    skipped: bool = False


class _Skip(Exception):
    """Raised inside a check that does not apply."""


#: One check: no arguments, raises ``AssertionError`` (one-line reason) when it fails.
CheckFunction = Callable[[], None]


def _isolated(check: CheckFunction) -> None:
    """Run a check under :func:`torch.random.fork_rng`, so the caller's global CPU random state is untouched."""
    with torch.random.fork_rng(devices=[]):
        check()


def _run(name: str, check: CheckFunction) -> CheckResult:
    try:
        _isolated(check)
    except _Skip as skip:
        return CheckResult(name, True, str(skip), skipped=True)
    except AssertionError as failure:
        return CheckResult(name, False, _one_line(failure) or "assertion failed")
    except Exception as error:  # a crash in the plugin is a failed check, not a crashed kit
        return CheckResult(name, False, f"raised {type(error).__name__}: {_one_line(error)}")
    return CheckResult(name, True)


def _not_applicable(reason: str) -> str:
    """The skip reason of an exempted check, the same in a :class:`CheckResult` and in pytest's report."""
    return f"not applicable: {reason}"


def _owner(spec: OptimizerSpec | ProblemSpec) -> str:
    return f"{'optimizer' if isinstance(spec, OptimizerSpec) else 'problem'} {spec.name!r}"


def _check_exemptions(checks: Sequence[tuple[str, CheckFunction]], exempt: Mapping[str, str], owner: str) -> None:
    """An exemption that names no check is an error: a typo would otherwise exempt nothing, silently."""
    names = [name for name, _ in checks]
    unknown = sorted(set(exempt) - set(names))
    if unknown:
        raise ValueError(f"{owner}: exempt names no check {unknown[0]!r} (checks: {', '.join(names)})")


@dataclass(frozen=True)
class Check:
    """One check of one spec, runnable on its own: what :func:`parametrize_with_checks` hands each test.

    Calling it runs the check as a pytest test: a failure raises ``AssertionError`` with the
    check's reason, a crash in the plugin propagates with its traceback, and a check that does
    not apply (exempted, or skipping itself, such as ``device_cuda`` without CUDA) calls
    ``pytest.skip`` with the reason. :meth:`result` runs it as :func:`check_optimizer` does.
    """

    spec: str
    name: str
    function: CheckFunction = dataclasses.field(repr=False, compare=False)
    #: Why the check does not apply to this spec; ``None`` when it is not exempted.
    exempt: str | None = None

    def __call__(self) -> None:
        import pytest

        if self.exempt is not None:
            pytest.skip(_not_applicable(self.exempt))
        try:
            _isolated(self.function)
        except _Skip as skip:
            pytest.skip(str(skip))

    def result(self) -> CheckResult:
        """The outcome as a :class:`CheckResult`, without pytest: a crash is a failure with its one-line message."""
        if self.exempt is not None:
            return CheckResult(self.name, True, _not_applicable(self.exempt), skipped=True)
        return _run(self.name, self.function)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def format_table(results: Iterable[CheckResult]) -> str:
    """A Markdown-style table: check, PASS / FAIL / SKIP, and the reason."""
    rows = [[r.name, "SKIP" if r.skipped else "PASS" if r.passed else "FAIL", r.reason] for r in results]
    return tabulate(rows, ["check", "result", "reason"], tablefmt="github")


def _failures(results: Sequence[CheckResult]) -> list[CheckResult]:
    return [r for r in results if not r.passed]


# --- optimizers -------------------------------------------------------------------------------


def _regression(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed least-squares task: 64 samples, 4 features, 3 outputs (the same on every call)."""
    generator = torch.Generator().manual_seed(1234)
    X = torch.randn(64, 4, generator=generator)
    Y = X @ torch.randn(4, 3, generator=generator) + 0.1 * torch.randn(64, 3, generator=generator)
    return X.to(device), Y.to(device)


def _fresh_params(device: torch.device, copies: int = 1) -> list[torch.nn.Parameter]:
    """``copies`` identical (weight, bias) pairs, initialised from a fixed seed."""
    generator = torch.Generator().manual_seed(99)
    weight, bias = torch.randn(4, 3, generator=generator) * 0.1, torch.zeros(3)
    return [torch.nn.Parameter(t.clone().to(device)) for _ in range(copies) for t in (weight, bias)]


def _loss(params: Sequence[torch.Tensor], data: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    X, Y = data
    total = torch.zeros((), device=X.device)
    for weight, bias in zip(params[0::2], params[1::2], strict=True):
        total = total + ((X @ weight + bias - Y) ** 2).mean()
    return total


#: Optimizers the kit built from a spec with ``needs_closure``: :func:`_train` steps them through a
#: closure. Registered where the kit builds them, so no check has to pass the flag along.
_NEEDS_CLOSURE: weakref.WeakSet[torch.optim.Optimizer] = weakref.WeakSet()


def _train(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor], data: Any, steps: int) -> list[float]:
    """``steps`` steps on the fixed task; the loss each step started from (a closure's first evaluation)."""
    losses = []
    for _ in range(steps):
        if optimizer in _NEEDS_CLOSURE:
            loss, _ = closure_step(optimizer, partial(_loss, params, data))
        else:
            optimizer.zero_grad()
            loss = _loss(params, data)
            loss.backward()
            optimizer.step()
        losses.append(float(loss.detach()))
    return losses


#: Steps over which ``respects_lr`` and ``param_groups`` measure how far the parameters moved.
LR_STEPS = 10
#: Steps of the ``steps`` check: long enough to catch a NaN that appears after the first few dozen.
TRAIN_STEPS = 200


def _moved(params: Sequence[torch.Tensor], start: Sequence[torch.Tensor]) -> float:
    return sum(float((p.detach() - s).norm()) for p, s in zip(params, start, strict=True))


def optimizer_checks(spec: OptimizerSpec, devices: Sequence[str] | None = None,
                     hyperparams: dict[str, float] | None = None) -> list[tuple[str, CheckFunction]]:
    """Every optimizer check on ``spec``, by name and in order, not yet run.

    The one list of optimizer checks: :func:`check_optimizer` runs it whole and
    :func:`parametrize_with_checks` makes each entry its own pytest test. Each function
    raises ``AssertionError`` with a one-line reason when its check fails. ``hyperparams``
    override the spec's defaults; ``devices`` defaults to ``["cpu", "cuda"]`` (``device_cuda``
    skips itself where CUDA is not available); the other checks run on the CPU.
    """
    values = spec.defaults() | dict(hyperparams or {})
    cpu = torch.device("cpu")
    data = _regression(cpu)

    def build(params: Any, **overrides: float) -> torch.optim.Optimizer:
        optimizer = spec.build(params, values | overrides)
        if spec.needs_closure:
            _NEEDS_CLOSURE.add(optimizer)
        return optimizer

    def steps_and_lowers_the_loss() -> None:
        params = _fresh_params(cpu)
        before = [p.detach().clone() for p in params]
        losses = _train(build(params), params, data, TRAIN_STEPS)
        bad = next((step for step, value in enumerate(losses) if not math.isfinite(value)), None)
        assert bad is None, f"the loss became non-finite at step {bad}"
        assert any(not torch.equal(p, b) for p, b in zip(params, before, strict=True)), "parameters never changed"
        final = float(_loss(params, data).detach())
        assert math.isfinite(final), f"the loss became non-finite after step {TRAIN_STEPS}"
        assert final < losses[0], \
            f"{TRAIN_STEPS} steps at lr {values['lr']:g} did not lower the loss ({losses[0]:.4g} -> {final:.4g})"

    def respects_the_learning_rate() -> None:
        displacement = {}
        for factor in (1.0, 0.1):
            params = _fresh_params(cpu)
            start = [p.detach().clone() for p in params]
            _train(build(params, lr=values["lr"] * factor), params, data, LR_STEPS)
            displacement[factor] = _moved(params, start)
        assert displacement[1.0] > 0, f"{LR_STEPS} steps did not move the parameters"
        assert displacement[0.1] < 0.5 * displacement[1.0], (
            f"a 10x smaller lr moved the parameters {displacement[0.1]:.3g} vs {displacement[1.0]:.3g} in "
            f"{LR_STEPS} steps: the learning rate is not respected")

    def keeps_param_groups() -> None:
        params = _fresh_params(cpu, copies=2)  # two identical copies get identical gradients
        start = [p.detach().clone() for p in params]
        slow = values["lr"] / 10
        optimizer = build([{"params": params[:2]}, {"params": params[2:], "lr": slow}])
        _train(optimizer, params, data, LR_STEPS)
        assert len(optimizer.param_groups) == 2, f"expected 2 param groups, found {len(optimizer.param_groups)}"
        assert optimizer.param_groups[1]["lr"] == slow, "the second group's learning rate was changed"
        fast_move, slow_move = _moved(params[:2], start[:2]), _moved(params[2:], start[2:])
        assert slow_move < 0.5 * fast_move, (
            f"the group with a 10x smaller lr moved {slow_move:.3g} vs {fast_move:.3g}: per-group lr ignored")

    def state_dict_round_trips() -> None:
        params = _fresh_params(cpu)
        optimizer = build(params)
        _train(optimizer, params, data, 5)
        saved_params = [p.detach().clone() for p in params]
        saved_state = copy.deepcopy(optimizer.state_dict())
        _train(optimizer, params, data, 5)
        expected = [p.detach().clone() for p in params]
        restored = [torch.nn.Parameter(p.clone()) for p in saved_params]
        fresh = build(restored)
        fresh.load_state_dict(saved_state)
        _train(fresh, restored, data, 5)
        for got, want in zip(restored, expected, strict=True):
            assert torch.equal(got.detach(), want), (
                "resuming from state_dict() gives different parameters: the state dict does not hold all the "
                f"optimizer's state (max difference {float((got.detach() - want).abs().max()):.3g})")

    def deterministic_under_a_seed() -> None:
        runs = []
        for _ in range(2):
            torch.manual_seed(0)
            params = _fresh_params(cpu)
            _train(build(params), params, data, 10)
            runs.append([p.detach().clone() for p in params])
        same = all(torch.allclose(a, b, rtol=0, atol=0, equal_nan=True) for a, b in zip(*runs, strict=True))
        assert same, "two runs with the same seed differ"

    def copes_with_zero_gradients() -> None:
        params = _fresh_params(cpu)
        optimizer = build(params)
        for _ in range(5):
            if spec.needs_closure:  # the closure backpropagates 0 * loss: all-zero gradients
                closure_step(optimizer, lambda: 0.0 * _loss(params, data))
                continue
            for p in params:
                p.grad = torch.zeros_like(p)
            optimizer.step()
        assert all(torch.isfinite(p).all() for p in params), "zero gradients made the parameters non-finite"

    def skips_parameters_without_gradient() -> None:
        params = _fresh_params(cpu)
        idle = torch.nn.Parameter(torch.ones(5))
        optimizer = build([*params, idle])
        _train(optimizer, params, data, 3)  # idle never gets a gradient
        assert idle.grad is None and torch.equal(idle.detach(), torch.ones(5)), "a parameter without gradient moved"

    def runs_on(device: str) -> Callable[[], None]:
        def check() -> None:
            if device.startswith("cuda") and not torch.cuda.is_available():
                raise _Skip("CUDA is not available here")
            target = torch.device(device)
            params = _fresh_params(target)
            losses = _train(build(params), params, _regression(target), 20)
            assert all(p.device.type == target.type for p in params), "parameters left the device"
            assert math.isfinite(losses[-1]), f"non-finite loss on {device}"
        return check

    checks = [("steps", steps_and_lowers_the_loss), ("respects_lr", respects_the_learning_rate),
              ("param_groups", keeps_param_groups), ("state_dict_roundtrip", state_dict_round_trips),
              ("deterministic", deterministic_under_a_seed), ("zero_grad", copes_with_zero_gradients),
              ("no_grad_params", skips_parameters_without_gradient)]
    for device in devices or ["cpu", "cuda"]:
        checks.append((f"device_{device}", runs_on(device)))
    return checks


def check_optimizer(spec: OptimizerSpec, devices: Sequence[str] | None = None,
                    hyperparams: dict[str, float] | None = None,
                    exempt: Mapping[str, str] | None = None) -> list[CheckResult]:
    """Run every optimizer check (:func:`optimizer_checks`) on ``spec`` and return one result per check.

    Checks named in ``spec.exempt`` or ``exempt`` (check name -> reason) are skipped with the reason.
    """
    return [check.result() for check in spec_checks(spec, exempt, devices=devices, hyperparams=hyperparams)]


def assert_optimizer_conforms(spec: OptimizerSpec, **kwargs: Any) -> None:
    """:func:`check_optimizer`, raising ``AssertionError`` that lists every failed check."""
    _raise_on_failures(spec.name, check_optimizer(spec, **kwargs))


# --- problems ---------------------------------------------------------------------------------


def _tensors(batch: Any) -> Iterator[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, dict):
        for value in batch.values():
            yield from _tensors(value)
    elif isinstance(batch, list | tuple):
        for value in batch:
            yield from _tensors(value)


def _same(a: Any, b: Any) -> bool:
    first, second = list(_tensors(a)), list(_tensors(b))
    return len(first) == len(second) and all(torch.equal(x, y) for x, y in zip(first, second, strict=True))


def declared_split_inputs(problem: Problem) -> Mapping[str, Any] | None:
    """The split inputs ``disjoint_splits`` compares: :meth:`Problem.split_inputs`, else a legacy ``.splits`` dict.

    Problems written before ``split_inputs`` existed exposed their splits as a ``.splits``
    dict of ``(X, y)`` pairs (what the kit used to read); such a problem is still checked,
    on the ``X`` of each pair, so a third-party problem does not silently lose the check.
    """
    inputs = problem.split_inputs()
    if inputs is not None:
        return inputs
    legacy = getattr(problem, "splits", None)
    if isinstance(legacy, Mapping) and legacy and all(isinstance(v, tuple | list) and v for v in legacy.values()):
        return {name: split[0] for name, split in legacy.items()}
    return None


def _row_hashes(split: str, inputs: Any) -> set[str]:
    """One hash per sample of a split: the bytes of its row in each input array, in order.

    ``inputs`` is a tensor or array, or a tuple of them, whose first dimension indexes samples.
    Comparing hashes (not values) keeps memory flat on large splits; equal rows hash equally
    when the splits share a dtype, which the splits of one problem do.
    """
    parts = list(inputs) if isinstance(inputs, tuple | list) else [inputs]
    arrays = [np.ascontiguousarray(p.detach().cpu().numpy() if isinstance(p, torch.Tensor) else np.asarray(p))
              for p in parts]
    assert arrays and all(a.ndim >= 1 for a in arrays), f"the {split} split's inputs are not arrays with a sample axis"
    sizes = {len(a) for a in arrays}
    assert len(sizes) == 1, f"the {split} split's input arrays have different numbers of samples: {sorted(sizes)}"
    rows = [a.reshape(len(a), -1) for a in arrays]
    hashes = set()
    for i in range(sizes.pop()):
        digest = hashlib.sha1()
        for r in rows:
            digest.update(r[i].tobytes())
        hashes.add(digest.hexdigest())
    return hashes


def problem_checks(spec: ProblemSpec, options: dict[str, Any] | None = None, device: str = "cpu",
                   reach_target: bool = True, reference: OptimizerSpec | None = None,
                   reference_lrs: Sequence[float] = REFERENCE_LRS) -> list[tuple[str, CheckFunction]]:
    """Every problem check on ``spec`` built with its default options (updated by ``options``), by name, not yet run.

    The one list of problem checks, as :func:`optimizer_checks` is for optimizers. The
    problem is built once, by whichever check runs first, and shared by the checks of this
    list, so each check can also run on its own (one pytest test per check); when the build
    fails, ``builds`` fails and every other check skips itself.

    ``reach_target`` adds the slow check: a reference optimizer (Adam unless ``reference`` is
    given) trained by the real harness for the spec's default budget and batch size reaches
    the problem's target at one of ``reference_lrs``.
    """
    options = dict(spec.options) | dict(options or {})
    built: dict[str, Any] = {}  # "outcome": the built object, or the exception build() raised

    def build_once() -> Any:
        if "outcome" not in built:
            try:
                built["outcome"] = spec.build(device=torch.device(device), **options)
            except Exception as error:  # kept, so builds() reports it and the other checks skip
                built["outcome"] = error
        return built["outcome"]

    def builds() -> None:
        problem = build_once()
        if isinstance(problem, Exception):
            raise problem
        assert isinstance(problem, Problem), f"build() returned {type(problem).__name__}, not a Problem"

    def problem() -> Problem:
        outcome = build_once()
        if not isinstance(outcome, Problem):
            raise _Skip("the problem did not build")
        return outcome

    def batch_size() -> int:
        size = problem().train_size
        return min(spec.batch_size, size) if size else spec.batch_size

    def batches_have_the_declared_shape() -> None:
        p = problem()
        stream = p.batches(batch_size(), torch.Generator(device=p.device).manual_seed(0))
        for batch in (next(stream), next(stream)):
            tensors = list(_tensors(batch))
            assert tensors, "a batch holds no tensors"
            for tensor in tensors:
                assert tensor.device.type == p.device.type, f"a batch tensor is on {tensor.device}, not {p.device}"
                if p.train_size:
                    assert len(tensor) == batch_size(), f"a batch tensor has {len(tensor)} rows, not {batch_size()}"
            floats = [t for t in tensors if t.is_floating_point()]
            assert floats, "a batch holds no floating-point tensor"

    def data_is_deterministic() -> None:
        p = problem()

        def draw(seed: int) -> list[Any]:
            stream = p.batches(batch_size(), torch.Generator(device=p.device).manual_seed(seed))
            return [next(stream) for _ in range(3)]

        first, again = draw(0), draw(0)
        assert all(_same(a, b) for a, b in zip(first, again, strict=True)), "the same seed gave different batches"
        if p.stochastic and batch_size() != p.train_size:  # a full batch is the data as stored, whatever the seed
            other = draw(1)
            assert not all(_same(a, b) for a, b in zip(first, other, strict=True)), \
                "another seed gave the same batches: the generator is not used"

    def loss_is_finite_at_init() -> None:
        p = problem()
        torch.manual_seed(0)
        model = p.init_model().to(p.device)
        stream = p.batches(batch_size(), torch.Generator(device=p.device).manual_seed(0))
        loss = p.loss(model, next(stream))
        assert loss.ndim == 0, f"the loss has shape {tuple(loss.shape)}, not a scalar"
        assert torch.isfinite(loss), f"the loss at initialisation is {float(loss.detach())}"

    def metrics_are_reported() -> None:
        p = problem()
        torch.manual_seed(0)
        metrics = p.evaluate(p.init_model().to(p.device))
        assert "train_loss" in metrics, "evaluate() has no train_loss"
        bad = {k: v for k, v in metrics.items() if not isinstance(v, float) or not math.isfinite(v)}
        assert not bad, f"non-finite or non-float metrics: {bad}"
        if p.target is not None:
            assert p.target.metric in metrics, f"the target metric {p.target.metric!r} is never reported"
        missing = set(p.maximize) - set(metrics)
        assert not missing, f"maximize names metrics evaluate() lacks: {sorted(missing)}"

    def splits_are_disjoint() -> None:
        inputs = declared_split_inputs(problem())
        if inputs is None:
            raise _Skip("the problem declares no splits (Problem.split_inputs() returns None)")
        if len(inputs) < 2:
            raise _Skip(f"the problem declares one split ({', '.join(inputs)}): there is nothing to overlap")
        hashes = {name: _row_hashes(name, split) for name, split in inputs.items()}
        overlaps = [f"{first} and {second} share {shared} sample(s)"
                    for (first, a), (second, b) in itertools.combinations(hashes.items(), 2)
                    if (shared := len(a & b))]
        assert not overlaps, "splits overlap: " + "; ".join(overlaps)

    def target_is_reachable() -> None:
        p = problem()
        if p.target is None:
            raise _Skip("the problem declares no target")
        from bench_core.catalog import load_catalog
        from bench_core.runner import ProblemCache, run_trial
        from bench_core.trial import TrialConfig

        optimizer = reference or OptimizerSpec("reference_adam", torch.optim.Adam)
        base = load_catalog()
        catalog = dataclasses.replace(base, problems={**base.problems, spec.name: spec},
                                      optimizers={**base.optimizers, optimizer.name: optimizer})
        cache = ProblemCache(catalog)
        outcomes = []
        for lr in reference_lrs:
            config = TrialConfig(problem=spec.name, optimizer=optimizer.name, hyperparams={"lr": lr},
                                 budget=spec.budget, batch_size=batch_size() if p.stochastic else None,
                                 problem_options=options, device=device)
            result = run_trial(config, cache)
            if result.status == Status.OK and result.steps_to_target is not None:
                return
            outcomes.append(f"lr {lr:g}: {result.status}, best {p.target.metric} "
                            f"{result.best.get(p.target.metric, math.nan):.4g}")
        raise AssertionError(f"{optimizer.name} did not reach {p.target.metric} {p.target.value:g} within "
                             f"{spec.budget.amount} {spec.budget.unit} ({'; '.join(outcomes)})")

    checks = [("builds", builds), ("batches", batches_have_the_declared_shape),
              ("deterministic_data", data_is_deterministic), ("finite_loss_at_init", loss_is_finite_at_init),
              ("metrics", metrics_are_reported), ("disjoint_splits", splits_are_disjoint)]
    if reach_target:
        checks.append(("target_reachable", target_is_reachable))
    return checks


def check_problem(spec: ProblemSpec, options: dict[str, Any] | None = None, device: str = "cpu",
                  reach_target: bool = True, reference: OptimizerSpec | None = None,
                  reference_lrs: Sequence[float] = REFERENCE_LRS,
                  exempt: Mapping[str, str] | None = None) -> list[CheckResult]:
    """Run every problem check (:func:`problem_checks`) on ``spec`` and return one result per check.

    Checks named in ``spec.exempt`` or ``exempt`` (check name -> reason) are skipped with the reason;
    an exempted ``target_reachable`` is listed (as skipped) even with ``reach_target=False``.
    """
    checks = spec_checks(spec, exempt, options=options, device=device, reach_target=reach_target,
                         reference=reference, reference_lrs=reference_lrs)
    return [check.result() for check in checks]


def assert_problem_conforms(spec: ProblemSpec, **kwargs: Any) -> None:
    """:func:`check_problem`, raising ``AssertionError`` that lists every failed check."""
    _raise_on_failures(spec.name, check_problem(spec, **kwargs))


def _raise_on_failures(name: str, results: Sequence[CheckResult]) -> None:
    failures = _failures(results)
    if failures:
        raise AssertionError(f"{name} fails {len(failures)} check(s): "
                             + "; ".join(f"{r.name}: {r.reason}" for r in failures))


# --- one pytest test per check ------------------------------------------------------------------


def _listed(spec: OptimizerSpec | ProblemSpec, exempt: Mapping[str, str],
            kwargs: Mapping[str, Any]) -> list[tuple[str, CheckFunction]]:
    """The spec's checks; a problem's slow check is listed when asked for, or when exempted (to show it skipped)."""
    if isinstance(spec, OptimizerSpec):
        return optimizer_checks(spec, **kwargs)
    if isinstance(spec, ProblemSpec):
        reach = kwargs.get("reach_target", True) or "target_reachable" in exempt
        return problem_checks(spec, **(dict(kwargs) | {"reach_target": reach}))
    raise _not_a_spec(spec)


def _not_a_spec(spec: object) -> TypeError:
    return TypeError(f"expected an OptimizerSpec or a ProblemSpec, got {type(spec).__name__}")


def spec_checks(spec: OptimizerSpec | ProblemSpec, exempt: Mapping[str, str] | None = None,
                **kwargs: Any) -> list[Check]:
    """The checks of one optimizer or problem spec as :class:`Check` objects, in order, exemptions applied.

    ``kwargs`` are those of :func:`optimizer_checks` or :func:`problem_checks`. ``exempt``
    (check name -> reason) adds to ``spec.exempt``; an exemption naming no check of the spec
    is a ``ValueError``, since a typo would otherwise exempt nothing, silently.
    """
    exempt = dict(spec.exempt) | dict(exempt or {})
    checks = _listed(spec, exempt, kwargs)
    _check_exemptions(checks, exempt, _owner(spec))
    return [Check(spec.name, name, function, exempt.get(name)) for name, function in checks]


def parametrize_with_checks(specs: Iterable[OptimizerSpec | ProblemSpec], *,
                            exempt: Mapping[str, str] | None = None,
                            devices: Sequence[str] | None = None, hyperparams: dict[str, float] | None = None,
                            options: dict[str, Any] | None = None, device: str = "cpu", reach_target: bool = True,
                            reference: OptimizerSpec | None = None,
                            reference_lrs: Sequence[float] = REFERENCE_LRS) -> pytest.MarkDecorator:
    """A ``pytest.mark.parametrize`` over every (spec, check) pair: one test per check, as scikit-learn does it.

    ::

        @parametrize_with_checks([*optbench_optimizers(), *optbench_problems()])
        def test_conforms(spec, check):
            check()

    Each test's id is ``<spec name>-<check name>`` (``signum-respects_lr``), so ``pytest -k
    respects_lr`` runs one check and a failure names one check. A check exempted in the spec
    or in ``exempt`` is marked skipped with ``not applicable: <reason>`` (``pytest -rs`` shows
    it). ``exempt`` may name checks of either kind, each applied to the specs that have it; one
    naming no check of any spec is a ``ValueError`` at collection. ``devices`` and
    ``hyperparams`` go to :func:`optimizer_checks`, the rest to :func:`problem_checks`.
    Problems are built when their first check runs, not at collection.
    """
    import pytest

    exempt = dict(exempt or {})
    params, names = [], set()
    for spec in specs:
        if isinstance(spec, OptimizerSpec):
            kwargs: dict[str, Any] = {"devices": devices, "hyperparams": hyperparams}
        elif isinstance(spec, ProblemSpec):
            kwargs = {"options": options, "device": device, "reach_target": reach_target, "reference": reference,
                      "reference_lrs": reference_lrs}
        else:
            raise _not_a_spec(spec)
        listed = {name for name, _ in _listed(spec, dict(spec.exempt) | exempt, kwargs)}  # builds nothing
        names |= listed
        for check in spec_checks(spec, {k: v for k, v in exempt.items() if k in listed}, **kwargs):
            marks = [] if check.exempt is None else [pytest.mark.skip(reason=_not_applicable(check.exempt))]
            params.append(pytest.param(spec, check, id=f"{spec.name}-{check.name}", marks=marks))
    unknown = sorted(set(exempt) - names)
    if unknown:
        raise ValueError(f"parametrize_with_checks: exempt names no check {unknown[0]!r} "
                         f"(checks: {', '.join(sorted(names))})")
    return pytest.mark.parametrize(("spec", "check"), params)
