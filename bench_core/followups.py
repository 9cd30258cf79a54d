"""Follow-ups: trials that can only be named once earlier trials have results.

An adaptive search (TPE) proposes its next round from the scores of the last ones; a
batch-size transfer re-runs the best setting found at one batch size at others. Neither
can be expanded up front, so a :class:`~bench_core.suite.Sweep` carries them as
follow-ups and the driver replays each (:meth:`FollowUp.replay`) after every round for the
trials it names next, until none has any left.

A follow-up is pure: it replays its decisions from the stored scores every time it is
asked. That is what makes a follow-up resumable: after an interruption, the replay
arrives at the same rounds, finds the finished ones stored and names only the rest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from bench_core.configuration import best_setting
from bench_core.errors import UserError
from bench_core.specs import History, SearchSpace, SearchSpec
from bench_core.trial import TrialConfig

#: Scores of trials, lower is better: ``math.inf`` for diverged or failed, ``None`` for not run yet.
Scores = Callable[[Sequence[TrialConfig]], list[float | None]]
#: Points an adaptive search proposes per round: enough to keep a few workers busy, few
#: enough that later rounds learn from earlier ones.
ROUND_SIZE = 4


def proposals(spec: SearchSpec, space: SearchSpace, count: int, seed: int, history: History) -> list[dict[str, Any]]:
    """``spec.propose(...)``, checked: a strategy that raises or returns malformed points is named in a UserError."""
    try:
        points = spec.propose(space, count, seed, list(history))
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"search strategy {spec.name!r} failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(points, list):
        raise UserError(f"search strategy {spec.name!r} returned {type(points).__name__}, not a list of points")
    checked = []
    for point in points:
        if not isinstance(point, dict) or set(point) != set(space):
            raise UserError(f"search strategy {spec.name!r} proposed {point!r}: a point needs exactly the keys "
                            f"{sorted(space)}")
        try:
            point = {name: space[name].coerce(value) for name, value in point.items()}
        except ValueError as exc:
            raise UserError(f"search strategy {spec.name!r} proposed {point!r}: {exc}") from None
        if point["lr"] <= 0:
            raise UserError(f"search strategy {spec.name!r} proposed lr={point['lr']!r}: not positive")
        checked.append(point)
    return checked


class FollowUp(ABC):
    """Trials named from the results of earlier ones."""

    #: Trials this follow-up runs in all, once complete (for the trial count and the progress bar).
    planned: int = 0

    @abstractmethod
    def replay(self, scores: Scores) -> tuple[list[TrialConfig], list[TrialConfig]]:
        """``(done, pending)``: the trials with scores so far, and those to run next (none: complete)."""

    def complete(self, scores: Scores) -> list[TrialConfig] | None:
        """Every trial of the follow-up once all have scores, else ``None``."""
        done, pending = self.replay(scores)
        return None if pending else done


class AdaptiveSearch(FollowUp):
    """An adaptive search for one optimizer on one problem variant, batch size and schedule.

    ``make(point)`` turns a proposed point into its trials (one per seed); a point's score
    is the mean over its seeds.
    """

    def __init__(self, spec: SearchSpec, space: SearchSpace, count: int, seed: int,
                 make: Callable[[dict[str, float]], list[TrialConfig]], seeds: int) -> None:
        self.spec, self.space, self.count, self.seed, self.make = spec, space, count, seed, make
        self.planned = count * seeds

    def replay(self, scores: Scores) -> tuple[list[TrialConfig], list[TrialConfig]]:
        history: History = []
        done: list[TrialConfig] = []
        while len(history) < self.count:
            points = proposals(self.spec, self.space, min(ROUND_SIZE, self.count - len(history)), self.seed,
                               history)
            if not points:
                break  # the strategy has nothing more to propose
            trials = [self.make(point) for point in points]
            flat = [config for group in trials for config in group]
            values = scores(flat)
            missing = [config for config, value in zip(flat, values, strict=True) if value is None]
            if missing:  # this round is under way: its stored trials are done, the rest pending
                return done + [config for config, value in zip(flat, values, strict=True) if value is not None], missing
            position = 0
            for point, group in zip(points, trials, strict=True):
                group_scores = values[position:position + len(group)]
                position += len(group)
                history.append((point, sum(group_scores) / len(group_scores)))
            done.extend(flat)
        return done, []


class BatchSizeTransfer(FollowUp):
    """Re-run the best setting found at the tuning batch size at other batch sizes.

    ``source(scores)`` gives the tuning trials once they all have scores. The best
    configuration (by :func:`bench_core.configuration.best_setting`, the rule reports select
    with) is re-run by ``make(best)``,
    which applies the learning-rate scaling rule of the suite.
    """

    def __init__(self, source: Callable[[Scores], list[TrialConfig] | None],
                 make: Callable[[TrialConfig], list[TrialConfig]], planned: int) -> None:
        self.source, self.make, self.planned = source, make, planned

    def replay(self, scores: Scores) -> tuple[list[TrialConfig], list[TrialConfig]]:
        tuning = self.source(scores)
        values = scores(tuning or [])
        if not tuning or None in values:
            return [], []  # the tuning trials are still to run (they are pending elsewhere), or there are none
        best = best_setting(tuning, values)
        if best is None:
            return [], []  # every tuning setting failed: nothing worth transferring
        trials = self.make(best)
        values = scores(trials)
        return ([c for c, v in zip(trials, values, strict=True) if v is not None],
                [c for c, v in zip(trials, values, strict=True) if v is None])
