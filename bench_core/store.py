"""The results store: one SQLite file holding every trial, read back as pandas frames.

Three tables:

``trials``
    One row per trial, keyed by ``trial_id`` (the hash of its configuration). It holds
    the canonical config JSON, denormalised config columns for SQL queries (problem,
    optimizer, lr, batch_size, schedule, seed, device, budget) and the whole result:
    scalars as columns (``target_every``, the resolution of ``steps_to_target``, and
    ``reason``, why a trial diverged, among them), ``final``/``best`` metrics, the learning
    ``curve`` and ``metric_ranges`` (the known ``[low, high]`` of final metrics) as JSON.
``runs``
    One row per ``optbench run``: the suite, its settings and the environment.
``suite_trials``
    Which trials belong to which suite. A trial shared by two suites is stored once in
    ``trials`` and listed under both; ids are listed when a run starts, before the trials
    finish, so a listed id need not have a row in ``trials`` yet.

Only the driver process writes (workers hand their results back to it), and every trial
is written in its own committed transaction. With SQLite's write-ahead log and
``synchronous=FULL``, a kill -9 at any moment loses at most the trials in flight and
never leaves a half-written row or a corrupt file. Readers (a report while a sweep runs)
may open the file at the same time.

Metrics may be NaN or infinite (a diverged trial): JSON as Python writes it allows both,
and they come back as float ``nan``/``inf``. A NaN in a scalar result column is stored as
SQL NULL, which reads back as NaN too.

Schema versions (``PRAGMA user_version``). Version 1 had no ``target_every``, ``reason``
or ``metric_ranges`` columns; version 2 added them. Opening a version-1 file migrates it
in place, in one transaction, keeping every row: its trials read back with
``target_every`` NaN (unknown), ``reason`` None and ``metric_ranges`` ``{}``. A file of a
newer version than this optbench knows is refused untouched. Version 3 added
``gradient_evaluations`` and ``gradient_evaluations_to_target`` (NULL, read as NaN, for
older trials: one per step) and
``fingerprint`` (``{}`` for older trials: unknown).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from bench_core.errors import UserError
from bench_core.trial import TrialConfig, TrialResult

#: Bump on any change to the tables below, and teach :meth:`Store._open_schema` to migrate.
SCHEMA_VERSION = 3
#: ``PRAGMA application_id`` ("OPTB"): tells our files from other SQLite databases.
APPLICATION_ID = 0x4F505442
SQLITE_MAGIC = b"SQLite format 3\x00"
EXPORT_FORMATS = ("csv",)
#: Statuses that count as a result; an ``error`` is a failure and is retried on a re-run.
DONE_STATUSES = ("ok", "diverged")

SCHEMA = """
CREATE TABLE trials (
    trial_id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    problem TEXT NOT NULL,
    optimizer TEXT NOT NULL,
    lr REAL,
    batch_size INTEGER,
    schedule TEXT NOT NULL,
    seed INTEGER NOT NULL,
    device TEXT NOT NULL,
    budget_unit TEXT NOT NULL,
    budget_amount INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'diverged', 'error')),
    error TEXT,
    steps INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    steps_to_target INTEGER,
    samples_to_target INTEGER,
    seconds_to_target REAL,
    train_seconds REAL,
    wall_seconds REAL,
    samples_per_second REAL,
    ran_on TEXT NOT NULL,
    final TEXT NOT NULL,
    best TEXT NOT NULL,
    curve TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    target_every INTEGER,
    reason TEXT,
    metric_ranges TEXT NOT NULL DEFAULT '{}',
    gradient_evaluations INTEGER,
    gradient_evaluations_to_target INTEGER,
    fingerprint TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE runs (
    run_id INTEGER PRIMARY KEY,
    suite TEXT NOT NULL,
    suite_config TEXT NOT NULL,
    environment TEXT NOT NULL,
    started_at TEXT NOT NULL
);
CREATE TABLE suite_trials (
    suite TEXT NOT NULL,
    trial_id TEXT NOT NULL,
    PRIMARY KEY (suite, trial_id)
) WITHOUT ROWID;
"""

#: How to bring a file of an older schema version up to date: version -> statements to
#: the next version, run in one transaction by :meth:`Store._open_schema`.
MIGRATIONS = {
    1: ("ALTER TABLE trials ADD COLUMN target_every INTEGER",
        "ALTER TABLE trials ADD COLUMN reason TEXT",
        "ALTER TABLE trials ADD COLUMN metric_ranges TEXT NOT NULL DEFAULT '{}'"),
    2: ("ALTER TABLE trials ADD COLUMN gradient_evaluations INTEGER",
        "ALTER TABLE trials ADD COLUMN gradient_evaluations_to_target INTEGER",
        "ALTER TABLE trials ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '{}'"),
}

#: Result columns of ``trials()`` in order, as stored (``ran_on``: the device the trial really used).
RESULT_COLUMNS = ("status", "reason", "steps", "gradient_evaluations", "samples", "steps_to_target",
                  "gradient_evaluations_to_target", "samples_to_target", "seconds_to_target", "target_every",
                  "train_seconds", "wall_seconds", "samples_per_second")
#: Result columns read back as float (NaN where missing).
FLOAT_COLUMNS = ("gradient_evaluations", "steps_to_target", "gradient_evaluations_to_target", "samples_to_target",
                 "seconds_to_target", "target_every", "train_seconds", "wall_seconds", "samples_per_second")
TAIL_COLUMNS = ("error", "ran_on", "finished_at", "config")
#: Integer columns that may be missing: float with NaN in frames (pandas' usual missing value).
NULLABLE_INTEGERS = ("batch_size", "gradient_evaluations", "steps_to_target", "gradient_evaluations_to_target",
                     "samples_to_target", "target_every")
CURVE_COLUMNS = ("step", "samples", "seconds", "lr")


class Store:
    """The results database at ``path``, created (with its folders) when missing.

    Use it as a context manager, or call :meth:`close`. A file that is not an optbench
    results database (another SQLite file, a text file, a folder) or that was written by
    a newer optbench raises :class:`UserError` and is left untouched.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        _check_is_database_file(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are explicit (see _transaction), never implicit.
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._open_schema()
        except (sqlite3.DatabaseError, OSError) as exc:
            self.close()
            raise UserError(f"results file {self.path} cannot be opened as an optbench results database ({exc})") \
                from exc
        except BaseException:
            self.close()
            raise

    def _open_schema(self) -> None:
        """Check that the file is ours and readable, then switch to WAL and create the tables if new.

        Every check comes before the first write, so a refused file is never modified. A file
        of an older schema version is migrated (:meth:`_migrate`).
        """
        version = self._pragma("user_version")
        if version == 0:
            if self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise UserError(f"results file {self.path} is not an optbench results database "
                                "(it is an SQLite database with other tables)")
        elif self._pragma("application_id") != APPLICATION_ID:
            raise UserError(f"results file {self.path} is not an optbench results database")
        elif version > SCHEMA_VERSION:
            raise UserError(f"results file {self.path} has schema version {version}, written by a newer optbench "
                            f"(this one reads version {SCHEMA_VERSION}); upgrade optbench")
        elif version != SCHEMA_VERSION and version not in MIGRATIONS:
            raise UserError(f"results file {self.path} has unknown schema version {version} "
                            f"(this optbench reads version {SCHEMA_VERSION})")
        self._conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is on disk when save() returns; trials take seconds, the fsync is cheap.
        self._conn.execute("PRAGMA synchronous = FULL")
        if version == 0:
            with self._transaction():
                if self._pragma("user_version") == 0:  # another process may have created it meanwhile
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            self._conn.execute(statement)
                    self._conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version < SCHEMA_VERSION:
            self._migrate()

    def _migrate(self) -> None:
        """Bring an older file up to :data:`SCHEMA_VERSION` in place, in one transaction (all or nothing)."""
        with self._transaction():
            version = self._pragma("user_version")  # another process may have migrated it meanwhile
            if version < SCHEMA_VERSION:
                for step in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[step]:
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise ValueError(f"results store {self.path} is closed")
        return self._db

    def _pragma(self, name: str) -> int:
        return int(self._conn.execute(f"PRAGMA {name}").fetchone()[0])

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction, committed on success and rolled back on any exception."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection (SQLite folds the write-ahead log back into the file). Idempotent."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # -- writing (driver process only) ----------------------------------------------------

    def begin_run(self, suite: str, suite_config: dict[str, Any], environment: dict[str, Any]) -> int:
        """Record the start of a run of ``suite``; return its ``run_id``.

        Kept per run, not per suite, so a report can say which versions produced the results.
        """
        with self._transaction():
            cursor = self._conn.execute(
                "INSERT INTO runs (suite, suite_config, environment, started_at) VALUES (?, ?, ?, ?)",
                (suite, _dumps(suite_config), _dumps(environment), _now()))
        return int(cursor.lastrowid)

    def add_to_suite(self, suite: str, trial_ids: Iterable[str]) -> None:
        """List ``trial_ids`` under ``suite`` (ids already listed are ignored), in one transaction."""
        with self._transaction():
            self._conn.executemany("INSERT OR IGNORE INTO suite_trials (suite, trial_id) VALUES (?, ?)",
                                 [(suite, trial_id) for trial_id in trial_ids])

    def save(self, config: TrialConfig, result: TrialResult) -> None:
        """Store one trial, replacing any earlier row of the same trial, committed before returning.

        One transaction per trial is what makes a killed sweep resumable: a row is either
        complete or absent.
        """
        if result.trial_id != config.trial_id:
            raise ValueError(f"result of trial {result.trial_id} does not belong to config {config.trial_id}")
        row = {
            "trial_id": config.trial_id,
            "config": config.to_json(),
            "problem": config.problem,
            "optimizer": config.optimizer,
            "lr": _real(config.hyperparams.get("lr")),
            "batch_size": config.batch_size,
            "schedule": config.schedule,
            "seed": config.seed,
            "device": config.device,
            "budget_unit": config.budget.unit,
            "budget_amount": config.budget.amount,
            "status": result.status,
            "error": result.error,
            "steps": int(result.steps),
            "samples": int(result.samples),
            "steps_to_target": _integer(result.steps_to_target),
            "samples_to_target": _integer(result.samples_to_target),
            "seconds_to_target": _real(result.seconds_to_target),
            "train_seconds": _real(result.train_seconds),
            "wall_seconds": _real(result.wall_seconds),
            "samples_per_second": _real(result.samples_per_second),
            "ran_on": result.device,
            "final": _dumps(result.final),
            "best": _dumps(result.best),
            "curve": _dumps(result.curve),
            "finished_at": _now(),
            "target_every": _integer(result.target_every),
            "reason": result.reason,
            "metric_ranges": _dumps(result.metric_ranges),
            "gradient_evaluations": _integer(result.gradient_evaluations),
            "gradient_evaluations_to_target": _integer(result.gradient_evaluations_to_target),
            "fingerprint": _dumps(result.fingerprint),
        }
        names = ", ".join(row)
        marks = ", ".join(f":{name}" for name in row)
        with self._transaction():
            self._conn.execute(f"INSERT OR REPLACE INTO trials ({names}) VALUES ({marks})", row)

    # -- reading -----------------------------------------------------------------------

    def done_ids(self, trial_ids: Iterable[str] | None = None) -> set[str]:
        """Ids stored with status ``ok`` or ``diverged`` (among ``trial_ids`` when given).

        Errored trials are left out on purpose: an error is a failure of the harness or a
        plugin, not a result about the optimizer, so a re-run tries them again.
        """
        rows = self._conn.execute(
            f"SELECT trial_id FROM trials WHERE status IN ({', '.join('?' * len(DONE_STATUSES))})", DONE_STATUSES)
        done = {row[0] for row in rows}
        return done if trial_ids is None else done & set(trial_ids)

    def finals(self, trial_ids: Iterable[str]) -> dict[str, tuple[str, dict[str, float]]]:
        """``status`` and ``final`` metrics of the stored trials among ``trial_ids``: what searches score."""
        return {trial_id: (status, json.loads(final))
                for trial_id, status, final in self._select_by_ids("trial_id, status, final", trial_ids)}

    def _select_by_ids(self, columns: str, trial_ids: Iterable[str]) -> list[tuple[Any, ...]]:
        """``columns`` of the stored trials among ``trial_ids``, as tuples."""
        ids = list(dict.fromkeys(trial_ids))
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(ids), 500):  # stay under SQLite's limit on bound parameters
            chunk = ids[start:start + 500]
            rows += [tuple(row) for row in self._conn.execute(
                f"SELECT {columns} FROM trials WHERE trial_id IN ({', '.join('?' * len(chunk))})", chunk)]
        return rows

    def fingerprints(self, trial_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        """The stored ``fingerprint`` of each stored trial among ``trial_ids`` (``{}`` where unknown).

        The driver compares them with the current code's, to re-run what other code produced.
        """
        return {trial_id: json.loads(text)
                for trial_id, text in self._select_by_ids("trial_id, fingerprint", trial_ids)}

    def mean_wall_seconds(self) -> dict[tuple[str, str, int, int | None], float]:
        """Mean wall time of finished trials by (problem, budget unit, budget amount, batch size): for estimates."""
        rows = self._conn.execute(
            "SELECT problem, budget_unit, budget_amount, batch_size, AVG(wall_seconds) FROM trials "
            "WHERE status != 'error' AND wall_seconds IS NOT NULL "
            "GROUP BY problem, budget_unit, budget_amount, batch_size")
        return {(problem, unit, amount, batch): seconds for problem, unit, amount, batch, seconds in rows}

    def suites(self) -> list[str]:
        """Names of the suites with at least one listed trial, sorted."""
        return [row[0] for row in self._conn.execute("SELECT DISTINCT suite FROM suite_trials ORDER BY suite")]

    def trials(self, suite: str | None = None) -> pd.DataFrame:
        """One row per stored trial (of ``suite``, or all), in the order they finished.

        Columns: ``trial_id, problem, optimizer``, one ``hp.<name>`` per hyperparameter (float;
        ``Int64`` for a whole-number one; object holding the options for a categorical one),
        ``batch_size, schedule``, ``sched.<name>`` and ``opt.<name>`` for schedule and
        problem options, ``seed, device, evals, budget_unit, budget_amount``, the result
        scalars (``status, reason, steps, gradient_evaluations, samples, steps_to_target,
        gradient_evaluations_to_target, samples_to_target,
        seconds_to_target, target_every, train_seconds, wall_seconds, samples_per_second``),
        ``final.<metric>`` and ``best.<metric>``, ``metric_ranges`` (a dict per row: metric
        -> ``[low, high]``, ``{}`` for trials stored before it was recorded), ``fingerprint`` (a
        dict per row: what code produced the trial, ``{}`` where unknown), then ``error,
        ran_on, finished_at`` (UTC) and ``config`` (the canonical JSON, for
        :meth:`TrialConfig.from_json`). ``target_every`` is NaN where unknown, ``reason``
        None unless the trial diverged (and for trials stored before it was recorded).
        Values a trial lacks (a hyperparameter of another optimizer, a metric of another
        problem, a batch size on a deterministic problem) are NaN. Non-scalar option values
        are JSON text so that columns stay groupable.
        """
        columns = ", ".join(f"t.{name}" for name in ("trial_id", *RESULT_COLUMNS, "final", "best", "metric_ranges",
                                                     "fingerprint", *TAIL_COLUMNS))
        base = self._read(f"SELECT {columns} FROM trials t {_suite_filter(suite)} "
                          "ORDER BY t.finished_at, t.trial_id", suite)
        configs = [json.loads(text) for text in base["config"]]
        config = pd.DataFrame({
            "problem": [c["problem"] for c in configs],
            "optimizer": [c["optimizer"] for c in configs],
        }, index=base.index)
        setup = pd.DataFrame({
            "batch_size": pd.Series([c["batch_size"] for c in configs], index=base.index, dtype=float),
            "schedule": [c["schedule"] for c in configs],
        }, index=base.index)
        identity = pd.DataFrame({
            "seed": pd.Series([c["seed"] for c in configs], index=base.index, dtype="int64"),
            "device": [c["device"] for c in configs],
            "evals": pd.Series([c["evals"] for c in configs], index=base.index, dtype="int64"),
            "budget_unit": [c["budget"]["unit"] for c in configs],
            "budget_amount": pd.Series([c["budget"]["amount"] for c in configs], index=base.index, dtype="int64"),
        }, index=base.index)
        result = base[list(RESULT_COLUMNS)].astype({name: float for name in FLOAT_COLUMNS})
        result = result.astype({"steps": "int64", "samples": "int64"})
        tail = base[list(TAIL_COLUMNS)].copy()
        tail["finished_at"] = pd.to_datetime(tail["finished_at"], utc=True, format="ISO8601")
        parts = [
            base[["trial_id"]], config,
            _hyperparameter_columns(_prefixed(base.index, [c["hyperparams"] for c in configs], "hp.", first="lr")),
            setup,
            _prefixed(base.index, [c["schedule_options"] for c in configs], "sched."),
            _prefixed(base.index, [c["problem_options"] for c in configs], "opt."),
            identity, result,
            _prefixed(base.index, [json.loads(text) for text in base["final"]], "final.", numeric=True),
            _prefixed(base.index, [json.loads(text) for text in base["best"]], "best.", numeric=True),
            pd.DataFrame({"metric_ranges": [json.loads(text) for text in base["metric_ranges"]],
                          "fingerprint": [json.loads(text) for text in base["fingerprint"]]},
                         index=base.index, dtype=object),
            tail,
        ]
        return pd.concat(parts, axis=1)

    def curves(self, suite: str | None = None) -> pd.DataFrame:
        """Learning curves in long form: one row per (trial, evaluation point).

        Columns ``trial_id, step, samples, seconds, lr`` and one float column per metric
        (NaN where a trial's problem lacks it); join with :meth:`trials` on ``trial_id``.
        """
        rows = self._conn.execute(f"SELECT t.trial_id, t.curve FROM trials t {_suite_filter(suite)} "
                                "ORDER BY t.finished_at, t.trial_id", () if suite is None else (suite,))
        records = [{"trial_id": row["trial_id"], **point} for row in rows for point in json.loads(row["curve"])]
        frame = pd.DataFrame.from_records(records, columns=None if records else ["trial_id", *CURVE_COLUMNS])
        for name in CURVE_COLUMNS:
            if name not in frame:
                frame[name] = float("nan")
        metrics = sorted(set(frame.columns) - {"trial_id", *CURVE_COLUMNS})
        frame = frame[["trial_id", *CURVE_COLUMNS, *metrics]]
        return frame.astype({name: float for name in ("seconds", "lr", *metrics)})

    def runs(self, suite: str | None = None) -> pd.DataFrame:
        """Runs (of ``suite``, or all) in start order: ``run_id, suite, suite_config, environment, started_at``.

        ``suite_config`` and ``environment`` are parsed into dicts.
        """
        where = "" if suite is None else "WHERE suite = ?"
        frame = self._read(f"SELECT run_id, suite, suite_config, environment, started_at FROM runs {where} "
                           "ORDER BY run_id", suite)
        frame["suite_config"] = frame["suite_config"].map(json.loads)
        frame["environment"] = frame["environment"].map(json.loads)
        frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True, format="ISO8601")
        return frame

    def export(self, path: str | os.PathLike[str], format: str = "csv", suite: str | None = None) -> None:
        """Write :meth:`trials` (of ``suite``, or all) to ``path``; only ``format="csv"`` so far.

        Parquet can come later (it needs pyarrow). In the CSV, missing values are empty
        cells, integer columns that may be missing stay integers, and any dict or list
        value is written as JSON; ``config`` is already JSON text.
        """
        if format not in EXPORT_FORMATS:
            raise ValueError(f"export format {format!r} is not supported (supported: {', '.join(EXPORT_FORMATS)})")
        frame = self.trials(suite)
        for name in NULLABLE_INTEGERS:
            frame[name] = frame[name].astype("Int64")
        for name in frame.columns:
            if pd.api.types.is_object_dtype(frame[name]):
                frame[name] = frame[name].map(lambda v: _dumps(v) if isinstance(v, dict | list) else v)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)

    def _read(self, sql: str, suite: str | None) -> pd.DataFrame:
        return pd.read_sql_query(sql, self._conn, params=() if suite is None else (suite,))


def _check_is_database_file(path: Path) -> None:
    """Refuse a folder or a non-empty file without SQLite's header, before SQLite touches it.

    An empty file (``touch results.sqlite``) holds no data and becomes a new database.
    """
    if path.is_dir():
        raise UserError(f"results file {path} is a folder, not an optbench results database")
    try:
        with path.open("rb") as file:
            header = file.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UserError(f"results file {path} cannot be read ({exc.strerror})") from exc
    if header and header != SQLITE_MAGIC:
        raise UserError(f"results file {path} is not an optbench results database")


def _suite_filter(suite: str | None) -> str:
    return "" if suite is None else "JOIN suite_trials s ON s.trial_id = t.trial_id WHERE s.suite = ?"


def _prefixed(index: pd.Index, dicts: list[dict[str, Any]], prefix: str, first: str | None = None,
              numeric: bool = False) -> pd.DataFrame:
    """Flatten one dict per row into ``<prefix><key>`` columns (sorted, ``first`` leading)."""
    rows = [{key: _dumps(value) if isinstance(value, dict | list) else value for key, value in d.items()}
            for d in dicts]
    frame = pd.DataFrame.from_records(rows, index=index) if rows else pd.DataFrame(index=index)
    keys = sorted(frame.columns, key=lambda key: (key != first, key))
    frame = frame[keys].astype(float) if numeric else frame[keys]
    return frame.add_prefix(prefix)


def _hyperparameter_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Each ``hp.*`` column in its hyperparameter's type: float, nullable ``Int64`` for whole-number
    hyperparameters, or object for categorical ones (NaN where a trial lacks it)."""
    typed = {}
    for name, column in frame.items():
        present = column.dropna()
        if present.map(lambda v: isinstance(v, int) and not isinstance(v, bool)).all() and len(present):
            typed[name] = column.astype("Int64")
        elif present.map(lambda v: isinstance(v, int | float) and not isinstance(v, bool)).all():
            typed[name] = column.astype(float)
        else:
            typed[name] = column.astype(object).where(column.notna(), math.nan)
    return pd.DataFrame(typed, index=frame.index)


def _dumps(value: Any) -> str:
    """JSON that keeps NaN/inf (Python's json reads them back) and tolerates numpy scalars."""
    return json.dumps(value, sort_keys=True, default=_plain)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    return str(value)


def _real(value: Any) -> float | None:
    return None if value is None else float(value)


def _integer(value: Any) -> int | None:
    return None if value is None else int(value)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
