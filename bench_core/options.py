"""Validation of problem options, public so plugins give the same one-line errors as the built-ins.

A builder raises ``ValueError`` for a bad option; suites turn it into one line naming the
suite file, the problem and the option (``noise=-1 is invalid: expected a finite number >= 0``).
"""

from __future__ import annotations

import math

__all__ = ["MAX_ELEMENTS", "check_elements", "check_integer", "check_number"]

#: Most numbers one problem option set may ask a problem to hold (a data matrix, a layer's weights): 10**8
#: float32 values are 400 MB. Building a problem validates its options, a dry run included, so a typo of a few
#: zeros must be refused here, not found out by an allocation of tens of gigabytes.
MAX_ELEMENTS = 10**8


def check_number(name: str, value: object, minimum: float, *, strict: bool = False) -> float:
    """``value`` as a float if it is a finite number >= ``minimum`` (> with ``strict``), else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not (value > minimum if strict else value >= minimum):
        raise ValueError(f"{name}={value!r} is invalid: expected a finite number {'>' if strict else '>='} "
                         f"{minimum:g}")
    return float(value)


def check_integer(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int if it is a whole number >= ``minimum`` (and <= ``maximum``), else a ValueError naming it.

    Give ``maximum`` for a size (a dimension, a width, a number of rows): the problem is
    built to validate its options, so an unbounded size is an unbounded allocation.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value != int(value) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid: expected an integer >= {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}={value!r} is invalid: expected an integer <= {maximum}")
    return int(value)


def check_elements(what: str, count: int, maximum: int = MAX_ELEMENTS) -> None:
    """A ValueError if ``what`` (``"width=4096, depth=64"``) would make a problem hold more than ``maximum``
    numbers: each option may be within its bounds while their product is not."""
    if count > maximum:
        raise ValueError(f"{what} is invalid: {count:,} numbers to hold, more than {maximum:,}")
