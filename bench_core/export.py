"""``optbench export``: the stored trials or learning curves as one CSV or Parquet file.

Two tables: ``trials`` (:meth:`Store.trials`, one row per trial) and ``curves``
(:meth:`Store.curves`, one row per evaluation point, with each trial's setting columns beside
it so that a curves file can be grouped by optimizer or learning rate without a join).

Both formats get the same columns and values. Dicts and lists (``metric_ranges``,
``fingerprint``, list-valued options) become JSON text, which both formats can hold;
integer columns that may be missing are nullable integers (``Int64``), never floats, so a
batch size reads back as 128, not 128.0. Parquet keeps each column's type: text stays text
(hyperparameter options included), whole numbers stay integers, ``finished_at`` a UTC
timestamp; a column whose values mix types (a plugin's option that is a number for one
problem and a word for another) is written as the text the CSV holds.

Files are written to a temporary file beside the destination and moved into place only when
complete (:func:`bench_core.store.replacing`), so a killed export leaves the old file or none.
``-o -`` writes to standard output instead: the whole file is built in memory first, so an
error writes nothing; Parquet, being binary, is refused when standard output is a terminal.
Parquet needs pyarrow, the ``parquet`` extra.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from bench_core.errors import UserError

if TYPE_CHECKING:
    from bench_core.store import Store

EXPORT_FORMATS = ("csv", "parquet")
#: What can be exported: one row per trial, or one row per evaluation point of each trial's curve.
EXPORT_TABLES = ("trials", "curves")
#: ``-o`` value that means standard output.
STDOUT = "-"
#: Suffixes of ``-o`` that choose Parquet when ``--format`` is not given.
PARQUET_SUFFIXES = (".parquet", ".pq")
#: Setting columns of :meth:`Store.trials` copied onto every curve row (with the ``hp.``, ``sched.``
#: and ``opt.`` columns): what was run, not what came out.
SETTING_COLUMNS = ("problem", "optimizer", "batch_size", "schedule", "seed", "device", "evals", "budget_unit",
                   "budget_amount")
SETTING_PREFIXES = ("hp.", "sched.", "opt.")


def format_for(output: str) -> str:
    """The format ``-o output`` implies: Parquet for a ``.parquet``/``.pq`` file, else CSV.

    So that ``-o trials.parquet`` without ``--format`` does not write CSV into a file named Parquet.
    """
    return "parquet" if Path(output).suffix.lower() in PARQUET_SUFFIXES else "csv"


def require_pyarrow() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``, or the one-line :class:`UserError` naming the extra to install.

    pyarrow is large and only Parquet needs it, so it is an optional extra rather than a dependency.
    """
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise UserError("--format parquet needs pyarrow, the 'parquet' extra: pip install 'optbench[parquet]'") \
            from None
    return pyarrow, pyarrow.parquet


def export(store: Store, path: str | os.PathLike[str], format: str = "csv", suite: str | None = None,
           what: str = "trials") -> None:
    """Write the ``what`` table (of ``suite``, or all) of ``store`` to ``path`` (``"-"``: stdout) as ``format``.

    Every check (format, table, pyarrow, a terminal as stdout) runs before anything is read or
    written; an ``OSError`` while writing is one :class:`UserError` line and leaves any older file.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"export format {format!r} is not supported (supported: {', '.join(EXPORT_FORMATS)})")
    if what not in EXPORT_TABLES:
        raise ValueError(f"export table {what!r} is not supported (supported: {', '.join(EXPORT_TABLES)})")
    to_stdout = os.fspath(path) == STDOUT
    if format == "parquet":
        require_pyarrow()
        if to_stdout and sys.stdout.isatty():
            raise UserError("-o -: Parquet is binary and standard output is a terminal; give a file name, or pipe "
                            "or redirect the output")
    frame = curves_table(store, suite) if what == "curves" else trials_table(store, suite)
    write = _parquet_writer(frame) if format == "parquet" else _csv_writer(frame)
    if to_stdout:
        _write_stdout(write)
    else:
        _write_file(write, Path(path))


def trials_table(store: Store, suite: str | None = None) -> pd.DataFrame:
    """:meth:`Store.trials` as exported: nullable integer columns ``Int64``, dicts and lists JSON text.

    A frame keeps a batch size that may be missing as float (pandas' usual NaN); a file should
    say 128, and a dict is no value a CSV cell or a Parquet column can hold.
    """
    return _flat(store.trials(suite))


def curves_table(store: Store, suite: str | None = None) -> pd.DataFrame:
    """:meth:`Store.curves` with each trial's setting columns (``problem, optimizer, hp.*, ...``) after ``trial_id``.

    The curves are read before the trials: a sweep writing meanwhile only adds trials, so every
    curve finds its settings. A metric named like a setting column is refused rather than renamed.
    """
    curves = store.curves(suite)
    trials = trials_table(store, suite)
    settings = [name for name in trials.columns if name in SETTING_COLUMNS or name.startswith(SETTING_PREFIXES)]
    clash = sorted(set(settings) & set(curves.columns))
    if clash:
        raise UserError(f"cannot export curves: metric(s) {', '.join(clash)} share a name with the trials' setting "
                        "columns; export --what trials and the curves separately from Store.curves()")
    merged = curves.merge(trials[["trial_id", *settings]], on="trial_id", how="left", validate="many_to_one")
    return merged[["trial_id", *settings, *curves.columns[1:]]]


def _flat(frame: pd.DataFrame) -> pd.DataFrame:
    from bench_core.store import NULLABLE_INTEGERS, _dumps

    frame = frame.copy()
    for name in NULLABLE_INTEGERS:
        if name in frame:
            frame[name] = frame[name].astype("Int64")
    for name in frame.columns:
        if pd.api.types.is_object_dtype(frame[name]):
            frame[name] = frame[name].map(lambda v: _dumps(v) if isinstance(v, dict | list) else v)
    return frame


def _csv_writer(frame: pd.DataFrame) -> Callable[[Any], None]:
    def write(target: Any) -> None:
        frame.to_csv(target, index=False)

    return write


def _parquet_writer(frame: pd.DataFrame) -> Callable[[Any], None]:
    pyarrow, parquet = require_pyarrow()
    table = pyarrow.Table.from_pandas(_typed(frame), preserve_index=False)  # converted before any file is opened

    def write(target: Any) -> None:
        parquet.write_table(table, target)

    return write


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Each text or object column of ``frame`` in one Parquet type: text, boolean, integer or float.

    Arrow refuses a column of mixed Python types and would store an all-missing one as type
    null, which some readers reject; such columns become text (what the CSV holds for them).
    """
    typed = {}
    for name, column in frame.items():
        if not (pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)):
            typed[name] = column
            continue
        kinds = {type(value) for value in column[column.notna()]}
        if kinds <= {str}:  # all missing included
            typed[name] = column.astype(pd.StringDtype())
        elif kinds == {bool}:
            typed[name] = column.astype("boolean")
        elif kinds == {int}:
            typed[name] = column.astype("Int64")
        elif kinds <= {int, float}:
            typed[name] = column.astype(float)
        else:
            typed[name] = column.map(str, na_action="ignore").astype(pd.StringDtype())
    return pd.DataFrame(typed, index=frame.index)


def _write_file(write: Callable[[Any], None], path: Path) -> None:
    from bench_core.store import replacing

    try:
        with replacing(path) as temporary:
            write(temporary)
    except OSError as exc:
        reason = " ".join(str(exc.strerror or exc).split())  # pyarrow's messages may span lines
        raise UserError(f"cannot write {path}: {reason}; nothing was exported (an older file there is kept)") \
            from exc


def _write_stdout(write: Callable[[Any], None]) -> None:
    """Build the whole file in memory, then write it: an error before the end writes nothing."""
    buffer = io.BytesIO()
    write(buffer)
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(buffer.getvalue())
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        raise UserError("-o -: standard output was closed before the export was written (the reading end of the "
                        "pipe stopped reading)") from None
    except OSError as exc:  # e.g. redirected to a full disk
        raise UserError(f"-o -: cannot write to standard output: {exc.strerror or exc}") from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush at exit does not report the broken pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):  # a stdout without a file descriptor (a test's capture)
        pass
