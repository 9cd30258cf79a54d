"""Value and grid syntax, shared by suite files and the command line.

A suite file and a flag say the same things in two spellings: one value or a list, a grid
table (``{log = [1e-4, 1e-1], num = 4}``) or a grid string (``log:1e-4:1e-1:4``). This module
turns both into checked Python values, so a number, integer or name error reads the same
wherever it was given, and expansion (:mod:`bench_core.suite`) works with plain lists. Every
number check delegates to :func:`bench_core.options.check_number` or
:func:`bench_core.options.check_integer`, the project's single number validator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bench_core.errors import UserError
from bench_core.options import check_integer, check_number
from bench_core.specs import Choice, Param

#: Largest integer setting (seeds, budgets, evals): SQLite INTEGER and torch's int64 hold no more.
MAX_INTEGER = 2**63 - 1
#: Largest trial budget of a search (``trials``) and largest ``num`` of a grid: the draws and
#: points are materialised, so a bound keeps a typo from hanging the expansion (a dry run included).
MAX_SEARCH_POINTS = 10**6
GRID_KINDS = ("log", "linear")
#: How a command line names a grid kind (``log:1e-4:1e-1:4``, ``lin:0:1:5``).
CLI_GRID_KINDS = ("log", "lin", "linear")


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, so an error about a 500-deep array or a huge string stays one
    short line (and a repr that recurses too deep cannot replace the error with a RecursionError)."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<{type(value).__name__} nested too deep>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def as_list(value: Any) -> list[Any]:
    """``value`` as a list: a list or tuple as is, anything else as a list of one."""
    return list(value) if isinstance(value, list | tuple) else [value]


def is_scalar(value: Any) -> bool:
    """Whether ``value`` is one TOML scalar (string, number, boolean, date), not an array or a table."""
    return not isinstance(value, list | tuple | Mapping)


def finite(item: Any) -> float | None:
    """``item`` as a finite float, or ``None`` for anything else (nan, inf, an int past float range, a non-number)."""
    if isinstance(item, bool) or not isinstance(item, int | float):
        return None
    try:
        number = float(item)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def grid(kind: str, low: float, high: float, num: int, where: str) -> list[float]:
    """``num`` values from ``low`` to ``high`` (both included), evenly spaced in log or linear scale.

    Values are rounded to 12 significant digits so that the same grid always gives the same
    numbers, and so the same trial ids, whatever the floating-point path that computed them.
    """
    if kind not in GRID_KINDS:
        raise UserError(f"{where}: unknown grid {kind!r} (use {' or '.join(GRID_KINDS)})")
    if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= MAX_SEARCH_POINTS:
        raise UserError(f"{where}: num must be an integer from 1 to {MAX_SEARCH_POINTS}, got {show(num)}")
    for bound in (low, high):
        if finite(bound) is None:
            raise UserError(f"{where}: grid bounds must be finite numbers, got {show(bound)}")
    if kind == "log" and (low <= 0 or high <= 0):
        raise UserError(f"{where}: a log grid needs positive bounds, got [{low!r}, {high!r}]")
    if num == 1:
        return [float(low)]
    if kind == "log":
        values = [low * (high / low) ** (k / (num - 1)) for k in range(num)]
    else:
        values = [low + (high - low) * k / (num - 1) for k in range(num)]
    return [float(f"{v:.12g}") for v in values]


def grid_table(value: dict, where: str) -> list[float]:
    """``{log = [low, high], num = n}`` or ``{linear = [low, high], num = n}`` as a list of values."""
    kinds = [k for k in GRID_KINDS if k in value]
    unknown = set(value) - {*GRID_KINDS, "num"}
    if len(kinds) != 1 or unknown or "num" not in value:
        raise UserError(f"{where}: a grid is {{log = [low, high], num = N}} or {{linear = [low, high], num = N}}, "
                        f"got {show(value)}")
    bounds = value[kinds[0]]
    if not isinstance(bounds, list | tuple) or len(bounds) != 2:
        raise UserError(f"{where}: {kinds[0]} needs [low, high], got {show(bounds)}")
    return grid(kinds[0], bounds[0], bounds[1], value["num"], where)


def numbers(value: Any, where: str, positive: bool = False) -> list[float]:
    """Finite numbers (``> 0`` with ``positive``), one or a list or a grid table, checked by
    :func:`bench_core.options.check_number` so every number error reads the same."""
    if isinstance(value, dict):
        value = grid_table(value, where)
    values = as_list(value)
    if not values:
        raise UserError(f"{where}: empty list")
    try:
        return [check_number(where, item, 0.0 if positive else -math.inf, strict=positive) for item in values]
    except ValueError as exc:
        raise UserError(str(exc)) from None


def integers(value: Any, where: str, minimum: int, scalar: bool = False, maximum: int = MAX_INTEGER) -> list[int]:
    """Whole numbers from ``minimum`` to ``maximum``: by default what SQLite INTEGER and torch's int64 hold,
    so a seed of 2**63 or a budget of 2**70 is a one-line error here, not an OverflowError mid-run. Checked by
    :func:`bench_core.options.check_integer`; a float, even a whole one, is refused."""
    if scalar and isinstance(value, list | tuple):
        raise UserError(f"{where}: expected one integer, got a list {show(value)}")
    values = as_list(value)
    if not values:
        raise UserError(f"{where}: empty list")
    try:
        for item in values:
            check_integer(where, item, minimum, maximum, exact=True)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return values


def strings(value: Any, where: str) -> list[str]:
    """One non-empty name or a list of them."""
    values = as_list(value)
    if not values or not all(isinstance(item, str) and item for item in values):
        raise UserError(f"{where}: expected a name or a list of names, got {show(value)}")
    return values


def hyperparameter_values(param: Param | Choice, value: Any, where: str, positive: bool = False) -> list[Any]:
    """A hyperparameter's values from a suite or the command line, each as the optimizer takes it.

    Numbers become ``float``, or ``int`` for an integer :class:`Param` (a grid table over
    one is rounded to whole numbers; a listed 5.5 is an error); a :class:`Choice` takes
    its options by value or by how a command line spells them.
    """
    values = _choices(value, where) if isinstance(param, Choice) else _param_numbers(param, value, where, positive)
    try:
        return [param.coerce(v) for v in values]
    except ValueError as exc:
        raise UserError(f"{where}: {exc}") from None


def _choices(value: Any, where: str) -> list[Any]:
    """The values given for a categorical hyperparameter: scalars, before they are matched to its options."""
    if isinstance(value, dict):
        raise UserError(f"{where}: a categorical hyperparameter takes a list of its options, not a grid")
    values = as_list(value)
    if not values:
        raise UserError(f"{where}: empty list")
    for item in values:
        if not is_scalar(item):
            raise UserError(f"{where}: expected one of its options, got {show(item)}")
    return values


def _param_numbers(param: Param, value: Any, where: str, positive: bool) -> list[float]:
    """The numbers given for a numeric hyperparameter; a grid over an integer one is rounded to whole numbers."""
    values = numbers(value, where, positive)
    if param.integer and isinstance(value, dict):
        values = [round(v) for v in values]
    if param.integer and any(abs(v) > MAX_INTEGER for v in values):
        raise UserError(f"{where}: expected whole numbers within +-{MAX_INTEGER}, got {show(value)}")
    return values


def like(default: Any, value: Any, where: str) -> Any:
    """Coerce an option value to its default's type, so ``10`` and ``10.0`` name one trial."""
    if isinstance(default, bool) or default is None or isinstance(default, str):
        if default is not None and type(value) is not type(default):
            raise UserError(f"{where}: expected {type(default).__name__}, got {show(value)}")
        if default is None and not is_scalar(value):
            raise UserError(f"{where}: expected one value, got {show(value)}")
        return value
    number = finite(value)
    if number is None:
        raise UserError(f"{where}: expected a finite number, got {show(value)}")
    if isinstance(default, int):
        if number != int(number):
            raise UserError(f"{where}: expected an integer, got {show(value)}")
        if not -MAX_INTEGER <= int(value) <= MAX_INTEGER:
            raise UserError(f"{where}: expected an integer within +-{MAX_INTEGER}, got {show(value)}")
        return int(value)
    return number


def parse_cli_values(flag: str, text: str, kind: type) -> list[Any]:
    """Parse a comma-separated flag value (``--lr 0.01,0.1``) into a list of ``kind``."""
    if not isinstance(text, str):  # argparse hands ``--lr=--`` over as a list
        raise UserError(f"{flag}: expected comma-separated values, got {show(text)}")
    out = []
    for part in text.split(","):
        part = part.strip()
        if kind is float and _is_cli_grid(part):
            out.extend(_cli_grid(flag, part))
            continue
        try:
            out.append(kind(part))
        except ValueError:
            raise UserError(f"{flag}: {part!r} is not a valid {kind.__name__}") from None
    return out


def parse_cli_hyperparameter(flag: str, text: str) -> Any:
    """Parse ``--hp NAME=VALUES`` values without knowing the hyperparameter's type.

    Each comma-separated part becomes a bool (``true``/``false``), an int, a float or
    else a string, for the suite to check against the declared type. A value that is one
    grid (``log:1:64:7``) stays a grid table, so an integer hyperparameter can round it.
    """
    parts = [part.strip() for part in text.split(",")]
    if len(parts) == 1 and _is_cli_grid(parts[0]):
        kind, *rest = parts[0].split(":")
        values = _cli_grid(flag, parts[0])
        return {"log" if kind == "log" else "linear": [values[0], values[-1]], "num": int(rest[-1])}
    out: list[Any] = []
    for part in parts:
        if _is_cli_grid(part):
            out.extend(_cli_grid(flag, part))
        elif part.lower() in ("true", "false"):
            out.append(part.lower() == "true")
        else:
            out.append(_number_or_text(part))
    return out


def _is_cli_grid(part: str) -> bool:
    """Whether a comma-separated part of a flag value is spelled as a grid (``log:...``, ``lin:...``)."""
    return part.split(":")[0] in CLI_GRID_KINDS


def _number_or_text(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _cli_grid(flag: str, text: str) -> list[float]:
    """``log:LOW:HIGH:NUM`` or ``lin:LOW:HIGH:NUM`` from the command line."""
    parts = text.split(":")
    try:
        if len(parts) != 4:
            raise ValueError
        low, high, num = float(parts[1]), float(parts[2]), int(parts[3])
    except ValueError:
        raise UserError(f"{flag}: {text!r} is not a grid (use log:LOW:HIGH:NUM or lin:LOW:HIGH:NUM)") from None
    return grid("log" if parts[0] == "log" else "linear", low, high, num, flag)
