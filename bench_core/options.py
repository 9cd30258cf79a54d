"""Validation of problem options, public so plugins give the same one-line errors as the built-ins.

A builder raises ``ValueError`` for a bad option; suites turn it into one line naming the
suite file, the problem and the option (``noise=-1 is invalid: expected a finite number >= 0``).
"""

from __future__ import annotations

import math

__all__ = ["check_integer", "check_number"]


def check_number(name: str, value: object, minimum: float, *, strict: bool = False) -> float:
    """``value`` as a float if it is a finite number >= ``minimum`` (> with ``strict``), else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not (value > minimum if strict else value >= minimum):
        raise ValueError(f"{name}={value!r} is invalid: expected a finite number {'>' if strict else '>='} "
                         f"{minimum:g}")
    return float(value)


def check_integer(name: str, value: object, minimum: int) -> int:
    """``value`` as an int if it is a whole number >= ``minimum``, else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value != int(value) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid: expected an integer >= {minimum}")
    return int(value)
