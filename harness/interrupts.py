"""Signals a CI runner sends: SIGINT (Ctrl-C), SIGTERM (`docker stop`, a cancelled job), SIGHUP (a closed
terminal or runner agent) all take Ctrl-C's path: KeyboardInterrupt in the main thread, passed on to every
running cell, whose servers are torn down and whose measurements are kept; then the reports are written.

A second signal never cuts that short: after the first, signals are only counted and acknowledged, and
while reports are being written (`deferred`) none raises at all. SIGHUP keeps an inherited SIG_IGN
(`nohup harness run` asked to survive a hang-up).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
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
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """No signal raises inside (reports being written); one received is still reported by `received()`."""
    before = _state.deferred
    _state.deferred = True
    try:
        yield
    finally:
        _state.deferred = before
