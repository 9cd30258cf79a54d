"""An opt-in pytest plugin for plugin authors: the conformance kit as fixtures.

Enable it in your ``conftest.py`` with ``pytest_plugins = ["bench_core.pytest_plugin"]``,
then::

    def test_my_optimizer(optbench_catalog, check_optimizer):
        check_optimizer(optbench_catalog.optimizers["myopt"])

The fixtures raise ``AssertionError`` listing every failed check with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bench_core.catalog import Catalog, load_catalog
from bench_core.testing import assert_optimizer_conforms, assert_problem_conforms


@pytest.fixture(scope="session")
def optbench_catalog() -> Catalog:
    """Every optimizer, problem and schedule of the installed plugins (yours included, once installed)."""
    return load_catalog()


@pytest.fixture
def check_optimizer() -> Callable[..., None]:
    """:func:`bench_core.testing.assert_optimizer_conforms`."""
    return assert_optimizer_conforms


@pytest.fixture
def check_problem() -> Callable[..., Any]:
    """:func:`bench_core.testing.assert_problem_conforms` (pass ``reach_target=False`` to skip the slow check)."""
    return assert_problem_conforms
