"""Per-trial time limits: a trial that runs too long is stopped and stored as ``timeout``.

A week-long sweep must not hang for ever on one trial (a plugin stuck in a loop, waiting on a
lock, or simply far slower than planned). Each trial runs under a limit in seconds, counted
from its start once its problem is built (a data set loads once per worker, not per trial):

- ``--trial-timeout SECONDS`` (suite setting ``trial_timeout``) sets it;
- ``auto`` (the default) derives a generous one from the trial's budget, meant to stop hangs,
  not to judge speed: :func:`derived_limit`;
- ``none`` (or ``0``) runs without one.

Two mechanisms stop a trial. The runner checks the clock at every step, so a trial that keeps
stepping ends at the first step past the limit, on every executor. Where the trial runs in a
process's main thread (in-process runs and pool workers), a ``SIGALRM`` timer also raises
:class:`TrialTimeout` wherever the trial is, which stops a plugin sleeping, waiting or looping
in Python inside a single step. Neither can stop code stuck inside a C extension that never
returns to Python (Ctrl-C still ends the sweep); Dask runs trials in worker threads, where only
the per-step check applies.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

#: ``trial_timeout`` value asking for a limit derived from each trial's budget (the default).
AUTO = "auto"
#: Values that turn the limit off.
OFF = ("none", "off")
#: The derived limit: this much to start with ...
BASE_SECONDS = 60.0
#: ... plus this much per optimizer step of the budget ...
SECONDS_PER_STEP = 2.0
#: ... plus this much per evaluation point (a CNN evaluates three 10,000-image splits in ~30 s on one core) ...
SECONDS_PER_EVALUATION = 60.0
#: ... or, under a budget in seconds, this many times the budget (evaluations come on top of training time).
SECONDS_BUDGET_FACTOR = 3.0
#: The largest explicit limit accepted: a year.
MAX_SECONDS = 365 * 24 * 3600.0

TimeLimit = float | str | None


class TrialTimeout(BaseException):
    """Raised inside a trial when its time limit has passed.

    A ``BaseException``, so that a plugin's ``except Exception`` cannot swallow it.
    """


def parse_time_limit(value: Any, where: str) -> TimeLimit:
    """A ``trial_timeout`` value as seconds (float), :data:`AUTO`, or ``None`` for no limit.

    :raises ValueError: one line naming ``where`` (e.g. ``--trial-timeout``) and the value.
    """
    if value is None:
        return None
    given = value
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        if text in OFF:
            return None
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{where} {value!r}: expected seconds, 'auto' or 'none'") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where} {value!r}: expected seconds, 'auto' or 'none'")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_SECONDS:
        raise ValueError(f"{where} {given!r}: expected from 0 (no limit) to {MAX_SECONDS:g} seconds")
    return seconds or None


def derived_limit(steps: int | None, evaluation_points: int, budget_seconds: float | None) -> float:
    """The ``auto`` limit of a trial with ``steps`` optimizer steps (``None`` under a budget in seconds).

    Generous on purpose: two seconds a step is slower than any built-in problem runs on one CPU core.
    """
    if steps is None:
        return BASE_SECONDS + SECONDS_BUDGET_FACTOR * float(budget_seconds or 0.0)
    return BASE_SECONDS + SECONDS_PER_STEP * steps + SECONDS_PER_EVALUATION * evaluation_points


def describe(limit: TimeLimit) -> str:
    """How a limit reads in settings and messages."""
    if limit is None:
        return "none"
    return limit if isinstance(limit, str) else f"{limit:g} s"


@contextlib.contextmanager
def alarm(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TrialTimeout` in this thread after ``seconds``, unless the block ends first.

    Only in a process's main thread (signals are delivered there), and only where ``setitimer``
    exists; elsewhere it does nothing and the runner's per-step check is the only stop.
    """
    if seconds is None or threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TrialTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
