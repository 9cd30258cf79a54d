"""Where problems read data sets from: the folder the user named for this run.

A run's data folder (``--data-dir``, or ``bench_core.run(..., data_dir=...)``) is part of its
:class:`~bench_core.context.RunContext`, not of any trial's identity: the same trial on the same
data is the same trial wherever the files lie. The problem cache makes it current while it builds
a problem (:func:`reading_data_from`), in every process a run uses (pool and Dask workers get it
with their work), so a problem plugin asks :func:`requested_data_dir` and needs no argument for
it. Without a folder named for the run, ``$OPTBENCH_DATA_DIR`` is the user's default.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

#: The environment variable a user may set to name a default data folder.
DATA_DIR_ENV = "OPTBENCH_DATA_DIR"

_current: ContextVar[Path | None] = ContextVar("optbench_data_dir", default=None)


def requested_data_dir() -> Path | None:
    """The data folder named for the current run, else ``$OPTBENCH_DATA_DIR``, else ``None``."""
    folder = _current.get()
    if folder is not None:
        return folder
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value) if value else None


@contextlib.contextmanager
def reading_data_from(folder: str | os.PathLike[str] | None) -> Iterator[None]:
    """Make ``folder`` the data folder for the code run inside (``None``: keep the user's default)."""
    token = _current.set(Path(folder) if folder is not None else None)
    try:
        yield
    finally:
        _current.reset(token)
