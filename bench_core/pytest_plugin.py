"""An opt-in pytest plugin for plugin authors: the conformance kit as fixtures.

Enable it in your ``conftest.py`` with ``pytest_plugins = ["bench_core.pytest_plugin"]``,
then::

    def test_my_optimizer(optbench_catalog, assert_optimizer_conforms):
        assert_optimizer_conforms(optbench_catalog.optimizers["myopt"])

The ``assert_*`` fixtures raise ``AssertionError`` listing every failed check with its
reason, as the functions of the same name in :mod:`bench_core.testing` do. For one pytest
test per check, use :func:`bench_core.testing.parametrize_with_checks` instead (no fixture
needed).

The fixtures were first named ``check_optimizer`` and ``check_problem``, which read like
:func:`bench_core.testing.check_optimizer` (which returns results and never raises); those
names still work, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest

from bench_core import testing
from bench_core.catalog import Catalog, load_catalog


@pytest.fixture(scope="session")
def optbench_catalog() -> Catalog:
    """Every optimizer, problem and schedule of the installed plugins (yours included, once installed)."""
    return load_catalog()


@pytest.fixture
def assert_optimizer_conforms() -> Callable[..., None]:
    """:func:`bench_core.testing.assert_optimizer_conforms`: raises listing every failed check."""
    return testing.assert_optimizer_conforms


@pytest.fixture
def assert_problem_conforms() -> Callable[..., None]:
    """:func:`bench_core.testing.assert_problem_conforms` (pass ``reach_target=False`` to skip the slow check)."""
    return testing.assert_problem_conforms


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"the optbench fixture {old!r} is deprecated: use {new!r}, which does the same (it raises on a "
                  f"failed check; bench_core.testing.{old} returns the results instead)", DeprecationWarning,
                  stacklevel=2)


@pytest.fixture
def check_optimizer() -> Callable[..., None]:
    """Deprecated alias of the ``assert_optimizer_conforms`` fixture."""
    _deprecated("check_optimizer", "assert_optimizer_conforms")
    return testing.assert_optimizer_conforms


@pytest.fixture
def check_problem() -> Callable[..., None]:
    """Deprecated alias of the ``assert_problem_conforms`` fixture."""
    _deprecated("check_problem", "assert_problem_conforms")
    return testing.assert_problem_conforms
