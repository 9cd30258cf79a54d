"""A Dask executor: runs a sweep on a Dask cluster, local or remote.

It moves a sweep that outgrows one machine onto a cluster without changing what is
stored: like the process pool, it ships groups of trial configs (plain, picklable data)
to workers and hands their results back to the driver, which alone writes the store.
Workers never touch the store.

Each worker process rebuilds the plugin catalog itself from the plugin paths (and the
autoload setting) the driver was given, once per process, and keeps its built problems
between tasks. So every ``--plugins`` file or folder must exist at the same path on the
workers, and every installed plugin package (and optbench itself) must be importable
there too.

Without a scheduler address the executor starts a :class:`distributed.LocalCluster` of
worker processes on the loopback interface only (no dashboard) and shuts it down on
:meth:`DaskExecutor.close`. With one, it connects to that scheduler and leaves the
cluster running when it is done.

Torch threads per task: on a local cluster each of the ``workers`` processes runs one
task at a time with ``threads_per_worker`` torch threads (default:
:data:`bench_core.executors.TRIAL_THREADS`, as every executor, so results do not depend on it).
On a remote cluster a task uses ``threads_per_worker`` threads if given and 1 otherwise (Dask runs one
task per worker thread, so one torch thread per task fills a worker's cores).

A task that fails (its worker died, the connection dropped, Dask gave up on it) is
recorded as an error result for each trial of its group, and the sweep goes on. Dask's
own rules for dying workers apply: a worker that dies takes the tasks queued on it along
with the one it was running, and the scheduler reruns each of them on another worker
until it has seen ``distributed.scheduler.allowed-failures`` (default 3) workers die
while holding it; only then does the task fail here. So a trial that crashes its worker
every time costs that many worker restarts, and with ``allowed-failures`` set to 0 the
tasks that were merely queued behind it fail with it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import CancelledError
from typing import Any

from bench_core.catalog import load_catalog
from bench_core.errors import UserError
from bench_core.executors import TRIAL_THREADS, Executor, Group, _lost
from bench_core.runner import ProblemCache, run_trials
from bench_core.time_limits import AUTO, TimeLimit
from bench_core.trial import TrialResult

#: How long to wait for a remote scheduler to answer before giving up.
CONNECT_TIMEOUT = "10s"
#: How long close() waits for the client and cluster to shut down.
CLOSE_TIMEOUT = 10
#: A sweep whose cluster has had no worker for this many seconds ends with one line instead of waiting for ever
#: (long enough for a nanny to restart a killed worker, or for an operator to start the first ones).
NO_WORKERS_PATIENCE = 120.0
#: How often the driver asks the scheduler how many workers it has, while it waits for results.
WORKER_CHECK_SECONDS = 2.0
#: How often the driver looks for finished tasks while it waits.
POLL_SECONDS = 0.05


class DaskExecutor(Executor):
    """Runs groups of trials as tasks on a Dask cluster (started locally, or reached by address).

    :param plugin_paths: ``--plugins`` paths; the workers load them again, so they must exist there.
    :param autoload: passed to :func:`~bench_core.catalog.load_catalog` on the workers.
    :param scheduler: address of a running Dask scheduler (``tcp://HOST:8786``); None starts a local cluster.
    :param workers: worker processes of the local cluster; ignored with ``scheduler``.
    :param threads_per_worker: torch threads per task (see the module docstring for the defaults).
    :param data_dir: the run's data folder, for the workers' problem builds (``None``: their user default).
    :param time_limit: each trial's; tasks run in worker threads, where only the runner's per-step check
        applies (see :mod:`bench_core.time_limits`).
    :raises UserError: when ``distributed`` is not installed or the scheduler cannot be reached.
    """

    def __init__(self, plugin_paths: Sequence[str] = (), autoload: bool | None = None,
                 scheduler: str | None = None, workers: int = 2, threads_per_worker: int | None = None,
                 time_limit: TimeLimit = AUTO, data_dir: str | None = None) -> None:
        distributed = _distributed()
        self.time_limit = time_limit
        self.data_dir = data_dir
        self._distributed = distributed
        self.plugin_paths = tuple(str(p) for p in plugin_paths)
        self.autoload = autoload
        self.scheduler = scheduler
        self.cluster: Any = None
        self.client: Any = None
        self._futures: dict[str, Any] = {}
        if scheduler is None:
            self.workers = max(1, workers)
            self.threads = threads_per_worker or TRIAL_THREADS
            self.cluster = distributed.LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                                    host="127.0.0.1", dashboard_address=None)
            try:
                self.client = distributed.Client(self.cluster, set_as_default=False)
            except BaseException:
                self.cluster.close()
                raise
        else:
            self.threads = threads_per_worker or 1
            self.client = _connect(scheduler)
            self.workers = max(1, sum(self.client.nthreads().values()))

    def run(self, groups: Iterable[Group]) -> Iterator[tuple[Group, list[TrialResult]]]:
        if self.client is None:
            raise RuntimeError("the dask executor is closed")
        distributed = self._distributed
        pending = iter(groups)
        limit = 2 * self.workers  # keep workers busy without queueing the whole sweep
        in_flight: dict[str, tuple[Any, Group]] = {}
        finished = distributed.as_completed(loop=self.client.loop)

        lost: list[Group] = []  # a group left unsubmitted because the client lost its scheduler

        def submit_next() -> None:
            if lost:
                return
            for group in pending:
                if self.client.status in ("closing", "closed"):  # it gave up reconnecting: a submit would hang
                    lost.append(group)
                    return
                future = self.client.submit(_run_on_worker, group, self.plugin_paths, self.autoload, self.threads,
                                            self.time_limit, self.data_dir, pure=False)
                in_flight[future.key] = (future, group)
                self._futures[future.key] = future
                finished.add(future)
                return

        for _ in range(limit):
            submit_next()
        while not finished.is_empty():
            for future in self._next_done(finished):
                _, group = in_flight.pop(future.key)
                self._futures.pop(future.key, None)
                try:
                    results = future.result()
                except (Exception, CancelledError) as exc:  # KilledWorker, CommClosedError, a cancelled task ...
                    results = [_lost(config, f"{type(exc).__name__}: {exc}") for config in group]
                future.release()
                submit_next()  # before yielding, so the cluster stays busy while the driver stores results
                yield group, results
        if lost:
            raise UserError(f"the Dask scheduler {self.scheduler or 'of the local cluster'} is gone and the client "
                            "gave up reconnecting; finished trials are stored, run the same command again to resume")

    def _next_done(self, finished: Any) -> list[Any]:
        """The futures finished so far, waiting until there is one, and watching meanwhile that the cluster still
        has workers: tasks wait for workers silently, so a cluster whose every worker is gone (killed, not
        restarted, never started) would otherwise keep the sweep waiting for ever.

        :raises UserError: after :data:`NO_WORKERS_PATIENCE` seconds without a single worker.
        """
        alone_since = None
        checked = 0.0
        while not finished.has_ready():
            now = time.monotonic()
            if now - checked >= WORKER_CHECK_SECONDS:
                checked = now
                if self._worker_count() == 0:
                    alone_since = alone_since or now
                    if now - alone_since >= NO_WORKERS_PATIENCE:
                        raise UserError(
                            f"the Dask cluster {self.scheduler or '(local)'} has had no workers for "
                            f"{NO_WORKERS_PATIENCE:g} s; finished trials are stored: start workers and run the same "
                            "command again to resume")
                else:
                    alone_since = None
            time.sleep(POLL_SECONDS)
        return finished.next_batch(block=False)

    def _worker_count(self) -> int | None:
        """Workers the scheduler knows now; ``None`` where it cannot be asked (a lost scheduler is handled apart)."""
        try:
            return len(self.client.scheduler_info()["workers"])
        except Exception:
            return None

    def close(self, cancel: bool = False) -> None:
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        futures, self._futures = list(self._futures.values()), {}
        if client is not None:
            if cancel and futures:
                with contextlib.suppress(Exception):
                    client.cancel(futures)
            with contextlib.suppress(Exception):
                client.close(timeout=CLOSE_TIMEOUT)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=CLOSE_TIMEOUT)


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise UserError("the dask executor needs the 'dask' extra: pip install 'optbench[dask]'") from None
    return distributed


def _connect(scheduler: str) -> Any:
    """A client of the scheduler at ``scheduler``, or a UserError where none answers within CONNECT_TIMEOUT."""
    try:
        return _distributed().Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise UserError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler there ({exc})") from None


def check_scheduler(scheduler: str) -> None:
    """Raise a UserError unless a Dask scheduler answers at ``scheduler``.

    The command line calls it before it opens the results file, so an address that leads nowhere writes
    nothing (the executor itself connects only once the sweep starts, after the store is open).
    """
    client = _connect(scheduler)
    with contextlib.suppress(Exception):
        client.close(timeout=CLOSE_TIMEOUT)


_worker_problems: dict[tuple[tuple[str, ...], bool | None, str | None], ProblemCache] = {}


def _run_on_worker(group: Group, plugin_paths: tuple[str, ...], autoload: bool | None,
                   threads: int, time_limit: TimeLimit = AUTO, data_dir: str | None = None) -> list[TrialResult]:
    """The task: run one group on a worker, with a catalog built once per worker process."""
    key = (tuple(plugin_paths), autoload, data_dir)
    problems = _worker_problems.get(key)
    if problems is None:
        problems = _worker_problems[key] = ProblemCache(load_catalog(plugin_paths, autoload=autoload), data_dir)
    return run_trials(group, problems, threads, time_limit)
