"""The public API for plugin authors: the objects a plugin returns from its hooks.

An optimizer plugin returns :class:`OptimizerSpec` objects, a problem plugin
:class:`ProblemSpec` objects (each builds a :class:`Problem`), a schedule plugin
:class:`ScheduleSpec` objects. The harness never names a concrete optimizer or problem:
everything it runs comes through these specs, built-ins included.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
BUDGET_UNITS = ("steps", "epochs", "samples", "seconds")
#: Sweep axes every trial has, besides the optimizer's own hyperparameters (suite keys and CLI flags).
AXES = ("lr", "batch_size", "schedule", "seeds", *BUDGET_UNITS, "evals", "random_seed", "search",
        "trials", "lr_scaling", "base_batch_size", "transfer_batch_sizes", "stop_at_target")
#: Suite settings that are not sweep axes.
SUITE_KEYS = ("name", "description", "device", "problems", "optimizers", "problem", "optimizer",
              "schedule_options", "trial_timeout", "vectorize")
#: Names an optimizer may not give a hyperparameter: every suite setting and sweep axis (a suite line
#: ``trials = 2`` must mean one thing), a trial's own fields, and ``lr``, which every optimizer has.
RESERVED_NAMES = frozenset({*AXES, *SUITE_KEYS, "seed", "options", "problem_options", "hyperparams"})


def check_name(kind: str, name: object) -> str:
    """Return ``name`` if it is usable on a command line (no commas, no spaces), else raise."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(
            f"{kind} name {name!r} is invalid: use letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Param:
    """A tunable numeric hyperparameter: its default value and the range a search may draw from.

    ``low``/``high`` bound a search space (``log=True`` for log-uniform); leave them unset
    for a hyperparameter that is only ever set explicitly. ``integer=True`` makes it a
    whole number (a history length, a preconditioning frequency): its values reach the
    optimizer as ``int``, grids over it are rounded to whole numbers, and searches draw
    whole numbers (log-uniformly where ``log=True``).
    """

    default: float
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    @property
    def problem(self) -> str | None:
        """What is wrong with this Param, or ``None``.

        A bad Param does not raise where it is written: that would abort the plugin's whole
        hook. The optimizer that declares it reports the problem, naming itself and the
        hyperparameter, and the catalog skips only that optimizer.
        """
        values = {"default": self.default, "low": self.low, "high": self.high}
        for what, value in values.items():
            if value is None and what != "default":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                return f"{what} {value!r} is not a finite number"
            if self.integer and value != int(value):
                return f"{what} {value!r} is not a whole number (integer=True)"
        if (self.low is None) != (self.high is None):
            return "give both low and high, or neither"
        if self.low is not None and not self.low <= self.default <= self.high:
            return f"default {self.default} lies outside [{self.low}, {self.high}]"
        if self.log and self.low is not None and self.low <= 0:
            return "a log-scaled range needs low > 0"
        return None

    @property
    def value(self) -> float | int:
        """The default, as the optimizer receives it (``int`` for an integer Param)."""
        return int(self.default) if self.integer else float(self.default)

    def coerce(self, value: Any) -> float | int:
        """``value`` as this hyperparameter takes it, or ``ValueError`` saying why it cannot be."""
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise ValueError(f"expected a number, got {value!r}")
        if not self.integer:
            return float(value)
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"expected a whole number, got {value!r}")
        return int(value)


#: Types a :class:`Choice` option may have: values that JSON, TOML and the command line all spell.
CHOICE_TYPES = (str, bool, int, float)


@dataclass(frozen=True)
class Choice:
    """A categorical hyperparameter: one of a fixed list of options (``Choice(["sgd", "adam"])``).

    ``default`` is the first option unless given. Options are strings, booleans or
    numbers; a grid lists the options to try (``--hp update=sign,scaled``), random and TPE
    search draw among all of them when the suite names none.
    """

    options: tuple[str | bool | int | float, ...]
    default: str | bool | int | float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.options, list | tuple):
            object.__setattr__(self, "options", tuple(self.options))
            if self.default is None and self.options:
                object.__setattr__(self, "default", self.options[0])

    @property
    def problem(self) -> str | None:
        """What is wrong with this Choice, or ``None`` (reported like :attr:`Param.problem`)."""
        if not isinstance(self.options, tuple) or not self.options:
            return f"options must be a non-empty list, got {self.options!r}"
        for option in self.options:
            if not isinstance(option, CHOICE_TYPES) or (isinstance(option, float) and not math.isfinite(option)):
                return f"option {option!r} is not a string, boolean or finite number"
        keys = [_choice_key(option) for option in self.options]
        if len(set(keys)) != len(keys):
            return f"options {list(self.options)!r} repeat a value"
        if _choice_key(self.default) not in keys:
            return f"default {self.default!r} is not one of the options {list(self.options)!r}"
        return None

    @property
    def value(self) -> str | bool | int | float:
        """The default option."""
        return self.default

    def coerce(self, value: Any) -> str | bool | int | float:
        """The option ``value`` names (``"1"`` from a command line names option ``1``), or ``ValueError``."""
        for option in self.options:
            if _choice_key(option) == _choice_key(value):
                return option
        for option in self.options:
            if isinstance(value, str) and not isinstance(option, str) and _spelled(option) == value:
                return option
        raise ValueError(f"expected one of {', '.join(_spelled(o) for o in self.options)}, got {value!r}")


def _choice_key(value: Any) -> tuple[str, Any]:
    """Tell ``True`` from ``1`` and ``1`` from ``"1"``, but not ``1`` from ``1.0``."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", float(value))
    return (type(value).__name__, value)


def _spelled(option: Any) -> str:
    """An option as a command line spells it: ``true``, ``0.5``, ``sign``."""
    if isinstance(option, bool):
        return "true" if option else "false"
    return f"{option:g}" if isinstance(option, float) else str(option)


#: What an optimizer may declare for a hyperparameter (a bare number is a float Param without a range).
Hyperparameter = Param | Choice


def _as_param(value: Param | Choice | float, what: str) -> Param | Choice:
    if isinstance(value, bool) or not isinstance(value, Param | Choice | int | float):
        raise ValueError(f"{what} must be a number, a Param or a Choice, got {value!r}")
    param = value if isinstance(value, Param | Choice) else Param(float(value))
    if param.problem:
        raise ValueError(f"{what}: {param.problem}")
    return param


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer the harness can sweep.

    ``optimizer`` is any callable ``optimizer(params, lr=..., **hyperparams, **fixed)``
    returning a :class:`torch.optim.Optimizer`, typically the class itself, so any
    ``torch.optim.Optimizer`` subclass plugs in as ``OptimizerSpec("name", TheClass)``.

    ``hyperparams`` declares the tunable values besides the learning rate, with defaults
    and search ranges: a :class:`Param` (float, or ``integer=True``), a :class:`Choice`
    (categorical) or a bare number (a float without a range); a sweep axis named like one
    of them (``--momentum``, ``--hp k=5,6``) sets it.
    ``fixed`` holds constructor arguments that are part of the optimizer's identity
    (``nesterov=True``). ``to_kwargs`` turns the flat hyperparameters into constructor
    arguments where the two differ (e.g. ``beta1``/``beta2`` into ``betas``).
    """

    name: str
    optimizer: Callable[..., torch.optim.Optimizer]
    lr: Param | float = Param(1e-3, 1e-5, 1.0, log=True)
    hyperparams: Mapping[str, Param | Choice | float] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    to_kwargs: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    description: str = ""
    #: Conformance checks that do not apply to this optimizer, each with the reason
    #: (``{"param_groups": "one step size shared by all groups, by design"}``): the kit and
    #: ``optbench check-plugin`` show them as skipped with that reason.
    exempt: Mapping[str, str] = field(default_factory=dict)
    #: ``True`` for an optimizer whose ``step`` needs a closure that re-evaluates the loss
    #: (``torch.optim.LBFGS``, sharpness-aware minimisation): the runner and the kit then
    #: call ``step(closure)``, and count every evaluation the closure makes.
    needs_closure: bool = False
    #: The optimizer's batched form, for running a group of its trials as one computation: a callable
    #: ``batched(params, hyperparams)`` returning a :class:`bench_core.batched.BatchedOptimizer` (see there
    #: for the contract). ``None``: its trials run one by one.
    batched: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        # A bad spec does not raise here, inside the plugin's hook, where it would take the plugin's
        # other optimizers down with it: the catalog calls validate() and skips this one alone.
        try:
            self._normalise()
            problem = None
        except ValueError as exc:
            problem = str(exc)
        object.__setattr__(self, "_problem", problem)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the optimizer and the setting at fault, if the spec is invalid."""
        if self._problem:
            raise ValueError(self._problem)

    def _normalise(self) -> None:
        check_name("optimizer", self.name)
        if not callable(self.optimizer):
            raise ValueError(f"optimizer {self.name!r}: 'optimizer' must be callable")
        if self.batched is not None and not callable(self.batched):
            raise ValueError(f"optimizer {self.name!r}: 'batched' must be callable or None")
        lr = _as_param(self.lr, f"optimizer {self.name!r}: lr")
        if not isinstance(lr, Param) or lr.integer:
            raise ValueError(f"optimizer {self.name!r}: lr must be a float Param")
        if lr.default <= 0:
            raise ValueError(f"optimizer {self.name!r}: default lr must be positive")
        if lr.low is None:
            lr = Param(lr.default, min(1e-5, lr.default), max(1.0, lr.default), log=True)
        hyperparams = {}
        for key, value in dict(self.hyperparams).items():
            if not isinstance(key, str) or not key.isidentifier():
                raise ValueError(f"optimizer {self.name!r}: hyperparameter name {key!r} is not a Python identifier")
            if key in RESERVED_NAMES:
                raise ValueError(f"optimizer {self.name!r}: hyperparameter name {key!r} is reserved: it is a suite "
                                 "setting or sweep axis (see bench_core.specs.RESERVED_NAMES)")
            hyperparams[key] = _as_param(value, f"optimizer {self.name!r}: hyperparameter {key!r}")
        clash = set(self.fixed) & ({"lr"} | set(hyperparams))
        if clash:
            raise ValueError(f"optimizer {self.name!r}: {sorted(clash)[0]!r} is both fixed and a hyperparameter")
        object.__setattr__(self, "exempt", _exemptions(self.exempt, f"optimizer {self.name!r}"))
        object.__setattr__(self, "lr", lr)
        object.__setattr__(self, "hyperparams", MappingProxyType(hyperparams))
        object.__setattr__(self, "fixed", MappingProxyType(dict(self.fixed)))

    def defaults(self) -> dict[str, Any]:
        """Every hyperparameter, the learning rate included, at its default value (typed: float, int or option)."""
        self.validate()
        return {"lr": float(self.lr.default)} | {key: param.value for key, param in self.hyperparams.items()}

    def build(
        self, params: Any, hyperparams: Mapping[str, Any] | None = None
    ) -> torch.optim.Optimizer:
        """Construct the optimizer over ``params`` with the given hyperparameters (defaults elsewhere)."""
        values = self.defaults()
        unknown = set(hyperparams or {}) - set(values)
        if unknown:
            raise ValueError(f"optimizer {self.name!r} has no hyperparameter {sorted(unknown)[0]!r}")
        values.update(hyperparams or {})
        kwargs = self.to_kwargs(dict(values)) if self.to_kwargs else values
        return self.optimizer(params, **kwargs, **self.fixed)


def _exemptions(exempt: Any, owner: str) -> Mapping[str, str]:
    """Check an ``exempt`` mapping: check name -> a non-empty reason."""
    if not isinstance(exempt, Mapping) or not all(
            isinstance(name, str) and isinstance(reason, str) and reason.strip() for name, reason in exempt.items()):
        raise ValueError(f"{owner}: exempt must map check names to a reason, got {exempt!r}")
    return MappingProxyType(dict(exempt))


def betas_to_kwargs(values: dict[str, float]) -> dict[str, Any]:
    """``to_kwargs`` for Adam-style optimizers: ``beta1``/``beta2`` become ``betas=(b1, b2)``."""
    values = dict(values)
    values["betas"] = (values.pop("beta1"), values.pop("beta2"))
    return values


@dataclass(frozen=True)
class ScheduleSpec:
    """A learning-rate schedule usable with any optimizer.

    ``multiplier(step, total_steps, **options)`` returns the factor applied to the base
    learning rate before optimizer step ``step`` (0-based) of a run of ``total_steps``;
    a closed form makes schedules easy to test and to plot. The multiplier should raise
    ``ValueError`` for bad option values: suites call it once before a sweep to check them.
    """

    name: str
    multiplier: Callable[..., float]
    options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        check_name("schedule", self.name)
        if not callable(self.multiplier):
            raise ValueError(f"schedule {self.name!r}: 'multiplier' must be callable")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter of a search space, as a search strategy sees it.

    ``choices`` are the values the suite gave (a grid or a list), or the plugin's default
    alone when the suite gave none. ``low``/``high``/``log`` are the range the optimizer
    plugin declared, and ``options`` every option of a categorical one, both set only when
    the suite gave no values: a grid keeps to ``choices``, a sampler draws from the range
    or the options where there are some and from ``choices`` otherwise. ``kind`` is
    ``"float"``, ``"int"`` (whole numbers only) or ``"choice"`` (categorical).
    """

    name: str
    choices: tuple[Any, ...]
    low: float | None = None
    high: float | None = None
    log: bool = False
    kind: str = "float"
    options: tuple[Any, ...] | None = None

    @property
    def has_range(self) -> bool:
        return self.low is not None

    def coerce(self, value: Any) -> Any:
        """A proposed ``value`` as the optimizer takes it, or ``ValueError`` saying why it does not fit."""
        if self.kind == "choice":
            return Choice(self.options or self.choices).coerce(value)
        number = Param(0, integer=self.kind == "int").coerce(value)
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {value!r}")
        return number


#: A search space: hyperparameter name -> its dimension (``lr`` included).
SearchSpace = Mapping[str, Dimension]
#: What an adaptive search has learnt so far: (point, score) pairs, lower scores better,
#: ``math.inf`` for a point that diverged or failed.
History = list[tuple[dict[str, Any], float]]


@dataclass(frozen=True)
class SearchSpec:
    """A search strategy: proposes hyperparameter points for one optimizer on one problem.

    ``propose(space, count, seed, history)`` returns a list of points (dicts over the
    space's names). A non-adaptive strategy (grid, random) is called once, with the
    suite's trial budget as ``count`` (a grid may ignore it) and an empty history. An
    adaptive one (``adaptive=True``, e.g. TPE) is called in rounds of at most ``count``
    points, each time with the scores of every earlier point; optbench runs a round,
    stores it, and asks again until the budget is spent. Proposals must depend only on
    the arguments, so that a resumed sweep replays the same rounds and finds them stored.
    """

    name: str
    propose: Callable[[SearchSpace, int, int, History], list[dict[str, Any]]]
    description: str = ""
    adaptive: bool = False

    def __post_init__(self) -> None:
        check_name("search strategy", self.name)
        if not callable(self.propose):
            raise ValueError(f"search strategy {self.name!r}: 'propose' must be callable")


@dataclass(frozen=True)
class Target:
    """What "solved" means for a problem: ``metric`` reaching ``value``.

    Reached when the metric is at or below ``value``, or at or above it for a metric the
    problem maximizes (see :attr:`Problem.maximize`).
    """

    metric: str
    value: float


@dataclass(frozen=True)
class Budget:
    """How long a trial trains: ``amount`` optimizer steps, epochs, training samples, or seconds of training.

    A samples budget gives every batch size the same amount of data (``amount / batch_size``
    steps, rounded up), the fair unit for comparing batch sizes. A seconds budget counts
    training time only (evaluations excluded) and is the practitioner's unit, but it ties
    the result to the machine: the same trial does more steps on a faster device.
    """

    unit: str
    amount: int

    def __post_init__(self) -> None:
        if self.unit not in BUDGET_UNITS:
            raise ValueError(f"budget unit {self.unit!r} is not one of {', '.join(BUDGET_UNITS)}")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount < 1:
            raise ValueError(f"budget of {self.amount!r} {self.unit} is not a positive integer")


def default_metric_range(name: str) -> tuple[float, float]:
    """The range a metric's values lie in, judged by its name alone.

    Names ending in ``accuracy``: ``(0, 1)``; ending in ``loss`` or ``suboptimality``, or
    starting with ``distance``: ``(0, inf)``; any other name: ``(-inf, inf)``. A problem
    whose metric breaks the rule (a loss that can be negative) declares its range in
    :attr:`Problem.metric_ranges`.
    """
    if name.endswith("accuracy"):
        return (0.0, 1.0)
    if name.endswith(("loss", "suboptimality")) or name.startswith("distance"):
        return (0.0, math.inf)
    return (-math.inf, math.inf)


class Problem(ABC):
    """One built test problem: data on a device, a model factory, a loss and metrics.

    The harness builds a problem once per process, option set and device, and reuses it
    for many trials, so keep per-trial state (the model, random draws) out of it. Every
    random draw during training goes through the ``generator`` handed to :meth:`batches`,
    and model initialisation through torch's global RNG, which the harness seeds with the
    trial seed right before :meth:`init_model`. That makes a trial reproducible from its
    seed alone.
    """

    #: Samples in one epoch; ``None`` for an endless stream (analytic functions).
    train_size: int | None = None
    #: ``False`` when the gradient does not depend on the batch (batch size is then moot).
    stochastic: bool = True
    #: What "solved" means; ``None`` when the problem has no target.
    target: Target | None = None
    #: Metric names where higher is better (accuracies); all others are minimized.
    maximize: frozenset[str] = frozenset()
    #: Known range ``(low, high)`` of a metric, where it differs from the default by name
    #: (:func:`default_metric_range`): e.g. ``{"train_loss": (f_star, math.inf)}`` for a loss
    #: with a known, possibly negative, minimum. Reports clip confidence intervals to it.
    metric_ranges: Mapping[str, tuple[float, float]] = MappingProxyType({})

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)

    @abstractmethod
    def init_model(self) -> torch.nn.Module:
        """A freshly initialised model whose parameters are optimized (moved to the device by the harness)."""

    @abstractmethod
    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
        """An endless iterator of training batches of ``batch_size`` samples on :attr:`device`."""

    @abstractmethod
    def loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        """The scalar training loss of ``model`` on ``batch``, to be backpropagated."""

    @abstractmethod
    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Metrics of ``model`` on whole splits; must include ``train_loss``.

        Name metrics ``<split>_<metric>`` with split ``train``, ``valid`` or ``test``:
        reports select configurations on ``valid_*`` and report ``test_*``.
        """

    #: Whether trials of this problem may run as a group, K at a time along a leading trial dimension
    #: (:mod:`bench_core.vectorized`). Declare it only if :meth:`loss` can be batched by ``torch.func.vmap``
    #: (no random draws, no buffers updated, no ``.item()``) and :meth:`batches` draws nothing but from its
    #: generator; the default forms of the three ``stacked_*`` methods below then work unchanged.
    vectorizable: bool = False

    def stacked_loss(self, model: torch.nn.Module, params: Mapping[str, torch.Tensor], batch: Any) -> torch.Tensor:
        """Each trial's training loss, shape ``(K,)``, for a group of K trials (see :attr:`vectorizable`).

        ``params`` maps each of ``model``'s parameter names to a tensor of shape ``(K, *shape)`` (row k:
        trial k's values); ``batch`` is K trials' batches stacked along a first dimension
        (:meth:`stacked_batches`). Row k must equal ``loss(model_k, batch_k)``. The default maps
        :meth:`loss` over the rows with ``torch.func.vmap``; override it with a direct form where one is
        cheaper (the analytic problems evaluate ``f`` on a stack of points).
        """
        from bench_core.vectorized import vmapped_loss

        return vmapped_loss(self, model, params, batch)

    def stacked_batches(self, batch_size: int, generators: Sequence[torch.Generator]) -> Iterator[Any]:
        """Endless batches of K trials, stacked along a first dimension: row k is what :meth:`batches` with
        ``generators[k]`` yields. The default draws each trial's batch and stacks them; override it where
        one draw serves all (a fixed batch) or one gather is cheaper
        (:func:`bench_core.batching.stacked_shuffled_batches`).
        """
        from bench_core.vectorized import stacked_batches_of

        return stacked_batches_of(self, batch_size, generators)

    def stacked_evaluate(self, model: torch.nn.Module, params: Mapping[str, torch.Tensor]) -> list[dict[str, float]]:
        """:meth:`evaluate` of each of K trials, their parameters stacked as in :meth:`stacked_loss`.

        The default copies each row into ``model`` and calls :meth:`evaluate`; override it where the
        metrics of a stack can be computed at once.
        """
        from bench_core.vectorized import evaluate_rows

        return evaluate_rows(self, model, params)

    def metric_range(self, name: str) -> tuple[float, float]:
        """The range ``(low, high)`` of metric ``name``: as declared in :attr:`metric_ranges`, else by its name."""
        if name in self.metric_ranges:
            low, high = self.metric_ranges[name]
            return (float(low), float(high))
        return default_metric_range(name)

    def surface(self, points: torch.Tensor) -> torch.Tensor | None:
        """The objective at a stack of 2-D points, for the contours of the report's trajectory plots.

        Optional capability of problems over two parameters whose ``evaluate`` reports the
        point as ``point_x`` and ``point_y``: ``points`` has shape ``(..., 2)`` (float64, on
        the CPU) and the answer shape ``(...)``. The default, ``None``, draws the paths
        without contours.
        """
        return None

    def known_minimisers(self) -> torch.Tensor | None:
        """Known global minimisers, shape ``(k, 2)``, starred in trajectory plots; ``None`` if unknown."""
        return None

    def split_inputs(self) -> Mapping[str, Any] | None:
        """The inputs of each data split, so the conformance kit can prove no sample is in two splits.

        Optional capability of problems with held-out data: return ``{"train": X, "valid": X,
        "test": X}`` (the splits the problem has), each value a tensor or NumPy array, or a
        tuple of them, whose first dimension indexes samples. Inputs only, not labels: the
        same input in two splits leaks whatever its label. The kit's ``disjoint_splits`` check
        hashes each sample's row (the bytes of its row in every array of the tuple) and fails
        when two splits share one. The default, ``None``, means the problem has no splits (an
        analytic function, a stream): the check is then skipped as not applicable.

        Named ``split_inputs``, not ``splits``, because :class:`~bench_core.ClassificationProblem`
        and others keep their data in a ``splits`` attribute; the kit still reads such a
        ``splits`` dict of ``(X, y)`` pairs from a problem that does not override this method.
        """
        return None


@dataclass(frozen=True)
class ProblemSpec:
    """A problem the harness can run: how to build it, its options and default budget.

    ``build(device=..., **options)`` returns a :class:`Problem`. ``options`` lists every
    option with its default; a suite may override any of them (``[problem.NAME.options]``).
    """

    name: str
    build: Callable[..., Problem]
    options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    batch_size: int = 32
    budget: Budget = Budget("steps", 500)
    #: Conformance checks that do not apply to this problem, each with the reason (see OptimizerSpec.exempt).
    exempt: Mapping[str, str] = field(default_factory=dict)
    #: For a problem that reads data files: a function returning where they were found, or raising
    #: ``ValueError`` with a one-line message saying what is missing and how to get it. ``optbench list``
    #: shows the answer for every such problem, without building it.
    data: Callable[[], str] | None = None

    def __post_init__(self) -> None:
        check_name("problem", self.name)
        object.__setattr__(self, "exempt", _exemptions(self.exempt, f"problem {self.name!r}"))
        if not callable(self.build):
            raise ValueError(f"problem {self.name!r}: 'build' must be callable")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"problem {self.name!r}: default batch_size must be a positive integer")
        if not isinstance(self.budget, Budget):
            raise ValueError(f"problem {self.name!r}: budget must be a Budget")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
