"""Progress of an eval: a live line on a terminal, a plain line every few seconds in CI logs."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int, *, stream: TextIO | None = None, interval_s: float | None = None):
        self.label, self.total = label, total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval_s if interval_s is not None else (0.2 if self.tty else 15.0)
        self.done = self.correct = self.errors = self.unsent = 0
        self.start = self.last = time.monotonic()

    def update(self, correct: bool | None, *, sent: bool = True) -> None:
        """One question finished: correct True/False, or None for a failed request (`sent` False: never sent,
        the client stopped after too many failures)."""
        self.done += 1
        if not sent:
            self.unsent += 1
        elif correct is None:
            self.errors += 1
        else:
            self.correct += bool(correct)
        now = time.monotonic()
        if now - self.last >= self.interval or self.done == self.total:
            self.last = now
            self._print(now)

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.start, 1e-9)
        answered = self.done - self.errors - self.unsent
        accuracy = f"{self.correct / answered:.4f}" if answered else "-"
        unsent = f", {self.unsent} not sent (stopped after too many failures)" if self.unsent else ""
        return (f"{self.label}: {self.done}/{self.total} questions, {self.done / elapsed:.1f} q/s, "
                f"accuracy {accuracy}, {self.errors} failed requests{unsent}")

    def _print(self, now: float) -> None:
        if self.tty:
            end = "\n" if self.done == self.total else ""
            self.stream.write("\r" + self.line(now) + end)
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()
