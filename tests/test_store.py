"""The results store: what goes in comes out, failures are retried, and a crash never corrupts it."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from bench_core.errors import UserError
from bench_core.specs import Budget
from bench_core.store import APPLICATION_ID, SCHEMA_VERSION, Store
from bench_core.trial import TrialConfig, TrialResult

NAN, INF = float("nan"), float("inf")


def config(seed: int = 0, **changes) -> TrialConfig:
    fields = dict(problem="p", optimizer="o", hyperparams={"lr": 0.1, "momentum": 0.9}, budget=Budget("steps", 10),
                  batch_size=8, seed=seed)
    return TrialConfig(**fields | changes)


def ok_result(cfg: TrialConfig) -> TrialResult:
    curve = [{"step": 0, "samples": 0, "seconds": 0.0, "lr": 0.1, "train_loss": 2.5, "valid_loss": 2.6},
             {"step": 10, "samples": 80, "seconds": 0.25, "lr": 0.05, "train_loss": 0.5, "valid_loss": NAN}]
    return TrialResult(cfg.trial_id, "ok", steps=10, samples=80, final={"train_loss": 0.5, "valid_loss": NAN},
                       best={"train_loss": 0.5, "valid_loss": 2.6}, steps_to_target=10, samples_to_target=80,
                       seconds_to_target=0.25, train_seconds=0.25, wall_seconds=1.5, samples_per_second=320.0,
                       curve=curve, device="cpu", target_every=1,
                       metric_ranges={"train_loss": [-2.5, INF], "valid_accuracy": [0.0, 1.0]})


def diverged_result(cfg: TrialConfig) -> TrialResult:
    curve = [{"step": 0, "samples": 0, "seconds": 0.0, "lr": 1.0, "train_loss": 3.0},
             {"step": 5, "samples": 0, "seconds": 0.1, "lr": 1.0, "train_loss": INF}]
    return TrialResult(cfg.trial_id, "diverged", steps=5, samples=0, final={"train_loss": INF},
                       best={"train_loss": 3.0}, train_seconds=0.1, wall_seconds=0.2, samples_per_second=None,
                       curve=curve, device="cpu", target_every=150, reason="non-finite loss (inf) at step 5",
                       metric_ranges={"train_loss": [0.0, INF]})


def error_result(cfg: TrialConfig) -> TrialResult:
    trace = 'Traceback (most recent call last):\n  File "x.py", line 1\nRuntimeError: "boom", it said\n'
    return TrialResult(cfg.trial_id, "error", error=trace, wall_seconds=0.01, device="cpu")


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "r.sqlite") as opened:
        yield opened


def sql(path: Path, query: str, *params: object) -> list[tuple]:
    """Run one statement on the file directly, as anyone querying it without optbench would."""
    db = sqlite3.connect(path)
    try:
        with db:
            return db.execute(query, params).fetchall()
    finally:
        db.close()


def same(a: object, b: object) -> bool:
    """Equality where NaN equals NaN and None/NaN both mean missing."""
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or pd.isna(b)
    return a == b


def test_every_field_round_trips(store, tmp_path):
    stochastic = config(problem_options={"width": 4, "shape": [2, 3]}, schedule="cosine",
                        schedule_options={"warmup": 2})
    deterministic = config(problem="rosenbrock", optimizer="sgd", hyperparams={"lr": 1.0}, batch_size=None,
                           budget=Budget("epochs", 2))
    failing = config(seed=7)
    results = {c.trial_id: (c, make(c)) for c, make in
               ((stochastic, ok_result), (deterministic, diverged_result), (failing, error_result))}
    for cfg, result in results.values():
        store.save(cfg, result)

    frame = store.trials().set_index("trial_id")
    assert sorted(frame.index) == sorted(results)
    for trial_id, (cfg, result) in results.items():
        row = frame.loc[trial_id]
        assert TrialConfig.from_json(row["config"]) == cfg
        assert (row["problem"], row["optimizer"], row["schedule"]) == (cfg.problem, cfg.optimizer, cfg.schedule)
        assert (row["seed"], row["device"], row["evals"]) == (cfg.seed, cfg.device, cfg.evals)
        assert (row["budget_unit"], row["budget_amount"]) == (cfg.budget.unit, cfg.budget.amount)
        assert same(cfg.batch_size, row["batch_size"])
        for name, value in cfg.hyperparams.items():
            assert row[f"hp.{name}"] == value
        for name in ("status", "steps", "samples", "steps_to_target", "samples_to_target", "seconds_to_target",
                     "train_seconds", "wall_seconds", "samples_per_second", "error", "target_every", "reason"):
            assert same(getattr(result, name), row[name]), name
        assert row["metric_ranges"] == result.metric_ranges
        assert row["ran_on"] == result.device
        for prefix, metrics in (("final", result.final), ("best", result.best)):
            for name, value in metrics.items():
                assert same(value, row[f"{prefix}.{name}"]), f"{prefix}.{name}"
    assert frame.loc[stochastic.trial_id, "opt.width"] == 4
    assert json.loads(frame.loc[stochastic.trial_id, "opt.shape"]) == [2, 3]
    assert frame.loc[stochastic.trial_id, "sched.warmup"] == 2
    assert pd.isna(frame.loc[deterministic.trial_id, "hp.momentum"]), "another optimizer's hyperparameter is NaN"
    assert pd.isna(frame.loc[failing.trial_id, "final.train_loss"]), "an errored trial has no metrics"
    assert frame.loc[deterministic.trial_id, "final.train_loss"] == INF
    assert math.isnan(frame.loc[stochastic.trial_id, "final.valid_loss"])
    assert frame["final.valid_loss"].dtype == float and frame["batch_size"].dtype == float
    assert frame["target_every"].dtype == float and pd.isna(frame.loc[failing.trial_id, "target_every"])
    assert frame.loc[stochastic.trial_id, "metric_ranges"]["train_loss"] == [-2.5, INF]
    assert frame["finished_at"].notna().all()

    # The denormalised columns, for anyone querying the file with SQL.
    rows = sql(tmp_path / "r.sqlite", "SELECT problem, optimizer, lr, batch_size, schedule, seed, device, "
               "budget_unit, budget_amount, status FROM trials WHERE trial_id = ?", deterministic.trial_id)
    assert rows[0] == ("rosenbrock", "sgd", 1.0, None, "constant", 0, "cpu", "epochs", 2, "diverged")


def test_saving_a_trial_again_replaces_it(store):
    cfg = config()
    store.save(cfg, error_result(cfg))
    store.save(cfg, ok_result(cfg))
    frame = store.trials()
    assert len(frame) == 1 and frame["status"].tolist() == ["ok"] and pd.isna(frame["error"].iloc[0])
    assert len(store.curves()) == len(ok_result(cfg).curve)


def test_done_ids_are_ok_and_diverged_trials_not_errors(store):
    ok, diverged, failed, missing = config(0), config(1), config(2), config(3)
    store.save(ok, ok_result(ok))
    store.save(diverged, diverged_result(diverged))
    store.save(failed, error_result(failed))
    assert store.done_ids() == {ok.trial_id, diverged.trial_id}
    assert store.done_ids([ok.trial_id, failed.trial_id, missing.trial_id]) == {ok.trial_id}
    assert store.done_ids([]) == set()


def test_a_trial_shared_by_two_suites_is_stored_once_and_listed_under_both(store):
    shared, only_a, only_b = config(0), config(1), config(2)
    run_a = store.begin_run("a", {"description": "suite a"}, {"python": "3.11", "plugins": {"x": "1.0"}})
    run_b = store.begin_run("b", {}, {"python": "3.12"})
    store.add_to_suite("a", [shared.trial_id, only_a.trial_id])
    store.add_to_suite("b", [shared.trial_id, only_b.trial_id])
    store.add_to_suite("b", [shared.trial_id])  # listing twice is harmless
    for cfg in (shared, only_a, only_b):
        store.save(cfg, ok_result(cfg))
    assert store.suites() == ["a", "b"]
    assert len(store.trials()) == 3
    assert set(store.trials("a")["trial_id"]) == {shared.trial_id, only_a.trial_id}
    assert set(store.trials("b")["trial_id"]) == {shared.trial_id, only_b.trial_id}
    assert set(store.curves("a")["trial_id"]) == {shared.trial_id, only_a.trial_id}
    assert store.trials("nope").empty and "problem" in store.trials("nope")
    runs = store.runs("a")
    assert runs["run_id"].tolist() == [run_a] and run_b != run_a
    assert runs["environment"].iloc[0] == {"python": "3.11", "plugins": {"x": "1.0"}}
    assert runs["suite_config"].iloc[0] == {"description": "suite a"}
    assert store.runs()["suite"].tolist() == ["a", "b"]


def test_curves_are_long_form_with_one_column_per_metric(store):
    first, second = config(0), config(1, problem="q")
    store.save(first, ok_result(first))
    store.save(second, diverged_result(second))
    curves = store.curves()
    assert list(curves.columns) == ["trial_id", "step", "samples", "seconds", "lr", "train_loss", "valid_loss"]
    assert len(curves) == 4
    rows = curves.set_index(["trial_id", "step"])
    assert rows.loc[(first.trial_id, 10), "lr"] == 0.05
    assert rows.loc[(first.trial_id, 10), "samples"] == 80
    assert math.isnan(rows.loc[(first.trial_id, 10), "valid_loss"])
    assert rows.loc[(second.trial_id, 5), "train_loss"] == INF
    assert math.isnan(rows.loc[(second.trial_id, 0), "valid_loss"]), "q has no valid_loss"
    empty = store.curves("nope")
    assert empty.empty and list(empty.columns) == ["trial_id", "step", "samples", "seconds", "lr"]


def test_export_csv_reads_back_with_the_same_rows(store, tmp_path):
    cfgs = [config(0, problem_options={"shape": [2, 3]}), config(1, batch_size=None), config(2)]
    store.save(cfgs[0], ok_result(cfgs[0]))
    store.save(cfgs[1], diverged_result(cfgs[1]))
    store.save(cfgs[2], error_result(cfgs[2]))
    out = tmp_path / "out" / "trials.csv"
    store.export(out)
    back = pd.read_csv(out).set_index("trial_id")
    frame = store.trials().set_index("trial_id")
    assert len(back) == 3 and list(back.columns) == list(frame.columns)
    assert back["status"].to_dict() == frame["status"].to_dict()
    assert back["hp.lr"].to_dict() == frame["hp.lr"].to_dict()
    assert back.loc[cfgs[1].trial_id, "final.train_loss"] == INF
    assert "8.0" not in out.read_text().split("\n")[1].split(","), "integer columns stay integers"
    assert json.loads(back.loc[cfgs[0].trial_id, "opt.shape"]) == [2, 3]
    assert TrialConfig.from_json(back.loc[cfgs[1].trial_id, "config"]) == cfgs[1]
    assert json.loads(back.loc[cfgs[0].trial_id, "metric_ranges"]) == ok_result(cfgs[0]).metric_ranges
    assert back.loc[cfgs[1].trial_id, "reason"] == diverged_result(cfgs[1]).reason
    assert back.loc[cfgs[1].trial_id, "target_every"] == 150
    assert back.loc[cfgs[2].trial_id, "error"] == error_result(cfgs[2]).error
    with pytest.raises(ValueError, match="'xlsx'"):
        store.export(tmp_path / "t.xlsx", format="xlsx")


def test_a_file_that_is_not_a_results_database_is_refused_and_untouched(tmp_path):
    text = tmp_path / "notes.sqlite"
    text.write_text("these are my notes\n" * 100)
    before = hashlib.sha256(text.read_bytes()).hexdigest()
    with pytest.raises(UserError, match=f"results file {text} is not an optbench results database"):
        Store(text)
    assert hashlib.sha256(text.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite"], "no -wal/-shm left behind"

    other = tmp_path / "other.db"
    sql(other, "CREATE TABLE mine (x)")
    before = hashlib.sha256(other.read_bytes()).hexdigest()
    with pytest.raises(UserError, match="not an optbench results database"):
        Store(other)
    assert hashlib.sha256(other.read_bytes()).hexdigest() == before

    with pytest.raises(UserError, match="is a folder"):
        Store(tmp_path)


def test_a_newer_schema_version_is_refused(tmp_path):
    path = tmp_path / "r.sqlite"
    with Store(path):
        pass
    assert sql(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert sql(path, "PRAGMA journal_mode") == [("wal",)]
    sql(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(UserError, match=f"schema version {SCHEMA_VERSION + 1}.*newer optbench"):
        Store(path)


# The schema of version 1, as optbench 0.1 wrote it (before target_every, reason and metric_ranges).
V1_SCHEMA = """
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
    finished_at TEXT NOT NULL
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


def write_v1_file(path: Path, trials: list[tuple[TrialConfig, TrialResult]], extra_sql: str = "") -> None:
    """A version-1 results file written by hand, with ``trials`` in it (as a version-1 optbench stored them)."""
    db = sqlite3.connect(path)
    try:
        db.executescript(V1_SCHEMA + extra_sql)
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("PRAGMA user_version = 1")
        with db:
            db.execute("INSERT INTO runs (suite, suite_config, environment, started_at) VALUES (?, ?, ?, ?)",
                       ("old", "{}", '{"python": "3.11"}', "2024-01-01T00:00:00+00:00"))
            for n, (cfg, result) in enumerate(trials):
                db.execute(
                    "INSERT INTO trials (trial_id, config, problem, optimizer, lr, batch_size, schedule, seed, device, "
                    "budget_unit, budget_amount, status, error, steps, samples, steps_to_target, samples_to_target, "
                    "seconds_to_target, train_seconds, wall_seconds, samples_per_second, ran_on, final, best, curve, "
                    f"finished_at) VALUES ({', '.join('?' * 26)})",
                    (cfg.trial_id, cfg.to_json(), cfg.problem, cfg.optimizer, cfg.lr, cfg.batch_size, cfg.schedule,
                     cfg.seed, cfg.device, cfg.budget.unit, cfg.budget.amount, result.status, result.error,
                     result.steps, result.samples, result.steps_to_target, result.samples_to_target,
                     result.seconds_to_target, result.train_seconds, result.wall_seconds, result.samples_per_second,
                     result.device, json.dumps(result.final), json.dumps(result.best), json.dumps(result.curve),
                     f"2024-01-01T00:00:0{n}+00:00"))
                db.execute("INSERT INTO suite_trials (suite, trial_id) VALUES (?, ?)", ("old", cfg.trial_id))
    finally:
        db.close()


def test_a_version_1_file_is_migrated_in_place_keeping_every_row(tmp_path):
    path = tmp_path / "old.sqlite"
    kept = [(cfg, make(cfg)) for cfg, make in ((config(0), ok_result), (config(1), diverged_result),
                                               (config(2), error_result))]
    for _, result in kept:  # what a version-1 optbench produced: none of the new fields
        result.target_every, result.reason, result.metric_ranges = None, None, {}
    write_v1_file(path, kept)
    assert sql(path, "PRAGMA user_version") == [(1,)]

    with Store(path) as store:
        frame = store.trials().set_index("trial_id")
        assert len(frame) == 3 and store.suites() == ["old"] and len(store.runs()) == 1
        for cfg, result in kept:
            row = frame.loc[cfg.trial_id]
            assert TrialConfig.from_json(row["config"]) == cfg
            for name in ("status", "steps", "samples", "steps_to_target", "samples_to_target", "seconds_to_target",
                         "train_seconds", "wall_seconds", "samples_per_second", "error"):
                assert same(getattr(result, name), row[name]), name
            for name, value in result.final.items():
                assert same(value, row[f"final.{name}"])
            assert math.isnan(row["target_every"]) and row["reason"] is None and row["metric_ranges"] == {}
            assert math.isnan(row["gradient_evaluations"]) and row["fingerprint"] == {}
        assert store.done_ids() == {kept[0][0].trial_id, kept[1][0].trial_id}
        assert len(store.curves()) == sum(len(result.curve) for _, result in kept)
        new = config(3)
        store.save(new, diverged_result(new))  # the migrated file takes the new fields
        row = store.trials().set_index("trial_id").loc[new.trial_id]
        assert (row["target_every"], row["reason"]) == (150, "non-finite loss (inf) at step 5")
        assert row["metric_ranges"] == {"train_loss": [0.0, INF]}
        late = config(4)  # version 4 knows the timeout status, and the rebuilt table still checks statuses
        store.save(late, TrialResult(late.trial_id, "timeout", steps=3, reason="stopped", time_limit=2.0))
        assert store.timeouts([late.trial_id, new.trial_id]) == {late.trial_id: 2.0}
        grouped = config(5)  # version 5 records how many trials ran together; older rows read NaN (unknown)
        store.save(grouped, TrialResult(grouped.trial_id, "ok", final={"train_loss": 1.0}, group_size=7))
        sizes = store.trials().set_index("trial_id")["group_size"]
        assert sizes[grouped.trial_id] == 7 and math.isnan(sizes[kept[0][0].trial_id])
        with pytest.raises(sqlite3.IntegrityError):
            sql(path, "UPDATE trials SET status = 'finished' WHERE trial_id = ?", late.trial_id)
    assert sql(path, "PRAGMA user_version") == [(5,)] == [(SCHEMA_VERSION,)]
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]
    fresh = tmp_path / "new.sqlite"
    with Store(fresh):
        pass
    assert sql(path, "PRAGMA table_info(trials)") == sql(fresh, "PRAGMA table_info(trials)"), \
        "a migrated file has the same columns as a new one"
    with Store(path) as store:  # opening it again changes nothing
        assert len(store.trials()) == 6


def test_a_migration_that_fails_halfway_leaves_the_version_1_file_as_it_was(tmp_path):
    path = tmp_path / "odd.sqlite"
    # someone added a `reason` column by hand: the second ALTER TABLE of the migration fails
    write_v1_file(path, [(config(0), ok_result(config(0)))], extra_sql="ALTER TABLE trials ADD COLUMN reason TEXT;")
    columns = sql(path, "PRAGMA table_info(trials)")
    with pytest.raises(UserError, match="cannot be opened"):
        Store(path)
    assert sql(path, "PRAGMA user_version") == [(1,)]
    assert sql(path, "PRAGMA table_info(trials)") == columns, "the first ALTER TABLE was rolled back with the rest"
    assert sql(path, "SELECT count(*) FROM trials") == [(1,)]


def test_reopening_keeps_the_data_and_a_mismatched_result_is_rejected(tmp_path):
    path = tmp_path / "deep" / "er" / "r.sqlite"
    cfg = config()
    with Store(path) as store:
        store.save(cfg, ok_result(cfg))
        with pytest.raises(ValueError, match="does not belong"):
            store.save(config(1), ok_result(cfg))
    with Store(path) as store:
        assert store.done_ids() == {cfg.trial_id}


WRITER = """
import sys
from bench_core.specs import Budget
from bench_core.store import Store
from bench_core.trial import TrialConfig, TrialResult

curve = [{"step": i, "samples": 8 * i, "seconds": i / 10, "lr": 0.1, "train_loss": 1 / (i + 1)} for i in range(300)]
with Store(sys.argv[1]) as store:
    seed = 0
    while True:
        config = TrialConfig(problem="p", optimizer="o", hyperparams={"lr": 0.1}, budget=Budget("steps", 10),
                             batch_size=8, seed=seed)
        result = TrialResult(config.trial_id, "ok", steps=300, samples=2400, final={"train_loss": float("nan")},
                             best=curve[-1], curve=curve, error="x" * 5000)
        store.save(config, result)
        print(seed, flush=True)
        seed += 1
"""


@pytest.mark.slow
def test_kill_9_while_saving_leaves_a_sound_database_with_every_acknowledged_trial(tmp_path):
    path = tmp_path / "r.sqlite"
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(path)], stdout=subprocess.PIPE,
                              text=True)
    acknowledged = 0
    deadline = time.monotonic() + 60
    try:
        while acknowledged < 40 and time.monotonic() < deadline:
            if not writer.stdout.readline():
                break
            acknowledged += 1
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
    assert acknowledged == 40, "the writer must have been saving when it was killed"
    assert writer.returncode == -signal.SIGKILL

    with Store(path) as store:
        frame = store.trials()
        assert store.done_ids() == set(frame["trial_id"])
    assert len(frame) >= acknowledged, "a save that returned must survive the kill"
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]
    rows = sql(path, "SELECT status, config, final, best, curve FROM trials")
    assert len(rows) == len(frame)
    for status, *texts in rows:
        assert status == "ok"
        config_json, final, best, curve = (json.loads(text) for text in texts)
        assert len(curve) == 300 and math.isnan(final["train_loss"]) and best["step"] == 299
        assert TrialConfig.from_json(json.dumps(config_json)).trial_id


@pytest.mark.slow
def test_gradient_evaluations_round_trip_through_the_store_and_export_as_integers(tmp_path, catalog):
    """A real L-BFGS trial (a line search: more evaluations than steps) and an Adam one, stored and exported."""
    from bench_core.runner import ProblemCache, run_trial

    cache = ProblemCache(catalog)
    options = dict(catalog.problems["logistic"].options)
    full_batch = cache.get("logistic", options, "cpu").train_size
    configs = [TrialConfig(problem="logistic", optimizer=name, hyperparams=catalog.optimizers[name].defaults(),
                           budget=Budget("steps", 12), batch_size=full_batch, evals=2, problem_options=options)
               for name in ("lbfgs", "adam")]
    results = [run_trial(cfg, cache) for cfg in configs]
    assert results[0].gradient_evaluations > results[0].steps == 12 == results[1].gradient_evaluations
    with Store(tmp_path / "r.sqlite") as store:
        for cfg, result in zip(configs, results, strict=True):
            store.save(cfg, result)
        frame = store.trials().set_index("trial_id")
        store.export(tmp_path / "trials.csv")
    for cfg, result in zip(configs, results, strict=True):
        assert frame.loc[cfg.trial_id, "gradient_evaluations"] == result.gradient_evaluations
    with (tmp_path / "trials.csv").open(newline="") as handle:
        cells = {row["trial_id"]: row["gradient_evaluations"] for row in csv.DictReader(handle)}
    assert cells == {cfg.trial_id: str(result.gradient_evaluations) for cfg, result in zip(configs, results,
                                                                                             strict=True)}
    back = pd.read_csv(tmp_path / "trials.csv").set_index("trial_id")
    assert back["gradient_evaluations"].dtype == "int64"
