"""Executors: where trials run. One interface, several back ends.

An executor takes groups of trial configs (the unit of work: today one trial each) and
yields ``(group, results)`` pairs as they finish, in any order. Results travel back to
the driver, which alone writes the store. Workers rebuild the plugin catalog themselves
from the same plugin paths, so a config (plain data) is all that crosses the process
boundary.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import torch

from bench_core.catalog import Catalog, load_catalog
from bench_core.context import RunContext
from bench_core.errors import UserError
from bench_core.interrupts import trust_every_interrupt_to_code
from bench_core.runner import ProblemCache, run_trials
from bench_core.time_limits import AUTO, TimeLimit
from bench_core.trial import Status, TrialConfig, TrialResult

Group = list[TrialConfig]


class Executor(ABC):
    """Runs groups of trials and yields each group with its results as it finishes."""

    @abstractmethod
    def run(self, groups: Iterable[Group]) -> Iterator[tuple[Group, list[TrialResult]]]:
        """Yield ``(group, results)`` for every group, in completion order."""

    def close(self, cancel: bool = False) -> None:
        """Release workers; with ``cancel``, drop work not yet started. Nothing to do by default."""
        return None

    def interrupt(self) -> list[tuple[Group, list[TrialResult]]]:
        """Stop at once (Ctrl-C): drop queued work, stop in-flight work, and return the groups that had
        finished but were not yielded yet, so the driver can store them before it exits.

        Nothing is in flight in between yields of an in-process run, so there is nothing to return by default.
        """
        return []

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(cancel=exc_type is not None)


class InProcessExecutor(Executor):
    """Runs trials one by one in the calling process (``--workers 1``)."""

    def __init__(self, catalog: Catalog, problems: ProblemCache | None = None, threads: int | None = None,
                 time_limit: TimeLimit = AUTO) -> None:
        self.problems = problems or ProblemCache(catalog)
        self.threads = threads or TRIAL_THREADS
        self.time_limit = time_limit

    def run(self, groups: Iterable[Group]) -> Iterator[tuple[Group, list[TrialResult]]]:
        for group in groups:
            yield group, run_trials(group, self.problems, self.threads, self.time_limit)


class ProcessPoolExecutorBackend(Executor):
    """A local pool of worker processes (``--workers N``).

    Workers start with ``spawn`` (safe with CUDA and with torch's thread pools) with Ctrl-C
    blocked, then ignore it: the driver handles it. A worker that dies breaks the pool, which is
    restarted; only the trial that killed it is recorded as an error (see :meth:`run`).

    Each trial runs with ``threads_per_worker`` torch threads (default :data:`TRIAL_THREADS`), as
    in-process, so both store bit-identical numbers. Workers die with their driver
    (:func:`_die_with_parent`): a ``kill -9`` of the driver leaves no worker (some hundreds of MB
    each) running without a parent. Each worker is replaced after :data:`MAX_TASKS_PER_CHILD` trials,
    so memory a plugin leaks stays bounded. On Ctrl-C,
    :meth:`interrupt` kills the workers instead of waiting for their trials to end.
    """

    def __init__(self, workers: int, plugin_paths: Sequence[str] = (), autoload: bool | None = None,
                 threads_per_worker: int | None = None, time_limit: TimeLimit = AUTO,
                 data_dir: str | None = None) -> None:
        self.workers = workers
        self.time_limit = time_limit
        self.threads = threads_per_worker or TRIAL_THREADS
        self.initargs = (tuple(plugin_paths), autoload, self.threads, data_dir)
        self._in_flight: dict[Future, Group] = {}
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(*self.initargs, os.getpid()),
                                   max_tasks_per_child=MAX_TASKS_PER_CHILD)

    def _may_spawn(self) -> bool:
        """Whether a submit may start a worker: CPython's pool starts them on demand until it has ``workers``.

        Where the pool's processes cannot be seen, assume it may.
        """
        processes = getattr(self.pool, "_processes", None)
        return processes is None or len(processes) < self.workers

    def _submit(self, group: Group) -> None:
        # A submit that spawns a worker does so with Ctrl-C blocked, which the worker inherits; the
        # driver gets a Ctrl-C pressed meanwhile as soon as the submit returns (or at once, through
        # another of its threads), so none is lost.
        with _sigint_blocked() if self._may_spawn() else contextlib.nullcontext():
            self._in_flight[self.pool.submit(_run_in_worker, group, self.time_limit)] = group

    def run(self, groups: Iterable[Group]) -> Iterator[tuple[Group, list[TrialResult]]]:
        """Yield groups as they finish. A worker that dies (``os._exit``, a segfault, killed) breaks the whole
        pool and every trial in flight with it, and nothing says whose trial killed it. So: with one group in
        flight, that group is the culprit and its trials are errors; with more, each of them is a suspect and
        runs again alone on the restarted pool, where a second death convicts it and the innocent ones finish.
        """
        pending = iter(groups)
        in_flight = self._in_flight
        suspects: deque[Group] = deque()
        limit = 2 * self.workers  # keep workers busy without queueing the whole sweep
        while True:
            if suspects:
                if not in_flight:
                    self._submit(suspects.popleft())
            else:
                for group in pending:
                    self._submit(group)
                    if len(in_flight) >= limit:
                        break
            if not in_flight:
                return
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            broken: BrokenProcessPool | None = None
            for future in done:
                group = in_flight.pop(future)
                try:
                    results = future.result()
                except BrokenProcessPool as exc:
                    broken = exc
                    in_flight[future] = group  # counted with the others below
                    continue
                yield group, results
            if broken is not None:
                hit = []
                for future, group in list(in_flight.items()):
                    if future.done() and not future.cancelled() and future.exception() is None:
                        yield group, future.result()  # it finished before the pool broke
                    else:
                        hit.append(group)
                in_flight.clear()
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = self._start()
                if len(hit) == 1:
                    yield hit[0], [_lost(config, broken) for config in hit[0]]
                else:
                    suspects.extend(hit)

    def close(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=not cancel, cancel_futures=cancel)

    def interrupt(self) -> list[tuple[Group, list[TrialResult]]]:
        """Kill the workers (their trials would take as long as they take), then return the groups whose
        results had reached this process: futures already done with a result, not yet yielded."""
        processes = dict(getattr(self.pool, "_processes", None) or {})  # shutdown() forgets them
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in processes.values():
            with contextlib.suppress(Exception):
                process.kill()
        for process in processes.values():
            with contextlib.suppress(Exception):
                process.join(timeout=5)
        finished = []
        for future, group in list(self._in_flight.items()):
            if future.done() and not future.cancelled() and future.exception() is None:
                finished.append((group, future.result()))
        self._in_flight.clear()
        return finished


#: Torch threads a trial runs with, whatever the executor, unless ``--threads`` says otherwise. The thread
#: count changes the order of floating-point reductions (``digits_cnn`` curves differed by up to 1.1e-7
#: between ``--workers 1`` and ``--workers 2`` when each executor chose its own), so it is a decision of the
#: trial, not of the executor: one thread per trial, and one trial per core (the default ``--workers``).
TRIAL_THREADS = 1
#: A pool worker is replaced by a fresh process after this many trials: a plugin that leaks memory (or
#: a problem cache that grows with every problem a worker meets) cannot grow a worker for ever, and
#: restarting a worker (import torch, load the catalog) costs seconds against trials that take far longer.
MAX_TASKS_PER_CHILD = 50
#: How often a worker's watchdog checks that its driver is still alive (where PR_SET_PDEATHSIG is missing).
PARENT_POLL_SECONDS = 0.5

#: Executor kinds ``--executor`` accepts; ``auto`` is in-process for one worker, a process pool for more.
EXECUTORS = ("auto", "inprocess", "pool", "dask")


def check_executor(kind: str, scheduler: str | None) -> None:
    """A UserError for an unknown executor kind, or a scheduler address given to one that takes none."""
    if kind not in EXECUTORS:
        raise UserError(f"--executor {kind!r}: choose one of {', '.join(EXECUTORS)}")
    if scheduler is not None and kind != "dask":
        raise UserError(f"--scheduler {scheduler}: only the dask executor takes a scheduler (add --executor dask)")


def make_executor(workers: int, context: RunContext | Catalog, kind: str = "auto", scheduler: str | None = None,
                  threads: int | None = None, time_limit: TimeLimit = AUTO) -> Executor:
    """The executor ``kind`` with ``workers`` workers for a run in ``context`` (a bare catalog: the default context).

    The in-process executor reuses the problems the context has built; workers elsewhere rebuild the
    context from its plugin paths, autoload setting and data folder. ``scheduler`` is the address of a
    running Dask scheduler; without it the Dask executor starts a local cluster of ``workers``
    processes. ``time_limit``: each trial's (see :mod:`bench_core.time_limits`).
    """
    check_executor(kind, scheduler)
    context = context if isinstance(context, RunContext) else RunContext(context)
    if kind == "dask":
        from bench_core.dask_executor import DaskExecutor

        return DaskExecutor(context.plugin_paths, context.autoload, scheduler=scheduler, workers=workers,
                            threads_per_worker=threads, time_limit=time_limit, data_dir=context.data_dir)
    if kind == "inprocess" or (kind == "auto" and workers <= 1):
        return InProcessExecutor(context.catalog, context.problems, threads, time_limit)
    return ProcessPoolExecutorBackend(workers, context.plugin_paths, context.autoload, threads, time_limit,
                                      context.data_dir)


def choose_executor(kind: str, workers: int, units: Sequence[Group]) -> str:
    """The executor kind to use: ``kind`` itself, unless it is ``auto``.

    ``auto`` runs in this process when there is one worker, or one unit of work (one trial, or one
    vectorised group): a pool would add its start-up (seconds: each worker imports torch and loads the
    plugins) and run the same one unit anyway. Otherwise a process pool of ``workers``.
    """
    if kind != "auto":
        return kind
    return "inprocess" if workers <= 1 or len(units) <= 1 else "pool"


def default_workers(device: str, trials: int) -> int:
    """One worker per core on CPU (never more than trials); one process per GPU."""
    if device.startswith("cuda"):
        return 1
    return max(1, min(os.cpu_count() or 1, trials))


def _lost(config: TrialConfig, why: object) -> TrialResult:
    return TrialResult(config.trial_id, Status.ERROR, error=f"worker process died before finishing: {why}",
                       device=config.device)


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block Ctrl-C in this thread for a moment, so workers spawned meanwhile start with it blocked.

    A signal mask survives fork and exec: a worker then cannot be interrupted while it is
    still importing torch, before its initializer ignores Ctrl-C for good (the driver alone
    handles it). A Ctrl-C sent to the whole process reaches another of the driver's threads
    meanwhile, so the main thread's handler only notes it until the spawn is done (a
    ``KeyboardInterrupt`` halfway through writing a worker's start-up data would leave that
    worker dying with a traceback); it is then raised again, so none is lost.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    pressed: list[int] = []
    handler = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not None:
        handler = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        if pressed:
            signal.raise_signal(signal.SIGINT)  # through the real handler now


_worker_problems: ProblemCache | None = None


def _die_with_parent(parent: int) -> None:
    """Make this worker end when process ``parent`` (its driver) dies, however it dies (``kill -9`` included).

    On Linux the kernel does it: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``. Everywhere, a daemon thread also
    polls the parent pid and leaves with ``os._exit`` once this process has been handed to another parent;
    it also covers a driver that died before the ``prctl`` call.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="optbench-parent-watch", daemon=True).start()


def _init_worker(plugin_paths: tuple[str, ...], autoload: bool | None, threads: int, data_dir: str | None,
                 parent: int) -> None:
    global _worker_problems
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    trust_every_interrupt_to_code()
    torch.set_num_threads(threads)
    _worker_problems = ProblemCache(load_catalog(plugin_paths, autoload=autoload), data_dir)


def _run_in_worker(group: Group, time_limit: TimeLimit) -> list[TrialResult]:
    assert _worker_problems is not None, "worker not initialised"
    return run_trials(group, _worker_problems, torch.get_num_threads(), time_limit)
