"""Shared fixtures. Every test sees only optbench's own plugins, whatever else is installed, and runs torch with one
thread (tests that are about thread counts set their own)."""

from __future__ import annotations

import functools
import os
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["OPTBENCH_DISABLE_PLUGIN_AUTOLOAD"] = "1"
# One torch (OpenMP) thread, as every trial runs (bench_core.executors.TRIAL_THREADS), here and in every process
# a test starts: the tests train tiny models, for which a second thread only waits on the first, and on a loaded
# 2-core machine each of torch's parallel regions then waits for a core (the kit's 300 steps on a 4x3 regression
# took 4.8 s of CPU with two threads against 0.12 s with one). A test about thread counts sets its own.
os.environ["OMP_NUM_THREADS"] = "1"

import torch

from bench_core.catalog import Catalog, load_catalog
from bench_core.data import DATA_DIR_ENV

torch.set_num_threads(1)  # this process too, should torch have started before OMP_NUM_THREADS was set


@functools.cache
def _builtin_catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The built-in catalog, loaded once (and shared with ``builtin_checks`` below)."""
    return _builtin_catalog()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "builtin_checks(kind, names=None, slow=(), **kwargs): one test per conformance check "
        "(bench_core.testing.parametrize_with_checks, given the kwargs) of the built-in 'optimizers' or "
        "'problems' named (all of the kind without names), the checks named in slow marked slow; the catalog "
        "loads when the test is collected, not when its module is imported")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    mark = metafunc.definition.get_closest_marker("builtin_checks")
    if mark is None:
        return
    from bench_core.testing import parametrize_with_checks

    kind, *names = mark.args
    kwargs = dict(mark.kwargs)
    slow = set(kwargs.pop("slow", ()))
    entries = getattr(_builtin_catalog(), kind)
    specs = [entries[name] for name in names[0]] if names else list(entries.values())
    argnames, params = parametrize_with_checks(specs, **kwargs).args
    assert slow <= {param.values[1].name for param in params}, f"builtin_checks: no check named in {slow}"
    metafunc.parametrize(argnames, [
        pytest.param(*param.values, id=param.id, marks=[*param.marks, pytest.mark.slow])
        if param.values[1].name in slow else param for param in params])


@pytest.fixture(autouse=True)
def _data_dir_left_as_found() -> Iterator[None]:
    """optbench reads OPTBENCH_DATA_DIR as the user's default and never writes it (a run's data folder travels in
    its RunContext): every test checks that nothing it ran changed it (monkeypatch's own changes are undone first)."""
    before = os.environ.get(DATA_DIR_ENV)
    yield
    assert os.environ.get(DATA_DIR_ENV) == before, f"{DATA_DIR_ENV} was written by the code under test"


@pytest.fixture
def write_plugin(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a local plugin file and return its path: ``write_plugin("name", source)``."""

    def write(name: str, source: str) -> Path:
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return path

    return write


class FakeClock:
    """A ``time`` module whose ``perf_counter()`` advances by ``tick`` seconds at every reading, and by nothing
    in between: code timed by it sees the same durations however loaded the machine is. Everything else is the
    real ``time`` module."""

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self.now = 1000.0  # perf_counter's origin is arbitrary; a reading near 0 would hide a missing subtraction

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The trial runner's clock, made deterministic: 10 ms pass at each reading (a step of a seconds budget reads
    it twice), so a 1 s budget is about 50 steps on any machine, however loaded, and takes well under a second."""
    from bench_core import runner

    clock = FakeClock(tick=0.01)
    monkeypatch.setattr(runner, "time", clock)
    return clock
