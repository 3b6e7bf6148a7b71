"""Signals a CI runner sends: SIGINT (Ctrl-C), SIGTERM (`docker stop`, a cancelled job), SIGHUP (a closed
terminal or runner agent) all take Ctrl-C's path: KeyboardInterrupt in the main thread, passed on to every
running cell, whose servers are torn down and whose measurements are kept; then the reports are written.

Within a run, the scheduler (harness.schedule) stops the cells' threads cooperatively: a stop event, set once
the run stops, is handed to each cell's thread (`stop_on`), and the waits a cell spends its time in (the
launcher's readiness poll, the eval transport's requests) end at once with `Stopped` when it is set. Nothing
is raised into a thread from outside.

A second signal never cuts that short: after the first, signals are only counted and acknowledged, and
while reports are being written (`deferred`) none raises at all. SIGHUP keeps an inherited SIG_IGN
(`nohup harness run` asked to survive a hang-up).
"""

from __future__ import annotations

import contextlib
import contextvars
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _State:
    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None
        self.deferred = False


_state = _State()


def _handler(signum: int, frame: Any) -> None:
    name = signal.Signals(signum).name
    _state.count += 1
    if _state.count == 1:
        _state.first = name
        if not _state.deferred:
            raise KeyboardInterrupt(name)
        print(f"harness: {name}: stopping once the reports are written", file=sys.stderr, flush=True)
        return
    print(f"harness: {name} again: still tearing servers down and writing reports; "
          f"nothing is left running if you wait", file=sys.stderr, flush=True)


def received() -> str | None:
    """The first signal received, by name (SIGTERM, ...), or None."""
    return _state.first


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """Handle the runner's signals for the duration (main thread only: elsewhere this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _state
    _state = _State()
    previous: dict[int, Callable | int | None] = {}
    for sig in HANDLED:
        current = signal.getsignal(sig)
        if sig == signal.SIGHUP and current == signal.SIG_IGN:
            continue
        previous[sig] = current
        signal.signal(sig, _handler)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """No signal raises inside (reports being written); one received is still reported by `received()`."""
    before = _state.deferred
    _state.deferred = True
    try:
        yield
    finally:
        _state.deferred = before


# --- cooperative stop of a cell's thread ---------------------------------------------------------------

class Stopped(KeyboardInterrupt):
    """The run is stopping (a signal, or a failure elsewhere): raised by a cell's own wait when its stop
    event is set. A KeyboardInterrupt, so that it takes the path Ctrl-C takes in a single-threaded run: the
    server torn down, what was measured kept."""


# A context variable, as the eval deadline (harness.transport): asyncio.run's event loop inherits it.
_STOP: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("harness_stop", default=None)


@contextlib.contextmanager
def stop_on(event: threading.Event) -> Iterator[None]:
    """Inside (this thread, the event loops it runs), `check` and `sleep` raise Stopped once `event` is set."""
    token = _STOP.set(event)
    try:
        yield
    finally:
        _STOP.reset(token)


def stop_requested() -> bool:
    event = _STOP.get()
    return event is not None and event.is_set()


def check() -> None:
    if stop_requested():
        raise Stopped("stopped")


def sleep(seconds: float) -> None:
    """time.sleep that ends at once, raising Stopped, when the stop event is set."""
    event = _STOP.get()
    if event is None:
        time.sleep(seconds)
    else:
        event.wait(seconds)
    check()
