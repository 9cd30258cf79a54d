"""A sweep interrupted at random points (SIGINT and SIGKILL, several times) and resumed holds every trial
exactly once, with the same results as a sweep that was never interrupted."""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

try:
    import psutil
except ImportError:  # optional: only the "no worker left behind" check needs it
    psutil = None

pytestmark = pytest.mark.slow

ENV = os.environ | {"OPTBENCH_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONUNBUFFERED": "1"}
# 180 analytic trials in 12 vectorised groups of 15 (4 optimizers on Rosenbrock, and on the quadratic at two
# batch sizes; each group: 5 learning rates x 3 seeds), a second or so each, so that each interruption cuts
# into groups in flight. Analytic problems give bit-identical results whatever the number of workers or
# threads and however trials are grouped (a resumed sweep regroups what is left), so an interrupted
# --workers 2 sweep can be compared with a --workers 1 one.
SWEEP = ["run", "--problem", "quadratic,rosenbrock", "--optimizer", "sgd,adam,momentum,rmsprop",
         "--lr", "log:0.001:0.1:5", "--seeds", "0,1,2", "--batch-size", "8,32", "--steps", "1000", "--no-report",
         "--no-progress"]
TOTAL = 4 * 5 * 3 + 4 * 2 * 5 * 3
# Ctrl-C to the driver alone, a kill -9 of the whole session, Ctrl-C as a terminal sends it (to the whole
# foreground process group, workers included, once they are up), and another kill -9.
INTERRUPTIONS = [(signal.SIGINT, "driver"), (signal.SIGKILL, "group"), (signal.SIGINT, "group"),
                 (signal.SIGKILL, "group")]
DONE = {"ok", "diverged"}
WORKERS = 2


def command(results: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "bench_core.cli", *SWEEP, "--results", str(results), "--workers", str(workers)]


def test_sweep_interrupted_at_random_points_and_resumed_holds_every_trial_exactly_once(tmp_path, capsys):
    from bench_core.cli import main

    rng = random.Random(20240611)
    results, reference = tmp_path / "interrupted.sqlite", tmp_path / "uninterrupted.sqlite"
    assert main([*command(results, WORKERS)[3:], "--dry-run"]) == 0
    assert f": {TOTAL} trials on cpu" in capsys.readouterr().out
    assert not results.exists()
    # The same sweep, never interrupted, in one process: run alongside to use the cores the others leave idle.
    with (tmp_path / "uninterrupted.txt").open("w") as log:
        uninterrupted = subprocess.Popen(command(reference, 1), env=ENV, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
    try:
        _interrupt_resume_and_compare(tmp_path, rng, results, reference, uninterrupted)
    finally:
        _kill_group(uninterrupted)


def _interrupt_resume_and_compare(tmp_path: Path, rng: random.Random, results: Path, reference: Path,
                                  uninterrupted: subprocess.Popen) -> None:
    seen: dict[str, str] = {}  # trial_id -> finished_at of every trial stored so far
    mid_sweep = 0
    for round_, (signum, target) in enumerate(INTERRUPTIONS):
        threshold = len(seen) + rng.randint(2, 8)
        stderr_path = tmp_path / f"stderr{round_}.txt"
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(command(results, WORKERS), env=ENV, stdout=subprocess.DEVNULL,
                                       stderr=stderr, start_new_session=True)
        try:
            # A Ctrl-C to the group is sent once the workers ignore it (checked before the trials are counted, so
            # the signal follows the threshold at once); where that cannot be seen, only the driver gets it.
            if target == "group" and signum == signal.SIGINT and not _workers_ignore_sigint(process.pid, timeout=30):
                target = "driver"
            finished_by_itself = not _wait_for_stored(process, results, threshold, timeout=120)
            if not finished_by_itself:
                _signal(process, signum, target)
            try:
                returncode = process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pytest.fail(f"round {round_}: optbench still runs 20 s after {signum.name} "
                            f"(stderr: {stderr_path.read_text()!r})")
            message = stderr_path.read_text()
            if returncode == 0:  # the sweep finished before the signal: a race the thresholds make unlikely
                finished_by_itself = True
            elif signum == signal.SIGINT:
                assert returncode == 130, message
                assert "interrupted; finished trials are stored" in message and "Traceback" not in message, \
                    message
            else:
                assert returncode == -signal.SIGKILL, message
            if signum == signal.SIGINT or finished_by_itself:
                assert _live_members(process.pid, grace=5) == [], f"round {round_}: workers outlive optbench"
        finally:
            _kill_group(process)  # a SIGKILL'd session's workers die with it, as when a terminal is killed
        assert _live_members(process.pid, grace=10) == [], f"round {round_}: workers survive SIGKILL"

        rows = _snapshot(results, tmp_path / f"copy{round_}")
        assert set(rows["status"].values()) <= DONE, f"round {round_}: {rows['status']}"
        assert len(rows["finished_at"]) >= max(len(seen), threshold if not finished_by_itself else 0)
        changed = {tid for tid, when in seen.items() if rows["finished_at"].get(tid) != when}
        assert not changed, f"round {round_}: stored trials ran again or vanished: {sorted(changed)}"
        seen = rows["finished_at"]
        if not finished_by_itself and len(seen) < TOTAL:
            mid_sweep += 1
    assert mid_sweep >= 3, "the sweep must be interrupted mid-way at least three times"
    assert len(seen) < TOTAL, "the resumed run must have trials left to run"

    resumed = subprocess.run(command(results, WORKERS), capture_output=True, text=True, env=ENV, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{TOTAL} trials: {len(seen)} already stored, ran {TOTAL - len(seen)} (" in resumed.stderr, \
        resumed.stderr

    assert uninterrupted.wait(timeout=300) == 0, (tmp_path / "uninterrupted.txt").read_text()

    final = _snapshot(results, tmp_path / "final")
    assert len(final["finished_at"]) == TOTAL
    assert {tid: final["finished_at"].get(tid) for tid in seen} == seen, "the resumed run ran stored trials again"
    with sqlite3.connect(results) as db:
        listed = {row[0] for row in db.execute("SELECT trial_id FROM suite_trials WHERE suite = 'custom'")}
    db.close()

    from bench_core.store import Store

    with Store(results) as store:
        after = store.trials()
    with Store(reference) as store:
        expected = store.trials()
    assert len(after) == TOTAL and after["trial_id"].is_unique
    # the sweeps ran vectorised (a resumed run regroups what is left, which may leave a trial alone)
    assert (expected["group_size"] == 15).all() and (after["group_size"] > 1).sum() >= TOTAL // 2
    assert set(after["trial_id"]) == set(expected["trial_id"]) == listed
    assert set(after["status"]) <= DONE
    ours, theirs = after.set_index("trial_id"), expected.set_index("trial_id").loc[after["trial_id"]]
    assert list(ours["status"]) == list(theirs["status"])
    for column in ("steps", "samples", "final.train_loss", "best.train_loss"):
        differ = [tid for tid, a, b in zip(ours.index, ours[column], theirs[column], strict=True)
                  if not (a == b or (math.isnan(a) and math.isnan(b)))]
        assert not differ, f"{column} depends on the interruptions for trials {differ}"


def _count(path: Path) -> int:
    """Trials stored so far, read while optbench writes; 0 while the file is absent, new or locked."""
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return 0
    try:
        return db.execute("SELECT count(*) FROM trials").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        db.close()


def _wait_for_stored(process: subprocess.Popen, path: Path, threshold: int, timeout: float) -> bool:
    """Wait until ``path`` holds ``threshold`` trials (True) or ``process`` ended by itself (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _count(path) >= threshold:
            return True
        if process.poll() is not None:
            return _count(path) >= threshold
        time.sleep(0.02)
    pytest.fail(f"{path} never held {threshold} trials within {timeout} s")


def _signal(process: subprocess.Popen, signum: signal.Signals, target: str) -> None:
    with contextlib.suppress(ProcessLookupError):  # it finished by itself in between
        if target == "group":
            os.killpg(process.pid, signum)  # start_new_session: the group id is the driver's pid
        else:
            process.send_signal(signum)


def _workers_ignore_sigint(group: int, timeout: float) -> bool:
    """Wait until the pool's workers are there and every process of ``group`` but its leader (the driver)
    ignores SIGINT, as pool workers do once started (a Ctrl-C while a worker still imports torch kills that
    worker with a traceback: a different case). False where this cannot be seen (no psutil or no /proc)."""
    if psutil is None or not Path("/proc/self/status").exists():
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        members, masks = _live_members(group), []
        if group not in members:  # the driver is gone: nothing left to signal
            return True
        for pid in members:
            if pid != group:
                with contextlib.suppress(OSError, StopIteration):
                    status = Path(f"/proc/{pid}/status").read_text().splitlines()
                    masks.append(int(next(line.split()[1] for line in status if line.startswith("SigIgn:")), 16))
        if len(masks) >= WORKERS and all(mask & (1 << (signal.SIGINT - 1)) for mask in masks):
            return True
        time.sleep(0.05)
    return True  # send it anyway: a worker that never ignores Ctrl-C is worth a failure


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _live_members(group: int, grace: float = 0.0) -> list[int]:
    """Pids of live (not zombie) processes of process group ``group``, after up to ``grace`` seconds for them
    to go; [] without psutil."""
    if psutil is None:
        return []
    deadline = time.monotonic() + grace
    while True:
        members = []
        for proc in psutil.process_iter():
            try:
                if os.getpgid(proc.pid) == group and proc.status() != psutil.STATUS_ZOMBIE:
                    members.append(proc.pid)
            except (ProcessLookupError, psutil.Error):
                continue
        if not members or time.monotonic() >= deadline:
            return members
        time.sleep(0.1)


def _snapshot(path: Path, scratch: Path) -> dict[str, dict[str, str]]:
    """Integrity-check a copy of the results file (with its write-ahead log), leaving the original exactly as
    the interrupted run left it for the next run to recover; return each trial's finished_at and status."""
    scratch.mkdir()
    for suffix in ("", "-wal"):
        if Path(f"{path}{suffix}").exists():
            shutil.copyfile(f"{path}{suffix}", scratch / f"{path.name}{suffix}")
    db = sqlite3.connect(scratch / path.name)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = db.execute("SELECT trial_id, finished_at, status FROM trials").fetchall()
    finally:
        db.close()
    ids = [row[0] for row in rows]
    assert len(ids) == len(set(ids))
    return {"finished_at": {row[0]: row[1] for row in rows}, "status": {row[0]: row[2] for row in rows}}


def test_ctrl_c_while_workers_are_still_starting_is_quiet(tmp_path):
    """Workers are spawned with Ctrl-C already ignored: a Ctrl-C to the whole group while they import torch
    must not print their tracebacks, only the driver's one-line message."""
    process = subprocess.Popen(command(tmp_path / "r.sqlite", WORKERS), env=ENV, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_children(process.pid)) < WORKERS:
            time.sleep(0.01)
        assert len(_children(process.pid)) >= WORKERS, "the pool never started"
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        _kill_group(process)
    assert process.returncode == 130, err
    assert "interrupted; finished trials are stored" in err and "Traceback" not in err, err


def _children(pid: int) -> list[str]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return found.stdout.split()
