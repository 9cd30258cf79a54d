"""Results files that are raced for, locked, damaged, special or unwritable (issue 14, "Results files").

Every test builds its damaged input itself and checks the promises: one line on stderr,
exit 2, no traceback, nothing stored lost, nothing written to a file that is refused.
The command runs in-process (``main``) where a regression cannot hang, in a subprocess
where it could (a FIFO) or where a process limit is needed (``ulimit -f``).
"""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from cli_errors import assert_one_line_error

from bench_core import store as store_module
from bench_core.cli import main
from bench_core.specs import Budget
from bench_core.store import APPLICATION_ID, SCHEMA_VERSION, Store
from bench_core.trial import TrialConfig, TrialResult

ENV = os.environ | {"OPTBENCH_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONUNBUFFERED": "1"}
ROUNDS = 25
AS_ROOT = os.geteuid() == 0
ROOT_REASON = "running as root, which ignores file permissions (no read-only bind mount available here)"
SWEEP = ("--problem", "quadratic", "--optimizer", "sgd", "--lr", "0.01", "--steps", "5", "--seeds", "0,1",
         "--evals", "2", "--workers", "1", "--no-progress")


def run(results: Path, extra: tuple[str, ...] = ("--no-report",)) -> list[str]:
    """Arguments of ``optbench run`` after ``run``: the tiny sweep, stored in ``results``."""
    return [*SWEEP, "--results", str(results), *extra]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stored_rows(path: Path) -> pd.DataFrame:
    with Store(path, create=False) as opened:
        return opened.trials()[["trial_id", "status", "steps", "finished_at"]]


def call(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    """Run the CLI in-process; an uncaught exception (a traceback) fails the test by itself."""
    capsys.readouterr()
    status = main(list(argv))
    return status, capsys.readouterr().err.splitlines()


@pytest.fixture(scope="module")
def good_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real results file: two stored quadratic/sgd trials (built once, copied per test)."""
    path = tmp_path_factory.mktemp("good") / "r.sqlite"
    assert main(["run", *run(results=path)]) == 0
    return path


@pytest.fixture
def results(good_file: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "r.sqlite"
    shutil.copyfile(good_file, copy)
    return copy


# -- 1. concurrent creation --------------------------------------------------------------------


def _open_at_barrier(path: str, barrier: multiprocessing.synchronize.Barrier, answers: multiprocessing.Queue) -> None:
    barrier.wait()
    try:
        with Store(path) as opened:
            opened.suites()
        answers.put("ok")
    except BaseException as exc:  # reported to the parent, which fails the test
        answers.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_six_processes_creating_one_new_file_at_once_all_succeed_with_one_schema(tmp_path):
    context = multiprocessing.get_context("fork")
    failures = []
    for round_ in range(ROUNDS):
        path = tmp_path / f"new-{round_}" / "r.sqlite"
        barrier, answers = context.Barrier(6), context.Queue()
        workers = [context.Process(target=_open_at_barrier, args=(str(path), barrier, answers)) for _ in range(6)]
        for worker in workers:
            worker.start()
        try:
            failures += [answer for answer in (answers.get(timeout=120) for _ in workers) if answer != "ok"]
        finally:
            for worker in workers:
                worker.join(timeout=30)
                if worker.is_alive():
                    os.kill(worker.pid, signal.SIGKILL)
                    worker.join()
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
            assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'trials'").fetchone()[0] == 1
        db.close()
    assert failures == []


# -- 2. locks ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_file_another_program_holds_locked_is_one_line_after_the_timeout_and_readers_still_work(
        results, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPTBENCH_LOCK_TIMEOUT", "0.5")
    before = stored_rows(results)
    holder = sqlite3.connect(results, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        status, lines = call(capsys, "run", *run(results=results, extra=("--no-report", "--rerun")))
        assert_one_line_error(status, lines, str(results), "locked", "another process holds it")
        status, lines = call(capsys, "export", "--results", str(results), "-o", str(tmp_path / "t.csv"))
        assert status == 0, lines
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    pd.testing.assert_frame_equal(stored_rows(results), before)


# -- 3. damaged files --------------------------------------------------------------------------


def damage_pages(path: Path) -> None:
    """Overwrite the middle of the file (a table's page) with garbage, as a failing disk would."""
    data = bytearray(path.read_bytes())
    page = 4096
    middle = len(data) // 2 // page * page
    data[middle:middle + page] = bytes(range(256)) * (page // 256)
    path.write_bytes(bytes(data))


def drop_table(path: Path) -> None:
    _sql(path, "DROP TABLE runs")


def drop_column(path: Path) -> None:
    _sql(path, "ALTER TABLE trials DROP COLUMN reason")


def bad_json(path: Path) -> None:
    _sql(path, "UPDATE trials SET final = '{\"train_loss\": 0.5' WHERE rowid = (SELECT min(rowid) FROM trials)")


def _sql(path: Path, statement: str) -> None:
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute(statement)
    finally:
        db.close()


DAMAGE = {"pages": (damage_pages, "damaged"), "dropped table": (drop_table, "table runs is missing"),
          "dropped column": (drop_column, "lacks column(s) reason"), "bad JSON": (bad_json, "unreadable final")}


@pytest.mark.parametrize("kind", DAMAGE)
@pytest.mark.parametrize("command", ["run", "report", "export"])
def test_a_damaged_file_is_refused_in_one_line_and_left_as_it_was(results, tmp_path, capsys, kind, command):
    damage, words = DAMAGE[kind]
    damage(results)
    before = digest(results)
    out = tmp_path / "out"
    argv = {"run": ["run", *run(results=results, extra=("--report-dir", str(out), "--rerun"))],
            "report": ["report", "--results", str(results), "--report-dir", str(out)],
            "export": ["export", "--results", str(results), "-o", str(out / "t.csv")]}[command]
    status, lines = call(capsys, *argv)
    assert_one_line_error(status, lines, str(results), words, "nothing was written")
    assert digest(results) == before
    assert not any(out.rglob("*.md")) and not any(out.rglob("*.csv")) if out.exists() else True


def test_a_row_with_bad_json_is_named_by_its_trial_id(results, capsys):
    bad_json(results)
    with sqlite3.connect(results) as db:
        trial_id = db.execute("SELECT trial_id FROM trials ORDER BY rowid LIMIT 1").fetchone()[0]
    db.close()
    status, lines = call(capsys, "report", "--results", str(results), "--report-dir", str(results.parent / "out"))
    assert_one_line_error(status, lines, f"trial {trial_id}")


# -- 4. special paths --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "report", "export"])
def test_a_fifo_as_results_file_is_refused_without_hanging(tmp_path, command):
    fifo = tmp_path / "r.sqlite"
    os.mkfifo(fifo)
    argv = {"run": ["run", *run(results=fifo)],
            "report": ["report", "--results", str(fifo), "--report-dir", str(tmp_path)],
            "export": ["export", "--results", str(fifo), "-o", str(tmp_path / "t.csv")]}[command]
    done = subprocess.run([sys.executable, "-m", "bench_core.cli", *argv], capture_output=True, text=True, env=ENV,
                          timeout=120)  # a hang is killed by subprocess.run and fails the test
    lines = done.stderr.splitlines()
    assert_one_line_error(done.returncode, lines, "not a regular file")


@pytest.mark.parametrize("command", ["report", "export"])
def test_readers_refuse_an_empty_file_and_leave_it_empty(tmp_path, capsys, command):
    empty = tmp_path / "r.sqlite"
    empty.touch()
    argv = {"report": ["report", "--results", str(empty), "--report-dir", str(tmp_path / "out")],
            "export": ["export", "--results", str(empty), "-o", str(tmp_path / "t.csv")]}[command]
    status, lines = call(capsys, *argv)
    assert_one_line_error(status, lines, "is empty: no results")
    assert empty.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.sqlite"]


def test_run_initialises_an_empty_file(tmp_path, capsys):
    empty = tmp_path / "r.sqlite"
    empty.touch()
    status, lines = call(capsys, "run", *run(results=empty))
    assert status == 0, lines
    assert len(stored_rows(empty)) == 2


@pytest.mark.parametrize("pretend_read_only", [False, True])
def test_report_and_export_leave_no_wal_or_shm_files_behind(results, tmp_path, capsys, monkeypatch,
                                                            pretend_read_only):
    """Also through the read-only connection (``immutable=1``), which is what a read-only file or folder gets."""
    if pretend_read_only:
        monkeypatch.setattr(store_module, "_writable", lambda path: False)
    before = digest(results)
    status, lines = call(capsys, "export", "--results", str(results), "-o", str(tmp_path / "t.csv"))
    assert status == 0, lines
    status, lines = call(capsys, "report", "--results", str(results), "--report-dir", str(tmp_path / "out"))
    assert status == 0, lines
    assert sorted(p.name for p in results.parent.iterdir() if p.name.startswith("r.sqlite")) == ["r.sqlite"]
    assert digest(results) == before
    assert len(pd.read_csv(tmp_path / "t.csv")) == 2


@pytest.mark.skipif(AS_ROOT, reason=ROOT_REASON)
def test_read_only_file_and_folder_report_and_export_work_and_run_cannot_write(results, tmp_path, capsys):
    results.chmod(0o444)
    results.parent.chmod(0o555)
    try:
        status, lines = call(capsys, "run", *run(results=results, extra=("--no-report", "--rerun")))
        assert_one_line_error(status, lines, "cannot write")
        out = tmp_path.parent / f"{tmp_path.name}-out"
        status, lines = call(capsys, "export", "--results", str(results), "-o", str(out / "t.csv"))
        assert status == 0, lines
        status, lines = call(capsys, "report", "--results", str(results), "--report-dir", str(out))
        assert status == 0, lines
        assert sorted(p.name for p in results.parent.iterdir()) == ["r.sqlite"]
    finally:
        results.parent.chmod(0o755)
        results.chmod(0o644)


# -- 5. output paths ---------------------------------------------------------------------------


def test_a_report_dir_that_is_a_file_is_refused_before_the_sweep_runs(tmp_path, capsys):
    blocker = tmp_path / "reports"
    blocker.write_text("not a folder")
    results = tmp_path / "r.sqlite"
    status, lines = call(capsys, "run", *run(results=results, extra=("--report-dir", str(blocker / "x"))))
    assert_one_line_error(status, lines, "--report-dir", "is a file")
    assert not results.exists()


@pytest.mark.parametrize("command", ["report", "export"])
def test_a_file_shaped_output_is_refused_in_one_line(results, tmp_path, capsys, command):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    argv = {"report": ["report", "--results", str(results), "--report-dir", str(blocker)],
            "export": ["export", "--results", str(results), "-o", str(blocker / "t.csv")]}[command]
    status, lines = call(capsys, *argv)
    assert_one_line_error(status, lines, str(blocker), "is a file")


def test_export_onto_a_folder_is_one_line(results, tmp_path, capsys):
    folder = tmp_path / "t.csv"
    folder.mkdir()
    status, lines = call(capsys, "export", "--results", str(results), "-o", str(folder))
    assert_one_line_error(status, lines, str(folder), "cannot write")


def many_trials(path: Path, count: int) -> None:
    with Store(path) as opened:
        for seed in range(count):
            cfg = TrialConfig(problem="p", optimizer="o", hyperparams={"lr": 0.1}, budget=Budget("steps", 10),
                              batch_size=8, seed=seed)
            opened.save(cfg, TrialResult(cfg.trial_id, "ok", steps=10, samples=80, final={"loss": 0.5},
                                         best={"loss": 0.5}, curve=[], device="cpu", wall_seconds=1.0))


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))


@pytest.mark.slow
def test_an_export_cut_by_the_file_size_limit_is_one_line_and_keeps_the_old_file(tmp_path):
    results, out = tmp_path / "r.sqlite", tmp_path / "t.csv"
    many_trials(results, 300)  # a CSV of well over 40 kB
    out.write_text("old export\n")
    before = digest(results)
    done = subprocess.run([sys.executable, "-m", "bench_core.cli", "export", "--results", str(results), "-o",
                           str(out)], capture_output=True, text=True, env=ENV, timeout=300,
                          preexec_fn=_limit_file_size)
    assert_one_line_error(done.returncode, done.stderr.splitlines(), str(out), "File too large")
    assert out.read_text() == "old export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.sqlite", "t.csv"]
    assert digest(results) == before


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
@pytest.mark.parametrize("old", [True, False])
def test_an_export_stopped_mid_write_leaves_the_old_file_or_none(results, tmp_path, capsys, monkeypatch, failure,
                                                                 old):
    """Disk full (one line) or the process stopped (the interrupt reaches main): never a truncated CSV."""
    out = tmp_path / "t.csv"
    if old:
        out.write_text("old export\n")
    real = pd.DataFrame.to_csv

    def half_then_fail(frame: pd.DataFrame, target: Path, **kwargs: object) -> None:
        real(frame.head(1), target, **kwargs)
        raise failure

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    status, lines = call(capsys, "export", "--results", str(results), "-o", str(out))
    if isinstance(failure, OSError):
        assert_one_line_error(status, lines, str(out), "No space left on device")
    else:
        assert status == 130
    assert (out.read_text() == "old export\n") if old else not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.sqlite", "t.csv"] if old else ["r.sqlite"]


def test_a_report_that_runs_out_of_disk_is_one_line_and_keeps_the_old_readme(results, tmp_path, capsys,
                                                                              monkeypatch):
    out = tmp_path / "out"
    readme = out / "custom" / "README.md"
    readme.parent.mkdir(parents=True)
    readme.write_text("old report\n")
    real = Path.write_text

    def full(path: Path, text: str, *args: object, **kwargs: object) -> int:
        if path.name.endswith(".partial"):
            real(path, text[:100], *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    status, lines = call(capsys, "report", "--results", str(results), "--report-dir", str(out))
    assert_one_line_error(status, lines, "No space left on device", f"cannot write the report to {readme}:")
    assert readme.read_text() == "old report\n"
    assert not [p for p in readme.parent.iterdir() if p.name.endswith(".partial")]


def copies_of_every_trial(path: Path, copies: int) -> None:
    """Multiply the stored trials ``copies`` times under new ids, in one statement: a big store, quickly."""
    db = sqlite3.connect(path)
    try:
        columns = [row[1] for row in db.execute("PRAGMA table_info(trials)") if row[1] != "trial_id"]
        names = ", ".join(columns)
        with db:
            db.execute(f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                       f"INSERT INTO trials (trial_id, {names}) SELECT trial_id || '-' || i, {names} "
                       "FROM trials, n", (copies,))
    finally:
        db.close()


def _export_started(folder: Path, out: Path) -> bool:
    """Whether bytes of the new export exist: in a temporary file beside ``out``, or in ``out`` itself."""
    try:
        return out.stat().st_size != len("old export\n") or any(
            p.stat().st_size for p in folder.glob(f".{out.name}.*.partial"))
    except FileNotFoundError:  # the temporary file was just moved into place, or out is being replaced
        return True


@pytest.mark.slow
def test_an_export_killed_mid_write_leaves_the_old_file_or_a_complete_one(results, tmp_path):
    """SIGKILL as soon as the export has written anything, to a temporary file or to the destination (whenever
    that is): no finally block runs, yet the destination is the old export or a complete new one."""
    copies_of_every_trial(results, 25_000)
    out = tmp_path / "t.csv"
    out.write_text("old export\n")
    export = subprocess.Popen([sys.executable, "-m", "bench_core.cli", "export", "--results", str(results), "-o",
                               str(out)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while export.poll() is None and not _export_started(tmp_path, out):
            time.sleep(0.005)
    finally:
        if export.poll() is None:
            os.kill(export.pid, signal.SIGKILL)
        export.wait(timeout=60)
    text = out.read_text()
    assert text == "old export\n" or len(pd.read_csv(out)) == 2 * 25_001, text[:200]


def test_a_read_only_reader_sees_trials_still_in_the_write_ahead_log(results, tmp_path, capsys, monkeypatch):
    """With a ``-wal`` present the read-only connection is ``mode=ro``, which reads the log (``immutable=1``
    would miss these trials); a writer holds the log open meanwhile, as a running sweep does."""
    monkeypatch.setattr(store_module, "_writable", lambda path: False)
    writer = sqlite3.connect(results, isolation_level=None)
    try:
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("UPDATE trials SET steps = 4242")
        assert (results.parent / "r.sqlite-wal").stat().st_size > 0
        status, lines = call(capsys, "export", "--results", str(results), "-o", str(tmp_path / "t.csv"))
        assert status == 0, lines
    finally:
        writer.close()
    assert list(pd.read_csv(tmp_path / "t.csv")["steps"]) == [4242, 4242]


def test_run_on_a_file_it_may_not_write_is_one_line_and_leaves_it_unchanged(results, capsys, monkeypatch):
    """Simulated (``os.access`` says no), since root ignores permissions; the real case is the skipped test above."""
    real = os.access
    monkeypatch.setattr(store_module.os, "access",
                        lambda path, mode: False if Path(path) == results and mode & os.W_OK else real(path, mode))
    before = digest(results)
    status, lines = call(capsys, "run", *run(results=results, extra=("--no-report", "--rerun")))
    assert_one_line_error(status, lines, "cannot write results file", str(results), "read-only")
    assert digest(results) == before
