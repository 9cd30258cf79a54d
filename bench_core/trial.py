"""The data model: one trial's configuration and its result.

A :class:`TrialConfig` is plain data (it pickles to worker processes and serialises to
JSON); its id is a hash of its canonical JSON, so the same configuration always maps to
the same stored row and a re-run skips it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from bench_core.specs import Budget

STATUSES = ("ok", "diverged", "error")


@dataclass(frozen=True)
class TrialConfig:
    """One run: problem x optimizer x hyperparameters x batch size x schedule x seed x budget x device.

    ``hyperparams`` holds every hyperparameter of the optimizer (learning rate included)
    with defaults filled in, so that naming a default explicitly yields the same trial.
    ``batch_size`` is ``None`` for deterministic problems, where it has no effect.
    ``stop_at_target`` ends the trial at the first evaluation that meets the problem's
    target; it is left out of the identity when off, so older stored trials keep their ids.
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
    metric over all evaluations. The ``*_to_target`` fields say when the problem's target
    was first met at an evaluation point (``None``: never). ``curve`` is the learning
    curve: one dict per evaluation with ``step``, ``samples``, ``seconds`` (training time
    so far), ``lr`` and every metric.
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

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")
