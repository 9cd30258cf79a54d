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
``fingerprint`` (``{}`` for older trials: unknown). Version 4 added the ``timeout`` status and
``time_limit`` (NULL for older trials: none recorded), and made the configuration's columns
(``problem``, ``optimizer``, ``lr``, ``batch_size``, ``schedule``, ``seed``, ``device``,
``budget_unit``, ``budget_amount``) generated from the ``config`` JSON, its one source of truth,
kept for SQL queries; the trials table is copied into one of the new shape, as SQLite cannot
change a CHECK constraint or make a column generated in place. Version 5 added ``group_size``, how
many trials ran as one computation (:mod:`bench_core.vectorized`; 1: alone; NULL, read as NaN, for
older trials, which all ran alone).

Opening refuses, in one :class:`UserError` line and before anything is written, whatever is
not a sound optbench file: a FIFO or other non-regular path, a damaged file (``quick_check``,
missing tables or columns, a row whose JSON does not parse, named by its trial id), a file
another process keeps locked past ``$OPTBENCH_LOCK_TIMEOUT``. Readers never create or
initialise a file and open a read-only one read-only. See ``docs/reliability.md``.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import pandas as pd

from bench_core.errors import UserError
from bench_core.trial import DONE_STATUSES, STATUSES, Status, TrialConfig, TrialResult

#: Bump on any change to the tables below, and teach :meth:`Store._open_schema` to migrate.
SCHEMA_VERSION = 5
#: ``PRAGMA application_id`` ("OPTB"): tells our files from other SQLite databases.
APPLICATION_ID = 0x4F505442
SQLITE_MAGIC = b"SQLite format 3\x00"

SCHEMA = f"""
CREATE TABLE trials (
    trial_id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    problem TEXT GENERATED ALWAYS AS (json_extract(config, '$.problem')) VIRTUAL,
    optimizer TEXT GENERATED ALWAYS AS (json_extract(config, '$.optimizer')) VIRTUAL,
    lr REAL GENERATED ALWAYS AS (json_extract(config, '$.hyperparams.lr')) VIRTUAL,
    batch_size INTEGER GENERATED ALWAYS AS (json_extract(config, '$.batch_size')) VIRTUAL,
    schedule TEXT GENERATED ALWAYS AS (json_extract(config, '$.schedule')) VIRTUAL,
    seed INTEGER GENERATED ALWAYS AS (json_extract(config, '$.seed')) VIRTUAL,
    device TEXT GENERATED ALWAYS AS (json_extract(config, '$.device')) VIRTUAL,
    budget_unit TEXT GENERATED ALWAYS AS (json_extract(config, '$.budget.unit')) VIRTUAL,
    budget_amount INTEGER GENERATED ALWAYS AS (json_extract(config, '$.budget.amount')) VIRTUAL,
    status TEXT NOT NULL CHECK (status IN ({', '.join(repr(status.value) for status in STATUSES)})),
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
    metric_ranges TEXT NOT NULL DEFAULT '{{}}',
    gradient_evaluations INTEGER,
    gradient_evaluations_to_target INTEGER,
    fingerprint TEXT NOT NULL DEFAULT '{{}}',
    time_limit REAL,
    group_size INTEGER
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

_TRIALS_TABLE = SCHEMA[SCHEMA.index("CREATE TABLE trials ("):SCHEMA.index(");") + 2]
#: The trials table of schema version 4, and its stored (not generated) columns, which migration 3 copies.
_TRIALS_TABLE_V4 = _TRIALS_TABLE.replace(",\n    group_size INTEGER", "")
_TRIAL_COLUMNS_V4 = ", ".join(line.split()[0].rstrip(",") for line in _TRIALS_TABLE_V4.splitlines()[1:-1]
                              if "GENERATED" not in line)

#: How to bring a file of an older schema version up to date: version -> statements to
#: the next version, run in one transaction by :meth:`Store._open_schema`.
MIGRATIONS = {
    1: ("ALTER TABLE trials ADD COLUMN target_every INTEGER",
        "ALTER TABLE trials ADD COLUMN reason TEXT",
        "ALTER TABLE trials ADD COLUMN metric_ranges TEXT NOT NULL DEFAULT '{}'"),
    2: ("ALTER TABLE trials ADD COLUMN gradient_evaluations INTEGER",
        "ALTER TABLE trials ADD COLUMN gradient_evaluations_to_target INTEGER",
        "ALTER TABLE trials ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '{}'"),
    # SQLite can neither change a CHECK constraint in place nor turn a column into a generated one: copy the
    # stored columns into a table of the new shape.
    3: ("ALTER TABLE trials ADD COLUMN time_limit REAL",
        _TRIALS_TABLE_V4.replace("TABLE trials (", "TABLE trials_v4 (").rstrip(";"),
        f"INSERT INTO trials_v4 ({_TRIAL_COLUMNS_V4}) SELECT {_TRIAL_COLUMNS_V4} FROM trials",
        "DROP TABLE trials",
        "ALTER TABLE trials_v4 RENAME TO trials"),
    4: ("ALTER TABLE trials ADD COLUMN group_size INTEGER",),
}

#: Result columns of ``trials()`` in order, as stored (``ran_on``: the device the trial really used).
RESULT_COLUMNS = ("status", "reason", "steps", "gradient_evaluations", "samples", "steps_to_target",
                  "gradient_evaluations_to_target", "samples_to_target", "seconds_to_target", "target_every",
                  "train_seconds", "wall_seconds", "samples_per_second", "time_limit", "group_size")
#: Result columns read back as float (NaN where missing).
FLOAT_COLUMNS = ("gradient_evaluations", "steps_to_target", "gradient_evaluations_to_target", "samples_to_target",
                 "seconds_to_target", "target_every", "train_seconds", "wall_seconds", "samples_per_second",
                 "time_limit", "group_size")
TAIL_COLUMNS = ("error", "ran_on", "finished_at", "config")
#: Integer columns that may be missing: float with NaN in frames (pandas' usual missing value).
NULLABLE_INTEGERS = ("batch_size", "gradient_evaluations", "steps_to_target", "gradient_evaluations_to_target",
                     "samples_to_target", "target_every")
CURVE_COLUMNS = ("step", "samples", "seconds", "lr")
#: JSON columns checked on open, as (table, row key, columns).
JSON_COLUMNS = (("trials", "trial_id", ("config", "final", "best", "curve", "metric_ranges", "fingerprint")),
                ("runs", "run_id", ("suite_config", "environment")))
#: Files up to this size get ``PRAGMA quick_check`` on open (it reads every page once).
QUICK_CHECK_MAX_BYTES = 256 * 2**20
#: Seconds to wait for another process's lock before refusing (default 30).
LOCK_TIMEOUT_VARIABLE = "OPTBENCH_LOCK_TIMEOUT"


class Store:
    """The results database at ``path``, created (with its folders) when missing.

    Use it as a context manager, or call :meth:`close`. A file that is not an optbench
    results database (another SQLite file, a text file, a folder, a FIFO), a damaged one or
    one written by a newer optbench raises :class:`UserError` and is left untouched: every
    check comes before the first write.

    ``create=False`` is for readers (``report``, ``export``): a missing or empty file is
    refused rather than initialised, and a file or folder we may not write is opened
    read-only (``mode=ro``, or ``immutable=1`` when even that needs a write), leaving no
    ``-wal``/``-shm`` files behind. A file held by another process's write lock is waited
    for (``OPTBENCH_LOCK_TIMEOUT`` seconds, default 30), then refused in one line.
    """

    def __init__(self, path: str | os.PathLike[str], create: bool = True) -> None:
        self.path = Path(path)
        self.create = create
        self.read_only = False
        self._db: sqlite3.Connection | None = None
        _check_path(self.path, create)
        try:
            self._connect()
            self._open_schema_waiting()
        except UserError:
            self.close()
            raise
        except sqlite3.DatabaseError as exc:
            self.close()
            raise _database_error(self.path, exc) from exc
        except OSError as exc:
            self.close()
            raise UserError(f"results file {self.path} cannot be opened ({exc.strerror or exc})") from exc
        except BaseException:
            self.close()
            raise

    def _connect(self) -> None:
        """Open the connection: read-write where we may write, else read-only without leaving files behind."""
        timeout = lock_timeout()
        if self.create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _check_writable(self.path)
        elif not _writable(self.path):
            self.read_only = True
            self._db = _connect_read_only(self.path, timeout)
            self._db.row_factory = sqlite3.Row
            return
        # Autocommit mode: transactions are explicit (see _transaction), never implicit.
        self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        self._db.row_factory = sqlite3.Row

    def _open_schema_waiting(self) -> None:
        """:meth:`_open_schema`, tried again while another process initialises or converts the file.

        Switching a new file to WAL needs an exclusive lock that SQLite does not wait for (it
        answers "database is locked" at once), so six processes creating one file would refuse
        each other; a bounded retry makes creation race-free.
        """
        deadline = time.monotonic() + lock_timeout()
        while True:
            try:
                self._open_schema()
                return
            except sqlite3.OperationalError as exc:
                if not _is_locked(exc) or time.monotonic() >= deadline:
                    raise
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            time.sleep(0.02)

    def _snapshot(self) -> tuple[int, int, int]:
        """``user_version``, ``application_id`` and the number of tables, read in one transaction.

        One snapshot, so a file another process is creating is seen either before (no tables,
        version 0) or after (tables and version), never halfway.
        """
        self._conn.execute("BEGIN")
        try:
            return (self._pragma("user_version"), self._pragma("application_id"),
                    int(self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]))
        finally:
            self._conn.execute("COMMIT")

    def _open_schema(self) -> None:
        """Check that the file is ours and sound, then switch to WAL and create the tables if new.

        Every check comes before the first write, so a refused file is never modified. A file
        of an older schema version is migrated (:meth:`_migrate`).
        """
        version, application_id, tables = self._snapshot()
        if version == 0:
            if tables:
                raise UserError(f"results file {self.path} is not an optbench results database "
                                "(it is an SQLite database with other tables)")
            if not self.create:
                raise UserError(f"results file {self.path} is empty: no results (run a suite first)")
        elif application_id != APPLICATION_ID:
            raise UserError(f"results file {self.path} is not an optbench results database")
        elif version > SCHEMA_VERSION:
            raise UserError(f"results file {self.path} has schema version {version}, written by a newer optbench "
                            f"(this one reads version {SCHEMA_VERSION}); upgrade optbench")
        elif version != SCHEMA_VERSION and version not in MIGRATIONS:
            raise UserError(f"results file {self.path} has unknown schema version {version} "
                            f"(this optbench reads version {SCHEMA_VERSION})")
        if version:
            self._check_sound(version)
        if self.read_only:
            if version < SCHEMA_VERSION:
                raise UserError(f"results file {self.path} has schema version {version} and needs upgrading, "
                                "but it is read-only; copy it somewhere writable first")
            return
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
            self._check_sound(SCHEMA_VERSION)
        if self.create:
            with self._transaction():  # a writer learns now, before any work, that another process holds the file
                pass

    def _check_sound(self, version: int) -> None:
        """Refuse a damaged file before anything is written: bad pages, missing tables or columns, bad JSON.

        ``quick_check`` reads every page once (not the full ``integrity_check``), so it stays
        cheap for the files a benchmark makes; larger files only get the table checks.
        Columns are checked in full only at the current version (older files gain columns
        when migrated, and are checked again afterwards).
        """
        if self.path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
            problems = [row[0] for row in self._conn.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise self._damaged("; ".join(problems))
        expected = _expected_columns()
        for table, columns in expected.items():
            present = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            if not present:
                raise self._damaged(f"table {table} is missing")
            missing = sorted(columns - present) if version == SCHEMA_VERSION else []
            if missing:
                raise self._damaged(f"table {table} lacks column(s) {', '.join(missing)}")
        if version == SCHEMA_VERSION:
            self._check_json()

    def _check_json(self) -> None:
        """Refuse a row whose JSON does not parse, naming the trial.

        SQLite's ``json_valid`` clears most rows at C speed; only the rows it rejects (those
        holding NaN or Infinity, which Python writes and SQLite's strict JSON refuses) are
        parsed again in Python.
        """
        for table, key, columns in JSON_COLUMNS:
            for column in columns:
                rows = self._conn.execute(f"SELECT {key}, {column} FROM {table} WHERE NOT json_valid({column})")
                for row_id, text in rows:
                    _loads(text, f"{table.removesuffix('s')} {row_id}", column, self.path)

    def _damaged(self, what: str) -> UserError:
        what = " ".join(what.replace("*** in database main ***", "").split())  # quick_check spans lines
        return UserError(f"results file {self.path} is damaged: {what}; nothing was written; "
                         "restore it from a copy or start a new file")

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
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # locked by another process, or read-only
            raise _database_error(self.path, exc) from exc
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        try:
            self._conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise _database_error(self.path, exc) from exc

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
            "status": result.status,
            "time_limit": _real(result.time_limit),
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
            "group_size": int(result.group_size),
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

    def timeouts(self, trial_ids: Iterable[str]) -> dict[str, float | None]:
        """The stored ``timeout`` trials among ``trial_ids`` and the limit in seconds each was stopped at."""
        rows = self._select_by_ids("trial_id, status, time_limit", trial_ids)
        return {trial_id: limit for trial_id, status, limit in rows if status == Status.TIMEOUT}

    def finals(self, trial_ids: Iterable[str]) -> dict[str, tuple[str, dict[str, float]]]:
        """``status`` and ``final`` metrics of the stored trials among ``trial_ids``: what searches score."""
        return {trial_id: (status, _loads(final, f"trial {trial_id}", "final", self.path))
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
        return {trial_id: _loads(text, f"trial {trial_id}", "fingerprint", self.path)
                for trial_id, text in self._select_by_ids("trial_id, fingerprint", trial_ids)}

    def mean_wall_seconds(self) -> dict[tuple[str, str, int, int | None], float]:
        """Mean wall time of finished trials by (problem, budget unit, budget amount, batch size): for estimates."""
        rows = self._conn.execute(
            "SELECT problem, budget_unit, budget_amount, batch_size, AVG(wall_seconds) FROM trials "
            "WHERE status IN ('ok', 'diverged') AND wall_seconds IS NOT NULL "
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
        seconds_to_target, target_every, train_seconds, wall_seconds, samples_per_second, time_limit,
        group_size``),
        ``final.<metric>`` and ``best.<metric>``, ``metric_ranges`` (a dict per row: metric
        -> ``[low, high]``, ``{}`` for trials stored before it was recorded), ``fingerprint`` (a
        dict per row: what code produced the trial, ``{}`` where unknown), then ``error,
        ran_on, finished_at`` (UTC) and ``config`` (the canonical JSON, for
        :meth:`TrialConfig.from_json`). ``target_every`` is NaN where unknown, ``reason``
        None unless the trial diverged or timed out (and for trials stored before it was recorded),
        ``time_limit`` the limit in seconds the trial ran under (NaN: none, or not recorded), ``group_size`` how
        many trials ran as one computation with it (1: alone; NaN: stored before it was recorded).
        Values a trial lacks (a hyperparameter of another optimizer, a metric of another
        problem, a batch size on a deterministic problem) are NaN. Non-scalar option values
        are JSON text so that columns stay groupable.
        """
        columns = ", ".join(f"t.{name}" for name in ("trial_id", *RESULT_COLUMNS, "final", "best", "metric_ranges",
                                                     "fingerprint", *TAIL_COLUMNS))
        base = self._read(f"SELECT {columns} FROM trials t {_suite_filter(suite)} "
                          "ORDER BY t.finished_at, t.trial_id", suite)
        configs = self._column_json(base, "config")
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
            _hyperparameter_columns(_prefixed(base.index, [c["hyperparams"] for c in configs], "hp.", first="lr",
                                              raw=True)),
            setup,
            _prefixed(base.index, [c["schedule_options"] for c in configs], "sched."),
            _prefixed(base.index, [c["problem_options"] for c in configs], "opt."),
            identity, result,
            _prefixed(base.index, self._column_json(base, "final"), "final.", numeric=True),
            _prefixed(base.index, self._column_json(base, "best"), "best.", numeric=True),
            pd.DataFrame({"metric_ranges": self._column_json(base, "metric_ranges"),
                          "fingerprint": self._column_json(base, "fingerprint")},
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
        records = [{"trial_id": row["trial_id"], **point} for row in rows
                   for point in _loads(row["curve"], f"trial {row['trial_id']}", "curve", self.path)]
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
        for column in ("suite_config", "environment"):
            frame[column] = [_loads(text, f"run {run_id}", column, self.path)
                             for run_id, text in zip(frame["run_id"], frame[column], strict=True)]
        frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True, format="ISO8601")
        return frame

    def export(self, path: str | os.PathLike[str], format: str = "csv", suite: str | None = None,
               what: str = "trials") -> None:
        """Write the trials (or, ``what="curves"``, the learning curves) of ``suite``, or all, to ``path``.

        ``format`` is ``"csv"`` or ``"parquet"`` (needs pyarrow); see :mod:`bench_core.export`,
        which holds the code so that the store stays about storing.
        """
        from bench_core.export import export

        export(self, path, format=format, suite=suite, what=what)

    def _column_json(self, base: pd.DataFrame, column: str) -> list[Any]:
        """``column`` of ``base`` parsed, a row that does not parse refused by its trial id."""
        return [_loads(text, f"trial {trial_id}", column, self.path)
                for trial_id, text in zip(base["trial_id"], base[column], strict=True)]

    def _read(self, sql: str, suite: str | None) -> pd.DataFrame:
        return pd.read_sql_query(sql, self._conn, params=() if suite is None else (suite,))


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it when the block ends without error.

    A write killed halfway then leaves the old file or none, never a truncated one that looks
    complete; the temporary file is removed on any error. Its folders are created first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, _file_mode(path))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _file_mode(path: Path) -> int:
    """The mode the file at ``path`` has, or a new file would get (``mkstemp`` makes its files private)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def lock_timeout() -> float:
    """Seconds to wait for another process's lock: ``$OPTBENCH_LOCK_TIMEOUT``, default 30."""
    text = os.environ.get(LOCK_TIMEOUT_VARIABLE, "30")
    try:
        return max(float(text), 0.0)
    except ValueError:
        raise UserError(f"{LOCK_TIMEOUT_VARIABLE}={text!r}: expected a number of seconds") from None


def _check_path(path: Path, create: bool) -> None:
    """Refuse anything but an absent or regular file before SQLite touches it.

    A FIFO would block the open forever and a folder or device is no database. An empty
    file (``touch results.sqlite``) holds no data: a writer initialises it, a reader refuses it.
    A partial SQLite header (another process writing its first page) is read again, briefly.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if create:
            return
        raise UserError(f"results file {path}: no such file (run a suite first, or pass --results PATH)") from None
    except OSError as exc:
        raise UserError(f"results file {path} cannot be read ({exc.strerror})") from exc
    if stat.S_ISDIR(mode):
        raise UserError(f"results file {path} is a folder, not an optbench results database")
    if not stat.S_ISREG(mode):
        raise UserError(f"results file {path} is not a regular file (a FIFO, socket or device); "
                        "give the path of an optbench results database")
    header = _header(path)
    if not header and not create:
        raise UserError(f"results file {path} is empty: no results (run a suite first)")
    if header and header != SQLITE_MAGIC:
        raise UserError(f"results file {path} is not an optbench results database")


def _header(path: Path) -> bytes:
    """The first bytes of ``path``, read again for a moment while they are a strict prefix of SQLite's magic."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            with path.open("rb") as file:
                header = file.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise UserError(f"results file {path} cannot be read ({exc.strerror})") from exc
        if not header or header == SQLITE_MAGIC or not SQLITE_MAGIC.startswith(header) \
                or time.monotonic() >= deadline:
            return header
        time.sleep(0.01)


def _writable(path: Path) -> bool:
    """Whether we may write ``path`` and its folder (SQLite's write-ahead log lives beside it)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


def _check_writable(path: Path) -> None:
    """Refuse, before any write, a results file or folder ``run`` may not write."""
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write results file {path}: its folder is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"cannot write results file {path}: it is read-only")


def _connect_read_only(path: Path, timeout: float) -> sqlite3.Connection:
    """A read-only connection that leaves no ``-wal``/``-shm`` files where none were.

    With a write-ahead log present, ``mode=ro`` reads it (recovering it needs a writable
    folder); without one, or when that fails, ``immutable=1`` reads the main file as it is.
    """
    uri = f"file:{quote(str(path.resolve()))}"
    if Path(f"{path}-wal").exists():
        try:
            db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout, isolation_level=None)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            pass
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=timeout, isolation_level=None)


def _is_locked(exc: sqlite3.Error) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _database_error(path: Path, exc: sqlite3.DatabaseError) -> UserError:
    """One line for an SQLite error: locked, read-only, or a damaged file."""
    if _is_locked(exc):
        return UserError(f"results file {path} is locked: another process holds it (waited {lock_timeout():g} s; "
                         f"set {LOCK_TIMEOUT_VARIABLE} to wait longer)")
    if "readonly" in str(exc) or "read-only" in str(exc):
        return UserError(f"cannot write results file {path}: it is read-only ({exc})")
    if isinstance(exc, sqlite3.OperationalError):  # unable to open, a migration step that fails
        return UserError(f"results file {path} cannot be opened as an optbench results database ({exc})")
    return UserError(f"results file {path} is damaged: {exc}; nothing was written; "
                     "restore it from a copy or start a new file")


@cache
def _expected_columns() -> dict[str, frozenset[str]]:
    """Columns of each table at the current schema, read from :data:`SCHEMA` itself (so they cannot drift)."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(SCHEMA)
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {table: frozenset(row[1] for row in db.execute(f"PRAGMA table_info({table})")) for table in tables}
    finally:
        db.close()


def _loads(text: Any, row: str, column: str, path: Path) -> Any:
    """``json.loads(text)``, a row that does not parse refused in one line naming the row."""
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise UserError(f"results file {path} is damaged: {row} has unreadable {column} ({exc}); "
                        "nothing was written; restore it from a copy or start a new file") from None


def _suite_filter(suite: str | None) -> str:
    return "" if suite is None else "JOIN suite_trials s ON s.trial_id = t.trial_id WHERE s.suite = ?"


def _prefixed(index: pd.Index, dicts: list[dict[str, Any]], prefix: str, first: str | None = None,
              numeric: bool = False, raw: bool = False) -> pd.DataFrame:
    """Flatten one dict per row into ``<prefix><key>`` columns (sorted, ``first`` leading).

    ``raw`` keeps each value's Python type (object columns, NaN where a row lacks the key): pandas
    would turn a column of whole numbers with gaps into floats, and the caller could no longer tell
    an integer hyperparameter from a float one.
    """
    rows = [{key: _dumps(value) if isinstance(value, dict | list) else value for key, value in d.items()}
            for d in dicts]
    if raw:
        keys = list(dict.fromkeys(key for row in rows for key in row))
        frame = pd.DataFrame({key: pd.Series([row.get(key, math.nan) for row in rows], index=index, dtype=object)
                              for key in keys}, index=index)
    else:
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
