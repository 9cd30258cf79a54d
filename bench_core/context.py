"""One run context: what every part of a run shares, created once and passed explicitly.

A run needs the plugin catalog, the folder its data sets lie in, and a cache of the problems
built so far (a data set loads once per process). The command line and :func:`bench_core.run`
each create one :class:`RunContext` and hand it down: suite expansion builds problems through
its cache, the driver passes it to the executor, and the executor gives worker processes what
they need to rebuild it (plugin paths, autoload, data folder). Nothing travels through
environment variables; ``$OPTBENCH_DATA_DIR`` and ``$OPTBENCH_DISABLE_PLUGIN_AUTOLOAD`` are only
read, as the user's defaults.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench_core.catalog import Catalog, load_catalog
from bench_core.errors import UserError
from bench_core.runner import ProblemCache


@dataclass
class RunContext:
    """The catalog, the run's data folder (``None``: the user's default) and the problems built so far."""

    catalog: Catalog
    data_dir: str | None = None
    #: Whether third-party plugins were autoloaded (``None``: the default), for worker processes to do the same.
    autoload: bool | None = None
    problems: ProblemCache = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.problems = ProblemCache(self.catalog, self.data_dir)

    @classmethod
    def create(cls, plugins: Sequence[str | os.PathLike[str]] = (), autoload: bool | None = None,
               data_dir: str | os.PathLike[str] | None = None) -> RunContext:
        """Load the catalog (installed plugins and local ``plugins`` paths) for a run reading data from ``data_dir``.

        :raises UserError: a data folder that does not exist; a name two plugins both offer (which one a
            trial ran would depend on the order plugins were given in, so nothing is run or stored).
        """
        folder = None
        if data_dir is not None:
            if not Path(data_dir).is_dir():
                raise UserError(f"--data-dir {data_dir}: no such folder")
            folder = str(Path(data_dir).resolve())
        catalog = load_catalog(list(plugins), autoload=autoload)
        if catalog.conflicts:
            raise UserError(catalog.conflicts[0])
        return cls(catalog, folder, autoload)

    @property
    def plugin_paths(self) -> tuple[str, ...]:
        return self.catalog.plugin_paths
