"""The data model: one trial's configuration and its result.

A :class:`TrialConfig` is plain data (it pickles to worker processes and serialises to
JSON); its id is a hash of its canonical JSON, so the same configuration always maps to
the same stored row and a re-run skips it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from bench_core.specs import Budget


class Status(StrEnum):
    """How a trial ended: a result (``ok``, ``diverged``), a failure (``error``), or stopped at its time limit
    (``timeout``: no final metrics; see :mod:`bench_core.time_limits`). The one status type of optbench: stored,
    compared and counted as these members, which are also the plain strings the store and the frames hold."""

    OK = "ok"
    DIVERGED = "diverged"
    ERROR = "error"
    TIMEOUT = "timeout"


#: Every status, in the order reports count them.
STATUSES = tuple(Status)
#: The statuses that are results, served from the store on a re-run; an ``error`` is retried, a ``timeout`` retried
#: under a longer limit (:func:`bench_core.driver.timeouts_to_keep`).
DONE_STATUSES = (Status.OK, Status.DIVERGED)


@dataclass(frozen=True)
class TrialConfig:
    """One run: problem x optimizer x hyperparameters x batch size x schedule x seed x budget x device.

    ``hyperparams`` holds every hyperparameter of the optimizer (learning rate included)
    with defaults filled in, so that naming a default explicitly yields the same trial.
    ``batch_size`` is ``None`` for deterministic problems, where it has no effect.
    ``stop_at_target`` ends the trial as soon as the runner sees the problem's target met
    (at an evaluation, or at the next loss read where the target is checked every step,
    after a last evaluation there); it is left out of the identity when off, so older stored trials keep their ids.
    """

    problem: str
    optimizer: str
    hyperparams: dict[str, float]
    budget: Budget
    batch_size: int | None = None
    schedule: str = "constant"
    schedule_options: dict[str, Any] = field(default_factory=dict)
    problem_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    evals: int = 20
    stop_at_target: bool = False

    @property
    def lr(self) -> float:
        return self.hyperparams["lr"]

    def canonical(self) -> dict[str, Any]:
        """A JSON-ready dict with sorted keys: the trial's identity."""
        data = asdict(self)
        data["budget"] = {"unit": self.budget.unit, "amount": self.budget.amount}
        if not self.stop_at_target:
            del data["stop_at_target"]
        return json.loads(json.dumps(data, sort_keys=True))

    def to_json(self) -> str:
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))

    @property
    def trial_id(self) -> str:
        """A stable 16-hex-digit hash of the canonical configuration."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, text: str) -> TrialConfig:
        data = json.loads(text)
        data["budget"] = Budget(**data["budget"])
        return cls(**data)


@dataclass
class TrialResult:
    """What one trial produced.

    ``final`` holds the metrics at the last evaluation, ``best`` the best value of each
    metric over all evaluations. ``curve`` is the learning curve: one dict per evaluation
    with ``step``, ``samples``, ``seconds`` (training time so far), ``lr`` and every metric.

    The ``*_to_target`` fields say when the problem's target was first met (``None``:
    never). ``target_every`` is how finely that was checked, in steps: 1 where the runner
    checks the target at every step (a deterministic problem whose target metric is
    ``train_loss``: step k counts when the loss at the point reached after k updates meets
    it, and ``seconds_to_target`` is then the training time up to the read that saw it, at
    most :data:`bench_core.runner.DIVERGENCE_CHECK_EVERY` steps later); elsewhere the widest
    gap between consecutive evaluation points (the recorded step is the first evaluation
    point that met it, up to ``target_every - 1`` steps after the metric first did);
    ``None`` under a budget in seconds or for a problem without a target.

    ``reason`` says, in one line, why a trial is ``diverged`` (``None`` otherwise), e.g.
    ``"non-finite loss (nan) at step 40"``, ``"loss 1.2e+05 above 10000 x max(1, |initial
    loss|) at step 120"`` (both: the early stop, "at step N" meaning detected after N steps,
    the trial's ``steps``) or ``"final loss 1110x its initial loss"`` (the end-of-training
    rule); see :mod:`bench_core.runner`.

    ``metric_ranges`` holds the known range ``[low, high]`` of each metric in ``final``
    whose range is not the whole real line (``Problem.metric_range``; bounds may be
    infinite), e.g. ``{"valid_accuracy": [0.0, 1.0], "train_loss": [-78.33, inf]}``.

    ``gradient_evaluations`` counts the forward/backward passes training made: ``steps``
    for an ordinary optimizer, more for one that re-evaluates the loss through a closure
    (L-BFGS); ``None`` for an errored trial (the count dies with the exception).
    ``fingerprint`` records what code produced the trial (see :mod:`bench_core.fingerprint`).
    ``time_limit`` is the limit in seconds the trial ran under (``None``: none); a ``timeout`` trial
    keeps its ``steps``, ``samples`` and ``curve`` up to where it was stopped, and ``reason`` says so.
    ``group_size`` is how many trials ran as one computation with this one (:mod:`bench_core.vectorized`; 1:
    alone); its timing fields are then its share of the group's time.
    """

    trial_id: str
    status: str
    steps: int = 0
    samples: int = 0
    final: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)
    steps_to_target: int | None = None
    samples_to_target: int | None = None
    seconds_to_target: float | None = None
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    samples_per_second: float | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None
    device: str = ""
    target_every: int | None = None
    reason: str | None = None
    metric_ranges: dict[str, list[float]] = field(default_factory=dict)
    gradient_evaluations: int | None = None
    gradient_evaluations_to_target: int | None = None
    fingerprint: dict[str, str] = field(default_factory=dict)
    time_limit: float | None = None
    group_size: int = 1

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")
        self.status = Status(self.status)  # a plain string is accepted and kept as its member
