"""Suite files: finding a suite by built-in name or path, reading its TOML, checking its shape.

Everything that can go wrong with the file itself (no such suite, invalid TOML, tables nested
too deep, an unreadable file, a name that could not be a report folder) is a one-line
:class:`~bench_core.errors.UserError` here, before :mod:`bench_core.suite` expands the settings.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from bench_core.errors import UserError
from bench_core.values import show

#: A suite name becomes a report folder and a stored key: letters, digits, ``_``, ``-``, ``.``, at most 100,
#: starting with a letter or digit, so no name can climb out of ``--report-dir`` (``../x``, ``/etc``).
SUITE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


def builtin_suites() -> dict[str, Path]:
    """Built-in suite names and their files."""
    folder = resources.files("bench_core") / "suites"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".toml")}


def read_suite(name_or_path: str) -> tuple[dict[str, Any], str]:
    """Parse a built-in suite by name or a TOML file by path; return (settings, source)."""
    path = Path(name_or_path)
    if not path.is_file():
        suites = builtin_suites()
        if name_or_path not in suites:
            known = ", ".join(sorted(suites))
            raise UserError(f"suite {name_or_path!r}: no such file and no built-in suite of that name "
                            f"(built-in: {known})")
        path = suites[name_or_path]
    try:
        settings = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise UserError(f"{path}: arrays or tables nested too deep to read") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    settings.setdefault("name", path.stem)
    return settings, str(path)


def check_suite_name(name: object, source: str = "suite") -> str:
    """``name`` if it is usable as a report folder and stored key, else a one-line :class:`UserError`.

    Checked before anything runs or is stored: a name such as ``../../x`` or ``/tmp/x`` would
    otherwise put the report outside ``--report-dir``, after the whole sweep had run.
    """
    if not isinstance(name, str) or not SUITE_NAME_PATTERN.match(name):
        raise UserError(f"{source}: suite name {show(name)} is invalid: use at most 100 letters, digits, '_', "
                        "'-' or '.', starting with a letter or digit (set name = \"...\" or --name)")
    return name


def check_keys(settings: Mapping[str, Any], source: str) -> None:
    """Check that the per-name sections (``[problem.NAME]``, ``[optimizer.NAME]``, ``[schedule_options.NAME]``)
    are tables."""
    for key in ("problem", "optimizer", "schedule_options"):
        if key in settings and not isinstance(settings[key], Mapping):
            raise UserError(f"{source}: {key!r} must be a table ([{key}.NAME])")
