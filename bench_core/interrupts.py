"""Whose ``KeyboardInterrupt`` is it? The user's Ctrl-C, or a plugin's ``raise KeyboardInterrupt``?

A plugin that calls ``sys.exit(3)`` or raises ``KeyboardInterrupt`` inside a trial (or while it
loads) must cost that trial (or that plugin) only, while a real Ctrl-C must still stop the sweep.
Both arrive as the same exception, so optbench tells them apart by the signal: while
:func:`tracking_sigint` is active, Ctrl-C goes through a handler that notes it before it raises,
and a ``KeyboardInterrupt`` without that note came from code. Pool workers ignore Ctrl-C (the
driver handles it), so there every ``KeyboardInterrupt`` is code's. Without tracking (optbench
used as a library) a ``KeyboardInterrupt`` is taken as the user's, as Python would.

``SystemExit`` inside a trial or a plugin import is always the plugin's: optbench raises none there.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_state = {"tracking": False, "received": False}


def _handler(signum: int, frame: FrameType | None) -> None:
    _state["received"] = True
    raise KeyboardInterrupt


@contextlib.contextmanager
def tracking_sigint() -> Iterator[None]:
    """Note every Ctrl-C received meanwhile (from the main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    previous = dict(_state)
    _state.update(tracking=True, received=False)
    signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _state.update(previous)


def trust_every_interrupt_to_code() -> None:
    """For a process that ignores Ctrl-C (a pool worker): any KeyboardInterrupt it sees was raised by code."""
    _state.update(tracking=True, received=False)


def raised_by_code(exc: BaseException) -> bool:
    """Whether ``exc`` (a SystemExit or KeyboardInterrupt) came from code rather than from the user's Ctrl-C."""
    if isinstance(exc, KeyboardInterrupt):
        return _state["tracking"] and not _state["received"]
    return isinstance(exc, SystemExit)
