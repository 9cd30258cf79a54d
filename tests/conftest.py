"""Shared fixtures. Every test sees only optbench's own plugins, whatever else is installed."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ["OPTBENCH_DISABLE_PLUGIN_AUTOLOAD"] = "1"

from bench_core.catalog import Catalog, load_catalog


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The built-in catalog, loaded once."""
    return load_catalog()


@pytest.fixture
def write_plugin(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a local plugin file and return its path: ``write_plugin("name", source)``."""

    def write(name: str, source: str) -> Path:
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return path

    return write
