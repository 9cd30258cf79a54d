"""Built-in learning-rate schedules, each a closed-form multiplier of the base learning rate.

``multiplier(step, total_steps, **options)`` is the factor for 0-based optimizer step
``step`` of ``total_steps``. The forms are written in ``step / total_steps``, so a
schedule means the same thing at any budget and reaches its ``final`` value at
``step == total_steps``, just after the last step. Option values come from suite files,
so each is checked and a bad one raises ``ValueError`` naming the option.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

from bench_core import ScheduleSpec, check_number, hookimpl

#: The plugin contract this module is written for (see bench_core.hookspecs).
OPTBENCH_CONTRACT = 1


def _number(name: str, value: object, low: float, high: float, *, open_low: bool = False,
            open_high: bool = False) -> float:
    """``value`` as a float if it lies in the given interval, else a ValueError naming the option."""
    return check_number(f"schedule option {name}", value, low, high, strict=open_low, strict_max=open_high)


def _cosine(progress: float, final: float) -> float:
    """Half a cosine from 1 at ``progress`` 0 down to ``final`` at ``progress`` 1."""
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def constant(step: int, total_steps: int) -> float:
    """The base learning rate throughout."""
    return 1.0


def step_decay(step: int, total_steps: int, gamma: float = 0.1,
               milestones: Sequence[float] = (0.5, 0.75)) -> float:
    """``gamma`` to the power of the number of milestones (fractions of the run) already reached."""
    gamma = _number("gamma", gamma, 0.0, math.inf, open_low=True, open_high=True)
    if isinstance(milestones, str) or not isinstance(milestones, Sequence):
        raise ValueError(f"schedule option 'milestones' must be a list of fractions, got {milestones!r}")
    fractions = [_number("milestones", m, 0.0, 1.0) for m in milestones]
    # step / total_steps, not step >= m * total_steps: 0.07 * 100 is 7.000000000000001.
    return gamma ** sum(step / total_steps >= m for m in fractions)


def exponential(step: int, total_steps: int, final: float = 0.01) -> float:
    """Geometric decay from 1 to ``final``: the same factor lost every step."""
    final = _number("final", final, 0.0, 1.0, open_low=True)
    return final ** (step / total_steps)


def cosine(step: int, total_steps: int, final: float = 0.0) -> float:
    """Half a cosine from 1 to ``final`` (Loshchilov & Hutter's SGDR without restarts)."""
    final = _number("final", final, 0.0, 1.0)
    return _cosine(step / total_steps, final)


def warmup_cosine(step: int, total_steps: int, warmup: float = 0.05, final: float = 0.0) -> float:
    """A linear ramp over the first ``warmup`` fraction of the run, then a cosine to ``final``.

    The ramp is ``(step + 1) / (w + 1)`` with ``w = warmup * total_steps``: it reaches 1
    exactly at step ``w``, where the cosine starts, and never spends a step at lr 0.
    """
    warmup = _number("warmup", warmup, 0.0, 1.0, open_high=True)
    final = _number("final", final, 0.0, 1.0)
    ramp_steps = warmup * total_steps
    if step < ramp_steps:
        return (step + 1) / (ramp_steps + 1)
    return _cosine((step - ramp_steps) / (total_steps - ramp_steps), final)


def one_cycle(step: int, total_steps: int, peak: float = 0.3, initial: float = 0.04, final: float = 4e-6) -> float:
    """Smith & Topin's one-cycle policy: up from ``initial`` to 1 by the ``peak`` fraction, then down to ``final``.

    Both halves are cosine-shaped, as in ``torch.optim.lr_scheduler.OneCycleLR``, whose
    defaults (``div_factor=25``, ``final_div_factor=1e4``) give ``initial = 1/25`` and
    ``final = 1/(25 * 1e4)``; the base learning rate is the cycle's maximum.
    """
    peak = _number("peak", peak, 0.0, 1.0, open_low=True, open_high=True)
    initial = _number("initial", initial, 0.0, 1.0)
    final = _number("final", final, 0.0, 1.0)
    progress = step / total_steps
    if progress < peak:
        return initial + (1.0 - initial) * 0.5 * (1.0 - math.cos(math.pi * progress / peak))
    return _cosine((progress - peak) / (1.0 - peak), final)


def lr_range(step: int, total_steps: int, start: float = 1e-6) -> float:
    """Exponential growth from ``start`` towards 1: Smith's learning-rate range test (``optbench lr-range``).

    The base learning rate is the top of the range; the factor grows by the same ratio
    every step, so the run spends as many steps in each decade of learning rate.
    """
    start = _number("start", start, 0.0, 1.0, open_low=True)
    return start ** (1.0 - step / total_steps)


def _spec(name: str, multiplier: Callable[..., float], description: str) -> ScheduleSpec:
    """A spec whose options and defaults are read off the keyword arguments of ``multiplier``."""
    parameters = list(inspect.signature(multiplier).parameters.values())[2:]
    return ScheduleSpec(name, multiplier, {p.name: p.default for p in parameters}, description)


@hookimpl
def optbench_schedules() -> list[ScheduleSpec]:
    """The usual schedules, with the defaults most papers use."""
    return [
        _spec("constant", constant, "The base learning rate at every step."),
        _spec("step", step_decay, "Multiply by gamma at each milestone (fractions of the run)."),
        _spec("exponential", exponential, "Geometric decay from 1 to final over the run."),
        _spec("cosine", cosine, "Cosine decay from 1 to final over the run."),
        _spec("warmup_cosine", warmup_cosine, "Linear warmup over a warmup fraction of the run, then cosine to final."),
        _spec("lr_range", lr_range, "Exponential growth from start to 1: the learning-rate range test."),
        _spec("one_cycle", one_cycle, "Cosine up from initial to 1 at the peak fraction, then down to final."),
    ]
