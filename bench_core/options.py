"""Validation of numbers: problem and schedule options, suite values and flags, with one message format.

Public, so plugins give the same one-line errors as the built-ins. A builder raises
``ValueError`` for a bad option; suites turn it into one line naming the suite file, the
problem and the option (``noise=-1 is invalid: expected a finite number >= 0``).
"""

from __future__ import annotations

import math

__all__ = ["MAX_ELEMENTS", "check_elements", "check_integer", "check_number"]

#: Most numbers one problem option set may ask a problem to hold (a data matrix, a layer's weights): 10**8
#: float32 values are 400 MB. Building a problem validates its options, a dry run included, so a typo of a few
#: zeros must be refused here, not found out by an allocation of tens of gigabytes.
MAX_ELEMENTS = 10**8


def check_number(name: str, value: object, minimum: float = -math.inf, maximum: float = math.inf, *,
                 strict: bool = False, strict_max: bool = False) -> float:
    """``value`` as a float if it is a finite number in the interval, else a ValueError naming it.

    The interval runs from ``minimum`` (excluded with ``strict``) to ``maximum`` (excluded with
    ``strict_max``). The one number check of optbench: problem options, schedule options, suite
    values and command-line flags all say ``name=value is invalid: expected ...`` the same way.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value) \
            or not (value > minimum if strict else value >= minimum) \
            or not (value < maximum if strict_max else value <= maximum):
        interval = _interval(minimum, maximum, strict, strict_max)
        raise ValueError(f"{name}={_short(value)} is invalid: expected a finite number{' ' if interval else ''}"
                         f"{interval}")
    return float(value)


def check_integer(name: str, value: object, minimum: int, maximum: int | None = None, *,
                  exact: bool = False) -> int:
    """``value`` as an int if it is a whole number >= ``minimum`` (and <= ``maximum``), else a ValueError naming it.

    Give ``maximum`` for a size (a dimension, a width, a number of rows): the problem is
    built to validate its options, so an unbounded size is an unbounded allocation. With
    ``exact`` a float is refused even when whole (``seeds = 1.0`` in a suite is a typo more often than not).
    """
    if isinstance(value, bool) or not isinstance(value, int if exact else int | float) or not _finite(value) \
            or value != int(value) or value < minimum:
        raise ValueError(f"{name}={_short(value)} is invalid: expected an integer >= {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}={_short(value)} is invalid: expected an integer <= {maximum}")
    return int(value)


def check_elements(what: str, count: int, maximum: int = MAX_ELEMENTS) -> None:
    """A ValueError if ``what`` (``"width=4096, depth=64"``) would make a problem hold more than ``maximum``
    numbers: each option may be within its bounds while their product is not."""
    if count > maximum:
        raise ValueError(f"{what} is invalid: {count:,} numbers to hold, more than {maximum:,}")


def _finite(value: int | float) -> bool:
    """Whether a number is finite and within float range (an int of 400 digits is neither)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _interval(low: float, high: float, open_low: bool, open_high: bool) -> str:
    if (low, high) == (-math.inf, math.inf):
        return ""
    if high == math.inf:
        return f"{'>' if open_low else '>='} {low:g}"
    if low == -math.inf:
        return f"{'<' if open_high else '<='} {high:g}"
    return f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"


def _short(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, so a message about a huge or deeply nested value stays short."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # too deep, or an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."
